/* SPDX-License-Identifier: Apache-2.0 */
/* runtime/net: mode parsing (Podman spellings), errors naming their source, the pipeline default. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/util.h"
#include "runtime/net.h"
#include "tests/unit/tap.h"

static bool have(const char *path)
{
        return access(path, X_OK) == 0;
}

/* parse `mode`; returns the error text (heap) or NULL on success (*c filled) */
static char *parse(const char *mode, const char *source, struct net_config *c)
{
        hm_error_t err = NULL;
        if (net_config_parse(mode, source, c, &err) >= 0)
                return NULL;
        char *m = xstrdup(err->msg);
        tap_ok(hm_error_exit_code(err) == 2, "'%s': a usage error (exit 2)", mode ? mode : "(null)");
        hm_error_release(&err);
        return m;
}

static void modes(void)
{
        struct net_config c;
        char *e = parse(NULL, NULL, &c);
        tap_ok(!e && c.mode == NET_NONE && !c.resolv_conf && !c.tool, "no mode: none, no helper, image's resolv.conf");
        net_config_release(&c);
        e = parse("host", NULL, &c);
        tap_ok(!e && c.mode == NET_HOST && !c.tool, "host");
        net_config_release(&c);
        e = parse("bogus", NULL, &c);
        tap_ok(e && strstr(e, "--network 'bogus'") && strstr(e, "none, host, pasta or slirp4netns") && !strchr(e, '\n'),
               "unknown mode: one line naming --network and the modes");
        free(e);
        e = parse("none:x", "HM_NETWORK", &c);
        tap_ok(e && strstr(e, "HM_NETWORK 'none:x'") && strstr(e, "takes no options"), "none takes no options, source named");
        free(e);
        e = parse("pasta:--frob", NULL, &c);
        tap_ok(e && strstr(e, "'--frob'") && strstr(e, "--map-gw"), "unknown pasta option names the accepted ones");
        free(e);
        e = parse("slirp4netns:mtu=1500", NULL, &c);
        tap_ok(e && strstr(e, "'mtu=1500'") && strstr(e, "allow_host_loopback"), "unknown slirp4netns option");
        free(e);
        if (!have("/usr/bin/pasta") || !have("/usr/bin/slirp4netns") || access("/dev/net/tun", R_OK | W_OK) < 0) {
                tap_diag("pasta/slirp4netns or /dev/net/tun not usable: helper modes not parsed here");
                return;
        }
        e = parse("pasta:--map-gw", NULL, &c);
        tap_ok(!e && c.mode == NET_PASTA && c.map_host_loopback && c.tool && str_has_suffix(c.tool, "/pasta"),
               "pasta:--map-gw maps the host's loopback; the tool is found in PATH");
        net_config_release(&c);
        e = parse("slirp4netns", NULL, &c);
        tap_ok(!e && c.mode == NET_SLIRP4NETNS && !c.map_host_loopback, "slirp4netns: host loopback off by default");
        TAP_IS_STR(c.resolv_conf, "nameserver 10.0.2.3\n", "slirp4netns: resolv.conf names its forwarder");
        net_config_release(&c);
        e = parse("slirp4netns:allow_host_loopback=true,allow_host_loopback=false", NULL, &c);
        tap_ok(!e && !c.map_host_loopback, "options apply in order");
        net_config_release(&c);
        char *path = getenv("PATH") ? xstrdup(getenv("PATH")) : NULL;
        setenv("PATH", "/nonexistent", 1);
        e = parse("pasta", NULL, &c);
        tap_ok(e && strstr(e, "'pasta' is not installed") && strstr(e, "'passt'") && strstr(e, "install-deps"),
               "pasta missing: names the Debian package and the script");
        free(e);
        if (path)
                setenv("PATH", path, 1);
        free(path);
}

static void write_config(const char *dir, const char *text)
{
        _cleanup_free_ char *hm = xasprintf("%s/.hm", dir);
        (void) mkdir(hm, 0755);
        _cleanup_free_ char *p = xasprintf("%s/config.toml", hm);
        FILE *f = fopen(p, "we");
        fputs(text, f);
        fclose(f);
}

static void pipeline_default(void)
{
        char tmpl[] = "/tmp/hm-test-net-XXXXXX";
        char *dir = mkdtemp(tmpl);
        char *mode, *src;
        hm_error_t err = NULL;
        unsetenv("HM_NETWORK");
        tap_ok(net_pipeline_default(dir, &mode, &src, &err) == 0 && !mode && !src, "no .hm/config.toml: no default");
        write_config(dir, "backend = \"docker\"\n# network = \"host\"\nnetwork = \"pasta:--map-gw\" # comment\n"
                          "[cloud]\nnetwork = \"host\"\n");
        tap_ok(net_pipeline_default(dir, &mode, &src, &err) == 0 && mode && !strcmp(mode, "pasta:--map-gw"),
               "top-level network key, comment after the value");
        tap_ok(src && strstr(src, "config.toml:3: network"), "the source names file:line");
        free(mode);
        free(src);
        write_config(dir, "[cloud]\nnetwork = \"host\"\n");
        tap_ok(net_pipeline_default(dir, &mode, &src, &err) == 0 && !mode, "a key inside a table is not the default");
        write_config(dir, "networks = \"x\"\nnetwork_mode = \"y\"\n");
        tap_ok(net_pipeline_default(dir, &mode, &src, &err) == 0 && !mode, "other keys are ignored");
        write_config(dir, "\n\nnetwork = pasta\n");
        int r = net_pipeline_default(dir, &mode, &src, &err);
        tap_ok(r < 0 && err && strstr(err->msg, "config.toml:3: network: expected a quoted string"),
               "an unquoted value: error with file:line");
        hm_error_release(&err);
        setenv("HM_NETWORK", "host", 1);
        tap_ok(net_pipeline_default(dir, &mode, &src, &err) == 0 && mode && !strcmp(mode, "host") && !strcmp(src, "HM_NETWORK"),
               "HM_NETWORK wins over the file");
        free(mode);
        free(src);
        unsetenv("HM_NETWORK");
        (void) rm_rf(dir);
}

int main(void)
{
        tap_plan_later();
        modes();
        pipeline_default();
        return tap_done();
}
