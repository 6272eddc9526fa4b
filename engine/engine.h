/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The engine runner: runs each step in a Docker or Podman container through
 * the Engine HTTP API over a Unix socket (see shared/docs/engine-api.md §13
 * for the request sequence), driven by the scheduler's loop.  It implements
 * sched/runner.h.
 *
 * engine_runner_new() finds the socket and detects the engine with one
 * blocking /_ping per candidate (set-up, before the loop runs), in this
 * order: opts->socket (exclusive when given); $DOCKER_HOST (unix:// only);
 * $CONTAINER_HOST (unix:// only); /var/run/docker.sock;
 * /run/podman/podman.sock; $XDG_RUNTIME_DIR/podman/podman.sock.  With
 * kind "docker" only the Docker candidates ($DOCKER_HOST, the docker
 * default) are tried, with "podman" only the Podman ones ($CONTAINER_HOST,
 * the two podman defaults); the first that answers as the wanted kind wins.
 *
 * Everything the runner creates is labelled hm.run=<run id> and
 * hm.owner=<pid>:<start time>; its own images are always named
 * localhost/<name>:<tag>:
 *   cacheable step  -> localhost/<cache_tag>
 *   other steps     -> localhost/hm-ephemeral:<run id[0:12]>-<step index>
 * User images are looked up exactly as the pipeline names them.
 *
 * ops->free() may be called with steps still running (after the loop
 * stopped, but before hm_loop_free()): it then removes their containers
 * with blocking requests, and calls no step callback.
 */
#ifndef HM_ENGINE_H
#define HM_ENGINE_H

#include "lib/error.h"
#include "oci/spec.h"
#include "sched/runner.h"

struct hm_loop;
struct hm_runner;

struct engine_options {
        const char *kind;      /* "docker", "podman", or "vm"/"engine"/NULL = whichever answers */
        const char *socket;    /* explicit --socket PATH, or NULL */
        const char *network;   /* NetworkMode, NULL = engine default */
        const char *pull;      /* "missing" (default, also NULL), "always", "never" */
        int grace_seconds;     /* not used by the runner itself; scheduler handles it */
        /*
         * Sent with every create as HostConfig.Memory (with MemorySwap equal
         * to it: no swap beyond the limit), PidsLimit and NanoCpus
         * (millicpus * 1e6); 0 leaves the engine's default.
         */
        struct step_limits limits;
        /*
         * The sandbox flags, as on the ns runner: --seccomp (NULL/"default":
         * the engine's own profile; "unconfined"; a Docker-format JSON file,
         * sent inline to Docker and as its path to Podman, engine-api.md §5.1),
         * --cap-add/--cap-drop (HostConfig.CapAdd/CapDrop), --user
         * (Config.User), --read-only (HostConfig.ReadonlyRootfs), --tmpfs-tmp
         * (HostConfig.Tmpfs /tmp).
         */
        const char *seccomp;
        struct oci_run_options sandbox;
};

/*
 * Find the engine and make a runner bound to `loop`.  Fails with one line
 * naming every candidate tried and why it failed, e.g.
 *   no docker engine answered: $DOCKER_HOST unix:///x.sock: connection refused; /var/run/docker.sock: no such file
 * The runner's description reads "podman 4.3.1 at /run/podman/podman.sock (from default)",
 * its backend_id "podman:/run/podman/podman.sock".
 */
int engine_runner_new(struct hm_loop *loop, const struct engine_options *opts, struct hm_runner **ret,
                      hm_error_t *err);

#endif
