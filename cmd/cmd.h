/* SPDX-License-Identifier: Apache-2.0 */
/* The verbs of hm.  Each returns a process exit code; errors are printed here, and only here. */
#ifndef HM_CMD_H
#define HM_CMD_H

#include "lib/error.h"
#include "oci/spec.h"
#include "sched/runner.h"

struct hm_loop;
struct hm_runner;

int cmd_run(int argc, char **argv);
int cmd_cache(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_doctor(int argc, char **argv);
int cmd_reap(int argc, char **argv);
/* provided by cmd/oci.c and cmd/image.c: return < 0 with *err set on failure */
int cmd_oci(int argc, char **argv, hm_error_t *err);
int cmd_image(int argc, char **argv, hm_error_t *err);

/*
 * hm run's quick reap (cmd/reap.c): what dead owners left on the backend of
 * the runner in use ("ns:STORE" or "docker:SOCKET", the runner's backend_id)
 * is removed, never a live owner's objects; bounded: two list requests on an
 * engine, one scan of the store's tmp/ and layer metadata on ns.  Returns one
 * line (heap) saying what was removed or what failed, NULL when there was
 * nothing; *ret_us is how long it took.
 */
char *cmd_quick_reap(const char *backend_id, int64_t *ret_us);

/* Print "hm: error: <msg>" (one line) and return the error's exit code. */
int cmd_fail(hm_error_t *err);

struct runner_choice {
        const char *kind;    /* "ns" (default), "docker", "podman", "vm", "null" */
        const char *socket;  /* engine socket, or NULL to discover */
        const char *network; /* engine NetworkMode / ns none|host|pasta|slirp4netns (runtime/net.h) */
        const char *network_source; /* "--network", "HM_NETWORK" or the .hm/config.toml line (errors) */
        const char *pull;    /* missing|always|never */
        struct step_limits limits;
        const char *seccomp;            /* ns: --seccomp */
        struct oci_run_options sandbox; /* ns: --cap-add/--cap-drop/--user/--read-only/--tmpfs-tmp */
};
/* Build the runner for a choice (blocking set-up before the loop runs is fine). */
int cmd_make_runner(struct hm_loop *loop, const struct runner_choice *c, struct hm_runner **ret, hm_error_t *err);
/* The runner that owns a cache index backend id ("docker:/x.sock", "ns:/var/lib/hm"). */
int cmd_runner_for_backend(struct hm_loop *loop, const char *backend_id, struct hm_runner **ret, hm_error_t *err);

#endif
