/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The container default spec and its seccomp profile.
 *
 * The profile is an allow-list equivalent in coverage to the Docker/Podman
 * default (moby profiles/seccomp/default.json): the normal syscall set is
 * allowed, a table of dangerous syscalls answers EPERM, clone is allowed
 * only without namespace flags, clone3 answers ENOSYS (its flags live in
 * memory, where BPF cannot look, so libc falls back to clone), and every
 * syscall in neither table (new or exotic ones) answers ENOSYS, which lets
 * programs fall back as on an older kernel.
 *
 * Not gated on capabilities as Docker does: a spec that grants
 * CAP_SYS_ADMIN/CAP_SYS_PTRACE/... still gets EPERM for mount/ptrace/...
 * unless it brings its own profile.
 */
#include <sched.h>
#include <linux/capability.h>

#include "lib/util.h"
#include "oci/spec.h"

/* ---- allowed: grouped by purpose; names unknown to an arch are skipped ---- */
static const char *const allow_syscalls[] = {
        /* file I/O */
        "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2",
        "pwritev2", "lseek", "_llseek", "open", "openat", "openat2", "close", "close_range", "creat",
        "dup", "dup2", "dup3", "fcntl", "fcntl64", "flock", "fsync", "fdatasync", "sync", "syncfs",
        "sync_file_range", "sync_file_range2", "truncate", "truncate64", "ftruncate", "ftruncate64",
        "fallocate", "fadvise64", "fadvise64_64", "readahead", "sendfile", "sendfile64", "splice",
        "tee", "vmsplice", "copy_file_range", "ioctl", "cachestat",
        /* metadata, xattrs */
        "stat", "stat64", "lstat", "lstat64", "fstat", "fstat64", "newfstatat", "fstatat64", "statx",
        "statfs", "statfs64", "fstatfs", "fstatfs64", "access", "faccessat", "faccessat2", "chmod",
        "fchmod", "fchmodat", "fchmodat2", "chown", "chown32", "fchown", "fchown32", "fchownat",
        "lchown", "lchown32", "utime", "utimes", "utimensat", "utimensat_time64", "futimesat",
        "umask", "getxattr", "lgetxattr", "fgetxattr", "setxattr", "lsetxattr", "fsetxattr",
        "listxattr", "llistxattr", "flistxattr", "removexattr", "lremovexattr", "fremovexattr",
        "getxattrat", "setxattrat", "listxattrat", "removexattrat", "name_to_handle_at",
        /* directories and links */
        "getcwd", "chdir", "fchdir", "chroot", "mkdir", "mkdirat", "rmdir", "rename", "renameat",
        "renameat2", "link", "linkat", "symlink", "symlinkat", "unlink", "unlinkat", "readlink",
        "readlinkat", "getdents", "getdents64", "mknod", "mknodat",
        /* memory */
        "brk", "mmap", "mmap2", "munmap", "mremap", "mprotect", "pkey_mprotect", "pkey_alloc",
        "pkey_free", "madvise", "mlock", "mlock2", "munlock", "mlockall", "munlockall", "mincore",
        "msync", "membarrier", "memfd_create", "remap_file_pages", "process_mrelease",
        /* processes, threads, signals */
        "fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid", "waitpid",
        "getpid", "getppid", "gettid", "getpgid", "setpgid", "getpgrp", "getsid", "setsid", "kill",
        "tkill", "tgkill", "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigreturn",
        "rt_sigpending", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64",
        "rt_sigqueueinfo", "rt_tgsigqueueinfo", "sigaltstack", "signalfd", "signalfd4", "pause",
        "sigprocmask", "sigpending", "sigsuspend", "signal", "sigaction", "restart_syscall",
        "set_tid_address", "set_robust_list", "get_robust_list", "futex", "futex_time64",
        "futex_waitv", "futex_wait", "futex_wake", "futex_requeue", "arch_prctl", "prctl",
        "set_thread_area", "get_thread_area", "rseq", "pidfd_open", "pidfd_send_signal",
        "pidfd_getfd", "capget", "capset", "seccomp", "landlock_create_ruleset",
        "landlock_add_rule", "landlock_restrict_self",
        /* scheduling, limits, system info */
        "sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getparam",
        "sched_setparam", "sched_getscheduler", "sched_setscheduler", "sched_get_priority_max",
        "sched_get_priority_min", "sched_rr_get_interval", "sched_rr_get_interval_time64",
        "sched_getattr", "sched_setattr", "getpriority", "setpriority", "ioprio_get", "ioprio_set",
        "getcpu", "uname", "olduname", "getrusage", "times", "sysinfo", "getrlimit", "setrlimit",
        "prlimit64", "ugetrlimit", "getrandom",
        /* credentials (bounded by capabilities) */
        "getuid", "getuid32", "geteuid", "geteuid32", "getgid", "getgid32", "getegid", "getegid32",
        "getresuid", "getresuid32", "getresgid", "getresgid32", "getgroups", "getgroups32",
        "setuid", "setuid32", "setgid", "setgid32", "setreuid", "setreuid32", "setregid",
        "setregid32", "setresuid", "setresuid32", "setresgid", "setresgid32", "setgroups",
        "setgroups32", "setfsuid", "setfsuid32", "setfsgid", "setfsgid32",
        /* time (reading and sleeping; setting the clock is denied below) */
        "clock_gettime", "clock_gettime64", "clock_getres", "clock_getres_time64",
        "clock_nanosleep", "clock_nanosleep_time64", "gettimeofday", "time", "nanosleep", "alarm",
        "getitimer", "setitimer", "timer_create", "timer_delete", "timer_getoverrun",
        "timer_gettime", "timer_gettime64", "timer_settime", "timer_settime64", "timerfd_create",
        "timerfd_gettime", "timerfd_gettime64", "timerfd_settime", "timerfd_settime64",
        /* polling and event fds */
        "poll", "ppoll", "ppoll_time64", "select", "_newselect", "pselect6", "pselect6_time64",
        "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_wait",
        "epoll_wait_old", "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2", "inotify_init",
        "inotify_init1", "inotify_add_watch", "inotify_rm_watch", "fanotify_mark", "io_setup",
        "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64", "io_submit",
        "io_cancel",
        /* IPC (inside the container's IPC namespace) */
        "pipe", "pipe2", "mq_open", "mq_unlink", "mq_timedsend", "mq_timedsend_time64",
        "mq_timedreceive", "mq_timedreceive_time64", "mq_notify", "mq_getsetattr", "shmget",
        "shmat", "shmdt", "shmctl", "semget", "semop", "semtimedop", "semtimedop_time64", "semctl",
        "msgget", "msgsnd", "msgrcv", "msgctl", "ipc",
        /* sockets */
        "socket", "socketpair", "bind", "connect", "listen", "accept", "accept4", "getsockname",
        "getpeername", "sendto", "recvfrom", "send", "recv", "sendmsg", "recvmsg", "sendmmsg",
        "recvmmsg", "recvmmsg_time64", "setsockopt", "getsockopt", "shutdown", "socketcall",
        /* arm */
        "arm_fadvise64_64", "arm_sync_file_range", "breakpoint", "cacheflush", "set_tls",
        NULL,
};

/* ---- EPERM: escape, kernel-state and introspection syscalls ---- */
static const char *const eperm_syscalls[] = {
        /* keyrings are not namespaced */
        "keyctl", "add_key", "request_key",
        /* mounts and namespaces: the container's view is fixed by the runtime */
        "mount", "umount", "umount2", "unshare", "setns", "pivot_root", "fsopen", "fsconfig",
        "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr", "open_tree_attr",
        /* kernel code and whole-machine state */
        "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
        "create_module", "reboot", "swapon", "swapoff", "acct", "quotactl", "quotactl_fd",
        "settimeofday", "stime", "clock_settime", "clock_settime64", "clock_adjtime",
        "clock_adjtime64", "adjtimex", "syslog", "vhangup", "nfsservctl", "sysfs", "_sysctl",
        "uselib", "ustat", "get_kernel_syms", "query_module", "lookup_dcookie",
        /* tracing and other processes' memory */
        "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "perf_event_open", "bpf",
        "userfaultfd", "fanotify_init",
        /* file handles bypass path checks (the "shocker" escape) */
        "open_by_handle_at",
        /* raw I/O ports, segment tables */
        "iopl", "ioperm", "modify_ldt", "vm86", "vm86old", "pciconfig_read", "pciconfig_write",
        "pciconfig_iobase",
        /* NUMA policy of other memory (CAP_SYS_NICE in Docker) */
        "mbind", "set_mempolicy", "get_mempolicy", "migrate_pages", "move_pages",
        "set_mempolicy_home_node",
        /* io_uring bypasses this filter for the operations it performs */
        "io_uring_setup", "io_uring_enter", "io_uring_register",
        NULL,
};

/* personality(2) values that do not weaken the process: Linux, 32-bit, uname26, query. */
static const uint64_t personality_allowed[] = { 0x0, 0x8, 0x20000, 0x20008, 0xffffffff };

#define CLONE_NS_FLAGS \
        (CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWCGROUP)

static struct oci_seccomp_rule *add_rule(struct oci_seccomp *s, enum oci_seccomp_action a)
{
        s->syscalls = xreallocarray(s->syscalls, s->n_syscalls + 1, sizeof *s->syscalls);
        struct oci_seccomp_rule *r = &s->syscalls[s->n_syscalls++];
        *r = (struct oci_seccomp_rule) { .action = a };
        return r;
}

static void add_arg(struct oci_seccomp_rule *r, unsigned index, uint64_t value, uint64_t two, enum oci_seccomp_op op)
{
        r->args = xreallocarray(r->args, r->n_args + 1, sizeof *r->args);
        r->args[r->n_args++] = (struct oci_seccomp_arg) { index, value, two, op };
}

static char **default_architectures(void)
{
        char **v = NULL;
#if defined(__x86_64__)
        strv_push(&v, "SCMP_ARCH_X86_64");
        strv_push(&v, "SCMP_ARCH_X86");
        strv_push(&v, "SCMP_ARCH_X32");
#elif defined(__aarch64__)
        strv_push(&v, "SCMP_ARCH_AARCH64");
        strv_push(&v, "SCMP_ARCH_ARM");
#endif
        return v;
}

struct oci_seccomp *oci_seccomp_new_default(void)
{
        struct oci_seccomp *s = xzalloc(sizeof *s);
        s->default_action = OCI_SECCOMP_ERRNO;
        s->default_errno_ret = ENOSYS;
        s->default_errno_ret_present = true;
        s->architectures = default_architectures();

        add_rule(s, OCI_SECCOMP_ALLOW)->names = strv_copy((char *const *) allow_syscalls);

        struct oci_seccomp_rule *r = add_rule(s, OCI_SECCOMP_ERRNO);
        r->names = strv_copy((char *const *) eperm_syscalls);
        r->errno_ret = EPERM;
        r->errno_ret_present = true;

        /* clone: only without namespace flags; otherwise the EPERM rule below */
        r = add_rule(s, OCI_SECCOMP_ALLOW);
        strv_push(&r->names, "clone");
        add_arg(r, 0, CLONE_NS_FLAGS, 0, OCI_SECCOMP_OP_MASKED_EQ);
        static const uint64_t ns_flags[] = { CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC, CLONE_NEWUSER,
                                             CLONE_NEWPID, CLONE_NEWNET, CLONE_NEWCGROUP };
        for (size_t i = 0; i < ARRAY_SIZE(ns_flags); i++) {
                r = add_rule(s, OCI_SECCOMP_ERRNO);
                strv_push(&r->names, "clone");
                r->errno_ret = EPERM;
                r->errno_ret_present = true;
                add_arg(r, 0, ns_flags[i], ns_flags[i], OCI_SECCOMP_OP_MASKED_EQ);
        }

        r = add_rule(s, OCI_SECCOMP_ERRNO);
        strv_push(&r->names, "clone3");
        r->errno_ret = ENOSYS;
        r->errno_ret_present = true;

        for (size_t i = 0; i < ARRAY_SIZE(personality_allowed); i++) {
                r = add_rule(s, OCI_SECCOMP_ALLOW);
                strv_push(&r->names, "personality");
                add_arg(r, 0, personality_allowed[i], 0, OCI_SECCOMP_OP_EQ);
        }
        /*
         * Any other persona (READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE, ...) falls to the
         * default action (ENOSYS): libseccomp cannot AND two comparisons of one
         * argument, so "none of the allowed values" has no EPERM rule.
         */
        return s;
}

/* ---- the rest of the default spec ---- */

uint64_t oci_default_capabilities(void)
{
        static const int caps[] = {
                CAP_CHOWN, CAP_DAC_OVERRIDE, CAP_FSETID, CAP_FOWNER, CAP_MKNOD, CAP_NET_RAW,
                CAP_SETGID, CAP_SETUID, CAP_SETFCAP, CAP_SETPCAP, CAP_NET_BIND_SERVICE,
                CAP_SYS_CHROOT, CAP_KILL, CAP_AUDIT_WRITE,
        };
        uint64_t m = 0;
        for (size_t i = 0; i < ARRAY_SIZE(caps); i++)
                m |= UINT64_C(1) << caps[i];
        return m;
}

static const char *const default_masked[] = {
        "/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
        "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
        "/sys/firmware", "/sys/devices/virtual/powercap", NULL,
};

static const char *const default_readonly[] = {
        "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger", NULL,
};

static void add_mount(struct oci_spec *s, const char *dest, const char *type, const char *src, const char *opts)
{
        s->mounts = xreallocarray(s->mounts, s->n_mounts + 1, sizeof *s->mounts);
        struct oci_mount *m = &s->mounts[s->n_mounts++];
        *m = (struct oci_mount) { xstrdup(dest), xstrdup(type), xstrdup(src), NULL };
        _cleanup_free_ char *copy = xstrdup(opts);
        char *save = NULL;
        for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
                strv_push(&m->options, t);
}

static void add_namespace(struct oci_spec *s, enum oci_ns_type t)
{
        s->linux_.namespaces = xreallocarray(s->linux_.namespaces, s->linux_.n_namespaces + 1,
                                             sizeof *s->linux_.namespaces);
        s->linux_.namespaces[s->linux_.n_namespaces++] = (struct oci_namespace) { t, NULL };
}

static void default_process(struct oci_process *p)
{
        strv_push(&p->args, "sh");
        strv_push(&p->env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        p->cwd = xstrdup("/");
        uint64_t caps = oci_default_capabilities();
        p->capabilities = (struct oci_capabilities) { .bounding = caps, .effective = caps, .permitted = caps };
        p->no_new_privileges = true;
}

struct oci_spec *oci_spec_new_default(void)
{
        struct oci_spec *s = xzalloc(sizeof *s);
        s->oci_version = xstrdup("1.0.2");
        s->process_present = true;
        default_process(&s->process);
        s->root.path = xstrdup("rootfs");
        add_mount(s, "/proc", "proc", "proc", "nosuid,noexec,nodev");
        add_mount(s, "/dev", "tmpfs", "tmpfs", "nosuid,strictatime,mode=755,size=65536k");
        add_mount(s, "/dev/pts", "devpts", "devpts", "nosuid,noexec,newinstance,ptmxmode=0666,mode=0620");
        add_mount(s, "/dev/shm", "tmpfs", "shm", "nosuid,noexec,nodev,mode=1777,size=65536k");
        add_mount(s, "/dev/mqueue", "mqueue", "mqueue", "nosuid,noexec,nodev");
        add_mount(s, "/sys", "sysfs", "sysfs", "nosuid,noexec,nodev,ro");
        static const enum oci_ns_type ns[] = { OCI_NS_PID, OCI_NS_IPC, OCI_NS_UTS, OCI_NS_MOUNT, OCI_NS_NETWORK, OCI_NS_CGROUP };
        for (size_t i = 0; i < ARRAY_SIZE(ns); i++)
                add_namespace(s, ns[i]);
        if (geteuid() != 0)
                add_namespace(s, OCI_NS_USER);
        s->linux_.masked_paths = strv_copy((char *const *) default_masked);
        s->linux_.readonly_paths = strv_copy((char *const *) default_readonly);
        s->linux_.seccomp = oci_seccomp_new_default();
        s->linux_.resources.memory_limit = -1;
        s->linux_.resources.cpu_quota = -1;
        s->linux_.resources.devices = xzalloc(sizeof *s->linux_.resources.devices);
        s->linux_.resources.devices[0] = (struct oci_device_rule) { false, 'a', -1, -1, "rwm" };
        s->linux_.resources.n_devices = 1;
        return s;
}
