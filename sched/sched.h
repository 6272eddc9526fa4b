/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The DAG scheduler: drives every step of a plan through a runner, inside
 * one hm_loop, with the semantics of hm-compat §4.3/§4.11/§4.12:
 *   - a step starts the moment its last predecessor passed and a slot is free;
 *   - -k: dependents of a failed step are skipped (transitively), independent
 *     branches go on; without -k the first failure stops running steps (SIGTERM,
 *     grace, SIGKILL) and nothing new starts;
 *   - per-step timeout → step exit 124; pipeline timeout → run exit 124;
 *   - SIGINT/SIGTERM → stop as fail-fast, exit 130; a second one skips the grace;
 *   - every step ends with exactly one of step_end, step_skipped, step_canceled;
 *   - cleanup (ephemeral snapshots, cache eviction) always runs before build_end.
 * Exit codes: 0 passed, 1 failed, 124 pipeline timeout, 130 signal.
 */
#ifndef HM_SCHED_H
#define HM_SCHED_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/error.h"

struct plan;
struct hm_runner;
struct hm_loop;
struct hm_sink;
struct workspace;
struct cache_index;

struct sched_options {
        unsigned parallelism;      /* >= 1 */
        bool keep_going;
        int grace_ms;              /* SIGTERM → SIGKILL delay when stopping steps */
        const char *default_image; /* for root steps without image: "ubuntu:24.04" */
        struct cache_index *cache; /* NULL: no cache */
        size_t cache_capacity;     /* entries per backend kept after the run */
        int signal_fd;             /* signalfd for SIGINT/SIGTERM/SIGHUP, or -1 */
        const char *reap_notice;   /* hm run's quick reap: a notice "reap" after build_start, or NULL */
};

int sched_run(const struct plan *plan, struct hm_runner *runner, struct hm_loop *loop,
              const struct workspace *ws, const struct sched_options *o, struct hm_sink *sink,
              int *ret_exit, hm_error_t *err);

/* A random UUID v4, lowercase, hyphenated (37 bytes with NUL). */
void hm_uuid4(char out[37]);

#endif
