/* inspect.h - the inspection hook: what leaves is shown to an inspector
 * before it goes upstream. The DLP detectors (issue 11) plug in here; until
 * then the one inspector blocks a fixed test marker and redacts another. */
#ifndef EG_INSPECT_H
#define EG_INSPECT_H

#include <stdbool.h>
#include <stddef.h>

#define EG_TEST_MARKER "AGENTBOX-EGRESS-TEST-MARKER"
#define EG_TEST_REDACT_MARKER "AGENTBOX-EGRESS-TEST-REDACT"

enum eg_verdict { EG_PASS, EG_REDACT, EG_BLOCK };

typedef struct eg_inspector eg_inspector;

/* One inspector per request; it keeps state across chunks. */
eg_inspector *eg_inspect_begin(void);
/* part: "host", "url", "header", "body". For "body", data arrives in
 * chunks; a match may span chunks. The verdict is for this call: EG_REDACT
 * means data was rewritten in place (same length) and what is left may go;
 * once EG_BLOCK, every later call says EG_BLOCK. The caller turns a redact
 * it cannot honour (a host name, a compressed body) into a block. */
enum eg_verdict eg_inspect(eg_inspector *in, const char *part, char *data, size_t len);
/* The request's verdict so far: block, else redact if anything was. */
enum eg_verdict eg_inspect_verdict(const eg_inspector *in);
/* Kinds found so far (e.g. "test-marker"), NULL-terminated. */
const char *const *eg_inspect_kinds(const eg_inspector *in);
void eg_inspect_end(eg_inspector *in);

#endif
