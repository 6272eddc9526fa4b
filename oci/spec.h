/* SPDX-License-Identifier: Apache-2.0 */
/*
 * OCI runtime-spec 1.x config.json <-> plain C structs.
 *
 * The structs carry no JSON library types: runtime/ consumes them without
 * ever seeing yajl (the libocispec boundary).  oci_spec_parse() accepts only
 * what the built-in runtime implements: a field it cannot honour is refused
 * with its JSON path ("config.json: linux.intelRdt: not supported"), never
 * silently ignored.  Top-level "annotations" are accepted and kept.
 *
 * Conventions (libocispec): optional scalars have a `_present` flag, arrays
 * have `n_` counts, string vectors are NULL-terminated.  Capability sets
 * are bitmasks of CAP_* numbers; rlimits carry RLIMIT_* numbers; seccomp
 * actions and operators are the enums below (runtime/ maps them to
 * libseccomp).  Every string is heap-owned by the spec.
 */
#ifndef HM_OCI_SPEC_H
#define HM_OCI_SPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/error.h"

struct oci_rlimit {
        int type;      /* RLIMIT_* */
        uint64_t soft; /* RLIM_INFINITY allowed */
        uint64_t hard;
};

struct oci_user {
        uid_t uid;
        gid_t gid;
        gid_t *additional_gids;
        size_t n_additional_gids;
        mode_t umask;
        bool umask_present;
};

/* Bitmasks: bit N set = capability number N (CAP_CHOWN == 0). */
struct oci_capabilities {
        uint64_t bounding, effective, inheritable, permitted, ambient;
};

struct oci_process {
        bool terminal; /* a pty: needs OCI create --console-socket (the master goes there) */
        uint32_t console_height, console_width; /* consoleSize; 0: unset */
        char **args;
        char **env;
        char *cwd;
        struct oci_user user;
        struct oci_rlimit *rlimits;
        size_t n_rlimits;
        struct oci_capabilities capabilities;
        bool no_new_privileges;
        int oom_score_adj;
        bool oom_score_adj_present;
};

struct oci_root {
        char *path;
        bool readonly;
};

struct oci_mount {
        char *destination;
        char *type;   /* may be NULL: then "bind" options must be present */
        char *source; /* may be NULL */
        char **options;
};

/* What a mount's option list means for mount(2) (oci_mount_parse_options). */
struct oci_mount_flags {
        unsigned long flags;       /* MS_RDONLY, MS_NOSUID, ... (without propagation) */
        unsigned long propagation; /* 0 or one of MS_PRIVATE|MS_SHARED|MS_SLAVE|MS_UNBINDABLE (+MS_REC) */
        bool bind;                 /* bind or rbind */
        bool recursive;            /* rbind */
        char *data;                /* heap: the remaining options, comma-joined, or NULL */
};

enum oci_ns_type {
        OCI_NS_PID,
        OCI_NS_NETWORK,
        OCI_NS_MOUNT,
        OCI_NS_IPC,
        OCI_NS_UTS,
        OCI_NS_USER,
        OCI_NS_CGROUP,
        OCI_NS_TIME,
        _OCI_NS_MAX,
};

struct oci_namespace {
        enum oci_ns_type type;
        char *path; /* NULL: create a new one */
};

struct oci_id_mapping {
        uint32_t container_id;
        uint32_t host_id;
        uint32_t size;
};

enum oci_seccomp_action {
        OCI_SECCOMP_KILL,         /* SCMP_ACT_KILL == KILL_THREAD */
        OCI_SECCOMP_KILL_PROCESS,
        OCI_SECCOMP_KILL_THREAD,
        OCI_SECCOMP_TRAP,
        OCI_SECCOMP_ERRNO,
        OCI_SECCOMP_TRACE,
        OCI_SECCOMP_ALLOW,
        OCI_SECCOMP_LOG,
        _OCI_SECCOMP_ACTION_MAX,
};

enum oci_seccomp_op {
        OCI_SECCOMP_OP_NE,
        OCI_SECCOMP_OP_LT,
        OCI_SECCOMP_OP_LE,
        OCI_SECCOMP_OP_EQ,
        OCI_SECCOMP_OP_GE,
        OCI_SECCOMP_OP_GT,
        OCI_SECCOMP_OP_MASKED_EQ,
        _OCI_SECCOMP_OP_MAX,
};

struct oci_seccomp_arg {
        unsigned index; /* 0..5 */
        uint64_t value;
        uint64_t value_two;
        enum oci_seccomp_op op;
};

struct oci_seccomp_rule {
        char **names;
        enum oci_seccomp_action action;
        uint32_t errno_ret; /* for ERRNO (default EPERM) and TRACE */
        bool errno_ret_present;
        struct oci_seccomp_arg *args;
        size_t n_args;
};

struct oci_seccomp {
        enum oci_seccomp_action default_action;
        uint32_t default_errno_ret; /* default EPERM */
        bool default_errno_ret_present;
        char **architectures; /* "SCMP_ARCH_X86_64", ... */
        struct oci_seccomp_rule *syscalls;
        size_t n_syscalls;
};

struct oci_device_rule {
        bool allow;
        char type;       /* 'a', 'c' or 'b' */
        int64_t major;   /* -1: any */
        int64_t minor;   /* -1: any */
        char access[4];  /* subset of "rwm" */
};

struct oci_resources {
        int64_t memory_limit; /* bytes; -1 unlimited */
        bool memory_limit_present;
        int64_t pids_limit;   /* <= 0: unlimited */
        bool pids_limit_present;
        int64_t cpu_quota;    /* microseconds per period; -1 unlimited */
        bool cpu_quota_present;
        uint64_t cpu_period;
        bool cpu_period_present;
        uint64_t cpu_shares;
        bool cpu_shares_present;
        char *cpu_cpus;       /* cpuset list ("0-3,5"), NULL: unchanged */
        char *cpu_mems;       /* memory nodes, NULL: unchanged */
        struct oci_device_rule *devices;
        size_t n_devices;
};

/* linux.devices[]: a node created in the container's /dev (or anywhere). */
struct oci_device {
        char *path;     /* absolute, inside the container */
        char type;      /* 'c' (also for "u"), 'b' or 'p' */
        int64_t major, minor;
        mode_t file_mode; /* permission bits; default 0666 */
        bool file_mode_present;
        uid_t uid;
        bool uid_present;
        gid_t gid;
        bool gid_present;
};

struct oci_sysctl {
        char *key;
        char *value;
};

struct oci_linux {
        struct oci_namespace *namespaces;
        size_t n_namespaces;
        struct oci_id_mapping *uid_mappings;
        size_t n_uid_mappings;
        struct oci_id_mapping *gid_mappings;
        size_t n_gid_mappings;
        char **masked_paths;
        char **readonly_paths;
        struct oci_seccomp *seccomp; /* NULL: no filter */
        struct oci_resources resources;
        struct oci_sysctl *sysctl;
        size_t n_sysctl;
        char *cgroups_path; /* NULL: runtime default */
        struct oci_device *devices;
        size_t n_devices;
        /* linux.rootfsPropagation: 0 (default, rprivate) or MS_PRIVATE/MS_SLAVE/MS_SHARED/MS_UNBINDABLE, | MS_REC */
        unsigned long rootfs_propagation;
};

struct oci_hook {
        char *path;
        char **args;
        char **env;
        int timeout; /* seconds */
        bool timeout_present;
};

enum oci_hook_kind {
        OCI_HOOK_PRESTART,
        OCI_HOOK_CREATE_RUNTIME,
        OCI_HOOK_CREATE_CONTAINER,
        OCI_HOOK_START_CONTAINER,
        OCI_HOOK_POSTSTART,
        OCI_HOOK_POSTSTOP,
        _OCI_HOOK_MAX,
};

struct oci_hooks {
        struct oci_hook *hooks[_OCI_HOOK_MAX];
        size_t n_hooks[_OCI_HOOK_MAX];
};

struct oci_annotation {
        char *key;
        char *value;
};

struct oci_spec {
        char *oci_version;
        struct oci_process process;
        bool process_present; /* the runtime refuses a spec without one */
        struct oci_root root;
        char *hostname; /* NULL: none set */
        struct oci_mount *mounts;
        size_t n_mounts;
        struct oci_linux linux_; /* "linux" is a predefined macro in gnu11 */
        struct oci_hooks hooks;
        struct oci_annotation *annotations;
        size_t n_annotations;
};

/* Parse config.json text.  Errors: "config.json: <json path>: <what>". */
int oci_spec_parse(const char *json, size_t len, struct oci_spec **ret, hm_error_t *err);
/*
 * A process object alone (OCI exec --process FILE) replaces s->process;
 * errors are "<name>: <json path>: <what>", and leave s untouched.
 */
int oci_spec_replace_process(struct oci_spec *s, const char *json, size_t len, const char *name, hm_error_t *err);
/* Read and parse a file. */
int oci_spec_load(const char *path, struct oci_spec **ret, hm_error_t *err);
/* Serialise (runtime-spec 1.x JSON).  *ret is heap, NUL-terminated. */
int oci_spec_to_json(const struct oci_spec *s, bool pretty, char **ret, hm_error_t *err);

/*
 * The container default: args ["sh"], env PATH, cwd "/", namespaces
 * pid/ipc/uts/mount/network/cgroup (+ user when not root), the usual
 * container capability set, noNewPrivileges, masked and read-only paths,
 * /proc, /dev (tmpfs) with pts/shm/mqueue, /sys (ro), the default device
 * rules and the default seccomp profile.
 */
struct oci_spec *oci_spec_new_default(void);
/* The default seccomp profile alone (an allow-list; see spec-default.c). */
struct oci_seccomp *oci_seccomp_new_default(void);

void oci_seccomp_free(struct oci_seccomp *s);
struct oci_spec *oci_spec_free(struct oci_spec *s);
static inline void oci_spec_freep(struct oci_spec **s) { oci_spec_free(*s); }
#define _cleanup_oci_spec_ __attribute__((cleanup(oci_spec_freep)))

/* Mount options -> flags/propagation/data; unknown "key" or "key=value" go to data. */
int oci_mount_parse_options(char *const *options, struct oci_mount_flags *ret, hm_error_t *err);
void oci_mount_flags_release(struct oci_mount_flags *f);

/* Lookups shared by the parser, the writer and the runtime. */
const struct oci_namespace *oci_spec_find_namespace(const struct oci_spec *s, enum oci_ns_type t);
const char *oci_ns_type_to_string(enum oci_ns_type t);
/* "rshared" -> MS_SHARED|MS_REC ...; 0 if unknown.  And back (NULL if none). */
unsigned long oci_propagation_from_string(const char *s);
const char *oci_propagation_to_string(unsigned long flags);
int oci_rlimit_from_name(const char *name); /* -1 if unknown */
const char *oci_rlimit_to_name(int type);
int oci_cap_from_name(const char *name);    /* "CAP_CHOWN" -> 0; -1 if unknown */
const char *oci_seccomp_action_to_string(enum oci_seccomp_action a);
const char *oci_seccomp_op_to_string(enum oci_seccomp_op op);
/* Bitmask of the default container capabilities. */
uint64_t oci_default_capabilities(void);

/*
 * Per-run sandbox options (oci/spec-options.c): hm run's --cap-add/--cap-drop,
 * --user, --read-only and --tmpfs-tmp.  --seccomp is separate
 * (oci_seccomp_from_option) since runners compile it once per run.
 */
struct oci_run_options {
        char **cap_add;       /* "NET_RAW", "CAP_NET_RAW", "all"; case-insensitive */
        char **cap_drop;
        const char *user;     /* "UID[:GID]" numeric; NULL: the spec's (root) */
        bool readonly_rootfs; /* root.readonly */
        bool tmpfs_tmp;       /* a fresh tmpfs on /tmp (nosuid,nodev,1777) */
};
int oci_spec_apply_run_options(struct oci_spec *s, const struct oci_run_options *o, hm_error_t *err);
/* "NET_RAW"/"cap_net_raw" -> CAP_NET_RAW; -1 with err if unknown. */
int oci_cap_parse(const char *name, hm_error_t *err);
/* Docker's rules: ALL in drop empties first, ALL in add fills first; then drop, then add. */
int oci_caps_adjust(uint64_t base, char *const *add, char *const *drop, uint64_t *ret, hm_error_t *err);
/* bounding = effective = permitted = caps; inheritable = ambient = 0. */
void oci_spec_set_capabilities(struct oci_spec *s, uint64_t caps);
int oci_parse_user(const char *user, uid_t *ret_uid, gid_t *ret_gid, hm_error_t *err);
/*
 * A seccomp profile, OCI (linux.seccomp, or a whole config.json) or Docker
 * format (archMap, includes/excludes decided against `caps` and this
 * machine).  `name` prefixes errors.
 */
int oci_seccomp_profile_parse(const char *json, size_t len, const char *name, uint64_t caps,
                              struct oci_seccomp **ret, hm_error_t *err);
/* --seccomp value: NULL/"default" -> the default profile, "unconfined" -> *ret = NULL, else a file. */
int oci_seccomp_from_option(const char *opt, uint64_t caps, struct oci_seccomp **ret, hm_error_t *err);

#endif
