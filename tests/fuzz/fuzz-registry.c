/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer harness for what a registry pull parses from untrusted text: the
 * first byte picks the parser, the rest is its input.
 *   0: image references (oci/ref.c): an accepted one normalises to a fixed
 *      point; a refused one says "invalid reference '...'"
 *   1: manifests and indexes (oci/manifest.c): accepted ones hold checked
 *      digests and a non-empty layer list, or a platform choice that
 *      answers; refused ones name "manifest: ..."
 *   2: WWW-Authenticate challenges and base64 (oci/auth.c)
 * fuzz-sources: oci/ref.c oci/manifest.c oci/auth.c lib/error.c lib/util.c lib/strbuf.c
 * fuzz-pkgs: yajl
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "lib/util.h"
#include "oci/auth.h"
#include "oci/manifest.h"
#include "oci/ref.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_ref(const char *s)
{
        struct oci_ref r;
        hm_error_t err = NULL;
        if (oci_ref_parse(s, &r, &err) < 0) {
                if (!err || !str_has_prefix(err->msg, "invalid reference '"))
                        abort();
                hm_error_release(&err);
                return;
        }
        char *a = oci_ref_string(&r);
        struct oci_ref r2;
        if (oci_ref_parse(a, &r2, &err) < 0)
                abort();
        char *b = oci_ref_string(&r2);
        if (strcmp(a, b) || !oci_ref_api_reference(&r) || !r.domain[0] || !r.path[0])
                abort();
        free(a);
        free(b);
        oci_ref_release(&r);
        oci_ref_release(&r2);
}

static void fuzz_manifest(const char *s, size_t n)
{
        struct oci_manifest m;
        hm_error_t err = NULL;
        const char *ct = n > 0 && (s[0] & 1) ? OCI_MT_INDEX : NULL;
        if (oci_manifest_parse(s, n, ct, &m, &err) < 0) {
                if (!err || !str_has_prefix(err->msg, "manifest: "))
                        abort();
                hm_error_release(&err);
                return;
        }
        if (m.is_index) {
                int i = oci_index_select(&m, "amd64", NULL, &err);
                if (i < 0 ? !err : (size_t) i >= m.n_entries)
                        abort();
                hm_error_release(&err);
                for (size_t k = 0; k < m.n_entries; k++)
                        if (!oci_digest_hex(m.entries[k].digest))
                                abort();
        } else {
                if (m.n_layers == 0 || !oci_digest_hex(m.config.digest))
                        abort();
                for (size_t k = 0; k < m.n_layers; k++)
                        if (!oci_digest_hex(m.layers[k].digest))
                                abort();
        }
        oci_manifest_release(&m);
}

static void fuzz_auth(const char *s, size_t n)
{
        struct oci_challenge c;
        hm_error_t err = NULL;
        if (oci_challenge_parse(s, &c, &err) < 0) {
                if (!err || !str_has_prefix(err->msg, "WWW-Authenticate: "))
                        abort();
                hm_error_release(&err);
        } else {
                if (!c.scheme || (!strcmp(c.scheme, "bearer") && (!c.realm || !c.realm[0])))
                        abort();
                oci_challenge_release(&c);
        }
        size_t len = 0;
        char *dec = oci_base64_decode(s, &len);
        if (dec) {
                char *enc = oci_base64_encode(dec, len);
                size_t back = 0;
                char *dec2 = oci_base64_decode(enc, &back);
                if (!dec2 || back != len || memcmp(dec, dec2, len))
                        abort();
                free(dec2);
                free(enc);
                free(dec);
        }
        (void) n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1 || size > 1 << 16)
                return 0;
        char *s = xstrndup((const char *) data + 1, size - 1); /* stops at a NUL, like a C string would */
        switch (data[0] % 3) {
        case 0: fuzz_ref(s); break;
        case 1: fuzz_manifest((const char *) data + 1, size - 1); break;
        default: fuzz_auth(s, size - 1); break;
        }
        free(s);
        return 0;
}
