/* record.c - the daemon's use of the audit log (docs/audit.md), and the
 * outbox.
 *
 * Any part of the daemon records an action with audit_event(), which only
 * queues it and hands back its ticket (a number that grows with every
 * event). A writer thread owns the log: it appends what is queued and
 * commits it with one fsync for the whole batch (group commit), then
 * tells the loop (an eventfd) which ticket is durable. The loop never
 * waits for a disk.
 *
 * Every message for a client goes through outbox_send() with the ticket
 * it depends on: the client's own latest event (the front end and the
 * engine keep it on the client). In the default mode (durable) a message
 * is held until that ticket is durable, and after any message of the same
 * client still held, so no client learns of an action before its record
 * is on disk, and a client whose request recorded nothing (or whose
 * events are already durable) is not held behind another client's fsync.
 * In group mode (--audit-group-ms N, the operator's choice) messages go
 * out at once and the writer commits at most N ms after an event: fewer
 * fsyncs under load, and a crash can lose the last N ms of events.
 *
 * If the log cannot be written, held messages are delivered as failures
 * (the front end turns a success into an error), and the daemon refuses
 * further actions: it fails closed. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "loop.h"
#include "record.h"
#include "record/redact.h"

typedef struct queued {
	char *kind, *session, *actor;
	int64_t step;
	json_t *body;
	struct queued *next;
} queued;

typedef struct held {
	sink *s;
	json_t *msg;
	uint64_t need;
	struct held *next;
} held;

static ab_audit *log_;
static bool disabled = true;
static char db_path[4200];
static enum record_mode mode_;
static unsigned group_ms_;
static char mode_name[64] = "durable";

/* Shared with the writer thread, under mu. */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work = PTHREAD_COND_INITIALIZER; /* events queued, or stop */
static pthread_cond_t done = PTHREAD_COND_INITIALIZER; /* a batch committed */
static queued *q_head, **q_tail = &q_head;
static uint64_t durable; /* every ticket up to this one is on disk */
static char broken[600]; /* why the log cannot be written, or "" */
static bool stopping;
static pthread_t writer;
static bool writer_running;
static int efd = -1;
static loop_watch efd_w;

/* The loop's own. */
static uint64_t last_ticket;
static held *held_head, **held_tail = &held_head;
static uint64_t loop_durable; /* durable, as of the last release */

bool audit_enabled(void)
{
	return !disabled;
}

const char *audit_mode_name(void)
{
	return disabled ? "disabled" : mode_name;
}

static const char *broken_now(void)
{
	pthread_mutex_lock(&mu);
	bool b = broken[0] != '\0';
	pthread_mutex_unlock(&mu);
	return b ? broken : NULL; /* written once, before the flag is seen */
}

const char *audit_broken(void)
{
	return disabled ? NULL : broken_now();
}

/* Called with mu held. */
static void fail_closed_locked(const char *why)
{
	if (broken[0])
		return;
	snprintf(broken, sizeof(broken), "%s", why);
	log_msg("audit log unavailable, failing closed: %s", why);
}

static void free_queued(queued *e)
{
	free(e->kind);
	free(e->session);
	free(e->actor);
	json_decref(e->body);
	free(e);
}

/* ---------------------------------------------------------------- writer */

static void *writer_main(void *arg)
{
	(void)arg;
	pthread_mutex_lock(&mu);
	for (;;) {
		while (!q_head && !stopping)
			pthread_cond_wait(&work, &mu);
		if (!q_head && stopping)
			break;
		if (mode_ == RECORD_GROUP && !stopping) {
			/* Let the window fill: one commit for everything in it. */
			struct timespec until;
			clock_gettime(CLOCK_REALTIME, &until);
			until.tv_nsec += (long)group_ms_ * 1000000L;
			until.tv_sec += until.tv_nsec / 1000000000L;
			until.tv_nsec %= 1000000000L;
			while (!stopping && pthread_cond_timedwait(&work, &mu, &until) == 0)
				;
		}
		queued *batch = q_head;
		q_head = NULL;
		q_tail = &q_head;
		bool ok = broken[0] == '\0';
		pthread_mutex_unlock(&mu);

		uint64_t n = 0;
		char why[600] = "";
		ab_error err = {0};
		for (queued *e = batch, *next; e; e = next) {
			next = e->next;
			n++;
			if (ok) {
				ab_audit_event ev = {.kind = e->kind,
						     .session = e->session,
						     .step = e->step,
						     .actor = e->actor,
						     .body = e->body};
				if (ab_audit_append(log_, &ev, &err) < 0) {
					ok = false;
					snprintf(why, sizeof(why), "%s", err.msg);
				}
			}
			free_queued(e);
		}
		if (ok && ab_audit_commit(log_, &err) < 0) {
			ok = false;
			snprintf(why, sizeof(why), "%s", err.msg);
		}

		pthread_mutex_lock(&mu);
		if (ok)
			durable += n;
		else
			fail_closed_locked(why);
		pthread_cond_broadcast(&done);
		uint64_t one = 1;
		if (write(efd, &one, sizeof(one)) < 0) {
			/* the counter cannot overflow here: the loop reads it */
		}
	}
	pthread_mutex_unlock(&mu);
	return NULL;
}

/* ------------------------------------------------------------------ loop */

static void release(void);

static void on_committed(void *ctx, uint32_t events)
{
	(void)ctx;
	(void)events;
	uint64_t v;
	if (read(efd, &v, sizeof(v)) < 0) {
		/* EAGAIN: nothing new */
	}
	release();
}

int audit_init(const char *home, const char *checkpoints, bool off, enum record_mode mode,
	       unsigned group_ms, ab_error *err)
{
	disabled = off;
	mode_ = mode;
	group_ms_ = group_ms;
	if (mode == RECORD_GROUP)
		snprintf(mode_name, sizeof(mode_name), "group %u ms", group_ms);
	if (off)
		return 0;
	char key[4200];
	snprintf(db_path, sizeof(db_path), "%s/audit.db", home);
	snprintf(key, sizeof(key), "%s/audit-key.pem", home);
	ab_audit_opts o = {.db_path = db_path,
			   .key_path = key,
			   .checkpoints_path = checkpoints,
			   .sync_mode = mode_name};
	/* The redactor first: no event may be written unscanned. */
	int r = redact_init(home, err);
	if (r < 0)
		return r;
	r = ab_audit_open(&o, &log_, err);
	if (r < 0)
		return r;
	ab_audit_set_redactor(log_, redact_event, NULL);
	efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (efd < 0)
		return ab_error_errno(err, -errno, "eventfd");
	if ((r = loop_add(&efd_w, efd, EPOLLIN, on_committed, NULL)) < 0)
		return ab_error_errno(err, r, "watch the audit writer");
	if ((r = pthread_create(&writer, NULL, writer_main, NULL)) != 0)
		return ab_error_errno(err, -r, "start the audit writer thread");
	writer_running = true;
	return 0;
}

uint64_t audit_event(const char *kind, const char *session, int64_t step, const char *actor,
		     json_t *body)
{
	if (disabled || !log_ || broken_now()) {
		json_decref(body);
		return 0;
	}
	queued *e = calloc(1, sizeof(*e));
	if (e) {
		e->kind = strdup(kind);
		e->session = session ? strdup(session) : NULL;
		e->actor = strdup(actor ? actor : "daemon");
		e->step = step;
	}
	if (body) {
		/* The writer thread gets a copy of its own: the body may share
		 * values with what the loop thread still holds (a run's result),
		 * and nothing of it may be touched by two threads. */
		json_t *mine = json_deep_copy(body);
		json_decref(body);
		body = mine;
	}
	if (!body)
		/* Every caller passes a body: NULL means building it failed (out
		 * of memory). Record the action as incomplete rather than with
		 * an empty body that would read as "nothing to say". */
		body = json_pack("{s:b}", "record_incomplete", 1);
	if (!e || !e->kind || !e->actor || (session && !e->session) || !body) {
		/* If even that cannot be formed: fail closed
		 * (docs/design/conventions.md). */
		if (e) {
			e->body = body;
			free_queued(e);
		} else {
			json_decref(body);
		}
		pthread_mutex_lock(&mu);
		char why[200];
		snprintf(why, sizeof(why),
			 "out of memory: the record of a %s event could not be formed", kind);
		fail_closed_locked(why);
		pthread_mutex_unlock(&mu);
		return ++last_ticket; /* never durable: what depends on it fails */
	}
	e->body = body; /* the writer owns it from now on */
	pthread_mutex_lock(&mu);
	*q_tail = e;
	q_tail = &e->next;
	pthread_mutex_unlock(&mu);
	/* The writer is woken at the end of the loop iteration (audit_flush),
	 * so that the events of one iteration share one commit. */
	return ++last_ticket;
}

uint64_t audit_last_ticket(void)
{
	return last_ticket;
}

/* A message that waited for events that could then not be recorded is
 * delivered as a failure. One sent while the log was already broken was
 * not held: its request was refused or allowed (close) by the dispatcher. */
static void deliver(sink *s, json_t *msg, bool waited)
{
	const char *b = waited ? broken_now() : NULL;
	s->deliver(s, msg, b);
}

/* Sends what may go now: in order per sink, each once its ticket is
 * durable (or at once, as a failure, if the log broke). */
static void release(void)
{
	pthread_mutex_lock(&mu);
	loop_durable = durable;
	bool failed = broken[0] != '\0';
	pthread_mutex_unlock(&mu);
	for (held *h = held_head; h; h = h->next)
		h->s->scan_blocked = false;
	held **pp = &held_head;
	held_tail = &held_head;
	while (*pp) {
		held *h = *pp;
		if (!h->s->scan_blocked && (failed || h->need <= loop_durable)) {
			*pp = h->next;
			h->s->held--;
			deliver(h->s, h->msg, true);
			h->s->release(h->s);
			free(h);
			continue;
		}
		h->s->scan_blocked = true;
		held_tail = &h->next;
		pp = &h->next;
	}
}

/* Blocks until every ticket up to need is durable or the log broke. */
static void wait_durable(uint64_t need)
{
	pthread_mutex_lock(&mu);
	pthread_cond_signal(&work);
	while (durable < need && !broken[0] && writer_running)
		pthread_cond_wait(&done, &mu);
	pthread_mutex_unlock(&mu);
}

void outbox_send(sink *s, json_t *msg, uint64_t need)
{
	if (!disabled && log_ && broken_now()) {
		/* Failing closed: what was held goes out as failures first;
		 * this message answers a request the dispatcher let through
		 * (daemon.info, sandbox.close) or refused. */
		release();
		deliver(s, msg, false);
		return;
	}
	if (disabled || !log_ || mode_ == RECORD_GROUP ||
	    (s->held == 0 && (need <= loop_durable || need == 0))) {
		deliver(s, msg, false);
		return;
	}
	held *h = malloc(sizeof(*h));
	if (!h) {
		/* Out of memory (docs/design/conventions.md): dropping the
		 * message would leave the client waiting for a reply that never
		 * comes. Wait for what it depends on, send what was held before
		 * it, then send it, in order. */
		wait_durable(need);
		release();
		while (s->held > 0) {
			wait_durable(last_ticket);
			release();
		}
		deliver(s, msg, true);
		return;
	}
	s->hold(s);
	s->held++;
	h->s = s;
	h->msg = msg;
	h->need = need;
	h->next = NULL;
	*held_tail = h;
	held_tail = &h->next;
}

void audit_flush(void)
{
	if (disabled || !log_)
		return;
	pthread_mutex_lock(&mu);
	if (q_head)
		pthread_cond_signal(&work);
	pthread_mutex_unlock(&mu);
	if (held_head)
		release();
}

void audit_sync(void)
{
	if (disabled || !log_)
		return;
	wait_durable(last_ticket);
	release();
}

static int collect(json_t *event, void *ctx)
{
	json_array_append((json_t *)ctx, event);
	return 0;
}

int audit_session_events(const char *session, json_t **out, ab_error *err)
{
	if (disabled || !log_)
		return ab_error_set(err, -ENOTSUP, "the audit log is disabled (--no-audit)");
	/* What was recorded so far must be in the answer: a rare request,
	 * worth one wait for the disk. */
	wait_durable(last_ticket);
	const char *b = broken_now();
	if (b)
		return ab_error_set(err, -EIO, "audit log unavailable: %s", b);
	json_t *a = json_array();
	ab_audit_filter f = {.session = session};
	int r = ab_audit_query(db_path, &f, collect, a, err);
	if (r < 0) {
		json_decref(a);
		return r;
	}
	*out = a;
	return 0;
}

void audit_shutdown(void)
{
	if (disabled || !log_)
		return;
	pthread_mutex_lock(&mu);
	stopping = true;
	pthread_cond_signal(&work);
	pthread_mutex_unlock(&mu);
	if (writer_running)
		pthread_join(writer, NULL);
	writer_running = false;
	release();
	loop_del(&efd_w);
	close(efd);
	ab_audit_close(log_);
	log_ = NULL;
}
