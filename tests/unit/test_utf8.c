/* test_utf8.c - sandbox output to JSON strings (src/lib/utf8.c): valid
 * UTF-8 passes through, every invalid byte becomes U+FFFD, and a sequence
 * split between two reads is carried over and reassembled exactly. */
#include <stdio.h>
#include <string.h>

#include "internal.h"
#include "unit.h"
#include "utf8.h"

#define FFFD "\xef\xbf\xbd"

/* Converts len bytes in one final call and checks the exact result. */
static void conv_exact(const char *in, size_t len, const char *want, size_t wantlen)
{
	char carry[4];
	size_t nc = 0;
	json_t *s = ab__utf8_chunk(in, len, carry, &nc, true);
	CHECK(s != NULL);
	CHECK(json_is_string(s));
	CHECK_EQ_INT(nc, 0);
	size_t got = json_string_length(s);
	if (got != wantlen || memcmp(json_string_value(s), want, wantlen) != 0) {
		fprintf(stderr, "got %zu bytes:", got);
		for (size_t i = 0; i < got; i++)
			fprintf(stderr, " %02x", (unsigned char)json_string_value(s)[i]);
		fprintf(stderr, "\n");
	}
	CHECK_EQ_INT(got, wantlen);
	CHECK(memcmp(json_string_value(s), want, wantlen) == 0);
	json_decref(s);
}

static void conv(const char *in, const char *want)
{
	conv_exact(in, strlen(in), want, strlen(want));
}

AB_TEST(utf8_ascii_passthrough)
{
	conv("hello, world\n\t\x01\x7f", "hello, world\n\t\x01\x7f");
	conv("", "");
	char all[128];
	for (int i = 0; i < 127; i++)
		all[i] = (char)(i + 1);
	all[127] = '\0';
	conv(all, all);
}

AB_TEST(utf8_valid_multibyte)
{
	conv("\xc2\x80", "\xc2\x80");			/* U+0080, smallest 2-byte */
	conv("\xc3\xa9t\xc3\xa9", "\xc3\xa9t\xc3\xa9"); /* été */
	conv("\xdf\xbf", "\xdf\xbf");			/* U+07FF */
	conv("\xe0\xa0\x80", "\xe0\xa0\x80");		/* U+0800, smallest 3-byte */
	conv("\xe2\x82\xac", "\xe2\x82\xac");		/* € */
	conv("\xed\x9f\xbf", "\xed\x9f\xbf");		/* U+D7FF, below surrogates */
	conv("\xee\x80\x80", "\xee\x80\x80");		/* U+E000, above surrogates */
	conv("\xef\xbf\xbd", "\xef\xbf\xbd");		/* U+FFFD itself */
	conv("\xf0\x90\x80\x80", "\xf0\x90\x80\x80");	/* U+10000 */
	conv("\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80");	/* 😀 */
	conv("\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf");	/* U+10FFFF, the last */
}

AB_TEST(utf8_invalid_bytes_become_replacement)
{
	conv("\xff", FFFD);
	conv("a\xff"
	     "b",
	     "a" FFFD "b");
	conv("\xfe\xff", FFFD FFFD);
	/* A lone continuation byte. */
	conv("\x80", FFFD);
	/* Overlong encodings of "/" and NUL. */
	conv("\xc0\xaf", FFFD FFFD);
	conv("\xc0\x80", FFFD FFFD);
	conv("\xc1\xbf", FFFD FFFD);
	conv("\xe0\x80\xaf", FFFD FFFD FFFD);
	conv("\xf0\x80\x80\xaf", FFFD FFFD FFFD FFFD);
	/* UTF-16 surrogates U+D800 and U+DFFF. */
	conv("\xed\xa0\x80", FFFD FFFD FFFD);
	conv("\xed\xbf\xbf", FFFD FFFD FFFD);
	/* Beyond U+10FFFF. */
	conv("\xf4\x90\x80\x80", FFFD FFFD FFFD FFFD);
	conv("\xf5\x80\x80\x80", FFFD FFFD FFFD FFFD);
	/* A lead byte followed by a non-continuation: only the lead is bad. */
	conv("\xc3"
	     "A",
	     FFFD "A");
	conv("\xe2\x82"
	     "A",
	     FFFD FFFD "A");
	/* Valid text around invalid bytes is untouched. */
	conv("\xe2\x82\xac\xff\xe2\x82\xac", "\xe2\x82\xac" FFFD "\xe2\x82\xac");
}

/* The result is always valid UTF-8, whatever the input. */
AB_TEST(utf8_every_byte_value_gives_valid_json)
{
	char in[256 * 3];
	for (int i = 0; i < 256; i++) {
		in[3 * i] = (char)i;
		in[3 * i + 1] = (char)0x80;
		in[3 * i + 2] = 'x';
	}
	char carry[4];
	size_t nc = 0;
	json_t *s = ab__utf8_chunk(in, sizeof(in), carry, &nc, true);
	CHECK(s != NULL);
	CHECK_EQ_INT(nc, 0);
	/* Re-validating through jansson's checked constructor must succeed. */
	json_t *t = json_stringn(json_string_value(s), json_string_length(s));
	CHECK(t != NULL);
	json_decref(t);
	json_decref(s);
}

AB_TEST(utf8_emoji_split_at_every_point)
{
	/* "a😀b" split into two calls at every byte boundary. */
	static const char text[] = "a\xf0\x9f\x98\x80"
				   "b";
	size_t n = sizeof(text) - 1;
	for (size_t cut = 0; cut <= n; cut++) {
		char carry[4];
		size_t nc = 0;
		json_t *s1 = ab__utf8_chunk(text, cut, carry, &nc, false);
		CHECK(s1 != NULL);
		/* Bytes 1..4 are the emoji: a cut inside it is held back. */
		size_t want_carry = (cut >= 2 && cut <= 4) ? cut - 1 : 0;
		CHECK_EQ_INT(nc, want_carry);
		json_t *s2 = ab__utf8_chunk(text + cut, n - cut, carry, &nc, false);
		CHECK(s2 != NULL);
		CHECK_EQ_INT(nc, 0);
		char joined[16];
		size_t l1 = json_string_length(s1), l2 = json_string_length(s2);
		CHECK(l1 + l2 < sizeof(joined));
		memcpy(joined, json_string_value(s1), l1);
		memcpy(joined + l1, json_string_value(s2), l2);
		joined[l1 + l2] = '\0';
		CHECK_EQ_INT(l1 + l2, n);
		CHECK_STR(joined, text);
		json_decref(s1);
		json_decref(s2);
	}
}

AB_TEST(utf8_one_byte_at_a_time)
{
	static const char text[] = "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z";
	size_t n = sizeof(text) - 1;
	char carry[4];
	size_t nc = 0;
	char joined[64];
	size_t o = 0;
	for (size_t i = 0; i < n; i++) {
		json_t *s = ab__utf8_chunk(text + i, 1, carry, &nc, false);
		CHECK(s != NULL);
		CHECK(nc <= 3);
		memcpy(joined + o, json_string_value(s), json_string_length(s));
		o += json_string_length(s);
		json_decref(s);
	}
	CHECK_EQ_INT(nc, 0);
	joined[o] = '\0';
	CHECK_STR(joined, text);
}

AB_TEST(utf8_final_flushes_incomplete_tail)
{
	/* The first three bytes of 😀, then the stream ends. */
	char carry[4];
	size_t nc = 0;
	json_t *s = ab__utf8_chunk("ok\xf0\x9f\x98", 5, carry, &nc, false);
	CHECK_STR(json_string_value(s), "ok");
	CHECK_EQ_INT(nc, 3);
	json_decref(s);
	/* Flushing with no new data: each held byte becomes U+FFFD. */
	s = ab__utf8_chunk("", 0, carry, &nc, true);
	CHECK_EQ_INT(nc, 0);
	CHECK_STR(json_string_value(s), FFFD FFFD FFFD);
	json_decref(s);

	/* final=true on a single call with a truncated tail. */
	conv("x\xe2\x82", "x" FFFD FFFD);
	conv("\xc3", FFFD);
}

/* A carried prefix that the next chunk does not complete is replaced,
 * and what follows is kept. */
AB_TEST(utf8_carry_then_invalid_continuation)
{
	char carry[4];
	size_t nc = 0;
	json_t *s = ab__utf8_chunk("\xe2\x82", 2, carry, &nc, false);
	CHECK_EQ_INT(json_string_length(s), 0);
	CHECK_EQ_INT(nc, 2);
	json_decref(s);
	s = ab__utf8_chunk("Z", 1, carry, &nc, false);
	CHECK_STR(json_string_value(s), FFFD FFFD "Z");
	CHECK_EQ_INT(nc, 0);
	json_decref(s);
}

AB_TEST(utf8_nul_bytes_preserved)
{
	char carry[4];
	size_t nc = 0;
	json_t *s = ab__utf8_chunk("a\0b\0\0c", 6, carry, &nc, true);
	CHECK(s != NULL);
	CHECK_EQ_INT(json_string_length(s), 6);
	CHECK(memcmp(json_string_value(s), "a\0b\0\0c", 6) == 0);
	json_decref(s);
	conv_exact("\0\xff\0", 3, "\0" FFFD "\0", 5);
}

AB_TEST(utf8_large_chunk)
{
	/* 64 KiB of mixed content, the daemon's read size. */
	size_t n = 65536;
	char *in = malloc(n);
	CHECK(in != NULL);
	for (size_t i = 0; i + 3 <= n; i += 3)
		memcpy(in + i, "\xe2\x82\xac", 3);
	/* 65536 = 3 * 21845 + 1: the last byte is the start of a new "€". */
	in[n - 1] = '\xe2';
	char carry[4];
	size_t nc = 0;
	json_t *s = ab__utf8_chunk(in, n, carry, &nc, false);
	CHECK(s != NULL);
	CHECK_EQ_INT(json_string_length(s), n - 1);
	CHECK_EQ_INT(nc, 1);
	CHECK_EQ_INT((unsigned char)carry[0], 0xe2);
	json_decref(s);
	/* All invalid: every byte triples. */
	memset(in, 0xff, n);
	nc = 0;
	s = ab__utf8_chunk(in, n, carry, &nc, true);
	CHECK_EQ_INT(json_string_length(s), 3 * n);
	json_decref(s);
	free(in);
}

/* The daemon flushes an empty output buffer whose data pointer is NULL. */
AB_TEST(utf8_null_data_zero_length)
{
	char carry[4];
	size_t nc = 0;
	json_t *s = ab__utf8_chunk(NULL, 0, carry, &nc, true);
	CHECK(s != NULL);
	CHECK_EQ_INT(json_string_length(s), 0);
	json_decref(s);
	/* And with a carried byte pending. */
	s = ab__utf8_chunk("\xc3", 1, carry, &nc, false);
	CHECK_EQ_INT(nc, 1);
	json_decref(s);
	s = ab__utf8_chunk(NULL, 0, carry, &nc, true);
	CHECK_STR(json_string_value(s), FFFD);
	CHECK_EQ_INT(nc, 0);
	json_decref(s);
}
