/* run.c - runs: sending code to a sandbox's backend, streaming its output
 * to the call, deadlines, and the result, which is decided here from what
 * the daemon saw, not from what the sandbox said (a timeout, an OOM kill,
 * a death, a compromise), with the sandbox's own claims validated field by
 * field and capped. Every run is recorded before its result goes out. */
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "engine.h"
#include "utf8.h"

#define TIMEOUT_GRACE_S 2.0
#define NOTIFY_BACKLOG_MAX (8u << 20)

static void outbuf_reset(outbuf *b)
{
	b->len = 0;
	b->total = 0;
	b->truncated = false;
	b->ncarry = 0;
}

/* Keeps at most cap bytes of a run's stream; returns how many of these
 * len bytes were kept (the rest is counted as truncated). */
static size_t outbuf_add(outbuf *b, const char *data, size_t len, uint64_t cap)
{
	b->total += len;
	size_t room = b->len < cap ? (size_t)(cap - b->len) : 0;
	size_t keep = len < room ? len : room;
	if (keep < len)
		b->truncated = true;
	if (keep == 0)
		return 0;
	if (b->len + keep > b->cap) {
		size_t ncap = b->cap ? b->cap : 16384;
		while (ncap < b->len + keep)
			ncap *= 2;
		char *nb = realloc(b->data, ncap);
		if (!nb) {
			b->truncated = true;
			return 0;
		}
		b->data = nb;
		b->cap = ncap;
	}
	memcpy(b->data + b->len, data, keep);
	b->len += keep;
	return keep;
}

void outbuf_free(outbuf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

/* The string v cut to at most max bytes, on a character boundary (a cut
 * through a character would not be valid UTF-8, and jansson would refuse
 * to make the string at all). */
static json_t *str_capped(json_t *v, size_t max)
{
	const char *p = json_string_value(v);
	size_t len = json_string_length(v);
	if (len > max) {
		len = max;
		while (len > 0 && ((unsigned char)p[len] & 0xC0) == 0x80)
			len--;
	}
	return json_stringn_nocheck(p, len);
}

static json_t *str_or_null(json_t *v, size_t max)
{
	return json_is_string(v) ? str_capped(v, max) : json_null();
}

/* Bounds of error.frames (docs/executor-protocol.md): the executor's own
 * are tighter (200-character texts, about 64 KiB in all), so these only
 * ever cut what a forger sends. */
#define FRAMES_MAX 16
#define FRAME_LOCALS_MAX 50
#define FRAME_NAME_MAX 256
#define FRAME_REPR_MAX 1024

static bool is_count(json_t *v)
{
	return json_is_integer(v) && json_integer_value(v) >= 0;
}

/* One local {"type", "repr"}, or NULL if it is not of that shape. */
static json_t *sanitize_local(json_t *v)
{
	json_t *t = json_object_get(v, "type"), *rp = json_object_get(v, "repr");
	if (!json_is_object(v) || !json_is_string(t) || !json_is_string(rp))
		return NULL;
	return json_pack("{s:o, s:o}", "type", str_capped(t, FRAME_NAME_MAX), "repr",
			 str_capped(rp, FRAME_REPR_MAX));
}

/* One frame {"function", "file", "line", "locals", "locals_omitted"?},
 * rebuilt from the fields of the right types, or NULL if any is not. */
static json_t *sanitize_frame(json_t *f)
{
	json_t *fn = json_object_get(f, "function"), *file = json_object_get(f, "file"),
	       *line = json_object_get(f, "line"), *locals = json_object_get(f, "locals"),
	       *lo = json_object_get(f, "locals_omitted");
	if (!json_is_object(f) || !json_is_string(fn) || !json_is_string(file) ||
	    !json_is_integer(line) || !json_is_object(locals) ||
	    json_object_size(locals) > FRAME_LOCALS_MAX || (lo && !is_count(lo)))
		return NULL;
	json_t *out = json_pack("{s:o, s:o, s:O, s:{}}", "function", str_capped(fn, FRAME_NAME_MAX),
				"file", str_capped(file, FRAME_NAME_MAX), "line", line, "locals");
	json_t *outl = json_object_get(out, "locals");
	if (!outl || (lo && json_object_set(out, "locals_omitted", lo) < 0)) {
		json_decref(out);
		return NULL;
	}
	const char *k;
	json_t *v;
	json_object_foreach(locals, k, v)
	{
		json_t *l = strlen(k) <= FRAME_NAME_MAX ? sanitize_local(v) : NULL;
		if (!l || json_object_set_new(outl, k, l) < 0) {
			json_decref(out);
			return NULL;
		}
	}
	return out;
}

/* error.frames and error.frames_omitted of the executor's error e, copied
 * into out. The post-mortem frames are a claim like the rest of the error:
 * all of it is kept or, if anything in it is not of the documented shape,
 * none (frames: []). */
static void sanitize_frames(json_t *e, json_t *out)
{
	json_t *in = json_object_get(e, "frames"), *omitted = json_object_get(e, "frames_omitted");
	json_t *frames = json_array();
	size_t i;
	json_t *f;
	if (!frames || json_object_set_new(out, "frames", frames) < 0)
		return;
	if (!json_is_array(in) || json_array_size(in) > FRAMES_MAX ||
	    (omitted && !is_count(omitted)))
		return;
	json_array_foreach(in, i, f)
	{
		json_t *g = sanitize_frame(f);
		if (!g || json_array_append_new(frames, g) < 0) {
			json_array_clear(frames);
			return;
		}
	}
	if (omitted)
		json_object_set(out, "frames_omitted", omitted);
}

/* Copies the fields of an executor result that we accept, with their
 * types checked and their sizes capped; anything else is dropped. */
static json_t *sanitize_result(json_t *frame)
{
	json_t *r = json_object();
	const char *st = json_string_value(json_object_get(frame, "status"));
	bool ok = st && strcmp(st, "ok") == 0;
	json_object_set_new(r, "status", json_string(ok ? "ok" : "error"));
	json_t *ec = json_object_get(frame, "exit_code");
	json_int_t code = json_is_integer(ec) ? json_integer_value(ec) : (ok ? 0 : 1);
	if (code < 0 || code > 255)
		code = code < 0 ? 1 : code & 0xff;
	json_object_set_new(r, "exit_code", json_integer(code));
	json_t *e = json_object_get(frame, "error");
	if (json_is_object(e)) {
		json_t *err = json_pack("{s:o, s:o, s:o}", "name",
					str_or_null(json_object_get(e, "name"), 256), "value",
					str_or_null(json_object_get(e, "value"), 65536),
					"traceback",
					str_or_null(json_object_get(e, "traceback"), 1 << 20));
		if (err)
			sanitize_frames(e, err);
		json_object_set_new(r, "error", err);
	} else {
		json_object_set_new(r, "error", json_null());
	}
	json_object_set_new(r, "value", str_or_null(json_object_get(frame, "value"), 1 << 20));
	json_t *res = json_array(), *in = json_object_get(frame, "results");
	size_t i;
	json_t *item;
	if (json_is_array(in)) {
		json_array_foreach(in, i, item)
		{
			if (i >= 64 || !json_is_object(item))
				break;
			json_t *o = json_object();
			const char *k;
			json_t *v;
			json_object_foreach(item, k, v)
			{
				if (json_is_string(v) && strlen(k) < 64 &&
				    json_string_length(v) <= (16u << 20))
					json_object_set(o, k, v);
			}
			json_array_append_new(res, o);
		}
	}
	json_object_set_new(r, "results", res);
	return r;
}

/* Starts one attempt of a call that started at call_start. The timeout is
 * the whole call's (docs/protocol.md): the timer gets what is left of it,
 * and at least a moment, so that an attempt that starts late is
 * interrupted at once rather than never. k is owned by the run from now. */
static void run_start(sandbox *sb, call *k, const char *code, double timeout, uint64_t call_start,
		      int attempt, const char *reason)
{
	sb->state = SB_RUNNING;
	sb->step++;
	outbuf_reset(&sb->o);
	outbuf_reset(&sb->e);
	snprintf(sb->run_reason, sizeof(sb->run_reason), "%s", reason);
	sb->run_internal = k == NULL;
	sb->run_interrupted = false;
	sb->run_attempt = attempt;
	sb->run_call = k;
	sb->timeout_phase = 0;
	sb->prof->ops->stats(sb->be, &sb->stats0);
	sb->run_start_ns = now_ns();
	sb->call_start_ns =
	    call_start && call_start <= sb->run_start_ns ? call_start : sb->run_start_ns;
	sb->run_timeout = timeout;
	free(sb->run_code);
	sb->run_code = strdup(code);
	if (!sb->run_code) {
		/* The audit record must hold the code that ran: without a copy,
		 * do not run it. The sandbox is killed, and the run is answered
		 * as killed with this reason (docs/design/conventions.md). */
		sandbox_kill(sb, "out of memory: the daemon could not keep a copy of the "
				 "code for the audit log, so it was not run");
		return;
	}
	unsigned char rnd[16];
	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
		memset(rnd, 0, sizeof(rnd));
	for (int i = 0; i < 16; i++)
		snprintf(sb->run_nonce + 2 * i, 3, "%02x", rnd[i]);
	double left = timeout - (double)(sb->run_start_ns - sb->call_start_ns) / 1e9;
	timer_arm(&sb->timer, left > 0.001 ? left : 0.001);
	/* The state this step starts in, if no copy of it was asked for yet
	 * (docs/time-travel.md); the executor makes it before it runs. */
	if (k)
		history_before_run(sb);
	sb->prof->ops->run(sb->be, sb->step, sb->run_nonce, code,
			   ab_frame_max_for_output(sb->limits.output_bytes));
}

void sandbox_run(sandbox *sb, call *k, const char *code, double timeout, const char *reason)
{
	run_start(sb, k, code, timeout, 0, 1, reason);
}

void sandbox_run_pending(sandbox *sb, const pending_run *p)
{
	run_start(sb, p->k, p->code, p->timeout, p->call_start_ns, p->attempt, p->reason);
}

const char *sandbox_interrupt(sandbox *sb)
{
	if (sb->state == SB_RUNNING && sb->run_call) {
		/* Like the first phase of a timeout: the cell gets a
		 * KeyboardInterrupt, which ends the run and keeps the session.
		 * The run's timer still bounds a cell that catches it. */
		if (!sb->run_interrupted && sb->timeout_phase == 0 && sb->be) {
			sb->run_interrupted = true;
			sb->prof->ops->interrupt(sb->be);
		}
		return "run";
	}
	return promote_stop(sb, false);
}

/* The audit record of a run: the full code and its digest, how it ended,
 * and digests of the output the client received. outcome_claimed: status,
 * exit_code and error_name come from the executor's own result, not from
 * what the daemon saw (a timeout, a death, a compromise). */
static void record_run(sandbox *sb, client *c, json_t *r, const be_stats *st,
		       const char *compromised, bool outcome_claimed)
{
	/* No copy of the code means it was never sent to the sandbox
	 * (sandbox_run): record that, never an empty code that did not run. */
	const char *code = sb->run_code ? sb->run_code : "";
	char code_h[65], out_h[65], err_h[65];
	ab_sha256_hex(code, strlen(code), code_h);
	ab_sha256_hex(sb->o.data, sb->o.len, out_h);
	ab_sha256_hex(sb->e.data, sb->e.len, err_h);
	json_t *err = json_object_get(r, "error");
	json_t *body = json_pack(
	    "{s:s, s:s, s:s, s:s, s:O, s:O, s:O, s:O, s:{s:I, s:I, s:s, s:b}, "
	    "s:{s:I, s:I, s:s, s:b}, s:O, s:O, s:I}",
	    "code", code, "code_sha256", code_h, "tier", tier_name(sb->tier), "route_reason",
	    sb->run_reason, "status", json_object_get(r, "status"), "exit_code",
	    json_object_get(r, "exit_code"), "error_name",
	    json_is_object(err) ? json_object_get(err, "name") : json_null(), "limit",
	    json_object_get(r, "limit"), "stdout", "bytes", (json_int_t)sb->o.total, "kept",
	    (json_int_t)sb->o.len, "sha256", out_h, "truncated", sb->o.truncated, "stderr", "bytes",
	    (json_int_t)sb->e.total, "kept", (json_int_t)sb->e.len, "sha256", err_h, "truncated",
	    sb->e.truncated, "duration_ms", json_object_get(r, "duration_ms"), "cpu_ms",
	    json_object_get(r, "cpu_ms"), "memory_peak_bytes", (json_int_t)st->memory_peak);
	if (sb->run_promotion)
		json_object_set(body, "promotion", sb->run_promotion);
	if (!sb->run_code) {
		json_object_set_new(body, "code", json_null());
		json_object_set_new(body, "code_sha256", json_null());
		json_object_set_new(
		    body, "code_unavailable",
		    json_string("out of memory: the code was not kept and not run"));
	}
	/* Which of these fields the sandboxed process could have chosen: see
	 * "Claims and measurements" in docs/threat-model.md. */
	json_t *claimed = outcome_claimed ? json_pack("[s, s, s, s, s]", "status", "exit_code",
						      "error_name", "stdout", "stderr")
					  : json_pack("[s, s]", "stdout", "stderr");
	json_object_set_new(body, "sandbox_claims", claimed);
	if (compromised)
		json_object_set_new(body, "compromise", json_string(compromised));
	client_learns(c, audit_event("run", sb->id, sb->step, c ? c->actor : "daemon", body));
	const char *limit = json_string_value(json_object_get(r, "limit"));
	if (limit)
		client_learns(c, audit_event("limit", sb->id, sb->step, "daemon",
					     json_pack("{s:s, s:O}", "limit", limit, "status",
						       json_object_get(r, "status"))));
	if (sb->o.truncated || sb->e.truncated)
		client_learns(c,
			      audit_event("limit", sb->id, sb->step, "daemon",
					  json_pack("{s:s, s:I}", "limit", "output", "output_bytes",
						    (json_int_t)sb->limits.output_bytes)));
}

/* A pool refill put off while this sandbox's run competed for the CPU
 * (a stateless run, a promotion's replay and run). */
static void refill_if_deferred(sandbox *sb)
{
	if (sb->refill_after) {
		sb->refill_after = false;
		pool_refill(sb->tier);
	}
}

/* A result the client cannot read in one message (CONN_MESSAGE_MAX, less
 * room for the envelope and the request id) becomes an error result of
 * this run alone: output of control characters, which JSON escapes to six
 * bytes each, or a value or traceback too large. The audit record keeps
 * the digests of the real output. */
static void fit_result(sandbox *sb, json_t *r)
{
	size_t len = json_dumpb(r, NULL, 0, JSON_COMPACT);
	if (len <= CONN_MESSAGE_MAX - 4096)
		return; /* 0: it cannot be serialised at all, not a size problem */
	char msg[300];
	snprintf(msg, sizeof(msg),
		 "the result of this run is %zu bytes as JSON, more than the %u MiB one message "
		 "may carry; its output (%llu and %llu bytes) and value were dropped. Write "
		 "large output to a file in the workspace",
		 len, CONN_MESSAGE_MAX >> 20, (unsigned long long)sb->o.len,
		 (unsigned long long)sb->e.len);
	json_object_set_new(r, "status", json_string("error"));
	json_object_set_new(r, "exit_code", json_integer(1));
	json_object_set_new(
	    r, "error",
	    json_pack("{s:s, s:s, s:s}", "name", "ResultTooLarge", "value", msg, "traceback", ""));
	json_object_set_new(r, "limit", json_string("output"));
	json_object_set_new(r, "value", json_null());
	json_object_set_new(r, "results", json_array());
	json_object_set_new(r, "stdout", json_string(""));
	json_object_set_new(r, "stderr", json_string(""));
	json_object_set_new(
	    r, "truncated",
	    json_pack("{s:b, s:b}", "stdout", sb->o.len > 0, "stderr", sb->e.len > 0));
}

/* A timed-out cell whose KeyboardInterrupt came back (the first phase of a
 * timeout) reported where it was when its time ran out: the error the
 * daemon puts in its place keeps those frames (already sanitized). */
static void keep_frames(json_t *from, json_t *to)
{
	json_t *frames = json_object_get(from, "frames");
	if (!json_is_object(to))
		return;
	json_object_set_new(to, "frames", json_is_array(frames) ? json_incref(frames) : json_array());
	json_t *omitted = json_object_get(from, "frames_omitted");
	if (omitted)
		json_object_set(to, "frames_omitted", omitted);
}

/* Completes the run in progress. frame is the executor's result, or NULL
 * if the sandbox died or timed out before sending one. */
void finish_run(sandbox *sb, json_t *frame)
{
	if (!sb->run_call && !sb->run_internal)
		return;
	timer_disarm(&sb->timer);
	const char *compromised = NULL;
	be_stats st = {0};
	if (sb->be) {
		sb->prof->ops->drain(sb->be);
		sb->prof->ops->stats(sb->be, &st);
		compromised = sb->prof->ops->compromised(sb->be);
	}
	json_t *r = frame ? sanitize_result(frame) : json_object();
	bool oom = st.oom_kills > sb->stats0.oom_kills;
	bool pids_hit = st.pids_max_hits > sb->stats0.pids_max_hits;
	bool promoted = sb->run_promotion != NULL;
	const char *limit = NULL;
	bool outcome_claimed = false;
	if (compromised) {
		/* Nothing the sandbox sent is believed: not even a result
		 * that arrived before the compromise was seen. */
		json_object_set_new(r, "status", json_string("compromised"));
		json_object_set_new(r, "exit_code", json_integer(137));
		char msg[400];
		snprintf(msg, sizeof(msg), "the session was killed: %s", compromised);
		json_object_set_new(r, "error",
				    json_pack("{s:s, s:s, s:s}", "name", "Compromised", "value",
					      msg, "traceback", ""));
		json_object_set_new(r, "value", json_null());
		json_object_set_new(r, "results", json_array());
	} else if (sb->timeout_phase > 0) {
		json_object_set_new(r, "status", json_string("timeout"));
		json_object_set_new(r, "exit_code", json_integer(124));
		char msg[200];
		snprintf(msg, sizeof(msg), "the run exceeded its time limit of %g s%s%s",
			 sb->run_timeout, promoted ? " (in heavy, after its promotion)" : "",
			 sb->timeout_phase > 1 ? "; the sandbox was killed" : "");
		json_t *terr =
		    json_pack("{s:s, s:s, s:s}", "name", "Timeout", "value", msg, "traceback", "");
		keep_frames(json_object_get(r, "error"), terr);
		json_object_set_new(r, "error", terr);
		json_object_set_new(r, "phase", json_string(promoted ? "promoted_run" : "run"));
		limit = "timeout";
	} else if (!frame) {
		json_object_set_new(r, "status", json_string("killed"));
		json_object_set_new(r, "exit_code", json_integer(137));
		limit = oom ? "memory" : NULL;
		json_object_set_new(r, "error",
				    json_pack("{s:s, s:s, s:s}", "name",
					      oom ? "MemoryLimit" : "SandboxDied", "value",
					      sb->dead_reason, "traceback", ""));
	} else {
		outcome_claimed = true;
		if (oom)
			limit = "memory"; /* a child was OOM-killed; the executor survived */
	}
	if (!frame) {
		json_object_set_new(r, "value", json_null());
		json_object_set_new(r, "results", json_array());
	}
	if (!limit && pids_hit)
		limit = "pids";
	/* Measured after every nano run that ended with a result, so that the
	 * next run starts from this one's peak. */
	if (frame && sb->be && sb->prof->ops->memory_cap_hit(sb->be, sb->limits.memory_mb) &&
	    !limit)
		limit = "memory";
	json_object_set_new(r, "limit", limit ? json_string(limit) : json_null());
	size_t nc = 0;
	char carry[4];
	json_object_set_new(r, "stdout", ab__utf8_chunk(sb->o.data, sb->o.len, carry, &nc, true));
	nc = 0;
	json_object_set_new(r, "stderr", ab__utf8_chunk(sb->e.data, sb->e.len, carry, &nc, true));
	json_object_set_new(
	    r, "truncated",
	    json_pack("{s:b, s:b}", "stdout", sb->o.truncated, "stderr", sb->e.truncated));
	json_object_set_new(r, "sandbox", json_string(sb->id));
	json_object_set_new(r, "step", json_integer(sb->step));
	json_object_set_new(r, "tier", json_string(tier_name(sb->tier)));
	json_object_set_new(r, "route_reason", json_string(sb->run_reason));
	json_object_set_new(r, "promoted", json_boolean(promoted));
	json_object_set_new(r, "interrupted", json_boolean(sb->run_interrupted));
	json_object_set_new(r, "attempt", json_integer(sb->run_attempt));
	if (sb->run_promotion)
		json_object_set_new(r, "promotion", sb->run_promotion);
	sb->run_promotion = NULL;
	json_object_set_new(r, "duration_ms",
			    json_real((double)(now_ns() - sb->call_start_ns) / 1e6));
	json_object_set_new(r, "cpu_ms", json_real((double)(st.cpu_us - sb->stats0.cpu_us) / 1e3));
	json_object_set_new(r, "memory_peak_bytes", json_integer((json_int_t)st.memory_peak));
	json_object_set_new(r, "degraded", degraded_list());
	fit_result(sb, r);
	call *k = sb->run_call;
	bool internal = sb->run_internal;
	sb->run_call = NULL;
	sb->run_internal = false;
	if (sb->state == SB_RUNNING)
		sb->state = SB_READY;
	if (!internal) {
		if (sb->create_unrecorded)
			sandbox_record_create(sb, k->who);
		record_run(sb, k->who, r, &st, compromised, outcome_claimed);
	}
	/* tier "auto": a nano run that failed because of the tier is rerun
	 * in heavy, and a replayed step leads to the next one. */
	if (promote_on_result(sb, k, r))
		return;
	if (!internal)
		history_after_run(sb, sb->run_code, r, sb->run_start_ns);
	call_done(k, r);
	refill_if_deferred(sb);
	if (sb->oneshot && sb->state == SB_READY) {
		if (!sb->dead_reason[0])
			snprintf(sb->dead_reason, sizeof(sb->dead_reason), "its one run is over");
		sandbox_close(sb);
	} else {
		sandbox_touch(sb);
	}
}

/* Output of the run in progress, kept up to the run's cap and streamed to
 * its call. Output between runs (a background child) and of replayed steps
 * is dropped. */
void run_output(sandbox *sb, int stream, const char *data, size_t len)
{
	if (sb->state != SB_RUNNING || !sb->run_call)
		return;
	outbuf *b = stream == 0 ? &sb->o : &sb->e;
	size_t kept = outbuf_add(b, data, len, sb->limits.output_bytes);
	call *k = sb->run_call;
	if (kept == 0 || k->ops->backlog(k) > NOTIFY_BACKLOG_MAX)
		return;
	json_t *s = ab__utf8_chunk(data, kept, b->carry, &b->ncarry, false);
	if (!s || json_string_length(s) == 0) {
		json_decref(s);
		return;
	}
	k->ops->output(k, sb->id, stream == 0 ? "stdout" : "stderr", s, sb->run_attempt);
}

/* The run's deadline passed: first ask nicely (a KeyboardInterrupt keeps
 * the session alive), then kill. */
void run_on_timer(sandbox *sb)
{
	if (sb->timeout_phase == 0) {
		sb->timeout_phase = 1;
		if (sb->be)
			sb->prof->ops->interrupt(sb->be);
		timer_arm(&sb->timer, TIMEOUT_GRACE_S);
	} else {
		sb->timeout_phase = 2;
		char msg[160];
		snprintf(msg, sizeof(msg), "killed after exceeding its time limit of %g s",
			 sb->run_timeout);
		sandbox_kill(sb, msg);
	}
}
