/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What a registry pull reads besides the network: manifests and indexes
 * (oci/manifest.c), WWW-Authenticate challenges, base64, credentials files,
 * registries.conf and the CA bundle (oci/auth.c).  No network, no root.
 */
#include "oci/auth.h"
#include "oci/manifest.h"
#include "lib/util.h"
#include "tests/unit/tap.h"

#include <stdlib.h>
#include <sys/stat.h>

#define D1 "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define D2 "sha256:1123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define D3 "sha256:2123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

static char dir[] = "/tmp/hm-test-regparse-XXXXXX";

static int parse(const char *text, const char *ct, struct oci_manifest *m, char **ret_msg)
{
        hm_error_t err = NULL;
        int r = oci_manifest_parse(text, strlen(text), ct, m, &err);
        *ret_msg = r < 0 ? xstrdup(err->msg) : NULL;
        hm_error_release(&err);
        return r;
}

static void test_manifests(void)
{
        struct oci_manifest m;
        char *msg = NULL;
        const char *oci = "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_MANIFEST "\",\"config\":{\"digest\":\"" D1
                          "\",\"size\":10},\"layers\":[{\"digest\":\"" D2 "\",\"size\":5},{\"digest\":\"" D3 "\"}]}";
        tap_ok(parse(oci, NULL, &m, &msg) == 0 && !m.is_index && m.n_layers == 2 && !strcmp(m.config.digest, D1) &&
                       m.layers[0].size == 5 && m.layers[1].size == -1,
               "OCI manifest: config, two layers, sizes");
        oci_manifest_release(&m);
        const char *docker = "{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1 "\"},\"layers\":[{\"digest\":\"" D2 "\"}]}";
        tap_ok(parse(docker, OCI_MT_DOCKER_MANIFEST, &m, &msg) == 0 && !m.is_index && m.n_layers == 1,
               "Docker schema 2 manifest (type from Content-Type)");
        oci_manifest_release(&m);
        const char *idx = "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_DOCKER_LIST "\",\"manifests\":["
                          "{\"digest\":\"" D1 "\",\"platform\":{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\"}},"
                          "{\"digest\":\"" D2 "\",\"platform\":{\"os\":\"windows\",\"architecture\":\"amd64\"}},"
                          "{\"digest\":\"" D3 "\",\"platform\":{\"os\":\"linux\",\"architecture\":\"amd64\"}}]}";
        tap_ok(parse(idx, NULL, &m, &msg) == 0 && m.is_index && m.n_entries == 3, "manifest list: three entries");
        hm_error_t err = NULL;
        tap_ok(oci_index_select(&m, "amd64", NULL, &err) == 2, "linux/amd64 chosen (not windows/amd64, not the first)");
        tap_ok(oci_index_select(&m, "arm64", "v8", &err) == 0, "linux/arm64/v8 chosen");
        int r = oci_index_select(&m, "arm64", "v7", &err);
        tap_ok(r < 0 && strstr(err->msg, "no manifest for linux/arm64/v7") && strstr(err->msg, "linux/arm64/v8, windows/amd64"),
               "no match: the error lists what the index has (%s)", err ? err->msg : "-");
        hm_error_release(&err);
        oci_manifest_release(&m);

        static const struct {
                const char *text, *want;
        } bad[] = {
                { "{\"schemaVersion\":1,\"name\":\"x\"}", "schemaVersion 1 is not supported" },
                { "[]", "not a JSON object" },
                { "{\"schemaVersion\":2", "invalid JSON" },
                { "{\"schemaVersion\":\"2\"}", "schemaVersion: missing or not an integer" },
                { "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_MANIFEST "\",\"layers\":[]}", "config: missing" },
                { "{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1 "\"},\"layers\":[]}", "layers: empty" },
                { "{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1 "\"},\"layers\":[{\"digest\":\"sha256:ABC\"}]}",
                  "layers[0].digest: not a sha256" },
                { "{\"schemaVersion\":2,\"config\":{\"digest\":\"" D1 "\"},\"layers\":[{\"digest\":\"" D2 "\"},7]}",
                  "layers[1]: not an object" },
                { "{\"schemaVersion\":2,\"config\":{},\"layers\":[]}", "config.digest: missing" },
                { "{\"schemaVersion\":2,\"mediaType\":\"" OCI_MT_INDEX "\",\"manifests\":[{\"digest\":\"md5:00\"}]}",
                  "manifests[0].digest" },
                { "{\"schemaVersion\":2,\"mediaType\":\"text/plain\",\"config\":{}}", "media type 'text/plain' is not supported" },
        };
        for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
                r = parse(bad[i].text, NULL, &m, &msg);
                if (!tap_ok(r < 0 && msg && str_has_prefix(msg, "manifest: ") && strstr(msg, bad[i].want),
                            "refused with '%s'", bad[i].want))
                        tap_diag("  got: %s", msg ? msg : "(accepted)");
                if (r == 0)
                        oci_manifest_release(&m);
                free(msg);
        }
}

static void test_challenges(void)
{
        struct oci_challenge c;
        hm_error_t err = NULL;
        tap_ok(oci_challenge_parse("Bearer realm=\"https://auth.example/token\",service=\"reg\",scope=\"repository:a/b:pull,push\"",
                                   &c, &err) == 0 && !strcmp(c.scheme, "bearer") && !strcmp(c.realm, "https://auth.example/token") &&
                       !strcmp(c.service, "reg") && !strcmp(c.scope, "repository:a/b:pull,push"),
               "Bearer challenge: realm, service, scope with a comma inside quotes");
        oci_challenge_release(&c);
        tap_ok(oci_challenge_parse("Basic realm=\"a \\\"quoted\\\" realm\"", &c, &err) == 0 && !strcmp(c.scheme, "basic") &&
                       !strcmp(c.realm, "a \"quoted\" realm"),
               "Basic challenge with escaped quotes");
        oci_challenge_release(&c);
        tap_ok(oci_challenge_parse("Bearer service=\"x\"", &c, &err) < 0 && strstr(err->msg, "without a realm"),
               "Bearer without realm refused");
        hm_error_release(&err);
        tap_ok(oci_challenge_parse("   ", &c, &err) < 0, "empty challenge refused");
        hm_error_release(&err);
}

static void test_base64(void)
{
        static const char *const plain[] = { "", "f", "fo", "foo", "foob", "fooba", "foobar", "hm:s3cret" };
        static const char *const enc[] = { "", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy", "aG06czNjcmV0" };
        for (size_t i = 0; i < ARRAY_SIZE(plain); i++) {
                _cleanup_free_ char *e = oci_base64_encode(plain[i], strlen(plain[i]));
                _cleanup_free_ char *d = oci_base64_decode(enc[i], NULL);
                tap_ok(!strcmp(e, enc[i]) && d && !strcmp(d, plain[i]), "base64 '%s' <-> '%s'", plain[i], enc[i]);
        }
        tap_ok(!oci_base64_decode("a*b=", NULL) && !oci_base64_decode("a", NULL), "invalid base64 refused");
}

static void write_text(const char *path, const char *text)
{
        FILE *f = fopen(path, "we");
        fputs(text, f);
        fclose(f);
}

static void test_creds(void)
{
        _cleanup_free_ char *a = xasprintf("%s/auth.json", dir);
        _cleanup_free_ char *home = xasprintf("%s/home", dir);
        _cleanup_free_ char *dk = xasprintf("%s/home/.docker", dir);
        _cleanup_free_ char *dc = xasprintf("%s/home/.docker/config.json", dir);
        mkdir(home, 0700);
        mkdir(dk, 0700);
        setenv("HOME", home, 1);
        unsetenv("XDG_RUNTIME_DIR");
        unsetenv("DOCKER_CONFIG");
        /* aG06czNjcmV0 = hm:s3cret; ZG9jazpwdw== = dock:pw */
        write_text(a, "{\"auths\":{\"reg.example:5000\":{\"auth\":\"aG06czNjcmV0\"}}}");
        write_text(dc, "{\"auths\":{\"https://index.docker.io/v1/\":{\"auth\":\"ZG9jazpwdw==\"},"
                       "\"reg.example:5000\":{\"auth\":\"ZG9jazpwdw==\"},\"bad.example\":{\"auth\":\"!!!\"}}}");
        setenv("REGISTRY_AUTH_FILE", a, 1);
        struct oci_creds c;
        hm_error_t err = NULL;
        tap_ok(oci_creds_lookup("reg.example:5000", &c, &err) == 1 && !strcmp(c.user, "hm") && !strcmp(c.password, "s3cret") &&
                       !strcmp(c.source, a),
               "REGISTRY_AUTH_FILE wins over ~/.docker/config.json");
        oci_creds_release(&c);
        tap_ok(oci_creds_lookup("docker.io", &c, &err) == 1 && !strcmp(c.user, "dock") && !strcmp(c.source, dc),
               "docker.io matches https://index.docker.io/v1/ in ~/.docker/config.json");
        oci_creds_release(&c);
        tap_ok(oci_creds_lookup("other.example", &c, &err) == 0, "no entry: anonymous");
        tap_ok(oci_creds_lookup("bad.example", &c, &err) < 0 && strstr(err->msg, "not base64 of user:password") &&
                       strstr(err->msg, dc) && !strstr(err->msg, "!!!"),
               "a bad auth entry names file and key, not the value");
        hm_error_release(&err);
        unsetenv("REGISTRY_AUTH_FILE");
}

static void test_conf(void)
{
        _cleanup_free_ char *p = xasprintf("%s/registries.conf", dir);
        write_text(p, "unqualified-search-registries = [\"docker.io\"]\n"
                      "[[registry]]\nlocation = \"docker.io\"\n"
                      "[[registry.mirror]]\nlocation = \"mirror.example:5000\" # first\n"
                      "[[registry.mirror]]\nlocation = \"mirror2.example\"\n\n"
                      "[[registry]]\nlocation = \"127.0.0.1:5000\"\ninsecure = true\n");
        setenv("HM_REGISTRIES_CONF", p, 1);
        struct oci_registry_conf c;
        hm_error_t err = NULL;
        tap_ok(oci_registry_conf_get("docker.io", &c, &err) == 0 && !c.insecure && strv_len(c.mirrors) == 2 &&
                       !strcmp(c.mirrors[0], "mirror.example:5000") && !strcmp(c.mirrors[1], "mirror2.example"),
               "docker.io: two mirrors in order");
        oci_registry_conf_release(&c);
        tap_ok(oci_registry_conf_get("127.0.0.1:5000", &c, &err) == 0 && c.insecure && !c.mirrors,
               "127.0.0.1:5000: insecure, no mirrors");
        oci_registry_conf_release(&c);
        tap_ok(oci_registry_conf_get("127.0.0.1:5001", &c, &err) == 0 && !c.insecure, "control: another port is not insecure");
        oci_registry_conf_release(&c);
        _cleanup_free_ char *missing = xasprintf("%s/nope.conf", dir);
        setenv("HM_REGISTRIES_CONF", missing, 1);
        tap_ok(oci_registry_conf_get("x", &c, &err) < 0 && strstr(err->msg, missing), "a missing HM_REGISTRIES_CONF is an error naming it");
        hm_error_release(&err);
        unsetenv("HM_REGISTRIES_CONF");

        _cleanup_free_ char *certs = xasprintf("%s/certs.d", dir);
        _cleanup_free_ char *host = xasprintf("%s/certs.d/reg.example:5000", dir);
        _cleanup_free_ char *crt = xasprintf("%s/ca.crt", host);
        _cleanup_free_ char *key = xasprintf("%s/client.key", host);
        mkdir(certs, 0700);
        mkdir(host, 0700);
        write_text(crt, "-----BEGIN CERTIFICATE-----\nMARKER\n-----END CERTIFICATE-----\n");
        write_text(key, "not a CA");
        setenv("HM_REGISTRY_CERTS_DIR", certs, 1);
        struct strbuf sb;
        size_t n = 0;
        tap_ok(oci_registry_ca_bundle("reg.example:5000", &sb, &n, &err) == 0 && n == 1 && strstr(sb.buf, "MARKER") &&
                       !strstr(sb.buf, "not a CA"),
               "CA bundle: the registry's *.crt added (other files not)");
        strbuf_release(&sb);
        tap_ok(oci_registry_ca_bundle("other:1", &sb, &n, &err) == 0 && n == 0 && !strstr(sb.buf, "MARKER"),
               "control: not for another registry");
        strbuf_release(&sb);
        unsetenv("HM_REGISTRY_CERTS_DIR");
}

int main(void)
{
        tap_plan_later();
        if (!mkdtemp(dir))
                return 1;
        test_manifests();
        test_challenges();
        test_base64();
        test_creds();
        test_conf();
        (void) rm_rf(dir);
        return tap_done();
}
