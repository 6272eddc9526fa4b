/* SPDX-License-Identifier: Apache-2.0 */
/* struct oci_spec: freeing, name tables, mount option mapping. */
#include "oci/spec.h"
#include "oci/spec-internal.h"

#include <strings.h>
#include <sys/mount.h>
#include <sys/resource.h>

#include "lib/strbuf.h"
#include "lib/util.h"

static const char *const rlimit_names[] = {
        [RLIMIT_CPU] = "RLIMIT_CPU",         [RLIMIT_FSIZE] = "RLIMIT_FSIZE",
        [RLIMIT_DATA] = "RLIMIT_DATA",       [RLIMIT_STACK] = "RLIMIT_STACK",
        [RLIMIT_CORE] = "RLIMIT_CORE",       [RLIMIT_RSS] = "RLIMIT_RSS",
        [RLIMIT_NPROC] = "RLIMIT_NPROC",     [RLIMIT_NOFILE] = "RLIMIT_NOFILE",
        [RLIMIT_MEMLOCK] = "RLIMIT_MEMLOCK", [RLIMIT_AS] = "RLIMIT_AS",
        [RLIMIT_LOCKS] = "RLIMIT_LOCKS",     [RLIMIT_SIGPENDING] = "RLIMIT_SIGPENDING",
        [RLIMIT_MSGQUEUE] = "RLIMIT_MSGQUEUE", [RLIMIT_NICE] = "RLIMIT_NICE",
        [RLIMIT_RTPRIO] = "RLIMIT_RTPRIO",   [RLIMIT_RTTIME] = "RLIMIT_RTTIME",
};

/* Index = capability number (linux/capability.h). */
static const char *const cap_names[] = {
        "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
        "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
        "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
        "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
        "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
        "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
        "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
        "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
        "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
};

static const char *const ns_names[_OCI_NS_MAX] = {
        [OCI_NS_PID] = "pid",   [OCI_NS_NETWORK] = "network", [OCI_NS_MOUNT] = "mount",
        [OCI_NS_IPC] = "ipc",   [OCI_NS_UTS] = "uts",         [OCI_NS_USER] = "user",
        [OCI_NS_CGROUP] = "cgroup", [OCI_NS_TIME] = "time",
};

static const char *const action_names[_OCI_SECCOMP_ACTION_MAX] = {
        [OCI_SECCOMP_KILL] = "SCMP_ACT_KILL",
        [OCI_SECCOMP_KILL_PROCESS] = "SCMP_ACT_KILL_PROCESS",
        [OCI_SECCOMP_KILL_THREAD] = "SCMP_ACT_KILL_THREAD",
        [OCI_SECCOMP_TRAP] = "SCMP_ACT_TRAP",
        [OCI_SECCOMP_ERRNO] = "SCMP_ACT_ERRNO",
        [OCI_SECCOMP_TRACE] = "SCMP_ACT_TRACE",
        [OCI_SECCOMP_ALLOW] = "SCMP_ACT_ALLOW",
        [OCI_SECCOMP_LOG] = "SCMP_ACT_LOG",
};

static const char *const op_names[_OCI_SECCOMP_OP_MAX] = {
        [OCI_SECCOMP_OP_NE] = "SCMP_CMP_NE", [OCI_SECCOMP_OP_LT] = "SCMP_CMP_LT",
        [OCI_SECCOMP_OP_LE] = "SCMP_CMP_LE", [OCI_SECCOMP_OP_EQ] = "SCMP_CMP_EQ",
        [OCI_SECCOMP_OP_GE] = "SCMP_CMP_GE", [OCI_SECCOMP_OP_GT] = "SCMP_CMP_GT",
        [OCI_SECCOMP_OP_MASKED_EQ] = "SCMP_CMP_MASKED_EQ",
};

static int lookup(const char *const *names, size_t n, const char *name)
{
        for (size_t i = 0; i < n; i++)
                if (names[i] && !strcmp(names[i], name))
                        return (int) i;
        return -1;
}

int oci_rlimit_from_name(const char *name) { return lookup(rlimit_names, ARRAY_SIZE(rlimit_names), name); }
const char *oci_rlimit_to_name(int t)
{
        return t >= 0 && (size_t) t < ARRAY_SIZE(rlimit_names) ? rlimit_names[t] : NULL;
}
int oci_cap_from_name(const char *name) { return lookup(cap_names, ARRAY_SIZE(cap_names), name); }
const char *oci_cap_to_name(int cap)
{
        return cap >= 0 && (size_t) cap < ARRAY_SIZE(cap_names) ? cap_names[cap] : NULL;
}
const char *oci_ns_type_to_string(enum oci_ns_type t) { return t < _OCI_NS_MAX ? ns_names[t] : NULL; }

static const struct {
        const char *name;
        unsigned long flags;
} propagations[] = {
        { "private", MS_PRIVATE },     { "rprivate", MS_PRIVATE | MS_REC },
        { "slave", MS_SLAVE },         { "rslave", MS_SLAVE | MS_REC },
        { "shared", MS_SHARED },       { "rshared", MS_SHARED | MS_REC },
        { "unbindable", MS_UNBINDABLE }, { "runbindable", MS_UNBINDABLE | MS_REC },
};

unsigned long oci_propagation_from_string(const char *s)
{
        for (size_t i = 0; i < ARRAY_SIZE(propagations); i++)
                if (!strcmp(s, propagations[i].name))
                        return propagations[i].flags;
        return 0;
}

const char *oci_propagation_to_string(unsigned long flags)
{
        for (size_t i = 0; i < ARRAY_SIZE(propagations); i++)
                if (flags == propagations[i].flags)
                        return propagations[i].name;
        return NULL;
}
int oci_ns_type_from_string(const char *s) { return lookup(ns_names, _OCI_NS_MAX, s); }
const char *oci_seccomp_action_to_string(enum oci_seccomp_action a)
{
        return a < _OCI_SECCOMP_ACTION_MAX ? action_names[a] : NULL;
}
int oci_seccomp_action_from_string(const char *s) { return lookup(action_names, _OCI_SECCOMP_ACTION_MAX, s); }
const char *oci_seccomp_op_to_string(enum oci_seccomp_op op) { return op < _OCI_SECCOMP_OP_MAX ? op_names[op] : NULL; }
int oci_seccomp_op_from_string(const char *s) { return lookup(op_names, _OCI_SECCOMP_OP_MAX, s); }

const struct oci_namespace *oci_spec_find_namespace(const struct oci_spec *s, enum oci_ns_type t)
{
        for (size_t i = 0; i < s->linux_.n_namespaces; i++)
                if (s->linux_.namespaces[i].type == t)
                        return &s->linux_.namespaces[i];
        return NULL;
}

/* ---- mount options (mount(8) names) ---- */

struct mount_opt {
        const char *name;
        bool clear;          /* the option clears the flag ("rw", "suid", ...) */
        unsigned long flag;
        unsigned long propagation;
        int bind;            /* 1 bind, 2 rbind */
};

static const struct mount_opt mount_opts[] = {
        { "ro", false, MS_RDONLY, 0, 0 },          { "rw", true, MS_RDONLY, 0, 0 },
        { "nosuid", false, MS_NOSUID, 0, 0 },      { "suid", true, MS_NOSUID, 0, 0 },
        { "nodev", false, MS_NODEV, 0, 0 },        { "dev", true, MS_NODEV, 0, 0 },
        { "noexec", false, MS_NOEXEC, 0, 0 },      { "exec", true, MS_NOEXEC, 0, 0 },
        { "sync", false, MS_SYNCHRONOUS, 0, 0 },   { "async", true, MS_SYNCHRONOUS, 0, 0 },
        { "dirsync", false, MS_DIRSYNC, 0, 0 },    { "mand", false, MS_MANDLOCK, 0, 0 },
        { "nomand", true, MS_MANDLOCK, 0, 0 },     { "atime", true, MS_NOATIME, 0, 0 },
        { "noatime", false, MS_NOATIME, 0, 0 },    { "diratime", true, MS_NODIRATIME, 0, 0 },
        { "nodiratime", false, MS_NODIRATIME, 0, 0 }, { "relatime", false, MS_RELATIME, 0, 0 },
        { "norelatime", true, MS_RELATIME, 0, 0 }, { "strictatime", false, MS_STRICTATIME, 0, 0 },
        { "nostrictatime", true, MS_STRICTATIME, 0, 0 },
        { "bind", false, 0, 0, 1 },                { "rbind", false, 0, 0, 2 },
        { "private", false, 0, MS_PRIVATE, 0 },    { "rprivate", false, 0, MS_PRIVATE | MS_REC, 0 },
        { "shared", false, 0, MS_SHARED, 0 },      { "rshared", false, 0, MS_SHARED | MS_REC, 0 },
        { "slave", false, 0, MS_SLAVE, 0 },        { "rslave", false, 0, MS_SLAVE | MS_REC, 0 },
        { "unbindable", false, 0, MS_UNBINDABLE, 0 },
        { "runbindable", false, 0, MS_UNBINDABLE | MS_REC, 0 },
};

/* Options that change semantics we do not implement: refuse, never ignore. */
static const char *const unsupported_mount_opts[] = { "idmap", "ridmap", "tmpcopyup", "copy-symlink", "remount" };

static const struct mount_opt *find_mount_opt(const char *name)
{
        for (size_t i = 0; i < ARRAY_SIZE(mount_opts); i++)
                if (!strcmp(mount_opts[i].name, name))
                        return &mount_opts[i];
        return NULL;
}

int oci_mount_parse_options(char *const *options, struct oci_mount_flags *ret, hm_error_t *err)
{
        struct oci_mount_flags f = { 0 };
        _cleanup_strbuf_ struct strbuf data = STRBUF_INIT;
        for (size_t i = 0; options && options[i]; i++) {
                const char *o = options[i];
                for (size_t k = 0; k < ARRAY_SIZE(unsupported_mount_opts); k++)
                        if (!strcmp(o, unsupported_mount_opts[k]))
                                return hm_error_set(err, EOPNOTSUPP, "options[%zu]: '%s' not supported", i, o);
                if (!*o || strchr(o, ','))
                        return hm_error_set(err, EINVAL, "options[%zu]: invalid option '%s'", i, o);
                const struct mount_opt *m = find_mount_opt(o);
                if (!m) {
                        if (data.len)
                                strbuf_addch(&data, ',');
                        strbuf_addstr(&data, o);
                        continue;
                }
                if (m->clear)
                        f.flags &= ~m->flag;
                else
                        f.flags |= m->flag;
                if (m->propagation)
                        f.propagation = m->propagation;
                if (m->bind) {
                        f.bind = true;
                        f.recursive = m->bind == 2;
                }
        }
        f.data = data.len ? strbuf_detach(&data, NULL) : NULL;
        *ret = f;
        return 0;
}

void oci_mount_flags_release(struct oci_mount_flags *f)
{
        free(f->data);
        f->data = NULL;
}

/* ---- freeing ---- */

static void hook_list_free(struct oci_hook *h, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                free(h[i].path);
                strv_free(h[i].args);
                strv_free(h[i].env);
        }
        free(h);
}

void oci_seccomp_free(struct oci_seccomp *s)
{
        if (!s)
                return;
        strv_free(s->architectures);
        for (size_t i = 0; i < s->n_syscalls; i++) {
                strv_free(s->syscalls[i].names);
                free(s->syscalls[i].args);
        }
        free(s->syscalls);
        free(s);
}

static void linux_release(struct oci_linux *l)
{
        for (size_t i = 0; i < l->n_namespaces; i++)
                free(l->namespaces[i].path);
        free(l->namespaces);
        free(l->uid_mappings);
        free(l->gid_mappings);
        strv_free(l->masked_paths);
        strv_free(l->readonly_paths);
        oci_seccomp_free(l->seccomp);
        free(l->resources.devices);
        for (size_t i = 0; i < l->n_sysctl; i++) {
                free(l->sysctl[i].key);
                free(l->sysctl[i].value);
        }
        free(l->sysctl);
        free(l->cgroups_path);
        free(l->resources.cpu_cpus);
        free(l->resources.cpu_mems);
        for (size_t i = 0; i < l->n_devices; i++)
                free(l->devices[i].path);
        free(l->devices);
}

struct oci_spec *oci_spec_free(struct oci_spec *s)
{
        if (!s)
                return NULL;
        free(s->oci_version);
        strv_free(s->process.args);
        strv_free(s->process.env);
        free(s->process.cwd);
        free(s->process.user.additional_gids);
        free(s->process.rlimits);
        free(s->root.path);
        free(s->hostname);
        for (size_t i = 0; i < s->n_mounts; i++) {
                free(s->mounts[i].destination);
                free(s->mounts[i].type);
                free(s->mounts[i].source);
                strv_free(s->mounts[i].options);
        }
        free(s->mounts);
        linux_release(&s->linux_);
        for (int k = 0; k < _OCI_HOOK_MAX; k++)
                hook_list_free(s->hooks.hooks[k], s->hooks.n_hooks[k]);
        for (size_t i = 0; i < s->n_annotations; i++) {
                free(s->annotations[i].key);
                free(s->annotations[i].value);
        }
        free(s->annotations);
        free(s);
        return NULL;
}

int oci_spec_load(const char *path, struct oci_spec **ret, hm_error_t *err)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        int r = read_file(path, 16u << 20, &buf, &len);
        if (r < 0)
                return hm_error_set(err, -r, "read '%s': %s", path, strerror(-r));
        return oci_spec_parse(buf, len, ret, err);
}
