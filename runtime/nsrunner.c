/* SPDX-License-Identifier: Apache-2.0 */
#include "runtime/nsrunner.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <time.h>

#include "lib/strbuf.h"
#include "lib/util.h"
#include "oci/registry.h"
#include "oci/spec.h"
#include "oci/store.h"
#include "pipeline/cache.h"
#include "pipeline/plan.h"
#include "pipeline/workspace.h"
#include "runtime/net.h"
#include "runtime/runtime.h"
#include "sched/loop.h"
#include "sched/runner.h"

#define DRAIN_MAX (4u << 20) /* bytes read per stream after exit before giving up */

struct ws_layer {
        char *run_id;
        char *id;
};

struct ns_step;

struct ns_runner {
        struct hm_runner base; /* first: the vtable's hm_runner is this */
        struct oci_store *store;
        struct net_config net; /* --network (runtime/net.h) */
        char *net_dir;         /* store tmp dir holding the steps' resolv.conf, or NULL */
        bool rootless;
        bool no_seccomp;
        struct step_limits limits;
        struct oci_run_options run; /* borrowed from the caller's ns_options */
        char pull; /* 'm'issing (default), 'a'lways, 'n'ever */
        void *bpf;
        size_t bpf_len;
        struct oci_seccomp *sc; /* parsed profile, compiled to bpf on the first container start */
        struct ws_layer *ws;
        size_t n_ws;
        struct ns_step *steps; /* in flight, for free() */
        struct drop_req *drops; /* pending done() timers */
        char **isolation_said; /* reduced-isolation notices already reported: once per run */
        char **free_slots; /* step dirs (work/, merged/) of finished steps, for the next ones */
};

struct ns_step {
        struct ns_runner *r;
        struct step_exec *x;
        struct ns_step *next;
        struct rt_container *c;
        struct oci_store_upper *u;
        char *slot;       /* u's step dir, kept across layers (oci_store_begin_layer_in) */
        bool slot_reuse;  /* no overlay of this step can outlive its pid 1: the slot may serve the next step */
        char **chain; /* lower ids bottom-first, without the workspace layer */
        char *stage;  /* tmpfs with copies of the lowers above the host's "/", while mounted here */
        int fds[3];   /* stdout, stderr, pidfd; -1 once unregistered */
        uint64_t timer; /* deferred completion, or the commit lock's retry */
        struct oci_pull *pull; /* the boot image is being pulled */
        struct net_helper *net; /* cloned, waiting for its network helper before "go" */
        int net_fd;             /* the helper's fd on the loop, or -1 */
        uint64_t net_timer;     /* the helper's stage bound */
        bool canceled;
        int lock_fd; /* x->commit_lock, held from before the commit, handed to the scheduler with res */
        struct step_result res;
};

#define NS_FREE_LOCK_WAIT_MS 2000

struct drop_req {
        struct drop_req *next;
        struct ns_runner *r;
        uint64_t timer;
        char **refs; /* to drop once the store lock is ours (tried, retried every OCI_STORE_LOCK_RETRY_MS) */
        void (*done)(void *data);
        void *data;
};

/* ---- bookkeeping ---- */

/*
 * Lazily: once the container runs, its mount ns holds its own copy of the
 * tmpfs (and the overlay its private clone), which lives until the container
 * exits; here nothing stays mounted.
 */
static void stage_release(struct ns_step *st)
{
        if (!st->stage)
                return;
        if (umount2(st->stage, MNT_DETACH) < 0 && st->r->base.warn) {
                _cleanup_free_ char *msg = xasprintf("unmount '%s': %s", st->stage, strerror(errno));
                st->r->base.warn(st->r->base.warn_data, msg);
        }
        free(st->stage);
        st->stage = NULL;
}

static void step_unlink(struct ns_step *st)
{
        for (struct ns_step **p = &st->r->steps; *p; p = &(*p)->next)
                if (*p == st) {
                        *p = st->next;
                        return;
                }
}

/*
 * Back to the pool, or removed when a process of the step might still use
 * an overlay mounted from it (no pid namespace of its own: its processes
 * can outlive pid 1, and an overlay work dir must not serve two mounts).
 */
static void slot_release(struct ns_step *st)
{
        if (!st->slot)
                return;
        if (st->slot_reuse) {
                strv_push_take(&st->r->free_slots, TAKE_PTR(st->slot));
                return;
        }
        (void) rm_rf(st->slot);
        free(TAKE_PTR(st->slot));
}

static char *slot_take(struct ns_runner *r)
{
        size_t n = strv_len(r->free_slots);
        if (!n)
                return NULL;
        return TAKE_PTR(r->free_slots[n - 1]);
}

static void net_unwatch(struct ns_step *st)
{
        if (st->net_fd >= 0)
                hm_loop_del_fd(st->r->base.loop, st->net_fd);
        hm_loop_del_timer(st->r->base.loop, st->net_timer);
        st->net_fd = -1;
        st->net_timer = 0;
}

/*
 * Before "go": the container first, then what is left of the helper's start.
 * The step's pid 1 takes the helper's processes in its pid namespace along,
 * and the intermediate process (ours, outside it) reaps its child there
 * before it exits; killed first, it would leave that child to the host's
 * init, and pid 1's exit would wait until that init reaps it.
 */
static void prestart_release(struct ns_step *st)
{
        net_unwatch(st);
        if (st->c)
                rt_container_free(st->c);
        st->c = NULL;
        net_helper_free(TAKE_PTR(st->net));
}

static void step_release(struct ns_step *st)
{
        struct hm_loop *loop = st->r->base.loop;
        for (int i = 0; i < 3; i++)
                if (st->fds[i] >= 0)
                        hm_loop_del_fd(loop, st->fds[i]);
        if (st->timer)
                hm_loop_del_timer(loop, st->timer);
        oci_pull_cancel(st->pull);
        prestart_release(st);
        stage_release(st); /* before removing the dir it is mounted on */
        oci_store_abort_layer(st->r->store, st->u);
        slot_release(st);
        strv_free(st->chain);
        free(st->res.snapshot);
        free(st->res.error_msg);
        if (st->lock_fd >= 0)
                close(st->lock_fd);
        step_unlink(st);
        free(st);
}

/* Hand the result over and forget the step: on_done is the last touch of x. */
static void step_finish(struct ns_step *st)
{
        struct step_exec *x = st->x;
        struct step_result res = st->res;
        st->res = (struct step_result) { 0 };
        /* the commit lock outlives the step: the scheduler releases it once the index is written */
        res.commit_locked = st->lock_fd >= 0;
        res.commit_lock_fd = TAKE_FD(st->lock_fd);
        st->x = NULL;
        x->runner_data = NULL;
        step_release(st);
        x->on_done(x, &res);
        if (res.commit_locked) /* a caller that did not take it */
                close(res.commit_lock_fd);
}

static void on_deferred_done(struct hm_loop *loop, uint64_t id, void *data)
{
        struct ns_step *st = data;
        st->timer = 0;
        step_finish(st);
}

static void finish_later(struct ns_step *st)
{
        st->timer = hm_loop_add_timer(st->r->base.loop, 0, on_deferred_done, st);
}

static void fail_later(struct ns_step *st, hm_error_t *err)
{
        st->res.runner_error = true;
        st->res.exit_code = 1;
        st->res.error_msg = xstrdup((*err)->msg);
        hm_error_release(err);
        finish_later(st);
}

/* ---- workspace layer: one per run, unpacked by the first step that needs it ---- */

static struct ws_layer *ws_find(struct ns_runner *r, const char *run_id)
{
        for (size_t i = 0; i < r->n_ws; i++)
                if (!strcmp(r->ws[i].run_id, run_id))
                        return &r->ws[i];
        return NULL;
}

static int ws_layer(struct ns_runner *r, const struct step_exec *x, const char **ret_id, hm_error_t *err)
{
        struct ws_layer *w = ws_find(r, x->run_id);
        if (w) {
                *ret_id = w->id;
                return 0;
        }
        int ws_fd;
        uint64_t ws_size;
        int rc = workspace_open(x->ws, &ws_fd, &ws_size, err);
        if (rc < 0)
                return rc;
        _cleanup_free_ char *tmp = NULL;
        rc = oci_store_mkdtemp(r->store, "workspace", &tmp, err);
        if (rc < 0)
                return rc;
        (void) chmod(tmp, 0755);
        rc = oci_unpack_layer(ws_fd, tmp, oci_store_xattr_prefix(r->store), oci_store_size_limit(r->store),
                              NULL, err);
        struct oci_layer_meta m = { .kind = OCI_LAYER_WORKSPACE, .created = time(NULL), .owner_pid = getpid(),
                                    .owner_start = oci_proc_starttime(getpid()), .ephemeral = true,
                                    .run_id = (char *) x->run_id };
        oci_store_random_id(m.id);
        if (rc >= 0 && (rc = oci_store_lock(r->store, err)) >= 0) {
                rc = oci_store_add_layer_locked(r->store, tmp, &m, err);
                oci_store_unlock(r->store);
        }
        if (rc < 0) {
                (void) rm_rf(tmp);
                return hm_error_wrap(err, "workspace");
        }
        r->ws = xreallocarray(r->ws, r->n_ws + 1, sizeof *r->ws);
        r->ws[r->n_ws++] = (struct ws_layer) { xstrdup(x->run_id), xstrdup(m.id) };
        *ret_id = r->ws[r->n_ws - 1].id;
        return 0;
}

/*
 * Drop the workspace layers of runs with no step in flight, together with
 * `more` (one store collection for all of them).
 */
static void ws_drop_idle(struct ns_runner *r, char *const *more)
{
        _cleanup_strv_ char **ids = strv_copy(more);
        for (size_t i = 0; i < r->n_ws;) {
                bool busy = false;
                for (struct ns_step *st = r->steps; st; st = st->next)
                        busy |= st->x && !strcmp(st->x->run_id, r->ws[i].run_id);
                if (busy) {
                        i++;
                        continue;
                }
                strv_push_take(&ids, r->ws[i].id);
                free(r->ws[i].run_id);
                r->ws[i] = r->ws[--r->n_ws];
        }
        hm_error_t err = NULL;
        if (ids[0] && oci_store_drop_layers(r->store, ids, &err) < 0) {
                if (r->base.warn)
                        r->base.warn(r->base.warn_data, err->msg);
                hm_error_release(&err);
        }
}

/* ---- the container ---- */

static int resolve_chain(struct ns_runner *r, const struct step_exec *x, char ***ret, hm_error_t *err)
{
        if (x->parent_snapshot)
                return oci_store_snapshot_chain(r->store, x->parent_snapshot, ret, err);
        const char *image = x->image ? x->image : "ubuntu:24.04";
        int rc = oci_store_image_chain(r->store, image, ret, err);
        if (rc < 0 && *err && (*err)->code == ENOENT) {
                hm_error_release(err);
                return hm_error_set(err, ENOENT,
                                    "image '%s' is not in the store at %s: pull it with `hm image pull %s` or "
                                    "import it with `hm image import SOURCE %s`",
                                    image, oci_store_path(r->store), image, image);
        }
        return rc;
}

static void env_set(char ***env, const char *kv)
{
        size_t klen = strcspn(kv, "=");
        for (size_t i = 0; *env && (*env)[i]; i++)
                if (!strncmp((*env)[i], kv, klen) && (*env)[i][klen] == '=') {
                        free((*env)[i]);
                        (*env)[i] = xstrdup(kv);
                        return;
                }
        strv_push(env, kv);
}

static char *hostname_of(const char *key)
{
        char buf[64];
        size_t n = 0;
        for (const char *p = key; *p && n < sizeof buf - 1; p++) {
                bool ok = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9');
                if (ok || (n > 0 && buf[n - 1] != '-'))
                        buf[n++] = ok ? *p : '-';
        }
        while (n > 0 && buf[n - 1] == '-')
                n--;
        buf[n] = 0;
        return xstrdup(n ? buf : "hm");
}

static void drop_netns(struct oci_spec *spec)
{
        struct oci_linux *l = &spec->linux_;
        for (size_t i = 0; i < l->n_namespaces; i++)
                if (l->namespaces[i].type == OCI_NS_NETWORK) {
                        free(l->namespaces[i].path);
                        l->namespaces[i] = l->namespaces[--l->n_namespaces];
                        return;
                }
}

/* the run's resolv.conf for the mode, read-only (one file shared by every step) */
static void add_resolv_conf(struct oci_spec *spec, const char *dir)
{
        spec->mounts = xreallocarray(spec->mounts, spec->n_mounts + 1, sizeof *spec->mounts);
        struct oci_mount *m = &spec->mounts[spec->n_mounts++];
        *m = (struct oci_mount) { .destination = xstrdup("/etc/resolv.conf"), .type = xstrdup("bind"),
                                  .source = xasprintf("%s/resolv.conf", dir) };
        const char *opts[] = { "bind", "ro", "nosuid", "nodev", "noexec" };
        for (size_t i = 0; i < ARRAY_SIZE(opts); i++)
                strv_push(&m->options, opts[i]);
}

static void set_limits(struct oci_resources *res, const struct step_limits *l)
{
        if (l->memory_bytes > 0) {
                res->memory_limit = l->memory_bytes;
                res->memory_limit_present = true;
        }
        if (l->pids > 0) {
                res->pids_limit = l->pids;
                res->pids_limit_present = true;
        }
        if (l->millicpus > 0) {
                res->cpu_period = 100000;
                res->cpu_period_present = true;
                res->cpu_quota = l->millicpus * 100; /* µs of CPU per 100 ms period */
                res->cpu_quota_present = true;
        }
}

static struct oci_spec *build_spec(struct ns_runner *r, const struct step_exec *x, const struct oci_image *img)
{
        struct oci_spec *spec = oci_spec_new_default();
        strv_free(spec->process.args);
        spec->process.args = NULL;
        strv_push(&spec->process.args, "/bin/sh");
        strv_push(&spec->process.args, "-c");
        strv_push(&spec->process.args, x->step->cmd);
        char **env = NULL;
        strv_push(&env, OCI_DEFAULT_PATH_ENV);
        for (size_t i = 0; img && img->config.env && img->config.env[i]; i++)
                env_set(&env, img->config.env[i]);
        for (size_t i = 0; x->env && x->env[i]; i++)
                env_set(&env, x->env[i]);
        strv_free(spec->process.env);
        spec->process.env = env;
        free(spec->process.cwd);
        spec->process.cwd = xstrdup("/workspace");
        free(spec->hostname);
        spec->hostname = hostname_of(x->step->key);
        if (r->net.mode == NET_HOST)
                drop_netns(spec);
        if (r->net_dir)
                add_resolv_conf(spec, r->net_dir);
        if (r->no_seccomp) {
                oci_seccomp_free(spec->linux_.seccomp);
                spec->linux_.seccomp = NULL;
        }
        set_limits(&spec->linux_.resources, &r->limits);
        hm_error_t err = NULL;
        /* validated once in ns_runner_new: cannot fail here */
        if (oci_spec_apply_run_options(spec, &r->run, &err) < 0)
                hm_error_release(&err);
        return spec;
}

static void on_output(struct hm_loop *loop, int fd, short revents, void *data);
static void on_exit_fd(struct hm_loop *loop, int fd, short revents, void *data);

static int watch(struct ns_step *st, hm_error_t *err)
{
        st->fds[0] = rt_container_stdout_fd(st->c);
        st->fds[1] = rt_container_stderr_fd(st->c);
        st->fds[2] = rt_container_pidfd(st->c);
        for (int i = 0; i < 3; i++) {
                if (st->fds[i] < 0)
                        continue;
                if (i < 2)
                        (void) fcntl(st->fds[i], F_SETFL, fcntl(st->fds[i], F_GETFL) | O_NONBLOCK);
                int rc = hm_loop_add_fd(st->r->base.loop, st->fds[i], POLLIN, i < 2 ? on_output : on_exit_fd, st, err);
                if (rc < 0) {
                        for (int j = i; j < 3; j++)
                                st->fds[j] = -1;
                        return rc;
                }
        }
        return 0;
}

/* The image config of the boot image (Env), or NULL for snapshots of unknown images. */
static struct oci_image *boot_image(struct ns_runner *r, const struct step_exec *x)
{
        struct oci_image *img = NULL;
        hm_error_t err = NULL;
        /* a child's env comes from the node env and the default PATH (hm-compat §4.9) */
        const char *name = x->parent_snapshot ? NULL : x->image ? x->image : "ubuntu:24.04";
        if (name && oci_store_image_get(r->store, name, &img, &err) < 0)
                hm_error_release(&err);
        return img;
}

/* tmpfs size= for staged lowers: $HM_HOST_TMPFS_SIZE (digits, then k/m/g or %), else half the RAM */
static const char *stage_size(void)
{
        const char *e = getenv("HM_HOST_TMPFS_SIZE");
        if (!e || !*e)
                return "50%";
        size_t n = strspn(e, "0123456789");
        if (n == 0 || (e[n] && (e[n + 1] || !strchr("kKmMgG%", e[n]))))
                return "50%";
        return e;
}

/*
 * overlayfs refuses a lower dir that is a descendant of another lower
 * ("overlapping lowerdir path", ELOOP).  With the host's "/" at the bottom,
 * the store's layers above it (snapshots of host steps, the workspace) are
 * such descendants when the store is on the root filesystem: copy them onto a
 * private tmpfs at <step dir>/lowers.  The upper may stay in the store: the
 * kernel accepts an upper below the lower "/".  ret_lowers: top first.
 */
static int stage_host_lowers(struct ns_step *st, char *const *ids, char ***ret_lowers, hm_error_t *err)
{
        struct oci_store *s = st->r->store;
        _cleanup_free_ char *dir = xasprintf("%s/lowers", st->u->dir);
        if (mkdir(dir, 0700) < 0 && errno != EEXIST) /* a reused step dir has it */
                return hm_error_set(err, errno, "create '%s': %s", dir, strerror(errno));
        _cleanup_free_ char *opts = xasprintf("mode=0700,size=%s", stage_size());
        if (mount("hm-lowers", dir, "tmpfs", 0, opts) < 0)
                return hm_error_set(err, errno, "mount tmpfs for the lowers above the host's '/' on '%s' (%s): %s",
                                    dir, opts, strerror(errno));
        st->stage = TAKE_PTR(dir);
        /* nothing of it propagates to the host's other mount namespaces */
        (void) mount(NULL, st->stage, NULL, MS_PRIVATE, NULL);
        size_t n = strv_len(ids);
        char **v = xcalloc(n + 1, sizeof(char *));
        for (size_t i = 1; i < n; i++) {
                char *d = xasprintf("%s/%zu", st->stage, i);
                v[n - 1 - i] = d;
                int rc = mkdir(d, 0755) < 0 ? hm_error_set(err, errno, "create '%s': %s", d, strerror(errno))
                                            : oci_store_copy_layer(s, ids[i], d, err);
                if (rc < 0) {
                        strv_free(v);
                        return hm_error_wrap(err, "copy layer '%s' onto the tmpfs above the host's '/'", ids[i]);
                }
        }
        v[n - 1] = xstrdup("/");
        *ret_lowers = v;
        return 0;
}

/*
 * The topmost "workspace" among the lowers (top first) is a directory: a
 * builds_in child of a step that made /workspace has it already, and a new
 * directory per step would be one more inode to create (slow on a busy ext4)
 * and commit.
 */
static bool lowers_have_workspace(char *const *lowers)
{
        for (size_t i = 0; lowers && lowers[i]; i++) {
                _cleanup_free_ char *p = xasprintf("%s/workspace", lowers[i]);
                struct stat sb;
                if (lstat(p, &sb) == 0)
                        return S_ISDIR(sb.st_mode);
                if (errno != ENOENT)
                        return false;
        }
        return false;
}

static bool chain_on_host(char *const *chain)
{
        return chain && chain[0] && !strcmp(chain[0], OCI_HOST_IMAGE);
}

/* The container's "go": the command runs once this returns; its output and exit are watched from here on. */
static int go(struct ns_step *st, hm_error_t *err)
{
        struct ns_runner *r = st->r;
        int rc = rt_container_go(st->c, err);
        stage_release(st);
        if (rc < 0)
                return rc;
        for (const char *const *n = rt_container_notices(st->c); n && *n; n++) {
                bool said = false;
                for (char **s = r->isolation_said; s && *s && !said; s++)
                        said = !strcmp(*s, *n);
                if (said)
                        continue;
                strv_push(&r->isolation_said, *n);
                if (st->x->on_notice)
                        st->x->on_notice(st->x, "isolation", *n);
        }
        return watch(st, err);
}

static int net_watch(struct ns_step *st, hm_error_t *err);

static int launch(struct ns_runner *r, struct ns_step *st, hm_error_t *err)
{
        const struct step_exec *x = st->x;
        int rc = resolve_chain(r, x, &st->chain, err);
        if (rc < 0)
                return rc;
        bool on_host = chain_on_host(st->chain);
        if (on_host && r->rootless)
                return hm_error_set(err, EPERM,
                                    "image 'host' needs root: in a user namespace the kernel refuses the host's '/' "
                                    "as an overlay lower (locked submounts); import an image with "
                                    "`hm image import SOURCE NAME` and use that instead");
        const char *ws_id = NULL;
        int ws_fd;
        uint64_t ws_size;
        /* an empty workspace is an empty /workspace in the upper: no layer to unpack and remove */
        if (x->ws && (rc = workspace_open(x->ws, &ws_fd, &ws_size, err)) < 0)
                return rc;
        if (x->ws && !workspace_empty(x->ws) && (rc = ws_layer(r, x, &ws_id, err)) < 0)
                return rc;
        _cleanup_strv_ char **ids = strv_copy(st->chain);
        if (ws_id)
                strv_push(&ids, ws_id);
        _cleanup_strv_ char **lowers = NULL;
        if ((rc = oci_store_chain_paths(r->store, ids, &lowers, err)) < 0)
                return rc;
        char *slot = slot_take(r);
        if ((rc = oci_store_begin_layer_in(r->store, slot, &st->u, err)) < 0) {
                if (slot)
                        (void) rm_rf(slot);
                free(slot);
                return rc;
        }
        st->slot = slot ? slot : xstrdup(st->u->dir);
        st->slot_reuse = true; /* nothing mounted from it yet; see below */
        if (on_host && strv_len(ids) > 1 && oci_store_layers_on_host_root(r->store)) {
                strv_free(lowers);
                lowers = NULL;
                if ((rc = stage_host_lowers(st, ids, &lowers, err)) < 0)
                        return rc;
        }
        if (!ws_id && !lowers_have_workspace(lowers)) {
                _cleanup_free_ char *w = xasprintf("%s/workspace", st->u->upper);
                (void) mkdir(w, 0755);
        }
        if (r->sc && !r->bpf && (rc = rt_seccomp_compile(r->sc, &r->bpf, &r->bpf_len, err)) < 0)
                return rc;
        struct oci_image *img = boot_image(r, x);
        _cleanup_oci_spec_ struct oci_spec *spec = build_spec(r, x, img);
        oci_image_free(img);
        const struct oci_namespace *pidns = oci_spec_find_namespace(spec, OCI_NS_PID);
        st->slot_reuse = pidns && !pidns->path;
        struct rt_overlay ov = { .lower = lowers, .upper = st->u->upper, .work = st->u->work, .target = st->u->merged };
        _cleanup_free_ char *id = xasprintf("hm-%.8s-%u", x->run_id, x->step->index);
        struct rt_start_options so = { .rootfs_overlay = &ov, .capture_output = true, .stdin_fd = -1, .id = id,
                                       .rootless = r->rootless, .seccomp_bpf = r->bpf, .seccomp_bpf_len = r->bpf_len,
                                       .defer_go = true };
        if ((rc = rt_container_start(spec, &so, &st->c, err)) < 0)
                return rc;
        if (!net_needs_helper(&r->net))
                return go(st, err);
        rc = net_helper_start(&r->net, rt_container_pid(st->c), rt_container_userns(st->c), &st->net, err);
        return rc < 0 ? rc : net_watch(st, err);
}

/* Undo what launch made before reporting, so on_done sees nothing held; the scheduler names the step. */
static void launch_abort(struct ns_step *st, hm_error_t *e)
{
        for (int i = 0; i < 3; i++)
                if (st->fds[i] >= 0)
                        hm_loop_del_fd(st->r->base.loop, st->fds[i]);
        st->fds[0] = st->fds[1] = st->fds[2] = -1;
        prestart_release(st);
        stage_release(st);
        oci_store_abort_layer(st->r->store, st->u);
        st->u = NULL;
        fail_later(st, e);
}

/*
 * The network helper's stages (runtime/net.h) on the loop: the container
 * waits for "go" meanwhile, and the other steps, their output and timers
 * go on.  A failure, the stage's bound or a cancel kills both.
 */
static void on_net_fd(struct hm_loop *loop, int fd, short revents, void *data)
{
        struct ns_step *st = data;
        net_unwatch(st);
        hm_error_t e = NULL;
        int rc = net_helper_continue(st->net, &e);
        if (rc == 0)
                rc = net_watch(st, &e);
        else if (rc > 0) {
                net_helper_free(TAKE_PTR(st->net)); /* reaped already: the helper lives in the step now */
                rc = go(st, &e);
        }
        if (rc < 0)
                launch_abort(st, &e);
}

static void on_net_timeout(struct hm_loop *loop, uint64_t id, void *data)
{
        struct ns_step *st = data;
        st->net_timer = 0;
        hm_error_t e = NULL;
        net_helper_timeout(st->net, &e);
        launch_abort(st, &e);
}

static int net_watch(struct ns_step *st, hm_error_t *err)
{
        struct hm_loop *loop = st->r->base.loop;
        int fd = net_helper_fd(st->net);
        int rc = hm_loop_add_fd(loop, fd, POLLIN, on_net_fd, st, err);
        if (rc < 0)
                return rc;
        st->net_fd = fd;
        st->net_timer = hm_loop_add_timer(loop, net_helper_deadline(st->net) - now_ms(), on_net_timeout, st);
        return 0;
}

static void launch_or_fail(struct ns_runner *r, struct ns_step *st)
{
        hm_error_t e = NULL;
        if (launch(r, st, &e) < 0)
                launch_abort(st, &e);
}

/* ---- a missing boot image is pulled from its registry (oci/registry.h) first ---- */

static void on_pull_progress(void *data, const struct oci_pull_progress *p)
{
        struct ns_step *st = data;
        if (!st->x->on_notice || !strcmp(p->phase, "download"))
                return;
        _cleanup_free_ char *m = p->layer ? xasprintf("%s: layer %zu/%zu %s %s", p->image, p->layer, p->n_layers,
                                                      p->digest, p->phase)
                                          : xasprintf("%s: %s%s%s", p->image, p->phase, p->digest ? " " : "",
                                                      p->digest ? p->digest : "");
        st->x->on_notice(st->x, "pull", m);
}

static void on_pulled(void *data, int rc, hm_error_t *err, const struct oci_pull_result *res)
{
        struct ns_step *st = data;
        st->pull = NULL;
        if (rc < 0) {
                const char *img = st->x->image;
                hm_error_wrap(err, "image '%s' is not in the store at %s and pulling it failed "
                                   "(or import it with `hm image import SOURCE %s`)",
                              img, oci_store_path(st->r->store), img);
                return fail_later(st, err);
        }
        launch_or_fail(st->r, st);
}

static bool pull_first(struct ns_runner *r, const struct step_exec *x)
{
        if (x->parent_snapshot || !x->image || !strcmp(x->image, OCI_HOST_IMAGE) || r->pull == 'n')
                return false;
        if (r->pull == 'a')
                return true;
        struct oci_image *img = NULL;
        hm_error_t e = NULL;
        if (oci_store_image_get(r->store, x->image, &img, &e) == 0) {
                oci_image_free(img);
                return false;
        }
        hm_error_release(&e);
        return true;
}

static int ns_start(struct hm_runner *base, struct step_exec *x, hm_error_t *err)
{
        struct ns_runner *r = (struct ns_runner *) base;
        struct ns_step *st = xzalloc(sizeof *st);
        st->r = r;
        st->x = x;
        st->fds[0] = st->fds[1] = st->fds[2] = -1;
        st->net_fd = -1;
        st->lock_fd = -1;
        st->next = r->steps;
        r->steps = st;
        x->runner_data = st;
        hm_error_t e = NULL;
        if (x->cache_lookup && x->cache_tag) {
                char *id = NULL;
                int rc = oci_store_tag_get(r->store, x->cache_tag, &id, &e);
                if (rc > 0) {
                        st->res.cache_hit = true;
                        st->res.snapshot = id;
                        finish_later(st);
                        return 0;
                }
                if (rc < 0)
                        hm_error_release(&e); /* unreadable tag: run the step */
        }
        if (pull_first(r, x)) {
                struct oci_pull_options o = { .ref = x->image, .if_missing = r->pull != 'a',
                                              .on_progress = on_pull_progress, .data = st };
                if (x->on_notice) {
                        _cleanup_free_ char *m = xasprintf("pulling %s", x->image);
                        x->on_notice(x, "pull", m);
                }
                if (oci_pull_start(base->loop, r->store, &o, on_pulled, st, &st->pull, &e) < 0)
                        fail_later(st, &e);
                return 0;
        }
        launch_or_fail(r, st);
        return 0;
}

/* Read what is there (at most `max` bytes); returns true at EOF or error. */
static bool pump(struct ns_step *st, int i, size_t max)
{
        char buf[65536];
        size_t total = 0;
        while (total < max) {
                ssize_t n = read(st->fds[i], buf, sizeof buf);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                        return false;
                if (n <= 0)
                        return true;
                total += (size_t) n;
                if (st->x && st->x->on_log)
                        st->x->on_log(st->x, i == 0 ? HM_STREAM_STDOUT : HM_STREAM_STDERR, buf, (size_t) n);
        }
        return false;
}

static void on_output(struct hm_loop *loop, int fd, short revents, void *data)
{
        struct ns_step *st = data;
        int i = fd == st->fds[0] ? 0 : 1;
        if (pump(st, i, 1u << 20)) {
                hm_loop_del_fd(loop, fd);
                st->fds[i] = -1; /* the fd itself belongs to the container */
        }
}

/* The step's result is a runner error naming the commit; *err is released. */
static void commit_failed(struct ns_step *st, hm_error_t *err)
{
        hm_error_wrap(err, "commit");
        st->res.runner_error = true;
        st->res.exit_code = 1;
        st->res.error_msg = xstrdup((*err)->msg);
        hm_error_release(err);
}

static void commit(struct ns_step *st)
{
        hm_error_t err = NULL;
        char *id = NULL;
        struct oci_store_upper *u = TAKE_PTR(st->u);
        if (oci_store_commit_layer(st->r->store, u, st->chain, st->x->run_id, st->x->cache_tag, &id, &err) < 0) {
                commit_failed(st, &err);
                return;
        }
        st->res.snapshot = id;
}

static void on_commit_retry(struct hm_loop *loop, uint64_t id, void *data);

/*
 * A cacheable step: the commit moves the store's tag and the scheduler then
 * writes the index; under the commit lock (pipeline/cache.h) no other
 * commit of this tag comes in between, so the index names what the tag
 * names.  A lock held elsewhere (another run, or a step of this run whose
 * tag shares the lock's slot) is tried again after a while: the loop runs
 * on meanwhile.  A cancel that comes while waiting commits nothing.
 */
static void commit_locked(struct ns_step *st)
{
        if (st->x->commit_lock && st->lock_fd < 0 && !st->canceled) {
                hm_error_t err = NULL;
                int r = cache_commit_lock(st->x->commit_lock, &st->lock_fd, &err);
                if (r == 0) {
                        st->timer = hm_loop_add_timer(st->r->base.loop, CACHE_COMMIT_LOCK_RETRY_MS, on_commit_retry, st);
                        return;
                }
                if (r < 0) {
                        commit_failed(st, &err); /* the upper dir goes with step_release */
                        step_finish(st);
                        return;
                }
        }
        if (st->canceled) {
                st->res.canceled = true;
                step_finish(st);
                return;
        }
        /* the store lock, tried: another hm holding it (a pull's commit, a collection) must not stall the loop */
        hm_error_t err = NULL;
        int locked = oci_store_trylock(st->r->store, &err);
        if (locked == 0) {
                st->timer = hm_loop_add_timer(st->r->base.loop, OCI_STORE_LOCK_RETRY_MS, on_commit_retry, st);
                return;
        }
        if (locked < 0) {
                commit_failed(st, &err);
                step_finish(st);
                return;
        }
        commit(st);
        oci_store_unlock(st->r->store);
        int64_t pause = st->lock_fd >= 0 || (st->x->cache_tag && st->res.snapshot) ? cache_test_commit_pause_ms() : 0;
        if (pause > 0) { /* test only: hold the window between the commit and the index write open */
                st->timer = hm_loop_add_timer(st->r->base.loop, pause, on_deferred_done, st);
                return;
        }
        step_finish(st);
}

static void on_commit_retry(struct hm_loop *loop, uint64_t id, void *data)
{
        struct ns_step *st = data;
        st->timer = 0;
        commit_locked(st);
}

static void on_exit_fd(struct hm_loop *loop, int fd, short revents, void *data)
{
        struct ns_step *st = data;
        hm_loop_del_fd(loop, fd);
        st->fds[2] = -1;
        /* pid 1 is gone, so is its pid namespace: the pipes are at EOF or nearly */
        for (int i = 0; i < 2; i++)
                if (st->fds[i] >= 0) {
                        (void) pump(st, i, DRAIN_MAX);
                        hm_loop_del_fd(loop, st->fds[i]);
                        st->fds[i] = -1;
                }
        int status = 0;
        hm_error_t err = NULL;
        int rc = rt_container_wait(st->c, &status, &err);
        rt_container_free(st->c);
        st->c = NULL;
        if (rc < 0) {
                st->res.runner_error = true;
                st->res.exit_code = 1;
                st->res.error_msg = xstrdup(err->msg);
                hm_error_release(&err);
        } else {
                st->res.exit_code = status;
                st->res.canceled = st->canceled;
                if (status == 0 && !st->canceled) {
                        commit_locked(st);
                        return;
                }
        }
        step_finish(st);
}

static void ns_cancel(struct hm_runner *base, struct step_exec *x, bool force)
{
        struct ns_step *st = x->runner_data;
        if (!st)
                return;
        st->canceled = true;
        if (st->net) { /* before "go" (the child blocks every signal but SIGKILL): nothing of the step ran */
                prestart_release(st);
                st->res.canceled = true;
                st->res.exit_code = 130;
                finish_later(st);
                return;
        }
        if (st->c)
                (void) rt_container_kill(st->c, force ? SIGKILL : SIGTERM);
        if (st->pull) { /* nothing ran yet: stop the pull and end the step */
                if (x->on_notice) {
                        _cleanup_free_ char *kept = oci_pull_describe_stop(st->pull);
                        _cleanup_free_ char *m = xasprintf("pull of %s stopped: %s", x->image, kept);
                        x->on_notice(x, "pull", m);
                }
                oci_pull_cancel(TAKE_PTR(st->pull));
                st->res.canceled = true;
                st->res.exit_code = 130;
                finish_later(st);
        }
}

/* ---- drops and lifetime ---- */

static void drop_req_end(struct drop_req *d)
{
        for (struct drop_req **p = &d->r->drops; *p; p = &(*p)->next)
                if (*p == d) {
                        *p = d->next;
                        break;
                }
        void (*done)(void *) = d->done;
        void *dd = d->data;
        strv_free(d->refs);
        free(d);
        done(dd);
}

/*
 * The drop takes the store lock.  Another hm may hold it (a pull's commit, a
 * collection): it is tried, and tried again from a timer, so the loop (and a
 * second Ctrl-C) goes on meanwhile.
 */
static void on_drop_try(struct hm_loop *loop, uint64_t id, void *data)
{
        struct drop_req *d = data;
        d->timer = 0;
        hm_error_t err = NULL;
        int locked = oci_store_trylock(d->r->store, &err);
        if (locked == 0) {
                d->timer = hm_loop_add_timer(loop, OCI_STORE_LOCK_RETRY_MS, on_drop_try, d);
                return;
        }
        if (locked < 0) {
                if (d->r->base.warn)
                        d->r->base.warn(d->r->base.warn_data, err->msg);
                hm_error_release(&err);
        } else {
                ws_drop_idle(d->r, d->refs);
                oci_store_unlock(d->r->store);
        }
        drop_req_end(d);
}

static void ns_drop_snapshots(struct hm_runner *base, char *const *refs, void (*done)(void *data), void *data)
{
        struct ns_runner *r = (struct ns_runner *) base;
        struct drop_req *d = xzalloc(sizeof *d);
        *d = (struct drop_req) { .next = r->drops, .r = r, .refs = strv_copy(refs), .done = done, .data = data };
        r->drops = d;
        d->timer = hm_loop_add_timer(base->loop, 0, on_drop_try, d);
}

/*
 * The second signal: a drop still waiting for the store lock gives up.  Its
 * layers stay, marked ephemeral with this hm as owner: the next run's quick
 * reap or `hm reap` collects them once this process is gone.
 */
static void ns_hurry(struct hm_runner *base)
{
        struct ns_runner *r = (struct ns_runner *) base;
        for (struct drop_req *d = r->drops, *next; d; d = next) {
                next = d->next;
                if (!d->timer)
                        continue;
                size_t n = strv_len(d->refs);
                if (r->base.warn) {
                        _cleanup_free_ char *m = xasprintf("store '%s' is locked by another process: %zu snapshot(s) "
                                                           "of this run left for hm reap",
                                                           oci_store_path(r->store), n);
                        r->base.warn(r->base.warn_data, m);
                }
                hm_loop_del_timer(base->loop, d->timer);
                d->timer = 0;
                drop_req_end(d);
        }
}

static void ns_free(struct hm_runner *base)
{
        struct ns_runner *r = (struct ns_runner *) base;
        if (!r)
                return;
        while (r->steps) {
                struct ns_step *st = r->steps;
                if (st->x)
                        st->x->runner_data = NULL;
                step_release(st); /* kills and reaps a running container */
        }
        while (r->drops) {
                struct drop_req *d = r->drops;
                r->drops = d->next;
                hm_loop_del_timer(base->loop, d->timer);
                strv_free(d->refs);
                free(d);
        }
        /*
         * After the loop: the workspace layers.  Another process holding the
         * store lock is waited for up to NS_FREE_LOCK_WAIT_MS (signals are no
         * longer read here); after that they stay, ephemeral and owned by this
         * process, for the next quick reap or `hm reap`.
         */
        hm_error_t err = NULL;
        int locked = 0;
        for (int64_t end = now_ms() + NS_FREE_LOCK_WAIT_MS; r->n_ws && locked == 0;) {
                locked = oci_store_trylock(r->store, &err);
                if (locked == 0 && now_ms() >= end)
                        break;
                if (locked == 0)
                        (void) nanosleep(&(struct timespec){ .tv_nsec = OCI_STORE_LOCK_RETRY_MS * 1000000L }, NULL);
        }
        if (locked > 0) {
                ws_drop_idle(r, NULL);
                oci_store_unlock(r->store);
        }
        hm_error_release(&err);
        for (size_t i = 0; i < r->n_ws; i++) {
                free(r->ws[i].run_id);
                free(r->ws[i].id);
        }
        for (char **s = r->free_slots; s && *s; s++)
                (void) rm_rf(*s);
        strv_free(r->free_slots);
        if (r->net_dir)
                (void) rm_rf(r->net_dir);
        free(r->net_dir);
        net_config_release(&r->net);
        strv_free(r->isolation_said);
        free(r->ws);
        free(r->bpf);
        oci_seccomp_free(r->sc);
        oci_store_free(r->store);
        free(base->backend_id);
        free(base->description);
        free(r);
}

static const struct runner_ops ns_ops = {
        .name = "ns",
        .start = ns_start,
        .cancel = ns_cancel,
        .drop_snapshots = ns_drop_snapshots,
        .hurry = ns_hurry,
        .free = ns_free,
};

static int write_resolv_conf(struct ns_runner *r, hm_error_t *err)
{
        int rc = oci_store_mkdtemp(r->store, "net", &r->net_dir, err);
        if (rc < 0)
                return rc;
        (void) chmod(r->net_dir, 0755);
        _cleanup_free_ char *path = xasprintf("%s/resolv.conf", r->net_dir);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        rc = fd < 0 ? -errno : write_all(fd, r->net.resolv_conf, strlen(r->net.resolv_conf));
        if (rc < 0)
                return hm_error_set(err, -rc, "write '%s': %s", path, strerror(-rc));
        return 0;
}

int ns_runner_new(struct hm_loop *loop, const struct ns_options *o, struct hm_runner **ret, hm_error_t *err)
{
        static const struct ns_options defaults = { 0 };
        if (!o)
                o = &defaults;
        struct net_config net;
        int rc = net_config_parse(o->network, o->network_source, &net, err);
        if (rc < 0)
                return rc;
        struct ns_runner *r = xzalloc(sizeof *r);
        r->net = net;
        r->base.ops = &ns_ops;
        r->base.loop = loop;
        r->rootless = o->rootless == NS_ROOTLESS_ON || (o->rootless == NS_ROOTLESS_AUTO && !hm_privileged());
        r->no_seccomp = o->no_seccomp;
        r->limits = o->limits;
        r->run = o->run;
        r->pull = !o->pull || !strcmp(o->pull, "never") ? 'n' : !strcmp(o->pull, "always") ? 'a' : 'm';
        rc = oci_store_open(o->store, &r->store, err);
        if (rc >= 0 && r->net.resolv_conf)
                rc = write_resolv_conf(r, err);
        /* the options on a throwaway spec: bad flags fail here, and the profile sees the final caps */
        struct oci_spec *probe = oci_spec_new_default();
        if (rc >= 0)
                rc = oci_spec_apply_run_options(probe, &r->run, err);
        struct oci_seccomp *sc = NULL;
        if (rc >= 0 && !r->no_seccomp)
                rc = oci_seccomp_from_option(o->seccomp, probe->process.capabilities.effective, &sc, err);
        if (rc >= 0 && !sc)
                r->no_seccomp = true;
        /* compiling costs ~24 ms: a run whose steps are all cache hits never pays it */
        r->sc = TAKE_PTR(sc);
        oci_spec_free(probe);
        if (rc < 0) {
                ns_free(&r->base);
                return hm_error_wrap(err, "ns runner");
        }
        r->base.backend_id = xasprintf("ns:%s", oci_store_path(r->store));
        r->base.description = xasprintf("built-in namespace runtime (%s), store %s, network %s",
                                        r->rootless ? "rootless" : "root", oci_store_path(r->store),
                                        r->net.name);
        *ret = &r->base;
        return 0;
}
