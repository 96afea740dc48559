/* decode.c - the decoded views (docs/dlp.md, "Decoders").
 *
 * Each finder walks the view once and reports the regions it can decode;
 * the engine scans each region and calls dlp_decode on it again, so a
 * nested encoding (base64 of gzip, percent-encoding twice) is undone one
 * layer per call. Every finder is linear in the view: a failed attempt
 * moves past what it looked at, and each decoded region is bounded by
 * max_out. A region is reported only when what it decodes to is worth
 * scanning: mostly printable text, or a compressed stream. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "dlp_internal.h"

static const char *const decoder_names[DLP_DEC_COUNT] = {
    [DLP_DEC_NFKC] = "nfkc",
    [DLP_DEC_INVISIBLE] = "invisible",
    [DLP_DEC_HTML] = "html",
    [DLP_DEC_JSON] = "json",
    [DLP_DEC_BASE64] = "base64",
    [DLP_DEC_BASE64URL] = "base64url",
    [DLP_DEC_BASE32] = "base32",
    [DLP_DEC_HEX] = "hex",
    [DLP_DEC_PERCENT] = "percent",
    [DLP_DEC_FORM] = "form",
    [DLP_DEC_GZIP] = "gzip",
    [DLP_DEC_MULTIPART] = "multipart",
    [DLP_DEC_QUOTED_PRINTABLE] = "quoted_printable",
    [DLP_DEC_BASIC_AUTH] = "basic_auth",
};

const char *dlp_decoder_name(enum dlp_decoder d)
{
	if ((int)d <= DLP_DEC_NONE || d >= DLP_DEC_COUNT)
		return "?";
	return decoder_names[d];
}

/* The default bound on one decoded region. */
#define DEFAULT_MAX_OUT (8u << 20)
/* Base64 runs shorter than this are too short to hide a value worth the
 * decoding (Basic credentials excepted). */
#define MIN_BASE64 20
#define MIN_BASE32 24
#define MIN_HEX_DIGITS 24
#define MIN_HEX_BYTES 12
/* Multipart bodies: parts beyond this are left to the original view. */
#define MAX_PARTS 4096

struct dec {
	const unsigned char *p;
	size_t len;
	const dlp_decode_opts *o;
	size_t max_out;
	dlp_region_fn fn;
	void *ctx;
};

/* ---- Helpers ----------------------------------------------------------- */

/* The alphabets as tables: the run finder looks at every byte of every
 * view, so each test is one load. Filled once (tables_once). */
static signed char hex_tab[256], b64_tab[256], b32_tab[256];
/* For text_ratio: text (printable ASCII, tab, CR, LF), not text, or a
 * byte that may start a UTF-8 character. */
enum { TEXT_OK = 0, TEXT_BAD = 1, TEXT_LEAD = 2 };
static unsigned char text_tab[256];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void tables_make(void)
{
	for (int c = 0; c < 256; c++) {
		hex_tab[c] = (signed char)(c >= '0' && c <= '9'	  ? c - '0'
					   : c >= 'a' && c <= 'f' ? c - 'a' + 10
					   : c >= 'A' && c <= 'F' ? c - 'A' + 10
								  : -1);
		b64_tab[c] = (signed char)(c >= 'A' && c <= 'Z'	  ? c - 'A'
					   : c >= 'a' && c <= 'z' ? c - 'a' + 26
					   : c >= '0' && c <= '9' ? c - '0' + 52
					   : c == '+' || c == '-' ? 62
					   : c == '/' || c == '_' ? 63
								  : -1);
		b32_tab[c] = (signed char)(c >= 'A' && c <= 'Z'	  ? c - 'A'
					   : c >= '2' && c <= '7' ? c - '2' + 26
								  : -1);
		text_tab[c] = (c >= 0x20 && c < 0x7F) || c == '\t' || c == '\n' || c == '\r'
				  ? TEXT_OK
			      : c >= 0xC2 && c <= 0xF4 ? TEXT_LEAD
						       : TEXT_BAD;
	}
}

static inline int hexval(unsigned char c)
{
	return hex_tab[c];
}

static inline int b64val(unsigned char c)
{
	return b64_tab[c];
}

static inline int b32val(unsigned char c)
{
	return b32_tab[c];
}

static int lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c + 32 : c;
}

static bool alnum(unsigned char c)
{
	return (c >= '0' && c <= '9') || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

/* Case-insensitive prefix (ASCII). */
static bool prefix_ci(const unsigned char *p, size_t n, const char *w)
{
	size_t wl = strlen(w);
	if (n < wl)
		return false;
	for (size_t i = 0; i < wl; i++)
		if (lower(p[i]) != lower((unsigned char)w[i]))
			return false;
	return true;
}

/* The length of a well-formed multibyte UTF-8 sequence at p, or 0. */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
	unsigned char c = p[0];
	size_t k = c >= 0xC2 && c <= 0xDF   ? 2
		   : c >= 0xE0 && c <= 0xEF ? 3
		   : c >= 0xF0 && c <= 0xF4 ? 4
					    : 0;
	if (!k || n < k)
		return 0;
	for (size_t i = 1; i < k; i++)
		if ((p[i] & 0xC0) != 0x80)
			return 0;
	if ((c == 0xE0 && p[1] < 0xA0) || (c == 0xED && p[1] > 0x9F) ||
	    (c == 0xF0 && p[1] < 0x90) || (c == 0xF4 && p[1] > 0x8F))
		return 0;
	return k;
}

/* At least 85% of the bytes are text: printable ASCII, tab, CR, LF, or
 * part of a well-formed UTF-8 character. Hashes, UUIDs and random keys
 * decode to binary and fail this. */
static bool text_ratio(const unsigned char *p, size_t n, unsigned percent)
{
	/* Most of what is looked at is binary: the count stops as soon as
	 * the bytes that are not text are too many for the ratio. Bytes are
	 * classed by table, so random bytes cost no mispredicted branch
	 * each; only a possible UTF-8 lead byte is looked at further. */
	size_t bad = 0, most_bad = n * (100 - percent) / 100;
	for (size_t i = 0; i < n;) {
		unsigned t = text_tab[p[i]];
		if (t == TEXT_LEAD) {
			size_t k = utf8_seq(p + i, n - i);
			if (k) {
				i += k;
				continue;
			}
			t = TEXT_BAD;
		}
		bad += t;
		i++;
		if (bad > most_bad)
			return false;
	}
	return n > 0;
}

static bool printable(const unsigned char *p, size_t n)
{
	return text_ratio(p, n, 85);
}

static bool zlib_header(const unsigned char *p, size_t n)
{
	return n >= 2 && p[0] == 0x78 &&
	       (p[1] == 0x01 || p[1] == 0x5E || p[1] == 0x9C || p[1] == 0xDA);
}

static bool gzip_header(const unsigned char *p, size_t n)
{
	return n >= 3 && p[0] == 0x1F && p[1] == 0x8B && p[2] == 0x08;
}

static bool worth_scanning(const unsigned char *p, size_t n)
{
	return gzip_header(p, n) || zlib_header(p, n) || printable(p, n);
}

/* A region under construction: data and map grow together. */
struct rbuf {
	dlp_buf b;
	size_t cap;
};

static int rb_init(struct rbuf *r, size_t cap)
{
	if (cap == 0)
		cap = 1;
	r->b.data = malloc(cap);
	r->b.map = malloc((cap + 1) * sizeof(uint32_t));
	r->b.len = 0;
	r->cap = cap;
	if (!r->b.data || !r->b.map) {
		dlp_buf_free(&r->b);
		return -ENOMEM;
	}
	return 0;
}

static void rb_put(struct rbuf *r, unsigned char c, size_t from)
{
	r->b.data[r->b.len] = (char)c;
	r->b.map[r->b.len++] = (uint32_t)from;
}

/* Hands the region to the engine (which then owns its buffer). */
static int report(struct dec *d, enum dlp_decoder dec, size_t start, size_t end, struct rbuf *r)
{
	r->b.map[r->b.len] = (uint32_t)end;
	dlp_region reg = {.decoder = dec, .start = start, .end = end, .buf = r->b};
	r->b.data = NULL;
	r->b.map = NULL;
	r->b.len = 0;
	return d->fn(d->ctx, &reg);
}

/* ---- Base64, base32 and hex runs ------------------------------------- */

/* Decodes base64 from [s, e): bytes that are not in the alphabet are
 * skipped (a line break, or the two bytes of a JSON-escaped "\n"); it
 * stops at '='. Each byte maps to the first character of its quantum.
 * With r NULL it only counts. Returns the bytes produced; *stop is where
 * the last whole quantum used ended. */
static size_t b64_decode(const unsigned char *p, size_t s, size_t e, size_t max, struct rbuf *r,
			 unsigned char *head, size_t headlen, size_t *stop)
{
	unsigned acc = 0, nq = 0;
	size_t out = 0, qstart = s, i;
	*stop = s;
	for (i = s; i < e; i++) {
		/* A whole quantum of four alphabet bytes at once: 3 bytes. */
		while (nq == 0 && e - i >= 4 && max - out >= 3) {
			int v0 = b64val(p[i]), v1 = b64val(p[i + 1]), v2 = b64val(p[i + 2]),
			    v3 = b64val(p[i + 3]);
			if ((v0 | v1 | v2 | v3) < 0)
				break;
			unsigned q = (unsigned)v0 << 18 | (unsigned)v1 << 12 | (unsigned)v2 << 6 |
				     (unsigned)v3;
			unsigned char b[3] = {(unsigned char)(q >> 16), (unsigned char)(q >> 8),
					      (unsigned char)q};
			for (unsigned k = 0; k < 3; k++, out++) {
				if (r)
					rb_put(r, b[k], i);
				if (out < headlen)
					head[out] = b[k];
			}
			i += 4;
			*stop = i;
		}
		if (i == e)
			break;
		unsigned char c = p[i];
		if (c == '=')
			break;
		int v = b64val(c);
		if (v < 0) {
			if (c == '\\')
				i++;
			continue;
		}
		if (nq == 0)
			qstart = i;
		acc = (acc << 6) | (unsigned)v;
		if (++nq > 1) {
			if (out >= max) {
				*stop = i;
				return out;
			}
			unsigned sh = 8 - 2 * nq;
			unsigned char b = (unsigned char)(acc >> sh);
			if (r)
				rb_put(r, b, qstart);
			if (out < headlen)
				head[out] = b;
			out++;
			acc &= (1u << sh) - 1;
		}
		if (nq == 4) {
			nq = 0;
			acc = 0;
			*stop = i + 1;
		}
	}
	if (nq > 1)
		*stop = i < e ? i : e;
	return out;
}

static size_t b32_decode(const unsigned char *p, size_t s, size_t e, size_t max, struct rbuf *r,
			 unsigned char *head, size_t headlen, size_t *stop)
{
	uint64_t acc = 0;
	unsigned bits = 0, nq = 0;
	size_t out = 0, qstart = s, i;
	*stop = s;
	for (i = s; i < e; i++) {
		int v = b32val(p[i]);
		if (v < 0)
			break;
		if (nq == 0)
			qstart = i;
		acc = (acc << 5) | (unsigned)v;
		bits += 5;
		if (bits >= 8) {
			if (out >= max) {
				*stop = i;
				return out;
			}
			bits -= 8;
			unsigned char b = (unsigned char)(acc >> bits);
			if (r)
				rb_put(r, b, qstart);
			if (out < headlen)
				head[out] = b;
			out++;
			acc &= (1u << bits) - 1;
		}
		if (++nq == 8) {
			nq = 0;
			*stop = i + 1;
		}
	}
	if (nq)
		*stop = i;
	return out;
}

/* Decodes, checks and reports one run of an alphabet. kind selects the
 * decoder; the buffer is built only for what is worth scanning. Returns 1
 * if reported, 0 if not, or fn's error. */
static int try_run(struct dec *d, enum dlp_decoder kind, size_t s, size_t e)
{
	size_t max = d->max_out, stop, n;
	struct rbuf r;
	/* A look at the first bytes rejects most binary (and the long runs
	 * of an attack) before anything is allocated. */
	unsigned char head[256];
	size_t hn;
	if (kind == DLP_DEC_HEX) {
		size_t i = s + (e - s > 2 && d->p[s] == '0' && (d->p[s + 1] | 0x20) == 'x' ? 2 : 0);
		for (hn = 0; hn < sizeof(head) && i + 1 < e; hn++, i += 2)
			head[hn] = (unsigned char)(hexval(d->p[i]) << 4 | hexval(d->p[i + 1]));
	} else if (kind == DLP_DEC_BASE32) {
		hn = b32_decode(d->p, s, e, sizeof(head), NULL, head, sizeof(head), &stop);
	} else {
		hn = b64_decode(d->p, s, e, sizeof(head), NULL, head, sizeof(head), &stop);
	}
	if (hn == 0 ||
	    !(gzip_header(head, hn) || zlib_header(head, hn) || text_ratio(head, hn, 60)))
		return 0;
	if (kind == DLP_DEC_HEX) {
		size_t digits = 0, i = s;
		if (e - s > 2 && d->p[s] == '0' && (d->p[s + 1] | 0x20) == 'x')
			i += 2;
		n = (e - i) / 2 < max ? (e - i) / 2 : max;
		if (rb_init(&r, n) < 0)
			return -ENOMEM;
		for (; digits / 2 < n; digits += 2, i += 2)
			rb_put(&r, (unsigned char)(hexval(d->p[i]) << 4 | hexval(d->p[i + 1])),
			       digits ? i : s);
		stop = i;
	} else {
		if (kind == DLP_DEC_BASE32)
			n = b32_decode(d->p, s, e, max, NULL, NULL, 0, &stop);
		else
			n = b64_decode(d->p, s, e, max, NULL, NULL, 0, &stop);
		if (n == 0)
			return 0;
		if (rb_init(&r, n) < 0)
			return -ENOMEM;
		if (kind == DLP_DEC_BASE32)
			b32_decode(d->p, s, e, max, &r, NULL, 0, &stop);
		else
			b64_decode(d->p, s, e, max, &r, NULL, 0, &stop);
	}
	if (!worth_scanning((unsigned char *)r.b.data, r.b.len)) {
		dlp_buf_free(&r.b);
		return 0;
	}
	/* The padding belongs to the region. */
	while (stop < e && d->p[stop] == '=')
		stop++;
	int rc = report(d, kind, s, stop, &r);
	return rc < 0 ? rc : 1;
}

/* "Basic <base64 of user:password>": the run at s, when "Basic" and
 * blanks come just before it. */
static bool after_basic(const unsigned char *p, size_t s)
{
	size_t i = s;
	while (i > 0 && (p[i - 1] == ' ' || p[i - 1] == '\t') && s - i < 8)
		i--;
	if (i == s || i < 5 || !prefix_ci(p + i - 5, 5, "basic"))
		return false;
	return i == 5 || !alnum(p[i - 6]);
}

static int try_basic(struct dec *d, size_t s, size_t e)
{
	unsigned char head[256];
	size_t stop;
	size_t n = b64_decode(d->p, s, e, sizeof(head), NULL, head, sizeof(head), &stop);
	if (n < 3 || n >= sizeof(head) || !memchr(head, ':', n))
		return 0;
	for (size_t i = 0; i < n; i++)
		if (head[i] < 0x20 || head[i] >= 0x7F)
			return 0;
	struct rbuf r;
	if (rb_init(&r, n) < 0)
		return -ENOMEM;
	b64_decode(d->p, s, e, n, &r, NULL, 0, &stop);
	int rc = report(d, DLP_DEC_BASIC_AUTH, s, e, &r);
	return rc < 0 ? rc : 1;
}

/* A line break inside a wrapped base64 run: \n, \r\n, or their JSON
 * escapes. Its length, or 0. */
static size_t line_break(const unsigned char *p, size_t len, size_t i)
{
	if (i < len && p[i] == '\n')
		return 1;
	if (len - i >= 2 && p[i] == '\r' && p[i + 1] == '\n')
		return 2;
	if (len - i >= 2 && p[i] == '\\' && p[i + 1] == 'n')
		return 2;
	if (len - i >= 4 && p[i] == '\\' && p[i + 1] == 'r' && p[i + 2] == '\\' && p[i + 3] == 'n')
		return 4;
	return 0;
}

/* ---- The run finder's fast skip ------------------------------------------
 *
 * Every byte of every view goes past the run finder, and almost all of them
 * are in runs too short to matter (words, numbers). Only runs of at least
 * MIN_BASE64 bytes are looked at, and runs right after "Basic ". The skip
 * classifies 64 bytes at a time into bitmasks (16 at once where SSE2 is
 * there, which is every x86-64; one at a time elsewhere). */

#ifdef __SSE2__
/* 0xFF in each byte of v that is in the base64 alphabet (either variant). */
static inline __m128i b64_class(__m128i v)
{
	/* Signed compares after an offset are unsigned range checks: with
	 * ASCII case folded, 'a'..'z' lands on -128..-103, and '0'..'9' on
	 * -128..-119. */
	__m128i folded = _mm_or_si128(v, _mm_set1_epi8(0x20));
	__m128i letter =
	    _mm_cmplt_epi8(_mm_add_epi8(folded, _mm_set1_epi8(0x1F)), _mm_set1_epi8(-102));
	__m128i digit = _mm_cmplt_epi8(_mm_add_epi8(v, _mm_set1_epi8(0x50)), _mm_set1_epi8(-118));
	__m128i sym = _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('+')),
						_mm_cmpeq_epi8(v, _mm_set1_epi8('/'))),
				   _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('-')),
						_mm_cmpeq_epi8(v, _mm_set1_epi8('_'))));
	return _mm_or_si128(_mm_or_si128(letter, digit), sym);
}

/* 0xFF in each byte of v that is a hex digit, and (into *alnum) each byte that
 * is a digit or an ASCII letter; returns the hex digits. */
static inline __m128i hex_class(__m128i v, __m128i *alnum)
{
	/* As in b64_class: offset signed compares are range checks. */
	__m128i folded = _mm_or_si128(v, _mm_set1_epi8(0x20));
	__m128i from_a = _mm_add_epi8(folded, _mm_set1_epi8(0x1F));
	__m128i digit = _mm_cmplt_epi8(_mm_add_epi8(v, _mm_set1_epi8(0x50)), _mm_set1_epi8(-118));
	*alnum = _mm_or_si128(digit, _mm_cmplt_epi8(from_a, _mm_set1_epi8(-102)));
	return _mm_or_si128(digit, _mm_cmplt_epi8(from_a, _mm_set1_epi8(-122)));
}

static inline __m128i load16(const unsigned char *p)
{
	return _mm_loadu_si128((const __m128i *)(const void *)p);
}
#endif

static inline bool blank(unsigned char c)
{
	return c == ' ' || c == '\t';
}

/* For the 64 bytes at p (p[64] must be there too): bit k of *b64 says p[k]
 * is in the base64 alphabet, bit k of *cb that p[k] is 'c' or 'C' and
 * p[k + 1] a blank, which is where "basic " would end. */
static inline void masks64(const unsigned char *p, uint64_t *b64, uint64_t *cb)
{
	uint64_t m = 0, c = 0;
#ifdef __SSE2__
	for (unsigned k = 0; k < 4; k++) {
		__m128i v = load16(p + 16 * k), w = load16(p + 16 * k + 1);
		__m128i is_c =
		    _mm_cmpeq_epi8(_mm_or_si128(v, _mm_set1_epi8(0x20)), _mm_set1_epi8('c'));
		__m128i blank_next = _mm_or_si128(_mm_cmpeq_epi8(w, _mm_set1_epi8(' ')),
						  _mm_cmpeq_epi8(w, _mm_set1_epi8('\t')));
		m |= (uint64_t)(unsigned)_mm_movemask_epi8(b64_class(v)) << (16 * k);
		c |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_and_si128(is_c, blank_next))
		     << (16 * k);
	}
#else
	for (unsigned k = 0; k < 64; k++) {
		m |= (uint64_t)(b64val(p[k]) >= 0) << k;
		c |= (uint64_t)((p[k] | 0x20) == 'c' && blank(p[k + 1])) << k;
	}
#endif
	*b64 = m;
	*cb = c;
}

/* With p[k] a 'c' and a blank after it: the start of the run after
 * "basic" and its blanks if after_basic holds there, else len. */
static size_t basic_at(const unsigned char *p, size_t len, size_t k)
{
	/* Up to eight blanks come between "basic" and its run. */
	size_t s = k + 1;
	while (s < len && blank(p[s]) && s - k <= 8)
		s++;
	return s < len && b64val(p[s]) >= 0 && after_basic(p, s) ? s : len;
}

/* The start of the first run at or after i that may give something: one
 * of the base64 alphabet at least MIN_BASE64 long (a run that started
 * before i counts from i), or one right after "basic" and blanks; len if
 * there is none. Between a 'c' with a blank after it and the run after
 * it there are only blanks, where no run starts: so the first of the two
 * kinds found is the first there is. */
static size_t next_run(const unsigned char *p, size_t len, size_t i)
{
	/* "basic " may end just before i, with its run at i or after. */
	for (size_t k = i > 9 ? i - 9 : 0; k < i && k + 1 < len; k++) {
		if ((p[k] | 0x20) == 'c' && blank(p[k + 1])) {
			size_t s = basic_at(p, len, k);
			if (s >= i && s < len)
				return s;
		}
	}
	size_t carry = 0; /* the alphabet bytes just before i, from i on */
	while (len - i > 64) {
		uint64_t m, cb;
		masks64(p + i, &m, &cb);
		size_t lead = m == ~(uint64_t)0 ? 64 : (size_t)__builtin_ctzll(~m);
		if (carry + lead >= MIN_BASE64)
			return i - carry;
		/* Bit k of r: bits k .. k + 19 of m are all set. Runs that
		 * reach past the block are caught by carry in the next one. */
		uint64_t r2 = m & m >> 1, r4 = r2 & r2 >> 2, r8 = r4 & r4 >> 4;
		uint64_t r = (r8 & r8 >> 8) & r4 >> 16;
		size_t found = len;
		if (r) {
			/* The run holding that bit starts after the last byte
			 * outside the alphabet before it; there is one, or lead
			 * would have been long enough above. */
			uint64_t z = ~m & ((UINT64_C(1) << __builtin_ctzll(r)) - 1);
			found = i + (z ? 64 - (size_t)__builtin_clzll(z) : 0);
		}
		for (; cb; cb &= cb - 1) {
			size_t k = i + (size_t)__builtin_ctzll(cb);
			if (k >= found)
				break;
			size_t s = basic_at(p, len, k);
			if (s < len)
				return s;
		}
		if (found < len)
			return found;
		carry = (size_t)__builtin_clzll(~m);
		i += 64;
	}
	for (; i < len; i++) {
		if (b64val(p[i]) < 0)
			carry = 0;
		else if (++carry >= MIN_BASE64)
			return i + 1 - carry;
		if (i + 1 < len && (p[i] | 0x20) == 'c' && blank(p[i + 1])) {
			size_t s = basic_at(p, len, i);
			if (s < len)
				return s;
		}
	}
	return len;
}

/* The end of the run of the base64 alphabet from i; *url is set if it
 * holds '-' or '_' (base64url). */
static size_t b64_end(const unsigned char *p, size_t len, size_t i, bool *url)
{
#ifdef __SSE2__
	while (len - i >= 16) {
		__m128i v = load16(p + i);
		unsigned out = ~(unsigned)_mm_movemask_epi8(b64_class(v)) & 0xFFFFu;
		unsigned u = (unsigned)_mm_movemask_epi8(_mm_or_si128(
		    _mm_cmpeq_epi8(v, _mm_set1_epi8('-')), _mm_cmpeq_epi8(v, _mm_set1_epi8('_'))));
		if (out) {
			size_t k = (size_t)__builtin_ctz(out);
			*url |= (u & ((1u << k) - 1)) != 0;
			return i + k;
		}
		*url |= u != 0;
		i += 16;
	}
#endif
	for (; i < len && b64val(p[i]) >= 0; i++)
		*url |= p[i] == '-' || p[i] == '_';
	return i;
}

/* Whether p[s..e) are all hex digits; most runs that get here are (trace
 * ids, hashes), so 16 bytes are tested at once. */
static bool all_hex(const unsigned char *p, size_t s, size_t e)
{
#ifdef __SSE2__
	for (; e - s >= 16; s += 16) {
		__m128i alnum;
		__m128i v = load16(p + s);
		if (_mm_movemask_epi8(hex_class(v, &alnum)) != 0xFFFF)
			return false;
	}
#endif
	for (; s < e; s++)
		if (hexval(p[s]) < 0)
			return false;
	return true;
}

static bool all_b32(const unsigned char *p, size_t s, size_t e)
{
	for (; s < e; s++)
		if (b32val(p[s]) < 0)
			return false;
	return true;
}

/* ---- Runs -------------------------------------------------------------- */

/* Looks at the run that starts at s (a line-wrapped run goes on past its
 * line breaks) and tries what it may be. *next is where the finder goes on:
 * past the run and its padding, so always past s. */
static int one_run(struct dec *d, size_t s, size_t *next)
{
	const unsigned char *p = d->p;
	size_t len = d->len, i = s, line = s;
	bool wrapped = false, url = false;
	for (;;) {
		i = b64_end(p, len, i, &url);
		size_t seg = i - line, br;
		if (seg >= 40 && seg <= 120 && (br = line_break(p, len, i)) && i + br < len &&
		    b64val(p[i + br]) >= 0 && p[i + br] != '-') {
			i += br;
			line = i;
			wrapped = true;
			continue;
		}
		break;
	}
	size_t e = i;
	while (i < len && p[i] == '=' && i - e < 6) /* base32 pads to 6 */
		i++;
	size_t pe = i; /* with the padding */
	*next = i;
	/* A run right after a JSON escape starts after the escape. */
	if (s > 0 && p[s - 1] == '\\') {
		if (p[s] == 'u' && e - s > 5 && hexval(p[s + 1]) >= 0 && hexval(p[s + 2]) >= 0 &&
		    hexval(p[s + 3]) >= 0 && hexval(p[s + 4]) >= 0)
			s += 5;
		else if (strchr("nrtbf", p[s]))
			s++;
	}
	int rc = 0;
	if (!wrapped && after_basic(p, s))
		rc = try_basic(d, s, pe);
	if (rc || e - s < MIN_BASE64)
		return rc;
	/* Hex and base32 are also base64 alphabets: the narrower alphabet is
	 * tried first, and base64 only if it fails. */
	size_t hs = s + (e - s > 2 && p[s] == '0' && (p[s + 1] | 0x20) == 'x' ? 2 : 0);
	/* A run of hex digits alone is hex (or a hash, a UUID): as base64 it
	 * would be binary anyway, so it is not tried again. */
	if (!wrapped && pe == e && e - hs >= MIN_HEX_DIGITS && (e - hs) % 2 == 0 &&
	    all_hex(p, hs, e))
		return try_run(d, DLP_DEC_HEX, s, e);
	if (!wrapped && e - s >= MIN_BASE32 && all_b32(p, s, e) &&
	    (rc = try_run(d, DLP_DEC_BASE32, s, pe)))
		return rc;
	return try_run(d, url ? DLP_DEC_BASE64URL : DLP_DEC_BASE64, s, pe);
}

/* Runs are looked at in order; a run neither long enough nor after
 * "Basic " could give nothing, so next_run passes over it. */
static int find_runs(struct dec *d)
{
	size_t i = 0, s;
	while ((s = next_run(d->p, d->len, i)) < d->len) {
		int rc = one_run(d, s, &i);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* ---- Separated hex: "41 42", "41:42", "\x41\x42", "0x41, 0x42" -------- */

/* Parses hex units from i with one prefix and one separator throughout.
 * Returns the number of units; *end is after the last one. With r, puts
 * the bytes. */
static size_t sep_hex(const unsigned char *p, size_t len, size_t i, size_t max, struct rbuf *r,
		      size_t *end)
{
	size_t plen = 0, n = 0;
	const unsigned char *sep = NULL;
	size_t seplen = 0;
	if (len - i >= 4 && p[i] == '\\' && p[i + 1] == 'x')
		plen = 2;
	else if (len - i >= 4 && p[i] == '0' && (p[i + 1] == 'x' || p[i + 1] == 'X'))
		plen = 2;
	unsigned char p0 = p[i], p1 = plen ? p[i + 1] : 0;
	*end = i;
	while (n < max) {
		size_t u = i;
		if (plen && (len - i < plen || p[i] != p0 || p[i + 1] != p1))
			break;
		i += plen;
		if (len - i < 2 || hexval(p[i]) < 0 || hexval(p[i + 1]) < 0)
			break;
		if (len - i > 2 && (alnum(p[i + 2]) || p[i + 2] == '_') &&
		    !(plen && p[i + 2] == p0))
			break;
		if (r)
			rb_put(r, (unsigned char)(hexval(p[i]) << 4 | hexval(p[i + 1])), u);
		i += 2;
		n++;
		*end = i;
		/* The separator after the first unit sets the form. */
		size_t k = i;
		while (k < len && k - i < 2 &&
		       (p[k] == ' ' || p[k] == ':' || p[k] == ',' || p[k] == '-'))
			k++;
		if (n == 1) {
			sep = p + i;
			seplen = k - i;
			if (!seplen && !plen)
				break;
		} else if (k - i != seplen || memcmp(p + i, sep, seplen)) {
			break;
		}
		i = k;
	}
	return n;
}

/* Whether a sequence may start at i (i + 4 <= len): "\\x", or at the start
 * of a word "0x" or two hex digits, a separator and two more. */
static bool sep_hex_start(const unsigned char *p, size_t len, size_t i)
{
	unsigned char c = p[i];
	if (c == '\\')
		return p[i + 1] == 'x';
	if (hexval(c) < 0 || (i > 0 && alnum(p[i - 1])))
		return false;
	return (c == '0' && (p[i + 1] | 0x20) == 'x') ||
	       (hexval(p[i + 1]) >= 0 && !alnum(p[i + 2]) && i + 4 < len && hexval(p[i + 3]) >= 0 &&
		hexval(p[i + 4]) >= 0);
}

/* The first i' >= i where sep_hex_start holds, or len. This looks at every
 * byte from the engine's first candidate on, so 16 starts are tested at
 * once where SSE2 is there. */
static size_t sep_hex_next(const unsigned char *p, size_t len, size_t i)
{
#ifdef __SSE2__
	if (i == 0 && len >= 4) {
		if (sep_hex_start(p, len, 0))
			return 0;
		i = 1;
	}
	/* Each start looks at the byte before it and four after it. */
	while (i > 0 && len - i >= 20) {
		__m128i a_before, a2, a_unused;
		__m128i v0 = load16(p + i), v1 = load16(p + i + 1);
		hex_class(load16(p + i - 1), &a_before);
		__m128i h0 = hex_class(v0, &a_unused);
		__m128i h1 = hex_class(v1, &a_unused);
		hex_class(load16(p + i + 2), &a2);
		__m128i h3 = hex_class(load16(p + i + 3), &a_unused);
		__m128i h4 = hex_class(load16(p + i + 4), &a_unused);
		__m128i escape = _mm_and_si128(_mm_cmpeq_epi8(v0, _mm_set1_epi8('\\')),
					       _mm_cmpeq_epi8(v1, _mm_set1_epi8('x')));
		__m128i ox = _mm_and_si128(
		    _mm_cmpeq_epi8(v0, _mm_set1_epi8('0')),
		    _mm_cmpeq_epi8(_mm_or_si128(v1, _mm_set1_epi8(0x20)), _mm_set1_epi8('x')));
		__m128i pair = _mm_andnot_si128(a2, _mm_and_si128(h1, _mm_and_si128(h3, h4)));
		__m128i word = _mm_andnot_si128(a_before, h0);
		__m128i start = _mm_or_si128(escape, _mm_and_si128(word, _mm_or_si128(ox, pair)));
		unsigned m = (unsigned)_mm_movemask_epi8(start);
		if (m)
			return i + (size_t)__builtin_ctz(m);
		i += 16;
	}
#endif
	for (; i + 4 <= len; i++)
		if (sep_hex_start(p, len, i))
			return i;
	return len;
}

static int find_sep_hex(struct dec *d, size_t from)
{
	const unsigned char *p = d->p;
	size_t len = d->len, i = from;
	while ((i = sep_hex_next(p, len, i)) < len) {
		size_t end;
		size_t n = sep_hex(p, len, i, d->max_out, NULL, &end);
		if (n >= MIN_HEX_BYTES) {
			struct rbuf r;
			if (rb_init(&r, n) < 0)
				return -ENOMEM;
			sep_hex(p, len, i, n, &r, &end);
			if (worth_scanning((unsigned char *)r.b.data, r.b.len)) {
				int rc = report(d, DLP_DEC_HEX, i, end, &r);
				if (rc < 0)
					return rc;
			} else {
				dlp_buf_free(&r.b);
			}
		}
		/* A later start inside this sequence gives a suffix of it. */
		i = end > i ? end : i + 1;
	}
	return 0;
}

/* ---- Percent-encoding and form bodies ---------------------------------- */

static bool pct_at(const unsigned char *p, size_t len, size_t i)
{
	return p[i] == '%' && len - i >= 3 && hexval(p[i + 1]) >= 0 && hexval(p[i + 2]) >= 0;
}

/* The bytes that stay inside one percent-encoded token. */
static bool pct_token(unsigned char c)
{
	return c > ' ' && c != '"' && c != '\'' && c != '<' && c != '>' && c != '`' && c != 0x7F;
}

/* Decodes [s, e) one round; '+' is a space in a form. */
static int pct_region(struct dec *d, size_t s, size_t e, bool form)
{
	const unsigned char *p = d->p;
	size_t n = e - s < d->max_out ? e - s : d->max_out;
	struct rbuf r;
	if (rb_init(&r, n) < 0)
		return -ENOMEM;
	size_t i = s;
	while (i < e && r.b.len < n) {
		if (pct_at(p, e, i)) {
			rb_put(&r, (unsigned char)(hexval(p[i + 1]) << 4 | hexval(p[i + 2])), i);
			i += 3;
		} else {
			rb_put(&r, form && p[i] == '+' ? ' ' : p[i], i);
			i++;
		}
	}
	if (!worth_scanning((unsigned char *)r.b.data, r.b.len)) {
		dlp_buf_free(&r.b);
		return 0;
	}
	int rc = report(d, form ? DLP_DEC_FORM : DLP_DEC_PERCENT, s, i, &r);
	return rc < 0 ? rc : 1;
}

static bool form_type(const char *ct)
{
	if (!ct)
		return false;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	return prefix_ci((const unsigned char *)ct, strlen(ct),
			 "application/x-www-form-urlencoded");
}

/* A URL or a form body is one region, '+' a space. Returns 1 if the whole
 * view was reported (the other finders then leave it to the next round). */
static int find_form(struct dec *d)
{
	if (!(d->o->url || form_type(d->o->content_type)))
		return 0;
	bool any = false;
	for (size_t i = 0; i < d->len && !any; i++)
		any = d->p[i] == '+' || pct_at(d->p, d->len, i);
	return any ? pct_region(d, 0, d->len, true) : 0;
}

static int find_percent(struct dec *d)
{
	const unsigned char *p = d->p;
	size_t len = d->len, i = 0, done = 0;
	while (i < len) {
		const unsigned char *q = memchr(p + i, '%', len - i);
		if (!q)
			break;
		i = (size_t)(q - p);
		if (!pct_at(p, len, i)) {
			i++;
			continue;
		}
		size_t s = i, e = i;
		while (s > done && pct_token(p[s - 1]))
			s--;
		while (e < len && pct_token(p[e]))
			e++;
		int rc = pct_region(d, s, e, false);
		/* A query or form field (k=v with '+'): also read '+' as a
		 * space, as a server would ("%2B1+212-495-8726"). */
		if (rc >= 0 && memchr(p + s, '+', e - s) && memchr(p + s, '=', e - s))
			rc = pct_region(d, s, e, true);
		if (rc < 0)
			return rc;
		done = i = e;
	}
	return 0;
}

/* ---- gzip, zlib, raw deflate ------------------------------------------- */

/* Inflates from p[at] with zlib's window bits wb. Reports what came out
 * (up to max_out; a corrupt or truncated stream gives what came before
 * the error) if there is any and, when need_end, the stream ended.
 * *used is the compressed bytes read. Returns 1 if reported, 0, or an
 * error. */
static int inflate_at(struct dec *d, size_t at, int wb, bool need_end, size_t *used)
{
	z_stream z = {0};
	*used = 0;
	if (inflateInit2(&z, wb) != Z_OK)
		return -ENOMEM;
	size_t cap = d->max_out < 4096 ? d->max_out : 4096, out = 0;
	unsigned char *buf = malloc(cap);
	if (!buf) {
		inflateEnd(&z);
		return -ENOMEM;
	}
	z.next_in = (unsigned char *)d->p + at;
	size_t left = d->len - at;
	int zr = Z_OK;
	for (;;) {
		if (out == cap) {
			if (cap >= d->max_out)
				break;
			size_t ncap = cap * 2 < d->max_out ? cap * 2 : d->max_out;
			unsigned char *nb = realloc(buf, ncap);
			if (!nb) {
				free(buf);
				inflateEnd(&z);
				return -ENOMEM;
			}
			buf = nb;
			cap = ncap;
		}
		if (z.avail_in == 0) {
			if (left == 0)
				break; /* truncated: keep what came out */
			z.avail_in = left > (1u << 30) ? 1u << 30 : (unsigned)left;
			left -= z.avail_in;
		}
		size_t room = cap - out;
		z.next_out = buf + out;
		z.avail_out = room > (1u << 30) ? 1u << 30 : (unsigned)room;
		zr = inflate(&z, Z_NO_FLUSH);
		out = (size_t)(z.next_out - buf);
		/* Z_BUF_ERROR only says that no progress was possible: more
		 * room or more input is given above. Anything else ends. */
		if (zr != Z_OK && zr != Z_BUF_ERROR)
			break;
		if (zr == Z_BUF_ERROR && z.avail_in > 0 && z.avail_out > 0)
			break;
	}
	*used = (size_t)(z.next_in - (d->p + at));
	inflateEnd(&z);
	if (out == 0 || (need_end && zr != Z_STREAM_END) ||
	    (need_end && !worth_scanning(buf, out))) {
		free(buf);
		return 0;
	}
	size_t end = at + (*used ? *used : 1);
	uint32_t *map = malloc((out + 1) * sizeof(uint32_t));
	if (!map) {
		free(buf);
		return -ENOMEM;
	}
	for (size_t k = 0; k < out; k++)
		map[k] = (uint32_t)at;
	struct rbuf r = {.b = {.data = (char *)buf, .map = map, .len = out}, .cap = out};
	int rc = report(d, DLP_DEC_GZIP, at, end, &r);
	return rc < 0 ? rc : 1;
}

static int find_gzip(struct dec *d)
{
	const unsigned char *p = d->p;
	size_t len = d->len, i = 0, used;
	/* Failed attempts may each read far (a header's file name runs to a
	 * NUL): their reading is bounded by a budget of twice the view. */
	size_t budget = 2 * len + 65536;
	while (i + 3 <= len) {
		const unsigned char *q = memchr(p + i, 0x1F, len - i - 2);
		if (!q)
			break;
		i = (size_t)(q - p);
		if (!gzip_header(p + i, len - i)) {
			i++;
			continue;
		}
		int rc = inflate_at(d, i, 16 + 15, false, &used);
		if (rc < 0)
			return rc;
		if (rc > 0) {
			i += used ? used : 3;
			continue;
		}
		if (used > budget)
			break;
		budget -= used;
		i++;
	}
	if (!d->o->whole || len < 2 || gzip_header(p, len))
		return 0;
	if (zlib_header(p, len) && ((p[0] << 8) | p[1]) % 31 == 0) {
		int rc = inflate_at(d, 0, 15, false, &used);
		return rc < 0 ? rc : 0;
	}
	/* Raw deflate has no header: text is not taken for it, and the
	 * stream must end cleanly with text inside. */
	if (!printable(p, len < 512 ? len : 512)) {
		int rc = inflate_at(d, 0, -15, true, &used);
		return rc < 0 ? rc : 0;
	}
	return 0;
}

/* ---- Multipart --------------------------------------------------------- */

static bool bchar(unsigned char c)
{
	return alnum(c) || (c && strchr("'()+_,-./:=?", c));
}

/* The boundary parameter of a multipart Content-Type. */
static size_t ct_boundary(const char *ct, const char **b)
{
	if (!ct)
		return 0;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	size_t n = strlen(ct);
	if (!prefix_ci((const unsigned char *)ct, n, "multipart/"))
		return 0;
	for (size_t i = 0; i + 9 <= n; i++) {
		if (!prefix_ci((const unsigned char *)ct + i, n - i, "boundary="))
			continue;
		const char *v = ct + i + 9;
		size_t k = 0;
		if (*v == '"') {
			v++;
			while (v[k] && v[k] != '"')
				k++;
		} else {
			while (v[k] && v[k] != ';' && v[k] != ' ' && v[k] != '\t' && v[k] != '\r' &&
			       v[k] != '\n')
				k++;
		}
		*b = v;
		return k > 0 && k <= 200 ? k : 0;
	}
	return 0;
}

/* The value of header name in the header lines [s, e) starts with val. */
static bool header_is(const unsigned char *p, size_t s, size_t e, const char *name, const char *val)
{
	size_t nl = strlen(name);
	for (size_t i = s; i < e;) {
		const unsigned char *q = memchr(p + i, '\n', e - i);
		size_t le = q ? (size_t)(q - p) : e;
		if (le - i > nl && prefix_ci(p + i, le - i, name) && p[i + nl] == ':') {
			size_t v = i + nl + 1;
			while (v < le && (p[v] == ' ' || p[v] == '\t'))
				v++;
			if (prefix_ci(p + v, le - v, val))
				return true;
		}
		i = le + 1;
	}
	return false;
}

/* A part's body: as it is, or decoded by its Content-Transfer-Encoding. */
static int report_part(struct dec *d, size_t hs, size_t he, size_t bs, size_t be)
{
	const unsigned char *p = d->p;
	size_t n = be - bs < d->max_out ? be - bs : d->max_out;
	struct rbuf r;
	if (n == 0)
		return 0;
	if (header_is(p, hs, he, "content-transfer-encoding", "base64")) {
		size_t stop;
		n = b64_decode(p, bs, be, d->max_out, NULL, NULL, 0, &stop);
		if (n == 0)
			return 0;
		if (rb_init(&r, n) < 0)
			return -ENOMEM;
		b64_decode(p, bs, be, n, &r, NULL, 0, &stop);
		if (!worth_scanning((unsigned char *)r.b.data, r.b.len)) {
			dlp_buf_free(&r.b);
			return 0;
		}
		/* The region starts at the first quantum (the body may open with junk). */
		return report(d, DLP_DEC_BASE64, r.b.map[0], be, &r);
	}
	if (rb_init(&r, n) < 0)
		return -ENOMEM;
	if (header_is(p, hs, he, "content-transfer-encoding", "quoted-printable")) {
		for (size_t i = bs; i < be && r.b.len < n;) {
			if (p[i] != '=') {
				rb_put(&r, p[i], i);
				i++;
			} else if (be - i >= 3 && hexval(p[i + 1]) >= 0 && hexval(p[i + 2]) >= 0) {
				rb_put(&r,
				       (unsigned char)(hexval(p[i + 1]) << 4 | hexval(p[i + 2])),
				       i);
				i += 3;
			} else if (be - i >= 2 && p[i + 1] == '\n') {
				i += 2;
			} else if (be - i >= 3 && p[i + 1] == '\r' && p[i + 2] == '\n') {
				i += 3;
			} else {
				rb_put(&r, p[i], i);
				i++;
			}
		}
		return report(d, DLP_DEC_QUOTED_PRINTABLE, bs, be, &r);
	}
	for (size_t i = 0; i < n; i++)
		rb_put(&r, p[bs + i], bs + i);
	return report(d, DLP_DEC_MULTIPART, bs, bs + n, &r);
}

/* Returns 1 if the view was a multipart body (its parts reported). */
static int find_multipart(struct dec *d)
{
	const unsigned char *p = d->p;
	size_t len = d->len;
	const char *b = NULL;
	size_t blen = ct_boundary(d->o->content_type, &b);
	bool guessed = false, any = false;
	if (!blen) {
		/* "--boundary" CRLF as the first line. */
		size_t k = 2;
		if (len < 4 || p[0] != '-' || p[1] != '-')
			return 0;
		while (k < len && k < 72 && bchar(p[k]))
			k++;
		if (k == 2 || k >= len ||
		    !(p[k] == '\n' || (p[k] == '\r' && k + 1 < len && p[k + 1] == '\n')))
			return 0;
		b = (const char *)p + 2;
		blen = k - 2;
		/* "---" (YAML) or "------" (a rule) is no boundary. */
		bool letter = false;
		for (size_t j = 0; j < blen && !letter; j++)
			letter = alnum((unsigned char)b[j]);
		if (!letter)
			return 0;
		guessed = true;
	}
	/* The delimiter is "\n--" + boundary; the first may open the view. */
	char delim[3 + 200];
	delim[0] = '\n';
	delim[1] = delim[2] = '-';
	memcpy(delim + 3, b, blen);
	size_t dl = 3 + blen, pos;
	if (len >= dl - 1 && !memcmp(p, delim + 1, dl - 1)) {
		pos = dl - 1;
	} else {
		const unsigned char *q = memmem(p, len, delim, dl);
		if (!q)
			return 0;
		pos = (size_t)(q - p) + dl;
	}
	for (size_t parts = 0; parts < MAX_PARTS; parts++) {
		/* pos is just after a delimiter. */
		if (len - pos >= 2 && p[pos] == '-' && p[pos + 1] == '-')
			break;
		const unsigned char *nl = memchr(p + pos, '\n', len - pos);
		if (!nl)
			break;
		size_t hs = (size_t)(nl - p) + 1;
		const unsigned char *q = memmem(p + hs - 1, len - hs + 1, delim, dl);
		size_t next = q ? (size_t)(q - p) : len;
		/* The headers end at the first blank line before the next
		 * delimiter; without one the part has no body. */
		size_t he = hs, bs = next;
		for (size_t i = hs; i < next;) {
			const unsigned char *lnl = memchr(p + i, '\n', next - i);
			if (!lnl)
				break;
			size_t le = (size_t)(lnl - p);
			if (le == i || (le == i + 1 && p[i] == '\r')) {
				he = i;
				bs = le + 1;
				break;
			}
			i = le + 1;
		}
		size_t be = next;
		if (q && be > bs && p[be - 1] == '\r')
			be--;
		any |= bs < next;
		if (bs < be) {
			int rc = report_part(d, hs, he, bs, be);
			if (rc < 0)
				return rc;
		}
		if (!q)
			break;
		pos = next + dl;
	}
	/* A guessed boundary that framed no part was not one: the view is
	 * left to the other finders. */
	return guessed && !any ? 0 : 1;
}

/* ---- The finders, in order -------------------------------------------- */

int dlp_decode(const char *data, size_t len, const dlp_decode_opts *o, dlp_region_fn fn, void *ctx)
{
	pthread_once(&tables_once, tables_make);
	static const dlp_decode_opts none = {0};
	struct dec d = {
	    .p = (const unsigned char *)data,
	    .len = len,
	    .o = o ? o : &none,
	    .fn = fn,
	    .ctx = ctx,
	};
	d.max_out = d.o->max_out ? d.o->max_out : DEFAULT_MAX_OUT;
	if (len == 0 || len > UINT32_MAX)
		return 0;
	/* A multipart body is its parts, and a form body its decoded text:
	 * what is inside is found when the engine decodes those. */
	int rc = find_multipart(&d);
	if (rc)
		return rc < 0 ? rc : 0;
	if ((rc = find_form(&d)))
		return rc < 0 ? rc : 0;
	if ((rc = find_gzip(&d)) < 0)
		return rc;
	if ((rc = find_runs(&d)) < 0)
		return rc;
	if (d.o->sep_hex_from < len && (rc = find_sep_hex(&d, d.o->sep_hex_from)) < 0)
		return rc;
	if ((rc = find_percent(&d)) < 0)
		return rc;
	return 0;
}
