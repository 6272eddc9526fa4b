/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Per-container cgroups (root only).  This code knows hybrid hosts:
 *   - a v1 "pids" cgroup always (free() kills every process listed in its
 *     cgroup.procs, even when pid 1 is gone) and a v1 "devices" cgroup
 *     (deny all, then the spec's rules, then the nodes the runtime binds);
 *   - memory/cpu limits and cpuset cpus/mems in cgroup v2 when its controllers are delegated and
 *     enabled for our cgroup, else in v1 memory/cpu/cpuset, else (not writable) the
 *     limits become rlimits (RLIMIT_AS, RLIMIT_NPROC) with a notice.
 * Paths are relative to the caller's own cgroup in each hierarchy.
 */
#ifndef HM_RT_CGROUP_H
#define HM_RT_CGROUP_H

#include <stdbool.h>
#include <sys/types.h>

#include "lib/error.h"
#include "runtime/child.h"

struct oci_resources;

/* new slots go last: OCI state files list the directories by slot */
enum { RT_CG_PIDS, RT_CG_DEVICES, RT_CG_MEMORY, RT_CG_CPU, RT_CG_V2, RT_CG_CPUSET, _RT_CG_MAX };

struct rt_cgroup {
        char *dirs[_RT_CG_MAX]; /* created directories, NULL if none */
};

/*
 * rel: "hm/<id>" style path (absolute = from the hierarchy root).
 * Fallback rlimits go to fallback[] (room for 2), notices are appended.
 */
int rt_cgroup_setup(struct rt_cgroup *cg, const char *rel, const struct oci_resources *res, char ***notices,
                    struct rt_rlimit *fallback, size_t *n_fallback, hm_error_t *err);
/* Rootless: no cgroups at all; the limits become rlimits (same contract as setup). */
void rt_cgroup_rootless(const struct oci_resources *res, char ***notices, struct rt_rlimit *fallback, size_t *n_fallback);
int rt_cgroup_enter(const struct rt_cgroup *cg, pid_t pid, hm_error_t *err);
/* SIGKILL everything still in the pids cgroup, then remove every directory. */
void rt_cgroup_destroy(struct rt_cgroup *cg);

#endif
