/* inspect.h - the inspection hook: what leaves is shown to the DLP engine
 * (docs/dlp.md) before it goes upstream, and the sandbox's policy says
 * what each finding costs the request: nothing (off), a record (log), the
 * value (redact) or the request (block). */
#ifndef EG_INSPECT_H
#define EG_INSPECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "policy.h"

enum eg_verdict { EG_PASS, EG_REDACT, EG_BLOCK };

/* Compiles the detectors once per process (or reads them from cache_dir,
 * may be NULL: dlp_engine_open), before the sidecar confines itself;
 * salt (may be NULL: a random one) keys the hashes that findings are
 * recorded by. Returns 0, or -1 with err filled. */
int eg_inspect_init(const char *salt, const char *cache_dir, char *err, size_t errlen);

typedef struct eg_inspector eg_inspector;

/* One inspector per request, deciding by p (borrowed; the caller holds a
 * reference for the request) as of now_ms. NULL when out of memory. */
eg_inspector *eg_inspect_begin(const eg_policy *p, int64_t now_ms);
/* The Content-Type of the body to come (multipart and form bodies are
 * decoded as such); copied. */
void eg_inspect_content_type(eg_inspector *in, const char *ct);
/* Scans one part of the request, whole: part is "host", "url", "header"
 * or "body". The verdict is for this call: EG_REDACT means data was
 * rewritten in place (same length: each byte of a value becomes 'X') and
 * may go; once EG_BLOCK, every later call says EG_BLOCK. The caller turns
 * a redaction it cannot honour (a host name) into a block. */
enum eg_verdict eg_inspect(eg_inspector *in, const char *part, char *data, size_t len);
/* A body that arrives in pieces (decoded from gzip or deflate): a value
 * split across pieces is found. Nothing can be rewritten here: EG_REDACT
 * says a value that the policy redacts was found, which the caller must
 * turn into a block, since the original bytes would leave unchanged.
 * Findings may be reported only by eg_inspect_stream_end. */
enum eg_verdict eg_inspect_stream(eg_inspector *in, const char *data, size_t len);
enum eg_verdict eg_inspect_stream_end(eg_inspector *in);
/* The request's verdict so far: block, else redact if anything was. */
enum eg_verdict eg_inspect_verdict(const eg_inspector *in);
/* Kinds found so far that the policy does not ignore, NULL-terminated
 * (at most EG_INSPECT_KINDS). */
#define EG_INSPECT_KINDS 4
const char *const *eg_inspect_kinds(const eg_inspector *in);
/* The findings for the record: [{"kind", "action", "part", "hash"}], at
 * most 16; hash is "hmac-sha256:" and 16 hex digits of the value keyed by
 * the salt, so that the same value is recognisable across records and
 * never readable. A new reference. */
json_t *eg_inspect_findings(const eg_inspector *in);
void eg_inspect_end(eg_inspector *in);

#endif
