/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The engine runner's step state machine (engine-api.md §13, our portable
 * sequence rather than upstream's sleep-infinity + exec):
 *
 *   [cache] GET image/json of the cache tag -> hit: done, nothing runs
 *   image   parent snapshot, or inspect the user image (pull if missing)
 *   create  /bin/sh -c <cmd>, Init, labels hm.run/hm.owner/hm.step
 *   upload  PUT the workspace tar at / (entries live under workspace/)
 *   attach  POST attach?stream=1 on its own connection, demuxed to on_log
 *   start   once the attach answered; then wait, while the attach streams
 *   commit  on exit 0: localhost/<cache tag> or localhost/hm-ephemeral:<run>-<i>
 *   remove  always, once a container exists
 *
 * Every stage is one request whose completion callback starts the next, so
 * the runner never blocks.  The first failure is kept as "<stage>: <engine
 * message>"; the container is still removed and a removal failure is
 * appended to that message.
 */
#include <ctype.h>
#include <curl/curl.h>
#include <yajl/yajl_tree.h>

#include "engine/demux.h"
#include "engine/engine.h"
#include "engine/http.h"
#include "engine/internal.h"
#include "lib/handles.h"
#include "lib/strbuf.h"
#include "lib/util.h"
#include "oci/owner.h"
#include "pipeline/cache.h"
#include "pipeline/plan.h"
#include "pipeline/workspace.h"
#include "sched/loop.h"
#include "sched/runner.h"

#define COMMIT_TIMEOUT_MS 600000
/*
 * Output comes from an attach opened before start (engine-api.md §5.4): a
 * live stream of the container's stdout/stderr that ends at the exit.
 * Measured here (tests/unit/test-engine-live.c): Podman 4.3.1's
 * logs?follow drops lines of fast output (`seq 1 20000` gave 3184 3185
 * 3186 3337 3349 ...), while its attach was byte-exact; it also ends the
 * old workaround of re-reading the whole log every 250+ ms (quadratic: 64
 * MiB took 27.9 s, now 1.8 s; 256 MiB 5.3 s).  On Docker, attach beat
 * logs-follow plus a final plain read too (64 MiB: 13.3 s -> 3.8 s; 256
 * MiB 13.4 s).  A consumer that reads slowly slows the container down
 * instead of losing bytes, on both (curl --limit-rate).  Nothing is
 * buffered: frames are passed on as they arrive.  The price: Podman answers
 * the attach of a created container only after ~190 ms (164-245 ms over a
 * raw socket; Docker 0-9 ms), added to every step before start.
 *
 * If the attach breaks, or has not ended LOGS_GRACE_MS after wait
 * answered, one plain read of the log fills the gap (catchup_read).
 */
#define LOGS_GRACE_MS 10000
#define DEFAULT_IMAGE "ubuntu:24.04"

enum pull_policy { PULL_MISSING, PULL_ALWAYS, PULL_NEVER };

enum stage { ST_CACHE, ST_INSPECT, ST_PULL, ST_CREATE, ST_UPLOAD, ST_ATTACH, ST_START, ST_RUN, ST_COMMIT, ST_REMOVE, ST_DONE };

struct eng_step;
struct eng_drop;

struct eng_runner {
        struct hm_runner base; /* first: the scheduler sees only this */
        struct eng_http *http;
        enum eng_kind kind;
        char *version;
        char *network;
        enum pull_policy pull;
        char *owner;  /* oci/owner.h label */
        bool no_init; /* Podman without an init binary: create without Init */
        struct step_limits limits;
        char *security_opt;  /* "seccomp=..." or NULL (the engine's default profile) */
        char **cap_add, **cap_drop; /* "CAP_NET_RAW", "ALL" */
        char *user;          /* "UID:GID" or NULL */
        bool readonly, tmpfs_tmp;
        struct eng_step *steps;
        struct eng_drop *drops;
        char *run_id; /* of the steps started (one run per runner): its leftovers are swept at each drop */
};

struct eng_step {
        struct eng_runner *r;
        struct step_exec *x;
        enum stage stage;
        char *name;  /* container name */
        char *image; /* what the container boots from */
        char *id;    /* container id once created */
        struct eng_request *req; /* the stage's request */
        struct eng_request *logs, *wait, *kill; /* logs: the attach, or the catch-up read */
        bool logs_done, wait_done, have_exit;
        int exit_code;
        bool cancel, force;
        char *error;    /* first failure */
        char *snapshot; /* committed image */
        char *old_image; /* image id the cache tag named before this commit, if any */
        int lock_fd;     /* x->commit_lock, held from the old-image lookup until on_done returned */
        uint64_t commit_timer; /* lock retry, or the test pause before the commit */
        bool tag_checked;      /* the old-image lookup answered */
        bool cache_hit;
        struct eng_demux demux;
        uint64_t delivered[3]; /* log bytes passed on, per stream */
        uint64_t skip[3];      /* catch-up read: bytes still to skip, per stream */
        bool catchup;          /* the plain log read after wait replaced the attach */
        struct strbuf line; /* partial pull progress line */
        char *pull_error;
        uint64_t timer;
        struct eng_step *prev, *next;
};

static void do_image(struct eng_step *s);
static void do_create(struct eng_step *s);
static void do_attach(struct eng_step *s);
static void run_stop(struct eng_step *s);
static void do_remove(struct eng_step *s);
static void do_commit(struct eng_step *s);
static void finish(struct eng_step *s);
static void on_upload(struct eng_request *req, struct eng_response *resp, void *data);

/* ---------------------------------------------------------------- helpers */

static void notice(struct eng_step *s, const char *kind, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void notice(struct eng_step *s, const char *kind, const char *fmt, ...)
{
        if (!s->x->on_notice)
                return;
        va_list ap;
        va_start(ap, fmt);
        _cleanup_free_ char *m = NULL;
        if (vasprintf(&m, fmt, ap) < 0)
                abort();
        va_end(ap);
        s->x->on_notice(s->x, kind, m);
}

static void warn(struct eng_runner *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void warn(struct eng_runner *r, const char *fmt, ...)
{
        if (!r->base.warn)
                return;
        va_list ap;
        va_start(ap, fmt);
        _cleanup_free_ char *m = NULL;
        if (vasprintf(&m, fmt, ap) < 0)
                abort();
        va_end(ap);
        r->base.warn(r->base.warn_data, m);
}

/*
 * One line per container the run leaves behind (never silently): its owner
 * label makes it hm reap's once this process is gone.
 */
static void report_left(struct eng_runner *r, const char *name, const char *id, const char *why)
{
        if (id && strcmp(id, name) != 0)
                warn(r, "container '%s' (%.12s) not removed: %s; left for hm reap", name, id, why);
        else
                warn(r, "container '%s' not removed: %s; left for hm reap", name, why);
}

/* Record the first failure and go on to removal (or straight to done). */
static void fail(struct eng_step *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct eng_step *s, const char *fmt, ...)
{
        if (!s->error) {
                va_list ap;
                va_start(ap, fmt);
                if (vasprintf(&s->error, fmt, ap) < 0)
                        abort();
                va_end(ap);
        }
        if (s->id && s->stage != ST_REMOVE)
                do_remove(s);
        else if (s->stage != ST_REMOVE)
                finish(s);
}

static void fail_resp(struct eng_step *s, const struct eng_response *resp, const char *what)
{
        _cleanup_free_ char *m = eng_response_error(resp);
        fail(s, "%s: %s", what, m);
}

static bool submit(struct eng_step *s, struct eng_request **slot, const struct eng_request_opts *o,
                   const char *what)
{
        hm_error_t err = NULL;
        struct eng_request *req = NULL;
        if (eng_request_submit(s->r->http, o, &req, &err) < 0) {
                fail(s, "%s: %s", what, err->msg);
                hm_error_release(&err);
                return false;
        }
        *slot = req;
        return true;
}

static char *json_string(const struct strbuf *body, const char *key)
{
        _cleanup_yajl_tree_ yajl_val v = yajl_tree_parse(body->buf, NULL, 0);
        const char *path[] = { key, NULL };
        yajl_val s = v ? yajl_tree_get(v, path, yajl_t_string) : NULL;
        return s ? xstrdup(YAJL_GET_STRING(s)) : NULL;
}

static char *local_ref(const char *name)
{
        return str_has_prefix(name, "localhost/") ? xstrdup(name) : xasprintf("localhost/%s", name);
}

/* Split "repo:tag" at the tag's colon (the one after the last '/'). */
static void split_ref(const char *ref, char **ret_repo, char **ret_tag)
{
        const char *slash = strrchr(ref, '/');
        const char *colon = strrchr(slash ? slash : ref, ':');
        if (strchr(ref, '@') || !colon) {
                *ret_repo = xstrdup(ref);
                *ret_tag = xstrdup(strchr(ref, '@') ? "" : "latest");
                return;
        }
        *ret_repo = xstrndup(ref, (size_t) (colon - ref));
        *ret_tag = xstrdup(colon + 1);
}

/* ---------------------------------------------------------------- cache and image */

static void on_cache(struct eng_request *req, struct eng_response *resp, void *data)
{
        struct eng_step *s = data;
        s->req = NULL;
        if (resp->curl_code == CURLE_OK && resp->status == 404) {
                do_image(s);
                return;
        }
        if (!eng_response_ok(resp)) {
                fail_resp(s, resp, "cache lookup");
                return;
        }
        s->cache_hit = true;
        s->have_exit = true;
        s->exit_code = 0;
        s->snapshot = local_ref(s->x->cache_tag);
        finish(s);
}

static void do_cache(struct eng_step *s)
{
        s->stage = ST_CACHE;
        _cleanup_free_ char *ref = local_ref(s->x->cache_tag);
        _cleanup_free_ char *path = xasprintf("/images/%s/json", ref);
        struct eng_request_opts o = { .method = "GET", .path = path, .on_done = on_cache, .data = s };
        submit(s, &s->req, &o, "cache lookup");
}

static void on_pull_line(struct eng_step *s, const char *line)
{
        _cleanup_yajl_tree_ yajl_val v = yajl_tree_parse(line, NULL, 0);
        if (!v || !YAJL_IS_OBJECT(v))
                return;
        static const char *err_path[] = { "error", NULL };
        static const char *detail_path[] = { "errorDetail", "message", NULL };
        yajl_val e = yajl_tree_get(v, detail_path, yajl_t_string);
        if (!e)
                e = yajl_tree_get(v, err_path, yajl_t_string);
        if (e || yajl_tree_get(v, err_path, yajl_t_any)) {
                if (!s->pull_error)
                        s->pull_error = xstrdup(e ? YAJL_GET_STRING(e) : "error in pull stream");
                return;
        }
        static const char *st[] = { "status", NULL }, *id[] = { "id", NULL }, *pr[] = { "progress", NULL };
        yajl_val vs = yajl_tree_get(v, st, yajl_t_string);
        yajl_val vi = yajl_tree_get(v, id, yajl_t_string);
        yajl_val vp = yajl_tree_get(v, pr, yajl_t_string);
        struct strbuf m = STRBUF_INIT;
        yajl_val parts[] = { vs, vi, vp };
        for (size_t i = 0; i < ARRAY_SIZE(parts); i++) {
                if (!parts[i] || !YAJL_GET_STRING(parts[i])[0])
                        continue;
                if (m.len)
                        strbuf_addch(&m, ' ');
                strbuf_addstr(&m, YAJL_GET_STRING(parts[i]));
        }
        if (m.len)
                notice(s, "pull", "%s", m.buf);
        strbuf_release(&m);
}

static int on_pull_data(void *data, const char *buf, size_t n)
{
        struct eng_step *s = data;
        strbuf_add(&s->line, buf, n);
        char *nl;
        while ((nl = memchr(s->line.buf, '\n', s->line.len))) {
                *nl = '\0';
                on_pull_line(s, s->line.buf);
                strbuf_consume(&s->line, (size_t) (nl - s->line.buf) + 1);
        }
        if (s->line.len > (1u << 20)) /* no sane progress line is this long */
                strbuf_reset(&s->line);
        return 0;
}

static void on_pull(struct eng_request *req, struct eng_response *resp, void *data)
{
        struct eng_step *s = data;
        s->req = NULL;
        if (s->line.len)
                on_pull_line(s, s->line.buf);
        if (!eng_response_ok(resp)) {
                _cleanup_free_ char *m = eng_response_error(resp);
                fail(s, "pull image '%s': %s", s->image, m);
        } else if (s->pull_error) {
                /* Docker reports pull failures inside a 200 stream */
                fail(s, "pull image '%s': %s", s->image, s->pull_error);
        } else {
                do_create(s);
        }
}

static void do_pull(struct eng_step *s)
{
        s->stage = ST_PULL;
        _cleanup_free_ char *repo = NULL, *tag = NULL;
        split_ref(s->image, &repo, &tag);
        _cleanup_free_ char *erepo = eng_escape(repo), *etag = eng_escape(tag);
        _cleanup_free_ char *path = xasprintf("/images/create?fromImage=%s%s%s", erepo, tag[0] ? "&tag=" : "", etag);
        notice(s, "pull", "pulling %s", s->image);
        struct eng_request_opts o = { .method = "POST", .path = path, .on_data = on_pull_data,
                                      .timeout_ms = -1, .on_done = on_pull, .data = s };
        submit(s, &s->req, &o, "pull image");
}

static void on_inspect(struct eng_request *req, struct eng_response *resp, void *data)
{
        struct eng_step *s = data;
        s->req = NULL;
        if (eng_response_ok(resp)) {
                do_create(s);
        } else if (resp->curl_code == CURLE_OK && resp->status == 404) {
                if (s->r->pull == PULL_NEVER)
                        fail(s, "image '%s' not found (--pull=never)", s->image);
                else
                        do_pull(s);
        } else {
                _cleanup_free_ char *m = eng_response_error(resp);
                fail(s, "inspect image '%s': %s", s->image, m);
        }
}

static void do_image(struct eng_step *s)
{
        const struct step_exec *x = s->x;
        if (x->parent_snapshot) {
                s->image = xstrdup(x->parent_snapshot);
                do_create(s);
                return;
        }
        s->image = xstrdup(x->image ? x->image : x->step && x->step->image ? x->step->image : DEFAULT_IMAGE);
        if (s->r->pull == PULL_ALWAYS) {
                do_pull(s);
                return;
        }
        s->stage = ST_INSPECT;
        /* user images are looked up as named: Docker stores short names as given, Podman resolves them */
        _cleanup_free_ char *path = xasprintf("/images/%s/json", s->image);
        struct eng_request_opts o = { .method = "GET", .path = path, .on_done = on_inspect, .data = s };
        submit(s, &s->req, &o, "inspect image");
}

/* ---------------------------------------------------------------- create, upload, start */

/* HostConfig members for the run's limits; nothing for a limit of 0. */
static void add_limits(struct strbuf *b, const struct step_limits *l)
{
        if (l->memory_bytes > 0)
                /* MemorySwap = Memory: the limit holds on hosts with swap too (engines default to twice) */
                strbuf_addf(b, ",\"Memory\":%lld,\"MemorySwap\":%lld", (long long) l->memory_bytes,
                            (long long) l->memory_bytes);
        if (l->pids > 0)
                strbuf_addf(b, ",\"PidsLimit\":%lld", (long long) l->pids);
        if (l->millicpus > 0)
                strbuf_addf(b, ",\"NanoCpus\":%lld", (long long) l->millicpus * 1000000LL);
}

static void add_str_array(struct strbuf *b, const char *key, char *const *v)
{
        if (!v || !*v)
                return;
        strbuf_addf(b, ",\"%s\":[", key);
        for (size_t i = 0; v[i]; i++) {
                if (i)
                        strbuf_addch(b, ',');
                strbuf_add_json_str(b, v[i]);
        }
        strbuf_addch(b, ']');
}

/* HostConfig members for the sandbox flags (engine_options). */
static void add_sandbox(struct strbuf *b, const struct eng_runner *r)
{
        add_str_array(b, "CapAdd", r->cap_add);
        add_str_array(b, "CapDrop", r->cap_drop);
        /* no_new_privs as on the ns runner (its default), and the seccomp choice */
        char *opts[] = { "no-new-privileges", r->security_opt, NULL };
        add_str_array(b, "SecurityOpt", opts);
        if (r->readonly)
                strbuf_addstr(b, ",\"ReadonlyRootfs\":true");
        if (r->tmpfs_tmp)
                /* exec: Docker's tmpfs default is noexec, the ns runner's is not */
                strbuf_addstr(b, ",\"Tmpfs\":{\"/tmp\":\"rw,nosuid,nodev,exec,mode=1777,size=65536k\"}");
}

static char *create_body(struct eng_step *s)
{
        const struct step_exec *x = s->x;
        struct strbuf b = STRBUF_INIT;
        strbuf_addstr(&b, "{\"Image\":");
        strbuf_add_json_str(&b, s->image);
        strbuf_addstr(&b, ",\"Entrypoint\":[\"/bin/sh\",\"-c\"],\"Cmd\":[");
        strbuf_add_json_str(&b, x->step->cmd ? x->step->cmd : "");
        strbuf_addstr(&b, "],\"Env\":[");
        for (size_t i = 0; x->env && x->env[i]; i++) {
                if (i)
                        strbuf_addch(&b, ',');
                strbuf_add_json_str(&b, x->env[i]);
        }
        strbuf_addstr(&b, "],\"WorkingDir\":\"/workspace\",");
        if (s->r->user) {
                strbuf_addstr(&b, "\"User\":");
                strbuf_add_json_str(&b, s->r->user);
                strbuf_addch(&b, ',');
        }
        strbuf_addstr(&b, "\"Labels\":{\"hm.run\":");
        strbuf_add_json_str(&b, x->run_id);
        strbuf_addstr(&b, ",\"hm.owner\":");
        strbuf_add_json_str(&b, s->r->owner);
        strbuf_addstr(&b, ",\"hm.step\":");
        strbuf_add_json_str(&b, x->step->key);
        strbuf_addstr(&b, "},\"AttachStdin\":false,\"AttachStdout\":false,\"AttachStderr\":false,"
                          "\"Tty\":false,\"OpenStdin\":false,\"HostConfig\":{");
        /* Init: a real PID 1 forwards SIGTERM to the shell, which as PID 1 would ignore it */
        strbuf_addstr(&b, s->r->no_init ? "\"Init\":false" : "\"Init\":true");
        if (s->r->network) {
                strbuf_addstr(&b, ",\"NetworkMode\":");
                strbuf_add_json_str(&b, s->r->network);
        }
        add_limits(&b, &s->r->limits);
        add_sandbox(&b, s->r);
        strbuf_addstr(&b, "}}");
        return strbuf_detach(&b, NULL);
}

static void on_create(struct eng_request *req, struct eng_response *resp, void *data)
{
        struct eng_step *s = data;
        s->req = NULL;
        if (!eng_response_ok(resp)) {
                _cleanup_free_ char *m = eng_response_error(resp);
                if (s->r->kind == ENG_PODMAN && !s->r->no_init && strstr(m, "container-init binary not found")) {
                        /* Podman 4.3.1's compat API ignores init_path: only catatonit will do */
                        s->r->no_init = true;
                        notice(s, "isolation", "podman has no container init (install catatonit): "
                                               "steps run without Init, so SIGTERM does not reach the shell");
                        if (!s->cancel) {
                                do_create(s);
                                return;
                        }
                }
                /* no answer: the engine may have made it all the same; try to remove it by name */
                if (resp->curl_code != CURLE_OK)
                        s->id = xstrdup(s->name);
                if (s->cancel && !s->id) {
                        finish(s);
                        return;
                }
                fail(s, "create container: %s", m);
                return;
        }
        s->id = json_string(&resp->body, "Id");
        if (!s->id) {
                s->id = xstrdup(s->name); /* it was made: remove it by name */
                fail(s, "create container: no Id in the answer");
                return;
        }
        if (s->cancel) {
                do_remove(s);
                return;
        }
        int ws_fd;
        uint64_t ws_size;
        hm_error_t e = NULL;
        if (s->x->ws && workspace_open(s->x->ws, &ws_fd, &ws_size, &e) < 0) {
                fail(s, "%s", e->msg);
                hm_error_release(&e);
                return;
        }
        /* an empty workspace needs no upload: WorkingDir makes /workspace */
        if (!s->x->ws || workspace_empty(s->x->ws)) {
                do_attach(s);
                return;
        }
        /*
         * Upload, then attach: run side by side, an upload failure could be
         * reported as the attach's (one engine connection stalls the other)
         * or lost behind a start.
         */
        s->stage = ST_UPLOAD;
        _cleanup_free_ char *path = xasprintf("/containers/%s/archive?path=/", s->id);
        struct eng_request_opts o = { .method = "PUT", .path = path, .upload_fd = ws_fd,
                                      .upload_size = ws_size, .on_done = on_upload, .data = s };
        submit(s, &s->req, &o, "upload workspace");
}

static void do_create(struct eng_step *s)
{
        s->stage = ST_CREATE;
        _cleanup_free_ char *body = create_body(s);
        _cleanup_free_ char *ename = eng_escape(s->name);
        _cleanup_free_ char *path = xasprintf("/containers/create?name=%s", ename);
        struct eng_request_opts o = { .method = "POST", .path = path, .json_body = body,
                                      .on_done = on_create, .data = s };
        submit(s, &s->req, &o, "create container");
}

static void do_start(struct eng_step *s);

static void on_upload(struct eng_request *req, struct eng_response *resp, void *data)
{
        struct eng_step *s = data;
        s->req = NULL;
        if (!eng_response_ok(resp))
                fail_resp(s, resp, "upload workspace");
        else if (s->cancel)
                do_remove(s);
        else
                do_attach(s);
}

/* ---------------------------------------------------------------- run: attach, start, wait */

static void on_kill(struct eng_request *req, struct eng_response *resp, void *data)
{
        struct eng_step *s = data;
        s->kill = NULL;
        /* "not running" (Docker 409, Podman 500) just means it already ended */
}

static void send_kill(struct eng_step *s)
{
        eng_request_cancel(s->kill);
        s->kill = NULL;
        _cleanup_free_ char *path = xasprintf("/containers/%s/kill?signal=%s", s->id, s->force ? "SIGKILL" : "SIGTERM");
        struct eng_request_opts o = { .method = "POST", .path = path, .on_done = on_kill, .data = s };
        hm_error_t err = NULL;
        if (eng_request_submit(s->r->http, &o, &s->kill, &err) < 0)
                hm_error_release(&err); /* the removal kills it anyway */
}

/* Drop the output and wait requests and the grace timer (before commit or removal). */
static void run_stop(struct eng_step *s)
{
        if (s->timer) {
                hm_loop_del_timer(s->r->base.loop, s->timer);
                s->timer = 0;
        }
        eng_request_cancel(s->logs);
        s->logs = NULL;
        eng_request_cancel(s->wait);
        s->wait = NULL;
}

static void after_run(struct eng_step *s)
{
        run_stop(s);
        if (s->error || s->cancel || !s->have_exit || s->exit_code != 0) {
                do_remove(s);
                return;
        }
        do_commit(s);
}

static void on_log_bytes(void *data, int stream, const char *buf, size_t n)
{
        struct eng_step *s = data;
        if (s->catchup) {
                uint64_t k = s->skip[stream] < n ? s->skip[stream] : n;
                s->skip[stream] -= k;
                buf += k;
                n -= (size_t) k;
                if (n == 0)
                        return;
        }
        s->delivered[stream] += n;
        if (s->x->on_log)
                s->x->on_log(s->x, stream, buf, n);
}

static int on_logs_data(void *data, const char *buf, size_t n)
{
        struct eng_step *s = data;
        eng_demux_feed(&s->demux, buf, n, on_log_bytes, s);
        return 0;
}

static void on_logs(struct eng_request *req, struct eng_response *resp, void *data);
static void maybe_after_run(struct eng_step *s);

/*
 * The attach stream broke, or did not end after the exit: one plain read
 * of the log (complete once wait has answered), skipping per stream the
 * bytes already passed on: the log holds the same bytes in the same order.
 */
static void catchup_read(struct eng_step *s)
{
        eng_request_cancel(s->logs);
        s->logs = NULL;
        s->catchup = true;
        memcpy(s->skip, s->delivered, sizeof s->skip);
        eng_demux_init(&s->demux);
        _cleanup_free_ char *path = xasprintf("/containers/%s/logs?stdout=1&stderr=1", s->id);
        struct eng_request_opts o = { .method = "GET", .path = path, .on_data = on_logs_data,
                                      .timeout_ms = -1, .on_done = on_logs, .data = s };
        hm_error_t err = NULL;
        if (eng_request_submit(s->r->http, &o, &s->logs, &err) < 0) {
                if (!s->error)
                        s->error = xasprintf("read logs: %s", err->msg);
                hm_error_release(&err);
        }
}

static void on_grace_timer(struct hm_loop *loop, uint64_t id, void *data)
{
        struct eng_step *s = data;
        s->timer = 0;
        catchup_read(s);
        maybe_after_run(s);
}

static void maybe_after_run(struct eng_step *s)
{
        if (s->stage != ST_RUN)
                return;
        if (s->error || (s->wait_done && s->logs_done)) {
                s->stage = ST_COMMIT;
                after_run(s);
                return;
        }
        if (!s->wait_done || s->catchup)
                return;
        if (!s->logs) /* the attach broke: its bytes are in the log */
                catchup_read(s);
        else if (!s->timer) /* something still holds the container's stdout open? */
                s->timer = hm_loop_add_timer(s->r->base.loop, LOGS_GRACE_MS, on_grace_timer, s);
        if (s->error)
                maybe_after_run(s);
}

static void on_logs(struct eng_request *req, struct eng_response *resp, void *data)
{
        struct eng_step *s = data;
        s->logs = NULL;
        bool ok = eng_response_ok(resp);
        if (s->stage == ST_ATTACH) {
                /* it ended before it was accepted: never started, nothing lost */
                _cleanup_free_ char *m = ok ? xstrdup("the stream ended before start") : eng_response_error(resp);
                fail(s, "attach: %s", m);
                return;
        }
        if (ok && eng_demux_finish(&s->demux) == 0) {
                s->logs_done = true;
        } else if (s->catchup) {
                if (!s->error) {
                        _cleanup_free_ char *m = ok ? xstrdup("the log ended inside a frame") : eng_response_error(resp);
                        s->error = xasprintf("read logs: %s", m);
                }
        }
        /* else: the attach broke; once wait answered, the log fills the gap */
        maybe_after_run(s);
}

static void parse_wait(struct eng_step *s, const struct eng_response *resp)
{
        if (s->r->kind == ENG_PODMAN) {
                /* libpod wait: the bare exit code as text */
                char *end = NULL;
                errno = 0;
                long v = strtol(resp->body.buf, &end, 10);
                if (errno || end == resp->body.buf || v < -1 || v > 255) {
                        s->error = xasprintf("wait: unexpected answer '%.40s'", resp->body.buf);
                        return;
                }
                if (v < 0) { /* Podman's answer for a container that never ran */
                        s->error = xstrdup("wait: the container never ran");
                        return;
                }
                s->exit_code = (int) v;
                s->have_exit = true;
                return;
        }
        _cleanup_yajl_tree_ yajl_val v = yajl_tree_parse(resp->body.buf, NULL, 0);
        static const char *code_path[] = { "StatusCode", NULL };
        static const char *err_path[] = { "Error", "Message", NULL };
        yajl_val c = v ? yajl_tree_get(v, code_path, yajl_t_number) : NULL;
        yajl_val e = v ? yajl_tree_get(v, err_path, yajl_t_string) : NULL;
        if (e && YAJL_GET_STRING(e)[0]) {
                s->error = xasprintf("wait: %s", YAJL_GET_STRING(e));
        } else if (!c || !YAJL_IS_INTEGER(c)) {
                s->error = xasprintf("wait: no StatusCode in the answer '%.40s'", resp->body.buf);
        } else {
                s->exit_code = (int) YAJL_GET_INTEGER(c);
                s->have_exit = true;
        }
}

static void on_wait(struct eng_request *req, struct eng_response *resp, void *data)
{
        struct eng_step *s = data;
        s->wait = NULL;
        s->wait_done = true;
        if (!eng_response_ok(resp)) {
                if (!s->error) {
                        _cleanup_free_ char *m = eng_response_error(resp);
                        s->error = xasprintf("wait: %s", m);
                }
        } else if (!s->error) {
                parse_wait(s, resp);
        }
        maybe_after_run(s);
}

static void do_run(struct eng_step *s)
{
        s->stage = ST_RUN;
        _cleanup_free_ char *wpath = NULL;
        struct eng_request_opts wo = { .method = "POST", .timeout_ms = -1, .on_done = on_wait, .data = s };
        if (s->r->kind == ENG_PODMAN) {
                /* the compat wait notices exits 200-300 ms late (engine-api.md §5.3) */
                wpath = xasprintf("/v%s/libpod/containers/%s/wait?condition=exited&condition=stopped&interval=5ms",
                                  s->r->version, s->id);
                wo.raw_path = true;
        } else {
                wpath = xasprintf("/containers/%s/wait", s->id);
        }
        wo.path = wpath;
        if (!submit(s, &s->wait, &wo, "wait"))
                return;
        if (s->cancel)
                send_kill(s);
        maybe_after_run(s); /* the attach may have ended already */
}

static void on_start(struct eng_request *req, struct eng_response *resp, void *data)
{
        struct eng_step *s = data;
        s->req = NULL;
        if (!eng_response_ok(resp) && !(resp->curl_code == CURLE_OK && resp->status == 304))
                fail_resp(s, resp, "start container");
        else
                do_run(s);
}

static void do_start(struct eng_step *s)
{
        s->stage = ST_START;
        _cleanup_free_ char *path = xasprintf("/containers/%s/start", s->id);
        struct eng_request_opts o = { .method = "POST", .path = path, .on_done = on_start, .data = s };
        submit(s, &s->req, &o, "start container");
}

/* The engine answered the attach: it now holds the container's output for us. */
static void on_attach_headers(void *data, long status)
{
        struct eng_step *s = data;
        if (s->stage != ST_ATTACH || status < 200 || status >= 300)
                return; /* a refusal is reported by on_logs */
        if (s->cancel)
                do_remove(s);
        else
                do_start(s);
}

/*
 * Attach before start, on its own connection; start only once the engine
 * answered, so even the first byte is caught.  (Podman 4.3.1's logs?follow
 * drops lines of fast output: engine-api.md §5.4 and the runner's header.)
 */
static void do_attach(struct eng_step *s)
{
        s->stage = ST_ATTACH;
        eng_demux_init(&s->demux);
        _cleanup_free_ char *path = xasprintf("/containers/%s/attach?stream=1&stdout=1&stderr=1", s->id);
        struct eng_request_opts o = { .method = "POST", .path = path, .on_data = on_logs_data,
                                      .on_headers = on_attach_headers, .timeout_ms = -1, .on_done = on_logs,
                                      .data = s };
        submit(s, &s->logs, &o, "attach");
}

/* ---------------------------------------------------------------- commit, remove, done */

/* The "Id" member of an image inspect or commit answer (heap), or NULL. */
static char *response_id(const struct eng_response *resp)
{
        if (!resp->body.len)
                return NULL;
        _cleanup_yajl_tree_ yajl_val v = yajl_tree_parse(resp->body.buf, NULL, 0);
        static const char *id_path[] = { "Id", NULL };
        yajl_val id = v ? yajl_tree_get(v, id_path, yajl_t_string) : NULL;
        return id && YAJL_GET_STRING(id)[0] ? xstrdup(YAJL_GET_STRING(id)) : NULL;
}

/* Whether two image ids name the same image ("sha256:" prefix optional). */
static bool same_image(const char *a, const char *b)
{
        if (str_has_prefix(a, "sha256:"))
                a += strlen("sha256:");
        if (str_has_prefix(b, "sha256:"))
                b += strlen("sha256:");
        return strcmp(a, b) == 0;
}

static void on_drop_old(struct eng_request *req, struct eng_response *resp, void *data)
{
        struct eng_step *s = data;
        s->req = NULL;
        /* Best effort: the engine refuses (409) while a container or another
         * tag still uses the image, and then it is not an orphan. */
        (void) resp;
        do_remove(s);
}

static void on_commit(struct eng_request *req, struct eng_response *resp, void *data)
{
        struct eng_step *s = data;
        s->req = NULL;
        if (!eng_response_ok(resp)) {
                _cleanup_free_ char *m = eng_response_error(resp);
                fail(s, "commit snapshot '%s': %s", s->snapshot, m);
                free(s->snapshot);
                s->snapshot = NULL;
                return;
        }
        /*
         * The cache tag moved from an image an earlier run committed (its
         * index entry was lost or cleaned) to this one: the old image is now
         * untagged, labelled hm.run, and nobody would ever remove it.
         */
        _cleanup_free_ char *new_id = response_id(resp);
        if (s->old_image && new_id && !same_image(s->old_image, new_id)) {
                _cleanup_free_ char *eid = eng_escape(s->old_image);
                _cleanup_free_ char *path = xasprintf("/images/%s", eid);
                struct eng_request_opts o = { .method = "DELETE", .path = path, .on_done = on_drop_old, .data = s };
                hm_error_t err = NULL;
                if (eng_request_submit(s->r->http, &o, &s->req, &err) == 0)
                        return;
                hm_error_release(&err);
        }
        do_remove(s);
}

static void commit_request(struct eng_step *s)
{
        const struct step_exec *x = s->x;
        _cleanup_free_ char *repo = NULL, *tag = NULL;
        split_ref(s->snapshot, &repo, &tag);
        _cleanup_free_ char *label = xasprintf("LABEL hm.run=%s", x->run_id);
        _cleanup_free_ char *erepo = eng_escape(repo), *etag = eng_escape(tag), *elabel = eng_escape(label);
        _cleanup_free_ char *path = xasprintf("/commit?container=%s&repo=%s&tag=%s&changes=%s%s", s->id, erepo, etag,
                                              elabel, x->cache_tag ? "" : "&changes=LABEL%20hm.ephemeral%3D1");
        /* Podman's compat commit needs a JSON body, Docker then needs the JSON Content-Type */
        struct eng_request_opts o = { .method = "POST", .path = path, .json_body = "{}",
                                      .timeout_ms = COMMIT_TIMEOUT_MS, .on_done = on_commit, .data = s };
        submit(s, &s->req, &o, "commit snapshot");
}

static void on_commit_timer(struct hm_loop *loop, uint64_t id, void *data);

static void on_old_tag(struct eng_request *req, struct eng_response *resp, void *data)
{
        struct eng_step *s = data;
        s->req = NULL;
        if (eng_response_ok(resp))
                s->old_image = response_id(resp);
        /* 404 (the usual case) or an error: nothing to drop afterwards */
        s->tag_checked = true;
        int64_t pause = cache_test_commit_pause_ms();
        if (pause > 0) {
                s->commit_timer = hm_loop_add_timer(s->r->base.loop, pause, on_commit_timer, s);
                return;
        }
        commit_request(s);
}

/*
 * A cacheable step's commit.  Under the commit lock (pipeline/cache.h), the
 * tag is looked up right before the commit moves it, and the lock is kept
 * until the scheduler wrote the index (finish): a concurrent run's commit of
 * the same tag comes wholly before or after, so an image the tag leaves is
 * always seen here and dropped (on_commit), never orphaned.
 */
static void commit_tagged(struct eng_step *s)
{
        const struct step_exec *x = s->x;
        if (x->commit_lock && s->lock_fd < 0) {
                hm_error_t err = NULL;
                int r = cache_commit_lock(x->commit_lock, &s->lock_fd, &err);
                if (r < 0) {
                        /* fail() may finish (and free) s: nothing of s after it */
                        _cleanup_free_ char *snapshot = TAKE_PTR(s->snapshot);
                        fail(s, "commit snapshot '%s': %s", snapshot, err->msg);
                        hm_error_release(&err);
                        return;
                }
                if (r == 0) { /* another run commits this tag: its index write comes first */
                        s->commit_timer = hm_loop_add_timer(s->r->base.loop, CACHE_COMMIT_LOCK_RETRY_MS, on_commit_timer, s);
                        return;
                }
        }
        if (!x->commit_lock && x->cache_lookup) { /* looked up before the step ran: the tag did not exist */
                commit_request(s);
                return;
        }
        /* The index has no entry (or another run just committed): the engine may still hold the tag. */
        _cleanup_free_ char *ref = eng_escape(s->snapshot);
        _cleanup_free_ char *path = xasprintf("/images/%s/json", ref);
        struct eng_request_opts o = { .method = "GET", .path = path, .on_done = on_old_tag, .data = s };
        submit(s, &s->req, &o, "commit snapshot");
}

static void on_commit_timer(struct hm_loop *loop, uint64_t id, void *data)
{
        struct eng_step *s = data;
        s->commit_timer = 0;
        if (s->tag_checked) /* the test pause after the lookup */
                commit_request(s);
        else
                commit_tagged(s);
}

static void do_commit(struct eng_step *s)
{
        const struct step_exec *x = s->x;
        s->stage = ST_COMMIT;
        if (!x->cache_tag) {
                s->snapshot = xasprintf("localhost/hm-ephemeral:%.12s-%u", x->run_id, x->step->index);
                commit_request(s);
                return;
        }
        s->snapshot = local_ref(x->cache_tag);
        commit_tagged(s);
}

static void on_remove(struct eng_request *req, struct eng_response *resp, void *data)
{
        struct eng_step *s = data;
        s->req = NULL;
        if (!eng_response_ok(resp) && !(resp->curl_code == CURLE_OK && resp->status == 404)) {
                _cleanup_free_ char *m = eng_response_error(resp);
                char *e = s->error ? xasprintf("%s; remove container '%s' also failed: %s", s->error, s->name, m)
                                   : xasprintf("remove container '%s': %s", s->name, m);
                free(s->error);
                s->error = e;
                report_left(s->r, s->name, s->id, m);
        } else {
                free(s->id);
                s->id = NULL;
        }
        finish(s);
}

static void do_remove(struct eng_step *s)
{
        s->stage = ST_REMOVE;
        eng_request_cancel(s->req);
        s->req = NULL;
        run_stop(s);
        _cleanup_free_ char *path = xasprintf("/containers/%s?force=1&v=1", s->id);
        struct eng_request_opts o = { .method = "DELETE", .path = path, .on_done = on_remove, .data = s };
        hm_error_t err = NULL;
        if (eng_request_submit(s->r->http, &o, &s->req, &err) < 0) {
                if (!s->error)
                        s->error = xasprintf("remove container '%s': %s", s->name, err->msg);
                report_left(s->r, s->name, s->id, err->msg);
                hm_error_release(&err);
                finish(s);
        }
}

static void step_unlink(struct eng_step *s)
{
        struct eng_runner *r = s->r;
        if (s->prev)
                s->prev->next = s->next;
        else if (r->steps == s)
                r->steps = s->next;
        if (s->next)
                s->next->prev = s->prev;
        s->prev = s->next = NULL;
}

static void step_free(struct eng_step *s)
{
        if (!s)
                return;
        step_unlink(s);
        eng_request_cancel(s->req);
        eng_request_cancel(s->logs);
        eng_request_cancel(s->wait);
        eng_request_cancel(s->kill);
        if (s->timer)
                hm_loop_del_timer(s->r->base.loop, s->timer);
        if (s->commit_timer)
                hm_loop_del_timer(s->r->base.loop, s->commit_timer);
        if (s->lock_fd >= 0)
                close(s->lock_fd);
        free(s->name);
        free(s->image);
        free(s->id);
        free(s->error);
        free(s->snapshot);
        free(s->old_image);
        free(s->pull_error);
        strbuf_release(&s->line);
        free(s);
}

static void finish(struct eng_step *s)
{
        struct step_exec *x = s->x;
        s->stage = ST_DONE;
        struct step_result res = { .cache_hit = s->cache_hit, .canceled = s->cancel };
        if (s->error) {
                res.runner_error = true;
                res.exit_code = 1;
                res.error_msg = TAKE_PTR(s->error);
        } else if (s->have_exit) {
                res.exit_code = s->exit_code;
        } else {
                res.exit_code = s->cancel ? 128 + (s->force ? 9 : 15) : 1;
        }
        res.snapshot = TAKE_PTR(s->snapshot);
        /* the commit lock outlives the step: the scheduler releases it once the index is written */
        res.commit_locked = s->lock_fd >= 0;
        res.commit_lock_fd = TAKE_FD(s->lock_fd);
        x->runner_data = NULL;
        step_free(s);
        x->on_done(x, &res);
        /* the scheduler takes the strings and the lock it wants; release what it left */
        free(res.snapshot);
        free(res.error_msg);
        if (res.commit_locked)
                close(res.commit_lock_fd);
}

static void on_finish_timer(struct hm_loop *loop, uint64_t id, void *data)
{
        struct eng_step *s = data;
        s->timer = 0;
        finish(s);
}

/* ---------------------------------------------------------------- runner ops */

static char *container_name(const struct step_exec *x)
{
        struct strbuf b = STRBUF_INIT;
        strbuf_addf(&b, "hm-%.12s-%u-", x->run_id, x->step->index);
        for (const char *p = x->step->key; *p && b.len < 100; p++) {
                char c = *p;
                bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                          c == '_' || c == '.' || c == '-';
                strbuf_addch(&b, ok ? c : '-');
        }
        return strbuf_detach(&b, NULL);
}

static int eng_start(struct hm_runner *hr, struct step_exec *x, hm_error_t *err)
{
        struct eng_runner *r = (struct eng_runner *) hr;
        if (!x->step || !x->step->key || !x->run_id || strlen(x->run_id) < 12 || !x->on_done)
                return hm_error_set(err, EINVAL, "engine runner: incomplete step description");
        struct eng_step *s = xzalloc(sizeof *s);
        s->r = r;
        s->x = x;
        strbuf_init(&s->line, 0);
        s->name = container_name(x);
        s->lock_fd = -1;
        if (!r->run_id)
                r->run_id = xstrdup(x->run_id);
        s->next = r->steps;
        if (r->steps)
                r->steps->prev = s;
        r->steps = s;
        x->runner_data = s;
        if (x->cache_lookup && x->cache_tag)
                do_cache(s);
        else
                do_image(s);
        return 0;
}

static void eng_cancel(struct hm_runner *hr, struct step_exec *x, bool force)
{
        struct eng_step *s = x->runner_data;
        if (!s || s->stage == ST_DONE)
                return;
        s->cancel = true;
        s->force |= force;
        switch (s->stage) {
        case ST_CACHE:
        case ST_INSPECT:
        case ST_PULL:
                /* nothing exists yet: drop the request, report from the loop (not from inside cancel) */
                eng_request_cancel(s->req);
                s->req = NULL;
                if (!s->timer)
                        s->timer = hm_loop_add_timer(s->r->base.loop, 0, on_finish_timer, s);
                break;
        case ST_UPLOAD:
        case ST_ATTACH:
                do_remove(s);
                break;
        case ST_RUN:
                send_kill(s);
                break;
        case ST_COMMIT:
                if (s->commit_timer) { /* waiting for the commit lock (or the test pause): commit nothing */
                        hm_loop_del_timer(s->r->base.loop, s->commit_timer);
                        s->commit_timer = 0;
                        free(s->snapshot);
                        s->snapshot = NULL;
                        do_remove(s);
                }
                break;
        default: /* create, start: their callbacks look at s->cancel; commit, remove: nearly done */
                break;
        }
}

/* ---------------------------------------------------------------- drop_snapshots */

struct eng_drop {
        struct eng_runner *r;
        char **refs;     /* in the order to delete */
        size_t n, next;
        char **retry;    /* refused once (Docker 409: children still there) */
        bool retrying;
        bool sweeping;   /* deleting by id the run's own untagged images (sweep_list) */
        struct eng_request *req;
        uint64_t timer;
        void (*done)(void *data);
        void *data;
        struct eng_drop *prev, *nextd;
};

static void drop_free(struct eng_drop *d)
{
        struct eng_runner *r = d->r;
        if (d->prev)
                d->prev->nextd = d->nextd;
        else if (r->drops == d)
                r->drops = d->nextd;
        if (d->nextd)
                d->nextd->prev = d->prev;
        eng_request_cancel(d->req);
        if (d->timer)
                hm_loop_del_timer(r->base.loop, d->timer);
        strv_free(d->refs);
        strv_free(d->retry);
        free(d);
}

static void drop_next(struct eng_drop *d);

static void on_drop(struct eng_request *req, struct eng_response *resp, void *data)
{
        struct eng_drop *d = data;
        d->req = NULL;
        const char *ref = d->refs[d->next - 1];
        /* sweep: 409 is an image still in use (a parent of a live snapshot): it is not garbage yet */
        if (d->sweeping && resp->curl_code == CURLE_OK && resp->status == 409) {
                drop_next(d);
                return;
        }
        if (!eng_response_ok(resp) && !(resp->curl_code == CURLE_OK && resp->status == 404)) {
                if (!d->retrying) {
                        strv_push(&d->retry, ref);
                } else {
                        _cleanup_free_ char *m = eng_response_error(resp);
                        warn(d->r, "remove image '%s': %s", ref, m);
                }
        }
        drop_next(d);
}

/*
 * The sweep, after the tags are deleted: the run's own images that are
 * left untagged (<none>:<none>): a cache image whose tag another run
 * moved, or a snapshot whose tag went while something still used it.  A
 * run that dies first never sweeps: `hm reap` takes its untagged images
 * (engine/reap.c, docs/flake.md).  Nothing refers to an untagged image of this run by
 * name: each is deleted by id, without force, so one still in use stays
 * (409).  Labels are matched here, not by the engine's filter.
 */
static void on_sweep_list(struct eng_request *req, struct eng_response *resp, void *data)
{
        struct eng_drop *d = data;
        d->req = NULL;
        strv_free(d->refs);
        d->refs = NULL;
        d->n = d->next = 0;
        if (eng_response_ok(resp) && resp->body.len) {
                _cleanup_yajl_tree_ yajl_val v = yajl_tree_parse(resp->body.buf, NULL, 0);
                for (size_t i = 0; v && YAJL_IS_ARRAY(v) && i < v->u.array.len; i++) {
                        yajl_val im = v->u.array.values[i];
                        yajl_val id = yajl_tree_get(im, (const char *[]){ "Id", NULL }, yajl_t_string);
                        yajl_val run = yajl_tree_get(im, (const char *[]){ "Labels", "hm.run", NULL }, yajl_t_string);
                        yajl_val tags = yajl_tree_get(im, (const char *[]){ "RepoTags", NULL }, yajl_t_array);
                        bool tagged = false;
                        for (size_t k = 0; tags && k < tags->u.array.len; k++) {
                                const char *t = YAJL_GET_STRING(tags->u.array.values[k]);
                                tagged |= t && *t && strncmp(t, "<none>", 6) != 0;
                        }
                        const char *idv = id ? YAJL_GET_STRING(id) : NULL, *runv = run ? YAJL_GET_STRING(run) : NULL;
                        if (idv && runv && !tagged && !strcmp(runv, d->r->run_id))
                                strv_push(&d->refs, idv);
                }
        } else {
                _cleanup_free_ char *m = eng_response_error(resp);
                warn(d->r, "list the run's untagged images: %s", m);
        }
        d->n = strv_len(d->refs);
        drop_next(d);
}

static void drop_next(struct eng_drop *d)
{
        if (d->next == d->n && d->retry && !d->retrying) {
                strv_free(d->refs);
                d->refs = TAKE_PTR(d->retry);
                d->n = strv_len(d->refs);
                d->next = 0;
                d->retrying = true;
        }
        if (d->next == d->n && !d->sweeping && d->r->run_id) {
                d->sweeping = d->retrying = true;
                _cleanup_free_ char *path = xasprintf("/images/json?all=1&filters=%s", "%7B%22dangling%22%3A%5B%22true%22%5D%7D");
                struct eng_request_opts o = { .method = "GET", .path = path, .on_done = on_sweep_list, .data = d };
                hm_error_t err = NULL;
                if (eng_request_submit(d->r->http, &o, &d->req, &err) == 0)
                        return;
                warn(d->r, "list the run's untagged images: %s", err->msg);
                hm_error_release(&err);
        }
        if (d->next == d->n) {
                void (*done)(void *) = d->done;
                void *data = d->data;
                drop_free(d);
                if (done)
                        done(data);
                return;
        }
        const char *ref = d->refs[d->next++];
        _cleanup_free_ char *path = xasprintf("/images/%s?force=%d", ref, d->sweeping ? 0 : 1);
        struct eng_request_opts o = { .method = "DELETE", .path = path, .on_done = on_drop, .data = d };
        hm_error_t err = NULL;
        if (eng_request_submit(d->r->http, &o, &d->req, &err) < 0) {
                warn(d->r, "remove image '%s': %s", ref, err->msg);
                hm_error_release(&err);
                drop_next(d);
        }
}

static void on_drop_timer(struct hm_loop *loop, uint64_t id, void *data)
{
        struct eng_drop *d = data;
        d->timer = 0;
        drop_next(d);
}

static void eng_drop_snapshots(struct hm_runner *hr, char *const *refs, void (*done)(void *data), void *data)
{
        struct eng_runner *r = (struct eng_runner *) hr;
        struct eng_drop *d = xzalloc(sizeof *d);
        d->r = r;
        d->done = done;
        d->data = data;
        /* children before parents: Docker refuses to delete an image with children */
        size_t n = strv_len(refs);
        for (size_t i = n; i > 0; i--)
                strv_push(&d->refs, refs[i - 1]);
        d->n = n;
        d->nextd = r->drops;
        if (r->drops)
                r->drops->prev = d;
        r->drops = d;
        /* start from the loop, so done() never runs inside this call */
        d->timer = hm_loop_add_timer(r->base.loop, 0, on_drop_timer, d);
}

/* Teardown after the loop ended: the one place that blocks (not on an engine judged wedged). */
static void remove_blocking(struct eng_runner *r, const char *name, const char *id)
{
        if (eng_http_dead(r->http)) {
                report_left(r, name, id, eng_http_dead(r->http));
                return;
        }
        _cleanup_free_ char *path = xasprintf("%s/containers/%s?force=1&v=1", eng_http_prefix(r->http), id);
        struct eng_response resp = { 0 };
        hm_error_t err = NULL;
        if (eng_http_perform_blocking(eng_http_socket(r->http), "DELETE", path, 30000, &resp, NULL, &err) < 0) {
                warn(r, "remove container '%s': %s", id, err->msg);
                hm_error_release(&err);
        } else if (!eng_response_ok(&resp) && resp.status != 404) {
                _cleanup_free_ char *m = eng_response_error(&resp);
                warn(r, "remove container '%s': %s", id, m);
        }
        eng_response_release(&resp);
}

static void eng_free(struct hm_runner *hr)
{
        struct eng_runner *r = (struct eng_runner *) hr;
        if (!r)
                return;
        while (r->steps) {
                struct eng_step *s = r->steps;
                if (s->id)
                        remove_blocking(r, s->name, s->id);
                if (s->x)
                        s->x->runner_data = NULL;
                step_free(s);
        }
        while (r->drops)
                drop_free(r->drops);
        eng_http_free(r->http);
        free(r->base.backend_id);
        free(r->base.description);
        free(r->version);
        free(r->network);
        free(r->security_opt);
        strv_free(r->cap_add);
        strv_free(r->cap_drop);
        free(r->user);
        free(r->owner);
        free(r->run_id);
        free(r);
}

/* The second signal: an engine that does not answer a short ping is given up (engine/http.h). */
static void eng_hurry(struct hm_runner *hr)
{
        eng_http_hurry(((struct eng_runner *) hr)->http);
}

static const struct runner_ops eng_docker_ops = {
        .name = "docker",
        .start = eng_start,
        .cancel = eng_cancel,
        .drop_snapshots = eng_drop_snapshots,
        .hurry = eng_hurry,
        .free = eng_free,
};

static const struct runner_ops eng_podman_ops = {
        .name = "podman",
        .start = eng_start,
        .cancel = eng_cancel,
        .drop_snapshots = eng_drop_snapshots,
        .hurry = eng_hurry,
        .free = eng_free,
};

/* "<pid>:<starttime>:<pidns>:<boot id>" (oci/owner.h): what the reaper judges. */
static char *owner_label(void)
{
        return owner_self_label();
}

static int parse_pull(const char *pull, enum pull_policy *ret, hm_error_t *err)
{
        if (!pull || strcmp(pull, "missing") == 0)
                *ret = PULL_MISSING;
        else if (strcmp(pull, "always") == 0)
                *ret = PULL_ALWAYS;
        else if (strcmp(pull, "never") == 0)
                *ret = PULL_NEVER;
        else
                return hm_error_set(err, EINVAL, "--pull '%s': expected missing, always or never", pull);
        return 0;
}

/* "net_raw", "CAP_NET_RAW", "all" -> "CAP_NET_RAW", "ALL" (both engines take either form) */
static int cap_names(char *const *in, const char *flag, char ***ret, hm_error_t *err)
{
        for (size_t i = 0; in && in[i]; i++) {
                if (!strcasecmp(in[i], "all")) {
                        strv_push(ret, "ALL");
                        continue;
                }
                hm_error_t e = NULL;
                if (oci_cap_parse(in[i], &e) < 0) {
                        int r = hm_error_set_exit(err, 2, EINVAL, "%s '%s': %s", flag, in[i], e->msg);
                        hm_error_release(&e);
                        return r;
                }
                _cleanup_free_ char *up = xstrdup(in[i]);
                for (char *c = up; *c; c++)
                        *c = (char) toupper((unsigned char) *c);
                strv_push_take(ret, str_has_prefix(up, "CAP_") ? xstrdup(up) : xasprintf("CAP_%s", up));
        }
        return 0;
}

/* --seccomp FILE: Docker takes the profile inline, Podman a path it opens itself (engine-api.md §5.1) */
static int seccomp_option(struct eng_runner *er, const char *opt, hm_error_t *err)
{
        if (!opt || !strcmp(opt, "default"))
                return 0;
        if (!strcmp(opt, "unconfined")) {
                er->security_opt = xstrdup("seccomp=unconfined");
                return 0;
        }
        /* the same checks as on ns: a profile that does not parse fails here, with its JSON path */
        struct oci_seccomp *sc = NULL;
        int r = oci_seccomp_from_option(opt, UINT64_MAX, &sc, err);
        oci_seccomp_free(sc);
        if (r < 0)
                return r;
        if (er->kind == ENG_PODMAN) {
                _cleanup_free_ char *abs = realpath(opt, NULL);
                if (!abs)
                        return hm_error_set_exit(err, 2, errno, "--seccomp '%s': %s", opt, strerror(errno));
                er->security_opt = xasprintf("seccomp=%s", abs);
                return 0;
        }
        _cleanup_free_ char *text = NULL;
        size_t len;
        r = read_file(opt, 1 << 22, &text, &len);
        if (r < 0)
                return hm_error_set_exit(err, 2, -r, "--seccomp '%s': %s", opt, strerror(-r));
        er->security_opt = xasprintf("seccomp=%s", text);
        return 0;
}

static int sandbox_options(struct eng_runner *er, const struct engine_options *opts, hm_error_t *err)
{
        const struct oci_run_options *o = &opts->sandbox;
        int r = cap_names(o->cap_add, "--cap-add", &er->cap_add, err);
        if (r >= 0)
                r = cap_names(o->cap_drop, "--cap-drop", &er->cap_drop, err);
        if (r < 0)
                return r;
        if (o->user) {
                uid_t uid;
                gid_t gid;
                if ((r = oci_parse_user(o->user, &uid, &gid, err)) < 0)
                        return r;
                er->user = xasprintf("%u:%u", (unsigned) uid, (unsigned) gid);
        }
        if (o->readonly_rootfs && er->kind == ENG_DOCKER)
                /* engine-api.md §6.1: every archive PUT into a ReadonlyRootfs container is refused */
                return hm_error_set_exit(err, 2, EROFS,
                                         "--read-only: Docker refuses to upload the workspace into a read-only "
                                         "container; use --runner=podman or --runner=ns");
        er->readonly = o->readonly_rootfs;
        er->tmpfs_tmp = o->tmpfs_tmp;
        return seccomp_option(er, opts->seccomp, err);
}

int engine_runner_new(struct hm_loop *loop, const struct engine_options *opts, struct hm_runner **ret,
                      hm_error_t *err)
{
        enum pull_policy pull = PULL_MISSING;
        int r = parse_pull(opts->pull, &pull, err);
        if (r < 0)
                return r;
        struct eng_found f = { 0 };
        r = eng_discover(opts, &f, err);
        if (r < 0)
                return r;
        struct eng_runner *er = xzalloc(sizeof *er);
        r = eng_http_new(loop, f.socket, f.prefix, &er->http, err);
        if (r < 0) {
                eng_found_release(&f);
                free(er);
                return r;
        }
        er->base.ops = f.kind == ENG_PODMAN ? &eng_podman_ops : &eng_docker_ops;
        er->base.loop = loop;
        er->base.backend_id = xasprintf("%s:%s", eng_kind_name(f.kind), f.socket);
        er->base.description = xasprintf("%s %s at %s (from %s)", eng_kind_name(f.kind), f.version, f.socket, f.origin);
        er->kind = f.kind;
        er->version = xstrdup(f.version);
        er->network = opts->network ? xstrdup(opts->network) : NULL;
        er->pull = pull;
        er->limits = opts->limits;
        er->owner = owner_label();
        eng_found_release(&f);
        r = sandbox_options(er, opts, err);
        if (r < 0) {
                er->base.ops->free(&er->base);
                return r;
        }
        *ret = &er->base;
        return 0;
}
