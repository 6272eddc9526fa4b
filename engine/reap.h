/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Owner-aware reaping on a Docker or Podman engine: remove what engine runs
 * whose hm process died (SIGKILL, OOM, power loss) left behind.
 *
 * The engine runner labels every container hm.run=<run id>,
 * hm.owner=<pid>:<starttime>:<pidns>:<boot id> (oci/owner.h; older hm wrote
 * only <pid>:<starttime>) and hm.step; its commits keep the container's
 * labels (engine-api.md §8.2), ephemeral ones add hm.ephemeral=1.  Owners
 * are judged by owner_judge(): alive, dead, or foreign (in a pid namespace
 * this process cannot see into, e.g. hm in another container sharing the
 * engine's socket).
 *
 *   containers: every container labelled hm.run whose hm.owner is dead is
 *     removed (force=1&v=1).  A container without a parsable hm.owner is
 *     left alone (not ours to judge); one whose owner is foreign is left
 *     and listed in *ret_left.
 *   images: labelled hm.run and either hm.ephemeral=1 or untagged (a cache
 *     image whose tag a concurrent run moved while a step of its own run
 *     still used it, so the mover's delete was refused: nothing can name it
 *     again), not named localhost/harmont-cache/..., and whose run is not
 *     the run of a live or foreign owner's container.
 *     With an hm.owner label the owner must be dead too (foreign: listed in
 *     *ret_left); without one (an engine that
 *     did not keep the container's labels) the image must also be older than
 *     ENGINE_REAP_UNOWNED_AGE seconds, since a live run between two steps has
 *     no container yet still needs its snapshots.  Removed newest first,
 *     children before parents, by tag and without force, so an image a
 *     container still uses (409) is kept.
 *
 * Cache images (localhost/harmont-cache/...) and anything without hm labels
 * are never touched.
 */
#ifndef HM_ENGINE_REAP_H
#define HM_ENGINE_REAP_H

#include <stdbool.h>

#include "lib/error.h"

#define ENGINE_REAP_UNOWNED_AGE 600

/*
 * One-shot and blocking (curl easy handles over the Unix socket): call it
 * before any loop runs.  dry_run: only list.  *ret_removed (may be NULL)
 * gets one line per removed (or, dry_run, removable) object, e.g.
 *   container 0123456789ab (run 1a2b3c4d5e6f, step 'build', owner 4242:81234:4026531836:0b6e... dead)
 *   image localhost/hm-ephemeral:1a2b3c4d5e6f-0 (run 1a2b3c4d5e6f)
 * *ret_left (may be NULL) gets one line per object left because its owner
 * is foreign, e.g.
 *   container 0123456789ab (run ..., step 'build', owner 7:81234:4026532451:0b6e... in another pid namespace, not visible from here)
 * Both are set on failure too (what was removed before or despite it, possibly
 * nothing): every object is tried, and the first failure is returned.
 */
int engine_reap(const char *socket, bool dry_run, char ***ret_removed, char ***ret_left, hm_error_t *err);

/*
 * The same without discovery, on a socket known to answer: prefix is the API
 * version prefix ("/v1.41"; NULL or "" for the engine's own), timeout_ms
 * bounds each request (<= 0: 60 s).  Two list requests (containers,
 * images labelled hm.run), then one removal per dead owner's object: what hm run's
 * quick reap at start uses.
 */
int engine_reap_at(const char *socket, const char *prefix, long timeout_ms, bool dry_run, char ***ret_removed,
                   char ***ret_left, hm_error_t *err);

/* true when an owner label names a process judged alive; false for dead, foreign or malformed. */
bool engine_owner_alive(const char *owner);

#endif
