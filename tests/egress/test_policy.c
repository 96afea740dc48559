/* test_policy.c - parsing effective policies and deciding requests
 * (docs/egress.md, "The effective policy of a sandbox"). */
#include "addr.h"
#include "policy.h"
#include "unit.h"

static eg_policy *parse_at(const char *json, int64_t now)
{
	json_error_t jerr;
	json_t *j = json_loads(json, 0, &jerr);
	if (!j) {
		fprintf(stderr, "bad JSON in test: %s\n", jerr.text);
		exit(1);
	}
	eg_policy *p = NULL;
	ab_error err = {0};
	int rc = eg_policy_parse(j, now, &p, &err);
	json_decref(j);
	if (rc < 0) {
		fprintf(stderr, "policy refused: %s\n", err.msg);
		exit(1);
	}
	return p;
}

static eg_policy *parse(const char *json)
{
	return parse_at(json, 0);
}

static const char *refusal(const char *json)
{
	static ab_error err;
	json_t *j = json_loads(json, 0, NULL);
	CHECK(j);
	eg_policy *p = NULL;
	memset(&err, 0, sizeof(err));
	int rc = eg_policy_parse(j, 0, &p, &err);
	json_decref(j);
	CHECK(rc < 0);
	CHECK(p == NULL);
	return err.msg;
}

static eg_decision decide_at(eg_policy *p, const char *host, int port, const char *method,
			     const char *path, uint64_t bytes, bool ws, int64_t now)
{
	char h[300];
	snprintf(h, sizeof(h), "%s", host);
	enum eg_host_kind k = eg_host_normalize(h);
	eg_query q = {.host = h,
		      .host_is_ip = k == EG_HOST_IPV4 || k == EG_HOST_IPV6,
		      .port = (uint16_t)port,
		      .method = method,
		      .path = path,
		      .bytes_out = bytes,
		      .websocket = ws};
	eg_decision d;
	eg_policy_decide(p, &q, now, &d);
	return d;
}

static eg_decision decide(eg_policy *p, const char *host, int port, const char *method,
			  const char *path)
{
	return decide_at(p, host, port, method, path, 0, false, 0);
}

#define R(id, host, extra) "{\"id\":\"" id "\",\"host\":\"" host "\"" extra "}"

AB_TEST(policy_no_rule_denies_with_the_documented_reason)
{
	eg_policy *p = parse("{\"mode\":\"deny\",\"deny\":[],\"allow\":[],\"intent\":null,"
			     "\"intent_rules\":[],\"intent_expires_ms\":null}");
	eg_decision d = decide(p, "evil.example", 80, "GET", "/");
	CHECK_EQ_INT(d.kind, EG_DENY);
	CHECK_STR(d.reason, "no rule allows evil.example");
	CHECK_STR(d.rule, "");
	CHECK_STR(d.code, "no-rule");
	eg_policy_unref(p);
}

AB_TEST(policy_host_patterns)
{
	eg_policy *p = parse("{\"allow\":[" R("sandbox#0", "api.github.com",
					      "") "," R("sandbox#1", "*.example.org", "") "]}");
	CHECK_EQ_INT(decide(p, "api.github.com", 443, "GET", "/").kind, EG_ALLOW);
	CHECK_EQ_INT(decide(p, "API.GitHub.com.", 443, "GET", "/").kind, EG_ALLOW);
	CHECK_EQ_INT(decide(p, "x.api.github.com", 443, "GET", "/").kind, EG_DENY);
	CHECK_EQ_INT(decide(p, "github.com", 443, "GET", "/").kind, EG_DENY);
	eg_decision d = decide(p, "a.b.example.org", 80, "GET", "/");
	CHECK_EQ_INT(d.kind, EG_ALLOW);
	CHECK_STR(d.rule, "sandbox#1");
	CHECK_EQ_INT(decide(p, "example.org", 80, "GET", "/").kind, EG_DENY);
	CHECK_EQ_INT(decide(p, "badexample.org", 80, "GET", "/").kind, EG_DENY);
	eg_policy_unref(p);
}

AB_TEST(policy_ip_literals_only_when_named_exactly)
{
	eg_policy *p = parse("{\"allow\":[" R("sandbox#0", "*", "") "," R(
	    "sandbox#1", "203.0.113.7", "") "," R("sandbox#2", "2001:db8::1", "") "]}");
	CHECK_EQ_INT(decide(p, "anything.example", 80, "GET", "/").kind, EG_ALLOW);
	eg_decision d = decide(p, "203.0.113.7", 80, "GET", "/");
	CHECK_EQ_INT(d.kind, EG_ALLOW);
	CHECK_STR(d.rule, "sandbox#1");
	CHECK_EQ_INT(decide(p, "203.0.113.8", 80, "GET", "/").kind, EG_DENY);
	CHECK_STR(decide(p, "2001:0db8:0:0::1", 80, "GET", "/").rule, "sandbox#2");
	CHECK_EQ_INT(decide(p, "2001:db8::2", 80, "GET", "/").kind, EG_DENY);
	eg_policy_unref(p);
	/* A wildcard over a literal is not a pattern. */
	CHECK_CONTAINS(refusal("{\"allow\":[" R("x", "*.1.2.3.4", "") "]}"), "host");
}

AB_TEST(policy_ports_methods_paths_size_websocket)
{
	eg_policy *p =
	    parse("{\"allow\":[" R("sandbox#0", "api.example",
				   ",\"methods\":[\"GET\",\"HEAD\"],\"paths\":[\"/v1/\",\"/v2/\"],"
				   "\"ports\":[443,8443],\"max_bytes_out\":100") "]}");
	CHECK_EQ_INT(decide(p, "api.example", 443, "GET", "/v1/x").kind, EG_ALLOW);
	CHECK_EQ_INT(decide(p, "api.example", 8443, "HEAD", "/v2/").kind, EG_ALLOW);
	eg_decision d = decide(p, "api.example", 80, "GET", "/v1/x");
	CHECK_STR(d.reason, "port 80 not allowed by sandbox#0 (allowed: 443, 8443)");
	CHECK_STR(d.code, "sandbox#0");
	d = decide(p, "api.example", 443, "POST", "/v1/x");
	CHECK_EQ_INT(d.kind, EG_DENY);
	CHECK_STR(d.reason, "method POST not allowed by sandbox#0 (allowed: GET, HEAD)");
	CHECK_STR(d.rule, "sandbox#0");
	d = decide(p, "api.example", 443, "GET", "/v3");
	CHECK_STR(d.reason, "path /v3 not allowed by sandbox#0 (allowed: /v1/, /v2/)");
	CHECK_EQ_INT(decide(p, "api.example", 443, "GET", "/v1").kind, EG_DENY);
	d = decide_at(p, "api.example", 443, "GET", "/v1/", 101, false, 0);
	CHECK_CONTAINS(d.reason, "max_bytes_out 100");
	CHECK_EQ_INT(decide_at(p, "api.example", 443, "GET", "/v1/", 100, false, 0).kind, EG_ALLOW);
	d = decide_at(p, "api.example", 443, "GET", "/v1/", 0, true, 0);
	CHECK_STR(d.reason, "websocket not allowed by sandbox#0");
	/* A CONNECT decides on host and port only. */
	CHECK_EQ_INT(decide(p, "api.example", 443, NULL, NULL).kind, EG_ALLOW);
	CHECK_EQ_INT(decide(p, "api.example", 22, NULL, NULL).kind, EG_DENY);
	eg_policy_unref(p);
}

AB_TEST(policy_default_ports_are_80_and_443)
{
	eg_policy *p = parse("{\"allow\":[" R("policy#0", "a.example", "") "]}");
	CHECK_EQ_INT(decide(p, "a.example", 80, "GET", "/").kind, EG_ALLOW);
	CHECK_EQ_INT(decide(p, "a.example", 443, NULL, NULL).kind, EG_ALLOW);
	CHECK_EQ_INT(decide(p, "a.example", 8080, "GET", "/").kind, EG_DENY);
	eg_policy_unref(p);
}

AB_TEST(policy_a_later_rule_may_permit_what_the_first_match_refuses)
{
	eg_policy *p =
	    parse("{\"allow\":[" R("sandbox#0", "a.example", ",\"methods\":[\"GET\"]") "," R(
		"grant:9", "a.example", "") "]}");
	eg_decision d = decide(p, "a.example", 80, "POST", "/");
	CHECK_EQ_INT(d.kind, EG_ALLOW);
	CHECK_STR(d.rule, "grant:9");
	eg_policy_unref(p);
}

AB_TEST(policy_deny_list_wins_and_report_deny_rules_only_record)
{
	eg_policy *p = parse("{\"deny\":[" R("deny#0", "*.internal.example", "") "," R(
	    "deny#1", "watch.example", ",\"report\":true") "],\"allow\":[" R("policy#0", "*",
									     "") "]}");
	eg_decision d = decide(p, "db.internal.example", 80, "GET", "/");
	CHECK_EQ_INT(d.kind, EG_DENY);
	CHECK_STR(d.rule, "deny#0");
	CHECK_STR(d.code, "deny#0");
	CHECK_STR(d.reason, "host db.internal.example denied by deny#0");
	d = decide(p, "watch.example", 80, "GET", "/");
	CHECK_EQ_INT(d.kind, EG_REPORT);
	CHECK_STR(d.rule, "deny#1");
	CHECK_EQ_INT(decide(p, "other.example", 80, "GET", "/").kind, EG_ALLOW);
	eg_policy_unref(p);
}

AB_TEST(policy_report_rules_and_report_mode)
{
	eg_policy *p = parse("{\"allow\":[" R("sandbox#0", "a.example",
					      ",\"methods\":[\"GET\"],\"report\":true") "]}");
	eg_decision d = decide(p, "a.example", 80, "POST", "/");
	CHECK_EQ_INT(d.kind, EG_REPORT);
	CHECK_STR(d.rule, "sandbox#0");
	CHECK_CONTAINS(d.reason, "method POST");
	CHECK_EQ_INT(decide(p, "b.example", 80, "GET", "/").kind, EG_DENY);
	eg_policy_unref(p);

	p = parse(
	    "{\"mode\":\"report\",\"deny\":[" R("deny#0", "bad.example", "") "],\"allow\":[" R(
		"sandbox#0", "a.example", ",\"methods\":[\"GET\"]") "]}");
	CHECK_EQ_INT(decide(p, "b.example", 80, "GET", "/").kind, EG_REPORT);
	CHECK_STR(decide(p, "b.example", 80, "GET", "/").reason, "no rule allows b.example");
	CHECK_EQ_INT(decide(p, "bad.example", 80, "GET", "/").kind, EG_REPORT);
	CHECK_EQ_INT(decide(p, "a.example", 80, "PUT", "/").kind, EG_REPORT);
	CHECK_EQ_INT(decide(p, "a.example", 80, "GET", "/").kind, EG_ALLOW);
	eg_policy_unref(p);
}

AB_TEST(policy_intent_rules_expire)
{
	eg_policy *p = parse_at("{\"intent\":\"docs-lookup\",\"intent_rules\":[" R(
				    "intent:docs-lookup#0", "*.python.org",
				    ",\"methods\":[\"GET\"]") "],"
							      "\"intent_expires_ms\":1000}",
				5000);
	CHECK_STR(eg_policy_intent(p, 5999), "docs-lookup");
	eg_decision d = decide_at(p, "docs.python.org", 443, "GET", "/", 0, false, 5999);
	CHECK_EQ_INT(d.kind, EG_ALLOW);
	CHECK_STR(d.rule, "intent:docs-lookup#0");
	d = decide_at(p, "docs.python.org", 443, "GET", "/", 0, false, 6000);
	CHECK_EQ_INT(d.kind, EG_DENY);
	CHECK_STR(d.reason, "no rule allows docs.python.org");
	CHECK(eg_policy_intent(p, 6000) == NULL);
	eg_policy_unref(p);
	/* No expiry given: no intent. */
	p = parse("{\"intent\":\"x\",\"intent_rules\":[" R("intent:x#0", "a.example", "") "]}");
	CHECK_EQ_INT(decide(p, "a.example", 80, "GET", "/").kind, EG_DENY);
	eg_policy_unref(p);
}

AB_TEST(policy_bad_input_is_refused_naming_the_problem)
{
	CHECK_CONTAINS(refusal("[]"), "expected an object");
	CHECK_CONTAINS(refusal("{\"colour\":1}"), "unknown key colour");
	CHECK_CONTAINS(refusal("{\"mode\":\"enforce\"}"), "mode");
	CHECK_CONTAINS(refusal("{\"allow\":[" R("x", "a.example", ",\"colour\":\"red\"") "]}"),
		       "unknown key colour");
	CHECK_CONTAINS(refusal("{\"allow\":[{\"host\":\"a.example\"}]}"), "no id");
	CHECK_CONTAINS(refusal("{\"allow\":[{\"id\":\"x\"}]}"), "no host");
	CHECK_CONTAINS(refusal("{\"allow\":[" R("x", "A.example", "") "]}"), "host");
	CHECK_CONTAINS(refusal("{\"allow\":[" R("x", "a.example.", "") "]}"), "host");
	CHECK_CONTAINS(refusal("{\"allow\":[" R("x", "a b", "") "]}"), "host");
	CHECK_CONTAINS(refusal("{\"allow\":[" R("x", "a.example", ",\"methods\":[\"get\"]") "]}"),
		       "methods[0]");
	CHECK_CONTAINS(refusal("{\"allow\":[" R("x", "a.example", ",\"paths\":[\"v1\"]") "]}"),
		       "paths[0]");
	CHECK_CONTAINS(refusal("{\"allow\":[" R("x", "a.example", ",\"ports\":[0]") "]}"),
		       "ports[0]");
	CHECK_CONTAINS(refusal("{\"allow\":[" R("x", "a.example", ",\"ports\":[65536]") "]}"),
		       "ports[0]");
	CHECK_CONTAINS(refusal("{\"allow\":[" R("x", "a.example", ",\"ports\":\"80\"") "]}"),
		       "ports");
	CHECK_CONTAINS(refusal("{\"allow\":[" R("x", "a.example", ",\"max_bytes_out\":-1") "]}"),
		       "max_bytes_out");
	CHECK_CONTAINS(refusal("{\"allow\":[" R("x", "a.example", ",\"report\":1") "]}"), "report");
	CHECK_CONTAINS(refusal("{\"intent_expires_ms\":\"soon\"}"), "intent_expires_ms");
	/* 257 rules is one too many. */
	char *big = malloc(300 * 64);
	CHECK(big);
	size_t off = (size_t)sprintf(big, "{\"allow\":[");
	for (int i = 0; i < 257; i++)
		off += (size_t)sprintf(big + off, "%s{\"id\":\"r%d\",\"host\":\"a.example\"}",
				       i ? "," : "", i);
	strcpy(big + off, "]}");
	CHECK_CONTAINS(refusal(big), "more than 256 rules");
	free(big);
}

AB_TEST(policy_refcount_outlives_a_swap)
{
	eg_policy *p = parse("{\"allow\":[" R("sandbox#0", "a.example", "") "]}");
	eg_policy *held = eg_policy_ref(p);
	eg_policy_unref(p);
	CHECK_EQ_INT(decide(held, "a.example", 80, "GET", "/").kind, EG_ALLOW);
	eg_policy_unref(held);
}
