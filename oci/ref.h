/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Image references, parsed and normalised the way Docker does
 * (distribution/reference):
 *
 *   reference  := name [ ":" tag ] [ "@" digest ]
 *   name       := [ domain "/" ] component ( "/" component )*
 *   domain     := host [ ":" port ]   host: dot-separated labels [A-Za-z0-9-], or "[IPv6]"
 *   component  := [a-z0-9]+ ( ( "." | "_" | "__" | "-"+ ) [a-z0-9]+ )*
 *   tag        := [A-Za-z0-9_] [A-Za-z0-9_.-]{0,127}
 *   digest     := "sha256:" 64 lowercase hex
 *
 * The first component is a domain when it holds '.' or ':', is "localhost",
 * or has an uppercase letter; otherwise the domain is docker.io, and a
 * one-component docker.io path gets "library/".  "index.docker.io" becomes
 * "docker.io".  The name (domain + path) is at most 255 characters.  Without
 * tag and digest the tag is "latest".
 */
#ifndef HM_OCI_REF_H
#define HM_OCI_REF_H

#include "lib/error.h"

#define OCI_REF_DEFAULT_DOMAIN "docker.io"
#define OCI_REF_NAME_MAX 255
#define OCI_REF_TAG_MAX 128

struct oci_ref {
        char *domain; /* "docker.io", "localhost:5000", "[::1]:5000" */
        char *path;   /* "library/alpine" */
        char *tag;    /* "latest"; NULL when only a digest was given */
        char *digest; /* "sha256:<hex>" or NULL */
};

/* EINVAL with "invalid reference 'S': <what is wrong>" when s is not a reference. */
int oci_ref_parse(const char *s, struct oci_ref *ret, hm_error_t *err);
void oci_ref_release(struct oci_ref *r);

/* "docker.io/library/alpine:latest", "host:5000/a/b@sha256:...", "d/p:t@sha256:..." (heap). */
char *oci_ref_string(const struct oci_ref *r);
/* The tag or digest to ask the registry for (the digest when both are set). */
const char *oci_ref_api_reference(const struct oci_ref *r);

#endif
