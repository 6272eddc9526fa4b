/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Pulling an image from a registry (OCI distribution API v2) into the layer
 * store, on the run's poll loop (libcurl multi; a downloaded layer is
 * checked and unpacked by a child process: nothing blocks the loop but
 * short store work, the commit's renames and fsyncs).
 *
 *   1. take the pull lock of the image name (<store>/locks/pull-<hash>,
 *      flock, retried on a timer): a second pull of the same image waits,
 *      then finds the layers present and downloads nothing;
 *   2. GET the manifest (OCI or Docker schema 2; an index / manifest list is
 *      resolved to linux/<this arch>[/variant]); by-digest references and
 *      Docker-Content-Digest are checked;
 *   3. GET the config blob (checked), whose rootfs.diff_ids name the layers;
 *      layers already in the store are not downloaded; the missing ones are
 *      locked (<store>/locks/layer-<id>, taken in id order) until the commit,
 *      so a pull of another image sharing them waits and then finds them;
 *   4. GET the missing layer blobs, at most max_parallel at once, each into
 *      tmp/pull-<owner>-<rand>/<hex>.part, hashed as it arrives and renamed
 *      to <hex> only when its digest matches; then a child process
 *      (oci/unpack-job.h) checks its uncompressed digest against the
 *      diff_id and unpacks it into a tmp/layer-* dir, while the loop runs on
 *      (other downloads, timers, signals);
 *   5. under the store lock (tried, and tried again every
 *      OCI_STORE_LOCK_RETRY_MS while another process holds it): the layers
 *      are renamed into layers/, config and manifest kept under blobs/, the
 *      image record written.
 *
 * Whatever fails or is interrupted leaves only the tmp/ dirs (removed at
 * once, unpack children killed and reaped first, or by oci_store_reap()
 * when the process died; the children die with it).  Layers enter the
 * store only with the image: a stop before the commit keeps only the layers
 * that were there (oci_pull_describe_stop() says which).  Auth: anonymous,
 * then on 401 the WWW-Authenticate challenge: Bearer (token endpoint, with
 * basic credentials when some exist) or Basic (see oci/auth.h).  TLS: the
 * system CAs plus the registry's certs.d; plain HTTP only when the registry
 * is insecure (options or registries.conf).  $HM_PULL_RATE (bytes per
 * second) caps each layer transfer: for slow shared links, and for tests
 * that must interrupt a download.
 *
 * Not done: no HTTP range resume (an interrupted pull starts its blobs again); no
 * credential helpers; schema 1 manifests are refused.
 */
#ifndef HM_OCI_REGISTRY_H
#define HM_OCI_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/error.h"
#include "oci/store.h"

struct hm_loop;
struct oci_pull;

struct oci_pull_progress {
        const char *phase;  /* "waiting" (for another pull of the image, or of a layer), "resolved",
                               "exists", "download", "verified" (blob digest checked), "unpacking"
                               (its child started), "unpacked", "store-locked" (the commit
                               waits for the store lock), "done" */
        const char *image;  /* the canonical reference */
        const char *digest; /* the blob or manifest, or NULL */
        uint64_t done, total; /* bytes of this blob (total 0 if unknown) */
        size_t layer, n_layers; /* 1-based layer index, 0 when not about one layer */
};

struct oci_pull_options {
        const char *ref;       /* as the user wrote it */
        const char *name;      /* store name; NULL: oci_image_normalize_name(ref) */
        bool tls_verify_off;   /* --tls-verify=false: unverified TLS, then plain HTTP */
        bool if_missing;       /* once the lock is held, an image already in the store is the result */
        unsigned max_parallel; /* layer downloads at once; 0: 3 */
        void (*on_progress)(void *data, const struct oci_pull_progress *p);
        void *data;
};

struct oci_pull_result {
        char *name;            /* store name */
        char *id;              /* "sha256:<config digest>" */
        char *manifest_digest; /* of the image manifest chosen */
        size_t n_layers, n_downloaded;
        uint64_t bytes_downloaded;
        bool existed;          /* if_missing and the image was there */
};
void oci_pull_result_release(struct oci_pull_result *r);

/* res is only valid during the call; r < 0 with *err set on failure (the callee releases err). */
typedef void (*oci_pull_done_fn)(void *data, int r, hm_error_t *err, const struct oci_pull_result *res);

/* Errors found before anything started (bad reference) are returned; else done is called once. */
int oci_pull_start(struct hm_loop *loop, struct oci_store *s, const struct oci_pull_options *o, oci_pull_done_fn done,
                   void *data, struct oci_pull **ret, hm_error_t *err);
/*
 * Stop a pull: transfers aborted, unpack children killed and reaped, tmp/
 * removed, locks released; done is never called.  NULL is ignored.
 */
void oci_pull_cancel(struct oci_pull *p);
/* The image is in the store already (the commit is done; done() has not been called yet). */
bool oci_pull_committed(const struct oci_pull *p);
/*
 * For the report of a pull stopped now (before oci_pull_cancel), in words:
 * "the image was stored before the stop: NAME is in the store (id ...)", or
 * "the image was not stored; kept: 1 of 2 layers (in the store); not kept:
 * layer 2/2 sha256:0123456789ab (unpacking)".  Heap string; p may be NULL.
 */
char *oci_pull_describe_stop(const struct oci_pull *p);

#endif
