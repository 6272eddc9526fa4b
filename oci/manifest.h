/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Registry manifests (untrusted input): OCI image manifests and indexes,
 * Docker schema 2 manifests and manifest lists, parsed into plain structs,
 * plus the platform choice among an index's entries.  Schema 1 is refused.
 */
#ifndef HM_OCI_MANIFEST_H
#define HM_OCI_MANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/error.h"

#define OCI_MT_INDEX "application/vnd.oci.image.index.v1+json"
#define OCI_MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define OCI_MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define OCI_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define OCI_MANIFEST_MAX (4u << 20) /* bytes of a manifest we read */

struct oci_descriptor {
        char *media_type; /* may be NULL */
        char *digest;     /* "sha256:<64 hex>" (checked) */
        int64_t size;     /* -1 when absent */
        char *os, *arch, *variant; /* index entries; NULL when absent */
};

struct oci_manifest {
        bool is_index;
        char *media_type;               /* as given in the body, or NULL */
        struct oci_descriptor config;   /* image manifests */
        struct oci_descriptor *layers;  /* image manifests */
        size_t n_layers;
        struct oci_descriptor *entries; /* indexes */
        size_t n_entries;
};

/*
 * Parse a manifest body.  content_type (the response's Content-Type, may be
 * NULL) is used when the body has no mediaType.  Errors name the JSON path:
 * "manifest: layers[2].digest: ...".
 */
int oci_manifest_parse(const char *body, size_t len, const char *content_type, struct oci_manifest *ret,
                       hm_error_t *err);
void oci_manifest_release(struct oci_manifest *m);

/* This host's platform: "amd64"/"arm64"/..., variant "v8" on arm64, else NULL. */
const char *oci_platform_arch(void);
const char *oci_platform_variant(void);

/*
 * The index entry for linux/arch[/variant] (variant NULL: any; an entry without
 * a variant matches any), or -1 with an error listing the platforms offered.
 */
int oci_index_select(const struct oci_manifest *idx, const char *arch, const char *variant, hm_error_t *err);

/* "sha256:<hex>" -> hex, or NULL if not a well-formed sha256 digest. */
const char *oci_digest_hex(const char *digest);

#endif
