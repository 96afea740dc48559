/* test_inspect.c - the test inspector, including a marker split across
 * body chunks. */
#include "inspect.h"
#include "unit.h"

static enum eg_verdict body_in_pieces(const char *s, size_t piece)
{
	eg_inspector *in = eg_inspect_begin();
	CHECK(in);
	char buf[256];
	snprintf(buf, sizeof(buf), "%s", s);
	enum eg_verdict v = EG_PASS;
	size_t len = strlen(buf);
	for (size_t off = 0; off < len; off += piece) {
		size_t n = len - off < piece ? len - off : piece;
		v = eg_inspect(in, "body", buf + off, n);
	}
	if (v == EG_BLOCK) {
		const char *const *k = eg_inspect_kinds(in);
		CHECK_STR(k[0], "test-marker");
		CHECK(k[1] == NULL);
	}
	eg_inspect_end(in);
	return v;
}

AB_TEST(inspect_finds_the_marker_across_any_chunking)
{
	const char *s = "prefix " EG_TEST_MARKER " suffix";
	for (size_t piece = 1; piece <= strlen(s); piece++)
		CHECK_EQ_INT(body_in_pieces(s, piece), EG_BLOCK);
	/* At the very start and the very end. */
	for (size_t piece = 1; piece < 40; piece++) {
		CHECK_EQ_INT(body_in_pieces(EG_TEST_MARKER, piece), EG_BLOCK);
		CHECK_EQ_INT(body_in_pieces("xyz" EG_TEST_MARKER, piece), EG_BLOCK);
	}
	CHECK_EQ_INT(body_in_pieces("agentbox-egress-test-marker", 5), EG_BLOCK);
}

AB_TEST(inspect_passes_near_misses)
{
	for (size_t piece = 1; piece < 30; piece++) {
		CHECK_EQ_INT(body_in_pieces("AGENTBOX-EGRESS-TEST-MARKE", piece), EG_PASS);
		CHECK_EQ_INT(
		    body_in_pieces("AGENTBOX-EGRESS-TEST-MARKE AGENTBOX-EGRESS-TEST-MARKE", piece),
		    EG_PASS);
		CHECK_EQ_INT(body_in_pieces("GENTBOX-EGRESS-TEST-MARKER", piece), EG_PASS);
	}
}

AB_TEST(inspect_sees_host_url_and_headers_and_keeps_the_verdict)
{
	eg_inspector *in = eg_inspect_begin();
	char host[] = "agentbox-egress-test-marker.evil.example";
	CHECK_EQ_INT(eg_inspect(in, "host", host, strlen(host)), EG_BLOCK);
	char clean[] = "clean";
	CHECK_EQ_INT(eg_inspect(in, "header", clean, strlen(clean)), EG_BLOCK);
	eg_inspect_end(in);
	in = eg_inspect_begin();
	char url[] = "/search?q=" EG_TEST_MARKER;
	CHECK_EQ_INT(eg_inspect(in, "header", clean, strlen(clean)), EG_PASS);
	CHECK(eg_inspect_kinds(in)[0] == NULL);
	CHECK_EQ_INT(eg_inspect(in, "url", url, strlen(url)), EG_BLOCK);
	eg_inspect_end(in);
	/* Headers are separate: a marker split over two is not one. */
	in = eg_inspect_begin();
	char h1[] = "AGENTBOX-EGRESS", h2[] = "-TEST-MARKER";
	CHECK_EQ_INT(eg_inspect(in, "header", h1, strlen(h1)), EG_PASS);
	CHECK_EQ_INT(eg_inspect(in, "header", h2, strlen(h2)), EG_PASS);
	/* Bodies may hold NUL bytes. */
	char body[64] = {0};
	memcpy(body + 5, EG_TEST_MARKER, strlen(EG_TEST_MARKER));
	CHECK_EQ_INT(eg_inspect(in, "body", body, sizeof(body)), EG_BLOCK);
	eg_inspect_end(in);
}

AB_TEST(inspect_redacts_the_redact_marker_in_place)
{
	eg_inspector *in = eg_inspect_begin();
	char url[] = "/a?token=" EG_TEST_REDACT_MARKER "&b=1";
	CHECK_EQ_INT(eg_inspect(in, "url", url, strlen(url)), EG_REDACT);
	CHECK_STR(url, "/a?token=XXXXXXXXXXXXXXXXXXXXXXXXXXX&b=1");
	char clean[] = "clean";
	CHECK_EQ_INT(eg_inspect(in, "header", clean, strlen(clean)), EG_PASS);
	CHECK_EQ_INT(eg_inspect_verdict(in), EG_REDACT);
	CHECK_STR(eg_inspect_kinds(in)[0], "test-redact");
	/* Lower case too, twice in one body, NUL bytes around. */
	char body[96] = {0};
	memcpy(body + 3, "agentbox-egress-test-redact", 27);
	memcpy(body + 40, EG_TEST_REDACT_MARKER, 27);
	CHECK_EQ_INT(eg_inspect(in, "body", body, sizeof(body)), EG_REDACT);
	CHECK(memmem(body, sizeof(body), "XXXXXXXXXXXXXXXXXXXXXXXXXXX", 27) == body + 3);
	CHECK(memmem(body + 31, sizeof(body) - 31, "XXXXXXXXXXXXXXXXXXXXXXXXXXX", 27) == body + 40);
	/* A block after a redact wins, and stays. */
	char bad[] = EG_TEST_MARKER;
	CHECK_EQ_INT(eg_inspect(in, "header", bad, strlen(bad)), EG_BLOCK);
	CHECK_EQ_INT(eg_inspect(in, "header", clean, strlen(clean)), EG_BLOCK);
	CHECK_EQ_INT(eg_inspect_verdict(in), EG_BLOCK);
	eg_inspect_end(in);
}

AB_TEST(inspect_blocks_a_redact_marker_it_can_no_longer_rewrite)
{
	/* Split across body chunks at every point (and over three chunks):
	 * the first part has gone by, so the request is blocked. */
	const char *m = EG_TEST_REDACT_MARKER;
	size_t ml = strlen(m);
	for (size_t cut = 1; cut < ml; cut++) {
		eg_inspector *in = eg_inspect_begin();
		char a[64], b[64];
		snprintf(a, sizeof(a), "xx%.*s", (int)cut, m);
		snprintf(b, sizeof(b), "%s yy", m + cut);
		CHECK_EQ_INT(eg_inspect(in, "body", a, strlen(a)), EG_PASS);
		CHECK_EQ_INT(eg_inspect(in, "body", b, strlen(b)), EG_BLOCK);
		eg_inspect_end(in);
	}
	eg_inspector *in = eg_inspect_begin();
	char p1[] = "AGENTBOX-EG", p2[] = "RESS-TEST", p3[] = "-REDACT!";
	CHECK_EQ_INT(eg_inspect(in, "body", p1, strlen(p1)), EG_PASS);
	CHECK_EQ_INT(eg_inspect(in, "body", p2, strlen(p2)), EG_PASS);
	CHECK_EQ_INT(eg_inspect(in, "body", p3, strlen(p3)), EG_BLOCK);
	CHECK_EQ_INT(eg_inspect_verdict(in), EG_BLOCK);
	eg_inspect_end(in);
}
