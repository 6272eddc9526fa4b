/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Finding the pipeline for `hm run [SLUG] [-d DIR] [-f FILE|-]`.
 *
 *  - FILE ("-" = stdin): v0 IR, or a discovery envelope (hm-compat §2.10, the
 *    output of `hm pipelines`) from which SLUG is selected.
 *  - DIR/.hm/<slug>.json files: IR, slug = file name without ".json".
 *  - DIR/.hm/<name>.py: rendered by python3 with the user's `harmont` package
 *    (hm-compat §3.1): cwd DIR, stdin /dev/null, PYTHONDONTWRITEBYTECODE=1,
 *    every .hm/<name>.py imported in sorted order, then the registry's envelope is
 *    dumped.  This runs before the scheduler loop exists, so it may block; its
 *    output is bounded (size and time).  When a slug is given and
 *    .hm/<slug>.json exists, python is not run at all; a .json pipeline wins
 *    over a .py pipeline of the same slug.
 *
 * Exit codes (hm-compat §3.1, §5.6): no .hm/, python3 or harmont missing, a
 * failing render, a missing FILE: 2; slug selection problems and other I/O
 * errors: 1; invalid IR: 7.
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <yajl/yajl_tree.h>

#include "lib/strbuf.h"
#include "lib/util.h"
#include "pipeline/plan-internal.h"
#include "pipeline/plan.h"

#define EXIT_USAGE 2
#define RENDER_OUT_MAX (64u << 20) /* bytes of envelope JSON */
#define RENDER_ERR_KEEP 4096       /* tail of python's stderr kept for the message */
#define RENDER_TIMEOUT_MS (120 * 1000)
#define PY_NO_HARMONT 86 /* exit status of the script when `import harmont` fails */

extern char **environ;

/*
 * argv[1:] are the .hm/<name>.py file names, sorted.  .hm/ is put on sys.path so
 * pipeline files can import sibling helper modules.  The output wraps the
 * envelope with the file that registered each slug (for messages), when the
 * registry internals allow it.
 */
static const char render_script[] =
        "import importlib, json, os, sys\n"
        "try:\n"
        "    import harmont\n"
        "except Exception as e:\n"
        "    sys.stderr.write('cannot import harmont: %s\\n' % e)\n"
        "    sys.exit(86)\n"
        "from harmont._envelope import dump_registry_json\n"
        "try:\n"
        "    from harmont._registry import REGISTRATIONS as regs\n"
        "except Exception:\n"
        "    regs = None\n"
        "sys.path.insert(0, os.path.abspath('.hm'))\n"
        "origins = {}\n"
        "for name in sys.argv[1:]:\n"
        "    before = len(regs) if regs is not None else 0\n"
        "    importlib.import_module(name[:-3])\n"
        "    for reg in (regs[before:] if regs is not None else []):\n"
        "        origins[reg.slug] = os.path.join('.hm', name)\n"
        "envelope = json.loads(dump_registry_json())\n"
        "sys.stdout.write(json.dumps({'origins': origins, 'envelope': envelope}))\n";

struct candidate {
        char *slug;
        char *path;       /* .json file, or NULL */
        yajl_val def;     /* borrowed from an envelope tree, or NULL */
        const char *origin; /* borrowed: the .py file that declared it, or NULL */
};

struct candidates {
        struct candidate *v;
        size_t n, cap;
};

static void candidates_release(struct candidates *c)
{
        for (size_t i = 0; i < c->n; i++) {
                free(c->v[i].slug);
                free(c->v[i].path);
        }
        free(c->v);
        *c = (struct candidates) { 0 };
}
#define _cleanup_candidates_ __attribute__((cleanup(candidates_release)))

static struct candidate *candidates_find(struct candidates *c, const char *slug)
{
        for (size_t i = 0; i < c->n; i++)
                if (strcmp(c->v[i].slug, slug) == 0)
                        return &c->v[i];
        return NULL;
}

static struct candidate *candidates_add(struct candidates *c, const char *slug)
{
        if (c->n == c->cap) {
                c->cap = c->cap ? c->cap * 2 : 8;
                c->v = xreallocarray(c->v, c->cap, sizeof *c->v);
        }
        c->v[c->n] = (struct candidate) { .slug = xstrdup(slug) };
        return &c->v[c->n++];
}

static int candidate_cmp(const void *a, const void *b)
{
        return strcmp(((const struct candidate *) a)->slug, ((const struct candidate *) b)->slug);
}

static char *slug_list(const struct candidates *c)
{
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
        for (size_t i = 0; i < c->n; i++)
                strbuf_addf(&sb, "%s%s", i ? ", " : "", c->v[i].slug);
        return strbuf_detach(&sb, NULL);
}

/* Upstream's selection: explicit wins, else exactly one, else list them. */
static int candidates_select(struct candidates *c, const char *slug, const char *note, struct candidate **ret,
                             hm_error_t *err)
{
        if (c->n > 1)
                qsort(c->v, c->n, sizeof *c->v, candidate_cmp);
        _cleanup_free_ char *list = slug_list(c);
        if (slug) {
                struct candidate *found = candidates_find(c, slug);
                if (!found)
                        return hm_error_set(err, 0, "pipeline '%s' not found (available: %s)%s", slug,
                                            c->n ? list : "none", note ? note : "");
                *ret = found;
                return 0;
        }
        if (c->n == 0)
                return hm_error_set(err, 0, "no pipelines declared in this repo%s", note ? note : "");
        if (c->n > 1)
                return hm_error_set(err, 0, "this repo declares pipelines: %s (pass one as the first argument)",
                                    list);
        *ret = &c->v[0];
        return 0;
}

/* ---- reading files ------------------------------------------------------------------------- */

static int read_fd(int fd, size_t max, struct strbuf *sb)
{
        for (;;) {
                strbuf_grow(sb, 65536);
                ssize_t r = read(fd, sb->buf + sb->len, sb->alloc - sb->len - 1);
                if (r < 0 && errno == EINTR)
                        continue;
                if (r < 0)
                        return -errno;
                if (r == 0)
                        return 0;
                sb->len += (size_t) r;
                sb->buf[sb->len] = 0;
                if (sb->len > max)
                        return -EFBIG;
        }
}

static int read_source(const char *file, char **ret, size_t *ret_len, hm_error_t *err)
{
        if (strcmp(file, "-") == 0) {
                _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
                int r = read_fd(STDIN_FILENO, 64u << 20, &sb);
                if (r < 0)
                        return hm_error_set(err, -r, "read pipeline from stdin: %s", strerror(-r));
                *ret = strbuf_detach(&sb, ret_len);
                return 0;
        }
        int r = read_file(file, 0, ret, ret_len);
        if (r == -ENOENT)
                return hm_error_set_exit(err, EXIT_USAGE, ENOENT, "read '%s': %s", file, strerror(ENOENT));
        if (r < 0)
                return hm_error_set(err, -r, "read '%s': %s", file, strerror(-r));
        return 0;
}

static bool is_envelope(yajl_val root)
{
        if (!YAJL_IS_OBJECT(root))
                return false;
        const char *pipelines[] = { "pipelines", NULL };
        const char *graph[] = { "graph", NULL };
        const char *steps[] = { "steps", NULL };
        return YAJL_IS_ARRAY(yajl_tree_get(root, pipelines, yajl_t_any)) && !yajl_tree_get(root, graph, yajl_t_any) &&
               !yajl_tree_get(root, steps, yajl_t_any);
}

/* Add every {slug, definition} of an envelope; origins maps slug -> .py file. */
static int envelope_candidates(yajl_val env, yajl_val origins, const char *source, struct candidates *c,
                               hm_error_t *err)
{
        const char *pipelines_path[] = { "pipelines", NULL };
        yajl_val list = yajl_tree_get(env, pipelines_path, yajl_t_array);
        if (!list)
                return hm_error_set_exit(err, HM_EXIT_INVALID_IR, 0, "%s: pipelines: expected an array", source);
        for (size_t i = 0; i < list->u.array.len; i++) {
                yajl_val p = list->u.array.values[i];
                const char *slug_path[] = { "slug", NULL }, *def_path[] = { "definition", NULL };
                yajl_val slug = yajl_tree_get(p, slug_path, yajl_t_string);
                yajl_val def = yajl_tree_get(p, def_path, yajl_t_any);
                if (!slug || !def)
                        return hm_error_set_exit(err, HM_EXIT_INVALID_IR, 0,
                                                 "%s: pipelines[%zu]: expected an object with 'slug' and 'definition'",
                                                 source, i);
                if (candidates_find(c, slug->u.string))
                        continue; /* a .json pipeline of the same slug wins */
                struct candidate *cand = candidates_add(c, slug->u.string);
                cand->def = def;
                const char *o[] = { slug->u.string, NULL };
                yajl_val origin = origins ? yajl_tree_get(origins, o, yajl_t_string) : NULL;
                cand->origin = origin ? origin->u.string : NULL;
        }
        return 0;
}

static int plan_from_candidate(const struct candidate *cand, const char *source, struct plan **ret,
                               hm_error_t *err)
{
        struct plan *plan = NULL;
        int r;
        if (cand->path) {
                _cleanup_free_ char *text = NULL;
                size_t len = 0;
                r = read_source(cand->path, &text, &len, err);
                if (r < 0)
                        return r;
                r = plan_parse(text, len, cand->path, &plan, err);
        } else {
                r = plan_from_tree(cand->def, cand->origin ? cand->origin : source, &plan, err);
        }
        if (r < 0)
                return r;
        plan->slug = xstrdup(cand->slug);
        *ret = plan;
        return 0;
}

static int load_file(const char *file, const char *slug, struct plan **ret, hm_error_t *err)
{
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r = read_source(file, &text, &len, err);
        if (r < 0)
                return r;
        _cleanup_plan_json_ struct plan_json *json = NULL;
        r = plan_json_parse(text, len, file, &json, err);
        if (r < 0)
                return r;
        yajl_val tree = plan_json_root(json);
        if (is_envelope(tree)) {
                _cleanup_candidates_ struct candidates c = { 0 };
                r = envelope_candidates(tree, NULL, file, &c, err);
                if (r < 0)
                        return r;
                struct candidate *cand = NULL;
                r = candidates_select(&c, slug, NULL, &cand, err);
                if (r < 0)
                        return r;
                return plan_from_candidate(cand, file, ret, err);
        }
        struct plan *plan = NULL;
        r = plan_from_tree(tree, file, &plan, err);
        if (r < 0)
                return r;
        if (slug)
                plan->slug = xstrdup(slug);
        *ret = plan;
        return 0;
}

/* ---- .hm/ discovery ------------------------------------------------------------------------ */

static char *path_join(const char *dir, const char *name)
{
        if (!dir || strcmp(dir, ".") == 0)
                return xstrdup(name);
        size_t n = strlen(dir);
        return xasprintf("%s%s%s", dir, n && dir[n - 1] == '/' ? "" : "/", name);
}

static int strv_cmp(const void *a, const void *b)
{
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Sorted *.json and *.py names (regular files, not hidden) in hmdir. */
static int scan_hm(const char *hmdir, char ***ret_json, char ***ret_py, hm_error_t *err)
{
        _cleanup_closedir_ DIR *d = opendir(hmdir);
        if (!d)
                return hm_error_set(err, errno, "open '%s': %s", hmdir, strerror(errno));
        _cleanup_strv_ char **json = NULL;
        _cleanup_strv_ char **py = NULL;
        for (;;) {
                errno = 0;
                struct dirent *de = readdir(d);
                if (!de) {
                        if (errno)
                                return hm_error_set(err, errno, "read '%s': %s", hmdir, strerror(errno));
                        break;
                }
                if (de->d_name[0] == '.')
                        continue;
                struct stat st;
                if (fstatat(dirfd(d), de->d_name, &st, 0) < 0 || !S_ISREG(st.st_mode))
                        continue;
                if (str_has_suffix(de->d_name, ".json") && strlen(de->d_name) > 5)
                        strv_push(&json, de->d_name);
                else if (str_has_suffix(de->d_name, ".py") && strlen(de->d_name) > 3)
                        strv_push(&py, de->d_name);
        }
        if (json)
                qsort(json, strv_len(json), sizeof *json, strv_cmp);
        if (py)
                qsort(py, strv_len(py), sizeof *py, strv_cmp);
        *ret_json = TAKE_PTR(json);
        *ret_py = TAKE_PTR(py);
        return 0;
}

/* ---- the python render --------------------------------------------------------------------- */

struct render {
        struct strbuf out;
        struct strbuf errtail;
        int status; /* waitpid status */
};

static void render_release(struct render *r)
{
        strbuf_release(&r->out);
        strbuf_release(&r->errtail);
}
#define _cleanup_render_ __attribute__((cleanup(render_release)))

static void closefds(int fds[2])
{
        safe_close(fds[0]);
        safe_close(fds[1]);
}

static char **render_env(void)
{
        char **env = NULL;
        for (char **e = environ; e && *e; e++)
                if (!str_has_prefix(*e, "PYTHONDONTWRITEBYTECODE="))
                        strv_push(&env, *e);
        strv_push(&env, "PYTHONDONTWRITEBYTECODE=1");
        return env;
}

static int spawn_python(const char *dir, char *const *py, int out_fd, int err_fd, pid_t *ret_pid)
{
        _cleanup_strv_ char **argv = NULL;
        strv_push(&argv, "python3");
        strv_push(&argv, "-c");
        strv_push(&argv, render_script);
        for (char *const *f = py; *f; f++)
                strv_push(&argv, *f);
        _cleanup_strv_ char **env = render_env();
        posix_spawn_file_actions_t fa;
        posix_spawn_file_actions_init(&fa);
        posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(&fa, out_fd, STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&fa, err_fd, STDERR_FILENO);
        posix_spawn_file_actions_addchdir_np(&fa, dir);
        posix_spawnattr_t attr;
        posix_spawnattr_init(&attr);
        sigset_t none;
        sigemptyset(&none);
        posix_spawnattr_setsigmask(&attr, &none); /* the caller may have blocked signals for signalfd */
        posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
        int r = posix_spawnp(ret_pid, "python3", &fa, &attr, argv, env);
        posix_spawnattr_destroy(&attr);
        posix_spawn_file_actions_destroy(&fa);
        return -r;
}

static void keep_tail(struct strbuf *sb, const char *buf, size_t n)
{
        strbuf_add(sb, buf, n);
        if (sb->len > RENDER_ERR_KEEP)
                strbuf_consume(sb, sb->len - RENDER_ERR_KEEP);
}

/* Drain both pipes until EOF; >0 when a bound was hit. */
static int drain(int out_fd, int err_fd, struct render *rd)
{
        struct pollfd fds[2] = { { out_fd, POLLIN, 0 }, { err_fd, POLLIN, 0 } };
        int64_t deadline = now_ms() + RENDER_TIMEOUT_MS;
        char buf[65536];
        while (fds[0].fd >= 0 || fds[1].fd >= 0) {
                int64_t left = deadline - now_ms();
                if (left <= 0)
                        return 1;
                int n = poll(fds, 2, (int) left);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                for (int i = 0; i < 2; i++) {
                        if (fds[i].fd < 0 || !fds[i].revents)
                                continue;
                        ssize_t r = read(fds[i].fd, buf, sizeof buf);
                        if (r < 0 && (errno == EINTR || errno == EAGAIN))
                                continue;
                        if (r <= 0) {
                                fds[i].fd = -1;
                                continue;
                        }
                        if (i == 1) {
                                keep_tail(&rd->errtail, buf, (size_t) r);
                                continue;
                        }
                        strbuf_add(&rd->out, buf, (size_t) r);
                        if (rd->out.len > RENDER_OUT_MAX)
                                return 2;
                }
        }
        return 0;
}

static int run_python(const char *dir, char *const *py, struct render *rd, hm_error_t *err)
{
        int out[2] = { -1, -1 }, errp[2] = { -1, -1 };
        if (pipe2(out, O_CLOEXEC) < 0)
                return hm_error_set(err, errno, "pipe: %s", strerror(errno));
        if (pipe2(errp, O_CLOEXEC) < 0) {
                int e = errno;
                closefds(out);
                return hm_error_set(err, e, "pipe: %s", strerror(e));
        }
        pid_t pid;
        int r = spawn_python(dir, py, out[1], errp[1], &pid);
        out[1] = safe_close(out[1]);
        errp[1] = safe_close(errp[1]);
        if (r < 0) {
                closefds(out);
                closefds(errp);
                if (r == -ENOENT)
                        return hm_error_set_exit(err, EXIT_USAGE, ENOENT,
                                                 "'.hm/%s' needs python3, which is not on PATH (install python3, "
                                                 "or put the rendered IR in .hm/<slug>.json)", py[0]);
                return hm_error_set_exit(err, EXIT_USAGE, -r, "spawn python3: %s", strerror(-r));
        }
        int bound = drain(out[0], errp[0], rd);
        closefds(out);
        closefds(errp);
        if (bound != 0)
                kill(pid, SIGKILL);
        while (waitpid(pid, &rd->status, 0) < 0)
                if (errno != EINTR)
                        return hm_error_set_exit(err, EXIT_USAGE, errno, "wait for python3: %s", strerror(errno));
        if (bound == 1)
                return hm_error_set_exit(err, EXIT_USAGE, ETIMEDOUT, "render .hm/*.py: python3 took more than %d s",
                                         RENDER_TIMEOUT_MS / 1000);
        if (bound == 2)
                return hm_error_set_exit(err, EXIT_USAGE, EFBIG, "render .hm/*.py: output larger than %u bytes",
                                         RENDER_OUT_MAX);
        if (bound < 0)
                return hm_error_set_exit(err, EXIT_USAGE, -bound, "render .hm/*.py: %s", strerror(-bound));
        return 0;
}

/* Last non-empty line of python's stderr (the exception), for a one-line message. */
static const char *last_line(struct strbuf *sb)
{
        while (sb->len && (sb->buf[sb->len - 1] == '\n' || sb->buf[sb->len - 1] == '\r'))
                sb->buf[--sb->len] = 0;
        char *nl = strrchr(sb->buf, '\n');
        return nl ? nl + 1 : sb->buf;
}

/*
 * Render the .py pipelines into `c`.  Returns 1 when harmont is not
 * importable (message in *ret_note), 0 on success.
 */
static int render_py(const char *dir, char *const *py, struct plan_json **ret_json, char **ret_note,
                     hm_error_t *err)
{
        _cleanup_render_ struct render rd = { STRBUF_INIT, STRBUF_INIT, 0 };
        int r = run_python(dir ? dir : ".", py, &rd, err);
        if (r < 0)
                return r;
        size_t n_py = strv_len(py);
        if (WIFEXITED(rd.status) && WEXITSTATUS(rd.status) == PY_NO_HARMONT) {
                *ret_note = xasprintf("'.hm/%s'%s needs the python module 'harmont', which python3 cannot import "
                                      "(%s); install it (pip install harmont, or add it to PYTHONPATH) or put the "
                                      "rendered IR in .hm/<slug>.json",
                                      py[0], n_py > 1 ? " (and the other .hm/*.py files)" : "", last_line(&rd.errtail));
                return 1;
        }
        if (WIFSIGNALED(rd.status))
                return hm_error_set_exit(err, EXIT_USAGE, 0, "pipeline render error: python3 killed by signal %d",
                                         WTERMSIG(rd.status));
        if (WEXITSTATUS(rd.status) != 0)
                return hm_error_set_exit(err, EXIT_USAGE, 0, "pipeline render error: python3 exited with status %d: %s",
                                         WEXITSTATUS(rd.status), last_line(&rd.errtail));
        r = plan_json_parse(rd.out.buf, rd.out.len, "python3 render output", ret_json, err);
        if (r < 0) {
                (*err)->exit = EXIT_USAGE;
                return r;
        }
        return 0;
}

static int add_py_candidates(yajl_val tree, struct candidates *c, hm_error_t *err)
{
        const char *env_path[] = { "envelope", NULL }, *orig_path[] = { "origins", NULL };
        yajl_val env = yajl_tree_get(tree, env_path, yajl_t_object);
        yajl_val origins = yajl_tree_get(tree, orig_path, yajl_t_object);
        if (!env)
                return hm_error_set_exit(err, EXIT_USAGE, 0, "pipeline render error: no envelope in python3 output");
        int r = envelope_candidates(env, origins, ".hm/*.py", c, err);
        if (r < 0)
                (*err)->exit = EXIT_USAGE;
        return r;
}

static int load_dir(const char *dir, const char *slug, struct plan **ret, hm_error_t *err)
{
        _cleanup_free_ char *hmdir = path_join(dir, ".hm");
        struct stat st;
        if (stat(hmdir, &st) < 0 || !S_ISDIR(st.st_mode))
                return hm_error_set_exit(err, EXIT_USAGE, ENOENT, "no .hm directory in '%s'", dir ? dir : ".");
        _cleanup_strv_ char **json = NULL;
        _cleanup_strv_ char **py = NULL;
        int r = scan_hm(hmdir, &json, &py, err);
        if (r < 0)
                return r;
        _cleanup_candidates_ struct candidates c = { 0 };
        for (char **j = json; j && *j; j++) {
                _cleanup_free_ char *s = xstrndup(*j, strlen(*j) - 5);
                _cleanup_free_ char *rel = xasprintf(".hm/%s", *j);
                candidates_add(&c, s)->path = path_join(dir, rel);
        }
        _cleanup_plan_json_ struct plan_json *json_out = NULL;
        _cleanup_free_ char *note = NULL;
        if (py && !(slug && candidates_find(&c, slug))) {
                r = render_py(dir, py, &json_out, &note, err);
                if (r < 0)
                        return r;
                if (r > 0 && c.n == 0)
                        return hm_error_set_exit(err, EXIT_USAGE, 0, "%s", note);
                if (r == 0) {
                        r = add_py_candidates(plan_json_root(json_out), &c, err);
                        if (r < 0)
                                return r;
                }
        }
        _cleanup_free_ char *suffix = note ? xasprintf("; %s", note) : NULL;
        struct candidate *cand = NULL;
        r = candidates_select(&c, slug, suffix, &cand, err);
        if (r < 0)
                return r;
        return plan_from_candidate(cand, ".hm/*.py", ret, err);
}

int plan_load(const char *dir, const char *file, const char *slug, struct plan **ret, hm_error_t *err)
{
        if (file)
                return load_file(file, slug, ret, err);
        return load_dir(dir, slug, ret, err);
}
