/* SPDX-License-Identifier: Apache-2.0 */
#include "engine/demux.h"

#include <string.h>

#include "sched/runner.h"

void eng_demux_init(struct eng_demux *d)
{
        memset(d, 0, sizeof *d);
}

static int map_stream(uint8_t s)
{
        return s == 2 || s == 3 ? HM_STREAM_STDERR : HM_STREAM_STDOUT;
}

static bool header_valid(const uint8_t *h)
{
        return h[0] <= 3 && h[1] == 0 && h[2] == 0 && h[3] == 0;
}

/* Consume header bytes; returns how many of buf were used. */
static size_t take_header(struct eng_demux *d, const char *buf, size_t n, eng_demux_fn fn, void *data)
{
        size_t want = sizeof d->hdr - d->hdr_len;
        size_t k = n < want ? n : want;
        memcpy(d->hdr + d->hdr_len, buf, k);
        d->hdr_len += k;
        if (d->hdr_len < sizeof d->hdr)
                return k;
        d->hdr_len = 0;
        if (!header_valid(d->hdr)) {
                d->raw = true;
                fn(data, HM_STREAM_STDOUT, (const char *) d->hdr, sizeof d->hdr);
                return k;
        }
        d->frames++;
        d->stream = map_stream(d->hdr[0]);
        d->remaining = (uint32_t) d->hdr[4] << 24 | (uint32_t) d->hdr[5] << 16 |
                       (uint32_t) d->hdr[6] << 8 | (uint32_t) d->hdr[7];
        return k;
}

void eng_demux_feed(struct eng_demux *d, const char *buf, size_t n, eng_demux_fn fn, void *data)
{
        while (n > 0) {
                if (d->raw) {
                        fn(data, HM_STREAM_STDOUT, buf, n);
                        return;
                }
                size_t used;
                if (d->remaining == 0) {
                        used = take_header(d, buf, n, fn, data);
                } else {
                        used = n < d->remaining ? n : d->remaining;
                        fn(data, d->stream, buf, used);
                        d->remaining -= (uint32_t) used;
                }
                buf += used;
                n -= used;
        }
}

int eng_demux_finish(const struct eng_demux *d)
{
        if (d->raw)
                return 0;
        return d->hdr_len == 0 && d->remaining == 0 ? 0 : -1;
}
