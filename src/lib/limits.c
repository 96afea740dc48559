/* limits.c - sandbox resource limits: defaults, JSON and CLI parsing.
 * Every bound is checked here so that the jail code can trust a
 * validated ab_limits. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define MAX_TIMEOUT_S (24.0 * 3600)
#define MAX_MEMORY_MB (1024ull * 1024)
#define MIN_MEMORY_MB 32ull
/* pids x per-process descriptors stays within AB_SANDBOX_FILES_MAX: every
 * process keeps at least NOFILE_MIN descriptors at the highest pids. */
#define NOFILE_MAX 1024u
#define NOFILE_MIN 64u
#define MAX_PIDS (AB_SANDBOX_FILES_MAX / NOFILE_MIN)
#define MIN_PIDS 4u
#define MAX_DISK_MB (1024ull * 1024)
/* Both streams at this cap fit in one 16 MiB message to the client with
 * room to spare (docs/limits.md). */
#define MAX_OUTPUT_BYTES (4ull << 20)

void ab_limits_default(ab_limits *l)
{
	l->timeout_s = 30;
	l->memory_mb = 1024;
	l->pids = 128;
	l->cpu = 1.0;
	l->disk_mb = 512;
	l->output_bytes = 1u << 20;
}

static int get_number(const json_t *v, const char *key, double *out, ab_error *err)
{
	if (!json_is_number(v))
		return ab_error_set(err, -EINVAL, "limits.%s: expected a number", key);
	double d = json_number_value(v);
	if (!isfinite(d))
		return ab_error_set(err, -EINVAL, "limits.%s: not a finite number", key);
	*out = d;
	return 0;
}

static int get_uint(const json_t *v, const char *key, uint64_t lo, uint64_t hi, uint64_t *out,
		    ab_error *err)
{
	if (!json_is_integer(v))
		return ab_error_set(err, -EINVAL, "limits.%s: expected an integer", key);
	json_int_t i = json_integer_value(v);
	if (i < 0 || (uint64_t)i < lo || (uint64_t)i > hi)
		return ab_error_set(err, -ERANGE, "limits.%s: %lld is outside %llu..%llu", key,
				    (long long)i, (unsigned long long)lo, (unsigned long long)hi);
	*out = (uint64_t)i;
	return 0;
}

int ab_limits_from_json(ab_limits *l, const json_t *obj, ab_error *err)
{
	if (!obj || json_is_null(obj))
		return 0;
	if (!json_is_object(obj))
		return ab_error_set(err, -EINVAL, "limits: expected an object");
	ab_limits n = *l;
	const char *key;
	json_t *v;
	json_object_foreach((json_t *)obj, key, v)
	{
		int r = 0;
		double d;
		uint64_t u;
		if (strcmp(key, "timeout") == 0) {
			r = get_number(v, key, &d, err);
			if (r == 0 && (d <= 0 || d > MAX_TIMEOUT_S))
				r = ab_error_set(err, -ERANGE,
						 "limits.timeout: %g s is outside (0, %g]", d,
						 MAX_TIMEOUT_S);
			n.timeout_s = d;
		} else if (strcmp(key, "memory_mb") == 0) {
			r = get_uint(v, key, MIN_MEMORY_MB, MAX_MEMORY_MB, &u, err);
			n.memory_mb = u;
		} else if (strcmp(key, "pids") == 0) {
			r = get_uint(v, key, MIN_PIDS, MAX_PIDS, &u, err);
			n.pids = (uint32_t)u;
		} else if (strcmp(key, "cpu") == 0) {
			r = get_number(v, key, &d, err);
			if (r == 0 && (d < 0 || d > 1024))
				r = ab_error_set(
				    err, -ERANGE,
				    "limits.cpu: %g is outside 0..1024 (0 = unlimited)", d);
			if (r == 0 && d > 0 && d < 0.01)
				r = ab_error_set(err, -ERANGE,
						 "limits.cpu: %g is below the minimum of 0.01", d);
			n.cpu = d;
		} else if (strcmp(key, "disk_mb") == 0) {
			r = get_uint(v, key, 1, MAX_DISK_MB, &u, err);
			n.disk_mb = u;
		} else if (strcmp(key, "output_bytes") == 0) {
			r = get_uint(v, key, 0, MAX_OUTPUT_BYTES, &u, err);
			n.output_bytes = u;
		} else {
			r = ab_error_set(err, -EINVAL,
					 "limits: unknown key \"%s\" (known: timeout, memory_mb, "
					 "pids, cpu, disk_mb, output_bytes)",
					 key);
		}
		if (r < 0)
			return r;
	}
	*l = n;
	return 0;
}

unsigned ab_limits_nofile(const ab_limits *l, bool nano)
{
	/* Nano's executor needs a handful of descriptors and cannot fork;
	 * its fixed cap is below the budget for any pids limit. */
	if (nano)
		return NOFILE_MIN;
	uint32_t pids = l->pids ? l->pids : 1;
	unsigned n = AB_SANDBOX_FILES_MAX / pids;
	return n > NOFILE_MAX ? NOFILE_MAX : n < NOFILE_MIN ? NOFILE_MIN : n;
}

uint64_t ab_disk_inodes(uint64_t disk_mb)
{
	uint64_t n = disk_mb * 1024;
	return n < 4096 ? 4096 : n > 1048576 ? 1048576 : n;
}

json_t *ab_limits_to_json(const ab_limits *l)
{
	return json_pack("{s:f, s:I, s:I, s:f, s:I, s:I}", "timeout", l->timeout_s, "memory_mb",
			 (json_int_t)l->memory_mb, "pids", (json_int_t)l->pids, "cpu", l->cpu,
			 "disk_mb", (json_int_t)l->disk_mb, "output_bytes",
			 (json_int_t)l->output_bytes);
}

int ab_parse_size_mb(const char *s, uint64_t *out_mb, ab_error *err)
{
	if (!s || !*s)
		return ab_error_set(err, -EINVAL, "empty size");
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || !isfinite(v) || v <= 0)
		return ab_error_set(err, -EINVAL, "\"%s\" is not a positive size", s);
	double mult = 1;
	if (*end) {
		if (strcmp(end, "M") == 0 || strcmp(end, "MB") == 0 || strcmp(end, "m") == 0)
			mult = 1;
		else if (strcmp(end, "G") == 0 || strcmp(end, "GB") == 0 || strcmp(end, "g") == 0)
			mult = 1024;
		else
			return ab_error_set(err, -EINVAL,
					    "\"%s\": unknown unit \"%s\" (use M or G)", s, end);
	}
	double mb = v * mult;
	if (mb < 1 || mb > (double)MAX_MEMORY_MB)
		return ab_error_set(err, -ERANGE, "\"%s\" is outside 1M..1024G", s);
	*out_mb = (uint64_t)mb;
	return 0;
}

int ab_parse_seconds(const char *s, double *out, ab_error *err)
{
	if (!s || !*s)
		return ab_error_set(err, -EINVAL, "empty duration");
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno || end == s || !isfinite(v) || v <= 0)
		return ab_error_set(err, -EINVAL, "\"%s\" is not a positive duration", s);
	if (strcmp(end, "") == 0 || strcmp(end, "s") == 0)
		;
	else if (strcmp(end, "ms") == 0)
		v /= 1000;
	else if (strcmp(end, "m") == 0)
		v *= 60;
	else if (strcmp(end, "h") == 0)
		v *= 3600;
	else
		return ab_error_set(err, -EINVAL, "\"%s\": unknown unit \"%s\" (use ms, s, m or h)",
				    s, end);
	if (v > MAX_TIMEOUT_S)
		return ab_error_set(err, -ERANGE, "\"%s\" is longer than 24h", s);
	*out = v;
	return 0;
}
