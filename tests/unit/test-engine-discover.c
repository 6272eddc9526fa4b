/* SPDX-License-Identifier: Apache-2.0 */
/*
 * engine_runner_new() without a daemon: every failure names the candidate
 * and the reason.  Runs without engines and without root; the sockets are
 * made in a temp dir.  With HM_TEST_PODMAN_SOCK set it also checks that
 * asking for docker on a podman socket says what answered.
 */
#include <sys/socket.h>
#include <sys/un.h>

#include "engine/engine.h"
#include "lib/util.h"
#include "sched/loop.h"
#include "sched/runner.h"
#include "tests/unit/tap.h"

static char *try_new(struct hm_loop *loop, const char *kind, const char *sock)
{
        struct engine_options o = { .kind = kind, .socket = sock };
        struct hm_runner *r = NULL;
        hm_error_t err = NULL;
        if (engine_runner_new(loop, &o, &r, &err) >= 0) {
                r->ops->free(r);
                return NULL;
        }
        char *m = xstrdup(err->msg);
        hm_error_release(&err);
        return m;
}

static void expect(const char *got, const char *needle, const char *what)
{
        if (!tap_ok(got && strstr(got, needle), "%s", what))
                tap_diag("  got: '%s'\n  want it to contain: '%s'", got ? got : "(success)", needle);
}

int main(void)
{
        struct hm_loop *loop = hm_loop_new();
        char tmpl[] = "/tmp/hm-test-discover-XXXXXX";
        if (!mkdtemp(tmpl))
                return 1;
        _cleanup_free_ char *missing = xasprintf("%s/missing.sock", tmpl);
        _cleanup_free_ char *stale = xasprintf("%s/stale.sock", tmpl);

        /* a socket file nobody listens on: what a crashed daemon leaves */
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un sa = { .sun_family = AF_UNIX };
        snprintf(sa.sun_path, sizeof sa.sun_path, "%s", stale);
        tap_ok(fd >= 0 && bind(fd, (struct sockaddr *) &sa, sizeof sa) == 0, "made a stale socket file");
        close(fd);

        char *m = try_new(loop, "docker", missing);
        tap_diag("%s", m ? m : "");
        expect(m, "no docker engine answered: --socket", "missing socket fails");
        _cleanup_free_ char *w = xasprintf("%s: no such file", missing);
        expect(m, w, "missing socket: names the path and ENOENT");
        free(m);

        m = try_new(loop, "podman", stale);
        w = (free(w), xasprintf("%s: connection refused", stale));
        expect(m, w, "stale socket file: connection refused");
        expect(m, "no podman engine answered", "stale socket: names the wanted kind");
        free(m);

        _cleanup_free_ char *dh = xasprintf("unix://%s", stale);
        setenv("DOCKER_HOST", dh, 1);
        unsetenv("CONTAINER_HOST");
        m = try_new(loop, "docker", NULL);
        w = (free(w), xasprintf("no docker engine answered: $DOCKER_HOST unix://%s: connection refused; ", stale));
        expect(m, w, "$DOCKER_HOST is tried first and named");
        expect(m, "/var/run/docker.sock: ", "the default docker socket is listed next");
        tap_diag("%s", m ? m : "");
        free(m);

        /* each kind lists only its own candidates (hm doctor prints one line per kind) */
        _cleanup_free_ char *ch = xasprintf("unix://%s", missing);
        setenv("CONTAINER_HOST", ch, 1);
        m = try_new(loop, "docker", NULL);
        expect(m, w, "docker with both variables set: $DOCKER_HOST listed (control)");
        tap_ok(m && !strstr(m, "CONTAINER_HOST") && !strstr(m, "podman.sock"),
               "docker: no podman candidate listed");
        tap_diag("%s", m ? m : "");
        free(m);
        m = try_new(loop, "podman", NULL);
        _cleanup_free_ char *pw = xasprintf("no podman engine answered: $CONTAINER_HOST unix://%s: no such file; "
                                            "/run/podman/podman.sock: ", missing);
        expect(m, pw, "podman with both variables set: $CONTAINER_HOST and the podman default listed (control)");
        tap_ok(m && !strstr(m, "DOCKER_HOST") && !strstr(m, "docker.sock"), "podman: no docker candidate listed");
        tap_diag("%s", m ? m : "");
        free(m);
        unsetenv("CONTAINER_HOST");

        setenv("DOCKER_HOST", "tcp://127.0.0.1:2375", 1);
        m = try_new(loop, "docker", NULL);
        expect(m, "$DOCKER_HOST 'tcp://127.0.0.1:2375': only unix:///path sockets are supported",
               "a tcp:// DOCKER_HOST is a clear error");
        free(m);
        unsetenv("DOCKER_HOST");

        struct engine_options bad = { .kind = "docker", .socket = missing, .pull = "sometimes" };
        struct hm_runner *r = NULL;
        hm_error_t err = NULL;
        tap_ok(engine_runner_new(loop, &bad, &r, &err) < 0 && strstr(err->msg, "--pull 'sometimes'"),
               "bad --pull value rejected");
        hm_error_release(&err);

        const char *podman = getenv("HM_TEST_PODMAN_SOCK");
        if (podman) {
                m = try_new(loop, "docker", podman);
                expect(m, "podman 4", "kind docker on a podman socket: says podman answered");
                free(m);
        }
        const char *docker = getenv("HM_TEST_DOCKER_SOCK");
        if (docker) {
                m = try_new(loop, "podman", docker);
                expect(m, "docker 2", "kind podman on a docker socket: says docker answered");
                free(m);
        }
        tap_ok(hm_loop_n_fds(loop) == 0, "no fd left on the loop");
        unlink(stale);
        rmdir(tmpl);
        hm_loop_free(loop);
        return tap_done();
}
