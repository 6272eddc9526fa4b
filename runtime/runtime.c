/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The parent side: plan, cgroups, fds, clone3(CLONE_PIDFD), id maps, the
 * "go" byte, then the sync socket until EOF (exec) or an error message.
 * Until rt_container_start() returns the container, the cleanup of
 * `struct rt_container` is the guard that kills and reaps the child.
 */
#include "runtime/runtime.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "lib/util.h"
#include "oci/spec.h"
#include "runtime/cgroup.h"
#include "runtime/child.h"
#include "runtime/syscalls.h"
#include "runtime/userns.h"

struct rt_container {
        pid_t pid;
        int pidfd;
        int stdout_fd, stderr_fd;
        bool reaped;
        struct rt_cgroup cg;
        char **notices;
        pid_t exec_pid;              /* exec: the command (RT_MSG_PID), 0 until known */
        int sync_fd;                 /* defer_go: our end of the sync socket until rt_container_go() */
        bool userns;
        char *const *join_cgroups;   /* exec: the container's cgroups, borrowed during start */
};

pid_t rt_container_pid(const struct rt_container *c) { return c->pid; }
int rt_container_pidfd(const struct rt_container *c) { return c->pidfd; }
int rt_container_stdout_fd(const struct rt_container *c) { return c->stdout_fd; }
int rt_container_stderr_fd(const struct rt_container *c) { return c->stderr_fd; }
pid_t rt_container_exec_pid(const struct rt_container *c) { return c->exec_pid; }
bool rt_container_userns(const struct rt_container *c) { return c->userns; }

const char *const *rt_container_notices(const struct rt_container *c)
{
        static const char *const none[] = { NULL };
        return c->notices ? (const char *const *) c->notices : none;
}

int rt_container_kill(struct rt_container *c, int sig)
{
        if (c->reaped)
                return -ESRCH;
        int r = c->pidfd >= 0 ? rt_pidfd_send_signal(c->pidfd, sig, NULL, 0) : kill(c->pid, sig);
        return r < 0 ? -errno : 0;
}

static int status_from_siginfo(const siginfo_t *si)
{
        if (si->si_code == CLD_EXITED)
                return si->si_status;
        return 128 + si->si_status;
}

/* Blocking reap (returns at once after the pidfd became readable). */
static int reap(struct rt_container *c, int *ret_status)
{
        siginfo_t si = { 0 };
        int r;
        do
                r = c->pidfd >= 0 ? waitid((idtype_t) P_PIDFD, (id_t) c->pidfd, &si, WEXITED)
                                  : waitid(P_PID, (id_t) c->pid, &si, WEXITED);
        while (r < 0 && errno == EINTR);
        if (r < 0)
                return -errno;
        c->reaped = true;
        *ret_status = status_from_siginfo(&si);
        return 0;
}

int rt_container_wait(struct rt_container *c, int *ret_status, hm_error_t *err)
{
        if (c->reaped)
                return hm_error_set(err, ECHILD, "container %d already reaped", (int) c->pid);
        int r = reap(c, ret_status);
        if (r < 0)
                return hm_error_set(err, -r, "wait for container %d: %s", (int) c->pid, strerror(-r));
        rt_cgroup_destroy(&c->cg);
        return 0;
}

void rt_container_free(struct rt_container *c)
{
        if (!c)
                return;
        if (c->pid > 0 && !c->reaped) {
                int status;
                (void) rt_container_kill(c, SIGKILL);
                (void) reap(c, &status);
        }
        rt_cgroup_destroy(&c->cg);
        safe_close(c->sync_fd);
        safe_close(c->pidfd);
        safe_close(c->stdout_fd);
        safe_close(c->stderr_fd);
        strv_free(c->notices);
        free(c);
}

_Static_assert(RT_CGROUP_SLOTS == _RT_CG_MAX, "cgroup slots");

void rt_container_detach(struct rt_container *c, char ***ret_cgroups)
{
        char **dirs = xcalloc(_RT_CG_MAX + 1, sizeof *dirs);
        for (int i = 0; i < _RT_CG_MAX; i++)
                dirs[i] = c->cg.dirs[i] ? TAKE_PTR(c->cg.dirs[i]) : xstrdup("");
        *ret_cgroups = dirs;
        c->pid = 0; /* nothing to kill or reap: the container is on its own now */
        rt_container_free(c);
}

void rt_cgroups_destroy(char *const *cgroups)
{
        struct rt_cgroup cg = { 0 };
        for (int i = 0; i < _RT_CG_MAX && cgroups && cgroups[i]; i++)
                if (*cgroups[i])
                        cg.dirs[i] = xstrdup(cgroups[i]);
        rt_cgroup_destroy(&cg);
}

bool rt_spec_shares_mount_ns(const struct oci_spec *spec)
{
        const struct oci_namespace *ns = oci_spec_find_namespace(spec, OCI_NS_MOUNT);
        return !ns || ns->path;
}

/* mountinfo escapes ' ', '\t', '\n' and '\\' as \ooo */
static void unescape_octal(char *s)
{
        char *w = s;
        for (char *r = s; *r; r++) {
                if (r[0] == '\\' && r[1] >= '0' && r[1] <= '7' && r[2] >= '0' && r[2] <= '7' && r[3] >= '0' && r[3] <= '7') {
                        *w++ = (char) ((r[1] - '0') * 64 + (r[2] - '0') * 8 + (r[3] - '0'));
                        r += 3;
                } else {
                        *w++ = *r;
                }
        }
        *w = 0;
}

/* Mount points at or below root, in mountinfo order (parents before children). */
static char **mounts_below(const char *root)
{
        char **list = NULL;
        _cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
        size_t n = strlen(root);
        char *line = NULL;
        size_t cap = 0;
        while (f && getline(&line, &cap, f) > 0) {
                char *save = NULL, *tok = strtok_r(line, " ", &save);
                for (int field = 1; tok && field < 5; field++)
                        tok = strtok_r(NULL, " ", &save);
                if (!tok)
                        continue;
                unescape_octal(tok);
                if (!strncmp(tok, root, n) && (tok[n] == 0 || tok[n] == '/'))
                        strv_push(&list, tok);
        }
        free(line);
        return list;
}

static int detach_below(const char *root)
{
        int total = 0;
        for (int round = 0; round < 16; round++) { /* stacked mounts show up again */
                _cleanup_strv_ char **list = mounts_below(root);
                size_t n = strv_len(list);
                int done = 0;
                for (size_t i = n; i-- > 0;)
                        done += umount2(list[i], MNT_DETACH | UMOUNT_NOFOLLOW) == 0;
                total += done;
                if (!done)
                        break;
        }
        return total;
}

int rt_shared_mounts_release(const char *rootfs, int mntns_fd, hm_error_t *err)
{
        struct stat own, theirs;
        if (stat("/proc/self/ns/mnt", &own) < 0 || fstat(mntns_fd, &theirs) < 0)
                return hm_error_set(err, errno, "compare mount namespaces: %s", strerror(errno));
        if (own.st_ino == theirs.st_ino && own.st_dev == theirs.st_dev)
                return detach_below(rootfs);
        /* setns(CLONE_NEWNS) wants a single-threaded caller and would move us for good: a helper */
        pid_t pid = fork();
        if (pid < 0)
                return hm_error_set(err, errno, "fork: %s", strerror(errno));
        if (pid == 0) {
                if (setns(mntns_fd, CLONE_NEWNS) < 0)
                        _exit(255);
                int n = detach_below(rootfs);
                _exit(n > 254 ? 254 : n);
        }
        int status;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return hm_error_set(err, errno, "wait: %s", strerror(errno));
        if (!WIFEXITED(status) || WEXITSTATUS(status) == 255)
                return hm_error_set(err, EPERM, "enter the container's mount namespace to release its mounts below '%s'", rootfs);
        return WEXITSTATUS(status);
}

static void container_freep(struct rt_container **c) { rt_container_free(*c); }
static void plan_releasep(struct rt_plan *p) { rt_plan_release(p); }
static void idmap_releasep(struct rt_idmap *m) { rt_idmap_release(m); }

/* ---- fds for the child: all >= 3 (dup2 onto 0..2 must not clobber them), CLOEXEC here ---- */

static int fd_above_stdio(int fd)
{
        if (fd < 0 || fd > 2)
                return fd;
        int n = fcntl(fd, F_DUPFD_CLOEXEC, 3);
        int saved = errno;
        close(fd);
        errno = saved;
        return n;
}

struct child_fds {
        int sync[2];     /* [0] parent, [1] child */
        int in;
        int fifo;        /* exec fifo (detached create), child's end */
        int out[2], errp[2]; /* [0] parent read end (capture only), [1] child */
};

static void child_fds_release(struct child_fds *f)
{
        int *all[] = { &f->sync[0], &f->sync[1], &f->in, &f->fifo, &f->out[0], &f->out[1], &f->errp[0], &f->errp[1] };
        for (size_t i = 0; i < ARRAY_SIZE(all); i++)
                *all[i] = safe_close(*all[i]);
}

static int output_fd(int pair[2], bool capture, int host_fd, const char *name, hm_error_t *err)
{
        if (capture) {
                if (pipe2(pair, O_CLOEXEC) < 0)
                        return hm_error_set(err, errno, "create %s pipe: %s", name, strerror(errno));
                if (fcntl(pair[0], F_SETFL, O_NONBLOCK) < 0)
                        return hm_error_set(err, errno, "make %s pipe non-blocking: %s", name, strerror(errno));
                pair[1] = fd_above_stdio(pair[1]);
        } else {
                pair[1] = fcntl(host_fd, F_DUPFD_CLOEXEC, 3);
        }
        if (pair[1] < 0)
                return hm_error_set(err, errno, "set up %s: %s", name, strerror(errno));
        return 0;
}

static int child_fds_open(struct child_fds *f, const struct rt_start_options *o, hm_error_t *err)
{
        *f = (struct child_fds) { { -1, -1 }, -1, -1, { -1, -1 }, { -1, -1 } };
        if (o->exec_fifo) {
                /* O_RDWR: opening a fifo this way never blocks, and a read then waits for data */
                f->fifo = fd_above_stdio(open(o->exec_fifo, O_RDWR | O_CLOEXEC));
                if (f->fifo < 0)
                        return hm_error_set(err, errno, "open exec fifo '%s': %s", o->exec_fifo, strerror(errno));
        }
        if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, f->sync) < 0)
                return hm_error_set(err, errno, "create sync socket: %s", strerror(errno));
        f->sync[1] = fd_above_stdio(f->sync[1]);
        f->in = o->stdin_fd >= 0 ? fcntl(o->stdin_fd, F_DUPFD_CLOEXEC, 3) : open("/dev/null", O_RDONLY | O_CLOEXEC);
        f->in = fd_above_stdio(f->in);
        if (f->sync[1] < 0 || f->in < 0)
                return hm_error_set(err, errno, "set up stdin: %s", strerror(errno));
        int r = output_fd(f->out, o->capture_output, STDOUT_FILENO, "stdout", err);
        return r < 0 ? r : output_fd(f->errp, o->capture_output, STDERR_FILENO, "stderr", err);
}

/* ---- the start sequence ---- */

static pid_t clone_child_here(const struct rt_plan *p, int *ret_pidfd)
{
        int pidfd = -1;
        struct rt_clone_args a = { .flags = p->clone_flags | CLONE_PIDFD, .pidfd = (uint64_t) (uintptr_t) &pidfd,
                                   .exit_signal = SIGCHLD };
        long pid = rt_clone3(&a, sizeof a);
        if (pid < 0 && errno == ENOSYS)
                pid = rt_clone_legacy(p->clone_flags | CLONE_PIDFD | SIGCHLD, &pidfd);
        if (pid == 0)
                rt_child_run(p);
        *ret_pidfd = pidfd;
        return (pid_t) pid;
}

static pid_t clone_child(const struct rt_plan *p, int *ret_pidfd)
{
        /*
         * Joining a pid namespace by path: setns(CLONE_NEWPID) only moves our
         * future children, so the container's init is cloned straight into
         * it, and we step back into our own afterwards.
         */
        _cleanup_close_ int own_pidns = -1;
        if (p->pidns_fd >= 0) {
                own_pidns = open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC);
                if (own_pidns < 0 || setns(p->pidns_fd, CLONE_NEWPID) < 0)
                        return -1;
        }
        /* rootfs_via_cwd: the child starts with its cwd on the rootfs (copy_mnt_ns moves it to its own mounts) */
        _cleanup_close_ int own_cwd = -1;
        if (p->rootfs_via_cwd) {
                own_cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
                if (own_cwd < 0 || chdir(p->rootfs) < 0)
                        return -1;
        }
        pid_t pid = clone_child_here(p, ret_pidfd);
        int e = errno;
        if (own_cwd >= 0 && fchdir(own_cwd) < 0)
                abort(); /* relative paths of the caller would now resolve in the container's rootfs */
        if (own_pidns >= 0 && setns(own_pidns, CLONE_NEWPID) < 0)
                abort(); /* our later children would land in the container's pid namespace */
        errno = e;
        return pid;
}

/* Read the child's messages until EOF (= exec done) or an error. */
static int read_sync(struct rt_container *c, int fd, hm_error_t *err)
{
        for (;;) {
                struct {
                        struct rt_msg_header h;
                        char text[RT_MSG_MAX + 1];
                } m;
                ssize_t n = recv(fd, &m, sizeof m - 1, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return hm_error_set(err, errno, "read from container setup: %s", strerror(errno));
                if (n == 0)
                        return 0;
                if ((size_t) n < sizeof m.h || m.h.len > (size_t) n - sizeof m.h)
                        return hm_error_set(err, EPROTO, "container setup: malformed message");
                m.text[m.h.len] = 0;
                if (m.h.type == RT_MSG_READY)
                        return 0; /* detached: blocked on the exec fifo, the socket stays open */
                if (m.h.type == RT_MSG_PID) {
                        c->exec_pid = (pid_t) m.h.err;
                        continue;
                }
                if (m.h.type == RT_MSG_NOTICE) {
                        strv_push(&c->notices, m.text);
                        continue;
                }
                return hm_error_set(err, m.h.err, "%s: %s", m.text, strerror(m.h.err));
        }
}

static int write_oom_score_adj(pid_t pid, int v, hm_error_t *err)
{
        char path[64], buf[16];
        snprintf(path, sizeof path, "/proc/%d/oom_score_adj", (int) pid);
        snprintf(buf, sizeof buf, "%d", v);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
        int r = fd < 0 ? -errno : write_all(fd, buf, strlen(buf));
        if (r < 0)
                return hm_error_set(err, -r, "process.oomScoreAdj: write '%s': %s", path, strerror(-r));
        return 0;
}

/* Between clone and "go": id maps, cgroups, oom score. */
static int configure_child(struct rt_container *c, const struct oci_spec *spec, const struct rt_plan *p,
                           const struct rt_idmap *idmap, hm_error_t *err)
{
        int r = 0;
        if (p->exec) {
                /* the container's cgroups (exec): a borrowed view, never removed by us */
                struct rt_cgroup join = { 0 };
                for (int i = 0; i < _RT_CG_MAX && c->join_cgroups && c->join_cgroups[i]; i++)
                        join.dirs[i] = *c->join_cgroups[i] ? c->join_cgroups[i] : NULL;
                r = rt_cgroup_enter(&join, c->pid, err);
        } else {
                if (p->userns)
                        r = rt_idmap_apply(idmap, c->pid, err);
                if (r >= 0)
                        r = rt_cgroup_enter(&c->cg, c->pid, err);
        }
        if (r >= 0 && spec->process.oom_score_adj_present)
                r = write_oom_score_adj(c->pid, spec->process.oom_score_adj, err);
        return r;
}

static void add_rlimit(struct rt_plan *p, const struct rt_rlimit *rl)
{
        for (size_t i = 0; i < p->n_rlimits; i++)
                if (p->rlimits[i].type == rl->type) {
                        /* keep the stricter of the spec's and the fallback */
                        if (rl->hard < p->rlimits[i].hard)
                                p->rlimits[i] = *rl;
                        return;
                }
        p->rlimits[p->n_rlimits++] = *rl;
}

static int setup_cgroups(struct rt_container *c, struct rt_plan *p, const struct oci_spec *spec,
                         const struct rt_start_options *o, bool rootless, hm_error_t *err)
{
        struct rt_rlimit fb[2];
        size_t nfb = 0;
        const struct oci_resources *res = &spec->linux_.resources;
        if (rootless) {
                rt_cgroup_rootless(res, &c->notices, fb, &nfb);
        } else {
                const char *id = o->id ? o->id : "";
                _cleanup_free_ char *rel = o->cgroup_parent ? xasprintf("%s/%s", o->cgroup_parent, id)
                                           : spec->linux_.cgroups_path ? xstrdup(spec->linux_.cgroups_path)
                                                                        : xasprintf("hm/%s", id);
                if (!*id && !spec->linux_.cgroups_path)
                        strv_push(&c->notices, "cgroups: no container id given; cgroup named after pid");
                if (!*id && !spec->linux_.cgroups_path) {
                        free(rel);
                        rel = xasprintf("hm/pid-%d-%lld", (int) getpid(), (long long) now_ms());
                }
                int r = rt_cgroup_setup(&c->cg, rel, res, &c->notices, fb, &nfb, err);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < nfb; i++)
                add_rlimit(p, &fb[i]);
        return 0;
}

static int prepare_seccomp(struct rt_plan *p, const struct oci_spec *spec, const struct rt_start_options *o,
                           void **owned, hm_error_t *err)
{
        if (o->seccomp_bpf) {
                if (!o->seccomp_bpf_len || o->seccomp_bpf_len % 8)
                        return hm_error_set(err, EINVAL, "seccomp: precompiled filter of %zu bytes", o->seccomp_bpf_len);
                p->bpf = o->seccomp_bpf;
                p->bpf_len = o->seccomp_bpf_len;
                return 0;
        }
        if (!spec->linux_.seccomp)
                return 0;
        size_t len;
        int r = rt_seccomp_compile(spec->linux_.seccomp, owned, &len, err);
        if (r < 0)
                return r;
        p->bpf = *owned;
        p->bpf_len = len;
        return 0;
}

static bool file_starts_with(const char *path, const char *prefix)
{
        _cleanup_free_ char *buf = NULL;
        return read_file(path, 4096, &buf, NULL) == 0 && str_has_prefix(buf, prefix);
}

static bool seccomp_filtered(void)
{
        _cleanup_free_ char *buf = NULL;
        if (read_file("/proc/self/status", 0, &buf, NULL) < 0)
                return false;
        const char *l = strstr(buf, "\nSeccomp:");
        return l && strtol(l + 9, NULL, 10) == 2;
}

/* Why clone with namespace flags was refused, and the fix, as precisely as the host tells. */
static const char *clone_refusal_hint(int e, bool userns)
{
        if (e != EPERM && e != ENOSPC)
                return "";
        if (userns && file_starts_with("/proc/sys/user/max_user_namespaces", "0\n"))
                return " (user.max_user_namespaces is 0: sysctl -w user.max_user_namespaces=15000)";
        if (userns && geteuid() != 0 && file_starts_with("/proc/sys/kernel/unprivileged_userns_clone", "0\n"))
                return " (kernel.unprivileged_userns_clone is 0: sysctl -w kernel.unprivileged_userns_clone=1)";
        if (e == EPERM && seccomp_filtered())
                return " (a seccomp filter around hm refuses new namespaces, as Docker's default profile does: "
                       "run the container with --security-opt seccomp=unconfined or --privileged, or use "
                       "--runner=docker/podman through the engine's mounted socket)";
        if (e == ENOSPC)
                return " (user.max_user_namespaces reached)";
        return userns ? " (unprivileged user namespaces disabled? see user.max_user_namespaces)"
                      : " (CAP_SYS_ADMIN missing?)";
}

static int launch(struct rt_container *c, const struct oci_spec *spec, struct rt_plan *p, const struct rt_idmap *idmap,
                  struct child_fds *f, const struct rt_start_options *o, hm_error_t *err)
{
        p->sync_fd = f->sync[1];
        p->sync_peer_fd = f->sync[0];
        p->stdin_fd = f->in;
        p->stdout_fd = f->out[1];
        p->stderr_fd = f->errp[1];
        p->exec_fifo_fd = f->fifo;
        c->pid = clone_child(p, &c->pidfd);
        if (c->pid < 0) {
                c->pid = 0;
                int e = errno;
                return hm_error_set(err, e, "clone: %s%s", strerror(e), clone_refusal_hint(e, p->userns));
        }
        /* the child holds its ends now; ours must go, or EOF never comes */
        f->sync[1] = safe_close(f->sync[1]);
        f->in = safe_close(f->in);
        f->out[1] = safe_close(f->out[1]);
        f->errp[1] = safe_close(f->errp[1]);
        f->fifo = safe_close(f->fifo);
        p->exec_fifo_fd = -1;
        int r = configure_child(c, spec, p, idmap, err);
        if (r < 0)
                return r;
        c->userns = p->userns;
        c->sync_fd = TAKE_FD(f->sync[0]);
        return o && o->defer_go ? 0 : rt_container_go(c, err);
}

int rt_container_go(struct rt_container *c, hm_error_t *err)
{
        if (c->sync_fd < 0)
                return hm_error_set(err, EINVAL, "start container %d: it was told to go already", (int) c->pid);
        _cleanup_close_ int fd = TAKE_FD(c->sync_fd);
        char go = RT_SYNC_GO;
        if (send(fd, &go, 1, MSG_NOSIGNAL) != 1) {
                /* the child is gone already: its own message says why, if it sent one */
                int e = errno;
                int r = read_sync(c, fd, err);
                return r < 0 ? r : hm_error_set(err, e, "start container: %s", strerror(e));
        }
        return read_sync(c, fd, err);
}

int rt_container_start(const struct oci_spec *spec, const struct rt_start_options *o, struct rt_container **ret,
                       hm_error_t *err)
{
        bool rootless = o->rootless || !hm_privileged();
        _cleanup_(plan_releasep) struct rt_plan plan = { 0 };
        int r = rt_plan_build(&plan, spec, o, rootless, err);
        if (r < 0)
                return r;
        _cleanup_(idmap_releasep) struct rt_idmap idmap = { 0 };
        if (plan.userns && (r = rt_idmap_prepare(&idmap, spec, rootless, err)) < 0)
                return r;
        plan.setgroups_allowed = !plan.userns || idmap.method != RT_IDMAP_SELF;
        plan.rootfs_via_cwd = plan.userns && !rootless && !plan.overlay_data && !plan.shared_mntns;
        _cleanup_free_ void *bpf = NULL;
        r = prepare_seccomp(&plan, spec, o, &bpf, err);
        if (r < 0)
                return r;

        _cleanup_(container_freep) struct rt_container *c = xzalloc(sizeof *c);
        c->pidfd = c->stdout_fd = c->stderr_fd = c->sync_fd = -1;
        if (idmap.method == RT_IDMAP_SELF && plan.userns)
                strv_push(&c->notices, "userns: only the caller's uid/gid is mapped (to 0); no /etc/subuid range or newuidmap");
        r = setup_cgroups(c, &plan, spec, o, rootless, err);
        if (r < 0)
                return r;
        _cleanup_(child_fds_release) struct child_fds fds = { { -1, -1 }, -1, -1, { -1, -1 }, { -1, -1 } };
        r = child_fds_open(&fds, o, err);
        if (r < 0)
                return r;
        r = launch(c, spec, &plan, &idmap, &fds, o, err);
        if (r < 0)
                return r;
        c->stdout_fd = TAKE_FD(fds.out[0]);
        c->stderr_fd = TAKE_FD(fds.errp[0]);
        *ret = TAKE_PTR(c);
        return 0;
}

int rt_exec_start(const struct oci_spec *spec, const struct rt_exec_options *o, struct rt_container **ret,
                  hm_error_t *err)
{
        _cleanup_(plan_releasep) struct rt_plan plan = { 0 };
        int r = rt_plan_build_exec(&plan, spec, o, err);
        if (r < 0)
                return r;
        /* a container without cgroups (rootless, or none writable) got its limits as rlimits: so does its exec */
        bool any_cgroup = false;
        for (int i = 0; i < _RT_CG_MAX && o->cgroups && o->cgroups[i]; i++)
                any_cgroup |= *o->cgroups[i] != 0;
        if (!any_cgroup) {
                struct rt_rlimit fb[2];
                size_t nfb = 0;
                _cleanup_strv_ char **notices = NULL; /* said when the container was created */
                rt_cgroup_rootless(&spec->linux_.resources, &notices, fb, &nfb);
                for (size_t i = 0; i < nfb; i++)
                        add_rlimit(&plan, &fb[i]);
        }
        struct rt_start_options so = { .stdin_fd = o->stdin_fd };
        _cleanup_free_ void *bpf = NULL;
        r = prepare_seccomp(&plan, spec, &so, &bpf, err);
        if (r < 0)
                return r;
        _cleanup_(container_freep) struct rt_container *c = xzalloc(sizeof *c);
        c->pidfd = c->stdout_fd = c->stderr_fd = c->sync_fd = -1;
        c->join_cgroups = o->cgroups;
        _cleanup_(child_fds_release) struct child_fds fds = { { -1, -1 }, -1, -1, { -1, -1 }, { -1, -1 } };
        r = child_fds_open(&fds, &so, err);
        if (r < 0)
                return r;
        r = launch(c, spec, &plan, NULL, &fds, NULL, err);
        c->join_cgroups = NULL;
        if (r < 0)
                return r;
        if (c->exec_pid <= 0)
                return hm_error_set(err, EPROTO, "exec: the command's pid was not reported");
        *ret = TAKE_PTR(c);
        return 0;
}
