/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A thin, checked HTTP client for the Engine API over a Unix socket, driven
 * by the scheduler's loop: one libcurl multi handle whose sockets and timer
 * are registered on the hm_loop (CURLMOPT_SOCKETFUNCTION/TIMERFUNCTION), one
 * easy handle per request (struct eng_request).  Nothing here blocks, except
 * eng_http_perform_blocking(), which is only for set-up before the loop runs
 * and teardown after it ended.
 *
 * A request completes exactly once through its done callback (unless it was
 * cancelled with eng_request_cancel(), which never calls back), never from
 * inside eng_request_submit(); the request is freed right after done
 * returns.  Callbacks may submit and cancel other requests; changes to the
 * multi handle requested from inside libcurl's own callbacks (e.g. a log
 * write) are deferred until libcurl has returned.
 */
#ifndef HM_ENGINE_HTTP_H
#define HM_ENGINE_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/error.h"
#include "lib/strbuf.h"

struct hm_loop;
struct eng_http;
struct eng_request;

/*
 * Limits (each capped by $HM_ENGINE_TIMEOUT seconds when set, see
 * eng_timeout_cap_ms()):
 *   connect                         ENG_CONNECT_TIMEOUT_MS
 *   a request without a stream      its timeout_ms, default ENG_REQUEST_TIMEOUT_MS
 *   an upload                       no total (but $HM_ENGINE_TIMEOUT); fails when less
 *                                   than a byte a second moved for ENG_REQUEST_TIMEOUT_MS
 *   a stream (timeout_ms < 0)       its response headers within ENG_REQUEST_TIMEOUT_MS
 *                                   when it has on_data (attach, logs, pull); then none
 *   the watchdog                    while a request has been pending for ENG_WATCH_INTERVAL_MS
 *                                   (a stream, a wait, a long commit or upload, a removal on a
 *                                   wedged engine), GET /_ping every ENG_WATCH_INTERVAL_MS
 * A timeout reads "engine at SOCKET did not answer within N s".
 *
 * The liveness verdict: a ping that fails in transport (no answer within
 * ENG_PING_TIMEOUT_MS, a refused or reset connection) judges the engine
 * wedged or gone.  Every pending request then fails at once, and so does
 * every request submitted afterwards, without reaching the socket, all with
 * the ping's one line: "engine at S did not answer within 20.0 s (liveness
 * ping)" or "engine at S stopped answering (liveness ping: <reason>)".  The
 * watchdog goes on pinging every ENG_WATCH_INTERVAL_MS; the first ping that
 * gets any answer (an engine resumed or restarted) clears the verdict.
 *
 * eng_http_hurry() (the user's second signal) shortens both the interval and
 * the ping's limit to ENG_HURRY_PING_MS and pings at once: an engine that
 * answers is still waited for, one that does not is judged at once.
 */
#define ENG_CONNECT_TIMEOUT_MS 5000
#define ENG_REQUEST_TIMEOUT_MS 60000
#define ENG_PING_TIMEOUT_MS 20000
#define ENG_WATCH_INTERVAL_MS 10000
#define ENG_HURRY_PING_MS 2000
#define ENG_BODY_MAX (4u << 20) /* bytes kept of a non-streamed response */

struct eng_response {
        int curl_code;      /* CURLcode; 0 when a response arrived */
        long status;        /* HTTP status, 0 when none */
        int os_errno;       /* CURLINFO_OS_ERRNO on connection failures */
        struct strbuf body; /* non-streamed responses (capped at ENG_BODY_MAX) */
        char errbuf[256];   /* CURLOPT_ERRORBUFFER */
};

typedef void (*eng_done_fn)(struct eng_request *req, struct eng_response *resp, void *data);
/* Streamed response bytes; runs inside libcurl: return < 0 to abort the transfer. */
typedef int (*eng_data_fn)(void *data, const char *buf, size_t n);
/*
 * The final response's status line and headers have all arrived (the body
 * has not begun); runs inside libcurl, at most once per request.  Used to
 * order a request after an attach that the engine has accepted.
 */
typedef void (*eng_headers_fn)(void *data, long status);

struct eng_request_opts {
        const char *method;     /* "GET", "POST", "PUT", "DELETE" */
        const char *path;       /* "/containers/create?name=x": the API version prefix is added */
        bool raw_path;          /* path already carries its prefix ("/v4.3.1/libpod/...") */
        const char *json_body;  /* sent with Content-Type: application/json; NULL: no body */
        int upload_fd;          /* > 0: PUT this fd's bytes [0, upload_size) as application/x-tar */
        uint64_t upload_size;
        eng_data_fn on_data;    /* streamed body; NULL: collected into resp->body */
        eng_headers_fn on_headers; /* optional */
        long timeout_ms;        /* 0: ENG_REQUEST_TIMEOUT_MS; < 0: none (streams, waits) */
        eng_done_fn on_done;
        void *data;
};

/* $HM_ENGINE_TIMEOUT in ms (0: not set): the cap on every limit above. */
long eng_timeout_cap_ms(void);

int eng_http_new(struct hm_loop *loop, const char *socket_path, const char *api_prefix,
                 struct eng_http **ret, hm_error_t *err);
/* Abort and free every pending request (no callbacks) and the multi handle. */
void eng_http_free(struct eng_http *h);
const char *eng_http_socket(const struct eng_http *h);
const char *eng_http_prefix(const struct eng_http *h);
unsigned eng_http_n_pending(const struct eng_http *h);
/* The liveness verdict (see above) while it holds, else NULL. */
const char *eng_http_dead(const struct eng_http *h);
/* Stop waiting for an engine that does not answer (see above); idempotent. */
void eng_http_hurry(struct eng_http *h);

int eng_request_submit(struct eng_http *h, const struct eng_request_opts *o,
                       struct eng_request **ret, hm_error_t *err);
/* Abort a pending request; its done callback is never called.  NULL is ignored. */
void eng_request_cancel(struct eng_request *req);

/* True for 2xx. */
bool eng_response_ok(const struct eng_response *resp);
/*
 * One line describing a failed response (heap): the engine's "message"
 * (Docker {"message"}, Podman {"cause","message"}), else the first line of
 * the body, else "HTTP <code>"; or the transport failure ("connection
 * refused", "no such file or directory", "permission denied", curl's text).
 */
char *eng_response_error(const struct eng_response *resp);

/* Percent-encode a query value (heap). */
char *eng_escape(const char *s);

/*
 * Blocking request outside the loop (set-up and teardown only).  headers,
 * if not NULL, receives the raw response header lines.
 */
int eng_http_perform_blocking(const char *socket_path, const char *method, const char *url_path,
                              long timeout_ms, struct eng_response *resp, struct strbuf *headers,
                              hm_error_t *err);
void eng_response_release(struct eng_response *resp);

#endif
