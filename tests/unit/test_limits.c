/* test_limits.c - sandbox resource limits (src/lib/limits.c): defaults,
 * the JSON form clients send, and the CLI's human sizes and durations. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "unit.h"

static bool limits_equal(const ab_limits *a, const ab_limits *b)
{
	return a->timeout_s == b->timeout_s && a->memory_mb == b->memory_mb && a->pids == b->pids &&
	       a->cpu == b->cpu && a->disk_mb == b->disk_mb && a->output_bytes == b->output_bytes;
}

/* Parses text (a JSON object) over the defaults. */
static int from_text(const char *text, ab_limits *l, ab_error *err)
{
	json_error_t jerr;
	json_t *j = json_loads(text, JSON_DECODE_ANY, &jerr);
	if (!j)
		fprintf(stderr, "bad test JSON %s: %s\n", text, jerr.text);
	CHECK(j != NULL);
	ab_limits_default(l);
	int r = ab_limits_from_json(l, j, err);
	json_decref(j);
	return r;
}

static void accepts(const char *text, ab_limits *l)
{
	ab_error err = {0};
	int r = from_text(text, l, &err);
	if (r != 0)
		fprintf(stderr, "%s: %d %s\n", text, r, err.msg);
	CHECK_EQ_INT(r, 0);
}

/* Refused with code, a message containing needle, and the limits left
 * exactly at their defaults. */
static void refuses(const char *text, int code, const char *needle)
{
	ab_error err = {0};
	ab_limits l, def;
	ab_limits_default(&def);
	int r = from_text(text, &l, &err);
	if (r != code)
		fprintf(stderr, "%s: %d (%s), expected %d\n", text, r, err.msg, code);
	CHECK_EQ_INT(r, code);
	CHECK_CONTAINS(err.msg, needle);
	CHECK(limits_equal(&l, &def));
}

AB_TEST(limits_default_values)
{
	ab_limits l;
	memset(&l, 0xa5, sizeof(l));
	ab_limits_default(&l);
	CHECK(l.timeout_s == 30.0);
	CHECK_EQ_INT(l.memory_mb, 1024);
	CHECK_EQ_INT(l.pids, 128);
	CHECK(l.cpu == 1.0);
	CHECK_EQ_INT(l.disk_mb, 512);
	CHECK_EQ_INT(l.output_bytes, 1048576);
}

AB_TEST(limits_from_json_each_key_in_range)
{
	ab_limits l;
	accepts("{\"timeout\": 2.5}", &l);
	CHECK(l.timeout_s == 2.5);
	accepts("{\"timeout\": 86400}", &l);
	CHECK(l.timeout_s == 86400.0);
	accepts("{\"memory_mb\": 32}", &l);
	CHECK_EQ_INT(l.memory_mb, 32);
	accepts("{\"memory_mb\": 1048576}", &l);
	CHECK_EQ_INT(l.memory_mb, 1048576);
	accepts("{\"pids\": 4}", &l);
	CHECK_EQ_INT(l.pids, 4);
	accepts("{\"pids\": 2048}", &l);
	CHECK_EQ_INT(l.pids, 2048);
	accepts("{\"cpu\": 0}", &l);
	CHECK(l.cpu == 0.0);
	accepts("{\"cpu\": 0.01}", &l);
	CHECK(l.cpu == 0.01);
	accepts("{\"cpu\": 2}", &l);
	CHECK(l.cpu == 2.0);
	accepts("{\"cpu\": 1024}", &l);
	CHECK(l.cpu == 1024.0);
	accepts("{\"disk_mb\": 1}", &l);
	CHECK_EQ_INT(l.disk_mb, 1);
	accepts("{\"output_bytes\": 0}", &l);
	CHECK_EQ_INT(l.output_bytes, 0);
	accepts("{\"output_bytes\": 4194304}", &l);
	CHECK_EQ_INT(l.output_bytes, 4194304);
}

AB_TEST(limits_from_json_only_present_keys_change)
{
	ab_limits l;
	accepts("{\"pids\": 100, \"cpu\": 0.5}", &l);
	CHECK_EQ_INT(l.pids, 100);
	CHECK(l.cpu == 0.5);
	CHECK(l.timeout_s == 30.0);
	CHECK_EQ_INT(l.memory_mb, 1024);
	CHECK_EQ_INT(l.disk_mb, 512);
	CHECK_EQ_INT(l.output_bytes, 1048576);
	accepts("{}", &l);
	ab_limits def;
	ab_limits_default(&def);
	CHECK(limits_equal(&l, &def));
}

AB_TEST(limits_from_json_out_of_range)
{
	refuses("{\"timeout\": 0}", -ERANGE, "limits.timeout");
	refuses("{\"timeout\": -1}", -ERANGE, "limits.timeout");
	refuses("{\"timeout\": 86400.5}", -ERANGE, "limits.timeout");
	refuses("{\"memory_mb\": 31}", -ERANGE, "limits.memory_mb");
	refuses("{\"memory_mb\": 1048577}", -ERANGE, "limits.memory_mb");
	refuses("{\"memory_mb\": -1}", -ERANGE, "limits.memory_mb");
	refuses("{\"pids\": 3}", -ERANGE, "limits.pids");
	refuses("{\"pids\": 2049}", -ERANGE, "limits.pids");
	refuses("{\"pids\": 4294967552}", -ERANGE, "limits.pids");
	refuses("{\"cpu\": -0.5}", -ERANGE, "limits.cpu");
	refuses("{\"cpu\": 1024.5}", -ERANGE, "limits.cpu");
	refuses("{\"cpu\": 0.005}", -ERANGE, "limits.cpu");
	refuses("{\"disk_mb\": 0}", -ERANGE, "limits.disk_mb");
	refuses("{\"disk_mb\": 1048577}", -ERANGE, "limits.disk_mb");
	refuses("{\"output_bytes\": 4194305}", -ERANGE, "limits.output_bytes");
	refuses("{\"output_bytes\": -1}", -ERANGE, "limits.output_bytes");
}

/* The descriptors of all of a sandbox's processes together (pids x
 * RLIMIT_NOFILE) stay within AB_SANDBOX_FILES_MAX for every pids limit. */
AB_TEST(limits_nofile_bounds_the_sandbox)
{
	ab_limits l;
	ab_limits_default(&l);
	CHECK_EQ_INT(ab_limits_nofile(&l, false), 1024);
	CHECK_EQ_INT((uint64_t)l.pids * ab_limits_nofile(&l, false), AB_SANDBOX_FILES_MAX);
	for (uint32_t pids = 4; pids <= 2048; pids++) {
		l.pids = pids;
		unsigned n = ab_limits_nofile(&l, false);
		CHECK(n >= 64 && n <= 1024);
		CHECK((uint64_t)pids * n <= AB_SANDBOX_FILES_MAX);
		CHECK((uint64_t)pids * ab_limits_nofile(&l, true) <= AB_SANDBOX_FILES_MAX);
	}
	l.pids = 2048;
	CHECK_EQ_INT(ab_limits_nofile(&l, false), 64);
	l.pids = 4;
	CHECK_EQ_INT(ab_limits_nofile(&l, false), 1024);
	CHECK_EQ_INT(ab_limits_nofile(&l, true), 64);
}

AB_TEST(limits_from_json_wrong_type)
{
	refuses("{\"timeout\": \"30\"}", -EINVAL, "limits.timeout");
	refuses("{\"timeout\": true}", -EINVAL, "limits.timeout");
	refuses("{\"timeout\": null}", -EINVAL, "limits.timeout");
	refuses("{\"memory_mb\": 512.5}", -EINVAL, "limits.memory_mb");
	refuses("{\"memory_mb\": \"512\"}", -EINVAL, "limits.memory_mb");
	refuses("{\"pids\": [1]}", -EINVAL, "limits.pids");
	refuses("{\"cpu\": \"1\"}", -EINVAL, "limits.cpu");
	refuses("{\"cpu\": {}}", -EINVAL, "limits.cpu");
	refuses("{\"disk_mb\": false}", -EINVAL, "limits.disk_mb");
	refuses("{\"output_bytes\": 1.0}", -EINVAL, "limits.output_bytes");
}

AB_TEST(limits_from_json_unknown_key)
{
	refuses("{\"memory\": 512}", -EINVAL, "\"memory\"");
	refuses("{\"timeout\": 5, \"bogus_key\": 1}", -EINVAL, "bogus_key");
}

AB_TEST(limits_from_json_not_an_object)
{
	refuses("[1]", -EINVAL, "limits");
	refuses("42", -EINVAL, "limits");
	refuses("\"x\"", -EINVAL, "limits");
}

/* A bad key after good ones must not leave a half-applied result. */
AB_TEST(limits_from_json_failure_leaves_limits_unchanged)
{
	ab_limits l;
	ab_limits_default(&l);
	l.pids = 77;
	l.timeout_s = 9;
	ab_limits before = l;
	json_t *j = json_pack("{s:i, s:f, s:i}", "pids", 100, "timeout", 5.0, "memory_mb", 1);
	ab_error err = {0};
	CHECK_EQ_INT(ab_limits_from_json(&l, j, &err), -ERANGE);
	CHECK_CONTAINS(err.msg, "limits.memory_mb");
	CHECK(limits_equal(&l, &before));
	json_decref(j);
}

AB_TEST(limits_from_json_null_is_noop)
{
	ab_limits l, def;
	ab_limits_default(&l);
	ab_limits_default(&def);
	ab_error err = {0};
	CHECK_EQ_INT(ab_limits_from_json(&l, NULL, &err), 0);
	CHECK(limits_equal(&l, &def));
	json_t *n = json_null();
	CHECK_EQ_INT(ab_limits_from_json(&l, n, &err), 0);
	CHECK(limits_equal(&l, &def));
	CHECK_EQ_INT(err.code, 0);
}

AB_TEST(limits_to_json_round_trip)
{
	ab_limits l;
	ab_limits_default(&l);
	l.timeout_s = 12.5;
	l.memory_mb = 2048;
	l.pids = 99;
	l.cpu = 0.25;
	l.disk_mb = 64;
	l.output_bytes = 4096;
	json_t *j = ab_limits_to_json(&l);
	CHECK(j != NULL);
	CHECK_EQ_INT(json_object_size(j), 6);
	CHECK(json_real_value(json_object_get(j, "timeout")) == 12.5);
	CHECK_EQ_INT(json_integer_value(json_object_get(j, "memory_mb")), 2048);
	CHECK_EQ_INT(json_integer_value(json_object_get(j, "pids")), 99);
	CHECK(json_real_value(json_object_get(j, "cpu")) == 0.25);
	CHECK_EQ_INT(json_integer_value(json_object_get(j, "disk_mb")), 64);
	CHECK_EQ_INT(json_integer_value(json_object_get(j, "output_bytes")), 4096);
	ab_limits back;
	ab_limits_default(&back);
	ab_error err = {0};
	CHECK_EQ_INT(ab_limits_from_json(&back, j, &err), 0);
	CHECK(limits_equal(&back, &l));
	json_decref(j);
	/* The defaults survive a trip through text too. */
	ab_limits_default(&l);
	j = ab_limits_to_json(&l);
	char *text = json_dumps(j, JSON_COMPACT);
	json_decref(j);
	j = json_loads(text, 0, NULL);
	free(text);
	ab_limits_default(&back);
	back.pids = 1;
	CHECK_EQ_INT(ab_limits_from_json(&back, j, &err), 0);
	CHECK(limits_equal(&back, &l));
	json_decref(j);
}

/* --------------------------------------------------------- CLI parsing */

static uint64_t size_ok(const char *s)
{
	uint64_t mb = 0xdead;
	ab_error err = {0};
	int r = ab_parse_size_mb(s, &mb, &err);
	if (r != 0)
		fprintf(stderr, "ab_parse_size_mb(\"%s\"): %d %s\n", s, r, err.msg);
	CHECK_EQ_INT(r, 0);
	return mb;
}

static void size_bad(const char *s, const char *needle)
{
	uint64_t mb = 0xdead;
	ab_error err = {0};
	int r = ab_parse_size_mb(s, &mb, &err);
	if (r >= 0)
		fprintf(stderr, "ab_parse_size_mb(\"%s\") accepted: %llu\n", s,
			(unsigned long long)mb);
	CHECK(r == -EINVAL || r == -ERANGE);
	CHECK_EQ_INT(mb, 0xdead);
	CHECK(err.msg[0] != '\0');
	if (needle)
		CHECK_CONTAINS(err.msg, needle);
}

AB_TEST(parse_size_mb_accepts)
{
	CHECK_EQ_INT(size_ok("512"), 512);
	CHECK_EQ_INT(size_ok("256M"), 256);
	CHECK_EQ_INT(size_ok("256MB"), 256);
	CHECK_EQ_INT(size_ok("256m"), 256);
	CHECK_EQ_INT(size_ok("2G"), 2048);
	CHECK_EQ_INT(size_ok("2g"), 2048);
	CHECK_EQ_INT(size_ok("2GB"), 2048);
	CHECK_EQ_INT(size_ok("1.5G"), 1536);
	CHECK_EQ_INT(size_ok("1"), 1);
	CHECK_EQ_INT(size_ok("1024G"), 1048576);
}

AB_TEST(parse_size_mb_refuses)
{
	size_bad(NULL, "empty");
	size_bad("", "empty");
	size_bad("0", "\"0\"");
	size_bad("-1", "\"-1\"");
	size_bad("12x", "unknown unit");
	size_bad("1T", "unknown unit");
	size_bad("nan", NULL);
	size_bad("inf", NULL);
	size_bad("G", NULL);
	size_bad("0.5", NULL);
	size_bad("1025G", NULL);
	size_bad("1e400", NULL);
}

static double secs_ok(const char *s)
{
	double v = -1;
	ab_error err = {0};
	int r = ab_parse_seconds(s, &v, &err);
	if (r != 0)
		fprintf(stderr, "ab_parse_seconds(\"%s\"): %d %s\n", s, r, err.msg);
	CHECK_EQ_INT(r, 0);
	return v;
}

static void secs_bad(const char *s, const char *needle)
{
	double v = -1;
	ab_error err = {0};
	int r = ab_parse_seconds(s, &v, &err);
	if (r >= 0)
		fprintf(stderr, "ab_parse_seconds(\"%s\") accepted: %g\n", s, v);
	CHECK(r == -EINVAL || r == -ERANGE);
	CHECK(v == -1);
	CHECK(err.msg[0] != '\0');
	if (needle)
		CHECK_CONTAINS(err.msg, needle);
}

AB_TEST(parse_seconds_accepts)
{
	CHECK(secs_ok("30") == 30.0);
	CHECK(secs_ok("30s") == 30.0);
	CHECK(secs_ok("1.5") == 1.5);
	CHECK(secs_ok("250ms") == 0.25);
	CHECK(secs_ok("2m") == 120.0);
	CHECK(secs_ok("1h") == 3600.0);
	CHECK(secs_ok("24h") == 86400.0);
}

AB_TEST(parse_seconds_refuses)
{
	secs_bad(NULL, "empty");
	secs_bad("", "empty");
	secs_bad("0", "\"0\"");
	secs_bad("-3", "\"-3\"");
	secs_bad("5d", "unknown unit");
	secs_bad("1e400", NULL);
	secs_bad("25h", "24h");
	secs_bad("nan", NULL);
	secs_bad("inf", NULL);
	secs_bad("s", NULL);
	secs_bad("1441m", "24h");
}
