/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The cache index (see cache.h).  The file:
 *
 *   hm-cache-index 1
 *   <backend> TAB <tag> TAB <snapshot> TAB <accessed_at> LF
 *   ...
 *
 * Lines are kept in recency order, least recently used first: a put or a
 * hit moves its entry to the end.  That order breaks ties between equal
 * accessed_at values (whole seconds), so eviction is exact LRU as long as
 * the clock does not go backwards, and deterministic when it does.
 *
 * Every call opens `<index>.lock`, takes flock() on it, reads the file,
 * applies its change and, if it changed anything, writes `<index>.tmp.<pid>`,
 * fsyncs it, renames it over the index and fsyncs the directory.  A reader
 * therefore sees either the old or the new file, never a torn one, so a
 * file that does not parse is reported as corrupt instead of being dropped.
 * The lock is held only inside a call; the handle keeps nothing open.
 */
#include "pipeline/cache.h"
#include "lib/strbuf.h"
#include "lib/util.h"

#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

#define INDEX_HEADER "hm-cache-index 1"
#define INDEX_MAX_BYTES (64u << 20)

struct cache_index {
        char *path;
        char *lock_path;
        char *dir;
        /*
         * LRU bumps from cache_index_get, not yet written.  A hit costs a shared
         * lock and a read; the bumps go out with the next locked rewrite (put,
         * evict, list) or at free.  A crash loses at most some bumps, which only
         * makes an eviction earlier: the index itself is never at risk.
         */
        struct cache_entry *touched;
        size_t n_touched;
};

/* The parsed file, in recency order (oldest first). */
struct entries {
        struct cache_entry *v;
        size_t n, alloc;
};

static void entries_release(struct entries *l)
{
        cache_entries_free(l->v, l->n);
        *l = (struct entries) { 0 };
}
#define _cleanup_entries_ _cleanup_(entries_release)

static void entry_clear(struct cache_entry *e)
{
        free(e->backend);
        free(e->tag);
        free(e->snapshot);
        *e = (struct cache_entry) { 0 };
}

void cache_entries_free(struct cache_entry *e, size_t n)
{
        for (size_t i = 0; i < n; i++)
                entry_clear(&e[i]);
        free(e);
}

static struct cache_entry *entries_append(struct entries *l)
{
        if (l->n == l->alloc) {
                l->alloc = l->alloc ? l->alloc * 2 : 16;
                l->v = xreallocarray(l->v, l->alloc, sizeof *l->v);
        }
        struct cache_entry *e = &l->v[l->n++];
        *e = (struct cache_entry) { 0 };
        return e;
}

static ssize_t entries_find(const struct entries *l, const char *backend, const char *tag)
{
        for (size_t i = 0; i < l->n; i++)
                if (!strcmp(l->v[i].backend, backend) && !strcmp(l->v[i].tag, tag))
                        return (ssize_t) i;
        return -1;
}

/* Remove v[i], shifting the rest down; the removed entry is moved to *ret or freed. */
static void entries_remove(struct entries *l, size_t i, struct cache_entry *ret)
{
        if (ret)
                *ret = l->v[i];
        else
                entry_clear(&l->v[i]);
        memmove(&l->v[i], &l->v[i + 1], (l->n - i - 1) * sizeof *l->v);
        l->n--;
}

/* Move v[i] to the end (most recently used). */
static void entries_touch(struct entries *l, size_t i, int64_t now)
{
        struct cache_entry e;
        entries_remove(l, i, &e);
        e.accessed_at = now;
        *entries_append(l) = e;
}

static int64_t now_unix(void)
{
        return now_realtime_ns() / 1000000000LL;
}

/* ---- locking ---- */

static int index_lock(const struct cache_index *ci, int op, int *ret_fd, hm_error_t *err)
{
        _cleanup_close_ int fd = open(ci->lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return hm_error_set(err, errno, "open '%s': %s", ci->lock_path, strerror(errno));
        while (flock(fd, op) < 0) {
                if (errno != EINTR)
                        return hm_error_set(err, errno, "lock '%s': %s", ci->lock_path, strerror(errno));
        }
        *ret_fd = TAKE_FD(fd);
        return 0;
}

/* ---- parsing ---- */

static int parse_error(const struct cache_index *ci, size_t line, const char *what, hm_error_t *err)
{
        return hm_error_set(err, EINVAL, "corrupt cache index '%s' line %zu: %s", ci->path, line, what);
}

static bool parse_int64(const char *s, int64_t *ret)
{
        if (!*s || (*s != '-' && (*s < '0' || *s > '9')))
                return false;
        char *end;
        errno = 0;
        long long v = strtoll(s, &end, 10);
        if (errno || *end)
                return false;
        *ret = v;
        return true;
}

/* Split a line in place into exactly n tab-separated fields. */
static bool split_fields(char *line, char **fields, size_t n)
{
        for (size_t i = 0; i < n; i++) {
                fields[i] = line;
                char *tab = strchr(line, '\t');
                if ((i + 1 < n) != (tab != NULL))
                        return false;
                if (tab) {
                        *tab = 0;
                        line = tab + 1;
                }
        }
        return true;
}

static int parse_line(const struct cache_index *ci, char *line, size_t lineno, struct entries *l,
                      hm_error_t *err)
{
        char *f[4];
        int64_t at;
        if (!split_fields(line, f, 4))
                return parse_error(ci, lineno, "expected 4 tab-separated fields", err);
        if (!*f[0] || !*f[1] || !*f[2])
                return parse_error(ci, lineno, "empty field", err);
        if (!parse_int64(f[3], &at))
                return parse_error(ci, lineno, "accessed_at is not an integer", err);
        if (entries_find(l, f[0], f[1]) >= 0)
                return parse_error(ci, lineno, "duplicate entry", err);
        struct cache_entry *e = entries_append(l);
        e->backend = xstrdup(f[0]);
        e->tag = xstrdup(f[1]);
        e->snapshot = xstrdup(f[2]);
        e->accessed_at = at;
        return 0;
}

static int parse_index(const struct cache_index *ci, char *buf, size_t len, struct entries *l,
                       hm_error_t *err)
{
        if (len == 0)
                return 0; /* touched by hand: an empty index */
        if (memchr(buf, 0, len))
                return parse_error(ci, 1, "contains a NUL byte", err);
        size_t lineno = 0;
        if (buf[len - 1] != '\n') {
                for (size_t i = 0; i < len; i++)
                        lineno += buf[i] == '\n';
                return parse_error(ci, lineno + 1, "line is not terminated", err);
        }
        for (char *p = buf, *nl; (nl = strchr(p, '\n')); p = nl + 1) {
                *nl = 0;
                lineno++;
                if (lineno == 1) {
                        if (strcmp(p, INDEX_HEADER) != 0)
                                return parse_error(ci, 1, "expected header '" INDEX_HEADER "'", err);
                        continue;
                }
                int r = parse_line(ci, p, lineno, l, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

/* Read the current index (missing file: empty).  Call with the lock held. */
static int index_load(const struct cache_index *ci, struct entries *ret, hm_error_t *err)
{
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        int r = read_file(ci->path, INDEX_MAX_BYTES, &buf, &len);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return hm_error_set(err, -r, "read '%s': %s", ci->path, strerror(-r));
        _cleanup_entries_ struct entries l = { 0 };
        r = parse_index(ci, buf, len, &l, err);
        if (r < 0)
                return r;
        *ret = l;
        l = (struct entries) { 0 };
        return 0;
}

/* ---- writing ---- */

static void serialize(const struct entries *l, struct strbuf *sb)
{
        strbuf_addstr(sb, INDEX_HEADER "\n");
        for (size_t i = 0; i < l->n; i++)
                strbuf_addf(sb, "%s\t%s\t%s\t%" PRId64 "\n", l->v[i].backend, l->v[i].tag,
                            l->v[i].snapshot, l->v[i].accessed_at);
}

static int fsync_dir(const char *dir, hm_error_t *err)
{
        _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0 || fsync(fd) < 0)
                return hm_error_set(err, errno, "sync '%s': %s", dir, strerror(errno));
        return 0;
}

static int write_tmp(const char *tmp, const struct strbuf *sb, hm_error_t *err)
{
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return hm_error_set(err, errno, "create '%s': %s", tmp, strerror(errno));
        int r = write_all(fd, sb->buf, sb->len);
        if (r == 0 && fsync(fd) < 0)
                r = -errno;
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r < 0)
                return hm_error_set(err, -r, "write '%s': %s", tmp, strerror(-r));
        return 0;
}

/* Replace the index atomically.  Call with the exclusive lock held. */
static int index_store(const struct cache_index *ci, const struct entries *l, hm_error_t *err)
{
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
        serialize(l, &sb);
        _cleanup_free_ char *tmp = xasprintf("%s.tmp.%d", ci->path, (int) getpid());
        int r = write_tmp(tmp, &sb, err);
        if (r >= 0 && rename(tmp, ci->path) < 0)
                r = hm_error_set(err, errno, "rename '%s' to '%s': %s", tmp, ci->path, strerror(errno));
        if (r < 0) {
                (void) unlink(tmp);
                return r;
        }
        return fsync_dir(ci->dir, err);
}

/*
 * A `.tmp.<pid>` file exists only while its writer holds the exclusive lock,
 * so any found by a holder of that lock was left by a crash.
 */
static void remove_stale_tmp(const struct cache_index *ci)
{
        _cleanup_closedir_ DIR *d = opendir(ci->dir);
        if (!d)
                return;
        const char *base = ci->path + strlen(ci->dir) + 1;
        _cleanup_free_ char *prefix = xasprintf("%s.tmp.", base);
        struct dirent *de;
        while ((de = readdir(d)))
                if (str_has_prefix(de->d_name, prefix))
                        (void) unlinkat(dirfd(d), de->d_name, 0);
}

/* ---- one locked transaction ---- */

/* Applies a change to the entries; returns 1 to store the result, 0 for no change, <0 error. */
typedef int (*index_change_fn)(struct entries *l, void *data, hm_error_t *err);

/* Apply the pending LRU bumps to l, in the order they happened; returns how many matched. */
static size_t apply_touches(struct cache_index *ci, struct entries *l)
{
        size_t n = 0;
        for (size_t i = 0; i < ci->n_touched; i++) {
                ssize_t j = entries_find(l, ci->touched[i].backend, ci->touched[i].tag);
                if (j >= 0) {
                        entries_touch(l, (size_t) j, ci->touched[i].accessed_at);
                        n++;
                }
        }
        return n;
}

static void clear_touches(struct cache_index *ci)
{
        cache_entries_free(ci->touched, ci->n_touched);
        ci->touched = NULL;
        ci->n_touched = 0;
}

/* Take the lock (LOCK_SH or LOCK_EX; released when *lock is closed) and load the entries. */
static int index_lock_load(struct cache_index *ci, int how, int *lock, struct entries *l, hm_error_t *err)
{
        int r = index_lock(ci, how, lock, err);
        return r < 0 ? r : index_load(ci, l, err);
}

static int index_update(struct cache_index *ci, index_change_fn fn, void *data, hm_error_t *err)
{
        _cleanup_close_ int lock = -1;
        _cleanup_entries_ struct entries l = { 0 };
        int r = index_lock_load(ci, LOCK_EX, &lock, &l, err);
        if (r < 0)
                return r;
        size_t touched = apply_touches(ci, &l);
        r = fn ? fn(&l, data, err) : 0;
        if (r < 0 || (r == 0 && !touched)) {
                if (r == 0)
                        clear_touches(ci);
                return r;
        }
        r = index_store(ci, &l, err);
        if (r >= 0)
                clear_touches(ci);
        return r;
}

static int validate_field(const char *what, const char *s, hm_error_t *err)
{
        if (!s || !*s)
                return hm_error_set(err, EINVAL, "cache %s is empty", what);
        if (strpbrk(s, "\t\n\r"))
                return hm_error_set(err, EINVAL, "cache %s '%s' contains a tab or newline", what, s);
        return 0;
}

/* ---- public API ---- */

static char *default_index_path(hm_error_t *err)
{
        const char *xdg = getenv("XDG_CACHE_HOME");
        if (xdg && *xdg == '/')
                return xasprintf("%s/hm/index", xdg);
        const char *home = getenv("HOME");
        if (!home || *home != '/') {
                hm_error_set(err, ENOENT, "cannot locate the cache index: neither XDG_CACHE_HOME nor HOME is an absolute path");
                return NULL;
        }
        return xasprintf("%s/.cache/hm/index", home);
}

static void cache_index_freep(struct cache_index **ci) { cache_index_free(*ci); }

int cache_index_open(const char *path, struct cache_index **ret, hm_error_t *err)
{
        _cleanup_(cache_index_freep) struct cache_index *ci = xzalloc(sizeof *ci);
        ci->path = path ? xstrdup(path) : default_index_path(err);
        if (!ci->path)
                return -1;
        _cleanup_free_ char *copy = xstrdup(ci->path);
        ci->dir = xstrdup(dirname(copy));
        ci->lock_path = xasprintf("%s.lock", ci->path);
        int r = mkdir_p(ci->dir, 0700);
        if (r < 0)
                return hm_error_set(err, -r, "create directory '%s': %s", ci->dir, strerror(-r));

        /* Fail early on a corrupt file, and clear what a crashed writer left. */
        _cleanup_close_ int lock = -1;
        r = index_lock(ci, LOCK_EX, &lock, err);
        if (r < 0)
                return r;
        remove_stale_tmp(ci);
        _cleanup_entries_ struct entries l = { 0 };
        r = index_load(ci, &l, err);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(ci);
        return 0;
}

void cache_index_free(struct cache_index *ci)
{
        if (!ci)
                return;
        if (ci->n_touched) {
                hm_error_t e = NULL;
                (void) index_update(ci, NULL, NULL, &e); /* best effort: only LRU order is at stake */
                hm_error_release(&e);
        }
        clear_touches(ci);
        free(ci->path);
        free(ci->lock_path);
        free(ci->dir);
        free(ci);
}

struct get_args {
        const char *backend, *tag;
        char *snapshot;
};

int cache_index_get(struct cache_index *ci, const char *backend, const char *tag, char **ret_snapshot,
                    hm_error_t *err)
{
        struct get_args a = { .backend = backend, .tag = tag };
        _cleanup_close_ int lock = -1;
        _cleanup_entries_ struct entries l = { 0 };
        int r = index_lock_load(ci, LOCK_SH, &lock, &l, err);
        if (r < 0)
                return r;
        ssize_t i = entries_find(&l, backend, tag);
        if (i < 0)
                return 0;
        a.snapshot = xstrdup(l.v[i].snapshot);
        ci->touched = xreallocarray(ci->touched, ci->n_touched + 1, sizeof *ci->touched);
        ci->touched[ci->n_touched++] = (struct cache_entry){ .backend = xstrdup(backend), .tag = xstrdup(tag),
                                                             .snapshot = xstrdup(a.snapshot),
                                                             .accessed_at = now_unix() };
        if (ret_snapshot)
                *ret_snapshot = a.snapshot;
        else
                free(a.snapshot);
        return 1;
}

struct put_args {
        const char *backend, *tag, *snapshot;
};

static int do_put(struct entries *l, void *data, hm_error_t *err)
{
        struct put_args *a = data;
        ssize_t i = entries_find(l, a->backend, a->tag);
        if (i >= 0)
                entries_remove(l, (size_t) i, NULL);
        struct cache_entry *e = entries_append(l);
        e->backend = xstrdup(a->backend);
        e->tag = xstrdup(a->tag);
        e->snapshot = xstrdup(a->snapshot);
        e->accessed_at = now_unix();
        return 1;
}

int cache_index_put(struct cache_index *ci, const char *backend, const char *tag, const char *snapshot,
                    hm_error_t *err)
{
        int r;
        if ((r = validate_field("backend", backend, err)) < 0 || (r = validate_field("tag", tag, err)) < 0 ||
            (r = validate_field("snapshot", snapshot, err)) < 0)
                return r;
        struct put_args a = { backend, tag, snapshot };
        return index_update(ci, do_put, &a, err);
}

static int do_remove(struct entries *l, void *data, hm_error_t *err)
{
        const struct put_args *a = data;
        ssize_t i = entries_find(l, a->backend, a->tag);
        if (i < 0)
                return 0;
        entries_remove(l, (size_t) i, NULL);
        return 1;
}

int cache_index_remove(struct cache_index *ci, const char *backend, const char *tag, hm_error_t *err)
{
        struct put_args a = { backend, tag, NULL };
        return index_update(ci, do_remove, &a, err);
}

struct evict_args {
        const char *backend;
        size_t capacity;
        struct entries *out;
};

/* Oldest first: by accessed_at, then by position in the file (earlier = used earlier). */
static bool older(const struct cache_entry *a, size_t ia, const struct cache_entry *b, size_t ib)
{
        return a->accessed_at != b->accessed_at ? a->accessed_at < b->accessed_at : ia < ib;
}

/* Index of the least recently used entry of `backend`, or -1. */
static ssize_t oldest_of(const struct entries *l, const char *backend)
{
        ssize_t best = -1;
        for (size_t i = 0; i < l->n; i++) {
                if (strcmp(l->v[i].backend, backend) != 0)
                        continue;
                if (best < 0 || older(&l->v[i], i, &l->v[best], (size_t) best))
                        best = (ssize_t) i;
        }
        return best;
}

static int do_evict(struct entries *l, void *data, hm_error_t *err)
{
        struct evict_args *a = data;
        size_t n = 0;
        for (size_t i = 0; i < l->n; i++)
                n += !strcmp(l->v[i].backend, a->backend);
        if (n <= a->capacity)
                return 0;
        /* O(n * evicted); evictions are a handful per run */
        for (; n > a->capacity; n--) {
                ssize_t i = oldest_of(l, a->backend);
                entries_remove(l, (size_t) i, entries_append(a->out));
        }
        return 1;
}

int cache_index_evict(struct cache_index *ci, const char *backend, size_t capacity,
                      struct cache_entry **ret, size_t *ret_n, hm_error_t *err)
{
        _cleanup_entries_ struct entries out = { 0 };
        struct evict_args a = { .backend = backend, .capacity = capacity, .out = &out };
        int r = index_update(ci, do_evict, &a, err);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(out.v);
        *ret_n = out.n;
        out.n = out.alloc = 0;
        return 0;
}

int cache_index_list(struct cache_index *ci, struct cache_entry **ret, size_t *ret_n, hm_error_t *err)
{
        int r;
        if (ci->n_touched && (r = index_update(ci, NULL, NULL, err)) < 0)
                return r;
        _cleanup_close_ int lock = -1;
        _cleanup_entries_ struct entries l = { 0 };
        r = index_lock_load(ci, LOCK_SH, &lock, &l, err);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(l.v);
        *ret_n = l.n;
        l.n = l.alloc = 0;
        return 0;
}

char *cache_index_commit_lock_path(const struct cache_index *ci, const char *backend, const char *tag)
{
        /*
         * FNV-1a over "backend TAB tag", folded into 256 slots: the lock files
         * are never unlinked (that races with flock), so their number must be
         * bounded; a shared slot only makes two tags' commits take turns.
         */
        uint64_t h = 1469598103934665603ULL;
        for (int part = 0; part < 2; part++) {
                for (const unsigned char *p = (const unsigned char *) (part ? tag : backend); *p; p++)
                        h = (h ^ *p) * 1099511628211ULL;
                h = (h ^ '\t') * 1099511628211ULL;
        }
        return xasprintf("%s/commit-locks/%02x", ci->dir, (unsigned) ((h ^ (h >> 8) ^ (h >> 16) ^ (h >> 32)) & 0xff));
}

int cache_commit_lock(const char *path, int *ret_fd, hm_error_t *err)
{
        _cleanup_free_ char *copy = xstrdup(path);
        const char *dir = dirname(copy);
        int r = mkdir_p(dir, 0700);
        if (r < 0)
                return hm_error_set(err, -r, "create directory '%s': %s", dir, strerror(-r));
        _cleanup_close_ int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return hm_error_set(err, errno, "open '%s': %s", path, strerror(errno));
        while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
                if (errno == EWOULDBLOCK)
                        return 0;
                if (errno != EINTR)
                        return hm_error_set(err, errno, "lock '%s': %s", path, strerror(errno));
        }
        *ret_fd = TAKE_FD(fd);
        return 1;
}

int64_t cache_test_commit_pause_ms(void)
{
        const char *v = getenv("HM_TEST_COMMIT_PAUSE_MS");
        if (!v || !*v)
                return 0;
        char *end = NULL;
        long long ms = strtoll(v, &end, 10);
        return end && !*end && ms > 0 && ms < 600000 ? ms : 0;
}
