/* SPDX-License-Identifier: Apache-2.0 */
#include "cmd/cmd.h"
#include "lib/util.h"

#include <signal.h>
#include <stdio.h>

#ifndef HM_VERSION
#define HM_VERSION "0.1.0"
#endif

static void usage(FILE *f)
{
        fputs("usage: hm <command> [options]\n"
              "\n"
              "commands:\n"
              "  run [SLUG] [-d DIR] [-f FILE|-]   run a pipeline (hm run --help)\n"
              "  cache ls | clean                  list or remove cached step snapshots\n"
              "  image import SOURCE NAME | pull REF | ls | rm NAME\n"
              "                                    manage images of the built-in runtime\n"
              "  oci create|start|state|kill|delete|run|spec|features ...\n"
              "                                    the built-in runtime as an OCI runtime (also as 'hm-oci')\n"
              "  reap [--dry-run] [--runner ns|docker|podman|all] [--socket PATH]\n"
              "                                    remove what runs whose owner died left behind\n"
              "  doctor                            check what this host allows (namespaces, overlay, cgroups, engines)\n"
              "  version                           print the version\n",
              f);
}

int cmd_fail(hm_error_t *err)
{
        int code = hm_error_exit_code(*err);
        fprintf(stderr, "hm: error: %s\n", (*err)->msg);
        hm_error_release(err);
        return code;
}

int cmd_version(int argc, char **argv)
{
        printf("hm %s\n", HM_VERSION);
        return 0;
}

static int call_err(int (*fn)(int, char **, hm_error_t *), int argc, char **argv)
{
        hm_error_t err = NULL;
        int r = fn(argc, argv, &err);
        if (r < 0)
                return cmd_fail(&err);
        return r;
}

int main(int argc, char **argv)
{
        /*
         * An ignored SIGCHLD survives execve and makes the kernel reap our
         * children itself: every wait for a step, git or a helper would fail
         * with ECHILD.  A caller's choice that must not reach hm.
         */
        signal(SIGCHLD, SIG_DFL);
        /* installed as (or linked to) hm-oci: the OCI runtime command line engines call */
        const char *base = strrchr(argv[0], '/');
        base = base ? base + 1 : argv[0];
        if (!strcmp(base, "hm-oci"))
                return call_err(cmd_oci, argc, argv);
        if (argc < 2) {
                usage(stderr);
                return 2;
        }
        const char *verb = argv[1];
        if (!strcmp(verb, "run"))
                return cmd_run(argc - 1, argv + 1);
        if (!strcmp(verb, "cache"))
                return cmd_cache(argc - 1, argv + 1);
        if (!strcmp(verb, "image"))
                return call_err(cmd_image, argc - 1, argv + 1);
        if (!strcmp(verb, "oci"))
                return call_err(cmd_oci, argc - 1, argv + 1);
        if (!strcmp(verb, "reap"))
                return cmd_reap(argc - 1, argv + 1);
        if (!strcmp(verb, "doctor"))
                return cmd_doctor(argc - 1, argv + 1);
        if (!strcmp(verb, "version") || !strcmp(verb, "--version"))
                return cmd_version(argc - 1, argv + 1);
        if (!strcmp(verb, "help") || !strcmp(verb, "--help") || !strcmp(verb, "-h")) {
                usage(stdout);
                return 0;
        }
        fprintf(stderr, "hm: error: unknown command '%s' (see 'hm help')\n", verb);
        return 2;
}
