/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer harness for oci_spec_parse (crun and systemd fuzz their OCI
 * parsers too).  Every accepted input must serialise, parse again and
 * serialise to the same text; every refused one must carry a message.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -std=gnu11 -D_GNU_SOURCE -I. \
 *         tests/fuzz/fuzz-spec.c oci/spec.c oci/spec-parse.c oci/spec-write.c oci/spec-default.c \
 *         lib/error.c lib/util.c lib/strbuf.c -lyajl -o build/fuzz-spec
 *   build/fuzz-spec -max_total_time=60 tests/fuzz/corpus/spec
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "oci/spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        struct oci_spec *s = NULL;
        hm_error_t err = NULL;
        if (oci_spec_parse((const char *) data, size, &s, &err) < 0) {
                if (!err || !err->msg || strncmp(err->msg, "config.json: ", 13))
                        abort();
                hm_error_release(&err);
                return 0;
        }
        char *j1 = NULL, *j2 = NULL;
        struct oci_spec *s2 = NULL;
        if (oci_spec_to_json(s, false, &j1, &err) < 0) {
                /* only invalid UTF-8 can stop the writer; the parser refuses it first */
                abort();
        }
        if (oci_spec_parse(j1, strlen(j1), &s2, &err) < 0 || oci_spec_to_json(s2, false, &j2, &err) < 0 || strcmp(j1, j2))
                abort();
        free(j1);
        free(j2);
        oci_spec_free(s2);
        oci_spec_free(s);
        return 0;
}
