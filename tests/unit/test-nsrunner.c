/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ns runner with a real loop, the real runtime and a real store of
 * busybox (tests/lib/mkimage.sh).  Needs root.
 */
#include "runtime/nsrunner.h"
#include "oci/image.h"
#include "oci/store.h"
#include "pipeline/plan.h"
#include "pipeline/workspace.h"
#include "sched/loop.h"
#include "sched/runner.h"
#include "lib/strbuf.h"
#include "lib/util.h"
#include "tests/unit/tap.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>

#include "lib/handles.h"

#define RUN_ID "0123456789abcdef0123456789abcdef"

/* on the root filesystem (usually): the host image's lowers must then be moved off it */
static char top[] = "/var/tmp/hm-test-nsrunner-XXXXXX";

struct outcome {
        struct strbuf out, err;
        bool done;
        struct step_result res;
        char notices[512];
};

static void on_log(struct step_exec *x, int stream, const char *buf, size_t n)
{
        struct outcome *o = x->sched_data;
        strbuf_add(stream == HM_STREAM_STDOUT ? &o->out : &o->err, buf, n);
}

static void on_notice(struct step_exec *x, const char *kind, const char *msg)
{
        struct outcome *o = x->sched_data;
        size_t l = strlen(o->notices);
        snprintf(o->notices + l, sizeof o->notices - l, "%s: %s; ", kind, msg);
}

static void on_done(struct step_exec *x, struct step_result *res)
{
        struct outcome *o = x->sched_data;
        o->res = *res;
        o->done = true;
}

struct stepdef {
        const char *key;
        const char *cmd;
        const char *image;
        const char *parent;
        const char *tag;
        bool lookup;
        const struct workspace *ws;
        int64_t cancel_after_ms; /* 0: never */
};

static void outcome_release(struct outcome *o)
{
        strbuf_release(&o->out);
        strbuf_release(&o->err);
        free(o->res.snapshot);
        free(o->res.error_msg);
}

static int64_t run_step(struct hm_runner *r, const struct stepdef *d, struct outcome *o)
{
        static uint32_t index;
        *o = (struct outcome) { .out = STRBUF_INIT, .err = STRBUF_INIT };
        struct plan_step step = { .index = index++, .key = (char *) d->key, .cmd = (char *) d->cmd };
        char *env[] = { "HOME=/root", "HM_STEP=yes", NULL };
        struct step_exec x = { .step = &step, .run_id = RUN_ID, .image = d->image, .parent_snapshot = d->parent,
                               .cache_tag = d->tag, .cache_lookup = d->lookup, .env = env, .ws = d->ws,
                               .on_log = on_log, .on_notice = on_notice, .on_done = on_done, .sched_data = o };
        int64_t t0 = now_ms();
        hm_error_t err = NULL;
        if (r->ops->start(r, &x, &err) < 0) {
                tap_diag("start: %s", err->msg);
                hm_error_release(&err);
                o->res.runner_error = true;
                return 0;
        }
        bool canceled = false;
        while (!o->done && now_ms() - t0 < 60000) {
                if (d->cancel_after_ms && !canceled && now_ms() - t0 >= d->cancel_after_ms) {
                        r->ops->cancel(r, &x, false);
                        canceled = true;
                }
                if (hm_loop_iterate(r->loop, 50, &err) < 0) {
                        tap_diag("loop: %s", err->msg);
                        hm_error_release(&err);
                        break;
                }
        }
        return now_ms() - t0;
}

static size_t count_dir(const char *path)
{
        _cleanup_closedir_ DIR *d = opendir(path);
        size_t n = 0;
        struct dirent *de;
        while (d && (de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        return n;
}

/*
 * Entries of the store's tmp/ but the runner's idle step dirs (kept for its
 * next steps until it is freed): a "step-*" dir holding exactly work/ and
 * merged/ (no upper/, nothing mounted; lowers/ of a staged host step, empty).
 */
static size_t count_tmp_but_idle_slots(const char *path)
{
        _cleanup_closedir_ DIR *d = opendir(path);
        size_t n = 0;
        struct dirent *de;
        while (d && (de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                _cleanup_free_ char *p = xasprintf("%s/%s", path, de->d_name);
                _cleanup_free_ char *up = xasprintf("%s/upper", p), *w = xasprintf("%s/work", p),
                                    *m = xasprintf("%s/merged", p), *l = xasprintf("%s/lowers", p);
                size_t want = 2 + (access(l, F_OK) == 0 && count_dir(l) == 0);
                bool idle = str_has_prefix(de->d_name, "step-") && access(up, F_OK) < 0 && access(w, F_OK) == 0 &&
                            access(m, F_OK) == 0 && count_dir(m) == 0 && count_dir(p) == want;
                if (!idle)
                        n++;
        }
        return n;
}

static struct workspace *make_ws(void)
{
        int fd = memfd_create("ws", MFD_CLOEXEC);
        _cleanup_archive_write_ struct archive *a = archive_write_new();
        archive_write_set_format_pax_restricted(a);
        archive_write_open_fd(a, fd);
        static const struct { const char *name; const char *data; } ents[] = {
                { "workspace/", NULL }, { "workspace/src.txt", "from-ws\n" }, { "workspace/sub/", NULL },
                { "workspace/sub/f", "f\n" } };
        for (size_t i = 0; i < ARRAY_SIZE(ents); i++) {
                _cleanup_archive_entry_ struct archive_entry *e = archive_entry_new();
                archive_entry_set_pathname(e, ents[i].name);
                archive_entry_set_filetype(e, ents[i].data ? AE_IFREG : AE_IFDIR);
                archive_entry_set_perm(e, ents[i].data ? 0644 : 0755);
                archive_entry_set_size(e, ents[i].data ? (la_int64_t) strlen(ents[i].data) : 0);
                archive_write_header(a, e);
                if (ents[i].data)
                        archive_write_data(a, ents[i].data, strlen(ents[i].data));
        }
        archive_write_close(a);
        struct workspace *ws = xzalloc(sizeof *ws);
        ws->fd = fd;
        ws->size = (uint64_t) lseek(fd, 0, SEEK_END);
        ws->n_files = 2;
        ws->root = xstrdup("/src");
        return ws;
}

static size_t count_fds(void)
{
        return count_dir("/proc/self/fd");
}

static bool mounted_below(const char *dir)
{
        _cleanup_free_ char *info = NULL;
        return read_file("/proc/self/mountinfo", 0, &info, NULL) < 0 || strstr(info, dir);
}

#define HOST_X "/usr/hm-test-nsrunner-x"

/*
 * Image "host" with the store on the root filesystem: a host step (with the
 * workspace on top) writes HOST_X, deletes /etc/debian_version and replaces
 * /etc/apt; its child and grandchild (lowers: snapshots above the host's "/")
 * see all of it, the host sees none of it, and nothing stays mounted.
 */
static void host_steps(struct hm_runner *r, const char *storep, const struct workspace *ws, char **ret_h1,
                       char **ret_h2, char **ret_h3)
{
        struct stat rs, ss;
        bool on_root = stat("/", &rs) == 0 && stat(storep, &ss) == 0 && rs.st_dev == ss.st_dev;
        tap_diag("store %s on the root filesystem", on_root ? "is" : "is NOT");
        if (access(HOST_X, F_OK) == 0 || access("/etc/debian_version", F_OK) < 0 || access("/etc/apt", F_OK) < 0) {
                tap_ok(false, "host steps need /etc/debian_version, /etc/apt and no %s on the host", HOST_X);
                return;
        }
        _cleanup_free_ char *tmpd = xasprintf("%s/tmp", storep);
        struct outcome o;
        struct stepdef h1 = { "host", "test -f /etc/debian_version && echo host-ok && cat /workspace/src.txt && "
                                      "echo x > " HOST_X " && rm /etc/debian_version && rm -rf /etc/apt && "
                                      "mkdir /etc/apt && echo only > /etc/apt/only",
                              "host", .ws = ws };
        run_step(r, &h1, &o);
        tap_ok(o.res.exit_code == 0 && !strcmp(o.out.buf, "host-ok\nfrom-ws\n") && o.res.snapshot &&
                       access(HOST_X, F_OK) < 0 && access("/etc/debian_version", F_OK) == 0 && !mounted_below(tmpd),
               "image 'host' + workspace: the host's / read-only below a private upper (%s)",
               o.res.error_msg ? o.res.error_msg : o.err.buf);
        *ret_h1 = TAKE_PTR(o.res.snapshot);
        outcome_release(&o);
        if (!*ret_h1)
                return;

        struct stepdef h2 = { "host-child", "cat " HOST_X " /workspace/src.txt; ls /etc/apt; "
                                            "test -e /etc/debian_version || echo gone; echo y > /usr/hm-test-y",
                              .parent = *ret_h1, .ws = ws };
        run_step(r, &h2, &o);
        tap_ok(o.res.exit_code == 0 && !strcmp(o.out.buf, "x\nfrom-ws\nonly\ngone\n") && o.res.snapshot &&
                       access("/usr/hm-test-y", F_OK) < 0 && !mounted_below(tmpd),
               "child of a host snapshot: its file, whiteout and opaque dir, workspace on top (%s)",
               o.res.error_msg ? o.res.error_msg : o.err.buf);
        *ret_h2 = TAKE_PTR(o.res.snapshot);
        outcome_release(&o);
        if (!*ret_h2)
                return;

        struct stepdef h3 = { "host-grandchild", "cat " HOST_X " /usr/hm-test-y; test -e /workspace/src.txt || echo no-ws",
                              .parent = *ret_h2 };
        run_step(r, &h3, &o);
        tap_ok(o.res.exit_code == 0 && !strcmp(o.out.buf, "x\ny\nno-ws\n") && !mounted_below(tmpd),
               "grandchild (two snapshots above the host, no workspace) (%s)",
               o.res.error_msg ? o.res.error_msg : o.err.buf);
        *ret_h3 = TAKE_PTR(o.res.snapshot);
        outcome_release(&o);

        struct stepdef h4 = { "host-cancel", "sleep 30", .parent = *ret_h1, .ws = ws, .cancel_after_ms = 300 };
        run_step(r, &h4, &o);
        tap_ok(o.done && o.res.canceled && !o.res.snapshot && !mounted_below(tmpd) &&
                       count_tmp_but_idle_slots(tmpd) == 0,
               "canceled child of a host snapshot leaves no mount and no tmp dir but the runner's idle step dirs");
        outcome_release(&o);
}

/* Rootless, "host" cannot work: a clear error that says why and what to do instead. */
static void host_rootless(struct hm_loop *loop, const char *storep)
{
        struct hm_runner *r = NULL;
        hm_error_t err = NULL;
        struct ns_options opt = { .store = storep, .rootless = NS_ROOTLESS_ON };
        if (ns_runner_new(loop, &opt, &r, &err) < 0) {
                tap_ok(false, "rootless ns_runner_new: %s", err->msg);
                hm_error_release(&err);
                return;
        }
        struct outcome o;
        struct stepdef d = { "host-rootless", "true", "host" };
        run_step(r, &d, &o);
        const char *m = o.res.error_msg ? o.res.error_msg : "";
        tap_ok(o.res.runner_error && strstr(m, "needs root") && strstr(m, "user namespace") &&
                       strstr(m, "hm image import"),
               "rootless 'host' refused: %s", m);
        outcome_release(&o);
        r->ops->free(r);
}

/*
 * --network pasta with a pasta that never comes up (a fake in an absolute
 * PATH entry): start returns with the step waiting on the loop for the
 * helper (its fd and its bound registered, the loop free to run); a cancel
 * ends the step at once, with the helper and the container killed and
 * reaped, nothing left on the loop or in the store's tmp/.
 */
static void hung_helper(struct hm_loop *loop, const char *storep)
{
        if (access("/dev/net/tun", R_OK | W_OK) < 0) {
                tap_diag("/dev/net/tun not usable: no network helper case");
                return;
        }
        _cleanup_free_ char *bin = xasprintf("%s/fakebin", top), *fake = xasprintf("%s/pasta", bin),
                            *pidf = xasprintf("%s/fake.pid", top), *tmpd = xasprintf("%s/tmp", storep);
        /* its pid on the host: /proc is hm's there, read by the shell itself */
        _cleanup_free_ char *script = xasprintf("#!/bin/sh\nread -r pid rest </proc/self/stat\necho $pid >%s.new\n"
                                                "mv %s.new %s\nexec sleep 60\n", pidf, pidf, pidf);
        _cleanup_close_ int fd = -1;
        if (mkdir(bin, 0755) < 0 || (fd = open(fake, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755)) < 0 ||
            write_all(fd, script, strlen(script)) < 0) {
                tap_ok(false, "write the fake pasta '%s': %s", fake, strerror(errno));
                return;
        }
        fd = safe_close(fd);
        _cleanup_free_ char *path0 = xstrdup(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
        _cleanup_free_ char *path = xasprintf("%s:%s", bin, path0);
        setenv("PATH", path, 1);
        size_t tmp0 = count_dir(tmpd); /* the other runner's idle step dirs */
        struct hm_runner *r = NULL;
        hm_error_t err = NULL;
        struct ns_options opt = { .store = storep, .network = "pasta" };
        int rc = ns_runner_new(loop, &opt, &r, &err);
        setenv("PATH", path0, 1);
        if (rc < 0) {
                tap_ok(false, "ns_runner_new --network pasta: %s", err->msg);
                hm_error_release(&err);
                return;
        }
        size_t fds0 = count_fds();
        struct outcome o = { .out = STRBUF_INIT, .err = STRBUF_INIT };
        struct plan_step step = { .index = 900, .key = "hung-net", .cmd = "echo never" };
        struct step_exec x = { .step = &step, .run_id = RUN_ID, .image = "busybox:test", .on_log = on_log,
                               .on_notice = on_notice, .on_done = on_done, .sched_data = &o };
        if (r->ops->start(r, &x, &err) < 0) {
                tap_ok(false, "start: %s", err->msg);
                hm_error_release(&err);
                r->ops->free(r);
                return;
        }
        unsigned fds_waiting = hm_loop_n_fds(loop), timers_waiting = hm_loop_n_timers(loop);
        tap_ok(!o.done && fds_waiting == 1 && timers_waiting == 1 && access(fake, F_OK) == 0,
               "start returns with the step waiting for its helper on the loop (%u fd, %u timer; done %d: %s)",
               fds_waiting, timers_waiting, o.done, o.res.error_msg ? o.res.error_msg : "-");
        /* the loop runs while the helper hangs: its iterations return (a 50 ms poll each) */
        int iterations = 0;
        while (!o.done && access(pidf, F_OK) < 0 && iterations < 400) {
                hm_loop_iterate(loop, 50, &err);
                iterations++;
        }
        _cleanup_free_ char *pid_text = NULL;
        pid_t helper = read_file(pidf, 64, &pid_text, NULL) == 0 ? (pid_t) strtol(pid_text, NULL, 10) : 0;
        tap_ok(!o.done && helper > 0 && kill(helper, 0) == 0, "the fake pasta (pid %d) hangs, the step waits (%d loop "
               "iterations)", (int) helper, iterations);
        r->ops->cancel(r, &x, false);
        for (int i = 0; !o.done && i < 100; i++)
                hm_loop_iterate(loop, 50, &err);
        bool helper_gone = helper > 0 && kill(helper, 0) < 0 && errno == ESRCH;
        tap_ok(o.done && o.res.canceled && !o.res.runner_error && !o.out.len && helper_gone,
               "a cancel ends it: canceled, the command never ran, the fake pasta killed and reaped (%s)",
               o.res.error_msg ? o.res.error_msg : "-");
        tap_ok(hm_loop_n_fds(loop) == 0 && hm_loop_n_timers(loop) == 0 && count_fds() == fds0,
               "nothing left on the loop (%u fds, %u timers), no fd of it open (%zu, %zu before)", hm_loop_n_fds(loop),
               hm_loop_n_timers(loop), count_fds(), fds0);
        outcome_release(&o);
        r->ops->free(r);
        tap_ok(count_dir(tmpd) == tmp0, "nothing of it in the store's tmp/ once the runner is freed (%zu entries, %zu "
               "before)", count_dir(tmpd), tmp0);
}

static bool dropped;
static void on_dropped(void *data) { dropped = true; }

int main(void)
{
        if (geteuid() != 0) {
                printf("1..0 # SKIP needs root\n");
                return 77;
        }
        const char *srcdir = getenv("HM_SRCDIR") ? getenv("HM_SRCDIR") : ".";
        _cleanup_free_ char *script = xasprintf("%s/tests/lib/mkimage.sh", srcdir);
        if (access(script, X_OK) < 0 || !mkdtemp(top)) {
                printf("1..0 # SKIP needs %s\n", script);
                return 77;
        }
        chmod(top, 0755);
        _cleanup_free_ char *images = xasprintf("%s/images", top), *storep = xasprintf("%s/store", top);
        pid_t pid = fork();
        if (pid == 0) {
                execlp("bash", "bash", script, images, (char *) NULL);
                _exit(127);
        }
        int wst;
        waitpid(pid, &wst, 0);
        hm_error_t err = NULL;
        struct oci_store *s = NULL;
        struct oci_import_result res;
        _cleanup_free_ char *src = xasprintf("%s/rootfs.tar", images);
        if (!WIFEXITED(wst) || WEXITSTATUS(wst) || oci_store_open(storep, &s, &err) < 0 ||
            oci_image_import(s, src, "busybox:test", &res, &err) < 0) {
                tap_ok(false, "set up store: %s", err ? err->msg : "mkimage.sh failed");
                return tap_done();
        }
        oci_import_result_release(&res);
        _cleanup_free_ char *mounts0 = NULL;
        read_file("/proc/self/mountinfo", 0, &mounts0, NULL);
        size_t fds0 = count_fds() - 1; /* without the store's lock, closed before the check */

        struct hm_loop *loop = hm_loop_new();
        struct hm_runner *r = NULL;
        struct ns_options opt = { .store = storep };
        if (ns_runner_new(loop, &opt, &r, &err) < 0) {
                tap_ok(false, "ns_runner_new: %s", err->msg);
                return tap_done();
        }
        _cleanup_free_ char *bid = xasprintf("ns:%s", storep);
        tap_ok(!strcmp(r->ops->name, "ns") && !strcmp(r->backend_id, bid), "runner 'ns', backend id '%s'", r->backend_id);
        struct workspace *ws = make_ws();
        struct outcome o;

        struct stepdef s1 = { "out-err", "echo out; echo err >&2; echo $HM_STEP $HOME; hostname; pwd; exit 7",
                              "busybox:test" };
        run_step(r, &s1, &o);
        TAP_IS_STR(o.out.buf, "out\nyes /root\nout-err\n/workspace\n", "stdout captured, env, hostname, cwd");
        TAP_IS_STR(o.err.buf, "err\n", "stderr captured");
        tap_ok(o.done && o.res.exit_code == 7 && !o.res.snapshot && !o.res.runner_error, "exit code 7, no snapshot (%s)",
               o.res.error_msg ? o.res.error_msg : "-");
        if (o.notices[0])
                tap_diag("notices: %s", o.notices);
        outcome_release(&o);

        struct stepdef s2 = { "parent", "echo hello > /data.txt && echo parent > /workspace/gen.txt && "
                                        "echo old > /workspace/src.txt",
                              "busybox:test", .ws = ws };
        run_step(r, &s2, &o);
        tap_ok(o.done && o.res.exit_code == 0 && o.res.snapshot, "parent step commits a snapshot (%s)",
               o.res.error_msg ? o.res.error_msg : o.err.buf);
        char *snap_parent = TAKE_PTR(o.res.snapshot);
        outcome_release(&o);

        struct stepdef s3 = { "child", "cat /data.txt /workspace/gen.txt /workspace/src.txt /workspace/sub/f",
                              .parent = snap_parent, .ws = ws };
        run_step(r, &s3, &o);
        TAP_IS_STR(o.out.buf, "hello\nparent\nfrom-ws\nf\n", "child sees the parent's files, workspace overlaid on top");
        char *snap_child = TAKE_PTR(o.res.snapshot);
        outcome_release(&o);

        struct stepdef s4 = { "cached", "echo cached > /c.txt", "busybox:test", .tag = "harmont-cache/cached:0123456789abcdef" };
        int64_t ms_commit = run_step(r, &s4, &o);
        char *snap_cached = TAKE_PTR(o.res.snapshot);
        tap_ok(o.res.exit_code == 0 && snap_cached, "cached step commits under its tag");
        outcome_release(&o);
        struct stepdef s5 = { "cached", "echo should-not-run", "busybox:test",
                              .tag = "harmont-cache/cached:0123456789abcdef", .lookup = true };
        run_step(r, &s5, &o);
        tap_ok(o.res.cache_hit && o.res.snapshot && snap_cached && !strcmp(o.res.snapshot, snap_cached) && !o.out.len,
               "cache lookup hits, nothing runs");
        outcome_release(&o);

        struct stepdef s6 = { "sleeper", "sleep 30", "busybox:test", .cancel_after_ms = 300 };
        int64_t ms = run_step(r, &s6, &o);
        tap_ok(o.done && o.res.canceled && ms < 3000 && !o.res.snapshot, "cancel of sleep 30 ends in %lld ms (exit %d)",
               (long long) ms, o.res.exit_code);
        outcome_release(&o);

        struct stepdef s7 = { "noimg", "true", "alpine:3.20" };
        run_step(r, &s7, &o);
        tap_ok(o.res.runner_error && o.res.error_msg && strstr(o.res.error_msg, "is not in the store") &&
                       strstr(o.res.error_msg, "hm image import SOURCE alpine:3.20"),
               "missing image: %s", o.res.error_msg ? o.res.error_msg : "-");
        outcome_release(&o);

        char *snap_host = NULL, *snap_host2 = NULL, *snap_host3 = NULL;
        host_steps(r, storep, ws, &snap_host, &snap_host2, &snap_host3);

        host_rootless(loop, storep);
        hung_helper(loop, storep);

        /* cost of one step: `true`, committing a snapshot */
        char *cost_snaps[11] = { 0 };
        int64_t t0 = now_ms();
        for (int i = 0; i < 10; i++) {
                struct stepdef st = { "true", "true", "busybox:test" };
                run_step(r, &st, &o);
                cost_snaps[i] = TAKE_PTR(o.res.snapshot);
                outcome_release(&o);
        }
        int64_t per = (now_ms() - t0) / 10;
        tap_ok(cost_snaps[9] != NULL, "10 `true` steps committed");
        tap_diag("one ns step (true + commit): %lld ms (cached step with tag: %lld ms)", (long long) per,
                 (long long) ms_commit);

        _cleanup_free_ char *layers = xasprintf("%s/layers", storep), *tmpd = xasprintf("%s/tmp", storep);
        char *refs[24] = { 0 }; /* NULL-terminated */
        size_t n_refs = 0;
        char *all[] = { snap_parent, snap_child, snap_cached, snap_host, snap_host2, snap_host3 };
        for (size_t i = 0; i < ARRAY_SIZE(all); i++)
                if (all[i])
                        refs[n_refs++] = all[i];
        for (int i = 0; i < 10; i++)
                if (cost_snaps[i])
                        refs[n_refs++] = cost_snaps[i];
        r->ops->drop_snapshots(r, refs, on_dropped, NULL);
        tap_ok(!dropped, "drop_snapshots calls done later, not re-entrantly");
        while (!dropped)
                hm_loop_iterate(loop, 100, &err);
        tap_ok(count_dir(layers) == 2 && count_tmp_but_idle_slots(tmpd) == 0,
               "only the image layer left after drop (%zu entries), nothing in tmp/ but idle step dirs",
               count_dir(layers));
        /* control: the steps above did keep step dirs for reuse, so the next check can fail */
        tap_ok(count_dir(tmpd) > 0, "the runner kept %zu idle step dir(s) for its next steps", count_dir(tmpd));
        tap_ok(hm_loop_n_fds(loop) == 0 && hm_loop_n_timers(loop) == 0, "nothing left on the loop");
        r->ops->free(r);
        tap_ok(count_dir(tmpd) == 0, "freeing the runner removes its step dirs (%zu left)", count_dir(tmpd));
        hm_loop_free(loop);
        _cleanup_free_ char *mounts1 = NULL;
        read_file("/proc/self/mountinfo", 0, &mounts1, NULL);
        /* other tests may mount elsewhere on this machine: look at ours only */
        tap_ok(mounts0 && mounts1 && !strstr(mounts1, top) && !strstr(mounts0, top), "no mounts of ours left");
        free(snap_parent);
        free(snap_child);
        free(snap_cached);
        free(snap_host);
        free(snap_host2);
        free(snap_host3);
        for (int i = 0; i < 10; i++)
                free(cost_snaps[i]);
        close(ws->fd);
        free(ws->root);
        free(ws);
        oci_store_free(s);
        if (!tap_ok(count_fds() == fds0, "no fds left (%zu before, %zu after)", fds0, count_fds())) {
                char *ls[] = { "ls", "-l", "/proc/self/fd/", NULL };
                (void) ls;
                _cleanup_closedir_ DIR *d = opendir("/proc/self/fd");
                struct dirent *de;
                while (d && (de = readdir(d))) {
                        char p[300], t[300] = "";
                        snprintf(p, sizeof p, "/proc/self/fd/%s", de->d_name);
                        ssize_t n = readlink(p, t, sizeof t - 1);
                        if (n > 0)
                                tap_diag("fd %s -> %.*s", de->d_name, (int) n, t);
                }
        }
        rm_rf(top);
        return tap_done();
}
