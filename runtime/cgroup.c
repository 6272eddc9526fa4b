/* SPDX-License-Identifier: Apache-2.0 */
#include "runtime/cgroup.h"

#include <fcntl.h>
#include <inttypes.h>
#include <linux/magic.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>

#include "lib/util.h"
#include "oci/spec.h"

static const char *const v1_names[] = { [RT_CG_PIDS] = "pids", [RT_CG_DEVICES] = "devices",
                                        [RT_CG_MEMORY] = "memory", [RT_CG_CPU] = "cpu", [RT_CG_CPUSET] = "cpuset" };

/* The nodes child.c binds into /dev, plus mknod of anything (useless without open). */
static const char *const default_device_allow[] = {
        "c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm", "c 1:9 rwm",
        "c 5:0 rwm", "c 5:2 rwm", "c 136:* rwm",
};

/* Our own cgroup in the hierarchy holding `ctrl` ("" for v2), from /proc/self/cgroup. */
static char *own_cgroup(const char *ctrl)
{
        _cleanup_fclose_ FILE *f = fopen("/proc/self/cgroup", "re");
        char line[1024];
        while (f && fgets(line, sizeof line, f)) {
                line[strcspn(line, "\n")] = 0;
                char *c1 = strchr(line, ':');
                char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
                if (!c2)
                        continue;
                *c2 = 0;
                const char *list = c1 + 1;
                if (!*ctrl ? !*list : false)
                        return xstrdup(c2 + 1);
                for (const char *t = list; *ctrl && t && *t; t = strchr(t, ',') ? strchr(t, ',') + 1 : NULL)
                        if (!strncmp(t, ctrl, strlen(ctrl)) && (t[strlen(ctrl)] == ',' || !t[strlen(ctrl)]))
                                return xstrdup(c2 + 1);
        }
        return xstrdup("/");
}

static char *join_dir(const char *mnt, const char *own, const char *rel)
{
        const char *base = rel[0] == '/' ? "" : own;
        char *p = xasprintf("%s/%s/%s", mnt, base, rel);
        /* squeeze "//" for tidy messages */
        char *w = p;
        for (char *r = p; *r; r++)
                if (!(r[0] == '/' && r[1] == '/'))
                        *w++ = *r;
        *w = 0;
        return p;
}

static int write_file(const char *dir, const char *file, const char *value, hm_error_t *err)
{
        _cleanup_free_ char *path = xasprintf("%s/%s", dir, file);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
        int r = fd < 0 ? -errno : write_all(fd, value, strlen(value));
        if (r < 0)
                return hm_error_set(err, -r, "write '%s' to '%s': %s", value, path, strerror(-r));
        return 0;
}

static char *v2_root(void)
{
        static const char *const candidates[] = { "/sys/fs/cgroup", "/sys/fs/cgroup/unified" };
        for (size_t i = 0; i < ARRAY_SIZE(candidates); i++) {
                struct statfs sf;
                if (statfs(candidates[i], &sf) == 0 && sf.f_type == CGROUP2_SUPER_MAGIC)
                        return xstrdup(candidates[i]);
        }
        return NULL;
}

/* All of `want` (space separated) enabled in our v2 cgroup's subtree_control? */
static bool v2_delegated(const char *own_dir, const char *want)
{
        _cleanup_free_ char *path = xasprintf("%s/cgroup.subtree_control", own_dir), *buf = NULL;
        if (read_file(path, 0, &buf, NULL) < 0)
                return false;
        _cleanup_free_ char *copy = xstrdup(want);
        char *save = NULL;
        for (char *t = strtok_r(copy, " ", &save); t; t = strtok_r(NULL, " ", &save)) {
                bool found = false;
                for (char *h = strstr(buf, t); h && !found; h = strstr(h + 1, t))
                        found = (h == buf || h[-1] == ' ') && (h[strlen(t)] == ' ' || h[strlen(t)] == '\n' || !h[strlen(t)]);
                if (!found)
                        return false;
        }
        return true;
}

/* mkdir the leaf (parents as needed); a stale empty leaf of the same name is replaced. */
static int make_dir(const char *dir, hm_error_t *err)
{
        _cleanup_free_ char *parent = xstrdup(dir);
        *strrchr(parent, '/') = 0;
        int r = mkdir_p(parent, 0755);
        if (r >= 0 && mkdir(dir, 0755) < 0) {
                r = -errno;
                if (errno == EEXIST && rmdir(dir) == 0)
                        r = mkdir(dir, 0755) < 0 ? -errno : 0;
        }
        if (r < 0)
                return hm_error_set(err, -r, "create cgroup '%s': %s", dir, strerror(-r));
        return 0;
}

static int v1_dir(struct rt_cgroup *cg, int ctrl, const char *rel, hm_error_t *err)
{
        _cleanup_free_ char *mnt = xasprintf("/sys/fs/cgroup/%s", v1_names[ctrl]);
        _cleanup_free_ char *own = own_cgroup(v1_names[ctrl]);
        _cleanup_free_ char *dir = join_dir(mnt, own, rel);
        struct statfs sf;
        if (statfs(mnt, &sf) < 0 || sf.f_type != CGROUP_SUPER_MAGIC)
                return hm_error_set(err, ENOENT, "cgroup v1 '%s' is not mounted at '%s'", v1_names[ctrl], mnt);
        int r = make_dir(dir, err);
        if (r < 0)
                return r;
        cg->dirs[ctrl] = TAKE_PTR(dir);
        return 0;
}

static int setup_devices(struct rt_cgroup *cg, const char *rel, const struct oci_resources *res, hm_error_t *err)
{
        int r = v1_dir(cg, RT_CG_DEVICES, rel, err);
        if (r < 0)
                return r;
        const char *dir = cg->dirs[RT_CG_DEVICES];
        r = write_file(dir, "devices.deny", "a", err);
        for (size_t i = 0; r >= 0 && i < res->n_devices; i++) {
                const struct oci_device_rule *d = &res->devices[i];
                char maj[24] = "*", min[24] = "*";
                if (d->major >= 0)
                        snprintf(maj, sizeof maj, "%" PRId64, d->major);
                if (d->minor >= 0)
                        snprintf(min, sizeof min, "%" PRId64, d->minor);
                _cleanup_free_ char *rule = d->type == 'a' ? xstrdup("a") : xasprintf("%c %s:%s %s", d->type, maj, min, d->access);
                /* "deny a" again only resets what the runtime itself allows below */
                if (!(d->type == 'a' && !d->allow))
                        r = write_file(dir, d->allow ? "devices.allow" : "devices.deny", rule, err);
        }
        for (size_t i = 0; r >= 0 && i < ARRAY_SIZE(default_device_allow); i++)
                r = write_file(dir, "devices.allow", default_device_allow[i], err);
        return r;
}

/*
 * A new v1 cpuset cgroup starts with empty cpus and mems and refuses tasks
 * until both are set: every directory from the hierarchy root down to the
 * leaf inherits its parent's values where it has none yet.
 */
static int cpuset_fill_from_parents(const char *mnt, const char *dir, hm_error_t *err)
{
        static const char *const files[] = { "cpuset.cpus", "cpuset.mems" };
        size_t len = strlen(dir), parent_end = strlen(mnt);
        for (size_t end = parent_end + 1; end <= len; end++) {
                if (dir[end] != '/' && dir[end] != 0)
                        continue;
                _cleanup_free_ char *cur = xstrndup(dir, end), *parent = xstrndup(dir, parent_end);
                parent_end = end;
                for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
                        _cleanup_free_ char *path = xasprintf("%s/%s", cur, files[i]), *mine = NULL, *theirs = NULL;
                        _cleanup_free_ char *ppath = xasprintf("%s/%s", parent, files[i]);
                        if (read_file(path, 0, &mine, NULL) < 0 || strspn(mine, " \n") != strlen(mine))
                                continue; /* already set (or not a cgroup dir) */
                        int r = read_file(ppath, 0, &theirs, NULL);
                        if (r < 0)
                                return hm_error_set(err, -r, "read '%s': %s", ppath, strerror(-r));
                        theirs[strcspn(theirs, "\n")] = 0;
                        r = write_file(cur, files[i], theirs, err);
                        if (r < 0)
                                return r;
                }
        }
        return 0;
}

static int v1_cpuset(struct rt_cgroup *cg, const char *rel, const struct oci_resources *res, hm_error_t *err)
{
        int r = v1_dir(cg, RT_CG_CPUSET, rel, err);
        if (r < 0)
                return r;
        const char *d = cg->dirs[RT_CG_CPUSET];
        r = cpuset_fill_from_parents("/sys/fs/cgroup/cpuset", d, err);
        if (r >= 0 && res->cpu_cpus)
                r = write_file(d, "cpuset.cpus", res->cpu_cpus, err);
        if (r >= 0 && res->cpu_mems)
                r = write_file(d, "cpuset.mems", res->cpu_mems, err);
        return r < 0 ? hm_error_wrap(err, "linux.resources.cpu.%s", res->cpu_cpus ? "cpus" : "mems") : r;
}

static int v1_limits(struct rt_cgroup *cg, const char *rel, const struct oci_resources *res, hm_error_t *err)
{
        char buf[32];
        int r = 0;
        if (res->cpu_cpus || res->cpu_mems)
                r = v1_cpuset(cg, rel, res, err);
        if (r >= 0 && res->memory_limit_present && res->memory_limit >= 0) {
                r = v1_dir(cg, RT_CG_MEMORY, rel, err);
                snprintf(buf, sizeof buf, "%" PRId64, res->memory_limit);
                if (r >= 0)
                        r = write_file(cg->dirs[RT_CG_MEMORY], "memory.limit_in_bytes", buf, err);
        }
        if (r >= 0 && (res->cpu_quota_present || res->cpu_period_present || res->cpu_shares_present)) {
                r = v1_dir(cg, RT_CG_CPU, rel, err);
                const char *d = cg->dirs[RT_CG_CPU];
                if (r >= 0 && res->cpu_period_present) {
                        snprintf(buf, sizeof buf, "%" PRIu64, res->cpu_period);
                        r = write_file(d, "cpu.cfs_period_us", buf, err);
                }
                if (r >= 0 && res->cpu_quota_present) {
                        snprintf(buf, sizeof buf, "%" PRId64, res->cpu_quota > 0 ? res->cpu_quota : -1);
                        r = write_file(d, "cpu.cfs_quota_us", buf, err);
                }
                if (r >= 0 && res->cpu_shares_present) {
                        snprintf(buf, sizeof buf, "%" PRIu64, res->cpu_shares);
                        r = write_file(d, "cpu.shares", buf, err);
                }
        }
        return r;
}

/* cgroup v2, used only when memory/cpu are already delegated to our cgroup. */
static int v2_limits(struct rt_cgroup *cg, const char *rel, const struct oci_resources *res, bool *ret_used, hm_error_t *err)
{
        bool mem = res->memory_limit_present && res->memory_limit >= 0;
        bool cpu = res->cpu_quota_present || res->cpu_shares_present;
        bool cpuset = res->cpu_cpus || res->cpu_mems;
        *ret_used = false;
        _cleanup_free_ char *root = v2_root();
        if (!root || (!mem && !cpu && !cpuset))
                return 0;
        _cleanup_free_ char *own = own_cgroup("");
        _cleanup_free_ char *own_dir = join_dir(root, own, ".");
        _cleanup_free_ char *want = xasprintf("%s%s%s", mem ? "memory " : "", cpu ? "cpu " : "", cpuset ? "cpuset" : "");
        if (!v2_delegated(own_dir, want))
                return 0;
        _cleanup_free_ char *dir = join_dir(root, own, rel);
        int r = make_dir(dir, err);
        if (r < 0)
                return r;
        cg->dirs[RT_CG_V2] = TAKE_PTR(dir);
        /* the intermediate directory must pass the controllers down */
        _cleanup_free_ char *parent = xstrdup(cg->dirs[RT_CG_V2]);
        *strrchr(parent, '/') = 0;
        _cleanup_free_ char *enable = xasprintf("%s%s%s", mem ? "+memory " : "", cpu ? "+cpu " : "", cpuset ? "+cpuset" : "");
        if (strcmp(parent, own_dir))
                (void) write_file(parent, "cgroup.subtree_control", enable, NULL);
        char buf[64];
        if (mem) {
                snprintf(buf, sizeof buf, "%" PRId64, res->memory_limit);
                r = write_file(cg->dirs[RT_CG_V2], "memory.max", buf, err);
        }
        if (r >= 0 && res->cpu_quota_present) {
                uint64_t period = res->cpu_period_present ? res->cpu_period : 100000;
                if (res->cpu_quota > 0)
                        snprintf(buf, sizeof buf, "%" PRId64 " %" PRIu64, res->cpu_quota, period);
                else
                        snprintf(buf, sizeof buf, "max %" PRIu64, period);
                r = write_file(cg->dirs[RT_CG_V2], "cpu.max", buf, err);
        }
        if (r >= 0 && res->cpu_shares_present) {
                /* the usual shares -> weight conversion (runc/crun) */
                uint64_t s = res->cpu_shares < 2 ? 2 : res->cpu_shares > 262144 ? 262144 : res->cpu_shares;
                snprintf(buf, sizeof buf, "%" PRIu64, 1 + ((s - 2) * 9999) / 262142);
                r = write_file(cg->dirs[RT_CG_V2], "cpu.weight", buf, err);
        }
        if (r >= 0 && res->cpu_cpus)
                r = write_file(cg->dirs[RT_CG_V2], "cpuset.cpus", res->cpu_cpus, err);
        if (r >= 0 && res->cpu_mems)
                r = write_file(cg->dirs[RT_CG_V2], "cpuset.mems", res->cpu_mems, err);
        *ret_used = r >= 0;
        return r;
}

static void add_fallbacks(const struct oci_resources *res, char ***notices, struct rt_rlimit *fb, size_t *n,
                          const char *why)
{
        bool mem = res->memory_limit_present && res->memory_limit >= 0;
        bool pids = res->pids_limit_present && res->pids_limit > 0;
        bool cpu = res->cpu_quota_present || res->cpu_shares_present || res->cpu_cpus || res->cpu_mems;
        if (mem)
                fb[(*n)++] = (struct rt_rlimit) { RLIMIT_AS, (uint64_t) res->memory_limit, (uint64_t) res->memory_limit };
        if (pids)
                fb[(*n)++] = (struct rt_rlimit) { RLIMIT_NPROC, (uint64_t) res->pids_limit, (uint64_t) res->pids_limit };
        if (mem || pids || cpu)
                strv_push_take(notices, xasprintf("cgroups: %s; %s%s%s", why,
                                                  mem ? "memory limit applied as RLIMIT_AS; " : "",
                                                  pids ? "pids limit applied as RLIMIT_NPROC (per user, not per container); " : "",
                                                  cpu ? "cpu limits not applied" : "limits approximated"));
}

void rt_cgroup_rootless(const struct oci_resources *res, char ***notices, struct rt_rlimit *fallback, size_t *n_fallback)
{
        *n_fallback = 0;
        add_fallbacks(res, notices, fallback, n_fallback, "not available to an unprivileged user");
        strv_push(notices, "cgroups: none (rootless): processes are tracked through the pid namespace only");
}

int rt_cgroup_setup(struct rt_cgroup *cg, const char *rel, const struct oci_resources *res, char ***notices,
                    struct rt_rlimit *fallback, size_t *n_fallback, hm_error_t *err)
{
        *cg = (struct rt_cgroup) { 0 };
        *n_fallback = 0;
        hm_error_t e = NULL;
        int r = v1_dir(cg, RT_CG_PIDS, rel, &e);
        if (r < 0) {
                /* not writable: no per-container cgroup at all.  The reason names the parent, not the
                 * step's own dir, so that every step of a run reports the same text (said once). */
                _cleanup_free_ char *own = own_cgroup(v1_names[RT_CG_PIDS]);
                _cleanup_free_ char *why = e->code == ENOENT ? xstrdup(e->msg)
                                                             : xasprintf("cannot create step cgroups under '/sys/fs/cgroup/%s%s': %s",
                                                                         v1_names[RT_CG_PIDS], own ? own : "", strerror(e->code));
                add_fallbacks(res, notices, fallback, n_fallback, why);
                strv_push_take(notices, xasprintf("cgroups: no pids cgroup (%s): processes that leave the pid namespace are not tracked", why));
                hm_error_release(&e);
                return 0;
        }
        char buf[32] = "max";
        if (res->pids_limit_present && res->pids_limit > 0)
                snprintf(buf, sizeof buf, "%" PRId64, res->pids_limit);
        r = write_file(cg->dirs[RT_CG_PIDS], "pids.max", buf, err);
        if (r >= 0)
                r = setup_devices(cg, rel, res, err);
        bool v2_used = false;
        if (r >= 0)
                r = v2_limits(cg, rel, res, &v2_used, err);
        if (r >= 0 && !v2_used)
                r = v1_limits(cg, rel, res, err);
        if (r < 0)
                rt_cgroup_destroy(cg);
        return r;
}

int rt_cgroup_enter(const struct rt_cgroup *cg, pid_t pid, hm_error_t *err)
{
        char buf[16];
        snprintf(buf, sizeof buf, "%d", (int) pid);
        for (int i = 0; i < _RT_CG_MAX; i++) {
                if (!cg->dirs[i])
                        continue;
                int r = write_file(cg->dirs[i], "cgroup.procs", buf, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Returns the number of processes signalled. */
static int kill_listed(const char *dir)
{
        _cleanup_free_ char *path = xasprintf("%s/cgroup.procs", dir), *buf = NULL;
        if (read_file(path, 0, &buf, NULL) < 0)
                return 0;
        int n = 0;
        for (char *s = buf, *end; *s; s = end) {
                long pid = strtol(s, &end, 10);
                if (end == s)
                        break;
                if (pid > 0 && kill((pid_t) pid, SIGKILL) == 0)
                        n++;
        }
        return n;
}

void rt_cgroup_destroy(struct rt_cgroup *cg)
{
        if (cg->dirs[RT_CG_PIDS])
                for (int i = 0; i < 100 && kill_listed(cg->dirs[RT_CG_PIDS]) > 0; i++)
                        nanosleep(&(struct timespec) { 0, 1000000 }, NULL);
        for (int i = 0; i < _RT_CG_MAX; i++) {
                if (!cg->dirs[i])
                        continue;
                /* killed tasks leave the cgroup asynchronously: a bounded retry */
                for (int k = 0; k < 200 && rmdir(cg->dirs[i]) < 0 && errno == EBUSY; k++)
                        nanosleep(&(struct timespec) { 0, 1000000 }, NULL);
                free(cg->dirs[i]);
                cg->dirs[i] = NULL;
        }
}
