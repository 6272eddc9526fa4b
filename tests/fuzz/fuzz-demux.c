/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libFuzzer harness for the Engine API stream demuxer.  The first input byte
 * picks the split pattern; the rest is the stream.  Checks: feeding in
 * pieces gives exactly the bytes of feeding it whole, per stream and in
 * order, and the end-of-stream verdict agrees.
 *
 *   clang -std=gnu11 -D_GNU_SOURCE -I. -g -O1 -fsanitize=fuzzer,address,undefined \
 *         tests/fuzz/fuzz-demux.c engine/demux.c -o build-fuzz/fuzz-demux
 *   build-fuzz/fuzz-demux -max_total_time=60 tests/fuzz/corpus/demux
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/demux.h"
#include "sched/runner.h"

struct out {
        unsigned char *buf;
        size_t len, cap;
};

static void put(struct out *o, int stream, const char *b, size_t n)
{
        if (stream != HM_STREAM_STDOUT && stream != HM_STREAM_STDERR)
                abort();
        if (o->len + n + 1 > o->cap) {
                o->cap = (o->len + n + 1) * 2;
                o->buf = realloc(o->buf, o->cap);
                if (!o->buf)
                        abort();
        }
        /* tag each byte with its stream so interleaving is compared too */
        for (size_t i = 0; i < n; i++) {
                o->buf[o->len++] = (unsigned char) b[i];
                o->buf[o->len++] = (unsigned char) stream;
                if (o->len + 2 > o->cap) {
                        o->cap *= 2;
                        o->buf = realloc(o->buf, o->cap);
                        if (!o->buf)
                                abort();
                }
        }
}

static void collect(void *data, int stream, const char *buf, size_t n)
{
        put(data, stream, buf, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1)
                return 0;
        unsigned seed = data[0];
        const char *s = (const char *) data + 1;
        size_t n = size - 1;

        struct out whole = { 0 }, split = { 0 };
        struct eng_demux a, b;
        eng_demux_init(&a);
        eng_demux_feed(&a, s, n, collect, &whole);
        int ra = eng_demux_finish(&a);

        eng_demux_init(&b);
        size_t off = 0;
        unsigned st = seed | 1;
        while (off < n) {
                st = st * 1103515245u + 12345u;
                size_t k = 1 + (st >> 16) % (seed % 17 + 1);
                if (k > n - off)
                        k = n - off;
                eng_demux_feed(&b, s + off, k, collect, &split);
                off += k;
        }
        eng_demux_feed(&b, s, 0, collect, &split); /* empty feeds are no-ops */
        int rb = eng_demux_finish(&b);

        if (ra != rb || whole.len != split.len || (whole.len && memcmp(whole.buf, split.buf, whole.len) != 0))
                abort();
        /* payload never exceeds the input */
        if (whole.len / 2 > n)
                abort();
        free(whole.buf);
        free(split.buf);
        return 0;
}
