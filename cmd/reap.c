/* SPDX-License-Identifier: Apache-2.0 */
/*
 * hm reap [--dry-run] [--runner ns|docker|podman|all] [--socket PATH]
 *
 * Remove what runs whose hm process died left behind: the ns store's tmp/
 * entries and ephemeral layers of dead owners (oci_store_reap), empty step
 * cgroups of the ns runtime (as root), and on every
 * engine that answers, containers and ephemeral images of dead owners
 * (engine_reap).  One line per removed object, then "removed N object(s)"
 * ("would remove" with --dry-run).  Objects whose owner runs in a pid
 * namespace this process cannot see into (oci/owner.h) are left, one "left"
 * line each and a count at the end.  An engine that does not answer is not an
 * error (a note on stderr): reaping must work on hosts with only some
 * runners.  Exit 1 when something answered but could not be reaped.
 */
#include "cmd/cmd.h"
#include "engine/engine.h"
#include "engine/internal.h"
#include "engine/reap.h"
#include "oci/store.h"
#include "lib/strbuf.h"
#include "lib/util.h"

#include <dirent.h>
#include <getopt.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>

/*
 * An empty step cgroup younger than this may belong to a live ns run (made
 * but not entered yet, or its step just ended and it is being removed): both
 * windows last milliseconds.
 */
#define CGROUP_REAP_AGE 2

struct reap_opts {
        bool dry_run;
        const char *runner; /* ns, docker, podman, all */
        const char *socket;
};

struct reap_tally {
        size_t n;
        size_t left; /* objects of owners in pid namespaces we cannot see into */
        int failures;
};

static void print_removed(struct reap_tally *t, const struct reap_opts *o, const char *backend, char *const *v)
{
        for (size_t i = 0; v && v[i]; i++, t->n++)
                printf("%s %s %s\n", o->dry_run ? "would remove" : "removed", backend, v[i]);
        fflush(stdout);
}

static void print_left(struct reap_tally *t, const char *backend, char *const *v)
{
        for (size_t i = 0; v && v[i]; i++, t->left++)
                printf("left %s %s\n", backend, v[i]);
        fflush(stdout);
}

static void report_failure(struct reap_tally *t, hm_error_t *err)
{
        fprintf(stderr, "hm: error: reap: %s\n", (*err)->msg);
        hm_error_release(err);
        t->failures++;
}

/* ---------------------------------------------------------------- ns store */

static void reap_ns(const struct reap_opts *o, struct reap_tally *t)
{
        _cleanup_free_ char *path = oci_store_default_path();
        struct stat st;
        /* no store yet: nothing to reap, and reaping must not create one */
        if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
                return;
        hm_error_t err = NULL;
        _cleanup_oci_store_ struct oci_store *s = NULL;
        _cleanup_strv_ char **removed = NULL, **left = NULL;
        if (oci_store_open(path, &s, &err) < 0 || oci_store_reap_full(s, o->dry_run, &removed, &left, &err) < 0) {
                hm_error_wrap(&err, "ns store '%s'", path);
                report_failure(t, &err);
                return;
        }
        _cleanup_free_ char *backend = xasprintf("ns:%s", path);
        print_removed(t, o, backend, removed);
        print_left(t, backend, left);
}

/*
 * The ns runtime's per-step cgroups "hm/hm-<run>-<step>" below our own cgroup
 * in each hierarchy it uses (runtime/cgroup.h) outlive an hm killed with
 * SIGKILL: their processes die with the step's init (PR_SET_PDEATHSIG), the
 * directories stay.  Those with no process left and old enough go.
 */
static char *own_cgroup(const char *ctrl)
{
        _cleanup_fclose_ FILE *f = fopen("/proc/self/cgroup", "re");
        char line[1024];
        while (f && fgets(line, sizeof line, f)) {
                line[strcspn(line, "\n")] = 0;
                char *c1 = strchr(line, ':'), *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
                if (!c2)
                        continue;
                *c2 = 0;
                _cleanup_free_ char *list = xasprintf(",%s,", c1 + 1);
                _cleanup_free_ char *want = xasprintf(",%s,", ctrl);
                if (*ctrl ? strstr(list, want) != NULL : strcmp(list, ",,") == 0)
                        return xstrdup(c2 + 1);
        }
        return NULL;
}

static bool cgroup_empty(const char *dir)
{
        _cleanup_free_ char *path = xasprintf("%s/cgroup.procs", dir), *buf = NULL;
        size_t len = 0;
        return read_file(path, 0, &buf, &len) >= 0 && len == 0;
}

/* Appends "cgroup PATH" for each removed (dry_run: removable) dir to *removed. */
static void reap_cgroup_dir(bool dry_run, const char *hm_dir, char ***removed)
{
        _cleanup_closedir_ DIR *d = opendir(hm_dir);
        struct dirent *de;
        time_t now = time(NULL);
        while (d && (de = readdir(d))) {
                if (!str_has_prefix(de->d_name, "hm-"))
                        continue;
                _cleanup_free_ char *p = xasprintf("%s/%s", hm_dir, de->d_name);
                struct stat st;
                if (lstat(p, &st) < 0 || !S_ISDIR(st.st_mode) || now - st.st_mtime < CGROUP_REAP_AGE || !cgroup_empty(p))
                        continue;
                /* EBUSY: a process entered meanwhile; it is live, keep it */
                if (!dry_run && rmdir(p) < 0) {
                        if (errno != EBUSY && errno != ENOENT)
                                fprintf(stderr, "hm: reap: remove cgroup '%s': %s\n", p, strerror(errno));
                        continue;
                }
                strv_push_take(removed, xasprintf("cgroup %s", p));
        }
}

static void reap_cgroups(bool dry_run, char ***removed)
{
        static const char *const v1[] = { "pids", "devices", "memory", "cpu" };
        for (size_t i = 0; i < ARRAY_SIZE(v1); i++) {
                _cleanup_free_ char *own = own_cgroup(v1[i]);
                _cleanup_free_ char *mnt = xasprintf("/sys/fs/cgroup/%s", v1[i]);
                struct statfs sf;
                if (!own || statfs(mnt, &sf) < 0 || sf.f_type != CGROUP_SUPER_MAGIC)
                        continue;
                _cleanup_free_ char *dir = xasprintf("%s%s/hm", mnt, strcmp(own, "/") == 0 ? "" : own);
                reap_cgroup_dir(dry_run, dir, removed);
        }
        static const char *const v2_roots[] = { "/sys/fs/cgroup", "/sys/fs/cgroup/unified" };
        _cleanup_free_ char *own = own_cgroup("");
        for (size_t i = 0; own && i < ARRAY_SIZE(v2_roots); i++) {
                struct statfs sf;
                if (statfs(v2_roots[i], &sf) < 0 || sf.f_type != CGROUP2_SUPER_MAGIC)
                        continue;
                _cleanup_free_ char *dir = xasprintf("%s%s/hm", v2_roots[i], strcmp(own, "/") == 0 ? "" : own);
                reap_cgroup_dir(dry_run, dir, removed);
                break;
        }
}

static void reap_cgroups_print(const struct reap_opts *o, struct reap_tally *t)
{
        _cleanup_strv_ char **removed = xcalloc(1, sizeof(char *));
        reap_cgroups(o->dry_run, &removed);
        for (size_t i = 0; removed[i]; i++, t->n++)
                printf("%s %s\n", o->dry_run ? "would remove" : "removed", removed[i]);
}

/* ---------------------------------------------------------------- engines */

struct sockets {
        char *path[8];
        bool explicit_[8]; /* --socket or an environment variable: say so when it does not answer */
        size_t n;
};

static void sockets_release(struct sockets *s)
{
        for (size_t i = 0; i < s->n; i++)
                free(s->path[i]);
        s->n = 0;
}

static void add_socket(struct sockets *s, const char *p, bool explicit_)
{
        if (str_has_prefix(p, "unix://"))
                p += 7;
        for (size_t i = 0; i < s->n; i++)
                if (strcmp(s->path[i], p) == 0)
                        return;
        if (s->n < ARRAY_SIZE(s->path)) {
                s->path[s->n] = xstrdup(p);
                s->explicit_[s->n++] = explicit_;
        }
}

static void add_env_socket(struct sockets *s, const char *var)
{
        const char *v = getenv(var);
        if (!v || !*v)
                return;
        if (str_has_prefix(v, "unix:///"))
                add_socket(s, v, true);
        else
                fprintf(stderr, "hm: reap: $%s '%s': only unix:///path sockets are supported, skipped\n", var, v);
}

/* Every socket an engine of any kind could answer on (engine.h's discovery order). */
static void collect_sockets(const struct reap_opts *o, struct sockets *s)
{
        if (o->socket) {
                add_socket(s, o->socket, true);
                return;
        }
        add_env_socket(s, "DOCKER_HOST");
        add_env_socket(s, "CONTAINER_HOST");
        add_socket(s, "/var/run/docker.sock", false);
        add_socket(s, "/run/podman/podman.sock", false);
        const char *rt = getenv("XDG_RUNTIME_DIR");
        if (rt && *rt) {
                _cleanup_free_ char *p = xasprintf("%s/podman/podman.sock", rt);
                add_socket(s, p, false);
        }
}

static bool kind_wanted(const struct reap_opts *o, enum eng_kind k)
{
        return strcmp(o->runner, "all") == 0 || strcmp(o->runner, eng_kind_name(k)) == 0;
}

static void reap_engines(const struct reap_opts *o, struct reap_tally *t)
{
        struct sockets socks = { .n = 0 };
        collect_sockets(o, &socks);
        size_t answered = 0;
        for (size_t i = 0; i < socks.n; i++) {
                struct stat st;
                bool present = stat(socks.path[i], &st) == 0;
                struct engine_options eo = { .socket = socks.path[i] };
                struct eng_found f = { 0 };
                hm_error_t err = NULL;
                if (eng_discover(&eo, &f, &err) < 0) {
                        if (socks.explicit_[i] || present)
                                fprintf(stderr, "hm: reap: %s: not reachable, skipped (%s)\n", socks.path[i], err->msg);
                        hm_error_release(&err);
                        continue;
                }
                if (!kind_wanted(o, f.kind)) {
                        if (socks.explicit_[i])
                                fprintf(stderr, "hm: reap: %s: %s answered, not %s, skipped\n", socks.path[i],
                                        eng_kind_name(f.kind), o->runner);
                        eng_found_release(&f);
                        continue;
                }
                answered++;
                _cleanup_free_ char *backend = xasprintf("%s:%s", eng_kind_name(f.kind), f.socket);
                _cleanup_strv_ char **removed = NULL, **left = NULL;
                int r = engine_reap(f.socket, o->dry_run, &removed, &left, &err);
                print_removed(t, o, backend, removed);
                print_left(t, backend, left);
                if (r < 0) {
                        hm_error_wrap(&err, "%s", backend);
                        report_failure(t, &err);
                }
                eng_found_release(&f);
        }
        if (!answered && strcmp(o->runner, "all") != 0)
                fprintf(stderr, "hm: reap: no %s engine answered, nothing reaped there\n", o->runner);
        sockets_release(&socks);
}

/* ---------------------------------------------------------------- command */

static int usage(FILE *f, int code)
{
        fprintf(f, "usage: hm reap [--dry-run] [--runner ns|docker|podman|all] [--socket PATH]\n"
                   "Remove containers, images, layers and temporary dirs of hm runs whose process died.\n");
        return code;
}

int cmd_reap(int argc, char **argv)
{
        static const struct option longopts[] = {
                { "dry-run", no_argument, NULL, 'n' },
                { "runner", required_argument, NULL, 'r' },
                { "socket", required_argument, NULL, 's' },
                { "help", no_argument, NULL, 'h' },
                { 0 },
        };
        struct reap_opts o = { .runner = "all" };
        optind = 1;
        int c;
        while ((c = getopt_long(argc, argv, "+nh", longopts, NULL)) != -1) {
                switch (c) {
                case 'n':
                        o.dry_run = true;
                        break;
                case 'r':
                        o.runner = optarg;
                        break;
                case 's':
                        o.socket = optarg;
                        break;
                case 'h':
                        return usage(stdout, 0);
                default:
                        return usage(stderr, 2);
                }
        }
        if (optind != argc)
                return usage(stderr, 2);
        static const char *const runners[] = { "ns", "docker", "podman", "all" };
        bool known = false;
        for (size_t i = 0; i < ARRAY_SIZE(runners); i++)
                known |= strcmp(o.runner, runners[i]) == 0;
        if (!known) {
                fprintf(stderr, "hm: error: --runner '%s': expected ns, docker, podman or all\n", o.runner);
                return 2;
        }
        if (o.socket && strcmp(o.runner, "ns") == 0) {
                fprintf(stderr, "hm: error: --socket names an engine socket, not usable with --runner ns\n");
                return 2;
        }

        struct reap_tally t = { 0 };
        /* with --socket only that engine is meant */
        if (!o.socket && (strcmp(o.runner, "ns") == 0 || strcmp(o.runner, "all") == 0)) {
                reap_ns(&o, &t);
                if (geteuid() == 0)
                        reap_cgroups_print(&o, &t);
        }
        if (strcmp(o.runner, "ns") != 0)
                reap_engines(&o, &t);
        printf("%s %zu object(s)\n", o.dry_run ? "would remove" : "removed", t.n);
        if (t.left)
                printf("left %zu object(s) whose owner is in another pid namespace, not visible from here: "
                       "reap them where they ran, or as root on the host\n", t.left);
        return t.failures ? 1 : 0;
}

/* ---------------------------------------------------------------- hm run's quick reap */

/* Per request: an engine that does not answer must not hold up the run for long. */
#define QUICK_REAP_TIMEOUT_MS 5000
#define QUICK_REAP_LISTED 3

static int64_t mono_us(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

char *cmd_quick_reap(const char *backend_id, int64_t *ret_us)
{
        int64_t t0 = mono_us();
        const char *colon = backend_id ? strchr(backend_id, ':') : NULL;
        _cleanup_strv_ char **removed = NULL;
        hm_error_t err = NULL;
        if (!colon || !colon[1]) {
                /* the null runner: nothing of its own outlives it */
        } else if (str_has_prefix(backend_id, "ns:")) {
                _cleanup_oci_store_ struct oci_store *s = NULL;
                if (oci_store_open(colon + 1, &s, &err) >= 0)
                        (void) oci_store_reap(s, false, &removed, &err);
                if (!removed)
                        removed = xcalloc(1, sizeof(char *));
                if (geteuid() == 0)
                        reap_cgroups(false, &removed);
        } else {
                /* the runner has just answered on this socket: no discovery, the engine's own API version */
                (void) engine_reap_at(colon + 1, NULL, QUICK_REAP_TIMEOUT_MS, false, &removed, NULL, &err);
        }
        *ret_us = mono_us() - t0;
        size_t n = strv_len(removed);
        if (!n && !err)
                return NULL;
        struct strbuf b = STRBUF_INIT;
        if (n) {
                strbuf_addf(&b, "removed %zu object(s) of dead runs in %.1f ms: ", n, (double) *ret_us / 1000.0);
                for (size_t i = 0; i < n && i < QUICK_REAP_LISTED; i++)
                        strbuf_addf(&b, "%s%s", i ? ", " : "", removed[i]);
                if (n > QUICK_REAP_LISTED)
                        strbuf_addf(&b, " and %zu more", n - QUICK_REAP_LISTED);
        }
        if (err) {
                strbuf_addf(&b, "%sreaping dead runs' objects failed (hm reap retries): %s", n ? "; " : "", err->msg);
                hm_error_release(&err);
        }
        return strbuf_detach(&b, NULL);
}
