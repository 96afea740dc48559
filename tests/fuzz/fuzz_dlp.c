/* fuzz_dlp.c - the DLP engine (src/dlp/): what a sandbox sends, scanned
 * with every decoder (base64/32, hex, percent, form, gzip, multipart,
 * Basic credentials) and the normaliser (UTF-8, HTML and JSON escapes).
 *
 * Input: byte 0 chooses the options (a multipart content type, url, the
 * depth) and seeds the split sizes; the rest is the bytes. Invariants:
 *  - every finding names a known detector and decoders, has a confidence
 *    in [0.5, 1] and a non-empty span inside the input;
 *  - findings are sorted by start;
 *  - the stream API fed in random pieces finds exactly what one scan
 *    finds (the input is smaller than one window);
 *  - a value is NUL-terminated text no longer than what decoding can
 *    make of the input. */
#include <stdbool.h>

#include "dlp.h"
#include "fuzz.h"

static dlp_engine *engine;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	char err[256];
	engine = dlp_engine_new(err, sizeof(err));
	if (!engine) {
		fprintf(stderr, "fuzz_dlp: %s\n", err);
		abort();
	}
	return 0;
}

static void check(const dlp_findings *f, size_t len)
{
	for (size_t i = 0; i < f->n; i++) {
		const dlp_finding *x = &f->v[i];
		FUZZ_CHECK(dlp_detector_index(x->kind) >= 0);
		FUZZ_CHECK(x->confidence >= 0.5f && x->confidence <= 1.0f);
		FUZZ_CHECK(x->start < x->end && x->end <= len);
		FUZZ_CHECK(i == 0 || f->v[i - 1].start <= x->start);
		FUZZ_CHECK(x->nchain <= DLP_MAX_CHAIN);
		for (size_t k = 0; k < x->nchain; k++)
			FUZZ_CHECK(x->chain[k] > DLP_DEC_NONE && x->chain[k] < DLP_DEC_COUNT);
		FUZZ_CHECK(x->value);
	}
}

static bool same(const dlp_findings *a, const dlp_findings *b)
{
	if (a->n != b->n)
		return false;
	for (size_t i = 0; i < a->n; i++)
		if (strcmp(a->v[i].kind, b->v[i].kind) != 0 || a->v[i].start != b->v[i].start ||
		    a->v[i].end != b->v[i].end || strcmp(a->v[i].value, b->v[i].value) != 0)
			return false;
	return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint32_t seed = data[0] | 0x100u;
	const char *d = (const char *)data + 1;
	size_t n = size - 1;
	dlp_opts o = {.values = true,
		      .url = (data[0] & 1) != 0,
		      .content_type = (data[0] & 2) ? "multipart/form-data; boundary=zz" : NULL,
		      .max_depth = (data[0] >> 2) & 7};

	dlp_findings whole = {0};
	FUZZ_CHECK(dlp_scan(engine, d, n, &o, &whole) == 0);
	check(&whole, n);

	dlp_findings pieces = {0};
	dlp_stream *s = dlp_stream_open(engine, &o);
	FUZZ_CHECK(s);
	for (size_t off = 0; off < n;) {
		size_t chunk = 1 + fuzz_next(&seed) % 64;
		if (chunk > n - off)
			chunk = n - off;
		FUZZ_CHECK(dlp_stream_feed(s, d + off, chunk, &pieces) == 0);
		off += chunk;
	}
	FUZZ_CHECK(dlp_stream_close(s, &pieces) == 0);
	FUZZ_CHECK(same(&whole, &pieces));
	dlp_findings_free(&whole);
	dlp_findings_free(&pieces);
	return 0;
}
