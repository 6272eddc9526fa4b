/* SPDX-License-Identifier: Apache-2.0 */
#include "sched/loop.h"
#include "lib/util.h"
#include "lib/strbuf.h"
#include "tests/unit/tap.h"

#include <fcntl.h>

static int order[8], n_order;

static void on_timer(struct hm_loop *l, uint64_t id, void *data)
{
        order[n_order++] = (int) (intptr_t) data;
        if (n_order == 3)
                hm_loop_stop(l);
}

static void on_pipe(struct hm_loop *l, int fd, short revents, void *data)
{
        char buf[16];
        ssize_t n = read(fd, buf, sizeof buf);
        *(ssize_t *) data = n;
        hm_loop_del_fd(l, fd);
        hm_loop_stop(l);
}

int main(void)
{
        struct hm_loop *l = hm_loop_new();
        hm_error_t err = NULL;

        int64_t t0 = now_ms();
        hm_loop_add_timer(l, 30, on_timer, (void *) 3);
        hm_loop_add_timer(l, 10, on_timer, (void *) 1);
        uint64_t dead = hm_loop_add_timer(l, 15, on_timer, (void *) 99);
        hm_loop_add_timer(l, 20, on_timer, (void *) 2);
        hm_loop_del_timer(l, dead);
        tap_ok(hm_loop_run(l, &err) == 0, "loop runs timers");
        tap_ok(n_order == 3 && order[0] == 1 && order[1] == 2 && order[2] == 3, "timers fire in deadline order, cancelled one never");
        tap_ok(now_ms() - t0 >= 30, "loop waited for the last deadline");
        tap_ok(hm_loop_n_timers(l) == 0, "no timers left");

        int p[2];
        if (pipe2(p, O_CLOEXEC) < 0)
                return 1;
        ssize_t got = -2;
        tap_ok(hm_loop_add_fd(l, p[0], POLLIN, on_pipe, &got, &err) == 0, "register a pipe");
        tap_ok(hm_loop_add_fd(l, p[0], POLLIN, on_pipe, &got, &err) < 0 && err, "double registration refused");
        hm_error_release(&err);
        (void) !write(p[1], "hi", 2);
        tap_ok(hm_loop_run(l, &err) == 0 && got == 2, "fd callback got the bytes");
        tap_ok(hm_loop_n_fds(l) == 0, "callback removed its own fd");
        close(p[0]);
        close(p[1]);

        struct strbuf sb = STRBUF_INIT;
        strbuf_add_json_string(&sb, "a\"b\\\n\x01\xc3\xa9\xff\xe2\x9c", 11);
        TAP_IS_STR(sb.buf, "\"a\\\"b\\\\\\n\\u0001\xc3\xa9\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\"", "json string escaping replaces invalid utf-8");
        strbuf_release(&sb);

        hm_loop_free(l);
        return tap_done();
}
