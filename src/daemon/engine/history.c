/* history.c - time travel: the steps of a session as a tree, a snapshot of
 * the state each step started in, and rewind, inspect, diff over them
 * (docs/time-travel.md).
 *
 * A state is named by the step whose end it is (0: the session's start);
 * step n started in state parent(n). The session's current state is the
 * end of step `head`; a run makes a new step whose parent is head, and a
 * rewind to step n makes head parent(n), so the steps after it stay in the
 * tree as a branch. Each state may hold a parked copy of the interpreter
 * (backend snapshot): asked for as soon as the state exists (right after a
 * result, so the copy is made while the client reads it) and, failing
 * that, just before the next run. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "engine.h"
#include "fscreds.h"
#include "history_check.h"
#include "record/record.h"
#include "wsstore.h"

#define DEFAULT_MAX_SNAPSHOTS 8
#define INSPECT_TIMEOUT_S 10.0
#define EXPR_MAX 65536
#define CODE_KEEP (64u << 10)	 /* code kept per step for history (the audit log keeps all) */
#define CODE_TOTAL (16u << 20) /* and per session: beyond, steps keep 256 bytes */

#include "history_internal.h"

static const char *const mem_names[] = {"none", "pending", "parked", "evicted", "lost", "refused"};

static unsigned store_seq;

/* Takes a version of the workspace for state st (docs/time-travel.md). */
void tl_capture(sandbox *sb, tl_state *st)
{
	timeline *tl = sb->tl;
	if (!tl->ws) {
		snprintf(st->files_why, sizeof(st->files_why), "%s", tl->ws_why);
		return;
	}
	uid_t uid;
	const char *path = sandbox_workspace(sb, &uid);
	int fd = path ? open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
	if (fd < 0) {
		snprintf(st->files_why, sizeof(st->files_why), "the workspace is gone");
		return;
	}
	ab_error err = {0};
	uint64_t added = 0;
	json_t *m = ws_capture(tl->ws, fd, &added, &err);
	close(fd);
	if (!m) {
		snprintf(st->files_why, sizeof(st->files_why), "%.190s", err.msg);
		return;
	}
	/* An unchanged workspace costs the history one reference, not a
	 * manifest per state. */
	if (tl->last_files && json_equal(m, tl->last_files)) {
		json_decref(m);
		m = json_incref(tl->last_files);
	} else {
		json_decref(tl->last_files);
		tl->last_files = json_incref(m);
	}
	json_decref(st->files);
	st->files = m;
	if (!st->files_end)
		st->files_end = json_incref(m);
}

static bool can_snapshot(const sandbox *sb)
{
	return sb->be && sb->prof->ops->snapshot && !sb->prof->restricted;
}

tl_state *tl_state_of(timeline *tl, int after)
{
	for (size_t i = 0; i < tl->nstates; i++)
		if (tl->states[i].after == after)
			return &tl->states[i];
	return NULL;
}

static tl_state *state_by_snap(timeline *tl, int snap)
{
	for (size_t i = 0; i < tl->nstates; i++)
		if (tl->states[i].snap == snap)
			return &tl->states[i];
	return NULL;
}

tl_step *tl_step_of(timeline *tl, int id)
{
	for (size_t i = 0; i < tl->nsteps; i++)
		if (tl->steps[i].id == id)
			return &tl->steps[i];
	return NULL;
}

tl_state *tl_add_state(timeline *tl, int after, const char *why)
{
	tl_state *st = tl_state_of(tl, after);
	if (st)
		return st;
	if (tl->nstates == tl->cap_states) {
		size_t cap = tl->cap_states ? 2 * tl->cap_states : 16;
		tl_state *n = realloc(tl->states, cap * sizeof(*n));
		if (!n)
			return NULL;
		tl->states = n;
		tl->cap_states = cap;
	}
	st = &tl->states[tl->nstates++];
	memset(st, 0, sizeof(*st));
	st->after = after;
	st->snap = -1;
	snprintf(st->why, sizeof(st->why), "%s", why ? why : "");
	return st;
}

static timeline *timeline_of(sandbox *sb)
{
	if (sb->tl)
		return sb->tl;
	if (sb->role != ROLE_SESSION || sb->oneshot)
		return NULL;
	return tl_new_for(sb);
}

timeline *tl_new_for(sandbox *sb)
{
	timeline *tl = calloc(1, sizeof(*tl));
	if (!tl)
		return NULL;
	tl->live = -1;
	tl->replay_to = -1;
	tl->max_snapshots = sb->max_snapshots > 0 ? sb->max_snapshots : DEFAULT_MAX_SNAPSHOTS;
	/* Each parked copy is a process: leave most of the pids limit to
	 * the code. */
	if (sb->limits.pids > 0 && (uint64_t)tl->max_snapshots > sb->limits.pids / 4)
		tl->max_snapshots = sb->limits.pids / 4 > 1 ? (int)(sb->limits.pids / 4) : 1;
	sb->tl = tl;
	/* Made for the run in progress (step sb->step): the history begins
	 * in the state it started in. */
	tl->head = sb->step > 0 ? sb->step - 1 : 0;
	char dir[4300];
	ab_error err = {0};
	snprintf(dir, sizeof(dir), "%s/history", D.home);
	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		snprintf(tl->ws_why, sizeof(tl->ws_why), "cannot make %.150s: %s", dir,
			 strerror(errno));
	snprintf(dir, sizeof(dir), "%s/history/%s-%u", D.home, sb->id, ++store_seq);
	if (!tl->ws_why[0] && !(tl->ws = ws_store_new(dir, &err)))
		snprintf(tl->ws_why, sizeof(tl->ws_why), "%.190s", err.msg);
	tl_state *st = tl_add_state(tl, tl->head, NULL);
	if (st)
		tl_capture(sb, st);
	return tl;
}

/* Asks for a copy of the current state if it has none yet. */
static void snapshot_head(sandbox *sb)
{
	timeline *tl = timeline_of(sb);
	if (!tl || sb->state == SB_DEAD || sb->state == SB_CLOSING)
		return;
	tl_state *st = tl_add_state(tl, tl->head, NULL);
	if (!st || st->mem != MEM_NONE || st->why[0])
		return;
	if (sb->max_snapshots < 0) {
		snprintf(st->why, sizeof(st->why),
			 "the session keeps no copies of its interpreter (snapshots: 0)");
		return;
	}
	if (!can_snapshot(sb)) {
		if (sb->prof->restricted)
			snprintf(st->why, sizeof(st->why),
				 "the %s tier cannot copy its interpreter (its seccomp filter "
				 "forbids fork)",
				 sb->prof->name);
		else
			snprintf(st->why, sizeof(st->why),
				 "the %s backend cannot copy its interpreter", sb->prof->ops->name);
		return;
	}
	ab_error err = {0};
	int id = tl->next_snap++;
	if (sb->prof->ops->snapshot(sb->be, id, &err) < 0) {
		if (err.code == -EBUSY)
			return; /* asked again before the next run */
		st->mem = MEM_REFUSED;
		snprintf(st->why, sizeof(st->why), "%.230s", err.msg);
		return;
	}
	st->snap = id;
	st->mem = MEM_PENDING;
}

void history_snapshot_head(sandbox *sb)
{
	snapshot_head(sb);
}

void history_before_run(sandbox *sb)
{
	bool fresh = !sb->tl;
	snapshot_head(sb);
	/* The files this step starts with: what the client wrote since the
	 * last step ended included (unchanged files cost a stat). */
	timeline *tl = sb->tl;
	tl_state *st = tl && !fresh ? tl_state_of(tl, tl->head) : NULL;
	if (st)
		tl_capture(sb, st);
}

void history_after_run(sandbox *sb, const char *code, json_t *r, uint64_t start_ns)
{
	timeline *tl = timeline_of(sb);
	if (!tl)
		return;
	if (tl->nsteps == tl->cap_steps) {
		size_t cap = tl->cap_steps ? 2 * tl->cap_steps : 16;
		tl_step *n = realloc(tl->steps, cap * sizeof(*n));
		if (!n)
			return;
		tl->steps = n;
		tl->cap_steps = cap;
	}
	tl_step *s = &tl->steps[tl->nsteps++];
	memset(s, 0, sizeof(*s));
	s->id = sb->step;
	s->parent = tl->head;
	size_t len = code ? strlen(code) : 0;
	size_t keep = tl->code_bytes + len > CODE_TOTAL ? 256 : CODE_KEEP;
	s->code_cut = len > keep;
	if (s->code_cut) {
		len = keep;
		while (len > 0 && ((unsigned char)code[len] & 0xC0) == 0x80)
			len--;
	}
	s->code = strndup(code ? code : "", len);
	tl->code_bytes += len;
	snprintf(s->status, sizeof(s->status), "%s",
		 json_string_value(json_object_get(r, "status")) ?: "?");
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	double dur = (double)(now_ns() - start_ns) / 1e6;
	s->duration_ms = dur;
	s->started_ms = (double)now.tv_sec * 1e3 + (double)now.tv_nsec / 1e6 - dur;
	tl->head = s->id;
	const char *why = NULL;
	if (sb->state == SB_DEAD)
		why = "the run ended the interpreter";
	tl_state *st = tl_add_state(tl, s->id, why);
	if (st)
		tl_capture(sb, st);
	snapshot_head(sb);
}

/* ------------------------------------------------------------- eviction */

static void evict(sandbox *sb, tl_state *st, const char *why)
{
	if (sb->be && !sb->prof->ops->discard(sb->be, st->snap)) {
		st->pinned = true; /* the backend needs it: never a candidate again */
		return;
	}
	st->mem = MEM_EVICTED;
	snprintf(st->why, sizeof(st->why), "%s", why);
	client_learns(sb->owner, audit_event("sandbox.snapshot", sb->id, st->after, "daemon",
					     json_pack("{s:i, s:s, s:s}", "state_after",
						       st->after, "memory", "evicted", "why", why)));
}

/* The oldest parked state that may go: not the one the executor came from. */
static tl_state *oldest_evictable(timeline *tl)
{
	tl_state *best = NULL;
	for (size_t i = 0; i < tl->nstates; i++) {
		tl_state *st = &tl->states[i];
		if (st->mem == MEM_PARKED && st->snap != tl->live && !st->pinned &&
		    (!best || st->order < best->order))
			best = st;
	}
	return best;
}

/* Snapshots count against the sandbox's memory limit (they live in its
 * cgroup) and take one process each: above max_snapshots, or with the
 * sandbox using more than three quarters of its memory limit, the oldest
 * go first. */
static void enforce_budget(sandbox *sb)
{
	timeline *tl = sb->tl;
	int parked = 0;
	for (size_t i = 0; i < tl->nstates; i++)
		parked += tl->states[i].mem == MEM_PARKED;
	tl_state *st;
	while (parked > tl->max_snapshots && (st = oldest_evictable(tl))) {
		char why[160];
		snprintf(why, sizeof(why), "evicted: more than %d snapshots (the session's budget)",
			 tl->max_snapshots);
		evict(sb, st, why);
		parked -= st->mem == MEM_EVICTED;
	}
	if (!sb->prof->ops->memory_usage || !sb->limits.memory_mb)
		return;
	uint64_t limit = sb->limits.memory_mb << 20;
	uint64_t used = sb->prof->ops->memory_usage(sb->be);
	if (used <= limit / 4 * 3)
		return;
	/* What each eviction frees is what only that copy holds. */
	uint64_t excess = used - limit / 4 * 3, freed = 0;
	while (freed < excess && (st = oldest_evictable(tl))) {
		int64_t bytes = sb->prof->ops->snapshot_bytes(sb->be, st->snap);
		char why[200];
		snprintf(why, sizeof(why),
			 "evicted: the sandbox used %llu of its %llu MB with its snapshots",
			 (unsigned long long)(used >> 20), (unsigned long long)sb->limits.memory_mb);
		evict(sb, st, why);
		freed += bytes > 0 ? (uint64_t)bytes : 1;
	}
}

/* ------------------------------------------------------- backend events */

void history_snapshotted(sandbox *sb, int id, json_t *not_kept, const char *error)
{
	timeline *tl = sb->tl;
	tl_state *st = tl ? state_by_snap(tl, id) : NULL;
	if (!st) {
		if (!error && sb->be)
			sb->prof->ops->discard(sb->be, id); /* nobody wants it now */
		return;
	}
	if (st->mem != MEM_PENDING)
		return;
	if (error) {
		st->mem = MEM_REFUSED;
		st->snap = -1;
		snprintf(st->why, sizeof(st->why), "%.230s", error);
	} else {
		st->mem = MEM_PARKED;
		st->order = ++tl->next_order;
		json_decref(st->not_kept);
		st->not_kept = json_incref(not_kept);
		tl->live = id;
	}
	client_learns(sb->owner,
		      audit_event("sandbox.snapshot", sb->id, st->after, "daemon",
				  json_pack("{s:i, s:s, s:s?}", "state_after", st->after, "memory",
					    error ? "refused" : "parked", "why", error)));
	if (!error)
		enforce_budget(sb);
	if (tl->rewind_waits) {
		call *k = tl->rewind_call;
		tl->rewind_call = NULL;
		tl->rewind_waits = false;
		engine_rewind(sb, k, tl->rewind_step);
	}
}

void history_snapshot_lost(sandbox *sb, int id, const char *why)
{
	tl_state *st = sb->tl ? state_by_snap(sb->tl, id) : NULL;
	if (!st || st->mem == MEM_EVICTED)
		return;
	st->mem = MEM_LOST;
	snprintf(st->why, sizeof(st->why), "lost: %.220s", why);
	if (sb->tl->live == id)
		sb->tl->live = -1;
}

/* ------------------------------------------------------------- requests */

static bool tl_ready(sandbox *sb, call *k, timeline **out)
{
	timeline *tl = sb->tl;
	if (!tl) {
		call_fail(k, sb->id, ERR_BAD_PARAMS,
			  "this session has no history yet (it has run nothing)", NULL);
		return false;
	}
	*out = tl;
	return true;
}

/* The state step n started in, or fails k. */
static tl_state *start_state(sandbox *sb, call *k, timeline *tl, int n, bool need_parked)
{
	tl_step *s = tl_step_of(tl, n);
	if (!s) {
		char msg[200];
		snprintf(msg, sizeof(msg), "no step %d in this session's history", n);
		call_fail(k, sb->id, ERR_BAD_PARAMS, msg, NULL);
		return NULL;
	}
	tl_state *st = tl_state_of(tl, s->parent);
	if (need_parked && (!st || st->mem != MEM_PARKED)) {
		char msg[400];
		snprintf(msg, sizeof(msg), "the state before step %d cannot be restored: %s", n,
			 !st ? "it was never kept"
			 : st->mem == MEM_PENDING ? "its snapshot is still being taken"
			 : st->why[0]		  ? st->why
						  : "it has no snapshot");
		call_fail(k, sb->id, ERR_BAD_PARAMS, msg,
			  json_pack("{s:i, s:s}", "step", n, "memory", st ? mem_names[st->mem] : "none"));
		return NULL;
	}
	return st;
}

static json_t *state_json(sandbox *sb, tl_state *st)
{
	if (!st)
		return json_pack("{s:s}", "memory", "none");
	json_t *j = json_pack("{s:s}", "memory", mem_names[st->mem]);
	if (st->why[0])
		json_object_set_new(j, "why", json_string(st->why));
	if (st->mem == MEM_PARKED && sb->be && sb->prof->ops->snapshot_bytes) {
		int64_t b = sb->prof->ops->snapshot_bytes(sb->be, st->snap);
		if (b >= 0)
			json_object_set_new(j, "memory_bytes", json_integer(b));
	}
	if (st->not_kept)
		json_object_set(j, "not_kept", st->not_kept);
	if (st->files)
		json_object_set_new(j, "files",
				    json_integer((json_int_t)json_object_size(
					json_object_get(st->files, "files"))));
	else
		json_object_set_new(j, "files_why",
				    json_string(st->files_why[0] ? st->files_why : "not kept"));
	return j;
}

void engine_history(sandbox *sb, call *k)
{
	timeline *tl = sb->tl;
	json_t *steps = json_array();
	for (size_t i = 0; tl && i < tl->nsteps; i++) {
		tl_step *s = &tl->steps[i];
		tl_state *st = tl_state_of(tl, s->parent);
		json_array_append_new(
		    steps, json_pack("{s:i, s:i, s:s, s:b, s:s, s:f, s:f, s:o, s:b}", "step", s->id,
				     "parent", s->parent, "code", s->code, "code_truncated",
				     s->code_cut, "status", s->status, "started_at", s->started_ms / 1e3,
				     "duration_ms", s->duration_ms, "snapshot", state_json(sb, st),
				     "rewindable", st && st->mem == MEM_PARKED));
	}
	tl_state *now = tl ? tl_state_of(tl, tl->head) : NULL;
	call_done(k, json_pack("{s:s, s:i, s:o, s:o, s:i}", "sandbox", sb->id, "head",
			       tl ? tl->head : sb->step, "steps", steps, "current",
			       state_json(sb, now), "max_snapshots",
			       tl ? tl->max_snapshots : DEFAULT_MAX_SNAPSHOTS));
}

/* Makes the workspace the version of state st; what happened, for the
 * rewind's result. */
json_t *tl_restore_files(sandbox *sb, timeline *tl, tl_state *st)
{
	if (!st->files)
		return json_pack("{s:b, s:s}", "restored", 0, "why",
				 st->files_why[0] ? st->files_why : "no version was taken");
	uid_t uid;
	const char *path = sandbox_workspace(sb, &uid);
	int fd = path ? open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
	if (fd < 0)
		return json_pack("{s:b, s:s}", "restored", 0, "why", "the workspace is gone");
	ab_error err = {0};
	int n = ws_restore(tl->ws, st->files, fd, uid, (gid_t)uid, &err);
	close(fd);
	if (n < 0)
		return json_pack("{s:b, s:s}", "restored", 0, "why", err.msg);
	return json_pack("{s:b, s:i}", "restored", 1, "files_written", n);
}

const json_t *history_files_at(sandbox *sb, call *k, int n, ws_store **store)
{
	timeline *tl = sb->tl;
	if (!tl) {
		call_fail(k, sb->id, ERR_BAD_PARAMS,
			  "this session has no history yet (it has run nothing)", NULL);
		return NULL;
	}
	tl_state *st = start_state(sb, k, tl, n, false);
	if (!st)
		return NULL;
	if (!st->files) {
		char msg[400];
		snprintf(msg, sizeof(msg), "the workspace before step %d was not kept: %s", n,
			 st->files_why[0] ? st->files_why : "no version was taken");
		call_fail(k, sb->id, ERR_BAD_PARAMS, msg, NULL);
		return NULL;
	}
	*store = tl->ws;
	return st->files;
}

void engine_rewind(sandbox *sb, call *k, int n)
{
	timeline *tl;
	if (!tl_ready(sb, k, &tl))
		return;
	if (sb->state == SB_RUNNING || sb->state == SB_STARTING || sb->promote_to ||
	    tl->rewind_call || sb->state == SB_CLOSING) {
		call_fail(k, sb->id, ERR_BUSY, "the sandbox is busy (a run or a rewind)", NULL);
		return;
	}
	tl_state *st = start_state(sb, k, tl, n, false);
	if (!st)
		return;
	tl->replay_to = -1;
	if (st->mem != MEM_PARKED && st->mem != MEM_PENDING) {
		/* No copy holds that state. The nearest earlier state on its
		 * branch that has one is restored, and the steps from there
		 * run again in place; without one, a new sandbox replays the
		 * whole branch (replay.c). */
		tl_state *anc = NULL;
		for (int at = st->after; at != tl->states[0].after && !anc;) {
			tl_step *p = tl_step_of(tl, at);
			if (!p)
				break;
			at = p->parent;
			tl_state *a = tl_state_of(tl, at);
			if (a && (a->mem == MEM_PARKED || a->mem == MEM_PENDING))
				anc = a;
		}
		if (!anc || !sb->be || !sb->prof->ops->restore) {
			replay_start(sb, k, n, REPLAY_REWIND, NULL);
			return;
		}
		tl->replay_to = st->after;
		st = anc;
	}
	for (size_t i = 0; i < tl->nstates; i++)
		if (tl->states[i].mem == MEM_PENDING) {
			/* A copy of the current state is being made: the
			 * rewind follows its answer (history_snapshotted). */
			tl->rewind_call = k;
			tl->rewind_step = n;
			tl->rewind_waits = true;
			return;
		}
	ab_error err = {0};
	uint64_t start = now_ns();
	if (!sb->be || !sb->prof->ops->restore || sb->prof->ops->restore(sb->be, st->snap, &err) < 0) {
		char msg[400];
		snprintf(msg, sizeof(msg), "rewind to step %d failed: %s", n,
			 sb->be ? err.msg : "the sandbox is gone");
		call_fail(k, sb->id, ERR_ISOLATION, msg, NULL);
		return;
	}
	tl->rewind_call = k;
	tl->rewind_step = n;
	tl->rewind_to = st->after;
	tl->rewind_start_ns = start;
	/* Every process of the session is gone now (the copy being resumed
	 * runs nothing until it is asked): the workspace goes back too. */
	json_decref(tl->rewind_files);
	tl->rewind_files = tl_restore_files(sb, tl, st);
	sb->state = SB_STARTING;
	sb->dead_reason[0] = '\0';
	timer_disarm(&sb->timer);
}

/* What a restored copy does not bring back, named (the rewind's result):
 * the processes and threads the restore stopped, the sockets the state
 * held (shared with the past, not to be reused). */
json_t *history_not_restored(sandbox *sb, tl_state *st)
{
	json_t *lost = json_array();
	json_t *stopped = sb->be && sb->prof->ops->restore_stopped
			      ? sb->prof->ops->restore_stopped(sb->be)
			      : NULL;
	json_int_t procs = json_integer_value(json_object_get(stopped, "processes"));
	json_int_t threads = json_integer_value(json_object_get(stopped, "threads"));
	if (!stopped || procs > 0)
		json_array_append_new(lost, json_pack("{s:s, s:I, s:s}", "what", "processes", "count",
						      procs, "note",
						      "processes the code had started were stopped; "
						      "a snapshot holds none"));
	if (threads > 0)
		json_array_append_new(lost, json_pack("{s:s, s:I, s:s}", "what", "threads", "count",
						      threads, "note",
						      "threads of the interpreter were stopped; a "
						      "snapshot holds only the main one"));
	json_decref(stopped);
	json_int_t sockets = json_integer_value(json_object_get(st ? st->not_kept : NULL, "sockets"));
	if (sockets > 0)
		json_array_append_new(lost, json_pack("{s:s, s:I, s:s}", "what", "sockets", "count",
						      sockets,
						      "note", "open sockets (connections through the "
							      "egress proxy) are shared with the "
							      "snapshot's past: do not reuse them"));
	return lost;
}

void history_restored(sandbox *sb, int id, const char *error)
{
	timeline *tl = sb->tl;
	if (!tl || !tl->rewind_call)
		return;
	call *k = tl->rewind_call;
	tl->rewind_call = NULL;
	if (error) {
		char msg[400];
		snprintf(msg, sizeof(msg), "rewind to step %d failed: %s", tl->rewind_step, error);
		call_fail(k, sb->id, ERR_ISOLATION, msg, NULL);
		return;
	}
	if (tl->replay_to >= 0) {
		/* Restored to an earlier copy: on to the state asked for. */
		sb->state = SB_READY;
		tl->head = tl->rewind_to;
		tl->live = id;
		json_decref(tl->rewind_files);
		tl->rewind_files = NULL;
		int from = tl->rewind_to;
		tl->rewind_to = tl->replay_to;
		tl->replay_to = -1;
		replay_in_place(sb, k, tl->rewind_step, from);
		return;
	}
	sb->state = SB_READY;
	tl->head = tl->rewind_to;
	tl->live = id;
	tl_state *st = tl_state_of(tl, tl->head);
	json_t *lost = history_not_restored(sb, st);
	double ms = (double)(now_ns() - tl->rewind_start_ns) / 1e6;
	json_t *r = json_pack("{s:s, s:i, s:i, s:{s:s, s:o}, s:o, s:f}", "sandbox", sb->id,
			      "step", tl->rewind_step, "head", tl->head, "restored", "memory",
			      "snapshot", "files",
			      tl->rewind_files ? tl->rewind_files : json_pack("{s:b}", "restored", 0),
			      "not_restored", lost, "duration_ms", ms);
	tl->rewind_files = NULL;
	client_learns(k->who, audit_event("sandbox.rewind", sb->id, tl->rewind_step, k->who->actor,
					  json_pack("{s:i, s:i, s:f}", "to_step", tl->rewind_step,
						    "head", tl->head, "duration_ms", ms)));
	sandbox_touch(sb);
	call_done(k, r);
}

/* A rewind whose copy died before it was ready. */
void history_sandbox_died(sandbox *sb, const char *why)
{
	timeline *tl = sb->tl;
	if (tl && tl->rewind_call) {
		tl->rewind_waits = false;
		history_restored(sb, -1, why);
	}
}

bool history_busy(const sandbox *sb)
{
	return sb->tl && (sb->tl->rewind_call || (sb->tl->replay && replay_is_rewind(sb->tl->replay)));
}

void engine_fork(sandbox *sb, call *k, int n)
{
	timeline *tl;
	if (!tl_ready(sb, k, &tl))
		return;
	if (!tl_step_of(tl, n)) {
		char msg[200];
		snprintf(msg, sizeof(msg), "no step %d in this session's history", n);
		call_fail(k, sb->id, ERR_BAD_PARAMS, msg, NULL);
		return;
	}
	replay_start(sb, k, n, REPLAY_FORK, NULL);
}

static int start_inspect(sandbox *sb, tl_wait *w, int i, const char *op, const char *expr,
			 ab_error *err)
{
	return sb->prof->ops->inspect(sb->be, w->snap[i], op, expr, INSPECT_TIMEOUT_S, err);
}

/* The audit record of an inspection, with the caller (owner or operator)
 * as its actor and how the state was had (a parked copy, or replay). */
static void record_inspect(sandbox *sb, call *k, int n, const char *expr, const char *memory)
{
	client_learns(k->who, audit_event("sandbox.inspect", sb->id, n, k->who->actor,
					  json_pack("{s:i, s:s, s:s}", "step", n, "expr", expr,
						    "memory", memory)));
}

void engine_inspect(sandbox *sb, call *k, int n, const char *expr)
{
	timeline *tl;
	if (!tl_ready(sb, k, &tl))
		return;
	if (strlen(expr) > EXPR_MAX) {
		call_fail(k, sb->id, ERR_BAD_PARAMS, "params.expr: longer than 64 KiB", NULL);
		return;
	}
	tl_state *st = start_state(sb, k, tl, n, false);
	if (!st)
		return;
	if (st->mem != MEM_PARKED) {
		/* Evaluated in a sandbox where that state is made again;
		 * recorded, as a parked copy's inspection is, with the caller
		 * (the owner or the operator) as its actor. */
		bool busy = tl->replay != NULL;
		replay_start(sb, k, n, REPLAY_INSPECT, expr);
		if (!busy && tl->replay)
			record_inspect(sb, k, n, expr, "replay");
		return;
	}
	tl_wait *w = calloc(1, sizeof(*w));
	if (!w) {
		call_fail(k, sb->id, ERR_RESOURCES, "out of memory", NULL);
		return;
	}
	w->k = k;
	w->snap[0] = st->snap;
	w->snap[1] = -1;
	w->step[0] = n;
	ab_error err = {0};
	if (start_inspect(sb, w, 0, "inspect", expr, &err) < 0) {
		free(w);
		call_fail(k, sb->id, err.code == -EBUSY ? ERR_BUSY : ERR_ISOLATION, err.msg, NULL);
		return;
	}
	w->next = tl->waits;
	tl->waits = w;
	record_inspect(sb, k, n, expr, "snapshot");
}

void engine_diff(sandbox *sb, call *k, int a, int b)
{
	timeline *tl;
	if (!tl_ready(sb, k, &tl))
		return;
	tl_state *sa = start_state(sb, k, tl, a, true);
	if (!sa)
		return;
	tl_state *sbst = start_state(sb, k, tl, b, true);
	if (!sbst)
		return;
	tl_wait *w = calloc(1, sizeof(*w));
	if (!w) {
		call_fail(k, sb->id, ERR_RESOURCES, "out of memory", NULL);
		return;
	}
	w->k = k;
	w->diff = true;
	w->snap[0] = sa->snap;
	w->snap[1] = sbst->snap;
	w->step[0] = a;
	w->step[1] = b;
	w->files[0] = sa->files;
	w->files[1] = sbst->files;
	ab_error err = {0};
	/* One copy at a time per snapshot: the second waits for the first
	 * when both name the same state. */
	if (start_inspect(sb, w, 0, "vars", NULL, &err) < 0 ||
	    (w->snap[1] != w->snap[0] && start_inspect(sb, w, 1, "vars", NULL, &err) < 0)) {
		free(w);
		call_fail(k, sb->id, err.code == -EBUSY ? ERR_BUSY : ERR_ISOLATION, err.msg, NULL);
		return;
	}
	w->next = tl->waits;
	tl->waits = w;
}

static void wait_free(timeline *tl, tl_wait *w)
{
	for (tl_wait **p = &tl->waits; *p; p = &(*p)->next)
		if (*p == w) {
			*p = w->next;
			break;
		}
	json_decref(w->got[0]);
	json_decref(w->got[1]);
	free(w);
}

static void answer_inspect(sandbox *sb, tl_wait *w, json_t *f, const char *error)
{
	call *k = w->k;
	if (error) {
		char msg[300];
		snprintf(msg, sizeof(msg), "inspection of step %d failed: %s", w->step[0], error);
		call_fail(k, sb->id, ERR_ISOLATION, msg, NULL);
		return;
	}
	json_t *r = history_checked_answer(f);
	if (!r) {
		call_fail(k, sb->id, ERR_ISOLATION,
			  "the inspection's answer was malformed (it came from the sandbox)", NULL);
		return;
	}
	json_object_set_new(r, "sandbox", json_string(sb->id));
	json_object_set_new(r, "step", json_integer(w->step[0]));
	call_done(k, r);
}

static void answer_diff(sandbox *sb, tl_wait *w)
{
	json_t *vars = history_diff_vars(w->got[0], w->got[1]);
	json_t *files = w->files[0] && w->files[1] ? ws_diff(w->files[0], w->files[1]) : NULL;
	call_done(w->k, json_pack("{s:s, s:i, s:i, s:o, s:o}", "sandbox", sb->id, "a", w->step[0],
				  "b", w->step[1], "variables", vars, "files",
				  files ? files : json_null()));
}

void history_inspected(sandbox *sb, int id, json_t *f, const char *error)
{
	timeline *tl = sb->tl;
	if (!tl)
		return;
	for (tl_wait *w = tl->waits; w; w = w->next) {
		int i = w->snap[0] == id && !w->got[0] ? 0 : w->snap[1] == id && !w->got[1] ? 1 : -1;
		if (i < 0)
			continue;
		if (!w->diff) {
			answer_inspect(sb, w, f, error);
			wait_free(tl, w);
			return;
		}
		json_t *vars = error ? NULL : history_checked_vars(f);
		if (!vars) {
			char msg[300];
			snprintf(msg, sizeof(msg), "listing the variables before step %d failed: %s",
				 w->step[i], error ? error : "the answer was malformed");
			call_fail(w->k, sb->id, ERR_ISOLATION, msg, NULL);
			wait_free(tl, w);
			return;
		}
		w->got[i] = vars;
		if (w->snap[0] == w->snap[1])
			w->got[1 - i] = json_incref(vars);
		if (w->got[0] && w->got[1]) {
			answer_diff(sb, w);
			wait_free(tl, w);
		}
		return;
	}
}

void history_free(sandbox *sb)
{
	timeline *tl = sb->tl;
	if (!tl)
		return;
	sb->tl = NULL;
	if (tl->rewind_call)
		call_fail(tl->rewind_call, sb->id, ERR_DEAD, "the sandbox was closed", NULL);
	while (tl->waits) {
		call_fail(tl->waits->k, sb->id, ERR_DEAD, "the sandbox was closed", NULL);
		wait_free(tl, tl->waits);
	}
	for (size_t i = 0; i < tl->nsteps; i++)
		free(tl->steps[i].code);
	for (size_t i = 0; i < tl->nstates; i++) {
		json_decref(tl->states[i].not_kept);
		json_decref(tl->states[i].files);
		json_decref(tl->states[i].files_end);
	}
	json_decref(tl->rewind_files);
	json_decref(tl->last_files);
	ws_store_free(tl->ws);
	free(tl->steps);
	free(tl->states);
	free(tl);
}
