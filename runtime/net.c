/* SPDX-License-Identifier: Apache-2.0 */
/* Step networking: modes, the pipeline default, and the pasta/slirp4netns helper (runtime/net.h). */
#include "runtime/net.h"

#include <ctype.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "lib/util.h"
#include "runtime/syscalls.h"

#define NET_FD_NETNS 3 /* the helper's fds: the target network namespace */
#define NET_FD_READY 4 /* slirp4netns --ready-fd */

const char *net_mode_name(enum net_mode m)
{
        static const char *const names[] = { [NET_NONE] = "none", [NET_HOST] = "host", [NET_PASTA] = "pasta",
                                             [NET_SLIRP4NETNS] = "slirp4netns" };
        return names[m];
}

void net_config_release(struct net_config *c)
{
        free(c->tool);
        free(c->resolv_conf);
        free(c->name);
        *c = (struct net_config) { 0 };
}

/*
 * Only absolute PATH entries: a relative one ("node_modules/.bin", ".")
 * would be resolved in hm's cwd, usually the checkout, and let the
 * repository supply a "pasta" that runs on the host (as root).
 */
static char *find_in_path(const char *name)
{
        const char *path = getenv("PATH");
        if (!path || !*path)
                path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
        for (const char *dir = path; *dir;) {
                size_t n = strcspn(dir, ":");
                if (n && dir[0] == '/') {
                        _cleanup_free_ char *cand = xasprintf("%.*s/%s", (int) n, dir, name);
                        struct stat st;
                        if (stat(cand, &st) == 0 && S_ISREG(st.st_mode) && access(cand, X_OK) == 0)
                                return TAKE_PTR(cand);
                }
                dir += n;
                if (*dir == ':')
                        dir++;
        }
        return NULL;
}

static bool is_loopback_ns(const char *addr)
{
        return str_has_prefix(addr, "127.") || !strcmp(addr, "::1") || str_has_prefix(addr, "0:0:0:0:0:0:0:1");
}

/*
 * The host's resolv.conf for the step.  pasta: without its nameservers on
 * loopback (127.0.0.53 and the like cannot be reached from the namespace
 * with the host's loopback unmapped); everything else is kept.
 */
static char *host_resolv_conf(bool drop_loopback)
{
        _cleanup_free_ char *text = NULL;
        size_t len;
        if (read_file("/etc/resolv.conf", 1 << 16, &text, &len) < 0)
                return NULL;
        if (!drop_loopback)
                return TAKE_PTR(text);
        char *out = xstrdup("");
        bool any = false;
        for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
                char addr[64] = "";
                if (sscanf(line, " nameserver %63s", addr) == 1) {
                        if (is_loopback_ns(addr))
                                continue;
                        any = true;
                }
                char *next = xasprintf("%s%s\n", out, line);
                free(out);
                out = next;
        }
        if (!any) {
                free(out);
                return NULL;
        }
        return out;
}

static int bad_option(const char *source, const char *mode, const char *opt, const char *accepted, hm_error_t *err)
{
        return hm_error_set_exit(err, 2, EINVAL, "%s '%s': option '%s' is not supported (accepted: %s)", source, mode,
                                 opt, accepted);
}

static int parse_options(struct net_config *c, const char *source, const char *mode, const char *opts, hm_error_t *err)
{
        _cleanup_free_ char *copy = xstrdup(opts);
        for (char *save = NULL, *o = strtok_r(copy, ",", &save); o; o = strtok_r(NULL, ",", &save)) {
                if (c->mode == NET_PASTA) {
                        if (!strcmp(o, "--map-gw"))
                                c->map_host_loopback = true;
                        else if (!strcmp(o, "--no-map-gw"))
                                c->map_host_loopback = false;
                        else
                                return bad_option(source, mode, o, "--map-gw, --no-map-gw", err);
                } else if (c->mode == NET_SLIRP4NETNS) {
                        if (!strcmp(o, "allow_host_loopback=true"))
                                c->map_host_loopback = true;
                        else if (!strcmp(o, "allow_host_loopback=false"))
                                c->map_host_loopback = false;
                        else
                                return bad_option(source, mode, o, "allow_host_loopback=true|false", err);
                } else {
                        return hm_error_set_exit(err, 2, EINVAL, "%s '%s': mode '%s' takes no options", source, mode,
                                                 net_mode_name(c->mode));
                }
        }
        return 0;
}

int net_config_parse(const char *mode, const char *source, struct net_config *ret, hm_error_t *err)
{
        if (!mode || !*mode)
                mode = "none";
        if (!source)
                source = "--network";
        _cleanup_(net_config_release) struct net_config c = { .name = xstrdup(mode) };
        size_t n = strcspn(mode, ":");
        _cleanup_free_ char *base = xstrndup(mode, n);
        if (!strcmp(base, "none"))
                c.mode = NET_NONE;
        else if (!strcmp(base, "host"))
                c.mode = NET_HOST;
        else if (!strcmp(base, "pasta"))
                c.mode = NET_PASTA;
        else if (!strcmp(base, "slirp4netns"))
                c.mode = NET_SLIRP4NETNS;
        else
                return hm_error_set_exit(err, 2, EINVAL,
                                         "%s '%s': unknown network mode (use none, host, pasta or slirp4netns)", source,
                                         mode);
        int r = parse_options(&c, source, mode, mode[n] ? mode + n + 1 : "", err);
        if (r < 0)
                return r;
        if (c.mode == NET_PASTA || c.mode == NET_SLIRP4NETNS) {
                const char *tool = net_mode_name(c.mode);
                c.tool = find_in_path(tool);
                if (!c.tool)
                        return hm_error_set_exit(err, 2, ENOENT,
                                                 "%s '%s': '%s' is not installed (not found in PATH): install the "
                                                 "Debian package '%s' (contrib/install-deps.sh) or use --network=none",
                                                 source, mode, tool, c.mode == NET_PASTA ? "passt" : "slirp4netns");
        }
        /* both open the host's /dev/net/tun (before joining the step's namespaces) */
        if ((c.mode == NET_PASTA || c.mode == NET_SLIRP4NETNS) && access("/dev/net/tun", R_OK | W_OK) < 0)
                return hm_error_set_exit(err, 2, errno,
                                         "%s '%s': /dev/net/tun is not usable by this user (%s): '%s' needs it; "
                                         "Debian's default is mode 0666 (chmod 0666 /dev/net/tun), or use --network=none",
                                         source, mode, strerror(errno), net_mode_name(c.mode));
        if (c.mode == NET_SLIRP4NETNS)
                c.resolv_conf = xstrdup("nameserver 10.0.2.3\n"); /* slirp4netns's own DNS forwarder */
        else if (c.mode == NET_PASTA || c.mode == NET_HOST)
                c.resolv_conf = host_resolv_conf(c.mode == NET_PASTA && !c.map_host_loopback);
        *ret = c;
        c = (struct net_config) { 0 };
        return 0;
}

/* ---- the pipeline default ---- */

static char *trim(char *s)
{
        while (isspace((unsigned char) *s))
                s++;
        size_t n = strlen(s);
        while (n && isspace((unsigned char) s[n - 1]))
                s[--n] = 0;
        return s;
}

int net_pipeline_default(const char *dir, char **ret_mode, char **ret_source, hm_error_t *err)
{
        *ret_mode = *ret_source = NULL;
        const char *env = getenv("HM_NETWORK");
        if (env && *env) {
                *ret_mode = xstrdup(env);
                *ret_source = xstrdup("HM_NETWORK");
                return 0;
        }
        _cleanup_free_ char *path = xasprintf("%s/.hm/config.toml", dir ? dir : ".");
        _cleanup_free_ char *text = NULL;
        size_t len;
        int r = read_file(path, 1 << 20, &text, &len);
        if (r == -ENOENT || r == -ENOTDIR)
                return 0;
        if (r < 0)
                return hm_error_set(err, -r, "%s: %s", path, strerror(-r));
        unsigned lineno = 0;
        for (char *line = text, *next; line; line = next) {
                /* line by line, blank ones counted (strtok would skip them and the numbers) */
                next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                lineno++;
                char *s = trim(line);
                if (*s == '[')
                        break; /* only the top-level table */
                if (!str_has_prefix(s, "network"))
                        continue;
                char *eq = trim(s + strlen("network"));
                if (*eq != '=')
                        continue; /* another key, e.g. network_foo */
                char *v = trim(eq + 1);
                size_t vl = strlen(v);
                char *hash = strchr(v, '#');
                if (hash && (hash == v || v[0] != '"' || hash > strchr(v + 1, '"'))) {
                        *hash = 0;
                        v = trim(v);
                        vl = strlen(v);
                }
                if (vl < 2 || v[0] != '"' || v[vl - 1] != '"' || memchr(v + 1, '"', vl - 2))
                        return hm_error_set_exit(err, 2, EINVAL, "%s:%u: network: expected a quoted string, e.g. network = \"pasta\"",
                                                 path, lineno);
                *ret_mode = xstrndup(v + 1, vl - 2);
                *ret_source = xasprintf("%s:%u: network", path, lineno);
                return 0;
        }
        return 0;
}

/* ---- the helper ---- */

static char **helper_argv(const struct net_config *c, bool userns)
{
        char **argv = NULL;
        strv_push(&argv, c->tool);
        if (c->mode == NET_PASTA) {
                /* daemon mode: the first process exits once the namespace is configured */
                const char *a[] = { "-q", "--config-net", "--netns-only", "--netns", "/proc/self/fd/3",
                                    /* no port forwarding in either direction */
                                    "-t", "none", "-u", "none", "-T", "none", "-U", "none" };
                for (size_t i = 0; i < ARRAY_SIZE(a); i++)
                        strv_push(&argv, a[i]);
                if (!c->map_host_loopback)
                        strv_push(&argv, "--no-map-gw");
                /*
                 * pasta switches from uid 0 to nobody, which then may not join the
                 * namespace (host root) or is not mapped (uid 0 of the step's user
                 * namespace is the caller): keep the caller's uid, with pasta's
                 * reduced capability set
                 */
                strv_push(&argv, "--runas");
                strv_push(&argv, "0");
        } else {
                const char *a[] = { "--configure", "--mtu=65520", "--enable-sandbox", "--enable-seccomp",
                                    "--ready-fd=4", "--netns-type=path" };
                for (size_t i = 0; i < ARRAY_SIZE(a); i++)
                        strv_push(&argv, a[i]);
                if (!c->map_host_loopback)
                        strv_push(&argv, "--disable-host-loopback");
                strv_push(&argv, "/proc/self/fd/3");
                strv_push(&argv, "tap0");
        }
        return argv;
}

/* In the forked helper, fds ready: never returns. */
static _Noreturn void exec_helper(char **argv, int netfd, int readyfd, int nullfd, int logfd)
{
        int fds[4] = { fcntl(netfd, F_DUPFD_CLOEXEC, 10), readyfd >= 0 ? fcntl(readyfd, F_DUPFD_CLOEXEC, 10) : -1,
                       fcntl(nullfd, F_DUPFD_CLOEXEC, 10), fcntl(logfd, F_DUPFD_CLOEXEC, 10) };
        if (fds[0] < 0 || fds[2] < 0 || fds[3] < 0 || dup2(fds[2], 0) < 0 || dup2(fds[3], 1) < 0 ||
            dup2(fds[3], 2) < 0 || dup2(fds[0], NET_FD_NETNS) < 0 || (fds[1] >= 0 && dup2(fds[1], NET_FD_READY) < 0)) {
                dprintf(logfd, "set up the helper's fds: %s\n", strerror(errno));
                _exit(126);
        }
        (void) rt_close_range(fds[1] >= 0 ? NET_FD_READY + 1 : NET_FD_NETNS + 1, ~0U, 0);
        /* hm's ignored signals (SIGPIPE) and blocked mask must not reach the helper: pasta checks */
        for (int sig = 1; sig < NSIG; sig++)
                if (sig != SIGKILL && sig != SIGSTOP)
                        signal(sig, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        /* out of hm's process group: a Ctrl-C or hangup on hm's terminal must not cut the step's network */
        (void) setsid();
        execv(argv[0], argv);
        dprintf(2, "exec '%s': %s\n", argv[0], strerror(errno));
        _exit(127);
}

/*
 * The intermediate process: join the child's user namespace (a rootless
 * caller has CAP_SYS_ADMIN only there) and pid namespace, fork the helper
 * into it, and exit with pasta's status (its daemon is re-parented to the
 * container's pid 1) or at once for slirp4netns (which stays in the
 * foreground; re-parented the same way).
 */
static _Noreturn void intermediate(const struct net_config *c, char **argv, int usernsfd, int pidnsfd, int netfd,
                                   int readyfd, int nullfd, int logfd)
{
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (usernsfd >= 0 && setns(usernsfd, CLONE_NEWUSER) < 0) {
                dprintf(logfd, "join the step's user namespace: %s\n", strerror(errno));
                _exit(125);
        }
        if (setns(pidnsfd, CLONE_NEWPID) < 0) {
                dprintf(logfd, "join the step's pid namespace: %s\n", strerror(errno));
                _exit(125);
        }
        /*
         * A mount namespace of the helper's own, every mount private.
         * slirp4netns --enable-sandbox (1.2.0) unshares one itself but makes
         * only "/" private, then pivots and lazily unmounts the old root: the
         * detach propagates to every mount of the host that sits in a shared
         * peer group (Docker's overlay2 merged dirs, Podman's /run/netns binds)
         * and unmounts them under running engines (docs/flake.md).  Rootless,
         * the step's user namespace already turns those mounts into slaves.
         */
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
                dprintf(logfd, "a private mount namespace for the network helper: %s\n", strerror(errno));
                _exit(125);
        }
        /*
         * Two forks: the helper's parent must live in the step's pid namespace,
         * so that the helper (slirp4netns) or its daemon (pasta) is re-parented
         * to the step's pid 1 when that parent exits, not to the host's init.
         */
        pid_t inner = fork();
        if (inner < 0) {
                dprintf(logfd, "fork: %s\n", strerror(errno));
                _exit(125);
        }
        if (inner > 0) {
                int st;
                while (waitpid(inner, &st, 0) < 0)
                        if (errno != EINTR)
                                _exit(125);
                _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
        }
        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
        pid_t helper = fork();
        if (helper < 0) {
                dprintf(logfd, "fork: %s\n", strerror(errno));
                _exit(125);
        }
        if (helper == 0) {
                /*
                 * a pasta stuck before daemonizing dies with us when hm gives up;
                 * slirp4netns outlives its parent by design (the step's pid 1 adopts it)
                 */
                if (c->mode == NET_PASTA)
                        (void) prctl(PR_SET_PDEATHSIG, SIGKILL);
                exec_helper(argv, netfd, readyfd, nullfd, logfd);
        }
        if (c->mode != NET_PASTA)
                _exit(0);
        int st;
        while (waitpid(helper, &st, 0) < 0)
                if (errno != EINTR)
                        _exit(125);
        _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

/* The helper's log (first line), for an error message. */
static char *log_text(int logfd)
{
        char buf[512];
        ssize_t n = pread(logfd, buf, sizeof buf - 1, 0);
        if (n <= 0)
                return xstrdup("no output");
        buf[n] = 0;
        /* skip pasta's syslog noise: report the last meaningful line */
        char *best = NULL;
        for (char *save = NULL, *l = strtok_r(buf, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
                if (!str_has_prefix(l, "Failed to send") && !str_has_prefix(l, "WARNING") && *trim(l))
                        best = trim(l);
        return xstrdup(best ? best : "no output");
}

struct net_helper {
        const struct net_config *c;
        pid_t pid;   /* the intermediate process (hm's child), 0 once reaped */
        int pidfd;   /* its pidfd: stage 1 */
        int ready;   /* slirp4netns --ready-fd, read end: stage 2 */
        int logfd;   /* the helper's stdout and stderr */
        int64_t deadline;
};

static int open_ns(pid_t pid, const char *ns, const char *tool, int *ret, hm_error_t *err)
{
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/ns/%s", (int) pid, ns);
        *ret = open(path, O_RDONLY | O_CLOEXEC);
        if (*ret < 0)
                return hm_error_set(err, errno, "network %s: open '%s': %s", tool, path, strerror(errno));
        return 0;
}

void net_helper_free(struct net_helper *h)
{
        if (!h)
                return;
        if (h->pid > 0) {
                /*
                 * Its children in the step die with it (PR_SET_PDEATHSIG), but
                 * those it has not reaped yet go to the host's init then: the
                 * caller has freed the container first (net.h).
                 */
                if (h->pidfd < 0 || rt_pidfd_send_signal(h->pidfd, SIGKILL, NULL, 0) < 0)
                        (void) kill(h->pid, SIGKILL);
                while (waitpid(h->pid, NULL, 0) < 0 && errno == EINTR)
                        ;
        }
        safe_close(h->pidfd);
        safe_close(h->ready);
        safe_close(h->logfd);
        free(h);
}

int net_helper_fd(const struct net_helper *h)
{
        return h->pid > 0 ? h->pidfd : h->ready;
}

int64_t net_helper_deadline(const struct net_helper *h)
{
        return h->deadline;
}

int net_helper_start(const struct net_config *c, pid_t child, bool userns, struct net_helper **ret, hm_error_t *err)
{
        const char *tool = net_mode_name(c->mode);
        _cleanup_close_ int netfd = -1, pidnsfd = -1, usernsfd = -1;
        int r = open_ns(child, "net", tool, &netfd, err);
        if (r >= 0)
                r = open_ns(child, "pid", tool, &pidnsfd, err);
        if (r >= 0 && userns)
                r = open_ns(child, "user", tool, &usernsfd, err);
        if (r < 0)
                return r;
        _cleanup_close_ int nullfd = open("/dev/null", O_RDWR | O_CLOEXEC);
        _cleanup_close_ int logfd = memfd_create("hm-net-log", MFD_CLOEXEC);
        if (nullfd < 0 || logfd < 0)
                return hm_error_set(err, errno, "network %s: set up the helper's output: %s", tool, strerror(errno));
        int ready[2] = { -1, -1 };
        if (c->mode == NET_SLIRP4NETNS && pipe2(ready, O_CLOEXEC | O_NONBLOCK) < 0)
                return hm_error_set(err, errno, "network %s: pipe: %s", tool, strerror(errno));
        _cleanup_close_ int ready_r = ready[0];
        _cleanup_close_ int ready_w = ready[1];
        _cleanup_strv_ char **argv = helper_argv(c, userns);
        pid_t pid = fork();
        if (pid < 0)
                return hm_error_set(err, errno, "network %s: fork: %s", tool, strerror(errno));
        if (pid == 0)
                intermediate(c, argv, usernsfd, pidnsfd, netfd, ready_w, nullfd, logfd);
        struct net_helper *h = xzalloc(sizeof *h);
        *h = (struct net_helper) { .c = c, .pid = pid, .pidfd = rt_pidfd_open(pid, 0), .ready = TAKE_FD(ready_r),
                                   .logfd = TAKE_FD(logfd), .deadline = now_ms() + NET_HELPER_STAGE_MS };
        if (h->pidfd < 0) {
                int e = errno;
                net_helper_free(h);
                return hm_error_set(err, e, "network %s: pidfd_open for '%s': %s", tool, c->tool, strerror(e));
        }
        *ret = h;
        return 0; /* ready_w closes here: EOF on the read end once slirp4netns is gone */
}

/* Stage 1: the intermediate exited (its pidfd is readable). */
static int intermediate_done(struct net_helper *h, hm_error_t *err)
{
        const char *tool = net_mode_name(h->c->mode);
        int st;
        pid_t r;
        do
                r = waitpid(h->pid, &st, WNOHANG);
        while (r < 0 && errno == EINTR);
        if (r == 0)
                return 0;
        if (r < 0)
                return hm_error_set(err, errno, "network %s: wait for '%s': %s", tool, h->c->tool, strerror(errno));
        h->pid = 0;
        h->pidfd = safe_close(h->pidfd);
        int status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        if (status != 0) {
                _cleanup_free_ char *msg = log_text(h->logfd);
                return hm_error_set(err, EIO, "network %s: '%s' failed (exit %d): %s", tool, h->c->tool, status, msg);
        }
        if (h->c->mode == NET_PASTA)
                return 1;
        h->deadline = now_ms() + NET_HELPER_STAGE_MS;
        return 0;
}

/* Stage 2: slirp4netns writes "1" on --ready-fd once the tap device is configured; EOF means it died. */
static int ready_byte(struct net_helper *h, hm_error_t *err)
{
        char c = 0;
        ssize_t n;
        do
                n = read(h->ready, &c, 1);
        while (n < 0 && errno == EINTR);
        if (n < 0 && errno == EAGAIN)
                return 0;
        if (n == 1 && c == '1')
                return 1;
        _cleanup_free_ char *msg = log_text(h->logfd);
        return hm_error_set(err, EPIPE, "network %s: '%s' exited before the network was up: %s",
                            net_mode_name(h->c->mode), h->c->tool, msg);
}

int net_helper_continue(struct net_helper *h, hm_error_t *err)
{
        return h->pid > 0 ? intermediate_done(h, err) : ready_byte(h, err);
}

int net_helper_timeout(struct net_helper *h, hm_error_t *err)
{
        _cleanup_free_ char *msg = log_text(h->logfd);
        bool said = strcmp(msg, "no output") != 0;
        return hm_error_set(err, ETIMEDOUT, "network %s: '%s' did not %s within %d s%s%s", net_mode_name(h->c->mode),
                            h->c->tool, h->pid > 0 ? "finish starting" : "bring the network up",
                            NET_HELPER_STAGE_MS / 1000, said ? ": " : "", said ? msg : "");
}
