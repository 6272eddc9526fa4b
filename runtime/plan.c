/* SPDX-License-Identifier: Apache-2.0 */
/*
 * struct oci_spec + options -> struct rt_plan: every path, string and
 * decision the child needs, made before clone (git's "prepare argv/envp
 * before fork").  Errors name the JSON path of the offending field.
 */
#include "runtime/child.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "lib/strbuf.h"
#include "lib/util.h"
#include "oci/spec.h"
#include "runtime/runtime.h"

static const int ns_clone_flags[_OCI_NS_MAX] = {
        [OCI_NS_PID] = CLONE_NEWPID,   [OCI_NS_NETWORK] = CLONE_NEWNET, [OCI_NS_MOUNT] = CLONE_NEWNS,
        [OCI_NS_IPC] = CLONE_NEWIPC,   [OCI_NS_UTS] = CLONE_NEWUTS,     [OCI_NS_USER] = CLONE_NEWUSER,
        [OCI_NS_CGROUP] = CLONE_NEWCGROUP,
};

static int plan_namespaces(struct rt_plan *p, const struct oci_spec *spec, bool rootless, hm_error_t *err)
{
        const struct oci_linux *l = &spec->linux_;
        p->userns = rootless || oci_spec_find_namespace(spec, OCI_NS_USER);
        if (p->userns)
                p->clone_flags |= CLONE_NEWUSER;
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
                if (p->userns || ns->type == OCI_NS_MOUNT || ns->type == OCI_NS_PID || ns->type == OCI_NS_USER)
                        return hm_error_set(err, EOPNOTSUPP,
                                            "linux.namespaces[%zu].path: joining an existing '%s' namespace is not supported%s",
                                            i, oci_ns_type_to_string(ns->type), p->userns ? " with a user namespace" : "");
                int fd = open(ns->path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                        return hm_error_set(err, errno, "linux.namespaces[%zu].path: open '%s': %s", i, ns->path, strerror(errno));
                p->joins[p->n_joins++] = (struct rt_join) { flag, fd };
        }
        if (!(p->clone_flags & CLONE_NEWNS))
                return hm_error_set(err, EINVAL, "linux.namespaces: a new mount namespace is required");
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
        if (proc->terminal)
                return hm_error_set(err, EOPNOTSUPP, "process.terminal: not supported");
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

int rt_plan_build(struct rt_plan *p, const struct oci_spec *spec, const struct rt_start_options *o, bool rootless,
                  hm_error_t *err)
{
        *p = (struct rt_plan) { .sync_fd = -1, .sync_peer_fd = -1, .stdin_fd = -1, .stdout_fd = -1, .stderr_fd = -1 };
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
        if (r < 0)
                return r;
        p->mounts = xcalloc(spec->n_mounts + 1, sizeof *p->mounts);
        for (size_t i = 0; r >= 0 && i < spec->n_mounts; i++)
                r = plan_mount(p, &spec->mounts[i], i, err);
        if (r >= 0)
                r = plan_sysctls(p, &spec->linux_, err);
        if (r < 0)
                return r;
        p->masked = strv_copy(spec->linux_.masked_paths);
        p->readonly = strv_copy(spec->linux_.readonly_paths);
        const char *hostname = spec->hostname ? spec->hostname : o->id;
        if (hostname && (p->clone_flags & CLONE_NEWUTS))
                p->hostname = xstrdup(hostname);
        else if (spec->hostname)
                return hm_error_set(err, EINVAL, "hostname: needs a uts namespace");
        return 0;
}

void rt_plan_release(struct rt_plan *p)
{
        for (size_t i = 0; i < p->n_joins; i++)
                safe_close(p->joins[i].fd);
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
        *p = (struct rt_plan) { .sync_fd = -1, .sync_peer_fd = -1, .exec_fifo_fd = -1 };
}
