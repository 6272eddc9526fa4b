/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The ns runner (sched/runner.h) glues the layer store (oci/store.h) to the
 * built-in runtime (runtime/runtime.h): each step is one container whose
 * rootfs is an overlay of
 *
 *     upper:  a fresh dir under the store's tmp/ (the step's writes)
 *     lowers: the run's workspace layer (TOP; the -d tree under /workspace)
 *             the parent snapshot's chain, or the image's layers
 *
 * On exit 0 the upper is renamed into the store as the step's snapshot (its
 * chain records the lowers except the workspace layer, which is per run and
 * dropped at run end); otherwise it is removed.  Snapshot refs are layer ids.
 *
 * Everything waits on the scheduler's loop: stdout/stderr pipes and the
 * container's pidfd, and before that, with --network pasta|slirp4netns, the
 * network helper's start (runtime/net.h; the container waits for "go"
 * meanwhile, and a cancel then kills both at once).  Store work (unpacking the workspace once per run,
 * rename-commits, rm -rf of drops) is synchronous: it is local and short.
 */
#ifndef HM_NSRUNNER_H
#define HM_NSRUNNER_H

#include <stdbool.h>

#include "lib/error.h"
#include "oci/spec.h"
#include "sched/runner.h"

struct hm_loop;
struct hm_runner;

enum ns_rootless { NS_ROOTLESS_AUTO, NS_ROOTLESS_ON, NS_ROOTLESS_OFF };

struct ns_options {
        const char *store;      /* NULL: oci_store_default_path() */
        const char *network;    /* NULL/"none", "host", "pasta[:OPTS]", "slirp4netns[:OPTS]" (runtime/net.h) */
        const char *network_source; /* where the mode came from, for errors: NULL = "--network" */
        enum ns_rootless rootless; /* AUTO: rootless unless hm_privileged() */
        bool no_seccomp;        /* the default seccomp profile is on unless set */
        struct step_limits limits; /* per step (sched/runner.h); zero: none */
        const char *seccomp;    /* NULL/"default", "unconfined" or a profile file (OCI or Docker format) */
        struct oci_run_options run; /* --cap-add/--cap-drop/--user/--read-only/--tmpfs-tmp (oci/spec.h) */
        const char *pull;       /* "missing": pull a boot image not in the store; "always"; NULL/"never": no pulls */
};

int ns_runner_new(struct hm_loop *loop, const struct ns_options *o, struct hm_runner **ret, hm_error_t *err);

#endif
