/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The engine runner against real engines, through a real hm_loop.  Skips
 * (77) unless HM_TEST_DOCKER_SOCK and/or HM_TEST_PODMAN_SOCK name sockets
 * of engines that have the busybox image tagged alpine:3.20
 * (tests/lib/engines.sh start DIR makes both).  Set HM_TEST_NETWORK to
 * override the network mode (default: none).
 */
#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>

#include "engine/engine.h"
#include "engine/http.h"
#include "lib/handles.h"
#include "lib/strbuf.h"
#include "lib/util.h"
#include "pipeline/plan.h"
#include "pipeline/workspace.h"
#include "sched/loop.h"
#include "sched/runner.h"
#include "tests/unit/tap.h"

struct run {
        struct step_exec x;
        struct plan_step step;
        struct strbuf out, err;
        struct step_result res;
        bool done;
        bool started; /* "started" seen on stdout */
        int64_t t_done;
        unsigned notices;
        /* bench: stdout checked against PATTERN as it arrives, never kept */
        bool count_only;
        uint64_t n_out;
        uint64_t bad_at; /* first mismatching offset + 1, 0: none */
};

/* 99 characters and a newline: what `yes PATTERN_TEXT` prints per line */
#define PATTERN_TEXT "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxy"
static const char pattern[] = PATTERN_TEXT "\n";

static char run_id[33];
static char *env_foo[] = { "HOME=/root", "FOO=bar baz", NULL };

static void on_log(struct step_exec *x, int stream, const char *buf, size_t n)
{
        struct run *rn = x->sched_data;
        if (rn->count_only && stream == HM_STREAM_STDOUT) {
                for (size_t i = 0; i < n && !rn->bad_at; i++)
                        if (buf[i] != pattern[(rn->n_out + i) % (sizeof pattern - 1)])
                                rn->bad_at = rn->n_out + i + 1;
                rn->n_out += n;
                return;
        }
        struct strbuf *sb = stream == HM_STREAM_STDERR ? &rn->err : &rn->out;
        size_t from = sb->len > 8 ? sb->len - 8 : 0; /* only new bytes: big outputs stay linear */
        strbuf_add(sb, buf, n);
        if (!rn->started && sb == &rn->out && strstr(rn->out.buf + from, "started"))
                rn->started = true;
}

static void on_notice(struct step_exec *x, const char *kind, const char *msg)
{
        struct run *rn = x->sched_data;
        rn->notices++;
        tap_diag("notice %s: %s", kind, msg);
}

static void on_done(struct step_exec *x, struct step_result *res)
{
        struct run *rn = x->sched_data;
        rn->res = *res;
        res->snapshot = NULL; /* taken */
        res->error_msg = NULL;
        rn->done = true;
        rn->t_done = now_ms();
}

static struct run *run_new(const char *key, uint32_t index, const char *cmd)
{
        struct run *rn = xzalloc(sizeof *rn);
        strbuf_init(&rn->out, 0);
        strbuf_init(&rn->err, 0);
        rn->step.key = (char *) key;
        rn->step.cmd = (char *) cmd;
        rn->step.index = index;
        rn->x.step = &rn->step;
        rn->x.run_id = run_id;
        rn->x.image = "alpine:3.20";
        rn->x.env = env_foo;
        rn->x.on_log = on_log;
        rn->x.on_notice = on_notice;
        rn->x.on_done = on_done;
        rn->x.sched_data = rn;
        return rn;
}

static void run_free(struct run *rn)
{
        strbuf_release(&rn->out);
        strbuf_release(&rn->err);
        free(rn->res.snapshot);
        free(rn->res.error_msg);
        free(rn);
}

static bool loop_until(struct hm_loop *loop, bool *flag, int64_t ms)
{
        int64_t end = now_ms() + ms;
        hm_error_t err = NULL;
        while (!*flag && now_ms() < end) {
                if (hm_loop_iterate(loop, 100, &err) < 0) {
                        hm_error_release(&err);
                        return false;
                }
        }
        return *flag;
}

static bool run_step(struct hm_runner *r, struct run *rn)
{
        hm_error_t err = NULL;
        if (r->ops->start(r, &rn->x, &err) < 0) {
                tap_diag("start: %s", err->msg);
                hm_error_release(&err);
                return false;
        }
        return loop_until(r->loop, &rn->done, 120000);
}

/* A tar memfd shaped like pipeline/workspace.h's: entries under workspace/. */
static int make_ws(struct workspace *ws)
{
        int fd = memfd_create("hm-test-ws", MFD_CLOEXEC);
        if (fd < 0)
                return -1;
        _cleanup_archive_write_ struct archive *a = archive_write_new();
        archive_write_set_format_pax_restricted(a);
        if (archive_write_open_fd(a, fd) != ARCHIVE_OK)
                return -1;
        struct { const char *path; const char *data; mode_t type; } ents[] = {
                { "workspace/", NULL, AE_IFDIR },
                { "workspace/hello.txt", "hello from the workspace\n", AE_IFREG },
        };
        for (size_t i = 0; i < ARRAY_SIZE(ents); i++) {
                _cleanup_archive_entry_ struct archive_entry *e = archive_entry_new();
                archive_entry_set_pathname(e, ents[i].path);
                archive_entry_set_filetype(e, ents[i].type);
                archive_entry_set_perm(e, ents[i].type == AE_IFDIR ? 0755 : 0644);
                size_t n = ents[i].data ? strlen(ents[i].data) : 0;
                archive_entry_set_size(e, (la_int64_t) n);
                if (archive_write_header(a, e) != ARCHIVE_OK)
                        return -1;
                if (n && archive_write_data(a, ents[i].data, n) != (la_ssize_t) n)
                        return -1;
        }
        if (archive_write_close(a) != ARCHIVE_OK)
                return -1;
        ws->fd = fd;
        ws->size = (uint64_t) lseek(fd, 0, SEEK_END);
        ws->n_files = 1;
        return 0;
}

/* Blocking helper for assertions: status of GET path. */
static long get_status(const char *sock, const char *path, struct strbuf *body)
{
        struct eng_response resp = { 0 };
        hm_error_t err = NULL;
        if (eng_http_perform_blocking(sock, "GET", path, 10000, &resp, NULL, &err) < 0) {
                hm_error_release(&err);
                return -1;
        }
        if (body)
                strbuf_add(body, resp.body.buf, resp.body.len);
        long st = resp.status;
        eng_response_release(&resp);
        return st;
}

static int count_labelled(const char *sock, const char *what)
{
        _cleanup_free_ char *filt = xasprintf("{\"label\":[\"hm.run=%s\"]}", run_id);
        _cleanup_free_ char *ef = eng_escape(filt);
        _cleanup_free_ char *path = xasprintf("/v1.41/%s/json?all=1&filters=%s", what, ef);
        struct strbuf body = STRBUF_INIT;
        long st = get_status(sock, path, &body);
        int n = 0;
        for (const char *p = body.buf; (p = strstr(p, "\"Id\"")); p++)
                n++;
        strbuf_release(&body);
        return st == 200 ? n : -1;
}

static void drop_done(void *data)
{
        *(bool *) data = true;
}

static bool drop(struct hm_runner *r, char **refs)
{
        bool done = false;
        r->ops->drop_snapshots(r, refs, drop_done, &done);
        return loop_until(r->loop, &done, 60000);
}

static int cmp_i64(const void *a, const void *b)
{
        int64_t x = *(const int64_t *) a, y = *(const int64_t *) b;
        return x < y ? -1 : x > y;
}

static void latency(struct hm_runner *r, const char *name, char ***snaps)
{
        int64_t t_ok[20], t_fail[20];
        for (int i = 0; i < 20; i++) {
                struct run *rn = run_new("lat", 100 + (uint32_t) i, i % 2 ? "exit 1" : "true");
                int64_t t0 = now_ms();
                run_step(r, rn);
                if (i % 2)
                        t_fail[i / 2] = now_ms() - t0;
                else
                        t_ok[i / 2] = now_ms() - t0;
                if (rn->res.snapshot)
                        strv_push(snaps, rn->res.snapshot);
                run_free(rn);
        }
        /* 10 more of each so both medians are over 20 */
        int64_t ok20[20], fail20[20];
        memcpy(ok20, t_ok, sizeof(int64_t) * 10);
        memcpy(fail20, t_fail, sizeof(int64_t) * 10);
        for (int i = 0; i < 20; i++) {
                struct run *rn = run_new("lat", 200 + (uint32_t) i, i % 2 ? "exit 1" : "true");
                int64_t t0 = now_ms();
                run_step(r, rn);
                if (i % 2)
                        fail20[10 + i / 2] = now_ms() - t0;
                else
                        ok20[10 + i / 2] = now_ms() - t0;
                if (rn->res.snapshot)
                        strv_push(snaps, rn->res.snapshot);
                run_free(rn);
        }
        qsort(ok20, 20, sizeof *ok20, cmp_i64);
        qsort(fail20, 20, sizeof *fail20, cmp_i64);
        tap_diag("%s latency: step 'true' (create..commit..remove) median %lld ms [min %lld max %lld]; "
                 "step 'exit 1' (create..remove, no commit) median %lld ms [min %lld max %lld]",
                 name, (long long) (ok20[9] + ok20[10]) / 2, (long long) ok20[0], (long long) ok20[19],
                 (long long) (fail20[9] + fail20[10]) / 2, (long long) fail20[0], (long long) fail20[19]);
}

static void test_engine(const char *kind, const char *sock)
{
        struct hm_loop *loop = hm_loop_new();
        const char *net = getenv("HM_TEST_NETWORK");
        struct engine_options o = { .kind = kind, .socket = sock, .network = net ? net : "none" };
        struct hm_runner *r = NULL;
        hm_error_t err = NULL;
        if (!tap_ok(engine_runner_new(loop, &o, &r, &err) == 0, "%s: runner for %s", kind, sock)) {
                tap_diag("%s", err->msg);
                hm_error_release(&err);
                hm_loop_free(loop);
                return;
        }
        tap_diag("%s", r->description);
        TAP_IS_STR(r->ops->name, kind, "%s: ops name", kind);
        _cleanup_free_ char *bid = xasprintf("%s:%s", kind, sock);
        TAP_IS_STR(r->backend_id, bid, "%s: backend id", kind);
        _cleanup_strv_ char **snaps = NULL;

        /* output, streams, exit code */
        struct run *a = run_new("out put", 0, "echo out1; echo err1 >&2; printf 'no newline'; echo \"FOO=$FOO\"; pwd; exit 7");
        tap_ok(run_step(r, a), "%s: step a finished", kind);
        tap_ok(!a->res.runner_error && a->res.exit_code == 7, "%s: exit code 7 (got %d%s%s)", kind, a->res.exit_code,
               a->res.error_msg ? ": " : "", a->res.error_msg ? a->res.error_msg : "");
        TAP_IS_STR(a->out.buf, "out1\nno newlineFOO=bar baz\n/workspace\n", "%s: stdout bytes exact", kind);
        TAP_IS_STR(a->err.buf, "err1\n", "%s: stderr bytes exact", kind);
        tap_ok(!a->res.snapshot, "%s: no snapshot on failure", kind);
        run_free(a);

        /* a lot of output ending right at exit: nothing lost or repeated (log catch-up) */
        struct run *big = run_new("big", 7, "seq 1 20000; seq 1 5000 >&2; echo tail");
        tap_ok(run_step(r, big) && big->res.exit_code == 0, "%s: big output step", kind);
        struct strbuf want = STRBUF_INIT, want_err = STRBUF_INIT;
        for (int i = 1; i <= 20000; i++)
                strbuf_addf(&want, "%d\n", i);
        strbuf_addstr(&want, "tail\n");
        for (int i = 1; i <= 5000; i++)
                strbuf_addf(&want_err, "%d\n", i);
        tap_ok(big->out.len == want.len && memcmp(big->out.buf, want.buf, want.len) == 0,
               "%s: 20001 stdout lines exact (%zu bytes, want %zu)", kind, big->out.len, want.len);
        tap_ok(big->err.len == want_err.len && memcmp(big->err.buf, want_err.buf, want_err.len) == 0,
               "%s: 5000 stderr lines exact", kind);
        strbuf_release(&want);
        strbuf_release(&want_err);
        if (big->res.snapshot)
                strv_push(&snaps, big->res.snapshot);
        run_free(big);

        /* partial lines across polls and frames */
        struct run *slow = run_new("slow", 8, "printf a; sleep 0.4; printf b >&2; sleep 0.4; printf c; sleep 0.3; echo d");
        tap_ok(run_step(r, slow) && slow->res.exit_code == 0, "%s: slow output step", kind);
        TAP_IS_STR(slow->out.buf, "acd\n", "%s: slow stdout exact", kind);
        TAP_IS_STR(slow->err.buf, "b", "%s: slow stderr exact", kind);
        if (slow->res.snapshot)
                strv_push(&snaps, slow->res.snapshot);
        run_free(slow);

        /* workspace upload, snapshot commit */
        struct workspace ws = { .fd = -1 };
        tap_ok(make_ws(&ws) == 0, "%s: workspace tar memfd", kind);
        struct run *b = run_new("parent", 1, "cat hello.txt && echo from-parent > /workspace/p.txt");
        b->x.ws = &ws;
        tap_ok(run_step(r, b) && b->res.exit_code == 0 && !b->res.runner_error, "%s: parent step exit 0 %s", kind,
               b->res.error_msg ? b->res.error_msg : "");
        TAP_IS_STR(b->out.buf, "hello from the workspace\n", "%s: workspace file visible", kind);
        _cleanup_free_ char *want_snap = xasprintf("localhost/hm-ephemeral:%.12s-1", run_id);
        TAP_IS_STR(b->res.snapshot, want_snap, "%s: ephemeral snapshot name", kind);

        /* child boots from the parent's snapshot; cacheable: commits under its cache tag */
        _cleanup_free_ char *cache_tag = xasprintf("hm-test-cache/child:%.16s", run_id);
        struct run *c = run_new("child", 2, "cat /workspace/p.txt; cat /workspace/hello.txt");
        c->x.parent_snapshot = b->res.snapshot;
        c->x.cache_tag = cache_tag;
        tap_ok(run_step(r, c) && c->res.exit_code == 0, "%s: child step exit 0 %s", kind,
               c->res.error_msg ? c->res.error_msg : "");
        TAP_IS_STR(c->out.buf, "from-parent\nhello from the workspace\n", "%s: child sees the parent's files", kind);
        _cleanup_free_ char *want_cache = xasprintf("localhost/%s", cache_tag);
        TAP_IS_STR(c->res.snapshot, want_cache, "%s: cache snapshot name", kind);

        /* cache lookup: hit on the existing tag, miss on a missing one */
        struct run *h = run_new("child", 2, "echo should-not-run");
        h->x.cache_tag = cache_tag;
        h->x.cache_lookup = true;
        tap_ok(run_step(r, h) && h->res.cache_hit && h->res.exit_code == 0 && h->out.len == 0,
               "%s: cache hit, nothing ran", kind);
        TAP_IS_STR(h->res.snapshot, want_cache, "%s: cache hit reports the tag", kind);
        _cleanup_free_ char *miss_tag = xasprintf("hm-test-cache/miss:%.16s", run_id);
        struct run *mi = run_new("miss", 3, "echo ran");
        mi->x.cache_tag = miss_tag;
        mi->x.cache_lookup = true;
        tap_ok(run_step(r, mi) && !mi->res.cache_hit && mi->res.exit_code == 0, "%s: cache miss runs", kind);
        TAP_IS_STR(mi->out.buf, "ran\n", "%s: cache miss output", kind);

        /* cancel a running sleep with SIGTERM */
        struct run *k = run_new("sleep", 4, "echo started; sleep 30");
        tap_ok(r->ops->start(r, &k->x, &err) == 0, "%s: start sleep", kind);
        loop_until(loop, &k->started, 30000);
        int64_t t0 = now_ms();
        r->ops->cancel(r, &k->x, false);
        loop_until(loop, &k->done, 10000);
        tap_ok(k->done && k->t_done - t0 < 3000, "%s: cancel(SIGTERM) ended the step in %lld ms", kind,
               (long long) (k->t_done - t0));
        tap_ok(k->res.canceled && k->res.exit_code == 143 && !k->res.runner_error,
               "%s: canceled, exit 143 (got %d)", kind, k->res.exit_code);
        run_free(k);

        /* cancel before the container exists */
        struct run *e = run_new("early", 5, "echo never");
        tap_ok(r->ops->start(r, &e->x, &err) == 0, "%s: start early", kind);
        r->ops->cancel(r, &e->x, false);
        tap_ok(!e->done, "%s: cancel does not call on_done from inside", kind);
        loop_until(loop, &e->done, 10000);
        tap_ok(e->done && e->res.canceled && e->out.len == 0, "%s: cancel before create finishes, nothing ran", kind);
        run_free(e);

        /* missing image */
        struct run *n = run_new("nope", 6, "true");
        n->x.image = "localhost/hm-nope:x";
        tap_ok(run_step(r, n) && n->res.runner_error && n->res.exit_code == 1, "%s: missing image is a runner error", kind);
        tap_ok(n->res.error_msg && strstr(n->res.error_msg, "'localhost/hm-nope:x'"), "%s: error names the image: %s", kind,
               n->res.error_msg ? n->res.error_msg : "(none)");
        run_free(n);

        latency(r, kind, &snaps);

        tap_ok(count_labelled(sock, "containers") == 0, "%s: no container labelled hm.run left", kind);
        const char *made[] = { b->res.snapshot, c->res.snapshot, mi->res.snapshot };
        for (size_t i = 0; i < ARRAY_SIZE(made); i++)
                if (made[i])
                        strv_push(&snaps, made[i]);
        strv_push(&snaps, "localhost/hm-never-existed:x");
        tap_ok(drop(r, snaps), "%s: drop_snapshots calls done", kind);
        tap_ok(count_labelled(sock, "images") == 0, "%s: every image labelled hm.run removed", kind);
        _cleanup_free_ char *ipath = xasprintf("/v1.41/images/%s/json", want_cache);
        tap_ok(get_status(sock, ipath, NULL) == 404, "%s: cache image gone", kind);
        run_free(b);
        run_free(c);
        run_free(h);
        run_free(mi);
        close(ws.fd);

        r->ops->free(r);
        tap_ok(hm_loop_n_fds(loop) == 0 && hm_loop_n_timers(loop) == 0, "%s: no fd or timer left on the loop", kind);
        hm_loop_free(loop);
}

/* Free a run, keeping its snapshot (if any) for drop_snapshots. */
static void run_free_keep(struct run *rn, char ***snaps)
{
        if (rn->res.snapshot)
                strv_push(snaps, rn->res.snapshot);
        run_free(rn);
}

/* Drop the snapshots a test made; check that nothing labelled with the run is left. */
static void drop_all(struct hm_runner *r, const char *kind, const char *sock, char **snaps, const char *what)
{
        if (snaps)
                tap_ok(drop(r, snaps), "%s: %s: drop_snapshots calls done", kind, what);
        tap_ok(count_labelled(sock, "containers") == 0 && count_labelled(sock, "images") == 0,
               "%s: %s left no container or image", kind, what);
}

/* Expected stdout of the two fast-output commands. */
static void want_seq(struct strbuf *b)
{
        for (int i = 1; i <= 20000; i++)
                strbuf_addf(b, "%d\n", i);
}

static void want_loop(struct strbuf *b)
{
        for (int i = 0; i < 50000; i++)
                strbuf_addf(b, "line-%d\n", i);
}

#define LOOP_CMD "i=0; while [ $i -lt 50000 ]; do echo line-$i; i=$((i+1)); done"

static bool same_bytes(const struct strbuf *got, const struct strbuf *want)
{
        if (got->len == want->len && memcmp(got->buf, want->buf, want->len) == 0)
                return true;
        size_t i = 0;
        while (i < got->len && i < want->len && got->buf[i] == want->buf[i])
                i++;
        tap_diag("got %zu bytes, want %zu; first difference at byte %zu", got->len, want->len, i);
        return false;
}

/*
 * Fast output must arrive byte-exact (Podman's logs?follow dropped lines
 * here), five times in a row, including what is written right at start and
 * right before exit: a last line without newline and stderr.
 */
static void test_fast_output(const char *kind, const char *sock)
{
        struct hm_loop *loop = hm_loop_new();
        struct engine_options o = { .kind = kind, .socket = sock, .network = "none" };
        struct hm_runner *r = NULL;
        hm_error_t err = NULL;
        if (engine_runner_new(loop, &o, &r, &err) < 0) {
                tap_ok(false, "%s: runner: %s", kind, err->msg);
                hm_error_release(&err);
                hm_loop_free(loop);
                return;
        }
        _cleanup_strv_ char **snaps = NULL;
        struct strbuf ws = STRBUF_INIT, wl = STRBUF_INIT, wt = STRBUF_INIT;
        want_seq(&ws);
        want_loop(&wl);
        want_loop(&wt);
        strbuf_addstr(&wt, "last line, no newline");
        for (unsigned k = 0; k < 5; k++) {
                struct run *a = run_new("fast-seq", 10 + k, "seq 1 20000");
                bool ran = run_step(r, a);
                tap_ok(ran && a->res.exit_code == 0 && !a->res.runner_error && same_bytes(&a->out, &ws) &&
                               a->err.len == 0,
                       "%s: run %u: seq 1 20000 byte-exact (%zu bytes)", kind, k + 1, a->out.len);
                run_free_keep(a, &snaps);
                struct run *b = run_new("fast-loop", 20 + k, LOOP_CMD);
                ran = run_step(r, b);
                tap_ok(ran && b->res.exit_code == 0 && !b->res.runner_error && same_bytes(&b->out, &wl) &&
                               b->err.len == 0,
                       "%s: run %u: 50000-line shell loop byte-exact (%zu bytes)", kind, k + 1, b->out.len);
                run_free_keep(b, &snaps);
        }
        for (unsigned k = 0; k < 3; k++) {
                struct run *c = run_new("fast-tail", 30 + k, "echo first-err >&2; " LOOP_CMD "; "
                                                             "printf 'last err' >&2; printf 'last line, no newline'; exit 3");
                tap_ok(run_step(r, c) && c->res.exit_code == 3 && !c->res.runner_error && same_bytes(&c->out, &wt),
                       "%s: run %u: loop then a last line without newline, byte-exact, exit 3", kind, k + 1);
                TAP_IS_STR(c->err.buf, "first-err\nlast err", "%s: run %u: stderr first and last bytes", kind, k + 1);
                run_free_keep(c, &snaps);
        }
        strbuf_release(&ws);
        strbuf_release(&wl);
        strbuf_release(&wt);
        drop_all(r, kind, sock, snaps, "fast output");
        r->ops->free(r);
        hm_loop_free(loop);
}

/* engine_options.limits reach the container: OOM kill, fork refused, cgroup values. */
static void test_limits(const char *kind, const char *sock)
{
        struct hm_loop *loop = hm_loop_new();
        struct engine_options o = { .kind = kind, .socket = sock, .network = "none",
                                    .limits = { .memory_bytes = 48 << 20, .pids = 12, .millicpus = 500 } };
        struct hm_runner *r = NULL;
        hm_error_t err = NULL;
        if (engine_runner_new(loop, &o, &r, &err) < 0) {
                tap_ok(false, "%s: runner: %s", kind, err->msg);
                hm_error_release(&err);
                hm_loop_free(loop);
                return;
        }
        _cleanup_strv_ char **snaps = NULL;
        struct run *m = run_new("oom", 40, "dd if=/dev/zero of=/dev/null bs=96M count=1; echo dd-status=$?");
        tap_ok(run_step(r, m) && !m->res.runner_error, "%s: memory step ran %s", kind,
               m->res.error_msg ? m->res.error_msg : "");
        tap_ok(strstr(m->out.buf, "dd-status=137") || m->res.exit_code == 137,
               "%s: 96M dd under a 48 MiB limit is killed (exit %d, out '%s', err '%s')", kind, m->res.exit_code,
               m->out.buf, m->err.buf);
        run_free_keep(m, &snaps);

        struct run *ok = run_new("small", 41, "dd if=/dev/zero of=/dev/null bs=8M count=1 2>/dev/null && echo dd-ok");
        tap_ok(run_step(r, ok) && ok->res.exit_code == 0, "%s: 8M dd under the same limit succeeds", kind);
        TAP_IS_STR(ok->out.buf, "dd-ok\n", "%s: small dd output", kind);
        run_free_keep(ok, &snaps);

        struct run *f = run_new("forks", 42, "i=0; while [ $i -lt 30 ]; do sleep 2 & i=$((i+1)); done");
        tap_ok(run_step(r, f) && !f->res.runner_error, "%s: fork loop ran", kind);
        tap_ok(strstr(f->err.buf, "can't fork") != NULL, "%s: pids 12: the fork loop prints \"can't fork\" (err '%.80s')",
               kind, f->err.buf);
        run_free_keep(f, &snaps);

        struct run *c = run_new("cgroup", 43, "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max "
                                             "/sys/fs/cgroup/cpu/cpu.cfs_quota_us 2>/dev/null || "
                                             "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.max");
        tap_ok(run_step(r, c) && c->res.exit_code == 0, "%s: cgroup read", kind);
        tap_ok(strcmp(c->out.buf, "50331648\n12\n50000\n") == 0 || strcmp(c->out.buf, "50331648\n12\n50000 100000\n") == 0,
               "%s: cgroup memory 48 MiB, pids 12, cpu quota 50%% (got '%s')", kind, c->out.buf);
        run_free_keep(c, &snaps);

        /* no limits: nothing is sent, the engine's defaults stay */
        struct hm_runner *r0 = NULL;
        struct engine_options o0 = { .kind = kind, .socket = sock, .network = "none" };
        if (engine_runner_new(loop, &o0, &r0, &err) == 0) {
                struct run *u = run_new("nolimit", 44, "cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max");
                bool ran = run_step(r0, u);
                tap_ok(ran && u->res.exit_code == 0 && strcmp(u->out.buf, "12\n") != 0 && u->out.len > 0,
                       "%s: without limits pids.max is the default ('%.20s')", kind, u->out.buf);
                run_free_keep(u, &snaps);
                r0->ops->free(r0);
        } else {
                tap_ok(false, "%s: runner without limits: %s", kind, err->msg);
                hm_error_release(&err);
        }
        drop_all(r, kind, sock, snaps, "limits");
        r->ops->free(r);
        hm_loop_free(loop);
}

/*
 * Opt-in (HM_TEST_BENCH_MB=N): one step prints N MiB; the bytes are checked
 * as they arrive and never kept, so the test's own memory stays flat and a
 * growing max RSS would be the runner's.
 */
static void test_bench(const char *kind, const char *sock, long mb)
{
        struct hm_loop *loop = hm_loop_new();
        struct engine_options o = { .kind = kind, .socket = sock, .network = "none" };
        struct hm_runner *r = NULL;
        hm_error_t err = NULL;
        if (engine_runner_new(loop, &o, &r, &err) < 0) {
                tap_ok(false, "%s: runner: %s", kind, err->msg);
                hm_error_release(&err);
                hm_loop_free(loop);
                return;
        }
        uint64_t bytes = (uint64_t) mb << 20;
        _cleanup_free_ char *cmd = xasprintf("yes " PATTERN_TEXT " | head -c %llu", (unsigned long long) bytes);
        struct run *b = run_new("bench", 50, cmd);
        b->count_only = true;
        struct rusage ru0, ru1;
        getrusage(RUSAGE_SELF, &ru0);
        int64_t t0 = now_ms();
        bool ran = run_step(r, b);
        int64_t ms = now_ms() - t0;
        getrusage(RUSAGE_SELF, &ru1);
        tap_ok(ran && b->res.exit_code == 0 && b->n_out == bytes && !b->bad_at,
               "%s: %ld MiB of output byte-exact (got %llu bytes, first bad byte %llu)", kind, mb,
               (unsigned long long) b->n_out, (unsigned long long) b->bad_at);
        tap_diag("%s: %ld MiB in %lld ms (%.1f MiB/s); max RSS %ld -> %ld KiB", kind, mb, (long long) ms,
                 ms > 0 ? (double) mb * 1000.0 / (double) ms : 0.0, ru0.ru_maxrss, ru1.ru_maxrss);
        _cleanup_strv_ char **snaps = NULL;
        run_free_keep(b, &snaps);
        drop_all(r, kind, sock, snaps, "bench");
        r->ops->free(r);
        hm_loop_free(loop);
}

/* HM_TEST_ONLY=latency: the latency measurement alone. */
static void test_latency(const char *kind, const char *sock)
{
        struct hm_loop *loop = hm_loop_new();
        struct engine_options o = { .kind = kind, .socket = sock, .network = "none" };
        struct hm_runner *r = NULL;
        hm_error_t err = NULL;
        if (engine_runner_new(loop, &o, &r, &err) < 0) {
                tap_ok(false, "%s: runner: %s", kind, err->msg);
                hm_error_release(&err);
                hm_loop_free(loop);
                return;
        }
        _cleanup_strv_ char **snaps = NULL;
        latency(r, kind, &snaps);
        tap_ok(drop(r, snaps), "%s: latency snapshots dropped", kind);
        tap_ok(count_labelled(sock, "containers") == 0, "%s: latency left no container", kind);
        r->ops->free(r);
        hm_loop_free(loop);
}

/* A runner with --pull=never fails a missing image without pulling. */
static void test_pull_never(const char *kind, const char *sock)
{
        struct hm_loop *loop = hm_loop_new();
        struct engine_options o = { .kind = kind, .socket = sock, .network = "none", .pull = "never" };
        struct hm_runner *r = NULL;
        hm_error_t err = NULL;
        if (engine_runner_new(loop, &o, &r, &err) < 0) {
                tap_ok(false, "%s: runner: %s", kind, err->msg);
                hm_error_release(&err);
                hm_loop_free(loop);
                return;
        }
        struct run *n = run_new("never", 0, "true");
        n->x.image = "localhost/hm-nope:x";
        run_step(r, n);
        TAP_IS_STR(n->res.error_msg, "image 'localhost/hm-nope:x' not found (--pull=never)", "%s: --pull=never", kind);
        run_free(n);
        r->ops->free(r);
        hm_loop_free(loop);
}

/* ops->free() with a step still running removes its container (blocking teardown). */
static void test_free_alive(const char *kind, const char *sock)
{
        struct hm_loop *loop = hm_loop_new();
        struct engine_options o = { .kind = kind, .socket = sock, .network = "none" };
        struct hm_runner *r = NULL;
        hm_error_t err = NULL;
        if (engine_runner_new(loop, &o, &r, &err) < 0) {
                tap_ok(false, "%s: runner: %s", kind, err->msg);
                hm_error_release(&err);
                hm_loop_free(loop);
                return;
        }
        struct run *k = run_new("teardown", 0, "echo started; sleep 30");
        r->ops->start(r, &k->x, &err);
        loop_until(loop, &k->started, 30000);
        tap_ok(count_labelled(sock, "containers") == 1, "%s: step container running", kind);
        r->ops->free(r);
        tap_ok(!k->done, "%s: free calls no step callback", kind);
        tap_ok(count_labelled(sock, "containers") == 0, "%s: free removed the running container", kind);
        tap_ok(hm_loop_n_fds(loop) == 0 && hm_loop_n_timers(loop) == 0, "%s: free left nothing on the loop", kind);
        run_free(k);
        hm_loop_free(loop);
}

/*
 * Opt-in (HM_TEST_KILL_DAEMON=1, engines from tests/lib/engines.sh): SIGKILL
 * the daemon mid-step; the step must end as a runner error within seconds,
 * saying that the container could not be removed either.  The caller
 * restarts the engines afterwards (engines.sh start is idempotent).
 */
static void test_daemon_killed(const char *kind, const char *sock)
{
        _cleanup_free_ char *dir = xstrdup(sock);
        *strrchr(dir, '/') = '\0';
        _cleanup_free_ char *pidfile = xasprintf("%s/%s.pid", dir, strcmp(kind, "docker") == 0 ? "dockerd" : "podman");
        _cleanup_free_ char *pidtext = NULL;
        if (read_file(pidfile, 0, &pidtext, NULL) < 0) {
                tap_ok(false, "%s: read %s", kind, pidfile);
                return;
        }
        struct hm_loop *loop = hm_loop_new();
        struct engine_options o = { .kind = kind, .socket = sock, .network = "none" };
        struct hm_runner *r = NULL;
        hm_error_t err = NULL;
        if (engine_runner_new(loop, &o, &r, &err) < 0) {
                tap_ok(false, "%s: runner: %s", kind, err->msg);
                hm_error_release(&err);
                hm_loop_free(loop);
                return;
        }
        struct run *k = run_new("killed", 0, "echo started; sleep 30");
        r->ops->start(r, &k->x, &err);
        loop_until(loop, &k->started, 30000);
        kill((pid_t) strtol(pidtext, NULL, 10), SIGKILL);
        int64_t t0 = now_ms();
        loop_until(loop, &k->done, 30000);
        tap_ok(k->done && now_ms() - t0 < 10000 && k->res.runner_error, "%s: daemon killed mid-step: runner error in %lld ms",
               kind, (long long) (now_ms() - t0));
        tap_ok(k->res.error_msg && strstr(k->res.error_msg, "remove container") && strstr(k->res.error_msg, "also failed"),
               "%s: message mentions the failed removal: %s", kind, k->res.error_msg ? k->res.error_msg : "(none)");
        run_free(k);
        r->ops->free(r);
        hm_loop_free(loop);
}

int main(void)
{
        const char *docker = getenv("HM_TEST_DOCKER_SOCK");
        const char *podman = getenv("HM_TEST_PODMAN_SOCK");
        if (!docker && !podman) {
                printf("1..0 # SKIP HM_TEST_DOCKER_SOCK / HM_TEST_PODMAN_SOCK not set\n");
                return 77;
        }
        snprintf(run_id, sizeof run_id, "%08x%08x%016llx", (unsigned) getpid(), (unsigned) now_ms(),
                 (unsigned long long) now_realtime_ns());
        const char *bench = getenv("HM_TEST_BENCH_MB");
        if (bench) { /* the benchmark alone */
                long mb = strtol(bench, NULL, 10);
                if (docker)
                        test_bench("docker", docker, mb);
                if (podman)
                        test_bench("podman", podman, mb);
                return tap_done();
        }
        const char *only = getenv("HM_TEST_ONLY"); /* "fast", "limits", "latency": one group, for quick runs */
        if (docker) {
                if (!only) {
                        test_engine("docker", docker);
                        test_pull_never("docker", docker);
                        test_free_alive("docker", docker);
                }
                if (!only || strcmp(only, "fast") == 0)
                        test_fast_output("docker", docker);
                if (!only || strcmp(only, "limits") == 0)
                        test_limits("docker", docker);
                if (only && strcmp(only, "latency") == 0)
                        test_latency("docker", docker);
        }
        if (podman) {
                if (!only) {
                        test_engine("podman", podman);
                        test_pull_never("podman", podman);
                        test_free_alive("podman", podman);
                }
                if (!only || strcmp(only, "fast") == 0)
                        test_fast_output("podman", podman);
                if (!only || strcmp(only, "limits") == 0)
                        test_limits("podman", podman);
                if (only && strcmp(only, "latency") == 0)
                        test_latency("podman", podman);
        }
        if (getenv("HM_TEST_KILL_DAEMON")) {
                if (docker)
                        test_daemon_killed("docker", docker);
                if (podman)
                        test_daemon_killed("podman", podman);
        }
        return tap_done();
}
