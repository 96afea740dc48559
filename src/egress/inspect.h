/* inspect.h - the inspection hook: what leaves is shown to an inspector
 * before it goes upstream. The DLP detectors (issue 11) plug in here; until
 * then the one inspector blocks a fixed test marker. */
#ifndef EG_INSPECT_H
#define EG_INSPECT_H

#include <stdbool.h>
#include <stddef.h>

#define EG_TEST_MARKER "AGENTBOX-EGRESS-TEST-MARKER"

enum eg_verdict { EG_PASS, EG_REDACT, EG_BLOCK };

typedef struct eg_inspector eg_inspector;

/* One inspector per request; it keeps state across chunks. */
eg_inspector *eg_inspect_begin(void);
/* part: "host", "url", "header", "body". For "body", data arrives in
 * chunks; a match may span chunks. May rewrite data in place for
 * EG_REDACT (same length). */
enum eg_verdict eg_inspect(eg_inspector *in, const char *part, char *data, size_t len);
/* Kinds found so far (e.g. "test-marker"), NULL-terminated. */
const char *const *eg_inspect_kinds(const eg_inspector *in);
void eg_inspect_end(eg_inspector *in);

#endif
