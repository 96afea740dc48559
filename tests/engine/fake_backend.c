/* fake_backend.c - the in-memory backend of the engine tests and the RPC
 * fuzzer (fake_backend.h). Operations only change the instance and queue
 * events; fake_backend_pump() delivers them, as the loop would deliver the
 * real backend's. An instance that is closing hears nothing but its
 * release, and a dead one sends no more ready, output or result, as in the
 * Linux backend. */
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>

#include "daemon_stubs.h"
#include "fake_backend.h"

enum ev_kind {
	EV_READY,
	EV_SETUP_FAILED,
	EV_OUTPUT,
	EV_RESULT,
	EV_EXITED,
	EV_RELEASED,
	EV_SNAPSHOTTED,
	EV_RESTORED,
	EV_INSPECTED
};

typedef struct fake_event {
	enum ev_kind kind;
	be_inst *b;
	int stream, code, status;
	char *text; /* output bytes, or the reason of setup_failed/exited */
	json_t *frame;
	struct fake_event *next;
} fake_event;

static const be_events *EV;
static fake_event *q_head, **q_tail = &q_head;
static char root_dir[PATH_MAX];
static int serial;
static fake_reply rules[32];
static int nrules;
static char fail_create[256], fail_setup[256];
static bool hold_ready;
static bool snapshots_on;
static be_inst *gc_list;

be_inst *fake_instances;
int fake_stray_files;
char fake_stray_name[PATH_MAX];

void backend_init(const be_events *ev)
{
	EV = ev;
}

const be_events *backend_events(void)
{
	return EV;
}

static void enqueue(be_inst *b, enum ev_kind kind, int stream, int code, int status,
		    const char *text, json_t *frame)
{
	fake_event *e = calloc(1, sizeof(*e));
	if (!e)
		abort();
	e->kind = kind;
	e->b = b;
	e->stream = stream;
	e->code = code;
	e->status = status;
	e->text = text ? strdup(text) : NULL;
	e->frame = frame;
	*q_tail = e;
	q_tail = &e->next;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

/* Removes b's directory, counting what was written beside its workspace. */
static void remove_dir(be_inst *b)
{
	DIR *d = opendir(b->dir);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d)))
			if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0 &&
			    strcmp(de->d_name, "workspace") != 0) {
				fake_stray_files++;
				snprintf(fake_stray_name, sizeof(fake_stray_name), "%s/%s", b->dir,
					 de->d_name);
			}
		closedir(d);
	}
	/* Directories a test made unreadable are not its business here. */
	nftw(b->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void free_inst(be_inst *b)
{
	for (int i = 0; i < 16; i++)
		free(b->codes[i]);
	free(b);
}

void backend_gc(void)
{
	while (gc_list) {
		be_inst *n = gc_list->next;
		free_inst(gc_list);
		gc_list = n;
	}
}

void fake_backend_init(const char *root)
{
	snprintf(root_dir, sizeof(root_dir), "%s", root);
	nrules = 0;
	fail_create[0] = fail_setup[0] = '\0';
	hold_ready = false;
	snapshots_on = false;
	fake_stray_files = 0;
}

void fake_on_run(const fake_reply *r)
{
	if (nrules == (int)(sizeof(rules) / sizeof(rules[0])))
		abort();
	rules[nrules++] = *r;
}

void fake_fail_next_create(const char *why)
{
	snprintf(fail_create, sizeof(fail_create), "%s", why);
}

void fake_setup_fail_next(const char *why)
{
	snprintf(fail_setup, sizeof(fail_setup), "%s", why);
}

void fake_hold_ready(bool hold)
{
	hold_ready = hold;
}

void fake_make_ready(be_inst *b)
{
	enqueue(b, EV_READY, 0, 0, 0, NULL, NULL);
}

void fake_die(be_inst *b, int sig)
{
	enqueue(b, EV_EXITED, 0, CLD_KILLED, sig, NULL, NULL);
}

int fake_live_count(void)
{
	int n = 0;
	for (be_inst *b = fake_instances; b; b = b->next)
		n += !b->released;
	return n;
}

be_inst *fake_inst(int n)
{
	for (be_inst *b = fake_instances; b; b = b->next)
		if (b->serial == n)
			return b;
	for (be_inst *b = gc_list; b; b = b->next)
		if (b->serial == n)
			return b;
	return NULL;
}

/* ----------------------------------------------------------- operations */

static int f_create(const profile *p, const char *id, const ab_limits *lim, void *owner,
		    be_inst **out, ab_error *err)
{
	if (fail_create[0]) {
		int r = ab_error_set(err, -EAGAIN, "%s", fail_create);
		fail_create[0] = '\0';
		return r;
	}
	be_inst *b = calloc(1, sizeof(*b));
	if (!b)
		return ab_error_set(err, -ENOMEM, "out of memory");
	b->serial = ++serial;
	b->prof = p;
	b->id = id;
	b->owner = owner;
	b->limits = *lim;
	b->phase = FAKE_STARTING;
	snprintf(b->dir, sizeof(b->dir), "%s/i%d", root_dir, b->serial);
	snprintf(b->ws, sizeof(b->ws), "%s/workspace", b->dir);
	if (mkdir(b->dir, 0700) < 0 || mkdir(b->ws, 0755) < 0) {
		int r = ab_error_errno(err, -errno, "create workspace %s", b->ws);
		free(b);
		return r;
	}
	if (fail_setup[0]) {
		enqueue(b, EV_SETUP_FAILED, 0, 0, 0, fail_setup, NULL);
		fail_setup[0] = '\0';
	} else if (!hold_ready) {
		enqueue(b, EV_READY, 0, 0, 0, NULL, NULL);
	}
	b->next = fake_instances;
	fake_instances = b;
	*out = b;
	return 0;
}

/* As in the Linux backend: nano's memory cap and every disk cap are fixed
 * when the instance is built. */
static bool f_limits_fit(const profile *p, const ab_limits *old, const ab_limits *lim)
{
	return old->disk_mb == lim->disk_mb &&
	       (!p->memory_fixed || old->memory_mb == lim->memory_mb);
}

static bool f_adopt_limits(be_inst *b, const ab_limits *old, const ab_limits *lim)
{
	if (!f_limits_fit(b->prof, old, lim))
		return false;
	b->limits = *lim;
	return true;
}

static bool f_can_create(const profile *p)
{
	(void)p;
	return stub_zygotes_alive;
}

static int f_creates_pending(const profile *p)
{
	(void)p;
	return 0;
}

void fake_profile_ready(enum tier t)
{
	EV->profile_ready(t);
}

static const fake_reply *match(const be_inst *b, const char *code)
{
	static const fake_reply plain = {.tier = -1};
	for (int i = 0; i < nrules; i++)
		if ((rules[i].tier < 0 || rules[i].tier == (int)b->prof->tier) &&
		    (!rules[i].match || strstr(code, rules[i].match)))
			return &rules[i];
	return &plain;
}

void fake_finish(be_inst *b, const fake_reply *r)
{
	if (r->out)
		enqueue(b, EV_OUTPUT, 0, 0, 0, r->out, NULL);
	if (r->err)
		enqueue(b, EV_OUTPUT, 1, 0, 0, r->err, NULL);
	bool error = r->status && strcmp(r->status, "error") == 0;
	json_t *f =
	    json_pack("{s:s, s:s, s:s, s:i, s:o, s:o}", "ev", "result", "nonce", b->nonce, "status",
		      error ? "error" : "ok", "exit_code", r->exit_code, "value",
		      r->value ? json_string(r->value) : json_null(), "results", json_array());
	if (error)
		json_object_set_new(f, "error",
				    json_pack("{s:s, s:s, s:s}", "name",
					      r->error_name ? r->error_name : "Exception", "value",
					      r->error_value ? r->error_value : "", "traceback",
					      "Traceback (most recent call last):\n"));
	if (error && r->error_extra) {
		json_t *extra = json_loads(r->error_extra, 0, NULL);
		if (!extra)
			abort(); /* the test's own JSON is broken */
		json_object_update(json_object_get(f, "error"), extra);
		json_decref(extra);
	}
	enqueue(b, EV_RESULT, 0, 0, 0, NULL, f);
}

static void f_run(be_inst *b, int step, const char *nonce, const char *code, size_t frame_max)
{
	(void)frame_max;
	if (b->runs < 16)
		b->codes[b->runs] = strdup(code);
	b->runs++;
	b->step = step;
	b->phase = FAKE_RUNNING;
	snprintf(b->nonce, sizeof(b->nonce), "%s", nonce);
	b->cur = *match(b, code);
	if (!b->cur.hang)
		fake_finish(b, &b->cur);
}

static void f_interrupt(be_inst *b)
{
	b->interrupts++;
	if (b->phase != FAKE_RUNNING || b->cur.ignore_interrupt)
		return;
	fake_reply ki = {.status = "error",
			 .exit_code = 1,
			 .error_name = "KeyboardInterrupt",
			 .error_value = ""};
	fake_finish(b, &ki);
}

static void f_kill(be_inst *b, const char *why)
{
	b->kills++;
	if (!b->kill_reason[0] && why)
		snprintf(b->kill_reason, sizeof(b->kill_reason), "%s", why);
	if (b->kills == 1)
		enqueue(b, EV_EXITED, 0, CLD_KILLED, SIGKILL, NULL, NULL);
}

static void f_drain(be_inst *b)
{
	(void)b; /* output events are queued before their result */
}

static void f_stats(be_inst *b, be_stats *st)
{
	*st = b->stats;
}

static bool f_memory_cap_hit(be_inst *b, uint64_t memory_mb)
{
	(void)memory_mb;
	return b->memory_cap_hit;
}

static const char *f_compromised(be_inst *b)
{
	return b->compromised[0] ? b->compromised : NULL;
}

static const char *f_workspace(be_inst *b, uid_t *uid)
{
	*uid = getuid();
	return b->ws;
}

static void f_close(be_inst *b)
{
	if (b->closing)
		return;
	b->closing = true;
	enqueue(b, EV_RELEASED, 0, 0, 0, NULL, NULL);
}

static void release(be_inst *b)
{
	b->released = true;
	b->phase = FAKE_DEAD;
	remove_dir(b);
	for (be_inst **p = &fake_instances; *p; p = &(*p)->next)
		if (*p == b) {
			*p = b->next;
			break;
		}
	b->next = gc_list;
	gc_list = b;
	EV->released(b->owner);
}

static void drop_events_of(be_inst *b);

static void f_close_now(be_inst *b)
{
	f_close(b);
	if (b->released)
		return;
	drop_events_of(b);
	release(b);
}

static bool f_owns_pid(be_inst *b, pid_t pid)
{
	return pid == 100000 + b->serial;
}

void fake_backend_snapshots(bool on)
{
	snapshots_on = on;
}

static int snap_index(const be_inst *b, int id)
{
	for (int i = 0; i < b->nsnaps; i++)
		if (b->snaps[i] == id)
			return i;
	return -1;
}

static int f_snapshot(be_inst *b, int id, ab_error *err)
{
	if (!snapshots_on)
		return ab_error_set(err, -ENOTSUP, "the fake backend keeps no copies");
	if (b->phase != FAKE_IDLE)
		return ab_error_set(err, -EBUSY, "not idle");
	if (b->nsnaps >= (int)(sizeof(b->snaps) / sizeof(b->snaps[0])))
		return ab_error_set(err, -ENOSPC, "no room for another copy");
	b->snaps[b->nsnaps++] = id;
	if (!b->root_taken) {
		b->root_taken = true;
		b->root_snap = id;
	}
	enqueue(b, EV_SNAPSHOTTED, 0, id, 0, NULL, NULL);
	return 0;
}

static int f_restore(be_inst *b, int id, ab_error *err)
{
	if (snap_index(b, id) < 0)
		return ab_error_set(err, -ENOENT, "snapshot %d is not parked", id);
	if (b->closing)
		return ab_error_set(err, -ESRCH, "the sandbox is gone");
	b->phase = FAKE_STARTING;
	enqueue(b, EV_RESTORED, 0, id, 0, NULL, NULL);
	return 0;
}

static int f_inspect(be_inst *b, int id, const char *op, const char *expr, double timeout,
		     ab_error *err)
{
	(void)timeout;
	if (snap_index(b, id) < 0)
		return ab_error_set(err, -ENOENT, "snapshot %d is not parked", id);
	json_t *f = strcmp(op, "vars") == 0
			? json_pack("{s:{s:{s:s, s:s, s:s}}}", "vars", "x", "type", "int", "repr",
				    "1", "digest", "0000000000000001")
			: json_pack("{s:s, s:s, s:b}", "value", expr ? expr : "", "type", "str",
				    "truncated", 0);
	enqueue(b, EV_INSPECTED, 0, id, 0, NULL, f);
	return 0;
}

static bool f_discard(be_inst *b, int id)
{
	int i = snap_index(b, id);
	if (b->root_taken && id == b->root_snap)
		return false;
	if (i >= 0)
		b->snaps[i] = b->snaps[--b->nsnaps];
	return true;
}

static int64_t f_snapshot_bytes(be_inst *b, int id)
{
	return snap_index(b, id) >= 0 ? 4096 : -1;
}

static uint64_t f_memory_usage(be_inst *b)
{
	(void)b;
	return 0;
}

const backend_ops linux_backend = {
    .name = "fake",
    .create = f_create,
    .adopt_limits = f_adopt_limits,
    .run = f_run,
    .interrupt = f_interrupt,
    .kill = f_kill,
    .drain = f_drain,
    .stats = f_stats,
    .memory_cap_hit = f_memory_cap_hit,
    .compromised = f_compromised,
    .workspace = f_workspace,
    .close = f_close,
    .close_now = f_close_now,
    .owns_pid = f_owns_pid,
    .limits_fit = f_limits_fit,
    .can_create = f_can_create,
    .creates_pending = f_creates_pending,
    .snapshot = f_snapshot,
    .restore = f_restore,
    .inspect = f_inspect,
    .discard = f_discard,
    .snapshot_bytes = f_snapshot_bytes,
    .memory_usage = f_memory_usage,
};

/* --------------------------------------------------------------- events */

static void free_event(fake_event *e)
{
	free(e->text);
	json_decref(e->frame);
	free(e);
}

static void drop_events_of(be_inst *b)
{
	fake_event *keep = NULL, **tail = &keep;
	for (fake_event *e = q_head, *n; e; e = n) {
		n = e->next;
		if (e->b == b) {
			free_event(e);
			continue;
		}
		e->next = NULL;
		*tail = e;
		tail = &e->next;
	}
	q_head = keep;
	q_tail = tail;
}

static void deliver(fake_event *e)
{
	be_inst *b = e->b;
	if (b->released)
		return;
	if (e->kind == EV_RELEASED) {
		release(b);
		return;
	}
	if (b->closing)
		return; /* only its release is still heard of */
	if (e->kind == EV_RESTORED && b->phase == FAKE_STARTING) {
		b->phase = FAKE_IDLE;
		EV->restored(b->owner, e->code, NULL);
		return;
	}
	if (e->kind == EV_EXITED) {
		if (b->phase == FAKE_DEAD)
			return;
		b->phase = FAKE_DEAD;
		EV->exited(b->owner, e->code, e->status, b->kill_reason[0] ? b->kill_reason : NULL);
		return;
	}
	if (b->phase == FAKE_DEAD)
		return;
	switch (e->kind) {
	case EV_READY:
		if (b->phase == FAKE_STARTING) {
			b->phase = FAKE_IDLE;
			EV->ready(b->owner);
		}
		break;
	case EV_SETUP_FAILED:
		/* As the Linux backend does on a "fatal" frame: it kills the
		 * instance, then tells the engine. */
		if (!b->kill_reason[0])
			snprintf(b->kill_reason, sizeof(b->kill_reason), "%s", e->text);
		b->kills++;
		enqueue(b, EV_EXITED, 0, CLD_KILLED, SIGKILL, NULL, NULL);
		EV->setup_failed(b->owner, e->text);
		break;
	case EV_OUTPUT:
		if (b->phase == FAKE_RUNNING)
			EV->output(b->owner, e->stream, e->text, strlen(e->text));
		break;
	case EV_RESULT:
		if (b->phase == FAKE_RUNNING) {
			b->phase = FAKE_IDLE;
			EV->result(b->owner, e->frame);
		}
		break;
	case EV_SNAPSHOTTED:
		if (snap_index(b, e->code) >= 0)
			EV->snapshotted(b->owner, e->code, NULL, NULL);
		break;
	case EV_INSPECTED:
		if (snap_index(b, e->code) >= 0)
			EV->inspected(b->owner, e->code, e->frame, NULL);
		else
			EV->inspected(b->owner, e->code, NULL, "the copy is gone");
		break;
	default:
		break;
	}
}

int fake_backend_pump(void)
{
	int n = 0;
	while (q_head) {
		fake_event *e = q_head;
		q_head = e->next;
		if (!q_head)
			q_tail = &q_head;
		deliver(e);
		free_event(e);
		n++;
	}
	return n;
}
