/* history_internal.h - the timeline of a session, shared by history.c and
 * replay.c (docs/time-travel.md). */
#ifndef AB_HISTORY_INTERNAL_H
#define AB_HISTORY_INTERNAL_H

#include "engine.h"
#include "wsstore.h"

enum mem_state { MEM_NONE, MEM_PENDING, MEM_PARKED, MEM_EVICTED, MEM_LOST, MEM_REFUSED };

typedef struct tl_state {
	int after; /* the step whose end this state is; 0: the start */
	int snap;  /* backend snapshot id, or -1 */
	enum mem_state mem;
	char why[240];
	json_t *not_kept;
	json_t *files;	   /* the workspace's manifest (wsstore.h) as the next step
			    * started (files the client wrote meanwhile included), or
			    * NULL */
	json_t *files_end; /* as the step that made this state ended */
	char files_why[200]; /* why there is none */
	uint64_t order; /* when its snapshot was taken: eviction goes oldest first */
	bool pinned;	/* the backend cannot let it go */
} tl_state;

typedef struct tl_step {
	int id, parent;
	char *code;
	bool code_cut;
	char status[16];
	double started_ms; /* Unix time */
	double duration_ms;
} tl_step;

/* A call waiting for an inspection (or the two of a diff). */
typedef struct tl_wait {
	call *k;
	int snap[2];
	json_t *got[2];
	int step[2];
	const json_t *files[2]; /* the workspace's versions (diff) */
	bool diff;
	struct tl_wait *next;
} tl_wait;

struct timeline {
	tl_step *steps;
	size_t nsteps, cap_steps;
	tl_state *states;
	size_t nstates, cap_states;
	int head;
	int live; /* the snapshot the executor was copied from (never evicted) */
	int next_snap;
	uint64_t next_order;
	int max_snapshots;
	call *rewind_call;
	bool rewind_waits; /* for the snapshot being taken (the backend does one thing at a time) */
	int rewind_step, rewind_to;
	json_t *rewind_files; /* what the workspace's restore did */
	uint64_t rewind_start_ns;
	tl_wait *waits;
	ws_store *ws; /* the workspace's versions, removed with the session */
	char ws_why[200];
	struct tl_replay *replay; /* a replay of this session in progress */
	int replay_to;		  /* a rewind restores a copy, then replays to this state (or -1) */
	json_t *last_files;	  /* the last manifest taken: an equal one shares it */
	size_t code_bytes;	  /* code kept for the steps, at most CODE_TOTAL */
};


typedef struct tl_replay tl_replay;

/* history.c, for replay.c */
tl_state *tl_state_of(timeline *tl, int after);
tl_step *tl_step_of(timeline *tl, int id);
tl_state *tl_add_state(timeline *tl, int after, const char *why);
timeline *tl_new_for(sandbox *sb);
void tl_capture(sandbox *sb, tl_state *st);
json_t *tl_restore_files(sandbox *sb, timeline *tl, tl_state *st);

/* replay.c: a state recomputed in a new sandbox of the session's tier by
 * running again the steps that led to it. */
enum replay_goal { REPLAY_FORK, REPLAY_REWIND, REPLAY_INSPECT };
void replay_start(sandbox *sb, call *k, int n, enum replay_goal goal, const char *expr);
bool replay_is_rewind(const struct tl_replay *rp);
/* A rewind to the state before step n: session sb was just restored to
 * state `from` (a parked copy); the steps from there are run again in it. */
void replay_in_place(sandbox *sb, call *k, int n, int from);
void history_snapshot_head(sandbox *sb);
/* The rewind result's "not_restored" for a restore to state st. */
json_t *history_not_restored(sandbox *sb, tl_state *st);

#endif
