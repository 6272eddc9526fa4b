/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Owner-aware reaping on an engine (see engine/reap.h): list containers and
 * images by label (engine-api.md §4.5, §5.8: the filter JSON percent-encoded),
 * judge each owner (oci/owner.h: pid, starttime, pid namespace, boot id),
 * remove what dead owners left (§5.6, §4.7), list what foreign ones left.  Blocking requests only: this runs before any loop.
 */
#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#include <yajl/yajl_tree.h>

#include "engine/http.h"
#include "engine/internal.h"
#include "engine/reap.h"
#include "lib/handles.h"
#include "lib/strbuf.h"
#include "lib/util.h"
#include "oci/owner.h"
#include "oci/store.h"

#define REAP_TIMEOUT_MS 60000
#define REAP_RETRIES 10
#define REAP_RETRY_NS 200000000L

static const char *const cache_repos[] = { "localhost/harmont-cache/", "harmont-cache/",
                                           "docker.io/library/harmont-cache/" };

struct reap_ctx {
        const char *socket;
        const char *prefix; /* "/v1.41", or "" for the engine's own version */
        long timeout_ms;    /* per request */
        bool dry_run;
        char **removed;
        char **left;         /* objects of owners in pid namespaces we cannot see into */
        char **live_runs;    /* hm.run of containers whose owner is alive */
        char **foreign_runs; /* hm.run of containers whose owner is foreign */
        hm_error_t first;    /* first per-object failure; the others are dropped */
};

/* ---------------------------------------------------------------- owners */

bool engine_owner_alive(const char *owner)
{
        struct hm_owner o;
        return owner_parse(owner, &o) && owner_judge(&o, NULL) == OWNER_ALIVE;
}

/* ---------------------------------------------------------------- JSON */

static const char *obj_str(yajl_val obj, const char *key)
{
        const char *path[] = { key, NULL };
        yajl_val v = obj ? yajl_tree_get(obj, path, yajl_t_string) : NULL;
        return v ? YAJL_GET_STRING(v) : NULL;
}

static const char *label(yajl_val obj, const char *key)
{
        const char *path[] = { "Labels", NULL };
        yajl_val labels = yajl_tree_get(obj, path, yajl_t_object);
        return labels ? obj_str(labels, key) : NULL;
}

static int64_t obj_int(yajl_val obj, const char *key)
{
        const char *path[] = { key, NULL };
        yajl_val v = yajl_tree_get(obj, path, yajl_t_number);
        return v && YAJL_IS_INTEGER(v) ? YAJL_GET_INTEGER(v) : 0;
}

/* ---------------------------------------------------------------- requests */

/* Record a per-object failure; the first one is what engine_reap() returns. */
static void note_failure(struct reap_ctx *c, hm_error_t *e)
{
        if (!c->first)
                c->first = *e;
        else
                hm_error_release(e);
        *e = NULL;
}

/* GET a JSON array; *ret is the parsed tree. */
static int get_list(struct reap_ctx *c, const char *what, const char *filter_json, yajl_val *ret, hm_error_t *err)
{
        _cleanup_free_ char *f = eng_escape(filter_json);
        _cleanup_free_ char *path = xasprintf("%s/%s/json?%sfilters=%s", c->prefix, what,
                                              strcmp(what, "containers") == 0 ? "all=1&" : "", f);
        struct eng_response resp = { 0 };
        int r = eng_http_perform_blocking(c->socket, "GET", path, c->timeout_ms, &resp, NULL, err);
        if (r >= 0 && !eng_response_ok(&resp)) {
                _cleanup_free_ char *m = eng_response_error(&resp);
                r = hm_error_set(err, resp.os_errno ? resp.os_errno : EPROTO, "list %s on '%s': %s", what, c->socket, m);
        }
        if (r >= 0) {
                char ebuf[256] = "";
                yajl_val v = yajl_tree_parse(resp.body.buf ? resp.body.buf : "", ebuf, sizeof ebuf);
                if (!v || !YAJL_IS_ARRAY(v)) {
                        if (v)
                                yajl_tree_free(v);
                        r = hm_error_set(err, EPROTO, "list %s on '%s': not a JSON array", what, c->socket);
                } else {
                        *ret = v;
                }
        }
        eng_response_release(&resp);
        return r;
}

/* DELETE; 1 removed, 0 gone already (404) or kept because in use (409). */
static int delete(struct reap_ctx *c, const char *what, const char *ref, const char *query, hm_error_t *err)
{
        _cleanup_free_ char *eref = eng_escape(ref);
        _cleanup_free_ char *path = xasprintf("%s/%s/%s?%s", c->prefix, what, eref, query);
        struct eng_response resp = { 0 };
        int r = eng_http_perform_blocking(c->socket, "DELETE", path, c->timeout_ms, &resp, NULL, err);
        if (r >= 0) {
                if (eng_response_ok(&resp))
                        r = 1;
                else if (resp.status == 404 || resp.status == 409)
                        r = 0;
                else {
                        _cleanup_free_ char *m = eng_response_error(&resp);
                        r = hm_error_set(err, resp.os_errno ? resp.os_errno : EPROTO, "remove %s '%s': %s",
                                         what[0] == 'c' ? "container" : "image", ref, m);
                }
        }
        eng_response_release(&resp);
        return r;
}

/* ---------------------------------------------------------------- containers */

static void reap_container(struct reap_ctx *c, yajl_val ctr)
{
        const char *id = obj_str(ctr, "Id");
        const char *run = label(ctr, "hm.run");
        const char *owner = label(ctr, "hm.owner");
        const char *step = label(ctr, "hm.step");
        struct hm_owner o;
        /* no owner we can parse: not ours to remove */
        if (!id || !run || !owner_parse(owner, &o))
                return;
        const char *why = "";
        enum owner_state st = owner_judge(&o, &why);
        if (st == OWNER_ALIVE) {
                strv_push(&c->live_runs, run);
                return;
        }
        if (st == OWNER_FOREIGN) {
                strv_push(&c->foreign_runs, run);
                strv_push_take(&c->left, xasprintf("container %.12s (run %.12s, step '%s', owner %s %s)", id, run,
                                                   step ? step : "?", owner, why));
                return;
        }
        if (!c->dry_run) {
                hm_error_t e = NULL;
                int r = delete(c, "containers", id, "force=1&v=1", &e);
                /*
                 * Podman refuses a container that is stopping right now ("container
                 * state improper"): it just lost its owner, so give it a moment.
                 */
                for (int i = 0; r < 0 && e->code == EPROTO && i < REAP_RETRIES; i++) {
                        hm_error_release(&e);
                        nanosleep(&(struct timespec){ .tv_nsec = REAP_RETRY_NS }, NULL);
                        r = delete(c, "containers", id, "force=1&v=1", &e);
                }
                if (r < 0)
                        note_failure(c, &e);
                if (r <= 0)
                        return;
        }
        strv_push_take(&c->removed, xasprintf("container %.12s (run %.12s, step '%s', owner %s %s)", id, run,
                                              step ? step : "?", owner, why));
}

/* ---------------------------------------------------------------- images */

struct img {
        const char *id;
        const char *parent;
        const char *run;
        yajl_val tags;
        int64_t created;
        bool done;
};

static bool is_cache_tag(const char *tag)
{
        for (size_t i = 0; i < ARRAY_SIZE(cache_repos); i++)
                if (str_has_prefix(tag, cache_repos[i]))
                        return true;
        return false;
}

static bool has_cache_tag(yajl_val tags)
{
        for (size_t i = 0; tags && YAJL_IS_ARRAY(tags) && i < tags->u.array.len; i++) {
                const char *t = YAJL_GET_STRING(tags->u.array.values[i]);
                if (t && is_cache_tag(t))
                        return true;
        }
        return false;
}

static bool run_in(char *const *runs, const char *run)
{
        for (size_t i = 0; runs && runs[i]; i++)
                if (strcmp(runs[i], run) == 0)
                        return true;
        return false;
}

/* The first real tag of an image, or its short id: how a left image is named. */
static char *image_name(yajl_val im)
{
        yajl_val tags = yajl_tree_get(im, (const char *[]){ "RepoTags", NULL }, yajl_t_array);
        for (size_t i = 0; tags && i < tags->u.array.len; i++) {
                const char *t = YAJL_GET_STRING(tags->u.array.values[i]);
                if (t && *t && strncmp(t, "<none>", 6) != 0)
                        return xstrdup(t);
        }
        return xasprintf("%.19s", obj_str(im, "Id"));
}

/* A tag that is a real name (Docker lists "<none>:<none>" for untagged ones in some versions). */
static bool real_tag(const char *t)
{
        return t && *t && strcmp(t, "<none>:<none>") != 0 && strncmp(t, "<none>", 6) != 0;
}

static bool has_real_tag(yajl_val tags)
{
        for (size_t i = 0; tags && YAJL_IS_ARRAY(tags) && i < tags->u.array.len; i++)
                if (real_tag(YAJL_GET_STRING(tags->u.array.values[i])))
                        return true;
        return false;
}

/*
 * Whether an image may go (see engine/reap.h): an ephemeral one, or any
 * untagged one (a cache image whose tag another run moved while a step of
 * its own run still used it: nothing can name it again).  One of a foreign
 * owner goes to c->left.
 */
static bool image_reapable(struct reap_ctx *c, yajl_val im, int64_t now)
{
        const char *run = label(im, "hm.run");
        const char *owner = label(im, "hm.owner");
        const char *eph = label(im, "hm.ephemeral");
        yajl_val tags = yajl_tree_get(im, (const char *[]){ "RepoTags", NULL }, yajl_t_array);
        if (!obj_str(im, "Id") || !run || has_cache_tag(tags))
                return false;
        if (!(eph && strcmp(eph, "1") == 0) && has_real_tag(tags))
                return false;
        if (run_in(c->live_runs, run))
                return false;
        struct hm_owner o;
        const char *why = "in another pid namespace";
        bool foreign = run_in(c->foreign_runs, run);
        if (!foreign && owner_parse(owner, &o)) {
                enum owner_state st = owner_judge(&o, &why);
                if (st == OWNER_ALIVE)
                        return false;
                foreign = st == OWNER_FOREIGN;
        } else if (!foreign) {
                return now - obj_int(im, "Created") >= ENGINE_REAP_UNOWNED_AGE;
        }
        if (foreign) {
                _cleanup_free_ char *name = image_name(im);
                strv_push_take(&c->left, xasprintf("image %s (run %.12s, owner %s %s)", name, run,
                                                   owner ? owner : "?", why));
                return false;
        }
        return true;
}

/* Remove one image: each of its (non-cache) tags, or its id when untagged. */
static void reap_image(struct reap_ctx *c, const struct img *im)
{
        size_t ntags = 0;
        for (size_t i = 0; im->tags && i < im->tags->u.array.len; i++) {
                const char *t = YAJL_GET_STRING(im->tags->u.array.values[i]);
                if (!real_tag(t))
                        continue;
                ntags++;
                hm_error_t e = NULL;
                int r = c->dry_run ? 1 : delete(c, "images", t, "force=0", &e);
                if (r < 0)
                        note_failure(c, &e);
                else if (r > 0)
                        strv_push_take(&c->removed, xasprintf("image %s (run %.12s)", t, im->run));
        }
        if (ntags)
                return;
        hm_error_t e = NULL;
        int r = c->dry_run ? 1 : delete(c, "images", im->id, "force=0", &e);
        if (r < 0)
                note_failure(c, &e);
        else if (r > 0)
                strv_push_take(&c->removed, xasprintf("image %.19s (untagged, run %.12s)", im->id, im->run));
}

static int cmp_newest_first(const void *a, const void *b)
{
        const struct img *x = a, *y = b;
        return x->created < y->created ? 1 : x->created > y->created ? -1 : 0;
}

/* True when another image still to be removed has `im` as its parent. */
static bool has_pending_child(const struct img *v, size_t n, const struct img *im)
{
        for (size_t i = 0; i < n; i++)
                if (!v[i].done && &v[i] != im && v[i].parent && *v[i].parent && strcmp(v[i].parent, im->id) == 0)
                        return true;
        return false;
}

static void reap_images(struct reap_ctx *c, yajl_val list)
{
        int64_t now = (int64_t) time(NULL);
        size_t n = 0;
        _cleanup_free_ struct img *v = xcalloc(list->u.array.len + 1, sizeof *v);
        for (size_t i = 0; i < list->u.array.len; i++) {
                yajl_val im = list->u.array.values[i];
                if (!image_reapable(c, im, now))
                        continue;
                v[n++] = (struct img){
                        .id = obj_str(im, "Id"),
                        .parent = obj_str(im, "ParentId"),
                        .run = label(im, "hm.run"),
                        .tags = yajl_tree_get(im, (const char *[]){ "RepoTags", NULL }, yajl_t_array),
                        .created = obj_int(im, "Created"),
                };
        }
        /* newest first; within one second (Created has that resolution) children before parents */
        qsort(v, n, sizeof *v, cmp_newest_first);
        for (size_t left = n; left;) {
                size_t before = left;
                for (size_t i = 0; i < n; i++) {
                        if (v[i].done || has_pending_child(v, n, &v[i]))
                                continue;
                        reap_image(c, &v[i]);
                        v[i].done = true;
                        left--;
                }
                if (left == before) /* a parent cycle cannot happen; do not spin if it does */
                        break;
        }
}

/* ---------------------------------------------------------------- entry */

static int reap(struct reap_ctx *c, hm_error_t *err)
{
        _cleanup_yajl_tree_ yajl_val ctrs = NULL;
        int r = get_list(c, "containers", "{\"label\":[\"hm.run\"]}", &ctrs, err);
        if (r < 0)
                return r;
        for (size_t i = 0; i < ctrs->u.array.len; i++)
                reap_container(c, ctrs->u.array.values[i]);
        _cleanup_yajl_tree_ yajl_val imgs = NULL;
        r = get_list(c, "images", "{\"label\":[\"hm.run\"]}", &imgs, err);
        if (r < 0)
                return r;
        reap_images(c, imgs);
        return 0;
}

int engine_reap_at(const char *socket, const char *prefix, long timeout_ms, bool dry_run, char ***ret_removed,
                   char ***ret_left, hm_error_t *err)
{
        struct reap_ctx c = { .socket = socket, .prefix = prefix ? prefix : "", .dry_run = dry_run,
                              .timeout_ms = timeout_ms > 0 ? timeout_ms : REAP_TIMEOUT_MS,
                              .removed = xcalloc(1, sizeof(char *)), .left = xcalloc(1, sizeof(char *)) };
        int r = reap(&c, err);
        if (r >= 0 && c.first) {
                *err = TAKE_PTR(c.first);
                r = -((*err)->code) - 1;
        }
        hm_error_release(&c.first);
        strv_free(c.live_runs);
        strv_free(c.foreign_runs);
        if (ret_removed)
                *ret_removed = TAKE_PTR(c.removed);
        if (ret_left)
                *ret_left = TAKE_PTR(c.left);
        strv_free(c.removed);
        strv_free(c.left);
        return r;
}

int engine_reap(const char *socket, bool dry_run, char ***ret_removed, char ***ret_left, hm_error_t *err)
{
        struct engine_options opts = { .socket = socket };
        struct eng_found f = { 0 };
        int r = eng_discover(&opts, &f, err);
        if (r < 0) {
                if (ret_removed)
                        *ret_removed = xcalloc(1, sizeof(char *));
                if (ret_left)
                        *ret_left = xcalloc(1, sizeof(char *));
                return r;
        }
        r = engine_reap_at(f.socket, f.prefix, REAP_TIMEOUT_MS, dry_run, ret_removed, ret_left, err);
        eng_found_release(&f);
        return r;
}
