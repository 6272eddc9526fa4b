/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Step networking for the built-in runtime, spelled as Podman spells it:
 *
 *   none          a private network namespace with only lo (the default)
 *   host          the host's network namespace
 *   pasta[:OPT]   a private namespace connected by pasta (Debian `passt`);
 *                 OPT: --map-gw (the gateway address reaches the host's
 *                 loopback; off by default, as in Podman)
 *   slirp4netns[:OPT]
 *                 a private namespace connected by slirp4netns; OPT:
 *                 allow_host_loopback=true|false (10.0.2.2 reaches the
 *                 host's loopback; false by default, as in Podman)
 *
 * The helper (pasta or slirp4netns) is started by net_attach() between the
 * container's clone and its "go" byte: the network namespace exists, the
 * command has not run.  The helper is forked into the container's pid
 * namespace (joining its user namespace first when there is one), so it is
 * killed by the kernel when the container's pid 1 exits, whatever happens to
 * hm (its own death takes pid 1 along through PR_SET_PDEATHSIG), and reaped
 * by that pid 1 (or the pid namespace teardown).  hm tracks nothing after
 * net_attach() returns.
 */
#ifndef HM_RT_NET_H
#define HM_RT_NET_H

#include <stdbool.h>
#include <sys/types.h>

#include "lib/error.h"

enum net_mode { NET_NONE, NET_HOST, NET_PASTA, NET_SLIRP4NETNS };

struct net_config {
        enum net_mode mode;
        bool map_host_loopback; /* pasta:--map-gw, slirp4netns:allow_host_loopback=true */
        char *tool;             /* absolute path of pasta/slirp4netns, else NULL */
        char *resolv_conf;      /* the step's /etc/resolv.conf text, NULL: keep the image's */
        char *name;             /* the mode as given, for messages */
};

/*
 * Parse a mode (NULL: "none") given through `source` ("--network",
 * "HM_NETWORK", "/x/.hm/config.toml"), find the helper in PATH and prepare
 * the resolver configuration.  Errors are one line naming the source and
 * the fix.
 */
int net_config_parse(const char *mode, const char *source, struct net_config *ret, hm_error_t *err);
void net_config_release(struct net_config *c);
const char *net_mode_name(enum net_mode m);

/*
 * The pipeline's default mode when no --network is given: $HM_NETWORK, else
 * a top-level `network = "MODE"` in DIR/.hm/config.toml, else NULL.
 * *ret_mode and *ret_source are heap strings (or NULL).
 */
int net_pipeline_default(const char *dir, char **ret_mode, char **ret_source, hm_error_t *err);

/*
 * After clone (id maps written), before the child goes on: start the
 * helper for the child's network namespace and wait until the network is
 * up.  `userns`: the child has a user namespace of its own.
 */
int net_attach(const struct net_config *c, pid_t child, bool userns, hm_error_t *err);

#endif
