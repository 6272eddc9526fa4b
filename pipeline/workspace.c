/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The workspace archive (see workspace.h).  Two phases:
 *
 *   1. list: the relative paths to archive, either from
 *      `git ls-files --cached --others --exclude-standard` (inside a work
 *      tree, so git's own ignore rules apply) or from a walk of the tree;
 *   2. archive: sort the paths (a parent sorts before its children), lstat
 *      each one again and write it into a tar in a memfd.
 *
 * Listing and archiving are separate so that both sources share one writer
 * and the archive is deterministic (sorted, no owner names, whole-second
 * mtimes).  Anything that vanished between the two phases is skipped.
 */
#include "pipeline/workspace.h"
#include "lib/strbuf.h"
#include "lib/util.h"

#include <archive.h>
#include <archive_entry.h>
#include "lib/handles.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

extern char **environ;

#define WS_PREFIX "workspace/"
#define GIT_TIMEOUT_MS (120 * 1000)
#define GIT_MAX_OUTPUT (256u << 20)
#define GIT_MAX_STDERR 4096u
#define COPY_CHUNK (128u << 10)

static inline void workspace_freep(struct workspace **ws) { workspace_free(*ws); }
#define _cleanup_workspace_ _cleanup_(workspace_freep)

/* ---- path lists ---- */

struct path_list {
        char **v;
        size_t n, alloc;
};

static void path_list_push_take(struct path_list *l, char *s)
{
        if (l->n == l->alloc) {
                l->alloc = l->alloc ? l->alloc * 2 : 256;
                l->v = xreallocarray(l->v, l->alloc, sizeof(char *));
        }
        l->v[l->n++] = s;
}

static void path_list_release(struct path_list *l)
{
        for (size_t i = 0; i < l->n; i++)
                free(l->v[i]);
        free(l->v);
        *l = (struct path_list) { 0 };
}
#define _cleanup_path_list_ _cleanup_(path_list_release)

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Sort and drop duplicates.  strcmp order puts "a" before "a/b": a prefix sorts first. */
static void path_list_sort_unique(struct path_list *l)
{
        if (l->n == 0)
                return;
        qsort(l->v, l->n, sizeof(char *), cmp_str);
        size_t w = 1;
        for (size_t r = 1; r < l->n; r++) {
                if (strcmp(l->v[r], l->v[w - 1]) == 0)
                        free(l->v[r]);
                else
                        l->v[w++] = l->v[r];
        }
        l->n = w;
}

static bool name_excluded(const char *name, size_t len)
{
        return (len == 4 && memcmp(name, ".git", 4) == 0) || (len == 3 && memcmp(name, ".hm", 3) == 0);
}

static bool path_excluded(const char *rel)
{
        for (const char *p = rel;;) {
                const char *slash = strchr(p, '/');
                size_t len = slash ? (size_t) (slash - p) : strlen(p);
                if (name_excluded(p, len))
                        return true;
                if (!slash)
                        return false;
                p = slash + 1;
        }
}

/* ---- listing by walking the tree ---- */

static bool is_dir_at(int dfd, const struct dirent *de)
{
        if (de->d_type != DT_UNKNOWN)
                return de->d_type == DT_DIR;
        struct stat st;
        return fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

/* Read one directory: children go to `out`, subdirectories also to `queue`. */
static int walk_one(int root_fd, const char *rel, struct path_list *out, struct path_list *queue,
                    hm_error_t *err)
{
        int fd = openat(root_fd, *rel ? rel : ".", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
                if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
                        return 0; /* vanished or replaced since it was listed */
                return hm_error_set(err, errno, "open directory '%s': %s", *rel ? rel : ".",
                                    strerror(errno));
        }
        _cleanup_closedir_ DIR *d = fdopendir(fd);
        if (!d) {
                int e = errno;
                close(fd);
                return hm_error_set(err, e, "open directory '%s': %s", rel, strerror(e));
        }
        for (;;) {
                errno = 0;
                struct dirent *de = readdir(d);
                if (!de) {
                        if (errno)
                                return hm_error_set(err, errno, "read directory '%s': %s",
                                                    *rel ? rel : ".", strerror(errno));
                        return 0;
                }
                const char *name = de->d_name;
                if (!strcmp(name, ".") || !strcmp(name, "..") || name_excluded(name, strlen(name)))
                        continue;
                char *child = *rel ? xasprintf("%s/%s", rel, name) : xstrdup(name);
                if (is_dir_at(dirfd(d), de))
                        path_list_push_take(queue, xstrdup(child));
                path_list_push_take(out, child);
        }
}

/* Breadth-first so that at most one directory fd is open, however deep the tree. */
static int list_by_walk(int root_fd, struct path_list *out, hm_error_t *err)
{
        _cleanup_path_list_ struct path_list queue = { 0 };
        path_list_push_take(&queue, xstrdup(""));
        for (size_t i = 0; i < queue.n; i++) {
                int r = walk_one(root_fd, queue.v[i], out, &queue, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* ---- listing through git ---- */

/*
 * The child's environment: ours minus variables that would point git at
 * another repository (set when hm runs from a git hook), with messages in
 * English so that "not a git repository" can be recognised.
 */
static char **git_environ(void)
{
        static const char *const drop[] = { "GIT_DIR=", "GIT_WORK_TREE=", "GIT_INDEX_FILE=",
                                            "GIT_COMMON_DIR=", "GIT_PREFIX=", "LC_ALL=" };
        char **env = NULL;
        for (char **e = environ; e && *e; e++) {
                bool skip = false;
                for (size_t i = 0; i < ARRAY_SIZE(drop) && !skip; i++)
                        skip = str_has_prefix(*e, drop[i]);
                if (!skip)
                        strv_push(&env, *e);
        }
        strv_push(&env, "LC_ALL=C");
        return env;
}

struct git_child {
        pid_t pid;
        int out, err; /* read ends */
};

static void pipe_closep(int (*p)[2])
{
        closep(&(*p)[0]);
        closep(&(*p)[1]);
}

static void spawn_file_actions_destroyp(posix_spawn_file_actions_t **fa)
{
        if (*fa)
                posix_spawn_file_actions_destroy(*fa);
}

static void spawnattr_destroyp(posix_spawnattr_t **a)
{
        if (*a)
                posix_spawnattr_destroy(*a);
}

/* Returns 1 spawned, 0 git is not installed. */
static int git_spawn(const char *dir, struct git_child *ret, hm_error_t *err)
{
        _cleanup_(pipe_closep) int out[2] = { -1, -1 };
        _cleanup_(pipe_closep) int errp[2] = { -1, -1 };
        if (pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0)
                return hm_error_set(err, errno, "pipe: %s", strerror(errno));

        posix_spawn_file_actions_t fa_store;
        posix_spawnattr_t attr_store;
        _cleanup_(spawn_file_actions_destroyp) posix_spawn_file_actions_t *fa = NULL;
        _cleanup_(spawnattr_destroyp) posix_spawnattr_t *attr = NULL;
        if (posix_spawn_file_actions_init(&fa_store) != 0)
                abort();
        fa = &fa_store;
        if (posix_spawnattr_init(&attr_store) != 0)
                abort();
        attr = &attr_store;
        posix_spawn_file_actions_addopen(fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        posix_spawn_file_actions_adddup2(fa, out[1], STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(fa, errp[1], STDERR_FILENO);

        /* The scheduler blocks signals for its signalfd: give git a clean slate. */
        sigset_t none, def;
        sigemptyset(&none);
        sigemptyset(&def);
        sigaddset(&def, SIGPIPE);
        posix_spawnattr_setsigmask(attr, &none);
        posix_spawnattr_setsigdefault(attr, &def);
        posix_spawnattr_setflags(attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

        char *argv[] = { "git", "-C", (char *) dir, "ls-files", "-z", "--cached", "--others",
                         "--exclude-standard", NULL };
        _cleanup_strv_ char **env = git_environ();
        pid_t pid;
        int r = posix_spawnp(&pid, "git", fa, attr, argv, env);
        if (r == ENOENT)
                return 0;
        if (r != 0)
                return hm_error_set(err, r, "spawn 'git': %s", strerror(r));
        ret->pid = pid;
        ret->out = TAKE_FD(out[0]);
        ret->err = TAKE_FD(errp[0]);
        return 1;
}

/* Append what is readable on fd to sb (up to cap).  Returns 1 data, 0 EOF, <0 -errno. */
static int drain_fd(int fd, struct strbuf *sb, size_t cap, bool *ret_overflow)
{
        char buf[65536];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0)
                return errno == EINTR || errno == EAGAIN ? 1 : -errno;
        if (n == 0)
                return 0;
        size_t room = sb->len < cap ? cap - sb->len : 0;
        if ((size_t) n > room)
                *ret_overflow = true;
        strbuf_add(sb, buf, (size_t) n < room ? (size_t) n : room);
        return 1;
}

/* Collect stdout and stderr until both close, bounded in time and size. */
static int git_collect(struct git_child *c, struct strbuf *out, struct strbuf *errbuf, hm_error_t *err)
{
        int64_t deadline = now_ms() + GIT_TIMEOUT_MS;
        bool out_open = true, err_open = true, overflow = false, err_overflow = false;
        while (out_open || err_open) {
                struct pollfd p[2] = { { .fd = out_open ? c->out : -1, .events = POLLIN },
                                       { .fd = err_open ? c->err : -1, .events = POLLIN } };
                int64_t left = deadline - now_ms();
                if (left <= 0)
                        return hm_error_set(err, ETIMEDOUT, "'git ls-files' did not finish in %d s",
                                            GIT_TIMEOUT_MS / 1000);
                if (poll(p, 2, (int) left) < 0) {
                        if (errno == EINTR)
                                continue;
                        return hm_error_set(err, errno, "poll: %s", strerror(errno));
                }
                if (out_open && p[0].revents) {
                        int r = drain_fd(c->out, out, GIT_MAX_OUTPUT, &overflow);
                        if (r < 0)
                                return hm_error_set(err, -r, "read from 'git ls-files': %s", strerror(-r));
                        out_open = r > 0;
                        if (overflow)
                                return hm_error_set(err, EFBIG, "'git ls-files' printed more than %u MiB",
                                                    GIT_MAX_OUTPUT >> 20);
                }
                if (err_open && p[1].revents)
                        err_open = drain_fd(c->err, errbuf, GIT_MAX_STDERR, &err_overflow) > 0;
        }
        return 0;
}

static int wait_child(pid_t pid, int *ret_status)
{
        while (waitpid(pid, ret_status, 0) < 0) {
                if (errno != EINTR)
                        return -errno;
        }
        return 0;
}

static void git_child_release(struct git_child *c)
{
        closep(&c->out);
        closep(&c->err);
        if (c->pid > 0) {
                /* only reached with the child still running: collection failed */
                kill(c->pid, SIGKILL);
                int st;
                (void) wait_child(c->pid, &st);
                c->pid = 0;
        }
}

static bool git_says_not_a_repo(const char *msg)
{
        return strstr(msg, "not a git repository") || strstr(msg, "must be run in a work tree");
}

/* git's advice spans lines; our errors are one line: join them with single spaces. */
static void squash_whitespace(struct strbuf *sb)
{
        size_t w = 0;
        bool space = false;
        for (size_t r = 0; r < sb->len; r++) {
                char c = sb->buf[r];
                if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
                        space = w > 0;
                        continue;
                }
                if (space)
                        sb->buf[w++] = ' ';
                space = false;
                sb->buf[w++] = c;
        }
        sb->len = w;
        sb->buf[w] = 0;
}

/*
 * Run git; on success *ret_used is true and `raw` holds NUL-separated paths
 * relative to dir.  Outside a work tree or without git, *ret_used is false.
 */
static int git_ls_files(const char *dir, struct strbuf *raw, bool *ret_used, hm_error_t *err)
{
        _cleanup_(git_child_release) struct git_child c = { .pid = 0, .out = -1, .err = -1 };
        *ret_used = false;
        int r = git_spawn(dir, &c, err);
        if (r <= 0)
                return r;
        _cleanup_strbuf_ struct strbuf errbuf = STRBUF_INIT;
        r = git_collect(&c, raw, &errbuf, err);
        if (r < 0)
                return r;
        int status;
        r = wait_child(c.pid, &status);
        c.pid = 0;
        if (r < 0)
                return hm_error_set(err, -r, "wait for 'git ls-files': %s", strerror(-r));
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
                *ret_used = true;
                return 0;
        }
        if (git_says_not_a_repo(errbuf.buf))
                return 0;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
                return 0; /* a shell wrapper named git that could not find the real one */
        squash_whitespace(&errbuf);
        return hm_error_set(err, 0, "'git ls-files' failed (%s %d): %s",
                            WIFEXITED(status) ? "exit" : "signal",
                            WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status),
                            errbuf.len ? errbuf.buf : "no message");
}

/* Turn git's output into paths plus every directory that leads to them. */
static void list_from_git(const struct strbuf *raw, struct path_list *out)
{
        for (size_t off = 0; off < raw->len;) {
                const char *p = raw->buf + off;
                size_t len = strnlen(p, raw->len - off);
                off += len + 1;
                while (len && p[len - 1] == '/') /* an untracked nested repository: "sub/" */
                        len--;
                if (!len)
                        continue;
                char *path = xstrndup(p, len);
                if (path_excluded(path)) {
                        free(path);
                        continue;
                }
                for (char *s = strchr(path, '/'); s; s = strchr(s + 1, '/'))
                        path_list_push_take(out, xstrndup(path, (size_t) (s - path)));
                path_list_push_take(out, path);
        }
}

/* ---- archiving ---- */

struct ws_writer {
        int root_fd;
        struct archive *a;
        struct archive_entry *e;
        unsigned uid, gid;
        char *buf; /* COPY_CHUNK bytes */
        size_t n_files;
        size_t n_entries; /* headers below the root */
};

static int archive_fail(struct ws_writer *w, const char *what, const char *rel, hm_error_t *err)
{
        int code = archive_errno(w->a);
        const char *msg = archive_error_string(w->a);
        return hm_error_set(err, code > 0 ? code : 0, "%s '%s': %s", what, rel,
                            msg ? msg : "libarchive error");
}

/* Reset the shared entry to a header for `rel` ("" is the root) from st. */
static void entry_fill(struct ws_writer *w, const char *rel, const struct stat *st)
{
        bool dir = S_ISDIR(st->st_mode);
        _cleanup_free_ char *name = xasprintf(WS_PREFIX "%s%s", rel, dir && *rel ? "/" : "");
        archive_entry_clear(w->e);
        archive_entry_set_pathname(w->e, name);
        archive_entry_set_filetype(w->e, st->st_mode & S_IFMT);
        archive_entry_set_perm(w->e, st->st_mode & 07777);
        /* whole seconds: keeps ustar headers without pax extensions */
        archive_entry_set_mtime(w->e, st->st_mtim.tv_sec, 0);
        archive_entry_set_uid(w->e, w->uid);
        archive_entry_set_gid(w->e, w->gid);
        archive_entry_set_size(w->e, S_ISREG(st->st_mode) ? st->st_size : 0);
}

static int write_header(struct ws_writer *w, const char *rel, hm_error_t *err)
{
        if (archive_write_header(w->a, w->e) != ARCHIVE_OK)
                return archive_fail(w, "archive", *rel ? rel : ".", err);
        w->n_entries += *rel != 0;
        return 0;
}

static int add_dir(struct ws_writer *w, const char *rel, const struct stat *st, hm_error_t *err)
{
        entry_fill(w, rel, st);
        return write_header(w, rel, err);
}

static int add_symlink(struct ws_writer *w, const char *rel, const struct stat *st, hm_error_t *err)
{
        size_t cap = st->st_size > 0 ? (size_t) st->st_size + 1 : PATH_MAX;
        _cleanup_free_ char *target = NULL;
        for (;;) {
                target = xrealloc(target, cap);
                ssize_t n = readlinkat(w->root_fd, rel, target, cap);
                if (n < 0) {
                        if (errno == ENOENT || errno == EINVAL)
                                return 0; /* vanished or replaced by a non-link */
                        return hm_error_set(err, errno, "read link '%s': %s", rel, strerror(errno));
                }
                if ((size_t) n < cap) {
                        target[n] = 0;
                        break;
                }
                cap *= 2;
        }
        entry_fill(w, rel, st);
        archive_entry_set_symlink(w->e, target);
        int r = write_header(w, rel, err);
        if (r < 0)
                return r;
        w->n_files++;
        return 0;
}

/* Copy exactly the size in the header; a file that shrank is zero-padded by libarchive. */
static int copy_data(struct ws_writer *w, int fd, const char *rel, uint64_t size, hm_error_t *err)
{
        while (size > 0) {
                size_t want = size < COPY_CHUNK ? (size_t) size : COPY_CHUNK;
                ssize_t n = read(fd, w->buf, want);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return hm_error_set(err, errno, "read '%s': %s", rel, strerror(errno));
                }
                if (n == 0)
                        break;
                if (archive_write_data(w->a, w->buf, (size_t) n) != n)
                        return archive_fail(w, "archive", rel, err);
                size -= (uint64_t) n;
        }
        return 0;
}

static int add_file(struct ws_writer *w, const char *rel, hm_error_t *err)
{
        /* O_NONBLOCK: a fifo swapped in since the lstat must not hang us */
        _cleanup_close_ int fd = openat(w->root_fd, rel, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
        if (fd < 0) {
                if (errno == ENOENT || errno == ELOOP)
                        return 0; /* vanished, or replaced by a symlink */
                return hm_error_set(err, errno, "open '%s': %s", rel, strerror(errno));
        }
        struct stat st;
        if (fstat(fd, &st) < 0)
                return hm_error_set(err, errno, "stat '%s': %s", rel, strerror(errno));
        if (!S_ISREG(st.st_mode))
                return 0;
        entry_fill(w, rel, &st);
        int r = write_header(w, rel, err);
        if (r < 0)
                return r;
        r = copy_data(w, fd, rel, (uint64_t) st.st_size, err);
        if (r < 0)
                return r;
        w->n_files++;
        return 0;
}

static int add_path(struct ws_writer *w, const char *rel, hm_error_t *err)
{
        struct stat st;
        if (fstatat(w->root_fd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0) {
                if (errno == ENOENT || errno == ENOTDIR)
                        return 0; /* vanished, or a tracked file deleted from the work tree */
                return hm_error_set(err, errno, "stat '%s': %s", rel, strerror(errno));
        }
        if (S_ISDIR(st.st_mode))
                return add_dir(w, rel, &st, err);
        if (S_ISLNK(st.st_mode))
                return add_symlink(w, rel, &st, err);
        if (S_ISREG(st.st_mode))
                return add_file(w, rel, err);
        return 0; /* sockets, fifos, devices have no place in a workspace */
}

static int archive_open_memfd(int fd, struct archive **ret, hm_error_t *err)
{
        _cleanup_archive_write_ struct archive *a = archive_write_new();
        if (!a)
                return hm_error_set(err, ENOMEM, "archive_write_new failed");
        /* pax_restricted: plain ustar unless a name or id needs an extension */
        if (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK ||
            archive_write_add_filter_none(a) != ARCHIVE_OK ||
            archive_write_set_bytes_per_block(a, 64 * 1024) != ARCHIVE_OK ||
            archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK ||
            archive_write_open_fd(a, fd) != ARCHIVE_OK)
                return hm_error_set(err, archive_errno(a) > 0 ? archive_errno(a) : 0,
                                    "set up workspace archive: %s", archive_error_string(a));
        *ret = TAKE_PTR(a);
        return 0;
}

static int write_archive(struct ws_writer *w, const struct path_list *paths, hm_error_t *err)
{
        struct stat st;
        if (fstat(w->root_fd, &st) < 0)
                return hm_error_set(err, errno, "stat '.': %s", strerror(errno));
        int r = add_dir(w, "", &st, err);
        for (size_t i = 0; r >= 0 && i < paths->n; i++)
                r = add_path(w, paths->v[i], err);
        if (r < 0)
                return r;
        if (archive_write_close(w->a) != ARCHIVE_OK)
                return archive_fail(w, "finish", "workspace archive", err);
        return 0;
}

static int build_archive(int root_fd, const struct path_list *paths, unsigned uid, unsigned gid,
                         struct workspace *ws, hm_error_t *err)
{
        _cleanup_close_ int mfd = memfd_create("hm-workspace", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (mfd < 0)
                return hm_error_set(err, errno, "memfd_create: %s", strerror(errno));
        _cleanup_archive_write_ struct archive *a = NULL;
        int r = archive_open_memfd(mfd, &a, err);
        if (r < 0)
                return r;
        _cleanup_archive_entry_ struct archive_entry *e = archive_entry_new2(a);
        if (!e)
                return hm_error_set(err, ENOMEM, "archive_entry_new failed");
        _cleanup_free_ char *buf = xmalloc(COPY_CHUNK);
        struct ws_writer w = { .root_fd = root_fd, .a = a, .e = e, .uid = uid, .gid = gid, .buf = buf };
        r = write_archive(&w, paths, err);
        if (r < 0)
                return r;
        struct stat st;
        if (fstat(mfd, &st) < 0)
                return hm_error_set(err, errno, "stat workspace memfd: %s", strerror(errno));
        /* every step reads the same bytes: make them immutable */
        r = memfd_seal_contents(mfd);
        if (r < 0)
                return hm_error_set(err, -r, "seal workspace memfd: %s", strerror(-r));
        /* pread() is the contract; rewinding also serves a single sequential reader */
        if (lseek(mfd, 0, SEEK_SET) < 0)
                return hm_error_set(err, errno, "rewind workspace memfd: %s", strerror(errno));
        ws->fd = TAKE_FD(mfd);
        ws->size = (uint64_t) st.st_size;
        ws->n_files = w.n_files;
        ws->n_entries = w.n_entries;
        return 0;
}

static int list_paths(int root_fd, const char *root, struct path_list *paths, hm_error_t *err)
{
        _cleanup_strbuf_ struct strbuf raw = STRBUF_INIT;
        bool used_git;
        int r = git_ls_files(root, &raw, &used_git, err);
        if (r < 0)
                return r;
        if (used_git)
                list_from_git(&raw, paths);
        else if ((r = list_by_walk(root_fd, paths, err)) < 0)
                return r;
        path_list_sort_unique(paths);
        return 0;
}

struct workspace_lazy {
        unsigned uid, gid;
        struct workspace built; /* fd -1 until archived */
};

/* List and archive root into out's fd, size and n_files. */
static int archive_root(const char *root, unsigned uid, unsigned gid, struct workspace *out, hm_error_t *err)
{
        _cleanup_close_ int root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (root_fd < 0)
                return hm_error_set(err, errno, "workspace '%s': %s", root, strerror(errno));
        _cleanup_path_list_ struct path_list paths = { 0 };
        int r = list_paths(root_fd, root, &paths, err);
        if (r >= 0)
                r = build_archive(root_fd, &paths, uid, gid, out, err);
        if (r < 0)
                return hm_error_wrap(err, "workspace '%s'", root);
        return 0;
}

static int resolve_root(const char *dir, struct workspace **ret, hm_error_t *err)
{
        _cleanup_workspace_ struct workspace *ws = xzalloc(sizeof *ws);
        ws->fd = -1;
        ws->root = realpath(dir, NULL);
        if (!ws->root)
                return hm_error_set(err, errno, "workspace '%s': %s", dir, strerror(errno));
        *ret = TAKE_PTR(ws);
        return 0;
}

int workspace_build(const char *dir, unsigned uid, unsigned gid, struct workspace **ret, hm_error_t *err)
{
        _cleanup_workspace_ struct workspace *ws = NULL;
        int r = resolve_root(dir, &ws, err);
        if (r < 0)
                return r;
        if ((r = archive_root(ws->root, uid, gid, ws, err)) < 0)
                return r;
        *ret = TAKE_PTR(ws);
        return 0;
}

int workspace_defer(const char *dir, unsigned uid, unsigned gid, struct workspace **ret, hm_error_t *err)
{
        _cleanup_workspace_ struct workspace *ws = NULL;
        int r = resolve_root(dir, &ws, err);
        if (r < 0)
                return r;
        /* what fails at once when archiving now fails here too: not a directory, not readable */
        _cleanup_close_ int root_fd = open(ws->root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (root_fd < 0)
                return hm_error_set(err, errno, "workspace '%s': %s", ws->root, strerror(errno));
        ws->lazy = xzalloc(sizeof *ws->lazy);
        *ws->lazy = (struct workspace_lazy) { .uid = uid, .gid = gid, .built = { .fd = -1 } };
        *ret = TAKE_PTR(ws);
        return 0;
}

int workspace_open(const struct workspace *ws, int *ret_fd, uint64_t *ret_size, hm_error_t *err)
{
        const struct workspace *src = ws;
        if (ws->lazy) {
                struct workspace_lazy *l = ws->lazy;
                if (l->built.fd < 0) {
                        int r = archive_root(ws->root, l->uid, l->gid, &l->built, err);
                        if (r < 0)
                                return r;
                }
                src = &l->built;
        }
        *ret_fd = src->fd;
        *ret_size = src->size;
        return 0;
}

bool workspace_empty(const struct workspace *ws)
{
        const struct workspace *src = ws->lazy ? &ws->lazy->built : ws;
        return src->fd >= 0 && src->n_files == 0 && src->n_entries == 0;
}

void workspace_free(struct workspace *ws)
{
        if (!ws)
                return;
        if (ws->lazy)
                safe_close(ws->lazy->built.fd);
        free(ws->lazy);
        safe_close(ws->fd);
        free(ws->root);
        free(ws);
}
