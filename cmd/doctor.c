/* SPDX-License-Identifier: Apache-2.0 */
/*
 * hm doctor: can this host run containers, and how?  One line per check:
 * "ok", "warning" or "error", what was found, and for anything not ok the fix.
 * Checks run for real where they can (a user namespace is created, an overlay
 * mounted inside it), so the answer is the kernel's, not a guess from versions.
 */
#include "cmd/cmd.h"
#include "engine/engine.h"
#include "oci/store.h"
#include "sched/loop.h"
#include "lib/util.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/statfs.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>

enum level { OK, WARN, ERR };
static int n_err, n_warn;

static void line(enum level l, const char *check, const char *fix, const char *fmt, ...)
        __attribute__((format(printf, 4, 5)));
static void line(enum level l, const char *check, const char *fix, const char *fmt, ...)
{
        static const char *names[] = { "ok     ", "warning", "error  " };
        va_list ap;
        printf("%s  %-22s ", names[l], check);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        if (l != OK && fix)
                printf("\n         %-22s fix: %s", "", fix);
        putchar('\n');
        n_err += l == ERR;
        n_warn += l == WARN;
}

static long read_long(const char *path, long fallback)
{
        _cleanup_free_ char *s = NULL;
        if (read_file(path, 4096, &s, NULL) < 0)
                return fallback;
        return strtol(s, NULL, 10);
}

static int write_str(const char *path, const char *s)
{
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        return write_all(fd, s, strlen(s));
}

/*
 * In a child: a new user + mount namespace mapping our uid to 0, then (with
 * `overlay`) an overlay mount with userxattr over dirs under `tmp`.  Returns
 * 0 or the errno of the step that failed; *ret_step names it.
 */
static int probe_userns(bool overlay, const char *tmp, const char **ret_step)
{
        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return errno;
        uid_t uid = getuid();
        gid_t gid = getgid();
        pid_t pid = fork();
        if (pid < 0)
                return errno;
        if (pid == 0) {
                int step = 0, e = 0;
                char map[64];
                if (unshare(CLONE_NEWUSER | CLONE_NEWNS) < 0) {
                        e = errno;
                        goto out;
                }
                step = 1;
                snprintf(map, sizeof map, "0 %u 1", (unsigned) uid);
                if (write_str("/proc/self/setgroups", "deny") < 0 && errno != ENOENT) {
                        e = errno;
                        goto out;
                }
                if ((e = -write_str("/proc/self/uid_map", map)) > 0)
                        goto out;
                snprintf(map, sizeof map, "0 %u 1", (unsigned) gid);
                if ((e = -write_str("/proc/self/gid_map", map)) > 0)
                        goto out;
                if (overlay) {
                        step = 2;
                        char opts[1024];
                        snprintf(opts, sizeof opts, "lowerdir=%s/l,upperdir=%s/u,workdir=%s/w,userxattr", tmp, tmp, tmp);
                        char target[512];
                        snprintf(target, sizeof target, "%s/m", tmp);
                        if (mount("overlay", target, "overlay", 0, opts) < 0)
                                e = errno;
                }
        out:
                if (e) {
                        int msg[2] = { step, e };
                        (void) !write(p[1], msg, sizeof msg);
                }
                _exit(e ? 1 : 0);
        }
        close(p[1]);
        int msg[2] = { 0, 0 };
        ssize_t n = read(p[0], msg, sizeof msg);
        close(p[0]);
        waitpid(pid, NULL, 0);
        static const char *steps[] = { "unshare(CLONE_NEWUSER)", "writing uid_map/gid_map", "mount overlay with userxattr" };
        if (n == (ssize_t) sizeof msg) {
                *ret_step = steps[msg[0] < 3 && msg[0] >= 0 ? msg[0] : 0];
                return msg[1];
        }
        return 0;
}

static void check_userns(void)
{
        long max = read_long("/proc/sys/user/max_user_namespaces", -1);
        long clone = read_long("/proc/sys/kernel/unprivileged_userns_clone", -1);
        long aa = read_long("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", -1);
        const char *step = "";
        int e = probe_userns(false, NULL, &step);
        if (e)
                line(getuid() == 0 ? WARN : ERR, "user namespaces",
                     max == 0 ? "sysctl -w user.max_user_namespaces=15000"
                     : clone == 0 ? "sysctl -w kernel.unprivileged_userns_clone=1"
                     : aa == 1 ? "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile allowing userns for hm"
                               : "allow unprivileged user namespaces (or run hm as root)",
                     "%s failed: %s (max_user_namespaces=%ld%s)", step, strerror(e), max,
                     aa == 1 ? ", AppArmor restricts unprivileged userns" : "");
        else
                line(OK, "user namespaces", NULL, "can create one (max_user_namespaces=%ld%s)", max,
                     aa == 1 ? "; AppArmor restriction on but not in the way" : "");
}

static void check_overlay(void)
{
        char tmp[] = "/tmp/hm-doctor-XXXXXX";
        if (!mkdtemp(tmp)) {
                line(WARN, "overlay in userns", NULL, "cannot make a temp dir: %s", strerror(errno));
                return;
        }
        const char *sub[] = { "l", "u", "w", "m" };
        for (size_t i = 0; i < ARRAY_SIZE(sub); i++) {
                _cleanup_free_ char *d = xasprintf("%s/%s", tmp, sub[i]);
                (void) mkdir(d, 0700);
        }
        const char *step = "";
        int e = probe_userns(true, tmp, &step);
        rm_rf(tmp);
        if (e)
                line(getuid() == 0 ? WARN : ERR, "overlay in userns",
                     "a kernel >= 5.11 with overlayfs, or run hm as root (rootless steps need it)",
                     "%s failed: %s", step, strerror(e));
        else
                line(OK, "overlay in userns", NULL, "overlay with userxattr mounts inside a user namespace");
}

static void check_cgroups(void)
{
        struct statfs sf;
        if (statfs("/sys/fs/cgroup", &sf) < 0) {
                line(WARN, "cgroups", "mount cgroup2 on /sys/fs/cgroup", "/sys/fs/cgroup: %s", strerror(errno));
                return;
        }
        if (sf.f_type == CGROUP2_SUPER_MAGIC) {
                _cleanup_free_ char *ctl = NULL;
                (void) read_file("/sys/fs/cgroup/cgroup.subtree_control", 4096, &ctl, NULL);
                bool w = access("/sys/fs/cgroup", W_OK) == 0;
                line(w ? OK : WARN, "cgroups", "run hm in a delegated cgroup (systemd-run --user --scope -p Delegate=yes)",
                     "unified v2; controllers enabled: %s%s", ctl && *ctl ? strtok(ctl, "\n") : "none",
                     w ? "" : "; not writable: limits fall back to rlimits");
                return;
        }
        struct statfs uf;
        bool hybrid = statfs("/sys/fs/cgroup/unified", &uf) == 0 && uf.f_type == CGROUP2_SUPER_MAGIC;
        bool mem = access("/sys/fs/cgroup/memory", W_OK) == 0, pids = access("/sys/fs/cgroup/pids", W_OK) == 0;
        if (mem && pids)
                line(OK, "cgroups", NULL, "%s: v1 memory, pids, cpu writable: limits via cgroup v1 (crun refuses such hosts; hm and runc do not)",
                     hybrid ? "hybrid" : "legacy v1");
        else
                line(WARN, "cgroups", "run as root, or boot with systemd.unified_cgroup_hierarchy=1 and delegate a cgroup",
                     "%s: v1 controllers not writable: --memory/--pids-limit fall back to rlimits, --cpus is not applied",
                     hybrid ? "hybrid" : "legacy v1");
}

static void check_seccomp_pidfd(void)
{
        int e = prctl(PR_GET_SECCOMP, 0, 0, 0, 0);
        _cleanup_free_ char *actions = NULL;
        (void) read_file("/proc/sys/kernel/seccomp/actions_avail", 4096, &actions, NULL);
        if (e < 0)
                line(ERR, "seccomp", "a kernel with CONFIG_SECCOMP_FILTER", "not available: %s", strerror(errno));
        else if (e > 0)
                line(WARN, "seccomp", NULL, "hm itself runs under a seccomp filter (mode %d): nested filters still work", e);
        else
                line(OK, "seccomp", NULL, "filters available (%s)", actions ? strtok(actions, "\n") : "actions unknown");
        int fd = (int) syscall(SYS_pidfd_open, getpid(), 0);
        if (fd < 0)
                line(ERR, "pidfd", "a kernel >= 5.3", "pidfd_open: %s", strerror(errno));
        else {
                close(fd);
                line(OK, "pidfd", NULL, "pidfd_open works (step exits are watched through pidfds)");
        }
}

static void check_engines(void)
{
        static const char *kinds[] = { "docker", "podman" };
        for (size_t i = 0; i < ARRAY_SIZE(kinds); i++) {
                struct hm_loop *loop = hm_loop_new();
                struct hm_runner *r = NULL;
                hm_error_t err = NULL;
                struct engine_options o = { .kind = kinds[i] };
                if (engine_runner_new(loop, &o, &r, &err) < 0) {
                        line(WARN, kinds[i], i == 0 ? "start dockerd or set DOCKER_HOST=unix://PATH (only needed for --runner=docker)"
                                                    : "start `podman system service` or set CONTAINER_HOST=unix://PATH (only for --runner=podman)",
                             "%s", err->msg);
                        hm_error_release(&err);
                } else {
                        line(OK, kinds[i], NULL, "%s", r->description);
                        r->ops->free(r);
                }
                hm_loop_free(loop);
        }
}

static void check_store(void)
{
        const char *env = getenv("HM_STORE");
        _cleanup_free_ char *path = env && *env ? xstrdup(env) : oci_store_default_path();
        _cleanup_free_ char *probe = xstrdup(path);
        struct statvfs sv;
        while (statvfs(probe, &sv) < 0) {
                char *slash = strrchr(probe, '/');
                if (!slash || slash == probe) {
                        probe[0] = '/';
                        probe[1] = 0;
                        if (statvfs(probe, &sv) < 0)
                                return line(ERR, "store", NULL, "'%s': %s", path, strerror(errno));
                        break;
                }
                *slash = 0;
        }
        double free_gib = (double) sv.f_bavail * (double) sv.f_frsize / (1u << 30);
        line(free_gib < 2 ? WARN : OK, "store", "free space, or HM_STORE=DIR elsewhere",
             "%s (%s), %.1f GiB free", path, env && *env ? "$HM_STORE" : getuid() == 0 ? "root default" : "user default", free_gib);
}

int cmd_doctor(int argc, char **argv)
{
        printf("hm doctor: %s, uid %u\n", getuid() == 0 ? "root" : "unprivileged user", (unsigned) getuid());
        check_userns();
        check_overlay();
        check_cgroups();
        check_seccomp_pidfd();
        check_engines();
        check_store();
        printf("%d error(s), %d warning(s)\n", n_err, n_warn);
        return n_err ? 1 : 0;
}
