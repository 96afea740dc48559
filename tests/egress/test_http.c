/* test_http.c - request heads, bodies and response ends: what is accepted
 * and, above all, what is refused. */
#include "http.h"
#include "unit.h"

static int head_status(const char *raw, eg_http_req *r)
{
	char why[256];
	size_t len = strlen(raw);
	size_t hl = eg_http_head_end(raw, len);
	CHECK(hl > 0);
	return eg_http_parse_head(r, raw, hl, 8 << 20, why, sizeof(why));
}

static int status_of(const char *raw)
{
	eg_http_req r;
	int st = head_status(raw, &r);
	eg_http_req_free(&r);
	return st;
}

AB_TEST(http_a_proxy_request_head_is_parsed)
{
	eg_http_req r;
	CHECK_EQ_INT(
	    head_status("GET http://a.example/x?y=1 HTTP/1.1\r\nHost: a.example\r\n"
			"X-Pad:   spaced value  \r\nConnection: keep-alive, X-Drop\r\n\r\n",
			&r),
	    0);
	CHECK_STR(r.method, "GET");
	CHECK_STR(r.url, "http://a.example/x?y=1");
	CHECK_STR(eg_http_header(&r, "x-pad"), "spaced value");
	CHECK(r.keep_alive);
	CHECK(r.complete);
	CHECK(eg_http_hop_by_hop(&r, "X-Drop"));
	CHECK(eg_http_hop_by_hop(&r, "Proxy-Authorization"));
	CHECK(eg_http_hop_by_hop(&r, "proxy-connection"));
	CHECK(eg_http_hop_by_hop(&r, "Transfer-Encoding"));
	CHECK(!eg_http_hop_by_hop(&r, "X-Pad"));
	eg_http_req_free(&r);
	CHECK_EQ_INT(
	    head_status("CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", &r), 0);
	CHECK_STR(r.method, "CONNECT");
	eg_http_req_free(&r);
}

AB_TEST(http_ambiguous_framing_is_refused)
{
	CHECK_EQ_INT(status_of("POST http://a/ HTTP/1.1\r\nContent-Length: 3\r\n"
			       "Transfer-Encoding: chunked\r\n\r\n"),
		     400);
	CHECK_EQ_INT(status_of("POST http://a/ HTTP/1.1\r\nContent-Length: 3\r\n"
			       "Content-Length: 4\r\n\r\n"),
		     400);
	CHECK_EQ_INT(status_of("POST http://a/ HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\n"), 400);
	CHECK_EQ_INT(status_of("POST http://a/ HTTP/1.1\r\nContent-Length: +3\r\n\r\n"), 400);
	CHECK_EQ_INT(status_of("POST http://a/ HTTP/1.1\r\nContent-Length: 0x3\r\n\r\n"), 400);
	CHECK_EQ_INT(
	    status_of("POST http://a/ HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 400);
	CHECK_EQ_INT(status_of("POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n"
			       "Transfer-Encoding: chunked\r\n\r\n"),
		     400);
	CHECK_EQ_INT(status_of("POST http://a/ HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n"),
		     400);
	CHECK_EQ_INT(status_of("POST http://a/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"),
		     400);
	CHECK_EQ_INT(status_of("GET http://a/ HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n"), 400);
	CHECK_EQ_INT(status_of("GET http://a/ HTTP/1.1\r\nX-A: 1\r\n\tfolded\r\n\r\n"), 400);
	CHECK_EQ_INT(status_of("GET http://a/ HTTP/1.1\r\nHost : a\r\n\r\n"), 400);
	CHECK_EQ_INT(status_of("GET http://a/ HTTP/1.1\r\nX-A: a\rb\r\n\r\n"), 400);
	CHECK_EQ_INT(status_of("GET http://a/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400);
	CHECK_EQ_INT(status_of("GET http://a/ HTTP/2.0\r\n\r\n"), 400);
	CHECK_EQ_INT(status_of("\r\nGET http://a/ HTTP/1.1\r\n\r\n"), 400);
	CHECK_EQ_INT(status_of("GET http://a/ HTTP/1.1\r\nNoColon\r\n\r\n"), 400);
	CHECK_EQ_INT(status_of("BREW http://a/ HTTP/1.1\r\n\r\n"), 400);
	CHECK(eg_http_has_bare_lf("GET / HTTP/1.1\nHost: a\n\n", 24));
	CHECK(!eg_http_has_bare_lf("GET / HTTP/1.1\r\n", 16));
	/* The parser would leave a CONNECT's body to the tunnel. */
	CHECK_EQ_INT(status_of("CONNECT a:443 HTTP/1.1\r\nContent-Length: 4\r\n\r\n"), 400);
	CHECK_EQ_INT(status_of("CONNECT a:443 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
		     400);
	/* Identical duplicates are refused too (stricter than needed). */
	CHECK_EQ_INT(status_of("POST http://a/ HTTP/1.1\r\nContent-Length: 3\r\n"
			       "Content-Length: 3\r\n\r\n"),
		     400);
}

AB_TEST(http_a_control_character_or_nul_in_a_header_is_refused)
{
	char raw[] = "GET http://a/ HTTP/1.1\r\nX-A: a?b\r\n\r\n";
	char *q = strchr(raw, '?');
	for (int c = 0; c < 0x20; c++) {
		if (c == '\t' || c == '\r' || c == '\n')
			continue;
		*q = (char)c;
		eg_http_req r;
		char why[256];
		CHECK_EQ_INT(eg_http_parse_head(&r, raw, sizeof(raw) - 1, 100, why, sizeof(why)),
			     400);
		eg_http_req_free(&r);
	}
}

AB_TEST(http_encodings_expectations_and_sizes)
{
	eg_http_req r;
	CHECK_EQ_INT(head_status("POST http://a/ HTTP/1.1\r\nContent-Encoding: gzip\r\n"
				 "Content-Length: 3\r\n\r\n",
				 &r),
		     0);
	CHECK_EQ_INT(r.encoding, EG_CE_GZIP);
	eg_http_req_free(&r);
	CHECK_EQ_INT(
	    head_status("POST http://a/ HTTP/1.1\r\nContent-Encoding: deflate\r\n\r\n", &r), 0);
	CHECK_EQ_INT(r.encoding, EG_CE_DEFLATE);
	eg_http_req_free(&r);
	CHECK_EQ_INT(status_of("POST http://a/ HTTP/1.1\r\nContent-Encoding: br\r\n\r\n"), 415);
	CHECK_EQ_INT(status_of("POST http://a/ HTTP/1.1\r\nContent-Encoding: gzip, gzip\r\n\r\n"),
		     415);
	CHECK_EQ_INT(status_of("POST http://a/ HTTP/1.1\r\nExpect: teapot\r\n\r\n"), 417);
	CHECK_EQ_INT(head_status("POST http://a/ HTTP/1.1\r\nExpect: 100-continue\r\n"
				 "Content-Length: 1\r\n\r\n",
				 &r),
		     0);
	CHECK(r.expect_continue);
	CHECK(!r.complete);
	eg_http_req_free(&r);
	CHECK_EQ_INT(status_of("POST http://a/ HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n"),
		     413);
	CHECK_EQ_INT(head_status("GET http://a/ HTTP/1.1\r\nUpgrade: websocket\r\n"
				 "Connection: Upgrade\r\n\r\n",
				 &r),
		     0);
	CHECK(r.websocket);
	eg_http_req_free(&r);
}

AB_TEST(http_head_size_and_header_count_are_bounded)
{
	static char raw[EG_HEAD_MAX + 200];
	int n = snprintf(raw, sizeof(raw), "GET http://a/ HTTP/1.1\r\n");
	for (int i = 0; i < EG_HEADERS_MAX + 1; i++)
		n += snprintf(raw + n, sizeof(raw) - (size_t)n, "X-%d: v\r\n", i);
	n += snprintf(raw + n, sizeof(raw) - (size_t)n, "\r\n");
	CHECK_EQ_INT(status_of(raw), 431);
	eg_http_req r;
	char why[128];
	CHECK_EQ_INT(eg_http_parse_head(&r, raw, EG_HEAD_MAX + 1, 10, why, sizeof(why)), 431);
	eg_http_req_free(&r);
}

static int body_of(const char *raw, size_t max_body, eg_http_req *r, size_t split)
{
	char why[256];
	size_t len = strlen(raw);
	size_t hl = eg_http_head_end(raw, len);
	CHECK(hl > 0);
	int st = eg_http_parse_head(r, raw, hl, max_body, why, sizeof(why));
	if (st)
		return st;
	size_t off = hl;
	while (!r->complete && off < len) {
		size_t n = len - off < split ? len - off : split, used;
		st = eg_http_feed_body(r, raw + off, n, &used, why, sizeof(why));
		if (st)
			return st;
		off += used;
		if (used < n)
			break;
	}
	return 0;
}

AB_TEST(http_chunked_bodies_are_decoded_and_bounded)
{
	const char *raw = "POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
			  "3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\nTrailer: x\r\n\r\nNEXT";
	for (size_t split = 1; split < 40; split++) {
		eg_http_req r;
		CHECK_EQ_INT(body_of(raw, 100, &r, split), 0);
		CHECK(r.complete);
		CHECK_EQ_INT(r.body_len, 5);
		CHECK(memcmp(r.body, "abcde", 5) == 0);
		eg_http_req_free(&r);
	}
	eg_http_req r;
	CHECK_EQ_INT(body_of(raw, 4, &r, 64), 413);
	eg_http_req_free(&r);
	CHECK_EQ_INT(body_of("POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
			     "zz\r\nabc\r\n0\r\n\r\n",
			     100, &r, 64),
		     400);
	eg_http_req_free(&r);
	CHECK_EQ_INT(body_of("POST http://a/ HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
			     "3\r\nabcX\r\n0\r\n\r\n",
			     100, &r, 64),
		     400);
	eg_http_req_free(&r);
	/* Content-Length stops at its end: the rest is the next request. */
	const char *cl = "POST http://a/ HTTP/1.1\r\nContent-Length: 3\r\n\r\nabcGET /";
	char why[64];
	size_t hl = eg_http_head_end(cl, strlen(cl)), used;
	CHECK_EQ_INT(eg_http_parse_head(&r, cl, hl, 100, why, sizeof(why)), 0);
	CHECK_EQ_INT(eg_http_feed_body(&r, cl + hl, strlen(cl) - hl, &used, why, sizeof(why)), 0);
	CHECK_EQ_INT(used, 3);
	CHECK(r.complete);
	eg_http_req_free(&r);
}

static int resp_end(const char *raw, bool head, size_t *used, eg_http_resp *r)
{
	eg_http_resp_init(r, head);
	return eg_http_resp_feed(r, raw, strlen(raw), used);
}

AB_TEST(http_response_ends)
{
	eg_http_resp r;
	size_t used;
	const char *s = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA";
	CHECK_EQ_INT(resp_end(s, false, &used, &r), 0);
	CHECK(r.complete);
	CHECK_EQ_INT(used, strlen(s) - 5);
	s = "HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n";
	CHECK_EQ_INT(resp_end(s, true, &used, &r), 0);
	CHECK(r.complete);
	s = "HTTP/1.1 204 No Content\r\n\r\n";
	CHECK_EQ_INT(resp_end(s, false, &used, &r), 0);
	CHECK(r.complete);
	s = "HTTP/1.1 304 Not Modified\r\n\r\n";
	CHECK_EQ_INT(resp_end(s, false, &used, &r), 0);
	CHECK(r.complete);
	s = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
	    "2\r\nok\r\n0\r\n\r\n";
	CHECK_EQ_INT(resp_end(s, false, &used, &r), 0);
	CHECK(r.complete);
	CHECK_EQ_INT(r.status, 200);
	CHECK_EQ_INT(used, strlen(s));
	s = "HTTP/1.0 200 OK\r\n\r\nuntil close";
	CHECK_EQ_INT(resp_end(s, false, &used, &r), 0);
	CHECK(!r.complete);
	CHECK_EQ_INT(eg_http_resp_eof(&r), 0);
	CHECK(r.close_delimited);
	s = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort";
	CHECK_EQ_INT(resp_end(s, false, &used, &r), 0);
	CHECK(eg_http_resp_eof(&r) < 0);
	s = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
	    "\x81\x02hi";
	CHECK_EQ_INT(resp_end(s, false, &used, &r), 0);
	CHECK(r.complete);
	CHECK(r.upgrade);
	CHECK_EQ_INT(used, strlen(s));
	CHECK(resp_end("NOT HTTP\r\n\r\n", false, &used, &r) < 0);
}
