/* SPDX-License-Identifier: Apache-2.0 */
/*
 * hm oci <command> (also as `hm-oci`): the built-in runtime behind the OCI
 * runtime command line (runc's): create/start/state/kill/delete/list/exec,
 * features, spec, plus the one-shot foreground `run`.
 *
 * create leaves the command set up and blocked on an exec fifo (child.c
 * step 9b) and exits; the container's init (pid 1 of its pid namespace) is
 * the state's pid and outlives us.  Everything later commands need lives in
 * --root/ID: state.json (atomically replaced), config.json (the create-time
 * copy, for poststop hooks) and exec.fifo (exists until start).  The status
 * is derived, never stored: the pid gone, a zombie or a different process
 * (start time) = stopped; else exec.fifo present = created; else running.
 */
#include <yajl/yajl_tree.h>

#include "cmd/cmd.h"
#include "lib/handles.h"
#include "lib/strbuf.h"
#include "lib/util.h"
#include "oci/spec.h"
#include "runtime/runtime.h"

#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#define OCI_VERSION "1.0.2"
#define DEFAULT_ROOT "/run/hm-oci"

static const char usage[] =
        "usage: hm oci [--root DIR] [--log FILE] [--log-format text|json] [--systemd-cgroup] COMMAND\n"
        "              (also as hm-oci; --root default " DEFAULT_ROOT ", --systemd-cgroup is accepted and ignored)\n"
        "  create [--bundle DIR] [--pid-file FILE] [--console-socket SOCK] [--preserve-fds N] ID\n"
        "                      set up, then wait for start (process.terminal: the pty master goes to SOCK)\n"
        "  start ID            run the created command, then the poststart hooks\n"
        "  state ID            the state JSON (runtime-spec)\n"
        "  kill [--all] ID [SIGNAL]   default SIGTERM; names (KILL, SIGKILL) or numbers\n"
        "  delete [--force] ID stop (with --force) and remove it, then the poststop hooks\n"
        "  list [-q]           containers under --root\n"
        "  run [--bundle DIR] [--pid-file FILE] [--console-socket SOCK] [--rootless] ID\n"
        "                      foreground (hooks refused), exits with the command's status\n"
        "  exec [--process FILE | [--cwd DIR] [--env K=V]... [--user UID[:GID]] [--tty]] [--pid-file FILE]\n"
        "       [--console-socket SOCK] [--detach] [--preserve-fds N] ID [COMMAND ARG...]\n"
        "                      one more process in the container's namespaces, cgroups and root, with its\n"
        "                      seccomp; exits with its status (--detach: its pid to --pid-file, exit 0)\n"
        "  spec                a default config.json on stdout\n"
        "  features            what this runtime supports (JSON)\n";

struct oci_ctx {
        const char *root;
        const char *log;
        bool log_json;
};

/* ---- log file (engines read errors from it) ---- */

static void oci_log(const struct oci_ctx *ctx, const char *level, const char *fmt, ...)
        __attribute__((format(printf, 3, 4)));
static void oci_log(const struct oci_ctx *ctx, const char *level, const char *fmt, ...)
{
        if (!ctx->log)
                return;
        va_list ap;
        va_start(ap, fmt);
        _cleanup_free_ char *msg = NULL;
        if (vasprintf(&msg, fmt, ap) < 0)
                msg = NULL;
        va_end(ap);
        if (!msg)
                return;
        char ts[64];
        time_t now = time(NULL);
        struct tm tm;
        strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tm));
        _cleanup_(strbuf_releasep) struct strbuf sb = STRBUF_INIT;
        if (ctx->log_json) {
                strbuf_addstr(&sb, "{\"level\":");
                strbuf_add_json_str(&sb, level);
                strbuf_addstr(&sb, ",\"msg\":");
                strbuf_add_json_str(&sb, msg);
                strbuf_addf(&sb, ",\"time\":\"%s\"}\n", ts);
        } else {
                strbuf_addf(&sb, "time=\"%s\" level=%s msg=\"%s\"\n", ts, level, msg);
        }
        _cleanup_close_ int fd = open(ctx->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (fd >= 0)
                (void) write_all(fd, sb.buf, sb.len);
}

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

static int write_file_atomic(const char *path, const char *data, mode_t mode, hm_error_t *err);

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
                                               { "pid-file", required_argument, NULL, 'p' },
                                               { "console-socket", required_argument, NULL, 'c' },
                                               { "rootless", no_argument, NULL, 'r' },
                                               { "help", no_argument, NULL, 'h' },
                                               {} };
        const char *bundle = ".", *pid_file = NULL, *console = NULL;
        bool rootless = false;
        int c;
        optind = 1;
        while ((c = getopt_long(argc, argv, "b:h", opts, NULL)) != -1) {
                if (c == 'b')
                        bundle = optarg;
                else if (c == 'r')
                        rootless = true;
                else if (c == 'p')
                        pid_file = optarg;
                else if (c == 'c')
                        console = optarg;
                else
                        return hm_error_set_exit(err, 2, EINVAL, "%s", c == 'h' ? usage : "invalid option (see 'hm oci --help')");
        }
        if (optind + 1 != argc)
                return hm_error_set_exit(err, 2, EINVAL, "hm oci run: expected exactly one container ID");
        _cleanup_oci_spec_ struct oci_spec *spec = NULL;
        int r = load_bundle(bundle, &spec, err);
        if (r < 0)
                return r;
        struct rt_start_options o = { .stdin_fd = STDIN_FILENO, .id = argv[optind], .rootless = rootless,
                                      .console_socket = console };
        _cleanup_rt_container_ struct rt_container *ct = NULL;
        r = rt_container_start(spec, &o, &ct, err);
        if (r < 0)
                return hm_error_wrap(err, "container '%s'", argv[optind]);
        for (const char *const *n = rt_container_notices(ct); *n; n++)
                fprintf(stderr, "hm: notice: %s\n", *n);
        if (pid_file) {
                char buf[32];
                snprintf(buf, sizeof buf, "%d", (int) rt_container_pid(ct));
                r = write_file_atomic(pid_file, buf, 0644, err);
                if (r < 0)
                        return r; /* ct's cleanup kills the container */
        }
        r = wait_foreground(ct, err);
        if (rt_spec_shares_mount_ns(spec)) {
                /* its mounts were made in a shared namespace: take them back down */
                const struct oci_namespace *mnt = oci_spec_find_namespace(spec, OCI_NS_MOUNT);
                _cleanup_close_ int fd = open(mnt ? mnt->path : "/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
                hm_error_t merr = NULL;
                if (fd < 0 || rt_shared_mounts_release(spec->root.path, fd, &merr) < 0) {
                        fprintf(stderr, "hm: warning: mounts below '%s' not released: %s\n", spec->root.path,
                                merr ? merr->msg : strerror(errno));
                        hm_error_release(&merr);
                }
        }
        return r;
}


/* ---- state ---- */

struct oci_state {
        char *id, *bundle, *created;
        pid_t pid;
        unsigned long long starttime; /* /proc/PID/stat field 22: tells a reused pid apart */
        char **cgroups;               /* RT_CGROUP_SLOTS entries, "" = none */
        char **annotations;           /* key, value, key, value, ... */
        char *shared_root;            /* no mount ns of its own: its mounts below this rootfs ... */
        char *mntns_path;             /* ... in this joined namespace (NULL: the creator's) */
};

static void oci_state_release(struct oci_state *st)
{
        free(st->id);
        free(st->bundle);
        free(st->created);
        strv_free(st->cgroups);
        strv_free(st->annotations);
        free(st->shared_root);
        free(st->mntns_path);
        *st = (struct oci_state) { 0 };
}

static bool valid_id(const char *id)
{
        if (!*id || !strcmp(id, ".") || !strcmp(id, "..") || strlen(id) > 1024)
                return false;
        for (const char *c = id; *c; c++)
                if (*c == '/' || (unsigned char) *c < 0x20)
                        return false;
        return true;
}

static char *state_path(const struct oci_ctx *ctx, const char *id, const char *file)
{
        return file ? xasprintf("%s/%s/%s", ctx->root, id, file) : xasprintf("%s/%s", ctx->root, id);
}

/* Process state letter and start time from /proc/PID/stat; -errno if gone. */
static int proc_stat(pid_t pid, char *ret_state, unsigned long long *ret_start)
{
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
        _cleanup_free_ char *buf = NULL;
        int r = read_file(path, 0, &buf, NULL);
        if (r < 0)
                return r;
        const char *p = strrchr(buf, ')'); /* comm may hold spaces and parentheses */
        if (!p || p[1] != ' ')
                return -EINVAL;
        *ret_state = p[2];
        p += 2;
        for (int field = 3; field < 22; field++) { /* field 3 is the state letter */
                p = strchr(p, ' ');
                if (!p)
                        return -EINVAL;
                p++;
        }
        *ret_start = strtoull(p, NULL, 10);
        return 0;
}

static bool state_alive(const struct oci_state *st)
{
        char s;
        unsigned long long start;
        if (st->pid <= 0 || proc_stat(st->pid, &s, &start) < 0)
                return false;
        return start == st->starttime && s != 'Z' && s != 'X';
}

static const char *state_status(const struct oci_ctx *ctx, const struct oci_state *st)
{
        if (!state_alive(st))
                return "stopped";
        _cleanup_free_ char *fifo = state_path(ctx, st->id, "exec.fifo");
        return access(fifo, F_OK) == 0 ? "created" : "running";
}

/* The spec'd state JSON; with_private adds what later commands need. */
static char *state_json(const struct oci_state *st, const char *status, bool with_private)
{
        _cleanup_(strbuf_releasep) struct strbuf sb = STRBUF_INIT;
        strbuf_addstr(&sb, "{\"ociVersion\":\"" OCI_VERSION "\",\"id\":");
        strbuf_add_json_str(&sb, st->id);
        strbuf_addstr(&sb, ",\"status\":");
        strbuf_add_json_str(&sb, status);
        if (strcmp(status, "stopped"))
                strbuf_addf(&sb, ",\"pid\":%d", (int) st->pid);
        strbuf_addstr(&sb, ",\"bundle\":");
        strbuf_add_json_str(&sb, st->bundle);
        strbuf_addstr(&sb, ",\"annotations\":{");
        for (size_t i = 0; st->annotations && st->annotations[i] && st->annotations[i + 1]; i += 2) {
                if (i)
                        strbuf_addch(&sb, ',');
                strbuf_add_json_str(&sb, st->annotations[i]);
                strbuf_addch(&sb, ':');
                strbuf_add_json_str(&sb, st->annotations[i + 1]);
        }
        strbuf_addstr(&sb, "}");
        if (st->created) {
                strbuf_addstr(&sb, ",\"created\":");
                strbuf_add_json_str(&sb, st->created);
        }
        if (with_private) {
                strbuf_addf(&sb, ",\"hm\":{\"pid\":%d,\"starttime\":%llu,\"cgroups\":[", (int) st->pid, st->starttime);
                for (size_t i = 0; st->cgroups && st->cgroups[i]; i++) {
                        if (i)
                                strbuf_addch(&sb, ',');
                        strbuf_add_json_str(&sb, st->cgroups[i]);
                }
                strbuf_addstr(&sb, "]");
                if (st->shared_root) {
                        strbuf_addstr(&sb, ",\"shared_root\":");
                        strbuf_add_json_str(&sb, st->shared_root);
                }
                if (st->mntns_path) {
                        strbuf_addstr(&sb, ",\"mntns\":");
                        strbuf_add_json_str(&sb, st->mntns_path);
                }
                strbuf_addstr(&sb, "}");
        }
        strbuf_addstr(&sb, "}");
        return strbuf_detach(&sb, NULL);
}

/* write to a temp name in the same dir, then rename: readers never see half a file */
static int write_file_atomic(const char *path, const char *data, mode_t mode, hm_error_t *err)
{
        _cleanup_free_ char *tmp = xasprintf("%s.tmp-%d", path, (int) getpid());
        _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        int r = fd < 0 ? -errno : write_all(fd, data, strlen(data));
        if (r >= 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0) {
                (void) unlink(tmp);
                return hm_error_set(err, -r, "write '%s': %s", path, strerror(-r));
        }
        return 0;
}

static int state_save(const struct oci_ctx *ctx, const struct oci_state *st, hm_error_t *err)
{
        _cleanup_free_ char *path = state_path(ctx, st->id, "state.json");
        _cleanup_free_ char *json = state_json(st, "created", true);
        return write_file_atomic(path, json, 0600, err);
}

static const char *json_str(yajl_val root, const char *const *path)
{
        yajl_val v = yajl_tree_get(root, (const char **) path, yajl_t_string);
        return v ? YAJL_GET_STRING(v) : NULL;
}

static int state_load(const struct oci_ctx *ctx, const char *id, struct oci_state *st, hm_error_t *err)
{
        if (!valid_id(id))
                return hm_error_set(err, EINVAL, "invalid container id '%s'", id);
        _cleanup_free_ char *path = state_path(ctx, id, "state.json");
        _cleanup_free_ char *buf = NULL;
        int r = read_file(path, 0, &buf, NULL);
        if (r == -ENOENT)
                return hm_error_set(err, ENOENT, "container '%s' does not exist", id);
        if (r < 0)
                return hm_error_set(err, -r, "read '%s': %s", path, strerror(-r));
        char ebuf[256];
        _cleanup_(yajl_tree_freep) yajl_val root = yajl_tree_parse(buf, ebuf, sizeof ebuf);
        static const char *const p_bundle[] = { "bundle", NULL }, *const p_created[] = { "created", NULL },
                                 *const p_pid[] = { "hm", "pid", NULL }, *const p_start[] = { "hm", "starttime", NULL },
                                 *const p_cg[] = { "hm", "cgroups", NULL }, *const p_ann[] = { "annotations", NULL },
                                 *const p_shared[] = { "hm", "shared_root", NULL }, *const p_mntns[] = { "hm", "mntns", NULL };
        yajl_val pid = root ? yajl_tree_get(root, (const char **) p_pid, yajl_t_number) : NULL;
        yajl_val start = root ? yajl_tree_get(root, (const char **) p_start, yajl_t_number) : NULL;
        const char *bundle = root ? json_str(root, (const char *const *) p_bundle) : NULL;
        if (!pid || !start || !bundle)
                return hm_error_set(err, EINVAL, "'%s': not a state file of hm oci", path);
        *st = (struct oci_state) { .id = xstrdup(id), .bundle = xstrdup(bundle), .pid = (pid_t) YAJL_GET_INTEGER(pid),
                                   .starttime = strtoull(YAJL_GET_NUMBER(start), NULL, 10) };
        const char *created = json_str(root, (const char *const *) p_created);
        st->created = created ? xstrdup(created) : NULL;
        const char *shared = json_str(root, (const char *const *) p_shared), *mntns = json_str(root, (const char *const *) p_mntns);
        st->shared_root = shared ? xstrdup(shared) : NULL;
        st->mntns_path = mntns ? xstrdup(mntns) : NULL;
        yajl_val cg = yajl_tree_get(root, (const char **) p_cg, yajl_t_array);
        for (size_t i = 0; cg && i < YAJL_GET_ARRAY(cg)->len; i++) {
                yajl_val e = YAJL_GET_ARRAY(cg)->values[i];
                strv_push(&st->cgroups, YAJL_IS_STRING(e) ? YAJL_GET_STRING(e) : "");
        }
        yajl_val ann = yajl_tree_get(root, (const char **) p_ann, yajl_t_object);
        for (size_t i = 0; ann && i < YAJL_GET_OBJECT(ann)->len; i++) {
                yajl_val v = YAJL_GET_OBJECT(ann)->values[i];
                strv_push(&st->annotations, YAJL_GET_OBJECT(ann)->keys[i]);
                strv_push(&st->annotations, YAJL_IS_STRING(v) ? YAJL_GET_STRING(v) : "");
        }
        return 0;
}

/* ---- hooks: state JSON on stdin, bounded by the hook's timeout ---- */

static int run_hook(const struct oci_hook *h, const char *state, hm_error_t *err)
{
        int pipefd[2];
        if (pipe2(pipefd, O_CLOEXEC) < 0)
                return hm_error_set(err, errno, "hook '%s': pipe: %s", h->path, strerror(errno));
        _cleanup_close_ int rd = pipefd[0], wr = pipefd[1];
        char *const no_args[] = { h->path, NULL };
        char *const empty_env[] = { NULL };
        pid_t pid = fork();
        if (pid < 0)
                return hm_error_set(err, errno, "hook '%s': fork: %s", h->path, strerror(errno));
        if (pid == 0) {
                if (dup2(rd, STDIN_FILENO) < 0)
                        _exit(127);
                execve(h->path, h->args ? h->args : no_args, h->env ? h->env : empty_env);
                _exit(127);
        }
        rd = safe_close(rd);
        /* a hook that does not read its stdin must not fail us */
        struct sigaction ign = { .sa_handler = SIG_IGN }, old;
        sigaction(SIGPIPE, &ign, &old);
        (void) write_all(wr, state, strlen(state));
        sigaction(SIGPIPE, &old, NULL);
        wr = safe_close(wr);
        _cleanup_close_ int pidfd = (int) syscall(SYS_pidfd_open, pid, 0);
        int timeout_ms = h->timeout_present && h->timeout > 0 ? h->timeout * 1000 : -1;
        if (pidfd >= 0) {
                struct pollfd p = { pidfd, POLLIN, 0 };
                int n;
                while ((n = poll(&p, 1, timeout_ms)) < 0 && errno == EINTR)
                        ;
                if (n == 0) {
                        kill(pid, SIGKILL);
                        (void) waitpid(pid, NULL, 0);
                        return hm_error_set(err, ETIMEDOUT, "hook '%s': timed out after %d s", h->path, h->timeout);
                }
        }
        int status;
        while (waitpid(pid, &status, 0) < 0)
                if (errno != EINTR)
                        return hm_error_set(err, errno, "hook '%s': wait: %s", h->path, strerror(errno));
        if (!WIFEXITED(status) || WEXITSTATUS(status))
                return hm_error_set(err, EIO, "hook '%s': %s %d", h->path, WIFEXITED(status) ? "exited with" : "killed by signal",
                                    WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
        return 0;
}

static int run_hooks(const struct oci_spec *spec, enum oci_hook_kind kind, const char *name, const char *state,
                     hm_error_t *err)
{
        for (size_t i = 0; i < spec->hooks.n_hooks[kind]; i++) {
                int r = run_hook(&spec->hooks.hooks[kind][i], state, err);
                if (r < 0)
                        return hm_error_wrap(err, "hooks.%s[%zu]", name, i);
        }
        return 0;
}

/* Hooks whose failure is only reported (poststart, poststop). */
static void run_hooks_warn(const struct oci_ctx *ctx, const struct oci_spec *spec, enum oci_hook_kind kind,
                           const char *name, const char *state)
{
        /* a failing one is reported, and the remaining ones still run (runtime-spec) */
        for (size_t i = 0; i < spec->hooks.n_hooks[kind]; i++) {
                hm_error_t err = NULL;
                if (run_hook(&spec->hooks.hooks[kind][i], state, &err) < 0) {
                        hm_error_wrap(&err, "hooks.%s[%zu]", name, i);
                        fprintf(stderr, "hm: warning: %s\n", err->msg);
                        oci_log(ctx, "warning", "%s", err->msg);
                        hm_error_release(&err);
                }
        }
}

/* ---- container teardown from its state ---- */

static void wait_gone(const struct oci_state *st)
{
        for (int i = 0; i < 500 && state_alive(st); i++)
                nanosleep(&(struct timespec) { 0, 2000000 }, NULL);
}

/* The mount namespace a container without its own made its mounts in, or -1. */
static int shared_mntns_open(const struct oci_state *st)
{
        char path[64];
        if (state_alive(st)) {
                snprintf(path, sizeof path, "/proc/%d/ns/mnt", (int) st->pid);
                int fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd >= 0)
                        return fd;
        }
        return open(st->mntns_path ? st->mntns_path : "/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC);
}

static void destroy_container(const struct oci_ctx *ctx, const struct oci_state *st)
{
        _cleanup_close_ int mntns = st->shared_root ? shared_mntns_open(st) : -1;
        if (state_alive(st)) {
                (void) kill(st->pid, SIGKILL); /* pid 1 of its pid namespace: takes every process with it */
                wait_gone(st);
        }
        if (st->cgroups)
                rt_cgroups_destroy(st->cgroups);
        hm_error_t err = NULL;
        if (st->shared_root && (mntns < 0 || rt_shared_mounts_release(st->shared_root, mntns, &err) < 0)) {
                oci_log(ctx, "warning", "container '%s': mounts below '%s' not released: %s", st->id, st->shared_root,
                        err ? err->msg : strerror(errno));
                hm_error_release(&err);
        }
        _cleanup_free_ char *dir = state_path(ctx, st->id, NULL);
        (void) rm_rf(dir);
}

/* ---- create ---- */

struct create_opts {
        const char *bundle, *pid_file, *console_socket, *id;
        long preserve_fds;
};

static int parse_create(int argc, char **argv, struct create_opts *o, hm_error_t *err)
{
        static const struct option opts[] = { { "bundle", required_argument, NULL, 'b' },
                                              { "pid-file", required_argument, NULL, 'p' },
                                              { "console-socket", required_argument, NULL, 'c' },
                                              { "preserve-fds", required_argument, NULL, 'f' },
                                              { "no-pivot", no_argument, NULL, 'n' },
                                              { "no-new-keyring", no_argument, NULL, 'n' },
                                              {} };
        *o = (struct create_opts) { .bundle = "." };
        int c;
        optind = 1;
        while ((c = getopt_long(argc, argv, "b:", opts, NULL)) != -1) {
                if (c == 'b')
                        o->bundle = optarg;
                else if (c == 'p')
                        o->pid_file = optarg;
                else if (c == 'c')
                        o->console_socket = optarg;
                else if (c == 'f') {
                        char *end;
                        o->preserve_fds = strtol(optarg, &end, 10);
                        if (!*optarg || *end)
                                o->preserve_fds = -1;
                }
                else if (c != 'n')
                        return hm_error_set_exit(err, 2, EINVAL, "create: invalid option (see 'hm oci --help')");
        }
        if (optind + 1 != argc)
                return hm_error_set_exit(err, 2, EINVAL, "create: expected exactly one container ID");
        o->id = argv[optind];
        if (!valid_id(o->id))
                return hm_error_set_exit(err, 2, EINVAL, "invalid container id '%s'", o->id);
        if (o->preserve_fds < 0 || o->preserve_fds > 65536)
                return hm_error_set_exit(err, 2, EINVAL, "--preserve-fds: expected a number of fds (0..65536)");
        return 0;
}

static int check_hooks(const struct oci_spec *spec, hm_error_t *err)
{
        /* these run inside the container's namespaces: not implemented */
        if (spec->hooks.n_hooks[OCI_HOOK_CREATE_CONTAINER])
                return hm_error_set(err, EOPNOTSUPP, "hooks.createContainer: not supported");
        if (spec->hooks.n_hooks[OCI_HOOK_START_CONTAINER])
                return hm_error_set(err, EOPNOTSUPP, "hooks.startContainer: not supported");
        return 0;
}

static char *iso_now(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        char buf[64];
        strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", gmtime_r(&ts.tv_sec, &tm));
        return xasprintf("%s.%09ldZ", buf, ts.tv_nsec);
}

static int copy_config(const char *bundle, const char *to, hm_error_t *err)
{
        _cleanup_free_ char *from = xasprintf("%s/config.json", bundle);
        _cleanup_free_ char *buf = NULL;
        int r = read_file(from, 0, &buf, NULL);
        if (r < 0)
                return hm_error_set(err, -r, "read '%s': %s", from, strerror(-r));
        return write_file_atomic(to, buf, 0600, err);
}

/* Start detached, fill st (pid, start time, cgroups); the container then outlives us. */
static int create_start(const struct oci_ctx *ctx, const struct create_opts *co, const struct oci_spec *spec,
                        const char *fifo, struct oci_state *st, hm_error_t *err)
{
        struct rt_start_options o = { .stdin_fd = STDIN_FILENO, .id = st->id, .exec_fifo = fifo, .hooks_by_caller = true,
                                      .console_socket = co->console_socket, .preserve_fds = (unsigned) co->preserve_fds };
        struct rt_container *c = NULL;
        int r = rt_container_start(spec, &o, &c, err);
        if (r < 0)
                return r;
        for (const char *const *n = rt_container_notices(c); *n; n++)
                oci_log(ctx, "info", "notice: %s", *n);
        st->pid = rt_container_pid(c);
        char s;
        r = proc_stat(st->pid, &s, &st->starttime);
        rt_container_detach(c, &st->cgroups);
        if (r < 0)
                return hm_error_set(err, -r, "read start time of pid %d: %s", (int) st->pid, strerror(-r));
        return 0;
}

static int create_in_dir(const struct oci_ctx *ctx, const struct create_opts *o, struct oci_state *st, hm_error_t *err)
{
        _cleanup_free_ char *bundle = realpath(o->bundle, NULL);
        if (!bundle)
                return hm_error_set(err, errno, "bundle '%s': %s", o->bundle, strerror(errno));
        _cleanup_oci_spec_ struct oci_spec *spec = NULL;
        int r = load_bundle(bundle, &spec, err);
        if (r >= 0)
                r = check_hooks(spec, err);
        _cleanup_free_ char *config = state_path(ctx, o->id, "config.json");
        if (r >= 0)
                r = copy_config(bundle, config, err);
        _cleanup_free_ char *fifo = state_path(ctx, o->id, "exec.fifo");
        if (r >= 0 && mkfifo(fifo, 0600) < 0)
                r = hm_error_set(err, errno, "mkfifo '%s': %s", fifo, strerror(errno));
        if (r < 0)
                return r;
        st->bundle = TAKE_PTR(bundle);
        st->created = iso_now();
        if (rt_spec_shares_mount_ns(spec)) {
                const struct oci_namespace *mnt = oci_spec_find_namespace(spec, OCI_NS_MOUNT);
                st->shared_root = xstrdup(spec->root.path);
                st->mntns_path = mnt ? xstrdup(mnt->path) : NULL;
        }
        for (size_t i = 0; i < spec->n_annotations; i++) {
                strv_push(&st->annotations, spec->annotations[i].key);
                strv_push(&st->annotations, spec->annotations[i].value);
        }
        r = create_start(ctx, o, spec, fifo, st, err);
        if (r >= 0)
                r = state_save(ctx, st, err);
        if (r >= 0 && o->pid_file) {
                char buf[32];
                snprintf(buf, sizeof buf, "%d", (int) st->pid);
                r = write_file_atomic(o->pid_file, buf, 0644, err);
        }
        if (r < 0)
                return r;
        _cleanup_free_ char *json = state_json(st, "created", false);
        r = run_hooks(spec, OCI_HOOK_PRESTART, "prestart", json, err);
        if (r >= 0)
                r = run_hooks(spec, OCI_HOOK_CREATE_RUNTIME, "createRuntime", json, err);
        return r;
}

static int oci_create(const struct oci_ctx *ctx, int argc, char **argv, hm_error_t *err)
{
        struct create_opts o;
        int r = parse_create(argc, argv, &o, err);
        if (r < 0)
                return r;
        r = mkdir_p(ctx->root, 0700);
        if (r < 0)
                return hm_error_set(err, -r, "create state root '%s': %s", ctx->root, strerror(-r));
        _cleanup_free_ char *dir = state_path(ctx, o.id, NULL);
        if (mkdir(dir, 0700) < 0)
                return errno == EEXIST ? hm_error_set(err, EEXIST, "container '%s' already exists", o.id)
                                       : hm_error_set(err, errno, "create '%s': %s", dir, strerror(errno));
        _cleanup_(oci_state_release) struct oci_state st = { .id = xstrdup(o.id) };
        r = create_in_dir(ctx, &o, &st, err);
        if (r < 0) {
                destroy_container(ctx, &st); /* kills what was started, removes cgroups and the state dir */
                return hm_error_wrap(err, "container '%s'", o.id);
        }
        return 0;
}

/* ---- start, state, kill, delete, list ---- */

static const char *one_id(int argc, char **argv, const char *cmd, hm_error_t *err)
{
        if (argc != 2) {
                hm_error_set_exit(err, 2, EINVAL, "%s: expected exactly one container ID", cmd);
                return NULL;
        }
        return argv[1];
}

static int load_saved_config(const struct oci_ctx *ctx, const char *id, struct oci_spec **ret, hm_error_t *err)
{
        _cleanup_free_ char *path = state_path(ctx, id, "config.json");
        return oci_spec_load(path, ret, err);
}

static int oci_start(const struct oci_ctx *ctx, int argc, char **argv, hm_error_t *err)
{
        const char *id = one_id(argc, argv, "start", err);
        if (!id)
                return -EINVAL;
        _cleanup_(oci_state_release) struct oci_state st = { 0 };
        int r = state_load(ctx, id, &st, err);
        if (r < 0)
                return r;
        const char *status = state_status(ctx, &st);
        if (strcmp(status, "created"))
                return hm_error_set(err, EINVAL, "container '%s' is %s, not created", id, status);
        _cleanup_free_ char *fifo = state_path(ctx, id, "exec.fifo");
        /* non-blocking: fails (ENXIO) unless the command is blocked reading it */
        _cleanup_close_ int fd = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0 || write(fd, "0", 1) != 1)
                return hm_error_set(err, errno, "container '%s': release the command: %s", id, strerror(errno));
        /*
         * The command holds its end until execve (CLOEXEC): once no reader is
         * left it has been executed (or died), and only then may poststart
         * hooks run.  Bounded, in case something else holds the fifo open.
         */
        for (int i = 0; i < 5000 && state_alive(&st); i++) {
                _cleanup_close_ int probe = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
                if (probe < 0)
                        break; /* ENXIO: no reader */
                nanosleep(&(struct timespec) { 0, 1000000 }, NULL);
        }
        (void) unlink(fifo);
        _cleanup_oci_spec_ struct oci_spec *spec = NULL;
        if (load_saved_config(ctx, id, &spec, err) < 0)
                return hm_error_wrap(err, "container '%s' started, but its poststart hooks cannot run", id);
        _cleanup_free_ char *json = state_json(&st, "running", false);
        run_hooks_warn(ctx, spec, OCI_HOOK_POSTSTART, "poststart", json);
        return 0;
}

/* ---- exec ---- */

struct exec_opts {
        const char *process, *pid_file, *console_socket, *cwd, *user, *id;
        char **env;  /* K=V, added to (or replacing in) the container's env */
        char **args; /* borrowed from argv */
        bool tty, detach;
        long preserve_fds;
};

static int parse_exec(int argc, char **argv, struct exec_opts *o, hm_error_t *err)
{
        static const struct option opts[] = { { "process", required_argument, NULL, 'p' },
                                              { "pid-file", required_argument, NULL, 'P' },
                                              { "console-socket", required_argument, NULL, 'c' },
                                              { "detach", no_argument, NULL, 'd' },
                                              { "preserve-fds", required_argument, NULL, 'f' },
                                              { "cwd", required_argument, NULL, 'w' },
                                              { "env", required_argument, NULL, 'e' },
                                              { "user", required_argument, NULL, 'u' },
                                              { "tty", no_argument, NULL, 't' },
                                              { "help", no_argument, NULL, 'h' },
                                              {} };
        int c;
        optind = 1;
        /* "+": options end at the ID, the command's own arguments are not ours */
        while ((c = getopt_long(argc, argv, "+p:de:u:th", opts, NULL)) != -1) {
                switch (c) {
                case 'p': o->process = optarg; break;
                case 'P': o->pid_file = optarg; break;
                case 'c': o->console_socket = optarg; break;
                case 'd': o->detach = true; break;
                case 'w': o->cwd = optarg; break;
                case 'u': o->user = optarg; break;
                case 't': o->tty = true; break;
                case 'e':
                        if (!strchr(optarg, '=') || optarg[0] == '=')
                                return hm_error_set_exit(err, 2, EINVAL, "exec: --env '%s': expected KEY=VALUE", optarg);
                        strv_push(&o->env, optarg);
                        break;
                case 'f': {
                        char *end;
                        o->preserve_fds = strtol(optarg, &end, 10);
                        if (!*optarg || *end || o->preserve_fds < 0 || o->preserve_fds > 65536)
                                return hm_error_set_exit(err, 2, EINVAL, "exec: --preserve-fds: expected a number of fds (0..65536)");
                        break;
                }
                default:
                        return hm_error_set_exit(err, 2, EINVAL, "%s", c == 'h' ? usage : "exec: invalid option (see 'hm oci --help')");
                }
        }
        if (optind >= argc)
                return hm_error_set_exit(err, 2, EINVAL, "exec: expected a container ID");
        o->id = argv[optind];
        o->args = argv + optind + 1;
        if (!o->process && !*o->args)
                return hm_error_set_exit(err, 2, EINVAL, "exec: expected --process FILE or a command after the container ID");
        if (o->process && *o->args)
                return hm_error_set_exit(err, 2, EINVAL, "exec: --process FILE and a command line are exclusive");
        if (o->cwd && o->cwd[0] != '/')
                return hm_error_set_exit(err, 2, EINVAL, "exec: --cwd '%s': not an absolute path", o->cwd);
        return 0;
}

/* The command-line form: the container's own process with these changes (runc's rule). */
static int exec_process_from_args(struct oci_spec *spec, const struct exec_opts *o, hm_error_t *err)
{
        struct oci_process *p = &spec->process;
        strv_free(p->args);
        p->args = strv_copy(o->args);
        for (char *const *e = o->env; e && *e; e++) {
                size_t klen = (size_t) (strchr(*e, '=') - *e) + 1;
                size_t i = 0;
                while (p->env && p->env[i] && strncmp(p->env[i], *e, klen))
                        i++;
                if (p->env && p->env[i]) {
                        free(p->env[i]);
                        p->env[i] = xstrdup(*e);
                } else {
                        strv_push(&p->env, *e);
                }
        }
        if (o->cwd) {
                free(p->cwd);
                p->cwd = xstrdup(o->cwd);
        }
        if (o->user) {
                int r = oci_parse_user(o->user, &p->user.uid, &p->user.gid, err);
                if (r < 0)
                        return hm_error_wrap(err, "exec: --user");
                free(p->user.additional_gids);
                p->user.additional_gids = NULL;
                p->user.n_additional_gids = 0;
        }
        p->terminal = o->tty;
        return 0;
}

static int exec_process_from_file(struct oci_spec *spec, const char *path, hm_error_t *err)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        int r = read_file(path, 0, &buf, &len);
        if (r < 0)
                return hm_error_set(err, -r, "exec: --process '%s': %s", path, strerror(-r));
        return oci_spec_replace_process(spec, buf, len, path, err);
}

static int exec_in(const struct oci_ctx *ctx, const struct exec_opts *o, hm_error_t *err)
{
        _cleanup_(oci_state_release) struct oci_state st = { 0 };
        int r = state_load(ctx, o->id, &st, err);
        if (r < 0)
                return r;
        const char *status = state_status(ctx, &st);
        if (!strcmp(status, "stopped"))
                return hm_error_set(err, ESRCH, "container '%s' is stopped: nothing to exec in", o->id);
        _cleanup_oci_spec_ struct oci_spec *spec = NULL;
        r = load_saved_config(ctx, o->id, &spec, err);
        if (r >= 0)
                r = o->process ? exec_process_from_file(spec, o->process, err) : exec_process_from_args(spec, o, err);
        if (r < 0)
                return r;
        struct rt_exec_options xo = { .pid = st.pid, .starttime = st.starttime, .cgroups = st.cgroups, .chroot_dir = st.shared_root,
                                      .stdin_fd = STDIN_FILENO, .console_socket = o->console_socket,
                                      .preserve_fds = (unsigned) o->preserve_fds, .detach = o->detach };
        _cleanup_rt_container_ struct rt_container *c = NULL;
        r = rt_exec_start(spec, &xo, &c, err);
        if (r < 0)
                return hm_error_wrap(err, "exec in container '%s'", o->id);
        pid_t pid = rt_container_exec_pid(c);
        if (o->detach) {
                int setup_status;
                r = rt_container_wait(c, &setup_status, err); /* the process in between: exits once the command is forked */
                if (r >= 0 && setup_status != 0)
                        r = hm_error_set(err, EIO, "exec in container '%s': setup exited with %d", o->id, setup_status);
        }
        if (r >= 0 && o->pid_file) {
                char buf[32];
                snprintf(buf, sizeof buf, "%d", (int) pid);
                r = write_file_atomic(o->pid_file, buf, 0644, err);
        }
        if (r < 0) {
                (void) kill(pid, SIGKILL); /* nobody would know of it */
                return r;
        }
        return o->detach ? 0 : wait_foreground(c, err);
}

static int oci_exec(const struct oci_ctx *ctx, int argc, char **argv, hm_error_t *err)
{
        struct exec_opts o = { 0 };
        int r = parse_exec(argc, argv, &o, err);
        if (r >= 0)
                r = exec_in(ctx, &o, err);
        strv_free(o.env);
        return r;
}

static int oci_state_cmd(const struct oci_ctx *ctx, int argc, char **argv, hm_error_t *err)
{
        const char *id = one_id(argc, argv, "state", err);
        if (!id)
                return -EINVAL;
        _cleanup_(oci_state_release) struct oci_state st = { 0 };
        int r = state_load(ctx, id, &st, err);
        if (r < 0)
                return r;
        _cleanup_free_ char *json = state_json(&st, state_status(ctx, &st), false);
        printf("%s\n", json);
        return 0;
}

static int parse_signal(const char *s)
{
        static const struct {
                const char *name;
                int sig;
        } names[] = { { "HUP", SIGHUP },   { "INT", SIGINT },   { "QUIT", SIGQUIT }, { "ILL", SIGILL },   { "TRAP", SIGTRAP },
                      { "ABRT", SIGABRT }, { "IOT", SIGIOT },   { "BUS", SIGBUS },   { "FPE", SIGFPE },   { "KILL", SIGKILL },
                      { "USR1", SIGUSR1 }, { "SEGV", SIGSEGV }, { "USR2", SIGUSR2 }, { "PIPE", SIGPIPE }, { "ALRM", SIGALRM },
                      { "TERM", SIGTERM }, { "STKFLT", SIGSTKFLT }, { "CHLD", SIGCHLD }, { "CONT", SIGCONT },
                      { "STOP", SIGSTOP }, { "TSTP", SIGTSTP }, { "TTIN", SIGTTIN }, { "TTOU", SIGTTOU }, { "URG", SIGURG },
                      { "XCPU", SIGXCPU }, { "XFSZ", SIGXFSZ }, { "VTALRM", SIGVTALRM }, { "PROF", SIGPROF },
                      { "WINCH", SIGWINCH }, { "IO", SIGIO }, { "PWR", SIGPWR }, { "SYS", SIGSYS } };
        char *end;
        long n = strtol(s, &end, 10);
        if (*s && !*end)
                return n > 0 && n < NSIG ? (int) n : -1;
        if (!strncasecmp(s, "SIG", 3))
                s += 3;
        for (size_t i = 0; i < ARRAY_SIZE(names); i++)
                if (!strcasecmp(s, names[i].name))
                        return names[i].sig;
        if (!strncasecmp(s, "RTMIN+", 6) && (n = strtol(s + 6, &end, 10)) >= 0 && !*end && SIGRTMIN + n <= SIGRTMAX)
                return SIGRTMIN + (int) n;
        return -1;
}

/* --all: every process in the container's pids cgroup */
static int kill_all(const struct oci_state *st, int sig, hm_error_t *err)
{
        if (!st->cgroups || !st->cgroups[0] || !*st->cgroups[0]) {
                (void) kill(st->pid, sig);
                return 0;
        }
        _cleanup_free_ char *path = xasprintf("%s/cgroup.procs", st->cgroups[0]);
        _cleanup_free_ char *buf = NULL;
        int r = read_file(path, 0, &buf, NULL);
        if (r < 0)
                return hm_error_set(err, -r, "read '%s': %s", path, strerror(-r));
        for (char *line = buf, *next; line && *line; line = next) {
                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                long pid = strtol(line, NULL, 10);
                if (pid > 0)
                        (void) kill((pid_t) pid, sig);
        }
        return 0;
}

static int oci_kill(const struct oci_ctx *ctx, int argc, char **argv, hm_error_t *err)
{
        bool all = false;
        int n = 0;
        char *args[3] = { 0 };
        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--all") || !strcmp(argv[i], "-a"))
                        all = true;
                else if (n < 2)
                        args[n++] = argv[i];
                else
                        return hm_error_set_exit(err, 2, EINVAL, "kill: too many arguments");
        }
        if (!n)
                return hm_error_set_exit(err, 2, EINVAL, "kill: expected a container ID");
        int sig = n == 2 ? parse_signal(args[1]) : SIGTERM;
        if (sig < 0)
                return hm_error_set_exit(err, 2, EINVAL, "kill: unknown signal '%s'", args[1]);
        _cleanup_(oci_state_release) struct oci_state st = { 0 };
        int r = state_load(ctx, args[0], &st, err);
        if (r < 0)
                return r;
        if (!state_alive(&st))
                return hm_error_set(err, ESRCH, "container '%s' is not running", args[0]);
        if (all)
                return kill_all(&st, sig, err);
        if (kill(st.pid, sig) < 0)
                return hm_error_set(err, errno, "kill container '%s' (pid %d): %s", args[0], (int) st.pid, strerror(errno));
        return 0;
}

static int oci_delete(const struct oci_ctx *ctx, int argc, char **argv, hm_error_t *err)
{
        bool force = false;
        const char *id = NULL;
        for (int i = 1; i < argc; i++) {
                if (!strcmp(argv[i], "--force") || !strcmp(argv[i], "-f"))
                        force = true;
                else if (!id)
                        id = argv[i];
                else
                        return hm_error_set_exit(err, 2, EINVAL, "delete: expected exactly one container ID");
        }
        if (!id)
                return hm_error_set_exit(err, 2, EINVAL, "delete: expected a container ID");
        _cleanup_(oci_state_release) struct oci_state st = { 0 };
        int r = state_load(ctx, id, &st, err);
        if (r < 0)
                return r;
        const char *status = state_status(ctx, &st);
        if (strcmp(status, "stopped") && !force)
                return hm_error_set(err, EBUSY, "container '%s' is %s, not stopped (kill it first or use --force)", id, status);
        _cleanup_oci_spec_ struct oci_spec *spec = NULL;
        hm_error_t cerr = NULL;
        if (load_saved_config(ctx, id, &spec, &cerr) < 0) {
                oci_log(ctx, "warning", "container '%s': poststop hooks not run: %s", id, cerr->msg);
                hm_error_release(&cerr);
        }
        destroy_container(ctx, &st);
        if (spec) {
                _cleanup_free_ char *json = state_json(&st, "stopped", false);
                run_hooks_warn(ctx, spec, OCI_HOOK_POSTSTOP, "poststop", json);
        }
        return 0;
}

static int oci_list(const struct oci_ctx *ctx, int argc, char **argv, hm_error_t *err)
{
        bool quiet = argc > 1 && (!strcmp(argv[1], "-q") || !strcmp(argv[1], "--quiet"));
        _cleanup_closedir_ DIR *d = opendir(ctx->root);
        if (!d)
                return errno == ENOENT ? 0 : hm_error_set(err, errno, "open '%s': %s", ctx->root, strerror(errno));
        if (!quiet)
                printf("%-24s %-8s %-8s %s\n", "ID", "PID", "STATUS", "BUNDLE");
        struct dirent *e;
        while ((e = readdir(d))) {
                if (e->d_name[0] == '.')
                        continue;
                _cleanup_(oci_state_release) struct oci_state st = { 0 };
                hm_error_t lerr = NULL;
                if (state_load(ctx, e->d_name, &st, &lerr) < 0) {
                        hm_error_release(&lerr);
                        continue;
                }
                if (quiet)
                        printf("%s\n", st.id);
                else
                        printf("%-24s %-8d %-8s %s\n", st.id, (int) st.pid, state_status(ctx, &st), st.bundle);
        }
        return 0;
}

static int oci_features(void)
{
        puts("{\"ociVersionMin\":\"1.0.0\",\"ociVersionMax\":\"" OCI_VERSION "\","
             "\"hooks\":[\"prestart\",\"createRuntime\",\"poststart\",\"poststop\"],"
             "\"mountOptions\":[\"ro\",\"rw\",\"nosuid\",\"suid\",\"nodev\",\"dev\",\"noexec\",\"exec\",\"bind\",\"rbind\","
             "\"private\",\"rprivate\",\"shared\",\"rshared\",\"slave\",\"rslave\",\"unbindable\",\"runbindable\"],"
             "\"linux\":{\"namespaces\":[\"cgroup\",\"ipc\",\"mount\",\"network\",\"pid\",\"user\",\"uts\"],"
             "\"cgroup\":{\"v1\":true,\"v2\":true,\"systemd\":false,\"systemdUser\":false},"
             "\"seccomp\":{\"enabled\":true},\"apparmor\":{\"enabled\":false},\"selinux\":{\"enabled\":false}},"
             "\"annotations\":{\"org.hm.runtime\":\"hm built-in runtime\"}}");
        return 0;
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

/* "--name VALUE" or "--name=VALUE" at argv[*i]; advances *i past the value */
static bool global_value(int argc, char **argv, int *i, const char *name, const char **ret)
{
        size_t n = strlen(name);
        if (strncmp(argv[*i], name, n))
                return false;
        if (argv[*i][n] == '=') {
                *ret = argv[*i] + n + 1;
                return true;
        }
        if (argv[*i][n] || *i + 1 >= argc)
                return false;
        *ret = argv[++*i];
        return true;
}

/* Global flags before the command; returns the command's index or -1 with *err set. */
static int parse_globals(int argc, char **argv, struct oci_ctx *ctx, hm_error_t *err)
{
        const char *fmt = "text", *ignored;
        int i = 1;
        for (; i < argc && argv[i][0] == '-'; i++) {
                if (global_value(argc, argv, &i, "--root", &ctx->root) || global_value(argc, argv, &i, "--log", &ctx->log) ||
                    global_value(argc, argv, &i, "--log-format", &fmt) ||
                    global_value(argc, argv, &i, "--criu", &ignored) || global_value(argc, argv, &i, "--rootless", &ignored))
                        continue;
                if (!strcmp(argv[i], "--systemd-cgroup") || !strcmp(argv[i], "--debug"))
                        continue;
                if (!strcmp(argv[i], "--version") || !strcmp(argv[i], "-v"))
                        return i;
                if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
                        return i;
                hm_error_set_exit(err, 2, EINVAL, "unknown global option '%s' (see 'hm oci --help')", argv[i]);
                return -1;
        }
        if (strcmp(fmt, "text") && strcmp(fmt, "json")) {
                hm_error_set_exit(err, 2, EINVAL, "--log-format '%s': expected text or json", fmt);
                return -1;
        }
        ctx->log_json = !strcmp(fmt, "json");
        for (int k = 1; k < i; k++)
                if (!strcmp(argv[k], "--systemd-cgroup"))
                        oci_log(ctx, "info", "--systemd-cgroup ignored: cgroups are managed directly (cgroupfs)");
        return i;
}

static int dispatch(const struct oci_ctx *ctx, int argc, char **argv, hm_error_t *err)
{
        const char *cmd = argv[0];
        if (!strcmp(cmd, "create"))
                return oci_create(ctx, argc, argv, err);
        if (!strcmp(cmd, "start"))
                return oci_start(ctx, argc, argv, err);
        if (!strcmp(cmd, "state"))
                return oci_state_cmd(ctx, argc, argv, err);
        if (!strcmp(cmd, "kill"))
                return oci_kill(ctx, argc, argv, err);
        if (!strcmp(cmd, "delete"))
                return oci_delete(ctx, argc, argv, err);
        if (!strcmp(cmd, "list"))
                return oci_list(ctx, argc, argv, err);
        if (!strcmp(cmd, "run"))
                return oci_run(argc, argv, err);
        if (!strcmp(cmd, "exec"))
                return oci_exec(ctx, argc, argv, err);
        if (!strcmp(cmd, "spec"))
                return oci_spec(err);
        if (!strcmp(cmd, "features"))
                return oci_features();
        return hm_error_set_exit(err, 2, EINVAL,
                                 "unknown 'hm oci' command '%s' (create, start, state, kill, delete, list, run, exec, spec, features)",
                                 cmd);
}

int cmd_oci(int argc, char **argv, hm_error_t *err)
{
        struct oci_ctx ctx = { .root = DEFAULT_ROOT };
        int i = parse_globals(argc, argv, &ctx, err);
        if (i < 0)
                return i;
        if (i >= argc || !strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
                fputs(usage, i >= argc ? stderr : stdout);
                return i >= argc ? 2 : 0;
        }
        if (!strcmp(argv[i], "--version") || !strcmp(argv[i], "-v")) {
                printf("hm-oci version 0.1.0\nspec: " OCI_VERSION "\n");
                return 0;
        }
        int r = dispatch(&ctx, argc - i, argv + i, err);
        if (r < 0 && *err)
                oci_log(&ctx, "error", "%s", (*err)->msg);
        return r;
}
