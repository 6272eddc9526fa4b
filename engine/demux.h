/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Demultiplexer for the Engine API's non-TTY stream format (logs, attach,
 * exec): frames of an 8-byte header {stream, 0, 0, 0, len32 big-endian}
 * followed by len payload bytes (engine-api.md §5.4).  Frames split across
 * curl write callbacks at any byte, so this is a small state machine that
 * never buffers payload: every slice is passed on as soon as it arrives.
 *
 * Stream 1 is stdout, 2 stderr; 0 (stdin echo) counts as stdout and 3
 * (Docker's "system error") as stderr.  A header that is not a frame header
 * (stream > 3 or non-zero padding: the container had a TTY, or the stream is
 * garbage) switches the demuxer to raw mode for the rest of the stream: the
 * bytes, header included, go to stdout unchanged, so nothing is lost.
 */
#ifndef HM_ENGINE_DEMUX_H
#define HM_ENGINE_DEMUX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef void (*eng_demux_fn)(void *data, int stream, const char *buf, size_t n);

struct eng_demux {
        uint8_t hdr[8];
        size_t hdr_len;     /* header bytes collected so far (0..7) */
        uint32_t remaining; /* payload bytes left in the current frame */
        int stream;         /* stream of the current frame */
        bool raw;           /* not a framed stream: pass everything through */
        uint64_t frames;    /* complete headers seen */
};

void eng_demux_init(struct eng_demux *d);
void eng_demux_feed(struct eng_demux *d, const char *buf, size_t n, eng_demux_fn fn, void *data);
/* At end of stream: 0 when it ended on a frame boundary, -1 when a header or payload was cut short. */
int eng_demux_finish(const struct eng_demux *d);

#endif
