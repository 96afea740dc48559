/* fake_backend.h - a backend that runs nothing: instances live in memory,
 * runs answer from rules the test sets, and every event is queued and
 * delivered only by fake_backend_pump(), never from inside the operation
 * that caused it (the engine does not expect, say, ready during create).
 *
 * It stands in for the Linux backend: the profiles table of
 * backend/backend.c names linux_backend, and in a build with this file
 * that symbol is the fake's operations table. Each instance has a real
 * workspace directory (under the root given to fake_backend_init), so that
 * the files API and a promotion's workspace copy work on it. */
#ifndef AB_FAKE_BACKEND_H
#define AB_FAKE_BACKEND_H

#include <limits.h>

#include "backend/backend.h"

/* What a run does, chosen by the first rule that matches it. */
typedef struct fake_reply {
	const char *match; /* code containing this (NULL: any code) */
	int tier;	   /* only in this tier (-1: any) */
	const char *out;   /* written to stdout, then to stderr, before the result */
	const char *err;
	bool hang;		/* no result: the run waits for its timer */
	bool ignore_interrupt;	/* an interrupt does not end it */
	const char *status;	/* "ok" (NULL too) or "error" */
	int exit_code;		/* in the result frame */
	const char *error_name; /* "error": the exception */
	const char *error_value;
	const char *error_extra; /* JSON object text merged into the error (frames) */
	const char *value;	 /* the cell's value (repr), or NULL */
} fake_reply;

/* Where an instance is in its life, as the fake sees it. */
enum fake_phase { FAKE_STARTING, FAKE_IDLE, FAKE_RUNNING, FAKE_DEAD };

struct be_inst {
	int serial; /* 1 for the first instance created, and so on */
	const profile *prof;
	const char *id; /* the owner's id buffer */
	void *owner;
	ab_limits limits;
	enum fake_phase phase;
	bool closing;  /* close() was called */
	bool released; /* released was delivered */
	char dir[PATH_MAX], ws[PATH_MAX + 16];
	/* runs */
	int runs, interrupts, kills;
	int step;
	char nonce[33];
	char *codes[16]; /* the code of the first 16 runs */
	fake_reply cur;	 /* the rule of the run in progress */
	/* what the engine reads back */
	be_stats stats;
	bool memory_cap_hit;
	char compromised[128]; /* "" or why it is no longer trusted */
	char kill_reason[256];
	/* time travel (fake_backend_snapshots): the ids of its parked copies */
	int snaps[64];
	int nsnaps;
	bool root_taken; /* the first copy stays (as the Linux backend's, init's child) */
	int root_snap;
	be_inst *next;
};

/* Time travel: with on, heavy instances park copies (snapshot answers at
 * the next pump, restore and inspect too; an inspection's answer is a
 * canned value or variable list). Off by default: snapshot() refuses. */
void fake_backend_snapshots(bool on);

/* Sets up the fake with its scratch root for workspaces (which must exist)
 * and forgets all rules and instances. */
void fake_backend_init(const char *root);
/* As a zygote becoming ready: the engine may now fill profile t's pool. */
void fake_profile_ready(enum tier t);
/* Delivers every queued event, in order, including those queued while
 * delivering; returns how many were delivered. */
int fake_backend_pump(void);

/* Adds a rule (copied; the strings must outlive the test). Rules are
 * matched in the order they were added. */
void fake_on_run(const fake_reply *r);
/* The next create fails at once with this message. */
void fake_fail_next_create(const char *why);
/* The next instance fails its set-up (setup_failed instead of ready). */
void fake_setup_fail_next(const char *why);
/* While set, new instances wait for fake_make_ready() instead of queueing
 * ready at once. */
void fake_hold_ready(bool hold);
void fake_make_ready(be_inst *b);
/* Queues the result of the run in progress of b as rule r says. */
void fake_finish(be_inst *b, const fake_reply *r);
/* The instance dies on its own: exited with signal sig, no reason. */
void fake_die(be_inst *b, int sig);

/* The instances not yet released (and released ones until backend_gc). */
extern be_inst *fake_instances;
int fake_live_count(void);
/* The n-th instance created (1-based), or NULL once it was freed. */
be_inst *fake_inst(int serial);
/* Files left in an instance's directory beside its workspace when it was
 * released (written outside the workspace): a count, and the last name. */
extern int fake_stray_files;
extern char fake_stray_name[PATH_MAX];

#endif
