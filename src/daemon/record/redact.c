/* redact.c - the audit log's redactor (docs/dlp.md, "In the audit log"):
 * before an event is hashed into the chain, every string in its body is
 * scanned by the DLP engine and each value found is replaced by
 * "[REDACTED:kind]", so that the tamper-evident log does not become the
 * place where secrets and personal data are kept. What was redacted is
 * itself recorded, in the event's "redacted" list: where, which kind and
 * a salted hash of the value (the same hash the egress sidecar records),
 * never the value.
 *
 * It runs on the audit writer's thread, on the writer's own copy of the
 * body (record.c), never on the loop. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "dlp.h"
#include "record/redact.h"
#include "utf8.h"

#define SALT_BYTES 32
#define MAX_NOTES 64
#define MAX_DEPTH 32

static dlp_engine *engine;
static unsigned char salt[SALT_BYTES];
static char salt_hex[2 * SALT_BYTES + 1];

/* home/dlp-salt: made once (0600), then read back; a salt that is not
 * ours, not a regular file or not 64 hex digits is refused. */
static int salt_load(const char *home, ab_error *err)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/dlp-salt", home);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd >= 0) {
		unsigned char raw[SALT_BYTES];
		if (RAND_bytes(raw, sizeof(raw)) != 1) {
			close(fd);
			unlink(path);
			return ab_error_set(err, -EIO, "%s: no random bytes", path);
		}
		for (size_t i = 0; i < SALT_BYTES; i++)
			snprintf(salt_hex + 2 * i, 3, "%02x", raw[i]);
		ssize_t w = write(fd, salt_hex, 2 * SALT_BYTES);
		int e = errno;
		if (close(fd) < 0 || w != 2 * SALT_BYTES) {
			unlink(path);
			return ab_error_errno(err, w < 0 ? -e : -EIO, "write %s", path);
		}
	} else if (errno != EEXIST) {
		return ab_error_errno(err, -errno, "create %s", path);
	}
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return ab_error_errno(err, -errno, "open %s", path);
	struct stat st;
	ssize_t n = -1;
	if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
	    !(st.st_mode & 077))
		n = read(fd, salt_hex, 2 * SALT_BYTES);
	close(fd);
	salt_hex[2 * SALT_BYTES] = '\0';
	if (n != 2 * SALT_BYTES || strspn(salt_hex, "0123456789abcdef") != 2 * SALT_BYTES)
		return ab_error_set(err, -EINVAL,
				    "%s: expected 64 hex digits in a file of ours, mode 0600 "
				    "(delete it to make a new salt)",
				    path);
	if (dlp_salt_parse(salt_hex, salt, sizeof(salt)) != SALT_BYTES)
		return ab_error_set(err, -EINVAL, "%s: not a salt", path);
	return 0;
}

int redact_init(const char *home, ab_error *err)
{
	int r = salt_load(home, err);
	if (r < 0)
		return r;
	char msg[256];
	if (!engine && !(engine = dlp_engine_open(home, msg, sizeof(msg))))
		return ab_error_set(err, -EINVAL, "the DLP engine: %s", msg);
	return 0;
}

const char *redact_salt(void)
{
	return salt_hex[0] ? salt_hex : NULL;
}

struct walk {
	json_t *notes; /* the "redacted" list */
	size_t dropped;
};

static void note(struct walk *w, const char *path, const dlp_finding *f)
{
	if (json_array_size(w->notes) >= MAX_NOTES) {
		w->dropped++;
		return;
	}
	char hash[DLP_HASH_LEN + 1];
	dlp_value_hash(salt, SALT_BYTES, f->value ? f->value : "", f->value ? strlen(f->value) : 0,
		       hash);
	json_array_append_new(w->notes, json_pack("{s:s, s:s, s:s}", "field", path, "kind",
						  f->kind, "hash", hash));
}

/* The string s (len bytes) with every finding replaced, or NULL when
 * nothing was found. Findings are sorted by start; overlapping ones are
 * merged into the first. */
static json_t *redacted_string(const char *s, size_t len, const char *path, struct walk *w)
{
	dlp_opts o = {.values = true};
	dlp_findings f = {0};
	int rc = dlp_scan(engine, s, len, &o, &f);
	if (rc < 0 || f.truncated) {
		/* Not scanned whole: nothing of it is kept. */
		dlp_findings_free(&f);
		json_array_append_new(w->notes,
				      json_pack("{s:s, s:s}", "field", path, "kind",
						rc < 0 ? "unscanned" : "too-many-findings"));
		return json_string("[REDACTED: not scanned whole]");
	}
	if (f.n == 0) {
		dlp_findings_free(&f);
		return NULL;
	}
	size_t cap = len + f.n * 40 + 1, o_len = 0, at = 0;
	char *out = malloc(cap);
	if (!out) {
		dlp_findings_free(&f);
		return json_string("[REDACTED: out of memory]");
	}
	for (size_t i = 0; i < f.n; i++) {
		const dlp_finding *x = &f.v[i];
		if (x->start < at)
			continue; /* inside the value just replaced */
		memcpy(out + o_len, s + at, x->start - at);
		o_len += x->start - at;
		o_len += (size_t)snprintf(out + o_len, cap - o_len, "[REDACTED:%s]", x->kind);
		at = x->end;
		note(w, path, x);
	}
	memcpy(out + o_len, s + at, len - at);
	o_len += len - at;
	/* A finding's edge inside a UTF-8 character leaves invalid bytes:
	 * U+FFFD stands in for them. */
	char carry[4];
	size_t ncarry = 0;
	json_t *j = ab__utf8_chunk(out, o_len, carry, &ncarry, true);
	free(out);
	dlp_findings_free(&f);
	return j ? j : json_string("[REDACTED]");
}

static void walk(json_t *v, char *path, size_t plen, size_t pcap, int depth, struct walk *w);

static void walk_child(json_t *parent, const char *key, size_t index, json_t *v, char *path,
		       size_t plen, size_t pcap, int depth, struct walk *w)
{
	int n = key ? snprintf(path + plen, pcap - plen, "%s%s", plen ? "." : "", key)
		    : snprintf(path + plen, pcap - plen, "[%zu]", index);
	size_t nl = n > 0 && (size_t)n < pcap - plen ? plen + (size_t)n : plen;
	if (json_is_string(v)) {
		json_t *r = redacted_string(json_string_value(v), json_string_length(v), path, w);
		if (r) {
			if (key)
				json_object_set_new(parent, key, r);
			else
				json_array_set_new(parent, index, r);
		}
	} else {
		walk(v, path, nl, pcap, depth + 1, w);
	}
	path[plen] = '\0';
}

static void walk(json_t *v, char *path, size_t plen, size_t pcap, int depth, struct walk *w)
{
	if (depth > MAX_DEPTH)
		return;
	if (json_is_object(v)) {
		const char *key;
		json_t *x;
		void *tmp;
		json_object_foreach_safe(v, tmp, key, x)
		{
			if (depth == 0 && strcmp(key, "redacted") == 0)
				continue;
			walk_child(v, key, 0, x, path, plen, pcap, depth, w);
		}
	} else if (json_is_array(v)) {
		size_t i;
		json_t *x;
		json_array_foreach(v, i, x) walk_child(v, NULL, i, x, path, plen, pcap, depth, w);
	}
}

void redact_event(const char *kind, json_t *body, void *ctx)
{
	(void)kind;
	(void)ctx;
	if (!engine || !json_is_object(body))
		return;
	struct walk w = {.notes = json_array()};
	char path[512] = "";
	walk(body, path, 0, sizeof(path), 0, &w);
	if (json_array_size(w.notes)) {
		json_object_set_new(body, "redacted", w.notes);
		if (w.dropped)
			json_object_set_new(body, "redacted_more", json_integer((json_int_t)w.dropped));
	} else {
		json_decref(w.notes);
	}
}
