/* SPDX-License-Identifier: Apache-2.0 */
/* hm oci run [--bundle DIR] ID | hm oci spec: the built-in runtime as a one-shot OCI runtime. */
#include "cmd/cmd.h"
#include "lib/util.h"
#include "oci/spec.h"
#include "runtime/runtime.h"

#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/signalfd.h>

static const char usage[] = "usage: hm oci run [--bundle DIR] [--rootless] ID\n"
                            "       hm oci spec\n";

static int load_bundle(const char *bundle, struct oci_spec **ret, hm_error_t *err)
{
        _cleanup_free_ char *path = xasprintf("%s/config.json", bundle);
        _cleanup_oci_spec_ struct oci_spec *s = NULL;
        int r = oci_spec_load(path, &s, err);
        if (r < 0)
                return r;
        if (s->root.path && s->root.path[0] != '/') {
                _cleanup_free_ char *rel = xasprintf("%s/%s", bundle, s->root.path);
                char *abs = realpath(rel, NULL);
                if (!abs)
                        return hm_error_set(err, errno, "root.path '%s': %s", rel, strerror(errno));
                free(s->root.path);
                s->root.path = abs;
        }
        *ret = TAKE_PTR(s);
        return 0;
}

/* Forward terminal signals to the container's init until it exits. */
static int wait_foreground(struct rt_container *c, hm_error_t *err)
{
        sigset_t set;
        sigemptyset(&set);
        int sigs[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
        for (size_t i = 0; i < ARRAY_SIZE(sigs); i++)
                sigaddset(&set, sigs[i]);
        sigprocmask(SIG_BLOCK, &set, NULL);
        _cleanup_close_ int sfd = signalfd(-1, &set, SFD_CLOEXEC);
        for (;;) {
                struct pollfd p[2] = { { rt_container_pidfd(c), POLLIN, 0 }, { sfd, POLLIN, 0 } };
                if (poll(p, 2, -1) < 0 && errno != EINTR)
                        return hm_error_set(err, errno, "poll: %s", strerror(errno));
                if (p[0].revents)
                        break;
                struct signalfd_siginfo si;
                if (p[1].revents && read(sfd, &si, sizeof si) == sizeof si)
                        rt_container_kill(c, (int) si.ssi_signo);
        }
        int status;
        int r = rt_container_wait(c, &status, err);
        sigprocmask(SIG_UNBLOCK, &set, NULL);
        return r < 0 ? r : status;
}

static int oci_run(int argc, char **argv, hm_error_t *err)
{
        static const struct option opts[] = { { "bundle", required_argument, NULL, 'b' },
                                               { "rootless", no_argument, NULL, 'r' },
                                               { "help", no_argument, NULL, 'h' },
                                               {} };
        const char *bundle = ".";
        bool rootless = false;
        int c;
        optind = 1;
        while ((c = getopt_long(argc, argv, "b:h", opts, NULL)) != -1) {
                if (c == 'b')
                        bundle = optarg;
                else if (c == 'r')
                        rootless = true;
                else
                        return hm_error_set_exit(err, 2, EINVAL, "%s", c == 'h' ? usage : "invalid option (see 'hm oci --help')");
        }
        if (optind + 1 != argc)
                return hm_error_set_exit(err, 2, EINVAL, "hm oci run: expected exactly one container ID");
        _cleanup_oci_spec_ struct oci_spec *spec = NULL;
        int r = load_bundle(bundle, &spec, err);
        if (r < 0)
                return r;
        struct rt_start_options o = { .stdin_fd = STDIN_FILENO, .id = argv[optind], .rootless = rootless };
        _cleanup_rt_container_ struct rt_container *ct = NULL;
        r = rt_container_start(spec, &o, &ct, err);
        if (r < 0)
                return hm_error_wrap(err, "container '%s'", argv[optind]);
        for (const char *const *n = rt_container_notices(ct); *n; n++)
                fprintf(stderr, "hm: notice: %s\n", *n);
        return wait_foreground(ct, err);
}

static int oci_spec(hm_error_t *err)
{
        _cleanup_oci_spec_ struct oci_spec *s = oci_spec_new_default();
        _cleanup_free_ char *json = NULL;
        int r = oci_spec_to_json(s, true, &json, err);
        if (r < 0)
                return r;
        printf("%s\n", json);
        return 0;
}

int cmd_oci(int argc, char **argv, hm_error_t *err)
{
        if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
                fputs(usage, argc < 2 ? stderr : stdout);
                return argc < 2 ? 2 : 0;
        }
        if (!strcmp(argv[1], "run"))
                return oci_run(argc - 1, argv + 1, err);
        if (!strcmp(argv[1], "spec"))
                return oci_spec(err);
        return hm_error_set_exit(err, 2, EINVAL, "unknown 'hm oci' command '%s' (run, spec)", argv[1]);
}
