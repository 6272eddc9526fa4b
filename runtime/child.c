/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The container side of the clone->exec window.  The parent prepared
 * everything (struct rt_plan); from here on only async-signal-safe calls,
 * no allocation, no stdio.  The order is fixed (style.md lesson 7):
 *
 *  0. (right after clone) reset signal dispositions, block every signal,
 *     close the parent's end of the sync socket, PR_SET_PDEATHSIG,
 *     install stdin/stdout/stderr
 *  1. sync: wait for the parent's "go" byte; by then the parent has written
 *     uid_map/gid_map (and setgroups) and moved us into our cgroups;
 *     then PR_SET_DUMPABLE 0 until execve, and setsid (out of the
 *     caller's terminal signals)
 *  2. namespaces: become root of the new user ns; setns() into joined
 *     namespaces; loopback up in a new network ns; PR_SET_PDEATHSIG
 *     (after the credential change, which clears it)
 *  3. mounts: MS_REC|MS_PRIVATE (MS_SLAVE for a slave/shared
 *     rootfsPropagation) on / unless the mount ns is shared, the rootfs (bind,
 *     via the cwd the parent cloned us with when root maps to another uid,
 *     or overlay), the spec's mounts (proc/sysfs fall back to a read-only
 *     rbind of the host's inside a user ns, reported as a notice), /dev
 *     nodes, linux.devices, pivot_root(".", ".") + umount2(MNT_DETACH) (chroot
 *     in a shared mount ns), rootfsPropagation on the new /, sysctls, masked
 *     paths, read-only paths, read-only root
 *  4. hostname (refused by a filter around hm: kept, reported as a notice);
 *     process.terminal: a pty of the container's devpts, master sent to the
 *     console socket (the slave becomes stdio at step 6, after setsid)
 *  4b. fork: this process stays behind as the container's pid 1 (init.c:
 *     reaps, forwards signals, exits with the command's status); the
 *     new child (pid 2) goes on.  Forking here, after the mounts, gives
 *     pid 1 the final root and /proc while keeping it out of the
 *     user/capability/seccomp switch below (pid 1 makes itself
 *     non-dumpable: no ptrace, /proc/1/exe, /proc/1/mem from the command;
 *     the command waits at step 9 until pid 1 has done so)
 *  5. rlimits, umask
 *  6. setsid; seccomp here instead of step 10 when noNewPrivileges is false
 *     (loading a filter without NNP needs CAP_SYS_ADMIN, gone after 6);
 *     bounding set, setgroups/setresgid/setresuid keeping capabilities,
 *     capset (effective/permitted/inheritable), ambient; the cwd as the
 *     final user, resolved inside the root (no magic links) and checked to
 *     be inside it (CVE-2024-21626 class)
 *  7. PR_SET_NO_NEW_PRIVS
 *  8. unblock signals, PR_SET_PDEATHSIG(SIGKILL) (pid 1 is our parent now)
 *  9. close every fd >= 3 (>= 3+N with --preserve-fds N) but the CLOEXEC
 *     sync fd, so seccomp need not allow close_range
 * 9b. detached create (OCI create/start) only: check the command can be
 *     found, send RT_MSG_READY, block reading one byte from the exec fifo
 *     (OCI start writes it); everything is set up by then, so the state's
 *     pid and "created" are true, and only seccomp (NNP) and exec remain
 * 10. seccomp (raw BPF compiled by the parent)
 * 11. execve (PATH searched in the spec's env, not the host's)
 *
 * OCI exec (p->exec) runs the same sequence with steps 2..4 replaced by
 * step2_join (setns into the container's namespaces, chroot without a
 * mount ns of its own); at 4b the process left behind reports the
 * command's pid and waits for it (or exits at once when detached).
 *
 * Any failure sends {type, errno, len, "what failed"} on the sync fd and
 * _exit(127)s; the parent turns it into "<what failed>: <strerror>".  EOF
 * on the sync fd (closed by exec) means the command is running.
 */
#include "runtime/child.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <grp.h>

#include "runtime/init.h"
#include "runtime/syscalls.h"

/* ---- messages to the parent (no allocation) ---- */

struct msg {
        char buf[RT_MSG_MAX];
        size_t len;
};

static void msg_add(struct msg *m, const char *s)
{
        while (s && *s && m->len < sizeof m->buf - 1)
                m->buf[m->len++] = *s++;
        m->buf[m->len] = 0;
}

static void send_msg(const struct rt_plan *p, int type, int err, const char *a, const char *b, const char *c)
{
        struct {
                struct rt_msg_header h;
                char text[RT_MSG_MAX];
        } out;
        struct msg m = { .len = 0 };
        msg_add(&m, a);
        msg_add(&m, b);
        msg_add(&m, c);
        out.h = (struct rt_msg_header) { type, err, (uint32_t) m.len };
        memcpy(out.text, m.buf, m.len);
        /* MSG_NOSIGNAL: after a detached create nobody reads any more */
        (void) !send(p->sync_fd, &out, sizeof out.h + m.len, MSG_NOSIGNAL);
}

/* "what 'subject'suffix": errno is taken at the call. */
static _Noreturn void die3(const struct rt_plan *p, const char *what, const char *subject, const char *suffix)
{
        int e = errno;
        if (subject) {
                struct msg m = { .len = 0 };
                msg_add(&m, what);
                msg_add(&m, " '");
                msg_add(&m, subject);
                msg_add(&m, "'");
                send_msg(p, RT_MSG_ERROR, e, m.buf, suffix, NULL);
        } else {
                send_msg(p, RT_MSG_ERROR, e, what, suffix, NULL);
        }
        _exit(127);
}

static _Noreturn void die(const struct rt_plan *p, const char *what, const char *subject)
{
        die3(p, what, subject, NULL);
}

static void notice(const struct rt_plan *p, const char *a, const char *b, const char *c)
{
        send_msg(p, RT_MSG_NOTICE, 0, a, b, c);
}

/* ---- small async-signal-safe helpers ---- */

static void fmt_fd_path(char buf[64], int fd)
{
        static const char prefix[] = "/proc/self/fd/";
        char digits[16];
        int n = 0;
        unsigned v = (unsigned) fd;
        do {
                digits[n++] = (char) ('0' + v % 10);
                v /= 10;
        } while (v);
        memcpy(buf, prefix, sizeof prefix - 1);
        size_t len = sizeof prefix - 1;
        while (n)
                buf[len++] = digits[--n];
        buf[len] = 0;
}

static size_t str_copy(char *dst, size_t cap, const char *src)
{
        size_t n = strlen(src);
        if (n >= cap)
                n = cap - 1;
        memcpy(dst, src, n);
        dst[n] = 0;
        return n;
}

/* Flags a bind remount must keep: the kernel refuses to clear locked ones in a user ns. */
static unsigned long locked_flags(const char *path)
{
        struct statvfs sv;
        unsigned long f = 0;
        if (statvfs(path, &sv) < 0)
                return 0;
        if (sv.f_flag & ST_NOSUID)
                f |= MS_NOSUID;
        if (sv.f_flag & ST_NODEV)
                f |= MS_NODEV;
        if (sv.f_flag & ST_NOEXEC)
                f |= MS_NOEXEC;
        if (sv.f_flag & ST_NOATIME)
                f |= MS_NOATIME;
        if (sv.f_flag & ST_NODIRATIME)
                f |= MS_NODIRATIME;
        if (sv.f_flag & ST_RELATIME)
                f |= MS_RELATIME;
        return f;
}

/*
 * Open (creating as needed) a mount target below rootfd, resolving every
 * component inside the rootfs: a symlink in the image cannot redirect a
 * mount onto the host (openat2 RESOLVE_IN_ROOT, kernel 5.6).
 */
static int open_in_root(int rootfd, const char *dest, bool want_dir)
{
        char path[4096];
        size_t len = str_copy(path, sizeof path, dest);
        struct rt_open_how how = { O_PATH | O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS };
        int fd = rt_openat2(rootfd, path, &how);
        if (fd >= 0 || errno != ENOENT)
                return fd;
        /* create the missing components one by one, each resolved in the root */
        for (size_t i = 1; i <= len; i++) {
                if (path[i] != '/' && path[i] != 0)
                        continue;
                char saved = path[i];
                path[i] = 0;
                bool last = i == len;
                fd = rt_openat2(rootfd, path, &how);
                if (fd < 0 && errno == ENOENT) {
                        char *slash = strrchr(path, '/');
                        *slash = 0;
                        struct rt_open_how dhow = { O_PATH | O_DIRECTORY | O_CLOEXEC, 0, how.resolve };
                        int parent = rt_openat2(rootfd, slash == path ? "/" : path, &dhow);
                        *slash = '/';
                        if (parent < 0)
                                return -1;
                        int r;
                        if (!last || want_dir) {
                                r = mkdirat(parent, slash + 1, 0755);
                        } else {
                                r = openat(parent, slash + 1, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
                                if (r >= 0)
                                        close(r);
                        }
                        close(parent);
                        if (r < 0 && errno != EEXIST)
                                return -1;
                        fd = rt_openat2(rootfd, path, &how);
                }
                path[i] = saved;
                if (fd < 0)
                        return -1;
                if (!last)
                        close(fd);
        }
        return fd;
}

/* ---- 2. namespaces ---- */

static void loopback_up(void)
{
        int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
        if (s < 0)
                return;
        struct ifreq ifr = { 0 };
        str_copy(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
        if (ioctl(s, SIOCGIFFLAGS, &ifr) == 0) {
                ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
                (void) ioctl(s, SIOCSIFFLAGS, &ifr);
        }
        close(s);
}

static void step2_namespaces(const struct rt_plan *p)
{
        if (p->userns && (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0))
                die(p, "become root in the user namespace", NULL);
        for (size_t i = 0; i < p->n_joins; i++)
                if (setns(p->joins[i].fd, p->joins[i].nstype) < 0)
                        die(p, "join namespace", NULL);
        if (p->clone_flags & CLONE_NEWNET)
                loopback_up();
        /* detached create: our creator exits on purpose, the container must stay */
        if (p->exec_fifo_fd < 0 && prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
                die(p, "set parent death signal", NULL);
}

static const char *ns_name(int nstype)
{
        switch (nstype) {
        case CLONE_NEWUSER: return "user";
        case CLONE_NEWIPC: return "ipc";
        case CLONE_NEWUTS: return "uts";
        case CLONE_NEWNET: return "network";
        case CLONE_NEWCGROUP: return "cgroup";
        case CLONE_NEWPID: return "pid";
        case CLONE_NEWNS: return "mount";
        default: return "other";
        }
}

/*
 * exec: into the container's namespaces (the user namespace first: the
 * others are owned by it), root of its user namespace, then its root: the
 * mount namespace's own root (after the container's pivot_root, setns puts
 * us on it) or, without a mount namespace of its own, a chroot.
 */
static void step2_join(const struct rt_plan *p)
{
        for (size_t i = 0; i < p->n_joins; i++) {
                if (setns(p->joins[i].fd, p->joins[i].nstype) < 0)
                        die3(p, "join the container's", ns_name(p->joins[i].nstype), " namespace");
                if (p->joins[i].nstype == CLONE_NEWUSER && (setresgid(0, 0, 0) < 0 || setresuid(0, 0, 0) < 0))
                        die(p, "become root in the container's user namespace", NULL);
        }
        if (p->chroot_dir && (chroot(p->chroot_dir) < 0 || chdir("/") < 0))
                die(p, "chroot into the container's root", p->chroot_dir);
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) /* cleared by the credential change */
                die(p, "set parent death signal", NULL);
}

/*
 * exec, the process left behind by the fork: report the command's pid,
 * then stay as its waiter (the caller's handle on its status) or, detached,
 * leave it to the caller's subreaper.
 */
static _Noreturn void exec_parent(const struct rt_plan *p, pid_t main_pid)
{
        struct rt_msg_header h = { RT_MSG_PID, (int32_t) main_pid, 0 };
        if (send(p->sync_fd, &h, sizeof h, MSG_NOSIGNAL) != (ssize_t) sizeof h) {
                kill(main_pid, SIGKILL);
                _exit(127);
        }
        if (p->exec_detach)
                _exit(0);
        rt_init_run(main_pid, false);
}

/* ---- 3. mounts ---- */

static _Noreturn void die_mount(const struct rt_plan *p, const struct rt_mount_op *m)
{
        int e = errno;
        struct msg s = { .len = 0 };
        msg_add(&s, m->kind == RT_MNT_BIND ? "bind mount '" : "mount ");
        msg_add(&s, m->kind == RT_MNT_BIND ? m->source : m->fstype);
        msg_add(&s, m->kind == RT_MNT_BIND ? "' on '" : " on '");
        msg_add(&s, m->dest);
        msg_add(&s, "'");
        send_msg(p, RT_MSG_ERROR, e, s.buf, NULL, NULL);
        _exit(127);
}

static int reopen_target(int rootfd, const char *dest)
{
        struct rt_open_how how = { O_PATH | O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS };
        return rt_openat2(rootfd, dest, &how);
}

/* ro/nosuid/... on an existing (bind) mount, keeping the locked flags. */
static int remount_flags(int rootfd, const char *dest, unsigned long flags)
{
        int fd = reopen_target(rootfd, dest);
        if (fd < 0)
                return -1;
        char fdpath[64];
        fmt_fd_path(fdpath, fd);
        int r = mount(NULL, fdpath, NULL, MS_REMOUNT | MS_BIND | flags | locked_flags(fdpath), NULL);
        close(fd);
        return r;
}

/* Recursive read-only for rbinds (mount_setattr, 5.12); falls back to the top mount only. */
static int make_readonly_recursive(int rootfd, const char *dest)
{
        int fd = reopen_target(rootfd, dest);
        if (fd < 0)
                return -1;
        struct rt_mount_attr attr = { .attr_set = MOUNT_ATTR_RDONLY };
        int r = rt_mount_setattr(fd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr);
        close(fd);
        if (r < 0 && errno == ENOSYS)
                return remount_flags(rootfd, dest, MS_RDONLY);
        return r;
}

/* proc/sysfs refused in a user ns (host network, locked mounts): read-only rbind of the host's. */
static void pseudo_fs_fallback(const struct rt_plan *p, int rootfd, const struct rt_mount_op *m, const char *fdpath)
{
        const char *host = m->kind == RT_MNT_PROC ? "/proc" : "/sys";
        int e = errno;
        if (!p->userns || (e != EPERM && e != EACCES && e != EBUSY && e != EINVAL))
                die_mount(p, m);
        if (mount(host, fdpath, NULL, MS_BIND | MS_REC, NULL) < 0 || make_readonly_recursive(rootfd, m->dest) < 0)
                die_mount(p, m);
        notice(p, m->fstype, m->kind == RT_MNT_PROC
                                     ? ": mounting a new instance was refused (the surrounding /proc has masked or "
                                       "covered paths?); using a read-only bind of the outer /proc (outer processes "
                                       "are visible) on "
                                     : ": mounting a new instance was refused (the surrounding /sys has masked or "
                                       "covered paths, or no network namespace of our own?); using a read-only bind "
                                       "of the outer /sys on ",
               m->dest);
}

static void do_mount(const struct rt_plan *p, int rootfd, const struct rt_mount_op *m)
{
        bool want_dir = true;
        struct stat st;
        if (m->kind == RT_MNT_BIND && stat(m->source, &st) == 0 && !S_ISDIR(st.st_mode))
                want_dir = false;
        int fd = open_in_root(rootfd, m->dest, want_dir);
        if (fd < 0)
                die3(p, "create mount point", m->dest, NULL);
        char fdpath[64];
        fmt_fd_path(fdpath, fd);
        int r;
        if (m->kind == RT_MNT_BIND)
                r = mount(m->source, fdpath, NULL, MS_BIND | (m->recursive ? MS_REC : 0), NULL);
        else
                r = mount(m->source, fdpath, m->fstype, m->flags, m->data);
        if (r < 0 && (m->kind == RT_MNT_PROC || m->kind == RT_MNT_SYSFS)) {
                pseudo_fs_fallback(p, rootfd, m, fdpath);
                r = 0;
        }
        close(fd);
        if (r < 0)
                die_mount(p, m);
        if (m->kind == RT_MNT_BIND && m->flags && remount_flags(rootfd, m->dest, m->flags) < 0)
                die3(p, "remount", m->dest, " with its options");
        if (m->propagation) {
                int tfd = reopen_target(rootfd, m->dest);
                fmt_fd_path(fdpath, tfd);
                if (tfd < 0 || mount(NULL, fdpath, NULL, m->propagation, NULL) < 0)
                        die3(p, "set propagation of", m->dest, NULL);
                close(tfd);
        }
}

static const char *const dev_nodes[] = { "null", "zero", "full", "random", "urandom", "tty" };

static void populate_dev(const struct rt_plan *p, int rootfd)
{
        int devfd = reopen_target(rootfd, "/dev");
        if (devfd < 0)
                die(p, "open '/dev' of the container", NULL);
        char host[32], dest[32], fdpath[64];
        for (size_t i = 0; i < sizeof dev_nodes / sizeof dev_nodes[0]; i++) {
                size_t n = str_copy(host, sizeof host, "/dev/");
                str_copy(host + n, sizeof host - n, dev_nodes[i]);
                memcpy(dest, host, sizeof host);
                int fd = open_in_root(rootfd, dest, false);
                if (fd < 0)
                        die(p, "create device node", dest);
                fmt_fd_path(fdpath, fd);
                if (mount(host, fdpath, NULL, MS_BIND, NULL) < 0)
                        die(p, "bind device node", host);
                close(fd);
        }
        static const char *const links[][2] = {
                { "/proc/self/fd", "fd" },       { "/proc/self/fd/0", "stdin" },
                { "/proc/self/fd/1", "stdout" }, { "/proc/self/fd/2", "stderr" },
                { "pts/ptmx", "ptmx" },          { "/proc/kcore", "core" },
        };
        for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
                if (!p->dev_has_pts && !strcmp(links[i][1], "ptmx"))
                        continue;
                if (symlinkat(links[i][0], devfd, links[i][1]) < 0 && errno != EEXIST)
                        die(p, "create symlink /dev/", links[i][1]);
        }
        close(devfd);
}

/*
 * linux.devices: mknod with the spec's mode and owner; where mknod is
 * refused (a user namespace) the host's node of the same path is bound
 * instead, after checking it is the same device (crun's fallback).  FIFOs
 * can always be made.
 */
static void make_device(const struct rt_plan *p, int rootfd, const struct rt_device *d)
{
        char dir[4096], fdpath[64];
        str_copy(dir, sizeof dir, d->path);
        char *slash = strrchr(dir, '/');
        const char *base = d->path + (slash - dir) + 1;
        *slash = 0;
        int dfd = open_in_root(rootfd, slash == dir ? "/" : dir, true);
        if (dfd < 0)
                die3(p, "create the directory of device", d->path, NULL);
        /* replace what the image or /dev population put there (a bound node: unmount first) */
        if (unlinkat(dfd, base, 0) < 0 && errno == EBUSY) {
                int nfd = openat(dfd, base, O_PATH | O_CLOEXEC | O_NOFOLLOW); /* base: one component */
                if (nfd >= 0) {
                        fmt_fd_path(fdpath, nfd);
                        (void) umount2(fdpath, MNT_DETACH);
                        close(nfd);
                }
                (void) unlinkat(dfd, base, 0);
        }
        if (mknodat(dfd, base, d->mode, d->rdev) == 0) {
                /* mknod applied our umask; owner and exact mode as the spec says */
                if (fchownat(dfd, base, d->uid, d->gid, AT_SYMLINK_NOFOLLOW) < 0)
                        die3(p, "chown device", d->path, NULL);
                if (fchmodat(dfd, base, d->mode & 07777, 0) < 0)
                        die3(p, "chmod device", d->path, NULL);
                close(dfd);
                return;
        }
        if (errno != EPERM || !p->userns)
                die3(p, "mknod device", d->path, NULL);
        struct stat st;
        if (stat(d->path, &st) < 0 || (st.st_mode & S_IFMT) != (d->mode & S_IFMT) || st.st_rdev != d->rdev) {
                errno = ENODEV;
                die3(p, "device", d->path, ": mknod is not permitted in a user namespace and the host has no such node to bind");
        }
        int fd = openat(dfd, base, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
        close(dfd);
        if (fd < 0)
                die3(p, "create the bind target of device", d->path, NULL);
        fmt_fd_path(fdpath, fd);
        if (mount(d->path, fdpath, NULL, MS_BIND, NULL) < 0)
                die3(p, "bind the host's device", d->path, NULL);
        close(fd);
}

static void mount_rootfs(const struct rt_plan *p)
{
        /* a shared (joined or the caller's) mount namespace keeps its propagation */
        if (!p->shared_mntns && mount(NULL, "/", NULL, p->tree_propagation, NULL) < 0)
                die(p, p->tree_propagation & MS_SLAVE ? "make '/' rslave" : "make '/' rprivate", NULL);
        if (p->overlay_data) {
                if (mount("overlay", p->rootfs, "overlay", 0, p->overlay_data) < 0)
                        die3(p, "mount overlay rootfs on", p->rootfs, NULL);
        } else if (p->rootfs_via_cwd) {
                /* cwd is the rootfs: clone it (recursively) and put the copy on top of it, then step in */
                int t = (int) syscall(SYS_open_tree, AT_FDCWD, "", AT_EMPTY_PATH | AT_RECURSIVE | OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
                if (t < 0 || syscall(SYS_move_mount, t, "", AT_FDCWD, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0 ||
                    fchdir(t) < 0)
                        die(p, "bind mount rootfs", p->rootfs);
                close(t);
        } else if (mount(p->rootfs, p->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0) {
                die(p, "bind mount rootfs", p->rootfs);
        }
}

static void pivot(const struct rt_plan *p)
{
        if (!p->rootfs_via_cwd && chdir(p->rootfs) < 0)
                die(p, "chdir to rootfs", p->rootfs);
        if (p->shared_mntns) {
                /* pivot_root would move the root of every process in that namespace */
                if (chroot(".") < 0)
                        die(p, "chroot to", p->rootfs);
                if (chdir("/") < 0)
                        die(p, "chdir to '/'", NULL);
                return;
        }
        if (rt_pivot_root(".", ".") < 0)
                die(p, "pivot_root to", p->rootfs);
        /* the old root is now stacked on "."; detach it */
        if (umount2(".", MNT_DETACH) < 0)
                die(p, "detach the old root", NULL);
        if (chdir("/") < 0)
                die(p, "chdir to '/'", NULL);
}

static void write_sysctls(const struct rt_plan *p)
{
        for (size_t i = 0; p->sysctl_paths && p->sysctl_paths[i]; i++) {
                int fd = open(p->sysctl_paths[i], O_WRONLY | O_CLOEXEC);
                const char *v = p->sysctl_values[i];
                if (fd < 0 || write(fd, v, strlen(v)) < 0)
                        die(p, "set sysctl", p->sysctl_paths[i] + strlen("/proc/sys/"));
                close(fd);
        }
}

static void mask_paths(const struct rt_plan *p)
{
        for (size_t i = 0; p->masked && p->masked[i]; i++) {
                const char *path = p->masked[i];
                struct stat st;
                if (stat(path, &st) < 0) {
                        if (errno == ENOENT)
                                continue;
                        die(p, "mask", path);
                }
                int r = S_ISDIR(st.st_mode)
                                ? mount("tmpfs", path, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=0,mode=555")
                                : mount("/dev/null", path, NULL, MS_BIND, NULL);
                if (r < 0)
                        die(p, "mask", path);
        }
}

static void readonly_paths(const struct rt_plan *p)
{
        for (size_t i = 0; p->readonly && p->readonly[i]; i++) {
                const char *path = p->readonly[i];
                if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0) {
                        if (errno == ENOENT)
                                continue;
                        die(p, "bind read-only path", path);
                }
                if (mount(NULL, path, NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | locked_flags(path), NULL) < 0)
                        die(p, "remount read-only", path);
        }
}

static void step3_mounts(const struct rt_plan *p)
{
        mount_rootfs(p);
        int rootfd = open(p->rootfs_via_cwd ? "." : p->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0)
                die(p, "open rootfs", p->rootfs);
        for (size_t i = 0; i < p->n_mounts; i++)
                do_mount(p, rootfd, &p->mounts[i]);
        if (p->dev_is_tmpfs)
                populate_dev(p, rootfd);
        for (size_t i = 0; i < p->n_devices; i++)
                make_device(p, rootfd, &p->devices[i]);
        close(rootfd);
        pivot(p);
        if (p->root_propagation && mount(NULL, "/", NULL, p->root_propagation, NULL) < 0)
                die(p, "set linux.rootfsPropagation on '/'", NULL);
        write_sysctls(p);
        mask_paths(p);
        readonly_paths(p);
        if (p->root_readonly && mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | locked_flags("/"), NULL) < 0)
                die(p, "remount '/' read-only", NULL);
}

/* ---- 4a. terminal ---- */

static int pty_slave = -1; /* this process only (after clone): the command's terminal */
static int init_ready = -1; /* the command's read end of the pipe pid 1 closes once it dropped everything */

/*
 * process.terminal: a pty of the container's own devpts (opened after
 * pivot_root, so /dev/ptmx is the container's); the master goes to the
 * console socket with SCM_RIGHTS (runc's protocol: the payload is a name),
 * the slave becomes the command's stdio and controlling terminal at step 6.
 */
static void setup_console(const struct rt_plan *p)
{
        int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0)
                die(p, "open '/dev/ptmx' of the container (process.terminal needs a devpts on /dev/pts)", NULL);
        int unlock = 0;
        if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
                die(p, "unlock the pty", NULL);
        if (p->console_rows || p->console_cols) {
                struct winsize ws = { .ws_row = p->console_rows, .ws_col = p->console_cols };
                if (ioctl(master, TIOCSWINSZ, &ws) < 0)
                        die(p, "set process.consoleSize", NULL);
        }
        pty_slave = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (pty_slave < 0)
                die(p, "open the pty's slave", NULL);
        static const char name[] = "/dev/ptmx";
        struct iovec iov = { (void *) name, sizeof name - 1 };
        union {
                char buf[CMSG_SPACE(sizeof(int))];
                struct cmsghdr align;
        } u;
        memset(&u, 0, sizeof u);
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
        struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &master, sizeof(int));
        if (sendmsg(p->console_fd, &mh, MSG_NOSIGNAL) < 0)
                die(p, "send the pty master to the console socket", NULL);
        close(master);
        close(p->console_fd);
}

/* step 6, right after setsid: the pty becomes our controlling terminal and stdio */
static void attach_console(const struct rt_plan *p)
{
        if (pty_slave < 0)
                return;
        if (ioctl(pty_slave, TIOCSCTTY, 0) < 0)
                die(p, "make the pty the controlling terminal", NULL);
        if (dup2(pty_slave, 0) < 0 || dup2(pty_slave, 1) < 0 || dup2(pty_slave, 2) < 0)
                die(p, "make the pty stdio", NULL);
        close(pty_slave);
        pty_slave = -1;
}

/* ---- 5./6. process attributes ---- */

static void step5_rlimits(const struct rt_plan *p)
{
        for (size_t i = 0; i < p->n_rlimits; i++) {
                struct rlimit rl = { p->rlimits[i].soft, p->rlimits[i].hard };
                if (setrlimit(p->rlimits[i].type, &rl) < 0)
                        die(p, "set rlimit", NULL);
        }
        if (p->umask_present)
                umask(p->umask);
}

static int set_caps(uint64_t eff, uint64_t perm, uint64_t inh)
{
        struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
        struct __user_cap_data_struct d[2] = {
                { (uint32_t) eff, (uint32_t) perm, (uint32_t) inh },
                { (uint32_t) (eff >> 32), (uint32_t) (perm >> 32), (uint32_t) (inh >> 32) },
        };
        return rt_capset(&h, d);
}

static void load_seccomp(const struct rt_plan *p)
{
        if (!p->bpf)
                return;
        struct sock_fprog prog = { (unsigned short) (p->bpf_len / sizeof(struct sock_filter)),
                                   (struct sock_filter *) p->bpf };
        int r = rt_seccomp(SECCOMP_SET_MODE_FILTER, 0, &prog);
        if (r < 0 && errno == ENOSYS) /* seccomp(2) is 3.17; prctl is the older door */
                r = prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog);
        if (r < 0)
                die(p, "load seccomp filter", NULL);
}

static void switch_user(const struct rt_plan *p)
{
        if (prctl(PR_SET_KEEPCAPS, 1) < 0)
                die(p, "keep capabilities", NULL);
        /* the bounding set needs CAP_SETPCAP: drop it before the uid switch */
        for (int cap = 0; cap <= p->cap_last; cap++)
                if (!(p->cap_bounding & (UINT64_C(1) << cap)) && prctl(PR_CAPBSET_DROP, cap) < 0 && errno != EINVAL)
                        die(p, "drop capability from the bounding set", NULL);
        if (p->setgroups_allowed) {
                if (setgroups(p->n_groups, p->groups) < 0)
                        die(p, "setgroups", NULL);
        } else if (p->n_groups) {
                errno = EPERM;
                die(p, "setgroups (denied in this user namespace; additionalGids need newgidmap)", NULL);
        }
        if (setresgid(p->gid, p->gid, p->gid) < 0)
                die(p, "setresgid", NULL);
        if (setresuid(p->uid, p->uid, p->uid) < 0)
                die(p, "setresuid", NULL);
        if (set_caps(p->cap_effective, p->cap_permitted, p->cap_inheritable) < 0)
                die(p, "set capabilities", NULL);
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
                die(p, "clear ambient capabilities", NULL);
        for (int cap = 0; cap <= p->cap_last; cap++)
                if ((p->cap_ambient & (UINT64_C(1) << cap)) && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
                        die(p, "raise ambient capability", NULL);
        if (prctl(PR_SET_KEEPCAPS, 0) < 0)
                die(p, "reset keep-capabilities", NULL);
}

/*
 * CVE-2024-21626 class: until step 9 this process still holds every fd the
 * caller had (clone copies them, CLOEXEC only acts at exec), so a cwd such
 * as /proc/self/fd/N, or an image symlink to it, would chdir onto the host.
 * The cwd is resolved inside the new root with magic links refused, as the
 * final user (search permission), and the result is checked: the kernel
 * reports a cwd outside the root as "(unreachable)/...".
 */
static void enter_cwd(const struct rt_plan *p)
{
        int rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (rootfd < 0)
                die(p, "open '/' of the container", NULL);
        struct rt_open_how how = { O_PATH | O_DIRECTORY | O_CLOEXEC, 0, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS };
        int fd = rt_openat2(rootfd, p->cwd, &how);
        close(rootfd);
        /*
         * before 5.6 (ENOSYS), or a seccomp profile loaded at step 6 that
         * predates openat2 (EPERM/ENOSYS): plain chdir, still checked below
         */
        if (fd < 0 && (errno == ENOSYS || (errno == EPERM && !p->no_new_privs && p->bpf))) {
                if (chdir(p->cwd) < 0)
                        die(p, "chdir to cwd", p->cwd);
        } else if (fd < 0 || fchdir(fd) < 0) {
                die(p, "chdir to cwd", p->cwd);
        }
        if (fd >= 0)
                close(fd);
        char buf[4096];
        long n = syscall(SYS_getcwd, buf, sizeof buf);
        if (n <= 0 || buf[0] != '/') {
                errno = EXDEV;
                die3(p, "cwd", p->cwd, " resolves outside the container root");
        }
}

static void step6_identity(const struct rt_plan *p)
{
        if (setsid() < 0)
                die(p, "setsid", NULL);
        attach_console(p);
        if (!p->no_new_privs)
                load_seccomp(p);
        switch_user(p);
        enter_cwd(p);
}

static void step9_close_fds(const struct rt_plan *p)
{
        /* --preserve-fds: 3..first-1 stay, and across exec */
        unsigned first = 3 + p->preserve_fds;
        for (unsigned fd = 3; fd < first; fd++)
                (void) fcntl((int) fd, F_SETFD, 0);
        /* keep the sync fd and the exec fifo (if any), both >= first */
        unsigned keep[2] = { (unsigned) p->sync_fd, p->exec_fifo_fd >= 0 ? (unsigned) p->exec_fifo_fd : (unsigned) p->sync_fd };
        if (keep[0] > keep[1]) {
                unsigned t = keep[0];
                keep[0] = keep[1];
                keep[1] = t;
        }
        if ((keep[0] == first || rt_close_range(first, keep[0] - 1, 0) == 0) &&
            (keep[1] == keep[0] || keep[1] == keep[0] + 1 || rt_close_range(keep[0] + 1, keep[1] - 1, 0) == 0) &&
            rt_close_range(keep[1] + 1, ~0U, 0) == 0)
                return;
        /* before 5.9: close one by one up to the fd limit */
        struct rlimit rl;
        int max = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < 65536 ? (int) rl.rlim_cur : 65536;
        for (int fd = (int) first; fd < max; fd++)
                if (fd != p->sync_fd && fd != p->exec_fifo_fd)
                        close(fd);
}

/*
 * Detached create: a command that cannot be found must fail create, not
 * start (nobody listens on the sync socket by then), so the PATH search is
 * checked here first.
 */
static void check_command(const struct rt_plan *p)
{
        const char *cmd = p->argv[0];
        if (strchr(cmd, '/') || !p->path_env) {
                if (access(cmd, X_OK) < 0)
                        die(p, "exec", cmd);
                return;
        }
        char buf[4096];
        for (const char *dir = p->path_env; *dir;) {
                size_t n = strcspn(dir, ":");
                if (n && n + strlen(cmd) + 2 <= sizeof buf) {
                        memcpy(buf, dir, n);
                        buf[n] = '/';
                        str_copy(buf + n + 1, sizeof buf - n - 1, cmd);
                        if (access(buf, X_OK) == 0)
                                return;
                }
                dir += n;
                if (*dir == ':')
                        dir++;
        }
        errno = ENOENT;
        die(p, "exec", cmd);
}

/* Detached create, the last step before seccomp(NNP) and exec: report ready, wait for start. */
static void wait_for_start(const struct rt_plan *p)
{
        check_command(p);
        send_msg(p, RT_MSG_READY, 0, NULL, NULL, NULL);
        char c;
        ssize_t n;
        do
                n = read(p->exec_fifo_fd, &c, 1);
        while (n < 0 && errno == EINTR);
        if (n != 1)
                _exit(127);
        /* kept open (CLOEXEC) until exec: OCI start sees the fifo lose its last reader then */
}

/* ---- 11. exec ---- */

static _Noreturn void exec_command(const struct rt_plan *p)
{
        const char *cmd = p->argv[0];
        if (strchr(cmd, '/') || !p->path_env) {
                execve(cmd, p->argv, p->envp);
                die(p, "exec", cmd);
        }
        char buf[4096];
        int first_err = ENOENT;
        for (const char *dir = p->path_env; *dir;) {
                size_t n = strcspn(dir, ":");
                if (n && n + strlen(cmd) + 2 <= sizeof buf) {
                        memcpy(buf, dir, n);
                        buf[n] = '/';
                        str_copy(buf + n + 1, sizeof buf - n - 1, cmd);
                        execve(buf, p->argv, p->envp);
                        if (errno != ENOENT && errno != ENOTDIR)
                                first_err = first_err == ENOENT ? errno : first_err;
                }
                dir += n;
                if (*dir == ':')
                        dir++;
        }
        errno = first_err;
        die(p, "exec", cmd);
}

/*
 * Before anything of the command's own runs: pid 1 has dropped its
 * capabilities and bounding set and is not dumpable (it closes its end of
 * the pipe after that, init.c), so the command never sees it otherwise.
 */
static void wait_for_init(void)
{
        char c;
        while (read(init_ready, &c, 1) < 0 && errno == EINTR)
                ;
        close(init_ready);
        init_ready = -1;
}

/* ---- the sequence ---- */

static void step0_signals_stdio(const struct rt_plan *p)
{
        sigset_t all;
        sigfillset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        /*
         * clone copied the parent's end of the sync socket: while we hold it, the
         * parent's death (SIGKILL before "go") is no EOF and step 1 would wait
         * forever.  Drop it, and die with the parent too (step 2 sets this again:
         * the credential change clears it).
         */
        if (p->sync_peer_fd >= 0)
                close(p->sync_peer_fd);
        if (p->exec_fifo_fd < 0)
                (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
        /* exec keeps SIG_IGN: the command must not inherit the caller's ignored signals */
        for (int sig = 1; sig < NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        signal(sig, SIG_DFL);
        if (dup2(p->stdin_fd, 0) < 0 || dup2(p->stdout_fd, 1) < 0 || dup2(p->stderr_fd, 2) < 0)
                die(p, "set up stdio", NULL);
}

static void step1_sync(const struct rt_plan *p)
{
        char c;
        ssize_t n;
        do
                n = read(p->sync_fd, &c, 1);
        while (n < 0 && errno == EINTR);
        if (n != 1 || c != RT_SYNC_GO)
                _exit(127); /* the parent gave up: it reports its own error */
}

/*
 * A seccomp filter around hm (Podman's default profile gates sethostname on
 * CAP_SYS_ADMIN, which a container's root lacks) refuses the call although we
 * own the UTS namespace: the step keeps the surrounding hostname, said once.
 */
static void step4_hostname(const struct rt_plan *p)
{
        if (!p->hostname || sethostname(p->hostname, strlen(p->hostname)) == 0)
                return;
        if (!p->userns || errno != EPERM)
                die(p, "set hostname", p->hostname);
        notice(p, "uts: setting the hostname was refused (a seccomp filter around hm?); steps see the surrounding "
                  "hostname in their own UTS namespace", NULL, NULL);
}

_Noreturn void rt_child_run(const struct rt_plan *p)
{
        step0_signals_stdio(p);
        step1_sync(p);
        /*
         * Until execve (which makes the command dumpable again, as runc does
         * for CVE-2016-9962): no ptrace and no /proc/N/{exe,mem,fd} of this
         * process by others of its uid.  A process exec'd into the container,
         * or one of a pid namespace joined by path, could otherwise drive it
         * before its seccomp filter (step 10) is loaded, use the fds it holds
         * until step 9, or open hm's binary on the host as /proc/N/exe.  Not
         * before step 1: the parent writes our id maps and opens our
         * namespaces before "go".
         */
        if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
                die(p, "make the process non-dumpable", NULL);
        /*
         * Out of the caller's session and process group: a Ctrl-C or hangup
         * on the caller's terminal goes to the caller (hm stops its steps with
         * its grace period; `hm oci run` forwards it once), not straight to
         * the container's pid 1 as well.
         */
        if (setsid() < 0)
                die(p, "setsid", NULL);
        if (p->exec) {
                step2_join(p);
        } else {
                step2_namespaces(p);
                step3_mounts(p);
                step4_hostname(p);
        }
        if (p->terminal)
                setup_console(p);

        int ready[2];
        if (pipe2(ready, O_CLOEXEC) < 0)
                die(p, "create the pid 1 ready pipe", NULL);
        pid_t main_pid = fork();
        if (main_pid < 0)
                die(p, "fork the command", NULL);
        if (main_pid > 0 && p->exec)
                exec_parent(p, main_pid);
        if (main_pid > 0)
                rt_init_run(main_pid, !(p->clone_flags & CLONE_NEWPID)); /* closes both ends */
        close(ready[1]);
        init_ready = ready[0];

        step5_rlimits(p);
        step6_identity(p);
        if (p->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
                die(p, "set no_new_privs", NULL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        /* detached exec: our parent exits at once, the command stays */
        if (!p->exec_detach && prctl(PR_SET_PDEATHSIG, SIGKILL) < 0)
                die(p, "set parent death signal", NULL);
        wait_for_init();
        step9_close_fds(p);
        if (p->exec_fifo_fd >= 0)
                wait_for_start(p);
        if (p->no_new_privs)
                load_seccomp(p);
        exec_command(p);
}
