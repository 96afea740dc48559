/* history_check.h - checks of the answers of inspections (history_check.c). */
#ifndef AB_HISTORY_CHECK_H
#define AB_HISTORY_CHECK_H

#include <jansson.h>

/* The answer of an inspection as the client gets it: {value, type,
 * truncated, error} (new reference), or NULL if malformed. */
json_t *history_checked_answer(json_t *frame);
/* The "vars" of a variables listing (new reference), or NULL if malformed:
 * at most 1000 names of at most 256 bytes, each {type, repr, digest}
 * strings of bounded size. */
json_t *history_checked_vars(json_t *frame);
/* {added, removed, changed} between two checked listings. */
json_t *history_diff_vars(json_t *a, json_t *b);

#endif
