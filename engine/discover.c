/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Socket discovery and engine detection (engine-api.md §2-§3): one blocking
 * GET /_ping per candidate, before the loop runs.
 */
#include <strings.h>

#include "engine/http.h"
#include "engine/internal.h"
#include "lib/strbuf.h"
#include "lib/util.h"

#define PING_TIMEOUT_MS 10000

struct candidate {
        char *path;        /* NULL when the variable was unusable (see bad) */
        const char *origin;
        enum eng_kind hint;
        char *bad;         /* why this candidate cannot be tried (non-unix DOCKER_HOST) */
};

struct candidates {
        struct candidate c[8];
        size_t n;
};

static void candidates_release(struct candidates *cs)
{
        for (size_t i = 0; i < cs->n; i++) {
                free(cs->c[i].path);
                free(cs->c[i].bad);
        }
        cs->n = 0;
}

const char *eng_kind_name(enum eng_kind k)
{
        return k == ENG_DOCKER ? "docker" : k == ENG_PODMAN ? "podman" : "container";
}

void eng_found_release(struct eng_found *f)
{
        free(f->version);
        free(f->socket);
        free(f->origin);
        free(f->prefix);
        *f = (struct eng_found){ 0 };
}

static void add_candidate(struct candidates *cs, const char *path, const char *origin, enum eng_kind hint)
{
        for (size_t i = 0; i < cs->n; i++)
                if (cs->c[i].path && path && strcmp(cs->c[i].path, path) == 0)
                        return;
        if (cs->n < ARRAY_SIZE(cs->c))
                cs->c[cs->n++] = (struct candidate){ .path = xstrdup(path), .origin = origin, .hint = hint };
}

/* $DOCKER_HOST / $CONTAINER_HOST: only unix:// is supported. */
static int add_env_candidate(struct candidates *cs, const char *var, enum eng_kind hint, enum eng_kind want,
                             hm_error_t *err)
{
        const char *v = getenv(var);
        if (!v || !*v)
                return 0;
        if (str_has_prefix(v, "unix://") && v[7] == '/') {
                add_candidate(cs, v + 7, var[0] == 'D' ? "$DOCKER_HOST" : "$CONTAINER_HOST", hint);
                return 0;
        }
        /* a remote engine the user asked for must not silently become a local one */
        if (want == ENG_ANY || want == hint)
                return hm_error_set(err, EINVAL, "$%s '%s': only unix:///path sockets are supported", var, v);
        return 0;
}

static int collect(const struct engine_options *opts, enum eng_kind want, struct candidates *cs, hm_error_t *err)
{
        if (opts->socket) {
                const char *p = str_has_prefix(opts->socket, "unix://") ? opts->socket + 7 : opts->socket;
                add_candidate(cs, p, "--socket", ENG_ANY);
                return 0;
        }
        _cleanup_free_ char *xdg = NULL;
        const char *rt = getenv("XDG_RUNTIME_DIR");
        if (rt && *rt)
                xdg = xasprintf("%s/podman/podman.sock", rt);

        /* a wanted kind tries only its own candidates; "any" keeps the documented order */
        int r = 0;
        if (want == ENG_PODMAN) {
                r = add_env_candidate(cs, "CONTAINER_HOST", ENG_PODMAN, want, err);
                add_candidate(cs, "/run/podman/podman.sock", "default", ENG_PODMAN);
                if (xdg)
                        add_candidate(cs, xdg, "$XDG_RUNTIME_DIR", ENG_PODMAN);
                return r;
        }
        r = add_env_candidate(cs, "DOCKER_HOST", ENG_DOCKER, want, err);
        if (want == ENG_DOCKER) {
                add_candidate(cs, "/var/run/docker.sock", "default", ENG_DOCKER);
                return r;
        }
        if (r >= 0)
                r = add_env_candidate(cs, "CONTAINER_HOST", ENG_PODMAN, want, err);
        add_candidate(cs, "/var/run/docker.sock", "default", ENG_DOCKER);
        add_candidate(cs, "/run/podman/podman.sock", "default", ENG_PODMAN);
        if (xdg)
                add_candidate(cs, xdg, "$XDG_RUNTIME_DIR", ENG_PODMAN);
        return r;
}

/* Value of header `name` in raw header lines (heap), or NULL. */
static char *header_value(const struct strbuf *hdrs, const char *name)
{
        size_t nl = strlen(name);
        const char *p = hdrs->buf;
        while (p && *p) {
                const char *eol = strchr(p, '\n');
                size_t len = eol ? (size_t) (eol - p) : strlen(p);
                if (len > nl && strncasecmp(p, name, nl) == 0 && p[nl] == ':') {
                        const char *v = p + nl + 1;
                        size_t vl = len - nl - 1;
                        while (vl && (*v == ' ' || *v == '\t'))
                                v++, vl--;
                        while (vl && (v[vl - 1] == '\r' || v[vl - 1] == ' '))
                                vl--;
                        return xstrndup(v, vl);
                }
                p = eol ? eol + 1 : NULL;
        }
        return NULL;
}

/* "/v" + min(1.41, api) */
static char *api_prefix(const char *api)
{
        unsigned maj = 0, min = 0;
        if (!api || sscanf(api, "%u.%u", &maj, &min) != 2)
                return xstrdup("");
        if (maj > 1 || (maj == 1 && min > 41))
                maj = 1, min = 41;
        return xasprintf("/v%u.%u", maj, min);
}

/* Ping one socket: 0 and *ret filled when an engine answered, else < 0 with the reason in err. */
static int ping(const char *path, struct eng_found *ret, hm_error_t *err)
{
        struct eng_response resp = { 0 };
        struct strbuf hdrs = STRBUF_INIT;
        int r = eng_http_perform_blocking(path, "GET", "/_ping", PING_TIMEOUT_MS, &resp, &hdrs, err);
        if (r >= 0 && !eng_response_ok(&resp)) {
                _cleanup_free_ char *m = eng_response_error(&resp);
                r = hm_error_set(err, resp.os_errno ? resp.os_errno : EPROTO, "%s", m);
        }
        if (r >= 0) {
                _cleanup_free_ char *server = header_value(&hdrs, "Server");
                _cleanup_free_ char *libpod = header_value(&hdrs, "Libpod-Api-Version");
                _cleanup_free_ char *api = header_value(&hdrs, "Api-Version");
                bool podman = libpod || (server && str_has_prefix(server, "Libpod/"));
                ret->kind = podman ? ENG_PODMAN : ENG_DOCKER;
                if (libpod)
                        ret->version = TAKE_PTR(libpod);
                else if (server && strchr(server, '/'))
                        ret->version = xstrndup(strchr(server, '/') + 1, strcspn(strchr(server, '/') + 1, " "));
                else
                        ret->version = xstrdup("unknown version");
                ret->prefix = api_prefix(api);
                ret->socket = xstrdup(path);
        }
        eng_response_release(&resp);
        strbuf_release(&hdrs);
        return r;
}

static void describe_candidate(struct strbuf *why, const struct candidate *c, const char *reason)
{
        if (why->len)
                strbuf_addstr(why, "; ");
        if (strcmp(c->origin, "default") == 0)
                strbuf_addf(why, "%s: %s", c->path, reason);
        else if (strcmp(c->origin, "--socket") == 0)
                strbuf_addf(why, "--socket %s: %s", c->path, reason);
        else
                strbuf_addf(why, "%s unix://%s: %s", c->origin, c->path, reason);
}

static enum eng_kind parse_kind(const char *k)
{
        if (k && strcmp(k, "docker") == 0)
                return ENG_DOCKER;
        if (k && strcmp(k, "podman") == 0)
                return ENG_PODMAN;
        return ENG_ANY;
}

int eng_discover(const struct engine_options *opts, struct eng_found *ret, hm_error_t *err)
{
        enum eng_kind want = parse_kind(opts->kind);
        struct candidates cs = { .n = 0 };
        int r = collect(opts, want, &cs, err);
        if (r < 0) {
                candidates_release(&cs);
                return r;
        }
        _cleanup_strbuf_ struct strbuf why = STRBUF_INIT;
        for (size_t i = 0; i < cs.n; i++) {
                struct eng_found f = { 0 };
                hm_error_t perr = NULL;
                if (ping(cs.c[i].path, &f, &perr) < 0) {
                        describe_candidate(&why, &cs.c[i], perr->msg);
                        hm_error_release(&perr);
                        continue;
                }
                if (want != ENG_ANY && f.kind != want) {
                        _cleanup_free_ char *m = xasprintf("%s %s answered", eng_kind_name(f.kind), f.version);
                        describe_candidate(&why, &cs.c[i], m);
                        eng_found_release(&f);
                        continue;
                }
                f.origin = xstrdup(cs.c[i].origin);
                *ret = f;
                candidates_release(&cs);
                return 0;
        }
        candidates_release(&cs);
        return hm_error_set(err, ENOENT, "no %s engine answered: %s", want == ENG_ANY ? "docker or podman" : eng_kind_name(want),
                            why.len ? why.buf : "no socket to try");
}
