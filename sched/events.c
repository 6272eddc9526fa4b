/* SPDX-License-Identifier: Apache-2.0 */
#include "sched/events.h"
#include "sched/runner.h"
#include "lib/strbuf.h"
#include "lib/util.h"

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

/* RFC 3339 UTC with nanoseconds and Z, as chrono prints it. */
static void add_ts(struct strbuf *sb, int64_t ns)
{
        time_t s = (time_t) (ns / 1000000000);
        struct tm tm;
        gmtime_r(&s, &tm);
        strbuf_addf(sb, "\"%04d-%02d-%02dT%02d:%02d:%02d.%09dZ\"", tm.tm_year + 1900, tm.tm_mon + 1,
                    tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int) (ns % 1000000000));
}

static void field_str(struct strbuf *sb, const char *name, const char *v)
{
        strbuf_addf(sb, ",\"%s\":", name);
        strbuf_add_json_str(sb, v);
}

void hm_event_to_json(const struct hm_event *ev, struct strbuf *sb)
{
        strbuf_addf(sb, "{\"kind\":\"%s\"", kind_names[ev->kind]);
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
                strbuf_addf(sb, ",\"chain_idx\":%u", ev->chain_idx);
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
                strbuf_addstr(sb, ",\"line\":");
                strbuf_add_json_string(sb, ev->line, ev->line_len);
                strbuf_addstr(sb, ",\"ts\":");
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
                strbuf_addf(sb, ",\"exit_code\":%d,\"duration_ms\":%lld", ev->exit_code,
                            (long long) ev->duration_ms);
                field_str(sb, "snapshot", ev->snapshot);
                break;
        case EV_CHAIN_FAILED:
                strbuf_addf(sb, ",\"chain_idx\":%u", ev->chain_idx);
                field_str(sb, "failed_step_id", ev->step_id);
                field_str(sb, "failed_step_key", ev->key);
                strbuf_addf(sb, ",\"exit_code\":%d", ev->exit_code);
                field_str(sb, "message", ev->message);
                strbuf_addstr(sb, ",\"ts\":");
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
                strbuf_addf(sb, ",\"exit_code\":%d,\"duration_ms\":%lld", ev->exit_code,
                            (long long) ev->duration_ms);
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
