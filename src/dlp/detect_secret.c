/* detect_secret.c - the detectors of credentials (docs/dlp.md, "Detectors").
 *
 * Each detector's patterns are a distinctive literal (a vendor's prefix, a
 * label, a URL scheme) and a short, exact run of the value's alphabet, so a
 * pattern is cheap on ordinary text and one value gives one hit. The
 * confirmers do the rest: they extend the value over its alphabet, check
 * that it is a whole token, its length, its checksum where the vendor put
 * one in (GitHub, npm, age), or else its entropy, reject well-known
 * examples and fillers, and narrow the span to the value itself (the
 * password of a URL, the value after a keyword).
 *
 * Confidence follows one scale: a verified checksum or an unmistakable
 * prefix 0.95, a prefix and entropy 0.85 to 0.9, a keyword and entropy
 * 0.7, a plain password assignment 0.6 to 0.75. */
#include <ctype.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "dlp_internal.h"

#define UPPER "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
#define LOWER "abcdefghijklmnopqrstuvwxyz"
#define DIGIT "0123456789"
#define ALNUM UPPER LOWER DIGIT
#define HEX DIGIT "abcdefABCDEF"
#define B64 ALNUM "+/"
#define B64URL ALNUM "_-"
/* What a token's value may be made of after a keyword (api_key=...). */
#define VALUE_CHARS ALNUM "_-+/.~="

/* ---- Small helpers over the bytes of a hit --------------------------- */

static bool in_set(char c, const char *set)
{
	return c != '\0' && strchr(set, c) != NULL;
}

/* The end of the run of bytes in set that starts at from, at most max long. */
static size_t run_end(const dlp_hit *h, size_t from, const char *set, size_t max)
{
	size_t i = from;
	while (i < h->len && i - from < max && in_set(h->data[i], set))
		i++;
	return i;
}

/* The start of the run of bytes in set that ends at to, at most max long. */
static size_t run_start(const dlp_hit *h, size_t to, const char *set, size_t max)
{
	size_t i = to;
	while (i > 0 && to - i < max && in_set(h->data[i - 1], set))
		i--;
	return i;
}

static bool all_in(const char *s, size_t n, const char *set)
{
	for (size_t i = 0; i < n; i++)
		if (!in_set(s[i], set))
			return false;
	return true;
}

static bool any_in(const char *s, size_t n, const char *set)
{
	for (size_t i = 0; i < n; i++)
		if (in_set(s[i], set))
			return true;
	return false;
}

static bool starts_with(const char *s, size_t n, const char *p)
{
	size_t pl = strlen(p);
	return n >= pl && memcmp(s, p, pl) == 0;
}

static bool equals_ci(const char *s, size_t n, const char *w)
{
	return strlen(w) == n && strncasecmp(s, w, n) == 0;
}

/* A value that is a filler rather than a secret: the shared list
 * (EXAMPLE, xxxx, <token>, ${VAR}, ...), a reference to somewhere else
 * ($VAR, %(name)s, {name}), a run of one mask character, or a word that
 * documents a field instead of filling it. */
static bool filler(const char *s, size_t n)
{
	static const char *const words[] = {
	    "password",	  "passwd",    "pass",	   "pwd",     "secret",	    "token",	"apikey",
	    "api_key",	  "key",       "changeit", "test",    "testing",    "null",	"none",
	    "nil",	  "true",      "false",	   "string",  "str",	    "required", "optional",
	    "undefined",  "hidden",    "masked",   "sample",  "foobar",	    "qwerty",	"letmein",
	    "admin",	  "username",  "user",	   "example", "mypassword", "mysecret", "secretkey",
	    "notasecret", "secretstr", NULL};
	if (n == 0 || dlp_placeholder(s, n))
		return true;
	if (s[0] == '$' || s[0] == '%' || s[0] == '{' || s[0] == '<')
		return true;
	if (all_in(s, n, "*.x-_X#?"))
		return true;
	for (const char *const *w = words; *w; w++)
		if (equals_ci(s, n, *w))
			return true;
	return false;
}

/* A whole token of set: the bytes around [s, e) are not in set. */
static bool whole(const dlp_hit *h, size_t s, size_t e, const char *set)
{
	return dlp_whole_token(h, s, e, set);
}

static void report(dlp_match *m, size_t s, size_t e, float confidence)
{
	m->start = s;
	m->end = e;
	m->confidence = confidence;
}

/* ---- Checksums -------------------------------------------------------- */

static const char base62_digits[] = DIGIT UPPER LOWER;

/* GitHub's classic tokens and npm's: prefix, 30 random base62 characters,
 * then the CRC-32 (zlib's) of those 30 characters alone, as a base62
 * number (digits, upper, lower), most significant first, zero-padded to 6
 * characters. /work/wt/notes/checksums.md has the reasoning. */
static bool base62_crc_ok(const char *body, size_t n)
{
	if (n != 36)
		return false;
	uint64_t v = 0;
	for (size_t i = 30; i < 36; i++) {
		const char *p = strchr(base62_digits, body[i]);
		if (!p || !body[i])
			return false;
		v = v * 62 + (uint64_t)(p - base62_digits);
	}
	uLong crc = crc32(0L, (const Bytef *)body, 30);
	return v == (uint64_t)crc;
}

static const char bech32_chars[] = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";

/* BIP-173 bech32 (age's secret keys use it, without the length limit):
 * the polymod of the lowercased human-readable part and the data is 1. */
static bool bech32_ok(const char *s, size_t n)
{
	static const uint32_t gen[5] = {0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3};
	size_t sep = n;
	while (sep > 0 && s[sep - 1] != '1')
		sep--;
	if (sep == 0 || n - sep < 6)
		return false;
	sep--; /* the '1' */
	uint32_t chk = 1;
#define STEP(x)                                                                                    \
	do {                                                                                       \
		uint32_t b_ = chk >> 25;                                                           \
		chk = ((chk & 0x1ffffff) << 5) ^ (uint32_t)(x);                                    \
		for (int k_ = 0; k_ < 5; k_++)                                                     \
			if ((b_ >> k_) & 1)                                                        \
				chk ^= gen[k_];                                                    \
	} while (0)
	for (size_t i = 0; i < sep; i++)
		STEP(tolower((unsigned char)s[i]) >> 5);
	STEP(0);
	for (size_t i = 0; i < sep; i++)
		STEP(tolower((unsigned char)s[i]) & 31);
	for (size_t i = sep + 1; i < n; i++) {
		int c = tolower((unsigned char)s[i]);
		const char *p = c ? strchr(bech32_chars, c) : NULL;
		if (!p)
			return false;
		STEP(p - bech32_chars);
	}
#undef STEP
	return chk == 1;
}

/* ---- Vendor tokens with a fixed prefix -------------------------------- */

/* The common case: the hit starts with a prefix of plen bytes; the value
 * runs on over set for between min and max bytes (a longer run is some
 * other token), is a whole token, is no filler, and (when min_entropy is
 * not 0) has that entropy. Reports the prefix and the value. */
static bool prefixed(const dlp_hit *h, dlp_match *m, size_t plen, const char *set, size_t min,
		     size_t max, double min_entropy, float confidence)
{
	size_t s = h->start, b = s + plen;
	size_t e = run_end(h, b, set, max + 1);
	if (e - b < min || e - b > max || !whole(h, s, e, set))
		return false;
	if (dlp_placeholder(h->data + b, e - b))
		return false;
	if (min_entropy > 0 && dlp_entropy(h->data + b, e - b) < min_entropy)
		return false;
	report(m, s, e, confidence);
	return true;
}

static size_t prefix_to(const dlp_hit *h, char sep)
{
	const char *p = memchr(h->data + h->start, sep, h->end - h->start);
	return p ? (size_t)(p - (h->data + h->start)) + 1 : 0;
}

static bool confirm_aws_access_key_id(const dlp_hit *h, dlp_match *m)
{
	return prefixed(h, m, 4, UPPER "234567", 16, 16, 3.0, 0.95f) &&
	       whole(h, m->start, m->end, ALNUM);
}

static bool confirm_github_token(const dlp_hit *h, dlp_match *m)
{
	const char *d = h->data + h->start;
	if (h->pattern == 0) {
		if (!prefixed(h, m, 4, ALNUM, 36, 36, 0, 0.95f))
			return false;
		return base62_crc_ok(d + 4, 36);
	}
	/* Fine-grained: github_pat_, 22 characters, '_', 59 characters. No
	 * public checksum, so entropy stands in for it. */
	size_t b = h->start + 11, e = run_end(h, b, ALNUM "_", 83);
	if (e - b != 82 || h->data[b + 22] != '_' || !whole(h, h->start, e, ALNUM "_"))
		return false;
	if (dlp_placeholder(h->data + b, 82) || dlp_entropy(h->data + b, 82) < 4.0)
		return false;
	report(m, h->start, e, 0.9f);
	return true;
}

static bool confirm_npm_token(const dlp_hit *h, dlp_match *m)
{
	return prefixed(h, m, 4, ALNUM, 36, 36, 0, 0.95f) &&
	       base62_crc_ok(h->data + h->start + 4, 36);
}

static bool confirm_gitlab_token(const dlp_hit *h, dlp_match *m)
{
	/* glpat-..., and the runner registration token GR1348941... */
	size_t plen = h->data[h->start] == 'G' ? 9 : prefix_to(h, '-');
	/* The routable tokens of newer GitLab carry '.'-separated parts. */
	return plen && prefixed(h, m, plen, B64URL ".", 20, 300, 3.0, 0.9f);
}

static bool confirm_slack_token(const dlp_hit *h, dlp_match *m)
{
	/* xoxe.xoxp-1-...: the rotating kind starts with "xoxe.". */
	size_t s = h->start, b = s + (h->pattern == 1 ? 5 : 0);
	size_t e = run_end(h, b, ALNUM "-", 300), dashes = 0;
	for (size_t i = b; i < e; i++)
		dashes += h->data[i] == '-';
	if (e - s < 24 || dashes < 2 || !whole(h, s, e, ALNUM "-."))
		return false;
	const char *tail = (const char *)memrchr(h->data + b, '-', e - b) + 1;
	size_t tl = (size_t)(h->data + e - tail);
	if (tl < 8 || dlp_placeholder(h->data + b + 5, e - b - 5) || dlp_entropy(tail, tl) < 2.5)
		return false;
	report(m, s, e, 0.9f);
	return true;
}

static bool confirm_slack_webhook(const dlp_hit *h, dlp_match *m)
{
	size_t s = h->start, e = h->end;
	if ((e < h->len && in_set(h->data[e], ALNUM)) || dlp_placeholder(h->data + e - 24, 24))
		return false;
	if (s >= 8 && memcmp(h->data + s - 8, "https://", 8) == 0)
		s -= 8;
	report(m, s, e, 0.95f);
	return true;
}

static bool confirm_stripe_key(const dlp_hit *h, dlp_match *m)
{
	return prefixed(h, m, 8, ALNUM, 20, 247, 3.0, 0.95f);
}

static bool confirm_openai_api_key(const dlp_hit *h, dlp_match *m)
{
	size_t s = h->start, e = run_end(h, s, B64URL, 400);
	if (!whole(h, s, e, B64URL))
		return false;
	bool marker = memmem(h->data + s, e - s, "T3BlbkFJ", 8) != NULL;
	if (h->pattern == 1) {
		/* The legacy shape: sk-, 20, T3BlbkFJ (base64 of "OpenAI"), 20. */
		if (e - s != 51)
			return false;
		report(m, s, e, 0.95f);
		return !dlp_placeholder(h->data + s + 3, 48);
	}
	/* sk-proj-, sk-svcacct-, sk-admin-: the second '-' ends the prefix. */
	const char *p = memchr(h->data + s + 3, '-', e - s - 3);
	size_t plen = p ? (size_t)(p - (h->data + s)) + 1 : e - s;
	size_t vl = e - s - plen;
	if (vl < 40 || dlp_placeholder(h->data + s + plen, vl) ||
	    dlp_entropy(h->data + s + plen, vl) < 4.0)
		return false;
	report(m, s, e, marker ? 0.95f : 0.85f);
	return true;
}

static bool confirm_anthropic_api_key(const dlp_hit *h, dlp_match *m)
{
	size_t s = h->start, e = run_end(h, s, B64URL, 300);
	if (!whole(h, s, e, B64URL))
		return false;
	/* The prefix ends at the third '-': sk-ant-api03-, sk-ant-admin01-. */
	const char *p = memchr(h->data + s + 7, '-', e - s - 7);
	if (!p)
		return false;
	size_t b = (size_t)(p - h->data) + 1, vl = e - b;
	if (vl < 80 || dlp_placeholder(h->data + b, vl) || dlp_entropy(h->data + b, vl) < 4.0)
		return false;
	bool shaped = vl == 95 && h->data[e - 2] == 'A' && h->data[e - 1] == 'A';
	report(m, s, e, shaped ? 0.95f : 0.85f);
	return true;
}

static bool confirm_google_api_key(const dlp_hit *h, dlp_match *m)
{
	return prefixed(h, m, 4, B64URL, 35, 35, 3.0, 0.9f);
}

static bool confirm_pypi_token(const dlp_hit *h, dlp_match *m)
{
	/* pypi- and a macaroon whose base64 names the index. */
	return prefixed(h, m, 5, B64URL, 65, 1000, 3.0, 0.95f);
}

static bool confirm_huggingface_token(const dlp_hit *h, dlp_match *m)
{
	return prefixed(h, m, 3, UPPER LOWER, 34, 34, 3.5, 0.85f) &&
	       whole(h, m->start, m->end, B64URL);
}

static bool confirm_sendgrid_api_key(const dlp_hit *h, dlp_match *m)
{
	size_t s = h->start, e = h->end;
	if (!whole(h, s, e, B64URL ".") || dlp_placeholder(h->data + s + 3, e - s - 3) ||
	    dlp_entropy(h->data + s + 26, 43) < 3.5)
		return false;
	report(m, s, e, 0.95f);
	return true;
}

static bool confirm_shopify_token(const dlp_hit *h, dlp_match *m)
{
	return prefixed(h, m, 6, HEX, 32, 32, 3.0, 0.95f) && whole(h, m->start, m->end, ALNUM "_");
}

static bool confirm_telegram_bot_token(const dlp_hit *h, dlp_match *m)
{
	size_t s = h->start, e = h->end;
	/* A letter may come before it only in the API's URL: /bot<token>/. */
	bool bot = s >= 3 && memcmp(h->data + s - 3, "bot", 3) == 0;
	if (!whole(h, s, e, bot ? DIGIT : B64URL) || (e < h->len && in_set(h->data[e], B64URL)) ||
	    dlp_placeholder(h->data + e - 33, 33) || dlp_entropy(h->data + e - 33, 33) < 3.5)
		return false;
	report(m, s, e, 0.9f);
	return true;
}

static bool confirm_digitalocean_token(const dlp_hit *h, dlp_match *m)
{
	return prefixed(h, m, 7, HEX, 64, 64, 3.0, 0.95f) && whole(h, m->start, m->end, ALNUM "_");
}

static bool confirm_databricks_token(const dlp_hit *h, dlp_match *m)
{
	if (!prefixed(h, m, 4, HEX, 32, 32, 3.0, 0.9f) || !whole(h, m->start, m->end, ALNUM "_"))
		return false;
	/* Some carry a "-2"-style suffix: it is part of the token. */
	if (m->end + 1 < h->len && h->data[m->end] == '-' &&
	    isdigit((unsigned char)h->data[m->end + 1]))
		m->end = run_end(h, m->end + 1, DIGIT, 4);
	return true;
}

static bool confirm_hashicorp_vault_token(const dlp_hit *h, dlp_match *m)
{
	return prefixed(h, m, 4, B64URL, 24, 400, 3.5, 0.9f);
}

static bool confirm_age_secret_key(const dlp_hit *h, dlp_match *m)
{
	size_t s = h->start, e = h->end;
	if (!whole(h, s, e, ALNUM "-") || !bech32_ok(h->data + s, e - s))
		return false;
	report(m, s, e, 0.95f);
	return true;
}

static bool confirm_square_token(const dlp_hit *h, dlp_match *m)
{
	if (h->pattern == 0) {
		/* EAAA is common in base64 of binary data: the token must not
		 * continue in the standard alphabet, nor have the runs of one
		 * character that zero bytes leave ("AAAA", counting the
		 * prefix's: one real token in 64 starts EAAAA and is missed). */
		if (!prefixed(h, m, 4, B64URL, 60, 60, 4.0, 0.85f) ||
		    (m->start > 0 && in_set(h->data[m->start - 1], "+/")) ||
		    (m->end < h->len && in_set(h->data[m->end], "+/=")))
			return false;
		for (size_t i = m->start + 1; i + 3 < m->end; i++)
			if (h->data[i] == h->data[i + 1] && h->data[i] == h->data[i + 2] &&
			    h->data[i] == h->data[i + 3])
				return false;
		return true;
	}
	/* sq0atp- (access token, 22) and sq0csp- (application secret, 43). */
	size_t want = h->data[h->start + 3] == 'a' ? 22 : 43;
	return prefixed(h, m, 7, B64URL, want, want, 3.0, 0.95f);
}

static bool confirm_azure_ad_client_secret(const dlp_hit *h, dlp_match *m)
{
	static const char set[] = ALNUM "_~.-";
	size_t s = h->start, e = run_end(h, h->end, set, 4);
	/* Three characters, a digit, "Q~", then 31 to 34. */
	if (e - s < 37 || e - s > 40 || !whole(h, s, e, set))
		return false;
	if (dlp_placeholder(h->data + s + 6, e - s - 6) ||
	    dlp_entropy(h->data + s + 6, e - s - 6) < 3.8)
		return false;
	report(m, s, e, 0.85f);
	return true;
}

/* ---- Values told by their neighbours ---------------------------------- */

/* A value of exactly n bytes of set (a whole token of it) that starts within
 * skip bytes after pos, past separators and quotes: ": ", "=", "\"", "=>". */
static bool value_after(const dlp_hit *h, size_t pos, size_t skip, const char *set, size_t n,
			size_t *vs)
{
	size_t i = pos;
	while (i < h->len && i - pos < skip && in_set(h->data[i], " \t\"'`:=>\\"))
		i++;
	/* In prose: "set KEY to VALUE", "KEY は VALUE を". */
	static const char *const joins[] = {"to ", "TO ", "\xe3\x81\xaf", NULL};
	for (const char *const *j = joins; *j; j++) {
		size_t jl = strlen(*j);
		if (i > pos && h->len - i > jl && memcmp(h->data + i, *j, jl) == 0) {
			i += jl;
			while (i < h->len && (h->data[i] == ' ' || h->data[i] == '\t'))
				i++;
			break;
		}
	}
	size_t e = run_end(h, i, set, n + 1);
	if (e - i != n || !whole(h, i, e, set))
		return false;
	*vs = i;
	return true;
}

/* Upper and lower case and a digit: what a random base64 value has and a
 * path, a word or a hex digest lacks. */
static bool mixed(const char *s, size_t n)
{
	return any_in(s, n, UPPER) && any_in(s, n, LOWER) && any_in(s, n, DIGIT);
}

static bool aws_secret_ok(const char *s, size_t n)
{
	return mixed(s, n) && !dlp_placeholder(s, n) && dlp_entropy(s, n) >= 4.0;
}

static bool confirm_aws_secret_access_key(const dlp_hit *h, dlp_match *m)
{
	size_t vs;
	if (h->pattern == 0) {
		if (!value_after(h, h->end, 8, B64, 40, &vs) || !aws_secret_ok(h->data + vs, 40))
			return false;
		report(m, vs, vs + 40, 0.85f);
		return true;
	}
	/* The hit is an access key id: the secret is a 40-character value
	 * within 200 bytes of it (the other line of a credentials file). */
	if (!whole(h, h->start, h->end, ALNUM))
		return false;
	size_t from = h->start > 200 ? h->start - 200 : 0;
	size_t to = h->len - h->end > 200 ? h->end + 200 : h->len;
	for (size_t i = from; i < to;) {
		if (!in_set(h->data[i], B64)) {
			i++;
			continue;
		}
		size_t e = run_end(h, i, B64, 41);
		if (e - i == 40 && whole(h, i, e, B64) && aws_secret_ok(h->data + i, 40)) {
			report(m, i, e, 0.8f);
			return true;
		}
		i = run_end(h, i, B64, SIZE_MAX);
	}
	return false;
}

static bool confirm_gcp_service_account(const dlp_hit *h, dlp_match *m)
{
	static const char *const type[] = {"service_account", NULL};
	size_t e = h->end, s = e - 40;
	if (!whole(h, s, e, ALNUM) || dlp_placeholder(h->data + s, 40))
		return false;
	if (!dlp_word_before(h, h->start, 4096, type) && !dlp_word_after(h, e, 4096, type))
		return false;
	report(m, s, e, 0.95f);
	return true;
}

static bool confirm_azure_storage_key(const dlp_hit *h, dlp_match *m)
{
	static const char *const near[] = {"accountkey",  "account_key", "azure", "storagekey",
					   "storage_key", "storage-key", NULL};
	size_t e = h->end, s = e - 88;
	if ((s > 0 && in_set(h->data[s - 1], B64)) || (e < h->len && in_set(h->data[e], B64 "=")) ||
	    !aws_secret_ok(h->data + s, 86))
		return false;
	if (h->pattern == 1 && !dlp_word_before(h, s, 200, near))
		return false;
	report(m, s, e, h->pattern == 0 ? 0.95f : 0.85f);
	return true;
}

static bool confirm_twilio(const dlp_hit *h, dlp_match *m)
{
	static const char *const label[] = {"twilio", "sid", "auth", "account", NULL};
	static const char *const twilio[] = {"twilio", NULL};
	static const char *const secret[] = {"auth", "token", "secret", NULL};
	if (h->pattern == 0) {
		/* An account SID (AC) or API key SID (SK) by a label. */
		size_t s = h->start, e = h->end;
		if (!whole(h, s, e, ALNUM) || dlp_placeholder(h->data + s + 2, 32) ||
		    dlp_entropy(h->data + s + 2, 32) < 3.0)
			return false;
		if (!dlp_word_before(h, s, 80, label) && !dlp_word_after(h, e, 40, twilio))
			return false;
		report(m, s, e, 0.8f);
		return true;
	}
	/* The auth token: 32 hex digits after "twilio" and a word saying
	 * what it is (TWILIO_AUTH_TOKEN=..., twilio: {auth_token: ...}). */
	size_t to = h->len - h->end > 160 ? h->end + 160 : h->len;
	for (size_t i = h->end; i < to;) {
		if (!in_set(h->data[i], ALNUM)) {
			i++;
			continue;
		}
		size_t e = run_end(h, i, ALNUM, 33);
		if (e - i == 32 && all_in(h->data + i, 32, DIGIT "abcdef") &&
		    whole(h, i, e, ALNUM) && !dlp_placeholder(h->data + i, 32) &&
		    dlp_entropy(h->data + i, 32) >= 3.0) {
			dlp_hit before = *h;
			before.len = i;
			if (!dlp_word_after(&before, h->start, i - h->start, secret))
				return false;
			report(m, i, e, 0.75f);
			return true;
		}
		i = run_end(h, i, ALNUM, SIZE_MAX);
	}
	return false;
}

static bool confirm_mailgun_api_key(const dlp_hit *h, dlp_match *m)
{
	static const char *const mailgun[] = {"mailgun", NULL};
	if (!prefixed(h, m, 4, DIGIT "abcdef", 32, 32, 3.0, 0.85f) ||
	    !whole(h, m->start, m->end, ALNUM))
		return false;
	return dlp_word_before(h, h->start, 200, mailgun) ||
	       dlp_word_after(h, h->end, 100, mailgun);
}

static bool confirm_discord_bot_token(const dlp_hit *h, dlp_match *m)
{
	size_t s = h->start, e = run_end(h, h->end, B64URL, 12);
	if (e - h->end > 11 || !whole(h, s, e, B64URL "."))
		return false;
	/* The first part is the bot's numeric id in base64. */
	const char *dot = memchr(h->data + s, '.', e - s);
	unsigned char id[32];
	long n = dlp_base64_decode(h->data + s, (size_t)(dot - (h->data + s)), id, sizeof(id));
	if (n < 17 || n > 20)
		return false;
	for (long i = 0; i < n; i++)
		if (!isdigit(id[i]))
			return false;
	const char *last = (const char *)memrchr(h->data + s, '.', e - s) + 1;
	size_t ll = (size_t)(h->data + e - last);
	if (dlp_placeholder(last, ll) || dlp_entropy(last, ll) < 3.5)
		return false;
	report(m, s, e, 0.9f);
	return true;
}

/* ---- Structured tokens --------------------------------------------------- */

/* Whether decoded bytes are mostly printable text. */
static bool printable(const unsigned char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if ((s[i] < 0x20 && s[i] != '\t' && s[i] != '\n' && s[i] != '\r') || s[i] == 0x7f)
			return false;
	return true;
}

static bool confirm_jwt(const dlp_hit *h, dlp_match *m)
{
	size_t s = h->start;
	if (s > 0 && in_set(h->data[s - 1], B64URL "."))
		return false;
	/* The header: JSON naming its algorithm. */
	size_t he = run_end(h, s, B64URL, 4096);
	if (he >= h->len || h->data[he] != '.')
		return false;
	unsigned char buf[3072];
	long n = dlp_base64_decode(h->data + s, he - s, buf, sizeof(buf));
	if (n < 10 || buf[0] != '{' || !printable(buf, (size_t)n) ||
	    !memmem(buf, (size_t)n, "\"alg\"", 5))
		return false;
	/* The payload: JSON too (a JWS), or ciphertext (a JWE, 5 parts). */
	size_t ps = he + 1, pe = run_end(h, ps, B64URL, SIZE_MAX);
	if (pe - ps < 4)
		return false;
	n = dlp_base64_decode(h->data + ps, pe - ps < 64 ? pe - ps : 64, buf, 64);
	bool json = n > 0 && buf[0] == '{';
	size_t e = pe, parts = 2, siglen = 0;
	while (parts < 5 && e < h->len && h->data[e] == '.') {
		size_t ne = run_end(h, e + 1, B64URL, SIZE_MAX);
		siglen = ne - (e + 1);
		e = ne;
		parts++;
	}
	if (e < h->len && in_set(h->data[e], B64URL "."))
		return false;
	if (!json && parts != 5)
		return false;
	report(m, s, e, json && parts == 3 && siglen >= 16 ? 0.95f : 0.85f);
	return true;
}

/* A line break in a PEM body: a real one, or the two characters "\n" of
 * a JSON or shell string (also "\r\n", "\\n"). Returns its length, 0 if
 * there is none at i. */
static size_t pem_break(const dlp_hit *h, size_t i)
{
	const char *d = h->data;
	if (d[i] == '\n' || d[i] == '\r')
		return 1;
	if (d[i] != '\\')
		return 0;
	size_t j = i;
	while (j < h->len && j - i < 3 && d[j] == '\\')
		j++;
	return j < h->len && (d[j] == 'n' || d[j] == 'r') ? j + 1 - i : 0;
}

static bool confirm_private_key(const dlp_hit *h, dlp_match *m)
{
	const char *d = h->data;
	size_t i = h->end, body = 0, kept = 0, end = h->end;
	char sample[512];
	/* Lines of base64, and before them the headers of an encrypted PEM or
	 * an armoured PGP key ("Proc-Type: 4,ENCRYPTED", "Version: ..."). */
	while (i < h->len) {
		size_t b = pem_break(h, i);
		if (b || d[i] == ' ' || d[i] == '\t') {
			i += b ? b : 1;
			continue;
		}
		size_t e = run_end(h, i, ALNUM "-", 64);
		if (e < h->len && d[e] == ':' && body == 0) {
			while (e < h->len && !pem_break(h, e))
				e++;
			i = e;
			continue;
		}
		e = run_end(h, i, B64 "=", SIZE_MAX);
		if (e == i)
			break;
		for (size_t k = i; k < e && kept < sizeof(sample); k++)
			if (d[k] != '=')
				sample[kept++] = d[k];
		body += e - i;
		i = end = e;
	}
	if (body < 64 || dlp_placeholder(sample, kept) || dlp_entropy(sample, kept) < 4.2)
		return false;
	/* The END line, when it is there, belongs to the key. */
	if (i + 9 <= h->len && memcmp(d + i, "-----END ", 9) == 0) {
		const char *close =
		    memmem(d + i + 9, h->len - i - 9 < 64 ? h->len - i - 9 : 64, "-----", 5);
		if (close)
			end = (size_t)(close - d) + 5;
	}
	report(m, h->start, end, 0.95f);
	return true;
}

/* ---- URLs with credentials ------------------------------------------- */

/* The password of a URL whose authority starts at from:
 * user:password@host. The authority ends at '/', '?', '#', a space, a
 * quote or a backslash (a JSON escape); its last '@' ends the userinfo,
 * whose first ':' starts the password. */
static bool url_password(const dlp_hit *h, size_t from, size_t *ps, size_t *pe)
{
	size_t at = SIZE_MAX, colon = SIZE_MAX;
	for (size_t i = from; i < h->len && i - from < 512; i++) {
		unsigned char c = (unsigned char)h->data[i];
		if (c == '/' || c == '?' || c == '#' || c <= ' ' || c == '"' || c == '\'' ||
		    c == '<' || c == '>' || c == '`' || c == '\\' || c == 0x7f)
			break;
		if (c == '@')
			at = i;
		else if (c == ':' && colon == SIZE_MAX)
			colon = i;
	}
	if (at == SIZE_MAX || colon == SIZE_MAX || colon > at || at - colon < 2)
		return false;
	*ps = colon + 1;
	*pe = at;
	return true;
}

/* A masked password (user:****@host, ***), not one that happens to hold
 * a '*'. */
static bool url_password_filler(const char *s, size_t n)
{
	return filler(s, n) || n < 3 || memmem(s, n, "***", 3) != NULL;
}

static bool db_scheme(const char *s, size_t n)
{
	static const char *const schemes[] = {
	    "postgres", "postgresql", "mysql", "mariadb", "mongodb",   "mongodb+srv", "redis",
	    "rediss",	"amqp",	      "amqps", "mssql",	  "sqlserver", "clickhouse",  NULL};
	/* A driver may follow a '+': postgresql+psycopg2, mysql+pymysql. */
	const char *plus = memchr(s, '+', n);
	size_t base = plus && !equals_ci(s, n, "mongodb+srv") ? (size_t)(plus - s) : n;
	for (const char *const *w = schemes; *w; w++)
		if (equals_ci(s, base, *w))
			return true;
	return false;
}

static bool confirm_database_url(const dlp_hit *h, dlp_match *m)
{
	size_t ps, pe;
	if ((h->start > 0 && in_set(h->data[h->start - 1], ALNUM)) ||
	    !url_password(h, h->end, &ps, &pe))
		return false;
	if (url_password_filler(h->data + ps, pe - ps))
		return false;
	report(m, ps, pe, 0.9f);
	return true;
}

static bool confirm_url_basic_auth(const dlp_hit *h, dlp_match *m)
{
	/* The scheme before "://"; database URLs are database_url's. */
	size_t ss = run_start(h, h->start, ALNUM "+.-", 32);
	if (ss == h->start || !isalpha((unsigned char)h->data[ss]) ||
	    db_scheme(h->data + ss, h->start - ss))
		return false;
	size_t ps, pe, us = h->start + 3;
	if (!url_password(h, us, &ps, &pe))
		return false;
	const char *p = h->data + ps;
	size_t n = pe - ps;
	if (url_password_filler(p, n))
		return false;
	/* user:pass@ and the like are documentation. */
	if (equals_ci(h->data + us, ps - 1 - us, "user") && n <= 8)
		return false;
	report(m, ps, pe, 0.8f);
	return true;
}

/* ---- Keyword assignments -------------------------------------------- */

/* Prefixes of the vendor tokens above: a value that starts with one is
 * theirs to report (or to drop, when its checksum fails). */
static bool vendor_value(const char *s, size_t n)
{
	static const char *const prefixes[] = {
	    "ghp_",	   "gho_",     "ghu_",	   "ghs_",    "ghr_",
	    "github_pat_", "glpat-",   "npm_",	   "xox",     "sk_live_",
	    "sk_test_",	   "rk_live_", "rk_test_", "sk-",     "AKIA",
	    "ASIA",	   "AIza",     "hf_",	   "SG.",     "eyJ",
	    "pypi-",	   "dop_v1_",  "doo_v1_",  "dor_v1_", "dapi",
	    "hvs.",	   "hvb.",     "hvr.",	   "shpat_",  "shpca_",
	    "shppa_",	   "shpss_",   "EAAA",	   "sq0",     "AGE-SECRET-KEY-",
	    NULL};
	for (const char *const *p = prefixes; *p; p++)
		if (starts_with(s, n, *p))
			return true;
	return false;
}

static bool uuid_shaped(const char *s, size_t n)
{
	if (n != 36)
		return false;
	for (size_t i = 0; i < 36; i++) {
		bool dash = i == 8 || i == 13 || i == 18 || i == 23;
		if (dash ? s[i] != '-' : !isxdigit((unsigned char)s[i]))
			return false;
	}
	return true;
}

/* Letters, dots and underscores: a name in code (config.api_key_value,
 * process.env.TOKEN), not a value. */
static bool code_reference(const char *s, size_t n)
{
	return all_in(s, n, UPPER LOWER "_.") && any_in(s, n, "._");
}

static bool confirm_generic_api_key(const dlp_hit *h, dlp_match *m)
{
	/* The pattern ends with the first 16 bytes of the value. */
	size_t vs = h->end - 16, ve = run_end(h, vs, VALUE_CHARS, 513);
	if (ve - vs > 512 ||
	    (h->start > 0 && in_set(h->data[h->start - 1], ALNUM) && h->pattern == 1))
		return false;
	char q = vs > 0 ? h->data[vs - 1] : 0;
	if (q == '"' || q == '\'' || q == '`') {
		/* Quoted: the whole string is the value, not a prefix of it. */
		if (ve >= h->len || (h->data[ve] != q && h->data[ve] != '\\'))
			return false;
	} else if (h->pattern == 2) {
		/* <apiKey>value</apiKey> */
		if (ve >= h->len || h->data[ve] != '<')
			return false;
	} else {
		/* Bare: a trailing full stop or comma ends a sentence. */
		while (ve > vs && in_set(h->data[ve - 1], ".,"))
			ve--;
		if (ve < h->len && (h->data[ve] == '(' || h->data[ve] == '['))
			return false;
	}
	const char *v = h->data + vs;
	size_t n = ve - vs;
	/* "token:=v" also matches as "token:" and "=v": the other hit is it. */
	if (v[0] == '=')
		return false;
	if (n < 16 || vendor_value(v, n) || filler(v, n) || uuid_shaped(v, n) ||
	    code_reference(v, n) || v[0] == '/' || v[0] == '.')
		return false;
	if (dlp_entropy(v, n) < 3.0)
		return false;
	/* The keyword: bare "token" and "secret" name many things (a count,
	 * a commit); a hex value needs a keyword that names a credential. */
	size_t ks = h->start + (h->pattern == 2), kl = 0;
	while (ks + kl < vs && in_set(h->data[ks + kl], UPPER LOWER "_.-"))
		kl++;
	bool weak = h->pattern != 1 &&
		    (equals_ci(h->data + ks, kl, "token") || equals_ci(h->data + ks, kl, "secret"));
	if (all_in(v, n, HEX) && (n < 32 || weak))
		return false;
	/* Random values of this length have a digit, or both cases. */
	if (!any_in(v, n, DIGIT) && !(n >= 32 && any_in(v, n, UPPER) && any_in(v, n, LOWER)))
		return false;
	report(m, vs, ve, 0.7f);
	return true;
}

static bool confirm_http_basic_auth(const dlp_hit *h, dlp_match *m)
{
	static const char *const header[] = {"authorization", NULL};
	size_t vs = h->end - 4, ve = run_end(h, vs, B64, 1024);
	if (h->start > 0 && in_set(h->data[h->start - 1], ALNUM))
		return false;
	while (ve < h->len && ve - vs < 1026 && h->data[ve] == '=')
		ve++;
	if (ve < h->len && in_set(h->data[ve], B64URL "="))
		return false;
	unsigned char buf[800];
	long n = dlp_base64_decode(h->data + vs, ve - vs, buf, sizeof(buf));
	if (n < 3 || !printable(buf, (size_t)n))
		return false;
	const unsigned char *colon = memchr(buf, ':', (size_t)n);
	if (!colon || colon == buf + n - 1)
		return false;
	const char *pw = (const char *)colon + 1;
	size_t pl = (size_t)(buf + n - colon - 1);
	if (url_password_filler(pw, pl) ||
	    (equals_ci((const char *)buf, (size_t)(colon - buf), "user") && pl <= 8))
		return false;
	report(m, vs, ve, dlp_word_before(h, h->start, 32, header) ? 0.9f : 0.75f);
	return true;
}

/* Whether a form's next field (name=) starts at i: the '&' before it
 * ends a bare value (password=x&user=y); another '&' is part of it. */
static bool form_field(const dlp_hit *h, size_t i)
{
	size_t k = i;
	while (k < h->len && k - i < 64 && (isalnum((unsigned char)h->data[k]) ||
					    strchr("_.-[]%", h->data[k])))
		k++;
	return k > i && k < h->len && h->data[k] == '=';
}

static bool confirm_password_assignment(const dlp_hit *h, dlp_match *m)
{
	const char *d = h->data;
	size_t i = h->end;
	while (i < h->len && (d[i] == ' ' || d[i] == '\t'))
		i++;
	if (i < h->len && d[i] == '\\')
		i++;
	size_t vs, ve;
	bool quoted = false;
	if (i < h->len && (d[i] == '"' || d[i] == '\'' || d[i] == '`')) {
		char q = d[i];
		vs = ++i;
		while (i < h->len && i - vs <= 256 && d[i] != q && d[i] != '\n' &&
		       !(d[i] == '\\' && i + 1 < h->len && d[i + 1] == q))
			i++;
		if (i >= h->len || i - vs > 256 || d[i] == '\n')
			return false;
		ve = i;
		quoted = true;
	} else {
		/* Bare: up to a space or what ends a value in env files, query
		 * strings, YAML flow and code. */
		vs = i;
		while (i < h->len && i - vs <= 256 && (unsigned char)d[i] > ' ' &&
		       !strchr(",;}])[\"'<>", d[i]) && !(d[i] == '&' && form_field(h, i + 1)))
			i++;
		ve = i;
		/* "password:=x" also matches as "password:" with "=x" after
		 * it; the other hit has the value. */
		if (vs < h->len && (d[vs] == '=' || d[vs] == '>'))
			return false;
		/* A call or a type (Optional[str]) is code, not a value. */
		if (ve < h->len && (d[ve] == '(' || d[ve] == '['))
			return false;
		/* More words after it: a sentence ("PASSWORD: attribute for
		 * passing ..."), not a value. */
		size_t j = ve;
		while (j < h->len && (d[j] == ' ' || d[j] == '\t'))
			j++;
		if (j > ve && j < h->len && isalpha((unsigned char)d[j]))
			return false;
		/* pwd = pwd + salt: an expression over the variable itself. */
		const char *kw = d + h->start + (h->pattern == 1);
		size_t kl = 0;
		while (kw + kl < d + h->end && isalpha((unsigned char)kw[kl]))
			kl++;
		if (kl >= 3 && memmem(d + vs, ve - vs, kw, kl))
			return false;
	}
	const char *v = d + vs;
	size_t n = ve - vs;
	if (n < 6 || n > 256 || filler(v, n) || v[0] == '!' || v[0] == '[')
		return false;
	if (memchr(v, '(', n) || code_reference(v, n) || (!quoted && v[0] == '/'))
		return false;
	bool strong =
	    quoted || any_in(v, n, DIGIT "!#$%&*+-/=?@^_~") || (unsigned char)v[0] >= 0x80;
	report(m, vs, ve, strong ? 0.75f : 0.6f);
	return true;
}

/* ---- The table ---------------------------------------------------------- */

#define PATTERNS(...)                                                                              \
	(const dlp_pattern[]){__VA_ARGS__},                                                        \
	    sizeof((dlp_pattern[]){__VA_ARGS__}) / sizeof(dlp_pattern)
#define CI DLP_RE_CASELESS

/* The names of keys and tokens, in any case and separator style. */
#define KEY_WORDS                                                                                  \
	"(api[_.-]?(key|secret|token)|access[_.-]?(key|token)|auth[_.-]?token|client[_.-]?"        \
	"secret|private[_.-]?key|secret[_.-]?key|secret|token)"
#define PASSWORD_WORDS                                                                             \
	"(password|passwd|pwd|\xe3\x83\x91\xe3\x82\xb9\xe3\x83\xaf\xe3\x83\xbc\xe3\x83\x89)"
/* The separator of an assignment: "key": "v", key=v, key := v, key => v,
 * $a['key'] => v, JSON escaped inside a string (\"key\": \"v\"), and
 * prose: "set KEY to v", "KEY は v". */
#define ASSIGN "\\\\?[\"']?\\]?\\s{0,3}(:=|=>|=|:|\\sto\\s|\\s?\xe3\x81\xaf)\\s{0,3}\\\\?[\"'`]?"

const dlp_detector dlp_secret_detectors[] = {
    {"aws_access_key_id", DLP_SECRET,
     "AWS access key id: AKIA/ASIA/... and 16 base32 characters, entropy, not the documented "
     "example",
     "AKIAKTAIPPAT6CVJJEEV", PATTERNS({"(AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z2-7]{16}", 0}),
     confirm_aws_access_key_id},
    {"aws_secret_access_key", DLP_SECRET,
     "AWS secret access key: 40 base64 characters after its label or near an access key id, "
     "entropy",
     "aws_secret_access_key = J88z2QCkmJI2TW6JH6tJ7aYz7NxWpoiPuj5FDZQl",
     PATTERNS({"secret[_.-]?access[_.-]?key|aws[_.-]?secret([_.-]?key)?[\"'\\s:=]", CI},
	      {"(AKIA|ASIA)[A-Z2-7]{16}", 0}),
     confirm_aws_secret_access_key},
    {"github_token", DLP_SECRET,
     "GitHub token: gh[pousr]_ and 36 base62 characters with their CRC-32, or a fine-grained "
     "github_pat_",
     "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",
     PATTERNS({"gh[pousr]_[A-Za-z0-9]{36}", 0}, {"github_pat_[A-Za-z0-9]{22}_[A-Za-z0-9]{20}", 0}),
     confirm_github_token},
    {"gitlab_token", DLP_SECRET,
     "GitLab token: glpat-, gldt-, glrt-, glptt-, ... or a GR1348941 runner token, entropy",
     "glpat-fWJHYDkJYPS8-LYf2ABK",
     PATTERNS(
	 {"(glpat|gldt|glrt|glptt|gloas|glcbt|glimt|glft|glagent|glsoat|glffct)-[A-Za-z0-9_-]{20}",
	  0},
	 {"GR1348941[A-Za-z0-9_-]{20}", 0}),
     confirm_gitlab_token},
    {"slack_token", DLP_SECRET,
     "Slack token: xoxb-/xoxp-/xoxa-/... with its dash-separated parts, entropy",
     "xoxb-021833065670-3706221974897-daxBC1AXJpVLfMdQsXybI43I",
     PATTERNS({"xox[abposr]-[0-9A-Za-z]{8}", 0}, {"xoxe\\.xox[bp]-1-[0-9A-Za-z]{8}", 0}),
     confirm_slack_token},
    {"slack_webhook", DLP_SECRET,
     "Slack incoming webhook URL: hooks.slack.com/services/T.../B.../ and a 24-character secret",
     "https://hooks.slack.com/services/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",
     PATTERNS({"hooks\\.slack\\.com/services/T[A-Z0-9]{8,12}/B[A-Z0-9]{8,12}/[A-Za-z0-9]{24}", 0}),
     confirm_slack_webhook},
    {"stripe_key", DLP_SECRET,
     "Stripe secret or restricted key: sk_live_/sk_test_/rk_live_/rk_test_, entropy",
     "sk_live_kfbH0bu7FlC5MQSqjr7mOwQg", PATTERNS({"[sr]k_(live|test)_[0-9A-Za-z]{20}", 0}),
     confirm_stripe_key},
    {"openai_api_key", DLP_SECRET,
     "OpenAI API key: sk-proj-/sk-svcacct-/sk-admin- or the legacy sk-...T3BlbkFJ..., entropy",
     "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",
     PATTERNS({"sk-(proj|svcacct|admin)-[A-Za-z0-9_-]{20}", 0},
	      {"sk-[A-Za-z0-9]{20}T3BlbkFJ[A-Za-z0-9]{20}", 0}),
     confirm_openai_api_key},
    {"anthropic_api_key", DLP_SECRET,
     "Anthropic API key: sk-ant-api03-/sk-ant-admin01- and 93 characters ending in AA",
     "sk-ant-api03-xBm-_NLfc0iz7yqW6x4hJm5RWCOrW7AjSR8-"
     "8guHydh1yRX7a8SRajPG8opcjna3AqyW8pCoN2uosToSCWsu6X6KrW9WBAA",
     PATTERNS({"sk-ant-(api03|admin01|oat01|ort01)-[A-Za-z0-9_-]{20}", 0}),
     confirm_anthropic_api_key},
    {"google_api_key", DLP_SECRET, "Google API key: AIza and 35 characters, entropy",
     "AIzaG0N5QateycZdotUQI0Za45bR4ELVoTalWDN", PATTERNS({"AIza[0-9A-Za-z_-]{35}", 0}),
     confirm_google_api_key},
    {"gcp_service_account", DLP_SECRET,
     "GCP service account key file: the private_key_id of a JSON key of \"type\": "
     "\"service_account\"",
     "{\"type\": \"service_account\", \"private_key_id\": "
     "\"50428b78ca325ab95d95a51644fbb1f8ba582b9b\"}",
     PATTERNS({"private_key_id\\\\?\"\\s{0,3}:\\s{0,3}\\\\?\"[0-9a-f]{40}", 0}),
     confirm_gcp_service_account},
    {"azure_storage_key", DLP_SECRET,
     "Azure storage account key: AccountKey= and 88 base64 characters, or such a key near "
     "\"azure\"",
     "DefaultEndpointsProtocol=https;AccountName=demo;AccountKey=mHhgW+"
     "TMgzMw2QnZ5FVzIqHacT2a0vbi0k7+Sy0fdAxY8Di5Z29LuC/4h+iPIqq626V49me7nuTsfUKG25Nxyn==",
     PATTERNS({"AccountKey=[A-Za-z0-9+/]{86}==", CI}, {"[A-Za-z0-9+/]{86}==", 0}),
     confirm_azure_storage_key},
    {"jwt", DLP_SECRET,
     "JSON Web Token: a base64url header that decodes to JSON naming \"alg\", a payload, a "
     "signature",
     "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
     "eyJzdWIiOiI0ODIxOTM3IiwibmFtZSI6IkFubiBFeGFtcGxlIiwiaWF0IjoxNzMzMTAwMDAwfQ.eeQM2AF_"
     "T0RIo6kH5M045lTqbGaAY4XFLFy5ZOTSQAy",
     PATTERNS({"eyJ[A-Za-z0-9_-]{8}", 0}), confirm_jwt},
    {"private_key", DLP_SECRET,
     "PEM or PGP private key: the BEGIN line and a body of base64 lines (newlines real or \\n)",
     "-----BEGIN PRIVATE "
     "KEY-----\\nJza6H2nAXguGU17frLc4j0ZRXyQvu1yiGe4YZjM7Wf7y96wClAZnBI2bB/"
     "hzcsRLSBjL+FPT9RzNmEu4EZIEnm6AsjK9\\n-----END PRIVATE KEY-----",
     PATTERNS({"-----BEGIN (RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY( BLOCK)?-----", 0}),
     confirm_private_key},
    {"npm_token", DLP_SECRET, "npm access token: npm_ and 36 base62 characters with their CRC-32",
     "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", PATTERNS({"npm_[A-Za-z0-9]{36}", 0}),
     confirm_npm_token},
    {"pypi_token", DLP_SECRET, "PyPI API token: pypi- and a macaroon for pypi.org or test.pypi.org",
     "pypi-AgEIcHlwaS5vcmc0lIja8nSwu4MqqAQCWUDwsU1ZqDzOQGIjIlaJTugltL_G2GZIpPd1tAHo_-r",
     PATTERNS({"pypi-(AgEIcHlwaS5vcmc|AgENdGVzdC5weXBpLm9yZw)[A-Za-z0-9_-]{20}", 0}),
     confirm_pypi_token},
    {"huggingface_token", DLP_SECRET, "Hugging Face token: hf_ and 34 letters, entropy",
     "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", PATTERNS({"hf_[A-Za-z]{34}", 0}),
     confirm_huggingface_token},
    {"sendgrid_api_key", DLP_SECRET, "SendGrid API key: SG., 22 characters, '.', 43 characters",
     "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",
     PATTERNS({"SG\\.[A-Za-z0-9_-]{22}\\.[A-Za-z0-9_-]{43}", 0}), confirm_sendgrid_api_key},
    {"twilio", DLP_SECRET,
     "Twilio credential: an AC/SK id and 32 hex digits by a label, or an auth token after "
     "\"twilio\"",
     "TWILIO_AUTH_TOKEN=13b8ea328fa378f9d9ed7c1afcb1e57f",
     PATTERNS({"(AC|SK)[0-9a-f]{32}", 0}, {"twilio", CI}), confirm_twilio},
    {"discord_bot_token", DLP_SECRET,
     "Discord bot token: a base64 numeric id, '.', 6 characters, '.', 27 to 38 characters",
     "Mjc4OTI1MzA1ODg5NTY3MTQ3NA.KcGnLX.bKY1m8V0QSiIZnBiDfJd67rNq0B",
     PATTERNS({"[MNO][A-Za-z0-9_-]{23,27}\\.[A-Za-z0-9_-]{6}\\.[A-Za-z0-9_-]{27}", 0}),
     confirm_discord_bot_token},
    {"database_url", DLP_SECRET,
     "Database URL with a password (postgres, mysql, mongodb, redis, amqp, ...): the password",
     "postgres://app:Vb7q2LmX9tRw@db.internal:5432/app",
     PATTERNS({"(postgres(ql)?|mysql|mariadb|mongodb(\\+srv)?|rediss?|amqps?|mssql|sqlserver|"
	       "clickhouse)(\\+[a-z0-9]+)?://",
	       CI}),
     confirm_database_url},
    {"url_basic_auth", DLP_SECRET,
     "Other URL with user:password@ (https, ftp, ...), not a placeholder: the password",
     "https://deploy:q8Zt3nVw2Lp@git.internal/repo.git",
     PATTERNS({"://[^\\s/?#@:\"'<>\\\\]{0,64}:[^\\s/?#@\"'<>\\\\]{2,128}@", 0}),
     confirm_url_basic_auth},
    {"generic_api_key", DLP_SECRET,
     "A value of 16+ characters and entropy 3+ assigned to api_key, secret, token, ... or after "
     "Bearer",
     "api_key = \"gSSwv4WqwPbeX7dWQ29wDnLC83uZtljk\"",
     PATTERNS({KEY_WORDS ASSIGN "[A-Za-z0-9_+/.~=-]{16}", CI},
	      {"[Bb]earer\\s{1,3}[A-Za-z0-9_+/.~=-]{16}", 0},
	      {"<" KEY_WORDS ">[A-Za-z0-9_+/.~=-]{16}", CI}),
     confirm_generic_api_key},
    {"http_basic_auth", DLP_SECRET,
     "HTTP Basic credentials: Basic and base64 that decodes to a printable user:password",
     "Authorization: Basic ZGVwbG95OndkZXNMNUR0WGpnUzNQ",
     PATTERNS({"[Bb]asic\\s{1,3}[A-Za-z0-9+/]{4}", 0}), confirm_http_basic_auth},
    {"password_assignment", DLP_SECRET,
     "A password assigned to password/passwd/pwd/パスワード, not a placeholder or a reference",
     "DB_PASSWORD=\"Tq7#mW2z!pL9\"",
     PATTERNS({PASSWORD_WORDS "\\\\?[\"']?\\]?\\s{0,3}(:=|=>|=|:|\xef\xbc\x9a)", CI},
	      {"<" PASSWORD_WORDS ">", CI}),
     confirm_password_assignment},
    {"shopify_token", DLP_SECRET, "Shopify token: shpat_/shpca_/shppa_/shpss_ and 32 hex digits",
     "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", PATTERNS({"shp(at|ca|pa|ss)_[a-fA-F0-9]{32}", 0}),
     confirm_shopify_token},
    {"mailgun_api_key", DLP_SECRET, "Mailgun API key: key- and 32 hex digits near \"mailgun\"",
     "MAILGUN_API_KEY=key-83a8aa8338f44a0e46196c510def7f8a", PATTERNS({"key-[0-9a-f]{32}", 0}),
     confirm_mailgun_api_key},
    {"telegram_bot_token", DLP_SECRET, "Telegram bot token: 8 to 10 digits, :AA and 33 characters",
     "9428942456:AAgwQLDfido8AwwyEFEQ1pXvCXmE5IxLVGI",
     PATTERNS({"[0-9]{8,10}:AA[A-Za-z0-9_-]{33}", 0}), confirm_telegram_bot_token},
    {"digitalocean_token", DLP_SECRET,
     "DigitalOcean token: dop_v1_/doo_v1_/dor_v1_ and 64 hex digits",
     "dop_v1_1be7d5ce957400bfff4984ea83b1e409998f1187cfb074afd1dc81536abd458a",
     PATTERNS({"do[opr]_v1_[a-f0-9]{64}", 0}), confirm_digitalocean_token},
    {"databricks_token", DLP_SECRET, "Databricks personal access token: dapi and 32 hex digits",
     "dapia2a8149a353135fa5c727c35cb93e507", PATTERNS({"dapi[a-f0-9]{32}", 0}),
     confirm_databricks_token},
    {"hashicorp_vault_token", DLP_SECRET,
     "HashiCorp Vault token: hvs./hvb./hvr. and 24+ characters",
     "hvs.zPuVxXQQxJR--_cPkgOcDTa4hfymJe_"
     "MOXr7pPJRldESWn7hJ7lK1OWtynPrmfT8girgagubxRkfaRW1gqSGtLUp1_",
     PATTERNS({"hv[sbr]\\.[A-Za-z0-9_-]{24}", 0}), confirm_hashicorp_vault_token},
    {"age_secret_key", DLP_SECRET,
     "age secret key: AGE-SECRET-KEY-1 and 58 bech32 characters with their checksum",
     "AGE-SECRET-KEY-1HA6F2UTK4RKRU0VCU5SVEFEF8YEHNS35Z8N3P0KE3X6UYRC5YHERPUAMUY",
     PATTERNS({"AGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}", 0}),
     confirm_age_secret_key},
    {"square_token", DLP_SECRET, "Square token: EAAA and 60 characters, or sq0atp-/sq0csp-",
     "sq0csp-F_7lM99oeFIZzDvb80oXL_2u4ncNXAlG0UwZAUvnTrt",
     PATTERNS({"EAAA[A-Za-z0-9_-]{60}", 0}, {"sq0(atp|csp)-[A-Za-z0-9_-]{22}", 0}),
     confirm_square_token},
    {"azure_ad_client_secret", DLP_SECRET,
     "Microsoft Entra (Azure AD) client secret: 3 characters, a digit, Q~, 31 to 34 characters",
     "6Hh6Q~JRxMK0xjw5ygRS3bElLbGq-jF8QHxJUidc",
     PATTERNS({"[A-Za-z0-9_~.-]{3}[0-9]Q~[A-Za-z0-9_~.-]{31}", 0}), confirm_azure_ad_client_secret},
};
const size_t dlp_secret_detector_count =
    sizeof(dlp_secret_detectors) / sizeof(dlp_secret_detectors[0]);
