/* test_inspect.c - the sidecar's inspector: the DLP engine's findings, the
 * policy's action for each, rewriting in place, values split across the
 * pieces of a decoded body, and what is kept for the record. */
#include "inspect.h"
#include "unit.h"

/* Fakes with valid formats: never real credentials. */
#define AWS_KEY "AKIAQ3EGRJ7WXZ5TLN4K"
#define EMAIL "hanako.yamada@corp-mail.jp"
#define SALT "00112233445566778899aabbccddeeff"

static void init(void)
{
	char err[256];
	if (eg_inspect_init(SALT, NULL, err, sizeof(err)) < 0) {
		fprintf(stderr, "eg_inspect_init: %s\n", err);
		exit(1);
	}
}

static eg_policy *policy(const char *text, int64_t now)
{
	json_error_t je;
	json_t *j = json_loads(text, 0, &je);
	CHECK(j);
	eg_policy *p = NULL;
	ab_error err = {0};
	int rc = eg_policy_parse(j, now, &p, &err);
	json_decref(j);
	if (rc < 0)
		fprintf(stderr, "policy: %s\n", err.msg);
	CHECK(rc == 0);
	return p;
}

static enum eg_verdict stream_in_pieces(const char *s, size_t piece)
{
	eg_inspector *in = eg_inspect_begin(NULL, 0);
	CHECK(in);
	size_t len = strlen(s);
	enum eg_verdict v = EG_PASS;
	for (size_t off = 0; off < len && v == EG_PASS; off += piece)
		v = eg_inspect_stream(in, s + off, len - off < piece ? len - off : piece);
	if (v == EG_PASS)
		v = eg_inspect_stream_end(in);
	if (v == EG_BLOCK)
		CHECK_STR(eg_inspect_kinds(in)[0], "aws_access_key_id");
	eg_inspect_end(in);
	return v;
}

AB_TEST(inspect_blocks_a_secret_by_default_however_the_body_is_cut)
{
	init();
	const char *s = "{\"cfg\": {\"aws_access_key_id\": \"" AWS_KEY "\"}}";
	for (size_t piece = 1; piece <= strlen(s); piece += piece < 8 ? 1 : 5)
		CHECK_EQ_INT(stream_in_pieces(s, piece), EG_BLOCK);
	CHECK_EQ_INT(stream_in_pieces("{\"cfg\": \"nothing to see\"}", 3), EG_PASS);
}

AB_TEST(inspect_redacts_personal_data_in_place_by_default)
{
	init();
	eg_inspector *in = eg_inspect_begin(NULL, 0);
	char url[] = "http://api.example/v1/users?contact=" EMAIL "&page=2";
	CHECK_EQ_INT(eg_inspect(in, "url", url, strlen(url)), EG_REDACT);
	CHECK(strstr(url, "hanako") == NULL);
	CHECK(strstr(url, "http://api.example/v1/users?contact=") == url);
	CHECK(strstr(url, "&page=2") != NULL);
	CHECK(strstr(url, "XXXXXXXX") != NULL);
	CHECK_EQ_INT(eg_inspect_verdict(in), EG_REDACT);
	CHECK_STR(eg_inspect_kinds(in)[0], "email");
	/* A body may hold NUL bytes; the verdict stays redact until a block. */
	char body[96] = {0};
	memcpy(body + 7, EMAIL, strlen(EMAIL));
	CHECK_EQ_INT(eg_inspect(in, "body", body, sizeof(body)), EG_REDACT);
	CHECK(memchr(body, 'h', sizeof(body)) == NULL);
	char clean[] = "Accept: */*";
	CHECK_EQ_INT(eg_inspect(in, "header", clean, strlen(clean)), EG_PASS);
	char key[] = "X-Api-Key: " AWS_KEY;
	CHECK_EQ_INT(eg_inspect(in, "header", key, strlen(key)), EG_BLOCK);
	CHECK_EQ_INT(eg_inspect(in, "header", clean, strlen(clean)), EG_BLOCK);
	CHECK_EQ_INT(eg_inspect_verdict(in), EG_BLOCK);
	eg_inspect_end(in);
}

AB_TEST(inspect_follows_the_policy_per_kind_and_the_live_intent)
{
	init();
	eg_policy *p = policy("{\"dlp\": {\"email\": \"log\", \"aws_access_key_id\": \"off\"},"
			      " \"intent\": \"crm\", \"intent_expires_ms\": 1000,"
			      " \"intent_dlp\": {\"aws_access_key_id\": \"redact\"}}",
			      0);
	char body[] = "to=" EMAIL " key=" AWS_KEY;
	char copy[sizeof(body)];
	memcpy(copy, body, sizeof(body));
	/* While the intent lives, its action for the key wins. */
	eg_inspector *in = eg_inspect_begin(p, 10);
	CHECK_EQ_INT(eg_inspect(in, "body", copy, strlen(copy)), EG_REDACT);
	CHECK(strstr(copy, EMAIL) != NULL); /* logged, left */
	CHECK(strstr(copy, "AKIA") == NULL);
	json_t *f = eg_inspect_findings(in);
	CHECK_EQ_INT(json_array_size(f), 2);
	json_decref(f);
	eg_inspect_end(in);
	/* Once it expired, the sandbox's: email logged, the key ignored. */
	memcpy(copy, body, sizeof(body));
	in = eg_inspect_begin(p, 5000);
	CHECK_EQ_INT(eg_inspect(in, "body", copy, strlen(copy)), EG_PASS);
	CHECK(memcmp(copy, body, sizeof(body)) == 0);
	CHECK_STR(eg_inspect_kinds(in)[0], "email");
	CHECK(eg_inspect_kinds(in)[1] == NULL);
	f = eg_inspect_findings(in);
	CHECK_EQ_INT(json_array_size(f), 1);
	CHECK_STR(json_string_value(json_object_get(json_array_get(f, 0), "action")), "log");
	json_decref(f);
	eg_inspect_end(in);
	eg_policy_unref(p);
}

AB_TEST(inspect_records_salted_hashes_never_values)
{
	init();
	char a[] = "key=" AWS_KEY, b[] = "other=" AWS_KEY;
	eg_inspector *x = eg_inspect_begin(NULL, 0), *y = eg_inspect_begin(NULL, 0);
	CHECK_EQ_INT(eg_inspect(x, "body", a, strlen(a)), EG_BLOCK);
	CHECK_EQ_INT(eg_inspect(y, "url", b, strlen(b)), EG_BLOCK);
	json_t *fx = eg_inspect_findings(x), *fy = eg_inspect_findings(y);
	char *sx = json_dumps(fx, 0);
	CHECK(strstr(sx, "AKIA") == NULL);
	const char *hx = json_string_value(json_object_get(json_array_get(fx, 0), "hash"));
	const char *hy = json_string_value(json_object_get(json_array_get(fy, 0), "hash"));
	CHECK(hx && strncmp(hx, "hmac-sha256:", 12) == 0 && strlen(hx) == 12 + 16);
	CHECK_STR(hx, hy); /* the same value, recognisable across records */
	CHECK_STR(json_string_value(json_object_get(json_array_get(fy, 0), "part")), "url");
	free(sx);
	json_decref(fx);
	json_decref(fy);
	eg_inspect_end(x);
	eg_inspect_end(y);
}

AB_TEST(inspect_refuses_bad_dlp_policies)
{
	json_t *j = json_loads("{\"dlp\": {\"no_such_detector\": \"block\"}}", 0, NULL);
	eg_policy *p = NULL;
	ab_error err = {0};
	CHECK(eg_policy_parse(j, 0, &p, &err) < 0);
	CHECK_CONTAINS(err.msg, "unknown detector no_such_detector");
	json_decref(j);
	j = json_loads("{\"intent_dlp\": {\"email\": \"shred\"}}", 0, NULL);
	err = (ab_error){0};
	CHECK(eg_policy_parse(j, 0, &p, &err) < 0);
	CHECK_CONTAINS(err.msg, "intent_dlp.email: expected off, log, redact or block");
	json_decref(j);
}
