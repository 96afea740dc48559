/* test_engine.c - the engine around the detectors: spans mapped back
 * through views, decoder chains, windows and streams, the cap on findings,
 * the policy names and the salted hash. */
#include <zlib.h>

#include "dlp_internal.h"
#include "unit.h"

#define KEY "AKIAQ3EGRJ7WXZ5TLN4K" /* fake, valid format */

static dlp_engine *engine(void)
{
	char err[256];
	dlp_engine *e = dlp_engine_new(err, sizeof(err));
	if (!e) {
		fprintf(stderr, "dlp_engine_new: %s\n", err);
		exit(1);
	}
	return e;
}

static size_t count(const dlp_findings *f, const char *kind)
{
	size_t n = 0;
	for (size_t i = 0; i < f->n; i++)
		n += strcmp(f->v[i].kind, kind) == 0;
	return n;
}

AB_TEST(dlp_engine_maps_a_decoded_value_back_and_names_the_chain)
{
	dlp_engine *e = engine();
	/* "key=AKIA..." in base64, inside percent-encoding. */
	const char *text = "q=a2V5PUFLSUFRM0VHUko3V1haNVRMTjRL%3D%3D&x=1";
	dlp_opts o = {.values = true, .url = true};
	dlp_findings f = {0};
	CHECK_EQ_INT(dlp_scan(e, text, strlen(text), &o, &f), 0);
	CHECK_EQ_INT(count(&f, "aws_access_key_id"), 1);
	const dlp_finding *x = &f.v[0];
	CHECK_STR(x->value, KEY);
	CHECK(x->start >= 2 && x->end <= strlen(text) - 4); /* inside the blob */
	bool b64 = false;
	for (size_t k = 0; k < x->nchain; k++)
		b64 = b64 || x->chain[k] == DLP_DEC_BASE64;
	CHECK(b64);
	CHECK_STR(dlp_decoder_name(DLP_DEC_BASE64), "base64");
	CHECK_STR(dlp_decoder_name((enum dlp_decoder)99), "?");
	dlp_findings_free(&f);
	dlp_engine_free(e);
}

AB_TEST(dlp_engine_stream_in_any_pieces_finds_what_one_scan_finds)
{
	dlp_engine *e = engine();
	const char *text = "cfg:\n  aws_access_key_id: " KEY "\n  contact: hanako.yamada@corp-mail.jp\n"
			   "  card: 4111 1111 1111 1111\n";
	dlp_opts o = {.values = true};
	dlp_findings whole = {0};
	CHECK_EQ_INT(dlp_scan(e, text, strlen(text), &o, &whole), 0);
	CHECK_EQ_INT(whole.n, 3);
	for (size_t piece = 1; piece < 40; piece += 3) {
		dlp_stream *s = dlp_stream_open(e, &o);
		dlp_findings f = {0};
		for (size_t off = 0; off < strlen(text); off += piece) {
			size_t n = strlen(text) - off < piece ? strlen(text) - off : piece;
			CHECK_EQ_INT(dlp_stream_feed(s, text + off, n, &f), 0);
		}
		CHECK_EQ_INT(dlp_stream_close(s, &f), 0);
		CHECK_EQ_INT(f.n, whole.n);
		for (size_t i = 0; i < f.n; i++) {
			CHECK_STR(f.v[i].kind, whole.v[i].kind);
			CHECK_EQ_INT(f.v[i].start, whole.v[i].start);
			CHECK_EQ_INT(f.v[i].end, whole.v[i].end);
		}
		dlp_findings_free(&f);
	}
	dlp_findings_free(&whole);
	dlp_engine_free(e);
}

AB_TEST(dlp_engine_finds_a_value_on_a_window_seam_once)
{
	dlp_engine *e = engine();
	size_t len = 3u << 20;
	char *big = malloc(len);
	CHECK(big);
	for (size_t i = 0; i < len; i++)
		big[i] = "lorem ipsum dolor sit amet\n"[i % 27];
	/* Across the first seam (1 MiB), and inside the overlap of the
	 * second window with the third. */
	size_t at[] = {(1u << 20) - 9, (2u << 20) - (16u << 10) - 9};
	for (size_t k = 0; k < 2; k++) {
		big[at[k] - 1] = ' ';
		memcpy(big + at[k], KEY, strlen(KEY));
		big[at[k] + strlen(KEY)] = ' ';
	}
	dlp_findings f = {0};
	CHECK_EQ_INT(dlp_scan(e, big, len, NULL, &f), 0);
	CHECK_EQ_INT(f.n, 2);
	CHECK_EQ_INT(f.v[0].start, at[0]);
	CHECK_EQ_INT(f.v[1].start, at[1]);
	dlp_findings_free(&f);
	free(big);
	dlp_engine_free(e);
}

AB_TEST(dlp_engine_caps_the_findings_and_says_so)
{
	dlp_engine *e = engine();
	const char *one = "x hanako.yamada@corp-mail.jp\n";
	size_t n1 = strlen(one), reps = DLP_MAX_FINDINGS + 100;
	char *text = malloc(n1 * reps + 1);
	CHECK(text);
	for (size_t i = 0; i < reps; i++)
		memcpy(text + i * n1, one, n1);
	dlp_findings f = {0};
	CHECK_EQ_INT(dlp_scan(e, text, n1 * reps, NULL, &f), 0);
	CHECK_EQ_INT(f.n, DLP_MAX_FINDINGS);
	CHECK(f.truncated);
	dlp_findings_free(&f);
	CHECK(f.n == 0 && f.v == NULL && !f.truncated);
	free(text);
	dlp_engine_free(e);
}

AB_TEST(dlp_engine_reports_a_value_inside_gzip_as_the_whole_stream)
{
	dlp_engine *e = engine();
	unsigned char gz[256];
	z_stream z = {0};
	CHECK(deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) == Z_OK);
	const char *plain = "aws_access_key_id = " KEY;
	z.next_in = (unsigned char *)plain;
	z.avail_in = (unsigned)strlen(plain);
	z.next_out = gz;
	z.avail_out = sizeof(gz);
	CHECK(deflate(&z, Z_FINISH) == Z_STREAM_END);
	size_t n = sizeof(gz) - z.avail_out;
	deflateEnd(&z);
	dlp_findings f = {0};
	CHECK_EQ_INT(dlp_scan(e, gz, n, NULL, &f), 0);
	CHECK_EQ_INT(count(&f, "aws_access_key_id"), 1);
	CHECK_EQ_INT(f.v[0].chain[0], DLP_DEC_GZIP);
	CHECK_EQ_INT(f.v[0].start, 0); /* the whole compressed stream */
	CHECK_EQ_INT(f.v[0].end, n);
	dlp_findings_free(&f);
	dlp_engine_free(e);
}

AB_TEST(dlp_names_of_detectors_and_actions)
{
	CHECK(dlp_detector_count() >= 44);
	CHECK(dlp_detector_find("jp_my_number") != NULL);
	CHECK(dlp_detector_find("nope") == NULL);
	long i = dlp_detector_index("email");
	CHECK(i >= 0);
	CHECK_STR(dlp_detector_at((size_t)i)->kind, "email");
	CHECK(dlp_detector_at(dlp_detector_count()) == NULL);
	CHECK_EQ_INT(dlp_action_parse("redact"), DLP_ACTION_REDACT);
	CHECK_EQ_INT(dlp_action_parse("Redact"), DLP_ACTION_UNSET);
	CHECK_EQ_INT(dlp_action_parse(NULL), DLP_ACTION_UNSET);
	CHECK_STR(dlp_action_name(DLP_ACTION_LOG), "log");
	CHECK_EQ_INT(dlp_action_default(DLP_SECRET), DLP_ACTION_BLOCK);
	CHECK_EQ_INT(dlp_action_default(DLP_PII), DLP_ACTION_REDACT);
	CHECK(DLP_ACTION_BLOCK > DLP_ACTION_REDACT && DLP_ACTION_REDACT > DLP_ACTION_LOG &&
	      DLP_ACTION_LOG > DLP_ACTION_OFF);
}

AB_TEST(dlp_value_hash_is_keyed_by_the_salt)
{
	unsigned char a[32], b[32];
	CHECK_EQ_INT(dlp_salt_parse("00112233445566778899aabbccddeeff", a, sizeof(a)), 16);
	CHECK_EQ_INT(dlp_salt_parse("00112233445566778899aabbccddeef", a, sizeof(a)), -1);
	CHECK_EQ_INT(dlp_salt_parse("00112233445566778899AABBCCDDEEFF", a, sizeof(a)), -1);
	CHECK_EQ_INT(dlp_salt_parse("0011", a, sizeof(a)), -1);
	CHECK_EQ_INT(dlp_salt_parse("ffeeddccbbaa99887766554433221100", b, sizeof(b)), 16);
	char h1[DLP_HASH_LEN + 1], h2[DLP_HASH_LEN + 1], h3[DLP_HASH_LEN + 1];
	dlp_value_hash(a, 16, KEY, strlen(KEY), h1);
	dlp_value_hash(a, 16, KEY, strlen(KEY), h2);
	dlp_value_hash(b, 16, KEY, strlen(KEY), h3);
	CHECK_STR(h1, h2);
	CHECK(strcmp(h1, h3) != 0);
	CHECK_EQ_INT(strlen(h1), DLP_HASH_LEN);
	CHECK(strncmp(h1, "hmac-sha256:", 12) == 0);
}

/* The pass that finds numbers and codes (engine.c, scan_tokens) reads
 * blocks of 48 bytes: a value at any offset from a block's edge, among
 * numbers that are not values (dates, times, short ids), is found at its
 * place. */
AB_TEST(dlp_engine_finds_numbers_and_codes_at_any_offset)
{
	dlp_engine *e = engine();
	static const struct {
		const char *text, *kind;
		size_t at; /* where the value starts in text */
	} cases[] = {
	    {"card 4111 1111 1111 1111; ", "credit_card", 5},
	    {"tel 090-4816-2342; ", "phone_number", 4},
	    {"IBAN GB82 WEST 1234 5698 7654 32; ", "iban", 5},
	    {"SSN 219-09-9999; ", "us_ssn", 4},
	    {"在留カード AB12345678CD; ", "jp_residence_card", 16},
	    {"National Insurance number: AB 12 34 56 C; ", "uk_national_insurance", 27},
	};
	const char *filler = "at 2026-11-30 12:00:07 id=42 n=7.5 (x) -- ";
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++)
		for (size_t off = 0; off < 150; off++) {
			char buf[512];
			size_t n = 0;
			while (n < off) {
				size_t k = strlen(filler) < off - n ? strlen(filler) : off - n;
				memcpy(buf + n, filler, k);
				n += k;
			}
			if (off && buf[off - 1] != ' ')
				buf[off - 1] = ' ';
			snprintf(buf + off, sizeof(buf) - off, "%s%s%s", cases[c].text, filler,
				 filler);
			dlp_findings f = {0};
			CHECK_EQ_INT(dlp_scan(e, buf, strlen(buf), NULL, &f), 0);
			size_t hits = 0;
			for (size_t i = 0; i < f.n; i++)
				if (strcmp(f.v[i].kind, cases[c].kind) == 0) {
					hits++;
					if (f.v[i].start != off + cases[c].at)
						fprintf(stderr, "%s at %zu: start %zu\n", cases[c].kind,
							off, f.v[i].start);
					CHECK_EQ_INT(f.v[i].start, off + cases[c].at);
				}
			if (hits != 1)
				fprintf(stderr, "%s at offset %zu: %zu findings\n", cases[c].kind, off,
					hits);
			CHECK_EQ_INT(hits, 1);
			dlp_findings_free(&f);
		}
	dlp_engine_free(e);
}
