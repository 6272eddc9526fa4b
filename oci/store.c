/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The layer store: layout and rules in oci/store.h.  Secure layer unpacking
 * and the merged-view copy (flatten) live here too, since both must agree
 * with the store on the whiteout and opaque-dir forms.
 */
#include "oci/json-util.h"
#include "oci/owner.h"
#include "oci/store.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <yajl/yajl_gen.h>
#include <yajl/yajl_tree.h>

#include "lib/handles.h"
#include "lib/sha256.h"
#include "lib/strbuf.h"
#include "lib/util.h"

struct oci_store {
        char *path;
        char xattr_prefix[24];
        uint64_t size_limit;
        int lock_fd;
        unsigned lock_depth;
};

/* ---- small helpers ---- */

uint64_t oci_proc_starttime(int pid)
{
        char p[64];
        /* 0: this process, through /proc/self (right even when /proc is another pid namespace's) */
        if (pid == 0)
                snprintf(p, sizeof p, "/proc/self/stat");
        else
                snprintf(p, sizeof p, "/proc/%d/stat", pid);
        _cleanup_free_ char *buf = NULL;
        if (read_file(p, 0, &buf, NULL) < 0)
                return 0;
        /* comm may hold spaces and parens: fields restart after the last ')' */
        char *s = strrchr(buf, ')');
        if (!s)
                return 0;
        s++;
        /* a zombie has exited: its owner role is over (a container's pid 1 that reaps nobody keeps it) */
        if (s[0] == ' ' && (s[1] == 'Z' || s[1] == 'X'))
                return 0;
        /* now at field 3 ("state"); field 22 is 19 fields further */
        for (int field = 2; field < 21 && s; field++)
                s = strchr(s + 1, ' ');
        return s ? strtoull(s + 1, NULL, 10) : 0;
}

static uint64_t self_starttime(void)
{
        static uint64_t cached;
        static int cached_pid;
        if (cached_pid != getpid()) {
                cached_pid = getpid();
                /* /proc/self: right even when /proc is another pid namespace's */
                cached = oci_proc_starttime(0);
        }
        return cached;
}

void oci_store_random_id(char ret[17])
{
        static const char hex[] = "0123456789abcdef";
        uint8_t b[8];
        if (getrandom(b, sizeof b, 0) != sizeof b) {
                uint64_t t = (uint64_t) now_realtime_ns() ^ ((uint64_t) getpid() << 32);
                memcpy(b, &t, sizeof b);
        }
        for (int i = 0; i < 8; i++) {
                ret[2 * i] = hex[b[i] >> 4];
                ret[2 * i + 1] = hex[b[i] & 15];
        }
        ret[16] = 0;
}

static bool valid_id(const char *id)
{
        if (!strcmp(id, OCI_HOST_IMAGE))
                return true;
        if (strlen(id) != 16)
                return false;
        for (const char *p = id; *p; p++)
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
                        return false;
        return true;
}

/* Percent-escape a name into one path component. */
static char *escape_name(const char *name)
{
        struct strbuf sb = STRBUF_INIT;
        for (const unsigned char *p = (const unsigned char *) name; *p; p++) {
                if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                    *p == '-' || *p == '_' || (*p == '.' && p != (const unsigned char *) name))
                        strbuf_addch(&sb, (char) *p);
                else
                        strbuf_addf(&sb, "%%%02X", *p);
        }
        return strbuf_detach(&sb, NULL);
}

/*
 * durable: fsync before the rename.  Only what must survive a crash pays it:
 * the meta of an ephemeral layer is garbage after a crash anyway (a missing
 * or empty meta makes the layer unreferenced, and the collection or `hm reap`
 * removes it).
 */
static int write_atomic_opt(struct oci_store *s, const char *dest, const void *data, size_t n, bool durable,
                            hm_error_t *err)
{
        char id[17];
        oci_store_random_id(id);
        _cleanup_free_ char *tmp = xasprintf("%s/tmp/file-%d-%llu-p%llu-%s", s->path, getpid(),
                                             (unsigned long long) self_starttime(),
                                             (unsigned long long) owner_self_pidns(), id);
        _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
                return hm_error_set(err, errno, "create '%s': %s", tmp, strerror(errno));
        int r = write_all(fd, data, n);
        if (r >= 0 && durable && fsync(fd) < 0)
                r = -errno;
        if (r >= 0 && rename(tmp, dest) < 0)
                r = -errno;
        if (r < 0) {
                unlink(tmp);
                return hm_error_set(err, -r, "write '%s': %s", dest, strerror(-r));
        }
        return 0;
}

static int write_atomic(struct oci_store *s, const char *dest, const void *data, size_t n, hm_error_t *err)
{
        return write_atomic_opt(s, dest, data, n, true, err);
}

/* ---- open, paths, lock ---- */

char *oci_store_default_path(void)
{
        const char *e = getenv("HM_STORE");
        if (e && *e)
                return xstrdup(e);
        e = getenv("XDG_DATA_HOME");
        if (e && *e)
                return xasprintf("%s/hm", e);
        if (geteuid() == 0)
                return xstrdup("/var/lib/hm");
        e = getenv("HOME");
        return xasprintf("%s/.local/share/hm", e && *e ? e : "/");
}

const char *oci_store_path(const struct oci_store *s) { return s->path; }
const char *oci_store_xattr_prefix(const struct oci_store *s) { return s->xattr_prefix; }
void oci_store_set_size_limit(struct oci_store *s, uint64_t bytes) { s->size_limit = bytes; }
uint64_t oci_store_size_limit(const struct oci_store *s) { return s->size_limit; }

/* Read or create the format file, which fixes the store's opaque-dir xattr form. */
static int store_format(struct oci_store *s, hm_error_t *err)
{
        _cleanup_free_ char *fmt = xasprintf("%s/format", s->path);
        _cleanup_free_ char *buf = NULL;
        if (read_file(fmt, 4096, &buf, NULL) == 0) {
                char prefix[24] = "";
                if (sscanf(buf, "hm-store 1 %23s", prefix) != 1 ||
                    (strcmp(prefix, "trusted.overlay.") && strcmp(prefix, "user.overlay.")))
                        return hm_error_set(err, EINVAL, "'%s': not an hm store format", fmt);
                snprintf(s->xattr_prefix, sizeof s->xattr_prefix, "%s", prefix);
                return 0;
        }
        snprintf(s->xattr_prefix, sizeof s->xattr_prefix, "%s",
                 hm_privileged() ? "trusted.overlay." : "user.overlay.");
        _cleanup_free_ char *line = xasprintf("hm-store 1 %s\n", s->xattr_prefix);
        return write_atomic(s, fmt, line, strlen(line), err);
}

void oci_store_free(struct oci_store *s)
{
        if (!s)
                return;
        safe_close(s->lock_fd);
        free(s->path);
        free(s);
}

int oci_store_open(const char *path, struct oci_store **ret, hm_error_t *err)
{
        _cleanup_oci_store_ struct oci_store *s = xzalloc(sizeof *s);
        s->lock_fd = -1;
        s->path = path ? xstrdup(path) : oci_store_default_path();
        s->size_limit = OCI_STORE_DEFAULT_SIZE_LIMIT;
        static const char *const dirs[] = { "", "/blobs/sha256", "/layers", "/images", "/tags", "/tmp" };
        for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
                _cleanup_free_ char *d = xasprintf("%s%s", s->path, dirs[i]);
                int r = mkdir_p(d, 0700);
                if (r < 0)
                        return hm_error_set(err, -r, "store: create '%s': %s", d, strerror(-r));
        }
        _cleanup_free_ char *lock = xasprintf("%s/lock", s->path);
        s->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
        if (s->lock_fd < 0)
                return hm_error_set(err, errno, "store: open '%s': %s", lock, strerror(errno));
        int r = store_format(s, err);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(s);
        return 0;
}

int oci_store_lock(struct oci_store *s, hm_error_t *err)
{
        if (s->lock_depth++ > 0)
                return 0;
        while (flock(s->lock_fd, LOCK_EX) < 0) {
                if (errno == EINTR)
                        continue;
                s->lock_depth = 0;
                return hm_error_set(err, errno, "store '%s': lock: %s", s->path, strerror(errno));
        }
        return 0;
}

int oci_store_trylock(struct oci_store *s, hm_error_t *err)
{
        if (s->lock_depth > 0) {
                s->lock_depth++;
                return 1;
        }
        while (flock(s->lock_fd, LOCK_EX | LOCK_NB) < 0) {
                if (errno == EINTR)
                        continue;
                if (errno == EWOULDBLOCK)
                        return 0;
                return hm_error_set(err, errno, "store '%s': lock: %s", s->path, strerror(errno));
        }
        s->lock_depth = 1;
        return 1;
}

void oci_store_unlock(struct oci_store *s)
{
        if (s->lock_depth > 0 && --s->lock_depth == 0)
                (void) flock(s->lock_fd, LOCK_UN);
}

static void store_unlockp(struct oci_store **s)
{
        if (*s)
                oci_store_unlock(*s);
}
#define _cleanup_unlock_ __attribute__((cleanup(store_unlockp)))

int oci_store_mkdtemp(struct oci_store *s, const char *kind, char **ret, hm_error_t *err)
{
        char id[17];
        oci_store_random_id(id);
        _cleanup_free_ char *d = xasprintf("%s/tmp/%s-%d-%llu-p%llu-%s", s->path, kind, getpid(),
                                           (unsigned long long) self_starttime(),
                                           (unsigned long long) owner_self_pidns(), id);
        if (mkdir(d, 0700) < 0)
                return hm_error_set(err, errno, "create '%s': %s", d, strerror(errno));
        *ret = TAKE_PTR(d);
        return 0;
}

/* ---- layer metadata ---- */

char *oci_store_layer_path(const struct oci_store *s, const char *id)
{
        if (!strcmp(id, OCI_HOST_IMAGE))
                return xstrdup("/");
        return xasprintf("%s/layers/%s", s->path, id);
}

bool oci_store_has_layer(const struct oci_store *s, const char *id)
{
        if (!valid_id(id))
                return false;
        if (!strcmp(id, OCI_HOST_IMAGE))
                return true;
        _cleanup_free_ char *meta = xasprintf("%s/layers/%s.meta", s->path, id);
        _cleanup_free_ char *dir = xasprintf("%s/layers/%s", s->path, id);
        struct stat st;
        return access(meta, F_OK) == 0 && lstat(dir, &st) == 0 && S_ISDIR(st.st_mode);
}

void oci_layer_meta_free(struct oci_layer_meta *m)
{
        if (!m)
                return;
        free(m->diff_id);
        free(m->parent);
        strv_free(m->lowers);
        free(m->run_id);
        free(m);
}
static inline void oci_layer_meta_freep(struct oci_layer_meta **m) { oci_layer_meta_free(*m); }
#define _cleanup_meta_ __attribute__((cleanup(oci_layer_meta_freep)))

static const char *const kind_names[] = { "image", "snapshot", "workspace" };

static char *meta_format(const struct oci_layer_meta *m)
{
        struct strbuf sb = STRBUF_INIT;
        strbuf_addf(&sb, "kind %s\ncreated %lld\n", kind_names[m->kind], (long long) m->created);
        if (m->diff_id)
                strbuf_addf(&sb, "diff_id %s\n", m->diff_id);
        if (m->parent)
                strbuf_addf(&sb, "parent %s\n", m->parent);
        strbuf_addstr(&sb, "lowers");
        for (size_t i = 0; m->lowers && m->lowers[i]; i++)
                strbuf_addf(&sb, " %s", m->lowers[i]);
        strbuf_addch(&sb, '\n');
        if (m->run_id)
                strbuf_addf(&sb, "run %s\n", m->run_id);
        if (m->owner_pid) {
                /* older hm reads the first two fields only */
                bool self = m->owner_pid == getpid() && !m->owner_pidns;
                unsigned long long ns = self ? owner_self_pidns() : m->owner_pidns;
                const char *boot = self ? owner_self_boot() : m->owner_boot;
                strbuf_addf(&sb, "owner %d %llu", m->owner_pid, (unsigned long long) m->owner_start);
                if (ns)
                        strbuf_addf(&sb, " %llu %s", ns, boot);
                strbuf_addch(&sb, '\n');
        }
        strbuf_addf(&sb, "ephemeral %d\ndropped %d\nsize %llu\n", m->ephemeral, m->dropped,
                    (unsigned long long) m->size);
        return strbuf_detach(&sb, NULL);
}

static void meta_parse_line(struct oci_layer_meta *m, const char *key, char *val)
{
        if (!strcmp(key, "kind")) {
                for (size_t k = 0; k < ARRAY_SIZE(kind_names); k++)
                        if (!strcmp(val, kind_names[k]))
                                m->kind = (enum oci_layer_kind) k;
        } else if (!strcmp(key, "created")) {
                m->created = strtoll(val, NULL, 10);
        } else if (!strcmp(key, "diff_id")) {
                m->diff_id = xstrdup(val);
        } else if (!strcmp(key, "parent")) {
                m->parent = xstrdup(val);
        } else if (!strcmp(key, "lowers")) {
                /* sized once: strv_push per id was quadratic in the chain depth */
                size_t n = 1;
                for (const char *c = val; *c; c++)
                        n += *c == ' ';
                strv_free(m->lowers);
                m->lowers = xcalloc(n + 1, sizeof(char *));
                size_t i = 0;
                char *save = NULL;
                for (char *t = strtok_r(val, " ", &save); t && i < n; t = strtok_r(NULL, " ", &save))
                        m->lowers[i++] = xstrdup(t);
        } else if (!strcmp(key, "run")) {
                m->run_id = xstrdup(val);
        } else if (!strcmp(key, "owner")) {
                unsigned long long start = 0, ns = 0;
                char boot[40] = "";
                int n = sscanf(val, "%d %llu %llu %39[0-9a-f-]", &m->owner_pid, &start, &ns, boot);
                if (n >= 2)
                        m->owner_start = start;
                if (n >= 3)
                        m->owner_pidns = ns;
                if (n >= 4)
                        snprintf(m->owner_boot, sizeof m->owner_boot, "%s", boot);
        } else if (!strcmp(key, "ephemeral")) {
                m->ephemeral = !strcmp(val, "1");
        } else if (!strcmp(key, "dropped")) {
                m->dropped = !strcmp(val, "1");
        } else if (!strcmp(key, "size")) {
                m->size = strtoull(val, NULL, 10);
        }
}

int oci_store_layer_meta(struct oci_store *s, const char *id, struct oci_layer_meta **ret, hm_error_t *err)
{
        if (!valid_id(id) || !strcmp(id, OCI_HOST_IMAGE))
                return hm_error_set(err, ENOENT, "layer '%s': not a layer id", id);
        _cleanup_free_ char *p = xasprintf("%s/layers/%s.meta", s->path, id);
        _cleanup_free_ char *buf = NULL;
        int r = read_file(p, 1 << 20, &buf, NULL);
        if (r < 0)
                return hm_error_set(err, -r, "layer '%s': read '%s': %s", id, p, strerror(-r));
        _cleanup_meta_ struct oci_layer_meta *m = xzalloc(sizeof *m);
        snprintf(m->id, sizeof m->id, "%s", id);
        char *save = NULL;
        for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                char *sp = strchr(line, ' ');
                if (!sp) {
                        if (!strcmp(line, "lowers"))
                                continue;
                        return hm_error_set(err, EINVAL, "'%s': bad line '%s'", p, line);
                }
                *sp = 0;
                meta_parse_line(m, line, sp + 1);
        }
        for (size_t i = 0; m->lowers && m->lowers[i]; i++)
                if (!valid_id(m->lowers[i]))
                        return hm_error_set(err, EINVAL, "'%s': bad lower id '%s'", p, m->lowers[i]);
        *ret = TAKE_PTR(m);
        return 0;
}

static int meta_write(struct oci_store *s, const struct oci_layer_meta *m, hm_error_t *err)
{
        _cleanup_free_ char *text = meta_format(m);
        _cleanup_free_ char *p = xasprintf("%s/layers/%s.meta", s->path, m->id);
        return write_atomic_opt(s, p, text, strlen(text), !m->ephemeral && !m->dropped, err);
}

int oci_store_add_layer_locked(struct oci_store *s, const char *tmpdir, const struct oci_layer_meta *m,
                               hm_error_t *err)
{
        if (oci_store_has_layer(s, m->id)) {
                (void) rm_rf(tmpdir);
                return 0;
        }
        _cleanup_free_ char *dest = oci_store_layer_path(s, m->id);
        /* a dir without meta is the leftover of a crash between the two renames */
        (void) rm_rf(dest);
        if (rename(tmpdir, dest) < 0)
                return hm_error_set(err, errno, "rename '%s' to '%s': %s", tmpdir, dest, strerror(errno));
        int r = meta_write(s, m, err);
        if (r < 0) /* (ENOSPC) without its meta the layer does not exist: give its space back now */
                (void) rm_rf(dest);
        return r;
}

/* ---- digests and secure unpacking ---- */

struct pread_src {
        int fd;
        off_t off;
        char buf[128 * 1024];
};

static la_ssize_t pread_cb(struct archive *a, void *data, const void **buf)
{
        struct pread_src *p = data;
        for (;;) {
                ssize_t n = pread(p->fd, p->buf, sizeof p->buf, p->off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0) {
                        archive_set_error(a, errno, "read: %s", strerror(errno));
                        return -1;
                }
                p->off += n;
                *buf = p->buf;
                return n;
        }
}

static int open_archive(struct archive *a, struct pread_src *src, int fd)
{
        src->fd = fd;
        src->off = 0;
        archive_read_set_read_callback(a, pread_cb);
        archive_read_set_callback_data(a, src);
        return archive_read_open1(a);
}

int oci_digest_fd(int fd, bool decompress, uint64_t limit, char ret_hex[65], hm_error_t *err)
{
        struct sha256 h;
        sha256_init(&h);
        _cleanup_free_ struct pread_src *src = xmalloc(sizeof *src);
        uint64_t total = 0;
        if (!decompress) {
                for (off_t off = 0;;) {
                        ssize_t n = pread(fd, src->buf, sizeof src->buf, off);
                        if (n < 0 && errno == EINTR)
                                continue;
                        if (n < 0)
                                return hm_error_set(err, errno, "read: %s", strerror(errno));
                        if (n == 0)
                                break;
                        sha256_update(&h, src->buf, (size_t) n);
                        off += n;
                }
                sha256_final_hex(&h, ret_hex);
                return 0;
        }
        _cleanup_archive_read_ struct archive *a = archive_read_new();
        archive_read_support_filter_all(a);
        archive_read_support_format_raw(a);
        archive_read_support_format_empty(a);
        if (open_archive(a, src, fd) != ARCHIVE_OK)
                return hm_error_set(err, archive_errno(a), "decompress: %s", archive_error_string(a));
        struct archive_entry *e;
        int r = archive_read_next_header(a, &e);
        if (r == ARCHIVE_OK) {
                char buf[65536];
                la_ssize_t n;
                while ((n = archive_read_data(a, buf, sizeof buf)) > 0) {
                        total += (uint64_t) n;
                        if (total > limit)
                                return hm_error_set(err, EFBIG, "uncompressed size exceeds the limit of %llu bytes",
                                                    (unsigned long long) limit);
                        sha256_update(&h, buf, (size_t) n);
                }
                if (n < 0)
                        return hm_error_set(err, archive_errno(a), "decompress: %s", archive_error_string(a));
        } else if (r != ARCHIVE_EOF) {
                return hm_error_set(err, archive_errno(a), "decompress: %s", archive_error_string(a));
        }
        sha256_final_hex(&h, ret_hex);
        return 0;
}

/* Normalise an entry path: 1 for the root itself, 0 ok, <0 for an escape. */
static int clean_path(const char *in, char **ret)
{
        if (in[0] == '/')
                return -EINVAL;
        struct strbuf sb = STRBUF_INIT;
        _cleanup_free_ char *copy = xstrdup(in);
        char *save = NULL;
        for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
                if (!strcmp(c, "."))
                        continue;
                if (!strcmp(c, "..")) {
                        strbuf_release(&sb);
                        return -EINVAL;
                }
                if (sb.len)
                        strbuf_addch(&sb, '/');
                strbuf_addstr(&sb, c);
        }
        if (!sb.len) {
                strbuf_release(&sb);
                return 1;
        }
        *ret = strbuf_detach(&sb, NULL);
        return 0;
}

/*
 * Open directory `rel` beneath rootfd without following any symlink, creating
 * missing components when `create`.  Returns an fd or -errno.
 */
static int open_dir_beneath(int rootfd, const char *rel, bool create)
{
        int fd = fcntl(rootfd, F_DUPFD_CLOEXEC, 3);
        if (fd < 0)
                return -errno;
        _cleanup_free_ char *copy = xstrdup(rel);
        char *save = NULL;
        for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
                int sub = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (sub < 0 && errno == ENOENT && create) {
                        if (mkdirat(fd, c, 0755) < 0 && errno != EEXIST) {
                                int e = -errno;
                                close(fd);
                                return e;
                        }
                        sub = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                }
                int e = -errno;
                close(fd);
                if (sub < 0)
                        return e;
                fd = sub;
        }
        return fd;
}

struct unpacker {
        struct archive *w;
        const char *dir; /* the layer dir, for messages */
        int rootfd;
        const char *prefix;
        uint64_t limit;
        bool root;
        struct oci_unpack_stats st;
};

static int apply_whiteout(struct unpacker *u, const char *path, const char *base, hm_error_t *err)
{
        size_t dlen = (size_t) (base - path);
        _cleanup_free_ char *dir = xstrndup(path, dlen ? dlen - 1 : 0);
        _cleanup_close_ int dfd = open_dir_beneath(u->rootfd, dir, true);
        if (dfd < 0)
                return hm_error_set(err, -dfd, "layer entry '%s': parent: %s", path, strerror(-dfd));
        if (!strcmp(base, ".wh..wh..opq")) {
                _cleanup_free_ char *name = xasprintf("%sopaque", u->prefix);
                if (fsetxattr(dfd, name, "y", 1, 0) < 0)
                        return hm_error_set(err, errno, "layer entry '%s': set %s: %s", path, name,
                                            strerror(errno));
                u->st.opaque_dirs++;
                return 0;
        }
        const char *victim = base + 4;
        if (!*victim || !strcmp(victim, ".") || !strcmp(victim, ".."))
                return hm_error_set(err, EINVAL, "layer entry '%s': bad whiteout", path);
        (void) unlinkat(dfd, victim, 0);
        if (mknodat(dfd, victim, S_IFCHR | 0, makedev(0, 0)) < 0)
                return hm_error_set(err, errno, "layer entry '%s': create whiteout: %s", path, strerror(errno));
        u->st.whiteouts++;
        return 0;
}

/* Drop overlay xattrs a tar carries: they could forge opaqueness or redirects. */
static void filter_xattrs(struct archive_entry *e)
{
        if (archive_entry_xattr_reset(e) == 0)
                return;
        struct kept { char *name; void *val; size_t n; } *kept = NULL;
        size_t n_kept = 0, n_all = 0;
        const char *name;
        const void *val;
        size_t sz;
        while (archive_entry_xattr_next(e, &name, &val, &sz) == ARCHIVE_OK) {
                n_all++;
                if (strstr(name, "overlay."))
                        continue;
                kept = xreallocarray(kept, n_kept + 1, sizeof *kept);
                kept[n_kept].name = xstrdup(name);
                kept[n_kept].val = xmalloc(sz);
                memcpy(kept[n_kept].val, val, sz);
                kept[n_kept++].n = sz;
        }
        if (n_kept != n_all) {
                archive_entry_xattr_clear(e);
                for (size_t i = 0; i < n_kept; i++)
                        archive_entry_xattr_add_entry(e, kept[i].name, kept[i].val, kept[i].n);
        }
        for (size_t i = 0; i < n_kept; i++) {
                free(kept[i].name);
                free(kept[i].val);
        }
        free(kept);
}

static int check_hardlink(struct unpacker *u, struct archive_entry *e, const char *path, hm_error_t *err)
{
        const char *hl = archive_entry_hardlink(e);
        if (!hl)
                return 0;
        _cleanup_free_ char *target = NULL;
        if (clean_path(hl, &target) != 0)
                return hm_error_set(err, EPERM, "layer entry '%s': hardlink target '%s' escapes the layer", path, hl);
        char *slash = strrchr(target, '/');
        _cleanup_free_ char *dir = xstrndup(target, slash ? (size_t) (slash - target) : 0);
        _cleanup_close_ int dfd = open_dir_beneath(u->rootfd, dir, false);
        if (dfd < 0)
                return hm_error_set(err, EPERM, "layer entry '%s': hardlink target '%s' is not inside the layer",
                                    path, hl);
        archive_entry_set_hardlink(e, target);
        return 0;
}

/* Refuse an entry below a symlink or a non-directory (libarchive would replace the link). */
static int check_parent(struct unpacker *u, const char *path, hm_error_t *err)
{
        const char *slash = strrchr(path, '/');
        if (!slash)
                return 0;
        _cleanup_free_ char *dir = xstrndup(path, (size_t) (slash - path));
        int fd = open_dir_beneath(u->rootfd, dir, false);
        if (fd >= 0) {
                close(fd);
                return 0;
        }
        if (fd == -ENOENT)
                return 0; /* created as a plain directory */
        return hm_error_set(err, EPERM, "layer entry '%s': refusing to extract through a symlink or non-directory",
                            path);
}

static int copy_data(struct unpacker *u, struct archive *a, const char *path, const char *clean, hm_error_t *err)
{
        const void *buf;
        size_t n;
        la_int64_t off;
        int r;
        /* libarchive reports a failed write(2) (ENOSPC, EIO) as a mere ARCHIVE_WARN: any warning fails */
        while ((r = archive_read_data_block(a, &buf, &n, &off)) == ARCHIVE_OK)
                if (archive_write_data_block(u->w, buf, n, off) < ARCHIVE_OK) {
                        int e = archive_errno(u->w) ? archive_errno(u->w) : EIO;
                        return hm_error_set(err, e, "layer entry '%s': write '%s/%s': %s", path, u->dir, clean,
                                            strerror(e));
                }
        if (r != ARCHIVE_EOF)
                return hm_error_set(err, archive_errno(a), "layer entry '%s': %s", path, archive_error_string(a));
        return 0;
}

static int unpack_entry(struct unpacker *u, struct archive *a, struct archive_entry *e, hm_error_t *err)
{
        const char *raw = archive_entry_pathname(e);
        if (!raw)
                return hm_error_set(err, EINVAL, "layer entry without a name");
        _cleanup_free_ char *path = NULL;
        int c = clean_path(raw, &path);
        if (c < 0)
                return hm_error_set(err, EPERM, "layer entry '%s': path escapes the layer", raw);
        if (c > 0)
                return 0; /* "./" itself: the layer dir already exists */
        u->st.entries++;
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        if (str_has_prefix(base, ".wh."))
                return apply_whiteout(u, path, base, err);
        mode_t type = archive_entry_filetype(e);
        if ((type == AE_IFCHR || type == AE_IFBLK) && !u->root) {
                u->st.skipped_devices++;
                return 0;
        }
        if (check_parent(u, path, err) < 0 || check_hardlink(u, e, path, err) < 0)
                return -1;
        if (type == AE_IFREG && !archive_entry_hardlink(e)) {
                u->st.bytes += (uint64_t) archive_entry_size(e);
                if (u->st.bytes > u->limit)
                        return hm_error_set(err, EFBIG, "layer exceeds the size limit of %llu bytes",
                                            (unsigned long long) u->limit);
        }
        if (!u->root)
                archive_entry_set_perm(e, archive_entry_perm(e) & ~(mode_t) (S_ISUID | S_ISGID));
        filter_xattrs(e);
        archive_entry_set_pathname(e, path);
        if (archive_write_header(u->w, e) < ARCHIVE_WARN)
                return hm_error_set(err, archive_errno(u->w) ? archive_errno(u->w) : EPERM, "layer entry '%s': %s",
                                    raw, archive_error_string(u->w));
        if (archive_entry_size(e) > 0 && copy_data(u, a, raw, path, err) < 0)
                return -1;
        if (archive_write_finish_entry(u->w) < ARCHIVE_WARN)
                return hm_error_set(err, archive_errno(u->w), "layer entry '%s': %s", raw,
                                    archive_error_string(u->w));
        return 0;
}

/*
 * libarchive extracts relative to the working directory, and its SECURE_*
 * checks only work for relative paths, so extraction runs with the layer dir
 * as cwd (hm is single-threaded); the guard restores the cwd on every path.
 */
struct cwd_guard {
        int fd;
};
static void cwd_restore(struct cwd_guard *g)
{
        if (g->fd >= 0) {
                (void) !fchdir(g->fd);
                close(g->fd);
        }
}

static int unpack_loop(struct unpacker *u, struct archive *a, hm_error_t *err)
{
        for (;;) {
                struct archive_entry *e;
                int r = archive_read_next_header(a, &e);
                if (r == ARCHIVE_EOF)
                        return 0;
                if (r < ARCHIVE_WARN)
                        return hm_error_set(err, archive_errno(a) ? archive_errno(a) : EINVAL, "read layer: %s",
                                            archive_error_string(a));
                if (unpack_entry(u, a, e, err) < 0)
                        return -1;
        }
}

int oci_unpack_layer(int fd, const char *dir, const char *xattr_prefix, uint64_t size_limit,
                     struct oci_unpack_stats *ret_stats, hm_error_t *err)
{
        struct unpacker u = { .dir = dir, .prefix = xattr_prefix, .limit = size_limit, .root = geteuid() == 0 };
        _cleanup_close_ int rootfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (rootfd < 0)
                return hm_error_set(err, errno, "open '%s': %s", dir, strerror(errno));
        u.rootfd = rootfd;
        _cleanup_archive_read_ struct archive *a = archive_read_new();
        archive_read_support_filter_all(a);
        archive_read_support_format_tar(a);
        archive_read_support_format_empty(a);
        _cleanup_free_ struct pread_src *src = xmalloc(sizeof *src);
        if (open_archive(a, src, fd) != ARCHIVE_OK)
                return hm_error_set(err, archive_errno(a), "read layer: %s", archive_error_string(a));
        _cleanup_archive_write_ struct archive *w = archive_write_disk_new();
        int flags = ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_XATTR |
                    ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
                    ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS | ARCHIVE_EXTRACT_UNLINK;
        if (u.root)
                flags |= ARCHIVE_EXTRACT_OWNER;
        /* numeric ids only: never map names through the host's passwd */
        archive_write_disk_set_options(w, flags);
        u.w = w;
        _cleanup_(cwd_restore) struct cwd_guard g = { open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC) };
        if (g.fd < 0)
                g.fd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (g.fd < 0 || fchdir(rootfd) < 0)
                return hm_error_set(err, errno, "enter '%s': %s", dir, strerror(errno));
        int r = unpack_loop(&u, a, err);
        /* directory modes and times are fixed up at close, relative to the cwd */
        if (archive_write_close(w) < ARCHIVE_WARN && r >= 0)
                r = hm_error_set(err, archive_errno(w), "finish layer: %s", archive_error_string(w));
        if (r < 0)
                return r;
        if (ret_stats)
                *ret_stats = u.st;
        return 0;
}

/* ---- images ---- */

void oci_image_free(struct oci_image *img)
{
        if (!img)
                return;
        free(img->name);
        free(img->id);
        strv_free(img->layers);
        strv_free(img->diff_ids);
        strv_free(img->config.env);
        strv_free(img->config.entrypoint);
        strv_free(img->config.cmd);
        free(img->config.workdir);
        free(img->config.user);
        free(img);
}

char *oci_image_normalize_name(const char *name)
{
        static const char *const prefixes[] = { "docker.io/library/", "docker.io/", "index.docker.io/library/" };
        for (size_t i = 0; i < ARRAY_SIZE(prefixes); i++)
                if (str_has_prefix(name, prefixes[i]) && name[strlen(prefixes[i])]) {
                        name += strlen(prefixes[i]);
                        break;
                }
        const char *slash = strrchr(name, '/');
        const char *last = slash ? slash + 1 : name;
        if (!strcmp(name, OCI_HOST_IMAGE) || strchr(last, ':') || strchr(last, '@'))
                return xstrdup(name);
        return xasprintf("%s:latest", name);
}

static void gen_strv(yajl_gen g, const char *key, char *const *v)
{
        yajl_gen_string(g, (const unsigned char *) key, strlen(key));
        if (!v) {
                yajl_gen_null(g);
                return;
        }
        yajl_gen_array_open(g);
        for (size_t i = 0; v[i]; i++)
                yajl_gen_string(g, (const unsigned char *) v[i], strlen(v[i]));
        yajl_gen_array_close(g);
}

static void gen_str(yajl_gen g, const char *key, const char *v)
{
        yajl_gen_string(g, (const unsigned char *) key, strlen(key));
        yajl_gen_string(g, (const unsigned char *) (v ? v : ""), v ? strlen(v) : 0);
}

static char *image_to_json(const struct oci_image *img)
{
        _cleanup_yajl_gen_ yajl_gen g = yajl_gen_alloc(NULL);
        yajl_gen_config(g, yajl_gen_beautify, 1);
        yajl_gen_map_open(g);
        gen_str(g, "name", img->name);
        gen_str(g, "id", img->id);
        yajl_gen_string(g, (const unsigned char *) "size", 4);
        yajl_gen_integer(g, (long long) img->size);
        yajl_gen_string(g, (const unsigned char *) "created", 7);
        yajl_gen_integer(g, img->created);
        gen_strv(g, "layers", img->layers);
        gen_strv(g, "diff_ids", img->diff_ids);
        yajl_gen_string(g, (const unsigned char *) "config", 6);
        yajl_gen_map_open(g);
        gen_strv(g, "Env", img->config.env);
        gen_strv(g, "Entrypoint", img->config.entrypoint);
        gen_strv(g, "Cmd", img->config.cmd);
        gen_str(g, "WorkingDir", img->config.workdir);
        gen_str(g, "User", img->config.user);
        yajl_gen_map_close(g);
        yajl_gen_map_close(g);
        const unsigned char *buf;
        size_t len;
        yajl_gen_get_buf(g, &buf, &len);
        return xstrndup((const char *) buf, len);
}

static char *json_str(yajl_val root, const char *key)
{
        const char *path[] = { key, NULL };
        yajl_val v = yajl_tree_get(root, path, yajl_t_string);
        return v ? xstrdup(YAJL_GET_STRING(v)) : NULL;
}

static int image_from_json(const char *json, const char *where, struct oci_image **ret, hm_error_t *err)
{
        char ebuf[256] = "";
        _cleanup_yajl_tree_ yajl_val root = yajl_tree_parse(json, ebuf, sizeof ebuf);
        if (!root || !YAJL_IS_OBJECT(root))
                return hm_error_set(err, EINVAL, "'%s': not an image record: %s", where, ebuf);
        _cleanup_oci_image_ struct oci_image *img = xzalloc(sizeof *img);
        img->name = json_str(root, "name");
        img->id = json_str(root, "id");
        const char *p_layers[] = { "layers", NULL }, *p_diff[] = { "diff_ids", NULL };
        const char *p_size[] = { "size", NULL }, *p_created[] = { "created", NULL };
        img->layers = oci_json_strv(yajl_tree_get(root, p_layers, yajl_t_array));
        img->diff_ids = oci_json_strv(yajl_tree_get(root, p_diff, yajl_t_array));
        yajl_val v = yajl_tree_get(root, p_size, yajl_t_number);
        img->size = v && YAJL_IS_INTEGER(v) ? (uint64_t) YAJL_GET_INTEGER(v) : 0;
        v = yajl_tree_get(root, p_created, yajl_t_number);
        img->created = v && YAJL_IS_INTEGER(v) ? YAJL_GET_INTEGER(v) : 0;
        const char *p_cfg[] = { "config", NULL };
        yajl_val cfg = yajl_tree_get(root, p_cfg, yajl_t_object);
        if (!img->name || !img->layers || !cfg)
                return hm_error_set(err, EINVAL, "'%s': incomplete image record", where);
        for (size_t i = 0; img->layers[i]; i++)
                if (!valid_id(img->layers[i]))
                        return hm_error_set(err, EINVAL, "'%s': bad layer id '%s'", where, img->layers[i]);
        const char *p_env[] = { "Env", NULL }, *p_ep[] = { "Entrypoint", NULL }, *p_cmd[] = { "Cmd", NULL };
        img->config.env = oci_json_strv(yajl_tree_get(cfg, p_env, yajl_t_array));
        img->config.entrypoint = oci_json_strv(yajl_tree_get(cfg, p_ep, yajl_t_array));
        img->config.cmd = oci_json_strv(yajl_tree_get(cfg, p_cmd, yajl_t_array));
        img->config.workdir = json_str(cfg, "WorkingDir");
        img->config.user = json_str(cfg, "User");
        *ret = TAKE_PTR(img);
        return 0;
}

static struct oci_image *host_image(void)
{
        struct oci_image *img = xzalloc(sizeof *img);
        img->name = xstrdup(OCI_HOST_IMAGE);
        img->id = xstrdup("");
        strv_push(&img->layers, OCI_HOST_IMAGE);
        strv_push(&img->diff_ids, "");
        strv_push(&img->config.env, OCI_DEFAULT_PATH_ENV);
        img->config.workdir = xstrdup("");
        img->config.user = xstrdup("");
        return img;
}

int oci_store_image_get(struct oci_store *s, const char *name, struct oci_image **ret, hm_error_t *err)
{
        _cleanup_free_ char *norm = oci_image_normalize_name(name);
        if (!strcmp(norm, OCI_HOST_IMAGE)) {
                *ret = host_image();
                return 0;
        }
        _cleanup_free_ char *esc = escape_name(norm);
        _cleanup_free_ char *p = xasprintf("%s/images/%s", s->path, esc);
        _cleanup_free_ char *buf = NULL;
        int r = read_file(p, 16 << 20, &buf, NULL);
        if (r < 0)
                return hm_error_set(err, -r, "image '%s': %s", name,
                                    r == -ENOENT ? "not in the store" : strerror(-r));
        return image_from_json(buf, p, ret, err);
}

int oci_store_image_put_locked(struct oci_store *s, const struct oci_image *img, hm_error_t *err)
{
        if (!strcmp(img->name, OCI_HOST_IMAGE))
                return hm_error_set(err, EINVAL, "image name '%s' is reserved for the host filesystem", img->name);
        _cleanup_free_ char *esc = escape_name(img->name);
        _cleanup_free_ char *p = xasprintf("%s/images/%s", s->path, esc);
        _cleanup_free_ char *json = image_to_json(img);
        return write_atomic(s, p, json, strlen(json), err);
}

int oci_store_put_blob(struct oci_store *s, const char *hex, const void *data, size_t n, hm_error_t *err)
{
        _cleanup_free_ char *p = xasprintf("%s/blobs/sha256/%s", s->path, hex);
        if (access(p, F_OK) == 0)
                return 0;
        return write_atomic(s, p, data, n, err);
}

int oci_store_image_rm(struct oci_store *s, const char *name, hm_error_t *err)
{
        _cleanup_free_ char *norm = oci_image_normalize_name(name);
        _cleanup_free_ char *esc = escape_name(norm);
        _cleanup_free_ char *p = xasprintf("%s/images/%s", s->path, esc);
        {
                int r = oci_store_lock(s, err);
                if (r < 0)
                        return r;
                _cleanup_unlock_ struct oci_store *locked = s;
                if (unlink(p) < 0)
                        return hm_error_set(err, errno, "image '%s': %s", name,
                                            errno == ENOENT ? "not in the store" : strerror(errno));
        }
        return oci_store_gc(s, err);
}

void oci_image_list_free(struct oci_image **v, size_t n)
{
        for (size_t i = 0; i < n; i++)
                oci_image_free(v[i]);
        free(v);
}

int oci_store_image_list(struct oci_store *s, struct oci_image ***ret, size_t *ret_n, hm_error_t *err)
{
        _cleanup_free_ char *dir = xasprintf("%s/images", s->path);
        _cleanup_closedir_ DIR *d = opendir(dir);
        if (!d)
                return hm_error_set(err, errno, "open '%s': %s", dir, strerror(errno));
        struct oci_image **v = NULL;
        size_t n = 0;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                _cleanup_free_ char *p = xasprintf("%s/%s", dir, de->d_name);
                _cleanup_free_ char *buf = NULL;
                struct oci_image *img = NULL;
                hm_error_t e = NULL;
                if (read_file(p, 16 << 20, &buf, NULL) < 0 || image_from_json(buf, p, &img, &e) < 0) {
                        hm_error_release(&e); /* a record removed meanwhile or damaged: not listed */
                        continue;
                }
                v = xreallocarray(v, n + 1, sizeof *v);
                v[n++] = img;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

/* ---- snapshots ---- */

void oci_store_upper_free(struct oci_store_upper *u)
{
        if (!u)
                return;
        free(u->dir);
        free(u->upper);
        free(u->work);
        free(u->merged);
        free(u);
}

void oci_store_abort_layer(struct oci_store *s, struct oci_store_upper *u)
{
        if (!u)
                return;
        (void) rm_rf(u->keep_dir ? u->upper : u->dir);
        oci_store_upper_free(u);
}

int oci_store_begin_layer(struct oci_store *s, const char *run_id, struct oci_store_upper **ret, hm_error_t *err)
{
        struct oci_store_upper *u = xzalloc(sizeof *u);
        int r = oci_store_mkdtemp(s, "step", &u->dir, err);
        if (r < 0) {
                oci_store_upper_free(u);
                return r;
        }
        u->upper = xasprintf("%s/upper", u->dir);
        u->work = xasprintf("%s/work", u->dir);
        u->merged = xasprintf("%s/merged", u->dir);
        if (mkdir(u->upper, 0755) < 0 || mkdir(u->work, 0700) < 0 || mkdir(u->merged, 0700) < 0) {
                r = hm_error_set(err, errno, "create '%s': %s", u->upper, strerror(errno));
                oci_store_abort_layer(s, u);
                return r;
        }
        *ret = u;
        return 0;
}

int oci_store_begin_layer_in(struct oci_store *s, const char *dir, struct oci_store_upper **ret, hm_error_t *err)
{
        if (!dir) {
                int r = oci_store_begin_layer(s, NULL, ret, err);
                if (r >= 0)
                        (*ret)->keep_dir = true;
                return r;
        }
        struct oci_store_upper *u = xzalloc(sizeof *u);
        u->keep_dir = true;
        u->dir = xstrdup(dir);
        u->upper = xasprintf("%s/upper", dir);
        u->work = xasprintf("%s/work", dir);
        u->merged = xasprintf("%s/merged", dir);
        /* an upper left by a failed removal is not this layer's */
        if (mkdir(u->upper, 0755) < 0 && (errno != EEXIST || rm_rf(u->upper) < 0 || mkdir(u->upper, 0755) < 0)) {
                int r = hm_error_set(err, errno, "create '%s': %s", u->upper, strerror(errno));
                oci_store_upper_free(u);
                return r;
        }
        *ret = u;
        return 0;
}

static size_t chain_bytes(const struct oci_store *s, size_t n)
{
        /* each lower is "<store>/layers/<16 hex>:" */
        return n * (strlen(s->path) + strlen("/layers/") + 17);
}

static bool chain_too_deep(const struct oci_store *s, char *const *lowers)
{
        /* +2: the new layer and the run's workspace layer stacked on top */
        size_t n = strv_len(lowers) + 2;
        return n > OCI_STORE_MAX_CHAIN || chain_bytes(s, n) > OCI_STORE_MAX_LOWER_BYTES;
}

static int merge_dir(struct oci_store *s, const char *src, const char *dst, bool keep_marks, hm_error_t *err);
static int merge_layers(struct oci_store *s, char *const *ids, const char *dest, bool keep_marks, hm_error_t *err);

/* Copy lowers (without a bottom "host") + upper into a fresh layer dir. */
static int flatten(struct oci_store *s, char *const *lowers, const char *upper, char **ret_dir,
                   bool *ret_on_host, hm_error_t *err)
{
        bool on_host = lowers && lowers[0] && !strcmp(lowers[0], OCI_HOST_IMAGE);
        _cleanup_free_ char *tmp = NULL;
        int r = oci_store_mkdtemp(s, "flatten", &tmp, err);
        if (r < 0)
                return r;
        /* over the host, whiteouts and opaque dirs must still hide the host's files */
        r = merge_layers(s, on_host ? lowers + 1 : lowers, tmp, on_host, err);
        if (r >= 0)
                r = merge_dir(s, upper, tmp, on_host, err);
        if (r < 0) {
                (void) rm_rf(tmp);
                return r;
        }
        *ret_dir = TAKE_PTR(tmp);
        *ret_on_host = on_host;
        return 0;
}

int oci_store_commit_layer(struct oci_store *s, struct oci_store_upper *u, char *const *lowers,
                           const char *run_id, const char *tag, char **ret_id, hm_error_t *err)
{
        struct oci_layer_meta m = { .kind = OCI_LAYER_SNAPSHOT, .created = time(NULL), .owner_pid = getpid(),
                                    .owner_start = self_starttime(), .ephemeral = !tag };
        oci_store_random_id(m.id);
        m.parent = lowers && lowers[0] ? lowers[strv_len(lowers) - 1] : NULL;
        m.run_id = (char *) run_id;
        _cleanup_free_ char *src = xstrdup(u->upper);
        _cleanup_free_ char *flat = NULL;
        _cleanup_strv_ char **flat_lowers = NULL;
        m.lowers = (char **) lowers;
        if (chain_too_deep(s, lowers)) {
                bool on_host = false;
                int r = flatten(s, lowers, u->upper, &flat, &on_host, err);
                if (r < 0) {
                        oci_store_abort_layer(s, u);
                        return r;
                }
                if (on_host)
                        strv_push(&flat_lowers, OCI_HOST_IMAGE);
                else
                        flat_lowers = xcalloc(1, sizeof(char *));
                m.lowers = flat_lowers;
                free(src);
                src = xstrdup(flat);
        }
        int r = oci_store_lock(s, err);
        if (r >= 0) {
                r = oci_store_add_layer_locked(s, src, &m, err);
                if (r >= 0 && tag)
                        r = oci_store_tag_set_locked(s, tag, m.id, err);
                oci_store_unlock(s);
        }
        if (r < 0 && flat)
                (void) rm_rf(flat);
        oci_store_abort_layer(s, u);
        if (r < 0)
                return r;
        *ret_id = xstrdup(m.id);
        return 0;
}

int oci_store_snapshot_chain(struct oci_store *s, const char *id, char ***ret, hm_error_t *err)
{
        _cleanup_meta_ struct oci_layer_meta *m = NULL;
        int r = oci_store_layer_meta(s, id, &m, err);
        if (r < 0)
                return hm_error_wrap(err, "snapshot '%s'", id);
        if (m->dropped)
                return hm_error_set(err, ENOENT, "snapshot '%s' was dropped", id);
        char **chain = strv_copy(m->lowers);
        strv_push(&chain, id);
        for (size_t i = 0; chain[i]; i++)
                if (!oci_store_has_layer(s, chain[i])) {
                        r = hm_error_set(err, ENOENT, "snapshot '%s': layer '%s' is missing", id, chain[i]);
                        strv_free(chain);
                        return r;
                }
        *ret = chain;
        return 0;
}

int oci_store_image_chain(struct oci_store *s, const char *name, char ***ret, hm_error_t *err)
{
        _cleanup_oci_image_ struct oci_image *img = NULL;
        int r = oci_store_image_get(s, name, &img, err);
        if (r < 0)
                return r;
        for (size_t i = 0; img->layers[i]; i++)
                if (!oci_store_has_layer(s, img->layers[i]))
                        return hm_error_set(err, ENOENT, "image '%s': layer '%s' is missing", name, img->layers[i]);
        *ret = TAKE_PTR(img->layers);
        return 0;
}

int oci_store_chain_paths(struct oci_store *s, char *const *ids, char ***ret, hm_error_t *err)
{
        size_t n = strv_len(ids);
        char **v = xcalloc(n + 1, sizeof(char *));
        for (size_t i = 0; i < n; i++) {
                if (!oci_store_has_layer(s, ids[i])) {
                        strv_free(v);
                        return hm_error_set(err, ENOENT, "layer '%s' is missing from the store at '%s'", ids[i],
                                            s->path);
                }
                v[n - 1 - i] = oci_store_layer_path(s, ids[i]);
        }
        *ret = v;
        return 0;
}

/* ---- merged-view copy (flatten) ---- */

static bool is_overlay_xattr(const char *name)
{
        return str_has_prefix(name, "trusted.overlay.") || str_has_prefix(name, "user.overlay.");
}

static bool has_overlay_xattr(const char *path, const char *suffix, const char *want)
{
        static const char *const prefixes[] = { "trusted.overlay.", "user.overlay." };
        for (size_t i = 0; i < ARRAY_SIZE(prefixes); i++) {
                char name[64], val[8];
                snprintf(name, sizeof name, "%s%s", prefixes[i], suffix);
                ssize_t n = lgetxattr(path, name, val, sizeof val);
                if (n >= 0 && (!want || ((size_t) n == strlen(want) && !memcmp(val, want, (size_t) n))))
                        return true;
        }
        return false;
}

static bool is_whiteout(const char *path, const struct stat *st)
{
        if (S_ISCHR(st->st_mode) && st->st_rdev == makedev(0, 0))
                return true;
        /* the xattr form (6.7+): a zero-size file marked overlay.whiteout */
        return S_ISREG(st->st_mode) && st->st_size == 0 && has_overlay_xattr(path, "whiteout", NULL);
}

static int copy_xattrs(const char *src, const char *dst)
{
        ssize_t n = llistxattr(src, NULL, 0);
        if (n <= 0)
                return 0;
        _cleanup_free_ char *names = xmalloc((size_t) n);
        n = llistxattr(src, names, (size_t) n);
        for (ssize_t off = 0; n > 0 && off < n; off += (ssize_t) strlen(names + off) + 1) {
                const char *name = names + off;
                if (is_overlay_xattr(name))
                        continue;
                ssize_t vn = lgetxattr(src, name, NULL, 0);
                if (vn < 0)
                        continue;
                _cleanup_free_ char *val = xmalloc((size_t) vn + 1);
                vn = lgetxattr(src, name, val, (size_t) vn);
                if (vn >= 0 && lsetxattr(dst, name, val, (size_t) vn, 0) < 0 && errno != EPERM &&
                    errno != ENOTSUP)
                        return -errno;
        }
        return 0;
}

static int copy_meta(const char *dst, const struct stat *st, const char *src)
{
        if (geteuid() == 0 && lchown(dst, st->st_uid, st->st_gid) < 0)
                return -errno;
        if (!S_ISLNK(st->st_mode) && chmod(dst, st->st_mode & 07777) < 0)
                return -errno;
        int r = copy_xattrs(src, dst);
        if (r < 0)
                return r;
        struct timespec ts[2] = { st->st_atim, st->st_mtim };
        if (utimensat(AT_FDCWD, dst, ts, AT_SYMLINK_NOFOLLOW) < 0 && errno != ENOTSUP)
                return -errno;
        return 0;
}

/* read/write: copy_file_range() refuses some pairs of filesystems (EXDEV, e.g. ext4 to tmpfs) */
static int copy_fd_plain(int in, int out)
{
        char buf[65536];
        for (;;) {
                ssize_t n = read(in, buf, sizeof buf);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0)
                        return -errno;
                if (n == 0)
                        return 0;
                int r = write_all(out, buf, (size_t) n);
                if (r < 0)
                        return r;
        }
}

static int copy_file(const char *src, const char *dst, const struct stat *st)
{
        _cleanup_close_ int in = open(src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (in < 0)
                return -errno;
        _cleanup_close_ int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (out < 0)
                return -errno;
        for (off_t left = st->st_size; left > 0;) {
                ssize_t n = copy_file_range(in, NULL, out, NULL, (size_t) left, 0);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 && left == st->st_size &&
                    (errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP || errno == ENOSYS))
                        return copy_fd_plain(in, out); /* nothing copied yet: offsets still at 0 */
                if (n < 0)
                        return -errno;
                if (n == 0)
                        break;
                left -= n;
        }
        return 0;
}

struct link_seen {
        dev_t dev;
        ino_t ino;
        char *dst;
};
struct merge_ctx {
        struct link_seen *links; /* hardlinked files of the current layer */
        size_t n_links;
        /*
         * Something stays below dst (the host's "/", or dst is a layer copy):
         * whiteouts and opaque dirs must keep hiding it, so they are written
         * (0/0 devices, <xattr_prefix>opaque=y) instead of only applied.
         */
        bool keep_marks;
        const char *xattr_prefix;
};

static int copy_leaf(struct merge_ctx *c, const char *src, const char *dst, const struct stat *st)
{
        if (S_ISREG(st->st_mode) && st->st_nlink > 1) {
                for (size_t i = 0; i < c->n_links; i++)
                        if (c->links[i].dev == st->st_dev && c->links[i].ino == st->st_ino)
                                return link(c->links[i].dst, dst) < 0 ? -errno : 0;
        }
        int r = 0;
        if (S_ISREG(st->st_mode)) {
                r = copy_file(src, dst, st);
        } else if (S_ISLNK(st->st_mode)) {
                char target[PATH_MAX];
                ssize_t n = readlink(src, target, sizeof target - 1);
                if (n < 0)
                        return -errno;
                target[n] = 0;
                r = symlink(target, dst) < 0 ? -errno : 0;
        } else if (S_ISCHR(st->st_mode) || S_ISBLK(st->st_mode)) {
                if (geteuid() != 0)
                        return 0; /* as when unpacking: devices only as root */
                r = mknod(dst, st->st_mode, st->st_rdev) < 0 ? -errno : 0;
        } else {
                r = mknod(dst, st->st_mode, 0) < 0 ? -errno : 0; /* fifo, socket */
        }
        if (r < 0)
                return r;
        if (S_ISREG(st->st_mode) && st->st_nlink > 1) {
                c->links = xreallocarray(c->links, c->n_links + 1, sizeof *c->links);
                c->links[c->n_links++] = (struct link_seen) { st->st_dev, st->st_ino, xstrdup(dst) };
        }
        return copy_meta(dst, st, src);
}

static int merge_tree(struct merge_ctx *c, const char *src, const char *dst);

static int merge_entry(struct merge_ctx *c, const char *src, const char *dst)
{
        struct stat st, dt;
        if (lstat(src, &st) < 0)
                return -errno;
        bool exists = lstat(dst, &dt) == 0;
        if (is_whiteout(src, &st)) {
                int r = exists ? rm_rf(dst) : 0;
                if (r >= 0 && c->keep_marks && mknod(dst, S_IFCHR, makedev(0, 0)) < 0)
                        r = -errno;
                return r;
        }
        if (!S_ISDIR(st.st_mode)) {
                if (exists) {
                        int r = rm_rf(dst);
                        if (r < 0)
                                return r;
                }
                return copy_leaf(c, src, dst, &st);
        }
        bool opaque = has_overlay_xattr(src, "opaque", "y");
        bool replaced = exists && (!S_ISDIR(dt.st_mode) || opaque);
        if (replaced) {
                int r = rm_rf(dst);
                if (r < 0)
                        return r;
                exists = false;
        }
        if (!exists && mkdir(dst, 0700) < 0)
                return -errno;
        int r = merge_tree(c, src, dst);
        if (r >= 0)
                r = copy_meta(dst, &st, src);
        /* a dir that replaced a whiteout or a file must not merge with the dir below either */
        if (r >= 0 && c->keep_marks && (opaque || replaced)) {
                char name[64];
                snprintf(name, sizeof name, "%sopaque", c->xattr_prefix);
                if (lsetxattr(dst, name, "y", 1, 0) < 0)
                        r = -errno;
        }
        return r;
}

static int merge_tree(struct merge_ctx *c, const char *src, const char *dst)
{
        _cleanup_closedir_ DIR *d = opendir(src);
        if (!d)
                return -errno;
        struct dirent *de;
        while ((de = readdir(d))) {
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                _cleanup_free_ char *s2 = xasprintf("%s/%s", src, de->d_name);
                _cleanup_free_ char *d2 = xasprintf("%s/%s", dst, de->d_name);
                int r = merge_entry(c, s2, d2);
                if (r < 0)
                        return r;
        }
        return 0;
}

static int merge_dir(struct oci_store *s, const char *src, const char *dst, bool keep_marks, hm_error_t *err)
{
        struct merge_ctx c = { .keep_marks = keep_marks, .xattr_prefix = s->xattr_prefix };
        int r = merge_tree(&c, src, dst);
        for (size_t i = 0; i < c.n_links; i++)
                free(c.links[i].dst);
        free(c.links);
        if (r < 0)
                return hm_error_set(err, -r, "copy '%s' into '%s': %s", src, dst, strerror(-r));
        struct stat st;
        if (lstat(src, &st) == 0)
                (void) copy_meta(dst, &st, src);
        return 0;
}

static int merge_layers(struct oci_store *s, char *const *ids, const char *dest, bool keep_marks, hm_error_t *err)
{
        for (size_t i = 0; ids && ids[i]; i++) {
                if (!strcmp(ids[i], OCI_HOST_IMAGE))
                        return hm_error_set(err, EINVAL, "the host filesystem cannot be copied into a layer");
                if (!oci_store_has_layer(s, ids[i]))
                        return hm_error_set(err, ENOENT, "layer '%s' is missing", ids[i]);
                _cleanup_free_ char *p = oci_store_layer_path(s, ids[i]);
                int r = merge_dir(s, p, dest, keep_marks, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

int oci_store_merge_into(struct oci_store *s, char *const *ids, const char *dest, hm_error_t *err)
{
        return merge_layers(s, ids, dest, false, err);
}

int oci_store_copy_layer(struct oci_store *s, const char *id, const char *dest, hm_error_t *err)
{
        char *const ids[] = { (char *) id, NULL };
        return merge_layers(s, ids, dest, true, err);
}

/* major:minor of the superblock under the mount holding `path` (mountinfo field 3). */
static int mount_dev_of(const char *path, char ret[32])
{
        struct statx stx;
        if (statx(AT_FDCWD, path, 0, STATX_MNT_ID, &stx) < 0)
                return -errno;
        if (!(stx.stx_mask & STATX_MNT_ID))
                return -EOPNOTSUPP;
        _cleanup_free_ char *info = NULL;
        int r = read_file("/proc/self/mountinfo", 0, &info, NULL);
        if (r < 0)
                return r;
        for (char *line = info; line && *line;) {
                char *next = strchr(line, '\n');
                if (next)
                        *next++ = 0;
                unsigned long long id = 0;
                char dev[32];
                if (sscanf(line, "%llu %*u %31s", &id, dev) == 2 && id == stx.stx_mnt_id) {
                        memcpy(ret, dev, sizeof dev);
                        return 0;
                }
                line = next;
        }
        return -ENOENT;
}

bool oci_store_layers_on_host_root(const struct oci_store *s)
{
        _cleanup_free_ char *layers = xasprintf("%s/layers", s->path);
        char a[32], b[32];
        /* unknown: say yes, copying the lowers is only slower */
        if (mount_dev_of("/", a) < 0 || mount_dev_of(layers, b) < 0)
                return true;
        return !strcmp(a, b);
}

/* ---- tags, drop, gc, reap ---- */

/*
 * A tag that moves (two runs committed the same cache tag at once: the
 * index keeps the last) leaves its old snapshot to nobody: untagged and not
 * ephemeral, no GC would ever take it.  It becomes ephemeral instead, still
 * its committer's: the reaper drops it once that process is gone (while it
 * lives, its run may still build on it).
 */
static void demote_untagged(struct oci_store *s, const char *old_id)
{
        _cleanup_meta_ struct oci_layer_meta *m = NULL;
        hm_error_t e = NULL;
        if (oci_store_layer_meta(s, old_id, &m, &e) < 0 || m->kind != OCI_LAYER_SNAPSHOT || m->ephemeral ||
            m->dropped) {
                hm_error_release(&e);
                return;
        }
        m->ephemeral = true;
        if (meta_write(s, m, &e) < 0)
                hm_error_release(&e); /* left as it was: a leak, not an error of this commit */
}

int oci_store_tag_set_locked(struct oci_store *s, const char *tag, const char *id, hm_error_t *err)
{
        _cleanup_free_ char *esc = escape_name(tag);
        _cleanup_free_ char *p = xasprintf("%s/tags/%s", s->path, esc);
        _cleanup_free_ char *line = xasprintf("%s\n", id);
        _cleanup_free_ char *old = NULL;
        hm_error_t e = NULL;
        if (oci_store_tag_get(s, tag, &old, &e) < 0)
                hm_error_release(&e);
        int r = write_atomic(s, p, line, strlen(line), err);
        if (r >= 0 && old && strcmp(old, id) != 0)
                demote_untagged(s, old);
        return r;
}

int oci_store_tag_get(struct oci_store *s, const char *tag, char **ret_id, hm_error_t *err)
{
        _cleanup_free_ char *esc = escape_name(tag);
        _cleanup_free_ char *p = xasprintf("%s/tags/%s", s->path, esc);
        _cleanup_free_ char *buf = NULL;
        int r = read_file(p, 4096, &buf, NULL);
        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return hm_error_set(err, -r, "read '%s': %s", p, strerror(-r));
        buf[strcspn(buf, "\n")] = 0;
        _cleanup_strv_ char **chain = NULL;
        hm_error_t e = NULL;
        if (!valid_id(buf) || oci_store_snapshot_chain(s, buf, &chain, &e) < 0) {
                hm_error_release(&e);
                return 0;
        }
        *ret_id = xstrdup(buf);
        return 1;
}

/* Mark one layer dropped; the caller holds the lock.  1 when it was marked. */
static int mark_dropped_locked(struct oci_store *s, const char *id, hm_error_t *err)
{
        if (!valid_id(id) || !strcmp(id, OCI_HOST_IMAGE))
                return 0;
        _cleanup_meta_ struct oci_layer_meta *m = NULL;
        hm_error_t e = NULL;
        if (oci_store_layer_meta(s, id, &m, &e) < 0) {
                hm_error_release(&e);
                return 0; /* unknown: nothing to do */
        }
        if (m->kind == OCI_LAYER_IMAGE || m->dropped)
                return 0;
        m->dropped = true;
        int r = meta_write(s, m, err);
        return r < 0 ? r : 1;
}

int oci_store_drop_layer(struct oci_store *s, const char *id, hm_error_t *err)
{
        char *ids[] = { (char *) id, NULL };
        return oci_store_drop_layers(s, ids, err);
}


/*
 * The set of layer ids that must stay, as a sorted array: a long chain lists
 * every lower of every snapshot, so this is O(total) to build and O(log n) to
 * query (a list with strv_push/strv_has was quadratic: 112 s of reaping after a
 * 1000-step chain).
 */
struct idset {
        char **v; /* borrowed copies owned here */
        size_t n, cap;
};

static void idset_add(struct idset *set, const char *id)
{
        if (set->n == set->cap) {
                set->cap = set->cap ? set->cap * 2 : 256;
                set->v = xreallocarray(set->v, set->cap, sizeof *set->v);
        }
        set->v[set->n++] = xstrdup(id);
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *) a, *(char *const *) b);
}

static void idset_seal(struct idset *set)
{
        if (set->n)
                qsort(set->v, set->n, sizeof *set->v, cmp_str);
}

static bool idset_has(const struct idset *set, const char *id)
{
        return set->n && bsearch(&id, set->v, set->n, sizeof *set->v, cmp_str) != NULL;
}

static void idset_release(struct idset *set)
{
        for (size_t i = 0; i < set->n; i++)
                free(set->v[i]);
        free(set->v);
        *set = (struct idset){ 0 };
}

/*
 * Ids that must stay: image layers of images, live snapshots and their
 * chains.  Layers in `dropping` (may be NULL) count as dropped already.
 */
static void gc_live_set(struct oci_store *s, struct idset *live, const struct idset *dropping)
{
        struct oci_image **imgs = NULL;
        size_t n = 0;
        hm_error_t e = NULL;
        if (oci_store_image_list(s, &imgs, &n, &e) < 0)
                hm_error_release(&e);
        for (size_t i = 0; i < n; i++)
                for (size_t j = 0; imgs[i]->layers[j]; j++)
                        idset_add(live, imgs[i]->layers[j]);
        oci_image_list_free(imgs, n);
        _cleanup_free_ char *dir = xasprintf("%s/layers", s->path);
        _cleanup_closedir_ DIR *d = opendir(dir);
        struct dirent *de;
        while (d && (de = readdir(d))) {
                if (!str_has_suffix(de->d_name, ".meta"))
                        continue;
                _cleanup_free_ char *id = xstrndup(de->d_name, strlen(de->d_name) - 5);
                _cleanup_meta_ struct oci_layer_meta *m = NULL;
                if (oci_store_layer_meta(s, id, &m, &e) < 0) {
                        hm_error_release(&e);
                        continue;
                }
                if (m->kind == OCI_LAYER_IMAGE || m->dropped || (dropping && idset_has(dropping, id)))
                        continue;
                idset_add(live, id);
                for (size_t j = 0; m->lowers && m->lowers[j]; j++)
                        idset_add(live, m->lowers[j]);
        }
        idset_seal(live);
}

static int gc_layers(struct oci_store *s, const struct idset *live, hm_error_t *err)
{
        _cleanup_free_ char *dir = xasprintf("%s/layers", s->path);
        _cleanup_closedir_ DIR *d = opendir(dir);
        if (!d)
                return hm_error_set(err, errno, "open '%s': %s", dir, strerror(errno));
        struct dirent *de;
        int ret = 0;
        while ((de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                _cleanup_free_ char *id = str_has_suffix(de->d_name, ".meta")
                                                  ? xstrndup(de->d_name, strlen(de->d_name) - 5)
                                                  : xstrdup(de->d_name);
                if (idset_has(live, id))
                        continue;
                _cleanup_free_ char *p = xasprintf("%s/%s", dir, de->d_name);
                /* the dir goes first, so a meta never outlives a half-removed dir */
                _cleanup_free_ char *ldir = xasprintf("%s/%s", dir, id);
                int r = rm_rf(ldir);
                if (r >= 0 && str_has_suffix(de->d_name, ".meta") && unlink(p) < 0 && errno != ENOENT)
                        r = -errno;
                if (r < 0 && !ret)
                        ret = hm_error_set(err, -r, "remove layer '%s': %s", id, strerror(-r));
        }
        return ret;
}

static void gc_tags(struct oci_store *s)
{
        _cleanup_free_ char *dir = xasprintf("%s/tags", s->path);
        _cleanup_closedir_ DIR *d = opendir(dir);
        struct dirent *de;
        while (d && (de = readdir(d))) {
                if (de->d_name[0] == '.')
                        continue;
                _cleanup_free_ char *p = xasprintf("%s/%s", dir, de->d_name);
                _cleanup_free_ char *buf = NULL;
                if (read_file(p, 4096, &buf, NULL) < 0)
                        continue;
                buf[strcspn(buf, "\n")] = 0;
                _cleanup_meta_ struct oci_layer_meta *m = NULL;
                hm_error_t e = NULL;
                if (oci_store_layer_meta(s, buf, &m, &e) < 0 || m->dropped)
                        (void) unlink(p);
                hm_error_release(&e);
        }
}

int oci_store_gc(struct oci_store *s, hm_error_t *err)
{
        int r = oci_store_lock(s, err);
        if (r < 0)
                return r;
        _cleanup_unlock_ struct oci_store *locked = s;
        struct idset live = { 0 };
        gc_live_set(s, &live, NULL);
        r = gc_layers(s, &live, err);
        idset_release(&live);
        gc_tags(s);
        return r;
}

/*
 * One locked pass: the collection runs as if the layers were marked
 * dropped, and only those it must keep (lowers of a live layer) get the
 * mark written.  Writing it for every layer that is removed right after
 * was a new meta file per layer (an inode to allocate on a busy ext4, and
 * one more deleted).  A layer whose removal fails gets its mark too, so a
 * later collection finishes the job.
 */
int oci_store_drop_layers(struct oci_store *s, char *const *ids, hm_error_t *err)
{
        int r = oci_store_lock(s, err);
        if (r < 0)
                return r;
        _cleanup_unlock_ struct oci_store *locked = s;
        struct idset dropping = { 0 }, live = { 0 };
        for (size_t i = 0; ids && ids[i]; i++) {
                if (!valid_id(ids[i]) || !strcmp(ids[i], OCI_HOST_IMAGE))
                        continue;
                _cleanup_meta_ struct oci_layer_meta *m = NULL;
                hm_error_t e = NULL;
                if (oci_store_layer_meta(s, ids[i], &m, &e) < 0) {
                        hm_error_release(&e);
                        continue; /* unknown: nothing to do */
                }
                if (m->kind != OCI_LAYER_IMAGE && !m->dropped)
                        idset_add(&dropping, ids[i]);
        }
        if (!dropping.n)
                return 0;
        idset_seal(&dropping);
        gc_live_set(s, &live, &dropping);
        int first = 0;
        for (size_t i = 0; i < dropping.n; i++) {
                if (!idset_has(&live, dropping.v[i]))
                        continue;
                hm_error_t e = NULL;
                r = mark_dropped_locked(s, dropping.v[i], &e);
                if (r < 0 && !first) {
                        first = r;
                        *err = TAKE_PTR(e);
                }
                hm_error_release(&e);
        }
        hm_error_t e = NULL;
        r = gc_layers(s, &live, &e);
        if (r < 0 && !first) {
                first = r;
                *err = TAKE_PTR(e);
        }
        hm_error_release(&e);
        for (size_t i = 0; i < dropping.n; i++) {
                _cleanup_free_ char *meta = xasprintf("%s/layers/%s.meta", s->path, dropping.v[i]);
                if (idset_has(&live, dropping.v[i]) || access(meta, F_OK) < 0)
                        continue;
                r = mark_dropped_locked(s, dropping.v[i], &e);
                if (r < 0 && !first) {
                        first = r;
                        *err = TAKE_PTR(e);
                }
                hm_error_release(&e);
        }
        gc_tags(s);
        idset_release(&live);
        idset_release(&dropping);
        return first;
}

/*
 * Dead by oci/owner.h's judgement.  A foreign owner (another pid namespace,
 * not visible here) is kept, and `what` is listed in *left (when left).
 */
static bool owner_dead(int pid, uint64_t start, uint64_t pidns, const char *boot, char ***left, const char *what)
{
        if (pid <= 0)
                return true;
        struct hm_owner o = { .pid = pid, .start = start, .pidns = pidns };
        snprintf(o.boot, sizeof o.boot, "%s", boot ? boot : "");
        const char *why = "";
        enum owner_state st = owner_judge(&o, &why);
        if (st == OWNER_FOREIGN && left)
                strv_push_take(left, xasprintf("%s (owner %d:%llu:%llu %s)", what, pid, (unsigned long long) start,
                                               (unsigned long long) pidns, why));
        return st == OWNER_DEAD;
}

static int reap_tmp(struct oci_store *s, bool dry_run, char ***removed, char ***left, hm_error_t *err)
{
        _cleanup_free_ char *dir = xasprintf("%s/tmp", s->path);
        _cleanup_closedir_ DIR *d = opendir(dir);
        if (!d)
                return hm_error_set(err, errno, "open '%s': %s", dir, strerror(errno));
        struct dirent *de;
        int ret = 0;
        while ((de = readdir(d))) {
                int pid = 0, n = 0;
                unsigned long long start = 0, ns = 0;
                const char *dash = strchr(de->d_name, '-');
                if (de->d_name[0] == '.' || !dash || sscanf(dash, "-%d-%llu-%n", &pid, &start, &n) != 2 || !n)
                        continue;
                /* "<kind>-<pid>-<start>-p<pidns>-<rand>"; older hm wrote no "p<pidns>-" */
                if (dash[n] == 'p' && sscanf(dash + n, "p%llu-", &ns) != 1)
                        ns = 0;
                _cleanup_free_ char *what = xasprintf("tmp/%s", de->d_name);
                if (!owner_dead(pid, start, ns, NULL, left, what))
                        continue;
                strv_push_take(removed, xasprintf("tmp/%s", de->d_name));
                if (dry_run)
                        continue;
                _cleanup_free_ char *p = xasprintf("%s/%s", dir, de->d_name);
                int r = rm_rf(p);
                if (r < 0 && !ret)
                        ret = hm_error_set(err, -r, "remove '%s': %s", p, strerror(-r));
        }
        return ret;
}

static int reap_layers(struct oci_store *s, bool dry_run, char ***removed, char ***left, hm_error_t *err)
{
        _cleanup_free_ char *dir = xasprintf("%s/layers", s->path);
        _cleanup_closedir_ DIR *d = opendir(dir);
        if (!d)
                return hm_error_set(err, errno, "open '%s': %s", dir, strerror(errno));
        struct dirent *de;
        while ((de = readdir(d))) {
                if (!str_has_suffix(de->d_name, ".meta"))
                        continue;
                _cleanup_free_ char *id = xstrndup(de->d_name, strlen(de->d_name) - 5);
                _cleanup_meta_ struct oci_layer_meta *m = NULL;
                hm_error_t e = NULL;
                if (oci_store_layer_meta(s, id, &m, &e) < 0) {
                        hm_error_release(&e);
                        continue;
                }
                if (!m->ephemeral || m->dropped)
                        continue;
                _cleanup_free_ char *what = xasprintf("layers/%s", id);
                if (!owner_dead(m->owner_pid, m->owner_start, m->owner_pidns, m->owner_boot, left, what))
                        continue;
                strv_push_take(removed, xasprintf("layers/%s", id));
                if (dry_run)
                        continue;
                m->dropped = true;
                int r = meta_write(s, m, err);
                if (r < 0)
                        return r;
        }
        return 0;
}

int oci_store_reap(struct oci_store *s, bool dry_run, char ***ret_removed, hm_error_t *err)
{
        return oci_store_reap_full(s, dry_run, ret_removed, NULL, err);
}

int oci_store_reap_full(struct oci_store *s, bool dry_run, char ***ret_removed, char ***ret_left, hm_error_t *err)
{
        _cleanup_strv_ char **removed = xcalloc(1, sizeof(char *));
        _cleanup_strv_ char **left = xcalloc(1, sizeof(char *));
        {
                int r = oci_store_lock(s, err);
                if (r < 0)
                        return r;
                _cleanup_unlock_ struct oci_store *locked = s;
                r = reap_tmp(s, dry_run, &removed, &left, err);
                if (r >= 0)
                        r = reap_layers(s, dry_run, &removed, &left, err);
                if (r < 0 && (*err)->code == ENOSPC && !dry_run) {
                        /*
                         * A full disk: marking a layer dropped needs a block.  Garbage
                         * (the tmp/ dirs just removed, layers nothing references) goes
                         * first, then once more.  The layer that failed was listed
                         * last: the second pass lists it again.
                         */
                        hm_error_release(err);
                        size_t n = strv_len(removed);
                        if (n && str_has_prefix(removed[n - 1], "layers/")) {
                                free(removed[n - 1]);
                                removed[n - 1] = NULL;
                        }
                        r = oci_store_gc(s, err);
                        /* what the first pass left it listed already */
                        if (r >= 0)
                                r = reap_layers(s, dry_run, &removed, NULL, err);
                }
                if (r < 0)
                        return r;
        }
        if (!dry_run) {
                int r = oci_store_gc(s, err);
                if (r < 0)
                        return r;
        }
        if (ret_removed)
                *ret_removed = TAKE_PTR(removed);
        if (ret_left)
                *ret_left = TAKE_PTR(left);
        return 0;
}
