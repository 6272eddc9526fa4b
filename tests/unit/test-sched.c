/* SPDX-License-Identifier: Apache-2.0 */
/* Scheduler semantics (hm-compat §4.3, §4.11, §4.12) on the null runner. */
#include "pipeline/cache.h"
#include "pipeline/plan.h"
#include "sched/events.h"
#include "sched/loop.h"
#include "sched/runner-null.h"
#include "sched/runner.h"
#include "sched/sched.h"
#include "lib/strbuf.h"
#include "lib/util.h"
#include "tests/unit/tap.h"

#include <signal.h>
#include <sys/signalfd.h>

struct rec {
        struct hm_sink base;
        char **lines; /* NDJSON */
};

static void rec_emit(struct hm_sink *s, const struct hm_event *ev)
{
        struct rec *r = (struct rec *) s;
        struct strbuf sb = STRBUF_INIT;
        hm_event_to_json(ev, &sb);
        strv_push_take(&r->lines, strbuf_detach(&sb, NULL));
}
static void rec_free(struct hm_sink *s) { (void) s; }

/* Number of events containing all of the given substrings. */
static int count(struct rec *r, const char *a, const char *b)
{
        int n = 0;
        for (char **l = r->lines; l && *l; l++)
                if (strstr(*l, a) && (!b || strstr(*l, b)))
                        n++;
        return n;
}

static int index_of(struct rec *r, const char *a, const char *b)
{
        int i = 0;
        for (char **l = r->lines; l && *l; l++, i++)
                if (strstr(*l, a) && (!b || strstr(*l, b)))
                        return i;
        return -1;
}

/* A tiny IR builder: steps "key|cmd|timeout", edges "src>dst" (builds_in) or "src~dst" (depends_on). */
static char *ir(unsigned timeout, const char *const *steps, const char *const *edges)
{
        struct strbuf sb = STRBUF_INIT;
        strbuf_addstr(&sb, "{\"version\":\"0\",");
        if (timeout)
                strbuf_addf(&sb, "\"timeout_seconds\":%u,", timeout);
        strbuf_addstr(&sb, "\"graph\":{\"nodes\":[");
        for (size_t i = 0; steps[i]; i++) {
                char key[64], cmd[256];
                unsigned t = 0;
                if (sscanf(steps[i], "%63[^|]|%255[^|]|%u", key, cmd, &t) < 2)
                        abort();
                strbuf_addf(&sb, "%s{\"env\":{\"A\":\"1\"},\"step\":{\"key\":\"%s\",\"cmd\":\"%s\",\"image\":\"img\"", i ? "," : "", key, cmd);
                if (t)
                        strbuf_addf(&sb, ",\"timeout_seconds\":%u", t);
                if (strstr(key, "cached"))
                        strbuf_addf(&sb, ",\"cache\":{\"policy\":\"forever\",\"key\":\"%016zx0000\"}", i + 0xabc);
                strbuf_addstr(&sb, "}}");
        }
        strbuf_addstr(&sb, "],\"node_holes\":[],\"edge_property\":\"directed\",\"edges\":[");
        for (size_t i = 0; edges && edges[i]; i++) {
                unsigned a, b;
                char k;
                if (sscanf(edges[i], "%u%c%u", &a, &k, &b) != 3)
                        abort();
                strbuf_addf(&sb, "%s[%u,%u,\"%s\"]", i ? "," : "", a, b, k == '>' ? "builds_in" : "depends_on");
        }
        strbuf_addstr(&sb, "]}}");
        return strbuf_detach(&sb, NULL);
}

struct run {
        struct rec rec;
        int exit;
        unsigned max_running;
};

static int run_ir(const char *json, bool keep_going, unsigned par, struct cache_index *cache, int sigfd,
                  struct run *out)
{
        hm_error_t err = NULL;
        struct plan *plan = NULL;
        if (plan_parse(json, strlen(json), "test", &plan, &err) < 0) {
                tap_diag("plan_parse: %s", err->msg);
                hm_error_release(&err);
                return -1;
        }
        struct hm_loop *loop = hm_loop_new();
        struct hm_runner *r = null_runner_new(loop);
        memset(out, 0, sizeof *out);
        out->rec.base.emit = rec_emit;
        out->rec.base.free = rec_free;
        struct sched_options o = { .parallelism = par, .keep_going = keep_going, .grace_ms = 200,
                                   .default_image = "ubuntu:24.04", .cache = cache, .cache_capacity = 64,
                                   .signal_fd = sigfd };
        int ret = sched_run(plan, r, loop, NULL, &o, &out->rec.base, &out->exit, &err);
        if (ret < 0) {
                tap_diag("sched_run: %s", err->msg);
                hm_error_release(&err);
        }
        out->max_running = null_runner_max_running(r);
        tap_ok(hm_loop_n_fds(loop) == 0 && hm_loop_n_timers(loop) == 0, "no fd or timer left in the loop");
        r->ops->free(r);
        hm_loop_free(loop);
        plan_free(plan);
        return ret;
}

/* Every step ends with exactly one of step_end, step_skipped, step_canceled. */
static void check_terminal(struct run *r, const char *const *keys)
{
        for (size_t i = 0; keys[i]; i++) {
                char k[80];
                snprintf(k, sizeof k, "\"key\":\"%s\"", keys[i]);
                int n = count(&r->rec, "\"kind\":\"step_end\"", k) + count(&r->rec, "\"kind\":\"step_skipped\"", k) +
                        count(&r->rec, "\"kind\":\"step_canceled\"", k);
                tap_ok(n == 1, "step '%s' has exactly one terminal event (%d)", keys[i], n);
        }
        tap_ok(strstr(r->rec.lines[strv_len(r->rec.lines) - 1], "\"kind\":\"build_end\"") != NULL, "build_end is last");
}

static void test_chain(void)
{
        static const char *const steps[] = { "a|echo from-a|", "b|echo to-err >&2; echo x|", "c|echo c|", NULL };
        static const char *const edges[] = { "0>1", "1>2", NULL };
        _cleanup_free_ char *j = ir(0, steps, edges);
        struct run r;
        tap_ok(run_ir(j, false, 2, NULL, -1, &r) == 0 && r.exit == 0, "chain passes with exit 0");
        tap_ok(count(&r.rec, "step_log", "\"line\":\"from-a\"") == 1, "a's line logged once");
        tap_ok(count(&r.rec, "\"stream\":\"stderr\"", "\"line\":\"to-err\"") == 1, "stderr line on stderr");
        tap_ok(index_of(&r.rec, "step_end", "\"key\":\"a\"") < index_of(&r.rec, "step_queued", "\"key\":\"b\""),
               "b is queued only after a ended");
        tap_ok(count(&r.rec, "step_queued", "\"parent_key\":\"a\"") == 1, "b's parent_key is a");
        tap_ok(count(&r.rec, "step_start", "\"image\":null") == 2, "children start with image null");
        tap_ok(count(&r.rec, "build_end", "\"exit_code\":0") == 1, "build_end exit 0");
        static const char *const keys[] = { "a", "b", "c", NULL };
        check_terminal(&r, keys);
        strv_free(r.rec.lines);
}

static const char *const fork_steps[] = { "root|echo base|", "bad|echo failing; exit 3|", "bad-child|echo never|",
                                          "bad-grandchild|echo never-either|", "good|sleep 0.3; echo base|",
                                          "good-child|echo good-child-ran|", NULL };
static const char *const fork_edges[] = { "0>1", "1>2", "2>3", "0>4", "4>5", NULL };
static const char *const fork_keys[] = { "root", "bad", "bad-child", "bad-grandchild", "good", "good-child", NULL };

static void test_keep_going(void)
{
        _cleanup_free_ char *j = ir(0, fork_steps, fork_edges);
        struct run r;
        tap_ok(run_ir(j, true, 2, NULL, -1, &r) == 0 && r.exit == 1, "-k: exit 1");
        tap_ok(count(&r.rec, "step_end", "\"key\":\"bad\",\"exit_code\":3") == 1, "-k: bad ends with 3");
        tap_ok(count(&r.rec, "chain_failed", "\"failed_step_key\":\"bad\",\"exit_code\":3") == 1, "-k: chain_failed names bad");
        tap_ok(count(&r.rec, "step_skipped", "\"key\":\"bad-child\"") == 1 &&
               count(&r.rec, "step_skipped", "\"key\":\"bad-grandchild\"") == 1, "-k: dependents skipped transitively");
        tap_ok(count(&r.rec, "step_start", "\"key\":\"bad-") == 0, "-k: no dependent of bad starts");
        tap_ok(count(&r.rec, "step_end", "\"key\":\"good-child\",\"exit_code\":0") == 1, "-k: independent branch passes");
        check_terminal(&r, fork_keys);
        strv_free(r.rec.lines);
}

static void test_fail_fast(void)
{
        _cleanup_free_ char *j = ir(0, fork_steps, fork_edges);
        struct run r;
        tap_ok(run_ir(j, false, 2, NULL, -1, &r) == 0 && r.exit == 1, "fail-fast: exit 1 (not upstream's 130)");
        tap_ok(count(&r.rec, "step_start", "\"key\":\"bad-") == 0, "fail-fast: nothing downstream of bad starts");
        tap_ok(count(&r.rec, "step_end", "\"key\":\"good\",\"exit_code\":1") == 1, "fail-fast: running sibling aborted (exit 1)");
        tap_ok(count(&r.rec, "step_canceled", "\"key\":\"good-child\"") == 1, "fail-fast: unstarted step canceled");
        tap_ok(count(&r.rec, "chain_failed", NULL) == 1, "fail-fast: one chain_failed (the aborted sibling has none)");
        check_terminal(&r, fork_keys);
        strv_free(r.rec.lines);
}

static void test_timeouts(void)
{
        static const char *const steps[] = { "slow|echo start; sleep 30; echo unreachable|1", "fast|echo fast-done|", NULL };
        _cleanup_free_ char *j = ir(60, steps, NULL);
        struct run r;
        int64_t t0 = now_ms();
        tap_ok(run_ir(j, true, 2, NULL, -1, &r) == 0 && r.exit == 1, "step timeout with -k: exit 1");
        tap_diag("step timeout run took %lld ms", (long long) (now_ms() - t0));
        tap_ok(count(&r.rec, "step_end", "\"key\":\"slow\",\"exit_code\":124") == 1, "timed-out step ends with 124");
        tap_ok(count(&r.rec, "chain_failed", "\"exit_code\":124") == 1, "chain_failed with 124");
        tap_ok(count(&r.rec, "step_log", "unreachable") == 0, "the step was stopped");
        strv_free(r.rec.lines);

        static const char *const steps2[] = { "long-a|sleep 30|", "long-b|sleep 30|", "after|echo x|", NULL };
        static const char *const edges2[] = { "0~2", NULL };
        _cleanup_free_ char *j2 = ir(1, steps2, edges2);
        tap_ok(run_ir(j2, false, 2, NULL, -1, &r) == 0 && r.exit == 124, "pipeline timeout: exit 124");
        tap_ok(count(&r.rec, "build_end", "\"exit_code\":124") == 1, "build_end says 124");
        tap_ok(count(&r.rec, "step_canceled", "\"key\":\"after\"") == 1, "unstarted step canceled");
        static const char *const keys[] = { "long-a", "long-b", "after", NULL };
        check_terminal(&r, keys);
        strv_free(r.rec.lines);
}

static void test_parallelism(void)
{
        static const char *const steps[] = { "root|echo r|", "l0|sleep 0.05|", "l1|sleep 0.05|", "l2|sleep 0.05|",
                                             "l3|sleep 0.05|", "l4|sleep 0.05|", "l5|sleep 0.05|", "l6|sleep 0.05|",
                                             "l7|sleep 0.05|", NULL };
        static const char *const edges[] = { "0>1", "0>2", "0>3", "0>4", "0>5", "0>6", "0>7", "0>8", NULL };
        _cleanup_free_ char *j = ir(0, steps, edges);
        struct run r;
        tap_ok(run_ir(j, false, 4, NULL, -1, &r) == 0 && r.exit == 0, "fanout passes");
        tap_ok(r.max_running == 4, "never more than 4 at once, and 4 reached (%u)", r.max_running);
        strv_free(r.rec.lines);
        tap_ok(run_ir(j, false, 1, NULL, -1, &r) == 0 && r.max_running == 1, "parallelism 1 is serial");
        strv_free(r.rec.lines);
}

static void test_cache(void)
{
        char dir[] = "/tmp/hm-test-sched-XXXXXX";
        if (!mkdtemp(dir))
                abort();
        _cleanup_free_ char *path = xasprintf("%s/index", dir);
        hm_error_t err = NULL;
        struct cache_index *ci = NULL;
        if (cache_index_open(path, &ci, &err) < 0) {
                tap_ok(false, "cache_index_open: %s", err->msg);
                hm_error_release(&err);
                return;
        }
        static const char *const steps[] = { "cached-deps|echo deps-ran|", "cached-tools|echo tools-ran|", "test|echo t|", NULL };
        static const char *const edges[] = { "0>1", "1>2", NULL };
        _cleanup_free_ char *j = ir(0, steps, edges);
        struct run r;
        tap_ok(run_ir(j, false, 2, ci, -1, &r) == 0 && r.exit == 0, "first cached run passes");
        tap_ok(count(&r.rec, "step_cache_hit", NULL) == 0 && count(&r.rec, "step_log", "deps-ran") == 1, "first run: no hits");
        strv_free(r.rec.lines);
        tap_ok(run_ir(j, false, 2, ci, -1, &r) == 0 && r.exit == 0, "second cached run passes");
        tap_ok(count(&r.rec, "step_cache_hit", NULL) == 2, "second run: two cache hits");
        tap_ok(count(&r.rec, "step_log", "deps-ran") == 0 && count(&r.rec, "step_log", "tools-ran") == 0, "second run: cached steps did not run");
        tap_ok(count(&r.rec, "step_log", "\"line\":\"t\"") == 1, "second run: uncached child ran");
        strv_free(r.rec.lines);
        cache_index_free(ci);
        rm_rf(dir);
}

static void raise_int(struct hm_loop *loop, uint64_t id, void *data) { raise(SIGINT); }

static void test_signal(void)
{
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigprocmask(SIG_BLOCK, &set, NULL);
        int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
        static const char *const steps[] = { "s|sleep 30|", "t|echo x|", NULL };
        static const char *const edges[] = { "0>1", NULL };
        _cleanup_free_ char *j = ir(0, steps, edges);
        hm_error_t err = NULL;
        struct plan *plan = NULL;
        plan_parse(j, strlen(j), "t", &plan, &err);
        struct hm_loop *loop = hm_loop_new();
        struct hm_runner *rn = null_runner_new(loop);
        struct rec rec = { .base = { .emit = rec_emit, .free = rec_free } };
        struct sched_options o = { .parallelism = 2, .grace_ms = 100, .default_image = "x", .signal_fd = fd };
        hm_loop_add_timer(loop, 50, raise_int, NULL);
        int code = 0;
        tap_ok(plan && sched_run(plan, rn, loop, NULL, &o, &rec.base, &code, &err) == 0 && code == 130, "SIGINT: exit 130");
        struct run r = { .rec = rec };
        tap_ok(count(&r.rec, "step_end", "\"key\":\"s\",\"exit_code\":1") == 1, "SIGINT: running step aborted");
        tap_ok(count(&r.rec, "step_canceled", "\"key\":\"t\"") == 1, "SIGINT: pending step canceled");
        strv_free(rec.lines);
        rn->ops->free(rn);
        hm_loop_free(loop);
        plan_free(plan);
        close(fd);
        sigprocmask(SIG_UNBLOCK, &set, NULL);
}

int main(void)
{
        test_chain();
        test_keep_going();
        test_fail_fast();
        test_timeouts();
        test_parallelism();
        test_cache();
        test_signal();
        return tap_done();
}
