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
 * The helper (pasta or slirp4netns) is started between the container's clone
 * and its "go" byte (rt_start_options.defer_go): the network namespace
 * exists, the command has not run.  The helper is forked into the
 * container's pid namespace (joining its user namespace first when there is
 * one), so it is killed by the kernel when the container's pid 1 exits,
 * whatever happens to hm (its own death takes pid 1 along through
 * PR_SET_PDEATHSIG), and reaped by that pid 1 (or the pid namespace
 * teardown).  hm tracks nothing once the network is up.
 */
#ifndef HM_RT_NET_H
#define HM_RT_NET_H

#include <stdbool.h>
#include <stdint.h>
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
static inline bool net_needs_helper(const struct net_config *c)
{
        return c->mode == NET_PASTA || c->mode == NET_SLIRP4NETNS;
}

/*
 * The pipeline's default mode when no --network is given: $HM_NETWORK, else
 * a top-level `network = "MODE"` in DIR/.hm/config.toml, else NULL.
 * *ret_mode and *ret_source are heap strings (or NULL).
 */
int net_pipeline_default(const char *dir, char **ret_mode, char **ret_source, hm_error_t *err);

/*
 * Starting the helper never blocks: net_helper_start() forks it for the
 * child's namespaces and returns.  The caller polls net_helper_fd() (POLLIN)
 * and calls net_helper_continue() when it is readable, with a timer at
 * net_helper_deadline() that calls net_helper_timeout().  Two stages, each
 * bounded by NET_HELPER_STAGE_MS: the helper starting (pasta: its first
 * process exits 0 once the namespace is configured; slirp4netns: its parent
 * in the step is gone), then, for slirp4netns, its "1" on --ready-fd.
 * Errors are one line naming the mode and the helper's path, with the
 * helper's own message when it printed one.
 */
#define NET_HELPER_STAGE_MS 10000

struct net_helper;

/* `c` must outlive the helper; `userns`: the child has a user namespace of its own. */
int net_helper_start(const struct net_config *c, pid_t child, bool userns, struct net_helper **ret,
                     hm_error_t *err);
int net_helper_fd(const struct net_helper *h);
int64_t net_helper_deadline(const struct net_helper *h); /* now_ms() clock */
/* After net_helper_fd() became readable: 1 the network is up, 0 poll net_helper_fd() again, < 0 failed. */
int net_helper_continue(struct net_helper *h, hm_error_t *err);
/* The deadline passed: the error to report (free the helper and the container next). */
int net_helper_timeout(struct net_helper *h, hm_error_t *err);
/*
 * SIGKILL and reap what is left of the helper's start (hm's own child), close
 * the fds; NULL is fine.  Free (kill and reap) the container first: its pid 1
 * takes the helper's processes in the step along while the intermediate
 * still reaps its own child there.  Killed first, the intermediate would
 * leave that child to the host's init, and the step's pid 1 (waiting in
 * zap_pid_ns_processes) could not be reaped before that init reaps it: hm
 * blocked 1.4-1.9 s in its wait on a host whose init reaps late.
 */
void net_helper_free(struct net_helper *h);

#endif
