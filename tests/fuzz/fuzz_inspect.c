/* fuzz_inspect.c - the answers of time travel's inspections
 * (src/daemon/engine/history_check.c): they come from a throwaway copy of a
 * snapshot inside the sandbox, running an expression a client chose, so
 * their bytes are hostile.
 *
 * Input: two JSON texts separated by the first 0xff byte (a byte no JSON
 * text holds). Invariants:
 *  - history_checked_answer gives NULL or {value, type, truncated, error}
 *    with value and type strings (or both null with an error whose name has
 *    at most 256 bytes and whose value at most 4096);
 *  - history_checked_vars gives NULL or an object of at most 1000 entries,
 *    each {type, repr, digest} strings;
 *  - history_diff_vars of two checked listings names only variables of
 *    either, each at most once, and every name that differs. */
#include "internal.h"
#include "engine/history_check.h"
#include "fuzz.h"

static void check_answer(json_t *f)
{
	json_t *r = history_checked_answer(f);
	if (!r)
		return;
	json_t *e = json_object_get(r, "error");
	FUZZ_CHECK(json_is_boolean(json_object_get(r, "truncated")));
	if (json_is_null(e)) {
		FUZZ_CHECK(json_is_string(json_object_get(r, "value")));
		FUZZ_CHECK(json_is_string(json_object_get(r, "type")));
	} else {
		FUZZ_CHECK(json_is_object(e));
		FUZZ_CHECK(json_is_null(json_object_get(r, "value")));
		json_t *n = json_object_get(e, "name"), *v = json_object_get(e, "value");
		FUZZ_CHECK(json_is_string(n) && json_string_length(n) <= 256);
		FUZZ_CHECK(json_is_string(v) && json_string_length(v) <= 4096);
	}
	json_decref(r);
}

static void check_vars(json_t *v)
{
	FUZZ_CHECK(json_is_object(v) && json_object_size(v) <= 1000);
	const char *k;
	json_t *x;
	json_object_foreach(v, k, x)
	{
		FUZZ_CHECK(json_is_string(json_object_get(x, "type")));
		FUZZ_CHECK(json_is_string(json_object_get(x, "repr")));
		FUZZ_CHECK(json_is_string(json_object_get(x, "digest")));
	}
}

static size_t count_named(json_t *list, const char *name)
{
	size_t n = 0, i;
	json_t *e;
	json_array_foreach(list, i, e)
	{
		n += strcmp(json_string_value(json_object_get(e, "name")) ?: "", name) == 0;
	}
	return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *cut = memchr(data, 0xff, size);
	size_t la = cut ? (size_t)(cut - data) : size;
	json_t *a = json_loadb((const char *)data, la, 0, NULL);
	json_t *b = cut ? json_loadb((const char *)cut + 1, size - la - 1, 0, NULL) : NULL;
	if (a)
		check_answer(a);
	json_t *va = a ? history_checked_vars(a) : NULL;
	json_t *vb = b ? history_checked_vars(b) : NULL;
	if (va)
		check_vars(va);
	if (vb)
		check_vars(vb);
	if (va && vb) {
		json_t *d = history_diff_vars(va, vb);
		json_t *add = json_object_get(d, "added"), *rem = json_object_get(d, "removed"),
		       *chg = json_object_get(d, "changed");
		FUZZ_CHECK(json_is_array(add) && json_is_array(rem) && json_is_array(chg));
		const char *k;
		json_t *x;
		json_object_foreach(vb, k, x)
		{
			json_t *old = json_object_get(va, k);
			size_t n = count_named(add, k) + count_named(chg, k) + count_named(rem, k);
			bool differs = !old ||
				       !json_equal(json_object_get(old, "digest"),
						   json_object_get(x, "digest")) ||
				       !json_equal(json_object_get(old, "type"), json_object_get(x, "type"));
			FUZZ_CHECK(n == (differs ? 1u : 0u));
		}
		json_object_foreach(va, k, x)
		{
			if (!json_object_get(vb, k))
				FUZZ_CHECK(count_named(rem, k) == 1 && count_named(add, k) == 0);
		}
		json_decref(d);
	}
	json_decref(va);
	json_decref(vb);
	json_decref(a);
	json_decref(b);
	return 0;
}
