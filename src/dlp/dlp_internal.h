/* dlp_internal.h - how the DLP engine's parts fit together (docs/dlp.md,
 * "Inside the engine").
 *
 *   engine.c     compiles the patterns, scans views, maps spans back,
 *                windows and streams, deduplicates
 *   context.c    what detectors ask about the bytes around a match:
 *                hotwords, token boundaries, entropy, placeholders
 *   normalize.c  the normalised view: NFKC, invisible characters, HTML
 *                and JSON escapes
 *   decode.c     the decoded views: base64/32, hex, percent, form, gzip,
 *                multipart, Basic credentials
 *   validate.c   checksums: Luhn, mod-97, My Number, ...
 *   detect_secret.c, detect_pii.c   the detectors
 */
#ifndef DLP_INTERNAL_H
#define DLP_INTERNAL_H

#include "dlp.h"

/* ---- Detectors ------------------------------------------------------ */

/* A Hyperscan pattern (its syntax: no lookaround, no backreferences),
 * matched on bytes, not in UTF-8 mode: a Japanese label is its UTF-8
 * bytes. Compiled with HS_FLAG_SOM_LEFTMOST, so each hit has a start. */
typedef struct dlp_pattern {
	const char *re;
	unsigned flags; /* DLP_RE_* */
} dlp_pattern;

#define DLP_RE_CASELESS 1u /* ASCII letters match either case */
/* Hyperscan is slow on patterns led by a class as common as \d: each
 * costs as much as all the literal-led ones together. A pattern marked so
 * is run only over the places engine.c's scan_tokens finds, so every one
 * of its matches must be, whole, either
 *  - a number: six or more ASCII digits in groups joined by one or two of
 *    space - . ( ), either one group of eight or more or ending in a group
 *    of three or more after another, starting at a word boundary with at
 *    most one more byte before the first digit (a '(' or a '+'); or
 *  - a code: at a word boundary, two capitals, an optional space, two
 *    digits, and at most DLP_TOKEN_MAX_WIDTH bytes in all. */
#define DLP_RE_TOKEN 2u
#define DLP_TOKEN_MAX_WIDTH 64

/* A pattern's match, inside one view (the original bytes or a normalised
 * or decoded copy). data[0..len) is the whole view: a confirmer may look
 * around the match, never outside [0, len). */
typedef struct dlp_hit {
	const char *data;
	size_t len;
	size_t start, end;   /* the pattern's match */
	unsigned pattern;    /* index into the detector's patterns */
	/* How this view was made (outermost first); 0 entries for the
	 * original bytes. A confirmer may use it (e.g. Basic credentials). */
	const uint8_t *chain;
	size_t nchain;
} dlp_hit;

/* What a confirmer says about a hit: the value's span (it starts as the
 * hit's; a confirmer may narrow it to the value, e.g. the password in a
 * URL) and a confidence in 0..1. */
typedef struct dlp_match {
	size_t start, end;
	float confidence;
} dlp_match;

typedef struct dlp_detector {
	const char *kind; /* stable, lower_snake_case */
	enum dlp_class cls;
	const char *what;
	const char *example; /* fake, but found by this detector */
	const dlp_pattern *patterns;
	size_t npatterns;
	/* Returns true and fills *m (pre-set to the hit's span and 0.5) to
	 * report, false to drop the hit. Must be pure: it runs on many
	 * threads at once. */
	bool (*confirm)(const dlp_hit *h, dlp_match *m);
} dlp_detector;

/* Each detector file defines its table. */
extern const dlp_detector dlp_secret_detectors[];
extern const size_t dlp_secret_detector_count;
extern const dlp_detector dlp_pii_detectors[];
extern const size_t dlp_pii_detector_count;

/* ---- Context (context.c) --------------------------------------------- */

/* Whether one of words (NULL-terminated; ASCII letters compared ignoring
 * case, other bytes exactly) occurs within window bytes before pos, or
 * after pos. Windows are in bytes: a Japanese character is three. */
bool dlp_word_before(const dlp_hit *h, size_t pos, size_t window, const char *const *words);
bool dlp_word_after(const dlp_hit *h, size_t pos, size_t window, const char *const *words);
/* Whether the bytes just before start and just at end are not in the
 * token set chars (a strspn-style set), i.e. the value is a whole token. */
bool dlp_whole_token(const dlp_hit *h, size_t start, size_t end, const char *chars);
/* The value of a hex digit (either case), or -1. */
int dlp_hexval(unsigned char c);
/* Shannon entropy in bits per byte. */
double dlp_entropy(const char *s, size_t n);
/* A well-known example or an obvious filler: AKIAIOSFODNN7EXAMPLE,
 * "EXAMPLE", "xxxx", "your_api_key", "<token>", "1234567890", a run of one
 * character, an ascending alphabet. */
bool dlp_placeholder(const char *s, size_t n);
/* The decoded length of standard or URL-safe base64 (padding optional)
 * into out (at most outlen bytes), or -1 if s is not base64. */
long dlp_base64_decode(const char *s, size_t n, unsigned char *out, size_t outlen);

/* ---- Views (normalize.c, decode.c) ----------------------------------- */

/* Bytes made from a region of a parent view. map has len + 1 entries:
 * map[i] is the offset in the parent of the start of the unit (a
 * character, an escape, a base64 quantum, a compressed stream) that
 * produced data[i]; map[len] is the end of the whole region. Maps never
 * decrease. Bytes of one unit share one map value, so a span [s, e) of
 * the view came from the parent's [map[s], start of the unit after
 * data[e - 1]). */
typedef struct dlp_buf {
	char *data;
	uint32_t *map;
	size_t len;
} dlp_buf;

void dlp_buf_free(dlp_buf *b);

/* The normalised view of data: full-width and other compatibility
 * characters by NFKC, invisible characters (zero-width, soft hyphen, BOM,
 * bidi controls) dropped, HTML character references and JSON \uXXXX
 * (surrogate pairs too) and \/ escapes decoded; a hyphen-like character
 * (U+2010..2015, U+2212, U+30FC, U+FF70) between digits becomes '-'.
 * Returns 1 with *out filled when the view differs from data, 0 when data
 * is already normal (nothing allocated), -ENOMEM. */
int dlp_normalize(const char *data, size_t len, dlp_buf *out);
/* Which of DLP_DEC_NFKC, _INVISIBLE, _HTML, _JSON changed something in
 * data[0..len) (an original span): bit (1 << decoder) each. */
unsigned dlp_normalize_explain(const char *data, size_t len);

/* A decoded region of a view, reported to the engine. */
typedef struct dlp_region {
	enum dlp_decoder decoder;
	size_t start, end; /* in the view that was decoded */
	dlp_buf buf;	   /* the decoded bytes; map offsets are in that view */
} dlp_region;

/* Called for each region; it takes ownership of r->buf. Returns 0, or a
 * negative errno to stop. */
typedef int (*dlp_region_fn)(void *ctx, dlp_region *r);

/* Finds and decodes the encoded regions of data: base64 and base64url
 * runs (line-wrapped too), base32, hex (plain and separated), percent-
 * encoded text (one round per call: the engine decodes the result again),
 * form bodies, gzip/zlib streams (a gzip member anywhere; zlib or raw
 * deflate when the region is the whole view), multipart parts (boundary
 * from content_type, or from the first line), Basic credentials. A region
 * is reported only when what it decodes to is worth scanning: mostly
 * printable text, or compressed data (bounded to max_out bytes). Returns
 * 0 or the first negative value fn returned, or -ENOMEM. */
typedef struct dlp_decode_opts {
	const char *content_type; /* as dlp_opts */
	bool url;		  /* as dlp_opts */
	bool whole;		  /* data is a whole body (or decoded region) */
	size_t max_out;		  /* bound on each decoded region */
	/* Separated hex can start no earlier than this (the engine's
	 * Hyperscan pass knows where the first candidate is); SIZE_MAX:
	 * there is none. 0 (the default) looks everywhere. */
	size_t sep_hex_from;
} dlp_decode_opts;
int dlp_decode(const char *data, size_t len, const dlp_decode_opts *o, dlp_region_fn fn,
	       void *ctx);

/* ---- Checksums (validate.c) ------------------------------------------ */

/* Over the digits of s (other bytes skipped); false if there are none. */
bool dlp_luhn(const char *s, size_t n);
/* An IBAN (spaces skipped): country length and mod-97 == 1. */
bool dlp_iban(const char *s, size_t n);
/* A 12-digit My Number (個人番号): its check digit. Separators skipped. */
bool dlp_my_number(const char *s, size_t n);
/* A US routing number (ABA): its checksum. */
bool dlp_aba_routing(const char *s, size_t n);

#endif
