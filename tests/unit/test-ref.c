/* SPDX-License-Identifier: Apache-2.0 */
/* Image reference parsing and normalisation (oci/ref.c), as Docker does it. */
#include "oci/ref.h"
#include "lib/util.h"
#include "tests/unit/tap.h"

static const struct {
        const char *in, *want;
} valid[] = {
        { "alpine", "docker.io/library/alpine:latest" },
        { "alpine:3.20", "docker.io/library/alpine:3.20" },
        { "library/alpine", "docker.io/library/alpine:latest" },
        { "docker.io/alpine", "docker.io/library/alpine:latest" },
        { "index.docker.io/alpine:1", "docker.io/library/alpine:1" },
        { "docker.io/user/app:v1.2", "docker.io/user/app:v1.2" },
        { "user/app", "docker.io/user/app:latest" },
        { "localhost/app", "localhost/app:latest" },
        { "localhost:5000/app:tag", "localhost:5000/app:tag" },
        { "127.0.0.1:5000/a/b/c:x", "127.0.0.1:5000/a/b/c:x" },
        { "[::1]:5000/app:t", "[::1]:5000/app:t" },
        { "[::1]/app", "[::1]/app:latest" },
        { "quay.io/podman/stable", "quay.io/podman/stable:latest" },
        { "Example.COM/app", "Example.COM/app:latest" },
        { "UPPERHOST/app", "UPPERHOST/app:latest" },
        { "my-reg.example.com:443/team/img_name__x.y-z:Tag_1.0-rc", "my-reg.example.com:443/team/img_name__x.y-z:Tag_1.0-rc" },
        { "a---b", "docker.io/library/a---b:latest" },
        { "alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
          "docker.io/library/alpine@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" },
        { "h:1/a:t@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
          "h:1/a:t@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef" },
        { "localhost:5000", "docker.io/library/localhost:5000" }, /* Docker reads it as name:tag too */
};

static const struct {
        const char *in, *what;
} invalid[] = {
        { "", "empty reference" },
        { "Alpine", "lowercase" },
        { "user/App", "lowercase" },
        { "alpine:", "empty tag" },
        { "alpine:-x", "tag must start" },
        { "alpine:a/b", "invalid registry port" }, /* "alpine:a" is a domain then */
        { "alpine:t@", "digest must be" },
        { "alpine@sha256:abc", "64 lowercase hex" },
        { "alpine@sha256:0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef", "64 lowercase hex" },
        { "alpine@md5:0123", "unsupported digest algorithm" },
        { "-alpine", "start and end" },
        { "alpine-", "start and end" },
        { "a..b", "separator" },
        { "a___b", "separator" },
        { "a/", "empty path component" },
        { "/a", "empty path component" },
        { "a//b", "empty path component" },
        { "host:5000/", "missing repository path" },
        { "host:99999/a", "port" },
        { "host:0/a", "port out of range" },
        { "host:x/a", "port" },
        { "-host.io/a", "label" },
        { "ho_st.io/a", "invalid character in the registry host" },
        { "[::1/a", "IPv6" },
        { "[::1]x/a", "junk after" },
        { "a b", "whitespace" },
        { "alp\tine", "whitespace" },
        { "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "image id" },
        { "a:b:c", "separator" },
        { "_x", "start and end" },
        { "a@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef@x", "64 lowercase hex" },
};

static void test_long(void)
{
        char tag[140];
        memset(tag, 'a', sizeof tag - 1);
        tag[sizeof tag - 1] = 0;
        _cleanup_free_ char *s = xasprintf("alpine:%s", tag);
        hm_error_t err = NULL;
        struct oci_ref r;
        tap_ok(oci_ref_parse(s, &r, &err) < 0 && strstr(err->msg, "tag longer than 128"), "a 139-char tag is refused");
        hm_error_release(&err);
        tag[128] = 0;
        _cleanup_free_ char *s2 = xasprintf("alpine:%s", tag);
        tap_ok(oci_ref_parse(s2, &r, &err) == 0, "a 128-char tag is accepted");
        oci_ref_release(&r);
        char path[260];
        memset(path, 'b', sizeof path - 1);
        path[sizeof path - 1] = 0;
        _cleanup_free_ char *s3 = xasprintf("h.io/%s", path);
        tap_ok(oci_ref_parse(s3, &r, &err) < 0 && strstr(err->msg, "longer than 255"), "a 264-char name is refused");
        hm_error_release(&err);
        path[255 - 5] = 0;
        _cleanup_free_ char *s4 = xasprintf("h.io/%s", path);
        tap_ok(oci_ref_parse(s4, &r, &err) == 0, "a 255-char name is accepted");
        oci_ref_release(&r);
}

int main(void)
{
        tap_plan_later();
        for (size_t i = 0; i < ARRAY_SIZE(valid); i++) {
                struct oci_ref r;
                hm_error_t err = NULL;
                int rc = oci_ref_parse(valid[i].in, &r, &err);
                if (!tap_ok(rc == 0, "'%s' parses", valid[i].in)) {
                        tap_diag("  %s", err->msg);
                        hm_error_release(&err);
                        continue;
                }
                _cleanup_free_ char *s = oci_ref_string(&r);
                TAP_IS_STR(s, valid[i].want, "'%s' normalises", valid[i].in);
                /* the canonical form is a fixed point */
                struct oci_ref r2;
                tap_ok(oci_ref_parse(s, &r2, &err) == 0, "'%s' parses again", s);
                _cleanup_free_ char *s2 = err ? NULL : oci_ref_string(&r2);
                TAP_IS_STR(s2, s, "'%s' is stable", s);
                if (!err)
                        oci_ref_release(&r2);
                hm_error_release(&err);
                oci_ref_release(&r);
        }
        for (size_t i = 0; i < ARRAY_SIZE(invalid); i++) {
                struct oci_ref r;
                hm_error_t err = NULL;
                int rc = oci_ref_parse(invalid[i].in, &r, &err);
                if (rc == 0) {
                        _cleanup_free_ char *s = oci_ref_string(&r);
                        tap_ok(false, "'%s' is refused (parsed as '%s')", invalid[i].in, s);
                        oci_ref_release(&r);
                        continue;
                }
                _cleanup_free_ char *prefix = xasprintf("invalid reference '%s': ", invalid[i].in);
                bool named = str_has_prefix(err->msg, prefix);
                if (!tap_ok(named && strstr(err->msg, invalid[i].what), "'%s' is refused: names it and says '%s'",
                            invalid[i].in, invalid[i].what))
                        tap_diag("  got: %s", err->msg);
                hm_error_release(&err);
        }
        test_long();
        struct oci_ref r;
        hm_error_t err = NULL;
        tap_ok(oci_ref_parse("h:1/a:t@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", &r, &err) == 0 &&
               !strcmp(oci_ref_api_reference(&r), r.digest) && !strcmp(r.tag, "t") && !strcmp(r.domain, "h:1"),
               "a tag and a digest: the digest is what is asked for");
        oci_ref_release(&r);
        return tap_done();
}
