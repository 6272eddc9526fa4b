/* SPDX-License-Identifier: Apache-2.0 */
#include "oci/ref.h"

#include <ctype.h>

#include "lib/util.h"

static bool is_lower_alnum(char c)
{
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_word(char c)
{
        return isascii((unsigned char) c) && (isalnum((unsigned char) c) || c == '_');
}

/* One path component of length n, or an error text. */
static const char *check_component(const char *s, size_t n)
{
        if (n == 0)
                return "empty path component";
        for (size_t i = 0; i < n; i++)
                if (s[i] >= 'A' && s[i] <= 'Z')
                        return "repository name must be lowercase";
        if (!is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
                return "a path component must start and end with a lowercase letter or digit";
        for (size_t i = 1; i < n - 1; i++) {
                if (is_lower_alnum(s[i]) || s[i] == '-')
                        continue;
                if (s[i] == '.' && is_lower_alnum(s[i + 1]))
                        continue;
                if (s[i] == '_' && (is_lower_alnum(s[i + 1]) || (s[i + 1] == '_' && is_lower_alnum(s[i + 2])))) {
                        if (s[i + 1] == '_')
                                i++;
                        continue;
                }
                return "invalid character or separator in a path component (allowed: a-z 0-9 and . _ __ - between them)";
        }
        return NULL;
}

static const char *check_host(const char *s, size_t n)
{
        if (n == 0)
                return "empty registry host";
        if (s[0] == '[') {
                if (s[n - 1] != ']' || n < 3)
                        return "unterminated IPv6 address in the registry host";
                for (size_t i = 1; i < n - 1; i++)
                        if (!isxdigit((unsigned char) s[i]) && s[i] != ':')
                                return "invalid IPv6 address in the registry host";
                return NULL;
        }
        size_t start = 0;
        for (size_t i = 0; i <= n; i++) {
                if (i < n && s[i] != '.') {
                        if (!isascii((unsigned char) s[i]) || !(isalnum((unsigned char) s[i]) || s[i] == '-'))
                                return "invalid character in the registry host";
                        continue;
                }
                if (i == start)
                        return "empty label in the registry host";
                if (s[start] == '-' || s[i - 1] == '-')
                        return "a registry host label must not start or end with '-'";
                start = i + 1;
        }
        return NULL;
}

static const char *check_domain(const char *s, size_t n)
{
        const char *close = s[0] == '[' ? memchr(s, ']', n) : NULL;
        const char *colon = close ? (close + 1 < s + n && close[1] == ':' ? close + 1 : NULL) : memchr(s, ':', n);
        if (close && close + 1 < s + n && close[1] != ':')
                return "junk after the IPv6 address in the registry host";
        size_t hn = colon ? (size_t) (colon - s) : n;
        const char *e = check_host(s, hn);
        if (e)
                return e;
        if (!colon)
                return NULL;
        size_t pn = n - hn - 1;
        if (pn == 0 || pn > 5)
                return "invalid registry port";
        unsigned long port = 0;
        for (size_t i = 0; i < pn; i++) {
                if (!isdigit((unsigned char) colon[1 + i]))
                        return "invalid registry port";
                port = port * 10 + (unsigned long) (colon[1 + i] - '0');
        }
        return port == 0 || port > 65535 ? "registry port out of range" : NULL;
}

static const char *check_tag(const char *t)
{
        size_t n = strlen(t);
        if (n == 0)
                return "empty tag";
        if (n > OCI_REF_TAG_MAX)
                return "tag longer than 128 characters";
        if (!is_word(t[0]))
                return "a tag must start with a letter, digit or '_'";
        for (size_t i = 1; i < n; i++)
                if (!is_word(t[i]) && t[i] != '.' && t[i] != '-')
                        return "invalid character in the tag (allowed: A-Z a-z 0-9 _ . -)";
        return NULL;
}

static const char *check_digest(const char *d)
{
        const char *colon = strchr(d, ':');
        if (!colon || colon == d)
                return "a digest must be ALGORITHM:HEX";
        if ((size_t) (colon - d) != 6 || strncmp(d, "sha256", 6))
                return "unsupported digest algorithm (only sha256)";
        const char *h = colon + 1;
        size_t n = strlen(h);
        for (size_t i = 0; i < n; i++)
                if (!((h[i] >= '0' && h[i] <= '9') || (h[i] >= 'a' && h[i] <= 'f')))
                        return "a sha256 digest must be 64 lowercase hex digits";
        return n == 64 ? NULL : "a sha256 digest must be 64 lowercase hex digits";
}

static bool is_domain_like(const char *s, size_t n)
{
        if (n == 9 && !strncmp(s, "localhost", 9))
                return true;
        for (size_t i = 0; i < n; i++)
                if (s[i] == '.' || s[i] == ':' || s[i] == '[' || (s[i] >= 'A' && s[i] <= 'Z'))
                        return true;
        return false;
}

static bool all_hex64(const char *s)
{
        if (strlen(s) != 64)
                return false;
        for (; *s; s++)
                if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
                        return false;
        return true;
}

static int fail(hm_error_t *err, const char *s, const char *what)
{
        return hm_error_set(err, EINVAL, "invalid reference '%s': %s", s, what);
}

/* Split "name[:tag]" (the digest is already cut off) into name and tag. */
static int split_tag(const char *s, char *rest, char **ret_tag, hm_error_t *err)
{
        char *slash = strrchr(rest, '/');
        char *colon = strrchr(slash ? slash : rest, ':');
        if (!colon)
                return 0;
        const char *e = check_tag(colon + 1);
        if (e)
                return fail(err, s, e);
        *ret_tag = xstrdup(colon + 1);
        *colon = 0;
        return 0;
}

static int split_path(const char *s, const char *name, struct oci_ref *r, hm_error_t *err)
{
        const char *slash = strchr(name, '/');
        const char *path = name;
        if (slash && is_domain_like(name, (size_t) (slash - name))) {
                const char *e = check_domain(name, (size_t) (slash - name));
                if (e)
                        return fail(err, s, e);
                r->domain = xstrndup(name, (size_t) (slash - name));
                path = slash + 1;
        } else {
                r->domain = xstrdup(OCI_REF_DEFAULT_DOMAIN);
        }
        if (!strcmp(r->domain, "index.docker.io")) {
                free(r->domain);
                r->domain = xstrdup(OCI_REF_DEFAULT_DOMAIN);
        }
        if (!*path)
                return fail(err, s, "missing repository path");
        for (const char *p = path;;) {
                const char *end = strchr(p, '/');
                size_t n = end ? (size_t) (end - p) : strlen(p);
                const char *e = check_component(p, n);
                if (e)
                        return fail(err, s, e);
                if (!end)
                        break;
                p = end + 1;
        }
        bool official = !strcmp(r->domain, OCI_REF_DEFAULT_DOMAIN) && !strchr(path, '/');
        r->path = official ? xasprintf("library/%s", path) : xstrdup(path);
        if (strlen(r->domain) + 1 + strlen(r->path) > OCI_REF_NAME_MAX)
                return fail(err, s, "repository name longer than 255 characters");
        return 0;
}

int oci_ref_parse(const char *s, struct oci_ref *ret, hm_error_t *err)
{
        struct oci_ref r = { 0 };
        if (!s || !*s)
                return fail(err, s ? s : "", "empty reference");
        if (strlen(s) > 4096)
                return hm_error_set(err, EINVAL, "invalid reference '%.64s...': longer than 4096 characters", s);
        for (const char *p = s; *p; p++)
                if ((unsigned char) *p <= ' ' || (unsigned char) *p >= 0x7f)
                        return fail(err, s, "whitespace or non-ASCII character");
        _cleanup_free_ char *rest = xstrdup(s);
        char *at = strchr(rest, '@');
        int rc = 0;
        if (at) {
                const char *e = check_digest(at + 1);
                if (e)
                        return fail(err, s, e);
                r.digest = xstrdup(at + 1);
                *at = 0;
        }
        if (all_hex64(rest)) {
                oci_ref_release(&r);
                return fail(err, s, "a 64-hex-digit string is an image id, not a repository name");
        }
        rc = split_tag(s, rest, &r.tag, err);
        if (rc >= 0)
                rc = split_path(s, rest, &r, err);
        if (rc < 0) {
                oci_ref_release(&r);
                return rc;
        }
        if (!r.tag && !r.digest)
                r.tag = xstrdup("latest");
        *ret = r;
        return 0;
}

void oci_ref_release(struct oci_ref *r)
{
        if (!r)
                return;
        free(r->domain);
        free(r->path);
        free(r->tag);
        free(r->digest);
        memset(r, 0, sizeof *r);
}

char *oci_ref_string(const struct oci_ref *r)
{
        return xasprintf("%s/%s%s%s%s%s", r->domain, r->path, r->tag ? ":" : "", r->tag ? r->tag : "",
                         r->digest ? "@" : "", r->digest ? r->digest : "");
}

const char *oci_ref_api_reference(const struct oci_ref *r)
{
        return r->digest ? r->digest : r->tag;
}
