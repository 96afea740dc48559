/* utf8.h - sandbox output to JSON text (internal). */
#ifndef AB_UTF8_H
#define AB_UTF8_H

#include <stdbool.h>
#include <stddef.h>

#include <jansson.h>

/* Converts len bytes (preceded by *ncarry bytes held in carry from the
 * previous chunk) into a JSON string of valid UTF-8: invalid bytes become
 * U+FFFD. Unless final, an incomplete sequence at the end is held back in
 * carry (at most 3 bytes) for the next call. Returns a new reference, or
 * NULL on allocation failure. */
json_t *ab__utf8_chunk(const char *data, size_t len, char carry[4], size_t *ncarry, bool final);

#endif
