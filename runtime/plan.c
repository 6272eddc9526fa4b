/* SPDX-License-Identifier: Apache-2.0 */
/*
 * struct oci_spec + options -> struct rt_plan: every path, string and
 * decision the child needs, made before clone (git's "prepare argv/envp
 * before fork").  Errors name the JSON path of the offending field.
 */
#include "runtime/child.h"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/sysmacros.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "lib/strbuf.h"
#include "lib/util.h"
#include "oci/spec.h"
#include "oci/store.h"
#include "runtime/runtime.h"
#include "runtime/syscalls.h"

/* The namespace type behind an fd (NS_GET_NSTYPE, 4.11); EINVAL when it differs. */
static int setns_check(int fd, int flag)
{
        int t = ioctl(fd, NS_GET_NSTYPE);
        if (t < 0)
                return errno == ENOTTY ? (errno = EINVAL, -1) : (errno == ENOSYS ? 0 : -1);
        if (t != flag) {
                errno = EINVAL;
                return -1;
        }
        return 0;
}

static const int ns_clone_flags[_OCI_NS_MAX] = {
        [OCI_NS_PID] = CLONE_NEWPID,   [OCI_NS_NETWORK] = CLONE_NEWNET, [OCI_NS_MOUNT] = CLONE_NEWNS,
        [OCI_NS_IPC] = CLONE_NEWIPC,   [OCI_NS_UTS] = CLONE_NEWUTS,     [OCI_NS_USER] = CLONE_NEWUSER,
        [OCI_NS_CGROUP] = CLONE_NEWCGROUP,
};

static int plan_namespaces(struct rt_plan *p, const struct oci_spec *spec, bool rootless, hm_error_t *err)
{
        const struct oci_linux *l = &spec->linux_;
        const struct oci_namespace *user = oci_spec_find_namespace(spec, OCI_NS_USER);
        if (user && user->path)
                return hm_error_set(err, EOPNOTSUPP, "linux.namespaces[%zu].path: joining an existing user namespace is not supported",
                                    (size_t) (user - l->namespaces));
        p->userns = rootless || user;
        if (p->userns)
                p->clone_flags |= CLONE_NEWUSER;
        bool mount_joined = false;
        for (size_t i = 0; i < l->n_namespaces; i++) {
                const struct oci_namespace *ns = &l->namespaces[i];
                int flag = ns_clone_flags[ns->type];
                if (!flag)
                        return hm_error_set(err, EOPNOTSUPP, "linux.namespaces[%zu]: '%s' not supported", i,
                                            oci_ns_type_to_string(ns->type));
                if (!ns->path) {
                        p->clone_flags |= (unsigned long) flag;
                        continue;
                }
                /* a namespace owned by the host's user ns: setns needs capabilities there */
                if (p->userns)
                        return hm_error_set(err, EOPNOTSUPP,
                                            "linux.namespaces[%zu].path: joining an existing '%s' namespace is not supported with a new user namespace",
                                            i, oci_ns_type_to_string(ns->type));
                int fd = open(ns->path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        return hm_error_set(err, errno, "linux.namespaces[%zu].path: open '%s': %s", i, ns->path, strerror(errno));
                if (setns_check(fd, flag) < 0) {
                        int e = errno;
                        close(fd);
                        return hm_error_set(err, e, "linux.namespaces[%zu].path: '%s' is not a %s namespace", i, ns->path,
                                            oci_ns_type_to_string(ns->type));
                }
                if (ns->type == OCI_NS_PID) {
                        p->pidns_fd = fd; /* joined by the parent around clone: pid 1 of the container must be in it */
                        continue;
                }
                mount_joined |= ns->type == OCI_NS_MOUNT;
                p->joins[p->n_joins++] = (struct rt_join) { flag, fd };
        }
        p->shared_mntns = !(p->clone_flags & CLONE_NEWNS);
        if (p->shared_mntns && !mount_joined && p->userns)
                return hm_error_set(err, EINVAL, "linux.namespaces: a user namespace needs a mount namespace of its own");
        return 0;
}

static int plan_rootfs(struct rt_plan *p, const struct oci_spec *spec, const struct rt_overlay *ov, hm_error_t *err)
{
        p->root_readonly = spec->root.readonly;
        if (!ov) {
                const char *root = spec->root.path;
                struct stat st;
                if (!root || root[0] != '/')
                        return hm_error_set(err, EINVAL, "root.path: '%s' is not an absolute path", root ? root : "");
                if (stat(root, &st) < 0 || !S_ISDIR(st.st_mode))
                        return hm_error_set(err, errno ? errno : ENOTDIR, "root.path '%s': %s", root,
                                            strerror(errno ? errno : ENOTDIR));
                p->rootfs = xstrdup(root);
                return 0;
        }
        size_t n = strv_len(ov->lower);
        if (!n)
                return hm_error_set(err, EINVAL, "rootfs overlay: no lower directory");
        /* the overlay goes on top of its own top layer, visible only in the container's mount ns */
        p->rootfs = xstrdup(ov->target ? ov->target : ov->lower[0]);
        if (n == 1 && !ov->upper) {
                /* overlayfs needs two lowers without an upper: a read-only bind is the same */
                p->root_readonly = true;
                return 0;
        }
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
        strbuf_addstr(&sb, "lowerdir=");
        for (size_t i = 0; i < n; i++) {
                if (strpbrk(ov->lower[i], ":,"))
                        return hm_error_set(err, EINVAL, "rootfs overlay: lower dir '%s' contains ':' or ','", ov->lower[i]);
                strbuf_addf(&sb, "%s%s", i ? ":" : "", ov->lower[i]);
        }
        if (ov->upper)
                strbuf_addf(&sb, ",upperdir=%s,workdir=%s", ov->upper, ov->work ? ov->work : "");
        if (p->userns)
                strbuf_addstr(&sb, ",userxattr");
        if (sb.len > 4000)
                return hm_error_set(err, E2BIG, "rootfs overlay: %zu bytes of mount options exceed a page", sb.len);
        p->overlay_data = strbuf_detach(&sb, NULL);
        return 0;
}

static int plan_mount(struct rt_plan *p, const struct oci_mount *m, size_t i, hm_error_t *err)
{
        struct oci_mount_flags f;
        int r = oci_mount_parse_options(m->options, &f, err);
        if (r < 0)
                return hm_error_wrap(err, "mounts[%zu]", i);
        const char *type = m->type ? m->type : "";
        struct rt_mount_op *op = &p->mounts[p->n_mounts++];
        *op = (struct rt_mount_op) { .dest = xstrdup(m->destination), .flags = f.flags, .propagation = f.propagation,
                                     .recursive = f.recursive, .data = f.data };
        if (f.bind || !strcmp(type, "bind")) {
                if (!m->source || m->source[0] != '/')
                        return hm_error_set(err, EINVAL, "mounts[%zu].source: a bind mount needs an absolute host path", i);
                op->kind = RT_MNT_BIND;
                op->source = xstrdup(m->source);
                return 0;
        }
        if (!*type)
                return hm_error_set(err, EINVAL, "mounts[%zu].type: missing (and no bind option)", i);
        if (!strcmp(type, "cgroup")) {
                /*
                 * A v1 "cgroup" mount names no hierarchy (engines add one for
                 * /sys/fs/cgroup; mounting it as is answers EBUSY): the host's
                 * tree is bound instead, with the mount's flags (ro) on top.
                 */
                op->kind = RT_MNT_BIND;
                op->source = xstrdup("/sys/fs/cgroup");
                op->recursive = true;
                free(op->data);
                op->data = NULL;
                return 0;
        }
        op->kind = !strcmp(type, "proc") ? RT_MNT_PROC : !strcmp(type, "sysfs") ? RT_MNT_SYSFS : RT_MNT_FS;
        op->fstype = xstrdup(type);
        op->source = xstrdup(m->source ? m->source : type);
        if (!strcmp(m->destination, "/dev") && !strcmp(type, "tmpfs"))
                p->dev_is_tmpfs = true;
        if (!strcmp(m->destination, "/dev/pts"))
                p->dev_has_pts = true;
        return 0;
}

static int plan_devices(struct rt_plan *p, const struct oci_linux *l, hm_error_t *err)
{
        p->devices = xcalloc(l->n_devices + 1, sizeof *p->devices);
        for (size_t i = 0; i < l->n_devices; i++) {
                const struct oci_device *d = &l->devices[i];
                if (!strcmp(d->path, "/") || strstr(d->path, "/../") || str_has_suffix(d->path, "/.."))
                        return hm_error_set(err, EINVAL, "linux.devices[%zu].path: '%s' is not a file path", i, d->path);
                mode_t type = d->type == 'b' ? S_IFBLK : d->type == 'p' ? S_IFIFO : S_IFCHR;
                struct rt_device *rd = &p->devices[p->n_devices++];
                *rd = (struct rt_device) { .path = xstrdup(d->path),
                                           .mode = type | (d->file_mode_present ? d->file_mode & 07777 : 0666),
                                           .rdev = type == S_IFIFO ? 0 : makedev((unsigned) d->major, (unsigned) d->minor),
                                           .uid = d->uid_present ? d->uid : 0,
                                           .gid = d->gid_present ? d->gid : 0 };
        }
        return 0;
}

/*
 * linux.rootfsPropagation.  A new mount namespace starts as a copy of the
 * host's, in the same peer groups: its "/" is first made rprivate (default,
 * private, unbindable) or rslave (slave, shared: host mounts still arrive),
 * so nothing the container mounts ever propagates back to the host.  The
 * requested mode is then set on the container's root after pivot_root.
 */
static void plan_propagation(struct rt_plan *p, const struct oci_linux *l)
{
        unsigned long want = l->rootfs_propagation;
        p->tree_propagation = MS_REC | (want & (MS_SLAVE | MS_SHARED) ? MS_SLAVE : MS_PRIVATE);
        p->root_propagation = want;
}

/* Only namespaced sysctls: anything else would change the host. */
static int plan_sysctls(struct rt_plan *p, const struct oci_linux *l, hm_error_t *err)
{
        for (size_t i = 0; i < l->n_sysctl; i++) {
                const char *k = l->sysctl[i].key;
                bool ipc = str_has_prefix(k, "kernel.msg") || str_has_prefix(k, "kernel.sem") ||
                           str_has_prefix(k, "kernel.shm") || str_has_prefix(k, "fs.mqueue.");
                bool net = str_has_prefix(k, "net.");
                bool uts = !strcmp(k, "kernel.hostname") || !strcmp(k, "kernel.domainname");
                if (!(ipc && (p->clone_flags & CLONE_NEWIPC)) && !(net && (p->clone_flags & CLONE_NEWNET)) &&
                    !(uts && (p->clone_flags & CLONE_NEWUTS)))
                        return hm_error_set(err, EPERM, "linux.sysctl.%s: not namespaced in this container (would change the host)", k);
                char *path = xasprintf("/proc/sys/%s", k);
                for (char *c = path + strlen("/proc/sys/"); *c; c++)
                        if (*c == '.')
                                *c = '/';
                strv_push_take(&p->sysctl_paths, path);
                strv_push(&p->sysctl_values, l->sysctl[i].value);
        }
        return 0;
}

static int read_cap_last(void)
{
        _cleanup_free_ char *buf = NULL;
        if (read_file("/proc/sys/kernel/cap_last_cap", 64, &buf, NULL) < 0)
                return 40;
        int n = (int) strtol(buf, NULL, 10);
        return n > 0 && n < 64 ? n : 40;
}

static int plan_process(struct rt_plan *p, const struct oci_process *proc, hm_error_t *err)
{
        if (!proc->args || !proc->args[0] || !*proc->args[0])
                return hm_error_set(err, EINVAL, "process.args: empty");
        if (!proc->cwd || proc->cwd[0] != '/')
                return hm_error_set(err, EINVAL, "process.cwd: not an absolute path");
        p->terminal = proc->terminal;
        p->console_rows = (unsigned short) (proc->console_height > 65535 ? 65535 : proc->console_height);
        p->console_cols = (unsigned short) (proc->console_width > 65535 ? 65535 : proc->console_width);
        p->argv = strv_copy(proc->args);
        p->envp = strv_copy(proc->env);
        for (char **e = p->envp; *e; e++)
                if (str_has_prefix(*e, "PATH="))
                        p->path_env = *e + 5;
        p->cwd = xstrdup(proc->cwd);
        p->rlimits = xcalloc(proc->n_rlimits + 2, sizeof *p->rlimits); /* +2: cgroup fallbacks */
        for (size_t i = 0; i < proc->n_rlimits; i++)
                p->rlimits[p->n_rlimits++] = (struct rt_rlimit) { proc->rlimits[i].type, proc->rlimits[i].soft, proc->rlimits[i].hard };
        p->uid = proc->user.uid;
        p->gid = proc->user.gid;
        p->n_groups = proc->user.n_additional_gids;
        p->groups = xcalloc(p->n_groups + 1, sizeof(gid_t));
        memcpy(p->groups, proc->user.additional_gids ? proc->user.additional_gids : p->groups, p->n_groups * sizeof(gid_t));
        p->umask = proc->user.umask;
        p->umask_present = proc->user.umask_present;
        const struct oci_capabilities *c = &proc->capabilities;
        p->cap_bounding = c->bounding;
        p->cap_effective = c->effective;
        p->cap_permitted = c->permitted;
        p->cap_inheritable = c->inheritable;
        p->cap_ambient = c->ambient;
        p->cap_last = read_cap_last();
        p->no_new_privs = proc->no_new_privileges;
        return 0;
}

/* The console socket (a path the caller listens on) connected now, above stdio. */
static int plan_console(struct rt_plan *p, const char *console_socket, hm_error_t *err)
{
        if (!p->terminal) {
                if (console_socket)
                        return hm_error_set(err, EINVAL, "--console-socket given but process.terminal is false");
                return 0;
        }
        if (!console_socket)
                return hm_error_set(err, EINVAL, "process.terminal: needs a console socket (--console-socket PATH)");
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        if (strlen(console_socket) >= sizeof sa.sun_path)
                return hm_error_set(err, ENAMETOOLONG, "--console-socket '%s': path too long", console_socket);
        memcpy(sa.sun_path, console_socket, strlen(console_socket) + 1);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *) &sa, sizeof sa) < 0) {
                int e = errno;
                safe_close(fd);
                return hm_error_set(err, e, "--console-socket '%s': connect: %s", console_socket, strerror(e));
        }
        if (fd <= 2) { /* dup2 onto stdio in the child must not clobber it */
                int n = fcntl(fd, F_DUPFD_CLOEXEC, 3);
                close(fd);
                fd = n;
        }
        p->console_fd = fd;
        return fd < 0 ? hm_error_set(err, errno, "--console-socket: %s", strerror(errno)) : 0;
}

static int plan_preserve_fds(struct rt_plan *p, unsigned n, hm_error_t *err)
{
        for (unsigned fd = 3; fd < 3 + n; fd++)
                if (fcntl((int) fd, F_GETFD) < 0)
                        return hm_error_set(err, EBADF, "--preserve-fds %u: fd %u is not open", n, fd);
        p->preserve_fds = n;
        return 0;
}

/*
 * exec: the namespaces of `pid` that differ from ours, in the order the
 * child joins them (child.h).  The pidfd, taken before the /proc lookups
 * and checked alive after them, pins the process: a pid reused in between
 * would leave it dead.  A pid already reused before the pidfd was taken is
 * told apart by its start time (`starttime`, 0: not checked).  Returns 0,
 * or -errno of a failed open (joins[] then released again) without
 * setting err.
 */
static int exec_ns_open(struct rt_plan *p, pid_t pid, uint64_t starttime, const char **ret_failed)
{
        static const struct {
                const char *name;
                int flag;
        } order[] = { { "user", CLONE_NEWUSER }, { "ipc", CLONE_NEWIPC },       { "uts", CLONE_NEWUTS }, { "net", CLONE_NEWNET },
                      { "cgroup", CLONE_NEWCGROUP }, { "pid", CLONE_NEWPID }, { "mnt", CLONE_NEWNS } };
        _Static_assert(ARRAY_SIZE(order) <= ARRAY_SIZE(p->joins), "joins");
        _cleanup_close_ int pidfd = rt_pidfd_open(pid, 0);
        *ret_failed = "pidfd_open";
        if (pidfd < 0)
                return -errno;
        *ret_failed = "stat";
        if (starttime && oci_proc_starttime(pid) != starttime)
                return -ESRCH; /* exited since its state was read; the pid may be another process's now */
        int r = 0;
        for (size_t i = 0; i < ARRAY_SIZE(order) && r == 0; i++) {
                char path[64], own[64];
                snprintf(path, sizeof path, "/proc/%d/ns/%s", (int) pid, order[i].name);
                snprintf(own, sizeof own, "/proc/self/ns/%s", order[i].name);
                *ret_failed = order[i].name;
                int fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0 && errno == ENOENT && order[i].flag == CLONE_NEWCGROUP)
                        continue; /* a kernel without cgroup namespaces */
                if (fd < 0) {
                        r = -errno;
                        break;
                }
                struct stat theirs, ours;
                if (fstat(fd, &theirs) == 0 && stat(own, &ours) == 0 && theirs.st_ino == ours.st_ino &&
                    theirs.st_dev == ours.st_dev) {
                        close(fd);
                        continue;
                }
                p->joins[p->n_joins++] = (struct rt_join) { order[i].flag, fd };
        }
        if (r == 0 && rt_pidfd_send_signal(pidfd, 0, NULL, 0) < 0) {
                *ret_failed = "pidfd_send_signal";
                r = -errno;
        }
        if (r < 0) {
                for (size_t i = 0; i < p->n_joins; i++)
                        safe_close(p->joins[i].fd);
                p->n_joins = 0;
        }
        return r;
}

/*
 * The container's init is not dumpable and never exec'd: without
 * CAP_SYS_PTRACE (rootless) its /proc/PID/ns cannot be opened.  Its child,
 * the container's command, is in the same namespaces and is reachable
 * once it has exec'd (before that it is not dumpable either: exec into a
 * created, rootless container fails).  A command that made namespaces of
 * its own (unshare) would be joined in those: nested in the container's,
 * owned by the same user, so the exec'd process gains nothing from it.
 */
static int plan_exec_namespaces(struct rt_plan *p, pid_t pid, uint64_t starttime, hm_error_t *err)
{
        const char *failed;
        int r = exec_ns_open(p, pid, starttime, &failed);
        if (r == -EACCES || r == -EPERM) {
                char path[64];
                snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int) pid, (int) pid);
                _cleanup_free_ char *kids = NULL;
                const char *fallback_failed;
                if (read_file(path, 0, &kids, NULL) == 0)
                        for (char *k = kids, *end; r < 0 && *k; k = end) {
                                long kid = strtol(k, &end, 10);
                                if (end == k || kid <= 0)
                                        break;
                                if (exec_ns_open(p, (pid_t) kid, 0, &fallback_failed) == 0)
                                        r = 0;
                        }
        }
        if (r == -ESRCH)
                return hm_error_set(err, ESRCH, "the container's init (pid %d) has exited", (int) pid);
        if (r < 0)
                return hm_error_set(err, -r, "open '/proc/%d/ns/%s': %s", (int) pid, failed, strerror(-r));
        for (size_t i = 0; i < p->n_joins; i++)
                p->userns |= p->joins[i].nstype == CLONE_NEWUSER;
        /* its user namespace may have setgroups denied (rootless without newgidmap) */
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/setgroups", (int) pid);
        _cleanup_free_ char *sg = NULL;
        p->setgroups_allowed = !p->userns || (read_file(path, 64, &sg, NULL) == 0 && str_has_prefix(sg, "allow"));
        return 0;
}

int rt_plan_build_exec(struct rt_plan *p, const struct oci_spec *spec, const struct rt_exec_options *o, hm_error_t *err)
{
        *p = (struct rt_plan) { .sync_fd = -1, .sync_peer_fd = -1, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1,
                                .pidns_fd = -1, .console_fd = -1, .exec_fifo_fd = -1, .exec = true, .exec_detach = o->detach };
        if (!spec->process_present)
                return hm_error_set(err, EINVAL, "process: missing");
        int r = plan_process(p, &spec->process, err);
        if (r >= 0)
                r = plan_console(p, o->console_socket, err);
        if (r >= 0)
                r = plan_preserve_fds(p, o->preserve_fds, err);
        if (r >= 0)
                r = plan_exec_namespaces(p, o->pid, o->starttime, err);
        if (r < 0)
                return r;
        p->chroot_dir = o->chroot_dir ? xstrdup(o->chroot_dir) : NULL;
        return 0;
}

int rt_plan_build(struct rt_plan *p, const struct oci_spec *spec, const struct rt_start_options *o, bool rootless,
                  hm_error_t *err)
{
        *p = (struct rt_plan) { .sync_fd = -1, .sync_peer_fd = -1, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1,
                                .pidns_fd = -1, .console_fd = -1 };
        if (!spec->process_present)
                return hm_error_set(err, EINVAL, "process: missing");
        p->exec_fifo_fd = -1;
        for (int k = 0; k < _OCI_HOOK_MAX && !o->hooks_by_caller; k++)
                if (spec->hooks.n_hooks[k])
                        return hm_error_set(err, EOPNOTSUPP, "hooks: not supported by the built-in runtime");
        int r = plan_namespaces(p, spec, rootless, err);
        if (r >= 0)
                r = plan_rootfs(p, spec, o->rootfs_overlay, err);
        if (r >= 0)
                r = plan_process(p, &spec->process, err);
        if (r >= 0)
                r = plan_console(p, o->console_socket, err);
        if (r >= 0)
                r = plan_preserve_fds(p, o->preserve_fds, err);
        if (r < 0)
                return r;
        p->mounts = xcalloc(spec->n_mounts + 1, sizeof *p->mounts);
        for (size_t i = 0; r >= 0 && i < spec->n_mounts; i++)
                r = plan_mount(p, &spec->mounts[i], i, err);
        if (r >= 0)
                r = plan_sysctls(p, &spec->linux_, err);
        if (r >= 0)
                r = plan_devices(p, &spec->linux_, err);
        if (r < 0)
                return r;
        plan_propagation(p, &spec->linux_);
        p->masked = strv_copy(spec->linux_.masked_paths);
        p->readonly = strv_copy(spec->linux_.readonly_paths);
        /* a uts namespace of its own, or one joined by path (runc's rule) */
        bool uts = oci_spec_find_namespace(spec, OCI_NS_UTS) != NULL;
        const char *hostname = spec->hostname ? spec->hostname : (p->clone_flags & CLONE_NEWUTS) ? o->id : NULL;
        if (hostname && uts)
                p->hostname = xstrdup(hostname);
        else if (spec->hostname)
                return hm_error_set(err, EINVAL, "hostname: needs a uts namespace");
        return 0;
}

void rt_plan_release(struct rt_plan *p)
{
        for (size_t i = 0; i < p->n_joins; i++)
                safe_close(p->joins[i].fd);
        safe_close(p->pidns_fd);
        safe_close(p->console_fd);
        for (size_t i = 0; i < p->n_devices; i++)
                free(p->devices[i].path);
        free(p->devices);
        free(p->rootfs);
        free(p->overlay_data);
        for (size_t i = 0; i < p->n_mounts; i++) {
                free(p->mounts[i].dest);
                free(p->mounts[i].source);
                free(p->mounts[i].fstype);
                free(p->mounts[i].data);
        }
        free(p->mounts);
        strv_free(p->masked);
        strv_free(p->readonly);
        strv_free(p->sysctl_paths);
        strv_free(p->sysctl_values);
        free(p->hostname);
        free(p->rlimits);
        free(p->groups);
        strv_free(p->argv);
        strv_free(p->envp);
        free(p->cwd);
        free(p->chroot_dir);
        *p = (struct rt_plan) { .sync_fd = -1, .sync_peer_fd = -1, .exec_fifo_fd = -1, .pidns_fd = -1, .console_fd = -1 };
}
