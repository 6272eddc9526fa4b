/* SPDX-License-Identifier: Apache-2.0 */
#include "runtime/userns.h"

#include <fcntl.h>
#include <pwd.h>
#include <spawn.h>
#include <sys/wait.h>

#include "lib/strbuf.h"
#include "lib/util.h"
#include "oci/spec.h"

extern char **environ;

static char *format_map(const struct oci_id_mapping *m, size_t n)
{
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
        for (size_t i = 0; i < n; i++)
                strbuf_addf(&sb, "%u %u %u\n", m[i].container_id, m[i].host_id, m[i].size);
        return strbuf_detach(&sb, NULL);
}

/* First "name:start:count" (or "uid:start:count") line of /etc/subuid or /etc/subgid. */
static bool find_subid_range(const char *file, const char *name, unsigned long id, unsigned long *ret_start,
                             unsigned long *ret_count)
{
        _cleanup_fclose_ FILE *f = fopen(file, "re");
        if (!f)
                return false;
        char line[512];
        while (fgets(line, sizeof line, f)) {
                char *save = NULL, *who = strtok_r(line, ":", &save), *start = strtok_r(NULL, ":", &save),
                     *count = strtok_r(NULL, ":\n", &save);
                if (!who || !start || !count)
                        continue;
                char idbuf[32];
                snprintf(idbuf, sizeof idbuf, "%lu", id);
                if ((name && !strcmp(who, name)) || !strcmp(who, idbuf)) {
                        *ret_start = strtoul(start, NULL, 10);
                        *ret_count = strtoul(count, NULL, 10);
                        return *ret_count > 0;
                }
        }
        return false;
}

static char **helper_argv(const char *tool, const struct oci_id_mapping *m, size_t n)
{
        char **v = NULL;
        strv_push(&v, tool);
        for (size_t i = 0; i < n; i++) {
                strv_push_take(&v, xasprintf("%u", m[i].container_id));
                strv_push_take(&v, xasprintf("%u", m[i].host_id));
                strv_push_take(&v, xasprintf("%u", m[i].size));
        }
        return v;
}

static bool have_helpers(void)
{
        return access("/usr/bin/newuidmap", X_OK) == 0 && access("/usr/bin/newgidmap", X_OK) == 0;
}

static int prepare_rootless(struct rt_idmap *m, const struct oci_spec *spec, hm_error_t *err)
{
        uid_t uid = geteuid();
        gid_t gid = getegid();
        const struct oci_linux *l = &spec->linux_;
        if (l->n_uid_mappings || l->n_gid_mappings) {
                if (!have_helpers())
                        return hm_error_set(err, ENOENT, "linux.uidMappings: an unprivileged user needs newuidmap/newgidmap (package uidmap)");
                m->method = RT_IDMAP_HELPERS;
                m->uid_argv = helper_argv("/usr/bin/newuidmap", l->uid_mappings, l->n_uid_mappings);
                m->gid_argv = helper_argv("/usr/bin/newgidmap", l->gid_mappings, l->n_gid_mappings);
                return 0;
        }
        char pwbuf[4096];
        struct passwd pw, *pwp = NULL;
        getpwuid_r(uid, &pw, pwbuf, sizeof pwbuf, &pwp);
        const char *name = pwp ? pwp->pw_name : NULL;
        unsigned long us, uc, gs, gc;
        if (uid != 0 && have_helpers() && find_subid_range("/etc/subuid", name, uid, &us, &uc) &&
            find_subid_range("/etc/subgid", name, uid, &gs, &gc)) {
                struct oci_id_mapping um[2] = { { 0, uid, 1 }, { 1, (uint32_t) us, (uint32_t) uc } };
                struct oci_id_mapping gm[2] = { { 0, gid, 1 }, { 1, (uint32_t) gs, (uint32_t) gc } };
                m->method = RT_IDMAP_HELPERS;
                m->uid_argv = helper_argv("/usr/bin/newuidmap", um, 2);
                m->gid_argv = helper_argv("/usr/bin/newgidmap", gm, 2);
                return 0;
        }
        m->method = RT_IDMAP_SELF;
        m->uid_map = xasprintf("0 %u 1\n", uid);
        m->gid_map = xasprintf("0 %u 1\n", gid);
        return 0;
}

int rt_idmap_prepare(struct rt_idmap *m, const struct oci_spec *spec, bool rootless, hm_error_t *err)
{
        *m = (struct rt_idmap) { 0 };
        if (rootless)
                return prepare_rootless(m, spec, err);
        const struct oci_linux *l = &spec->linux_;
        m->method = RT_IDMAP_DIRECT;
        m->uid_map = l->n_uid_mappings ? format_map(l->uid_mappings, l->n_uid_mappings) : xstrdup("0 0 4294967295\n");
        m->gid_map = l->n_gid_mappings ? format_map(l->gid_mappings, l->n_gid_mappings) : xstrdup("0 0 4294967295\n");
        return 0;
}

static int write_proc(pid_t pid, const char *file, const char *data, hm_error_t *err)
{
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/%s", (int) pid, file);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
                return hm_error_set(err, errno, "open '%s': %s", path, strerror(errno));
        int r = write_all(fd, data, strlen(data));
        if (r < 0)
                return hm_error_set(err, -r, "write '%s' to '%s': %s", data, path, strerror(-r));
        return 0;
}

/* tool_argv: {tool, triplets...}; the pid goes in as argv[1]. */
static int run_helper(char *const *tool_argv, pid_t pid, hm_error_t *err)
{
        char pidbuf[16];
        snprintf(pidbuf, sizeof pidbuf, "%d", (int) pid);
        size_t n = strv_len(tool_argv);
        _cleanup_free_ char **argv = xcalloc(n + 2, sizeof(char *));
        argv[0] = tool_argv[0];
        argv[1] = pidbuf;
        for (size_t i = 1; i < n; i++)
                argv[i + 1] = tool_argv[i];
        pid_t child;
        int r = posix_spawn(&child, argv[0], NULL, NULL, argv, environ);
        if (r != 0)
                return hm_error_set(err, r, "run '%s': %s", argv[0], strerror(r));
        int st;
        while (waitpid(child, &st, 0) < 0)
                if (errno != EINTR)
                        return hm_error_set(err, errno, "wait for '%s': %s", argv[0], strerror(errno));
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
                return hm_error_set(err, EPERM, "'%s' failed (status %d): check /etc/subuid and /etc/subgid", argv[0], st);
        return 0;
}

int rt_idmap_apply(const struct rt_idmap *m, pid_t pid, hm_error_t *err)
{
        int r;
        switch (m->method) {
        case RT_IDMAP_HELPERS:
                r = run_helper(m->uid_argv, pid, err);
                if (r < 0)
                        return r;
                return run_helper(m->gid_argv, pid, err);
        case RT_IDMAP_SELF:
                /* an unprivileged writer must deny setgroups before gid_map (user_namespaces(7)) */
                r = write_proc(pid, "setgroups", "deny", err);
                if (r < 0)
                        return r;
                __attribute__((fallthrough));
        case RT_IDMAP_DIRECT:
                r = write_proc(pid, "uid_map", m->uid_map, err);
                return r < 0 ? r : write_proc(pid, "gid_map", m->gid_map, err);
        }
        return 0;
}

void rt_idmap_release(struct rt_idmap *m)
{
        free(m->uid_map);
        free(m->gid_map);
        strv_free(m->uid_argv);
        strv_free(m->gid_argv);
        *m = (struct rt_idmap) { 0 };
}
