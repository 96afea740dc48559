/* fuzz_limits.c - limit parsing (src/lib/limits.c), from JSON params (the
 * daemon's sandbox.create/run "limits") and from CLI strings (--memory,
 * --timeout, --idle-timeout).
 *
 * Input: byte 0 picks the parser, the rest is its text. Invariants:
 *  - ab_limits_from_json either succeeds with every field inside its
 *    documented bounds, or fails with a message and leaves the limits
 *    untouched (no half-applied update);
 *  - accepted limits survive ab_limits_to_json -> text -> ab_limits_from_json
 *    unchanged;
 *  - ab_parse_size_mb accepts only 1..1048576 MB and ab_parse_seconds only
 *    finite durations in (0, 24 h]. */
#include <math.h>

#include "internal.h"
#include "fuzz.h"

static bool limits_equal(const ab_limits *a, const ab_limits *b)
{
	return a->timeout_s == b->timeout_s && a->memory_mb == b->memory_mb && a->pids == b->pids &&
	       a->cpu == b->cpu && a->disk_mb == b->disk_mb && a->output_bytes == b->output_bytes;
}

static void check_bounds(const ab_limits *l)
{
	FUZZ_CHECK(isfinite(l->timeout_s) && l->timeout_s > 0 && l->timeout_s <= 86400);
	FUZZ_CHECK(l->memory_mb >= 32 && l->memory_mb <= 1024 * 1024);
	FUZZ_CHECK(l->pids >= 4 && l->pids <= 65536);
	FUZZ_CHECK(isfinite(l->cpu) && (l->cpu == 0 || (l->cpu >= 0.01 && l->cpu <= 1024)));
	FUZZ_CHECK(l->disk_mb >= 1 && l->disk_mb <= 1024 * 1024);
	FUZZ_CHECK(l->output_bytes <= (1ull << 30));
	uint64_t inodes = ab_disk_inodes(l->disk_mb);
	FUZZ_CHECK(inodes >= 4096 && inodes <= 1048576);
}

static void fuzz_json(const char *text, size_t len)
{
	json_t *j = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
	if (!j)
		return;
	ab_limits l, before;
	ab_limits_default(&l);
	check_bounds(&l);
	before = l;
	ab_error err = {0};
	int r = ab_limits_from_json(&l, j, &err);
	json_decref(j);
	if (r < 0) {
		FUZZ_CHECK(err.code == r && err.msg[0]);
		FUZZ_CHECK(limits_equal(&l, &before));
		return;
	}
	check_bounds(&l);
	json_t *o = ab_limits_to_json(&l);
	FUZZ_CHECK(o);
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	FUZZ_CHECK(s);
	json_t *back = json_loads(s, 0, NULL);
	free(s);
	FUZZ_CHECK(back);
	ab_limits l2;
	ab_limits_default(&l2);
	FUZZ_CHECK(ab_limits_from_json(&l2, back, &err) == 0);
	json_decref(back);
	FUZZ_CHECK(limits_equal(&l, &l2));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	char *text = malloc(size);
	FUZZ_CHECK(text);
	memcpy(text, data + 1, size - 1);
	text[size - 1] = '\0';
	ab_error err = {0};
	switch (data[0] % 3) {
	case 0:
		fuzz_json(text, size - 1);
		break;
	case 1: {
		uint64_t mb = 0;
		int r = ab_parse_size_mb(text, &mb, &err);
		if (r == 0)
			FUZZ_CHECK(mb >= 1 && mb <= 1024 * 1024);
		else
			FUZZ_CHECK(err.code == r && err.msg[0]);
		break;
	}
	default: {
		double s = 0;
		int r = ab_parse_seconds(text, &s, &err);
		if (r == 0)
			FUZZ_CHECK(isfinite(s) && s > 0 && s <= 86400);
		else
			FUZZ_CHECK(err.code == r && err.msg[0]);
		break;
	}
	}
	free(text);
	return 0;
}
