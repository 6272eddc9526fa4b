/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A compact SHA-256 (FIPS 180-4), for verifying OCI blob digests without
 * pulling in libcrypto.  Streaming: init, update any number of times, final.
 */
#ifndef HM_SHA256_H
#define HM_SHA256_H

#include <stddef.h>
#include <stdint.h>

struct sha256 {
        uint32_t h[8];
        uint64_t len; /* bytes hashed so far */
        uint8_t buf[64];
        size_t n; /* bytes in buf */
};

void sha256_init(struct sha256 *c);
void sha256_update(struct sha256 *c, const void *data, size_t n);
void sha256_final(struct sha256 *c, uint8_t out[32]);
/* Final digest as 64 lowercase hex characters plus NUL. */
void sha256_final_hex(struct sha256 *c, char out[65]);

#endif
