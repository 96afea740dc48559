/* utf8.h - UTF-8 decoding, and sandbox output to JSON text (internal). */
#ifndef AB_UTF8_H
#define AB_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

/* Decodes the UTF-8 character at s (n >= 1 bytes available): returns its
 * length and sets *cp (if cp is not NULL); 0 if the n bytes are the start
 * of a character that is cut off; -1 if they are not valid UTF-8 (a bad
 * lead or continuation byte, an overlong form, a surrogate, beyond
 * U+10FFFF). The one decoder of the library, the router and the CLI. */
int ab__utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/* Converts len bytes (preceded by *ncarry bytes held in carry from the
 * previous chunk) into a JSON string of valid UTF-8: invalid bytes become
 * U+FFFD. Unless final, an incomplete sequence at the end is held back in
 * carry (at most 3 bytes) for the next call. Returns a new reference, or
 * NULL on allocation failure. */
json_t *ab__utf8_chunk(const char *data, size_t len, char carry[4], size_t *ncarry, bool final);

#endif
