/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A test-only runner that runs no container: it interprets a tiny subset of
 * shell in the step command ("echo WORDS", "echo WORDS >&2", "sleep SECONDS",
 * "exit N", separated by ';') with loop timers.  Used to test the scheduler's
 * semantics and to measure its own overhead (`hm run --runner=null`).
 */
#ifndef HM_RUNNER_NULL_H
#define HM_RUNNER_NULL_H
struct hm_loop;
struct hm_runner;
struct hm_runner *null_runner_new(struct hm_loop *loop);
/* Most steps that were running at once (tests check parallelism with it). */
unsigned null_runner_max_running(struct hm_runner *r);
#endif
