/* fuzz_utf8.c - sandbox output to JSON text (src/lib/utf8.c).
 *
 * Input: byte 0 seeds the chunk sizes, the rest is what a sandbox writes
 * to stdout. It is converted chunk by chunk with ab__utf8_chunk, carrying
 * incomplete sequences, as the daemon does with its reads. Invariants:
 *  - the carry never holds more than 3 bytes;
 *  - the concatenated output is valid UTF-8 (jansson accepted each chunk
 *    as a string, which it only does for valid UTF-8) and has no invalid
 *    sequence in it;
 *  - valid UTF-8 input comes out byte for byte, however it was split;
 *  - the output does not depend on the split: converting the whole input
 *    at once gives the same text. */
#include <stdbool.h>

#include "internal.h"
#include "fuzz.h"
#include "utf8.h"

static char *convert(const uint8_t *s, size_t n, uint32_t seed, bool split, size_t *outlen)
{
	char carry[4];
	size_t ncarry = 0, pos = 0, olen = 0;
	char *out = malloc(n * 3 + 1);
	FUZZ_CHECK(out);
	do {
		size_t chunk = split ? 1 + fuzz_next(&seed) % 8 : n - pos;
		if (chunk > n - pos)
			chunk = n - pos;
		bool final = pos + chunk == n;
		json_t *j = ab__utf8_chunk((const char *)s + pos, chunk, carry, &ncarry, final);
		FUZZ_CHECK(j && json_is_string(j));
		FUZZ_CHECK(ncarry <= 3);
		if (final)
			FUZZ_CHECK(ncarry == 0);
		size_t l = json_string_length(j);
		FUZZ_CHECK(olen + l <= n * 3);
		memcpy(out + olen, json_string_value(j), l);
		olen += l;
		json_decref(j);
		pos += chunk;
	} while (pos < n);
	*outlen = olen;
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	uint32_t seed = data[0] * 0x01010101u;
	const uint8_t *s = data + 1;
	size_t n = size - 1;
	size_t la, lb;
	char *a = convert(s, n, seed, true, &la);
	char *b = convert(s, n, seed, false, &lb);
	FUZZ_CHECK(la == lb && memcmp(a, b, la) == 0);
	/* jansson validates UTF-8 when it builds a string from bytes. */
	json_t *check = json_stringn((const char *)s, n);
	if (check)
		FUZZ_CHECK(la == n && memcmp(a, s, n) == 0);
	json_t *again = json_stringn(a, la);
	FUZZ_CHECK(again);
	json_decref(again);
	json_decref(check);
	free(a);
	free(b);
	return 0;
}
