/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The prepared container plan (built by plan.c in the parent, before clone)
 * and the child side of the clone->exec sequence (child.c).  Everything the
 * child needs is in the plan: after clone it only reads it and makes
 * async-signal-safe calls; it never allocates.
 */
#ifndef HM_RT_CHILD_H
#define HM_RT_CHILD_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/error.h"

struct oci_spec;
struct rt_start_options;

/* Sync socket messages, child -> parent: header then `len` bytes of text. */
/* RT_MSG_READY (detached create only): set up, now blocked on the exec fifo. */
/* RT_MSG_PID (exec only): the forked command's pid (in the caller's pid namespace) in `err`, no text. */
enum { RT_MSG_ERROR = 1, RT_MSG_NOTICE = 2, RT_MSG_READY = 3, RT_MSG_PID = 4 };
struct rt_msg_header {
        int32_t type;
        int32_t err;  /* errno for RT_MSG_ERROR */
        uint32_t len;
};
#define RT_MSG_MAX 1024
/* Parent -> child: one byte once the id maps are written and cgroups joined. */
#define RT_SYNC_GO 'G'

enum rt_mount_kind { RT_MNT_FS, RT_MNT_BIND, RT_MNT_PROC, RT_MNT_SYSFS };

struct rt_mount_op {
        enum rt_mount_kind kind;
        char *dest;               /* absolute path inside the container */
        char *source;             /* fs source, or host path for binds */
        char *fstype;
        char *data;
        unsigned long flags;      /* MS_RDONLY, MS_NOSUID, ... */
        unsigned long propagation;
        bool recursive;           /* rbind */
};

struct rt_rlimit {
        int type;
        uint64_t soft, hard;
};

/* linux.devices[]: mknod (else, in a user namespace, a bind of the host's same path) */
struct rt_device {
        char *path;               /* absolute inside the container */
        mode_t mode;              /* S_IFCHR/S_IFBLK/S_IFIFO | permission bits */
        dev_t rdev;
        uid_t uid;
        gid_t gid;
};

struct rt_join {
        int nstype; /* CLONE_NEW* */
        int fd;
};

struct rt_plan {
        unsigned long clone_flags;  /* CLONE_NEW* */
        bool userns;
        bool setgroups_allowed;     /* false when "deny" was written (rootless, no newgidmap) */
        struct rt_join joins[8];    /* setns() into existing namespaces (no user ns only); not pid */
        size_t n_joins;
        int pidns_fd;               /* linux.namespaces pid with a path: the parent clones into it, or -1 */
        /*
         * No mount namespace of the container's own (none asked for, or one
         * joined by path): the mounts are made in that shared namespace below
         * the rootfs (cleaned up by the OCI delete) and the root is entered
         * with chroot, not pivot_root; "/" of that namespace is left alone.
         */
        bool shared_mntns;
        unsigned long tree_propagation; /* applied to "/" of a new mount ns first: MS_REC|MS_PRIVATE or MS_REC|MS_SLAVE */
        unsigned long root_propagation; /* linux.rootfsPropagation, applied to the new root; 0: none */

        /* rootfs */
        char *rootfs;               /* host dir that becomes "/" (bind source or overlay mountpoint) */
        char *overlay_data;         /* NULL: bind rootfs; else overlay mount options */
        /*
         * Root with a user namespace: the parent clones with its cwd on the
         * rootfs, so the child reaches it through its copy of the mounts
         * without walking the path (a 0700 parent directory would stop the
         * namespace's root, an unprivileged uid on the host).
         */
        bool rootfs_via_cwd;
        bool root_readonly;
        struct rt_mount_op *mounts;
        size_t n_mounts;
        bool dev_is_tmpfs;          /* populate /dev with the standard nodes */
        bool dev_has_pts;
        struct rt_device *devices;
        size_t n_devices;
        char **masked;
        char **readonly;
        char **sysctl_paths;        /* "/proc/sys/net/ipv4/ip_forward" */
        char **sysctl_values;
        char *hostname;

        /* process */
        struct rt_rlimit *rlimits;
        size_t n_rlimits;
        mode_t umask;
        bool umask_present;
        uid_t uid;
        gid_t gid;
        gid_t *groups;
        size_t n_groups;
        uint64_t cap_bounding, cap_effective, cap_permitted, cap_inheritable, cap_ambient;
        int cap_last;
        bool no_new_privs;
        char **argv;
        char **envp;
        char *path_env;             /* PATH from envp (for a bare argv[0]) or NULL */
        char *cwd;

        /* seccomp: a struct sock_fprog's pieces; NULL = no filter */
        const void *bpf;
        size_t bpf_len;             /* in bytes */

        /* process.terminal: a connected console socket for the pty master; -1 without */
        bool terminal;
        int console_fd;
        unsigned short console_rows, console_cols;
        unsigned preserve_fds;      /* 3..3+N-1 stay open across exec */

        /* fds, all >= 3 and CLOEXEC in the parent */
        int sync_fd;
        int sync_peer_fd; /* the parent's end: closed first thing, so the parent's death is an EOF */
        int stdin_fd, stdout_fd, stderr_fd;
        /*
         * Detached create (OCI create/start): >= 0, an O_RDWR end of the
         * exec fifo.  The command then reports RT_MSG_READY as the last step
         * before exec and blocks reading one byte from it; no parent death
         * signal for the container's init (its creator exits).
         */
        int exec_fifo_fd;

        /*
         * OCI exec (rt_plan_build_exec): no clone flags, no mounts; the child
         * setns()es into joins[] (the user namespace first, then become root
         * in it; the pid namespace last but one, so the fork at step 4b lands
         * in it; the mount namespace last), chroots into chroot_dir when the
         * container has no mount namespace of its own, and forks: the
         * command goes on through steps 5..11, the process left behind sends
         * its pid (RT_MSG_PID) and either waits for it as rt_init_run does
         * or, exec_detach, exits at once (the command is reparented to the
         * caller's subreaper, as conmon and containerd-shim expect).
         */
        bool exec;
        bool exec_detach;
        char *chroot_dir;
};

int rt_plan_build(struct rt_plan *p, const struct oci_spec *spec, const struct rt_start_options *o,
                  bool rootless, hm_error_t *err);
struct rt_exec_options;
int rt_plan_build_exec(struct rt_plan *p, const struct oci_spec *spec, const struct rt_exec_options *o, hm_error_t *err);
void rt_plan_release(struct rt_plan *p);

/* The child after clone: runs the numbered sequence, never returns. */
_Noreturn void rt_child_run(const struct rt_plan *p);

#endif
