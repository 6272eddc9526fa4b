/* SPDX-License-Identifier: Apache-2.0 */
#include "oci/manifest.h"

#include <yajl/yajl_tree.h>

#include "lib/handles.h"
#include "lib/strbuf.h"
#include "lib/util.h"

#define MAX_ENTRIES 4096

const char *oci_digest_hex(const char *digest)
{
        if (!digest || !str_has_prefix(digest, "sha256:") || strlen(digest) != 71)
                return NULL;
        for (const char *p = digest + 7; *p; p++)
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
                        return NULL;
        return digest + 7;
}

static yajl_val get(yajl_val obj, const char *key, yajl_type t)
{
        const char *path[] = { key, NULL };
        return obj ? yajl_tree_get(obj, path, t) : NULL;
}

static char *get_str(yajl_val obj, const char *key)
{
        yajl_val v = get(obj, key, yajl_t_string);
        return v && YAJL_GET_STRING(v) ? xstrdup(YAJL_GET_STRING(v)) : NULL;
}

static void desc_release(struct oci_descriptor *d)
{
        free(d->media_type);
        free(d->digest);
        free(d->os);
        free(d->arch);
        free(d->variant);
        memset(d, 0, sizeof *d);
}

static int parse_desc(yajl_val v, const char *where, struct oci_descriptor *d, hm_error_t *err)
{
        if (!YAJL_IS_OBJECT(v))
                return hm_error_set(err, EINVAL, "manifest: %s: not an object", where);
        char *digest = get_str(v, "digest");
        if (!oci_digest_hex(digest)) {
                int r = hm_error_set(err, EINVAL, "manifest: %s.digest: %s", where,
                                     digest ? "not a sha256:<64 lowercase hex> digest" : "missing");
                free(digest);
                return r;
        }
        d->digest = digest;
        d->media_type = get_str(v, "mediaType");
        yajl_val size = get(v, "size", yajl_t_number);
        d->size = size && YAJL_IS_INTEGER(size) && YAJL_GET_INTEGER(size) >= 0 ? YAJL_GET_INTEGER(size) : -1;
        yajl_val plat = get(v, "platform", yajl_t_object);
        d->os = get_str(plat, "os");
        d->arch = get_str(plat, "architecture");
        d->variant = get_str(plat, "variant");
        return 0;
}

static int parse_list(yajl_val arr, const char *key, struct oci_descriptor **ret, size_t *ret_n, hm_error_t *err)
{
        if (!arr)
                return hm_error_set(err, EINVAL, "manifest: %s: missing or not an array", key);
        size_t n = arr->u.array.len;
        if (n > MAX_ENTRIES)
                return hm_error_set(err, EINVAL, "manifest: %s: %zu entries (at most %d)", key, n, MAX_ENTRIES);
        *ret = xcalloc(n ? n : 1, sizeof **ret);
        *ret_n = 0;
        for (size_t i = 0; i < n; i++) {
                _cleanup_free_ char *where = xasprintf("%s[%zu]", key, i);
                int r = parse_desc(arr->u.array.values[i], where, &(*ret)[i], err);
                if (r < 0)
                        return r;
                (*ret_n)++;
        }
        return 0;
}

static bool is_index_type(const char *t)
{
        return t && (!strcmp(t, OCI_MT_INDEX) || !strcmp(t, OCI_MT_DOCKER_LIST));
}

static int parse_tree(yajl_val root, const char *content_type, struct oci_manifest *m, hm_error_t *err)
{
        if (!YAJL_IS_OBJECT(root))
                return hm_error_set(err, EINVAL, "manifest: not a JSON object");
        yajl_val sv = get(root, "schemaVersion", yajl_t_number);
        if (!sv || !YAJL_IS_INTEGER(sv))
                return hm_error_set(err, EINVAL, "manifest: schemaVersion: missing or not an integer");
        if (YAJL_GET_INTEGER(sv) != 2)
                return hm_error_set(err, EINVAL, "manifest: schemaVersion %lld is not supported (only 2)",
                                    (long long) YAJL_GET_INTEGER(sv));
        m->media_type = get_str(root, "mediaType");
        const char *t = m->media_type ? m->media_type : content_type;
        yajl_val manifests = get(root, "manifests", yajl_t_array);
        m->is_index = is_index_type(t) || (!t && manifests);
        if (m->is_index)
                return parse_list(manifests, "manifests", &m->entries, &m->n_entries, err);
        if (t && strcmp(t, OCI_MT_MANIFEST) && strcmp(t, OCI_MT_DOCKER_MANIFEST))
                return hm_error_set(err, EINVAL, "manifest: media type '%s' is not supported", t);
        yajl_val config = get(root, "config", yajl_t_object);
        if (!config)
                return hm_error_set(err, EINVAL, "manifest: config: missing or not an object");
        int r = parse_desc(config, "config", &m->config, err);
        if (r < 0)
                return r;
        r = parse_list(get(root, "layers", yajl_t_array), "layers", &m->layers, &m->n_layers, err);
        if (r >= 0 && m->n_layers == 0)
                return hm_error_set(err, EINVAL, "manifest: layers: empty");
        return r;
}

int oci_manifest_parse(const char *body, size_t len, const char *content_type, struct oci_manifest *ret,
                       hm_error_t *err)
{
        if (len > OCI_MANIFEST_MAX)
                return hm_error_set(err, EFBIG, "manifest: %zu bytes (at most %u)", len, OCI_MANIFEST_MAX);
        if (memchr(body, 0, len))
                return hm_error_set(err, EINVAL, "manifest: NUL byte in the body");
        _cleanup_free_ char *text = xstrndup(body, len);
        char ebuf[256] = "";
        _cleanup_yajl_tree_ yajl_val root = yajl_tree_parse(text, ebuf, sizeof ebuf);
        if (!root) {
                char *nl = strchr(ebuf, '\n');
                if (nl)
                        *nl = 0;
                return hm_error_set(err, EINVAL, "manifest: invalid JSON: %s", ebuf);
        }
        struct oci_manifest m = { 0 };
        int r = parse_tree(root, content_type, &m, err);
        if (r < 0) {
                oci_manifest_release(&m);
                return r;
        }
        *ret = m;
        return 0;
}

void oci_manifest_release(struct oci_manifest *m)
{
        if (!m)
                return;
        free(m->media_type);
        desc_release(&m->config);
        for (size_t i = 0; i < m->n_layers; i++)
                desc_release(&m->layers[i]);
        free(m->layers);
        for (size_t i = 0; i < m->n_entries; i++)
                desc_release(&m->entries[i]);
        free(m->entries);
        memset(m, 0, sizeof *m);
}

const char *oci_platform_arch(void)
{
#if defined(__x86_64__)
        return "amd64";
#elif defined(__aarch64__)
        return "arm64";
#elif defined(__arm__)
        return "arm";
#elif defined(__i386__)
        return "386";
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
        return "ppc64le";
#elif defined(__s390x__)
        return "s390x";
#elif defined(__riscv) && __riscv_xlen == 64
        return "riscv64";
#else
        return "unknown";
#endif
}

const char *oci_platform_variant(void)
{
#if defined(__aarch64__)
        return "v8";
#else
        return NULL;
#endif
}

int oci_index_select(const struct oci_manifest *idx, const char *arch, const char *variant, hm_error_t *err)
{
        for (size_t i = 0; i < idx->n_entries; i++) {
                const struct oci_descriptor *d = &idx->entries[i];
                if (!d->os || strcmp(d->os, "linux") || !d->arch || strcmp(d->arch, arch))
                        continue;
                if (variant && d->variant && strcmp(d->variant, variant))
                        continue;
                return (int) i;
        }
        struct strbuf offered = STRBUF_INIT;
        for (size_t i = 0; i < idx->n_entries && i < 16; i++) {
                const struct oci_descriptor *d = &idx->entries[i];
                strbuf_addf(&offered, "%s%s/%s%s%s", i ? ", " : "", d->os ? d->os : "?", d->arch ? d->arch : "?",
                            d->variant ? "/" : "", d->variant ? d->variant : "");
        }
        int r = hm_error_set(err, ENOENT, "no manifest for linux/%s%s%s in the index (it has: %s)", arch,
                             variant ? "/" : "", variant ? variant : "", offered.len ? offered.buf : "nothing");
        strbuf_release(&offered);
        return r;
}
