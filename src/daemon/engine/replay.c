/* replay.c - a past state recomputed (docs/time-travel.md, "Replay").
 *
 * Where no parked copy holds a state (the nano tier, whose filter forbids
 * fork; a copy evicted or lost; a new sandbox for box.fork()), the state is
 * made again: a new sandbox of the session's tier gets the workspace as it
 * was when the history began, then runs again, in order, the code of the
 * steps that led to the state. Replay is only as faithful as the code is
 * deterministic; what it can check, it checks: every step must end as it
 * ended the first time (ok or error), and the workspace must come out as
 * it was recorded. Differences are reported as "diverged", never hidden. */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "egress/egress.h"
#include "history_internal.h"
#include "record/record.h"

struct tl_replay {
	sandbox *from, *into;
	enum replay_goal goal;
	call *k;
	int step;   /* the step whose starting state is rebuilt */
	int target; /* that state: the end of step `target` */
	int root;   /* the state the history began in */
	int *path;  /* the steps to run again, in order */
	size_t n, next;
	bool expr_sent;
	bool in_place; /* into == from: the session itself replays (a rewind) */
	int saved_step;
	char *expr;
	json_t *diverged;
	uint64_t start_ns;
};

static const char *const goal_names[] = {"fork", "rewind", "inspect"};

bool replay_is_rewind(const tl_replay *rp)
{
	return rp->goal == REPLAY_REWIND;
}

static void replay_free(tl_replay *rp)
{
	if (rp->from && rp->from->tl && rp->from->tl->replay == rp)
		rp->from->tl->replay = NULL;
	if (rp->into)
		rp->into->replay = NULL;
	free(rp->path);
	free(rp->expr);
	json_decref(rp->diverged);
	free(rp);
}

/* The replay ends without its goal: the call learns why, the new sandbox
 * goes. */
static void replay_fail(tl_replay *rp, const char *why)
{
	char msg[600];
	snprintf(msg, sizeof(msg), "%s of step %d by replay failed: %.500s", goal_names[rp->goal],
		 rp->step, why);
	if (rp->in_place) {
		/* The session stays where the replay got to. */
		sandbox *sb = rp->from;
		int at = rp->next >= 2 ? rp->path[rp->next - 2] : rp->root;
		if (sb->tl)
			sb->tl->head = at;
		sb->step = rp->saved_step;
		size_t len = strlen(msg);
		snprintf(msg + len, sizeof(msg) - len, "; the session is in the state after step %d",
			 at);
	}
	if (rp->k)
		call_fail(rp->k, rp->from ? rp->from->id : NULL, ERR_ISOLATION, msg, NULL);
	rp->k = NULL;
	sandbox *h = rp->in_place ? NULL : rp->into;
	replay_free(rp);
	if (h && h->state != SB_CLOSING)
		sandbox_close(h);
}

/* The steps from state rp->root to state rp->target, in order, into
 * rp->path; false (and the replay failed) if the history cannot give them. */
static bool build_path(tl_replay *rp, timeline *tl)
{
	for (int at = rp->target; at != rp->root;) {
		tl_step *p = tl_step_of(tl, at);
		char msg[300];
		if (!p) {
			snprintf(msg, sizeof(msg), "the history does not reach back from step %d", at);
			replay_fail(rp, msg);
			return false;
		}
		if (p->code_cut) {
			snprintf(msg, sizeof(msg),
				 "step %d's code was not kept whole (a step keeps 64 KiB, a "
				 "session's history 16 MiB; the audit log has it all)",
				 at);
			replay_fail(rp, msg);
			return false;
		}
		int *np = realloc(rp->path, (rp->n + 1) * sizeof(int));
		if (!np) {
			replay_fail(rp, "out of memory");
			return false;
		}
		rp->path = np;
		rp->path[rp->n++] = at;
		at = p->parent;
	}
	for (size_t i = 0; i < rp->n / 2; i++) {
		int t = rp->path[i];
		rp->path[i] = rp->path[rp->n - 1 - i];
		rp->path[rp->n - 1 - i] = t;
	}
	return true;
}

void replay_start(sandbox *sb, call *k, int n, enum replay_goal goal, const char *expr)
{
	timeline *tl = sb->tl;
	if (tl->replay) {
		call_fail(k, sb->id, ERR_BUSY, "a replay of this session is in progress", NULL);
		return;
	}
	tl_step *s = tl_step_of(tl, n);
	tl_replay *rp = calloc(1, sizeof(*rp));
	if (!rp || !s) {
		free(rp);
		call_fail(k, sb->id, ERR_RESOURCES, "out of memory", NULL);
		return;
	}
	rp->from = sb;
	rp->goal = goal;
	rp->k = k;
	rp->step = n;
	rp->target = s->parent;
	rp->root = tl->nstates ? tl->states[0].after : 0;
	rp->diverged = json_array();
	rp->start_ns = now_ns();
	rp->expr = expr ? strdup(expr) : NULL;
	if (!build_path(rp, tl))
		return;
	tl_state *root = tl_state_of(tl, rp->root);
	if (!root || !root->files) {
		replay_fail(rp, "the workspace as the history began was not kept");
		return;
	}
	ab_error err = {0};
	sandbox *h = sandbox_backing(sb->owner, sb->tier, &sb->limits, &err);
	if (!h) {
		char msg[400];
		snprintf(msg, sizeof(msg), "could not start a sandbox: %.300s", err.msg);
		replay_fail(rp, msg);
		return;
	}
	h->tier_auto = sb->tier_auto;
	h->replay = rp;
	rp->into = h;
	tl->replay = rp;
	if (h->state == SB_READY)
		replay_ready(h);
}

static void replay_next(tl_replay *rp);

void replay_in_place(sandbox *sb, call *k, int n, int from)
{
	timeline *tl = sb->tl;
	tl_step *s = tl_step_of(tl, n);
	tl_replay *rp = calloc(1, sizeof(*rp));
	if (!rp || !s) {
		free(rp);
		call_fail(k, sb->id, ERR_RESOURCES, "out of memory", NULL);
		return;
	}
	rp->from = rp->into = sb;
	rp->in_place = true;
	rp->goal = REPLAY_REWIND;
	rp->k = k;
	rp->step = n;
	rp->target = s->parent;
	rp->root = from;
	rp->saved_step = sb->step;
	rp->diverged = json_array();
	rp->start_ns = now_ns();
	tl->replay = rp;
	sb->replay = rp;
	if (!build_path(rp, tl))
		return;
	replay_next(rp);
}

void replay_ready(sandbox *h)
{
	replay_next(h->replay);
}

/* Makes the new sandbox's workspace the recorded version of state `after`:
 * each step runs again on the files it first ran on (files the client
 * wrote between steps included). False if the replay failed. */
static bool put_files(tl_replay *rp, int after)
{
	timeline *tl = rp->from->tl;
	tl_state *st = tl_state_of(tl, after);
	if (!st || !st->files) {
		char msg[300];
		snprintf(msg, sizeof(msg), "the workspace at step %d was not kept", after);
		replay_fail(rp, msg);
		return false;
	}
	json_t *files = tl_restore_files(rp->into, tl, st);
	bool ok = json_is_true(json_object_get(files, "restored"));
	char why[300];
	snprintf(why, sizeof(why), "restoring the workspace: %.250s",
		 json_string_value(json_object_get(files, "why")) ?: "?");
	json_decref(files);
	if (!ok)
		replay_fail(rp, why);
	return ok;
}

/* After step id ran again: do the files it left match the record? */
static void compare_files(tl_replay *rp, int id)
{
	timeline *tl = rp->from->tl;
	tl_state *want = tl_state_of(tl, id);
	if (want && !want->files_end)
		return;
	uid_t uid;
	const char *path = sandbox_workspace(rp->into, &uid);
	int fd = path ? open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
	if (fd < 0 || !want || !want->files) {
		if (fd >= 0)
			close(fd);
		return;
	}
	ab_error err = {0};
	uint64_t added;
	json_t *got = ws_capture(tl->ws, fd, &added, &err);
	close(fd);
	json_t *d = got ? ws_diff(want->files_end, got) : NULL;
	if (d && (json_array_size(json_object_get(d, "added")) ||
		  json_array_size(json_object_get(d, "removed")) ||
		  json_array_size(json_object_get(d, "changed"))))
		json_array_append_new(rp->diverged, json_pack("{s:i, s:O}", "step", id, "files", d));
	json_decref(d);
	json_decref(got);
}

void replay_failed(sandbox *h, const char *why)
{
	replay_fail(h->replay, why);
}

static void finish(tl_replay *rp);

static void replay_next(tl_replay *rp)
{
	sandbox *h = rp->into;
	timeline *tl = rp->from->tl;
	if (rp->next < rp->n) {
		if (!put_files(rp, rp->next ? rp->path[rp->next - 1] : rp->root))
			return;
		tl_step *s = tl_step_of(tl, rp->path[rp->next++]);
		sandbox_run(h, NULL, s->code, rp->from->limits.timeout_s, "replay");
		return;
	}
	/* The state reached: its files exactly as recorded. */
	if (!rp->expr_sent && !put_files(rp, rp->target))
		return;
	if (rp->goal == REPLAY_INSPECT && !rp->expr_sent) {
		rp->expr_sent = true;
		sandbox_run(h, NULL, rp->expr, 10.0, "inspect");
		return;
	}
	finish(rp);
}

bool replay_result(sandbox *h, json_t *r)
{
	tl_replay *rp = h->replay;
	const char *status = json_string_value(json_object_get(r, "status")) ?: "?";
	if (rp->goal == REPLAY_INSPECT && rp->expr_sent) {
		/* The expression's own run: its value is the answer. */
		json_t *e = json_object_get(r, "error");
		json_t *ans;
		if (strcmp(status, "ok") == 0)
			ans = json_pack("{s:s, s:i, s:O, s:n, s:b, s:n, s:s}", "sandbox", rp->from->id,
					"step", rp->step, "value", json_object_get(r, "value"), "type",
					"truncated", 0, "error", "memory", "replay");
		else
			ans = json_pack("{s:s, s:i, s:n, s:n, s:b, s:{s:O?, s:O?}, s:s}", "sandbox",
					rp->from->id, "step", rp->step, "value", "type", "truncated", 0,
					"error", "name", json_object_get(e, "name"), "value",
					json_object_get(e, "value"), "memory", "replay");
		json_decref(r);
		if (json_array_size(rp->diverged))
			json_object_set(ans, "diverged", rp->diverged);
		call *k = rp->k;
		rp->k = NULL;
		if (ans)
			call_done(k, ans);
		else
			call_fail(k, rp->from->id, ERR_INTERNAL, "out of memory", NULL);
		replay_free(rp);
		sandbox_close(h);
		return true;
	}
	timeline *tl = rp->from->tl;
	int id = rp->path[rp->next - 1];
	tl_step *s = tl_step_of(tl, id);
	if (strcmp(status, "ok") != 0 && strcmp(status, "error") != 0) {
		char msg[200];
		snprintf(msg, sizeof(msg), "replaying step %d ended with %s", id, status);
		json_decref(r);
		replay_fail(rp, msg);
		return true;
	}
	if (s && strcmp(s->status, status) != 0)
		json_array_append_new(rp->diverged, json_pack("{s:i, s:s, s:s}", "step", id, "recorded",
							       s->status, "replayed", status));
	json_decref(r);
	compare_files(rp, id);
	replay_next(rp);
	return true;
}

/* The new sandbox becomes session `from` (a rewind): ids swapped, the
 * history moved, the old sandbox retired. */
static void take_over(tl_replay *rp)
{
	sandbox *s = rp->from, *h = rp->into;
	char tmp[sizeof(h->id)];
	memcpy(tmp, h->id, sizeof(tmp));
	memcpy(h->id, s->id, sizeof(tmp));
	memcpy(s->id, tmp, sizeof(tmp));
	egress_renamed(tmp, h->id);
	h->role = ROLE_SESSION;
	h->tl = s->tl;
	s->tl = NULL;
	h->max_snapshots = s->max_snapshots;
	h->step = s->step;
	h->idle_timeout = s->idle_timeout;
	h->tier_auto = s->tier_auto;
	h->network = json_incref(s->network);
	h->dlp = json_incref(s->dlp);
	/* The parked copies lived in the old sandbox. */
	timeline *tl = h->tl;
	for (size_t i = 0; i < tl->nstates; i++)
		if (tl->states[i].mem == MEM_PARKED || tl->states[i].mem == MEM_PENDING) {
			tl->states[i].mem = MEM_LOST;
			snprintf(tl->states[i].why, sizeof(tl->states[i].why),
				 "lost: the session moved to a new sandbox (a rewind by replay)");
			tl->states[i].snap = -1;
		}
	tl->live = -1;
	tl->head = rp->target;
	s->role = ROLE_RETIRED;
	sandbox_close(s);
	sandbox_touch(h);
}

static void finish(tl_replay *rp)
{
	sandbox *h = rp->into;
	double ms = (double)(now_ns() - rp->start_ns) / 1e6;
	json_t *replay = json_pack("{s:i, s:O, s:f}", "replayed_steps", (int)rp->n, "diverged",
				   rp->diverged, "duration_ms", ms);
	call *k = rp->k;
	rp->k = NULL;
	sandbox *from = rp->from;
	int step = rp->step, target = rp->target, root = rp->root;
	enum replay_goal goal = rp->goal;
	bool in_place = rp->in_place;
	int saved_step = rp->saved_step;
	replay_free(rp);
	if (in_place) {
		timeline *tl = from->tl;
		tl->head = target;
		from->step = saved_step;
		/* The state reached is worth a copy of its own. */
		history_snapshot_head(from);
		client_learns(k->who, audit_event("sandbox.rewind", from->id, step, k->who->actor,
						  json_pack("{s:i, s:i, s:s, s:i, s:O}", "to_step", step,
							    "head", target, "memory", "snapshot+replay",
							    "from_state", root, "replay", replay)));
		call_done(k, json_pack("{s:s, s:i, s:i, s:{s:s, s:i, s:{s:b}}, s:o, s:o, s:f}",
				       "sandbox", from->id, "step", step, "head", target, "restored",
				       "memory", "snapshot+replay", "from_state", root, "files",
				       "restored", 1, "replay", replay, "not_restored",
				       history_not_restored(from, tl_state_of(tl, target)),
				       "duration_ms", ms));
		sandbox_touch(from);
		return;
	}
	if (goal == REPLAY_FORK) {
		h->role = ROLE_SESSION;
		h->step = 0;
		h->network = json_incref(from->network);
		h->dlp = json_incref(from->dlp);
		sandbox_record_create(h, k->who);
		client_learns(k->who, audit_event("sandbox.fork", from->id, step, k->who->actor,
						  json_pack("{s:s, s:i, s:O}", "to", h->id, "step",
							    step, "replay", replay)));
		json_t *d = sandbox_describe(h);
		json_object_set_new(d, "forked_from",
				    json_pack("{s:s, s:i}", "sandbox", from->id, "step", step));
		json_object_set_new(d, "replay", replay);
		sandbox_touch(h);
		call_done(k, d);
		return;
	}
	/* a rewind */
	take_over(&(tl_replay){.from = from, .into = h, .target = target});
	client_learns(k->who, audit_event("sandbox.rewind", h->id, step, k->who->actor,
					  json_pack("{s:i, s:i, s:s, s:O}", "to_step", step, "head",
						    target, "memory", "replay", "replay", replay)));
	call_done(k, json_pack("{s:s, s:i, s:i, s:{s:s, s:{s:b}}, s:o, s:[]}", "sandbox", h->id,
			       "step", step, "head", target, "restored", "memory", "replay", "files",
			       "restored", 1, "replay", replay, "not_restored"));
}

void replay_forget(sandbox *sb)
{
	if (sb->replay) {
		replay_fail(sb->replay, "its sandbox was closed");
		return;
	}
	if (sb->tl && sb->tl->replay)
		replay_fail(sb->tl->replay, "the session was closed");
}
