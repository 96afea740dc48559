/* test_routes.c - the learned-routes store (src/lib/routes.c): load, learn,
 * save and reload; the keys and files it must refuse; forgetting; the merge
 * of two processes saving one file (the union, hit counts added up, what one
 * forgot stays forgotten, what another removed stays removed); the caps;
 * staleness; and the module list as the router's extra_heavy. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "internal.h"
#include "unit.h"

#define DIGEST_A "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define DIGEST_B "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
/* Kinds of cause (ab_routes_causes): the only reasons the store takes. */
#define R_MOD "module missing in nano"
#define R_CELL "refused by the nano jail"
#define R_MEM "nano's memory cap"

struct store {
	char dir[64];
	char path[128];
};

static void store_init(struct store *s)
{
	snprintf(s->dir, sizeof(s->dir), "/tmp/ab-routes-XXXXXX");
	CHECK(mkdtemp(s->dir) != NULL);
	snprintf(s->path, sizeof(s->path), "%s/routes.json", s->dir);
}

/* Removes the directory and what the store leaves in it. */
static void store_cleanup(struct store *s)
{
	DIR *d = opendir(s->dir);
	CHECK(d != NULL);
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		char p[512];
		snprintf(p, sizeof(p), "%s/%s", s->dir, e->d_name);
		CHECK_EQ_INT(unlink(p), 0);
	}
	closedir(d);
	CHECK_EQ_INT(rmdir(s->dir), 0);
}

static void write_text(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");
	CHECK(f != NULL);
	CHECK_EQ_INT(fputs(text, f) >= 0, 1);
	CHECK_EQ_INT(fclose(f), 0);
}

static ab_routes *load_ok(const char *path)
{
	ab_routes *r = NULL;
	ab_error err = {0};
	int rc = ab_routes_load(path, &r, &err);
	if (rc < 0)
		fprintf(stderr, "load: %s\n", err.msg);
	CHECK_EQ_INT(rc, 0);
	CHECK(r != NULL);
	return r;
}

static void learn_ok(ab_routes *r, const char *kind, const char *key, const char *reason)
{
	ab_error err = {0};
	int rc = ab_routes_learn(r, kind, key, reason, &err);
	if (rc < 0)
		fprintf(stderr, "learn %s %s: %s\n", kind, key, err.msg);
	CHECK_EQ_INT(rc, 0);
}

static void save_ok(ab_routes *r, const char *path)
{
	ab_error err = {0};
	int rc = ab_routes_save(r, path, &err);
	if (rc < 0)
		fprintf(stderr, "save: %s\n", err.msg);
	CHECK_EQ_INT(rc, 0);
}

static size_t count_modules(const ab_routes *r)
{
	size_t n = 0;
	for (const char *const *m = ab_routes_modules(r); *m; m++)
		n++;
	return n;
}

static bool has_module(const ab_routes *r, const char *name)
{
	for (const char *const *m = ab_routes_modules(r); *m; m++)
		if (strcmp(*m, name) == 0)
			return true;
	return false;
}

/* The "hits" of one entry as ab_routes_to_json shows it, -1 if absent. */
static long long hits_of(const ab_routes *r, const char *member, const char *key)
{
	json_t *doc AB_AUTOJSON = ab_routes_to_json(r);
	CHECK(doc != NULL);
	json_t *e = json_object_get(json_object_get(doc, member), key);
	return e ? (long long)json_integer_value(json_object_get(e, "hits")) : -1;
}

/* The store as the file holds it, read by the test itself. */
static json_t *file_json(const char *path)
{
	json_error_t je;
	json_t *j = json_load_file(path, 0, &je);
	if (!j)
		fprintf(stderr, "%s: %s\n", path, je.text);
	CHECK(j != NULL);
	return j;
}

AB_TEST(routes_load_missing_file_is_empty)
{
	struct store s;
	store_init(&s);
	ab_routes *r = load_ok(s.path);
	CHECK_EQ_INT(count_modules(r), 0);
	CHECK(ab_routes_cell(r, DIGEST_A) == NULL);
	json_t *doc AB_AUTOJSON = ab_routes_to_json(r);
	CHECK_STR(json_string_value(json_object_get(doc, "format")), "agentbox-routes/2");
	CHECK_EQ_INT(json_object_size(json_object_get(doc, "modules")), 0);
	CHECK_EQ_INT(json_object_size(json_object_get(doc, "cells")), 0);
	/* Nothing is written by a load. */
	CHECK_EQ_INT(access(s.path, F_OK), -1);
	CHECK(!ab_routes_stale(r, s.path));
	ab_routes_free(r);
	ab_routes_free(NULL);
	CHECK(ab_routes_modules(NULL)[0] == NULL);
	store_cleanup(&s);
}

AB_TEST(routes_learn_save_load_round_trip)
{
	struct store s;
	store_init(&s);
	ab_routes *r = load_ok(s.path);
	learn_ok(r, "module", "scipy", R_MOD);
	learn_ok(r, "module", "fancylib", R_MOD);
	learn_ok(r, "cell", DIGEST_A, R_MEM);
	CHECK_EQ_INT(count_modules(r), 2);
	CHECK_STR(ab_routes_cell(r, DIGEST_A), R_MEM);
	save_ok(r, s.path);
	ab_routes_free(r);

	struct stat st;
	CHECK_EQ_INT(stat(s.path, &st), 0);
	CHECK_EQ_INT(st.st_mode & 07777, 0600);

	/* The file is the documented format. */
	json_t *doc AB_AUTOJSON = file_json(s.path);
	CHECK_STR(json_string_value(json_object_get(doc, "format")), "agentbox-routes/2");
	json_t *e = json_object_get(json_object_get(doc, "modules"), "scipy");
	CHECK_STR(json_string_value(json_object_get(e, "reason")), R_MOD);
	CHECK_EQ_INT(json_integer_value(json_object_get(e, "hits")), 1);
	const char *learned = json_string_value(json_object_get(e, "learned"));
	CHECK(learned && strlen(learned) == 20 && learned[10] == 'T' && learned[19] == 'Z');
	CHECK_STR(json_string_value(json_object_get(e, "last")), learned);
	CHECK(json_object_get(json_object_get(doc, "cells"), DIGEST_A) != NULL);

	r = load_ok(s.path);
	const char *const *m = ab_routes_modules(r);
	CHECK_STR(m[0], "fancylib"); /* sorted */
	CHECK_STR(m[1], "scipy");
	CHECK(m[2] == NULL);
	CHECK_STR(ab_routes_cell(r, DIGEST_A), R_MEM);
	CHECK(ab_routes_cell(r, DIGEST_B) == NULL);
	CHECK(ab_routes_cell(r, "scipy") == NULL);
	ab_routes_free(r);
	store_cleanup(&s);
}

AB_TEST(routes_refresh_increments_hits)
{
	struct store s;
	store_init(&s);
	ab_routes *r = load_ok(s.path);
	learn_ok(r, "module", "scipy", R_MOD);
	learn_ok(r, "module", "scipy", R_MOD);
	CHECK_EQ_INT(hits_of(r, "modules", "scipy"), 2);
	CHECK_EQ_INT(count_modules(r), 1);
	save_ok(r, s.path);
	ab_routes_free(r);
	r = load_ok(s.path);
	learn_ok(r, "module", "scipy", R_MOD);
	save_ok(r, s.path);
	ab_routes_free(r);
	r = load_ok(s.path);
	CHECK_EQ_INT(hits_of(r, "modules", "scipy"), 3);
	json_t *doc AB_AUTOJSON = ab_routes_to_json(r);
	CHECK_STR(json_string_value(json_object_get(
		      json_object_get(json_object_get(doc, "modules"), "scipy"), "reason")),
		  R_MOD);
	ab_routes_free(r);
	store_cleanup(&s);
}

AB_TEST(routes_bad_keys_rejected)
{
	struct store s;
	store_init(&s);
	ab_routes *r = load_ok(s.path);
	char long_name[130];
	memset(long_name, 'a', 129);
	long_name[129] = '\0';
	static const char *const bad_modules[] = {
	    "", "a b", "../x", "a/b", ".a", "a.", "a..b", "1abc", "a-b", "sc\xc3\xafpy", "a\n",
	};
	ab_error err = {0};
	for (size_t i = 0; i < sizeof(bad_modules) / sizeof(bad_modules[0]); i++) {
		err = (ab_error){0};
		if (ab_routes_learn(r, "module", bad_modules[i], "x", &err) != -EINVAL)
			fprintf(stderr, "accepted \"%s\"\n", bad_modules[i]);
		CHECK_EQ_INT(err.code, -EINVAL);
		CHECK_CONTAINS(err.msg, "bad module name");
	}
	CHECK_EQ_INT(ab_routes_learn(r, "module", long_name, "x", &err), -EINVAL);
	CHECK_EQ_INT(ab_routes_learn(r, "module", NULL, "x", &err), -EINVAL);
	long_name[128] = '\0'; /* 128 bytes is the limit, inclusive */
	learn_ok(r, "module", long_name, R_MOD);
	learn_ok(r, "module", "xml.dom", R_MOD);
	learn_ok(r, "module", "_private2", R_MOD);

	char digest[66];
	static const char *const bad_digests[] = {
	    "",
	    "scipy",
	    DIGEST_A "0",
	    "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
	    "g123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
	};
	for (size_t i = 0; i < sizeof(bad_digests) / sizeof(bad_digests[0]); i++) {
		err = (ab_error){0};
		CHECK_EQ_INT(ab_routes_learn(r, "cell", bad_digests[i], "x", &err), -EINVAL);
		CHECK_CONTAINS(err.msg, "bad cell digest");
	}
	snprintf(digest, sizeof(digest), "%.63s", DIGEST_A);
	CHECK_EQ_INT(ab_routes_learn(r, "cell", digest, "x", &err), -EINVAL);

	err = (ab_error){0};
	CHECK_EQ_INT(ab_routes_learn(r, "file", "scipy", "x", &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "unknown kind \"file\"");
	CHECK_EQ_INT(ab_routes_learn(r, NULL, "scipy", "x", &err), -EINVAL);
	/* Nothing was added by the refusals. */
	CHECK_EQ_INT(count_modules(r), 3);
	ab_routes_free(r);
	store_cleanup(&s);
}

/* A reason is a kind of cause, never a run's own text: the store is shared
 * by every client of the daemon, and error text would tell one client what
 * another ran. */
AB_TEST(routes_reason_is_a_kind_of_cause)
{
	struct store s;
	store_init(&s);
	ab_routes *r = load_ok(s.path);
	const char *const *c = ab_routes_causes();
	CHECK(c[0] != NULL);
	for (; *c; c++)
		learn_ok(r, "cell", DIGEST_A, *c);
	static const char *const bad[] = {
	    "PermissionError: [Errno 1] Operation not permitted: '/home/alice/secret'",
	    "ModuleNotFoundError: No module named 'scipy'",
	    "",
	    "module missing in nano ",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ab_error err = {0};
		CHECK_EQ_INT(ab_routes_learn(r, "cell", DIGEST_B, bad[i], &err), -EINVAL);
		CHECK_CONTAINS(err.msg, "not a kind of cause");
	}
	ab_error err = {0};
	CHECK_EQ_INT(ab_routes_learn(r, "module", "scipy", NULL, &err), -EINVAL);
	CHECK(ab_routes_cell(r, DIGEST_B) == NULL);
	CHECK_EQ_INT(count_modules(r), 0);
	ab_routes_free(r);
	/* A file of the current format with free text is refused, not used. */
	write_text(s.path, "{\"format\": \"agentbox-routes/2\", \"cells\": {\"" DIGEST_A
			   "\": {\"reason\": \"PermissionError: /home/alice\", \"learned\": "
			   "\"2026-11-26T06:00:00Z\", \"last\": \"2026-11-26T06:00:00Z\", "
			   "\"hits\": 1}}}");
	err = (ab_error){0};
	r = NULL;
	CHECK_EQ_INT(ab_routes_load(s.path, &r, &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "is not a kind of cause");
	store_cleanup(&s);
}

/* agentbox-routes/1 quoted error text and keyed cells by the code alone: on
 * load its cells are dropped and its modules keep only the kind of cause;
 * a save writes the current format, without the text. */
AB_TEST(routes_legacy_file_is_migrated_without_its_text)
{
	struct store s;
	store_init(&s);
	write_text(s.path,
		   "{\"format\": \"agentbox-routes/1\", \"modules\": {\"scipy\": {\"reason\": "
		   "\"ModuleNotFoundError: No module named 'scipy' (alice)\", \"learned\": "
		   "\"2026-11-26T06:00:00Z\", \"last\": \"2026-11-26T06:00:00Z\", \"hits\": 3}}, "
		   "\"cells\": {\"" DIGEST_A "\": {\"reason\": \"PermissionError: /home/alice\", "
		   "\"learned\": \"2026-11-26T06:00:00Z\", \"last\": \"2026-11-26T06:00:00Z\", "
		   "\"hits\": 1}}}");
	ab_routes *r = load_ok(s.path);
	CHECK(ab_routes_migrated(r));
	CHECK(has_module(r, "scipy"));
	CHECK_EQ_INT(hits_of(r, "modules", "scipy"), 3);
	CHECK(ab_routes_cell(r, DIGEST_A) == NULL);
	save_ok(r, s.path);
	CHECK(!ab_routes_migrated(r));
	ab_routes_free(r);
	char buf[4096];
	FILE *f = fopen(s.path, "re");
	CHECK(f != NULL);
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	CHECK(strstr(buf, "alice") == NULL);
	CHECK(strstr(buf, "Error") == NULL);
	CHECK_CONTAINS(buf, "\"agentbox-routes/2\"");
	CHECK_CONTAINS(buf, "\"reason\": \"" R_MOD "\"");
	r = load_ok(s.path);
	CHECK(!ab_routes_migrated(r));
	CHECK_EQ_INT(hits_of(r, "modules", "scipy"), 3);
	ab_routes_free(r);
	store_cleanup(&s);
}

static const struct corrupt_case {
	const char *text;
	const char *msg; /* a piece of the error message */
} corrupt_cases[] = {
    {"", "not valid JSON"},
    {"{\"format\": \"agentbox-routes/2\",", "not valid JSON"},
    {"[]", "not a JSON object"},
    {"{}", "no \"format\""},
    {"{\"format\": 1}", "no \"format\""},
    {"{\"format\": \"agentbox-routes/3\"}", "format \"agentbox-routes/3\" is not"},
    {"{\"format\": \"agentbox-audit/1\", \"modules\": {}}", "format \"agentbox-audit/1\""},
    {"{\"format\": \"agentbox-routes/2\", \"modules\": []}", "\"modules\" is not an object"},
    {"{\"format\": \"agentbox-routes/2\", \"cells\": \"x\"}", "\"cells\" is not an object"},
    {"{\"format\": \"agentbox-routes/2\", \"modules\": {\"scipy\": 3}}",
     "modules.scipy: not an object"},
    {"{\"format\": \"agentbox-routes/2\", \"modules\": {\"scipy\": {\"reason\": 3, "
     "\"learned\": \"2026-11-26T06:00:00Z\", \"last\": \"2026-11-26T06:00:00Z\", \"hits\": 1}}}",
     "modules.scipy: \"reason\" is not a string"},
    {"{\"format\": \"agentbox-routes/2\", \"modules\": {\"scipy\": {\"reason\": \"module missing "
     "in nano\", "
     "\"learned\": \"yesterday\", \"last\": \"2026-11-26T06:00:00Z\", \"hits\": 1}}}",
     "\"learned\" is not a UTC time"},
    {"{\"format\": \"agentbox-routes/2\", \"modules\": {\"scipy\": {\"reason\": \"module missing "
     "in nano\", "
     "\"learned\": \"2026-11-26T06:00:00Z\", \"hits\": 1}}}",
     "\"last\" is not a UTC time"},
    {"{\"format\": \"agentbox-routes/2\", \"modules\": {\"scipy\": {\"reason\": \"module missing "
     "in nano\", "
     "\"learned\": \"2026-11-26T06:00:00Z\", \"last\": \"2026-11-26T06:00:00Z\", \"hits\": 0}}}",
     "\"hits\" is not a positive integer"},
    {"{\"format\": \"agentbox-routes/2\", \"modules\": {\"scipy\": {\"reason\": \"module missing "
     "in nano\", "
     "\"learned\": \"2026-11-26T06:00:00Z\", \"last\": \"2026-11-26T06:00:00Z\", "
     "\"hits\": \"3\"}}}",
     "\"hits\" is not a positive integer"},
    {"{\"format\": \"agentbox-routes/2\", \"modules\": {\"../x\": {\"reason\": \"module missing in "
     "nano\", "
     "\"learned\": \"2026-11-26T06:00:00Z\", \"last\": \"2026-11-26T06:00:00Z\", \"hits\": 1}}}",
     "modules: bad module name \"../x\""},
    {"{\"format\": \"agentbox-routes/2\", \"cells\": {\"abc\": {\"reason\": \"module missing in "
     "nano\", "
     "\"learned\": \"2026-11-26T06:00:00Z\", \"last\": \"2026-11-26T06:00:00Z\", \"hits\": 1}}}",
     "cells: bad cell digest \"abc\""},
    {"{\"format\": \"agentbox-routes/2\", \"format\": \"agentbox-routes/2\"}", "duplicate"},
};

AB_TEST(routes_corrupt_files_rejected)
{
	struct store s;
	store_init(&s);
	size_t n = sizeof(corrupt_cases) / sizeof(corrupt_cases[0]);
	for (size_t i = 0; i < n; i++) {
		write_text(s.path, corrupt_cases[i].text);
		ab_routes *r = NULL;
		ab_error err = {0};
		int rc = ab_routes_load(s.path, &r, &err);
		if (rc >= 0 || !strstr(err.msg, corrupt_cases[i].msg))
			fprintf(stderr, "case %zu: %s\n  got %d \"%s\"\n", i, corrupt_cases[i].text,
				rc, err.msg);
		CHECK(rc < 0);
		CHECK(r == NULL);
		CHECK_CONTAINS(err.msg, corrupt_cases[i].msg);
		CHECK_CONTAINS(err.msg, s.path); /* names the file */
	}
	/* Unknown members are tolerated (a later minor version may add some). */
	write_text(s.path, "{\"format\": \"agentbox-routes/2\", \"note\": 1, \"modules\": "
			   "{\"scipy\": {\"reason\": \"module missing in nano\", \"learned\": "
			   "\"2026-11-26T06:00:00Z\", "
			   "\"last\": \"2026-11-26T06:00:00.250Z\", \"hits\": 2, \"x\": null}}}");
	ab_routes *r = load_ok(s.path);
	CHECK(has_module(r, "scipy"));
	CHECK_EQ_INT(hits_of(r, "modules", "scipy"), 2);
	ab_routes_free(r);
	store_cleanup(&s);
}

AB_TEST(routes_huge_and_odd_files_rejected)
{
	struct store s;
	store_init(&s);
	/* Over 16 MiB: refused before it is read (a sparse file). */
	int fd = open(s.path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CHECK(fd >= 0);
	CHECK_EQ_INT(ftruncate(fd, (16 << 20) + 1), 0);
	close(fd);
	ab_routes *r = NULL;
	ab_error err = {0};
	CHECK_EQ_INT(ab_routes_load(s.path, &r, &err), -EFBIG);
	CHECK_CONTAINS(err.msg, "more than the limit of 16 MiB");
	CHECK(r == NULL);
	CHECK_EQ_INT(unlink(s.path), 0);

	/* More entries than the cap: not a store this code wrote. */
	json_t *doc AB_AUTOJSON =
	    json_pack("{s:s, s:{}}", "format", "agentbox-routes/2", "modules");
	json_t *mods = json_object_get(doc, "modules");
	for (int i = 0; i < 1025; i++) {
		char name[16];
		snprintf(name, sizeof(name), "m%04d", i);
		json_object_set_new(mods, name,
				    json_pack("{s:s, s:s, s:s, s:i}", "reason", R_MOD, "learned",
					      "2026-11-26T06:00:00Z", "last",
					      "2026-11-26T06:00:00Z", "hits", 1));
	}
	CHECK_EQ_INT(json_dump_file(doc, s.path, 0), 0);
	err = (ab_error){0};
	CHECK_EQ_INT(ab_routes_load(s.path, &r, &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "1025 modules, more than 1024");
	CHECK_EQ_INT(unlink(s.path), 0);

	/* A directory in its place. */
	CHECK_EQ_INT(mkdir(s.path, 0700), 0);
	err = (ab_error){0};
	CHECK(ab_routes_load(s.path, &r, &err) < 0);
	CHECK_CONTAINS(err.msg, "not a regular file");
	CHECK_EQ_INT(rmdir(s.path), 0);
	store_cleanup(&s);
}

AB_TEST(routes_forget_one_and_all)
{
	struct store s;
	store_init(&s);
	ab_routes *r = load_ok(s.path);
	learn_ok(r, "module", "scipy", R_MOD);
	learn_ok(r, "module", "numpy", R_MOD);
	learn_ok(r, "cell", DIGEST_A, R_CELL);
	learn_ok(r, "cell", DIGEST_B, R_CELL);
	CHECK_EQ_INT(ab_routes_forget(r, "module", "scipy"), 1);
	CHECK_EQ_INT(ab_routes_forget(r, "module", "scipy"), 0);
	CHECK_EQ_INT(ab_routes_forget(r, "cell", "numpy"), 0); /* wrong kind */
	CHECK_EQ_INT(ab_routes_forget(r, "file", "numpy"), -EINVAL);
	CHECK(!has_module(r, "scipy"));
	CHECK(has_module(r, "numpy"));
	CHECK_EQ_INT(ab_routes_forget(r, "cell", NULL), 2);
	CHECK(ab_routes_cell(r, DIGEST_A) == NULL);
	CHECK_EQ_INT(count_modules(r), 1);
	learn_ok(r, "cell", DIGEST_A, R_CELL);
	CHECK_EQ_INT(ab_routes_forget(r, NULL, NULL), 2);
	CHECK_EQ_INT(count_modules(r), 0);
	CHECK_EQ_INT(ab_routes_forget(r, NULL, NULL), 0);

	/* kind NULL: a key that is both a module name and a digest goes from both. */
	const char *both = "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789";
	learn_ok(r, "module", both, R_MOD);
	learn_ok(r, "cell", both, R_CELL);
	CHECK_EQ_INT(ab_routes_forget(r, NULL, both), 2);

	/* Forgetting persists through a save. */
	learn_ok(r, "module", "scipy", R_MOD);
	learn_ok(r, "module", "numpy", R_MOD);
	save_ok(r, s.path);
	CHECK_EQ_INT(ab_routes_forget(r, "module", "numpy"), 1);
	save_ok(r, s.path);
	ab_routes_free(r);
	r = load_ok(s.path);
	CHECK(has_module(r, "scipy"));
	CHECK(!has_module(r, "numpy"));
	ab_routes_free(r);
	store_cleanup(&s);
}

AB_TEST(routes_merge_concurrent_saves)
{
	struct store s;
	store_init(&s);
	ab_routes *a = load_ok(s.path), *b = load_ok(s.path);
	learn_ok(a, "module", "scipy", R_MOD);
	learn_ok(a, "cell", DIGEST_A, R_MEM);
	save_ok(a, s.path);
	learn_ok(b, "module", "numpy", R_MOD);
	save_ok(b, s.path); /* must not lose a's entries */
	CHECK(has_module(b, "scipy"));
	CHECK(has_module(b, "numpy"));
	CHECK_STR(ab_routes_cell(b, DIGEST_A), R_MEM);
	ab_routes *c = load_ok(s.path);
	CHECK_EQ_INT(count_modules(c), 2);
	ab_routes_free(c);

	/* Both refresh scipy (hits 1 on disk): the counts add up. */
	ab_routes_free(a);
	a = load_ok(s.path);
	learn_ok(a, "module", "scipy", R_MOD);
	learn_ok(b, "module", "scipy", R_MOD);
	learn_ok(b, "module", "scipy", R_MOD);
	save_ok(a, s.path);
	save_ok(b, s.path);
	CHECK_EQ_INT(hits_of(b, "modules", "scipy"), 4);
	c = load_ok(s.path);
	CHECK_EQ_INT(hits_of(c, "modules", "scipy"), 4);
	CHECK_EQ_INT(hits_of(c, "modules", "numpy"), 1);
	ab_routes_free(c);
	/* a saves again without change: nothing is counted twice. */
	save_ok(a, s.path);
	CHECK_EQ_INT(hits_of(a, "modules", "scipy"), 4);
	ab_routes_free(a);
	ab_routes_free(b);
	store_cleanup(&s);
}

/* A store on path holding the modules xlib and ylib. */
static void seed_xlib_ylib(const char *path)
{
	ab_routes *w = load_ok(path);
	learn_ok(w, "module", "xlib", R_MOD);
	learn_ok(w, "module", "ylib", R_MOD);
	save_ok(w, path);
	ab_routes_free(w);
}

AB_TEST(routes_forgotten_stays_forgotten_across_merge)
{
	struct store s;
	store_init(&s);
	seed_xlib_ylib(s.path);

	ab_routes *a = load_ok(s.path), *b = load_ok(s.path);
	CHECK_EQ_INT(ab_routes_forget(a, "module", "xlib"), 1);
	learn_ok(b, "module", "zlib2", R_MOD);
	save_ok(b, s.path); /* the file still has xlib */
	save_ok(a, s.path); /* xlib stays forgotten, zlib2 comes in */
	CHECK(!has_module(a, "xlib"));
	CHECK(has_module(a, "ylib"));
	CHECK(has_module(a, "zlib2"));
	ab_routes *c = load_ok(s.path);
	CHECK_EQ_INT(count_modules(c), 2);
	CHECK(!has_module(c, "xlib"));
	ab_routes_free(c);

	/* Forget everything, while another process learns something new: the
	 * new entry survives, the old ones do not. */
	ab_routes_free(b);
	b = load_ok(s.path);
	CHECK_EQ_INT(ab_routes_forget(a, NULL, NULL), 2);
	learn_ok(b, "module", "wlib", R_MOD);
	save_ok(b, s.path);
	save_ok(a, s.path);
	c = load_ok(s.path);
	CHECK_EQ_INT(count_modules(c), 1);
	CHECK(has_module(c, "wlib"));
	ab_routes_free(c);

	/* Forgotten, then learned again before the save: learned, hits 1. */
	ab_routes_free(a);
	a = load_ok(s.path);
	CHECK_EQ_INT(ab_routes_forget(a, "module", "wlib"), 1);
	learn_ok(a, "module", "wlib", R_MOD);
	save_ok(a, s.path);
	CHECK_EQ_INT(hits_of(a, "modules", "wlib"), 1);
	ab_routes_free(a);
	ab_routes_free(b);
	store_cleanup(&s);
}

AB_TEST(routes_removed_elsewhere_stays_removed)
{
	struct store s;
	store_init(&s);
	seed_xlib_ylib(s.path);

	/* The daemon (d) holds xlib and ylib; `routes clear` (c) empties the
	 * file; the daemon, not reloaded yet, learns zlib2 and refreshes ylib. */
	ab_routes *d = load_ok(s.path), *c = load_ok(s.path);
	CHECK_EQ_INT(ab_routes_forget(c, NULL, NULL), 2);
	save_ok(c, s.path);
	CHECK(ab_routes_stale(d, s.path));
	learn_ok(d, "module", "zlib2", R_MOD);
	learn_ok(d, "module", "ylib", R_MOD);
	save_ok(d, s.path);
	CHECK(!has_module(d, "xlib")); /* not resurrected */
	CHECK(has_module(d, "ylib"));  /* learned again since the clear */
	CHECK(has_module(d, "zlib2"));
	CHECK_EQ_INT(hits_of(d, "modules", "ylib"), 1);
	ab_routes_free(d);
	ab_routes_free(c);
	store_cleanup(&s);
}

/* A file of n entries of one kind, whose "last" times grow with the index
 * except for the entry oldest_at, which is the oldest of all. */
static void write_full_store(const char *path, const char *member, int n, int oldest_at)
{
	json_t *doc AB_AUTOJSON = json_pack("{s:s, s:{}}", "format", "agentbox-routes/2", member);
	json_t *tab = json_object_get(doc, member);
	for (int i = 0; i < n; i++) {
		char key[80], last[32];
		if (strcmp(member, "modules") == 0)
			snprintf(key, sizeof(key), "m%04d", i);
		else
			snprintf(key, sizeof(key), "%064x", i);
		int minute = i == oldest_at ? 0 : 1 + i / 60;
		snprintf(last, sizeof(last), "2000-01-2%dT%02d:%02d:%02dZ", 1 + minute / 1440,
			 minute / 60 % 24, minute % 60, i % 60);
		json_object_set_new(tab, key,
				    json_pack("{s:s, s:s, s:s, s:i}", "reason", R_MOD, "learned",
					      "2000-01-20T00:00:00Z", "last", last, "hits", 1));
	}
	CHECK_EQ_INT(json_dump_file(doc, path, 0), 0);
}

AB_TEST(routes_caps_evict_the_oldest)
{
	struct store s;
	store_init(&s);
	write_full_store(s.path, "modules", 1024, 500);
	ab_routes *r = load_ok(s.path);
	CHECK_EQ_INT(count_modules(r), 1024);
	CHECK(has_module(r, "m0500"));
	learn_ok(r, "module", "newmod", R_MOD);
	CHECK_EQ_INT(count_modules(r), 1024);
	CHECK(!has_module(r, "m0500"));
	CHECK(has_module(r, "newmod"));
	/* Refreshing an entry of a full store evicts nothing. */
	learn_ok(r, "module", "m0000", R_MOD);
	CHECK_EQ_INT(count_modules(r), 1024);
	CHECK(has_module(r, "m0001"));
	ab_routes_free(r);

	write_full_store(s.path, "cells", 4096, 7);
	r = load_ok(s.path);
	char oldest[80];
	snprintf(oldest, sizeof(oldest), "%064x", 7);
	CHECK(ab_routes_cell(r, oldest) != NULL);
	learn_ok(r, "cell", DIGEST_B, R_CELL);
	CHECK(ab_routes_cell(r, oldest) == NULL);
	CHECK(ab_routes_cell(r, DIGEST_B) != NULL);
	CHECK_EQ_INT(
	    hits_of(r, "cells", "0000000000000000000000000000000000000000000000000000000000000008"),
	    1);
	ab_routes_free(r);

	/* The cap also holds for the union of two stores at save time. */
	CHECK_EQ_INT(unlink(s.path), 0);
	ab_routes *a = load_ok(s.path);
	write_full_store(s.path, "modules", 1000, -1);
	for (int i = 0; i < 100; i++) {
		char name[16];
		snprintf(name, sizeof(name), "new%03d", i);
		learn_ok(a, "module", name, R_MOD);
	}
	save_ok(a, s.path);
	CHECK_EQ_INT(count_modules(a), 1024);
	CHECK(!has_module(a, "m0075")); /* the 76 oldest went */
	CHECK(has_module(a, "m0076"));
	CHECK(has_module(a, "new099"));
	ab_routes_free(a);
	store_cleanup(&s);
}

AB_TEST(routes_stale_after_another_save)
{
	struct store s;
	store_init(&s);
	ab_routes *a = load_ok(s.path), *b = load_ok(s.path);
	CHECK(!ab_routes_stale(a, s.path));
	learn_ok(b, "module", "scipy", R_MOD);
	save_ok(b, s.path);
	CHECK(ab_routes_stale(a, s.path)); /* created */
	CHECK(!ab_routes_stale(b, s.path));
	ab_routes_free(a);
	a = load_ok(s.path);
	CHECK(!ab_routes_stale(a, s.path));
	learn_ok(b, "module", "numpy", R_MOD);
	save_ok(b, s.path);
	CHECK(ab_routes_stale(a, s.path)); /* replaced */
	save_ok(a, s.path);
	CHECK(!ab_routes_stale(a, s.path)); /* its own save is not a change */
	CHECK(has_module(a, "numpy"));
	CHECK_EQ_INT(unlink(s.path), 0);
	CHECK(ab_routes_stale(a, s.path)); /* removed */
	ab_routes_free(a);
	ab_routes_free(b);
	store_cleanup(&s);
}

AB_TEST(routes_save_failures_leave_file_and_store)
{
	struct store s;
	store_init(&s);
	ab_routes *r = load_ok(s.path);
	learn_ok(r, "module", "scipy", R_MOD);
	ab_error err = {0};
	CHECK(ab_routes_save(r, "/nonexistent-dir-ab/routes.json", &err) < 0);
	CHECK_CONTAINS(err.msg, "/nonexistent-dir-ab/routes.json.lock");
	CHECK(has_module(r, "scipy"));

	/* A file that became corrupt is not overwritten. */
	write_text(s.path, "{not json");
	err = (ab_error){0};
	CHECK_EQ_INT(ab_routes_save(r, s.path, &err), -EINVAL);
	CHECK_CONTAINS(err.msg, "save learned routes: routes file");
	CHECK_CONTAINS(err.msg, "not valid JSON");
	char buf[32] = {0};
	FILE *f = fopen(s.path, "re");
	CHECK(f != NULL);
	CHECK(fgets(buf, sizeof(buf), f) != NULL);
	fclose(f);
	CHECK_STR(buf, "{not json");

	/* Saves leave no temporary file behind: only the file and its lock. */
	CHECK_EQ_INT(unlink(s.path), 0);
	save_ok(r, s.path);
	save_ok(r, s.path);
	DIR *d = opendir(s.dir);
	CHECK(d != NULL);
	int entries = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, "routes.json") == 0 ||
		    strcmp(e->d_name, "routes.json.lock") == 0)
			entries++;
		else
			CHECK(strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0);
	closedir(d);
	CHECK_EQ_INT(entries, 2);
	ab_routes_free(r);
	store_cleanup(&s);
}

AB_TEST(routes_modules_are_the_routers_extra_heavy)
{
	/* fractions is a nano module: without learning it, it routes nano. */
	bool nano = false;
	for (const char *const *m = ab_router_nano_modules(); *m; m++)
		nano |= strcmp(*m, "fractions") == 0;
	CHECK(nano);
	const char *code = "from fractions import Fraction\nprint(Fraction(1, 3))\n";
	ab_route route;
	ab_router_route(code, strlen(code), NULL, &route);
	CHECK_EQ_INT(route.tier, AB_ROUTE_NANO);

	struct store s;
	store_init(&s);
	ab_routes *r = load_ok(s.path);
	ab_router_route(code, strlen(code), ab_routes_modules(r), &route);
	CHECK_EQ_INT(route.tier, AB_ROUTE_NANO);
	learn_ok(r, "module", "fractions", R_MOD);
	save_ok(r, s.path);
	ab_routes_free(r);
	r = load_ok(s.path);
	ab_router_route(code, strlen(code), ab_routes_modules(r), &route);
	CHECK_EQ_INT(route.tier, AB_ROUTE_HEAVY);
	CHECK_CONTAINS(route.reason, "imports fractions (learned: needed heavy before)");
	code = "import json\n";
	ab_router_route(code, strlen(code), ab_routes_modules(r), &route);
	CHECK_EQ_INT(route.tier, AB_ROUTE_NANO);
	ab_routes_free(r);
	store_cleanup(&s);
}
