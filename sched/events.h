/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The event stream of a run (hm-compat §5.1, plus step_skipped,
 * step_canceled and notice so that no step ends silently).  The scheduler
 * produces events; sinks (NDJSON, --logs lines, the TTY view) consume them.
 * A renderer only knows what events say: a fact the human view needs is a
 * field here, so --format json users get it too.
 */
#ifndef HM_EVENTS_H
#define HM_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct strbuf;

enum hm_event_kind {
        EV_BUILD_START,
        EV_STEP_QUEUED,
        EV_STEP_START,
        EV_STEP_LOG,
        EV_STEP_CACHE_HIT,
        EV_STEP_END,
        EV_CHAIN_FAILED,
        EV_STEP_SKIPPED,
        EV_STEP_CANCELED,
        EV_NOTICE,
        EV_BUILD_END,
};

struct hm_event {
        enum hm_event_kind kind;
        int64_t ts_ns; /* wall clock */
        /* build_start */
        const char *run_id;
        size_t step_count, chain_count;
        const char *default_runner;
        /* steps */
        const char *step_id; /* NULL for steps that never started */
        const char *key;
        const char *parent_key;
        const char *display_name;
        uint32_t chain_idx;
        const char *runner;
        const char *image;
        int stream; /* HM_STREAM_* */
        const char *line;
        size_t line_len;
        const char *cache_key;
        const char *tag;
        int exit_code;
        int64_t duration_ms;
        const char *snapshot;
        const char *message; /* chain_failed, notice */
        const char *reason;  /* step_skipped, step_canceled */
        const char *notice_kind;
        int32_t step_index; /* plan index, -1 for build events; not serialised */
};

struct hm_sink {
        void (*emit)(struct hm_sink *s, const struct hm_event *ev);
        void (*flush)(struct hm_sink *s); /* write out what is buffered; may be NULL */
        void (*free)(struct hm_sink *s);
};

/* Sinks buffer at most this much before writing; they are flushed before every poll(). */
#define HM_SINK_BUFFER (64 * 1024)

void hm_event_to_json(const struct hm_event *ev, struct strbuf *out);
const char *hm_event_kind_name(enum hm_event_kind k);

/* NDJSON on fd (stdout): one line per event, written whole, never dropped. */
struct hm_sink *hm_sink_json_new(int fd);
/* hm-compat §5.4 --logs lines on fd (stderr); color: ANSI per key. */
struct hm_sink *hm_sink_lines_new(int fd, bool color);
/*
 * Live view for a terminal on fd: running steps (name, elapsed, last line)
 * redrawn in place, a failed step's log tail, and a summary table at the end.
 * Needs a loop for its redraw timer.
 */
struct hm_loop;
struct hm_sink *hm_sink_tty_new(int fd, struct hm_loop *loop);
void hm_sink_free(struct hm_sink *s);

#endif
