/* config.h - what the operator chose and what the host offers: read by
 * every part of the daemon, written only by main.c at start-up (and
 * shutting_down, when the daemon is asked to stop). */
#ifndef AB_CONFIG_H
#define AB_CONFIG_H

#include <stdbool.h>
#include <sys/types.h>

#include "agentbox.h"
#include "internal.h" /* the library's internal API: errors, JSON forms */

/* The two profiles of the Linux-namespace backend (backend/backend.h). */
enum tier { TIER_HEAVY = 0, TIER_NANO = 1, TIER__COUNT };
const char *tier_name(enum tier t);

typedef struct daemon_config {
	char home[4096];
	unsigned degraded; /* layers missing and allowed to be */
	ab_layer_status layers[AB_LAYER__COUNT];
	bool privileged;     /* root: per-sandbox host uids */
	bool private_mounts; /* own mount namespace: workspaces are tmpfs */
	uid_t uid_base;
	int pool_target[TIER__COUNT]; /* -1: the tier is disabled */
	int pool_max[TIER__COUNT];    /* what the pool may grow to under demand */
	double pool_shrink_after;     /* seconds without a miss before it shrinks */
	double idle_timeout;	      /* default for new sessions, seconds (0: none) */
	unsigned zygote_rotate;	      /* a fresh zygote after this many sandboxes (0: never) */
	bool shutting_down;
	/* Caps on what clients may hold (--max-connections and friends). */
	unsigned max_conns, max_conns_per_uid, max_sessions_per_conn, max_sessions_per_uid;
} daemon_config;

extern daemon_config D;

#endif
