/* dlp.h - finding secrets and personal data in bytes (docs/dlp.md).
 *
 * One engine (compiled once, shared read-only by every thread) runs the
 * detectors of detect_*.c over bytes: Hyperscan finds candidate matches,
 * each detector confirms and extracts its value (checksums, entropy,
 * hotwords near the value), and the same is repeated over views of the
 * bytes that normalisation and the decoders reveal (full-width and
 * invisible characters, HTML and JSON escapes, base64, base32, hex,
 * percent-encoding, gzip/deflate, multipart and form bodies, HTTP Basic
 * credentials), to a bounded depth. Every finding names its kind, its
 * confidence, its span in the original bytes and the decoders that
 * revealed it. The engine never logs a value. */
#ifndef DLP_H
#define DLP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum dlp_class { DLP_SECRET, DLP_PII };

/* How a value was revealed, outermost first in a finding's chain. */
enum dlp_decoder {
	DLP_DEC_NONE = 0,
	DLP_DEC_NFKC,		  /* full-width and other compatibility characters */
	DLP_DEC_INVISIBLE,	  /* zero-width and other invisible characters removed */
	DLP_DEC_HTML,		  /* HTML character references (&#64; &#x40; &commat;) */
	DLP_DEC_JSON,		  /* JSON \uXXXX and \/ escapes */
	DLP_DEC_BASE64,		  /* standard alphabet */
	DLP_DEC_BASE64URL,	  /* URL-safe alphabet */
	DLP_DEC_BASE32,		  /* RFC 4648 */
	DLP_DEC_HEX,		  /* plain, or separated: "41 42", "41:42", "\x41", "0x41," */
	DLP_DEC_PERCENT,	  /* %XX (each round of a repeated encoding is one entry) */
	DLP_DEC_FORM,		  /* application/x-www-form-urlencoded ('+' is a space) */
	DLP_DEC_GZIP,		  /* gzip, or zlib/raw deflate */
	DLP_DEC_MULTIPART,	  /* a multipart/form-data part */
	DLP_DEC_QUOTED_PRINTABLE, /* a part's quoted-printable transfer encoding */
	DLP_DEC_BASIC_AUTH,	  /* the credentials of "Basic <base64>" */
	DLP_DEC_COUNT
};

/* The stable name ("base64", "gzip", ...), or "?" for a bad value. */
const char *dlp_decoder_name(enum dlp_decoder d);

#define DLP_MAX_CHAIN 8

typedef struct dlp_finding {
	const char *kind;   /* static: a detector's stable name */
	enum dlp_class cls; /* secret or personal data */
	float confidence;   /* 0..1 */
	size_t start, end;  /* the value's bytes in the original input */
	uint8_t chain[DLP_MAX_CHAIN]; /* enum dlp_decoder, outermost first */
	uint8_t nchain;
	/* With dlp_opts.values: the value after decoding and normalisation,
	 * NUL-terminated (owned by the findings list); otherwise NULL. */
	char *value;
} dlp_finding;

typedef struct dlp_findings {
	dlp_finding *v;
	size_t n, cap;
	/* Set when a scan found more than DLP_MAX_FINDINGS: the rest were
	 * not kept. A caller that redacts must then refuse instead. */
	bool truncated;
} dlp_findings;

#define DLP_MAX_FINDINGS 4096

/* Frees the values and the array; leaves an empty list. */
void dlp_findings_free(dlp_findings *f);

/* What the caller knows about the bytes; every field may be zero. */
typedef struct dlp_opts {
	/* The Content-Type of a body: multipart/form-data (with its
	 * boundary) and application/x-www-form-urlencoded are decoded as
	 * such. NULL: unknown (a multipart body is still recognised by its
	 * first line). */
	const char *content_type;
	/* The bytes are a URL or a query string: '+' in percent-decoded
	 * text is a space. */
	bool url;
	/* Keep each finding's value (dlp_finding.value). */
	bool values;
	/* Findings below this confidence are dropped; 0 means the
	 * default, DLP_DEFAULT_MIN_CONFIDENCE. */
	float min_confidence;
	/* Decoding depth; 0 means DLP_DEFAULT_DEPTH, at most DLP_MAX_DEPTH. */
	int max_depth;
} dlp_opts;

#define DLP_DEFAULT_MIN_CONFIDENCE 0.5f
#define DLP_DEFAULT_DEPTH 4
#define DLP_MAX_DEPTH 8

typedef struct dlp_engine dlp_engine;

/* Compiles every detector's patterns. Returns NULL with a message in err
 * (naming the detector whose pattern failed, or "out of memory"). The
 * engine is immutable: any number of threads may scan with it at once. */
dlp_engine *dlp_engine_new(char *err, size_t errlen);
/* The same, keeping the compiled databases in cache_dir (a directory only
 * this user may write, e.g. the daemon's home): the first start compiles
 * and writes dlp-<key>.hsdb, later ones read it, which takes milliseconds
 * instead of a third of a second. The key hashes Hyperscan's version,
 * the CPU and every pattern, so a stale file is never used; a file that
 * is not ours, or is writable by others, is ignored. NULL: compile. */
dlp_engine *dlp_engine_open(const char *cache_dir, char *err, size_t errlen);
void dlp_engine_free(dlp_engine *e);

/* Scans len bytes (any bytes: NULs, invalid UTF-8) and appends what it
 * finds to *out, sorted by start. Large inputs are scanned in overlapping
 * windows, so memory stays bounded. Returns 0, or -ENOMEM (then *out holds
 * what was found before). */
int dlp_scan(const dlp_engine *e, const void *data, size_t len, const dlp_opts *o,
	     dlp_findings *out);

/* The same over bytes that arrive in pieces: a value split across pieces
 * is found, with offsets counted from the first byte of the stream. A
 * finding is appended once the bytes after it have arrived (or at close);
 * the stream keeps a bounded window, never the whole of what it saw. */
typedef struct dlp_stream dlp_stream;
dlp_stream *dlp_stream_open(const dlp_engine *e, const dlp_opts *o);
int dlp_stream_feed(dlp_stream *s, const void *data, size_t len, dlp_findings *out);
/* Scans what is left and frees the stream (also on error). */
int dlp_stream_close(dlp_stream *s, dlp_findings *out);

/* The detectors, in a stable order. */
typedef struct dlp_detector_info {
	const char *kind;
	enum dlp_class cls;
	const char *what;    /* one line: what it finds and how it confirms */
	const char *example; /* a fake value it finds */
} dlp_detector_info;
size_t dlp_detector_count(void);
/* NULL past the end. */
const dlp_detector_info *dlp_detector_at(size_t i);
/* By kind; NULL if there is none. */
const dlp_detector_info *dlp_detector_find(const char *kind);
const char *dlp_class_name(enum dlp_class c); /* "secret", "pii" */
/* A detector's place in that order, or -1 for an unknown kind. */
long dlp_detector_index(const char *kind);

/* Findings are recorded by a salted hash of their value: "hmac-sha256:"
 * and the first 16 hex digits of HMAC-SHA-256(salt, value). */
#define DLP_HASH_LEN 28
void dlp_value_hash(const unsigned char *salt, size_t saltlen, const char *v, size_t n,
		    char out[DLP_HASH_LEN + 1]);
/* A salt written as 32 or more lower-case hex digits, into out (at most
 * cap bytes): its length in bytes, or -1. */
long dlp_salt_parse(const char *hex, unsigned char *out, size_t cap);

/* What a policy does with a finding (docs/dlp.md, "Policy"): ignore it,
 * record it, replace the value before it leaves, or refuse the request.
 * Ordered: a stricter action compares greater. */
enum dlp_action {
	DLP_ACTION_UNSET = 0,
	DLP_ACTION_OFF,
	DLP_ACTION_LOG,
	DLP_ACTION_REDACT,
	DLP_ACTION_BLOCK,
};
const char *dlp_action_name(enum dlp_action a); /* "off", ... ; "unset" */
/* The action a name names, or DLP_ACTION_UNSET. */
enum dlp_action dlp_action_parse(const char *name);
/* Without a policy: block secrets, redact personal data. */
enum dlp_action dlp_action_default(enum dlp_class c);

#endif
