/* fuzz_term.c - text someone else controls, escaped for a terminal by the
 * CLI (src/cli/term.c: audit tail/query/verify, routes, run's errors).
 *
 * Input: the text, as the audit log or a daemon message could hold it.
 * Invariants on what cli_term_write prints:
 *  - it is valid UTF-8 (invalid input bytes become "\xNN");
 *  - it holds no character a terminal acts on instead of showing: no C0
 *    control, DEL, C1 control, bidirectional embedding, override or
 *    isolate, no line or paragraph separator;
 *  - with a character limit it never prints more than it prints without,
 *    and reports that it cut exactly when it did. */
#include <stdbool.h>

#include "../../src/cli/cli.h"
#include "fuzz.h"
#include "utf8.h"

static char *escape(const uint8_t *data, size_t size, size_t max, bool *cut, size_t *len)
{
	char *out = NULL;
	FILE *f = open_memstream(&out, len);
	FUZZ_CHECK(f);
	*cut = cli_term_write(f, (const char *)data, size, max);
	FUZZ_CHECK(fclose(f) == 0);
	return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	bool cut;
	size_t len;
	char *out = escape(data, size, 0, &cut, &len);
	FUZZ_CHECK(!cut);
	const unsigned char *s = (const unsigned char *)out;
	for (size_t i = 0; i < len;) {
		uint32_t cp;
		int l = ab__utf8_decode(s + i, len - i, &cp);
		FUZZ_CHECK(l > 0);
		FUZZ_CHECK(cp >= 0x20 && cp != 0x7f && !(cp >= 0x80 && cp <= 0x9f));
		FUZZ_CHECK(!(cp >= 0x2028 && cp <= 0x202e) && !(cp >= 0x2066 && cp <= 0x2069));
		i += (size_t)l;
	}
	size_t max = size ? 1 + data[0] % 16 : 1;
	size_t short_len;
	char *part = escape(data, size, max, &cut, &short_len);
	FUZZ_CHECK(short_len <= len && memcmp(part, out, short_len) == 0);
	FUZZ_CHECK(cut == (short_len < len));
	free(part);
	free(out);
	return 0;
}
