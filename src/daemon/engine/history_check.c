/* history_check.c - what the daemon believes of an inspection's answer
 * (docs/time-travel.md). The answer comes from a throwaway copy of a
 * snapshot, inside the sandbox, running an expression the client chose:
 * everything in it is a claim, checked for types and sizes here before it
 * reaches a client. Kept apart from history.c so that the fuzzer
 * (tests/fuzz/fuzz_inspect.c) reaches it without the engine. */
#include <string.h>

#include "history_check.h"

#define VALUE_MAX ((64u << 10) + 8) /* the executor cuts at 64 KiB (+ "...") */

json_t *history_checked_answer(json_t *f)
{
	json_t *e = json_object_get(f, "error");
	if (json_is_object(e)) {
		const char *name = json_string_value(json_object_get(e, "name"));
		const char *value = json_string_value(json_object_get(e, "value"));
		if (name && strlen(name) != json_string_length(json_object_get(e, "name")))
			name = NULL; /* a NUL inside: not a name */
		if (value && strlen(value) != json_string_length(json_object_get(e, "value")))
			value = NULL;
		return json_pack("{s:n, s:n, s:b, s:{s:s%, s:s%}}", "value", "type", "truncated", 0,
				 "error", "name", name ? name : "Error",
				 name ? strnlen(name, 256) : 5, "value", value ? value : "",
				 value ? strnlen(value, 4096) : 0);
	}
	json_t *v = json_object_get(f, "value"), *t = json_object_get(f, "type");
	if (!json_is_string(v) || json_string_length(v) > VALUE_MAX || !json_is_string(t) ||
	    json_string_length(t) > 300)
		return NULL;
	return json_pack("{s:O, s:O, s:b, s:n}", "value", v, "type", t, "truncated",
			 json_is_true(json_object_get(f, "truncated")), "error");
}

/* The variables a copy listed, checked: an object of at most 1000 names,
 * each {type, repr, digest} strings of bounded size. NULL if malformed. */
json_t *history_checked_vars(json_t *f)
{
	json_t *vars = json_object_get(f, "vars");
	if (!json_is_object(vars) || json_object_size(vars) > 1000)
		return NULL;
	const char *name;
	json_t *v;
	json_object_foreach(vars, name, v)
	{
		json_t *t = json_object_get(v, "type"), *r = json_object_get(v, "repr"),
		       *d = json_object_get(v, "digest");
		if (strlen(name) > 256 || !json_is_string(t) || json_string_length(t) > 300 ||
		    !json_is_string(r) || json_string_length(r) > 1024 || !json_is_string(d) ||
		    json_string_length(d) > 32)
			return NULL;
	}
	return json_incref(vars);
}

json_t *history_diff_vars(json_t *a, json_t *b)
{
	json_t *added = json_array(), *removed = json_array(), *changed = json_array();
	const char *name;
	json_t *v;
	json_object_foreach(b, name, v)
	{
		json_t *old = json_object_get(a, name);
		if (!old)
			json_array_append_new(added, json_pack("{s:s, s:O, s:O}", "name", name, "type",
							       json_object_get(v, "type"), "repr",
							       json_object_get(v, "repr")));
		else if (!json_equal(json_object_get(old, "digest"), json_object_get(v, "digest")) ||
			 !json_equal(json_object_get(old, "type"), json_object_get(v, "type")))
			json_array_append_new(
			    changed, json_pack("{s:s, s:{s:O, s:O}, s:{s:O, s:O}}", "name", name,
					       "before", "type", json_object_get(old, "type"), "repr",
					       json_object_get(old, "repr"), "after", "type",
					       json_object_get(v, "type"), "repr",
					       json_object_get(v, "repr")));
	}
	json_object_foreach(a, name, v)
	{
		if (!json_object_get(b, name))
			json_array_append_new(removed, json_pack("{s:s, s:O, s:O}", "name", name, "type",
								 json_object_get(v, "type"), "repr",
								 json_object_get(v, "repr")));
	}
	return json_pack("{s:o, s:o, s:o}", "added", added, "removed", removed, "changed", changed);
}

