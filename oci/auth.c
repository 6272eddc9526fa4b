/* SPDX-License-Identifier: Apache-2.0 */
#include "oci/auth.h"

#include <ctype.h>
#include <sys/stat.h>
#include <yajl/yajl_tree.h>

#include "lib/handles.h"
#include "lib/util.h"

#define MAX_FILE (1u << 20)

/* ---- base64 ---- */

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

char *oci_base64_encode(const void *data, size_t n)
{
        const unsigned char *p = data;
        char *out = xmalloc((n + 2) / 3 * 4 + 1), *o = out;
        for (size_t i = 0; i < n; i += 3) {
                unsigned v = (unsigned) p[i] << 16 | (i + 1 < n ? (unsigned) p[i + 1] << 8 : 0) |
                             (i + 2 < n ? p[i + 2] : 0);
                *o++ = b64[v >> 18 & 63];
                *o++ = b64[v >> 12 & 63];
                *o++ = i + 1 < n ? b64[v >> 6 & 63] : '=';
                *o++ = i + 2 < n ? b64[v & 63] : '=';
        }
        *o = 0;
        return out;
}

char *oci_base64_decode(const char *s, size_t *ret_len)
{
        size_t n = strlen(s);
        while (n > 0 && s[n - 1] == '=')
                n--;
        if (n % 4 == 1)
                return NULL;
        char *out = xmalloc(n / 4 * 3 + 3);
        size_t o = 0;
        unsigned v = 0;
        int bits = 0;
        for (size_t i = 0; i < n; i++) {
                const char *c = s[i] ? strchr(b64, s[i]) : NULL;
                if (!c) {
                        free(out);
                        return NULL;
                }
                v = v << 6 | (unsigned) (c - b64);
                bits += 6;
                if (bits >= 8) {
                        bits -= 8;
                        out[o++] = (char) (v >> bits & 0xff);
                }
        }
        out[o] = 0;
        if (ret_len)
                *ret_len = o;
        return out;
}

/* ---- WWW-Authenticate ---- */

void oci_challenge_release(struct oci_challenge *c)
{
        if (!c)
                return;
        free(c->scheme);
        free(c->realm);
        free(c->service);
        free(c->scope);
        memset(c, 0, sizeof *c);
}

/* key=value or key="quoted \" value"; returns the position after it, or NULL. */
static const char *parse_param(const char *p, char **ret_key, char **ret_val)
{
        const char *k = p;
        while (*p && (isalnum((unsigned char) *p) || *p == '_' || *p == '-'))
                p++;
        if (p == k || *p != '=')
                return NULL;
        *ret_key = xstrndup(k, (size_t) (p - k));
        p++;
        struct strbuf v = STRBUF_INIT;
        if (*p == '"') {
                for (p++; *p && *p != '"'; p++) {
                        if (*p == '\\' && p[1])
                                p++;
                        strbuf_addch(&v, *p);
                }
                if (*p != '"') {
                        strbuf_release(&v);
                        free(*ret_key);
                        return NULL;
                }
                p++;
        } else {
                while (*p && *p != ',' && *p != ' ')
                        strbuf_addch(&v, *p++);
        }
        *ret_val = strbuf_detach(&v, NULL);
        return p;
}

int oci_challenge_parse(const char *value, struct oci_challenge *ret, hm_error_t *err)
{
        struct oci_challenge c = { 0 };
        const char *p = value;
        while (*p == ' ')
                p++;
        const char *s = p;
        while (*p && *p != ' ')
                p++;
        if (p == s)
                return hm_error_set(err, EINVAL, "WWW-Authenticate: no scheme");
        c.scheme = xstrndup(s, (size_t) (p - s));
        for (char *q = c.scheme; *q; q++)
                *q = (char) tolower((unsigned char) *q);
        while (*p) {
                while (*p == ' ' || *p == ',')
                        p++;
                if (!*p)
                        break;
                char *k = NULL, *v = NULL;
                const char *next = parse_param(p, &k, &v);
                if (!next)
                        break; /* a second challenge or junk: keep what we have */
                char **slot = !strcasecmp(k, "realm") ? &c.realm : !strcasecmp(k, "service") ? &c.service
                            : !strcasecmp(k, "scope") ? &c.scope : NULL;
                if (slot && !*slot)
                        *slot = TAKE_PTR(v);
                free(k);
                free(v);
                p = next;
        }
        if (strcmp(c.scheme, "bearer") == 0 && (!c.realm || !*c.realm)) {
                oci_challenge_release(&c);
                return hm_error_set(err, EINVAL, "WWW-Authenticate: Bearer challenge without a realm");
        }
        *ret = c;
        return 0;
}

/* ---- credentials ---- */

void oci_creds_release(struct oci_creds *c)
{
        if (!c)
                return;
        if (c->password)
                explicit_bzero(c->password, strlen(c->password));
        free(c->user);
        free(c->password);
        free(c->source);
        memset(c, 0, sizeof *c);
}

/* "https://host:port/v1/" -> "host:port" */
static char *key_host(const char *key)
{
        if (str_has_prefix(key, "https://"))
                key += 8;
        else if (str_has_prefix(key, "http://"))
                key += 7;
        return xstrndup(key, strcspn(key, "/"));
}

static bool key_matches(const char *key, const char *domain)
{
        _cleanup_free_ char *h = key_host(key);
        if (!strcmp(h, domain))
                return true;
        return !strcmp(domain, "docker.io") && (!strcmp(h, "index.docker.io") || !strcmp(h, "registry-1.docker.io"));
}

/* 1: found in this file; 0: not there (or no file). */
static int creds_from_file(const char *path, const char *domain, struct oci_creds *ret, hm_error_t *err)
{
        _cleanup_free_ char *text = NULL;
        int r = read_file(path, MAX_FILE, &text, NULL);
        if (r == -ENOENT || r == -ENOTDIR)
                return 0;
        if (r < 0)
                return hm_error_set(err, -r, "credentials file '%s': %s", path, strerror(-r));
        char ebuf[128] = "";
        _cleanup_yajl_tree_ yajl_val root = yajl_tree_parse(text, ebuf, sizeof ebuf);
        if (!root)
                return hm_error_set(err, EINVAL, "credentials file '%s': invalid JSON", path);
        const char *ap[] = { "auths", NULL };
        yajl_val auths = yajl_tree_get(root, ap, yajl_t_object);
        for (size_t i = 0; auths && i < auths->u.object.len; i++) {
                if (!key_matches(auths->u.object.keys[i], domain))
                        continue;
                const char *fp[] = { "auth", NULL };
                yajl_val a = yajl_tree_get(auths->u.object.values[i], fp, yajl_t_string);
                if (!a || !YAJL_GET_STRING(a) || !*YAJL_GET_STRING(a))
                        continue;
                _cleanup_free_ char *dec = oci_base64_decode(YAJL_GET_STRING(a), NULL);
                char *colon = dec ? strchr(dec, ':') : NULL;
                if (!colon) {
                        if (dec)
                                explicit_bzero(dec, strlen(dec));
                        return hm_error_set(err, EINVAL, "credentials file '%s': auths.\"%s\".auth: not base64 of user:password",
                                            path, auths->u.object.keys[i]);
                }
                *colon = 0;
                ret->user = xstrdup(dec);
                ret->password = xstrdup(colon + 1);
                ret->source = xstrdup(path);
                explicit_bzero(colon + 1, strlen(colon + 1));
                return 1;
        }
        return 0;
}

int oci_creds_lookup(const char *domain, struct oci_creds *ret, hm_error_t *err)
{
        char *paths[4] = { 0 };
        size_t n = 0;
        const char *e = getenv("REGISTRY_AUTH_FILE");
        if (e && *e)
                paths[n++] = xstrdup(e);
        e = getenv("XDG_RUNTIME_DIR");
        /* without XDG_RUNTIME_DIR, containers tools use /run/containers/UID (e.g. root under sudo) */
        paths[n++] = e && *e ? xasprintf("%s/containers/auth.json", e)
                             : xasprintf("/run/containers/%u/auth.json", (unsigned) getuid());
        e = getenv("DOCKER_CONFIG");
        const char *home = getenv("HOME");
        if (e && *e)
                paths[n++] = xasprintf("%s/config.json", e);
        else if (home && *home)
                paths[n++] = xasprintf("%s/.docker/config.json", home);
        int r = 0;
        for (size_t i = 0; i < n && r == 0; i++)
                r = creds_from_file(paths[i], domain, ret, err);
        for (size_t i = 0; i < n; i++)
                free(paths[i]);
        return r;
}

/* ---- registries.conf (subset) ---- */

void oci_registry_conf_release(struct oci_registry_conf *c)
{
        if (!c)
                return;
        strv_free(c->mirrors);
        free(c->mirrors_insecure);
        free(c->source);
        memset(c, 0, sizeof *c);
}

static char *trim(char *s)
{
        while (*s == ' ' || *s == '\t')
                s++;
        size_t n = strlen(s);
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
                s[--n] = 0;
        return s;
}

/* A TOML basic string "..." (no escapes needed for locations) -> heap, or NULL. */
static char *toml_string(const char *v)
{
        size_t n = strlen(v);
        if (n < 2 || (v[0] != '"' && v[0] != '\'') || v[n - 1] != v[0])
                return NULL;
        return xstrndup(v + 1, n - 2);
}

struct conf_parse {
        const char *domain;
        bool in_registry, in_mirror, matched;
        bool found;
        struct oci_registry_conf *c;
};

static void conf_line(struct conf_parse *p, char *line)
{
        /* a comment starts at a '#' outside quotes */
        bool quoted = false;
        for (char *c = line; *c; c++) {
                if (*c == '"')
                        quoted = !quoted;
                else if (*c == '#' && !quoted) {
                        *c = 0;
                        break;
                }
        }
        line = trim(line);
        if (!*line)
                return;
        if (line[0] == '[') {
                bool reg = !strcmp(line, "[[registry]]");
                p->in_mirror = !strcmp(line, "[[registry.mirror]]") && p->in_registry;
                if (reg)
                        p->matched = false;
                p->in_registry = reg || p->in_mirror;
                return;
        }
        char *eq = strchr(line, '=');
        if (!eq || !p->in_registry)
                return;
        *eq = 0;
        char *key = trim(line), *val = trim(eq + 1);
        if (!strcmp(key, "location")) {
                _cleanup_free_ char *loc = toml_string(val);
                if (!loc)
                        return;
                if (!p->in_mirror) {
                        p->matched = !strcmp(loc, p->domain);
                        p->found |= p->matched;
                } else if (p->matched) {
                        size_t n = strv_len(p->c->mirrors);
                        strv_push(&p->c->mirrors, loc);
                        p->c->mirrors_insecure = xreallocarray(p->c->mirrors_insecure, n + 1, sizeof(bool));
                        p->c->mirrors_insecure[n] = false;
                }
        } else if (!strcmp(key, "insecure") && p->matched && !p->in_mirror) {
                p->c->insecure = !strcmp(val, "true");
        } else if (!strcmp(key, "insecure") && p->matched && p->in_mirror && p->c->mirrors) {
                /* a mirror's own table: its location comes first */
                p->c->mirrors_insecure[strv_len(p->c->mirrors) - 1] = !strcmp(val, "true");
        }
}

int oci_registry_conf_get(const char *domain, struct oci_registry_conf *ret, hm_error_t *err)
{
        struct oci_registry_conf c = { 0 };
        const char *env = getenv("HM_REGISTRIES_CONF");
        const char *home = getenv("HOME");
        _cleanup_free_ char *user = home && *home ? xasprintf("%s/.config/containers/registries.conf", home) : NULL;
        const char *cands[] = { env && *env ? env : NULL, user, "/etc/containers/registries.conf" };
        for (size_t i = 0; i < ARRAY_SIZE(cands); i++) {
                if (!cands[i])
                        continue;
                _cleanup_free_ char *text = NULL;
                int r = read_file(cands[i], MAX_FILE, &text, NULL);
                if (r == -ENOENT && !(i == 0))
                        continue;
                if (r < 0)
                        return hm_error_set(err, -r, "registries config '%s': %s", cands[i], strerror(-r));
                struct conf_parse p = { .domain = domain, .c = &c };
                for (char *save = NULL, *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
                        conf_line(&p, line);
                c.source = xstrdup(cands[i]);
                break; /* like containers: the first file found is the configuration */
        }
        *ret = c;
        return 0;
}

/* ---- TLS trust ---- */

static int add_crts(const char *dir, struct strbuf *sb, size_t *n, hm_error_t *err)
{
        _cleanup_closedir_ DIR *d = opendir(dir);
        if (!d)
                return 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (!str_has_suffix(de->d_name, ".crt"))
                        continue;
                _cleanup_free_ char *p = xasprintf("%s/%s", dir, de->d_name);
                _cleanup_free_ char *text = NULL;
                size_t len = 0;
                int r = read_file(p, MAX_FILE, &text, &len);
                if (r < 0)
                        return hm_error_set(err, -r, "CA file '%s': %s", p, strerror(-r));
                strbuf_addch(sb, '\n');
                strbuf_add(sb, text, len);
                (*n)++;
        }
        return 0;
}

int oci_registry_ca_bundle(const char *domain, struct strbuf *ret, size_t *ret_n_extra, hm_error_t *err)
{
        static const char *const system[] = { "/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt" };
        strbuf_init(ret, 0);
        for (size_t i = 0; i < ARRAY_SIZE(system); i++) {
                _cleanup_free_ char *text = NULL;
                size_t len = 0;
                if (read_file(system[i], 8u << 20, &text, &len) == 0) {
                        strbuf_add(ret, text, len);
                        break;
                }
        }
        size_t n = 0;
        const char *env = getenv("HM_REGISTRY_CERTS_DIR");
        const char *roots[] = { env && *env ? env : NULL, "/etc/containers/certs.d", "/etc/docker/certs.d" };
        for (size_t i = 0; i < ARRAY_SIZE(roots); i++) {
                if (!roots[i])
                        continue;
                _cleanup_free_ char *dir = xasprintf("%s/%s", roots[i], domain);
                int r = add_crts(dir, ret, &n, err);
                if (r < 0)
                        return r;
        }
        *ret_n_extra = n;
        return 0;
}
