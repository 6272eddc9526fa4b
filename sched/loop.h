/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The one event loop of a run (shape of redis ae.c): a single thread, a
 * single poll() call per iteration over every registered fd, and a timer
 * heap whose earliest deadline bounds the poll timeout.  Everything that can
 * block (engine HTTP transfers through libcurl multi, step pipes and pidfds,
 * the signalfd) registers here; nothing else in hm waits.
 *
 * Callbacks may add or remove any fd or timer, including their own, while
 * the loop dispatches.  A removed fd's pending revents are dropped.
 */
#ifndef HM_LOOP_H
#define HM_LOOP_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

#include "lib/error.h"

struct hm_loop;
typedef void (*hm_io_fn)(struct hm_loop *loop, int fd, short revents, void *data);
typedef void (*hm_timer_fn)(struct hm_loop *loop, uint64_t id, void *data);

struct hm_loop *hm_loop_new(void);
void hm_loop_free(struct hm_loop *loop);

/* Watch fd for `events` (POLLIN/POLLOUT); one registration per fd. */
int hm_loop_add_fd(struct hm_loop *loop, int fd, short events, hm_io_fn fn, void *data,
                   hm_error_t *err);
/* Change the events of a registered fd (0 keeps it registered but idle). */
void hm_loop_mod_fd(struct hm_loop *loop, int fd, short events);
/* Stop watching fd (does not close it).  Unknown fds are ignored. */
void hm_loop_del_fd(struct hm_loop *loop, int fd);
bool hm_loop_has_fd(struct hm_loop *loop, int fd);

/* Call fn once after `ms` milliseconds (0: on the next iteration).  Returns an id > 0. */
uint64_t hm_loop_add_timer(struct hm_loop *loop, int64_t ms, hm_timer_fn fn, void *data);
/* Cancel a timer that has not fired; ids of fired or unknown timers are ignored. */
void hm_loop_del_timer(struct hm_loop *loop, uint64_t id);

/* Call fn(data) at the start of every iteration, before poll() (one hook; NULL removes it). */
void hm_loop_set_prepare(struct hm_loop *loop, void (*fn)(void *data), void *data);

/* Run one iteration: poll (at most max_wait_ms, -1 = until an event), dispatch. */
int hm_loop_iterate(struct hm_loop *loop, int max_wait_ms, hm_error_t *err);
/* Iterate until hm_loop_stop() is called. */
int hm_loop_run(struct hm_loop *loop, hm_error_t *err);
void hm_loop_stop(struct hm_loop *loop);
bool hm_loop_stopped(struct hm_loop *loop);
/* Number of registered fds and pending timers (tests use it to find leaks). */
unsigned hm_loop_n_fds(struct hm_loop *loop);
unsigned hm_loop_n_timers(struct hm_loop *loop);

#endif
