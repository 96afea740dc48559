/* test_context.c - the helpers detectors ask about the bytes around a match. */
#include "dlp_internal.h"
#include "unit.h"

static dlp_hit hit_of(const char *s)
{
	dlp_hit h = {.data = s, .len = strlen(s)};
	return h;
}

AB_TEST(dlp_word_before_and_after_ignore_ascii_case)
{
	const char *s = "My API_KEY is: abc123 (個人番号)";
	dlp_hit h = hit_of(s);
	static const char *const words[] = {"api_key", NULL};
	static const char *const jp[] = {"個人番号", NULL};
	size_t at = (size_t)(strstr(s, "abc123") - s);
	CHECK(dlp_word_before(&h, at, 16, words));
	CHECK(!dlp_word_before(&h, at, 4, words));
	CHECK(dlp_word_after(&h, at + 6, 16, jp));
	CHECK(!dlp_word_after(&h, at + 6, 8, jp));
}

AB_TEST(dlp_whole_token_needs_a_boundary)
{
	dlp_hit h = hit_of("xAKIA1y AKIA2 ");
	CHECK(!dlp_whole_token(&h, 1, 6, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyz"));
	CHECK(dlp_whole_token(&h, 8, 13, "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcdefghijklmnopqrstuvwxyz"));
}

AB_TEST(dlp_entropy_and_placeholders)
{
	CHECK(dlp_entropy("aaaaaaaa", 8) < 0.01);
	CHECK(dlp_entropy("abcdefgh", 8) > 2.99);
	CHECK(dlp_placeholder("AKIAIOSFODNN7EXAMPLE", 20));
	CHECK(dlp_placeholder("sk-xxxxxxxxxxxxxxxxxxxx", 23));
	CHECK(dlp_placeholder("your_api_key_here", 17));
	CHECK(dlp_placeholder("aaaaaaaaaaaaaaaaaaab", 20));
	CHECK(!dlp_placeholder("Zq8fK2mLx9Pw4TnR7vYb", 20));
}

AB_TEST(dlp_base64_decode_both_alphabets)
{
	unsigned char out[32];
	CHECK_EQ_INT(dlp_base64_decode("dXNlcjpwYXNz", 12, out, sizeof(out)), 9);
	CHECK(memcmp(out, "user:pass", 9) == 0);
	CHECK_EQ_INT(dlp_base64_decode("-_-_", 4, out, sizeof(out)), 3);
	CHECK_EQ_INT(dlp_base64_decode("ab$c", 4, out, sizeof(out)), -1);
	CHECK_EQ_INT(dlp_base64_decode("dXNlcjpwYXNz", 12, out, 4), -1);
}
