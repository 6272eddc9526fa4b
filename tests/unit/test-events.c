/* SPDX-License-Identifier: Apache-2.0 */
/* The NDJSON encoder and the --logs line renderer. */
#include "sched/events.h"
#include "sched/runner.h"
#include "lib/strbuf.h"
#include "lib/util.h"
#include "tests/unit/tap.h"

#include <yajl/yajl_tree.h>

#define TS 1781172000123456789LL /* 2026-06-11T10:00:00.123456789Z */

static char *enc(const struct hm_event *ev)
{
        struct strbuf sb = STRBUF_INIT;
        hm_event_to_json(ev, &sb);
        return strbuf_detach(&sb, NULL);
}

static bool valid_json(const char *s)
{
        char eb[256];
        yajl_val v = yajl_tree_parse(s, eb, sizeof eb);
        if (v)
                yajl_tree_free(v);
        return v != NULL;
}

static void check(const struct hm_event *ev, const char *want, const char *what)
{
        _cleanup_free_ char *got = enc(ev);
        TAP_IS_STR(got, want, "%s", what);
        tap_ok(valid_json(got), "%s is valid JSON", what);
}

static void lines_check(const struct hm_event *ev, const char *want, const char *what)
{
        int p[2];
        if (pipe(p) < 0)
                abort();
        struct hm_sink *s = hm_sink_lines_new(p[1], false);
        s->emit(s, ev);
        hm_sink_free(s);
        close(p[1]);
        char buf[512] = "";
        ssize_t n = read(p[0], buf, sizeof buf - 1);
        close(p[0]);
        buf[n > 0 ? n : 0] = 0;
        TAP_IS_STR(buf, want, "--logs: %s", what);
}

int main(void)
{
        struct hm_event ev = { .kind = EV_BUILD_START, .ts_ns = TS, .run_id = "0f3c0000-0000-4000-8000-000000000001",
                               .step_count = 2, .chain_count = 1, .default_runner = "ns", .step_index = -1 };
        check(&ev, "{\"kind\":\"build_start\",\"run_id\":\"0f3c0000-0000-4000-8000-000000000001\",\"plan\":{\"step_count\":2,"
                   "\"chain_count\":1,\"default_runner\":\"ns\"},\"started_at\":\"2026-06-11T10:00:00.123456789Z\"}",
              "build_start");
        lines_check(&ev, "build: 2 steps in 1 chain(s)\n", "build_start");

        ev = (struct hm_event){ .kind = EV_STEP_QUEUED, .step_id = "s1", .key = "b", .chain_idx = 1, .parent_key = "a",
                                .display_name = "exit 7" };
        check(&ev, "{\"kind\":\"step_queued\",\"step_id\":\"s1\",\"key\":\"b\",\"chain_idx\":1,\"parent_key\":\"a\",\"display_name\":\"exit 7\"}", "step_queued");
        ev.parent_key = NULL;
        check(&ev, "{\"kind\":\"step_queued\",\"step_id\":\"s1\",\"key\":\"b\",\"chain_idx\":1,\"parent_key\":null,\"display_name\":\"exit 7\"}", "step_queued root: null parent_key");

        ev = (struct hm_event){ .kind = EV_STEP_START, .step_id = "s1", .key = "b", .runner = "docker", .image = NULL };
        check(&ev, "{\"kind\":\"step_start\",\"step_id\":\"s1\",\"key\":\"b\",\"runner\":\"docker\",\"image\":null}", "step_start child");
        lines_check(&ev, "[b] start (runner=docker)\n", "child start");
        ev.image = "alpine:3.20";
        lines_check(&ev, "[b] start (runner=docker image=alpine:3.20)\n", "root start");

        const char bytes[] = "caf\xc3\xa9 \xe2\x9c\x93 \x01 \xff\"q\"\\";
        ev = (struct hm_event){ .kind = EV_STEP_LOG, .ts_ns = TS, .step_id = "s1", .key = "b", .stream = HM_STREAM_STDERR,
                                .line = bytes, .line_len = sizeof bytes - 1 };
        check(&ev, "{\"kind\":\"step_log\",\"step_id\":\"s1\",\"key\":\"b\",\"stream\":\"stderr\",\"line\":\"caf\xc3\xa9 \xe2\x9c\x93 "
                   "\\u0001 \xef\xbf\xbd\\\"q\\\"\\\\\",\"ts\":\"2026-06-11T10:00:00.123456789Z\"}",
              "step_log with UTF-8, a control byte and invalid UTF-8");
        ev.line = "x\0y";
        ev.line_len = 3;
        check(&ev, "{\"kind\":\"step_log\",\"step_id\":\"s1\",\"key\":\"b\",\"stream\":\"stderr\",\"line\":\"x\\u0000y\",\"ts\":\"2026-06-11T10:00:00.123456789Z\"}",
              "step_log with a NUL byte");

        ev = (struct hm_event){ .kind = EV_STEP_CACHE_HIT, .step_id = "s1", .key = "deps", .cache_key = "d225", .tag = "harmont-cache/deps:d225" };
        check(&ev, "{\"kind\":\"step_cache_hit\",\"step_id\":\"s1\",\"key\":\"deps\",\"cache_key\":\"d225\",\"tag\":\"harmont-cache/deps:d225\"}", "step_cache_hit");
        lines_check(&ev, "[deps] cache hit (harmont-cache/deps:d225)\n", "cache hit");

        ev = (struct hm_event){ .kind = EV_STEP_END, .step_id = "s1", .key = "b", .exit_code = 7, .duration_ms = 640 };
        check(&ev, "{\"kind\":\"step_end\",\"step_id\":\"s1\",\"key\":\"b\",\"exit_code\":7,\"duration_ms\":640,\"snapshot\":null}", "step_end failed");
        lines_check(&ev, "[b] end exit=7 duration=640ms\n", "end");

        ev = (struct hm_event){ .kind = EV_CHAIN_FAILED, .ts_ns = TS, .chain_idx = 0, .step_id = "s1", .key = "b", .exit_code = 7,
                                .message = "step 'b' exited with code 7" };
        check(&ev, "{\"kind\":\"chain_failed\",\"chain_idx\":0,\"failed_step_id\":\"s1\",\"failed_step_key\":\"b\",\"exit_code\":7,"
                   "\"message\":\"step 'b' exited with code 7\",\"ts\":\"2026-06-11T10:00:00.123456789Z\"}", "chain_failed");
        lines_check(&ev, "chain 0: FAILED at step 'b' (exit=7): step 'b' exited with code 7\n", "chain failed");

        ev = (struct hm_event){ .kind = EV_STEP_SKIPPED, .key = "c", .reason = "dependency 'b' failed" };
        check(&ev, "{\"kind\":\"step_skipped\",\"step_id\":null,\"key\":\"c\",\"reason\":\"dependency 'b' failed\"}", "step_skipped");
        lines_check(&ev, "[c] skipped: dependency 'b' failed\n", "skipped");
        ev.kind = EV_STEP_CANCELED;
        check(&ev, "{\"kind\":\"step_canceled\",\"step_id\":null,\"key\":\"c\",\"reason\":\"dependency 'b' failed\"}", "step_canceled");

        ev = (struct hm_event){ .kind = EV_NOTICE, .key = NULL, .notice_kind = "isolation", .message = "proc: read-only bind" };
        check(&ev, "{\"kind\":\"notice\",\"key\":null,\"notice\":\"isolation\",\"message\":\"proc: read-only bind\"}", "notice");
        lines_check(&ev, "hm: isolation: proc: read-only bind\n", "notice");

        ev = (struct hm_event){ .kind = EV_BUILD_END, .exit_code = 130, .duration_ms = 3050 };
        check(&ev, "{\"kind\":\"build_end\",\"exit_code\":130,\"duration_ms\":3050}", "build_end");
        lines_check(&ev, "build: end exit=130 duration=3050ms\n", "build end");
        return tap_done();
}
