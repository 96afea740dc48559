/* policy.h - a sandbox's effective policy as the daemon pushes it
 * (docs/egress.md, "The effective policy of a sandbox") and the decision
 * for one request. A policy is immutable once parsed and refcounted: a
 * worker holds a reference for the request it decides while the main
 * thread swaps in a new one. */
#ifndef EG_POLICY_H
#define EG_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include <jansson.h>

#include "agentbox.h"
#include "dlp.h"

#define EG_RULES_MAX 256
#define EG_METHODS_MAX 32
#define EG_PATHS_MAX 64
#define EG_PATH_MAX 1024
#define EG_PORTS_MAX 32
#define EG_RULE_ID_MAX 128

typedef struct eg_rule {
	char id[EG_RULE_ID_MAX + 1];
	char host[254];
	char **methods; /* NULL: any */
	size_t nmethods;
	char **paths; /* NULL: any */
	size_t npaths;
	uint16_t ports[EG_PORTS_MAX]; /* nports == 0: 80 and 443 */
	size_t nports;
	bool has_max_bytes_out;
	uint64_t max_bytes_out;
	bool websocket;
	bool report;
} eg_rule;

typedef struct eg_policy eg_policy;

/* Parses and validates a policy object; anything unexpected is an error
 * naming it. now_ms (monotonic) is when the message was received: the
 * intent's rules are void from now_ms + intent_expires_ms. The result has
 * one reference, owned by the caller. */
int eg_policy_parse(const json_t *j, int64_t now_ms, eg_policy **out, ab_error *err);
eg_policy *eg_policy_ref(eg_policy *p);
void eg_policy_unref(eg_policy *p);
/* The intent's name while its rules are live, else NULL (borrowed from p). */
const char *eg_policy_intent(const eg_policy *p, int64_t now_ms);
/* What to do with a finding of detector i (dlp_detector_at order): the
 * live intent's action if it sets one, else the sandbox's (dlp), else the
 * default (block secrets, redact personal data). p may be NULL. */
enum dlp_action eg_policy_dlp_action(const eg_policy *p, size_t detector, int64_t now_ms);

typedef struct eg_query {
	const char *host; /* normalized (eg_host_normalize) */
	bool host_is_ip;
	uint16_t port;
	const char *method; /* NULL for a CONNECT: only host and port decide */
	const char *path;   /* before '?'; NULL for a CONNECT */
	uint64_t bytes_out; /* the request body's size */
	bool websocket;
} eg_query;

enum eg_decision_kind { EG_ALLOW, EG_DENY, EG_REPORT };

typedef struct eg_decision {
	enum eg_decision_kind kind;
	char rule[EG_RULE_ID_MAX + 1]; /* "" = none */
	char reason[600];	       /* "" = none */
	/* For X-Agentbox-Denied: the rule id, or a reason code. */
	char code[EG_RULE_ID_MAX + 1];
} eg_decision;

/* Decides a request as docs/egress.md says, steps 1 to 4 (the address
 * checks are the caller's). */
void eg_policy_decide(const eg_policy *p, const eg_query *q, int64_t now_ms, eg_decision *d);

const char *eg_decision_name(enum eg_decision_kind k);

/* Parses one rule (exposed for the unit tests). */
int eg_rule_parse(const json_t *j, eg_rule *r, ab_error *err);
void eg_rule_clear(eg_rule *r);
bool eg_rule_host_matches(const eg_rule *r, const char *host, bool host_is_ip);

#endif
