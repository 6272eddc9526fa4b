/* SPDX-License-Identifier: Apache-2.0 */
/*
 * workspace_build() against real trees on disk and a real git: the archive
 * is read back with libarchive and every entry (name, type, owner, mode,
 * link target, contents) is compared with what the tree should produce.
 */
#include "pipeline/workspace.h"
#include "lib/strbuf.h"
#include "lib/util.h"
#include "tests/unit/tap.h"

#include <archive.h>
#include <archive_entry.h>
#include "lib/handles.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>

#define UID 1234u
#define GID 5678u

#if defined(__SANITIZE_ADDRESS__)
#define PERF_BUDGET_MS 4000
#else
#define PERF_BUDGET_MS 1000
#endif

struct rec {
        char *name;
        mode_t type;
        mode_t perm;
        unsigned uid, gid;
        bool has_uname, has_gname;
        char *link;
        char *data;
        int64_t size, mtime;
};

struct recs {
        struct rec *v;
        size_t n;
        int64_t archive_bytes;
};

static void recs_release(struct recs *r)
{
        for (size_t i = 0; i < r->n; i++) {
                free(r->v[i].name);
                free(r->v[i].link);
                free(r->v[i].data);
        }
        free(r->v);
        *r = (struct recs) { 0 };
}
#define _cleanup_recs_ _cleanup_(recs_release)

static int read_entry_data(struct archive *a, struct rec *rec)
{
        struct strbuf sb = STRBUF_INIT;
        char buf[8192];
        ssize_t n;
        while ((n = archive_read_data(a, buf, sizeof buf)) > 0)
                strbuf_add(&sb, buf, (size_t) n);
        rec->data = strbuf_detach(&sb, NULL);
        return n < 0 ? -1 : 0;
}

/* Parse a tar held in memory into records; -1 if libarchive rejects it. */
static int read_tar(const void *buf, size_t len, struct recs *out)
{
        _cleanup_archive_read_ struct archive *a = archive_read_new();
        archive_read_support_format_tar(a);
        if (archive_read_open_memory(a, buf, len) != ARCHIVE_OK)
                return -1;
        struct archive_entry *e;
        int r;
        while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK) {
                out->v = xreallocarray(out->v, out->n + 1, sizeof *out->v);
                struct rec *rec = &out->v[out->n++];
                *rec = (struct rec) { 0 };
                rec->name = xstrdup(archive_entry_pathname(e) ? archive_entry_pathname(e) : "");
                rec->type = archive_entry_filetype(e);
                rec->perm = archive_entry_perm(e);
                rec->uid = (unsigned) archive_entry_uid(e);
                rec->gid = (unsigned) archive_entry_gid(e);
                rec->has_uname = archive_entry_uname(e) && *archive_entry_uname(e);
                rec->has_gname = archive_entry_gname(e) && *archive_entry_gname(e);
                rec->link = archive_entry_symlink(e) ? xstrdup(archive_entry_symlink(e)) : NULL;
                rec->size = archive_entry_size(e);
                rec->mtime = archive_entry_mtime(e);
                if (read_entry_data(a, rec) < 0)
                        return -1;
        }
        return r == ARCHIVE_EOF ? 0 : -1;
}

/* Read the memfd with pread, as the runners do, and parse it. */
static int read_workspace(const struct workspace *ws, struct recs *out)
{
        _cleanup_free_ char *buf = xmalloc(ws->size ? ws->size : 1);
        size_t got = 0;
        while (got < ws->size) {
                ssize_t n = pread(ws->fd, buf + got, ws->size - got, (off_t) got);
                if (n <= 0)
                        return -1;
                got += (size_t) n;
        }
        out->archive_bytes = (int64_t) got;
        return read_tar(buf, got, out);
}

static const struct rec *find(const struct recs *r, const char *name)
{
        for (size_t i = 0; i < r->n; i++)
                if (!strcmp(r->v[i].name, name))
                        return &r->v[i];
        return NULL;
}

static char *names_joined(const struct recs *r)
{
        struct strbuf sb = STRBUF_INIT;
        for (size_t i = 0; i < r->n; i++)
                strbuf_addf(&sb, "%s%s", i ? " " : "", r->v[i].name);
        return strbuf_detach(&sb, NULL);
}

static bool all_owned(const struct recs *r, unsigned uid, unsigned gid)
{
        for (size_t i = 0; i < r->n; i++)
                if (r->v[i].uid != uid || r->v[i].gid != gid || r->v[i].has_uname || r->v[i].has_gname)
                        return false;
        return r->n > 0;
}

/* ---- tree helpers ---- */

static void put_file(const char *root, const char *rel, const char *data, mode_t mode)
{
        _cleanup_free_ char *p = xasprintf("%s/%s", root, rel);
        _cleanup_free_ char *dir = xstrdup(p);
        *strrchr(dir, '/') = 0;
        if (mkdir_p(dir, 0755) < 0)
                abort();
        _cleanup_close_ int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
        if (fd < 0 || write_all(fd, data, strlen(data)) < 0 || fchmod(fd, mode) < 0)
                abort();
}

static void put_dir(const char *root, const char *rel, mode_t mode)
{
        _cleanup_free_ char *p = xasprintf("%s/%s", root, rel);
        if (mkdir_p(p, 0755) < 0 || chmod(p, mode) < 0)
                abort();
}

static void put_link(const char *root, const char *rel, const char *target)
{
        _cleanup_free_ char *p = xasprintf("%s/%s", root, rel);
        if (symlink(target, p) < 0)
                abort();
}

/* Run argv in dir with stdout/stderr silenced; returns the exit status, 127 if not found. */
static int run_in(const char *dir, char *const argv[])
{
        pid_t pid = fork();
        if (pid < 0)
                abort();
        if (pid == 0) {
                int null = open("/dev/null", O_RDWR | O_CLOEXEC);
                if (null < 0 || chdir(dir) < 0)
                        _exit(126);
                dup2(null, STDIN_FILENO);
                dup2(null, STDOUT_FILENO);
                dup2(null, STDERR_FILENO);
                execvp(argv[0], argv);
                _exit(127);
        }
        int st;
        while (waitpid(pid, &st, 0) < 0)
                if (errno != EINTR)
                        abort();
        return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

#define RUN(dir, ...) run_in(dir, (char *const[]) { __VA_ARGS__, NULL })

static char *make_tmpdir(void)
{
        char *t = xstrdup("/tmp/hm-test-ws-XXXXXX");
        if (!mkdtemp(t))
                abort();
        return t;
}

static int build(const char *dir, struct workspace **ws, struct recs *recs, hm_error_t *err)
{
        int r = workspace_build(dir, UID, GID, ws, err);
        if (r < 0)
                return r;
        return read_workspace(*ws, recs) < 0 ? -1 : 0;
}

/* ---- plain tree ---- */

static void test_plain_tree(void)
{
        _cleanup_free_ char *root = make_tmpdir();
        chmod(root, 0751);
        put_file(root, ".hidden", "h\n", 0600);
        put_file(root, "visible.txt", "hello\n", 0644);
        put_file(root, "run.sh", "#!/bin/sh\necho hi\n", 0750);
        put_file(root, "sub/deep/file.txt", "deep\n", 0640);
        put_file(root, ".github/x", "gh\n", 0644);        /* a prefix of .git is not .git */
        put_file(root, "x.hm", "not excluded\n", 0644);
        put_dir(root, "empty", 0700);
        put_link(root, "link", "visible.txt");
        put_link(root, "dangling", "does/not/exist");
        put_link(root, "dirlink", "sub");
        put_file(root, ".hm/pipeline.py", "import harmont\n", 0644);
        put_file(root, ".git", "gitdir: elsewhere\n", 0644);
        put_file(root, "sub/.git/HEAD", "ref\n", 0644);
        put_file(root, "sub/deep/.hm/x", "x\n", 0644);
        put_file(root, "sub/deep/.git", "gitdir: x\n", 0644);
        _cleanup_free_ char *fifo = xasprintf("%s/fifo", root);
        tap_ok(mkfifo(fifo, 0644) == 0, "plain: mkfifo");
        _cleanup_free_ char *vis = xasprintf("%s/visible.txt", root);
        struct timespec ts[2] = { { 1000000000, 0 }, { 1000000000, 123 } };
        utimensat(AT_FDCWD, vis, ts, AT_SYMLINK_NOFOLLOW);

        struct workspace *ws = NULL;
        _cleanup_recs_ struct recs recs = { 0 };
        hm_error_t err = NULL;
        int r = build(root, &ws, &recs, &err);
        if (!tap_ok(r == 0, "plain: workspace_build succeeds and the archive reads back")) {
                tap_diag("%s", err ? err->msg : "tar unreadable");
                hm_error_release(&err);
                workspace_free(ws);
                rm_rf(root);
                return;
        }
        _cleanup_free_ char *names = names_joined(&recs);
        TAP_IS_STR(names,
                   "workspace/ workspace/.github/ workspace/.github/x workspace/.hidden workspace/dangling "
                   "workspace/dirlink workspace/empty/ workspace/link workspace/run.sh workspace/sub/ "
                   "workspace/sub/deep/ workspace/sub/deep/file.txt workspace/visible.txt workspace/x.hm",
                   "plain: exact entry list (sorted, dirs included, .git/.hm excluded at any depth, fifo skipped)");
        tap_ok(ws->n_files == 9, "plain: n_files counts regular files and symlinks (%zu)", ws->n_files);
        tap_ok(all_owned(&recs, UID, GID), "plain: every header owned by %u:%u with no owner names", UID, GID);
        tap_ok(ws->size == (uint64_t) recs.archive_bytes && ws->size % 512 == 0,
               "plain: size %llu is the whole tar", (unsigned long long) ws->size);
        int fdflags = fcntl(ws->fd, F_GETFD);
        tap_ok(fdflags >= 0 && (fdflags & FD_CLOEXEC), "plain: memfd is close-on-exec");
        _cleanup_free_ char *real = realpath(root, NULL);
        TAP_IS_STR(ws->root, real, "plain: root is the realpath");

        const struct rec *e = find(&recs, "workspace/");
        tap_ok(e && e->type == AE_IFDIR && e->perm == 0751, "plain: workspace/ is first-class dir with the root's mode");
        e = find(&recs, "workspace/run.sh");
        tap_ok(e && e->type == AE_IFREG && e->perm == 0750, "plain: executable mode 0750 kept");
        e = find(&recs, "workspace/.hidden");
        tap_ok(e && e->perm == 0600 && !strcmp(e->data, "h\n"), "plain: hidden file with mode 0600 and contents");
        e = find(&recs, "workspace/visible.txt");
        tap_ok(e && !strcmp(e->data, "hello\n") && e->size == 6, "plain: regular file contents");
        tap_ok(e && e->mtime == 1000000000, "plain: mtime kept");
        e = find(&recs, "workspace/empty/");
        tap_ok(e && e->type == AE_IFDIR && e->perm == 0700, "plain: empty directory kept with mode 0700");
        e = find(&recs, "workspace/link");
        tap_ok(e && e->type == AE_IFLNK && e->link && !strcmp(e->link, "visible.txt") && e->size == 0,
               "plain: symlink stored as a symlink");
        e = find(&recs, "workspace/dangling");
        tap_ok(e && e->type == AE_IFLNK && e->link && !strcmp(e->link, "does/not/exist"),
               "plain: dangling symlink stored");
        e = find(&recs, "workspace/dirlink");
        tap_ok(e && e->type == AE_IFLNK && e->link && !strcmp(e->link, "sub"),
               "plain: symlink to a directory not followed");
        e = find(&recs, "workspace/sub/deep/file.txt");
        tap_ok(e && e->perm == 0640 && !strcmp(e->data, "deep\n"), "plain: nested file");

        /* the memfd is sealed: nobody can change the bytes steps read */
        tap_ok(pwrite(ws->fd, "x", 1, 0) < 0, "plain: memfd rejects writes");
        workspace_free(ws);
        rm_rf(root);
}

static void test_errors(void)
{
        struct workspace *ws = NULL;
        hm_error_t err = NULL;
        int r = workspace_build("/nonexistent/hm-ws", UID, GID, &ws, &err);
        tap_ok(r < 0 && err && strstr(err->msg, "'/nonexistent/hm-ws'") && !ws,
               "error: missing dir names the path (%s)", err ? err->msg : "no error");
        hm_error_release(&err);
}

/* An unreadable file is an error naming it.  Run as nobody when we are root. */
static void test_unreadable(void)
{
        _cleanup_free_ char *root = make_tmpdir();
        chmod(root, 0755);
        put_file(root, "ok.txt", "ok\n", 0644);
        put_file(root, "dir/secret", "s\n", 0000);
        _cleanup_free_ char *dir = xasprintf("%s/dir", root);
        chmod(dir, 0755);
        int pfd[2];
        if (pipe2(pfd, O_CLOEXEC) < 0)
                abort();
        pid_t pid = fork();
        if (pid == 0) {
                if (geteuid() == 0 && (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0))
                        _exit(3);
                struct workspace *ws = NULL;
                hm_error_t err = NULL;
                int r = workspace_build(root, UID, GID, &ws, &err);
                if (r >= 0)
                        _exit(2);
                (void) !write(pfd[1], err->msg, strlen(err->msg));
                hm_error_release(&err);
                _exit(0);
        }
        close(pfd[1]);
        char msg[1024] = "";
        ssize_t n = read(pfd[0], msg, sizeof msg - 1);
        msg[n > 0 ? n : 0] = 0;
        close(pfd[0]);
        int st;
        waitpid(pid, &st, 0);
        tap_ok(WIFEXITED(st) && WEXITSTATUS(st) == 0 && strstr(msg, "'dir/secret'") && strstr(msg, "Permission denied"),
               "error: unreadable file named (%s)", msg);
        rm_rf(root);
}

/* ---- git ---- */

static bool have_git(void)
{
        return RUN("/", "git", "--version") == 0;
}

static int git_commit_all(const char *repo)
{
        int r = RUN(repo, "git", "add", "-A");
        if (r == 0)
                r = RUN(repo, "git", "-c", "user.email=a@b", "-c", "user.name=t", "commit", "-q", "-m", "init");
        return r;
}

static void make_repo(const char *repo)
{
        tap_ok(RUN(repo, "git", "init", "-q") == 0, "git: init");
        put_file(repo, ".gitignore", "*.log\n", 0644);
        put_file(repo, "tracked.txt", "tracked\n", 0644);
        put_file(repo, "deleted.txt", "bye\n", 0644);
        put_file(repo, "src/main.c", "int main(void) { return 0; }\n", 0644);
        put_file(repo, ".hm/pipeline.py", "import harmont\n", 0644);
        put_link(repo, "link", "tracked.txt");
        tap_ok(git_commit_all(repo) == 0, "git: commit");
        _cleanup_free_ char *deleted = xasprintf("%s/deleted.txt", repo);
        unlink(deleted); /* tracked but gone from the work tree */
        put_file(repo, "untracked.txt", "new\n", 0644);
        put_file(repo, "build.log", "ignored by .gitignore\n", 0644);
        put_file(repo, "src/gen.log", "ignored by .gitignore\n", 0644);
        put_file(repo, "secret.txt", "ignored by info/exclude\n", 0644);
        put_file(repo, "scratch.tmp", "ignored by the global excludes file\n", 0644);
        put_file(repo, "src/sub/x.txt", "nested untracked\n", 0644);
        put_dir(repo, "emptydir", 0755);
        _cleanup_free_ char *excl = xasprintf("%s/.git/info/exclude", repo);
        _cleanup_close_ int fd = open(excl, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0 || write_all(fd, "secret.txt\n", 11) < 0)
                abort();
}

static void check_git_tree(const char *repo)
{
        struct workspace *ws = NULL;
        _cleanup_recs_ struct recs recs = { 0 };
        hm_error_t err = NULL;
        int r = build(repo, &ws, &recs, &err);
        if (!tap_ok(r == 0, "git: workspace_build succeeds")) {
                tap_diag("%s", err ? err->msg : "tar unreadable");
                hm_error_release(&err);
                workspace_free(ws);
                return;
        }
        _cleanup_free_ char *names = names_joined(&recs);
        TAP_IS_STR(names,
                   "workspace/ workspace/.gitignore workspace/link workspace/src/ workspace/src/main.c "
                   "workspace/src/sub/ workspace/src/sub/x.txt workspace/tracked.txt workspace/untracked.txt",
                   "git: tracked + untracked-not-ignored only (.gitignore, info/exclude, global excludes honoured)");
        tap_ok(ws->n_files == 6, "git: n_files %zu", ws->n_files);
        tap_ok(all_owned(&recs, UID, GID), "git: owners %u:%u", UID, GID);
        const struct rec *e = find(&recs, "workspace/link");
        tap_ok(e && e->type == AE_IFLNK && !strcmp(e->link, "tracked.txt"), "git: tracked symlink kept as symlink");
        e = find(&recs, "workspace/untracked.txt");
        tap_ok(e && !strcmp(e->data, "new\n"), "git: untracked file contents");
        workspace_free(ws);

        /* a subdirectory of the work tree: paths relative to it */
        _cleanup_free_ char *src = xasprintf("%s/src", repo);
        _cleanup_recs_ struct recs sub = { 0 };
        r = build(src, &ws, &sub, &err);
        _cleanup_free_ char *sub_names = r == 0 ? names_joined(&sub) : NULL;
        TAP_IS_STR(sub_names, "workspace/ workspace/main.c workspace/sub/ workspace/sub/x.txt",
                   "git: subdirectory of a work tree is archived relative to itself");
        if (err)
                tap_diag("%s", err->msg);
        hm_error_release(&err);
        workspace_free(ws);
}

/* With git unavailable the same repo is walked: ignored files come back. */
static void check_git_missing(const char *repo)
{
        _cleanup_free_ char *old = xstrdup(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
        setenv("PATH", "/nonexistent-hm-path", 1);
        struct workspace *ws = NULL;
        _cleanup_recs_ struct recs recs = { 0 };
        hm_error_t err = NULL;
        int r = build(repo, &ws, &recs, &err);
        setenv("PATH", old, 1);
        tap_ok(r == 0 && find(&recs, "workspace/build.log") && find(&recs, "workspace/emptydir/") &&
                       !find(&recs, "workspace/.git/") && !find(&recs, "workspace/.hm/"),
               "git missing: falls back to walking every file");
        hm_error_release(&err);
        workspace_free(ws);
}

static void test_git(void)
{
        if (!have_git()) {
                tap_ok(true, "# SKIP git is not installed");
                return;
        }
        _cleanup_free_ char *top = make_tmpdir();
        _cleanup_free_ char *repo = xasprintf("%s/repo", top);
        _cleanup_free_ char *cfg = xasprintf("%s/gitconfig", top);
        _cleanup_free_ char *gign = xasprintf("%s/global-ignore", top);
        put_dir(top, "repo", 0755);
        put_file(top, "global-ignore", "*.tmp\n", 0644);
        _cleanup_free_ char *cfgtext = xasprintf("[core]\n\texcludesFile = %s\n[init]\n\tdefaultBranch = main\n", gign);
        put_file(top, "gitconfig", cfgtext, 0644);
        setenv("GIT_CONFIG_GLOBAL", cfg, 1);
        setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
        make_repo(repo);
        check_git_tree(repo);
        check_git_missing(repo);
        unsetenv("GIT_CONFIG_GLOBAL");
        rm_rf(top);
}

/* ---- scale ---- */

static int64_t timed_build(const char *dir, size_t *ret_n, hm_error_t *err)
{
        struct workspace *ws = NULL;
        int64_t t0 = now_ms();
        int r = workspace_build(dir, UID, GID, &ws, err);
        int64_t dt = now_ms() - t0;
        *ret_n = ws ? ws->n_files : 0;
        workspace_free(ws);
        return r < 0 ? -1 : dt;
}

static void test_perf(void)
{
        _cleanup_free_ char *root = make_tmpdir();
        char rel[64], data[64];
        for (int i = 0; i < 10000; i++) {
                snprintf(rel, sizeof rel, "d%02d/f%05d.txt", i % 100, i);
                snprintf(data, sizeof data, "file %d\n", i);
                put_file(root, rel, data, 0644);
        }
        size_t n = 0;
        hm_error_t err = NULL;
        int64_t ms = timed_build(root, &n, &err);
        tap_ok(ms >= 0 && n == 10000 && ms < PERF_BUDGET_MS, "perf: 10000 files walked and archived in %lld ms",
               (long long) ms);
        hm_error_release(&err);
        if (have_git() && RUN(root, "git", "init", "-q") == 0) {
                ms = timed_build(root, &n, &err);
                tap_ok(ms >= 0 && n == 10000 && ms < PERF_BUDGET_MS,
                       "perf: 10000 untracked files via git archived in %lld ms", (long long) ms);
                hm_error_release(&err);
        }
        rm_rf(root);
}

static int count_fds(void)
{
        int n = 0;
        _cleanup_closedir_ DIR *d = opendir("/proc/self/fd");
        while (d && readdir(d))
                n++;
        return n;
}

/* A repository owned by someone else: git refuses, and so must we (not walk it silently). */
static void test_git_refuses(void)
{
        if (geteuid() != 0 || !have_git()) {
                tap_ok(true, "# SKIP needs root and git");
                return;
        }
        _cleanup_free_ char *repo = make_tmpdir();
        tap_ok(RUN(repo, "git", "init", "-q") == 0 && RUN(repo, "chown", "-R", "65534:65534", ".") == 0,
               "git refuses: repo owned by nobody");
        put_file(repo, "a.txt", "a\n", 0644);
        struct workspace *ws = NULL;
        hm_error_t err = NULL;
        int r = workspace_build(repo, UID, GID, &ws, &err);
        tap_ok(r < 0 && !ws && err && strstr(err->msg, "'git ls-files' failed") && strstr(err->msg, "safe.directory"),
               "git refuses: error carries git's message (%s)", err ? err->msg : "no error");
        hm_error_release(&err);
        workspace_free(ws);
        rm_rf(repo);
}

/*
 * memfd_seal_contents() (the workspace archive, hm's sealed self-copy): a
 * page of the memfd with an extra reference (here: spliced into a pipe by
 * vmsplice from a mapping since unmapped) makes F_SEAL_WRITE fail with EBUSY
 * after the kernel's wait for pins.  That failed every hm start of a CI phase
 * once ("sealed copy of hm: seal: Device or resource busy").  The control shows
 * the EBUSY; the helper must seal anyway, and the bytes must then be immutable.
 */
static int pinned_memfd(int pipefd[2])
{
        int fd = memfd_create("hm-seal-test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        long pg = sysconf(_SC_PAGESIZE);
        if (fd < 0 || ftruncate(fd, pg) < 0 || pipe2(pipefd, O_CLOEXEC) < 0)
                return -1;
        char *m = mmap(NULL, (size_t) pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED)
                return -1;
        m[0] = 'a';
        struct iovec iov = { .iov_base = m, .iov_len = (size_t) pg };
        ssize_t n = vmsplice(pipefd[1], &iov, 1, 0);
        munmap(m, (size_t) pg);
        return n == pg ? fd : -1;
}

static void test_seal_pinned(void)
{
        int p1[2] = { -1, -1 }, p2[2] = { -1, -1 };
        int ctl = pinned_memfd(p1);
        int busy = ctl >= 0 ? fcntl(ctl, F_ADD_SEALS, F_SEAL_WRITE) : 0;
        int busy_errno = errno;
        tap_ok(ctl >= 0 && busy < 0 && busy_errno == EBUSY,
               "seal (control): F_SEAL_WRITE on a memfd with a pinned page fails with EBUSY (%s)",
               busy < 0 ? strerror(busy_errno) : "it did not");
        int fd = pinned_memfd(p2);
        int r = fd >= 0 ? memfd_seal_contents(fd) : -EINVAL;
        tap_ok(r == 0 && memfd_contents_sealed(fd), "seal: memfd_seal_contents() seals it anyway (%s)",
               r ? strerror(-r) : "ok");
        long pg = sysconf(_SC_PAGESIZE);
        errno = 0;
        bool wr = pwrite(fd, "b", 1, 0) < 0 && errno == EPERM;
        bool tr = ftruncate(fd, 0) < 0 && ftruncate(fd, 2 * pg) < 0;
        void *m = mmap(NULL, (size_t) pg, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        bool mp = m == MAP_FAILED;
        if (!mp)
                munmap(m, (size_t) pg);
        char c = 0;
        tap_ok(wr && tr && mp && pread(fd, &c, 1, 0) == 1 && c == 'a',
               "seal: then no write, truncate, growth or writable shared mapping; the byte is still 'a'");
        int all[] = { ctl, fd, p1[0], p1[1], p2[0], p2[1] };
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
                safe_close(all[i]);
}

int main(void)
{
        umask(022);
        int fds = count_fds();
        test_plain_tree();
        test_errors();
        test_unreadable();
        test_git();
        test_perf();
        test_git_refuses();
        test_seal_pinned();
        tap_ok(count_fds() == fds, "no fd leaked (%d before, %d after)", fds, count_fds());
        tap_ok(waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD, "no child left unreaped");
        return tap_done();
}
