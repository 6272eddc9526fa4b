/* SPDX-License-Identifier: Apache-2.0 */
#include "engine/http.h"

#include <curl/curl.h>
#include <yajl/yajl_tree.h>

#include "lib/curl-loop.h"
#include "lib/handles.h"
#include "lib/util.h"
#include "sched/loop.h"

struct eng_request {
        struct eng_http *h;
        CURL *easy;
        struct curl_slist *headers;
        char *url;
        char *body;
        struct eng_response resp;
        eng_data_fn on_data;
        eng_headers_fn on_headers;
        eng_done_fn on_done;
        void *data;
        int upload_fd;
        uint64_t upload_size, upload_off;
        long timeout_ms;      /* the total limit given to libcurl, 0: none */
        bool streamed;        /* no total limit: the watchdog's ping stands in for it */
        int64_t t_submit;     /* now_ms() at submission: the watchdog pings for requests this old */
        bool got_headers;     /* the final response's headers arrived */
        uint64_t head_timer;  /* streamed with a body: deadline for the response headers */
        char *doom;           /* failed from outside libcurl (deadline, watchdog): completed by sweep_doomed */
        bool added;    /* in the multi handle */
        bool canceled; /* cancelled while libcurl was running: freed by the next sweep */
        struct eng_request *prev, *next;
};

struct eng_http {
        struct hm_loop *loop;
        struct hm_curl_loop *cl; /* the multi handle on the loop */
        char *socket_path;
        char *prefix;
        struct eng_request *reqs;
        unsigned n_reqs;
        uint64_t watch_timer;     /* next look at the pending requests' age (or the next probe) */
        struct eng_request *ping; /* the watchdog's ping in flight */
        char *dead;               /* the liveness verdict: every request fails with it */
        bool hurry;               /* eng_http_hurry(): short ping interval and limit */
        uint64_t sweep_timer;     /* completes the requests failed at submission */
};

#define SETOPT(e, opt, val)                                                                    \
        do {                                                                                   \
                CURLcode rc_ = curl_easy_setopt((e), (opt), (val));                            \
                if (rc_ != CURLE_OK)                                                           \
                        return hm_error_set(err, EINVAL, "curl option %s: %s", #opt,           \
                                            curl_easy_strerror(rc_));                          \
        } while (0)

static void sweep_doomed(struct eng_http *h);
static void watch_arm(struct eng_http *h, int64_t ms);
static void doom(struct eng_request *req, const char *msg);
static void on_sweep_timer(struct hm_loop *loop, uint64_t id, void *data);
static void on_head_deadline(struct hm_loop *loop, uint64_t id, void *data);

/* ---------------------------------------------------------------- timeouts */

/*
 * $HM_ENGINE_TIMEOUT (seconds, e.g. "2" or "0.5") caps every limit below:
 * for slow engines the other way round is not needed (the defaults are
 * generous), tests use it to see a hang become an error in a second.
 */
long eng_timeout_cap_ms(void)
{
        static long cap = -1;
        if (cap < 0) {
                const char *v = getenv("HM_ENGINE_TIMEOUT");
                char *end = NULL;
                double d = v && *v ? strtod(v, &end) : 0;
                /* not a positive number of seconds: no cap */
                cap = end && !*end && d > 0 && d < 1e6 ? (long) (d * 1000 + 0.5) : 0;
                if (cap == 0 && end && !*end && d > 0)
                        cap = 1;
        }
        return cap;
}

static long capped(long ms)
{
        long cap = eng_timeout_cap_ms();
        return cap > 0 && (ms <= 0 || ms > cap) ? cap : ms;
}

/* ---------------------------------------------------------------- responses */

void eng_response_release(struct eng_response *resp)
{
        strbuf_release(&resp->body);
}

bool eng_response_ok(const struct eng_response *resp)
{
        return resp->curl_code == CURLE_OK && resp->status >= 200 && resp->status < 300;
}

static char *transport_error(const struct eng_response *resp)
{
        if (resp->curl_code == CURLE_COULDNT_CONNECT && resp->os_errno) {
                switch (resp->os_errno) {
                case ENOENT:
                        return xstrdup("no such file");
                case ECONNREFUSED:
                        return xstrdup("connection refused");
                case EACCES:
                case EPERM:
                        return xstrdup("permission denied");
                default:
                        return xasprintf("cannot connect: %s", strerror(resp->os_errno));
                }
        }
        if (resp->curl_code == CURLE_OPERATION_TIMEDOUT)
                return str_has_prefix(resp->errbuf, "engine at ") ? xstrdup(resp->errbuf)
                                                                   : xasprintf("timed out (%s)", resp->errbuf[0] ? resp->errbuf : "no answer");
        if (resp->errbuf[0])
                return xasprintf("%s", resp->errbuf);
        return xstrdup(curl_easy_strerror((CURLcode) resp->curl_code));
}

static char *first_line(const char *s, size_t n)
{
        while (n > 0 && (*s == ' ' || *s == '\n' || *s == '\r'))
                s++, n--;
        size_t k = 0;
        while (k < n && s[k] != '\n' && s[k] != '\r')
                k++;
        if (k > 300)
                k = 300;
        return k ? xstrndup(s, k) : NULL;
}

char *eng_response_error(const struct eng_response *resp)
{
        if (resp->curl_code != CURLE_OK)
                return transport_error(resp);
        if (resp->body.len > 0 && resp->body.buf[0] == '{') {
                _cleanup_yajl_tree_ yajl_val v = yajl_tree_parse(resp->body.buf, NULL, 0);
                static const char *msg_path[] = { "message", NULL };
                yajl_val m = v ? yajl_tree_get(v, msg_path, yajl_t_string) : NULL;
                const char *ms = m ? YAJL_GET_STRING(m) : NULL;
                if (ms && ms[0]) {
                        char *s = first_line(ms, strlen(ms));
                        if (s)
                                return s;
                }
        }
        char *line = first_line(resp->body.buf, resp->body.len);
        if (line) {
                char *s = xasprintf("HTTP %ld: %s", resp->status, line);
                free(line);
                return s;
        }
        return xasprintf("HTTP %ld", resp->status);
}

char *eng_escape(const char *s)
{
        _cleanup_curl_free_ char *e = curl_easy_escape(NULL, s, 0);
        if (!e)
                abort();
        return xstrdup(e);
}

/* ---------------------------------------------------------------- easy handle set-up */

static size_t write_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
        struct eng_response *resp = userdata;
        size_t n = size * nmemb;
        size_t room = resp->body.len < ENG_BODY_MAX ? ENG_BODY_MAX - resp->body.len : 0;
        strbuf_add(&resp->body, ptr, n < room ? n : room);
        return n;
}

static size_t write_request(char *ptr, size_t size, size_t nmemb, void *userdata)
{
        struct eng_request *req = userdata;
        size_t n = size * nmemb;
        if (req->canceled)
                return n ? 0 : 1; /* anything but n aborts the transfer */
        if (!req->on_data)
                return write_body(ptr, size, nmemb, &req->resp);
        /* an error answer is a message for us, not stream data */
        long status = 0;
        if (curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK && status >= 300)
                return write_body(ptr, size, nmemb, &req->resp);
        if (req->on_data(req->data, ptr, n) < 0)
                return n ? 0 : 1;
        return n;
}

/* Header lines, one per call; the empty line ends a header block. */
static size_t header_request(char *ptr, size_t size, size_t nmemb, void *userdata)
{
        struct eng_request *req = userdata;
        size_t n = size * nmemb;
        if (req->canceled)
                return n ? 0 : 1;
        bool blank = (n == 2 && ptr[0] == '\r' && ptr[1] == '\n') || (n == 1 && ptr[0] == '\n');
        if (!blank)
                return n;
        long status = 0;
        if (curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &status) != CURLE_OK)
                return n;
        /* an interim block (100 Continue) is followed by the real one */
        if (status >= 100 && status < 200 && status != 101)
                return n;
        if (!req->got_headers) {
                req->got_headers = true;
                if (req->head_timer) {
                        hm_loop_del_timer(req->h->loop, req->head_timer);
                        req->head_timer = 0;
                }
        }
        if (!req->on_headers)
                return n;
        eng_headers_fn fn = req->on_headers;
        req->on_headers = NULL;
        fn(req->data, status);
        /* the callback may have cancelled this very request */
        return req->canceled ? (n ? 0 : 1) : n;
}

static size_t read_upload(char *buf, size_t size, size_t nitems, void *userdata)
{
        struct eng_request *req = userdata;
        if (req->canceled)
                return CURL_READFUNC_ABORT;
        uint64_t left = req->upload_size - req->upload_off;
        size_t want = size * nitems;
        if (left < want)
                want = (size_t) left;
        if (want == 0)
                return 0;
        ssize_t n;
        do
                n = pread(req->upload_fd, buf, want, (off_t) req->upload_off);
        while (n < 0 && errno == EINTR);
        if (n <= 0) /* the memfd is never shorter than its size: treat as an I/O error */
                return CURL_READFUNC_ABORT;
        req->upload_off += (uint64_t) n;
        return (size_t) n;
}

static int setup_common(CURL *e, const char *sock, const char *url, const char *method,
                        char *errbuf, long timeout_ms, hm_error_t *err)
{
        SETOPT(e, CURLOPT_UNIX_SOCKET_PATH, sock);
        SETOPT(e, CURLOPT_URL, url);
        SETOPT(e, CURLOPT_ERRORBUFFER, errbuf);
        SETOPT(e, CURLOPT_NOSIGNAL, 1L);
        SETOPT(e, CURLOPT_CONNECTTIMEOUT_MS, capped(ENG_CONNECT_TIMEOUT_MS));
        SETOPT(e, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? capped(timeout_ms) : 0L);
        SETOPT(e, CURLOPT_PROTOCOLS_STR, "http");
        if (strcmp(method, "GET") == 0)
                SETOPT(e, CURLOPT_HTTPGET, 1L);
        else if (strcmp(method, "POST") != 0 && strcmp(method, "PUT") != 0)
                SETOPT(e, CURLOPT_CUSTOMREQUEST, method);
        return 0;
}

static int setup_request(struct eng_request *req, const struct eng_request_opts *o, hm_error_t *err)
{
        struct eng_http *h = req->h;
        CURL *e = req->easy;
        long timeout = o->timeout_ms == 0 ? ENG_REQUEST_TIMEOUT_MS : o->timeout_ms;
        /*
         * An upload's length is the workspace's: bounded by progress (the low-speed
         * limit below), not by a total, unless $HM_ENGINE_TIMEOUT asks for one.
         * (libcurl judges the speed over its last seconds: a stall after a fast
         * start is seen a few seconds late.)
         */
        if (o->upload_fd > 0 && o->timeout_ms == 0)
                timeout = eng_timeout_cap_ms() > 0 ? eng_timeout_cap_ms() : -1;
        req->streamed = timeout < 0 && o->upload_fd <= 0;
        req->timeout_ms = timeout > 0 ? capped(timeout) : 0;
        int r = setup_common(e, h->socket_path, req->url, o->method, req->resp.errbuf, timeout, err);
        if (r < 0)
                return r;
        SETOPT(e, CURLOPT_PRIVATE, req);
        SETOPT(e, CURLOPT_WRITEFUNCTION, write_request);
        SETOPT(e, CURLOPT_WRITEDATA, req);
        SETOPT(e, CURLOPT_HEADERFUNCTION, header_request);
        SETOPT(e, CURLOPT_HEADERDATA, req);
        if (o->upload_fd > 0) {
                /* less than a byte a second for the request timeout: the engine stopped reading */
                SETOPT(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
                SETOPT(e, CURLOPT_LOW_SPEED_TIME, (capped(ENG_REQUEST_TIMEOUT_MS) + 999) / 1000);
        }

        /* libcurl adds "Expect: 100-continue" to large bodies; both engines handle it, but it costs a round trip */
        req->headers = curl_slist_append(req->headers, "Expect:");
        if (o->upload_fd > 0) {
                req->headers = curl_slist_append(req->headers, "Content-Type: application/x-tar");
                SETOPT(e, CURLOPT_UPLOAD, 1L);
                SETOPT(e, CURLOPT_READFUNCTION, read_upload);
                SETOPT(e, CURLOPT_READDATA, req);
                SETOPT(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t) o->upload_size);
                if (strcmp(o->method, "PUT") != 0)
                        SETOPT(e, CURLOPT_CUSTOMREQUEST, o->method);
        } else if (strcmp(o->method, "POST") == 0 || strcmp(o->method, "PUT") == 0) {
                /* Docker enforces application/json on JSON-body endpoints (engine-api.md §1) */
                if (o->json_body)
                        req->headers = curl_slist_append(req->headers, "Content-Type: application/json");
                req->body = xstrdup(o->json_body ? o->json_body : "");
                SETOPT(e, CURLOPT_POST, 1L);
                SETOPT(e, CURLOPT_POSTFIELDSIZE, (long) strlen(req->body));
                SETOPT(e, CURLOPT_POSTFIELDS, req->body);
                if (strcmp(o->method, "PUT") == 0)
                        SETOPT(e, CURLOPT_CUSTOMREQUEST, "PUT");
        }
        if (!req->headers)
                abort();
        SETOPT(e, CURLOPT_HTTPHEADER, req->headers);
        return 0;
}

/* ---------------------------------------------------------------- request list */

static void req_link(struct eng_http *h, struct eng_request *req)
{
        req->next = h->reqs;
        if (h->reqs)
                h->reqs->prev = req;
        h->reqs = req;
        h->n_reqs++;
}

static void req_free(struct eng_request *req)
{
        struct eng_http *h = req->h;
        if (req->added)
                hm_curl_loop_remove(h->cl, req->easy);
        if (req->prev)
                req->prev->next = req->next;
        else
                h->reqs = req->next;
        if (req->next)
                req->next->prev = req->prev;
        h->n_reqs--;
        if (req->head_timer)
                hm_loop_del_timer(h->loop, req->head_timer);
        if (h->ping == req)
                h->ping = NULL;
        free(req->doom);
        curl_easy_cleanup(req->easy);
        curl_slist_free_all(req->headers);
        free(req->url);
        free(req->body);
        eng_response_release(&req->resp);
        free(req);
}

static void req_freep(struct eng_request **req)
{
        if (*req)
                req_free(*req);
}

static int req_add(struct eng_request *req, hm_error_t *err)
{
        int r = hm_curl_loop_add(req->h->cl, req->easy, err);
        if (r < 0)
                return r;
        req->added = true;
        return 0;
}

/* probe: the watchdog's ping, which goes to the socket whatever the verdict */
static int submit_request(struct eng_http *h, const struct eng_request_opts *o, bool probe,
                          struct eng_request **ret, hm_error_t *err)
{
        _cleanup_(req_freep) struct eng_request *req = xzalloc(sizeof *req);
        req->h = h;
        req->t_submit = now_ms();
        req_link(h, req);
        strbuf_init(&req->resp.body, 0);
        req->easy = curl_easy_init();
        if (!req->easy)
                return hm_error_set(err, ENOMEM, "curl_easy_init failed");
        req->url = xasprintf("http://d%s%s", o->raw_path ? "" : h->prefix, o->path);
        req->on_data = o->on_data;
        req->on_headers = o->on_headers;
        req->on_done = o->on_done;
        req->data = o->data;
        req->upload_fd = o->upload_fd;
        req->upload_size = o->upload_size;
        int r = setup_request(req, o, err);
        if (r < 0)
                return r;
        if (h->dead && !probe) {
                /* judged wedged or gone: fail it from the loop, without waiting on the socket */
                doom(req, h->dead);
                if (!h->sweep_timer)
                        h->sweep_timer = hm_loop_add_timer(h->loop, 0, on_sweep_timer, h);
                if (ret)
                        *ret = req;
                TAKE_PTR(req);
                return 0;
        }
        if (req->streamed && req->on_data)
                /* a stream answers with its headers at once (a wait may not: Podman's come at the exit) */
                req->head_timer = hm_loop_add_timer(h->loop, capped(ENG_REQUEST_TIMEOUT_MS), on_head_deadline, req);
        if (!probe)
                watch_arm(h, -1);
        /* inside libcurl's callbacks the multi handle must not change: after_events adds it */
        if (!hm_curl_loop_inside(h->cl)) {
                r = req_add(req, err);
                if (r < 0)
                        return r;
        }
        if (ret)
                *ret = req;
        TAKE_PTR(req);
        return 0;
}

int eng_request_submit(struct eng_http *h, const struct eng_request_opts *o,
                       struct eng_request **ret, hm_error_t *err)
{
        return submit_request(h, o, false, ret, err);
}

void eng_request_cancel(struct eng_request *req)
{
        if (!req)
                return;
        if (hm_curl_loop_inside(req->h->cl))
                req->canceled = true;
        else
                req_free(req);
}

/* ---------------------------------------------------------------- failures from outside libcurl */

/* Fail a pending request with msg (the text of its error); completed by sweep_doomed(). */
static void doom(struct eng_request *req, const char *msg)
{
        if (req->canceled || req->doom)
                return;
        req->doom = xstrdup(msg);
}

/*
 * Complete every doomed request: its done callback sees a transport failure
 * with the doom text.  Callbacks may cancel or submit other requests, so the
 * scan starts over after each.  Never inside libcurl's callbacks.
 */
static void sweep_doomed(struct eng_http *h)
{
        if (hm_curl_loop_inside(h->cl))
                return;
        for (bool again = true; again;) {
                again = false;
                for (struct eng_request *req = h->reqs; req; req = req->next) {
                        if (!req->doom || req->canceled)
                                continue;
                        if (req->added) {
                                hm_curl_loop_remove(h->cl, req->easy);
                                req->added = false;
                        }
                        struct eng_response *resp = &req->resp;
                        resp->curl_code = CURLE_OPERATION_TIMEDOUT;
                        snprintf(resp->errbuf, sizeof resp->errbuf, "%s", req->doom);
                        if (req->on_done)
                                req->on_done(req, resp, req->data);
                        req_free(req);
                        again = true;
                        break;
                }
        }
}

static void on_head_deadline(struct hm_loop *loop, uint64_t id, void *data)
{
        struct eng_request *req = data;
        struct eng_http *h = req->h;
        req->head_timer = 0;
        if (req->got_headers)
                return;
        _cleanup_free_ char *m = xasprintf("engine at %s did not answer within %.1f s", h->socket_path,
                                           (double) capped(ENG_REQUEST_TIMEOUT_MS) / 1000.0);
        doom(req, m);
        sweep_doomed(h);
}

static void on_sweep_timer(struct hm_loop *loop, uint64_t id, void *data)
{
        struct eng_http *h = data;
        h->sweep_timer = 0;
        sweep_doomed(h);
}

/*
 * The watchdog: a wait or an output stream may rightly be silent for hours,
 * and a commit or an upload may rightly take minutes, so a request that has
 * been pending for ENG_WATCH_INTERVAL_MS has the engine pinged, every
 * interval, on a connection of its own.  A ping that fails in transport (no
 * answer within ENG_PING_TIMEOUT_MS, connection refused, reset) is the
 * verdict: the daemon is wedged, gone or restarted, so its streams will never
 * end by themselves, and the requests that follow (kill, remove, image
 * drops) would each wait out their own limit on it.  All of them fail at once
 * with the ping's line.  An HTTP error is an answer: the daemon lives.
 *
 * The verdict holds until a ping gets an answer, as a gRPC channel in
 * TRANSIENT_FAILURE fails its calls at once until it reconnects; while it
 * holds, the watchdog pings every interval even with nothing pending.
 */
static long watch_interval(const struct eng_http *h)
{
        return capped(h->hurry ? ENG_HURRY_PING_MS : ENG_WATCH_INTERVAL_MS);
}

/* The oldest submission among the requests the watchdog guards, -1 if none. */
static int64_t oldest_pending(const struct eng_http *h)
{
        int64_t t = -1;
        for (const struct eng_request *req = h->reqs; req; req = req->next)
                if (req != h->ping && !req->canceled && !req->doom && (t < 0 || req->t_submit < t))
                        t = req->t_submit;
        return t;
}

static void on_ping(struct eng_request *req, struct eng_response *resp, void *data)
{
        struct eng_http *h = data;
        h->ping = NULL;
        if (resp->curl_code == CURLE_OK) {
                free(h->dead); /* any answer: the engine lives (again) */
                h->dead = NULL;
        } else if (!h->dead) {
                _cleanup_free_ char *why = eng_response_error(resp);
                h->dead = str_has_prefix(why, "engine at ")
                                  ? xasprintf("%s (liveness ping)", why)
                                  : xasprintf("engine at %s stopped answering (liveness ping: %s)", h->socket_path, why);
                for (struct eng_request *r = h->reqs; r; r = r->next)
                        if (r != req)
                                doom(r, h->dead);
                /* swept by after_events once this callback returns */
        }
        watch_arm(h, -1);
}

static void ping_now(struct eng_http *h)
{
        struct eng_request_opts o = { .method = "GET", .path = "/_ping", .raw_path = true,
                                      .timeout_ms = h->hurry ? ENG_HURRY_PING_MS : ENG_PING_TIMEOUT_MS,
                                      .on_done = on_ping, .data = h };
        hm_error_t err = NULL;
        if (submit_request(h, &o, true, &h->ping, &err) < 0) {
                hm_error_release(&err);
                watch_arm(h, -1);
        }
}

static void on_watch(struct hm_loop *loop, uint64_t id, void *data)
{
        struct eng_http *h = data;
        h->watch_timer = 0;
        if (h->ping)
                return; /* on_ping arms the next */
        int64_t oldest = oldest_pending(h);
        int64_t left = oldest < 0 ? 0 : oldest + watch_interval(h) - now_ms();
        if (h->dead || (oldest >= 0 && left <= 0))
                ping_now(h);
        else
                watch_arm(h, left);
}

/* The next look in ms (< 0: the interval), unless one is due or nothing needs one. */
static void watch_arm(struct eng_http *h, int64_t ms)
{
        if (h->watch_timer || h->ping || (!h->dead && oldest_pending(h) < 0))
                return;
        h->watch_timer = hm_loop_add_timer(h->loop, ms < 0 ? watch_interval(h) : ms, on_watch, h);
}

void eng_http_hurry(struct eng_http *h)
{
        if (h->hurry)
                return;
        h->hurry = true;
        if (h->dead)
                return; /* every request fails at once already */
        /* a ping in flight may have most of its ENG_PING_TIMEOUT_MS ahead: ask again, briefly */
        if (h->ping) {
                eng_request_cancel(h->ping);
                h->ping = NULL;
        }
        if (h->watch_timer) {
                hm_loop_del_timer(h->loop, h->watch_timer);
                h->watch_timer = 0;
        }
        if (oldest_pending(h) >= 0)
                ping_now(h);
}

/* ---------------------------------------------------------------- loop integration */

/* A transfer ended (hm_curl_done_fn). */
static void complete(CURL *easy, void *priv, CURLcode result, void *data)
{
        struct eng_http *h = data;
        struct eng_request *req = priv;
        if (!req)
                return;
        hm_curl_loop_remove(h->cl, req->easy);
        req->added = false;
        if (req->canceled) {
                req_free(req);
                return;
        }
        struct eng_response *resp = &req->resp;
        resp->curl_code = result;
        long v = 0;
        if (curl_easy_getinfo(req->easy, CURLINFO_RESPONSE_CODE, &v) == CURLE_OK)
                resp->status = v;
        v = 0;
        if (resp->curl_code != CURLE_OK && curl_easy_getinfo(req->easy, CURLINFO_OS_ERRNO, &v) == CURLE_OK)
                resp->os_errno = (int) v;
        if (resp->curl_code == CURLE_OPERATION_TIMEDOUT) {
                if (req->timeout_ms > 0 && !(req->upload_fd > 0))
                        snprintf(resp->errbuf, sizeof resp->errbuf, "engine at %s did not answer within %.1f s",
                                 h->socket_path, (double) req->timeout_ms / 1000.0);
                else
                        snprintf(resp->errbuf, sizeof resp->errbuf, "engine at %s stopped reading or answering for %ld s",
                                 h->socket_path, (capped(ENG_REQUEST_TIMEOUT_MS) + 999) / 1000);
        }
        /* a response cut short (daemon died mid-body) is a failure even with a status */
        if (resp->curl_code != CURLE_OK && resp->curl_code != CURLE_OPERATION_TIMEDOUT) {
                /* say whose connection failed: "the engine at X stopped answering" beats a bare curl error */
                _cleanup_free_ char *m = xasprintf("engine at %s stopped answering (%s)", h->socket_path,
                                                   resp->errbuf[0] ? resp->errbuf
                                                                   : curl_easy_strerror((CURLcode) resp->curl_code));
                size_t l = strlen(m) < sizeof resp->errbuf ? strlen(m) : sizeof resp->errbuf - 1;
                memcpy(resp->errbuf, m, l);
                resp->errbuf[l] = 0;
        }
        if (req->on_done)
                req->on_done(req, resp, req->data);
        req_free(req);
}

/* After each round of libcurl events (hm_curl_idle_fn): the changes deferred from inside libcurl's callbacks. */
static void after_events(void *data)
{
        struct eng_http *h = data;
        bool again = true;
        while (again) {
                again = false;
                for (struct eng_request *req = h->reqs; req; req = req->next) {
                        if (req->canceled) {
                                req_free(req);
                                again = true;
                                break;
                        }
                        if (!req->added && !req->doom) {
                                hm_error_t err = NULL;
                                if (req_add(req, &err) < 0) {
                                        /* report it as a transport failure of that request */
                                        snprintf(req->resp.errbuf, sizeof req->resp.errbuf, "%s", err->msg);
                                        hm_error_release(&err);
                                        req->resp.curl_code = CURLE_FAILED_INIT;
                                        if (req->on_done)
                                                req->on_done(req, &req->resp, req->data);
                                        req_free(req);
                                }
                                again = true;
                                break;
                        }
                }
        }
        sweep_doomed(h);
}

/* ---------------------------------------------------------------- the client */

int eng_http_new(struct hm_loop *loop, const char *socket_path, const char *api_prefix,
                 struct eng_http **ret, hm_error_t *err)
{
        _cleanup_free_ struct eng_http *h = xzalloc(sizeof *h);
        h->loop = loop;
        int r = hm_curl_loop_new(loop, complete, after_events, h, &h->cl, err);
        if (r < 0)
                return r;
        h->socket_path = xstrdup(socket_path);
        h->prefix = xstrdup(api_prefix ? api_prefix : "");
        *ret = TAKE_PTR(h);
        return 0;
}

void eng_http_free(struct eng_http *h)
{
        if (!h)
                return;
        while (h->reqs)
                req_free(h->reqs);
        if (h->watch_timer)
                hm_loop_del_timer(h->loop, h->watch_timer);
        if (h->sweep_timer)
                hm_loop_del_timer(h->loop, h->sweep_timer);
        hm_curl_loop_free(h->cl);
        free(h->dead);
        free(h->socket_path);
        free(h->prefix);
        free(h);
}

const char *eng_http_socket(const struct eng_http *h) { return h->socket_path; }
const char *eng_http_prefix(const struct eng_http *h) { return h->prefix; }
unsigned eng_http_n_pending(const struct eng_http *h) { return h->n_reqs; }
const char *eng_http_dead(const struct eng_http *h) { return h->dead; }

/* ---------------------------------------------------------------- blocking helper */

static size_t write_headers(char *ptr, size_t size, size_t nmemb, void *userdata)
{
        strbuf_add(userdata, ptr, size * nmemb);
        return size * nmemb;
}

int eng_http_perform_blocking(const char *socket_path, const char *method, const char *url_path,
                              long timeout_ms, struct eng_response *resp, struct strbuf *headers,
                              hm_error_t *err)
{
        _cleanup_curl_easy_ CURL *e = curl_easy_init();
        if (!e)
                return hm_error_set(err, ENOMEM, "curl_easy_init failed");
        _cleanup_free_ char *url = xasprintf("http://d%s", url_path);
        strbuf_init(&resp->body, 0);
        int r = setup_common(e, socket_path, url, method, resp->errbuf, timeout_ms, err);
        if (r < 0)
                return r;
        SETOPT(e, CURLOPT_WRITEFUNCTION, write_body);
        SETOPT(e, CURLOPT_WRITEDATA, resp);
        if (headers) {
                SETOPT(e, CURLOPT_HEADERFUNCTION, write_headers);
                SETOPT(e, CURLOPT_HEADERDATA, headers);
        }
        if (strcmp(method, "POST") == 0) {
                SETOPT(e, CURLOPT_POST, 1L);
                SETOPT(e, CURLOPT_POSTFIELDSIZE, 0L);
                SETOPT(e, CURLOPT_POSTFIELDS, "");
        }
        resp->curl_code = curl_easy_perform(e);
        if (resp->curl_code == CURLE_OPERATION_TIMEDOUT)
                snprintf(resp->errbuf, sizeof resp->errbuf, "engine at %s did not answer within %.1f s", socket_path,
                         (double) (timeout_ms > 0 ? capped(timeout_ms) : capped(ENG_CONNECT_TIMEOUT_MS)) / 1000.0);
        long v = 0;
        if (curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &v) == CURLE_OK)
                resp->status = v;
        v = 0;
        if (resp->curl_code != CURLE_OK && curl_easy_getinfo(e, CURLINFO_OS_ERRNO, &v) == CURLE_OK)
                resp->os_errno = (int) v;
        return 0;
}
