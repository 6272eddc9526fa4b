/* SPDX-License-Identifier: Apache-2.0 */
/* Choosing and building a runner from flags or from a cache backend id. */
#include "cmd/cmd.h"
#include "engine/engine.h"
#include "runtime/nsrunner.h"
#include "sched/runner-null.h"
#include "sched/runner.h"
#include "lib/util.h"

int cmd_make_runner(struct hm_loop *loop, const struct runner_choice *c, struct hm_runner **ret, hm_error_t *err)
{
        const char *kind = c->kind;
        if (!strcmp(kind, "null")) {
                *ret = null_runner_new(loop);
                return 0;
        }
        if (!strcmp(kind, "ns")) {
                struct ns_options o = { .network = c->network, .network_source = c->network_source, .limits = c->limits,
                                        .seccomp = c->seccomp, .run = c->sandbox, .pull = c->pull };
                return ns_runner_new(loop, &o, ret, err);
        }
        if (!strcmp(kind, "docker") || !strcmp(kind, "podman") || !strcmp(kind, "vm")) {
                struct engine_options o = { .kind = kind, .socket = c->socket, .network = c->network, .pull = c->pull,
                                           .limits = c->limits, .seccomp = c->seccomp, .sandbox = c->sandbox };
                return engine_runner_new(loop, &o, ret, err);
        }
        return hm_error_set_exit(err, 2, EINVAL, "unknown runner '%s' (available: ns, docker, podman, vm)", kind);
}

int cmd_runner_for_backend(struct hm_loop *loop, const char *backend_id, struct hm_runner **ret, hm_error_t *err)
{
        const char *colon = strchr(backend_id, ':');
        if (!colon)
                return hm_error_set(err, EINVAL, "cache backend '%s' is not of the form kind:location", backend_id);
        _cleanup_free_ char *kind = xstrndup(backend_id, (size_t) (colon - backend_id));
        const char *where = colon + 1;
        if (!strcmp(kind, "ns")) {
                struct ns_options o = { .store = *where ? where : NULL };
                return ns_runner_new(loop, &o, ret, err);
        }
        if (!strcmp(kind, "null")) {
                *ret = null_runner_new(loop);
                return 0;
        }
        struct runner_choice c = { .kind = kind, .socket = where, .pull = "never" };
        return cmd_make_runner(loop, &c, ret, err);
}
