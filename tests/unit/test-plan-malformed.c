/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Malformed IR: each document must be rejected with exit code 7 and a
 * one-line message "bad.json: <json path>: <reason>" containing the expected
 * text.  Documents are written with ' for " to stay readable (no case needs
 * a literal apostrophe).
 */
#include "lib/error.h"
#include "lib/strbuf.h"
#include "lib/util.h"
#include "pipeline/plan.h"
#include "tests/unit/tap.h"

/* A graph document, one node with the given step fields, and helpers. */
#define GRAPH(nodes, edges) \
        "{'graph':{'nodes':[" nodes "],'node_holes':[],'edge_property':'directed','edges':[" edges "]}}"
#define NODE(fields) "{'step':{" fields "},'env':{}}"
#define STEP(key) NODE("'key':'" key "','cmd':'true'")
#define ONE(fields) GRAPH(NODE("'key':'k','cmd':'true'," fields), "")
#define TWO(edges) GRAPH(STEP("a") "," STEP("b"), edges)

static const struct malformed {
        const char *doc;
        const char *want;
} cases[] = {
        /* document level */
        { "", "bad.json: $: empty document" },
        { "  \n\t ", "bad.json: $: empty document" },
        { "[1]", "bad.json: $: expected an object at the top level, got an array" },
        { "42", "bad.json: $: expected an object at the top level, got a number" },
        { "null", "bad.json: $: expected an object at the top level, got null" },
        { "{", "bad.json: line 1, column 2: " },
        { "{'graph':\n  {'nodes': ]}", "bad.json: line 2, column 13: " },
        { "{\n\n  'graph' 1}", "bad.json: line 3, column 11: " },
        { "{} x", "bad.json: line 1, column 4: " },
        { "{'a':'\\u0000'}", "bad.json: line 1, column 13: string contains a NUL character" },
        { "{'a\\u0000b':1}", "bad.json: line 1, column 11: object key contains a NUL character" },
        { "{'a':'\xff\xfe'}", "bad.json: line 1, column " },
        { "{'a':[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
          "nesting too deep" },
        { "{}", "bad.json: $: missing field 'graph'" },
        { "{'version':0,'graph':{}}", "bad.json: version: expected a string, got a number" },
        { "{'default_image':5,'graph':{}}", "bad.json: default_image: expected a string or null, got a number" },
        { "{'timeout_seconds':0,'graph':{}}", "bad.json: timeout_seconds: must not be 0" },
        { "{'timeout_seconds':99999999999999999999,'graph':{}}",
          "bad.json: timeout_seconds: number 99999999999999999999 out of range (1..4294967295)" },
        { "{'timeout_seconds':'60','graph':{}}", "bad.json: timeout_seconds: expected an integer, got a string" },
        { "{'graph':{},'graph':{}}", "bad.json: $: duplicate field 'graph'" },
        /* graph */
        { "{'graph':3}", "bad.json: graph: expected an object, got a number" },
        { "{'graph':{'edge_property':'directed','edges':[]}}", "bad.json: graph: missing field 'nodes'" },
        { "{'graph':{'nodes':{},'edge_property':'directed','edges':[]}}",
          "bad.json: graph.nodes: expected an array, got an object" },
        { "{'graph':{'nodes':[],'node_holes':[1],'edge_property':'directed','edges':[]}}",
          "bad.json: graph.node_holes: graph can not have holes (1 given)" },
        { "{'graph':{'nodes':[],'node_holes':null,'edge_property':'directed','edges':[]}}",
          "bad.json: graph.node_holes: expected an array, got null" },
        { "{'graph':{'nodes':[],'edge_property':'undirected','edges':[]}}",
          "bad.json: graph.edge_property: edge property mismatch: expected 'directed', got 'undirected'" },
        { "{'graph':{'nodes':[],'edges':[]}}", "bad.json: graph: missing field 'edge_property'" },
        { "{'graph':{'nodes':[],'edge_property':1,'edges':[]}}",
          "bad.json: graph.edge_property: expected a string, got a number" },
        { "{'graph':{'nodes':[],'edge_property':'directed'}}", "bad.json: graph: missing field 'edges'" },
        { "{'graph':{'nodes':[],'edge_property':'directed','edges':null}}",
          "bad.json: graph.edges: expected an array, got null" },
        /* edges */
        { TWO("5"), "bad.json: graph.edges[0]: expected an array [source, target, kind], got a number" },
        { TWO("null"), "bad.json: graph.edges[0]: expected an array [source, target, kind], got null" },
        { TWO("[0,1]"), "bad.json: graph.edges[0]: expected 3 elements [source, target, kind], got 2" },
        { TWO("[0,1,'builds_in',1]"), "bad.json: graph.edges[0]: expected 3 elements [source, target, kind], got 4" },
        { TWO("[0,1,'builds_in'],[1,9,'builds_in']"), "bad.json: graph.edges[1][1]: node index 9 out of range (2 nodes)" },
        { TWO("[2,1,'builds_in']"), "bad.json: graph.edges[0][0]: node index 2 out of range (2 nodes)" },
        { TWO("[-1,1,'builds_in']"), "bad.json: graph.edges[0][0]: negative number -1 not allowed" },
        { TWO("[0,1.5,'builds_in']"), "bad.json: graph.edges[0][1]: expected an integer, got 1.5" },
        { TWO("[0,1e0,'builds_in']"), "bad.json: graph.edges[0][1]: expected an integer, got 1e0" },
        { TWO("['0',1,'builds_in']"), "bad.json: graph.edges[0][0]: expected an integer, got a string" },
        { TWO("[0,1,'needs']"), "bad.json: graph.edges[0][2]: unknown edge kind 'needs' (expected 'builds_in' or 'depends_on')" },
        { TWO("[0,1,1]"), "bad.json: graph.edges[0][2]: expected an edge kind string, got a number" },
        { TWO("[0,1,'builds_in'],[1,1,'depends_on']"), "bad.json: graph.edges[1]: self-loop on step 'b'" },
        { TWO("[0,1,'builds_in'],[1,0,'depends_on']"), "bad.json: graph: cycle: a -> b -> a" },
        { GRAPH(STEP("a") "," STEP("b") "," STEP("c") "," STEP("d"),
                "[0,1,'builds_in'],[1,2,'builds_in'],[2,3,'depends_on'],[3,1,'builds_in']"),
          "bad.json: graph: cycle: b -> c -> d -> b" },
        /* nodes and steps */
        { GRAPH(STEP("a") ",'x'", ""), "bad.json: graph.nodes[1]: expected an object, got a string" },
        { GRAPH("{'env':{}}", ""), "bad.json: graph.nodes[0]: missing field 'step'" },
        { GRAPH("{'step':[],'env':{}}", ""), "bad.json: graph.nodes[0].step: expected an object, got an array" },
        { GRAPH("{'step':{'key':'a','cmd':'true'}}", ""), "bad.json: graph.nodes[0]: missing field 'env'" },
        { GRAPH("{'step':{'key':'a','cmd':'true'},'env':null}", ""),
          "bad.json: graph.nodes[0].env: expected an object of strings, got null" },
        { GRAPH("{'step':{'key':'a','cmd':'true'},'env':{'X':1}}", ""),
          "bad.json: graph.nodes[0].env.X: expected a string, got a number" },
        { GRAPH("{'step':{'key':'a','cmd':'true'},'env':{'A=B':'1'}}", ""),
          "bad.json: graph.nodes[0].env: invalid variable name 'A=B'" },
        { GRAPH("{'step':{'key':'a','cmd':'true'},'env':{'A':'1','A':'2'}}", ""),
          "bad.json: graph.nodes[0].env: duplicate variable 'A'" },
        { GRAPH(NODE("'cmd':'true'"), ""), "bad.json: graph.nodes[0].step: missing field 'key'" },
        { GRAPH(NODE("'key':7,'cmd':'true'"), ""), "bad.json: graph.nodes[0].step.key: expected a string, got a number" },
        { GRAPH(NODE("'key':'','cmd':'true'"), ""), "bad.json: graph.nodes[0].step.key: empty step key" },
        { GRAPH(NODE("'key':'a','key':'b','cmd':'true'"), ""), "bad.json: graph.nodes[0].step: duplicate field 'key'" },
        { GRAPH(NODE("'key':'a'"), ""), "bad.json: graph.nodes[0].step: missing field 'cmd'" },
        { GRAPH(NODE("'key':'a','cmd':''"), ""), "bad.json: graph.nodes[0].step.cmd: empty command" },
        { GRAPH(NODE("'key':'a','cmd':null"), ""), "bad.json: graph.nodes[0].step.cmd: expected a string, got null" },
        { ONE("'label':3"), "bad.json: graph.nodes[0].step.label: expected a string or null, got a number" },
        { ONE("'image':true"), "bad.json: graph.nodes[0].step.image: expected a string or null, got a boolean" },
        { ONE("'runner':['vm']"), "bad.json: graph.nodes[0].step.runner: expected a string or null, got an array" },
        { GRAPH(STEP("a") "," STEP("b") "," STEP("a"), ""),
          "bad.json: graph.nodes[2].step.key: duplicate step key 'a' (also graph.nodes[0])" },
        { ONE("'timeout_seconds':0"), "bad.json: graph.nodes[0].step.timeout_seconds: must not be 0" },
        { ONE("'timeout_seconds':-5"), "bad.json: graph.nodes[0].step.timeout_seconds: negative number -5 not allowed" },
        { ONE("'timeout_seconds':2.5"), "bad.json: graph.nodes[0].step.timeout_seconds: expected an integer, got 2.5" },
        { ONE("'timeout_seconds':4294967296"),
          "bad.json: graph.nodes[0].step.timeout_seconds: number 4294967296 out of range (1..4294967295)" },
        { ONE("'timeout_seconds':'5m'"), "bad.json: graph.nodes[0].step.timeout_seconds: expected an integer, got a string" },
        { ONE("'cache':'forever'"), "bad.json: graph.nodes[0].step.cache: expected an object or null, got a string" },
        { ONE("'cache':{'key':'abc'}"), "bad.json: graph.nodes[0].step.cache: missing field 'policy'" },
        { ONE("'cache':{'policy':1}"), "bad.json: graph.nodes[0].step.cache.policy: expected a string, got a number" },
        { ONE("'cache':{'policy':'forever','key':12}"),
          "bad.json: graph.nodes[0].step.cache.key: expected a string or null, got a number" },
        { ONE("'env':[]"), "bad.json: graph.nodes[0].step.env: expected an object of strings, got an array" },
        /* legacy steps[] form */
        { "{'steps':{}}", "bad.json: steps: expected an array, got an object" },
        { "{'steps':[5]}", "bad.json: steps[0]: expected an object, got a number" },
        { "{'steps':[{'key':'a','cmd':'x'}]}", "bad.json: steps[0]: missing field 'type'" },
        { "{'steps':[{'type':'wait'},{'type':'block'}]}",
          "bad.json: steps[1].type: unknown step type 'block' (expected 'command' or 'wait')" },
        { "{'steps':[{'type':'command','key':'a'}]}", "bad.json: steps[0]: missing field 'cmd'" },
        { "{'steps':[{'type':'command','key':'a','cmd':'x'},{'type':'command','key':'b','cmd':'x','builds_in':'nope'}]}",
          "bad.json: steps[1].builds_in: unknown step key 'nope'" },
        { "{'steps':[{'type':'command','key':'a','cmd':'x','builds_in':7}]}",
          "bad.json: steps[0].builds_in: expected a string or null, got a number" },
        { "{'steps':[{'type':'command','key':'a','cmd':'x','builds_in':'a'}]}",
          "bad.json: steps[0].builds_in: self-loop on step 'a'" },
        { "{'steps':[{'type':'command','key':'a','cmd':'x'},{'type':'wait'},{'type':'command','key':'a','cmd':'y'}]}",
          "bad.json: steps[2].key: duplicate step key 'a' (also steps[0])" },
        { "{'steps':[{'type':'command','key':'a','cmd':'x','builds_in':'b'},{'type':'command','key':'b','cmd':'y','builds_in':'a'}]}",
          "bad.json: steps: cycle: a -> b -> a" },
        { "{'steps':[{'type':'comm\\nd'}]}", "bad.json: steps[0].type: unknown step type 'comm\\x0ad' (expected" },
        { "{'env':'CI=1','steps':[]}", "bad.json: env: expected an object of strings, got a string" },
        { "{'steps':[{'type':'command','key':'a','cmd':'x','timeout_seconds':0}]}",
          "bad.json: steps[0].timeout_seconds: must not be 0" },
        { "{'steps':[{'type':'command','key':'a','cmd':'x','env':{'K':false}}]}",
          "bad.json: steps[0].env.K: expected a string, got a boolean" },
};

static char *unquote(const char *doc)
{
        char *s = xstrdup(doc);
        for (char *c = s; *c; c++)
                if (*c == '\'')
                        *c = '"';
        return s;
}

static void check(const char *doc, const char *want, size_t i)
{
        _cleanup_free_ char *json = unquote(doc);
        struct plan *plan = NULL;
        hm_error_t err = NULL;
        int r = plan_parse(json, strlen(json), "bad.json", &plan, &err);
        bool ok = r < 0 && plan == NULL && err && hm_error_exit_code(err) == HM_EXIT_INVALID_IR &&
                  strstr(err->msg, want) && !strchr(err->msg, '\n');
        if (!tap_ok(ok, "case %zu: %s", i, want)) {
                tap_diag("doc: %s", json);
                tap_diag("got: r=%d exit=%d msg=%s", r, err ? hm_error_exit_code(err) : -1, err ? err->msg : "(none)");
        }
        plan_free(plan);
        hm_error_release(&err);
}

/* A 100-step cycle is named with its middle elided, and stays one line. */
static void check_long_cycle(void)
{
        _cleanup_strbuf_ struct strbuf sb = STRBUF_INIT;
        strbuf_addstr(&sb, "{\"graph\":{\"node_holes\":[],\"edge_property\":\"directed\",\"nodes\":[");
        for (int i = 0; i < 100; i++)
                strbuf_addf(&sb, "%s{\"step\":{\"key\":\"s%d\",\"cmd\":\"x\"},\"env\":{}}", i ? "," : "", i);
        strbuf_addstr(&sb, "],\"edges\":[");
        for (int i = 0; i < 100; i++)
                strbuf_addf(&sb, "%s[%d,%d,\"depends_on\"]", i ? "," : "", i, (i + 1) % 100);
        strbuf_addstr(&sb, "]}}");
        struct plan *plan = NULL;
        hm_error_t err = NULL;
        int r = plan_parse(sb.buf, sb.len, "bad.json", &plan, &err);
        bool ok = r < 0 && hm_error_exit_code(err) == 7 &&
                  strstr(err->msg, "bad.json: graph: cycle: s0 -> s1 -> ") &&
                  strstr(err->msg, "(84 more)") && str_has_suffix(err->msg, "-> s99 -> s0");
        if (!tap_ok(ok, "100-step cycle: elided, ends where it starts"))
                tap_diag("%s", err ? err->msg : "(none)");
        hm_error_release(&err);
        plan_free(plan);
}

/* The source name is what the caller passed (NULL: "-"). */
static void check_source_names(void)
{
        hm_error_t err = NULL;
        struct plan *plan = NULL;
        int r = plan_parse("{}", 2, NULL, &plan, &err);
        tap_ok(r < 0 && strcmp(err->msg, "-: $: missing field 'graph'") == 0, "NULL source shows as '-'");
        hm_error_release(&err);
        r = plan_parse("{\"graph\":1}", 11, ".hm/ci.json", &plan, &err);
        TAP_IS_STR(err ? err->msg : NULL, ".hm/ci.json: graph: expected an object, got a number", "exact message");
        hm_error_release(&err);
        /* bytes after len are not read */
        r = plan_parse("{}garbage", 2, "x", &plan, &err);
        tap_ok(r < 0 && strstr(err->msg, "missing field 'graph'"), "len bounds the document");
        hm_error_release(&err);
}

int main(void)
{
        tap_ok(ARRAY_SIZE(cases) >= 40, "at least 40 malformed documents (%zu)", ARRAY_SIZE(cases));
        for (size_t i = 0; i < ARRAY_SIZE(cases); i++)
                check(cases[i].doc, cases[i].want, i);
        check_long_cycle();
        check_source_names();
        return tap_done();
}
