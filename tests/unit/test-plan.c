/* SPDX-License-Identifier: Apache-2.0 */
/*
 * pipeline/: every shared IR fixture parses; facts of known pipelines (chains,
 * parents, order, cache tags, display names); the legacy form; a 100k-step DAG;
 * plan_load over .hm/ directories, files, stdin, envelopes and a python render
 * through a stub `harmont` package; plan_print.
 */
#include "lib/error.h"
#include "lib/strbuf.h"
#include "lib/util.h"
#include "pipeline/plan.h"
#include "tests/unit/tap.h"

#include <fcntl.h>
#include <limits.h>
#include <regex.h>
#include <sys/stat.h>

static const char *shared_dir(void)
{
        static const char *const candidates[] = { "../shared", "../../shared", "/work/shared" };
        const char *env = getenv("HM_SHARED_DIR");
        if (env && *env)
                return env;
        struct stat st;
        for (size_t i = 0; i < ARRAY_SIZE(candidates); i++) {
                _cleanup_free_ char *p = xasprintf("%s/ir/cases", candidates[i]);
                if (stat(p, &st) == 0 && S_ISDIR(st.st_mode))
                        return candidates[i];
        }
        return NULL;
}

static struct plan *parse_str(const char *json, hm_error_t *err)
{
        struct plan *plan = NULL;
        if (plan_parse(json, strlen(json), "test.json", &plan, err) < 0)
                return NULL;
        return plan;
}

static struct plan *parse_file(const char *path, hm_error_t *err)
{
        _cleanup_free_ char *text = NULL;
        size_t len = 0;
        int r = read_file(path, 0, &text, &len);
        if (r < 0) {
                hm_error_set(err, -r, "read '%s': %s", path, strerror(-r));
                return NULL;
        }
        struct plan *plan = NULL;
        if (plan_parse(text, len, path, &plan, err) < 0)
                return NULL;
        return plan;
}

static int step_by_key(const struct plan *plan, const char *key)
{
        for (size_t i = 0; i < plan->n_steps; i++)
                if (strcmp(plan->steps[i].key, key) == 0)
                        return (int) i;
        return -1;
}

static const char *parent_key(const struct plan *plan, const char *key)
{
        int i = step_by_key(plan, key);
        if (i < 0 || plan->steps[i].parent < 0)
                return NULL;
        return plan->steps[plan->steps[i].parent].key;
}

/* Every edge goes forward in plan->order and order is a permutation. */
static bool order_is_topological(const struct plan *plan)
{
        _cleanup_free_ size_t *pos = xcalloc(plan->n_steps + 1, sizeof *pos);
        for (size_t k = 0; k < plan->n_steps; k++) {
                if (plan->order[k] >= plan->n_steps || pos[plan->order[k]])
                        return false;
                pos[plan->order[k]] = k + 1;
        }
        for (size_t e = 0; e < plan->n_edges; e++)
                if (pos[plan->edges[e].src] >= pos[plan->edges[e].dst])
                        return false;
        return true;
}

static char *print_plan(const struct plan *plan, const char *runner)
{
        char *buf = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&buf, &len);
        if (!f)
                abort();
        plan_print(plan, runner, f);
        fclose(f);
        return buf;
}

static void test_fixtures_in(const char *dir)
{
        _cleanup_closedir_ DIR *d = opendir(dir);
        if (!tap_ok(d != NULL, "open fixture dir %s", dir))
                return;
        _cleanup_strv_ char **names = NULL;
        for (struct dirent *de; (de = readdir(d));)
                if (str_has_suffix(de->d_name, ".json"))
                        strv_push(&names, de->d_name);
        tap_ok(strv_len(names) >= 10, "%s has fixtures (%zu)", dir, strv_len(names));
        for (char **n = names; n && *n; n++) {
                _cleanup_free_ char *path = xasprintf("%s/%s", dir, *n);
                hm_error_t err = NULL;
                _cleanup_plan_ struct plan *plan = parse_file(path, &err);
                if (!tap_ok(plan != NULL, "parse %s", *n)) {
                        tap_diag("%s", err ? err->msg : "?");
                        hm_error_release(&err);
                        continue;
                }
                tap_ok(plan->n_steps > 0 && order_is_topological(plan) && plan->n_chains >= 1 &&
                               plan->n_chains <= plan->n_steps,
                       "%s: %zu steps, %u chains, valid order", *n, plan->n_steps, plan->n_chains);
                _cleanup_free_ char *out = print_plan(plan, "docker");
                _cleanup_free_ char *want = xasprintf("\nsteps: %zu\n", plan->n_steps);
                tap_ok(strstr(out, want) != NULL, "%s: plan_print names the step count", *n);
        }
}

static void test_fork_keep_going(const char *shared)
{
        _cleanup_free_ char *path = xasprintf("%s/ir/cases/fork-keep-going.json", shared);
        hm_error_t err = NULL;
        _cleanup_plan_ struct plan *plan = parse_file(path, &err);
        if (!tap_ok(plan != NULL, "fork-keep-going parses")) {
                tap_diag("%s", err->msg);
                hm_error_release(&err);
                return;
        }
        tap_ok(plan->n_steps == 6 && plan->n_edges == 5, "fork-keep-going: 6 steps, 5 edges");
        TAP_IS_STR(plan->version, "0", "version");
        tap_ok(plan->timeout_seconds == 0 && !plan->legacy, "no pipeline timeout, graph form");
        TAP_IS_STR(parent_key(plan, "root"), NULL, "root has no parent");
        TAP_IS_STR(parent_key(plan, "bad"), "root", "bad builds_in root");
        TAP_IS_STR(parent_key(plan, "bad-child"), "bad", "bad-child builds_in bad");
        TAP_IS_STR(parent_key(plan, "bad-grandchild"), "bad-child", "bad-grandchild builds_in bad-child");
        TAP_IS_STR(parent_key(plan, "good"), "root", "good builds_in root");
        TAP_IS_STR(parent_key(plan, "good-child"), "good", "good-child builds_in good");
        /* root forks (two builds_in children) so it is a chain of its own */
        tap_ok(plan->n_chains == 3, "3 chains (got %u)", plan->n_chains);
        static const struct { const char *key; uint32_t id, pos; } chains[] = {
                { "root", 0, 0 }, { "bad", 1, 0 }, { "bad-child", 1, 1 }, { "bad-grandchild", 1, 2 },
                { "good", 2, 0 }, { "good-child", 2, 1 },
        };
        for (size_t i = 0; i < ARRAY_SIZE(chains); i++) {
                const struct plan_step *s = &plan->steps[step_by_key(plan, chains[i].key)];
                tap_ok(s->chain_id == chains[i].id && s->chain_pos == chains[i].pos, "%s: chain %u/%u (got %u/%u)",
                       chains[i].key, chains[i].id, chains[i].pos, s->chain_id, s->chain_pos);
        }
        static const uint32_t want_order[] = { 0, 1, 2, 3, 4, 5 };
        tap_ok(memcmp(plan->order, want_order, sizeof want_order) == 0, "topological order 0 1 2 3 4 5");
        const struct plan_step *root = &plan->steps[0];
        tap_ok(root->n_succs == 2 && root->succs[0] == 1 && root->succs[1] == 4, "root succs = [1, 4]");
        tap_ok(root->n_preds == 0 && plan->steps[5].n_preds == 1 && plan->steps[5].preds[0] == 4, "preds");
        TAP_IS_STR(root->image, "alpine:3.20", "root image");
        TAP_IS_STR(plan->steps[1].image, NULL, "child has no image");
        tap_ok(root->n_env == 2 && strcmp(root->env[0].key, "DEBIAN_FRONTEND") == 0 &&
                       strcmp(root->env[1].key, "TERM") == 0 && strcmp(root->env[1].value, "dumb") == 0,
               "node env sorted");
        TAP_IS_STR(plan->steps[4].display_name, "good", "display_name = label");

        _cleanup_free_ char *out = print_plan(plan, "ns");
        tap_ok(strstr(out, "\nchains: 3\n") && strstr(out, "\nrunner: ns\n") &&
                       strstr(out, "\n3 2 bad-child chain=1/1 parent=bad image=(parent-snapshot) cache=- timeout=- "
                                   "after=bad(builds_in)\n") &&
                       strstr(out, "\n1 0 root chain=0/0 parent=- image=alpine:3.20 cache=- timeout=- after=-\n"),
               "plan_print lines");
}

/* hm-compat §2.8, verbatim IR. */
static const char worked_example[] =
        "{\"version\": \"0\", \"timeout_seconds\": 1800, \"graph\": {\"nodes\": ["
        "{\"step\": {\"key\": \"apt\", \"cmd\": \"apt-get update && apt-get install -y curl\", \"label\": \"apt\","
        " \"cache\": {\"policy\": \"ttl\", \"duration_seconds\": 86400, \"env_keys\": [],"
        " \"key\": \"cfaf4f45d28b33af0028e899e778f4d3bab5f6f14a52834a34dad807ee262502\"}, \"image\": \"ubuntu:24.04\"},"
        " \"env\": {\"DEBIAN_FRONTEND\": \"noninteractive\", \"TERM\": \"dumb\", \"CI\": \"true\"}},"
        "{\"step\": {\"key\": \"tools\", \"cmd\": \"curl --version\", \"label\": \"tools\","
        " \"cache\": {\"policy\": \"forever\", \"env_keys\": [\"GOARCH\"],"
        " \"key\": \"a1a9dfc14e79b43be2986267823ace0dae43fbd2e7acf68c34bf27d615f1899f\"}},"
        " \"env\": {\"DEBIAN_FRONTEND\": \"noninteractive\", \"TERM\": \"dumb\", \"CI\": \"true\"}},"
        "{\"step\": {\"key\": \"test\", \"cmd\": \"make test\", \"label\": \"test\"},"
        " \"env\": {\"DEBIAN_FRONTEND\": \"noninteractive\", \"TERM\": \"dumb\", \"CI\": \"true\", \"FOO\": \"bar\"}},"
        "{\"step\": {\"key\": \"lint\", \"cmd\": \"cd src && make lint\", \"label\": \"lint\", \"timeout_seconds\": 300},"
        " \"env\": {\"DEBIAN_FRONTEND\": \"noninteractive\", \"TERM\": \"dumb\", \"CI\": \"true\"}},"
        "{\"step\": {\"key\": \"d2d59b9aefee\", \"cmd\": \"echo fork\"},"
        " \"env\": {\"DEBIAN_FRONTEND\": \"noninteractive\", \"TERM\": \"dumb\", \"CI\": \"true\"}},"
        "{\"step\": {\"key\": \"00cb8824b2df\", \"cmd\": \"echo other\", \"runner\": \"vm\", \"image\": \"ubuntu:24.04\"},"
        " \"env\": {\"DEBIAN_FRONTEND\": \"noninteractive\", \"TERM\": \"dumb\", \"CI\": \"true\"}}],"
        " \"node_holes\": [], \"edge_property\": \"directed\","
        " \"edges\": [[0,1,\"builds_in\"],[1,2,\"builds_in\"],[1,3,\"builds_in\"],[1,4,\"builds_in\"],"
        "[0,5,\"depends_on\"],[1,5,\"depends_on\"],[2,5,\"depends_on\"],[3,5,\"depends_on\"],[4,5,\"depends_on\"]]}}";

static void test_worked_example(void)
{
        hm_error_t err = NULL;
        _cleanup_plan_ struct plan *plan = parse_str(worked_example, &err);
        if (!tap_ok(plan != NULL, "§2.8 example parses")) {
                tap_diag("%s", err->msg);
                hm_error_release(&err);
                return;
        }
        tap_ok(plan->n_chains == 5, "§2.8: 5 chains (got %u)", plan->n_chains);
        tap_ok(plan->steps[0].chain_id == plan->steps[1].chain_id && plan->steps[1].chain_pos == 1,
               "§2.8: {apt, tools} is one chain");
        tap_ok(plan->timeout_seconds == 1800 && plan->steps[3].timeout_seconds == 300, "timeouts 1800 / 300");
        TAP_IS_STR(plan->steps[0].cache_tag, "harmont-cache/apt:cfaf4f45d28b33af", "apt cache tag");
        TAP_IS_STR(plan->steps[1].cache_tag, "harmont-cache/tools:a1a9dfc14e79b43b", "tools cache tag");
        TAP_IS_STR(plan->steps[1].cache_policy, "forever", "cache policy");
        TAP_IS_STR(plan->steps[2].cache_tag, NULL, "uncached step has no tag");
        TAP_IS_STR(plan->steps[5].runner, "vm", "runner");
        TAP_IS_STR(plan->steps[4].display_name, "echo fork", "display_name from cmd");
        tap_ok(plan->steps[5].n_preds == 5 && plan->steps[5].parent == -1, "other: 5 depends_on preds, no parent");
        tap_ok(plan->steps[1].n_succs == 4 && plan->order[5] == 5 && order_is_topological(plan), "order");
        tap_ok(plan->steps[2].n_env == 4 && strcmp(plan->steps[2].env[0].key, "CI") == 0 &&
                       strcmp(plan->steps[2].env[2].key, "FOO") == 0,
               "env sorted: CI DEBIAN_FRONTEND FOO TERM");
}

static const char *one_step(const char *step_fields)
{
        static char buf[4096];
        snprintf(buf, sizeof buf,
                 "{\"graph\":{\"nodes\":[{\"step\":{\"key\":\"k\",%s},\"env\":{}}],\"node_holes\":[],"
                 "\"edge_property\":\"directed\",\"edges\":[]}}",
                 step_fields);
        return buf;
}

static void check_display(const char *fields, const char *want, const char *what)
{
        hm_error_t err = NULL;
        _cleanup_plan_ struct plan *plan = parse_str(one_step(fields), &err);
        if (!tap_ok(plan != NULL, "display_name: %s parses", what)) {
                tap_diag("%s", err->msg);
                hm_error_release(&err);
                return;
        }
        TAP_IS_STR(plan->steps[0].display_name, want, "display_name: %s", what);
}

static void test_display_name(void)
{
        check_display("\"cmd\":\"  make   test \\n\"", "make   test", "trimmed cmd");
        check_display("\"cmd\":\"0123456789012345678901234567890123456789\"",
                      "0123456789012345678901234567890123456789", "40 chars kept");
        check_display("\"cmd\":\"01234567890123456789012345678901234567890\"",
                      "012345678901234567890123456789012345678…", "41 chars: 39 + ellipsis");
        check_display("\"cmd\":\"x\",\"label\":\"🚀 déploiement ünïcode ŝtep with a very long label over forty\"",
                      "🚀 déploiement ünïcode ŝtep with a very long label over forty", "multibyte label kept whole");
        /* 45 two-byte characters: cut by characters, not bytes */
        check_display("\"cmd\":\"ééééééééééééééééééééééééééééééééééééééééééééé\"",
                      "ééééééééééééééééééééééééééééééééééééééé…", "multibyte cmd cut at 39 chars");
        check_display("\"cmd\":\"日本語のコマンド\",\"label\":null", "日本語のコマンド", "null label, short CJK cmd");
}

/* Reference grammar: repository path component and tag (distribution/reference). */
static bool valid_ref(const char *ref)
{
        static regex_t re;
        static bool init;
        if (!init) {
                if (regcomp(&re, "^harmont-cache/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$",
                            REG_EXTENDED | REG_NOSUB) != 0)
                        abort();
                init = true;
        }
        return strlen(ref) < 256 && regexec(&re, ref, 0, NULL, 0) == 0;
}

static void check_tag(const char *key, const char *cache_key, const char *want)
{
        _cleanup_free_ char *tag = plan_cache_tag(key, cache_key);
        TAP_IS_STR(tag, want, "cache tag for '%s' / '%s'", key, cache_key);
        tap_ok(valid_ref(tag), "'%s' is a valid image reference", tag);
}

static void test_cache_tags(const char *shared)
{
        if (shared) {
                _cleanup_free_ char *path = xasprintf("%s/ir/cases/cached.json", shared);
                hm_error_t err = NULL;
                _cleanup_plan_ struct plan *plan = parse_file(path, &err);
                if (tap_ok(plan != NULL, "cached.json parses")) {
                        TAP_IS_STR(plan->steps[0].cache_tag, "harmont-cache/deps:d225dea7549c88d9", "deps tag");
                        TAP_IS_STR(plan->steps[1].cache_tag, "harmont-cache/tools:7f0406f40b0a3818", "tools tag");
                        TAP_IS_STR(plan->steps[2].cache_tag, NULL, "test is not cached");
                } else {
                        hm_error_release(&err);
                }
        }
        check_tag("build", "0123456789abcdef0000", "harmont-cache/build:0123456789abcdef");
        check_tag("Build", "0123456789ABCDEF", "harmont-cache/build:0123456789abcdef");
        check_tag("-x_", "abc", "harmont-cache/x:abc");
        check_tag("a..b", "abc", "harmont-cache/a-b:abc");
        check_tag("a__b", "abc", "harmont-cache/a__b:abc");
        check_tag("a___b", "abc", "harmont-cache/a-b:abc");
        check_tag("a---b", "abc", "harmont-cache/a---b:abc");
        check_tag("go:build/x y", "abc", "harmont-cache/go-build-x-y:abc");
        check_tag("é", "abc", "harmont-cache/step:abc");
        check_tag("", "abc", "harmont-cache/step:abc");
        check_tag("k", "", "harmont-cache/k:nokey");
        check_tag("k", "-abc", "harmont-cache/k:_abc");
        check_tag("k", "sha256:ABCDEF0123456789ff", "harmont-cache/k:sha256-abcdef012");
        /* a long key stays under the 255-character name limit */
        char longkey[600];
        memset(longkey, 'a', sizeof longkey - 1);
        longkey[sizeof longkey - 1] = 0;
        _cleanup_free_ char *tag = plan_cache_tag(longkey, "0123456789abcdef");
        tap_ok(valid_ref(tag), "600-char key gives a valid reference (%zu chars)", strlen(tag));
        /* and a spray of odd keys never produces an invalid one */
        static const char *const odd[] = { "..", "_", "--", "a.", ".a", "a._b", "A-_-B", "x\t\ny", "a/b/c", "@:#",
                                           "__init__", "a____", "ß", "a.b.c", "0", "-" };
        bool all = true;
        for (size_t i = 0; i < ARRAY_SIZE(odd); i++) {
                _cleanup_free_ char *t = plan_cache_tag(odd[i], "Z.z");
                if (!valid_ref(t)) {
                        all = false;
                        tap_diag("invalid: '%s' -> '%s'", odd[i], t);
                }
        }
        tap_ok(all, "odd step keys all give valid references");
}

static void test_cache_fields(void)
{
        hm_error_t err = NULL;
        _cleanup_plan_ struct plan *none = parse_str(one_step("\"cmd\":\"x\",\"cache\":{\"policy\":\"none\",\"key\":\"ab\"}"), &err);
        tap_ok(none && none->steps[0].cache_tag == NULL && strcmp(none->steps[0].cache_policy, "none") == 0,
               "policy none: not cached");
        _cleanup_plan_ struct plan *nokey = parse_str(one_step("\"cmd\":\"x\",\"cache\":{\"policy\":\"forever\",\"key\":null}"), &err);
        tap_ok(nokey && nokey->steps[0].cache_tag == NULL && nokey->steps[0].cache_key == NULL, "null key: not cached");
        _cleanup_plan_ struct plan *nul = parse_str(one_step("\"cmd\":\"x\",\"cache\":null,\"timeout_seconds\":null,"
                                                             "\"image\":null,\"runner\":null,\"runner_args\":{\"a\":[1]},"
                                                             "\"unknown\":true,\"env\":null"), &err);
        tap_ok(nul && nul->steps[0].cache_policy == NULL && nul->steps[0].timeout_seconds == 0, "nulls and unknown fields");
        _cleanup_plan_ struct plan *big = parse_str(one_step("\"cmd\":\"x\",\"timeout_seconds\":4294967295"), &err);
        tap_ok(big && big->steps[0].timeout_seconds == UINT32_MAX, "timeout 2^32-1 accepted");
        hm_error_release(&err);
}

static void test_legacy(void)
{
        static const char doc[] =
                "{\"version\":\"0\",\"env\":{\"A\":\"1\",\"B\":\"2\"},\"default_image\":\"alpine\",\"steps\":["
                "{\"type\":\"command\",\"key\":\"a\",\"cmd\":\"echo a\",\"builds_in\":null,\"image\":\"alpine:3.20\"},"
                "{\"type\":\"command\",\"key\":\"b\",\"cmd\":\"echo b\",\"builds_in\":\"a\",\"env\":{\"B\":\"3\",\"C\":\"4\"}},"
                "{\"type\":\"wait\",\"continue_on_failure\":true},"
                "{\"type\":\"command\",\"key\":\"c\",\"cmd\":\"echo c\"},"
                "{\"type\":\"command\",\"key\":\"d\",\"cmd\":\"echo d\",\"builds_in\":\"c\",\"timeout_seconds\":5},"
                "{\"type\":\"wait\"},{\"type\":\"wait\"},"
                "{\"type\":\"command\",\"key\":\"e\",\"cmd\":\"echo e\"}]}";
        hm_error_t err = NULL;
        _cleanup_plan_ struct plan *plan = parse_str(doc, &err);
        if (!tap_ok(plan != NULL, "legacy form parses")) {
                tap_diag("%s", err->msg);
                hm_error_release(&err);
                return;
        }
        tap_ok(plan->legacy && plan->n_steps == 5, "legacy: 5 command steps");
        TAP_IS_STR(plan->default_image, "alpine", "default_image kept");
        TAP_IS_STR(parent_key(plan, "b"), "a", "b builds_in a");
        TAP_IS_STR(parent_key(plan, "c"), NULL, "c has no parent");
        TAP_IS_STR(parent_key(plan, "d"), "c", "d builds_in c");
        const struct plan_step *c = &plan->steps[2], *d = &plan->steps[3], *e = &plan->steps[4];
        tap_ok(c->n_preds == 2 && c->preds[0] == 0 && c->preds[1] == 1, "wait: c depends on a and b");
        tap_ok(d->n_preds == 3 && d->preds[0] == 0 && d->preds[1] == 1 && d->preds[2] == 2,
               "wait: d depends on a, b and builds in c");
        tap_ok(e->n_preds == 2 && e->preds[0] == 2 && e->preds[1] == 3,
               "two waits in a row: e depends on c and d only");
        tap_ok(plan->n_edges == 1 + 2 + 3 + 2, "legacy edge count");
        const struct plan_step *b = &plan->steps[1];
        tap_ok(b->n_env == 3 && strcmp(b->env[0].key, "A") == 0 && strcmp(b->env[1].value, "3") == 0 &&
                       strcmp(b->env[2].key, "C") == 0,
               "legacy env: top-level merged under step env");
        tap_ok(plan->steps[0].n_env == 2 && d->timeout_seconds == 5, "legacy env/timeouts");
        tap_ok(order_is_topological(plan) && plan->n_chains == 4, "legacy order, chains (%u)", plan->n_chains);
}

/* 100k steps: chains of 10 builds_in steps, each chain waiting on the previous chain's tail. */
static void test_big(void)
{
        const size_t n = 100000;
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
        strbuf_addstr(&sb, "{\"version\":\"0\",\"graph\":{\"node_holes\":[],\"edge_property\":\"directed\",\"nodes\":[");
        for (size_t i = 0; i < n; i++)
                strbuf_addf(&sb, "%s{\"step\":{\"key\":\"s%zu\",\"cmd\":\"echo %zu\"%s},\"env\":{\"CI\":\"true\",\"I\":\"%zu\"}}",
                            i ? "," : "", i, i, i % 10 ? "" : ",\"image\":\"alpine:3.20\"", i);
        strbuf_addstr(&sb, "],\"edges\":[");
        bool first = true;
        for (size_t i = 1; i < n; i++) {
                if (i % 10) {
                        strbuf_addf(&sb, "%s[%zu,%zu,\"builds_in\"]", first ? "" : ",", i - 1, i);
                        first = false;
                }
                if (i >= 10 && i % 10 == 0)
                        strbuf_addf(&sb, ",[%zu,%zu,\"depends_on\"]", i - 1, i);
        }
        strbuf_addstr(&sb, "]}}");
        int64_t t0 = now_ms();
        struct plan *plan = NULL;
        hm_error_t err = NULL;
        int r = plan_parse(sb.buf, sb.len, "big.json", &plan, &err);
        int64_t dt = now_ms() - t0;
        tap_diag("100k steps (%zu bytes): parse + validate in %lld ms", sb.len, (long long) dt);
        if (!tap_ok(r == 0, "100k-step DAG parses")) {
                tap_diag("%s", err->msg);
                hm_error_release(&err);
                return;
        }
        /* typically ~0.35 s; the bound leaves room for a loaded machine and for ASan */
#if defined(__SANITIZE_ADDRESS__)
        const int64_t bound = 6000;
#else
        const int64_t bound = 2000;
#endif
        tap_ok(dt < bound, "100k-step DAG within %lld ms (%lld ms)", (long long) bound, (long long) dt);
        tap_ok(plan->n_steps == n && plan->n_chains == n / 10, "100k: %u chains", plan->n_chains);
        tap_ok(plan->steps[n - 1].chain_pos == 9 && plan->steps[n - 1].chain_id == n / 10 - 1, "100k: last step");
        tap_ok(order_is_topological(plan) && plan->order[n - 1] == n - 1, "100k: topological order");
        plan_free(plan);
}

/* ---- plan_load ----------------------------------------------------------------------------- */

static const char small_ir[] =
        "{\"version\":\"0\",\"graph\":{\"nodes\":[{\"step\":{\"key\":\"only\",\"cmd\":\"true\"},\"env\":{}}],"
        "\"node_holes\":[],\"edge_property\":\"directed\",\"edges\":[]}}";

static void write_text(const char *dir, const char *name, const char *text)
{
        _cleanup_free_ char *path = xasprintf("%s/%s", dir, name);
        _cleanup_free_ char *parent = xstrdup(path);
        *strrchr(parent, '/') = 0;
        mkdir_p(parent, 0755);
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || write_all(fd, text, strlen(text)) < 0)
                abort();
}

static void check_load_error(const char *dir, const char *file, const char *slug, int exit_code, const char *substr,
                             const char *what)
{
        struct plan *plan = NULL;
        hm_error_t err = NULL;
        int r = plan_load(dir, file, slug, &plan, &err);
        bool ok = r < 0 && err && hm_error_exit_code(err) == exit_code && strstr(err->msg, substr);
        if (!tap_ok(ok, "load error: %s", what))
                tap_diag("r=%d exit=%d msg=%s", r, err ? hm_error_exit_code(err) : -1, err ? err->msg : "(none)");
        plan_free(plan);
        hm_error_release(&err);
}

static struct plan *load_ok(const char *dir, const char *file, const char *slug, const char *what)
{
        struct plan *plan = NULL;
        hm_error_t err = NULL;
        if (!tap_ok(plan_load(dir, file, slug, &plan, &err) == 0, "load: %s", what)) {
                tap_diag("%s", err->msg);
                hm_error_release(&err);
        }
        return plan;
}

static void test_load_dirs(const char *tmp)
{
        _cleanup_free_ char *none = xasprintf("%s/none", tmp);
        mkdir_p(none, 0755);
        check_load_error(none, NULL, NULL, 2, "no .hm directory in '", "no .hm");

        _cleanup_free_ char *empty = xasprintf("%s/empty", tmp);
        write_text(empty, ".hm/README.md", "not a pipeline");
        check_load_error(empty, NULL, NULL, 1, "no pipelines declared in this repo", "empty .hm");

        _cleanup_free_ char *two = xasprintf("%s/two", tmp);
        write_text(two, ".hm/b.json", small_ir);
        write_text(two, ".hm/a.json", small_ir);
        check_load_error(two, NULL, NULL, 1, "this repo declares pipelines: a, b (pass one as the first argument)",
                         "two pipelines, no slug");
        check_load_error(two, NULL, "zz", 1, "pipeline 'zz' not found (available: a, b)", "unknown slug");
        _cleanup_plan_ struct plan *b = load_ok(two, NULL, "b", "explicit slug");
        if (b) {
                TAP_IS_STR(b->slug, "b", "slug");
                _cleanup_free_ char *src = xasprintf("%s/.hm/b.json", two);
                TAP_IS_STR(b->source, src, "source is the .json path");
        }

        _cleanup_free_ char *one = xasprintf("%s/one", tmp);
        write_text(one, ".hm/ci.json", small_ir);
        _cleanup_plan_ struct plan *ci = load_ok(one, NULL, NULL, "single pipeline auto-selected");
        if (ci)
                tap_ok(strcmp(ci->slug, "ci") == 0 && ci->n_steps == 1, "single pipeline: slug ci");

        _cleanup_free_ char *bad = xasprintf("%s/bad", tmp);
        write_text(bad, ".hm/ci.json", "{\"graph\": 3}");
        _cleanup_free_ char *want = xasprintf("%s/.hm/ci.json: graph: expected an object, got a number", bad);
        check_load_error(bad, NULL, NULL, 7, want, "invalid IR in .hm names the file, exit 7");
}

static void test_load_files(const char *tmp)
{
        _cleanup_free_ char *f = xasprintf("%s/files/ir.json", tmp);
        write_text(tmp, "files/ir.json", small_ir);
        _cleanup_plan_ struct plan *p = load_ok(NULL, f, NULL, "-f file");
        if (p)
                tap_ok(strcmp(p->source, f) == 0 && p->slug == NULL, "-f: source is the path");
        _cleanup_free_ char *missing = xasprintf("%s/files/missing.json", tmp);
        check_load_error(NULL, missing, NULL, 2, "missing.json': No such file or directory", "-f missing file");

        static const char envelope[] =
                "{\"schema_version\":\"1\",\"pipelines\":[{\"slug\":\"x\",\"definition\":"
                "{\"graph\":{\"nodes\":[],\"edge_property\":\"directed\",\"edges\":[]}}},"
                "{\"slug\":\"y\",\"definition\":{\"graph\":{\"nodes\":[{\"step\":{\"key\":\"k\",\"cmd\":\"c\"},\"env\":{}}],"
                "\"edge_property\":\"directed\",\"edges\":[]}}}]}";
        write_text(tmp, "files/env.json", envelope);
        _cleanup_free_ char *ef = xasprintf("%s/files/env.json", tmp);
        check_load_error(NULL, ef, NULL, 1, "this repo declares pipelines: x, y", "envelope needs a slug");
        _cleanup_plan_ struct plan *y = load_ok(NULL, ef, "y", "envelope with slug");
        if (y)
                tap_ok(strcmp(y->slug, "y") == 0 && y->n_steps == 1, "envelope: pipeline y selected");

        /* stdin: a pipe on fd 0 */
        int saved = dup(STDIN_FILENO), fds[2];
        if (saved < 0 || pipe(fds) < 0)
                abort();
        write_all(fds[1], small_ir, strlen(small_ir));
        close(fds[1]);
        dup2(fds[0], STDIN_FILENO);
        close(fds[0]);
        _cleanup_plan_ struct plan *s = load_ok(NULL, "-", NULL, "-f - (stdin)");
        dup2(saved, STDIN_FILENO);
        close(saved);
        if (s)
                tap_ok(strcmp(s->source, "-") == 0 && s->n_steps == 1, "stdin: source '-'");
}

/* A stand-in `harmont` package with the registry/envelope entry points hm uses. */
static void write_stub_harmont(const char *pydir)
{
        write_text(pydir, "harmont/__init__.py",
                   "from ._registry import REGISTRATIONS, register\n"
                   "def pipeline(slug):\n"
                   "    def deco(fn):\n"
                   "        register(slug, fn)\n"
                   "        return fn\n"
                   "    return deco\n");
        write_text(pydir, "harmont/_registry.py",
                   "class Reg:\n"
                   "    def __init__(self, slug, fn):\n"
                   "        self.slug, self.fn = slug, fn\n"
                   "REGISTRATIONS = []\n"
                   "def register(slug, fn):\n"
                   "    REGISTRATIONS.append(Reg(slug, fn))\n");
        write_text(pydir, "harmont/_envelope.py",
                   "import json\n"
                   "from ._registry import REGISTRATIONS\n"
                   "def dump_registry_json():\n"
                   "    return json.dumps({'schema_version': '1', 'pipelines': [\n"
                   "        {'slug': r.slug, 'name': r.slug, 'definition': r.fn()} for r in REGISTRATIONS]})\n");
}

static const char py_pipeline[] =
        "import os, sys\n"
        "import harmont as hm\n"
        "from helper import CMD\n"
        "@hm.pipeline('%s')\n"
        "def p():\n"
        "    env = {'CWD': os.getcwd(), 'DWB': os.environ.get('PYTHONDONTWRITEBYTECODE', ''),\n"
        "           'STDIN': repr(sys.stdin.read())}\n"
        "    return {'version': '0', 'graph': {'nodes': [{'step': {'key': 'a', 'cmd': CMD}, 'env': env}],\n"
        "            'node_holes': [], 'edge_property': 'directed', 'edges': []}}\n";

static const char *env_value(const struct plan_step *s, const char *key)
{
        for (size_t i = 0; i < s->n_env; i++)
                if (strcmp(s->env[i].key, key) == 0)
                        return s->env[i].value;
        return NULL;
}

static bool have_python3(void)
{
        _cleanup_free_ char *path = xstrdup(getenv("PATH") ? getenv("PATH") : "/usr/bin:/bin");
        char *save = NULL;
        for (char *d = strtok_r(path, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
                _cleanup_free_ char *exe = xasprintf("%s/python3", d);
                if (access(exe, X_OK) == 0)
                        return true;
        }
        return false;
}

static void test_load_python(const char *tmp)
{
        if (!have_python3()) {
                tap_ok(true, "# SKIP python3 not available");
                return;
        }
        _cleanup_free_ char *pydir = xasprintf("%s/pylib", tmp);
        write_stub_harmont(pydir);
        _cleanup_free_ char *old = getenv("PYTHONPATH") ? xstrdup(getenv("PYTHONPATH")) : NULL;
        setenv("PYTHONPATH", pydir, 1);

        _cleanup_free_ char *repo = xasprintf("%s/pyrepo", tmp);
        _cleanup_free_ char *ci = xasprintf(py_pipeline, "ci");
        _cleanup_free_ char *other = xasprintf(py_pipeline, "other");
        write_text(repo, ".hm/ci.py", ci);
        write_text(repo, ".hm/other.py", other);
        write_text(repo, ".hm/helper.py", "CMD = 'echo from-helper'\n");
        check_load_error(repo, NULL, NULL, 1, "this repo declares pipelines: ci, other", "python: two pipelines");
        _cleanup_plan_ struct plan *p = load_ok(repo, NULL, "other", "python render with a stub harmont");
        if (p) {
                char real[PATH_MAX];
                if (!realpath(repo, real))
                        abort();
                TAP_IS_STR(p->slug, "other", "python: slug");
                TAP_IS_STR(p->source, ".hm/other.py", "python: source names the declaring file");
                TAP_IS_STR(p->steps[0].cmd, "echo from-helper", "python: sibling module importable");
                TAP_IS_STR(env_value(&p->steps[0], "CWD"), real, "python: cwd is the repo");
                TAP_IS_STR(env_value(&p->steps[0], "DWB"), "1", "python: PYTHONDONTWRITEBYTECODE=1");
                TAP_IS_STR(env_value(&p->steps[0], "STDIN"), "''", "python: stdin is empty");
        }
        _cleanup_free_ char *cache = xasprintf("%s/.hm/__pycache__", repo);
        tap_ok(access(cache, F_OK) < 0, "python: no __pycache__ written");

        _cleanup_free_ char *failing = xasprintf("%s/pyfail", tmp);
        write_text(failing, ".hm/ci.py", "raise RuntimeError('boom in pipeline')\n");
        check_load_error(failing, NULL, NULL, 2, "python3 exited with status 1: RuntimeError: boom in pipeline",
                         "python: exception in the pipeline file");

        /* harmont not importable */
        _cleanup_free_ char *broken = xasprintf("%s/pybroken", tmp);
        write_text(broken, "harmont/__init__.py", "raise ImportError('stub says no')\n");
        setenv("PYTHONPATH", broken, 1);
        check_load_error(repo, NULL, NULL, 2, "'.hm/ci.py' (and the other .hm/*.py files) needs the python module 'harmont'",
                         "python: harmont missing, only .py files");
        write_text(repo, ".hm/ci.json", small_ir);
        _cleanup_plan_ struct plan *j = load_ok(repo, NULL, NULL, "harmont missing but a .json pipeline exists");
        if (j)
                TAP_IS_STR(j->slug, "ci", "json pipeline selected");
        check_load_error(repo, NULL, "other", 1, "needs the python module 'harmont'", "missing harmont named in not-found");

        if (old)
                setenv("PYTHONPATH", old, 1);
        else
                unsetenv("PYTHONPATH");
}

static int count_fds(void)
{
        _cleanup_closedir_ DIR *d = opendir("/proc/self/fd");
        int n = 0;
        if (!d)
                return -1;
        while (readdir(d))
                n++;
        return n;
}

int main(void)
{
        const char *shared = shared_dir();
        if (shared) {
                _cleanup_free_ char *up = xasprintf("%s/ir/upstream", shared);
                _cleanup_free_ char *cases = xasprintf("%s/ir/cases", shared);
                test_fixtures_in(up);
                test_fixtures_in(cases);
                test_fork_keep_going(shared);
        } else {
                tap_ok(true, "# SKIP shared IR fixtures not found (set HM_SHARED_DIR)");
        }
        test_worked_example();
        test_display_name();
        test_cache_tags(shared);
        test_cache_fields();
        test_legacy();
        test_big();

        char tmpl[] = "/tmp/hm-test-plan-XXXXXX";
        if (!mkdtemp(tmpl))
                abort();
        int fds = count_fds();
        test_load_dirs(tmpl);
        test_load_files(tmpl);
        test_load_python(tmpl);
        tap_ok(count_fds() == fds, "plan_load leaks no file descriptors (%d before, %d after)", fds, count_fds());
        rm_rf(tmpl);
        return tap_done();
}
