/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Every raw syscall of the runtime (crun's syscall-wrapper file).  Each
 * wrapper returns -1 with errno ENOSYS when the libc headers lack the
 * number, so callers take their fallback paths on feature checks, never on
 * kernel version checks.  All of them are async-signal-safe.
 */
#ifndef HM_RT_SYSCALLS_H
#define HM_RT_SYSCALLS_H

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif
#ifndef CLONE_NEWCGROUP
#define CLONE_NEWCGROUP 0x02000000
#endif
#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif
#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef SECCOMP_SET_MODE_FILTER
#define SECCOMP_SET_MODE_FILTER 1
#endif
#ifndef MOUNT_ATTR_RDONLY
#define MOUNT_ATTR_RDONLY 0x00000001
#endif
#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif
#ifndef RESOLVE_NO_MAGICLINKS
#define RESOLVE_NO_MAGICLINKS 0x02
#endif
#ifndef RESOLVE_IN_ROOT
#define RESOLVE_IN_ROOT 0x10
#endif

/* linux/sched.h struct clone_args (v0 layout, 64 bytes; kernel 5.3). */
struct rt_clone_args {
        uint64_t flags;
        uint64_t pidfd;
        uint64_t child_tid;
        uint64_t parent_tid;
        uint64_t exit_signal;
        uint64_t stack;
        uint64_t stack_size;
        uint64_t tls;
};

/* linux/openat2.h struct open_how (kernel 5.6). */
struct rt_open_how {
        uint64_t flags;
        uint64_t mode;
        uint64_t resolve;
};

/* linux/mount.h struct mount_attr (kernel 5.12). */
struct rt_mount_attr {
        uint64_t attr_set;
        uint64_t attr_clr;
        uint64_t propagation;
        uint64_t userns_fd;
};

#define RT_NOSYS() (errno = ENOSYS, -1)

/* Fork-like: returns 0 in the child (no CLONE_VM, no new stack). */
static inline long rt_clone3(struct rt_clone_args *args, size_t size)
{
#ifdef SYS_clone3
        return syscall(SYS_clone3, args, size);
#else
        return RT_NOSYS();
#endif
}

/*
 * clone(2) fallback for kernels before 5.3 (no clone3): the pidfd lands in
 * the parent_tid slot (CLONE_PIDFD, 5.2).  Remove once 5.3 is the baseline.
 * The argument order is the x86_64/arm64 one (CONFIG_CLONE_BACKWARDS).
 */
static inline long rt_clone_legacy(unsigned long flags, int *pidfd)
{
#if defined(__x86_64__)
        return syscall(SYS_clone, flags, NULL, pidfd, NULL, 0);
#elif defined(__aarch64__)
        return syscall(SYS_clone, flags, NULL, pidfd, 0, NULL);
#else
        (void) flags, (void) pidfd;
        return RT_NOSYS();
#endif
}

static inline int rt_pidfd_open(pid_t pid, unsigned flags)
{
#ifdef SYS_pidfd_open
        return (int) syscall(SYS_pidfd_open, pid, flags);
#else
        return RT_NOSYS();
#endif
}

static inline int rt_pidfd_send_signal(int pidfd, int sig, siginfo_t *info, unsigned flags)
{
#ifdef SYS_pidfd_send_signal
        return (int) syscall(SYS_pidfd_send_signal, pidfd, sig, info, flags);
#else
        return RT_NOSYS();
#endif
}

static inline int rt_pivot_root(const char *new_root, const char *put_old)
{
        return (int) syscall(SYS_pivot_root, new_root, put_old);
}

static inline int rt_seccomp(unsigned op, unsigned flags, void *args)
{
#ifdef SYS_seccomp
        return (int) syscall(SYS_seccomp, op, flags, args);
#else
        return RT_NOSYS();
#endif
}

static inline int rt_close_range(unsigned first, unsigned last, unsigned flags)
{
#ifdef SYS_close_range
        return (int) syscall(SYS_close_range, first, last, flags);
#else
        return RT_NOSYS();
#endif
}

static inline int rt_openat2(int dirfd, const char *path, struct rt_open_how *how)
{
#ifdef SYS_openat2
        return (int) syscall(SYS_openat2, dirfd, path, how, sizeof *how);
#else
        return RT_NOSYS();
#endif
}

static inline int rt_mount_setattr(int dirfd, const char *path, unsigned flags, struct rt_mount_attr *attr)
{
#ifdef SYS_mount_setattr
        return (int) syscall(SYS_mount_setattr, dirfd, path, flags, attr, sizeof *attr);
#else
        return RT_NOSYS();
#endif
}

static inline int rt_capget(void *hdr, void *data) { return (int) syscall(SYS_capget, hdr, data); }
static inline int rt_capset(void *hdr, void *data) { return (int) syscall(SYS_capset, hdr, data); }

#endif
