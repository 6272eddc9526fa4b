/* SPDX-License-Identifier: Apache-2.0 */
/* The cache index on a real file system, with real processes racing on it. */
#include "pipeline/cache.h"
#include "lib/util.h"
#include "tests/unit/tap.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define BE "docker:/run/docker.sock"
#define BE2 "ns:/var/lib/hm"
#define N_RACE 200

static char *tmp_root;

static char *tmp_path(const char *rel)
{
        return xasprintf("%s/%s", tmp_root, rel);
}

static void write_text(const char *path, const char *text)
{
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0 || write_all(fd, text, strlen(text)) < 0)
                abort();
}

static char *read_text(const char *path)
{
        char *s = NULL;
        return read_file(path, 0, &s, NULL) < 0 ? NULL : s;
}

/* "tag=snapshot ..." of the entries of every backend, in list order. */
static char *list_str(struct cache_index *ci)
{
        struct cache_entry *e = NULL;
        size_t n = 0;
        hm_error_t err = NULL;
        if (cache_index_list(ci, &e, &n, &err) < 0) {
                char *s = xasprintf("error: %s", err->msg);
                hm_error_release(&err);
                return s;
        }
        char *s = xstrdup("");
        for (size_t i = 0; i < n; i++) {
                char *t = xasprintf("%s%s%s=%s", s, i ? " " : "", e[i].tag, e[i].snapshot);
                free(s);
                s = t;
        }
        cache_entries_free(e, n);
        return s;
}

static char *entries_str(const struct cache_entry *e, size_t n)
{
        char *s = xstrdup("");
        for (size_t i = 0; i < n; i++) {
                char *t = xasprintf("%s%s%s", s, i ? " " : "", e[i].tag);
                free(s);
                s = t;
        }
        return s;
}

static void test_basic(void)
{
        _cleanup_free_ char *path = tmp_path("a/b/index");
        struct cache_index *ci = NULL;
        hm_error_t err = NULL;
        tap_ok(cache_index_open(path, &ci, &err) == 0, "open: explicit path with missing parents");
        _cleanup_free_ char *dir = tmp_path("a/b");
        struct stat st;
        tap_ok(stat(dir, &st) == 0 && (st.st_mode & 07777) == 0700, "open: parent directories created 0700");

        char *snap = NULL;
        tap_ok(cache_index_get(ci, BE, "t1", &snap, &err) == 0 && !snap, "get: miss on an empty index");
        tap_ok(cache_index_put(ci, BE, "t1", "sha256:aaa", &err) == 0, "put: t1");
        tap_ok(cache_index_put(ci, BE, "t2", "sha256:bbb", &err) == 0, "put: t2");
        tap_ok(cache_index_put(ci, BE2, "t1", "layer-1", &err) == 0, "put: same tag on another backend");
        int r = cache_index_get(ci, BE, "t1", &snap, &err);
        tap_ok(r == 1 && snap && !strcmp(snap, "sha256:aaa"), "get: hit returns the snapshot");
        free(snap);
        snap = NULL;
        r = cache_index_get(ci, BE2, "t1", &snap, &err);
        tap_ok(r == 1 && snap && !strcmp(snap, "layer-1"), "get: backends are separate");
        free(snap);
        snap = NULL;
        tap_ok(cache_index_put(ci, BE, "t2", "sha256:ccc", &err) == 0, "put: replace t2");
        _cleanup_free_ char *l1 = list_str(ci);
        /* recency order: t1 (get), BE2's t1 (get), t2 (put) */
        TAP_IS_STR(l1, "t1=sha256:aaa t1=layer-1 t2=sha256:ccc", "list: entries in recency order, replacement kept once");

        _cleanup_free_ char *text = read_text(path);
        tap_ok(text && str_has_prefix(text, "hm-cache-index 1\n" BE "\tt1\tsha256:aaa\t"),
               "file: version header then tab-separated lines");

        tap_ok(cache_index_remove(ci, BE, "t1", &err) == 0, "remove: t1");
        tap_ok(cache_index_remove(ci, BE, "nope", &err) == 0, "remove: a missing tag is not an error");
        tap_ok(cache_index_get(ci, BE, "t1", NULL, &err) == 0, "get: removed tag misses");
        _cleanup_free_ char *l2 = list_str(ci);
        TAP_IS_STR(l2, "t1=layer-1 t2=sha256:ccc", "list: after remove");

        r = cache_index_put(ci, BE, "bad\ttag", "x", &err);
        tap_ok(r < 0 && err && strstr(err->msg, "tab or newline"), "put: a tag with a tab is rejected (%s)",
               err ? err->msg : "");
        hm_error_release(&err);
        r = cache_index_put(ci, BE, "t3", "", &err);
        tap_ok(r < 0 && err, "put: an empty snapshot is rejected");
        hm_error_release(&err);
        cache_index_free(ci);

        /* a new handle sees the persisted state */
        tap_ok(cache_index_open(path, &ci, &err) == 0, "reopen");
        _cleanup_free_ char *l3 = list_str(ci);
        TAP_IS_STR(l3, "t1=layer-1 t2=sha256:ccc", "reopen: state persisted");
        cache_index_free(ci);
}

static void test_default_location(void)
{
        _cleanup_free_ char *xdg = tmp_path("xdg");
        _cleanup_free_ char *home = tmp_path("home");
        _cleanup_free_ char *old_xdg = getenv("XDG_CACHE_HOME") ? xstrdup(getenv("XDG_CACHE_HOME")) : NULL;
        _cleanup_free_ char *old_home = getenv("HOME") ? xstrdup(getenv("HOME")) : NULL;
        struct cache_index *ci = NULL;
        hm_error_t err = NULL;

        setenv("XDG_CACHE_HOME", xdg, 1);
        int r = cache_index_open(NULL, &ci, &err);
        if (r == 0)
                r = cache_index_put(ci, BE, "x", "y", &err);
        _cleanup_free_ char *want1 = xasprintf("%s/hm/index", xdg);
        tap_ok(r == 0 && access(want1, F_OK) == 0, "default: $XDG_CACHE_HOME/hm/index");
        cache_index_free(ci);
        ci = NULL;

        unsetenv("XDG_CACHE_HOME");
        setenv("HOME", home, 1);
        r = cache_index_open(NULL, &ci, &err);
        if (r == 0)
                r = cache_index_put(ci, BE, "x", "y", &err);
        _cleanup_free_ char *want2 = xasprintf("%s/.cache/hm/index", home);
        tap_ok(r == 0 && access(want2, F_OK) == 0, "default: $HOME/.cache/hm/index");
        cache_index_free(ci);
        hm_error_release(&err);

        if (old_xdg)
                setenv("XDG_CACHE_HOME", old_xdg, 1);
        if (old_home)
                setenv("HOME", old_home, 1);
        else
                unsetenv("HOME");
}

static void test_lru(void)
{
        _cleanup_free_ char *path = tmp_path("lru/index");
        struct cache_index *ci = NULL;
        hm_error_t err = NULL;
        if (!tap_ok(cache_index_open(path, &ci, &err) == 0, "lru: open"))
                return;
        /* all within the same second: recency alone must order them */
        cache_index_put(ci, BE, "a", "sa", &err);
        cache_index_put(ci, BE, "b", "sb", &err);
        cache_index_put(ci, BE, "c", "sc", &err);
        cache_index_put(ci, BE2, "other", "so", &err);
        cache_index_get(ci, BE, "a", NULL, &err);
        struct cache_entry *ev = NULL;
        size_t n = 0;
        int r = cache_index_evict(ci, BE, 3, &ev, &n, &err);
        tap_ok(r == 0 && n == 0 && !ev, "evict: nothing beyond capacity");
        r = cache_index_evict(ci, BE, 1, &ev, &n, &err);
        _cleanup_free_ char *evs = entries_str(ev, n);
        TAP_IS_STR(evs, "b c", "evict: least recently used first, a (just hit) survives");
        tap_ok(n == 2 && !strcmp(ev[0].snapshot, "sb") && !strcmp(ev[0].backend, BE),
               "evict: returned entries carry backend and snapshot");
        cache_entries_free(ev, n);
        _cleanup_free_ char *left = list_str(ci);
        TAP_IS_STR(left, "other=so a=sa", "evict: other backends untouched, recency order kept");
        cache_index_free(ci);

        /* explicit timestamps: older first, ties broken by position (earlier used earlier) */
        write_text(path, "hm-cache-index 1\n"
                         BE "\tt300\ts\t300\n"
                         BE "\tt100a\ts\t100\n"
                         BE2 "\tz\ts\t1\n"
                         BE "\tt200\ts\t200\n"
                         BE "\tt100b\ts\t100\n");
        if (!tap_ok(cache_index_open(path, &ci, &err) == 0, "lru: open crafted index"))
                return;
        r = cache_index_evict(ci, BE, 1, &ev, &n, &err);
        _cleanup_free_ char *evs2 = entries_str(ev, n);
        TAP_IS_STR(evs2, "t100a t100b t200", "evict: by accessed_at, ties by file order, deterministic");
        cache_entries_free(ev, n);
        _cleanup_free_ char *left2 = list_str(ci);
        TAP_IS_STR(left2, "t300=s z=s", "evict: newest survives");
        r = cache_index_evict(ci, BE, 0, &ev, &n, &err);
        tap_ok(r == 0 && n == 1 && !strcmp(ev[0].tag, "t300"), "evict: capacity 0 empties the backend");
        cache_entries_free(ev, n);
        cache_index_free(ci);
}

static void expect_corrupt(const char *path, const char *text, const char *where, const char *what)
{
        write_text(path, text);
        struct cache_index *ci = NULL;
        hm_error_t err = NULL;
        int r = cache_index_open(path, &ci, &err);
        tap_ok(r < 0 && !ci && err && strstr(err->msg, path) && strstr(err->msg, where),
               "corrupt: %s is an error naming file and line (%s)", what, err ? err->msg : "no error");
        hm_error_release(&err);
        cache_index_free(ci);
}

static void test_corrupt(void)
{
        _cleanup_free_ char *path = tmp_path("corrupt/index");
        _cleanup_free_ char *dir = tmp_path("corrupt");
        mkdir_p(dir, 0700);
        expect_corrupt(path, "hm-cache-index 2\n", "line 1", "unknown version");
        expect_corrupt(path, "hm-cache-index 1\n" BE "\tt\ts\t1\n" BE "\tt2\ts\n", "line 3", "missing field");
        expect_corrupt(path, "hm-cache-index 1\n" BE "\tt\ts\tsoon\n", "line 2", "bad timestamp");
        expect_corrupt(path, "hm-cache-index 1\n" BE "\tt\ts\t1\t\n", "line 2", "extra field");
        expect_corrupt(path, "hm-cache-index 1\n" BE "\tt\ts\t1\n" BE "\tt\tz\t2\n", "line 3", "duplicate entry");
        expect_corrupt(path, "hm-cache-index 1\n" BE "\tt\ts\t1", "line 2", "truncated last line");

        /* corruption appearing after open is caught by every call */
        write_text(path, "hm-cache-index 1\n");
        struct cache_index *ci = NULL;
        hm_error_t err = NULL;
        int r = cache_index_open(path, &ci, &err);
        write_text(path, "garbage\n");
        if (r == 0)
                r = cache_index_put(ci, BE, "t", "s", &err);
        tap_ok(r < 0 && err && strstr(err->msg, "line 1"), "corrupt: put refuses to overwrite a corrupt index");
        _cleanup_free_ char *text = read_text(path);
        TAP_IS_STR(text, "garbage\n", "corrupt: the corrupt file is left for the user to inspect");
        hm_error_release(&err);
        cache_index_free(ci);
}

static void test_crash_leftover(void)
{
        _cleanup_free_ char *path = tmp_path("crash/index");
        struct cache_index *ci = NULL;
        hm_error_t err = NULL;
        if (!tap_ok(cache_index_open(path, &ci, &err) == 0, "crash: open"))
                return;
        cache_index_put(ci, BE, "kept", "s1", &err);
        cache_index_free(ci);
        /* a writer killed between creating its temp file and the rename */
        _cleanup_free_ char *tmp = xasprintf("%s.tmp.99999", path);
        write_text(tmp, "hm-cache-index 1\n" BE "\thalf");
        int r = cache_index_open(path, &ci, &err);
        tap_ok(r == 0, "crash: index loads despite a leftover temp file");
        _cleanup_free_ char *l = r == 0 ? list_str(ci) : NULL;
        TAP_IS_STR(l, "kept=s1", "crash: the leftover is ignored");
        tap_ok(access(tmp, F_OK) < 0 && errno == ENOENT, "crash: the stale temp file is removed");
        hm_error_release(&err);
        cache_index_free(ci);
}

/* One racer: put its own tags and read back earlier ones; exit status = failures. */
static int racer(const char *path, int id)
{
        struct cache_index *ci = NULL;
        hm_error_t err = NULL;
        if (cache_index_open(path, &ci, &err) < 0)
                return 100;
        int failures = 0;
        for (int i = 0; i < N_RACE && failures < 50; i++) {
                char tag[32], snap[32];
                snprintf(tag, sizeof tag, "p%d-%03d", id, i);
                snprintf(snap, sizeof snap, "s%d-%03d", id, i);
                if (cache_index_put(ci, BE, tag, snap, &err) < 0)
                        failures++;
                hm_error_release(&err);
                snprintf(tag, sizeof tag, "p%d-%03d", id, i / 2);
                char *got = NULL;
                if (cache_index_get(ci, BE, tag, &got, &err) != 1)
                        failures++;
                hm_error_release(&err);
                free(got);
        }
        cache_index_free(ci);
        return failures;
}

static void test_concurrent(void)
{
        _cleanup_free_ char *path = tmp_path("race/index");
        struct cache_index *ci = NULL;
        hm_error_t err = NULL;
        if (!tap_ok(cache_index_open(path, &ci, &err) == 0, "race: open"))
                return;
        fflush(stdout);
        pid_t pids[2];
        for (int k = 0; k < 2; k++) {
                pids[k] = fork();
                if (pids[k] == 0)
                        _exit(racer(path, k));
        }
        for (int k = 0; k < 2; k++) {
                int st;
                waitpid(pids[k], &st, 0);
                tap_ok(WIFEXITED(st) && WEXITSTATUS(st) == 0, "race: process %d saw every one of its writes (exit %d)",
                       k, WIFEXITED(st) ? WEXITSTATUS(st) : -1);
        }
        struct cache_entry *e = NULL;
        size_t n = 0;
        int r = cache_index_list(ci, &e, &n, &err);
        tap_ok(r == 0 && n == 2 * N_RACE, "race: file parses with all %d entries (%zu)", 2 * N_RACE, n);
        int missing = 0;
        for (int k = 0; k < 2 && r == 0; k++)
                for (int i = 0; i < N_RACE; i++) {
                        char tag[32], snap[32];
                        snprintf(tag, sizeof tag, "p%d-%03d", k, i);
                        snprintf(snap, sizeof snap, "s%d-%03d", k, i);
                        bool found = false;
                        for (size_t j = 0; j < n && !found; j++)
                                found = !strcmp(e[j].tag, tag) && !strcmp(e[j].snapshot, snap);
                        missing += !found;
                }
        tap_ok(r == 0 && missing == 0, "race: no lost update (%d missing)", missing);
        cache_entries_free(e, n);
        _cleanup_free_ char *tmp = xasprintf("%s.tmp.%d", path, (int) pids[0]);
        tap_ok(access(tmp, F_OK) < 0, "race: no temp file left behind");
        hm_error_release(&err);
        cache_index_free(ci);
}

static int count_fds(void)
{
        int n = 0;
        _cleanup_closedir_ DIR *d = opendir("/proc/self/fd");
        while (d && readdir(d))
                n++;
        return n;
}

int main(void)
{
        umask(022);
        int fds = count_fds();
        char t[] = "/tmp/hm-test-cache-XXXXXX";
        if (!mkdtemp(t))
                return 99;
        tmp_root = t;
        test_basic();
        test_default_location();
        test_lru();
        test_corrupt();
        test_crash_leftover();
        test_concurrent();
        tap_ok(count_fds() == fds, "no fd leaked (%d before, %d after)", fds, count_fds());
        rm_rf(t);
        return tap_done();
}
