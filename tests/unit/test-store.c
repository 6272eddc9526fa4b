/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The layer store and image import against the real kernel: needs root (it
 * mounts overlays to check whiteouts) and tests/lib/mkimage.sh (busybox-static).
 * The rootless parts run in a child as nobody.
 */
#include "oci/image.h"
#include "oci/store.h"
#include "lib/strbuf.h"
#include "lib/util.h"
#include "tests/unit/tap.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <sys/xattr.h>

#include "lib/handles.h"

static char top[] = "/tmp/hm-test-store-XXXXXX";
static char *images; /* mkimage.sh output */

static int run(char *const argv[])
{
        pid_t pid = fork();
        if (pid == 0) {
                execvp(argv[0], argv);
                _exit(127);
        }
        int st;
        if (pid < 0 || waitpid(pid, &st, 0) < 0)
                return -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static size_t count_dir(const char *path)
{
        _cleanup_closedir_ DIR *d = opendir(path);
        size_t n = 0;
        struct dirent *de;
        while (d && (de = readdir(d)))
                if (de->d_name[0] != '.')
                        n++;
        return n;
}

static size_t count_store(struct oci_store *s, const char *sub)
{
        _cleanup_free_ char *p = xasprintf("%s/%s", oci_store_path(s), sub);
        return count_dir(p);
}

static bool exists(const char *p)
{
        struct stat st;
        return lstat(p, &st) == 0;
}

static struct oci_store *new_store(const char *name)
{
        _cleanup_free_ char *p = xasprintf("%s/%s", top, name);
        struct oci_store *s = NULL;
        hm_error_t err = NULL;
        if (oci_store_open(p, &s, &err) < 0) {
                tap_diag("open store: %s", err->msg);
                hm_error_release(&err);
                exit(1);
        }
        return s;
}

static int import(struct oci_store *s, const char *src, const char *name, struct oci_import_result *res,
                  char **ret_msg)
{
        hm_error_t err = NULL;
        struct oci_import_result tmp;
        int r = oci_image_import(s, src, name, res ? res : &tmp, &err);
        if (r < 0) {
                if (ret_msg)
                        *ret_msg = xstrdup(err->msg);
                else
                        tap_diag("import '%s': %s", src, err->msg);
                hm_error_release(&err);
        } else if (!res) {
                oci_import_result_release(&tmp);
        }
        return r;
}

/* ---- tar building for the escape tests ---- */

struct tent {
        mode_t type;
        const char *name;
        const char *link; /* symlink target or hardlink target */
        const char *data;
};

static void make_tar(const char *path, const struct tent *ents, size_t n)
{
        _cleanup_archive_write_ struct archive *a = archive_write_new();
        archive_write_set_format_pax_restricted(a);
        archive_write_open_filename(a, path);
        for (size_t i = 0; i < n; i++) {
                _cleanup_archive_entry_ struct archive_entry *e = archive_entry_new();
                archive_entry_set_pathname(e, ents[i].name);
                archive_entry_set_filetype(e, ents[i].type);
                archive_entry_set_perm(e, ents[i].type == AE_IFDIR ? 0755 : 0644);
                if (ents[i].type == AE_IFLNK)
                        archive_entry_set_symlink(e, ents[i].link);
                if (ents[i].type == AE_IFREG && ents[i].link)
                        archive_entry_set_hardlink(e, ents[i].link);
                if (ents[i].type == AE_IFCHR)
                        archive_entry_set_rdev(e, makedev(1, 3));
                size_t len = ents[i].data ? strlen(ents[i].data) : 0;
                archive_entry_set_size(e, (la_int64_t) len);
                archive_write_header(a, e);
                if (len)
                        archive_write_data(a, ents[i].data, len);
        }
        archive_write_close(a);
}

/* ---- tests ---- */

static void test_import_kinds(void)
{
        struct oci_store *s = new_store("kinds");
        static const char *const srcs[] = { "oci", "docker.tar", "oci.tar", "rootfs.tar" };
        static const enum oci_source_kind kinds[] = { OCI_SOURCE_LAYOUT_DIR, OCI_SOURCE_DOCKER_TAR,
                                                      OCI_SOURCE_LAYOUT_TAR, OCI_SOURCE_ROOTFS_TAR };
        ino_t first_ino = 0;
        for (size_t i = 0; i < ARRAY_SIZE(srcs); i++) {
                _cleanup_free_ char *src = xasprintf("%s/%s", images, srcs[i]);
                _cleanup_free_ char *name = xasprintf("t%zu:1", i);
                struct oci_import_result res = { 0 };
                int r = import(s, src, name, &res, NULL);
                tap_ok(r == 0 && res.kind == kinds[i], "import %s detected as %s", srcs[i],
                       oci_source_kind_name(res.kind));
                tap_ok(res.n_layers == (i == 3 ? 1u : 2u) && res.n_new_layers == (i == 0 ? 2u : 0u),
                       "%s: %zu layers, %zu unpacked (shared layers unpacked once)", srcs[i], res.n_layers,
                       res.n_new_layers);
                struct oci_image *img = NULL;
                hm_error_t err = NULL;
                if (oci_store_image_get(s, name, &img, &err) < 0) {
                        tap_ok(false, "get %s: %s", name, err->msg);
                        hm_error_release(&err);
                        continue;
                }
                _cleanup_free_ char *p = oci_store_layer_path(s, img->layers[0]);
                struct stat st;
                if (stat(p, &st) == 0 && !first_ino)
                        first_ino = st.st_ino;
                tap_ok(st.st_ino == first_ino, "%s: base layer is the same directory (inode %lu)", srcs[i],
                       (unsigned long) st.st_ino);
                bool env = false;
                for (size_t k = 0; img->config.env && img->config.env[k]; k++)
                        env |= !strcmp(img->config.env[k], i == 3 ? OCI_DEFAULT_PATH_ENV : "HM_IMAGE=busybox");
                tap_ok(env, "%s: config Env kept", srcs[i]);
                oci_image_free(img);
                oci_import_result_release(&res);
        }
        tap_ok(count_store(s, "layers") == 4, "2 layers (dirs + metas) for 4 images");
        tap_ok(count_store(s, "tmp") == 0, "tmp/ is empty after imports");

        /* whiteouts and opaque dirs as an overlay shows them */
        struct oci_image *img = NULL;
        hm_error_t err = NULL;
        _cleanup_strv_ char **ids = NULL, **lowers = NULL;
        if (oci_store_image_get(s, "t0:1", &img, &err) == 0) {
                ids = strv_copy(img->layers);
                oci_image_free(img);
        }
        hm_error_release(&err);
        if (ids && oci_store_chain_paths(s, ids, &lowers, &err) == 0) {
                _cleanup_free_ char *mnt = xasprintf("%s/mnt", top);
                _cleanup_free_ char *opt = xasprintf("lowerdir=%s:%s", lowers[0], lowers[1]);
                mkdir(mnt, 0755);
                int r = mount("overlay", mnt, "overlay", MS_RDONLY, opt);
                tap_ok(r == 0, "mount the image as a read-only overlay: %s", r ? strerror(errno) : "ok");
                _cleanup_free_ char *gone = xasprintf("%s/etc/gone", mnt), *mark = xasprintf("%s/etc/hm-image", mnt);
                _cleanup_free_ char *old = xasprintf("%s/opt/old/file", mnt), *new = xasprintf("%s/opt/old/new", mnt);
                _cleanup_free_ char *bb = xasprintf("%s/bin/busybox", mnt);
                tap_ok(r == 0 && !exists(gone) && exists(mark), "whiteout hides /etc/gone, layer 2 adds /etc/hm-image");
                tap_ok(r == 0 && !exists(old) && exists(new) && exists(bb), "opaque /opt/old shows only layer 2's files");
                if (r == 0)
                        umount2(mnt, MNT_DETACH);
        } else {
                tap_ok(false, "image chain paths: %s", err ? err->msg : "?");
                hm_error_release(&err);
        }

        /* image rm: layers stay while another image uses them, then go */
        for (int i = 0; i < 4; i++) {
                _cleanup_free_ char *name = xasprintf("t%d:1", i);
                if (oci_store_image_rm(s, name, &err) < 0) {
                        tap_diag("rm %s: %s", name, err->msg);
                        hm_error_release(&err);
                }
                if (i == 0)
                        tap_ok(count_store(s, "layers") == 4, "rm of one image keeps shared layers");
        }
        tap_ok(count_store(s, "layers") == 0 && count_store(s, "images") == 0, "rm of all images removes all layers");
        tap_ok(oci_store_image_rm(s, "t0:1", &err) < 0 && err && err->code == ENOENT, "rm of a missing image: ENOENT");
        hm_error_release(&err);
        oci_store_free(s);
}

static void test_escapes(void)
{
        struct oci_store *s = new_store("escapes");
        _cleanup_free_ char *outside = xasprintf("%s/outside", top);
        mkdir(outside, 0755);
        _cleanup_free_ char *abs = xasprintf("%s/abs-file", outside);
        struct stat pw0;
        stat("/etc/passwd", &pw0);
        struct {
                const char *what;
                struct tent e[3];
                size_t n;
        } cases[] = {
                { "../x", { { AE_IFREG, "../x", NULL, "pwned" } }, 1 },
                { "../../outside/x", { { AE_IFREG, "a/../../../outside/x", NULL, "pwned" } }, 1 },
                { "/abs", { { AE_IFREG, abs, NULL, "pwned" } }, 1 },
                { "symlink then a file through it",
                  { { AE_IFLNK, "lnk", outside, NULL }, { AE_IFREG, "lnk/evil", NULL, "pwned" } }, 2 },
                { "hardlink to /etc/passwd", { { AE_IFREG, "hl", "/etc/passwd", NULL } }, 1 },
                { "hardlink to ../../../../etc/passwd", { { AE_IFREG, "hl", "../../../../etc/passwd", NULL } }, 1 },
                { "hardlink through a symlink",
                  { { AE_IFLNK, "etc", "/etc", NULL }, { AE_IFREG, "hl", "etc/passwd", NULL } }, 2 },
                { "whiteout through a symlink",
                  { { AE_IFLNK, "d", outside, NULL }, { AE_IFREG, "d/.wh.victim", NULL, NULL } }, 2 },
        };
        _cleanup_free_ char *victim = xasprintf("%s/victim", outside);
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
                int fd = open(victim, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
                close(fd);
                _cleanup_free_ char *tar = xasprintf("%s/escape%zu.tar", top, i);
                make_tar(tar, cases[i].e, cases[i].n);
                _cleanup_free_ char *msg = NULL;
                int r = import(s, tar, "evil", NULL, &msg);
                _cleanup_free_ char *x1 = xasprintf("%s/tmp/x", oci_store_path(s));
                _cleanup_free_ char *x2 = xasprintf("%s/x", outside), *x3 = xasprintf("%s/evil", outside);
                struct stat pw, vs;
                stat("/etc/passwd", &pw);
                bool clean = !exists(x1) && !exists(x2) && !exists(x3) && !exists(abs) &&
                             pw.st_nlink == pw0.st_nlink && lstat(victim, &vs) == 0 && S_ISREG(vs.st_mode);
                tap_ok(r < 0 && clean, "escape '%s' refused, nothing written outside (%s)", cases[i].what,
                       msg ? msg : "no error");
                tap_ok(count_store(s, "layers") == 0 && count_store(s, "images") == 0 && count_store(s, "tmp") == 0,
                       "escape '%s': nothing left in the store", cases[i].what);
        }
        oci_store_free(s);
}

static void test_digest_mismatch(void)
{
        struct oci_store *s = new_store("digest");
        _cleanup_free_ char *copy = xasprintf("%s/oci-bad", top);
        _cleanup_free_ char *src = xasprintf("%s/oci", images);
        char *cp[] = { "cp", "-a", src, copy, NULL };
        run(cp);
        /* append a byte to the small uncompressed layer (its blob is named by its digest) */
        _cleanup_free_ char *digests = xasprintf("%s/digests", images), *text = NULL;
        read_file(digests, 0, &text, NULL);
        char *d2 = text ? strstr(text, "diff2 ") : NULL;
        _cleanup_free_ char *blob = d2 ? xasprintf("%s/blobs/sha256/%.64s", copy, d2 + 6) : NULL;
        int fd = blob ? open(blob, O_WRONLY | O_APPEND | O_CLOEXEC) : -1;
        tap_ok(fd >= 0 && write(fd, "x", 1) == 1, "corrupt a layer blob");
        safe_close(fd);
        _cleanup_free_ char *msg = NULL;
        int r = import(s, copy, "bad", NULL, &msg);
        tap_ok(r < 0 && msg && strstr(msg, "digest mismatch"), "corrupted blob refused: %s", msg ? msg : "-");
        tap_ok(count_store(s, "layers") == 0 && count_store(s, "images") == 0 && count_store(s, "tmp") == 0,
               "nothing left in the store after a digest mismatch");
        oci_store_free(s);
}

static void test_reap_interrupted(void)
{
        struct oci_store *s = new_store("reap");
        _cleanup_free_ char *src = xasprintf("%s/rootfs.tar", images);
        /* a child unpacks a layer into tmp/ and dies before committing it */
        pid_t pid = fork();
        if (pid == 0) {
                char *tmp = NULL;
                hm_error_t err = NULL;
                if (oci_store_mkdtemp(s, "layer", &tmp, &err) < 0)
                        _exit(1);
                int fd = open(src, O_RDONLY | O_CLOEXEC);
                oci_unpack_layer(fd, tmp, oci_store_xattr_prefix(s), 1ULL << 30, NULL, &err);
                _exit(0);
        }
        int st;
        waitpid(pid, &st, 0);
        char *mine = NULL;
        hm_error_t err = NULL;
        oci_store_mkdtemp(s, "live", &mine, &err);
        tap_ok(count_store(s, "tmp") == 2 && count_store(s, "layers") == 0, "interrupted unpack is only in tmp/");
        struct oci_image **v = NULL;
        size_t n = 9;
        oci_store_image_list(s, &v, &n, &err);
        oci_image_list_free(v, n);
        tap_ok(n == 0, "no image visible");
        char **removed = NULL;
        int r = oci_store_reap(s, true, &removed, &err);
        tap_ok(r == 0 && strv_len(removed) == 1 && count_store(s, "tmp") == 2, "dry run lists the dead one only");
        strv_free(removed);
        removed = NULL;
        r = oci_store_reap(s, false, &removed, &err);
        tap_ok(r == 0 && strv_len(removed) == 1 && count_store(s, "tmp") == 1 && exists(mine),
               "reap removes the dead owner's tmp dir, keeps ours");
        strv_free(removed);
        rm_rf(mine);
        free(mine);

        /* an ephemeral snapshot of a dead run is reaped; a cached one is kept */
        if (import(s, src, "base", NULL, NULL) < 0)
                return;
        pid = fork();
        if (pid == 0) {
                _cleanup_strv_ char **chain = NULL;
                struct oci_store_upper *u = NULL;
                char *id = NULL;
                if (oci_store_image_chain(s, "base", &chain, &err) < 0 ||
                    oci_store_begin_layer(s, "run1", &u, &err) < 0 ||
                    oci_store_commit_layer(s, u, chain, "run1", NULL, &id, &err) < 0)
                        _exit(1);
                if (oci_store_begin_layer(s, "run1", &u, &err) < 0 ||
                    oci_store_commit_layer(s, u, chain, "run1", "harmont-cache/x:0123", &id, &err) < 0)
                        _exit(1);
                _exit(0);
        }
        waitpid(pid, &st, 0);
        tap_ok(WIFEXITED(st) && WEXITSTATUS(st) == 0 && count_store(s, "layers") == 6, "dead run left two snapshots");
        r = oci_store_reap(s, false, &removed, &err);
        char *tid = NULL;
        tap_ok(r == 0 && strv_len(removed) == 1 && count_store(s, "layers") == 4 &&
                       oci_store_tag_get(s, "harmont-cache/x:0123", &tid, &err) == 1,
               "reap drops the ephemeral snapshot, keeps the cached one");
        free(tid);
        strv_free(removed);
        hm_error_release(&err);
        oci_store_free(s);
}

static char *commit_with(struct oci_store *s, char *const *lowers, const char *file, const char *tag)
{
        struct oci_store_upper *u = NULL;
        hm_error_t err = NULL;
        char *id = NULL;
        if (oci_store_begin_layer(s, "run", &u, &err) == 0) {
                _cleanup_free_ char *p = xasprintf("%s/%s", u->upper, file);
                int fd = open(p, O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
                (void) !write(fd, file, strlen(file));
                safe_close(fd);
                oci_store_commit_layer(s, u, lowers, "run", tag, &id, &err);
        }
        if (err) {
                tap_diag("commit: %s", err->msg);
                hm_error_release(&err);
        }
        return id;
}

static void test_snapshots(void)
{
        struct oci_store *s = new_store("snap");
        _cleanup_free_ char *src = xasprintf("%s/oci", images);
        if (import(s, src, "base", NULL, NULL) < 0)
                return;
        hm_error_t err = NULL;
        _cleanup_strv_ char **base = NULL;
        oci_store_image_chain(s, "base", &base, &err);

        /* commit is a rename: the upper dir is the layer */
        struct oci_store_upper *u = NULL;
        oci_store_begin_layer(s, "run", &u, &err);
        struct stat before, after;
        stat(u->upper, &before);
        char *a = NULL;
        int r = oci_store_commit_layer(s, u, base, "run", NULL, &a, &err);
        _cleanup_free_ char *ap = a ? oci_store_layer_path(s, a) : NULL;
        tap_ok(r == 0 && ap && stat(ap, &after) == 0 && after.st_ino == before.st_ino && after.st_dev == before.st_dev,
               "commit renames the upper into layers/ (same inode)");
        tap_ok(count_store(s, "tmp") == 0, "commit leaves nothing in tmp/");

        free(commit_with(s, NULL, "b", NULL));
        char **chain_a = NULL;
        oci_store_snapshot_chain(s, a, &chain_a, &err);
        char *c = commit_with(s, chain_a, "c", "harmont-cache/c:0000");
        char **chain_c = NULL;
        r = oci_store_snapshot_chain(s, c, &chain_c, &err);
        tap_ok(r == 0 && strv_len(chain_c) == 4 && !strcmp(chain_c[0], base[0]) && !strcmp(chain_c[1], base[1]) &&
                       !strcmp(chain_c[2], a) && !strcmp(chain_c[3], c),
               "chain of a child snapshot: image layers, parent, itself");
        char **paths = NULL;
        r = oci_store_chain_paths(s, chain_c, &paths, &err);
        _cleanup_free_ char *cp = oci_store_layer_path(s, c);
        tap_ok(r == 0 && strv_len(paths) == 4 && !strcmp(paths[0], cp), "lower dirs are top first");
        strv_free(paths);
        char *tid = NULL;
        tap_ok(oci_store_tag_get(s, "harmont-cache/c:0000", &tid, &err) == 1 && tid && !strcmp(tid, c),
               "cache tag resolves to the snapshot");
        free(tid);
        tid = NULL;
        tap_ok(oci_store_tag_get(s, "harmont-cache/none:0000", &tid, &err) == 0, "unknown tag: miss");

        /* dropping the ephemeral parent keeps it while the cached child needs it */
        r = oci_store_drop_layer(s, a, &err);
        tap_ok(r == 0 && exists(ap), "dropped parent stays while a child's chain uses it");
        strv_free(chain_a);
        chain_a = NULL;
        tap_ok(oci_store_snapshot_chain(s, a, &chain_a, &err) < 0, "a dropped snapshot does not resolve");
        hm_error_release(&err);
        r = oci_store_drop_layer(s, c, &err);
        tap_ok(r == 0 && !exists(ap) && !exists(cp) && oci_store_tag_get(s, "harmont-cache/c:0000", &tid, &err) == 0,
               "dropping the child removes both and its tag");
        tap_ok(oci_store_drop_layer(s, "0123456789abcdef", &err) == 0, "dropping an unknown id is not an error");
        strv_free(chain_c);
        free(c);
        free(a);

        /* host image */
        _cleanup_strv_ char **host = NULL, **hp = NULL;
        r = oci_store_image_chain(s, "host", &host, &err);
        tap_ok(r == 0 && oci_store_chain_paths(s, host, &hp, &err) == 0 && strv_len(hp) == 1 && !strcmp(hp[0], "/"),
               "image 'host' is the single lower '/'");
        hm_error_release(&err);
        oci_store_free(s);
}

static void test_flatten(void)
{
        struct oci_store *s = new_store("flat");
        _cleanup_free_ char *src = xasprintf("%s/oci", images);
        if (import(s, src, "base", NULL, NULL) < 0)
                return;
        hm_error_t err = NULL;
        char **chain = NULL;
        oci_store_image_chain(s, "base", &chain, &err);
        size_t max_len = 0;
        bool flattened = false;
        for (int i = 0; i < 80; i++) {
                struct oci_store_upper *u = NULL;
                if (oci_store_begin_layer(s, "run", &u, &err) < 0)
                        break;
                _cleanup_free_ char *f = xasprintf("%s/f%02d", u->upper, i);
                int fd = open(f, O_CREAT | O_WRONLY | O_CLOEXEC, 0640);
                (void) !write(fd, "x", 1);
                safe_close(fd);
                if (i % 10 == 5) { /* delete the previous file as overlay would: a whiteout */
                        _cleanup_free_ char *w = xasprintf("%s/f%02d", u->upper, i - 1);
                        mknod(w, S_IFCHR, makedev(0, 0));
                }
                if (i == 30) { /* and replace /opt with an opaque dir */
                        _cleanup_free_ char *o = xasprintf("%s/opt", u->upper), *n = xasprintf("%s/opt/n", u->upper);
                        mkdir(o, 0711);
                        setxattr(o, "trusted.overlay.opaque", "y", 1, 0);
                        mkdir(n, 0755);
                }
                char *id = NULL;
                if (oci_store_commit_layer(s, u, chain, "run", NULL, &id, &err) < 0)
                        break;
                strv_free(chain);
                chain = NULL;
                oci_store_snapshot_chain(s, id, &chain, &err);
                free(id);
                if (strv_len(chain) < max_len)
                        flattened = true;
                if (strv_len(chain) > max_len)
                        max_len = strv_len(chain);
        }
        if (err) {
                tap_diag("%s", err->msg);
                hm_error_release(&err);
        }
        tap_ok(flattened && max_len <= OCI_STORE_MAX_CHAIN, "a deep chain is flattened (max %zu layers)", max_len);
        _cleanup_free_ char *mnt = xasprintf("%s/flatmnt", top);
        mkdir(mnt, 0755);
        char **paths = NULL;
        oci_store_chain_paths(s, chain, &paths, &err);
        struct strbuf sb = STRBUF_INIT;
        strbuf_addstr(&sb, "lowerdir=");
        for (size_t i = 0; paths && paths[i]; i++)
                strbuf_addf(&sb, "%s%s", i ? ":" : "", paths[i]);
        if (strv_len(paths) == 1)
                strbuf_addf(&sb, ":%s", paths[0]); /* a read-only overlay needs two lowers */
        int r = mount("overlay", mnt, "overlay", MS_RDONLY, sb.buf);
        strbuf_release(&sb);
        strv_free(paths);
        bool ok = r == 0;
        for (int i = 0; ok && i < 80; i++) {
                _cleanup_free_ char *f = xasprintf("%s/f%02d", mnt, i);
                bool deleted = i % 10 == 4;
                if (exists(f) == deleted) {
                        tap_diag("f%02d: %s", i, deleted ? "should be deleted" : "missing");
                        ok = false;
                }
        }
        _cleanup_free_ char *old = xasprintf("%s/opt/old", mnt), *n = xasprintf("%s/opt/n", mnt);
        _cleanup_free_ char *bb = xasprintf("%s/bin/busybox", mnt), *gone = xasprintf("%s/etc/gone", mnt);
        struct stat st;
        ok = ok && !exists(old) && exists(n) && exists(bb) && !exists(gone) && stat(bb, &st) == 0 &&
             (st.st_mode & 0777) == 0755;
        tap_ok(ok, "the flattened chain shows the same tree: files, whiteouts, opaque dir, modes");
        if (r == 0)
                umount2(mnt, MNT_DETACH);
        strv_free(chain);
        oci_store_free(s);
}

static bool is_whiteout_dev(const char *p)
{
        struct stat st;
        return lstat(p, &st) == 0 && S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
}

static bool is_opaque(const char *p)
{
        char v[4];
        ssize_t n = lgetxattr(p, "trusted.overlay.opaque", v, sizeof v);
        return n == 1 && v[0] == 'y';
}

/* A host step's upper: a file (0640, 1234:5678, user xattr, 2 hardlinks), a whiteout, an opaque dir. */
static void fill_host_upper(const char *up, int i)
{
        _cleanup_free_ char *f = xasprintf("%s/f%02d", up, i), *h = xasprintf("%s/h%02d", up, i);
        int fd = open(f, O_CREAT | O_WRONLY | O_CLOEXEC, 0640);
        (void) !write(fd, "data", 4);
        safe_close(fd);
        (void) !fchownat(AT_FDCWD, f, 1234, 5678, 0);
        (void) !chmod(f, 0640);
        setxattr(f, "user.hm", "v", 1, 0);
        (void) !link(f, h);
        if (i == 0) {
                _cleanup_free_ char *etc = xasprintf("%s/etc", up), *w = xasprintf("%s/etc/debian_version", up);
                _cleanup_free_ char *o = xasprintf("%s/etc/apt", up), *n = xasprintf("%s/etc/apt/only", up);
                mkdir(etc, 0755);
                mknod(w, S_IFCHR, makedev(0, 0));
                mkdir(o, 0755);
                setxattr(o, "trusted.overlay.opaque", "y", 1, 0);
                mkdir(n, 0755);
        }
}

/* The layer form of a host snapshot's files, as a copy or a flattened layer. */
static bool check_host_layer(const char *dir, int n)
{
        _cleanup_free_ char *w = xasprintf("%s/etc/debian_version", dir), *o = xasprintf("%s/etc/apt", dir);
        _cleanup_free_ char *only = xasprintf("%s/etc/apt/only", dir);
        bool ok = is_whiteout_dev(w) && is_opaque(o) && exists(only);
        for (int i = 0; ok && i < n; i++) {
                _cleanup_free_ char *f = xasprintf("%s/f%02d", dir, i), *h = xasprintf("%s/h%02d", dir, i);
                struct stat a, b;
                char v[4] = "";
                ok = stat(f, &a) == 0 && stat(h, &b) == 0 && a.st_ino == b.st_ino && (a.st_mode & 07777) == 0640 &&
                     a.st_uid == 1234 && a.st_gid == 5678 && a.st_size == 4 && getxattr(f, "user.hm", v, 1) == 1;
        }
        return ok;
}

/*
 * Host snapshots: copied as layers onto another filesystem (what the ns runner
 * does on a root-fs store), and flattened, whiteouts and opaque dirs must stay.
 */
static void test_host_layers(void)
{
        struct oci_store *s = new_store("hostl");
        hm_error_t err = NULL;
        _cleanup_free_ char *layers = xasprintf("%s/layers", oci_store_path(s));
        struct stat rs, ls;
        bool same = stat("/", &rs) == 0 && stat(layers, &ls) == 0 && rs.st_dev == ls.st_dev;
        tap_ok(oci_store_layers_on_host_root(s) == same, "store layers on the root filesystem: %s", same ? "yes" : "no");

        _cleanup_free_ char *tm = xasprintf("%s/tmpfs", top);
        mkdir(tm, 0755);
        if (mount("tmpfs", tm, "tmpfs", 0, "mode=0755") < 0) {
                tap_ok(false, "mount tmpfs: %s", strerror(errno));
                oci_store_free(s);
                return;
        }
        _cleanup_free_ char *tsp = xasprintf("%s/store", tm);
        struct oci_store *ts = NULL;
        tap_ok(oci_store_open(tsp, &ts, &err) == 0 && !oci_store_layers_on_host_root(ts),
               "a store on a tmpfs is not on the root filesystem");
        oci_store_free(ts);
        hm_error_release(&err);

        char **chain = NULL;
        strv_push(&chain, OCI_HOST_IMAGE);
        char *first = NULL;
        bool flattened = false;
        int n = 0;
        for (; n < 70 && !flattened; n++) {
                struct oci_store_upper *u = NULL;
                char *id = NULL;
                if (oci_store_begin_layer(s, "run", &u, &err) < 0)
                        break;
                fill_host_upper(u->upper, n);
                if (oci_store_commit_layer(s, u, chain, "run", NULL, &id, &err) < 0)
                        break;
                strv_free(chain);
                chain = NULL;
                oci_store_snapshot_chain(s, id, &chain, &err);
                flattened = n > 0 && strv_len(chain) == 2;
                if (!first)
                        first = id;
                else
                        free(id);
        }
        if (err) {
                tap_diag("%s", err->msg);
                hm_error_release(&err);
        }
        _cleanup_free_ char *copy = xasprintf("%s/copy", tm);
        mkdir(copy, 0755);
        int r = first ? oci_store_copy_layer(s, first, copy, &err) : -1;
        tap_ok(r == 0 && check_host_layer(copy, 1),
               "a host snapshot copied onto a tmpfs keeps whiteouts, opaque dirs, modes, owners, xattrs, hardlinks (%s)",
               err ? err->msg : "ok");
        hm_error_release(&err);
        _cleanup_free_ char *flat = flattened ? oci_store_layer_path(s, chain[1]) : NULL;
        tap_ok(flattened && !strcmp(chain[0], OCI_HOST_IMAGE) && check_host_layer(flat, n),
               "a deep host chain flattens into one layer over 'host' that still hides host files (%d layers)", n);
        umount2(tm, MNT_DETACH);
        free(first);
        strv_free(chain);
        oci_store_free(s);
}

static void test_limits_and_devices(void)
{
        struct oci_store *s = new_store("limits");
        _cleanup_free_ char *src = xasprintf("%s/rootfs.tar", images);
        oci_store_set_size_limit(s, 100000);
        _cleanup_free_ char *msg = NULL;
        int r = import(s, src, "big", NULL, &msg);
        tap_ok(r < 0 && msg && strstr(msg, "limit"), "size limit refuses a big layer: %s", msg ? msg : "-");
        tap_ok(count_store(s, "layers") == 0 && count_store(s, "tmp") == 0, "nothing left after the size limit");
        oci_store_set_size_limit(s, OCI_STORE_DEFAULT_SIZE_LIMIT);

        struct tent devs[] = { { AE_IFDIR, "dev", NULL, NULL }, { AE_IFCHR, "dev/null", NULL, NULL },
                               { AE_IFREG, "suid", NULL, "x" } };
        _cleanup_free_ char *tar = xasprintf("%s/devs.tar", top);
        make_tar(tar, devs, ARRAY_SIZE(devs));
        struct oci_import_result res = { 0 };
        r = import(s, tar, "devs", &res, NULL);
        struct oci_image *img = NULL;
        hm_error_t err = NULL;
        oci_store_image_get(s, "devs", &img, &err);
        _cleanup_free_ char *dn = img ? xasprintf("%s/layers/%s/dev/null", oci_store_path(s), img->layers[0]) : NULL;
        struct stat st;
        tap_ok(r == 0 && res.stats.skipped_devices == 0 && dn && stat(dn, &st) == 0 && S_ISCHR(st.st_mode),
               "as root a device node is created");
        oci_image_free(img);
        oci_import_result_release(&res);

        /* rootless: a store owned by nobody, unpacked as nobody */
        _cleanup_free_ char *rl = xasprintf("%s/rootless", top);
        mkdir(rl, 0755);
        (void) !chown(rl, 65534, 65534);
        _cleanup_free_ char *oci = xasprintf("%s/oci", images);
        pid_t pid = fork();
        if (pid == 0) {
                if (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
                        _exit(10);
                struct oci_store *ns = NULL;
                struct oci_import_result rr = { 0 };
                _cleanup_free_ char *p = xasprintf("%s/store", rl);
                if (oci_store_open(p, &ns, &err) < 0 || strcmp(oci_store_xattr_prefix(ns), "user.overlay."))
                        _exit(11);
                if (oci_image_import(ns, tar, "devs", &rr, &err) < 0 || rr.stats.skipped_devices != 1)
                        _exit(12);
                _cleanup_free_ char *suid = xasprintf("%s/layers/%.16s/suid", p, rr.id + 7);
                if (oci_image_import(ns, oci, "busybox", &rr, &err) < 0)
                        _exit(13);
                struct oci_image *im = NULL;
                if (oci_store_image_get(ns, "busybox", &im, &err) < 0)
                        _exit(14);
                _cleanup_free_ char *wh = xasprintf("%s/layers/%s/etc/gone", p, im->layers[1]);
                _cleanup_free_ char *op = xasprintf("%s/layers/%s/opt/old", p, im->layers[1]);
                struct stat ws;
                char v[4] = "";
                if (lstat(wh, &ws) < 0 || !S_ISCHR(ws.st_mode) || ws.st_rdev != makedev(0, 0))
                        _exit(15);
                if (getxattr(op, "user.overlay.opaque", v, sizeof v) != 1 || v[0] != 'y')
                        _exit(16);
                _exit(0);
        }
        int wst;
        waitpid(pid, &wst, 0);
        tap_ok(WIFEXITED(wst) && WEXITSTATUS(wst) == 0,
               "rootless: devices skipped and counted, whiteouts as 0/0 devices, user.overlay.opaque (rc %d)",
               WIFEXITED(wst) ? WEXITSTATUS(wst) : -1);
        oci_store_free(s);
}

/* oci_store_trylock: busy (0) while another process holds <store>/lock, never waiting; nests. */
static void test_trylock(void)
{
        _cleanup_oci_store_ struct oci_store *s = new_store("trylock");
        _cleanup_free_ char *path = xasprintf("%s/lock", oci_store_path(s));
        int ready[2], release[2];
        if (pipe2(ready, O_CLOEXEC) < 0 || pipe2(release, O_CLOEXEC) < 0)
                abort();
        pid_t pid = fork();
        if (pid == 0) { /* another process: flock, say so, hold until `release` closes */
                int fd = open(path, O_RDWR | O_CLOEXEC);
                char c = 0;
                close(release[1]);
                if (fd < 0 || flock(fd, LOCK_EX) < 0 || write(ready[1], "x", 1) != 1)
                        _exit(1);
                (void) !read(release[0], &c, 1);
                _exit(0);
        }
        close(ready[1]);
        close(release[0]);
        char c;
        hm_error_t err = NULL;
        tap_ok(pid > 0 && read(ready[0], &c, 1) == 1, "another process holds the store lock");
        int r = oci_store_trylock(s, &err); /* a wait here would never end: the holder waits for us */
        tap_ok(r == 0, "trylock says busy (0) without waiting");
        close(release[1]); /* the holder exits */
        close(ready[0]);
        int st;
        waitpid(pid, &st, 0);
        tap_ok(oci_store_trylock(s, &err) == 1 && oci_store_trylock(s, &err) == 1, "free: held (1), and it nests");
        oci_store_unlock(s);
        oci_store_unlock(s);
        int fd = open(path, O_RDWR | O_CLOEXEC);
        tap_ok(fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0, "two unlocks release it");
        if (fd >= 0)
                close(fd);
        hm_error_release(&err);
}

int main(void)
{
        if (geteuid() != 0) {
                printf("1..0 # SKIP needs root (mounts overlays)\n");
                return 77;
        }
        const char *srcdir = getenv("HM_SRCDIR") ? getenv("HM_SRCDIR") : ".";
        _cleanup_free_ char *script = xasprintf("%s/tests/lib/mkimage.sh", srcdir);
        if (access(script, X_OK) < 0 || access("/bin/busybox", X_OK) < 0) {
                printf("1..0 # SKIP needs %s and busybox-static\n", script);
                return 77;
        }
        if (!mkdtemp(top))
                return 1;
        chmod(top, 0755);
        images = xasprintf("%s/images", top);
        char *argv[] = { "bash", script, images, NULL };
        if (run(argv) != 0) {
                tap_ok(false, "mkimage.sh");
                return tap_done();
        }
        test_import_kinds();
        test_escapes();
        test_digest_mismatch();
        test_reap_interrupted();
        test_snapshots();
        test_flatten();
        test_host_layers();
        test_limits_and_devices();
        test_trylock();
        rm_rf(top);
        free(images);
        return tap_done();
}
