/* term.c - text that a sandbox controls, made safe to print on a terminal.
 *
 * Exception messages, audit bodies (the code of a run, refused requests)
 * and route reasons reach the CLI's output, and a terminal acts on some
 * characters instead of showing them: C0 and C1 controls start escape
 * sequences (CSI is ESC '[' or U+009B), DEL may erase, and the bidirectional
 * controls reorder what follows them on the line, so that a line can read
 * differently from what it holds ("Trojan Source"). Each such character is
 * printed as a visible escape (\u001b, \u202e), and a byte that is not
 * part of valid UTF-8 as \xNN. Everything else, other scripts included,
 * is printed as it is. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"

/* Decodes one UTF-8 sequence at s (n > 0 bytes available). Returns its
 * length and sets *cp, or returns 0 for an invalid, overlong, surrogate or
 * truncated sequence. */
static size_t decode(const unsigned char *s, size_t n, uint32_t *cp)
{
	unsigned char c = s[0];
	size_t len;
	uint32_t v, min;
	if (c < 0x80) {
		*cp = c;
		return 1;
	} else if (c >= 0xc2 && c <= 0xdf) {
		len = 2, v = c & 0x1f, min = 0x80;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3, v = c & 0x0f, min = 0x800;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4, v = c & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		v = (v << 6) | (s[i] & 0x3f);
	}
	if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
		return 0;
	*cp = v;
	return len;
}

/* C0 controls and DEL; C1 controls; the Arabic letter mark; zero-width
 * spaces and joiners, LRM and RLM; the line and paragraph separators, the
 * embeddings and overrides (U+202A-U+202E); the word joiner, invisible
 * operators and isolates (U+2066-U+2069); the zero-width no-break space;
 * interlinear annotations. */
static bool unsafe(uint32_t cp)
{
	return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) || cp == 0x061c ||
	       (cp >= 0x200b && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202e) ||
	       (cp >= 0x2060 && cp <= 0x2069) || cp == 0xfeff || (cp >= 0xfff9 && cp <= 0xfffb);
}

bool cli_term_write(FILE *out, const char *text, size_t len, size_t max_chars)
{
	const unsigned char *s = (const unsigned char *)text;
	size_t i = 0, shown = 0;
	while (i < len) {
		if (max_chars && shown >= max_chars)
			return true;
		uint32_t cp;
		size_t n = decode(s + i, len - i, &cp);
		if (n == 0) {
			fprintf(out, "\\x%02x", s[i]);
			i++;
		} else if (unsafe(cp)) {
			fprintf(out, "\\u%04x", (unsigned)cp);
			i += n;
		} else {
			fwrite(s + i, 1, n, out);
			i += n;
		}
		shown++;
	}
	return false;
}

void cli_term_puts(FILE *out, const char *text)
{
	if (text)
		cli_term_write(out, text, strlen(text), 0);
}
