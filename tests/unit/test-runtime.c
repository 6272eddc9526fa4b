/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The built-in runtime against the real kernel.  Needs root (exit 77
 * otherwise); the rootless half re-executes this binary as an unprivileged
 * user (created if missing) through setpriv, and also runs once with
 * o->rootless as root.  The container rootfs holds only the static
 * tests/init multitool (HM_TEST_INIT, default build/hm-test-init).
 */
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include "lib/strbuf.h"
#include "lib/util.h"
#include "oci/spec.h"
#include "runtime/runtime.h"
#include "tests/unit/tap.h"

extern char **environ;

static const char *init_path;
static bool rootless_mode; /* unprivileged re-exec or o->rootless */
static bool force_rootless;
static char *tmp_root;
static void *bench_bpf; /* precompiled filter, as the ns runner passes it */
static size_t bench_bpf_len;

struct result {
        int status;
        char *out, *err;
        char **notices;
        char *error; /* start error */
};

static void result_release(struct result *r)
{
        free(r->out);
        free(r->err);
        strv_free(r->notices);
        free(r->error);
        *r = (struct result) { 0 };
}

static int copy_file(const char *from, const char *to, mode_t mode)
{
        _cleanup_free_ char *buf = NULL;
        size_t len;
        if (read_file(from, 0, &buf, &len) < 0)
                return -1;
        _cleanup_close_ int fd = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        return fd < 0 ? -1 : write_all(fd, buf, len);
}

static void write_text(const char *path, const char *text)
{
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || write_all(fd, text, strlen(text)) < 0)
                tap_diag("write %s failed", path);
}

static char *make_rootfs(const char *name)
{
        char *dir = xasprintf("%s/%s", tmp_root, name);
        mkdir_p(dir, 0755);
        _cleanup_free_ char *init = xasprintf("%s/init", dir);
        if (copy_file(init_path, init, 0755) < 0)
                tap_diag("copy %s failed", init_path);
        return dir;
}

static struct oci_spec *spec_for(const char *rootfs, const char *const *args)
{
        struct oci_spec *s = oci_spec_new_default();
        strv_free(s->process.args);
        s->process.args = strv_copy((char *const *) args);
        free(s->root.path);
        s->root.path = rootfs ? xstrdup(rootfs) : NULL;
        return s;
}

static void drain(int *fd, struct strbuf *sb)
{
        char buf[4096];
        for (;;) {
                ssize_t n = read(*fd, buf, sizeof buf);
                if (n > 0) {
                        strbuf_add(sb, buf, (size_t) n);
                        continue;
                }
                if (n == 0 || (errno != EAGAIN && errno != EINTR))
                        *fd = -1; /* EOF: stop polling it (the container owns the fd) */
                return;
        }
}

/* Poll the pipes and the pidfd like the scheduler would; kill_after_ms >= 0 sends sig then. */
static void run_loop(struct rt_container *c, struct result *r, int sig, int64_t kill_after_ms)
{
        _cleanup_strbuf_ struct strbuf out = STRBUF_INIT, err = STRBUF_INIT;
        int ofd = rt_container_stdout_fd(c), efd = rt_container_stderr_fd(c);
        bool exited = false;
        int64_t start = now_ms();
        while (!exited || ofd >= 0 || efd >= 0) {
                struct pollfd p[3] = { { rt_container_pidfd(c), POLLIN, 0 }, { ofd, POLLIN, 0 }, { efd, POLLIN, 0 } };
                if (exited)
                        p[0].fd = -1;
                int n = poll(p, 3, 100);
                if (n < 0 && errno != EINTR)
                        break;
                if (kill_after_ms >= 0 && now_ms() - start >= kill_after_ms) {
                        rt_container_kill(c, sig);
                        kill_after_ms = -1;
                }
                if (p[1].revents)
                        drain(&ofd, &out);
                if (p[2].revents)
                        drain(&efd, &err);
                if (p[0].revents & POLLIN)
                        exited = true;
                if (now_ms() - start > 30000)
                        break;
        }
        hm_error_t e = NULL;
        if (rt_container_wait(c, &r->status, &e) < 0) {
                r->error = xstrdup(e->msg);
                hm_error_release(&e);
        }
        r->out = strbuf_detach(&out, NULL);
        r->err = strbuf_detach(&err, NULL);
}

static int run_full(const struct oci_spec *s, const struct rt_overlay *ov, const char *id, int sig, int64_t kill_after,
                    struct result *r)
{
        *r = (struct result) { .status = -1 };
        struct rt_start_options o = { .rootfs_overlay = ov, .capture_output = true, .stdin_fd = -1, .id = id,
                                      .rootless = force_rootless, .seccomp_bpf = bench_bpf,
                                      .seccomp_bpf_len = bench_bpf_len };
        struct rt_container *c = NULL;
        hm_error_t e = NULL;
        if (rt_container_start(s, &o, &c, &e) < 0) {
                r->error = xstrdup(e->msg);
                hm_error_release(&e);
                return -1;
        }
        for (const char *const *n = rt_container_notices(c); *n; n++)
                strv_push(&r->notices, *n);
        run_loop(c, r, sig, kill_after);
        rt_container_free(c);
        return r->error ? -1 : 0;
}

static int run(const char *rootfs, const char *const *args, struct result *r)
{
        _cleanup_oci_spec_ struct oci_spec *s = spec_for(rootfs, args);
        return run_full(s, NULL, "hm-test", 0, -1, r);
}

/* ---- leak checks ---- */

static int count_fds(void)
{
        int n = 0;
        _cleanup_closedir_ DIR *d = opendir("/proc/self/fd");
        while (d && readdir(d))
                n++;
        return n;
}

static char *mountinfo(void)
{
        char *buf = NULL;
        read_file("/proc/self/mountinfo", 0, &buf, NULL);
        return buf ? buf : xstrdup("");
}

static bool no_children(void)
{
        return waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD;
}

/* ---- cases ---- */

static void test_identity(const char *rootfs)
{
        struct result r;
        run(rootfs, (const char *[]) { "/init", "pid", NULL }, &r);
        TAP_IS_STR(r.out, "pid=2 ppid=1\n", "the command is pid 2 under our pid 1%s", r.error ? r.error : "");
        result_release(&r);

        run(rootfs, (const char *[]) { "/init", "hostname", NULL }, &r);
        TAP_IS_STR(r.out, "hm-test\n", "hostname defaults to the container id");
        result_release(&r);

        run(rootfs, (const char *[]) { "/init", "id", NULL }, &r);
        TAP_IS_STR(r.out, "uid=0 gid=0 euid=0 egid=0 groups=\n", "root inside, no supplementary groups");
        result_release(&r);

        run(rootfs, (const char *[]) { "/init", "fds", NULL }, &r);
        tap_ok(r.out && !strstr(r.out, "\n3 "), "only fds 0-2 reach the command");
        if (r.out && strstr(r.out, "\n3 "))
                tap_diag("%s", r.out);
        result_release(&r);
}

static void test_security(const char *rootfs)
{
        struct result r;
        run(rootfs, (const char *[]) { "/init", "caps", NULL }, &r);
        char want[64];
        snprintf(want, sizeof want, "CapEff:\t%016" PRIx64 "\n", oci_default_capabilities());
        tap_ok(r.out && strstr(r.out, want), "CapEff is the default set (%s)", strtok(want, "\n"));
        snprintf(want, sizeof want, "CapBnd:\t%016" PRIx64 "\n", oci_default_capabilities());
        tap_ok(r.out && strstr(r.out, want), "CapBnd is the default set");
        tap_ok(r.out && strstr(r.out, "CapInh:\t0000000000000000") && strstr(r.out, "CapAmb:\t0000000000000000"),
               "no inheritable or ambient capabilities");
        tap_ok(r.out && strstr(r.out, "NoNewPrivs:\t1\n"), "NoNewPrivs 1");
        tap_ok(r.out && strstr(r.out, "Seccomp:\t2\n"), "Seccomp 2 (filter)");
        if (!r.out || !strstr(r.out, "Seccomp:\t2"))
                tap_diag("%s %s", r.out ? r.out : "", r.error ? r.error : "");
        result_release(&r);

        static const char *const cases[][2] = {
                { "mount", "EPERM" },   { "unshare", "EPERM" },     { "keyctl", "EPERM" },
                { "setns", "EPERM" },   { "ptrace", "EPERM" },      { "pivot_root", "EPERM" },
                { "reboot", "EPERM" },  { "init_module", "EPERM" }, { "bpf", "EPERM" },
                { "clone3", "ENOSYS" }, { "clone-newns", "EPERM" }, { "personality", "ENOSYS" /* denied by default */ },
                { "getpid", "ok" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                run(rootfs, (const char *[]) { "/init", "try-syscall", cases[i][0], NULL }, &r);
                _cleanup_free_ char *w = xasprintf("%s: %s\n", cases[i][0], cases[i][1]);
                TAP_IS_STR(r.out, w, "seccomp: %s -> %s", cases[i][0], cases[i][1]);
                result_release(&r);
        }

        _cleanup_free_ char *host = NULL;
        read_file("/proc/timer_list", 0, &host, NULL);
        run(rootfs, (const char *[]) { "/init", "cat", "/proc/timer_list", NULL }, &r);
        tap_ok(r.status == 0 && r.out && !*r.out && (rootless_mode || (host && *host)),
               "masked /proc/timer_list reads empty (host: %zu bytes)", host ? strlen(host) : 0);
        result_release(&r);

        run(rootfs, (const char *[]) { "/init", "write", "/proc/sys/kernel/hostname", "x", NULL }, &r);
        TAP_IS_STR(r.out, "write /proc/sys/kernel/hostname: Read-only file system\n", "/proc/sys is read-only");
        result_release(&r);
}

static void test_exit_codes(const char *rootfs)
{
        struct result r;
        run(rootfs, (const char *[]) { "/init", "true", NULL }, &r);
        tap_ok(r.status == 0, "exit 0 (got %d)", r.status);
        result_release(&r);
        run(rootfs, (const char *[]) { "/init", "exit", "7", NULL }, &r);
        tap_ok(r.status == 7, "exit 7 (got %d)", r.status);
        result_release(&r);

        _cleanup_oci_spec_ struct oci_spec *s = spec_for(rootfs, (const char *[]) { "/init", "sleep", "30", NULL });
        run_full(s, NULL, "hm-kill", SIGKILL, 200, &r);
        tap_ok(r.status == 137, "SIGKILL to pid 1: 137 (got %d)", r.status);
        result_release(&r);
        run_full(s, NULL, "hm-term", SIGTERM, 200, &r);
        tap_ok(r.status == 143, "SIGTERM forwarded by pid 1: 143 (got %d)", r.status);
        result_release(&r);

        run(rootfs, (const char *[]) { "/init", "stderr", "to-stderr", NULL }, &r);
        TAP_IS_STR(r.err, "to-stderr\n", "stderr captured through its pipe");
        TAP_IS_STR(r.out, "", "stdout stays separate");
        result_release(&r);
        run(rootfs, (const char *[]) { "/init", "echo", "hello", "world", NULL }, &r);
        TAP_IS_STR(r.out, "hello world\n", "stdout captured through its pipe");
        result_release(&r);
}

static void test_setup_errors(const char *rootfs)
{
        struct result r;
        run(rootfs, (const char *[]) { "/nonexistent", NULL }, &r);
        TAP_IS_STR(r.error, "exec '/nonexistent': No such file or directory", "missing binary names the step");
        result_release(&r);

        run(rootfs, (const char *[]) { "nosuchcmd", NULL }, &r);
        TAP_IS_STR(r.error, "exec 'nosuchcmd': No such file or directory", "PATH search in the container");
        result_release(&r);

        _cleanup_oci_spec_ struct oci_spec *s = spec_for(rootfs, (const char *[]) { "/init", "true", NULL });
        free(s->process.cwd);
        s->process.cwd = xstrdup("/no/such/dir");
        run_full(s, NULL, "hm-cwd", 0, -1, &r);
        TAP_IS_STR(r.error, "chdir to cwd '/no/such/dir': No such file or directory", "bad cwd names the step");
        result_release(&r);

        _cleanup_oci_spec_ struct oci_spec *s2 = spec_for(rootfs, (const char *[]) { "/init", "true", NULL });
        free(s2->mounts[0].type);
        s2->mounts[0].type = xstrdup("nosuchfs");
        run_full(s2, NULL, "hm-mnt", 0, -1, &r);
        TAP_IS_STR(r.error, "mount nosuchfs on '/proc': No such device", "failed mount names fs and target");
        result_release(&r);

        _cleanup_oci_spec_ struct oci_spec *s3 = spec_for("/no/rootfs", (const char *[]) { "/init", "true", NULL });
        run_full(s3, NULL, "hm-root", 0, -1, &r);
        TAP_IS_STR(r.error, "root.path '/no/rootfs': No such file or directory", "missing rootfs is refused before clone");
        result_release(&r);
}

static void test_overlay(void)
{
        _cleanup_free_ char *top = make_rootfs("ov-top"), *low = xasprintf("%s/ov-low", tmp_root);
        _cleanup_free_ char *upper = xasprintf("%s/ov-upper", tmp_root), *work = xasprintf("%s/ov-work", tmp_root);
        mkdir_p(low, 0755);
        mkdir_p(upper, 0755);
        mkdir_p(work, 0755);
        _cleanup_free_ char *a_top = xasprintf("%s/a", top), *a_low = xasprintf("%s/a", low), *b_low = xasprintf("%s/b", low);
        write_text(a_top, "top\n");
        write_text(a_low, "bottom\n");
        write_text(b_low, "low\n");
        char *lower[] = { top, low, NULL };
        struct rt_overlay ov = { lower, upper, work };
        _cleanup_oci_spec_ struct oci_spec *s = spec_for(NULL, (const char *[]) { "/init", "cat", "/a", NULL });
        struct result r;
        run_full(s, &ov, "hm-ov", 0, -1, &r);
        TAP_IS_STR(r.out, "top\n", "overlay: the top layer wins%s", r.error ? r.error : "");
        result_release(&r);
        strv_free(s->process.args);
        s->process.args = strv_copy((char *[]) { "/init", "cat", "/b", NULL });
        run_full(s, &ov, "hm-ov", 0, -1, &r);
        TAP_IS_STR(r.out, "low\n", "overlay: lower layers show through");
        result_release(&r);
        strv_free(s->process.args);
        s->process.args = strv_copy((char *[]) { "/init", "write", "/new", "hello\n", NULL });
        run_full(s, &ov, "hm-ov", 0, -1, &r);
        _cleanup_free_ char *in_upper = NULL, *p_up = xasprintf("%s/new", upper), *p_top = xasprintf("%s/new", top);
        read_file(p_up, 0, &in_upper, NULL);
        TAP_IS_STR(in_upper, "hello\n", "overlay: writes land in upper");
        tap_ok(access(p_top, F_OK) < 0, "overlay: lower layers untouched");
        result_release(&r);
}

/* Host network in a user ns: sysfs cannot be mounted, a read-only rbind replaces it. */
static void test_sysfs_fallback(const char *rootfs)
{
        _cleanup_oci_spec_ struct oci_spec *s = spec_for(rootfs, (const char *[]) { "/init", "write", "/sys/kernel/hm", "x", NULL });
        struct oci_linux *l = &s->linux_;
        for (size_t i = 0; i < l->n_namespaces; i++)
                if (l->namespaces[i].type == OCI_NS_NETWORK)
                        l->namespaces[i] = l->namespaces[--l->n_namespaces];
        struct result r;
        run_full(s, NULL, "hm-hostnet", 0, -1, &r);
        bool found = false;
        for (char **n = r.notices; n && *n; n++)
                if (str_has_prefix(*n, "sysfs: ")) {
                        found = true;
                        tap_diag("notice: %s", *n);
                }
        tap_ok(found, "rootless + host network: the sysfs fallback is reported%s", r.error ? r.error : "");
        TAP_IS_STR(r.out, "write /sys/kernel/hm: Read-only file system\n", "the host's /sys is bound read-only");
        result_release(&r);
}

static bool exists(const char *path) { return access(path, F_OK) == 0; }

static void test_cgroups(const char *rootfs)
{
        _cleanup_oci_spec_ struct oci_spec *s = spec_for(rootfs, (const char *[]) { "/init", "forkbomb", "64", NULL });
        s->linux_.resources.pids_limit = 16;
        s->linux_.resources.pids_limit_present = true;
        struct result r;
        run_full(s, NULL, "hm-pids", 0, -1, &r);
        int forked = -1;
        if (r.out)
                sscanf(r.out, "forked %d", &forked);
        if (rootless_mode) {
                bool found = false;
                for (char **n = r.notices; n && *n; n++)
                        if (str_has_prefix(*n, "cgroups:") && strstr(*n, "RLIMIT_NPROC")) {
                                found = true;
                                tap_diag("notice: %s", *n);
                        }
                tap_ok(found, "rootless: the pids limit falls back to RLIMIT_NPROC, reported as a notice");
                /* the kernel exempts the real root user from RLIMIT_NPROC: only meaningful unprivileged */
                if (getuid() != 0)
                        tap_ok(forked >= 0 && forked < 16, "rootless: RLIMIT_NPROC caps the fork bomb (%d forks)", forked);
        } else {
                /* 16 = pid 1 + the command + 14 forks */
                tap_ok(forked == 14, "pids limit 16 caps a fork bomb at 14 forks (got %d) %s", forked, r.error ? r.error : "");
                tap_ok(!exists("/sys/fs/cgroup/pids/hm/hm-pids") && !exists("/sys/fs/cgroup/devices/hm/hm-pids"),
                       "no cgroup directory left");
        }
        result_release(&r);

        if (rootless_mode)
                return;
        /* a device outside the allow-list cannot be opened even with CAP_MKNOD (the host disk here) */
        struct stat st;
        if (stat("/dev/vda", &st) < 0 && stat("/dev/sda", &st) < 0 && stat("/dev/loop0", &st) < 0) {
                tap_ok(true, "# SKIP no block device to try");
                return;
        }
        char maj[16], min[16];
        snprintf(maj, sizeof maj, "%u", major(st.st_rdev));
        snprintf(min, sizeof min, "%u", minor(st.st_rdev));
        _cleanup_oci_spec_ struct oci_spec *s2 =
                spec_for(rootfs, (const char *[]) { "/init", "mknod-open", "/disk", "b", maj, min, NULL });
        run_full(s2, NULL, "hm-dev", 0, -1, &r);
        TAP_IS_STR(r.out, "mknod: ok\nopen: EPERM\n", "devices cgroup: a host disk node made with CAP_MKNOD cannot be opened");
        result_release(&r);
        _cleanup_oci_spec_ struct oci_spec *s3 = spec_for(rootfs, (const char *[]) { "/init", "mknod-open", "/nul", "c", "1", "3", NULL });
        run_full(s3, NULL, "hm-dev", 0, -1, &r);
        TAP_IS_STR(r.out, "mknod: ok\nopen: ok\n", "devices cgroup: the standard nodes stay usable");
        result_release(&r);
}

/* ---- OCI fields: linux.devices, rootfsPropagation, cpu.cpus, pid ns by path, terminal ---- */

static char *line_with(const char *text, const char *needle)
{
        const char *h = text ? strstr(text, needle) : NULL;
        if (!h)
                return xstrdup("");
        while (h > text && h[-1] != '\n')
                h--;
        return xstrndup(h, strcspn(h, "\n"));
}

/* the mountinfo line whose mount point (field 5) is "/" */
static char *root_mount_line(const char *mountinfo)
{
        for (const char *l = mountinfo; l && *l; l += strcspn(l, "\n") + (l[strcspn(l, "\n")] ? 1 : 0)) {
                _cleanup_free_ char *line = xstrndup(l, strcspn(l, "\n"));
                char *save = NULL, *f = strtok_r(line, " ", &save);
                for (int i = 1; f && i < 5; i++)
                        f = strtok_r(NULL, " ", &save);
                if (f && !strcmp(f, "/"))
                        return xstrndup(l, strcspn(l, "\n"));
        }
        return xstrdup("");
}

static void test_devices(const char *rootfs)
{
        _cleanup_free_ char *node = xasprintf("%s/devtest/null2", rootfs), *fifo = xasprintf("%s/devtest/fifo", rootfs);
        _cleanup_free_ char *dir = xasprintf("%s/devtest", rootfs);
        tap_ok(!exists(node) && !exists(fifo), "devices: no node before the run (control)");
        _cleanup_oci_spec_ struct oci_spec *s = spec_for(rootfs, (const char *[]) { "/init", "true", NULL });
        s->linux_.devices = xcalloc(2, sizeof *s->linux_.devices);
        s->linux_.n_devices = 2;
        s->linux_.devices[0] = (struct oci_device) { .path = xstrdup("/devtest/fifo"), .type = 'p', .file_mode = 0604,
                                                     .file_mode_present = true };
        s->linux_.devices[1] = (struct oci_device) { .path = xstrdup("/devtest/null2"), .type = 'c', .major = 1, .minor = 3,
                                                     .file_mode = 0640, .file_mode_present = true, .uid = 7, .uid_present = true,
                                                     .gid = 9, .gid_present = true };
        struct result r;
        run_full(s, NULL, "hm-dev", 0, -1, &r);
        struct stat st;
        if (rootless_mode) {
                /* mknod of a char device is refused in a user ns; the host has no /devtest/null2 to bind */
                TAP_IS_STR(r.error,
                           "device '/devtest/null2': mknod is not permitted in a user namespace and the host has no such node to bind: "
                           "No such device",
                           "devices (user ns): no host node to bind -> one-line error naming the device");
                tap_ok(stat(fifo, &st) == 0 && S_ISFIFO(st.st_mode) && (st.st_mode & 07777) == 0604,
                       "devices (user ns): a fifo is made with its mode");
        } else {
                tap_ok(r.status == 0 && !r.error, "devices: the container ran%s%s", r.error ? ": " : "", r.error ? r.error : "");
                tap_ok(stat(node, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 3 &&
                               (st.st_mode & 07777) == 0640 && st.st_uid == 7 && st.st_gid == 9,
                       "devices: c 1:3 made with mode 0640 (umask not applied), uid 7, gid 9");
                tap_ok(stat(fifo, &st) == 0 && S_ISFIFO(st.st_mode) && (st.st_mode & 07777) == 0604, "devices: a fifo, mode 0604");
        }
        result_release(&r);
        unlink(node);
        unlink(fifo);
        rmdir(dir);
}

static void test_propagation(const char *rootfs)
{
        struct result r;
        _cleanup_oci_spec_ struct oci_spec *s = spec_for(rootfs, (const char *[]) { "/init", "cat", "/proc/self/mountinfo", NULL });
        run_full(s, NULL, "hm-prop", 0, -1, &r);
        _cleanup_free_ char *deflt = root_mount_line(r.out);
        tap_ok(*deflt && !strstr(deflt, "shared:") && !strstr(deflt, "master:"), "rootfsPropagation unset: '/' private (control): %s",
               deflt);
        result_release(&r);
        s->linux_.rootfs_propagation = MS_SHARED | MS_REC;
        run_full(s, NULL, "hm-prop", 0, -1, &r);
        _cleanup_free_ char *shared = root_mount_line(r.out);
        tap_ok(strstr(shared, "shared:") != NULL, "rootfsPropagation rshared: '/' is shared: %s", shared);
        /* slave of the host's tree, and not one of its peers: nothing propagates back */
        tap_ok(!r.error, "rshared run%s%s", r.error ? ": " : "", r.error ? r.error : "");
        result_release(&r);
        s->linux_.rootfs_propagation = MS_SLAVE | MS_REC;
        run_full(s, NULL, "hm-prop", 0, -1, &r);
        _cleanup_free_ char *slave = root_mount_line(r.out);
        /* a slave of the host's mount only when that one is shared (here: '/', the rootfs is on it) */
        _cleanup_free_ char *host_info = mountinfo();
        _cleanup_free_ char *host_root = root_mount_line(host_info);
        bool host_shared = strstr(host_root, "shared:") != NULL;
        tap_ok(!strstr(slave, "shared:") && (!host_shared || strstr(slave, "master:")),
               "rootfsPropagation rslave: '/' is not shared%s: %s", host_shared ? " and a slave of the host's" : "", slave);
        result_release(&r);
}

static void test_cpuset(const char *rootfs)
{
        if (rootless_mode || !exists("/sys/fs/cgroup/cpuset/cpuset.cpus") || sysconf(_SC_NPROCESSORS_ONLN) < 2) {
                tap_ok(true, "# SKIP cpuset: root, a v1 cpuset hierarchy and 2 cpus needed");
                return;
        }
        struct result r;
        _cleanup_oci_spec_ struct oci_spec *s = spec_for(rootfs, (const char *[]) { "/init", "cat", "/proc/self/status", NULL });
        run_full(s, NULL, "hm-cpuset", 0, -1, &r);
        _cleanup_free_ char *all = line_with(r.out, "Cpus_allowed_list:");
        tap_ok(strcmp(all, "Cpus_allowed_list:\t0") != 0, "cpu.cpus unset: more than cpu 0 (control): %s", all);
        result_release(&r);
        s->linux_.resources.cpu_cpus = xstrdup("0");
        s->linux_.resources.cpu_mems = xstrdup("0");
        run_full(s, NULL, "hm-cpuset", 0, -1, &r);
        _cleanup_free_ char *one = line_with(r.out, "Cpus_allowed_list:");
        TAP_IS_STR(one, "Cpus_allowed_list:\t0", "cpu.cpus \"0\": the command may run on cpu 0 only");
        tap_ok(!exists("/sys/fs/cgroup/cpuset/hm/hm-cpuset"), "no cpuset cgroup left");
        result_release(&r);
}

static void test_pidns_join(const char *rootfs)
{
        if (rootless_mode) {
                _cleanup_oci_spec_ struct oci_spec *s = spec_for(rootfs, (const char *[]) { "/init", "pid", NULL });
                for (size_t i = 0; i < s->linux_.n_namespaces; i++)
                        if (s->linux_.namespaces[i].type == OCI_NS_PID)
                                s->linux_.namespaces[i].path = xstrdup("/proc/1/ns/pid");
                struct result r;
                run_full(s, NULL, "hm-pidjoin", 0, -1, &r);
                tap_ok(r.error && strstr(r.error, ".path: joining an existing 'pid' namespace is not supported with a new user namespace"),
                       "pid ns by path with a user ns: refused naming the field (%s)", r.error ? r.error : "no error");
                result_release(&r);
                return;
        }
        pid_t holder;
        char *argv[] = { "unshare", "--pid", "--fork", "--kill-child", "sleep", "60", NULL };
        if (posix_spawnp(&holder, "unshare", NULL, NULL, argv, environ) != 0) {
                tap_ok(true, "# SKIP unshare(1) not available");
                return;
        }
        _cleanup_free_ char *path = xasprintf("/proc/%d/ns/pid_for_children", (int) holder);
        char own[64] = "", theirs[64] = "";
        readlink("/proc/self/ns/pid", own, sizeof own - 1);
        for (int i = 0; i < 500 && (readlink(path, theirs, sizeof theirs - 1) < 0 || !strcmp(own, theirs)); i++)
                nanosleep(&(struct timespec) { 0, 2000000 }, NULL);
        _cleanup_oci_spec_ struct oci_spec *s = spec_for(rootfs, (const char *[]) { "/init", "pid", NULL });
        struct result r;
        run_full(s, NULL, "hm-pidjoin", 0, -1, &r);
        TAP_IS_STR(r.out, "pid=2 ppid=1\n", "own pid ns (control): the command is pid 2 under our init");
        result_release(&r);
        for (size_t i = 0; i < s->linux_.n_namespaces; i++)
                if (s->linux_.namespaces[i].type == OCI_NS_PID)
                        s->linux_.namespaces[i].path = xstrdup(path);
        run_full(s, NULL, "hm-pidjoin", 0, -1, &r);
        /* pid 1 there is sleep; our init is 2, the command 3 */
        TAP_IS_STR(r.out, "pid=3 ppid=2\n", "pid ns joined by path: init and command are inside it%s%s", r.error ? ": " : "",
                   r.error ? r.error : "");
        result_release(&r);
        char after[64] = "";
        readlink("/proc/self/ns/pid_for_children", after, sizeof after - 1);
        TAP_IS_STR(after, own, "the runtime stepped back into its own pid namespace for later children");
        kill(holder, SIGKILL);
        waitpid(holder, NULL, 0);
}

static void test_terminal(const char *rootfs)
{
        _cleanup_oci_spec_ struct oci_spec *s = spec_for(rootfs, (const char *[]) { "/init", "echo", "on-the-pty", NULL });
        s->process.terminal = true;
        struct result r;
        run_full(s, NULL, "hm-tty", 0, -1, &r);
        TAP_IS_STR(r.error, "process.terminal: needs a console socket (--console-socket PATH)",
                   "terminal without a console socket: refused");
        result_release(&r);

        _cleanup_free_ char *sock = xasprintf("%s/console.sock", tmp_root);
        _cleanup_close_ int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
        if (lfd < 0 || bind(lfd, (struct sockaddr *) &sa, sizeof sa) < 0 || listen(lfd, 1) < 0) {
                tap_ok(false, "console socket: listen on %s: %s", sock, strerror(errno));
                return;
        }
        struct rt_start_options o = { .capture_output = true, .stdin_fd = -1, .id = "hm-tty", .rootless = force_rootless,
                                      .console_socket = sock };
        struct rt_container *c = NULL;
        hm_error_t e = NULL;
        int rc = rt_container_start(s, &o, &c, &e);
        tap_ok(rc == 0, "terminal with a console socket: started%s%s", e ? ": " : "", e ? e->msg : "");
        hm_error_release(&e);
        if (rc < 0) {
                unlink(sock);
                return;
        }
        _cleanup_close_ int conn = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        char name[64] = "";
        union {
                char buf[CMSG_SPACE(sizeof(int))];
                struct cmsghdr align;
        } u;
        struct iovec iov = { name, sizeof name - 1 };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
        int master = -1;
        if (conn >= 0 && recvmsg(conn, &mh, MSG_CMSG_CLOEXEC) > 0) {
                struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
                if (cm && cm->cmsg_type == SCM_RIGHTS)
                        memcpy(&master, CMSG_DATA(cm), sizeof(int));
        }
        tap_ok(master >= 0 && isatty(master), "the pty master arrives over the console socket (SCM_RIGHTS, '%s')", name);
        run_loop(c, &r, 0, -1);
        rt_container_free(c);
        _cleanup_strbuf_ struct strbuf out = STRBUF_INIT;
        char buf[256];
        ssize_t n;
        while (master >= 0 && (n = read(master, buf, sizeof buf)) > 0)
                strbuf_add(&out, buf, (size_t) n);
        bool on_pty = strstr(out.buf ? out.buf : "", "on-the-pty\r\n") != NULL; /* the tty's ONLCR: a real terminal */
        tap_ok(on_pty && !strstr(r.out ? r.out : "", "on-the-pty"), "the command writes to the pty (CRLF), not to the stdout pipe");
        safe_close(master);
        result_release(&r);
        unlink(sock);
}

/* root + a user namespace whose root is uid 1000 on the host, bundle below a 0700 directory */
static void test_userns_private_dir(void)
{
        if (rootless_mode) {
                tap_ok(true, "# SKIP userns rootfs below a 0700 dir: root only");
                return;
        }
        _cleanup_free_ char *dir = xasprintf("%s/private", tmp_root);
        mkdir(dir, 0700);
        char *saved = tmp_root; /* make_rootfs works below tmp_root */
        tmp_root = dir;
        _cleanup_free_ char *rootfs = make_rootfs("rootfs");
        tmp_root = saved;
        /* the image's mount points exist: the namespace's root may not create them in a host-owned dir */
        static const char *const points[] = { "proc", "dev", "sys", "tmp" };
        for (size_t i = 0; i < ARRAY_SIZE(points); i++) {
                _cleanup_free_ char *d = xasprintf("%s/%s", rootfs, points[i]);
                mkdir(d, 0755);
        }
        /* control: uid 1000 on the host cannot reach it */
        pid_t pid = fork();
        if (pid == 0) {
                if (setresgid(1000, 1000, 1000) < 0 || setresuid(1000, 1000, 1000) < 0)
                        _exit(2);
                _exit(access(rootfs, X_OK) < 0 && errno == EACCES ? 0 : 1);
        }
        int st = -1;
        waitpid(pid, &st, 0);
        tap_ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "host uid 1000 cannot reach a rootfs below a 0700 dir (control)");
        _cleanup_oci_spec_ struct oci_spec *s = spec_for(rootfs, (const char *[]) { "/init", "cat", "/proc/self/uid_map", NULL });
        s->linux_.namespaces = xrealloc(s->linux_.namespaces, (s->linux_.n_namespaces + 1) * sizeof *s->linux_.namespaces);
        s->linux_.namespaces[s->linux_.n_namespaces++] = (struct oci_namespace) { .type = OCI_NS_USER };
        s->linux_.uid_mappings = xcalloc(1, sizeof *s->linux_.uid_mappings);
        s->linux_.uid_mappings[0] = (struct oci_id_mapping) { 0, 1000, 2000 };
        s->linux_.n_uid_mappings = 1;
        s->linux_.gid_mappings = xcalloc(1, sizeof *s->linux_.gid_mappings);
        s->linux_.gid_mappings[0] = (struct oci_id_mapping) { 0, 1000, 2000 };
        s->linux_.n_gid_mappings = 1;
        struct result r;
        run_full(s, NULL, "hm-private", 0, -1, &r);
        tap_ok(r.status == 0 && r.out && strstr(r.out, "0       1000       2000"),
               "user ns root = host uid 1000 runs a rootfs below a 0700 dir (cloned with its cwd there)%s%s",
               r.error ? ": " : "", r.error ? r.error : "");
        result_release(&r);
}

static void bench1(const char *rootfs, const char *label)
{
        int64_t t[50];
        for (int i = 0; i < 50; i++) {
                struct result r;
                int64_t s0 = now_ms();
                struct timespec a, b;
                clock_gettime(CLOCK_MONOTONIC, &a);
                run(rootfs, (const char *[]) { "/init", "true", NULL }, &r);
                clock_gettime(CLOCK_MONOTONIC, &b);
                (void) s0;
                t[i] = (b.tv_sec - a.tv_sec) * 1000000 + (b.tv_nsec - a.tv_nsec) / 1000;
                result_release(&r);
        }
        for (int i = 0; i < 50; i++)
                for (int j = i + 1; j < 50; j++)
                        if (t[j] < t[i]) {
                                int64_t x = t[i];
                                t[i] = t[j];
                                t[j] = x;
                        }
        tap_diag("bench %s: init true start->exit median %.2f ms (min %.2f, max %.2f) over 50", label, t[25] / 1000.0,
                 t[0] / 1000.0, t[49] / 1000.0);
}

static void bench(const char *rootfs, const char *label)
{
        bench1(rootfs, label);
        _cleanup_oci_spec_ struct oci_spec *s = oci_spec_new_default();
        hm_error_t e = NULL;
        if (rt_seccomp_compile(s->linux_.seccomp, &bench_bpf, &bench_bpf_len, &e) < 0) {
                hm_error_release(&e);
                return;
        }
        _cleanup_free_ char *l = xasprintf("%s, seccomp precompiled", label);
        bench1(rootfs, l);
        free(bench_bpf);
        bench_bpf = NULL;
        bench_bpf_len = 0;
}


/* ---- hardening (tests/security has the full attack suite) ---- */

static void test_hardening(const char *rootfs)
{
        struct result r;
        /* pid 1 is non-dumpable: its exe (hm on the host) and mem are out of reach */
        run(rootfs, (const char *[]) { "/init", "attack", "proc-exe", "1", "exe", "r", NULL }, &r);
        tap_ok(r.out && strstr(r.out, "VERDICT: BLOCKED open /proc/1/exe (r): EACCES"), "/proc/1/exe: EACCES");
        if (!r.out || !strstr(r.out, "EACCES"))
                tap_diag("%s %s", r.out ? r.out : "", r.error ? r.error : "");
        result_release(&r);
        run(rootfs, (const char *[]) { "/init", "attack", "proc-exe", "1", "mem", "rw", NULL }, &r);
        tap_ok(r.out && strstr(r.out, "VERDICT: BLOCKED open /proc/1/mem (rw): EACCES"), "/proc/1/mem: EACCES");
        result_release(&r);
        run(rootfs, (const char *[]) { "/init", "cat", "/proc/1/status", NULL }, &r);
        tap_ok(r.out && strstr(r.out, "CapBnd:\t0000000000000000\n"), "pid 1 has an empty bounding set");
        result_release(&r);

        /* CVE-2024-21626: a cwd through a leaked host fd is refused; an open dir fd stands in for the leak */
        _cleanup_close_ int leak = open(tmp_root, O_RDONLY | O_DIRECTORY); /* deliberately not CLOEXEC */
        _cleanup_free_ char *cwd = xasprintf("/proc/self/fd/%d", leak);
        _cleanup_oci_spec_ struct oci_spec *s = spec_for(rootfs, (const char *[]) { "/init", "ls", ".", NULL });
        free(s->process.cwd);
        s->process.cwd = xstrdup(cwd);
        run_full(s, NULL, "hm-test", 0, -1, &r);
        tap_ok(r.error && strstr(r.error, "chdir to cwd") && !r.out, "cwd %s is refused (%s)", cwd,
               r.error ? r.error : "started!");
        result_release(&r);

        /* a symlinked cwd is resolved inside the root */
        _cleanup_free_ char *link = xasprintf("%s/up", rootfs);
        (void) symlink("../../../../..", link);
        free(s->process.cwd);
        s->process.cwd = xstrdup("/up");
        free(s->process.args[2]);
        s->process.args[2] = NULL;
        free(s->process.args[1]);
        s->process.args[1] = xstrdup("pid");
        run_full(s, NULL, "hm-test", 0, -1, &r);
        tap_ok(r.status == 0 && !r.error, "a cwd symlink climbing out stays at the container root");
        result_release(&r);
        unlink(link);

        /* read-only root, tmpfs /tmp, another user and capability changes through the run options */
        _cleanup_oci_spec_ struct oci_spec *o = spec_for(rootfs, (const char *[]) { "/init", "write", "/x", NULL });
        char *add[] = { "sys_ptrace", NULL }, *drop[] = { "CAP_NET_RAW", "chown", NULL };
        struct oci_run_options ro = { .cap_add = add, .cap_drop = drop, .readonly_rootfs = true, .tmpfs_tmp = true };
        hm_error_t e = NULL;
        tap_ok(oci_spec_apply_run_options(o, &ro, &e) == 0, "run options apply");
        run_full(o, NULL, "hm-test", 0, -1, &r);
        TAP_IS_STR(r.out, "write /x: Read-only file system\n", "--read-only: '/' is read-only");
        result_release(&r);
        free(o->process.args[2]);
        o->process.args[2] = xstrdup("/tmp/x");
        run_full(o, NULL, "hm-test", 0, -1, &r);
        TAP_IS_STR(r.out, "write /tmp/x: ok\n", "--tmpfs-tmp: /tmp stays writable");
        result_release(&r);
        free(o->process.args[1]);
        o->process.args[1] = xstrdup("caps");
        free(o->process.args[2]);
        o->process.args[2] = NULL;
        run_full(o, NULL, "hm-test", 0, -1, &r);
        uint64_t want = (oci_default_capabilities() | (UINT64_C(1) << 19)) & ~((UINT64_C(1) << 13) | 1);
        char line[64];
        snprintf(line, sizeof line, "CapEff:\t%016" PRIx64 "\n", want);
        tap_ok(r.out && strstr(r.out, line), "cap-add SYS_PTRACE, cap-drop NET_RAW,CHOWN: %s", strtok(line, "\n"));
        snprintf(line, sizeof line, "CapBnd:\t%016" PRIx64 "\n", want);
        tap_ok(r.out && strstr(r.out, line) && strstr(r.out, "CapInh:\t0000000000000000"), "bounding matches, inheritable empty");
        result_release(&r);

        if (!rootless_mode) { /* a rootless user ns maps only one id */
                _cleanup_oci_spec_ struct oci_spec *u = spec_for(rootfs, (const char *[]) { "/init", "id", NULL });
                struct oci_run_options uo = { .user = "65534:65534" };
                tap_ok(oci_spec_apply_run_options(u, &uo, &e) == 0, "--user 65534:65534 applies");
                run_full(u, NULL, "hm-test", 0, -1, &r);
                TAP_IS_STR(r.out, "uid=65534 gid=65534 euid=65534 egid=65534 groups=\n", "the step runs as 65534:65534");
                result_release(&r);
        }
}

/* Docker-format profile: includes/excludes decided against the caps, then compiled and loaded */
static void test_seccomp_profiles(const char *rootfs)
{
        static const char docker[] =
                "{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"defaultErrnoRet\":1,"
                "\"archMap\":[{\"architecture\":\"SCMP_ARCH_X86_64\",\"subArchitectures\":[\"SCMP_ARCH_X86\"]},"
                "{\"architecture\":\"SCMP_ARCH_AARCH64\",\"subArchitectures\":[\"SCMP_ARCH_ARM\"]}],"
                "\"syscalls\":[{\"names\":[\"read\",\"write\",\"exit\",\"exit_group\",\"execve\",\"brk\",\"mmap\","
                "\"arch_prctl\",\"set_tid_address\",\"set_robust_list\",\"rseq\",\"prlimit64\",\"mprotect\","
                "\"getrandom\",\"readlinkat\",\"uname\",\"newfstatat\",\"fstat\",\"ioctl\",\"getpid\",\"getppid\","
                "\"close\",\"munmap\"],\"action\":\"SCMP_ACT_ALLOW\",\"comment\":\"base\"},"
                "{\"name\":\"getuid\",\"action\":\"SCMP_ACT_ALLOW\",\"includes\":{\"caps\":[\"CAP_SYS_ADMIN\"]}},"
                "{\"names\":[\"getgid\"],\"action\":\"SCMP_ACT_ALLOW\",\"excludes\":{\"caps\":[\"CAP_KILL\"]}},"
                "{\"names\":[\"getegid\"],\"action\":\"SCMP_ACT_ALLOW\",\"includes\":{\"minKernel\":\"4.8\"}},"
                "{\"names\":[\"personality\"],\"action\":\"SCMP_ACT_ALLOW\",\"args\":[{\"index\":0,\"value\":8,"
                "\"valueTwo\":0,\"op\":\"SCMP_CMP_EQ\"}]}]}";
        struct oci_seccomp *sc = NULL;
        hm_error_t e = NULL;
        int r = oci_seccomp_profile_parse(docker, strlen(docker), "docker.json", oci_default_capabilities(), &sc, &e);
        tap_ok(r == 0, "a Docker-format profile parses%s%s", e ? ": " : "", e ? e->msg : "");
        hm_error_release(&e);
        if (r < 0)
                return;
        tap_ok(sc->default_action == OCI_SECCOMP_ERRNO && sc->default_errno_ret == 1, "defaultAction/defaultErrnoRet");
        tap_ok(sc->n_syscalls == 3, "includes caps SYS_ADMIN and excludes caps KILL drop two rules (%zu left)", sc->n_syscalls);
        tap_ok(sc->architectures && !strcmp(sc->architectures[0], "SCMP_ARCH_X86_64") && sc->architectures[1] &&
                       !sc->architectures[2], "archMap gives the native arch and its sub-arch");
        tap_ok(sc->syscalls[2].n_args == 1 && sc->syscalls[2].args[0].value == 8, "args parse");
        void *bpf = NULL;
        size_t len = 0;
        tap_ok(rt_seccomp_compile(sc, &bpf, &len, &e) == 0 && len > 0, "it compiles");
        oci_seccomp_free(sc);
        free(bpf);
        hm_error_release(&e);

        static const char *const badp[][2] = {
                { "{\"syscalls\":[]}", "defaultAction: missing" },
                { "{\"defaultAction\":\"SCMP_ACT_NOPE\"}", "defaultAction: unknown action" },
                { "{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"syscalls\":[{\"names\":[\"x\"]}]}", "syscalls[0]: action: missing" },
                { "{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"syscalls\":[{\"names\":[\"x\"],\"action\":\"SCMP_ACT_ALLOW\","
                  "\"includes\":{\"caps\":[\"CAP_NOPE\"]}}]}", "unknown capability 'CAP_NOPE'" },
                { "{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"bogus\":1}", "bogus: unknown field" },
                { "{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"syscalls\":[{\"names\":[\"x\"],\"action\":\"SCMP_ACT_ALLOW\","
                  "\"args\":[{\"index\":6,\"value\":1,\"op\":\"SCMP_CMP_EQ\"}]}]}", "index (0..5)" },
                { "[", "invalid JSON" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(badp); i++) {
                sc = NULL;
                r = oci_seccomp_profile_parse(badp[i][0], strlen(badp[i][0]), "p.json", 0, &sc, &e);
                tap_ok(r < 0 && e && strstr(e->msg, badp[i][1]) && !sc, "refused: %s (%s)", badp[i][1], e ? e->msg : "accepted!");
                hm_error_release(&e);
                oci_seccomp_free(sc);
        }

        /* an OCI-format profile file through --seccomp=FILE, loaded into a container */
        _cleanup_free_ char *file = xasprintf("%s/profile.json", tmp_root);
        write_text(file, "{\"linux\":{\"seccomp\":{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"syscalls\":[{\"names\":[\"getppid\"],"
                         "\"action\":\"SCMP_ACT_ERRNO\",\"errnoRet\":38}]}}}");
        r = oci_seccomp_from_option(file, 0, &sc, &e);
        tap_ok(r == 0 && sc && sc->n_syscalls == 1, "--seccomp=FILE reads a config.json's linux.seccomp");
        hm_error_release(&e);
        _cleanup_oci_spec_ struct oci_spec *s = spec_for(rootfs, (const char *[]) { "/init", "pid", NULL });
        oci_seccomp_free(s->linux_.seccomp);
        s->linux_.seccomp = sc;
        void *saved = bench_bpf;
        bench_bpf = NULL; /* build from the spec */
        struct result res;
        run_full(s, NULL, "hm-test", 0, -1, &res);
        bench_bpf = saved;
        TAP_IS_STR(res.out, "pid=2 ppid=-38\n", "the profile is enforced (getppid -> ENOSYS)");
        result_release(&res);
        tap_ok(oci_seccomp_from_option("unconfined", 0, &sc, &e) == 0 && !sc, "--seccomp=unconfined: no filter");
        tap_ok(oci_seccomp_from_option("/nonexistent", 0, &sc, &e) < 0 && strstr(e->msg, "/nonexistent"), "a missing file is an error");
        hm_error_release(&e);

        uint64_t caps;
        char *all[] = { "ALL", NULL }, *one[] = { "net_raw", NULL }, *bad[] = { "CAP_BOGUS", NULL };
        tap_ok(oci_caps_adjust(oci_default_capabilities(), NULL, all, &caps, &e) == 0 && caps == 0, "--cap-drop ALL: none");
        tap_ok(oci_caps_adjust(oci_default_capabilities(), one, all, &caps, &e) == 0 && caps == UINT64_C(1) << 13,
               "--cap-drop ALL --cap-add NET_RAW: just NET_RAW");
        tap_ok(oci_caps_adjust(0, all, one, &caps, &e) == 0 && !(caps & (UINT64_C(1) << 13)) && (caps & (UINT64_C(1) << 21)),
               "--cap-add ALL --cap-drop NET_RAW");
        tap_ok(oci_caps_adjust(0, bad, NULL, &caps, &e) < 0 && strstr(e->msg, "--cap-add: unknown capability 'CAP_BOGUS'"),
               "unknown capability refused: %s", e ? e->msg : "");
        hm_error_release(&e);
        uid_t uid;
        gid_t gid;
        tap_ok(oci_parse_user("1000", &uid, &gid, &e) == 0 && uid == 1000 && gid == 1000, "--user 1000 -> 1000:1000");
        tap_ok(oci_parse_user("1000:x", &uid, &gid, &e) < 0 && strstr(e->msg, "gid 'x'"), "--user 1000:x refused");
        hm_error_release(&e);
}

static void run_all(void)
{
        _cleanup_free_ char *rootfs = make_rootfs("rootfs");
        int fds_before = count_fds();
        _cleanup_free_ char *mounts_before = mountinfo();

        test_identity(rootfs);
        test_security(rootfs);
        test_exit_codes(rootfs);
        test_setup_errors(rootfs);
        test_overlay();
        test_cgroups(rootfs);
        test_devices(rootfs);
        test_propagation(rootfs);
        test_cpuset(rootfs);
        test_pidns_join(rootfs);
        test_terminal(rootfs);
        test_userns_private_dir();
        test_hardening(rootfs);
        if (!rootless_mode)
                test_seccomp_profiles(rootfs);
        if (rootless_mode)
                test_sysfs_fallback(rootfs);
        if (getenv("HM_TEST_BENCH"))
                bench(rootfs, rootless_mode ? "rootless" : "root");

        /* other tests (docker, podman) may mount concurrently: look for ours */
        _cleanup_free_ char *mounts_after = mountinfo();
        tap_ok(!strstr(mounts_after, tmp_root), "host mountinfo: nothing mounted under '%s'", tmp_root);
        tap_ok(strlen(mounts_after) <= strlen(mounts_before) || strstr(mounts_after, "docker") || strstr(mounts_after, "podman"),
               "host mountinfo did not grow (apart from engines)");
        tap_ok(count_fds() == fds_before, "no fd leaked (%d before, %d after)", fds_before, count_fds());
        tap_ok(no_children(), "no child process left");
        tap_ok(!exists("/sys/fs/cgroup/pids/hm/hm-test"), "no cgroup left");
}

/* ---- the unprivileged half ---- */

static const char *test_user = "hmtest";

static int ensure_user(struct passwd **ret)
{
        struct passwd *pw = getpwnam(test_user);
        if (!pw) {
                pid_t pid;
                char *argv[] = { "useradd", "-m", (char *) test_user, NULL };
                if (posix_spawnp(&pid, "useradd", NULL, NULL, argv, environ) != 0 || waitpid(pid, NULL, 0) < 0)
                        return -1;
                pw = getpwnam(test_user);
        }
        *ret = pw;
        return pw ? 0 : -1;
}

static void run_unprivileged(const char *self)
{
        struct passwd *pw;
        if (ensure_user(&pw) < 0) {
                tap_ok(true, "# SKIP cannot create user '%s'", test_user);
                return;
        }
        _cleanup_free_ char *uid = xasprintf("%u", pw->pw_uid), *gid = xasprintf("%u", pw->pw_gid);
        _cleanup_free_ char *env_init = xasprintf("HM_TEST_INIT=%s", init_path);
        char *argv[] = { "setpriv", "--reuid", uid, "--regid", gid, "--init-groups", "--", (char *) self, "--unprivileged", NULL };
        char *envp[] = { env_init, getenv("HM_TEST_BENCH") ? "HM_TEST_BENCH=1" : NULL, NULL };
        /* its TAP goes to our stderr: one plan per process */
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_adddup2(&fa, STDERR_FILENO, STDOUT_FILENO);
        pid_t pid;
        int st = -1;
        if (posix_spawnp(&pid, "setpriv", &fa, NULL, argv, envp) == 0)
                waitpid(pid, &st, 0);
        posix_spawn_file_actions_destroy(&fa);
        tap_ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "unprivileged run as '%s' passed (status %d)", test_user, st);
}

int main(int argc, char **argv)
{
        init_path = getenv("HM_TEST_INIT") ? getenv("HM_TEST_INIT") : "build/hm-test-init";
        bool unprivileged = argc > 1 && !strcmp(argv[1], "--unprivileged");
        if (geteuid() != 0 && !unprivileged) {
                printf("1..0 # SKIP needs root\n");
                return 77;
        }
        if (access(init_path, R_OK) < 0) {
                printf("1..0 # SKIP %s missing (set HM_TEST_INIT)\n", init_path);
                return 77;
        }
        char tmpl[] = "/tmp/hm-rt-XXXXXX";
        tmp_root = mkdtemp(tmpl);
        chmod(tmp_root, 0755);
        rootless_mode = unprivileged;
        if (unprivileged)
                tap_diag("--- unprivileged (uid %u) ---", getuid());
        run_all();
        if (!unprivileged) {
                tap_diag("--- o->rootless as root ---");
                force_rootless = rootless_mode = true;
                run_all();
                force_rootless = rootless_mode = false;
                _cleanup_free_ char *self = realpath("/proc/self/exe", NULL);
                run_unprivileged(self);
        }
        rm_rf(tmp_root);
        return tap_done();
}
