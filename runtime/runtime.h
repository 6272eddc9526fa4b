/* SPDX-License-Identifier: Apache-2.0 */
/*
 * hm's built-in namespace runtime: run one container from a struct oci_spec,
 * without a daemon (a small crun/bubblewrap).
 *
 * rt_container_start() prepares everything (paths, argv, envp, seccomp BPF,
 * cgroups), clones the container's init into new namespaces and returns once
 * the command has been exec'd (or with an error naming the failed setup
 * step).  Nothing here blocks afterwards: the caller polls the pidfd (and the
 * output pipes when capture_output) and calls rt_container_wait() once the
 * pidfd is readable.
 *
 * Inside the container, pid 1 is a tiny init owned by the runtime: it reaps
 * orphans, forwards every signal but SIGCHLD to the command (pid 2) and
 * exits with its status.
 */
#ifndef HM_RUNTIME_H
#define HM_RUNTIME_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

#include "lib/error.h"

struct oci_spec;
struct oci_seccomp;
struct rt_container;

struct rt_overlay {          /* rootfs as an overlay, mounted inside the container's mount ns */
        char **lower;        /* lower dirs, TOP FIRST (overlay's lowerdir order), NULL-terminated */
        const char *upper;   /* writable upper dir, or NULL for a read-only overlay */
        const char *work;    /* overlay workdir (same fs as upper) */
        const char *target;  /* empty dir to mount the overlay on; NULL: lower[0] (not usable when lower[0] is "/") */
};

struct rt_start_options {
        const struct rt_overlay *rootfs_overlay; /* if set, used instead of spec->root.path */
        bool capture_output;  /* stdout/stderr as non-blocking CLOEXEC pipes for the caller's poll loop */
        int stdin_fd;         /* -1: /dev/null */
        const char *cgroup_parent; /* NULL: "hm" below the caller's own cgroup (per hierarchy) */
        const char *id;       /* container id for hostname default / cgroup name */
        bool rootless;        /* force the unprivileged path even as root (tests) */
        const void *seccomp_bpf; size_t seccomp_bpf_len; /* precompiled filter (sock_filter array), or NULL = build from spec */
        /*
         * OCI create: path of a fifo (mkfifo'd by the caller).  Start returns
         * once the command is set up and blocked reading one byte from it,
         * right before exec; writing a byte (OCI start) lets it exec.  The
         * container must then outlive the caller: rt_container_detach().
         */
        const char *exec_fifo;
        bool hooks_by_caller; /* spec hooks are run by the caller (OCI front end), not refused */
        /*
         * process.terminal: the command gets a new pty (of the container's
         * devpts) as stdio and controlling terminal; its master is sent over
         * this AF_UNIX socket (SCM_RIGHTS), as runc's --console-socket.
         */
        const char *console_socket;
        unsigned preserve_fds; /* fds 3..3+N-1 of the caller stay open in the command (--preserve-fds) */
        /*
         * Return right after clone, once the id maps are written and the
         * cgroups joined, without sending "go": the namespaces exist, nothing
         * of the command runs yet.  The caller prepares what it needs (the ns
         * runner's network helper, runtime/net.h) on its own loop, then calls
         * rt_container_go(), or frees the container.
         */
        bool defer_go;
};

int rt_container_start(const struct oci_spec *spec, const struct rt_start_options *o,
                       struct rt_container **ret, hm_error_t *err);
/*
 * defer_go: let the child go on and return once the command has been exec'd
 * (the rest of rt_container_start).  Until then the child blocks every signal
 * but SIGKILL: rt_container_kill(c, SIGKILL) or rt_container_free() stop it.
 */
int rt_container_go(struct rt_container *c, hm_error_t *err);
bool rt_container_userns(const struct rt_container *c); /* the child has a user namespace of its own */
pid_t rt_container_pid(const struct rt_container *c);
int rt_container_pidfd(const struct rt_container *c);       /* readable when the container's init exits */
int rt_container_stdout_fd(const struct rt_container *c);  /* -1 unless capture_output */
int rt_container_stderr_fd(const struct rt_container *c);
int rt_container_kill(struct rt_container *c, int sig);     /* to the container's init (which forwards) */
/* After the pidfd is readable: reap, ret_status = 0..255 or 128+signal; release cgroups.  */
int rt_container_wait(struct rt_container *c, int *ret_status, hm_error_t *err);
void rt_container_free(struct rt_container *c); /* SIGKILL + reap if still running, cgroup removed, fds closed */
static inline void rt_container_freep(struct rt_container **c) { if (*c) rt_container_free(*c); }
#define _cleanup_rt_container_ __attribute__((cleanup(rt_container_freep)))

/*
 * Give up ownership without killing (OCI create: the container outlives us).
 * *ret_cgroups: the created cgroup directories, "" where none, one entry per
 * controller slot (RT_CGROUP_SLOTS), for rt_cgroups_destroy() later.
 * Frees c.
 */
#define RT_CGROUP_SLOTS 6
void rt_container_detach(struct rt_container *c, char ***ret_cgroups);
/* SIGKILL everything in the pids cgroup, then remove the directories ("" skipped). */
void rt_cgroups_destroy(char *const *cgroups);

/*
 * A container without a mount namespace of its own (none, or one joined by
 * path) made its mounts in that shared namespace below its rootfs: detach
 * every mount at or below `rootfs` in the namespace `mntns_fd` refers to
 * (our own, or entered in a forked helper).  Returns the number detached.
 */
int rt_shared_mounts_release(const char *rootfs, int mntns_fd, hm_error_t *err);
/* Does the spec give the container no mount namespace of its own? */
bool rt_spec_shares_mount_ns(const struct oci_spec *spec);

/*
 * Reduced isolation and fallbacks taken for this container, one line each
 * ("sysfs: ...", "cgroups: ..."), NULL-terminated; valid until free.
 */
const char *const *rt_container_notices(const struct rt_container *c);

/*
 * OCI exec: one more process in a running (or created) container.  spec is
 * the container's config with spec->process replaced by the new process
 * (its args/env/cwd/user/capabilities/rlimits/terminal); its linux.seccomp
 * is applied to it.  The process joins every namespace of `pid` (the
 * container's init) that differs from ours, its cgroups, its root, and
 * gets the same setup sequence as a container's command (child.c 5..11).
 * Returns once the command has been exec'd.  The returned handle is the
 * process in between (outside the container's pid namespace): its pidfd
 * and rt_container_wait() give the command's status, or 0 with detach (it
 * exits once the command is forked).  No cgroup is owned.
 */
struct rt_exec_options {
        pid_t pid;                 /* the container's init */
        uint64_t starttime;        /* its /proc/PID/stat start time (0: not checked): tells a reused pid apart */
        char *const *cgroups;      /* its RT_CGROUP_SLOTS directories ("" none), or NULL */
        const char *chroot_dir;    /* no mount namespace of its own: its rootfs, entered with chroot */
        int stdin_fd;              /* the command inherits our stdout/stderr */
        const char *console_socket; /* process.terminal: where the pty master goes */
        unsigned preserve_fds;
        bool detach;
};
int rt_exec_start(const struct oci_spec *spec, const struct rt_exec_options *o, struct rt_container **ret,
                  hm_error_t *err);
pid_t rt_container_exec_pid(const struct rt_container *c); /* the exec'd command, in our pid namespace */

/* compile the spec's seccomp to BPF once (for reuse across many steps) */
int rt_seccomp_compile(const struct oci_seccomp *s, void **ret_bpf, size_t *ret_len, hm_error_t *err);
/* libseccomp's program as it is (the tests compare it with the compacted one) */
int rt_seccomp_compile_raw(const struct oci_seccomp *s, void **ret_bpf, size_t *ret_len, hm_error_t *err);
/* The same filter with runs of JEQs to one target as range tests (seccomp.c); out may be in. */
struct sock_filter;
size_t rt_seccomp_compact(const struct sock_filter *in, size_t n, struct sock_filter *out);

#endif
