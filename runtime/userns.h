/* SPDX-License-Identifier: Apache-2.0 */
/*
 * uid_map/gid_map of the container's user namespace, written by the parent
 * between clone and the child's "go" (child.c step 1).  The method is chosen
 * before clone, because it decides whether the child may call setgroups().
 *
 *   root:      the spec's mappings, or identity (0 0 4294967295) if none
 *   rootless:  newuidmap/newgidmap when /etc/subuid and /etc/subgid give the
 *              user a range (own id -> 0, the range -> 1..N) or when the spec
 *              has mappings; else own uid/gid -> 0 with setgroups "deny"
 */
#ifndef HM_RT_USERNS_H
#define HM_RT_USERNS_H

#include <stdbool.h>
#include <sys/types.h>

#include "lib/error.h"

struct oci_spec;

enum rt_idmap_method { RT_IDMAP_DIRECT, RT_IDMAP_HELPERS, RT_IDMAP_SELF };

struct rt_idmap {
        enum rt_idmap_method method;
        char *uid_map;   /* "inside outside count\n..." */
        char *gid_map;
        char **uid_argv; /* newuidmap argv without the pid (filled in at apply) */
        char **gid_argv;
};

int rt_idmap_prepare(struct rt_idmap *m, const struct oci_spec *spec, bool rootless, hm_error_t *err);
int rt_idmap_apply(const struct rt_idmap *m, pid_t pid, hm_error_t *err);
void rt_idmap_release(struct rt_idmap *m);

#endif
