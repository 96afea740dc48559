/* inspect.c - the test inspector (docs/egress.md, "Inspection hook"): blocks
 * EG_TEST_MARKER wherever it appears, ignoring case, including across the
 * chunks of a body, and redacts EG_TEST_REDACT_MARKER (overwritten with X)
 * where it lies whole inside one call's data (split across chunks, it
 * cannot be rewritten any more: blocked). The DLP detectors of issue 11
 * replace it. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "inspect.h"

#define MARKER_LEN (sizeof(EG_TEST_MARKER) - 1)

struct eg_inspector {
	/* The last MARKER_LEN - 1 bytes of the body seen so far, so that a
	 * marker split across chunks is found. */
	char carry[MARKER_LEN];
	size_t carry_len;
	bool blocked, redacted;
	/* Bytes of a redact marker's prefix at the end of the last chunk. */
	size_t redact_partial;
	const char *kinds[3];
};

#define REDACT_LEN (sizeof(EG_TEST_REDACT_MARKER) - 1)

static void add_kind(eg_inspector *in, const char *kind)
{
	for (int i = 0; i < 2; i++) {
		if (in->kinds[i] && strcmp(in->kinds[i], kind) == 0)
			return;
		if (!in->kinds[i]) {
			in->kinds[i] = kind;
			return;
		}
	}
}

static bool marker_at(const char *d, size_t len, const char *m, size_t mlen)
{
	if (len < mlen)
		return false;
	for (size_t k = 0; k < mlen; k++)
		if (toupper((unsigned char)d[k]) != (unsigned char)m[k])
			return false;
	return true;
}

/* Overwrites every whole redact marker in data; returns how many. For a
 * body, *partial says whether the chunk ends inside a marker's prefix (or
 * the last one did and this one completes it), which cannot be redacted. */
static int redact(char *d, size_t len, size_t *partial, bool *split)
{
	int n = 0;
	*split = false;
	if (partial && *partial) {
		size_t need = REDACT_LEN - *partial, have = len < need ? len : need;
		if (marker_at(d, have, &EG_TEST_REDACT_MARKER[*partial], have)) {
			if (have == need) {
				*split = true; /* completed across the seam */
				return 0;
			}
			*partial += have; /* still only a prefix */
			return 0;
		}
		*partial = 0;
	}
	for (size_t i = 0; i + REDACT_LEN <= len; i++)
		if (marker_at(d + i, len - i, EG_TEST_REDACT_MARKER, REDACT_LEN)) {
			memset(d + i, 'X', REDACT_LEN);
			n++;
			i += REDACT_LEN - 1;
		}
	if (partial)
		for (size_t k = REDACT_LEN - 1; k > 0; k--)
			if (k <= len && marker_at(d + len - k, k, EG_TEST_REDACT_MARKER, k)) {
				*partial = k;
				break;
			}
	return n;
}

eg_inspector *eg_inspect_begin(void)
{
	return calloc(1, sizeof(eg_inspector));
}

static bool find_marker(const char *d, size_t len)
{
	if (len < MARKER_LEN)
		return false;
	for (size_t i = 0; i + MARKER_LEN <= len; i++)
		if (strncasecmp(d + i, EG_TEST_MARKER, MARKER_LEN) == 0)
			return true;
	return false;
}

/* strncasecmp stops at NUL; bodies may hold NULs, so compare by hand. */
static bool find_marker_bytes(const char *d, size_t len)
{
	if (len < MARKER_LEN)
		return false;
	for (size_t i = 0; i + MARKER_LEN <= len; i++) {
		size_t k = 0;
		while (k < MARKER_LEN &&
		       toupper((unsigned char)d[i + k]) == (unsigned char)EG_TEST_MARKER[k])
			k++;
		if (k == MARKER_LEN)
			return true;
	}
	return false;
}

enum eg_verdict eg_inspect(eg_inspector *in, const char *part, char *data, size_t len)
{
	if (!in)
		return EG_BLOCK;
	bool found;
	if (strcmp(part, "body") == 0) {
		/* The seam: the carried tail followed by the head of this chunk. */
		char seam[2 * MARKER_LEN];
		size_t head = len < MARKER_LEN - 1 ? len : MARKER_LEN - 1;
		memcpy(seam, in->carry, in->carry_len);
		memcpy(seam + in->carry_len, data, head);
		found =
		    find_marker_bytes(seam, in->carry_len + head) || find_marker_bytes(data, len);
		/* Keep the last MARKER_LEN - 1 bytes of carry + data. */
		size_t total = in->carry_len + len;
		size_t keep = total < MARKER_LEN - 1 ? total : MARKER_LEN - 1;
		char tmp[2 * MARKER_LEN];
		if (len >= keep) {
			memcpy(in->carry, data + len - keep, keep);
		} else {
			size_t from_carry = keep - len;
			memcpy(tmp, in->carry + in->carry_len - from_carry, from_carry);
			memcpy(tmp + from_carry, data, len);
			memcpy(in->carry, tmp, keep);
		}
		in->carry_len = keep;
	} else {
		found =
		    memchr(data, '\0', len) ? find_marker_bytes(data, len) : find_marker(data, len);
	}
	if (found && !in->blocked) {
		in->blocked = true;
		add_kind(in, "test-marker");
	}
	if (in->blocked)
		return EG_BLOCK;
	bool split = false;
	int n = redact(data, len, strcmp(part, "body") == 0 ? &in->redact_partial : NULL, &split);
	if (split) {
		in->blocked = true;
		add_kind(in, "test-redact");
		return EG_BLOCK;
	}
	if (n == 0)
		return EG_PASS;
	in->redacted = true;
	add_kind(in, "test-redact");
	return EG_REDACT;
}

enum eg_verdict eg_inspect_verdict(const eg_inspector *in)
{
	return !in || in->blocked ? EG_BLOCK : in->redacted ? EG_REDACT : EG_PASS;
}

const char *const *eg_inspect_kinds(const eg_inspector *in)
{
	return in->kinds;
}

void eg_inspect_end(eg_inspector *in)
{
	free(in);
}
