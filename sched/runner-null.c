/* SPDX-License-Identifier: Apache-2.0 */
#include "sched/runner-null.h"
#include "sched/loop.h"
#include "sched/runner.h"
#include "pipeline/plan.h"
#include "lib/util.h"



struct null_runner {
        struct hm_runner base;
        unsigned running, max_running;
        unsigned long snapshots_alive;
};

struct null_step {
        struct null_runner *nr;
        struct step_exec *x;
        char *script; /* remaining commands */
        char *pos;
        uint64_t timer;
        int exit_code;
        bool canceled;
        bool hit;
};

static void null_finish(struct null_step *ns, bool hit)
{
        struct null_runner *nr = ns->nr;
        struct step_exec *x = ns->x;
        struct step_result res = { .exit_code = ns->exit_code, .cache_hit = hit, .canceled = ns->canceled };
        if (res.exit_code == 0) {
                res.snapshot = xasprintf("null:%s:%u", x->cache_tag && !hit ? x->cache_tag : x->run_id,
                                         x->step->index);
                if (hit)
                        res.snapshot = (free(res.snapshot), xstrdup(x->cache_tag));
                nr->snapshots_alive++;
        }
        nr->running--;
        free(ns->script);
        free(ns);
        x->runner_data = NULL;
        x->on_done(x, &res);
}

static void null_advance(struct hm_loop *loop, uint64_t id, void *data)
{
        struct null_step *ns = data;
        ns->timer = 0;
        while (!ns->hit && *ns->pos) {
                char *cmd = ns->pos;
                char *semi = strchr(cmd, ';');
                if (semi) {
                        *semi = 0;
                        ns->pos = semi + 1;
                } else {
                        ns->pos = cmd + strlen(cmd);
                }
                while (*cmd == ' ')
                        cmd++;
                if (str_has_prefix(cmd, "echo ")) {
                        char *text = cmd + 5;
                        size_t n = strlen(text);
                        int stream = HM_STREAM_STDOUT;
                        if (n >= 3 && !strcmp(text + n - 3, ">&2")) {
                                stream = HM_STREAM_STDERR;
                                n -= 3;
                                while (n && text[n - 1] == ' ')
                                        n--;
                        }
                        ns->x->on_log(ns->x, stream, text, n);
                        ns->x->on_log(ns->x, stream, "\n", 1);
                } else if (str_has_prefix(cmd, "sleep ")) {
                        double sec = strtod(cmd + 6, NULL);
                        ns->timer = hm_loop_add_timer(loop, (int64_t) (sec * 1000 + 0.5), null_advance, ns);
                        return;
                } else if (str_has_prefix(cmd, "exit ")) {
                        ns->exit_code = (int) strtol(cmd + 5, NULL, 10);
                        break;
                }
        }
        null_finish(ns, ns->hit);
}

static int null_start(struct hm_runner *r, struct step_exec *x, hm_error_t *err)
{
        struct null_runner *nr = (struct null_runner *) r;
        struct null_step *ns = xzalloc(sizeof *ns);
        ns->nr = nr;
        ns->x = x;
        ns->script = xstrdup(x->step->cmd);
        ns->pos = ns->script;
        ns->hit = x->cache_lookup; /* the null backend keeps every tag it was told about */
        x->runner_data = ns;
        if (++nr->running > nr->max_running)
                nr->max_running = nr->running;
        ns->timer = hm_loop_add_timer(r->loop, 0, null_advance, ns);
        return 0;
}

static void null_cancel(struct hm_runner *r, struct step_exec *x, bool force)
{
        struct null_step *ns = x->runner_data;
        if (!ns)
                return;
        /* like a shell killed by SIGTERM / SIGKILL */
        hm_loop_del_timer(r->loop, ns->timer);
        ns->canceled = true;
        ns->exit_code = force ? 137 : 143;
        ns->pos = ns->script + strlen(ns->script);
        ns->timer = hm_loop_add_timer(r->loop, 0, null_advance, ns);
}

struct drop_ctx {
        void (*done)(void *);
        void *data;
};

static void drop_done(struct hm_loop *loop, uint64_t id, void *data)
{
        struct drop_ctx *d = data;
        void (*done)(void *) = d->done;
        void *arg = d->data;
        free(d);
        done(arg);
}

static void null_drop(struct hm_runner *r, char *const *refs, void (*done)(void *), void *data)
{
        struct null_runner *nr = (struct null_runner *) r;
        nr->snapshots_alive -= strv_len(refs) <= nr->snapshots_alive ? strv_len(refs) : nr->snapshots_alive;
        struct drop_ctx *d = xzalloc(sizeof *d);
        d->done = done;
        d->data = data;
        hm_loop_add_timer(r->loop, 0, drop_done, d); /* never call back re-entrantly */
}

static void null_free(struct hm_runner *r)
{
        if (!r)
                return;
        free(r->backend_id);
        free(r->description);
        free(r);
}

static const struct runner_ops null_ops = {
        .name = "null",
        .start = null_start,
        .cancel = null_cancel,
        .drop_snapshots = null_drop,
        .free = null_free,
};

struct hm_runner *null_runner_new(struct hm_loop *loop)
{
        struct null_runner *nr = xzalloc(sizeof *nr);
        nr->base.ops = &null_ops;
        nr->base.loop = loop;
        nr->base.backend_id = xstrdup("null:");
        nr->base.description = xstrdup("null runner (test only: runs no container)");
        return &nr->base;
}

unsigned null_runner_max_running(struct hm_runner *r)
{
        return ((struct null_runner *) r)->max_running;
}
