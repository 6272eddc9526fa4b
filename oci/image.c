/* SPDX-License-Identifier: Apache-2.0 */
#include "oci/json-util.h"
#include "oci/image.h"

#include <archive.h>
#include <archive_entry.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <yajl/yajl_tree.h>

#include "lib/handles.h"
#include "lib/sha256.h"
#include "lib/strbuf.h"
#include "lib/util.h"

#define MAX_JSON (16u << 20)

const char *oci_source_kind_name(enum oci_source_kind k)
{
        static const char *const names[] = { "oci-layout", "oci-archive", "docker-archive", "rootfs-tar", "engine" };
        return (size_t) k < ARRAY_SIZE(names) ? names[k] : "unknown";
}

void oci_import_result_release(struct oci_import_result *r)
{
        if (!r)
                return;
        free(r->name);
        free(r->id);
        memset(r, 0, sizeof *r);
}

/* ---- reading files of an untrusted layout, never leaving its directory ---- */

static int open_beneath(int dirfd, const char *rel)
{
        struct open_how how = { .flags = O_RDONLY | O_CLOEXEC,
                                .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV };
        long fd = syscall(SYS_openat2, dirfd, rel, &how, sizeof how);
        return fd < 0 ? -errno : (int) fd;
}

static int read_beneath(int dirfd, const char *rel, char **ret, size_t *ret_len, hm_error_t *err)
{
        int fd = open_beneath(dirfd, rel);
        if (fd < 0)
                return hm_error_set(err, -fd, "open '%s': %s", rel, strerror(-fd));
        _cleanup_free_ char *p = xasprintf("/proc/self/fd/%d", fd);
        int r = read_file(p, MAX_JSON, ret, ret_len);
        close(fd);
        if (r < 0)
                return hm_error_set(err, -r, "read '%s': %s", rel, strerror(-r));
        return 0;
}

static int parse_json(const char *text, const char *where, yajl_val *ret, hm_error_t *err)
{
        char ebuf[256] = "";
        yajl_val v = yajl_tree_parse(text, ebuf, sizeof ebuf);
        if (!v)
                return hm_error_set(err, EINVAL, "'%s': invalid JSON: %s", where, ebuf);
        *ret = v;
        return 0;
}

static const char *jstr(yajl_val obj, const char *key)
{
        const char *path[] = { key, NULL };
        yajl_val v = yajl_tree_get(obj, path, yajl_t_string);
        return v ? YAJL_GET_STRING(v) : NULL;
}

static yajl_val jget(yajl_val obj, const char *key, yajl_type t)
{
        const char *path[] = { key, NULL };
        return yajl_tree_get(obj, path, t);
}

static bool is_hex64(const char *s)
{
        if (!s || strlen(s) != 64)
                return false;
        for (; *s; s++)
                if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
                        return false;
        return true;
}

/* "sha256:<hex>" -> hex, or NULL. */
static const char *digest_hex(const char *digest)
{
        if (!digest || !str_has_prefix(digest, "sha256:") || !is_hex64(digest + 7))
                return NULL;
        return digest + 7;
}

/* ---- the import plan: config + ordered layer files ---- */

struct plan_layer {
        char *rel;      /* path of the layer tar inside the layout dir */
        char *blob_hex; /* expected sha256 of the file as stored, or NULL if not named by digest */
};

struct import_plan {
        int dirfd;
        char *config_rel;
        char *config_hex; /* expected config digest, or NULL */
        struct plan_layer *layers;
        size_t n;
        bool rootfs;      /* a plain rootfs tarball: dirfd is -1, rel is the file */
        char *config_text; /* verified config, kept as a blob at commit */
        size_t config_len;
};

static void plan_release(struct import_plan *p)
{
        safe_close(p->dirfd);
        free(p->config_rel);
        free(p->config_hex);
        free(p->config_text);
        for (size_t i = 0; i < p->n; i++) {
                free(p->layers[i].rel);
                free(p->layers[i].blob_hex);
        }
        free(p->layers);
}

static void plan_add_layer(struct import_plan *p, const char *rel, const char *blob_hex)
{
        p->layers = xreallocarray(p->layers, p->n + 1, sizeof *p->layers);
        p->layers[p->n].rel = xstrdup(rel);
        p->layers[p->n++].blob_hex = blob_hex ? xstrdup(blob_hex) : NULL;
}

/* The hex digest a docker-archive path names, if it names one. */
static char *hex_of_path(const char *rel)
{
        const char *base = strrchr(rel, '/');
        base = base ? base + 1 : rel;
        if (str_has_prefix(rel, "blobs/sha256/") && is_hex64(base))
                return xstrdup(base);
        if (str_has_suffix(base, ".json") && strlen(base) == 69) {
                char *h = xstrndup(base, 64);
                if (is_hex64(h))
                        return h;
                free(h);
        }
        return NULL;
}

static bool repo_tags_match(yajl_val entry, const char *name)
{
        yajl_val tags = jget(entry, "RepoTags", yajl_t_array);
        for (size_t i = 0; tags && i < tags->u.array.len; i++) {
                const char *t = YAJL_GET_STRING(tags->u.array.values[i]);
                _cleanup_free_ char *norm = t ? oci_image_normalize_name(t) : NULL;
                if (norm && !strcmp(norm, name))
                        return true;
        }
        return false;
}

static int plan_docker(struct import_plan *p, const char *name, hm_error_t *err)
{
        _cleanup_free_ char *text = NULL;
        int r = read_beneath(p->dirfd, "manifest.json", &text, NULL, err);
        if (r < 0)
                return r;
        _cleanup_yajl_tree_ yajl_val root = NULL;
        r = parse_json(text, "manifest.json", &root, err);
        if (r < 0)
                return r;
        if (!YAJL_IS_ARRAY(root) || root->u.array.len == 0)
                return hm_error_set(err, EINVAL, "manifest.json: not a non-empty array");
        yajl_val m = root->u.array.values[0];
        for (size_t i = 0; i < root->u.array.len; i++)
                if (repo_tags_match(root->u.array.values[i], name))
                        m = root->u.array.values[i];
        const char *config = jstr(m, "Config");
        yajl_val layers = jget(m, "Layers", yajl_t_array);
        if (!config || !layers)
                return hm_error_set(err, EINVAL, "manifest.json[0]: Config or Layers missing");
        p->config_rel = xstrdup(config);
        p->config_hex = hex_of_path(config);
        for (size_t i = 0; i < layers->u.array.len; i++) {
                const char *l = YAJL_GET_STRING(layers->u.array.values[i]);
                if (!l)
                        return hm_error_set(err, EINVAL, "manifest.json[0].Layers[%zu]: not a string", i);
                _cleanup_free_ char *hex = hex_of_path(l);
                plan_add_layer(p, l, hex);
        }
        return 0;
}

/* Read blob `digest` of an OCI layout, verified, and parse it. */
static int read_oci_blob_json(int dirfd, const char *digest, yajl_val *ret, hm_error_t *err)
{
        const char *hex = digest_hex(digest);
        if (!hex)
                return hm_error_set(err, EINVAL, "unsupported digest '%s'", digest ? digest : "(none)");
        _cleanup_free_ char *rel = xasprintf("blobs/sha256/%s", hex);
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r = read_beneath(dirfd, rel, &text, &len, err);
        if (r < 0)
                return r;
        struct sha256 h;
        char got[65];
        sha256_init(&h);
        sha256_update(&h, text, len);
        sha256_final_hex(&h, got);
        if (strcmp(got, hex))
                return hm_error_set(err, EBADMSG, "blob '%s': digest mismatch (content is sha256:%s)", rel, got);
        return parse_json(text, rel, ret, err);
}

static bool platform_ok(yajl_val desc)
{
        const char *path_os[] = { "platform", "os", NULL }, *path_arch[] = { "platform", "architecture", NULL };
        yajl_val os = yajl_tree_get(desc, path_os, yajl_t_string);
        yajl_val arch = yajl_tree_get(desc, path_arch, yajl_t_string);
#if defined(__x86_64__)
        const char *want = "amd64";
#elif defined(__aarch64__)
        const char *want = "arm64";
#else
        const char *want = NULL;
#endif
        if (!os && !arch)
                return true;
        const char *o = os ? YAJL_GET_STRING(os) : NULL, *a = arch ? YAJL_GET_STRING(arch) : NULL;
        return (!o || !strcmp(o, "linux")) && (!a || !want || !strcmp(a, want));
}

/* Pick a manifest descriptor from an index: by ref name, else by platform. */
static yajl_val pick_manifest(yajl_val index, const char *name)
{
        yajl_val ms = jget(index, "manifests", yajl_t_array);
        if (!ms || ms->u.array.len == 0)
                return NULL;
        const char *tag = strrchr(name, ':');
        const char *path_ref[] = { "annotations", "org.opencontainers.image.ref.name", NULL };
        for (size_t i = 0; i < ms->u.array.len; i++) {
                yajl_val ref = yajl_tree_get(ms->u.array.values[i], path_ref, yajl_t_string);
                const char *r = ref ? YAJL_GET_STRING(ref) : NULL;
                if (r && (!strcmp(r, name) || (tag && !strcmp(r, tag + 1))))
                        return ms->u.array.values[i];
        }
        for (size_t i = 0; i < ms->u.array.len; i++)
                if (platform_ok(ms->u.array.values[i]))
                        return ms->u.array.values[i];
        return ms->u.array.values[0];
}

static int plan_oci(struct import_plan *p, const char *name, hm_error_t *err)
{
        _cleanup_free_ char *text = NULL;
        int r = read_beneath(p->dirfd, "index.json", &text, NULL, err);
        if (r < 0)
                return r;
        _cleanup_yajl_tree_ yajl_val index = NULL;
        r = parse_json(text, "index.json", &index, err);
        if (r < 0)
                return r;
        _cleanup_yajl_tree_ yajl_val manifest = NULL;
        yajl_val desc = pick_manifest(index, name);
        /* an index may point at a nested index (multi-platform): one level down */
        for (int depth = 0; desc; depth++) {
                yajl_val m = NULL;
                r = read_oci_blob_json(p->dirfd, jstr(desc, "digest"), &m, err);
                if (r < 0)
                        return r;
                if (manifest)
                        yajl_tree_free(manifest);
                manifest = m;
                if (!jget(manifest, "manifests", yajl_t_array) || depth > 2)
                        break;
                desc = pick_manifest(manifest, name);
        }
        if (!manifest)
                return hm_error_set(err, EINVAL, "index.json: no manifest");
        const char *path_cfg[] = { "config", "digest", NULL };
        yajl_val cfg = yajl_tree_get(manifest, path_cfg, yajl_t_string);
        yajl_val layers = jget(manifest, "layers", yajl_t_array);
        const char *cfg_hex = cfg ? digest_hex(YAJL_GET_STRING(cfg)) : NULL;
        if (!cfg_hex || !layers)
                return hm_error_set(err, EINVAL, "manifest: config digest or layers missing");
        p->config_rel = xasprintf("blobs/sha256/%s", cfg_hex);
        p->config_hex = xstrdup(cfg_hex);
        for (size_t i = 0; i < layers->u.array.len; i++) {
                const char *hex = digest_hex(jstr(layers->u.array.values[i], "digest"));
                if (!hex)
                        return hm_error_set(err, EINVAL, "manifest: layers[%zu]: unsupported digest", i);
                _cleanup_free_ char *rel = xasprintf("blobs/sha256/%s", hex);
                plan_add_layer(p, rel, hex);
        }
        return 0;
}

/* ---- config ---- */

static int load_config(struct import_plan *p, struct oci_image *img, char ***ret_diff_ids, hm_error_t *err)
{
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r = read_beneath(p->dirfd, p->config_rel, &text, &len, err);
        if (r < 0)
                return r;
        struct sha256 h;
        char got[65];
        sha256_init(&h);
        sha256_update(&h, text, len);
        sha256_final_hex(&h, got);
        if (p->config_hex && strcmp(got, p->config_hex))
                return hm_error_set(err, EBADMSG, "config '%s': digest mismatch (content is sha256:%s)",
                                    p->config_rel, got);
        _cleanup_yajl_tree_ yajl_val root = NULL;
        r = parse_json(text, p->config_rel, &root, err);
        if (r < 0)
                return r;
        img->id = xasprintf("sha256:%s", got);
        yajl_val c = jget(root, "config", yajl_t_object);
        if (c) {
                img->config.env = oci_json_strv(jget(c, "Env", yajl_t_array));
                img->config.entrypoint = oci_json_strv(jget(c, "Entrypoint", yajl_t_array));
                img->config.cmd = oci_json_strv(jget(c, "Cmd", yajl_t_array));
                img->config.workdir = xstrdup(jstr(c, "WorkingDir") ? jstr(c, "WorkingDir") : "");
                img->config.user = xstrdup(jstr(c, "User") ? jstr(c, "User") : "");
        }
        const char *path_diff[] = { "rootfs", "diff_ids", NULL };
        char **diff = oci_json_strv(yajl_tree_get(root, path_diff, yajl_t_array));
        if (!diff || strv_len(diff) != p->n) {
                strv_free(diff);
                return hm_error_set(err, EINVAL, "config '%s': rootfs.diff_ids has %s entries, the manifest %zu layers",
                                    p->config_rel, diff ? "a different number of" : "no", p->n);
        }
        *ret_diff_ids = diff;
        p->config_text = TAKE_PTR(text);
        p->config_len = len;
        return 0;
}

/* ---- unpacking the layers, then one commit under the lock ---- */

struct new_layer {
        struct oci_layer_meta meta;
        char *tmpdir;
};

struct import_ctx {
        struct oci_store *s;
        struct import_plan plan;
        struct oci_image *img;
        struct new_layer *nl;
        size_t n_nl;
        char *workdir; /* tmp dir holding an extracted archive or a download */
        struct oci_import_result *res;
};

static void ctx_release(struct import_ctx *c)
{
        for (size_t i = 0; i < c->n_nl; i++) {
                if (c->nl[i].tmpdir)
                        (void) rm_rf(c->nl[i].tmpdir);
                free(c->nl[i].tmpdir);
                free(c->nl[i].meta.diff_id);
        }
        free(c->nl);
        if (c->workdir)
                (void) rm_rf(c->workdir);
        free(c->workdir);
        plan_release(&c->plan);
        oci_image_free(c->img);
}

static int open_layer(struct import_ctx *c, size_t i, hm_error_t *err)
{
        const char *rel = c->plan.layers[i].rel;
        int fd = c->plan.rootfs ? open(rel, O_RDONLY | O_CLOEXEC) : open_beneath(c->plan.dirfd, rel);
        if (fd < 0) {
                int e = c->plan.rootfs ? errno : -fd;
                return hm_error_set(err, e, "layer '%s': %s", rel, strerror(e));
        }
        struct stat st;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                close(fd);
                return hm_error_set(err, EINVAL, "layer '%s': not a regular file", rel);
        }
        return fd;
}

static bool already_new(struct import_ctx *c, const char *id)
{
        for (size_t i = 0; i < c->n_nl; i++)
                if (!strcmp(c->nl[i].meta.id, id))
                        return true;
        return false;
}

static int unpack_new_layer(struct import_ctx *c, int fd, const char *diff, const char *rel, uint64_t *ret_size,
                            hm_error_t *err)
{
        _cleanup_free_ char *tmp = NULL;
        int r = oci_store_mkdtemp(c->s, "layer", &tmp, err);
        if (r < 0)
                return r;
        struct oci_unpack_stats st = { 0 };
        r = oci_unpack_layer(fd, tmp, oci_store_xattr_prefix(c->s), oci_store_size_limit(c->s), &st, err);
        if (r < 0) {
                (void) rm_rf(tmp);
                return hm_error_wrap(err, "layer '%s'", rel);
        }
        c->res->stats.bytes += st.bytes;
        c->res->stats.entries += st.entries;
        c->res->stats.whiteouts += st.whiteouts;
        c->res->stats.opaque_dirs += st.opaque_dirs;
        c->res->stats.skipped_devices += st.skipped_devices;
        c->nl = xreallocarray(c->nl, c->n_nl + 1, sizeof *c->nl);
        struct new_layer *n = &c->nl[c->n_nl++];
        *n = (struct new_layer) { .meta = { .kind = OCI_LAYER_IMAGE, .created = time(NULL), .size = st.bytes },
                                  .tmpdir = TAKE_PTR(tmp) };
        snprintf(n->meta.id, sizeof n->meta.id, "%.16s", diff);
        n->meta.diff_id = xasprintf("sha256:%s", diff);
        *ret_size = st.bytes;
        return 0;
}

static uint64_t stored_layer_size(struct import_ctx *c, const char *id)
{
        for (size_t i = 0; i < c->n_nl; i++)
                if (!strcmp(c->nl[i].meta.id, id))
                        return c->nl[i].meta.size;
        struct oci_layer_meta *m = NULL;
        hm_error_t e = NULL;
        if (oci_store_layer_meta(c->s, id, &m, &e) < 0) {
                hm_error_release(&e);
                return 0;
        }
        uint64_t size = m->size;
        oci_layer_meta_free(m);
        return size;
}

static int import_layer(struct import_ctx *c, size_t i, const char *want_diff, hm_error_t *err)
{
        const char *rel = c->plan.layers[i].rel;
        _cleanup_close_ int fd = open_layer(c, i, err);
        if (fd < 0)
                return fd;
        char hex[65];
        uint64_t limit = oci_store_size_limit(c->s);
        int r;
        if (c->plan.layers[i].blob_hex) {
                r = oci_digest_fd(fd, false, limit, hex, err);
                if (r < 0)
                        return hm_error_wrap(err, "layer '%s'", rel);
                if (strcmp(hex, c->plan.layers[i].blob_hex))
                        return hm_error_set(err, EBADMSG, "blob '%s': digest mismatch (content is sha256:%s)", rel, hex);
        }
        r = oci_digest_fd(fd, true, limit, hex, err);
        if (r < 0)
                return hm_error_wrap(err, "layer '%s'", rel);
        if (want_diff && (!digest_hex(want_diff) || strcmp(digest_hex(want_diff), hex)))
                return hm_error_set(err, EBADMSG,
                                    "layer '%s': uncompressed digest sha256:%s does not match the config's diff_id '%s'",
                                    rel, hex, want_diff);
        char id[17];
        snprintf(id, sizeof id, "%.16s", hex);
        uint64_t size = 0;
        if (oci_store_has_layer(c->s, id) || already_new(c, id)) {
                size = stored_layer_size(c, id);
        } else {
                r = unpack_new_layer(c, fd, hex, rel, &size, err);
                if (r < 0)
                        return r;
                c->res->n_new_layers++;
        }
        strv_push(&c->img->layers, id);
        strv_push_take(&c->img->diff_ids, xasprintf("sha256:%s", hex));
        c->img->size += size;
        return 0;
}

static int commit_import(struct import_ctx *c, hm_error_t *err)
{
        int r = oci_store_lock(c->s, err);
        if (r < 0)
                return r;
        for (size_t i = 0; r >= 0 && i < c->n_nl; i++) {
                r = oci_store_add_layer_locked(c->s, c->nl[i].tmpdir, &c->nl[i].meta, err);
                if (r >= 0) {
                        free(c->nl[i].tmpdir);
                        c->nl[i].tmpdir = NULL;
                }
        }
        if (r >= 0 && c->plan.config_text)
                r = oci_store_put_blob(c->s, c->img->id + 7, c->plan.config_text, c->plan.config_len, err);
        if (r >= 0)
                r = oci_store_image_put_locked(c->s, c->img, err);
        oci_store_unlock(c->s);
        if (r < 0) {
                /* layers added before the failure are unreferenced: collect them */
                hm_error_t e = NULL;
                if (oci_store_gc(c->s, &e) < 0)
                        hm_error_release(&e);
        }
        return r;
}

static int import_plan_run(struct import_ctx *c, hm_error_t *err)
{
        _cleanup_strv_ char **diff_ids = NULL;
        if (!c->plan.rootfs) {
                int r = load_config(&c->plan, c->img, &diff_ids, err);
                if (r < 0)
                        return r;
        }
        for (size_t i = 0; i < c->plan.n; i++) {
                int r = import_layer(c, i, diff_ids ? diff_ids[i] : NULL, err);
                if (r < 0)
                        return r;
        }
        if (c->plan.rootfs) {
                /* no config: the image id is the digest of the one layer's diff id */
                c->img->id = xstrdup(c->img->diff_ids[0]);
                strv_push(&c->img->config.env, OCI_DEFAULT_PATH_ENV);
                c->img->config.workdir = xstrdup("");
                c->img->config.user = xstrdup("");
        }
        c->res->n_layers = c->plan.n;
        c->res->size = c->img->size;
        return commit_import(c, err);
}

/* ---- sources ---- */

static int scan_tar(const char *path, enum oci_source_kind *ret, hm_error_t *err)
{
        _cleanup_archive_read_ struct archive *a = archive_read_new();
        archive_read_support_filter_all(a);
        archive_read_support_format_tar(a);
        if (archive_read_open_filename(a, path, 64 * 1024) != ARCHIVE_OK)
                return hm_error_set(err, archive_errno(a) > 0 ? archive_errno(a) : EINVAL, "'%s': %s", path,
                                    archive_error_string(a));
        bool manifest = false, layout = false, index = false;
        struct archive_entry *e;
        int r;
        while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
                const char *n = archive_entry_pathname(e);
                while (n && str_has_prefix(n, "./"))
                        n += 2;
                if (!n)
                        continue;
                manifest |= !strcmp(n, "manifest.json");
                layout |= !strcmp(n, "oci-layout");
                index |= !strcmp(n, "index.json");
        }
        if (r != ARCHIVE_EOF)
                return hm_error_set(err, EINVAL, "'%s': not a tar archive: %s", path, archive_error_string(a));
        *ret = manifest ? OCI_SOURCE_DOCKER_TAR : layout && index ? OCI_SOURCE_LAYOUT_TAR : OCI_SOURCE_ROOTFS_TAR;
        return 0;
}

int oci_source_detect(const char *source, enum oci_source_kind *ret, hm_error_t *err)
{
        if (str_has_prefix(source, "docker://") || str_has_prefix(source, "podman://")) {
                *ret = OCI_SOURCE_ENGINE;
                return 0;
        }
        struct stat st;
        if (stat(source, &st) < 0)
                return hm_error_set(err, errno, "'%s': %s", source, strerror(errno));
        if (S_ISDIR(st.st_mode)) {
                _cleanup_free_ char *l = xasprintf("%s/oci-layout", source);
                _cleanup_free_ char *m = xasprintf("%s/manifest.json", source);
                if (access(l, F_OK) == 0) {
                        *ret = OCI_SOURCE_LAYOUT_DIR;
                        return 0;
                }
                if (access(m, F_OK) == 0) {
                        *ret = OCI_SOURCE_DOCKER_TAR; /* an unpacked docker save: same plan */
                        return 0;
                }
                return hm_error_set(err, EINVAL, "'%s': a directory, but no oci-layout or manifest.json in it", source);
        }
        return scan_tar(source, ret, err);
}

struct file_sink {
        int fd;
        int error;
};

static size_t sink_write(char *ptr, size_t size, size_t n, void *data)
{
        struct file_sink *s = data;
        int r = write_all(s->fd, ptr, size * n);
        if (r < 0) {
                s->error = -r;
                return 0;
        }
        return size * n;
}

static char *engine_socket(bool podman)
{
        const char *e = getenv(podman ? "CONTAINER_HOST" : "DOCKER_HOST");
        if (e && str_has_prefix(e, "unix://"))
                return xstrdup(e + 7);
        if (!podman)
                return xstrdup("/var/run/docker.sock");
        if (geteuid() == 0)
                return xstrdup("/run/podman/podman.sock");
        const char *xdg = getenv("XDG_RUNTIME_DIR");
        return xasprintf("%s/podman/podman.sock", xdg ? xdg : "/run/user");
}

static int curl_check(CURLcode rc, const char *what, hm_error_t *err)
{
        return rc == CURLE_OK ? 0 : hm_error_set(err, EIO, "%s: %s", what, curl_easy_strerror(rc));
}

/* GET /images/{name}/get into dest (a docker-save tar). */
static int engine_fetch(const char *source, const char *dest, hm_error_t *err)
{
        bool podman = str_has_prefix(source, "podman://");
        const char *ref = source + (podman ? 9 : 9);
        _cleanup_free_ char *sock = engine_socket(podman);
        _cleanup_close_ int fd = open(dest, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
                return hm_error_set(err, errno, "create '%s': %s", dest, strerror(errno));
        _cleanup_curl_easy_ CURL *h = curl_easy_init();
        if (!h)
                return hm_error_set(err, ENOMEM, "curl_easy_init failed");
        _cleanup_curl_free_ char *esc = curl_easy_escape(h, ref, 0);
        _cleanup_free_ char *url = xasprintf("http://localhost/images/%s/get", esc);
        struct file_sink sink = { fd, 0 };
        char ebuf[CURL_ERROR_SIZE] = "";
        int r = curl_check(curl_easy_setopt(h, CURLOPT_UNIX_SOCKET_PATH, sock), "curl", err);
        if (r >= 0)
                r = curl_check(curl_easy_setopt(h, CURLOPT_URL, url), "curl", err);
        if (r >= 0)
                r = curl_check(curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, sink_write), "curl", err);
        if (r >= 0)
                r = curl_check(curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink), "curl", err);
        if (r >= 0)
                r = curl_check(curl_easy_setopt(h, CURLOPT_ERRORBUFFER, ebuf), "curl", err);
        if (r < 0)
                return r;
        CURLcode rc = curl_easy_perform(h);
        if (rc != CURLE_OK)
                return hm_error_set(err, sink.error ? sink.error : EIO, "GET %s on '%s': %s", url, sock,
                                    sink.error ? strerror(sink.error) : *ebuf ? ebuf : curl_easy_strerror(rc));
        long code = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
        if (code != 200)
                return hm_error_set(err, code == 404 ? ENOENT : EIO, "%s: engine at '%s' answered HTTP %ld",
                                    source, sock, code);
        return 0;
}

/* Extract an archive source (docker-save or OCI tar) into c->workdir/x. */
static int extract_source(struct import_ctx *c, const char *path, hm_error_t *err)
{
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return hm_error_set(err, errno, "open '%s': %s", path, strerror(errno));
        _cleanup_free_ char *dir = xasprintf("%s/x", c->workdir);
        if (mkdir(dir, 0700) < 0)
                return hm_error_set(err, errno, "create '%s': %s", dir, strerror(errno));
        /* every layer may be that big, and there are rarely more than a few */
        uint64_t limit = oci_store_size_limit(c->s) * 4;
        int r = oci_unpack_layer(fd, dir, oci_store_xattr_prefix(c->s), limit, NULL, err);
        if (r < 0)
                return hm_error_wrap(err, "'%s'", path);
        c->plan.dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        return c->plan.dirfd < 0 ? hm_error_set(err, errno, "open '%s': %s", dir, strerror(errno)) : 0;
}

static int make_plan(struct import_ctx *c, const char *source, enum oci_source_kind kind, hm_error_t *err)
{
        _cleanup_free_ char *download = NULL;
        int r = 0;
        if (kind == OCI_SOURCE_ENGINE) {
                download = xasprintf("%s/engine.tar", c->workdir);
                r = engine_fetch(source, download, err);
                if (r < 0)
                        return r;
                source = download;
                kind = OCI_SOURCE_DOCKER_TAR;
        }
        struct stat st;
        bool is_dir = stat(source, &st) == 0 && S_ISDIR(st.st_mode);
        switch (kind) {
        case OCI_SOURCE_ROOTFS_TAR:
                c->plan.rootfs = true;
                plan_add_layer(&c->plan, source, NULL);
                return 0;
        case OCI_SOURCE_LAYOUT_DIR:
        case OCI_SOURCE_DOCKER_TAR:
        case OCI_SOURCE_LAYOUT_TAR:
                if (is_dir) {
                        c->plan.dirfd = open(source, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
                        if (c->plan.dirfd < 0)
                                return hm_error_set(err, errno, "open '%s': %s", source, strerror(errno));
                } else {
                        r = extract_source(c, source, err);
                        if (r < 0)
                                return r;
                }
                return kind == OCI_SOURCE_DOCKER_TAR ? plan_docker(&c->plan, c->img->name, err)
                                                     : plan_oci(&c->plan, c->img->name, err);
        default:
                return hm_error_set(err, EINVAL, "'%s': unknown source kind", source);
        }
}

int oci_image_import(struct oci_store *s, const char *source, const char *name, struct oci_import_result *ret,
                     hm_error_t *err)
{
        struct oci_import_result res = { 0 };
        struct import_ctx c = { .s = s, .plan = { .dirfd = -1 }, .res = &res };
        c.img = xzalloc(sizeof *c.img);
        c.img->name = oci_image_normalize_name(name);
        c.img->created = time(NULL);
        c.img->layers = xcalloc(1, sizeof(char *));
        c.img->diff_ids = xcalloc(1, sizeof(char *));
        int r = 0;
        if (!strcmp(c.img->name, OCI_HOST_IMAGE))
                r = hm_error_set(err, EINVAL, "image name '%s' is reserved for the host filesystem", name);
        if (r >= 0)
                r = oci_source_detect(source, &res.kind, err);
        if (r >= 0)
                r = oci_store_mkdtemp(s, "import", &c.workdir, err);
        if (r >= 0)
                r = make_plan(&c, source, res.kind, err);
        if (r >= 0 && c.plan.n == 0)
                r = hm_error_set(err, EINVAL, "'%s': the image has no layers", source);
        if (r >= 0)
                r = import_plan_run(&c, err);
        if (r >= 0) {
                res.name = xstrdup(c.img->name);
                res.id = xstrdup(c.img->id);
        }
        ctx_release(&c);
        if (r < 0)
                return hm_error_wrap(err, "import '%s'", source);
        *ret = res;
        return 0;
}
