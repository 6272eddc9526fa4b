/* SPDX-License-Identifier: Apache-2.0 */
/* hm cache ls | clean [--backend ID] */
#include "cmd/cmd.h"
#include "pipeline/cache.h"
#include "sched/loop.h"
#include "sched/runner.h"
#include "lib/util.h"

#include <time.h>

static void cache_freep(struct cache_index **c) { cache_index_free(*c); }

static int cache_ls(struct cache_index *ci, hm_error_t *err)
{
        struct cache_entry *e = NULL;
        size_t n = 0;
        int r = cache_index_list(ci, &e, &n, err);
        if (r < 0)
                return r;
        printf("%-40s  %-50s  %-10s  %s\n", "BACKEND", "TAG", "AGE", "SNAPSHOT");
        time_t now = time(NULL);
        for (size_t i = 0; i < n; i++) {
                long age = (long) (now - e[i].accessed_at);
                char a[32];
                if (age < 120)
                        snprintf(a, sizeof a, "%lds", age);
                else if (age < 7200)
                        snprintf(a, sizeof a, "%ldm", age / 60);
                else
                        snprintf(a, sizeof a, "%ldh", age / 3600);
                printf("%-40s  %-50s  %-10s  %s\n", e[i].backend, e[i].tag, a, e[i].snapshot);
        }
        cache_entries_free(e, n);
        return 0;
}

struct drop_wait {
        bool done;
};

static void dropped(void *data) { ((struct drop_wait *) data)->done = true; }

static void warn_stderr(void *data, const char *msg) { fprintf(stderr, "hm: warning: %s\n", msg); }

/* Remove every entry (of one backend, or all) and its snapshot on the backend. */
static int cache_clean(struct cache_index *ci, const char *only, hm_error_t *err)
{
        struct cache_entry *e = NULL;
        size_t n = 0;
        int r = cache_index_list(ci, &e, &n, err);
        if (r < 0)
                return r;
        size_t removed = 0;
        int ret = 0;
        for (size_t i = 0; i < n && ret == 0; i++) {
                if (!e[i].backend || (only && strcmp(only, e[i].backend)))
                        continue;
                /* every entry of this backend at once, through its own runner */
                char *backend = xstrdup(e[i].backend);
                char **refs = NULL;
                for (size_t j = i; j < n; j++)
                        if (e[j].backend && !strcmp(e[j].backend, backend))
                                strv_push(&refs, e[j].snapshot);
                struct hm_loop *loop = hm_loop_new();
                struct hm_runner *runner = NULL;
                hm_error_t rerr = NULL;
                if (cmd_runner_for_backend(loop, backend, &runner, &rerr) < 0) {
                        fprintf(stderr, "hm: warning: cannot reach '%s' to remove its snapshots: %s\n", backend, rerr->msg);
                        hm_error_release(&rerr);
                } else {
                        struct drop_wait w = { false };
                        runner->warn = warn_stderr;
                        runner->ops->drop_snapshots(runner, refs, dropped, &w);
                        while (!w.done && ret == 0)
                                ret = hm_loop_iterate(loop, -1, err);
                        runner->ops->free(runner);
                }
                hm_loop_free(loop);
                for (size_t j = i; j < n && ret == 0; j++) {
                        if (!e[j].backend || strcmp(e[j].backend, backend))
                                continue;
                        if (cache_index_remove(ci, backend, e[j].tag, err) < 0)
                                ret = -1;
                        else
                                removed++;
                        free(e[j].backend);
                        e[j].backend = NULL;
                }
                strv_free(refs);
                free(backend);
        }
        cache_entries_free(e, n);
        if (ret == 0)
                printf("removed %zu cached snapshot(s)\n", removed);
        return ret;
}

int cmd_cache(int argc, char **argv)
{
        hm_error_t err = NULL;
        if (argc < 2 || (strcmp(argv[1], "ls") && strcmp(argv[1], "clean"))) {
                fprintf(stderr, "usage: hm cache ls | clean [--backend ID]\n");
                return 2;
        }
        const char *only = NULL;
        if (argc == 4 && !strcmp(argv[2], "--backend"))
                only = argv[3];
        else if (argc != 2) {
                fprintf(stderr, "usage: hm cache ls | clean [--backend ID]\n");
                return 2;
        }
        _cleanup_(cache_freep) struct cache_index *ci = NULL;
        if (cache_index_open(NULL, &ci, &err) < 0)
                return cmd_fail(&err);
        int r = !strcmp(argv[1], "ls") ? cache_ls(ci, &err) : cache_clean(ci, only, &err);
        if (r < 0)
                return cmd_fail(&err);
        return 0;
}
