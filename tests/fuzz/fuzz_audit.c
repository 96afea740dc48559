/* fuzz_audit.c - the audit export verifier and checkpoint reader
 * (src/lib/audit.c: ab_audit_verify on a JSON Lines export, with an
 * optional external checkpoints file).
 *
 * Input: byte 0 holds flags, the rest is the export; with FLAG_EXTERNAL the
 * part after the first form feed is the external checkpoints file.
 * Random bytes rarely carry a valid SHA-256 chain or Ed25519 signature, so
 * with FLAG_FIXUP the harness first rewrites the export as an honest
 * exporter would: it recomputes each well-formed event's "prev" and "hash",
 * signs each well-formed checkpoint with the harness's key (naming it in
 * the header), and so lets the fuzzer reach the chain and checkpoint
 * logic. Invariants:
 *  - the verifier either runs (0, with a verdict) or fails with a message;
 *    a negative verdict says why and names a sequence number, a positive
 *    one has neither;
 *  - a fixed-up export that is well formed throughout (header first,
 *    events numbered 1, 2, ..., checkpoints within the log) verifies. */
#include <limits.h>

#include <openssl/evp.h>

#include "audit.h"
#include "internal.h"
#include "fuzz.h"

#define FLAG_FIXUP 1
#define FLAG_EXTERNAL 2
#define FLAG_PIN 4

static char export_path[PATH_MAX], external_path[PATH_MAX];
static EVP_PKEY *key;
static char key_hex[65];

static void hex(const unsigned char *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	const char *dir = fuzz_scratch_dir();
	snprintf(export_path, sizeof(export_path), "%s/export.jsonl", dir);
	snprintf(external_path, sizeof(external_path), "%s/checkpoints.jsonl", dir);
	/* A fixed key: a crash reproduces from its input file alone. */
	unsigned char seed[32];
	for (int i = 0; i < 32; i++)
		seed[i] = (unsigned char)(i * 7 + 1);
	key = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, NULL, seed, sizeof(seed));
	FUZZ_CHECK(key);
	unsigned char pub[32];
	size_t publen = sizeof(pub);
	FUZZ_CHECK(EVP_PKEY_get_raw_public_key(key, pub, &publen) == 1 && publen == 32);
	hex(pub, 32, key_hex);
	return 0;
}

static void sha256(const unsigned char prev[32], const char *data, unsigned char out[32])
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned int n = 0;
	FUZZ_CHECK(c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) == 1 &&
		   EVP_DigestUpdate(c, prev, 32) == 1 &&
		   EVP_DigestUpdate(c, data, strlen(data)) == 1 &&
		   EVP_DigestFinal_ex(c, out, &n) == 1 && n == 32);
	EVP_MD_CTX_free(c);
}

static void sign(const char *msg, char out[129])
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	unsigned char sig[64];
	size_t n = sizeof(sig);
	FUZZ_CHECK(c && EVP_DigestSignInit(c, NULL, NULL, NULL, key) == 1 &&
		   EVP_DigestSign(c, sig, &n, (const unsigned char *)msg, strlen(msg)) == 1 &&
		   n == 64);
	EVP_MD_CTX_free(c);
	hex(sig, 64, out);
}

struct line {
	char *text; /* as read: up to the first NUL, as the verifier sees it */
	size_t len; /* bytes in the line, NULs included */
	json_t *obj;
};

struct event_hash {
	int64_t seq;
	char hash[65];
};

/* The events of the last fixed-up export, for its checkpoints. */
static struct event_hash *hashes;
static size_t nh;
static int64_t last_seq;

/* Signs checkpoint cp ({"seq", "ts", ...}) as the log's writer would: head
 * is the hash of event seq. Returns whether the checkpoint is well formed
 * and within the log. */
static bool sign_checkpoint(json_t *cp)
{
	json_t *seq = json_object_get(cp, "seq"), *ts = json_object_get(cp, "ts");
	if (!json_is_object(cp) || !json_is_integer(seq) || !json_is_integer(ts) ||
	    json_integer_value(seq) < 1)
		return false;
	const char *head = "0000000000000000000000000000000000000000000000000000000000000000";
	for (size_t k = 0; k < nh; k++)
		if (hashes[k].seq == json_integer_value(seq))
			head = hashes[k].hash;
	json_t *msg = json_pack("{s:s, s:I, s:I}", "head", head, "seq", json_integer_value(seq),
				"ts", json_integer_value(ts));
	FUZZ_CHECK(msg);
	char *text = json_dumps(msg, JSON_SORT_KEYS | JSON_COMPACT | JSON_ENSURE_ASCII);
	json_decref(msg);
	FUZZ_CHECK(text);
	char sig[129];
	sign(text, sig);
	free(text);
	json_object_set_new(cp, "head", json_string(head));
	json_object_set_new(cp, "sig", json_string(sig));
	if (json_object_get(cp, "pubkey"))
		json_object_set_new(cp, "pubkey", json_string(key_hex));
	return json_integer_value(seq) <= last_seq;
}

/* An event line the verifier can take apart (row_from_json's rules). */
static bool event_fields(json_t *o)
{
	json_t *step = json_object_get(o, "step"), *session = json_object_get(o, "session");
	return json_is_integer(json_object_get(o, "seq")) &&
	       json_is_integer(json_object_get(o, "ts")) &&
	       json_is_string(json_object_get(o, "kind")) &&
	       json_is_string(json_object_get(o, "actor")) && json_object_get(o, "body") &&
	       (json_is_null(step) || (json_is_integer(step) && json_integer_value(step) >= -1)) &&
	       (json_is_null(session) || json_is_string(session));
}

/* Rewrites the export (lines[]) in place; returns whether an honest
 * verifier must accept the result. */
static bool fixup(struct line *lines, size_t n)
{
	bool valid = n > 0 && json_is_object(lines[0].obj) &&
		     json_is_string(json_object_get(lines[0].obj, "format")) &&
		     strcmp(json_string_value(json_object_get(lines[0].obj, "format")),
			    "agentbox-audit/1") == 0;
	if (n > 0 && json_is_object(lines[0].obj))
		json_object_set_new(lines[0].obj, "pubkey", json_string(key_hex));
	free(hashes);
	hashes = calloc(n ? n : 1, sizeof(*hashes));
	FUZZ_CHECK(hashes);
	nh = 0;
	unsigned char prev[32] = {0};
	int64_t expect = 1;
	for (size_t i = 1; i < n; i++) {
		json_t *o = lines[i].obj;
		if (!json_is_object(o)) {
			valid = false;
			continue;
		}
		if (json_object_get(o, "checkpoint"))
			continue;
		if (!event_fields(o)) {
			valid = false;
			continue;
		}
		json_t *step = json_object_get(o, "step"), *session = json_object_get(o, "session");
		int64_t seq = json_integer_value(json_object_get(o, "seq"));
		if (seq != expect)
			valid = false;
		expect++;
		char *canon = ab_audit_canonical(
		    seq, json_integer_value(json_object_get(o, "ts")),
		    json_string_value(json_object_get(o, "kind")),
		    json_is_null(session) ? NULL : json_string_value(session),
		    json_is_null(step) ? -1 : json_integer_value(step),
		    json_string_value(json_object_get(o, "actor")), json_object_get(o, "body"));
		FUZZ_CHECK(canon);
		unsigned char h[32];
		sha256(prev, canon, h);
		free(canon);
		char prevhex[65];
		hex(prev, 32, prevhex);
		hashes[nh].seq = seq;
		hex(h, 32, hashes[nh].hash);
		json_object_set_new(o, "prev", json_string(prevhex));
		json_object_set_new(o, "hash", json_string(hashes[nh].hash));
		nh++;
		memcpy(prev, h, 32);
	}
	last_seq = expect - 1;
	for (size_t i = 1; i < n; i++) {
		json_t *cp = json_object_get(lines[i].obj, "checkpoint");
		if (cp && !sign_checkpoint(cp))
			valid = false;
	}
	return valid;
}

/* Writes the lines back, each re-encoded if it was JSON. */
static void write_lines(const char *path, struct line *lines, size_t n)
{
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	FUZZ_CHECK(buf);
	for (size_t i = 0; i < n; i++) {
		char *dumped =
		    lines[i].obj ? json_dumps(lines[i].obj, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
		const char *t = dumped ? dumped : lines[i].text;
		size_t l = strlen(t);
		if (len + l + 1 > cap) {
			while (len + l + 1 > cap)
				cap *= 2;
			buf = realloc(buf, cap);
			FUZZ_CHECK(buf);
		}
		memcpy(buf + len, t, l);
		buf[len + l] = '\n';
		len += l + 1;
		free(dumped);
	}
	fuzz_write_file(path, buf, len);
	free(buf);
}

/* Lines as the verifier reads them: split at '\n', no empty line after
 * the last newline; each parsed if it is JSON. */
static struct line *split_lines(const char *text, size_t len, size_t *count)
{
	size_t n = 0, cap = 16;
	struct line *lines = malloc(cap * sizeof(*lines));
	FUZZ_CHECK(lines);
	for (size_t pos = 0; pos < len;) {
		const char *nl = memchr(text + pos, '\n', len - pos);
		size_t l = nl ? (size_t)(nl - (text + pos)) : len - pos;
		if (n == cap) {
			cap *= 2;
			lines = realloc(lines, cap * sizeof(*lines));
			FUZZ_CHECK(lines);
		}
		lines[n].text = strndup(text + pos, l);
		FUZZ_CHECK(lines[n].text);
		lines[n].len = l;
		lines[n].obj = json_loads(lines[n].text, JSON_REJECT_DUPLICATES, NULL);
		n++;
		pos += l + 1;
	}
	*count = n;
	return lines;
}

static void free_lines(struct line *lines, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		free(lines[i].text);
		json_decref(lines[i].obj);
	}
	free(lines);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned flags = data[0];
	const char *text = (const char *)data + 1;
	size_t len = size - 1, extlen = 0;
	const char *ext = NULL;
	if (flags & FLAG_EXTERNAL) {
		const char *ff = memchr(text, '\f', len);
		if (ff) {
			ext = ff + 1;
			extlen = len - (size_t)(ext - text);
			len = (size_t)(ff - text);
		} else {
			ext = "";
		}
	}
	bool expect_ok = false;
	if (flags & FLAG_FIXUP) {
		size_t n;
		struct line *lines = split_lines(text, len, &n);
		expect_ok = fixup(lines, n);
		write_lines(export_path, lines, n);
		free_lines(lines, n);
		if (ext) {
			/* External checkpoints are signed as the writer would;
			 * empty lines are allowed there. */
			lines = split_lines(ext, extlen, &n);
			for (size_t i = 0; i < n; i++) {
				if (lines[i].len == 0)
					continue;
				if (!json_is_object(lines[i].obj) || !sign_checkpoint(lines[i].obj))
					expect_ok = false;
			}
			write_lines(external_path, lines, n);
			free_lines(lines, n);
		}
	} else {
		fuzz_write_file(export_path, text, len);
		if (ext)
			fuzz_write_file(external_path, ext, extlen);
	}

	ab_audit_report rep;
	ab_error err = {0};
	int r = ab_audit_verify(NULL, export_path, (flags & FLAG_PIN) ? key_hex : NULL,
				ext ? external_path : NULL, &rep, &err);
	if (r < 0) {
		FUZZ_CHECK(err.code == r && err.msg[0] && !rep.ok);
		FUZZ_CHECK(!expect_ok);
		return 0;
	}
	FUZZ_CHECK(r == 0);
	if (rep.ok) {
		FUZZ_CHECK(rep.bad_seq == 0 && rep.why[0] == '\0' && !rep.torn_tail);
	} else {
		FUZZ_CHECK(rep.why[0]);
		FUZZ_CHECK(memchr(rep.why, '\0', sizeof(rep.why)));
	}
	if (getenv("FUZZ_VERBOSE"))
		fprintf(stderr, "verify: %s, expected %s, %lld events, %lld checkpoints: %s\n",
			rep.ok ? "ok" : "bad", expect_ok ? "ok" : "any", (long long)rep.events,
			(long long)rep.checkpoints, rep.why);
	if (expect_ok && !rep.ok)
		fprintf(stderr, "fixed-up export refused: %s\n", rep.why);
	FUZZ_CHECK(!expect_ok || rep.ok);
	return 0;
}
