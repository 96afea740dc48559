/* test_decode.c - the decoders: what each finds, its map back to the view,
 * what is not worth reporting, and bounds on adversarial input. */
#include <zlib.h>

#include "dlp_internal.h"
#include "unit.h"

#define MAX_REGIONS 8192

static dlp_region got[MAX_REGIONS];
static size_t ngot;

static int collect(void *ctx, dlp_region *r)
{
	(void)ctx;
	if (ngot == MAX_REGIONS) {
		dlp_buf_free(&r->buf);
		return 0;
	}
	got[ngot++] = *r;
	return 0;
}

static void reset(void)
{
	for (size_t i = 0; i < ngot; i++)
		dlp_buf_free(&got[i].buf);
	ngot = 0;
}

/* Decodes the view and checks every region's map against the contract. */
static void decode_opts(const char *s, size_t n, const dlp_decode_opts *o)
{
	reset();
	CHECK_EQ_INT(dlp_decode(s, n, o, collect, NULL), 0);
	for (size_t i = 0; i < ngot; i++) {
		dlp_region *r = &got[i];
		CHECK(r->start < r->end && r->end <= n);
		CHECK(r->buf.len > 0);
		CHECK_EQ_INT(r->buf.map[0], r->start);
		CHECK_EQ_INT(r->buf.map[r->buf.len], r->end);
		for (size_t k = 0; k < r->buf.len; k++)
			CHECK(r->buf.map[k] <= r->buf.map[k + 1]);
	}
}

static void decode(const char *s)
{
	decode_opts(s, strlen(s), NULL);
}

/* The one region of decoder dec; its text is want. */
static dlp_region *only(enum dlp_decoder dec, const char *want)
{
	CHECK_EQ_INT(ngot, 1);
	CHECK_STR(dlp_decoder_name(got[0].decoder), dlp_decoder_name(dec));
	CHECK_EQ_INT(got[0].buf.len, strlen(want));
	CHECK(memcmp(got[0].buf.data, want, strlen(want)) == 0);
	return &got[0];
}

static size_t at(const char *s, const char *w)
{
	const char *p = strstr(s, w);
	CHECK(p);
	return (size_t)(p - s);
}

AB_TEST(dlp_decoder_names)
{
	CHECK_STR(dlp_decoder_name(DLP_DEC_NFKC), "nfkc");
	CHECK_STR(dlp_decoder_name(DLP_DEC_BASE64URL), "base64url");
	CHECK_STR(dlp_decoder_name(DLP_DEC_QUOTED_PRINTABLE), "quoted_printable");
	CHECK_STR(dlp_decoder_name(DLP_DEC_BASIC_AUTH), "basic_auth");
	CHECK_STR(dlp_decoder_name(DLP_DEC_NONE), "?");
	CHECK_STR(dlp_decoder_name(DLP_DEC_COUNT), "?");
	CHECK_STR(dlp_decoder_name((enum dlp_decoder) - 1), "?");
}

AB_TEST(dlp_decode_base64_maps_quanta)
{
	const char *s =
	    "data: \"dGhlIHF1aWNrIGJyb3duIGZveCBqdW1wcyBvdmVyIHRoZSBsYXp5IGRvZw==\" end";
	decode(s);
	dlp_region *r = only(DLP_DEC_BASE64, "the quick brown fox jumps over the lazy dog");
	size_t s0 = at(s, "dGhl");
	CHECK_EQ_INT(r->start, s0);
	CHECK_EQ_INT(r->end, at(s, "==") + 2);
	/* "the" is the first quantum, " qu" the second. */
	CHECK_EQ_INT(r->buf.map[2], s0);
	CHECK_EQ_INT(r->buf.map[3], s0 + 4);
	/* "quick" (bytes 4..9) came from the quanta at 4 and 8 chars in. */
	CHECK_EQ_INT(r->buf.map[4], s0 + 4);
	CHECK_EQ_INT(r->buf.map[9], s0 + 12);
	CHECK_EQ_INT(r->buf.map[r->buf.len - 1], s0 + 56);
	reset();
}

AB_TEST(dlp_decode_base64url)
{
	decode("x=c3ViamVjdHM_Pj4-ZGF0YX5-fm9rPz4_Pg== y");
	only(DLP_DEC_BASE64URL, "subjects?>>>data~~~ok?>?>");
	reset();
}

AB_TEST(dlp_decode_wrapped_base64)
{
	const char *s =
	    "body:"
	    "\r\nTGluZSBvbmUgb2YgYSBsb25nIG1lc3NhZ2UgdGhhdCBpcyB3cmFwcGVkIGJ5IGEgbWFpbCBjbGll\r\n"
	    "bnQgYXQgc2l4dHkgZm91ciBjaGFyYWN0ZXJzLCB3aXRoIG1vcmUgdGV4dCBhZnRlci4=\r\n";
	const char *want = "Line one of a long message that is wrapped by a mail client at sixty "
			   "four characters, with more text after.";
	decode(s);
	dlp_region *r = only(DLP_DEC_BASE64, want);
	CHECK_EQ_INT(r->start, at(s, "TGlu"));
	CHECK_EQ_INT(r->end, at(s, "=\r\n") + 1);
	/* The quantum after the line break maps past it. */
	CHECK_EQ_INT(r->buf.map[57], at(s, "bnQg"));
	reset();
	/* The same, JSON-escaped. */
	s = "{\"b\":"
	    "\"TGluZSBvbmUgb2YgYSBsb25nIG1lc3NhZ2UgdGhhdCBpcyB3cmFwcGVkIGJ5IGEgbWFpbCBjbGll\\n"
	    "bnQgYXQgc2l4dHkgZm91ciBjaGFyYWN0ZXJzLCB3aXRoIG1vcmUgdGV4dCBhZnRlci4=\"}";
	decode(s);
	only(DLP_DEC_BASE64, want);
	reset();
}

AB_TEST(dlp_decode_base32)
{
	const char *s = "otp NBSWY3DPEB3W64TMMQQGM4TPNUQGEYLTMUZTEIDUMV4HI=== ok";
	decode(s);
	dlp_region *r = only(DLP_DEC_BASE32, "hello world from base32 text");
	CHECK_EQ_INT(r->buf.map[4], at(s, "NBSW"));
	CHECK_EQ_INT(r->buf.map[5], at(s, "NBSW") + 8);
	CHECK_EQ_INT(r->end, at(s, " ok"));
	reset();
}

AB_TEST(dlp_decode_hex_plain_and_separated)
{
	const char *s = "blob 73656372657420746578742068696464656e20696e20686578;";
	decode(s);
	dlp_region *r = only(DLP_DEC_HEX, "secret text hidden in hex");
	CHECK_EQ_INT(r->buf.map[1], at(s, "7365") + 2);
	CHECK_EQ_INT(r->end, at(s, ";"));
	reset();
	s = "b=\"\\x73\\x65\\x63\\x72\\x65\\x74\\x20\\x74\\x65\\x78\\x74\\x21\\x21\"";
	decode(s);
	r = only(DLP_DEC_HEX, "secret text!!");
	CHECK_EQ_INT(r->buf.map[1], at(s, "\\x65"));
	CHECK_EQ_INT(r->end, at(s, "\"") + 1 + 13 * 4 + 0);
	reset();
	decode("{0x73, 0x65, 0x63, 0x72, 0x65, 0x74, 0x20, 0x74, 0x65, 0x78, 0x74, 0x21}");
	only(DLP_DEC_HEX, "secret text!");
	reset();
	decode("73 65 63 72 65 74 20 74 65 78 74 21\n");
	only(DLP_DEC_HEX, "secret text!");
	reset();
	decode("73:65:63:72:65:74:20:74:65:78:74:21");
	only(DLP_DEC_HEX, "secret text!");
	reset();
}

AB_TEST(dlp_decode_skips_binary_hashes_and_uuids)
{
	/* SHA-256 of nothing, a UUID, random base64: all decode to binary. */
	decode("sha256 e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 "
	       "id 550e8400-e29b-41d4-a716-446655440000 "
	       "key AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJw== "
	       "mac 00:1a:2b:3c:4d:5e internationalization_and_localization");
	CHECK_EQ_INT(ngot, 0);
	reset();
}

AB_TEST(dlp_decode_basic_auth)
{
	const char *s = "Authorization: basic dXNlcjpwYXNz\r\n";
	decode(s);
	dlp_region *r = only(DLP_DEC_BASIC_AUTH, "user:pass");
	CHECK_EQ_INT(r->start, at(s, "dXNl"));
	CHECK_EQ_INT(r->end, at(s, "\r\n"));
	reset();
	/* A long one is reported once, as credentials, not also as base64. */
	decode("Authorization: Basic YWxpY2U6Y29ycmVjdC1ob3JzZS1mYWtl");
	only(DLP_DEC_BASIC_AUTH, "alice:correct-horse-fake");
	reset();
	/* Not credentials: no colon. */
	decode("Authorization: Basic aGVsbG8=\r\n");
	CHECK_EQ_INT(ngot, 0);
	reset();
}

/* The run finders look at blocks of 16 and 64 bytes: a run is found the
 * same wherever it falls (across a block's edge, in the tail), whatever
 * short words come before it. */
AB_TEST(dlp_decode_runs_found_at_any_offset)
{
	static const char filler[] = "ab cd, ef gh; ";
	static const struct {
		const char *text; /* placed after the filler */
		const char *from; /* where the region starts */
		enum dlp_decoder dec;
		const char *want;
	} cases[] = {
	    {"k=c2VjcmV0IHRleHQgaGVyZSBhbmQgbW9yZQ== .", "c2Vj", DLP_DEC_BASE64,
	     "secret text here and more"},
	    {"Authorization: Basic \t Ym9iOmZha2UtcGFzcw== x", "Ym9i", DLP_DEC_BASIC_AUTH,
	     "bob:fake-pass"},
	    {"x 73 65 63 72 65 74 20 74 65 78 74 21.", "73 65", DLP_DEC_HEX, "secret text!"},
	    {"x \\x73\\x65\\x63\\x72\\x65\\x74\\x20\\x74\\x65\\x78\\x74\\x21 y", "\\x73",
	     DLP_DEC_HEX, "secret text!"},
	    {"h=736563726574207465787420686572652121 ", "7365", DLP_DEC_HEX, "secret text here!!"},
	};
	char buf[512];
	for (size_t c = 0; c < sizeof(cases) / sizeof(*cases); c++) {
		for (size_t off = 0; off < 150; off++) {
			for (size_t k = 0; k < off; k++)
				buf[k] = filler[k % (sizeof(filler) - 1)];
			snprintf(buf + off, sizeof(buf) - off, "%s", cases[c].text);
			decode(buf);
			dlp_region *r = only(cases[c].dec, cases[c].want);
			CHECK_EQ_INT(r->start, at(buf, cases[c].from));
			/* The same with short words after it too. */
			size_t n = strlen(buf);
			snprintf(buf + n, sizeof(buf) - n, "%.*s",
				 (int)(off % (sizeof(filler) - 1)), filler);
			decode(buf);
			only(cases[c].dec, cases[c].want);
		}
	}
	reset();
}

/* "Basic" right after a run that was itself looked at (a long run ending
 * in "/basic", or a "basic" run after "Basic"): the credentials after it
 * are still found. */
AB_TEST(dlp_decode_basic_after_a_run)
{
	const char *s = "Authorization: Basic basic Ym9iOmZha2UtcGFzcw==\r\n";
	decode(s);
	dlp_region *r = only(DLP_DEC_BASIC_AUTH, "bob:fake-pass");
	CHECK_EQ_INT(r->start, at(s, "Ym9i"));
	reset();
	s = "p=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/basic Ym9iOmZha2UtcGFzcw==";
	decode(s);
	bool found = false;
	for (size_t i = 0; i < ngot; i++)
		found |= got[i].decoder == DLP_DEC_BASIC_AUTH && got[i].start == at(s, "Ym9i");
	CHECK(found);
	reset();
	/* A long run and credentials close together: both, in order. */
	s = "k=c2VjcmV0IHRleHQgaGVyZSBhbmQgbW9yZQ== Basic Ym9iOmZha2UtcGFzcw==";
	decode(s);
	CHECK_EQ_INT(ngot, 2);
	CHECK_EQ_INT(got[0].decoder, DLP_DEC_BASE64);
	CHECK_EQ_INT(got[0].start, at(s, "c2Vj"));
	CHECK_EQ_INT(got[1].decoder, DLP_DEC_BASIC_AUTH);
	CHECK_EQ_INT(got[1].start, at(s, "Ym9i"));
	reset();
}

AB_TEST(dlp_decode_percent_one_round_at_a_time)
{
	const char *s = "GET /search?q=hello%20world%21&x=1 HTTP/1.1";
	decode(s);
	dlp_region *r = only(DLP_DEC_PERCENT, "/search?q=hello world!&x=1");
	CHECK_EQ_INT(r->start, at(s, "/search"));
	CHECK_EQ_INT(r->end, at(s, " HTTP"));
	size_t sp = at(r->buf.data, " world");
	CHECK_EQ_INT(r->buf.map[sp], at(s, "%20"));
	CHECK_EQ_INT(r->buf.map[sp + 1], at(s, "%20") + 3);
	reset();
	/* Twice encoded: the engine decodes the result again. */
	decode("v=%2541%2542%2B");
	r = only(DLP_DEC_PERCENT, "v=%41%42+");
	char *again = strndup(r->buf.data, r->buf.len);
	CHECK(again);
	decode(again);
	/* With '+' in a field, the field is also read as a form would be. */
	CHECK_EQ_INT(ngot, 2);
	CHECK_EQ_INT(got[0].decoder, DLP_DEC_PERCENT);
	CHECK(got[0].buf.len == 5 && memcmp(got[0].buf.data, "v=AB+", 5) == 0);
	CHECK_EQ_INT(got[1].decoder, DLP_DEC_FORM);
	CHECK(got[1].buf.len == 5 && memcmp(got[1].buf.data, "v=AB ", 5) == 0);
	free(again);
	reset();
	/* A URL or a form body: '+' is a space, the whole view one region. */
	dlp_decode_opts o = {.content_type = "application/x-www-form-urlencoded; charset=utf-8"};
	s = "user=alice&note=a+b%2Bc";
	decode_opts(s, strlen(s), &o);
	r = only(DLP_DEC_FORM, "user=alice&note=a b+c");
	CHECK_EQ_INT(r->start, 0);
	CHECK_EQ_INT(r->end, strlen(s));
	reset();
	dlp_decode_opts u = {.url = true};
	decode_opts("q=a+b", 5, &u);
	only(DLP_DEC_FORM, "q=a b");
	reset();
	/* Binary percent-encoding is not worth scanning. */
	decode("%00%01%02%03%04%05%06%07%08");
	CHECK_EQ_INT(ngot, 0);
	reset();
}

/* gzip (wbits 31), zlib (15) or raw deflate (-15) of s. */
static size_t compress_as(const char *s, size_t n, int wbits, unsigned char *out, size_t cap)
{
	z_stream z = {0};
	CHECK_EQ_INT(deflateInit2(&z, 9, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY), Z_OK);
	z.next_in = (unsigned char *)s;
	z.avail_in = (unsigned)n;
	z.next_out = out;
	z.avail_out = (unsigned)cap;
	CHECK_EQ_INT(deflate(&z, Z_FINISH), Z_STREAM_END);
	size_t len = z.total_out;
	deflateEnd(&z);
	return len;
}

AB_TEST(dlp_decode_gzip_anywhere_zlib_and_deflate_when_whole)
{
	const char *text = "api_key=fake_value_0123456789 in a compressed body";
	unsigned char buf[512];
	memcpy(buf, "prefix", 6);
	size_t n = compress_as(text, strlen(text), 31, buf + 6, sizeof(buf) - 6);
	memcpy(buf + 6 + n, "suffix", 6);
	decode_opts((char *)buf, n + 12, NULL);
	dlp_region *r = only(DLP_DEC_GZIP, text);
	CHECK_EQ_INT(r->start, 6);
	CHECK_EQ_INT(r->end, 6 + n);
	CHECK_EQ_INT(r->buf.map[r->buf.len - 1], 6);
	reset();
	/* Truncated: what inflated before the end. */
	decode_opts((char *)buf, 6 + n - 12, NULL);
	CHECK_EQ_INT(ngot, 1);
	CHECK(got[0].buf.len > 0 && got[0].buf.len <= strlen(text));
	CHECK(memcmp(got[0].buf.data, text, got[0].buf.len) == 0);
	reset();
	/* zlib and raw deflate only in a whole body. */
	dlp_decode_opts whole = {.whole = true};
	n = compress_as(text, strlen(text), 15, buf, sizeof(buf));
	decode_opts((char *)buf, n, NULL);
	CHECK_EQ_INT(ngot, 0);
	decode_opts((char *)buf, n, &whole);
	only(DLP_DEC_GZIP, text);
	reset();
	n = compress_as(text, strlen(text), -15, buf, sizeof(buf));
	decode_opts((char *)buf, n, &whole);
	only(DLP_DEC_GZIP, text);
	reset();
	/* Text is not raw deflate. */
	decode_opts(text, strlen(text), &whole);
	CHECK_EQ_INT(ngot, 0);
	reset();
}

AB_TEST(dlp_decode_base64_of_gzip_takes_two_calls)
{
	const char *s =
	    "payload=H4sIAAAAAAACA0ssyIzPTq20TUvMTo0vS8wpTY03MDQyNjE1M7ewVMjMU0ivyiwAAFlryF4lAAAA";
	decode(s);
	CHECK_EQ_INT(ngot, 1);
	CHECK_EQ_INT(got[0].decoder, DLP_DEC_BASE64);
	CHECK(got[0].buf.data[0] == 0x1f);
	dlp_buf inner = got[0].buf;
	got[0].buf = (dlp_buf){0};
	ngot = 0;
	dlp_decode_opts whole = {.whole = true};
	decode_opts(inner.data, inner.len, &whole);
	only(DLP_DEC_GZIP, "api_key=fake_value_0123456789 in gzip");
	dlp_buf_free(&inner);
	reset();
}

AB_TEST(dlp_decode_multipart_parts)
{
	const char *s = "--XyZ\r\n"
			"Content-Disposition: form-data; name=\"a\"\r\n\r\n"
			"plain value\r\n"
			"--XyZ\r\n"
			"Content-Disposition: form-data; name=\"b\"\r\n"
			"Content-Transfer-Encoding: base64\r\n\r\n"
			"Zmlyc3QgcGFydCB0ZXh0LCBiYXNlNjQgZW5jb2RlZCBpbiBhIG11bHRp\r\n"
			"cGFydCBib2R5\r\n"
			"--XyZ\r\n"
			"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
			"caf=C3=A9 soft=\r\nbreak\r\n"
			"--XyZ--\r\n";
	dlp_decode_opts o = {.content_type = "multipart/form-data; boundary=\"XyZ\""};
	for (int pass = 0; pass < 2; pass++) {
		/* From the Content-Type, then from the first line. */
		decode_opts(s, strlen(s), pass ? NULL : &o);
		CHECK_EQ_INT(ngot, 3);
		CHECK_EQ_INT(got[0].decoder, DLP_DEC_MULTIPART);
		CHECK_EQ_INT(got[0].buf.len, 11);
		CHECK(memcmp(got[0].buf.data, "plain value", 11) == 0);
		CHECK_EQ_INT(got[0].start, at(s, "plain"));
		CHECK_EQ_INT(got[1].decoder, DLP_DEC_BASE64);
		CHECK_EQ_INT(got[1].buf.len,
			     strlen("first part text, base64 encoded in a multipart body"));
		CHECK(memcmp(got[1].buf.data, "first part text", 15) == 0);
		CHECK_EQ_INT(got[1].buf.map[0], at(s, "Zmly"));
		CHECK_EQ_INT(got[2].decoder, DLP_DEC_QUOTED_PRINTABLE);
		CHECK_EQ_INT(got[2].buf.len, strlen("café softbreak"));
		CHECK(memcmp(got[2].buf.data, "café softbreak", got[2].buf.len) == 0);
		CHECK_EQ_INT(got[2].buf.map[3], at(s, "=C3"));
		CHECK_EQ_INT(got[2].buf.map[4], at(s, "=A9"));
		CHECK_EQ_INT(got[2].buf.map[5], at(s, "=A9") + 3);
		reset();
	}
}

AB_TEST(dlp_decode_dashes_are_not_a_boundary)
{
	/* YAML's "---" first line is no multipart boundary: what follows is
	 * still decoded. */
	decode("---\nkey: dGhlIHF1aWNrIGJyb3duIGZveCBqdW1wcyBvdmVyIHRoZSBsYXp5IGRvZw==\n---\n");
	only(DLP_DEC_BASE64, "the quick brown fox jumps over the lazy dog");
	reset();
	/* Nor is a boundary that frames no part. */
	decode("--abc\nkey: dGhlIHF1aWNrIGJyb3duIGZveCBqdW1wcyBvdmVyIHRoZSBsYXp5IGRvZw==\n");
	only(DLP_DEC_BASE64, "the quick brown fox jumps over the lazy dog");
	reset();
}

AB_TEST(dlp_decode_bounded_on_adversarial_input)
{
	size_t n = 10u << 20;
	char *s = malloc(n + 1);
	CHECK(s);
	/* A 10 MB run of 'A' decodes to zeros: nothing to report. */
	memset(s, 'A', n);
	s[n] = 0;
	decode_opts(s, n, NULL);
	CHECK_EQ_INT(ngot, 0);
	/* A million '%' and a million "%%41". */
	memset(s, '%', 1u << 20);
	decode_opts(s, 1u << 20, NULL);
	CHECK_EQ_INT(ngot, 0);
	for (size_t i = 0; i + 4 <= (1u << 20); i += 4)
		memcpy(s + i, "%%41", 4);
	decode_opts(s, 1u << 20, NULL);
	CHECK_EQ_INT(ngot, 1);
	reset();
	/* Hex-looking pairs without end. */
	for (size_t i = 0; i + 3 <= (1u << 20); i += 3)
		memcpy(s + i, "00 ", 3);
	decode_opts(s, 1u << 20, NULL);
	CHECK_EQ_INT(ngot, 0);
	/* Fake gzip headers whose file name never ends. */
	for (size_t i = 0; i + 4 <= (1u << 20); i += 4)
		memcpy(s + i, "\x1f\x8b\x08\x08", 4);
	decode_opts(s, 1u << 20, NULL);
	CHECK_EQ_INT(ngot, 0);
	/* An endless multipart body: parts stop at a bound. */
	size_t m = 0;
	while (m + 16 <= n / 4) {
		memcpy(s + m, "--b\r\n\r\nvalue\r\n", 14);
		m += 14;
	}
	decode_opts(s, m, NULL);
	CHECK(ngot > 0 && ngot < MAX_REGIONS);
	reset();
	/* A gzip bomb stops at max_out. */
	char *zeros = calloc(1, 1u << 22);
	unsigned char *z = malloc(1u << 16);
	CHECK(zeros && z);
	memset(zeros, 'a', 1u << 22);
	size_t zn = compress_as(zeros, 1u << 22, 31, z, 1u << 16);
	dlp_decode_opts o = {.max_out = 1000};
	decode_opts((char *)z, zn, &o);
	CHECK_EQ_INT(ngot, 1);
	CHECK_EQ_INT(got[0].buf.len, 1000);
	reset();
	free(zeros);
	free(z);
	free(s);
}

AB_TEST(dlp_decode_stops_on_callback_error)
{
	static int calls;
	int stop(void *ctx, dlp_region *r);
	calls = 0;
	const char *s = "dGhlIHF1aWNrIGJyb3duIGZveCBqdW1wcyBvdmVyIHRoZSBsYXp5IGRvZw== and "
			"dGhlIHF1aWNrIGJyb3duIGZveCBqdW1wcyBvdmVyIHRoZSBsYXp5IGRvZw==";
	CHECK_EQ_INT(dlp_decode(s, strlen(s), NULL, stop, &calls), -ENOMEM);
	CHECK_EQ_INT(calls, 1);
}

int stop(void *ctx, dlp_region *r);
int stop(void *ctx, dlp_region *r)
{
	++*(int *)ctx;
	dlp_buf_free(&r->buf);
	return -ENOMEM;
}
