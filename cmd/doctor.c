/* SPDX-License-Identifier: Apache-2.0 */
/*
 * hm doctor: can this host run containers, and how?  One line per check:
 * "ok", "warning" or "error", what was found, and for anything not ok the fix.
 * Checks run for real where they can (a user namespace is created, an overlay
 * mounted inside it, a /proc mounted in a new pid namespace), so the answer is
 * the kernel's, not a guess from versions.  Lines, in order: container (are
 * we in one), unshare (the namespaces the runtime needs; a seccomp filter is
 * named as the cause), user namespaces, overlay in userns (in the store's
 * filesystem), fresh /proc (and the runtime's fallback when refused),
 * hostname, cgroups, seccomp, pidfd, docker,
 * podman (an error when $DOCKER_HOST / $CONTAINER_HOST names an engine that
 * does not answer, else a warning), store.  Exit 1 when any line is an error.
 * Root without CAP_SYS_ADMIN in the initial user namespace (any
 * non-privileged container) takes the runtime's rootless path
 * (hm_privileged()): the header says so and the checks probe that path.
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
/* hm_privileged(): root with CAP_SYS_ADMIN in the initial user namespace; else the runtime's rootless path */
static bool priv;
static bool in_container;

/* What lifts a seccomp filter around hm, or avoids needing it. */
#define SECCOMP_FIX                                                                                                \
        "run hm's container with --security-opt seccomp=unconfined (or a profile allowing unshare, clone3, mount, " \
        "umount2, pivot_root, setns and sethostname), or --privileged; or use --runner=docker|podman with the "     \
        "engine's socket mounted into the container"


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

/* ---------------------------------------------------------------- containers */

/* What says we run inside a container (heap), or NULL: the engines' marker files, then pid 1's $container. */
static char *container_hint(void)
{
        if (access("/.dockerenv", F_OK) == 0)
                return xstrdup("docker: /.dockerenv exists");
        if (access("/run/.containerenv", F_OK) == 0)
                return xstrdup("podman: /run/.containerenv exists");
        _cleanup_free_ char *env = NULL;
        size_t len = 0;
        if (read_file("/proc/1/environ", 1 << 20, &env, &len) >= 0) {
                for (size_t i = 0; i < len; i += strlen(env + i) + 1)
                        if (str_has_prefix(env + i, "container=") && env[i + 10])
                                return xasprintf("pid 1 has %s", env + i);
        }
        return NULL;
}

/* "Seccomp:" of /proc/self/status: 0 none, 1 strict, 2 filter; -1 unknown. */
static int seccomp_mode(void)
{
        _cleanup_free_ char *st = NULL;
        if (read_file("/proc/self/status", 1 << 16, &st, NULL) < 0)
                return -1;
        const char *p = strstr(st, "\nSeccomp:");
        return p ? (int) strtol(p + 9, NULL, 10) : -1;
}

static void check_container(void)
{
        _cleanup_free_ char *hint = container_hint();
        in_container = hint != NULL;
        if (hint)
                line(OK, "container", NULL, "hm runs inside a container (%s): the lines below say what it allows", hint);
        else
                line(OK, "container", NULL, "not inside a container");
}

/* Fork a child running fn(arg); its exit status: 0, or the errno it failed with. */
static int in_child(int (*fn)(void *), void *arg)
{
        pid_t pid = fork();
        if (pid < 0)
                return errno;
        if (pid == 0)
                _exit(fn(arg));
        int st = 0;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
        return WIFEXITED(st) ? WEXITSTATUS(st) : EINTR;
}

static int map_self(uid_t uid, gid_t gid)
{
        char map[64];
        if (write_str("/proc/self/setgroups", "deny") < 0 && errno != ENOENT)
                return errno;
        snprintf(map, sizeof map, "0 %u 1", (unsigned) uid);
        int e = -write_str("/proc/self/uid_map", map);
        if (e > 0)
                return e;
        snprintf(map, sizeof map, "0 %u 1", (unsigned) gid);
        e = -write_str("/proc/self/gid_map", map);
        return e > 0 ? e : 0;
}

/* The namespaces the runtime unshares: a user namespace when rootless, the others as root. */
static int unshare_flags(void)
{
        return priv ? CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWNET : CLONE_NEWUSER;
}

static int probe_unshare(void *arg)
{
        return unshare(unshare_flags()) < 0 ? errno : 0;
}

static void check_unshare(void)
{
        int e = in_child(probe_unshare, NULL);
        const char *what = priv ? "unshare(CLONE_NEWNS|NEWPID|NEWIPC|NEWUTS|NEWNET)" : "unshare(CLONE_NEWUSER)";
        if (!e) {
                line(OK, "unshare", NULL, "%s allowed", what);
                return;
        }
        int mode = seccomp_mode();
        if (mode == 2 && e == EPERM)
                line(ERR, "unshare", SECCOMP_FIX,
                     "%s refused (EPERM) and hm runs under a seccomp filter (Seccomp: 2): steps cannot start", what);
        else if (priv)
                line(ERR, "unshare", "give hm CAP_SYS_ADMIN (in a container: --cap-add SYS_ADMIN, or --privileged)",
                     "%s refused: %s: steps cannot start", what, strerror(e));
        else
                line(ERR, "unshare",
                     getuid() == 0 ? "see 'user namespaces' below, or give hm CAP_SYS_ADMIN (in a container: --privileged)"
                                   : "see 'user namespaces' below, or run hm as root",
                     "%s refused: %s: steps cannot start", what, strerror(e));
}

/*
 * A fresh /proc in a new pid namespace, as the runtime mounts it: in a new
 * user namespace too when rootless.  The kernel refuses it in a user
 * namespace when the /proc it can see has masked (over-mounted) paths, as in
 * an engine's default container.
 */
struct proc_probe {
        const char *dir;
        uid_t uid;
        gid_t gid;
};

static int probe_proc_mount(void *arg)
{
        const struct proc_probe *pp = arg;
        return mount("proc", pp->dir, "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0 ? errno : 0;
}

static int probe_proc(void *arg)
{
        const struct proc_probe *pp = arg;
        int flags = CLONE_NEWNS | CLONE_NEWPID | (priv ? 0 : CLONE_NEWUSER);
        if (unshare(flags) < 0)
                return 200; /* reported by the unshare line */
        if ((flags & CLONE_NEWUSER) && map_self(pp->uid, pp->gid) != 0)
                return 200;
        if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return 200;
        /* the first child in the new pid namespace is its pid 1 */
        return in_child(probe_proc_mount, arg);
}

static void check_proc(void)
{
        char tmp[] = "/tmp/hm-doctor-proc-XXXXXX";
        if (!mkdtemp(tmp)) {
                line(WARN, "fresh /proc", NULL, "cannot make a temp dir: %s", strerror(errno));
                return;
        }
        struct proc_probe pp = { .dir = tmp, .uid = getuid(), .gid = getgid() };
        int e = in_child(probe_proc, &pp);
        (void) rmdir(tmp);
        const char *where = priv ? "a new pid namespace" : "a new user+pid namespace";
        const char *fix = "give hm's container an unmasked /proc: docker run --security-opt systempaths=unconfined, "
                          "podman run --security-opt unmask=ALL";
        if (e == 200)
                line(WARN, "fresh /proc", "see 'unshare' and 'user namespaces'", "not tried: the namespaces cannot be made");
        else if (!e)
                line(OK, "fresh /proc", NULL, "a new /proc mounts in %s", where);
        else if (priv)
                line(ERR, "fresh /proc", fix, "mounting a new /proc in %s was refused: %s: steps cannot start", where,
                     strerror(e));
        else
                line(WARN, "fresh /proc", fix,
                     "mounting a new /proc in %s was refused: %s (masked /proc paths?): steps get a read-only bind "
                     "of the outer /proc instead, outer processes visible", where, strerror(e));
}

/* ---------------------------------------------------------------- user namespaces */

static void check_userns(void)
{
        long max = read_long("/proc/sys/user/max_user_namespaces", -1);
        long clone = read_long("/proc/sys/kernel/unprivileged_userns_clone", -1);
        long aa = read_long("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", -1);
        const char *step = "";
        int e = probe_userns(false, NULL, &step);
        if (e)
                line(priv ? WARN : ERR, "user namespaces",
                     e == EPERM && seccomp_mode() == 2 && max != 0 && clone != 0 && aa != 1 ? "a seccomp filter refuses it: " SECCOMP_FIX
                     : max == 0 ? "sysctl -w user.max_user_namespaces=15000"
                     : clone == 0 ? "sysctl -w kernel.unprivileged_userns_clone=1"
                     : aa == 1 ? "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or an AppArmor profile allowing userns for hm"
                     : getuid() == 0 ? "allow user namespaces here, or give hm CAP_SYS_ADMIN (in a container: --privileged)"
                               : "allow unprivileged user namespaces (or run hm as root)",
                     "%s failed: %s (max_user_namespaces=%ld%s)", step, strerror(e), max,
                     aa == 1 ? ", AppArmor restricts unprivileged userns" : "");
        else
                line(OK, "user namespaces", NULL, "can create one (max_user_namespaces=%ld%s)%s", max,
                     aa == 1 ? "; AppArmor restriction on but not in the way" : "",
                     getuid() == 0 && !priv ? ": steps run in one, as for an ordinary user" : "");
}

/* The store's dir, or its nearest existing ancestor (heap): where the store's overlays are mounted. */
static char *store_dir(void)
{
        const char *env = getenv("HM_STORE");
        char *probe = env && *env ? xstrdup(env) : oci_store_default_path();
        struct stat st;
        while (stat(probe, &st) < 0) {
                char *slash = strrchr(probe, '/');
                if (!slash || slash == probe) {
                        probe[0] = '/';
                        probe[1] = 0;
                        break;
                }
                *slash = 0;
        }
        return probe;
}

/* As root: a plain overlay in a new mount namespace, what the runtime mounts for a step. */
static int probe_overlay_root(void *arg)
{
        const char *tmp = arg;
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
                return 200;
        _cleanup_free_ char *opts = xasprintf("lowerdir=%s/l,upperdir=%s/u,workdir=%s/w", tmp, tmp, tmp);
        _cleanup_free_ char *target = xasprintf("%s/m", tmp);
        return mount("overlay", target, "overlay", 0, opts) < 0 ? errno : 0;
}

/*
 * The overlay the runtime mounts for a step (with userxattr inside a user
 * namespace on the rootless path), mounted where the store's layers live: a
 * filesystem that cannot be an overlay's upper layer (an overlay itself,
 * e.g. a container's root) fails there, not in /tmp.
 */
static void check_overlay(void)
{
        const char *name = priv ? "overlay" : "overlay in userns";
        _cleanup_free_ char *dir = store_dir();
        _cleanup_free_ char *tmp = xasprintf("%s%s.hm-doctor-XXXXXX", dir, strcmp(dir, "/") ? "/" : "");
        const char *where = "the store's filesystem";
        if (!mkdtemp(tmp)) {
                /* not writable for us: the store cannot be made there either; probe /tmp instead */
                free(tmp);
                tmp = xstrdup("/tmp/hm-doctor-XXXXXX");
                where = "/tmp (the store's dir is not writable)";
                if (!mkdtemp(tmp)) {
                        line(WARN, name, NULL, "cannot make a temp dir: %s", strerror(errno));
                        return;
                }
        }
        struct statfs sf;
        bool on_overlay = statfs(tmp, &sf) == 0 && sf.f_type == OVERLAYFS_SUPER_MAGIC;
        const char *sub[] = { "l", "u", "w", "m" };
        for (size_t i = 0; i < ARRAY_SIZE(sub); i++) {
                _cleanup_free_ char *d = xasprintf("%s/%s", tmp, sub[i]);
                (void) mkdir(d, 0700);
        }
        const char *step = "mount overlay";
        int e = priv ? in_child(probe_overlay_root, tmp) : probe_userns(true, tmp, &step);
        rm_rf(tmp);
        const char *what = priv ? "an overlay" : "overlay with userxattr";
        if (e == 200 || (e && !str_has_prefix(step, "mount")))
                line(WARN, name, "see 'unshare' and 'user namespaces'", "not tried: the namespaces cannot be made");
        else if (e && on_overlay)
                line(ERR, name, "put the store on a volume: docker/podman run -v DIR:/var/lib/hm (root), or HM_STORE=DIR on one",
                     "%s failed in %s (%s), itself an overlay (a container's root?): %s: steps cannot start", step, where,
                     dir, strerror(e));
        else if (e)
                line(ERR, name, "a kernel >= 5.11 with overlayfs (rootless steps need userxattr)",
                     "%s failed in %s (%s): %s: steps cannot start", step, where, dir, strerror(e));
        else
                line(OK, name, NULL, "%s mounts%s (in %s, %s)", what, priv ? "" : " inside a user namespace", where, dir);
}

/*
 * The step's hostname in its own UTS namespace (in a user namespace when
 * rootless): a seccomp filter around hm may refuse sethostname (Podman's
 * default profile gates it on CAP_SYS_ADMIN); the runtime then keeps the
 * surrounding hostname.
 */
static int probe_hostname(void *arg)
{
        const struct proc_probe *pp = arg;
        if (unshare(CLONE_NEWUTS | (priv ? 0 : CLONE_NEWUSER)) < 0)
                return 200;
        if (!priv && map_self(pp->uid, pp->gid) != 0)
                return 200;
        return sethostname("hm-doctor", 9) < 0 ? errno : 0;
}

static void check_hostname(void)
{
        struct proc_probe pp = { .uid = getuid(), .gid = getgid() };
        int e = in_child(probe_hostname, &pp);
        if (e == 200)
                line(WARN, "hostname", "see 'unshare' and 'user namespaces'", "not tried: the namespaces cannot be made");
        else if (!e)
                line(OK, "hostname", NULL, "steps get their own hostname (sethostname in a new UTS namespace)");
        else
                line(WARN, "hostname", seccomp_mode() == 2 ? SECCOMP_FIX : NULL,
                     "sethostname in a new UTS namespace refused: %s%s: steps keep the surrounding hostname",
                     strerror(e), seccomp_mode() == 2 ? " (a seccomp filter around hm)" : "");
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
                line(w ? OK : WARN, "cgroups",
                     in_container && getuid() == 0 ? "give hm's container --privileged (a writable /sys/fs/cgroup)"
                                  : "run hm in a delegated cgroup (systemd-run --user --scope -p Delegate=yes)",
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
                line(WARN, "cgroups",
                     in_container && getuid() == 0 ? "give hm's container --privileged (a writable /sys/fs/cgroup)"
                                  : "run as root, or boot with systemd.unified_cgroup_hierarchy=1 and delegate a cgroup",
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
                const char *var = i == 0 ? "DOCKER_HOST" : "CONTAINER_HOST";
                const char *set = getenv(var);
                if (engine_runner_new(loop, &o, &r, &err) < 0) {
                        /* asked for by the environment: it is meant to answer */
                        _cleanup_free_ char *fix = set && *set ? xasprintf("start the engine at %s, or unset $%s", set, var)
                                                               : NULL;
                        line(set && *set ? ERR : WARN, kinds[i],
                             fix ? fix
                             : i == 0 ? "start dockerd or set DOCKER_HOST=unix://PATH (only needed for --runner=docker)"
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
        priv = hm_privileged();
        if (getuid() == 0 && !priv)
                printf("hm doctor: root without CAP_SYS_ADMIN in the initial user namespace, uid 0: hm takes the "
                       "rootless path (steps in a user namespace of their own)\n");
        else
                printf("hm doctor: %s, uid %u\n", getuid() == 0 ? "root" : "unprivileged user", (unsigned) getuid());
        check_container();
        check_unshare();
        check_userns();
        check_overlay();
        check_proc();
        check_hostname();
        check_cgroups();
        check_seccomp_pidfd();
        check_engines();
        check_store();
        printf("%d error(s), %d warning(s)\n", n_err, n_warn);
        return n_err ? 1 : 0;
}
