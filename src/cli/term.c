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
#include "utf8.h"

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
		int l = ab__utf8_decode(s + i, len - i, &cp);
		size_t n = l > 0 ? (size_t)l : 0;
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
