/* SPDX-License-Identifier: Apache-2.0 */
#include "oci/registry.h"

#include <curl/curl.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <yajl/yajl_tree.h>

#include "lib/curl-loop.h"
#include "lib/handles.h"
#include "lib/sha256.h"
#include "lib/strbuf.h"
#include "lib/util.h"
#include "oci/auth.h"
#include "oci/json-util.h"
#include "oci/manifest.h"
#include "oci/ref.h"
#include "oci/unpack-job.h"
#include "sched/loop.h"

#define CONNECT_TIMEOUT_MS 15000L
#define LOW_SPEED_SECONDS 60L     /* a transfer below 1 KiB/s for this long fails */
#define ERROR_BODY_MAX (64u << 10)
#define CONFIG_MAX (8u << 20)
#define LOCK_RETRY_MS 100
#define PROGRESS_MS 200
#define MAX_AUTH_RETRIES 2
#define MAX_INDEX_DEPTH 2

enum rq_kind { RQ_MANIFEST, RQ_CONFIG, RQ_LAYER, RQ_TOKEN };

struct want {
        enum rq_kind kind;
        char *what;   /* manifest: tag or digest; blobs: digest */
        size_t layer; /* RQ_LAYER */
        int auth_retries;
};

struct rq {
        struct oci_pull *p;
        struct want w;
        CURL *easy;
        struct curl_slist *hdrs;
        char *url;
        struct strbuf body; /* manifests, config, token, error answers */
        int fd;             /* layer blobs: the .part file */
        struct sha256 hash;
        uint64_t got, limit;
        bool too_big;
        int write_errno;
        char *www_auth, *content_type, *docker_digest;
        char errbuf[CURL_ERROR_SIZE];
        struct rq *prev, *next;
};

/* L_ACTIVE: downloading; L_UNPACKING: its child (oci/unpack-job.h) runs; both count as in flight */
enum layer_state { L_PENDING, L_PRESENT, L_ACTIVE, L_UNPACKING, L_DONE };

struct layer {
        struct oci_pull *p;
        const struct oci_descriptor *d;
        const char *diff_id;
        char id[17];
        enum layer_state state;
        char *tmpdir; /* being unpacked into, then waiting for the commit */
        struct oci_unpack_job *job;
        int lock_fd;  /* locks/layer-<id>, held from download to commit */
        uint64_t size, done;
        int64_t last_report;
};

struct oci_pull {
        struct hm_loop *loop;
        struct oci_store *s;
        struct hm_curl_loop *cl; /* the multi handle on the loop */
        uint64_t finish_timer, lock_timer;
        struct rq *rqs;

        struct oci_ref ref;
        char *canon; /* canonical reference string */
        char *name;  /* store name */
        bool tls_verify_off, if_missing;
        unsigned max_parallel;
        void (*on_progress)(void *data, const struct oci_pull_progress *pr);
        void *progress_data;
        oci_pull_done_fn done;
        void *done_data;

        struct oci_registry_conf conf;
        /* of the endpoint being tried (endpoint_enter): a mirror has its own */
        struct oci_creds creds;
        bool have_creds;
        bool insecure;    /* --tls-verify=false, or the endpoint is marked insecure */
        struct strbuf ca;
        char **endpoints; /* hosts to try, mirrors first */
        size_t endpoint;
        bool plain_http;  /* insecure registry that does not speak TLS */
        struct strbuf tried; /* "host: why; " of endpoints given up on */
        char *authz;      /* "Authorization: ..." header */
        struct want *waiting; /* requests to repeat once a token arrives */
        size_t n_waiting;
        bool token_pending;

        int lock_fd;
        char *workdir;
        int index_depth;
        struct oci_manifest manifest;
        char *manifest_text;
        size_t manifest_len;
        char *manifest_digest;
        char *config_text;
        size_t config_len;
        struct oci_image *img;
        char **diff_ids;
        struct layer *layers;
        size_t n_layers, n_active;
        size_t *lock_order; /* missing layers by id: locks are taken in this order */
        size_t n_lock, lock_next;
        uint64_t blob_timer;
        uint64_t commit_timer; /* the store lock was taken: the commit tries again */
        bool store_wait_said;
        bool committed;        /* the image is in the store; only the report is left */

        struct oci_pull_result res;
        int rc;
        hm_error_t err;
        bool finished;
};

static void submit(struct oci_pull *p, enum rq_kind kind, const char *what, size_t layer, int auth_retries);
static void on_manifest_ok(struct oci_pull *p, struct rq *q);
static void start_layers(struct oci_pull *p);

/* ------------------------------------------------------------ results */

void oci_pull_result_release(struct oci_pull_result *r)
{
        if (!r)
                return;
        free(r->name);
        free(r->id);
        free(r->manifest_digest);
        memset(r, 0, sizeof *r);
}

static void progress(struct oci_pull *p, const char *phase, const char *digest, uint64_t done, uint64_t total,
                     size_t layer)
{
        if (!p->on_progress)
                return;
        struct oci_pull_progress pr = { .phase = phase, .image = p->canon, .digest = digest, .done = done,
                                        .total = total, .layer = layer, .n_layers = p->n_layers };
        p->on_progress(p->progress_data, &pr);
}

/* ------------------------------------------------------------ finishing */

static void on_finish_timer(struct hm_loop *loop, uint64_t id, void *data);

/* Record the first failure and end the pull on the next loop iteration. */
static void fail(struct oci_pull *p, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail(struct oci_pull *p, int code, const char *fmt, ...)
{
        if (p->finished)
                return;
        va_list ap;
        va_start(ap, fmt);
        p->rc = hm_error_setv(&p->err, code, fmt, ap);
        va_end(ap);
        p->finished = true;
        p->finish_timer = hm_loop_add_timer(p->loop, 0, on_finish_timer, p);
}

static void fail_err(struct oci_pull *p, hm_error_t *e)
{
        fail(p, (*e)->code, "%s", (*e)->msg);
        hm_error_release(e);
}

static void succeed(struct oci_pull *p)
{
        if (p->finished)
                return;
        p->finished = true;
        p->finish_timer = hm_loop_add_timer(p->loop, 0, on_finish_timer, p);
}

/* ------------------------------------------------------------ requests */

static void rq_free(struct rq *q)
{
        struct oci_pull *p = q->p;
        if (q->easy) {
                hm_curl_loop_remove(p->cl, q->easy);
                curl_easy_cleanup(q->easy);
        }
        if (q->prev)
                q->prev->next = q->next;
        else
                p->rqs = q->next;
        if (q->next)
                q->next->prev = q->prev;
        curl_slist_free_all(q->hdrs);
        free(q->url);
        free(q->w.what);
        strbuf_release(&q->body);
        safe_close(q->fd);
        free(q->www_auth);
        free(q->content_type);
        free(q->docker_digest);
        free(q);
}

static long rq_status(struct rq *q)
{
        long status = 0;
        curl_easy_getinfo(q->easy, CURLINFO_RESPONSE_CODE, &status);
        return status;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *data)
{
        struct rq *q = data;
        size_t n = size * nmemb;
        long status = rq_status(q);
        if (q->fd < 0 || status < 200 || status >= 300) {
                size_t cap = status >= 200 && status < 300 ? (size_t) q->limit : ERROR_BODY_MAX;
                if (q->body.len + n > cap) {
                        q->too_big = true;
                        return 0;
                }
                strbuf_add(&q->body, ptr, n);
                return n;
        }
        if (q->got + n > q->limit) {
                q->too_big = true;
                return 0;
        }
        int r = write_all(q->fd, ptr, n);
        if (r < 0) {
                q->write_errno = -r;
                return 0;
        }
        sha256_update(&q->hash, ptr, n);
        q->got += n;
        struct oci_pull *p = q->p;
        struct layer *l = &p->layers[q->w.layer];
        l->done = q->got;
        int64_t now = now_ms();
        if (now - l->last_report >= PROGRESS_MS) {
                l->last_report = now;
                progress(p, "download", l->d->digest, l->done, l->size, q->w.layer + 1);
        }
        return n;
}

static void set_str(char **slot, const char *v, size_t n)
{
        while (n > 0 && (*v == ' ' || *v == '\t'))
                v++, n--;
        while (n > 0 && (v[n - 1] == '\r' || v[n - 1] == '\n' || v[n - 1] == ' '))
                n--;
        free(*slot);
        *slot = xstrndup(v, n);
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *data)
{
        struct rq *q = data;
        size_t n = size * nmemb;
        if (n >= 5 && !strncmp(ptr, "HTTP/", 5)) {
                /* a new response (after a redirect or 100): forget the last one's headers */
                free(q->www_auth);
                free(q->content_type);
                free(q->docker_digest);
                q->www_auth = q->content_type = q->docker_digest = NULL;
                return n;
        }
        static const struct {
                const char *name;
                size_t off;
        } keep[] = {
                { "www-authenticate:", offsetof(struct rq, www_auth) },
                { "content-type:", offsetof(struct rq, content_type) },
                { "docker-content-digest:", offsetof(struct rq, docker_digest) },
        };
        for (size_t i = 0; i < ARRAY_SIZE(keep); i++) {
                size_t k = strlen(keep[i].name);
                char **slot = (char **) ((char *) q + keep[i].off);
                if (n > k && !strncasecmp(ptr, keep[i].name, k) && !*slot)
                        set_str(slot, ptr + k, n - k);
        }
        return n;
}

#define SETOPT(e, opt, val)                                                                              \
        do {                                                                                             \
                CURLcode rc_ = curl_easy_setopt((e), (opt), (val));                                      \
                if (rc_ != CURLE_OK)                                                                     \
                        return hm_error_set(err, EINVAL, "curl option %s: %s", #opt, curl_easy_strerror(rc_)); \
        } while (0)

static const char *host_of(struct oci_pull *p)
{
        return p->endpoints[p->endpoint];
}

static int setup_tls(struct oci_pull *p, CURL *e, hm_error_t *err)
{
        if (p->plain_http)
                return 0;
        if (p->insecure) {
                SETOPT(e, CURLOPT_SSL_VERIFYPEER, 0L);
                SETOPT(e, CURLOPT_SSL_VERIFYHOST, 0L);
                return 0;
        }
        struct curl_blob blob = { .data = p->ca.buf, .len = p->ca.len, .flags = CURL_BLOB_COPY }; /* p->ca changes with the endpoint */
        if (p->ca.len)
                SETOPT(e, CURLOPT_CAINFO_BLOB, &blob);
        return 0;
}

static int setup_rq(struct oci_pull *p, struct rq *q, hm_error_t *err)
{
        CURL *e = q->easy;
        SETOPT(e, CURLOPT_URL, q->url);
        SETOPT(e, CURLOPT_PRIVATE, q);
        SETOPT(e, CURLOPT_ERRORBUFFER, q->errbuf);
        SETOPT(e, CURLOPT_NOSIGNAL, 1L);
        SETOPT(e, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
        SETOPT(e, CURLOPT_LOW_SPEED_LIMIT, 1024L);
        SETOPT(e, CURLOPT_LOW_SPEED_TIME, LOW_SPEED_SECONDS);
        SETOPT(e, CURLOPT_PROTOCOLS_STR, "http,https");
        SETOPT(e, CURLOPT_REDIR_PROTOCOLS_STR, p->plain_http ? "http,https" : "https");
        /* blobs may live behind a redirect (object storage); curl drops Authorization on another host */
        SETOPT(e, CURLOPT_FOLLOWLOCATION, 1L);
        SETOPT(e, CURLOPT_MAXREDIRS, 5L);
        SETOPT(e, CURLOPT_USERAGENT, "hm");
        const char *rate = getenv("HM_PULL_RATE");
        if (rate && *rate && q->w.kind == RQ_LAYER)
                SETOPT(e, CURLOPT_MAX_RECV_SPEED_LARGE, (curl_off_t) strtoull(rate, NULL, 10));
        SETOPT(e, CURLOPT_WRITEFUNCTION, on_write);
        SETOPT(e, CURLOPT_WRITEDATA, q);
        SETOPT(e, CURLOPT_HEADERFUNCTION, on_header);
        SETOPT(e, CURLOPT_HEADERDATA, q);
        int r = setup_tls(p, e, err);
        if (r < 0)
                return r;
        if (q->w.kind == RQ_MANIFEST)
                q->hdrs = curl_slist_append(q->hdrs, "Accept: " OCI_MT_INDEX ", " OCI_MT_MANIFEST ", " OCI_MT_DOCKER_LIST
                                                     ", " OCI_MT_DOCKER_MANIFEST);
        if (q->w.kind == RQ_TOKEN && p->have_creds) {
                SETOPT(e, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
                SETOPT(e, CURLOPT_USERNAME, p->creds.user);
                SETOPT(e, CURLOPT_PASSWORD, p->creds.password);
        } else if (q->w.kind != RQ_TOKEN && p->authz) {
                q->hdrs = curl_slist_append(q->hdrs, p->authz);
        }
        if (q->hdrs)
                SETOPT(e, CURLOPT_HTTPHEADER, q->hdrs);
        return 0;
}

static char *rq_url(struct oci_pull *p, const struct want *w)
{
        const char *scheme = p->plain_http ? "http" : "https";
        const char *what = w->kind == RQ_MANIFEST ? "manifests" : "blobs";
        return xasprintf("%s://%s/v2/%s/%s/%s", scheme, host_of(p), p->ref.path, what, w->what);
}

static int rq_start(struct oci_pull *p, struct rq *q, hm_error_t *err)
{
        q->easy = curl_easy_init();
        if (!q->easy)
                return hm_error_set(err, ENOMEM, "curl_easy_init failed");
        int r = setup_rq(p, q, err);
        if (r < 0)
                return r;
        return hm_curl_loop_add(p->cl, q->easy, err);
}

static struct rq *rq_new(struct oci_pull *p, enum rq_kind kind, const char *what, size_t layer, int auth_retries)
{
        struct rq *q = xzalloc(sizeof *q);
        q->p = p;
        q->fd = -1;
        q->w = (struct want) { kind, xstrdup(what), layer, auth_retries };
        strbuf_init(&q->body, 0);
        q->next = p->rqs;
        if (p->rqs)
                p->rqs->prev = q;
        p->rqs = q;
        return q;
}

static int open_part(struct oci_pull *p, struct rq *q, hm_error_t *err)
{
        struct layer *l = &p->layers[q->w.layer];
        _cleanup_free_ char *path = xasprintf("%s/%s.part", p->workdir, oci_digest_hex(l->d->digest));
        q->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (q->fd < 0)
                return hm_error_set(err, errno, "create '%s': %s", path, strerror(errno));
        sha256_init(&q->hash);
        uint64_t max = oci_store_size_limit(p->s);
        if (l->d->size >= 0 && (uint64_t) l->d->size > max)
                return hm_error_set(err, EFBIG, "layer %s: its manifest gives %lld bytes, over the store's limit of %llu",
                                    l->d->digest, (long long) l->d->size, (unsigned long long) max);
        q->limit = l->d->size >= 0 ? (uint64_t) l->d->size : max;
        return 0;
}

static void submit(struct oci_pull *p, enum rq_kind kind, const char *what, size_t layer, int auth_retries)
{
        if (p->finished)
                return;
        struct rq *q = rq_new(p, kind, what, layer, auth_retries);
        q->url = kind == RQ_TOKEN ? xstrdup(what) : rq_url(p, &q->w);
        q->limit = kind == RQ_MANIFEST ? OCI_MANIFEST_MAX : kind == RQ_CONFIG ? CONFIG_MAX : ERROR_BODY_MAX;
        hm_error_t e = NULL;
        int r = kind == RQ_LAYER ? open_part(p, q, &e) : 0;
        if (r >= 0)
                r = rq_start(p, q, &e);
        if (r < 0) {
                rq_free(q);
                fail_err(p, &e);
        }
}

/* ------------------------------------------------------------ errors of answers */

/* "manifest unknown (MANIFEST_UNKNOWN)" from a registry's {"errors":[...]} body, or the first line. */
/* Text from the registry goes into one-line errors on a terminal: no control characters. */
static char *printable(char *s)
{
        for (unsigned char *c = (unsigned char *) s; s && *c; c++)
                if (*c < 0x20 || *c == 0x7f)
                        *c = '?';
        return s;
}

static char *answer_message(struct rq *q)
{
        if (q->body.len && q->body.buf[0] == '{') {
                _cleanup_yajl_tree_ yajl_val v = yajl_tree_parse(q->body.buf, NULL, 0);
                const char *ep[] = { "errors", NULL }, *mp[] = { "message", NULL }, *cp[] = { "code", NULL };
                yajl_val errs = v ? yajl_tree_get(v, ep, yajl_t_array) : NULL;
                if (errs && errs->u.array.len > 0) {
                        yajl_val m = yajl_tree_get(errs->u.array.values[0], mp, yajl_t_string);
                        yajl_val c = yajl_tree_get(errs->u.array.values[0], cp, yajl_t_string);
                        if (m || c)
                                return printable(xasprintf("%s%s%s%s", m ? YAJL_GET_STRING(m) : "", m && c ? " (" : "",
                                                           c ? YAJL_GET_STRING(c) : "", m && c ? ")" : ""));
                }
        }
        size_t n = strcspn(q->body.buf, "\r\n");
        return n && n < 200 ? printable(xstrndup(q->body.buf, n)) : NULL;
}

static const char *what_of(const struct want *w)
{
        switch (w->kind) {
        case RQ_MANIFEST: return "manifest";
        case RQ_CONFIG: return "config blob";
        case RQ_LAYER: return "layer blob";
        default: return "token";
        }
}

static void fail_status(struct oci_pull *p, struct rq *q, long status)
{
        _cleanup_free_ char *m = answer_message(q);
        fail(p, status == 404 ? ENOENT : status == 401 || status == 403 ? EACCES : EIO,
             "registry %s: %s '%s': HTTP %ld%s%s", host_of(p), what_of(&q->w), q->w.what, status, m ? ": " : "",
             m ? m : "");
}

static bool is_tls_error(int code)
{
        return code == CURLE_SSL_CONNECT_ERROR || code == CURLE_PEER_FAILED_VERIFICATION ||
               code == CURLE_SSL_CACERT_BADFILE || code == CURLE_SSL_CERTPROBLEM;
}

static void fail_transport(struct oci_pull *p, struct rq *q, CURLcode code)
{
        const char *why = q->errbuf[0] ? q->errbuf : curl_easy_strerror(code);
        if (q->too_big)
                fail(p, EFBIG, "registry %s: %s '%s': larger than %llu bytes%s", host_of(p), what_of(&q->w), q->w.what,
                     (unsigned long long) q->limit, q->w.kind == RQ_LAYER ? " (the size its manifest gives)" : "");
        else if (q->write_errno)
                fail(p, q->write_errno, "write %s '%s': %s", what_of(&q->w), q->w.what, strerror(q->write_errno));
        else if (is_tls_error(code) && !p->insecure)
                fail(p, EPROTO,
                     "registry %s: TLS failed (%s); if it is trusted, put its CA in /etc/containers/certs.d/%s/ca.crt; "
                     "if it serves plain HTTP, mark it insecure (--tls-verify=false or insecure = true in registries.conf)",
                     host_of(p), why, host_of(p));
        else
                fail(p, EIO, "registry %s: %s '%s': %s", host_of(p), what_of(&q->w), q->w.what, why);
}

/* ------------------------------------------------------------ auth */

static void on_token(struct oci_pull *p, struct rq *q, long status)
{
        p->token_pending = false;
        if (status == 401 || status == 403) {
                _cleanup_free_ char *m = answer_message(q);
                if (p->have_creds)
                        fail(p, EACCES, "registry %s: authentication failed for user '%s' (credentials from %s): token server answered HTTP %ld%s%s",
                             host_of(p), p->creds.user, p->creds.source, status, m ? ": " : "", m ? m : "");
                else
                        fail(p, EACCES, "registry %s: the token server refused anonymous access (HTTP %ld); log in first (no credentials for %s in $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json or ~/.docker/config.json)",
                             host_of(p), status, p->ref.domain);
                return;
        }
        if (status < 200 || status >= 300)
                return fail_status(p, q, status);
        _cleanup_yajl_tree_ yajl_val v = yajl_tree_parse(q->body.buf, NULL, 0);
        const char *tp[] = { "token", NULL }, *ap[] = { "access_token", NULL };
        yajl_val t = v ? yajl_tree_get(v, tp, yajl_t_string) : NULL;
        if (!t || !*YAJL_GET_STRING(t))
                t = v ? yajl_tree_get(v, ap, yajl_t_string) : NULL;
        if (!t || !*YAJL_GET_STRING(t))
                return fail(p, EPROTO, "registry %s: the token server's answer has no token", host_of(p));
        free(p->authz);
        p->authz = xasprintf("Authorization: Bearer %s", YAJL_GET_STRING(t));
        struct want *w = TAKE_PTR(p->waiting);
        size_t n = p->n_waiting;
        p->n_waiting = 0;
        for (size_t i = 0; i < n; i++) {
                submit(p, w[i].kind, w[i].what, w[i].layer, w[i].auth_retries);
                free(w[i].what);
        }
        free(w);
}

static char *token_url(struct oci_pull *p, const struct oci_challenge *c)
{
        struct strbuf u = STRBUF_INIT;
        strbuf_addstr(&u, c->realm);
        char sep = strchr(c->realm, '?') ? '&' : '?';
        if (c->service) {
                _cleanup_curl_free_ char *s = curl_easy_escape(NULL, c->service, 0);
                strbuf_addf(&u, "%cservice=%s", sep, s);
                sep = '&';
        }
        _cleanup_free_ char *def = xasprintf("repository:%s:pull", p->ref.path);
        _cleanup_curl_free_ char *sc = curl_easy_escape(NULL, c->scope ? c->scope : def, 0);
        strbuf_addf(&u, "%cscope=%s", sep, sc);
        return strbuf_detach(&u, NULL);
}

/* A 401: authenticate as the challenge says, then repeat q's request. */
static bool try_next_endpoint(struct oci_pull *p, struct rq *q, CURLcode code, long status);

static void on_unauthorized(struct oci_pull *p, struct rq *q)
{
        if (q->w.auth_retries >= MAX_AUTH_RETRIES || !q->www_auth) {
                if (try_next_endpoint(p, q, CURLE_OK, 401)) /* a mirror that refuses us: the next one, or the registry */
                        return;
                if (p->have_creds)
                        return fail(p, EACCES, "registry %s: authentication failed for user '%s' (credentials from %s): HTTP 401",
                                    host_of(p), p->creds.user, p->creds.source);
                return fail_status(p, q, 401);
        }
        struct oci_challenge c;
        hm_error_t e = NULL;
        if (oci_challenge_parse(q->www_auth, &c, &e) < 0) {
                hm_error_wrap(&e, "registry %s", host_of(p));
                return fail_err(p, &e);
        }
        if (!strcmp(c.scheme, "basic")) {
                oci_challenge_release(&c);
                if (!p->have_creds && try_next_endpoint(p, q, CURLE_OK, 401))
                        return;
                if (!p->have_creds)
                        return fail(p, EACCES, "registry %s requires a login: no credentials for %s in $REGISTRY_AUTH_FILE, $XDG_RUNTIME_DIR/containers/auth.json or ~/.docker/config.json",
                                    host_of(p), p->ref.domain);
                if (p->authz && str_has_prefix(p->authz, "Authorization: Basic ") && try_next_endpoint(p, q, CURLE_OK, 401))
                        return;
                if (p->authz && str_has_prefix(p->authz, "Authorization: Basic "))
                        return fail(p, EACCES, "registry %s: authentication failed for user '%s' (credentials from %s): HTTP 401",
                                    host_of(p), p->creds.user, p->creds.source);
                _cleanup_free_ char *up = xasprintf("%s:%s", p->creds.user, p->creds.password);
                _cleanup_free_ char *b = oci_base64_encode(up, strlen(up));
                explicit_bzero(up, strlen(up));
                free(p->authz);
                p->authz = xasprintf("Authorization: Basic %s", b);
                explicit_bzero(b, strlen(b));
                return submit(p, q->w.kind, q->w.what, q->w.layer, q->w.auth_retries + 1);
        }
        if (strcmp(c.scheme, "bearer")) {
                fail(p, EPROTO, "registry %s: unsupported authentication scheme '%s'", host_of(p), c.scheme);
                oci_challenge_release(&c);
                return;
        }
        /* a login goes to the token server: not in clear when the registry itself is reached over TLS */
        if (p->have_creds && !p->plain_http && !p->insecure && !str_has_prefix(c.realm, "https://")) {
                _cleanup_free_ char *realm = printable(xstrdup(c.realm));
                fail(p, EPROTO, "registry %s: its token server '%s' is not HTTPS; the login from %s is not sent in clear "
                                "(mark the registry insecure to allow it)", host_of(p), realm, p->creds.source);
                oci_challenge_release(&c);
                return;
        }
        p->waiting = xreallocarray(p->waiting, p->n_waiting + 1, sizeof *p->waiting);
        p->waiting[p->n_waiting++] = (struct want) { q->w.kind, xstrdup(q->w.what), q->w.layer, q->w.auth_retries + 1 };
        if (!p->token_pending) {
                p->token_pending = true;
                _cleanup_free_ char *url = token_url(p, &c);
                submit(p, RQ_TOKEN, url, 0, 0);
        }
        oci_challenge_release(&c);
}

/* ------------------------------------------------------------ manifests and config */

static void sha256_hex(const void *data, size_t n, char out[65])
{
        struct sha256 h;
        sha256_init(&h);
        sha256_update(&h, data, n);
        sha256_final_hex(&h, out);
}

/*
 * The endpoint about to be tried: its credentials, CAs and insecure flag.
 * A mirror is another server: it gets its own, looked up by its host (its
 * registries.conf table's `insecure`, certs.d/HOST, an auth entry for HOST),
 * never the registry's login.
 */
static int endpoint_enter(struct oci_pull *p, hm_error_t *err)
{
        const char *ep = host_of(p);
        bool mirror = p->endpoints[p->endpoint + 1] != NULL;
        _cleanup_free_ char *host = xstrndup(ep, strcspn(ep, "/"));
        const char *domain = mirror ? host : p->ref.domain;
        oci_creds_release(&p->creds);
        strbuf_release(&p->ca);
        free(p->authz);
        p->authz = NULL;
        p->have_creds = false;
        p->insecure = p->tls_verify_off || (mirror ? p->conf.mirrors_insecure[p->endpoint] : p->conf.insecure);
        int r = oci_creds_lookup(domain, &p->creds, err);
        if (r < 0)
                return r;
        p->have_creds = r > 0;
        size_t n_extra = 0;
        return oci_registry_ca_bundle(domain, &p->ca, &n_extra, err);
}

static bool try_next_endpoint(struct oci_pull *p, struct rq *q, CURLcode code, long status)
{
        if (q->w.kind != RQ_MANIFEST || p->index_depth > 0 || !p->endpoints[p->endpoint + 1])
                return false;
        if (code != CURLE_OK)
                strbuf_addf(&p->tried, "%s: %s; ", host_of(p), q->errbuf[0] ? q->errbuf : curl_easy_strerror(code));
        else
                strbuf_addf(&p->tried, "%s: HTTP %ld; ", host_of(p), status);
        p->endpoint++;
        p->plain_http = false;
        hm_error_t e = NULL;
        if (endpoint_enter(p, &e) < 0) {
                fail_err(p, &e);
                return true;
        }
        submit(p, RQ_MANIFEST, q->w.what, 0, 0);
        return true;
}

static void on_manifest(struct oci_pull *p, struct rq *q, long status)
{
        if (status < 200 || status >= 300) {
                if (try_next_endpoint(p, q, CURLE_OK, status))
                        return;
                return fail_status(p, q, status);
        }
        char hex[65];
        sha256_hex(q->body.buf, q->body.len, hex);
        const char *want = oci_digest_hex(q->w.what);
        if (want && strcmp(want, hex))
                return fail(p, EBADMSG, "registry %s: manifest '%s': digest mismatch (received content is sha256:%s)",
                            host_of(p), q->w.what, hex);
        if (q->docker_digest && oci_digest_hex(q->docker_digest) && strcmp(oci_digest_hex(q->docker_digest), hex))
                return fail(p, EBADMSG, "registry %s: manifest '%s': Docker-Content-Digest %s but the content is sha256:%s",
                            host_of(p), q->w.what, q->docker_digest, hex);
        struct oci_manifest m;
        hm_error_t e = NULL;
        if (oci_manifest_parse(q->body.buf, q->body.len, q->content_type, &m, &e) < 0) {
                hm_error_wrap(&e, "registry %s: %s", host_of(p), q->w.what);
                return fail_err(p, &e);
        }
        oci_manifest_release(&p->manifest);
        p->manifest = m;
        free(p->manifest_text);
        p->manifest_text = strbuf_detach(&q->body, &p->manifest_len);
        strbuf_init(&q->body, 0);
        free(p->manifest_digest);
        p->manifest_digest = xasprintf("sha256:%s", hex);
        on_manifest_ok(p, q);
}

static void on_manifest_ok(struct oci_pull *p, struct rq *q)
{
        if (p->manifest.is_index) {
                if (++p->index_depth > MAX_INDEX_DEPTH)
                        return fail(p, EINVAL, "registry %s: indexes nested deeper than %d", host_of(p), MAX_INDEX_DEPTH);
                hm_error_t e = NULL;
                int i = oci_index_select(&p->manifest, oci_platform_arch(), oci_platform_variant(), &e);
                if (i < 0) {
                        hm_error_wrap(&e, "registry %s: %s", host_of(p), q->w.what);
                        return fail_err(p, &e);
                }
                _cleanup_free_ char *d = xstrdup(p->manifest.entries[i].digest);
                progress(p, "resolved", d, 0, 0, 0);
                return submit(p, RQ_MANIFEST, d, 0, q->w.auth_retries);
        }
        progress(p, "resolved", p->manifest_digest, 0, 0, 0);
        submit(p, RQ_CONFIG, p->manifest.config.digest, 0, q->w.auth_retries);
}

static const char *jstr(yajl_val obj, const char *key)
{
        const char *path[] = { key, NULL };
        yajl_val v = obj ? yajl_tree_get(obj, path, yajl_t_string) : NULL;
        return v ? YAJL_GET_STRING(v) : NULL;
}

static yajl_val jarr(yajl_val obj, const char *key)
{
        const char *path[] = { key, NULL };
        return obj ? yajl_tree_get(obj, path, yajl_t_array) : NULL;
}

static int parse_config(struct oci_pull *p, hm_error_t *err)
{
        char ebuf[128] = "";
        _cleanup_yajl_tree_ yajl_val root = yajl_tree_parse(p->config_text, ebuf, sizeof ebuf);
        if (!root || !YAJL_IS_OBJECT(root))
                return hm_error_set(err, EINVAL, "config %s: not a JSON object", p->manifest.config.digest);
        const char *cp[] = { "config", NULL };
        yajl_val c = yajl_tree_get(root, cp, yajl_t_object);
        struct oci_image_config *ic = &p->img->config;
        ic->env = oci_json_strv(jarr(c, "Env"));
        ic->entrypoint = oci_json_strv(jarr(c, "Entrypoint"));
        ic->cmd = oci_json_strv(jarr(c, "Cmd"));
        ic->workdir = xstrdup(jstr(c, "WorkingDir") ? jstr(c, "WorkingDir") : "");
        ic->user = xstrdup(jstr(c, "User") ? jstr(c, "User") : "");
        const char *dp[] = { "rootfs", "diff_ids", NULL };
        p->diff_ids = oci_json_strv(yajl_tree_get(root, dp, yajl_t_array));
        if (strv_len(p->diff_ids) != p->manifest.n_layers)
                return hm_error_set(err, EINVAL, "config %s: rootfs.diff_ids has %zu entries, the manifest %zu layers",
                                    p->manifest.config.digest, strv_len(p->diff_ids), p->manifest.n_layers);
        for (size_t i = 0; p->diff_ids[i]; i++)
                if (!oci_digest_hex(p->diff_ids[i]))
                        return hm_error_set(err, EINVAL, "config %s: rootfs.diff_ids[%zu]: not a sha256 digest",
                                            p->manifest.config.digest, i);
        return 0;
}

/*
 * Two pulls of different images that share a layer (alpine:3.20 and
 * alpine:latest) must not both download it: each missing layer is locked
 * (locks/layer-<id>) from its download until the image commit puts it in
 * the store.  Locks are taken in id order, so two pulls never wait for each
 * other in a circle; once all are held, layers another pull committed
 * meanwhile are found present.
 */
static void on_blob_timer(struct hm_loop *loop, uint64_t id, void *data);

static int cmp_layer_id(const void *a, const void *b, void *data)
{
        const struct layer *v = data;
        return strcmp(v[*(const size_t *) a].id, v[*(const size_t *) b].id);
}

static void lock_layers(struct oci_pull *p)
{
        if (!p->lock_order) {
                p->lock_order = xcalloc(p->n_layers ? p->n_layers : 1, sizeof *p->lock_order);
                for (size_t i = 0; i < p->n_layers; i++) {
                        bool dup = false;
                        for (size_t j = 0; j < p->n_lock; j++)
                                dup |= !strcmp(p->layers[p->lock_order[j]].id, p->layers[i].id);
                        if (!dup && !oci_store_has_layer(p->s, p->layers[i].id))
                                p->lock_order[p->n_lock++] = i;
                }
                qsort_r(p->lock_order, p->n_lock, sizeof *p->lock_order, cmp_layer_id, p->layers);
        }
        for (; p->lock_next < p->n_lock; p->lock_next++) {
                struct layer *l = &p->layers[p->lock_order[p->lock_next]];
                if (l->lock_fd < 0) {
                        _cleanup_free_ char *path = xasprintf("%s/locks/layer-%s", oci_store_path(p->s), l->id);
                        l->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
                        if (l->lock_fd < 0)
                                return fail(p, errno, "open '%s': %s", path, strerror(errno));
                }
                if (flock(l->lock_fd, LOCK_EX | LOCK_NB) == 0)
                        continue;
                if (errno != EWOULDBLOCK && errno != EINTR)
                        return fail(p, errno, "lock layer %s: %s", l->id, strerror(errno));
                if (!p->blob_timer)
                        progress(p, "waiting", l->d->digest, 0, l->size, (size_t) (l - p->layers) + 1);
                p->blob_timer = hm_loop_add_timer(p->loop, LOCK_RETRY_MS, on_blob_timer, p);
                return;
        }
        for (size_t i = 0; i < p->n_layers; i++) {
                struct layer *l = &p->layers[i];
                if (oci_store_has_layer(p->s, l->id)) {
                        l->state = L_PRESENT;
                        progress(p, "exists", l->d->digest, l->size, l->size, i + 1);
                }
        }
        start_layers(p);
}

static void on_blob_timer(struct hm_loop *loop, uint64_t id, void *data)
{
        struct oci_pull *p = data;
        lock_layers(p);
        if (p->blob_timer == id)
                p->blob_timer = 0;
}

static void on_config(struct oci_pull *p, struct rq *q, long status)
{
        if (status < 200 || status >= 300)
                return fail_status(p, q, status);
        char hex[65];
        sha256_hex(q->body.buf, q->body.len, hex);
        if (strcmp(hex, oci_digest_hex(q->w.what)))
                return fail(p, EBADMSG, "registry %s: config blob '%s': digest mismatch (received content is sha256:%s)",
                            host_of(p), q->w.what, hex);
        p->config_text = strbuf_detach(&q->body, &p->config_len);
        strbuf_init(&q->body, 0);
        p->img->id = xstrdup(q->w.what);
        hm_error_t e = NULL;
        if (parse_config(p, &e) < 0) {
                hm_error_wrap(&e, "registry %s", host_of(p));
                return fail_err(p, &e);
        }
        p->n_layers = p->manifest.n_layers;
        p->layers = xcalloc(p->n_layers, sizeof *p->layers);
        for (size_t i = 0; i < p->n_layers; i++) {
                struct layer *l = &p->layers[i];
                l->p = p;
                l->d = &p->manifest.layers[i];
                l->diff_id = p->diff_ids[i];
                l->size = l->d->size > 0 ? (uint64_t) l->d->size : 0;
                snprintf(l->id, sizeof l->id, "%.16s", oci_digest_hex(l->diff_id));
                l->lock_fd = -1;
        }
        lock_layers(p);
}

/* ------------------------------------------------------------ layers */

static void on_unpacked(void *data, int r, hm_error_t *err, uint64_t bytes)
{
        struct layer *l = data;
        struct oci_pull *p = l->p;
        oci_unpack_job_free(TAKE_PTR(l->job));
        if (p->finished) /* another layer failed: the finish removes the dir */
                return;
        if (r < 0) {
                hm_error_wrap(err, "layer %s", l->d->digest);
                return fail_err(p, err);
        }
        l->state = L_DONE;
        l->size = bytes;
        p->n_active--;
        progress(p, "unpacked", l->d->digest, l->size, l->size, (size_t) (l - p->layers) + 1);
        start_layers(p);
}

/* The blob is verified: its uncompressed digest is checked and it is unpacked by a child, off the loop. */
static void start_unpack(struct oci_pull *p, struct layer *l, const char *blob)
{
        hm_error_t e = NULL;
        int r = oci_store_mkdtemp(p->s, "layer", &l->tmpdir, &e);
        if (r >= 0) {
                struct oci_unpack_args a = { .blob = blob, .diff_id = l->diff_id, .dir = l->tmpdir,
                                             .xattr_prefix = oci_store_xattr_prefix(p->s),
                                             .size_limit = oci_store_size_limit(p->s) };
                r = oci_unpack_job_start(p->loop, &a, on_unpacked, l, &l->job, &e);
        }
        if (r < 0) {
                hm_error_wrap(&e, "layer %s", l->d->digest);
                return fail_err(p, &e);
        }
        l->state = L_UNPACKING;
        progress(p, "unpacking", l->d->digest, 0, l->size, (size_t) (l - p->layers) + 1);
}

static void on_layer(struct oci_pull *p, struct rq *q, long status)
{
        struct layer *l = &p->layers[q->w.layer];
        if (status < 200 || status >= 300)
                return fail_status(p, q, status);
        char hex[65];
        sha256_final_hex(&q->hash, hex);
        if (strcmp(hex, oci_digest_hex(l->d->digest)))
                return fail(p, EBADMSG, "registry %s: layer blob '%s': digest mismatch (received content is sha256:%s)",
                            host_of(p), l->d->digest, hex);
        q->fd = safe_close(q->fd);
        _cleanup_free_ char *part = xasprintf("%s/%s.part", p->workdir, hex);
        _cleanup_free_ char *blob = xasprintf("%s/%s", p->workdir, hex);
        if (rename(part, blob) < 0)
                return fail(p, errno, "rename '%s': %s", part, strerror(errno));
        p->res.n_downloaded++;
        p->res.bytes_downloaded += q->got;
        progress(p, "verified", l->d->digest, q->got, l->size ? l->size : q->got, q->w.layer + 1);
        start_unpack(p, l, blob);
}

static void commit(struct oci_pull *p);

static void start_layers(struct oci_pull *p)
{
        bool all_done = true;
        for (size_t i = 0; i < p->n_layers && !p->finished; i++) {
                struct layer *l = &p->layers[i];
                /* the same blob twice in one image is downloaded once */
                for (size_t j = 0; l->state == L_PENDING && j < i; j++)
                        if (!strcmp(p->layers[j].id, l->id))
                                l->state = L_PRESENT;
                if (l->state == L_PENDING && p->n_active < p->max_parallel) {
                        l->state = L_ACTIVE;
                        p->n_active++;
                        progress(p, "download", l->d->digest, 0, l->size, i + 1);
                        submit(p, RQ_LAYER, l->d->digest, i, 0);
                }
                all_done &= l->state == L_DONE || l->state == L_PRESENT;
        }
        if (all_done && !p->finished)
                commit(p);
}

static int commit_locked(struct oci_pull *p, hm_error_t *err)
{
        for (size_t i = 0; i < p->n_layers; i++) {
                struct layer *l = &p->layers[i];
                if (l->tmpdir) {
                        struct oci_layer_meta m = { .kind = OCI_LAYER_IMAGE, .created = time(NULL), .size = l->size,
                                                    .diff_id = (char *) l->diff_id };
                        memcpy(m.id, l->id, sizeof m.id);
                        int r = oci_store_add_layer_locked(p->s, l->tmpdir, &m, err);
                        if (r < 0)
                                return r;
                        free(l->tmpdir);
                        l->tmpdir = NULL;
                }
                if (!oci_store_has_layer(p->s, l->id))
                        return hm_error_set(err, ENOENT, "layer %s vanished from the store during the pull", l->id);
                struct oci_layer_meta *m = NULL;
                hm_error_t e = NULL;
                if (oci_store_layer_meta(p->s, l->id, &m, &e) == 0) {
                        p->img->size += m->size;
                        oci_layer_meta_free(m);
                }
                hm_error_release(&e);
                strv_push(&p->img->layers, l->id);
                strv_push(&p->img->diff_ids, l->diff_id);
        }
        int r = oci_store_put_blob(p->s, oci_digest_hex(p->img->id), p->config_text, p->config_len, err);
        if (r >= 0)
                r = oci_store_put_blob(p->s, oci_digest_hex(p->manifest_digest), p->manifest_text, p->manifest_len, err);
        if (r >= 0)
                r = oci_store_image_put_locked(p->s, p->img, err);
        return r;
}

static void on_commit_timer(struct hm_loop *loop, uint64_t id, void *data)
{
        struct oci_pull *p = data;
        p->commit_timer = 0;
        if (!p->finished)
                commit(p);
}

/*
 * The store lock is only tried: another hm may hold it for long (a gc, a
 * reap, a commit waiting on a slow disk), and a blocking flock() here held
 * the whole loop, signals included, until it let go.
 */
static void commit(struct oci_pull *p)
{
        hm_error_t e = NULL;
        int r = oci_store_trylock(p->s, &e);
        if (r == 0) {
                if (!p->store_wait_said)
                        progress(p, "store-locked", NULL, 0, 0, 0);
                p->store_wait_said = true;
                p->commit_timer = hm_loop_add_timer(p->loop, OCI_STORE_LOCK_RETRY_MS, on_commit_timer, p);
                return;
        }
        if (r > 0) {
                r = commit_locked(p, &e);
                hm_error_t e2 = NULL;
                if (r < 0 && oci_store_gc(p->s, &e2) < 0) /* layers added before the failure are unreferenced */
                        hm_error_release(&e2);
                oci_store_unlock(p->s);
        }
        if (r < 0)
                return fail_err(p, &e);
        p->committed = true;
        p->res.id = xstrdup(p->img->id);
        p->res.manifest_digest = xstrdup(p->manifest_digest);
        p->res.n_layers = p->n_layers;
        progress(p, "done", p->manifest_digest, p->res.bytes_downloaded, 0, 0);
        succeed(p);
}

/* ------------------------------------------------------------ completion */

/* A transfer ended (hm_curl_done_fn). */
static void complete(CURL *easy, void *priv, CURLcode code, void *data)
{
        struct oci_pull *p = data;
        struct rq *q = priv;
        if (!q)
                return;
        long status = rq_status(q);
        if (p->finished) {
                rq_free(q);
                return;
        }
        if (code != CURLE_OK && p->insecure && !p->plain_http && q->w.kind == RQ_MANIFEST && q->w.auth_retries == 0 &&
            p->index_depth == 0) {
                /* an insecure registry that does not speak TLS: ask again over plain HTTP */
                p->plain_http = true;
                submit(p, RQ_MANIFEST, q->w.what, 0, 0);
        } else if (code != CURLE_OK) {
                if (!try_next_endpoint(p, q, code, status))
                        fail_transport(p, q, code);
        } else if (status == 401 && q->w.kind != RQ_TOKEN) {
                on_unauthorized(p, q);
        } else {
                switch (q->w.kind) {
                case RQ_MANIFEST: on_manifest(p, q, status); break;
                case RQ_CONFIG: on_config(p, q, status); break;
                case RQ_LAYER: on_layer(p, q, status); break;
                case RQ_TOKEN: on_token(p, q, status); break;
                }
        }
        rq_free(q);
}

/* ------------------------------------------------------------ life cycle */

/* Unpack children killed and reaped, then their dirs removed, then the layer locks released. */
static void layers_abandon(struct oci_pull *p)
{
        for (size_t i = 0; i < p->n_layers; i++) {
                struct layer *l = &p->layers[i];
                oci_unpack_job_free(TAKE_PTR(l->job));
                if (l->tmpdir)
                        (void) rm_rf(l->tmpdir);
                free(l->tmpdir);
                l->tmpdir = NULL;
                l->lock_fd = safe_close(l->lock_fd);
        }
}

static void pull_free(struct oci_pull *p)
{
        while (p->rqs)
                rq_free(p->rqs);
        hm_curl_loop_free(p->cl);
        if (p->finish_timer)
                hm_loop_del_timer(p->loop, p->finish_timer);
        if (p->lock_timer)
                hm_loop_del_timer(p->loop, p->lock_timer);
        if (p->blob_timer)
                hm_loop_del_timer(p->loop, p->blob_timer);
        if (p->commit_timer)
                hm_loop_del_timer(p->loop, p->commit_timer);
        layers_abandon(p);
        free(p->layers);
        free(p->lock_order);
        if (p->workdir)
                (void) rm_rf(p->workdir);
        free(p->workdir);
        safe_close(p->lock_fd);
        oci_ref_release(&p->ref);
        free(p->canon);
        free(p->name);
        oci_registry_conf_release(&p->conf);
        oci_creds_release(&p->creds);
        strbuf_release(&p->ca);
        strbuf_release(&p->tried);
        strv_free(p->endpoints);
        if (p->authz)
                explicit_bzero(p->authz, strlen(p->authz));
        free(p->authz);
        for (size_t i = 0; i < p->n_waiting; i++)
                free(p->waiting[i].what);
        free(p->waiting);
        oci_manifest_release(&p->manifest);
        free(p->manifest_text);
        free(p->manifest_digest);
        free(p->config_text);
        oci_image_free(p->img);
        strv_free(p->diff_ids);
        oci_pull_result_release(&p->res);
        hm_error_release(&p->err);
        free(p);
}

static void on_finish_timer(struct hm_loop *loop, uint64_t id, void *data)
{
        struct oci_pull *p = data;
        p->finish_timer = 0;
        oci_pull_done_fn done = p->done;
        void *done_data = p->done_data;
        if (p->rc < 0 && p->tried.len) {
                p->tried.len -= 2; /* the last "; " */
                p->tried.buf[p->tried.len] = 0;
                hm_error_wrap(&p->err, "pull '%s' (mirrors tried first: %s)", p->canon, p->tried.buf);
        } else if (p->rc < 0) {
                hm_error_wrap(&p->err, "pull '%s'", p->canon);
        }
        p->res.name = xstrdup(p->name);
        /* tmp/ goes before the caller hears of the end, so it sees a clean store */
        while (p->rqs)
                rq_free(p->rqs);
        layers_abandon(p);
        if (p->workdir)
                (void) rm_rf(p->workdir);
        free(p->workdir);
        p->workdir = NULL;
        p->lock_fd = safe_close(p->lock_fd);
        done(done_data, p->rc, &p->err, &p->res);
        pull_free(p);
}

void oci_pull_cancel(struct oci_pull *p)
{
        if (p)
                pull_free(p);
}

bool oci_pull_committed(const struct oci_pull *p)
{
        return p && p->committed;
}

static const char *state_word(enum layer_state st)
{
        switch (st) {
        case L_ACTIVE: return "downloading";
        case L_UNPACKING: return "unpacking";
        case L_DONE: return "unpacked";
        default: return "not started";
        }
}

char *oci_pull_describe_stop(const struct oci_pull *p)
{
        if (!p)
                return xstrdup("nothing kept: the pull had not started");
        if (p->committed)
                return xasprintf("the image was stored before the stop: %s is in the store (id %.19s)", p->name,
                                 p->img->id);
        if (!p->layers)
                return xstrdup("the image was not stored, nothing kept: its layers were not known yet");
        size_t kept = 0;
        struct strbuf lost = STRBUF_INIT;
        for (size_t i = 0; i < p->n_layers; i++) {
                const struct layer *l = &p->layers[i];
                if (oci_store_has_layer(p->s, l->id)) {
                        kept++;
                        continue;
                }
                strbuf_addf(&lost, "%slayer %zu/%zu %.19s (%s)", lost.len ? ", " : "", i + 1, p->n_layers,
                            l->d->digest, state_word(l->state));
        }
        char *msg = xasprintf("the image was not stored; kept: %zu of %zu layers (in the store); not kept: %s", kept,
                              p->n_layers, lost.len ? lost.buf : "none");
        strbuf_release(&lost);
        return msg;
}

static void begin(struct oci_pull *p)
{
        if (p->if_missing) {
                struct oci_image *img = NULL;
                hm_error_t e = NULL;
                if (oci_store_image_get(p->s, p->name, &img, &e) == 0) {
                        p->res.existed = true;
                        p->res.id = xstrdup(img->id);
                        p->res.n_layers = strv_len(img->layers);
                        oci_image_free(img);
                        progress(p, "done", NULL, 0, 0, 0);
                        return succeed(p);
                }
                hm_error_release(&e);
        }
        hm_error_t e = NULL;
        if (oci_store_mkdtemp(p->s, "pull", &p->workdir, &e) < 0)
                return fail_err(p, &e);
        submit(p, RQ_MANIFEST, oci_ref_api_reference(&p->ref), 0, 0);
}

static void on_lock_timer(struct hm_loop *loop, uint64_t id, void *data);

static void try_lock(struct oci_pull *p)
{
        if (flock(p->lock_fd, LOCK_EX | LOCK_NB) == 0)
                return begin(p);
        if (errno != EWOULDBLOCK && errno != EINTR)
                return fail(p, errno, "lock the pull of '%s': %s", p->name, strerror(errno));
        if (!p->lock_timer)
                progress(p, "waiting", NULL, 0, 0, 0);
        p->lock_timer = hm_loop_add_timer(p->loop, LOCK_RETRY_MS, on_lock_timer, p);
}

static void on_lock_timer(struct hm_loop *loop, uint64_t id, void *data)
{
        struct oci_pull *p = data;
        try_lock(p);
        if (p->lock_timer == id)
                p->lock_timer = 0;
}

static int open_lock(struct oci_pull *p, hm_error_t *err)
{
        _cleanup_free_ char *dir = xasprintf("%s/locks", oci_store_path(p->s));
        if (mkdir(dir, 0700) < 0 && errno != EEXIST)
                return hm_error_set(err, errno, "create '%s': %s", dir, strerror(errno));
        char hex[65];
        sha256_hex(p->name, strlen(p->name), hex);
        _cleanup_free_ char *path = xasprintf("%s/pull-%.16s", dir, hex);
        p->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        return p->lock_fd < 0 ? hm_error_set(err, errno, "open '%s': %s", path, strerror(errno)) : 0;
}

static int configure(struct oci_pull *p, const struct oci_pull_options *o, hm_error_t *err)
{
        int r = oci_ref_parse(o->ref, &p->ref, err);
        if (r < 0)
                return r;
        p->canon = oci_ref_string(&p->ref);
        p->name = o->name ? oci_image_normalize_name(o->name) : oci_image_normalize_name(p->canon);
        if (!strcmp(p->name, OCI_HOST_IMAGE))
                return hm_error_set(err, EINVAL, "image name '%s' is reserved for the host filesystem", p->name);
        r = oci_registry_conf_get(p->ref.domain, &p->conf, err);
        if (r < 0)
                return r;
        for (size_t i = 0; p->conf.mirrors && p->conf.mirrors[i]; i++)
                strv_push(&p->endpoints, p->conf.mirrors[i]);
        /* Docker Hub's API host is not its name */
        strv_push(&p->endpoints, strcmp(p->ref.domain, "docker.io") ? p->ref.domain : "registry-1.docker.io");
        return endpoint_enter(p, err);
}

int oci_pull_start(struct hm_loop *loop, struct oci_store *s, const struct oci_pull_options *o, oci_pull_done_fn done,
                   void *data, struct oci_pull **ret, hm_error_t *err)
{
        struct oci_pull *p = xzalloc(sizeof *p);
        p->loop = loop;
        p->s = s;
        p->lock_fd = -1;
        p->tls_verify_off = o->tls_verify_off;
        p->if_missing = o->if_missing;
        p->max_parallel = o->max_parallel ? o->max_parallel : 3;
        p->on_progress = o->on_progress;
        p->progress_data = o->data;
        p->done = done;
        p->done_data = data;
        strbuf_init(&p->ca, 0);
        strbuf_init(&p->tried, 0);
        p->img = xzalloc(sizeof *p->img);
        p->img->created = time(NULL);
        p->img->layers = xcalloc(1, sizeof(char *));
        p->img->diff_ids = xcalloc(1, sizeof(char *));
        int r = configure(p, o, err);
        if (r >= 0)
                r = open_lock(p, err);
        if (r >= 0)
                r = hm_curl_loop_new(loop, complete, NULL, p, &p->cl, err);
        if (r < 0) {
                pull_free(p);
                return r;
        }
        p->img->name = xstrdup(p->name);
        try_lock(p);
        if (ret)
                *ret = p;
        return 0;
}
