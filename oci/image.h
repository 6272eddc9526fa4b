/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Importing images into the layer store (oci/store.h) from what exists
 * without a registry:
 *
 *   an OCI image layout directory   oci-layout + index.json + blobs/sha256/...
 *   an OCI image layout tar         the same, tarred (e.g. `podman save --format oci-archive`)
 *   a `docker save` tar             manifest.json + config + layer tars (gzip or not)
 *   a plain rootfs tarball          one layer, config Env = the default PATH only
 *   docker://NAME, podman://NAME    GET /images/{name}/get on the engine's socket
 *                                   (DOCKER_HOST / CONTAINER_HOST or the default
 *                                   paths); the answer is a docker-save tar
 *
 * Every blob named by digest is verified (sha256 only); every layer's
 * uncompressed digest must equal the config's rootfs.diff_ids entry.  Layers
 * are unpacked under tmp/ and appear in the store, with the image record, in
 * one step under the store lock: a failed or interrupted import leaves
 * nothing but tmp/ entries (removed at once, or by oci_store_reap()).
 */
#ifndef HM_OCI_IMAGE_H
#define HM_OCI_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "lib/error.h"
#include "oci/store.h"

enum oci_source_kind {
        OCI_SOURCE_LAYOUT_DIR,
        OCI_SOURCE_LAYOUT_TAR,
        OCI_SOURCE_DOCKER_TAR,
        OCI_SOURCE_ROOTFS_TAR,
        OCI_SOURCE_ENGINE,
};
const char *oci_source_kind_name(enum oci_source_kind k);

/* What SOURCE is (a path, or docker:// / podman://). */
int oci_source_detect(const char *source, enum oci_source_kind *ret, hm_error_t *err);

struct oci_import_result {
        char *name;           /* normalised image name */
        char *id;             /* "sha256:<config digest>" */
        enum oci_source_kind kind;
        size_t n_layers;
        size_t n_new_layers;  /* unpacked now; the rest were in the store already */
        uint64_t size;        /* bytes of file data in all layers */
        struct oci_unpack_stats stats; /* summed over the layers unpacked now */
};
void oci_import_result_release(struct oci_import_result *r);

/* Import SOURCE as image `name` (replacing an existing record of that name). */
int oci_image_import(struct oci_store *s, const char *source, const char *name, struct oci_import_result *ret,
                     hm_error_t *err);

#endif
