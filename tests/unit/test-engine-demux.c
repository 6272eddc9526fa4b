/* SPDX-License-Identifier: Apache-2.0 */
/* The Engine API stream demuxer (engine/demux.h), fed in every way curl might split it. */
#include "engine/demux.h"
#include "lib/strbuf.h"
#include "lib/util.h"
#include "sched/runner.h"
#include "tests/unit/tap.h"

/* What came out: per stream bytes, plus a transcript "<stream>:<bytes>|" merged by stream runs. */
struct sink {
        struct strbuf out, err, transcript;
        int last;
        size_t calls;
};

static void sink_init(struct sink *k)
{
        strbuf_init(&k->out, 0);
        strbuf_init(&k->err, 0);
        strbuf_init(&k->transcript, 0);
        k->last = 0;
        k->calls = 0;
}

static void sink_release(struct sink *k)
{
        strbuf_release(&k->out);
        strbuf_release(&k->err);
        strbuf_release(&k->transcript);
}

static void collect(void *data, int stream, const char *buf, size_t n)
{
        struct sink *k = data;
        k->calls++;
        strbuf_add(stream == HM_STREAM_STDERR ? &k->err : &k->out, buf, n);
        if (stream != k->last)
                strbuf_addf(&k->transcript, "|%d:", stream);
        k->last = stream;
        strbuf_add(&k->transcript, buf, n);
}

static void add_frame(struct strbuf *sb, int stream, const char *payload, size_t n)
{
        unsigned char h[8] = { (unsigned char) stream, 0, 0, 0, (unsigned char) (n >> 24), (unsigned char) (n >> 16),
                               (unsigned char) (n >> 8), (unsigned char) n };
        strbuf_add(sb, h, 8);
        strbuf_add(sb, payload, n);
}

static unsigned rnd_state = 12345;
static unsigned rnd(void)
{
        rnd_state = rnd_state * 1103515245u + 12345u;
        return (rnd_state >> 16) & 0x7fff;
}

/* Feed `in` in pieces chosen by mode: 0 whole, 1 byte by byte, 2+ random splits. */
static int feed(const struct strbuf *in, int mode, struct sink *k)
{
        struct eng_demux d;
        eng_demux_init(&d);
        size_t off = 0;
        while (off < in->len) {
                size_t n = mode == 0 ? in->len - off : mode == 1 ? 1 : 1 + rnd() % 23;
                if (n > in->len - off)
                        n = in->len - off;
                eng_demux_feed(&d, in->buf + off, n, collect, k);
                off += n;
        }
        return eng_demux_finish(&d);
}

static void test_interleaved(void)
{
        struct strbuf in = STRBUF_INIT, want_out = STRBUF_INIT, want_err = STRBUF_INIT, want_tr = STRBUF_INIT;
        int last = 0;
        for (int i = 0; i < 200; i++) {
                int stream = 1 + (int) (rnd() % 2);
                char payload[64];
                size_t n = rnd() % sizeof payload;
                for (size_t j = 0; j < n; j++)
                        payload[j] = (char) (rnd() & 0xff); /* binary, NULs included */
                add_frame(&in, stream, payload, n);
                strbuf_add(stream == 1 ? &want_out : &want_err, payload, n);
                if (n && stream != last) {
                        strbuf_addf(&want_tr, "|%d:", stream);
                        last = stream;
                }
                strbuf_add(&want_tr, payload, n);
        }
        for (int mode = 0; mode < 6; mode++) {
                struct sink k;
                sink_init(&k);
                int r = feed(&in, mode, &k);
                tap_ok(r == 0, "mode %d: clean end of stream", mode);
                tap_ok(k.out.len == want_out.len && memcmp(k.out.buf, want_out.buf, k.out.len) == 0,
                       "mode %d: stdout bytes exact (%zu)", mode, want_out.len);
                tap_ok(k.err.len == want_err.len && memcmp(k.err.buf, want_err.buf, k.err.len) == 0,
                       "mode %d: stderr bytes exact (%zu)", mode, want_err.len);
                tap_ok(k.transcript.len == want_tr.len && memcmp(k.transcript.buf, want_tr.buf, k.transcript.len) == 0,
                       "mode %d: interleaving kept", mode);
                sink_release(&k);
        }
        strbuf_release(&in);
        strbuf_release(&want_out);
        strbuf_release(&want_err);
        strbuf_release(&want_tr);
}

static void test_truncated(void)
{
        struct strbuf in = STRBUF_INIT;
        add_frame(&in, 1, "out1\n", 5);
        strbuf_add(&in, "\x02\0\0\0", 4); /* half a header */
        struct sink k;
        sink_init(&k);
        tap_ok(feed(&in, 1, &k) < 0, "truncated header at EOF is reported");
        TAP_IS_STR(k.out.buf, "out1\n", "bytes before the cut header delivered");
        tap_ok(k.err.len == 0, "nothing of the cut frame delivered");
        sink_release(&k);

        strbuf_reset(&in);
        add_frame(&in, 2, "err1\n", 5);
        in.len -= 2; /* cut the payload */
        in.buf[in.len] = '\0';
        sink_init(&k);
        tap_ok(feed(&in, 2, &k) < 0, "truncated payload at EOF is reported");
        TAP_IS_STR(k.err.buf, "err", "the part of the payload that came is delivered");
        sink_release(&k);
        strbuf_release(&in);
}

static void test_huge(void)
{
        struct eng_demux d;
        eng_demux_init(&d);
        struct sink k;
        sink_init(&k);
        const unsigned char h[8] = { 2, 0, 0, 0, 0xff, 0xff, 0xff, 0xff };
        eng_demux_feed(&d, (const char *) h, 8, collect, &k);
        char *chunk = xmalloc(1 << 20);
        memset(chunk, 'x', 1 << 20);
        for (int i = 0; i < 8; i++)
                eng_demux_feed(&d, chunk, 1 << 20, collect, &k);
        tap_ok(k.err.len == 8u << 20 && k.out.len == 0, "4 GiB frame: 8 MiB streamed to stderr without buffering");
        tap_ok(d.remaining == 0xffffffffu - (8u << 20), "remaining length counts down");
        tap_ok(eng_demux_finish(&d) < 0, "stream ending inside a huge frame is truncated");
        free(chunk);
        sink_release(&k);
}

static void test_odd_frames(void)
{
        struct strbuf in = STRBUF_INIT;
        add_frame(&in, 1, "", 0);
        add_frame(&in, 3, "sys\n", 4);
        add_frame(&in, 0, "in\n", 3);
        struct sink k;
        sink_init(&k);
        tap_ok(feed(&in, 1, &k) == 0, "empty frame and streams 0/3 parse");
        TAP_IS_STR(k.err.buf, "sys\n", "stream 3 (system error) goes to stderr");
        TAP_IS_STR(k.out.buf, "in\n", "stream 0 goes to stdout");
        sink_release(&k);

        /* a TTY container's output is not framed: pass it through */
        strbuf_reset(&in);
        strbuf_addstr(&in, "hello tty\r\nmore\r\n");
        sink_init(&k);
        tap_ok(feed(&in, 1, &k) == 0, "unframed stream ends cleanly");
        TAP_IS_STR(k.out.buf, "hello tty\r\nmore\r\n", "unframed bytes pass through unchanged");
        sink_release(&k);
        strbuf_release(&in);
}

int main(void)
{
        test_interleaved();
        test_truncated();
        test_huge();
        test_odd_frames();
        return tap_done();
}
