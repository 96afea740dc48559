/* inspect.c - the test inspector (docs/egress.md, "Inspection hook"): blocks
 * EG_TEST_MARKER wherever it appears, ignoring case, including across the
 * chunks of a body. The DLP detectors of issue 11 replace it. */
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
	bool blocked;
	const char *kinds[2];
};

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
		in->kinds[0] = "test-marker";
	}
	return in->blocked ? EG_BLOCK : EG_PASS;
}

const char *const *eg_inspect_kinds(const eg_inspector *in)
{
	return in->kinds;
}

void eg_inspect_end(eg_inspector *in)
{
	free(in);
}
