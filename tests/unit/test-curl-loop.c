/* SPDX-License-Identifier: Apache-2.0 */
/*
 * lib/curl-loop: libcurl transfers driven by hm's poll loop, against a tiny
 * HTTP server that this test forks on a Unix socket.  The server answers
 * "/ok..." with 200 and a body naming the path, "/missing" with 404, and
 * never answers "/silent" (for libcurl's own timeout and for a teardown with
 * a transfer in flight).
 */
#include "lib/curl-loop.h"
#include "lib/handles.h"
#include "lib/strbuf.h"
#include "lib/util.h"
#include "sched/loop.h"
#include "tests/unit/tap.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

static char sock_path[108];

/* ---------------------------------------------------------------- the server (child) */

static void serve_one(int c)
{
        char req[4096] = "";
        size_t n = 0;
        while (n < sizeof req - 1 && !strstr(req, "\r\n\r\n")) {
                ssize_t k = read(c, req + n, sizeof req - 1 - n);
                if (k <= 0)
                        break;
                n += (size_t) k;
                req[n] = 0;
        }
        req[n] = 0;
        char path[256] = "";
        if (sscanf(req, "GET %255s ", path) != 1)
                snprintf(path, sizeof path, "?");
        if (!strcmp(path, "/silent"))
                return; /* keep the connection open, never answer */
        char out[512];
        int len;
        if (str_has_prefix(path, "/ok"))
                len = snprintf(out, sizeof out,
                               "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
                               strlen(path), path);
        else
                len = snprintf(out, sizeof out,
                               "HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\nConnection: close\r\n\r\nno");
        (void) !write(c, out, (size_t) len);
        close(c);
}

static pid_t start_server(void)
{
        int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un a = { .sun_family = AF_UNIX };
        snprintf(a.sun_path, sizeof a.sun_path, "%s", sock_path);
        if (s < 0 || bind(s, (struct sockaddr *) &a, sizeof a) < 0 || listen(s, 16) < 0)
                return -1;
        pid_t pid = fork();
        if (pid != 0) {
                close(s);
                return pid;
        }
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        for (;;) {
                int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
                if (c >= 0)
                        serve_one(c); /* "/silent" connections stay open until the server is killed */
        }
}

/* ---------------------------------------------------------------- the client */

struct xfer {
        const char *path;
        CURL *easy;
        struct strbuf body;
        int n_done;
        CURLcode result;
        long status;
        bool inside_in_write; /* hm_curl_loop_inside() as seen from libcurl's write callback */
        bool inside_in_done;
        const char *then; /* a path to start from the done callback */
};

struct ctx {
        struct hm_loop *loop;
        struct hm_curl_loop *cl;
        struct xfer *x;
        size_t n_x;
        size_t pending;
        unsigned n_idle;
        unsigned max_fds; /* most fds seen registered for libcurl */
        bool bad_priv;
};

static struct ctx *g;

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
        struct xfer *x = userdata;
        x->inside_in_write = hm_curl_loop_inside(g->cl);
        unsigned n = hm_curl_loop_n_fds(g->cl);
        if (n > g->max_fds)
                g->max_fds = n;
        strbuf_add(&x->body, ptr, size * nmemb);
        return size * nmemb;
}

static struct xfer *find(struct ctx *c, const char *path)
{
        for (size_t i = 0; i < c->n_x; i++)
                if (c->x[i].path && !strcmp(c->x[i].path, path))
                        return &c->x[i];
        return NULL;
}

static int start(struct ctx *c, struct xfer *x, long timeout_ms)
{
        x->easy = curl_easy_init();
        strbuf_init(&x->body, 0);
        _cleanup_free_ char *url = xasprintf("http://d%s", x->path);
        if (!x->easy || curl_easy_setopt(x->easy, CURLOPT_UNIX_SOCKET_PATH, sock_path) != CURLE_OK ||
            curl_easy_setopt(x->easy, CURLOPT_URL, url) != CURLE_OK ||
            curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L) != CURLE_OK ||
            curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS, timeout_ms) != CURLE_OK ||
            curl_easy_setopt(x->easy, CURLOPT_PRIVATE, x) != CURLE_OK ||
            curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, on_write) != CURLE_OK ||
            curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x) != CURLE_OK)
                return -1;
        hm_error_t err = NULL;
        if (hm_curl_loop_add(c->cl, x->easy, &err) < 0) {
                tap_diag("add %s: %s", x->path, err->msg);
                hm_error_release(&err);
                return -1;
        }
        c->pending++;
        return 0;
}

static void on_done(CURL *easy, void *priv, CURLcode result, void *data)
{
        struct ctx *c = data;
        struct xfer *x = priv;
        if (!x || x->easy != easy) {
                c->bad_priv = true;
                return;
        }
        x->n_done++;
        x->result = result;
        x->inside_in_done = hm_curl_loop_inside(c->cl);
        (void) curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &x->status);
        hm_curl_loop_remove(c->cl, easy);
        c->pending--;
        /* outside libcurl: starting another transfer from here is allowed */
        if (x->then) {
                struct xfer *next = find(c, x->then);
                if (next && start(c, next, 5000) < 0)
                        c->bad_priv = true;
        }
        if (c->pending == 0)
                hm_loop_stop(c->loop);
}

static void on_idle(void *data)
{
        struct ctx *c = data;
        c->n_idle++;
}

static void on_guard(struct hm_loop *loop, uint64_t id, void *data)
{
        *(bool *) data = true;
        hm_loop_stop(loop);
}

/* Run the loop until every transfer ended, or a generous guard (a hang, not a measure) fired. */
static bool run(struct ctx *c)
{
        bool guard_fired = false;
        uint64_t guard = hm_loop_add_timer(c->loop, 20000, on_guard, &guard_fired);
        hm_error_t err = NULL;
        int r = hm_loop_run(c->loop, &err);
        if (r < 0) {
                tap_diag("loop: %s", err->msg);
                hm_error_release(&err);
        }
        hm_loop_del_timer(c->loop, guard);
        return r == 0 && !guard_fired;
}

static void xfer_release(struct xfer *x)
{
        if (x->easy)
                curl_easy_cleanup(x->easy);
        strbuf_release(&x->body);
}

int main(void)
{
        char dir[] = "/tmp/test-curl-loop.XXXXXX";
        if (!mkdtemp(dir))
                return 1;
        snprintf(sock_path, sizeof sock_path, "%s/http.sock", dir);
        pid_t server = start_server();
        tap_ok(server > 0, "server forked on %s", sock_path);
        if (server <= 0)
                return tap_done();

        struct hm_loop *loop = hm_loop_new();
        hm_error_t err = NULL;
        struct xfer xs[] = {
                { .path = "/ok-a", .then = "/ok-chained" },
                { .path = "/ok-b" },
                { .path = "/missing" },
                { .path = "/silent" },
                { .path = "/ok-chained" },
        };
        struct ctx c = { .loop = loop, .x = xs, .n_x = ARRAY_SIZE(xs) };
        g = &c;
        tap_ok(hm_curl_loop_new(loop, on_done, on_idle, &c, &c.cl, &err) == 0, "new curl loop");
        if (!c.cl)
                return tap_done();
        tap_ok(hm_loop_n_fds(loop) == 0 && !hm_curl_loop_inside(c.cl), "nothing registered before a transfer");

        /* four at once; "/silent" ends by libcurl's own timeout, which only the loop timer can deliver */
        bool started = start(&c, &xs[0], 5000) == 0 && start(&c, &xs[1], 5000) == 0 &&
                       start(&c, &xs[2], 5000) == 0 && start(&c, &xs[3], 300) == 0;
        tap_ok(started, "four transfers added");
        tap_ok(run(&c), "loop ran until every transfer ended (no hang)");
        tap_ok(!c.bad_priv, "done got each transfer's CURLOPT_PRIVATE and easy handle");
        tap_ok(xs[0].n_done == 1 && xs[1].n_done == 1 && xs[2].n_done == 1 && xs[3].n_done == 1 && xs[4].n_done == 1,
               "done called exactly once per transfer, the one started from done included");
        tap_ok(xs[0].result == CURLE_OK && xs[0].status == 200, "/ok-a: 200");
        TAP_IS_STR(xs[0].body.buf, "/ok-a", "/ok-a: its own body");
        TAP_IS_STR(xs[1].body.buf, "/ok-b", "/ok-b: its own body (bodies not mixed)");
        TAP_IS_STR(xs[4].body.buf, "/ok-chained", "transfer started from a done callback completed");
        /* control: the same checks tell a different answer apart */
        tap_ok(xs[2].result == CURLE_OK && xs[2].status == 404, "control: /missing is a 404, not a 200");
        tap_ok(xs[3].result == CURLE_OPERATION_TIMEDOUT && xs[3].body.len == 0,
               "/silent: libcurl's timeout reported through done (timer path), got %d", (int) xs[3].result);
        tap_ok(xs[0].inside_in_write && !xs[0].inside_in_done, "inside libcurl in its write callback, not in done");
        tap_ok(c.max_fds >= 1, "fds were registered on the loop during transfers (max %u)", c.max_fds);
        tap_ok(c.n_idle >= 1, "idle hook ran after rounds (%u)", c.n_idle);
        tap_ok(hm_curl_loop_n_fds(c.cl) == 0 && hm_loop_n_fds(loop) == 0,
               "every fd left the loop once all transfers were removed (%u)", hm_loop_n_fds(loop));

        /* teardown with a transfer in flight: fd and timer leave the loop */
        struct xfer silent2 = { .path = "/silent" };
        struct xfer *saved = c.x;
        c.x = &silent2;
        c.n_x = 1;
        tap_ok(start(&c, &silent2, 60000) == 0, "a silent transfer in flight");
        while (hm_curl_loop_n_fds(c.cl) == 0 && hm_loop_iterate(loop, 50, &err) == 0 && c.pending)
                ;
        unsigned fds_before = hm_loop_n_fds(loop);
        bool timer_before = hm_curl_loop_timer_armed(c.cl);
        /* control: the counters see the in-flight transfer's registrations */
        tap_ok(fds_before >= 1 && timer_before, "control: in flight, %u fd(s) and libcurl's timer on the loop",
               fds_before);
        hm_curl_loop_remove(c.cl, silent2.easy);
        hm_curl_loop_free(c.cl);
        c.cl = NULL;
        tap_ok(hm_loop_n_fds(loop) == 0 && hm_loop_n_timers(loop) == 0,
               "after free: no fd and no timer left on the loop (%u fds, %u timers)", hm_loop_n_fds(loop),
               hm_loop_n_timers(loop));

        /* free with a transfer still added and its fd registered (a caller's early exit path) */
        tap_ok(hm_curl_loop_new(loop, on_done, NULL, &c, &c.cl, &err) == 0, "second curl loop");
        struct xfer silent3 = { .path = "/silent" };
        c.x = &silent3;
        tap_ok(c.cl && start(&c, &silent3, 60000) == 0, "another silent transfer in flight");
        while (c.cl && hm_curl_loop_n_fds(c.cl) == 0 && hm_loop_iterate(loop, 50, &err) == 0)
                ;
        tap_ok(hm_loop_n_fds(loop) >= 1, "control: its fd is on the loop");
        {
                _cleanup_curl_loop_ struct hm_curl_loop *scoped = TAKE_PTR(c.cl);
        }
        tap_ok(hm_loop_n_fds(loop) == 0 && hm_loop_n_timers(loop) == 0,
               "_cleanup_curl_loop_ at scope end: no fd and no timer left on the loop");
        c.x = saved;

        for (size_t i = 0; i < ARRAY_SIZE(xs); i++)
                xfer_release(&xs[i]);
        xfer_release(&silent2);
        xfer_release(&silent3);
        hm_loop_free(loop);
        kill(server, SIGKILL);
        waitpid(server, NULL, 0);
        unlink(sock_path);
        rmdir(dir);
        curl_global_cleanup();
        return tap_done();
}
