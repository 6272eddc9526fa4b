/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What a registry pull needs to know besides the reference: credentials,
 * the WWW-Authenticate challenge, TLS trust and per-registry settings.
 *
 * Credentials ("auths" of a containers auth.json or a Docker config.json;
 * the first file with an entry for the registry wins):
 *   $REGISTRY_AUTH_FILE, ${XDG_RUNTIME_DIR}/containers/auth.json (without
 *   XDG_RUNTIME_DIR: /run/containers/UID/auth.json), $DOCKER_CONFIG/config.json
 *   or ~/.docker/config.json.
 * Keys may be "host:port", "https://host:port[/v1/]"; docker.io also matches
 * "index.docker.io" and "https://index.docker.io/v1/".  Only the "auth"
 * field (base64 of user:password) is read; credential helpers are not run.
 * Credentials never appear in errors or events.
 *
 * Registry settings (a subset of containers-registries.conf(5) v2, TOML):
 *   $HM_REGISTRIES_CONF, else ~/.config/containers/registries.conf, else
 *   /etc/containers/registries.conf.  Read: [[registry]] tables with
 *   location = "host[:port]", insecure = true|false, and [[registry.mirror]]
 *   tables with location (mirrors are tried in order, then the registry).
 *   Everything else is ignored.
 *
 * TLS trust: the system CA bundle plus every *.crt in
 *   $HM_REGISTRY_CERTS_DIR/HOST[:PORT]/, /etc/containers/certs.d/HOST[:PORT]/,
 *   /etc/docker/certs.d/HOST[:PORT]/
 */
#ifndef HM_OCI_AUTH_H
#define HM_OCI_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "lib/error.h"
#include "lib/strbuf.h"

struct oci_challenge {
        char *scheme;  /* "bearer" or "basic" (lowercased) */
        char *realm;
        char *service; /* bearer; may be NULL */
        char *scope;   /* bearer; may be NULL */
};
/* Parse a WWW-Authenticate header value (the first challenge). */
int oci_challenge_parse(const char *value, struct oci_challenge *ret, hm_error_t *err);
void oci_challenge_release(struct oci_challenge *c);

struct oci_creds {
        char *user;
        char *password;
        char *source; /* the file they came from */
};
/* 1 and *ret when some file has credentials for domain, 0 when none does. */
int oci_creds_lookup(const char *domain, struct oci_creds *ret, hm_error_t *err);
void oci_creds_release(struct oci_creds *c);

struct oci_registry_conf {
        bool insecure;   /* plain HTTP (and unverified TLS) allowed */
        char **mirrors;  /* "host[:port][/path]", in order; NULL when none */
        bool *mirrors_insecure; /* per mirror: its own `insecure` (not the registry's) */
        char *source;    /* the file read, or NULL */
};
int oci_registry_conf_get(const char *domain, struct oci_registry_conf *ret, hm_error_t *err);
void oci_registry_conf_release(struct oci_registry_conf *c);

/*
 * The PEM text to trust for domain: the system bundle plus the registry's
 * *.crt files; *ret_n_extra counts the latter.
 */
int oci_registry_ca_bundle(const char *domain, struct strbuf *ret, size_t *ret_n_extra, hm_error_t *err);

/* Base64 (RFC 4648, with padding). decode: NULL on invalid input. */
char *oci_base64_encode(const void *data, size_t n);
char *oci_base64_decode(const char *s, size_t *ret_len);

#endif
