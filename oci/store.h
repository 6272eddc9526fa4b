/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The content-addressed layer store of the ns runner.
 *
 * Location: $HM_STORE, else $XDG_DATA_HOME/hm, else /var/lib/hm (root) or
 * ~/.local/share/hm.  Layout:
 *
 *   lock                   flock()ed for every structural change (add/commit/drop
 *                          a layer, put/remove an image, tag, gc, reap)
 *   format                 "hm-store 1 <xattr prefix>": "trusted.overlay." for a
 *                          root store, "user.overlay." for a rootless one
 *   blobs/sha256/<hex>     verified image config and manifest blobs, as imported
 *                          (layer blobs are not kept: the unpacked dir is the layer)
 *   layers/<id>/           one unpacked layer = one overlay lower dir.  id is 16 hex:
 *                          the first 16 of the diff-id (sha256 of the uncompressed
 *                          layer tar) for image layers, so a layer shared by two
 *                          images is unpacked once; random for snapshots.
 *   layers/<id>.meta       text, one "key value" per line: kind (image|snapshot|
 *                          workspace), created, diff_id, parent, lowers (the ids
 *                          below it, bottom-first), run, owner (pid and starttime,
 *                          /proc/PID/stat field 22), ephemeral, dropped, size
 *   images/<escaped name>  JSON: name, id (config digest), layers (ids bottom-first),
 *                          diff_ids, size, created and config (Env, Entrypoint, Cmd,
 *                          WorkingDir, User).  Names are percent-escaped.
 *   tags/<escaped tag>     the snapshot id a cache tag points to
 *   tmp/<kind>-<pid>-<starttime>-<rand>
 *                          work in progress: layer unpacks, step upper+work dirs.
 *                          A layer becomes visible only by rename() into layers/
 *                          under the lock; metadata is written to a temp file,
 *                          fsync'd and renamed.  An interrupted import or step
 *                          leaves only tmp/ entries, removed by oci_store_reap().
 *
 * Whiteouts: layer tars' ".wh.NAME" entries become overlay whiteouts, i.e. char
 * devices 0/0.  Linux lets any user create exactly that device (vfs_mknod's
 * whiteout exception, 5.8+), so root and rootless stores use the same form.
 * Opaque dirs (".wh..wh..opq") get <prefix>opaque=y: trusted.overlay.opaque as
 * root; user.overlay.opaque in a rootless store, which the runtime must mount
 * with the "userxattr" overlay option.  Overlay-created whiteouts in committed
 * uppers have the same forms.  Overlay xattrs carried inside layer tars are
 * dropped (they could forge redirects or opaqueness).
 *
 * Lifetime: image layers live while an image or a live snapshot references
 * them.  A snapshot's meta records its full lower chain, so dropping a parent
 * snapshot (e.g. the ephemeral parent of a cached child) only marks it
 * dropped; oci_store_gc() deletes layers no image, tag-less live snapshot or
 * chain references any more.
 *
 * The special image "host" is the host's root filesystem as the single,
 * read-only lower dir "/" (layer id "host", nothing copied).  It needs real
 * root: in a user namespace the kernel refuses "/" as an overlay lower because
 * of its locked submounts ("failed to clone lowerpath").  Layers stacked above
 * it (snapshots of host steps, the workspace) must not lie below "/" on the
 * same filesystem (see oci_store_layers_on_host_root()).  Flattening a host
 * chain keeps whiteouts and opaque dirs, which must go on hiding host files.
 */
#ifndef HM_OCI_STORE_H
#define HM_OCI_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/error.h"

#define OCI_STORE_MAX_CHAIN 64               /* flatten a snapshot chain beyond this */
#define OCI_STORE_MAX_LOWER_BYTES 3000       /* ... or when its lower paths exceed this */
#define OCI_STORE_DEFAULT_SIZE_LIMIT (8ULL << 30)
#define OCI_HOST_IMAGE "host"
#define OCI_DEFAULT_PATH_ENV "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

struct oci_store;

enum oci_layer_kind { OCI_LAYER_IMAGE, OCI_LAYER_SNAPSHOT, OCI_LAYER_WORKSPACE };

struct oci_layer_meta {
        enum oci_layer_kind kind;
        char id[17];
        int64_t created;     /* unix seconds */
        char *diff_id;       /* "sha256:<hex>" for image layers, else NULL */
        char *parent;        /* snapshot: the id directly below, or NULL */
        char **lowers;       /* ids below this layer, bottom-first (may hold "host") */
        char *run_id;        /* owning run, or NULL */
        int owner_pid;       /* 0: none */
        uint64_t owner_start;
        uint64_t owner_pidns; /* oci/owner.h; 0: not recorded (the judge's own), filled in for this process */
        char owner_boot[40];
        bool ephemeral;
        bool dropped;
        uint64_t size;       /* bytes of file data (image layers), 0 if unknown */
};
void oci_layer_meta_free(struct oci_layer_meta *m);

struct oci_image_config {
        char **env;        /* "K=V" */
        char **entrypoint; /* NULL when unset */
        char **cmd;
        char *workdir;
        char *user;
};

struct oci_image {
        char *name;  /* normalised */
        char *id;    /* "sha256:<config digest>", or "" */
        char **layers;   /* layer ids, bottom-first */
        char **diff_ids; /* parallel to layers */
        uint64_t size;
        int64_t created;
        struct oci_image_config config;
};
void oci_image_free(struct oci_image *img);
static inline void oci_image_freep(struct oci_image **p) { oci_image_free(*p); }
#define _cleanup_oci_image_ __attribute__((cleanup(oci_image_freep)))

/* "alpine" -> "alpine:latest", "docker.io/library/x:1" -> "x:1". */
char *oci_image_normalize_name(const char *name);

/* What unpacking a layer tar saw. */
struct oci_unpack_stats {
        uint64_t bytes;            /* file data written */
        size_t entries;
        size_t whiteouts;
        size_t opaque_dirs;
        size_t skipped_devices;    /* char/block devices this user may not create */
};

/* ---- the store ---- */

/* The default location (see above); heap string. */
char *oci_store_default_path(void);
/* path NULL: the default.  Creates the layout when missing. */
int oci_store_open(const char *path, struct oci_store **ret, hm_error_t *err);
void oci_store_free(struct oci_store *s);
static inline void oci_store_freep(struct oci_store **p) { oci_store_free(*p); }
#define _cleanup_oci_store_ __attribute__((cleanup(oci_store_freep)))
const char *oci_store_path(const struct oci_store *s);
/* "trusted.overlay." or "user.overlay." */
const char *oci_store_xattr_prefix(const struct oci_store *s);
/* Total uncompressed bytes one layer may hold (decompression-bomb bound). */
void oci_store_set_size_limit(struct oci_store *s, uint64_t bytes);
uint64_t oci_store_size_limit(const struct oci_store *s);

/* flock the store; nests within one oci_store.  Blocks while another hm holds it. */
int oci_store_lock(struct oci_store *s, hm_error_t *err);
/*
 * The same without waiting, for callers on the loop: 1 held (unlock with
 * oci_store_unlock), 0 another process holds it (try again after
 * OCI_STORE_LOCK_RETRY_MS while the loop runs on), < 0 error.
 */
int oci_store_trylock(struct oci_store *s, hm_error_t *err);
#define OCI_STORE_LOCK_RETRY_MS 20
void oci_store_unlock(struct oci_store *s);

/* ---- layers ---- */

/* Directory of a layer ("/" for "host"); heap string. */
char *oci_store_layer_path(const struct oci_store *s, const char *id);
bool oci_store_has_layer(const struct oci_store *s, const char *id);
int oci_store_layer_meta(struct oci_store *s, const char *id, struct oci_layer_meta **ret, hm_error_t *err);

/* A fresh empty dir tmp/<kind>-<owner>-<rand> (heap path), owned by this process. */
int oci_store_mkdtemp(struct oci_store *s, const char *kind, char **ret, hm_error_t *err);

/*
 * Unpack a layer tar (any compression libarchive knows) read with pread() from
 * fd into `dir`, safely: entries with absolute paths or ".." are refused,
 * nothing is extracted through a symlink, hardlink targets must stay inside,
 * devices only when this user may create them (else skipped and counted),
 * setuid/setgid bits only as root, at most the store's size limit of data.
 * `xattr_prefix` says how opaque dirs are marked.  Fails on the first
 * offending entry; the caller removes `dir`.
 */
int oci_unpack_layer(int fd, const char *dir, const char *xattr_prefix, uint64_t size_limit,
                     struct oci_unpack_stats *ret_stats, hm_error_t *err);
/* sha256 of the stream read from fd (decompressed if `decompress`): ret_hex is 64 hex + NUL. */
int oci_digest_fd(int fd, bool decompress, uint64_t limit, char ret_hex[65], hm_error_t *err);

/*
 * Move an unpacked tmp dir in as layer m->id with meta m (the caller holds the
 * lock).  If the layer exists already the tmp dir is removed instead.
 */
int oci_store_add_layer_locked(struct oci_store *s, const char *tmpdir, const struct oci_layer_meta *m,
                               hm_error_t *err);
/* Random 16-hex id. */
void oci_store_random_id(char ret[17]);

/* ---- images ---- */

/* ENOENT (err->code) when missing.  "host" is synthesised. */
int oci_store_image_get(struct oci_store *s, const char *name, struct oci_image **ret, hm_error_t *err);
/* Write the image record (the caller holds the lock). */
int oci_store_image_put_locked(struct oci_store *s, const struct oci_image *img, hm_error_t *err);
/* Remove the record and garbage-collect its layers. ENOENT when missing. */
int oci_store_image_rm(struct oci_store *s, const char *name, hm_error_t *err);
int oci_store_image_list(struct oci_store *s, struct oci_image ***ret, size_t *ret_n, hm_error_t *err);
void oci_image_list_free(struct oci_image **v, size_t n);
/* Keep a verified blob (config, manifest) under blobs/sha256/<hex>. */
int oci_store_put_blob(struct oci_store *s, const char *hex, const void *data, size_t n, hm_error_t *err);

/* ---- snapshots ---- */

struct oci_store_upper {
        char *dir;   /* tmp/<...>: the pair's parent */
        char *upper; /* dir/upper */
        char *work;  /* dir/work */
        char *merged; /* dir/merged: an empty mount point for the step's rootfs */
        bool keep_dir; /* abort/commit remove only upper: dir, work and merged stay for the next layer */
};
int oci_store_begin_layer(struct oci_store *s, const char *run_id, struct oci_store_upper **ret,
                          hm_error_t *err);
/*
 * Like oci_store_begin_layer, but the step dir (with work/ and merged/) is
 * kept by abort and commit (u->keep_dir) for the next layer of this process:
 * `dir` is such a kept dir (only a new upper/ is made in it), or NULL for a
 * new one.  Fewer directories to create and remove per step: on a busy ext4
 * without a journal each new inode is a search past the recently deleted
 * ones.  The caller removes the dir with rm_rf() when done; it must not
 * reuse it while an overlay mounted from it may still be alive.
 */
int oci_store_begin_layer_in(struct oci_store *s, const char *dir, struct oci_store_upper **ret, hm_error_t *err);
/* Remove the pair (only the upper if u->keep_dir) and free u; u may be NULL. */
void oci_store_abort_layer(struct oci_store *s, struct oci_store_upper *u);
void oci_store_upper_free(struct oci_store_upper *u);

/*
 * Make u's upper dir the snapshot layer over `lowers` (ids, bottom-first) by
 * rename() (no copy), record its chain, owner and run, and remove the rest of
 * u.  u is consumed, whatever happens.  If lowers + 1 would exceed
 * OCI_STORE_MAX_CHAIN layers (or their paths OCI_STORE_MAX_LOWER_BYTES), the
 * merged view is copied into one new standalone layer instead (flatten).
 * tag != NULL: a cache snapshot (not ephemeral), and tags/<tag> points to it.
 */
int oci_store_commit_layer(struct oci_store *s, struct oci_store_upper *u, char *const *lowers,
                           const char *run_id, const char *tag, char **ret_id, hm_error_t *err);

/* The ordered ids (bottom-first) an overlay needs for snapshot `id`, itself last. */
int oci_store_snapshot_chain(struct oci_store *s, const char *id, char ***ret, hm_error_t *err);
/* The ordered ids (bottom-first) of an image's layers ("host" -> {"host"}). */
int oci_store_image_chain(struct oci_store *s, const char *name, char ***ret, hm_error_t *err);
/* Lower dirs for rt_overlay: TOP FIRST, NULL-terminated.  Missing layers are an error. */
int oci_store_chain_paths(struct oci_store *s, char *const *ids_bottom_first, char ***ret, hm_error_t *err);
/*
 * Copy the merged view of `ids` (bottom-first), applying whiteouts and opaque
 * dirs, into `dest` (an empty dir): cp -a semantics (modes, owners as root,
 * xattrs except overlay's, times, symlinks, hardlinks within a layer).
 */
int oci_store_merge_into(struct oci_store *s, char *const *ids, const char *dest, hm_error_t *err);

/*
 * Copy layer `id` as a layer into `dest` (an empty dir, e.g. on another
 * filesystem): like oci_store_merge_into(), but whiteouts stay 0/0 devices and
 * opaque dirs stay marked (<xattr prefix>opaque=y), so the copy hides the same
 * files of the layers below it as the original.
 */
int oci_store_copy_layer(struct oci_store *s, const char *id, const char *dest, hm_error_t *err);
/*
 * true when the store's layers are on the filesystem (superblock) of "/", or
 * when that cannot be told.  overlayfs refuses a lower dir that is a
 * descendant of another lower ("overlapping lowerdir path", ELOOP), so such
 * layers cannot be stacked above the host image's "/": the ns runner copies
 * them onto a tmpfs first.  (An upper dir below the lower "/" is accepted.)
 */
bool oci_store_layers_on_host_root(const struct oci_store *s);

/* Mark a layer dropped and garbage-collect.  Unknown ids are not an error. */
int oci_store_drop_layer(struct oci_store *s, const char *id, hm_error_t *err);
/*
 * The same for a NULL-terminated list, with one collection at the end (a
 * collection reads every layer's meta: per id it made a run's reaping
 * quadratic).  Every id is tried; the first error is returned.
 */
int oci_store_drop_layers(struct oci_store *s, char *const *ids, hm_error_t *err);
/*
 * Delete layers nothing references (images, live snapshots and their chains),
 * their metas and tags to missing layers.  The caller must not hold the lock.
 */
int oci_store_gc(struct oci_store *s, hm_error_t *err);

/* 1 and *ret_id when the tag exists and its whole chain is present, 0 when not. */
int oci_store_tag_get(struct oci_store *s, const char *tag, char **ret_id, hm_error_t *err);
int oci_store_tag_set_locked(struct oci_store *s, const char *tag, const char *id, hm_error_t *err);

/*
 * Remove tmp/ entries and ephemeral layers whose owner (pid + starttime, and
 * pid namespace when recorded: oci/owner.h) is dead, then gc; an owner in a
 * pid namespace not visible from here is kept.  dry_run: only list.  *ret_removed (may be NULL) gets the
 * store-relative names ("tmp/...", "layers/<id>").
 */
int oci_store_reap(struct oci_store *s, bool dry_run, char ***ret_removed, hm_error_t *err);
/* The same; *ret_left (may be NULL) gets what it kept for owners it cannot judge ("tmp/... (owner ...)"). */
int oci_store_reap_full(struct oci_store *s, bool dry_run, char ***ret_removed, char ***ret_left, hm_error_t *err);

/* Start time of a process (/proc/PID/stat field 22; pid 0: /proc/self), 0 if it does not exist or is a zombie. */
uint64_t oci_proc_starttime(int pid);

#endif
