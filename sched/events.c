/* SPDX-License-Identifier: Apache-2.0 */
#include "sched/events.h"
#include "sched/runner.h"
#include "lib/strbuf.h"
#include "lib/util.h"

#include <stdint.h>
#include <stdio.h>
#include <time.h>

static const char *const kind_names[] = {
        [EV_BUILD_START] = "build_start",       [EV_STEP_QUEUED] = "step_queued",
        [EV_STEP_START] = "step_start",         [EV_STEP_LOG] = "step_log",
        [EV_STEP_CACHE_HIT] = "step_cache_hit", [EV_STEP_END] = "step_end",
        [EV_CHAIN_FAILED] = "chain_failed",     [EV_STEP_SKIPPED] = "step_skipped",
        [EV_STEP_CANCELED] = "step_canceled",   [EV_NOTICE] = "notice",
        [EV_BUILD_END] = "build_end",
};

const char *hm_event_kind_name(enum hm_event_kind k) { return kind_names[k]; }

#define add_lit(sb, s) strbuf_add((sb), (s), sizeof(s) - 1)

/* Decimal digits of v, right-aligned in buf[20]; returns the first. */
static char *fmt_u64(char buf[20], uint64_t v)
{
        char *p = buf + 20;
        do
                *--p = (char) ('0' + v % 10);
        while (v /= 10);
        return p;
}

static void add_u64(struct strbuf *sb, uint64_t v)
{
        char buf[20];
        char *p = fmt_u64(buf, v);
        strbuf_add(sb, p, (size_t) (buf + 20 - p));
}

static void add_i64(struct strbuf *sb, int64_t v)
{
        if (v < 0) {
                strbuf_addch(sb, '-');
                add_u64(sb, 0 - (uint64_t) v);
        } else {
                add_u64(sb, (uint64_t) v);
        }
}

/*
 * RFC 3339 UTC with nanoseconds and Z, as chrono prints it.  The date and
 * time up to the second change once a second: formatted then and kept
 * (a log-heavy step emits hundreds of thousands of events a second).
 */
static void add_ts(struct strbuf *sb, int64_t ns)
{
        static int64_t cached_sec = INT64_MIN;
        static char prefix[40];
        static size_t prefix_len;
        int64_t sec = ns / 1000000000, frac = ns % 1000000000;
        if (frac < 0) {
                frac += 1000000000;
                sec--;
        }
        if (sec != cached_sec) {
                time_t s = (time_t) sec;
                struct tm tm;
                gmtime_r(&s, &tm);
                int n = snprintf(prefix, sizeof prefix, "\"%04d-%02d-%02dT%02d:%02d:%02d.", tm.tm_year + 1900,
                                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
                prefix_len = n > 0 && (size_t) n < sizeof prefix ? (size_t) n : 0;
                cached_sec = sec;
        }
        char digits[11];
        for (int i = 8; i >= 0; i--, frac /= 10)
                digits[i] = (char) ('0' + frac % 10);
        digits[9] = 'Z';
        digits[10] = '"';
        strbuf_add(sb, prefix, prefix_len);
        strbuf_add(sb, digits, sizeof digits);
}

/*
 * A log line as a JSON string: printable ASCII without quote or backslash
 * (nearly every line) is copied in one piece; anything else takes the
 * escaping, UTF-8 checking path.
 */
static void add_json_line(struct strbuf *sb, const char *p, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                unsigned char c = (unsigned char) p[i];
                if (c < 0x20 || c >= 0x7f || c == '"' || c == '\\') {
                        strbuf_add_json_string(sb, p, n);
                        return;
                }
        }
        strbuf_grow(sb, n + 2);
        sb->buf[sb->len++] = '"';
        memcpy(sb->buf + sb->len, p, n);
        sb->len += n;
        sb->buf[sb->len++] = '"';
        sb->buf[sb->len] = 0;
}

static void add_json_cstr(struct strbuf *sb, const char *s)
{
        if (s)
                add_json_line(sb, s, strlen(s));
        else
                add_lit(sb, "null");
}

/* `name` is the literal ,"field": */
#define field_str(sb, name, v)                   \
        do {                                     \
                add_lit(sb, ",\"" name "\":");   \
                add_json_cstr(sb, v);            \
        } while (0)

void hm_event_to_json(const struct hm_event *ev, struct strbuf *sb)
{
        add_lit(sb, "{\"kind\":\"");
        strbuf_addstr(sb, kind_names[ev->kind]);
        strbuf_addch(sb, '"');
        switch (ev->kind) {
        case EV_BUILD_START:
                field_str(sb, "run_id", ev->run_id);
                strbuf_addf(sb, ",\"plan\":{\"step_count\":%zu,\"chain_count\":%zu,\"default_runner\":",
                            ev->step_count, ev->chain_count);
                strbuf_add_json_str(sb, ev->default_runner);
                strbuf_addstr(sb, "},\"started_at\":");
                add_ts(sb, ev->ts_ns);
                break;
        case EV_STEP_QUEUED:
                field_str(sb, "step_id", ev->step_id);
                field_str(sb, "key", ev->key);
                add_lit(sb, ",\"chain_idx\":");
                add_u64(sb, ev->chain_idx);
                field_str(sb, "parent_key", ev->parent_key);
                field_str(sb, "display_name", ev->display_name);
                break;
        case EV_STEP_START:
                field_str(sb, "step_id", ev->step_id);
                field_str(sb, "key", ev->key);
                field_str(sb, "runner", ev->runner);
                field_str(sb, "image", ev->image);
                break;
        case EV_STEP_LOG:
                field_str(sb, "step_id", ev->step_id);
                field_str(sb, "key", ev->key);
                field_str(sb, "stream", ev->stream == HM_STREAM_STDERR ? "stderr" : "stdout");
                add_lit(sb, ",\"line\":");
                add_json_line(sb, ev->line, ev->line_len);
                add_lit(sb, ",\"ts\":");
                add_ts(sb, ev->ts_ns);
                break;
        case EV_STEP_CACHE_HIT:
                field_str(sb, "step_id", ev->step_id);
                field_str(sb, "key", ev->key);
                field_str(sb, "cache_key", ev->cache_key);
                field_str(sb, "tag", ev->tag);
                break;
        case EV_STEP_END:
                field_str(sb, "step_id", ev->step_id);
                field_str(sb, "key", ev->key);
                add_lit(sb, ",\"exit_code\":");
                add_i64(sb, ev->exit_code);
                add_lit(sb, ",\"duration_ms\":");
                add_i64(sb, ev->duration_ms);
                field_str(sb, "snapshot", ev->snapshot);
                break;
        case EV_CHAIN_FAILED:
                add_lit(sb, ",\"chain_idx\":");
                add_u64(sb, ev->chain_idx);
                field_str(sb, "failed_step_id", ev->step_id);
                field_str(sb, "failed_step_key", ev->key);
                add_lit(sb, ",\"exit_code\":");
                add_i64(sb, ev->exit_code);
                field_str(sb, "message", ev->message);
                add_lit(sb, ",\"ts\":");
                add_ts(sb, ev->ts_ns);
                break;
        case EV_STEP_SKIPPED:
        case EV_STEP_CANCELED:
                field_str(sb, "step_id", ev->step_id);
                field_str(sb, "key", ev->key);
                field_str(sb, "reason", ev->reason);
                break;
        case EV_NOTICE:
                field_str(sb, "key", ev->key);
                field_str(sb, "notice", ev->notice_kind);
                field_str(sb, "message", ev->message);
                break;
        case EV_BUILD_END:
                add_lit(sb, ",\"exit_code\":");
                add_i64(sb, ev->exit_code);
                add_lit(sb, ",\"duration_ms\":");
                add_i64(sb, ev->duration_ms);
                break;
        }
        strbuf_addch(sb, '}');
}

void hm_sink_free(struct hm_sink *s)
{
        if (s)
                s->free(s);
}

/* ---- NDJSON ---------------------------------------------------------- */

struct json_sink {
        struct hm_sink base;
        int fd;
        struct strbuf buf;
};

static void json_flush(struct hm_sink *s)
{
        struct json_sink *j = (struct json_sink *) s;
        /* blocking on purpose: a slow consumer slows the run, it never loses an event */
        if (j->buf.len)
                (void) write_all(j->fd, j->buf.buf, j->buf.len);
        strbuf_reset(&j->buf);
}

static void json_emit(struct hm_sink *s, const struct hm_event *ev)
{
        struct json_sink *j = (struct json_sink *) s;
        hm_event_to_json(ev, &j->buf);
        strbuf_addch(&j->buf, '\n');
        if (j->buf.len >= HM_SINK_BUFFER || ev->kind == EV_BUILD_END)
                json_flush(s);
}

static void json_free(struct hm_sink *s)
{
        struct json_sink *j = (struct json_sink *) s;
        json_flush(s);
        strbuf_release(&j->buf);
        free(j);
}

struct hm_sink *hm_sink_json_new(int fd)
{
        struct json_sink *j = xzalloc(sizeof *j);
        j->base.emit = json_emit;
        j->base.flush = json_flush;
        j->base.free = json_free;
        j->fd = fd;
        strbuf_init(&j->buf, HM_SINK_BUFFER + 4096);
        return &j->base;
}
