/* test_normalize.c - the normalised view and its map back to the input. */
#include "dlp_internal.h"
#include "unit.h"

/* Normalises s, expects want, and checks the map's invariants. */
static dlp_buf norm(const char *s, const char *want)
{
	dlp_buf b = {0};
	size_t n = strlen(s);
	CHECK_EQ_INT(dlp_normalize(s, n, &b), 1);
	CHECK_EQ_INT(b.len, strlen(want));
	CHECK(memcmp(b.data, want, b.len) == 0);
	CHECK_EQ_INT(b.map[b.len], n);
	for (size_t i = 0; i < b.len; i++)
		CHECK(b.map[i] <= b.map[i + 1]);
	return b;
}

/* The original bytes behind the view's [s, e), where e starts a unit. */
static void check_span(const dlp_buf *b, const char *orig, size_t s, size_t e, const char *want)
{
	size_t from = b->map[s], to = b->map[e];
	CHECK_EQ_INT(to - from, strlen(want));
	CHECK(memcmp(orig + from, want, to - from) == 0);
}

AB_TEST(dlp_normalize_leaves_normal_text_alone)
{
	static const char *const normal[] = {
	    "plain ascii text with nothing to do, 0123456789 and more than eight bytes",
	    "東京都千代田区 and a lone & and C:\\path\\file",
	    "a\xe2\x88\x92z (a minus sign between letters)",
	    "\xff\xfe invalid UTF-8 and a cut \xe3\x81",
	    "&unknown; &#; &#xZZ; &#0; \\u12 \\uD800 alone",
	    ""};
	for (size_t i = 0; i < sizeof(normal) / sizeof(normal[0]); i++) {
		dlp_buf b = {(char *)1, (uint32_t *)1, 7};
		CHECK_EQ_INT(dlp_normalize(normal[i], strlen(normal[i]), &b), 0);
		/* Nothing allocated, nothing written. */
		CHECK(b.data == (char *)1 && b.len == 7);
		CHECK_EQ_INT(dlp_normalize_explain(normal[i], strlen(normal[i])), 0);
	}
}

AB_TEST(dlp_normalize_fullwidth_and_ideographic_space)
{
	/* "ＡＫＩＡ１２" U+3000 "x" */
	const char *s =
	    "key=\xef\xbc\xa1\xef\xbc\xab\xef\xbc\xa9\xef\xbc\xa1\xef\xbc\x91\xef\xbc\x92"
	    "\xe3\x80\x80x";
	dlp_buf b = norm(s, "key=AKIA12 x");
	CHECK_EQ_INT(b.map[0], 0);
	CHECK_EQ_INT(b.map[4], 4);
	CHECK_EQ_INT(b.map[5], 7);
	check_span(&b, s, 4, 6, "\xef\xbc\xa1\xef\xbc\xab");
	check_span(&b, s, 10, 11, "\xe3\x80\x80");
	CHECK_EQ_INT(dlp_normalize_explain(s, strlen(s)), 1u << DLP_DEC_NFKC);
	CHECK_EQ_INT(dlp_normalize_explain(s, 4), 0);
	dlp_buf_free(&b);
}

AB_TEST(dlp_normalize_halfwidth_katakana_composes_voiced_marks)
{
	/* ｶﾞｷﾞｱｲ -> ガギアイ; ﾊﾟ -> パ */
	const char *s = "\xef\xbd\xb6\xef\xbe\x9e\xef\xbd\xb7\xef\xbe\x9e\xef\xbd\xb1\xef\xbd\xb2"
			"\xef\xbe\x8a\xef\xbe\x9f";
	dlp_buf b = norm(s, "ガギアイパ");
	CHECK_EQ_INT(b.map[3], 6);
	CHECK_EQ_INT(b.map[6], 12);
	check_span(&b, s, 0, 3, "\xef\xbd\xb6\xef\xbe\x9e");
	dlp_buf_free(&b);
}

AB_TEST(dlp_normalize_drops_invisible_characters)
{
	/* ZWSP, soft hyphen, BOM, RLO, word joiner inside an e-mail address. */
	const char *s = "ali\xe2\x80\x8b"
			"ce@ex\xc2\xad"
			"am\xef\xbb\xbfple.c\xe2\x80\xaeo\xe2\x81\xa0m";
	dlp_buf b = norm(s, "alice@example.com");
	/* "ce" maps past the dropped character, and a span across the gap
	 * covers it. */
	CHECK_EQ_INT(b.map[3], 6);
	check_span(&b, s, 2, 4,
		   "i\xe2\x80\x8b"
		   "c");
	CHECK_EQ_INT(dlp_normalize_explain(s, strlen(s)), 1u << DLP_DEC_INVISIBLE);
	dlp_buf_free(&b);
	/* Tag characters spell the letters they stand for. */
	b = norm("\xf3\xa0\x81\x81\xf3\xa0\x81\x82", "AB");
	dlp_buf_free(&b);
}

AB_TEST(dlp_normalize_hyphens_between_digits)
{
	/* A minus sign, a full-width number with a prolonged sound mark, a
	 * half-width one, an en dash. */
	dlp_buf b = norm("090\xe2\x88\x92"
			 "1234",
			 "090-1234");
	CHECK_EQ_INT(b.map[3], 3);
	CHECK_EQ_INT(b.map[4], 6);
	dlp_buf_free(&b);
	b = norm("\xef\xbc\x90\xef\xbc\x93\xe3\x83\xbc\xef\xbc\x91", "03-1");
	dlp_buf_free(&b);
	b = norm("12\xef\xbd\xb0"
		 "34",
		 "12-34");
	dlp_buf_free(&b);
	b = norm("12\xe2\x80\x93\xe2\x80\x8b"
		 "34",
		 "12-34");
	dlp_buf_free(&b);
	/* Not between digits: a prolonged sound mark stays a katakana mark
	 * (the half-width one becomes the full-width one). */
	b = norm("\xef\xbd\xb0x", "ーx");
	dlp_buf_free(&b);
	dlp_buf n = {0};
	CHECK_EQ_INT(
	    dlp_normalize("ラーメン 1 \xe2\x88\x92 2", strlen("ラーメン 1 \xe2\x88\x92 2"), &n), 0);
}

AB_TEST(dlp_normalize_html_references)
{
	const char *s = "user&#64;example&period;com &#x41;&#66 &lt;&amp;lt;&gt; &commat;";
	dlp_buf b = norm(s, "user@example.com AB <&lt;> @");
	CHECK_EQ_INT(b.map[4], 4);
	CHECK_EQ_INT(b.map[5], 9);
	check_span(&b, s, 4, 5, "&#64;");
	check_span(&b, s, 12, 13, "&period;");
	CHECK_EQ_INT(dlp_normalize_explain(s, strlen(s)), 1u << DLP_DEC_HTML);
	dlp_buf_free(&b);
	/* A decoded character goes through NFKC and the invisible set. */
	s = "&#xFF21;&#8203;B&nbsp;1&minus;2";
	b = norm(s, "AB 1-2");
	CHECK_EQ_INT(dlp_normalize_explain(s, strlen(s)),
		     (1u << DLP_DEC_HTML) | (1u << DLP_DEC_NFKC) | (1u << DLP_DEC_INVISIBLE));
	CHECK_EQ_INT(dlp_normalize_explain(s, 8), (1u << DLP_DEC_HTML) | (1u << DLP_DEC_NFKC));
	dlp_buf_free(&b);
}

AB_TEST(dlp_normalize_json_escapes)
{
	const char *s = "{\"k\":\"\\u0041KIA\\/x\\\"y\\\\u0041 \\ud83d\\ude00 \\uFF21\"}";
	dlp_buf b = norm(s, "{\"k\":\"AKIA/x\"y\\u0041 \xf0\x9f\x98\x80 A\"}");
	CHECK_EQ_INT(b.map[6], 6);
	CHECK_EQ_INT(b.map[7], 12);
	check_span(&b, s, 6, 7, "\\u0041");
	/* The surrogate pair is one unit: its four bytes map to its start. */
	size_t at = (size_t)(strstr(b.data, "\xf0\x9f") - b.data);
	CHECK_EQ_INT(b.map[at], b.map[at + 3]);
	check_span(&b, s, at, at + 4, "\\ud83d\\ude00");
	CHECK_EQ_INT(dlp_normalize_explain(s, strlen(s)),
		     (1u << DLP_DEC_JSON) | (1u << DLP_DEC_NFKC));
	dlp_buf_free(&b);
}

AB_TEST(dlp_normalize_keeps_invalid_utf8_and_nuls)
{
	const char s[] = "\xff\0\xef\xbc\xa1\xc3(\xe3\x81";
	dlp_buf b = {0};
	CHECK_EQ_INT(dlp_normalize(s, sizeof(s) - 1, &b), 1);
	CHECK_EQ_INT(b.len, 7);
	CHECK(memcmp(b.data, "\xff\0A\xc3(\xe3\x81", 7) == 0);
	CHECK_EQ_INT(b.map[0], 0);
	CHECK_EQ_INT(b.map[1], 1);
	CHECK_EQ_INT(b.map[2], 2);
	CHECK_EQ_INT(b.map[3], 5);
	CHECK_EQ_INT(b.map[7], 9);
	dlp_buf_free(&b);
}

AB_TEST(dlp_normalize_large_input)
{
	/* Mostly ASCII with a change at the very end: one pass, and the
	 * prefix is copied as it is. */
	size_t n = 4u << 20;
	char *s = malloc(n + 3);
	CHECK(s);
	memset(s, 'a', n);
	memcpy(s + n, "\xef\xbc\xa1", 3);
	dlp_buf b = {0};
	CHECK_EQ_INT(dlp_normalize(s, n + 3, &b), 1);
	CHECK_EQ_INT(b.len, n + 1);
	CHECK(b.data[n] == 'A');
	CHECK_EQ_INT(b.map[n - 1], n - 1);
	CHECK_EQ_INT(b.map[n], n);
	CHECK_EQ_INT(b.map[n + 1], n + 3);
	dlp_buf_free(&b);
	free(s);
}
