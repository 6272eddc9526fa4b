/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A runner executes one step at a time per step_exec, as a non-blocking
 * state machine driven by the scheduler's loop (sched/loop.h).  It never
 * waits: it registers fds and timers on r->loop and reports back through the
 * step_exec callbacks.  Two runners exist: the engine runner (engine/,
 * Docker/Podman over HTTP) and the ns runner (runtime/, built-in namespaces).
 *
 * Lifetime of one step:
 *   ops->start(r, x)            begin; returns < 0 only for errors found before
 *                               anything was created (then no callback follows)
 *   x->on_log(...)              any number of times, in order per stream
 *   x->on_notice(...)           informational (pull progress, reduced isolation)
 *   ops->cancel(r, x, force)    scheduler-initiated stop: force=false asks the
 *                               step to stop (SIGTERM), force=true kills it
 *   x->on_done(x, &result)      exactly once, after every resource of the step
 *                               (container, process, mounts, fds) is released
 *                               except the committed snapshot.  After on_done
 *                               the runner never touches x again.
 *
 * Snapshots are opaque strings owned by the runner's backend (engine: image
 * reference; ns: layer id).  The scheduler passes a parent's snapshot to its
 * builds_in children and, at run end, hands every ephemeral one back through
 * ops->drop_snapshots.
 */
#ifndef HM_RUNNER_H
#define HM_RUNNER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/error.h"

struct hm_loop;
struct plan;
struct plan_step;
struct workspace;
struct hm_runner;
struct step_exec;

enum { HM_STREAM_STDOUT = 1, HM_STREAM_STDERR = 2 };

/* Resource limits applied to every step of a run, by both runners (0: none). */
struct step_limits {
        int64_t memory_bytes; /* ns: cgroup memory.limit (v2 memory.max); engines: HostConfig.Memory */
        int64_t pids;         /* ns: pids cgroup; engines: HostConfig.PidsLimit */
        int64_t millicpus;    /* 1000 = one CPU; ns: cfs quota per 100 ms; engines: HostConfig.NanoCpus */
};

struct step_result {
        int exit_code;      /* the command's status: 0..255, 128+N when killed by signal N */
        bool cache_hit;     /* the cache tag existed: nothing ran */
        bool runner_error;  /* the runner failed (engine error, setup error); see error_msg */
        bool canceled;      /* stopped through ops->cancel */
        char *snapshot;     /* heap; committed snapshot on exit 0, else NULL */
        char *error_msg;    /* heap; one line, set with runner_error */
        /*
         * With commit_locked: the commit lock (pipeline/cache.h) the runner held
         * since before its commit, handed over with the result.  The scheduler
         * closes it as soon as the index entry is written, before it starts
         * other steps.
         */
        bool commit_locked;
        int commit_lock_fd;
};

struct step_exec {
        /* inputs, read-only for the runner, valid until on_done returns */
        const struct plan *plan;
        const struct plan_step *step;
        const char *run_id;          /* 32 hex */
        const char *image;           /* boot image when parent_snapshot is NULL */
        const char *parent_snapshot; /* builds_in parent's snapshot, or NULL */
        const char *cache_tag;       /* commit under this tag (cacheable step), or NULL: ephemeral */
        bool cache_lookup;           /* the index has cache_tag: verify it exists; hit if so */
        const char *commit_lock;     /* with cache_tag and a cache index: pipeline/cache.h's commit lock */
        char *const *env;            /* "K=V": HOME=/root then the node env; PATH only if the node sets it */
        const struct workspace *ws;  /* overlaid at /workspace */

        /* callbacks into the scheduler */
        void (*on_log)(struct step_exec *x, int stream, const char *buf, size_t n);
        void (*on_notice)(struct step_exec *x, const char *kind, const char *msg);
        void (*on_done)(struct step_exec *x, struct step_result *res); /* scheduler takes res's strings */

        void *sched_data;  /* the scheduler's */
        void *runner_data; /* the runner's */
};

struct runner_ops {
        const char *name; /* "docker", "podman", "ns", "null" */
        int (*start)(struct hm_runner *r, struct step_exec *x, hm_error_t *err);
        void (*cancel)(struct hm_runner *r, struct step_exec *x, bool force);
        /*
         * Remove snapshots (ephemeral ones at run end, evicted cache entries).
         * Asynchronous: calls done(data) once all are removed or failed; errors
         * are reported through r->warn.  Removing an unknown ref is not an error.
         */
        void (*drop_snapshots)(struct hm_runner *r, char *const *refs, void (*done)(void *data), void *data);
        /*
         * Optional: the user asked a second time (stopping without grace).
         * Stop waiting for a backend that does not answer: what cannot be
         * released promptly is left, and each object left is named in one
         * r->warn line (for `hm reap`).  Callbacks still come as above.
         */
        void (*hurry)(struct hm_runner *r);
        void (*free)(struct hm_runner *r);
};

struct hm_runner {
        const struct runner_ops *ops;
        struct hm_loop *loop;
        char *backend_id; /* cache index key, e.g. "docker:/run/d.sock", "ns:/var/lib/hm" */
        char *description; /* one line for the user: which engine/socket and why */
        /* warnings outside any step (reap failures); may be NULL */
        void (*warn)(void *data, const char *msg);
        void *warn_data;
};

#endif
