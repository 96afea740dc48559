/* policy.h - egress rules and the policy file (docs/egress.md, "Rules" and
 * "Policy file"): parsing, validation, normalization and host matching.
 * Pure functions over JSON values: no daemon state, no loop (fuzzed by
 * tests/fuzz/fuzz_policy.c). */
#ifndef AB_EGRESS_POLICY_H
#define AB_EGRESS_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "agentbox.h"
#include "internal.h"

#define EG_RULES_MAX 256
#define EG_HOST_MAX 253
#define EG_METHODS_MAX 32
#define EG_PATHS_MAX 64
#define EG_PATH_MAX 1024
#define EG_PORTS_MAX 32
#define EG_NAME_MAX 64	 /* an intent's name */
#define EG_TTL_MAX 86400 /* an intent's time to live, seconds */
#define EG_POLICY_FILE_MAX (1u << 20)

/* Normalizes one rule v (a host pattern string or an object) into a new
 * object whose id is id. where names the rule in messages
 * ("params.network[2]"). On error returns NULL, fills err with a message
 * that starts with where and names the key, and sets *bad_key (if given)
 * to the offending key of v (borrowed from v) or NULL. */
json_t *eg_rule_normalize(json_t *v, const char *id, const char *where, const char **bad_key,
			  ab_error *err);
/* A list of rules (a JSON array): each normalized with id prefix#N.
 * Returns a new array or NULL (err). */
json_t *eg_rules_normalize(json_t *list, const char *prefix, const char *where, ab_error *err);

/* A concrete host (a request's target, never a pattern): lower case, no
 * trailing dot, an IPv6 literal without brackets. Writes it to out
 * (EG_HOST_MAX + 1 bytes); -EINVAL with a message otherwise. */
int eg_host_normalize(const char *host, char *out, ab_error *err);
/* Does rule host pattern match the normalized host? Wildcards never match
 * IP literals. */
bool eg_host_match(const char *pattern, const char *host);
bool eg_host_is_ip(const char *host);
/* The first rule of the array rules whose host matches host, or NULL
 * (borrowed). skip_report: ignore rules marked report. */
json_t *eg_rules_match(json_t *rules, const char *host, bool skip_report);

/* DLP settings (docs/dlp.md, "Policy"): {"secret": A, "pii": A,
 * "detectors": {KIND: A}}, every key optional, A one of off, log, redact,
 * block, every KIND a detector's. Returns the normalized copy (new), or
 * NULL with err naming where and the key. */
json_t *eg_dlp_normalize(json_t *v, const char *where, ab_error *err);
/* The action for every detector, {KIND: A}: the file's setting (its
 * detectors entry, else its class default, else the built-in default:
 * block secrets, redact personal data), made stricter, never weaker, by
 * the sandbox's. Either may be NULL. New. */
json_t *eg_dlp_actions(json_t *file, json_t *sandbox);
/* Only the kinds an intent's settings name (by kind or class), {KIND: A};
 * they replace the sandbox's while the intent lives. New. */
json_t *eg_dlp_overrides(json_t *intent);

/* "10m", "30s", "2h" or a number of seconds (1..EG_TTL_MAX). */
int eg_ttl_parse(const char *s, double *seconds, ab_error *err);

/* The policy file's text (len bytes, named name in messages) parsed into
 * its normalized JSON form:
 *   {"default": "deny"|"report", "deny": [rules], "allow": [rules],
 *    "intents": {NAME: {"description": S, "ttl": seconds, "rules": [rules],
 *                       "dlp": settings (optional)}},
 *    "dlp": settings (optional, eg_dlp_normalize)}
 * Errors name name:line and the key. *out is new. */
int eg_policy_parse(const char *text, size_t len, const char *name, json_t **out, ab_error *err);
/* Reads path (at most EG_POLICY_FILE_MAX bytes) and parses it. */
int eg_policy_load(const char *path, json_t **out, ab_error *err);
/* The policy without a file: default deny, nothing else. */
json_t *eg_policy_default(void);

#endif
