/* fuzz_policy.c - the egress policy (src/daemon/egress/policy.c): the YAML
 * policy file, rule lists as sandbox.create's network gives them, and host
 * names and patterns.
 *
 * Input: byte 0 picks the parser, the rest is its text. Invariants:
 *  - a policy file is accepted with every rule normalized, or refused with
 *    a message that names the file;
 *  - a normalized rule is a fixed point: normalizing it again (without its
 *    id) gives the same rule; its host is lower case and its ports and
 *    lists within the documented limits;
 *  - a normalized host matches itself, and a wildcard never matches an IP
 *    literal. */
#include "egress/policy.h"
#include "fuzz.h"

static void check_rule(json_t *r)
{
	FUZZ_CHECK(json_is_object(r));
	const char *host = json_string_value(json_object_get(r, "host"));
	FUZZ_CHECK(host && strlen(host) <= EG_HOST_MAX && strlen(host) > 0);
	for (const char *p = host; *p; p++)
		FUZZ_CHECK(!(*p >= 'A' && *p <= 'Z'));
	json_t *ports = json_object_get(r, "ports");
	FUZZ_CHECK(json_is_array(ports) && json_array_size(ports) >= 1 &&
		   json_array_size(ports) <= EG_PORTS_MAX);
	size_t i;
	json_t *v;
	json_array_foreach(ports, i, v)
	    FUZZ_CHECK(json_integer_value(v) >= 1 && json_integer_value(v) <= 65535);
	FUZZ_CHECK(json_array_size(json_object_get(r, "methods")) <= EG_METHODS_MAX);
	FUZZ_CHECK(json_array_size(json_object_get(r, "paths")) <= EG_PATHS_MAX);
	/* A fixed point. */
	json_t *again_in = json_deep_copy(r);
	json_object_del(again_in, "id");
	ab_error err = {0};
	json_t *again = eg_rule_normalize(again_in, json_string_value(json_object_get(r, "id")),
					  "again", NULL, &err);
	FUZZ_CHECK(again && json_equal(again, r));
	json_decref(again);
	json_decref(again_in);
	if (strchr(host, '*') == NULL)
		FUZZ_CHECK(eg_host_match(host, host));
}

static void check_rules(json_t *a)
{
	FUZZ_CHECK(json_is_array(a) && json_array_size(a) <= EG_RULES_MAX);
	size_t i;
	json_t *r;
	json_array_foreach(a, i, r) check_rule(r);
}

static void fuzz_file(const char *text, size_t len)
{
	json_t *pol = NULL;
	ab_error err = {0};
	if (eg_policy_parse(text, len, "policy.yaml", &pol, &err) < 0) {
		FUZZ_CHECK(strncmp(err.msg, "policy.yaml", 11) == 0);
		return;
	}
	const char *mode = json_string_value(json_object_get(pol, "default"));
	FUZZ_CHECK(mode && (strcmp(mode, "deny") == 0 || strcmp(mode, "report") == 0));
	check_rules(json_object_get(pol, "deny"));
	check_rules(json_object_get(pol, "allow"));
	const char *name;
	json_t *in;
	json_object_foreach(json_object_get(pol, "intents"), name, in)
	{
		json_int_t ttl = json_integer_value(json_object_get(in, "ttl"));
		FUZZ_CHECK(ttl >= 1 && ttl <= EG_TTL_MAX);
		FUZZ_CHECK(strlen(name) >= 1 && strlen(name) <= EG_NAME_MAX);
		check_rules(json_object_get(in, "rules"));
	}
	json_decref(pol);
}

static void fuzz_rules(const char *text, size_t len)
{
	json_t *j = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	if (!j)
		return;
	ab_error err = {0};
	json_t *rules = eg_rules_normalize(j, "sandbox", "params.network", &err);
	if (rules)
		check_rules(rules);
	else
		FUZZ_CHECK(strncmp(err.msg, "params.network", 14) == 0);
	json_decref(rules);
	json_decref(j);
}

static void fuzz_host(const char *text, size_t len)
{
	char in[600], out[EG_HOST_MAX + 1];
	if (len >= sizeof(in) || memchr(text, '\0', len))
		return;
	memcpy(in, text, len);
	in[len] = '\0';
	ab_error err = {0};
	if (eg_host_normalize(in, out, &err) < 0)
		return;
	FUZZ_CHECK(eg_host_match(out, out));
	char again[EG_HOST_MAX + 1];
	FUZZ_CHECK(eg_host_normalize(out, again, &err) == 0 && strcmp(again, out) == 0);
	if (eg_host_is_ip(out)) {
		FUZZ_CHECK(!eg_host_match("*", out));
		FUZZ_CHECK(strchr(out, '*') == NULL);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	const char *text = (const char *)data + 1;
	size_t len = size - 1;
	switch (data[0] % 3) {
	case 0:
		fuzz_file(text, len);
		break;
	case 1:
		fuzz_rules(text, len);
		break;
	default:
		fuzz_host(text, len);
	}
	return 0;
}
