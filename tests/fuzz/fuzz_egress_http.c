/* fuzz_egress_http.c - the egress sidecar's request path before any
 * decision (src/egress/http.c, addr.c, inspect.c): what a sandbox sends.
 *
 * Input: byte 0 seeds the split sizes, the rest is what arrives on a
 * sandbox's connection. The head is found, checked and parsed as the
 * sidecar does; the body is fed in random pieces. Invariants:
 *  - a refusal is one of the statuses the sidecar answers with;
 *  - an accepted head has a method, a target and no header without a
 *    name; never both Content-Length and chunked;
 *  - the body never exceeds max_body; a complete Content-Length body has
 *    exactly that length; a complete body does not depend on the split;
 *  - the inspector's verdict on the body does not depend on the split;
 *  - the Host header, normalized, is a name, an IP literal or refused,
 *    and a name is at most 253 bytes of [a-z0-9-_.];
 *  - the same bytes as an upstream response never make the response
 *    parser claim more bytes than it was given. */
#include <stdbool.h>

#include "../../src/egress/addr.h"
#include "../../src/egress/http.h"
#include "../../src/egress/inspect.h"
#include "fuzz.h"

#define MAX_BODY 4096

static bool feed(const char *d, size_t n, size_t hl, uint32_t seed, bool split, char **body,
		 size_t *blen, bool *complete)
{
	eg_http_req r;
	char why[256];
	int st = eg_http_parse_head(&r, d, hl, MAX_BODY, why, sizeof(why));
	FUZZ_CHECK(st == 0 || st == 400 || st == 413 || st == 415 || st == 417 || st == 431 ||
		   st == 501 || st == 503);
	if (st) {
		FUZZ_CHECK(why[0]);
		eg_http_req_free(&r);
		return false;
	}
	FUZZ_CHECK(r.method[0] && r.url && r.url[0]);
	FUZZ_CHECK(!(r.chunked && r.has_content_length));
	for (size_t i = 0; i < r.nhdr; i++)
		FUZZ_CHECK(r.hdr[i].name && r.hdr[i].name[0] && r.hdr[i].value);
	const char *host = eg_http_header(&r, "host");
	if (host) {
		char h[EG_HOST_MAX + 2];
		snprintf(h, sizeof(h), "%s", host);
		enum eg_host_kind k = eg_host_normalize(h);
		if (k == EG_HOST_NAME) {
			FUZZ_CHECK(strlen(h) <= EG_HOST_MAX);
			for (const char *c = h; *c; c++)
				FUZZ_CHECK((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') ||
					   *c == '-' || *c == '_' || *c == '.');
		}
	}
	size_t off = hl;
	while (!r.complete && off < n) {
		size_t chunk = split ? 1 + fuzz_next(&seed) % 16 : n - off;
		if (chunk > n - off)
			chunk = n - off;
		size_t used = 0;
		st = eg_http_feed_body(&r, d + off, chunk, &used, why, sizeof(why));
		FUZZ_CHECK(st == 0 || st == 400 || st == 413 || st == 503);
		if (st)
			break;
		FUZZ_CHECK(used <= chunk);
		off += used;
		if (used < chunk)
			FUZZ_CHECK(r.complete);
	}
	FUZZ_CHECK(r.body_len <= MAX_BODY);
	*complete = r.complete && st == 0;
	if (*complete && r.has_content_length)
		FUZZ_CHECK(r.body_len == r.content_length);
	*body = r.body;
	*blen = r.body_len;
	r.body = NULL;
	eg_http_req_free(&r);
	return true;
}

/* The body shown whole (as an identity body is) or in pieces (as a
 * decoded one is): the same verdict. */
static enum eg_verdict inspect(const char *b, size_t n, uint32_t seed, bool split)
{
	static bool ready;
	if (!ready) {
		char err[256];
		FUZZ_CHECK(eg_inspect_init(NULL, NULL, err, sizeof(err)) == 0);
		ready = true;
	}
	eg_inspector *in = eg_inspect_begin(NULL, 0);
	FUZZ_CHECK(in);
	char *copy = malloc(n ? n : 1);
	FUZZ_CHECK(copy);
	if (n)
		memcpy(copy, b, n);
	enum eg_verdict v = EG_PASS;
	if (split) {
		size_t off = 0;
		while (off < n && v == EG_PASS) {
			size_t chunk = 1 + fuzz_next(&seed) % 32;
			if (chunk > n - off)
				chunk = n - off;
			v = eg_inspect_stream(in, copy + off, chunk);
			off += chunk;
		}
		if (v == EG_PASS)
			v = eg_inspect_stream_end(in);
	} else {
		v = eg_inspect(in, "body", copy, n);
	}
	free(copy);
	eg_inspect_end(in);
	return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint32_t seed = data[0] | 0x100u;
	const char *d = (const char *)data + 1;
	size_t n = size - 1;

	eg_http_resp resp;
	eg_http_resp_init(&resp, (data[0] & 1) != 0);
	size_t used = 0;
	if (eg_http_resp_feed(&resp, d, n, &used) == 0)
		FUZZ_CHECK(used <= n);
	eg_http_resp_eof(&resp);

	if (eg_http_has_bare_lf(d, n))
		return 0;
	size_t hl = eg_http_head_end(d, n);
	if (hl == 0)
		return 0;
	FUZZ_CHECK(hl <= n && hl >= 4 && memcmp(d + hl - 4, "\r\n\r\n", 4) == 0);
	char *b1 = NULL, *b2 = NULL;
	size_t l1 = 0, l2 = 0;
	bool c1 = false, c2 = false;
	if (feed(d, n, hl, seed, true, &b1, &l1, &c1)) {
		FUZZ_CHECK(feed(d, n, hl, seed, false, &b2, &l2, &c2));
		if (c1 && c2) {
			FUZZ_CHECK(l1 == l2);
			FUZZ_CHECK(l1 == 0 || memcmp(b1, b2, l1) == 0);
			FUZZ_CHECK(inspect(b1, l1, seed, true) == inspect(b1, l1, seed, false));
		}
	}
	free(b1);
	free(b2);
	return 0;
}
