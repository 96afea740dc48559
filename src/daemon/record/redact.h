/* redact.h - the audit log's redactor (docs/dlp.md, "In the audit log")
 * and the salt that findings are hashed with, daemon-wide. */
#ifndef AB_RECORD_REDACT_H
#define AB_RECORD_REDACT_H

#include <stddef.h>

#include <jansson.h>

#include "agentbox.h"
#include "internal.h"

/* Loads (or makes, 0600) home/dlp-salt and compiles the DLP engine.
 * Returns 0, or a negative code with err naming the problem. */
int redact_init(const char *home, ab_error *err);
/* The salt as 64 hex digits (for the egress sidecar), or NULL before
 * redact_init. */
const char *redact_salt(void);
/* An ab_audit_redact_fn: replaces every value found in the strings of
 * body by "[REDACTED:kind]" and lists what it replaced in body.redacted
 * ([{"field", "kind", "hash"}], at most 64; body.redacted_more counts the
 * rest). */
void redact_event(const char *kind, json_t *body, void *ctx);

#endif
