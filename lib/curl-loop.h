/* SPDX-License-Identifier: Apache-2.0 */
/*
 * One libcurl multi handle driven by hm's poll loop (sched/loop.h): the
 * sockets libcurl asks for are registered on the loop
 * (CURLMOPT_SOCKETFUNCTION), its single timeout is a loop timer
 * (CURLMOPT_TIMERFUNCTION), and each event becomes one round of
 * curl_multi_socket_action() followed by the done callback of every
 * transfer that finished (CURLMSG_DONE) and then the optional idle hook.
 * Used by the engine client (engine/http.c) and the registry client
 * (oci/registry.c); the easy handles and what hangs on them stay theirs.
 *
 * Inside libcurl's own callbacks (write, read, header, progress) the multi
 * handle must not change: hm_curl_loop_inside() tells a caller so, and the
 * idle hook, which runs once libcurl has returned, is where it can apply
 * what it deferred.
 */
#ifndef HM_CURL_LOOP_H
#define HM_CURL_LOOP_H

#include <curl/curl.h>
#include <stdbool.h>

#include "lib/error.h"

struct hm_loop;
struct hm_curl_loop;

/*
 * A transfer ended.  easy is still in the multi handle (the callback
 * removes it, usually with hm_curl_loop_remove(), and frees it); priv is its
 * CURLOPT_PRIVATE pointer (NULL when none was set); result is libcurl's.
 * Runs outside libcurl: it may add, remove and free easy handles.
 */
typedef void (*hm_curl_done_fn)(CURL *easy, void *priv, CURLcode result, void *data);
/* After every round of events and done callbacks, outside libcurl. */
typedef void (*hm_curl_idle_fn)(void *data);

/*
 * A new multi handle attached to loop (libcurl's global set-up happens on
 * the first call).  done is required; idle may be NULL.  The handle does not
 * own loop, which must outlive it.
 */
int hm_curl_loop_new(struct hm_loop *loop, hm_curl_done_fn done, hm_curl_idle_fn idle, void *data,
                     struct hm_curl_loop **ret, hm_error_t *err);
/*
 * Remove every fd and the timer from the loop and clean up the multi handle.
 * The caller removes its easy handles first (libcurl's rule).  Never calls
 * back.  NULL is ignored.
 */
void hm_curl_loop_free(struct hm_curl_loop *cl);
static inline void hm_curl_loop_freep(struct hm_curl_loop **cl)
{
        hm_curl_loop_free(*cl);
}
#define _cleanup_curl_loop_ __attribute__((cleanup(hm_curl_loop_freep)))

/* Start a transfer (curl_multi_add_handle); the easy handle stays the caller's. */
int hm_curl_loop_add(struct hm_curl_loop *cl, CURL *easy, hm_error_t *err);
/* Stop a transfer (curl_multi_remove_handle); handles not added are ignored. */
void hm_curl_loop_remove(struct hm_curl_loop *cl, CURL *easy);

/* The multi handle, for options (borrowed: freed by hm_curl_loop_free). */
CURLM *hm_curl_loop_multi(const struct hm_curl_loop *cl);
/* True while libcurl runs (inside curl_multi_socket_action and its callbacks). */
bool hm_curl_loop_inside(const struct hm_curl_loop *cl);
/* fds registered on the loop for libcurl, and whether its timer is armed (tests). */
unsigned hm_curl_loop_n_fds(const struct hm_curl_loop *cl);
bool hm_curl_loop_timer_armed(const struct hm_curl_loop *cl);

#endif
