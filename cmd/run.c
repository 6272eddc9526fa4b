/* SPDX-License-Identifier: Apache-2.0 */
/* hm run: flags -> plan -> runner -> scheduler. */
#include "cmd/cmd.h"
#include "pipeline/cache.h"
#include "pipeline/plan.h"
#include "pipeline/workspace.h"
#include "runtime/net.h"
#include "runtime/sealed.h"
#include "sched/events.h"
#include "sched/loop.h"
#include "sched/runner.h"
#include "sched/sched.h"
#include "lib/util.h"

#include <getopt.h>
#include <signal.h>
#include <sys/signalfd.h>

struct run_options {
        const char *slug, *dir, *file, *format;
        struct runner_choice runner;
        bool logs, keep_going, dry_run, no_color, no_cache;
        unsigned parallelism;
        int grace_ms;
        size_t cache_capacity;
};

static void run_usage(FILE *f)
{
        fputs("usage: hm run [SLUG] [-d DIR] [-f FILE|-] [options]\n"
              "  -d, --dir DIR           source root (workspace, .hm/); default: .\n"
              "  -f, --file FILE|-       v0 IR from FILE or stdin instead of DIR/.hm/\n"
              "      --runner NAME       ns (default, built-in), docker, podman, vm (any engine)\n"
              "      --socket PATH       engine socket (default: $DOCKER_HOST, $CONTAINER_HOST, ...)\n"
              "      --format FMT        human (default) or json (NDJSON events on stdout)\n"
              "      --logs              line-by-line output instead of the live view\n"
              "  -k, --keep-going        run independent branches after a failure\n"
              "      --parallelism N     steps at once (default: online CPUs)\n"
              "      --grace SECONDS     SIGTERM to SIGKILL delay when stopping steps (default 5)\n"
              "      --pull POLICY       missing (default), always, never\n"
              "      --network MODE      none (default), host, pasta[:--map-gw], slirp4netns[:allow_host_loopback=true]\n"
              "                          (default from HM_NETWORK or network = \"MODE\" in .hm/config.toml)\n"
              "      --memory SIZE       memory limit per step (e.g. 512m, 2g)\n"
              "      --pids-limit N      process limit per step\n"
              "      --cpus N            CPU limit per step (e.g. 1.5)\n"
              "      --seccomp PROFILE   default, unconfined or a JSON file (ns: OCI or Docker format; engines: Docker)\n"
              "      --cap-add CAP       add a capability (NET_ADMIN, CAP_SYS_PTRACE, ALL); repeatable\n"
              "      --cap-drop CAP      drop a capability (or ALL); repeatable\n"
              "      --user UID[:GID]    run steps as this numeric user\n"
              "      --read-only         the step's root filesystem is read-only\n"
              "      --tmpfs-tmp         a fresh tmpfs on /tmp\n"
              "      --no-cache          neither use nor store cached snapshots\n"
              "      --cache-capacity N  cached snapshots kept per backend (default 64)\n"
              "      --dry-run           print the plan, run nothing\n"
              "      --no-color          no ANSI colours\n",
              f);
}

static int parse_uint(const char *s, const char *flag, unsigned long max, unsigned long *ret, hm_error_t *err)
{
        char *end;
        errno = 0;
        unsigned long v = strtoul(s, &end, 10);
        if (!*s || *end || errno || v > max || s[0] == '-')
                return hm_error_set_exit(err, 2, EINVAL, "%s: '%s' is not a number between 0 and %lu", flag, s, max);
        *ret = v;
        return 0;
}

/* "512m", "2g", "1048576": bytes, at least 4 MiB (below that no shell starts). */
static int parse_size(const char *s, const char *flag, int64_t *ret, hm_error_t *err)
{
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        int64_t mult = 1;
        switch (*end) {
        case 'k': case 'K': mult = 1 << 10; end++; break;
        case 'm': case 'M': mult = 1 << 20; end++; break;
        case 'g': case 'G': mult = 1 << 30; end++; break;
        }
        if (*end == 'b' || *end == 'B')
                end++;
        if (!*s || *end || errno || v * (double) mult < 4.0 * (1 << 20) || v * (double) mult > 9e18)
                return hm_error_set_exit(err, 2, EINVAL, "%s: '%s' is not a size of at least 4m (e.g. 512m, 2g)", flag, s);
        *ret = (int64_t) (v * (double) mult);
        return 0;
}

static int parse_cpus(const char *s, int64_t *ret, hm_error_t *err)
{
        char *end;
        errno = 0;
        double v = strtod(s, &end);
        if (!*s || *end || errno || v < 0.01 || v > 4096)
                return hm_error_set_exit(err, 2, EINVAL, "--cpus: '%s' is not a number of CPUs between 0.01 and 4096", s);
        *ret = (int64_t) (v * 1000 + 0.5);
        return 0;
}

static int parse_args(int argc, char **argv, struct run_options *o, hm_error_t *err)
{
        enum { O_RUNNER = 256, O_SOCKET, O_FORMAT, O_LOGS, O_PAR, O_GRACE, O_PULL, O_NET, O_DRY, O_NOCOLOR,
               O_NOCACHE, O_CAP, O_BACKEND, O_SECCOMP, O_CAPADD, O_CAPDROP, O_USER, O_RO, O_TMPFS, O_MEM, O_PIDS, O_CPUS };
        static const struct option opts[] = {
                { "dir", required_argument, NULL, 'd' },     { "file", required_argument, NULL, 'f' },
                { "runner", required_argument, NULL, O_RUNNER }, { "backend", required_argument, NULL, O_BACKEND },
                { "socket", required_argument, NULL, O_SOCKET }, { "format", required_argument, NULL, O_FORMAT },
                { "logs", no_argument, NULL, O_LOGS },       { "keep-going", no_argument, NULL, 'k' },
                { "parallelism", required_argument, NULL, O_PAR }, { "grace", required_argument, NULL, O_GRACE },
                { "pull", required_argument, NULL, O_PULL }, { "network", required_argument, NULL, O_NET },
                { "dry-run", no_argument, NULL, O_DRY },     { "no-color", no_argument, NULL, O_NOCOLOR },
                { "no-cache", no_argument, NULL, O_NOCACHE }, { "cache-capacity", required_argument, NULL, O_CAP },
                { "memory", required_argument, NULL, O_MEM }, { "pids-limit", required_argument, NULL, O_PIDS },
                { "cpus", required_argument, NULL, O_CPUS },  { "help", no_argument, NULL, 'h' },
                { "seccomp", required_argument, NULL, O_SECCOMP }, { "cap-add", required_argument, NULL, O_CAPADD },
                { "cap-drop", required_argument, NULL, O_CAPDROP }, { "user", required_argument, NULL, O_USER },
                { "read-only", no_argument, NULL, O_RO },    { "tmpfs-tmp", no_argument, NULL, O_TMPFS },
                {}
        };
        unsigned long v;
        int c, r;
        optind = 1;
        while ((c = getopt_long(argc, argv, "+d:f:kh", opts, NULL)) != -1) {
                switch (c) {
                case 'd': o->dir = optarg; break;
                case 'f': o->file = optarg; break;
                case 'k': o->keep_going = true; break;
                case O_RUNNER: o->runner.kind = optarg; break;
                case O_BACKEND:
                        if (strcmp(optarg, "docker"))
                                return hm_error_set_exit(err, 2, EINVAL, "--backend '%s': only 'docker' (= --runner=vm) is available locally", optarg);
                        o->runner.kind = "vm";
                        break;
                case O_SOCKET: o->runner.socket = optarg; break;
                case O_FORMAT: o->format = optarg; break;
                case O_LOGS: o->logs = true; break;
                case O_PAR:
                        if ((r = parse_uint(optarg, "--parallelism", 100000, &v, err)) < 0)
                                return r;
                        o->parallelism = v ? (unsigned) v : 1; /* 0 -> 1, as upstream */
                        break;
                case O_GRACE:
                        if ((r = parse_uint(optarg, "--grace", 3600, &v, err)) < 0)
                                return r;
                        o->grace_ms = (int) v * 1000;
                        break;
                case O_PULL: o->runner.pull = optarg; break;
                case O_NET: o->runner.network = optarg; break;
                case O_DRY: o->dry_run = true; break;
                case O_NOCOLOR: o->no_color = true; break;
                case O_NOCACHE: o->no_cache = true; break;
                case O_CAP:
                        if ((r = parse_uint(optarg, "--cache-capacity", 1000000, &v, err)) < 0)
                                return r;
                        o->cache_capacity = v;
                        break;
                case O_MEM:
                        if ((r = parse_size(optarg, "--memory", &o->runner.limits.memory_bytes, err)) < 0)
                                return r;
                        break;
                case O_PIDS:
                        if ((r = parse_uint(optarg, "--pids-limit", 1u << 22, &v, err)) < 0)
                                return r;
                        o->runner.limits.pids = (int64_t) v;
                        break;
                case O_CPUS:
                        if ((r = parse_cpus(optarg, &o->runner.limits.millicpus, err)) < 0)
                                return r;
                        break;
                case O_SECCOMP: o->runner.seccomp = optarg; break;
                case O_CAPADD: strv_push(&o->runner.sandbox.cap_add, optarg); break;
                case O_CAPDROP: strv_push(&o->runner.sandbox.cap_drop, optarg); break;
                case O_USER: o->runner.sandbox.user = optarg; break;
                case O_RO: o->runner.sandbox.readonly_rootfs = true; break;
                case O_TMPFS: o->runner.sandbox.tmpfs_tmp = true; break;
                case 'h': run_usage(stdout); exit(0);
                default: return hm_error_set_exit(err, 2, EINVAL, "bad option (see 'hm run --help')");
                }
        }
        if (optind < argc)
                o->slug = argv[optind++];
        if (optind < argc)
                return hm_error_set_exit(err, 2, EINVAL, "unexpected argument '%s'", argv[optind]);
        if (strcmp(o->format, "human") && strcmp(o->format, "json"))
                return hm_error_set_exit(err, 2, EINVAL, "unknown --format '%s' (available: human, json)", o->format);
        if (o->runner.pull && strcmp(o->runner.pull, "missing") && strcmp(o->runner.pull, "always") &&
            strcmp(o->runner.pull, "never"))
                return hm_error_set_exit(err, 2, EINVAL, "unknown --pull '%s' (available: missing, always, never)", o->runner.pull);
        return 0;
}

static struct hm_sink *make_sink(const struct run_options *o, struct hm_loop *loop)
{
        if (!strcmp(o->format, "json"))
                return hm_sink_json_new(STDOUT_FILENO);
        const char *ci = getenv("CI");
        bool tty = isatty(STDERR_FILENO);
        bool color = tty && !o->no_color && !getenv("NO_COLOR");
        if (o->logs || (ci && *ci) || !tty)
                return hm_sink_lines_new(STDERR_FILENO, color);
        return hm_sink_tty_new(STDERR_FILENO, loop);
}

/* Block the stop signals and read them through a signalfd owned by the loop. */
static int setup_signals(hm_error_t *err)
{
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGINT);
        sigaddset(&set, SIGTERM);
        sigaddset(&set, SIGHUP);
        if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
                return hm_error_set(err, errno, "sigprocmask");
        signal(SIGPIPE, SIG_IGN);
        int fd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
        if (fd < 0)
                return hm_error_set(err, errno, "signalfd");
        return fd;
}

static void runner_freep(struct hm_runner **r)
{
        if (*r)
                (*r)->ops->free(*r);
}
static void loop_freep(struct hm_loop **l) { hm_loop_free(*l); }
static void sink_freep(struct hm_sink **s) { hm_sink_free(*s); }
static void ws_freep(struct workspace **w) { workspace_free(*w); }
static void cache_freep(struct cache_index **c) { cache_index_free(*c); }

static int run(struct run_options *o, hm_error_t *err)
{
        int r;
        /* steps see forks of this process: from here on hm runs from a sealed copy (runtime/sealed.h) */
        if (!o->dry_run && !strcmp(o->runner.kind, "ns") && (r = rt_exec_sealed_self(err)) < 0)
                return r;
        _cleanup_plan_ struct plan *plan = NULL;
        r = plan_load(o->dir, o->file, o->slug, &plan, err);
        if (r < 0)
                return r;
        if (o->dry_run) {
                plan_print(plan, o->runner.kind, stdout);
                return 0;
        }
        /* no --network: the pipeline's default (HM_NETWORK, .hm/config.toml), else the runner's (none) */
        _cleanup_free_ char *net_mode = NULL, *net_source = NULL;
        if (!o->runner.network) {
                r = net_pipeline_default(o->dir, &net_mode, &net_source, err);
                if (r < 0)
                        return r;
                o->runner.network = net_mode;
                o->runner.network_source = net_source;
        }
        _cleanup_close_ int sigfd = setup_signals(err);
        if (sigfd < 0)
                return sigfd;
        _cleanup_(loop_freep) struct hm_loop *loop = hm_loop_new();
        _cleanup_(runner_freep) struct hm_runner *runner = NULL;
        r = cmd_make_runner(loop, &o->runner, &runner, err);
        if (r < 0)
                return r;
        if (strcmp(o->format, "json") || isatty(STDERR_FILENO) || getenv("HM_VERBOSE"))
                fprintf(stderr, "hm: runner %s\n", runner->description);
        int64_t reap_us = 0;
        _cleanup_free_ char *reaped = cmd_quick_reap(runner->backend_id, &reap_us);
        if (getenv("HM_VERBOSE"))
                fprintf(stderr, "hm: quick reap: %.1f ms\n", (double) reap_us / 1000.0);
        _cleanup_(ws_freep) struct workspace *ws = NULL;
        r = workspace_defer(o->dir, 0, 0, &ws, err);
        if (r < 0)
                return r; /* the message names the workspace */
        _cleanup_(cache_freep) struct cache_index *cache = NULL;
        if (!o->no_cache) {
                r = cache_index_open(NULL, &cache, err);
                if (r < 0)
                        return r;
        }
        _cleanup_(sink_freep) struct hm_sink *sink = make_sink(o, loop);
        struct sched_options so = {
                .parallelism = o->parallelism,
                .keep_going = o->keep_going,
                .grace_ms = o->grace_ms,
                .default_image = "ubuntu:24.04",
                .cache = cache,
                .cache_capacity = o->cache_capacity,
                .signal_fd = sigfd,
                .reap_notice = reaped,
        };
        int exit_code = 1;
        r = sched_run(plan, runner, loop, ws, &so, sink, &exit_code, err);
        if (r < 0)
                return r;
        return exit_code;
}

int cmd_run(int argc, char **argv)
{
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        const char *env_runner = getenv("HM_RUNNER");
        struct run_options o = {
                .dir = ".",
                .format = "human",
                .runner = { .kind = env_runner && *env_runner ? env_runner : "ns", .pull = "missing" },
                .parallelism = cpus > 0 ? (unsigned) cpus : 4,
                .grace_ms = 5000,
                .cache_capacity = HM_CACHE_DEFAULT_CAPACITY,
        };
        hm_error_t err = NULL;
        if (parse_args(argc, argv, &o, &err) < 0)
                return cmd_fail(&err);
        int r = run(&o, &err);
        strv_free(o.runner.sandbox.cap_add);
        strv_free(o.runner.sandbox.cap_drop);
        if (r < 0)
                return cmd_fail(&err);
        return r;
}
