/* sandbox.c - sessions: creation through the zygote, the pool, runs with
 * streamed output and timeouts, death and teardown.
 *
 * Nothing that comes from a sandbox is trusted: control frames are
 * size-capped and validated field by field, output is capped per run, and
 * the status of a run that ended by a limit (timeout, OOM) is decided here
 * from what the daemon saw, not from what the sandbox said. */
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "daemon.h"
#include "jail.h"

#define STARTUP_TIMEOUT_S 60.0
#define TIMEOUT_GRACE_S 2.0
#define NOTIFY_BACKLOG_MAX (8u << 20)
#define UID_SLOTS 65536

static unsigned char uid_used[UID_SLOTS / 8];
static sandbox *graveyard;

static void on_ctl(void *ctx, uint32_t events);
static void on_out(void *ctx, uint32_t events);
static void on_exit_cb(void *ctx, uint32_t events);
static void on_timer(void *ctx);
static void handle_frame(sandbox *sb, json_t *f);
static void kill_sandbox(sandbox *sb, const char *why);
static void sandbox_finalize(sandbox *sb);
static void pool_fill(enum tier tier);

json_t *degraded_list(void)
{
	json_t *a = json_array();
	for (int i = 0; i < AB_LAYER__COUNT; i++)
		if (D.degraded & (1u << i))
			json_array_append_new(a, json_string(ab_layer_name((enum ab_layer)i)));
	return a;
}

/* The session's routing, as create and describe report it; each run has
 * its own (run_reason). */
static const char *route_reason(const sandbox *sb)
{
	if (sb->promoted[0])
		return sb->promoted;
	if (sb->tier_auto)
		return sb->tier == TIER_NANO ? "auto: starts in nano; each run is routed"
					     : "auto: the nano tier is disabled on this daemon";
	return sb->tier == TIER_NANO ? "tier \"nano\" was requested"
				     : "tier \"heavy\" was requested";
}

/* Ids of sessions closed by the daemon (idle, one-shot, death), so that a
 * client asking for one learns why it is gone. */
#define CLOSED_RING 64
static struct {
	char id[32];
	const conn *owner;
	char why[200];
} closed_ring[CLOSED_RING];
static unsigned closed_next;

static void remember_closed(const sandbox *sb, const char *why)
{
	unsigned i = closed_next++ % CLOSED_RING;
	snprintf(closed_ring[i].id, sizeof(closed_ring[i].id), "%s", sb->id);
	closed_ring[i].owner = sb->owner;
	snprintf(closed_ring[i].why, sizeof(closed_ring[i].why), "%s", why);
}

const char *sandbox_closed_reason(const char *id, conn *owner)
{
	for (unsigned i = 0; i < CLOSED_RING; i++)
		if (closed_ring[i].owner == owner && strcmp(closed_ring[i].id, id) == 0)
			return closed_ring[i].why;
	return NULL;
}

void sandbox_touch(sandbox *sb)
{
	if (sb->owner && !sb->pooled && !sb->hidden && !sb->closing && !sb->promote_to &&
	    sb->state == SB_READY && sb->idle_timeout > 0)
		timer_arm(&sb->timer, sb->idle_timeout);
}

json_t *sandbox_describe(sandbox *sb)
{
	return json_pack("{s:s, s:s, s:s, s:o, s:o, s:b}", "sandbox", sb->id, "tier",
			 tier_name(sb->tier), "route_reason", route_reason(sb), "limits",
			 ab_limits_to_json(&sb->limits), "degraded", degraded_list(), "pooled",
			 sb->from_pool);
}

sandbox *sandbox_find(const char *id, conn *owner)
{
	for (sandbox *s = D.sandboxes; s; s = s->next)
		if (!s->pooled && !s->closing && !s->hidden && s->owner == owner &&
		    strcmp(s->id, id) == 0)
			return s;
	return NULL;
}

static int alloc_uid_slot(void)
{
	for (int i = 0; i < UID_SLOTS; i++) {
		if (!(uid_used[i / 8] & (1u << (i % 8)))) {
			uid_used[i / 8] |= (unsigned char)(1u << (i % 8));
			return i;
		}
	}
	return -1;
}

static void free_uid_slot(int i)
{
	if (i >= 0)
		uid_used[i / 8] &= (unsigned char)~(1u << (i % 8));
}

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

/* ------------------------------------------------------------- creation */

static void reply_create_error(sandbox *sb, int code, const char *msg)
{
	if (sb->create_conn) {
		conn_error_in(sb->create_conn, sb->id, sb->create_id, code, msg, NULL);
		json_decref(sb->create_id);
		conn_put(sb->create_conn);
		sb->create_conn = NULL;
		sb->create_id = NULL;
	}
}

static void on_spawned(void *ctx, pid_t pid, int pidfd, const char *error)
{
	sandbox *sb = ctx;
	sb->spawn_pending = false;
	if (sb->closing) {
		/* Closed while the zygote was busy: finish the job. */
		if (pidfd >= 0) {
			sb->pid = pid;
			sb->pidfd = pidfd;
			loop_add(&sb->pid_w, pidfd, EPOLLIN, on_exit_cb, sb);
			syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
			if (D.shutting_down)
				sandbox_finalize(sb);
		} else {
			sandbox_finalize(sb);
		}
		return;
	}
	if (pid < 0) {
		char msg[600];
		snprintf(msg, sizeof(msg), "could not create the sandbox: %s", error);
		log_msg("%s: %s", sb->id, msg);
		reply_create_error(sb, RPC_ISOLATION, msg);
		snprintf(sb->dead_reason, sizeof(sb->dead_reason), "%.200s", msg);
		pending_failed(sb, msg);
		sandbox_close(sb);
		return;
	}
	sb->pid = pid;
	sb->pidfd = pidfd;
	sb->state = SB_STARTING;
	loop_add(&sb->pid_w, pidfd, EPOLLIN, on_exit_cb, sb);
	if (sb->compromised[0]) {
		/* Found out before the zygote answered: kill it now. */
		kill_sandbox(sb, sb->compromised);
		return;
	}
	timer_arm(&sb->timer, STARTUP_TIMEOUT_S);
	if (sb->early) {
		/* The executor was faster than the zygote's answer. */
		json_t *f = sb->early;
		sb->early = NULL;
		handle_frame(sb, f);
		json_decref(f);
	}
}

int sandbox_create(conn *owner, enum tier tier, const ab_limits *lim, json_t *create_id,
		   sandbox **out, ab_error *err)
{
	if (!zygote_alive(tier) && zygote_pid(tier) <= 0)
		return ab_error_set(err, -ESRCH, "the %s zygote is not running", tier_name(tier));
	sandbox *sb = calloc(1, sizeof(*sb));
	if (!sb)
		return ab_error_set(err, -ENOMEM, "out of memory");
	sb->limits = *lim;
	sb->tier = tier;
	sb->ctl = sb->out = sb->err = sb->pidfd = -1;
	sb->pid_w.fd = sb->ctl_w.fd = sb->out_w.fd = sb->err_w.fd = -1;
	sb->uid_slot = -1;
	sb->state = SB_SPAWNING;
	sb->idle_timeout = D.idle_timeout;
	unsigned char rnd[8];
	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd)) {
		free(sb);
		return ab_error_errno(err, -errno, "getrandom");
	}
	snprintf(sb->id, sizeof(sb->id), "sb-%02x%02x%02x%02x%02x%02x%02x%02x", rnd[0], rnd[1],
		 rnd[2], rnd[3], rnd[4], rnd[5], rnd[6], rnd[7]);
	sb->exec_pidfd = -1;
	sb->dec = ab_frame_decoder_new(AB_FRAME_IDLE_MAX);
	if (!sb->dec || timer_init(&sb->timer, on_timer, sb) < 0) {
		ab_frame_decoder_free(sb->dec);
		free(sb);
		return ab_error_set(err, -ENOMEM, "out of memory");
	}
	sb->next = D.sandboxes;
	D.sandboxes = sb;
	D.nsessions++;
	sb->owner = owner;
	sb->pooled = owner == NULL;
	if (owner)
		owner->refs++;

	int r = 0;
	gid_t host_gid = getegid();
	sb->host_uid = geteuid();
	if (D.privileged) {
		sb->uid_slot = alloc_uid_slot();
		if (sb->uid_slot < 0) {
			r = ab_error_set(err, -EAGAIN, "no free sandbox uid");
			goto fail;
		}
		sb->host_uid = D.uid_base + (uid_t)sb->uid_slot;
		host_gid = (gid_t)sb->host_uid;
	}
	char ws[4200];
	snprintf(sb->dir, sizeof(sb->dir), "%s/sessions/%s", D.home, sb->id);
	snprintf(ws, sizeof(ws), "%s/workspace", sb->dir);
	if (mkdir(sb->dir, 0700) < 0 || mkdir(ws, 0755) < 0) {
		r = ab_error_errno(err, -errno, "create workspace %s", ws);
		goto fail;
	}
	if (D.private_mounts) {
		/* R4/R5 for the workspace: its size and inode count are capped
		 * like /tmp's, and its pages are charged to the sandbox. */
		char opts[160];
		unsigned long long mb = (unsigned long long)lim->disk_mb;
		snprintf(opts, sizeof(opts), "size=%llum,nr_inodes=%llu,mode=0755,uid=%u,gid=%u",
			 mb + 1, (unsigned long long)ab_disk_inodes(lim->disk_mb),
			 (unsigned)sb->host_uid, (unsigned)host_gid);
		if (mount("tmpfs", ws, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0) {
			r = ab_error_errno(err, -errno, "mount workspace tmpfs on %s", ws);
			goto fail;
		}
		sb->ws_mounted = true;
	} else if (D.privileged && chown(ws, sb->host_uid, host_gid) < 0) {
		r = ab_error_errno(err, -errno, "chown workspace %s", ws);
		goto fail;
	}
	int cgfds[8], ncg = 0;
	if (!(D.degraded & (1u << AB_LAYER_CGROUP))) {
		r = ab_cgroup_create(sb->id, lim, &sb->cg, err);
		if (r == 0)
			r = ncg = ab_jail_open_cgroup_procs(sb->cg, cgfds, err);
		if (r < 0) {
			ab_error_prefix(err, "cgroup");
			goto fail;
		}
	}
	int ctl[2], o[2], e[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ctl) < 0) {
		r = ab_error_errno(err, -errno, "socketpair");
		for (int i = 0; i < ncg; i++)
			close(cgfds[i]);
		goto fail;
	}
	o[0] = o[1] = -1;
	/* Every message the daemon reads on its end carries the kernel's
	 * record of the writer (check_sender); the executor's end is
	 * remembered to check later that the executor still holds it. */
	int one = 1;
	struct stat peer;
	if (setsockopt(ctl[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0 ||
	    fstat(ctl[1], &peer) < 0) {
		r = ab_error_errno(err, -errno, "control socket credentials");
		close(ctl[0]);
		close(ctl[1]);
		for (int i = 0; i < ncg; i++)
			close(cgfds[i]);
		goto fail;
	}
	sb->ctl_peer_dev = peer.st_dev;
	sb->ctl_peer_ino = peer.st_ino;
	if (pipe2(o, O_CLOEXEC) < 0 || pipe2(e, O_CLOEXEC) < 0) {
		r = ab_error_errno(err, -errno, "pipe");
		/* The first pipe may have been made before the second failed. */
		if (o[0] >= 0) {
			close(o[0]);
			close(o[1]);
		}
		close(ctl[0]);
		close(ctl[1]);
		for (int i = 0; i < ncg; i++)
			close(cgfds[i]);
		goto fail;
	}
	sb->ctl = ctl[0];
	sb->out = o[0];
	sb->err = e[0];
	fcntl(sb->ctl, F_SETFL, O_NONBLOCK);
	fcntl(sb->out, F_SETFL, O_NONBLOCK);
	fcntl(sb->err, F_SETFL, O_NONBLOCK);
	/* A larger pipe buffer lets bursts of output through without stalling
	 * the sandbox; the cap per run still applies. */
	fcntl(o[1], F_SETPIPE_SZ, 1 << 20);
	fcntl(e[1], F_SETPIPE_SZ, 1 << 20);
	loop_add(&sb->ctl_w, sb->ctl, EPOLLIN, on_ctl, sb);
	loop_add(&sb->out_w, sb->out, EPOLLIN, on_out, sb);
	loop_add(&sb->err_w, sb->err, EPOLLIN, on_out, sb);

	int fds[12] = {ctl[1], o[1], e[1]};
	for (int i = 0; i < ncg; i++)
		fds[3 + i] = cgfds[i];
	json_t *req = json_pack("{s:s, s:s, s:o, s:I, s:I, s:b, s:I}", "op", "spawn", "workspace",
				ws, "limits", ab_limits_to_json(lim), "host_uid",
				(json_int_t)sb->host_uid, "host_gid", (json_int_t)host_gid,
				"privileged", D.privileged, "degraded", (json_int_t)D.degraded);
	r = zygote_spawn(tier, req, fds, 3 + ncg, on_spawned, sb, err);
	json_decref(req);
	sb->spawn_pending = r == 0;
	for (int i = 0; i < 3 + ncg; i++)
		close(fds[i]);
	if (r < 0)
		goto fail;
	if (create_id) {
		sb->create_id = json_incref(create_id);
		sb->create_conn = owner;
		owner->refs++;
	}
	*out = sb;
	return 0;
fail:
	snprintf(sb->dead_reason, sizeof(sb->dead_reason), "creation failed");
	sandbox_close(sb);
	return r;
}

sandbox *sandbox_from_pool(conn *owner, enum tier tier, const ab_limits *lim)
{
	for (sandbox *s = D.sandboxes; s; s = s->next) {
		/* Fixed when a sandbox is built: the size of its tmpfs, its
		 * processes' descriptor limit (which depends on pids), and for
		 * nano the address-space limit that is its memory cap. */
		if (!s->pooled || s->closing || s->state != SB_READY || s->tier != tier ||
		    s->limits.disk_mb != lim->disk_mb ||
		    (tier == TIER_NANO && s->limits.memory_mb != lim->memory_mb) ||
		    ab_limits_nofile(&s->limits, tier == TIER_NANO) !=
			ab_limits_nofile(lim, tier == TIER_NANO))
			continue;
		/* Pooled sandboxes have the default limits: a request for
		 * those needs no cgroup writes on its critical path. */
		bool same = s->limits.memory_mb == lim->memory_mb && s->limits.pids == lim->pids &&
			    s->limits.cpu == lim->cpu;
		if (s->cg && !same) {
			ab_error err = {0};
			if (ab_cgroup_set_limits(s->cg, lim, &err) < 0) {
				log_msg("%s: pooled sandbox unusable: %s", s->id, err.msg);
				continue;
			}
		}
		s->limits = *lim;
		s->pooled = false;
		s->from_pool = true;
		s->owner = owner;
		owner->refs++;
		return s;
	}
	return NULL;
}

/* Refilling (directories, mounts, cgroups, a request to the zygote) is
 * done after the current loop iteration, off the critical path of the
 * request that took a sandbox. */
static bool refill_wanted[TIER__COUNT];

void pool_refill(enum tier tier)
{
	refill_wanted[tier] = true;
}

void pool_refill_pending(void)
{
	for (int t = 0; t < TIER__COUNT; t++)
		if (refill_wanted[t]) {
			refill_wanted[t] = false;
			pool_fill((enum tier)t);
		}
}

static void pool_fill(enum tier tier)
{
	if (D.shutting_down || !zygote_alive(tier))
		return;
	int n = 0;
	for (sandbox *s = D.sandboxes; s; s = s->next)
		if (s->pooled && s->tier == tier && s->state != SB_DEAD)
			n++;
	ab_limits lim;
	ab_limits_default(&lim);
	for (; n < D.pool_target[tier]; n++) {
		sandbox *sb;
		ab_error err = {0};
		if (sandbox_create(NULL, tier, &lim, NULL, &sb, &err) < 0) {
			log_msg("pool refill (%s): %s", tier_name(tier), err.msg);
			return;
		}
	}
}

/* ------------------------------------------------------------------ runs */

static void drain(sandbox *sb, int fd);

static json_t *str_or_null(json_t *v, size_t max)
{
	if (!json_is_string(v))
		return json_null();
	size_t len = json_string_length(v);
	return json_stringn(json_string_value(v), len < max ? len : max);
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
		json_object_set_new(
		    r, "error",
		    json_pack("{s:o, s:o, s:o}", "name",
			      str_or_null(json_object_get(e, "name"), 256), "value",
			      str_or_null(json_object_get(e, "value"), 65536), "traceback",
			      str_or_null(json_object_get(e, "traceback"), 1 << 20)));
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

/* The executor's peak address space in KiB (VmPeak), or -1. */
static int64_t executor_vm_peak_kb(const sandbox *sb)
{
	pid_t pid = sb->exec_pid; /* pinned by its pidfd since ready */
	if (pid <= 0)
		return -1;
	char path[64], line[128];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	long long kb = -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmPeak: %lld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* Did this nano run reach its memory cap? Nano's cap is the address space
 * (RLIMIT_AS), and unlike the cgroup's limits it has no event counter: a
 * mapping over the cap only fails with ENOMEM inside the process (a thread
 * that cannot get its stack, a MemoryError), which the code may catch and
 * hide. So the daemon measures: the largest mapping a new thread asks for
 * is its stack (the stack rlimit, 8 MiB by default) plus a guard page, so
 * a thread that could not start leaves the peak within that of the cap. A
 * peak that rose during this run into that last stretch below the cap
 * means the run hit it. A single allocation larger than what was left
 * fails without coming near, and is only the MemoryError the code sees. A
 * peak above the cap means no RLIMIT_AS applies (sanitizer builds). The
 * peak never falls, so the one at the end of a run is the next run's
 * starting point: one read of /proc per nano run. */
static bool nano_hit_memory_cap(sandbox *sb)
{
	if (sb->tier != TIER_NANO || sb->vm_peak0_kb < 0)
		return false;
	int64_t peak = executor_vm_peak_kb(sb);
	int64_t before = sb->vm_peak0_kb;
	sb->vm_peak0_kb = peak;
	int64_t cap = (int64_t)sb->limits.memory_mb << 10;
	struct rlimit st;
	int64_t stack_kb = 8 << 10;
	if (getrlimit(RLIMIT_STACK, &st) == 0 && st.rlim_cur != RLIM_INFINITY &&
	    st.rlim_cur <= (64u << 20))
		stack_kb = (int64_t)(st.rlim_cur >> 10);
	int64_t margin = stack_kb + 64;
	return peak > before && peak <= cap && peak + margin >= cap;
}

static void send_frame_bounded(sandbox *sb, json_t *frame)
{
	char *buf = NULL;
	size_t total;
	ab_error err = {0};
	if (ab_frame_encode(frame, &buf, &total, &err) < 0) {
		kill_sandbox(sb, err.msg);
		return;
	}
	/* The executor is idle and reading; a sandbox that stops reading its
	 * control socket gets two seconds before it is killed, so the daemon
	 * never blocks for longer than that. */
	size_t off = 0;
	uint64_t deadline = now_ns() + 2000000000ull;
	while (off < total) {
		ssize_t n = send(sb->ctl, buf + off, total - off, MSG_NOSIGNAL);
		if (n > 0) {
			off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN) {
			uint64_t now = now_ns();
			if (now >= deadline)
				break;
			struct pollfd p = {.fd = sb->ctl, .events = POLLOUT};
			poll(&p, 1, (int)((deadline - now) / 1000000) + 1);
			continue;
		}
		break;
	}
	free(buf);
	if (off < total)
		kill_sandbox(sb, "the executor stopped reading its control socket");
}

/* Starts one attempt of a call that started at call_start. The timeout is
 * the whole call's (docs/protocol.md): the timer gets what is left of it,
 * and at least a moment, so that an attempt that starts late is
 * interrupted at once rather than never. */
static void run_start(sandbox *sb, conn *c, json_t *id, const char *code, double timeout,
		      uint64_t call_start, int attempt, const char *reason)
{
	sb->state = SB_RUNNING;
	sb->step++;
	outbuf_reset(&sb->o);
	outbuf_reset(&sb->e);
	snprintf(sb->run_reason, sizeof(sb->run_reason), "%s", reason);
	sb->run_internal = c == NULL;
	sb->run_interrupted = false;
	sb->run_attempt = attempt;
	sb->run_id = json_incref(id);
	sb->run_conn = c;
	if (c)
		c->refs++;
	sb->timeout_phase = 0;
	memset(&sb->stats0, 0, sizeof(sb->stats0));
	if (sb->cg)
		ab_cgroup_stats_read(sb->cg, &sb->stats0, NULL);
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
		kill_sandbox(sb, "out of memory: the daemon could not keep a copy of the "
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
	/* The result may be as large as the run's output limit allows, and
	 * not larger: the executor is told, and fits its result into it. */
	size_t frame_max = ab_frame_max_for_output(sb->limits.output_bytes);
	ab_frame_decoder_set_max(sb->dec, frame_max);
	json_t *req = json_pack("{s:s, s:i, s:s, s:s, s:I}", "op", "run", "step", sb->step, "nonce",
				sb->run_nonce, "code", code, "frame_max", (json_int_t)frame_max);
	send_frame_bounded(sb, req);
	json_decref(req);
}

void sandbox_run(sandbox *sb, conn *c, json_t *id, const char *code, double timeout,
		 const char *reason)
{
	run_start(sb, c, id, code, timeout, 0, 1, reason);
}

void sandbox_run_pending(sandbox *sb, const pending_run *p)
{
	run_start(sb, p->c, p->id, p->code, p->timeout, p->call_start_ns, p->attempt, p->reason);
}

const char *sandbox_interrupt(sandbox *sb)
{
	if (sb->state == SB_RUNNING && sb->run_conn) {
		/* Like the first phase of a timeout: init turns this into
		 * SIGINT for the executor, whose KeyboardInterrupt ends the run
		 * and keeps the session. The run's timer still bounds a cell
		 * that catches it. */
		if (!sb->run_interrupted && sb->timeout_phase == 0 && sb->pidfd >= 0) {
			sb->run_interrupted = true;
			syscall(SYS_pidfd_send_signal, sb->pidfd, SIGINT, NULL, 0);
		}
		return "run";
	}
	return promote_stop(sb, false);
}

/* The audit record of a run: the full code and its digest, how it ended,
 * and digests of the output the client received. outcome_claimed: status,
 * exit_code and error_name come from the executor's own result, not from
 * what the daemon saw (a timeout, a death, a compromise). */
static void record_run(sandbox *sb, conn *c, json_t *r, const ab_cgroup_stats *st,
		       bool outcome_claimed)
{
	/* No copy of the code means it was never sent to the sandbox
	 * (sandbox_run): record that, never an empty code that did not run. */
	const char *code = sb->run_code ? sb->run_code : "";
	char code_h[65], out_h[65], err_h[65];
	audit_sha256_hex(code, strlen(code), code_h);
	audit_sha256_hex(sb->o.data, sb->o.len, out_h);
	audit_sha256_hex(sb->e.data, sb->e.len, err_h);
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
	if (sb->compromised[0])
		json_object_set_new(body, "compromise", json_string(sb->compromised));
	audit_event("run", sb->id, sb->step, c ? c->actor : "daemon", body);
	const char *limit = json_string_value(json_object_get(r, "limit"));
	if (limit)
		audit_event("limit", sb->id, sb->step, "daemon",
			    json_pack("{s:s, s:O}", "limit", limit, "status",
				      json_object_get(r, "status")));
	if (sb->o.truncated || sb->e.truncated)
		audit_event("limit", sb->id, sb->step, "daemon",
			    json_pack("{s:s, s:I}", "limit", "output", "output_bytes",
				      (json_int_t)sb->limits.output_bytes));
}

void sandbox_record_create(sandbox *sb, conn *c)
{
	sb->create_unrecorded = false;
	audit_event("sandbox.create", sb->id, -1, c ? c->actor : "daemon",
		    json_pack("{s:s, s:s, s:s, s:o, s:b, s:o, s:b}", "tier_requested",
			      sb->tier_auto ? "auto" : tier_name(sb->tier), "tier",
			      tier_name(sb->tier), "route_reason", route_reason(sb), "limits",
			      ab_limits_to_json(&sb->limits), "pooled", sb->from_pool, "degraded",
			      degraded_list(), "privileged", D.privileged));
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

/* Completes the run in progress. frame is the executor's result, or NULL
 * if the sandbox died or timed out before sending one. */
static void finish_run(sandbox *sb, json_t *frame)
{
	if (!sb->run_conn && !sb->run_internal)
		return;
	timer_disarm(&sb->timer);
	drain(sb, sb->out);
	drain(sb, sb->err);
	json_t *r = frame ? sanitize_result(frame) : json_object();
	ab_cgroup_stats st = {0};
	if (sb->cg)
		ab_cgroup_stats_read(sb->cg, &st, NULL);
	bool oom = st.oom_kills > sb->stats0.oom_kills;
	bool pids_hit = st.pids_max_hits > sb->stats0.pids_max_hits;
	bool promoted = sb->run_promotion != NULL;
	const char *limit = NULL;
	bool outcome_claimed = false;
	if (sb->compromised[0]) {
		/* Nothing the sandbox sent is believed: not even a result
		 * that arrived before the compromise was seen. */
		json_object_set_new(r, "status", json_string("compromised"));
		json_object_set_new(r, "exit_code", json_integer(137));
		char msg[400];
		snprintf(msg, sizeof(msg), "the session was killed: %s", sb->compromised);
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
		json_object_set_new(
		    r, "error",
		    json_pack("{s:s, s:s, s:s}", "name", "Timeout", "value", msg, "traceback", ""));
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
	ab_frame_decoder_set_max(sb->dec, AB_FRAME_IDLE_MAX);
	if (!frame) {
		json_object_set_new(r, "value", json_null());
		json_object_set_new(r, "results", json_array());
	}
	if (!limit && pids_hit)
		limit = "pids";
	/* Measured after every nano run that ended with a result, so that the
	 * next run starts from this one's peak. */
	if (frame && nano_hit_memory_cap(sb) && !limit)
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
	json_object_set_new(r, "cpu_ms",
			    json_real((double)(st.cpu_usage_us - sb->stats0.cpu_usage_us) / 1e3));
	json_object_set_new(r, "memory_peak_bytes", json_integer((json_int_t)st.memory_peak));
	json_object_set_new(r, "degraded", degraded_list());
	fit_result(sb, r);
	conn *c = sb->run_conn;
	json_t *id = sb->run_id;
	bool internal = sb->run_internal;
	sb->run_conn = NULL;
	sb->run_id = NULL;
	sb->run_internal = false;
	if (sb->state == SB_RUNNING)
		sb->state = SB_READY;
	if (!internal) {
		if (sb->create_unrecorded)
			sandbox_record_create(sb, c);
		record_run(sb, c, r, &st, outcome_claimed);
	}
	/* tier "auto": a nano run that failed because of the tier is rerun
	 * in heavy, and a replayed step leads to the next one. */
	if (promote_on_result(sb, c, id, r))
		return;
	conn_reply(c, id, r);
	json_decref(id);
	conn_put(c);
	refill_if_deferred(sb);
	if (sb->oneshot && sb->pidfd >= 0) {
		snprintf(sb->dead_reason, sizeof(sb->dead_reason), "its one run is over");
		sandbox_close(sb);
	} else {
		sandbox_touch(sb);
	}
}

/* ---------------------------------------------------------------- events */

static void read_output(sandbox *sb, int fd)
{
	bool is_out = fd == sb->out;
	outbuf *b = is_out ? &sb->o : &sb->e;
	char buf[65536];
	ssize_t n = read(fd, buf, sizeof(buf));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		loop_del(is_out ? &sb->out_w : &sb->err_w);
		return;
	}
	if (sb->state != SB_RUNNING || !sb->run_conn)
		return; /* output between runs (a background child) and of
			 * replayed steps is dropped */
	size_t kept = outbuf_add(b, buf, (size_t)n, sb->limits.output_bytes);
	if (kept == 0 || conn_backlog(sb->run_conn) > NOTIFY_BACKLOG_MAX)
		return;
	json_t *s = ab__utf8_chunk(buf, kept, b->carry, &b->ncarry, false);
	if (!s || json_string_length(s) == 0) {
		json_decref(s);
		return;
	}
	conn_notify(sb->run_conn, "sandbox.output",
		    json_pack("{s:s, s:O, s:s, s:o, s:i}", "sandbox", sb->id, "request", sb->run_id,
			      "stream", is_out ? "stdout" : "stderr", "data", s, "attempt",
			      sb->run_attempt));
}

/* Reads what is already in the pipe: everything the executor flushed
 * before it sent its result. A grandchild that keeps the pipe open (S2)
 * cannot delay the result: we stop at EAGAIN. */
static void drain(sandbox *sb, int fd)
{
	if (fd < 0)
		return;
	for (int i = 0; i < 4096; i++) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 0) <= 0 || !(p.revents & POLLIN))
			return;
		size_t before = (fd == sb->out ? sb->o.total : sb->e.total);
		read_output(sb, fd);
		if ((fd == sb->out ? sb->o.total : sb->e.total) == before)
			return;
	}
}

static void on_out(void *ctx, uint32_t events)
{
	(void)events;
	sandbox *sb = ctx;
	/* Which pipe? Both watches share this callback. */
	struct pollfd p[2] = {{.fd = sb->out, .events = POLLIN}, {.fd = sb->err, .events = POLLIN}};
	poll(p, 2, 0);
	if (sb->out >= 0 && (p[0].revents & (POLLIN | POLLHUP)))
		read_output(sb, sb->out);
	if (sb->err >= 0 && (p[1].revents & (POLLIN | POLLHUP)))
		read_output(sb, sb->err);
}

/* ------------------------------------------------------- control channel */

/* Who speaks on the control socket is decided by the kernel, not by what
 * is said: SO_PASSCRED makes every message the daemon reads carry the pid
 * of the process that wrote it (in the daemon's pid namespace; unforgeable
 * without CAP_SYS_ADMIN over the sandbox's pid namespace, which no process
 * of a sandbox has), and a stream socket never merges bytes of two writers
 * into one read. Before the sandbox reports ready no user code has run, so
 * its one writer is the executor (or the init reporting a set-up failure);
 * from then on only that pid may write. Anything else means that cell code
 * handed the socket to another process: the session is compromised. */

static void compromise(sandbox *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void compromise(sandbox *sb, const char *fmt, ...)
{
	if (sb->compromised[0])
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(sb->compromised, sizeof(sb->compromised), fmt, ap);
	va_end(ap);
	log_msg("%s: compromised: %s", sb->id, sb->compromised);
	audit_event(
	    "compromise", sb->id, sb->state == SB_RUNNING ? sb->step : -1, "daemon",
	    json_pack("{s:s, s:i}", "reason", sb->compromised, "executor_pid", (int)sb->exec_pid));
	/* Nothing more is read from the socket: what is already buffered
	 * may have been written by the intruder. */
	loop_del(&sb->ctl_w);
	char why[300];
	snprintf(why, sizeof(why), "compromised: %s", sb->compromised);
	snprintf(sb->dead_reason, sizeof(sb->dead_reason), "%s", why);
	kill_sandbox(sb, why);
}

/* Returns true if the writer of a message may speak. */
static bool check_sender(sandbox *sb, const struct ucred *cred)
{
	if (!cred || cred->pid <= 0) {
		compromise(sb, "a control message arrived without the kernel's record of its "
			       "sender");
		return false;
	}
	if (sb->exec_pid > 0) {
		if (cred->pid == sb->exec_pid)
			return true;
		compromise(sb, "process %d, not the executor (%d), wrote to the control socket",
			   (int)cred->pid, (int)sb->exec_pid);
		return false;
	}
	if (sb->ctl_first_pid == 0)
		sb->ctl_first_pid = cred->pid;
	if (cred->pid == sb->ctl_first_pid)
		return true;
	compromise(sb,
		   "processes %d and %d both wrote to the control socket before the sandbox "
		   "was ready",
		   (int)sb->ctl_first_pid, (int)cred->pid);
	return false;
}

/* The parent of pid as /proc shows it to the daemon, or -1. */
static pid_t proc_ppid(pid_t pid)
{
	char path[64], buf[4096];
	snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return -1;
	size_t len = 0;
	ssize_t n;
	while (len < sizeof(buf) - 1 &&
	       ((n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0 || (n < 0 && errno == EINTR)))
		if (n > 0)
			len += (size_t)n;
	close(fd);
	buf[len] = '\0';
	const char *p = strstr(buf, "\nPPid:");
	int ppid;
	if (!p || sscanf(p + 6, "%d", &ppid) != 1)
		return -1;
	return (pid_t)ppid;
}

/* True if the executor still holds, at fd 3, the socket it was given:
 * false (and the session compromised) if it swapped it for another. Uses
 * pidfd_getfd, which needs ptrace access (PTRACE_MODE_ATTACH_REALCREDS)
 * to the executor; the executor is not dumpable, so only a daemon with
 * CAP_SYS_PTRACE (root) has it. Without, the first check (first: at
 * ready) turns fd_check off and the sender check alone applies
 * (docs/threat-model.md says why that suffices). */
static bool socket_intact(sandbox *sb, bool first)
{
	if (!sb->fd_check || sb->exec_pidfd < 0)
		return true;
	int fd = (int)syscall(SYS_pidfd_getfd, sb->exec_pidfd, 3, 0);
	if (fd < 0 && first && (errno == EPERM || errno == EACCES || errno == ENOSYS)) {
		static bool warned;
		if (!warned)
			log_msg("the executors' control sockets cannot be inspected "
				"(pidfd_getfd: %s); the sender of every control message is "
				"still checked",
				strerror(errno));
		warned = true;
		sb->fd_check = false;
		return true;
	}
	if (fd < 0 && errno == ESRCH)
		return true; /* it died: the pidfd reports that */
	if (fd < 0 && errno == EBADF) {
		compromise(sb, "the executor no longer has its control socket on fd 3");
		return false;
	}
	if (fd < 0) {
		/* The daemon's own trouble (no free descriptor, memory): the
		 * session cannot be vouched for, but nothing says it lied. */
		char msg[200];
		snprintf(msg, sizeof(msg),
			 "the daemon could not check the executor's control socket: %s",
			 strerror(errno));
		kill_sandbox(sb, msg);
		loop_del(&sb->ctl_w);
		return false;
	}
	struct stat st;
	int r = fstat(fd, &st);
	close(fd);
	if (r < 0 || st.st_dev != sb->ctl_peer_dev || st.st_ino != sb->ctl_peer_ino) {
		compromise(sb, "the executor's fd 3 is no longer the control socket it was given");
		return false;
	}
	return true;
}

/* Called with the ready frame: its sender, the one writer so far, must be
 * the sandbox init's child. It becomes the only process that may speak. */
static bool identify_executor(sandbox *sb)
{
	pid_t p = sb->ctl_first_pid;
	int pidfd = p > 0 ? (int)syscall(SYS_pidfd_open, p, 0) : -1;
	if (pidfd < 0) {
		compromise(sb, "the sender of the ready frame (pid %d) cannot be found", (int)p);
		return false;
	}
	/* Read after the pidfd pins the process: if pid p were reused in
	 * between, its parent would not be this init, which reaps nothing
	 * but the executor's relatives and forks nothing but the executor. */
	pid_t ppid = proc_ppid(p);
	struct pollfd pf = {.fd = pidfd, .events = POLLIN};
	if (ppid != sb->pid || poll(&pf, 1, 0) != 0) {
		close(pidfd);
		compromise(sb,
			   "the ready frame came from pid %d, which is not the sandbox's "
			   "executor (parent %d, init %d)",
			   (int)p, (int)ppid, (int)sb->pid);
		return false;
	}
	sb->exec_pid = p;
	sb->exec_pidfd = pidfd;
	sb->fd_check = true;
	sb->vm_peak0_kb = sb->tier == TIER_NANO ? executor_vm_peak_kb(sb) : -1;
	return socket_intact(sb, true);
}

static void handle_frame(sandbox *sb, json_t *f)
{
	const char *ev = json_string_value(json_object_get(f, "ev"));
	if (!ev) {
		kill_sandbox(sb, "protocol violation: frame without \"ev\"");
		return;
	}
	if (sb->state == SB_SPAWNING && !sb->early &&
	    (strcmp(ev, "ready") == 0 || strcmp(ev, "fatal") == 0)) {
		/* The sandbox's first frame can arrive before the zygote has
		 * told us its pid: keep it for on_spawned. */
		sb->early = json_incref(f);
		return;
	}
	if (strcmp(ev, "ready") == 0 && sb->state == SB_STARTING) {
		if (!identify_executor(sb))
			return;
		timer_disarm(&sb->timer);
		sb->state = SB_READY;
		if (sb->create_conn) {
			sandbox_record_create(sb, sb->create_conn);
			conn_reply(sb->create_conn, sb->create_id, sandbox_describe(sb));
			json_decref(sb->create_id);
			conn_put(sb->create_conn);
			sb->create_conn = NULL;
			sb->create_id = NULL;
		}
		sandbox_touch(sb);
		pending_ready(sb);
	} else if (strcmp(ev, "fatal") == 0 && sb->state == SB_STARTING) {
		const char *e = json_string_value(json_object_get(f, "error"));
		char msg[600];
		snprintf(msg, sizeof(msg), "sandbox set-up failed: %.400s", e ? e : "unknown");
		log_msg("%s: %s", sb->id, msg);
		reply_create_error(sb, RPC_ISOLATION, msg);
		pending_failed(sb, msg);
		kill_sandbox(sb, msg);
	} else if (strcmp(ev, "started") == 0 && sb->state == SB_RUNNING) {
		/* nothing to do: the run's clock started when it was sent */
	} else if (strcmp(ev, "result") == 0 && sb->state == SB_RUNNING) {
		/* User code shares the executor's process and can write to
		 * the control socket; a result without this run's nonce is a
		 * forgery and is ignored: the run goes on, under its timer. */
		const char *nonce = json_string_value(json_object_get(f, "nonce"));
		if (!nonce || strcmp(nonce, sb->run_nonce) != 0)
			return;
		if (!socket_intact(sb, false))
			return;
		finish_run(sb, f);
	} else {
		/* Frames out of sequence can only come from user code writing
		 * to the control socket; ignore them rather than trust them. */
	}
}

/* Reads one message with its sender's credentials. The control buffer has
 * room for the credentials only: descriptors a sandbox tries to pass are
 * never installed in the daemon (the kernel drops them and sets
 * MSG_CTRUNC), and passing any is itself a compromise. */
static ssize_t ctl_recv(sandbox *sb, char *buf, size_t len, struct ucred *cred, bool *has_cred,
			bool *truncated)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(struct ucred))];
	} cm;
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct msghdr m = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b, .msg_controllen = sizeof(cm.b)};
	ssize_t n = recvmsg(sb->ctl, &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	*has_cred = false;
	*truncated = false;
	if (n <= 0)
		return n;
	*truncated = (m.msg_flags & MSG_CTRUNC) != 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS &&
		    c->cmsg_len == CMSG_LEN(sizeof(struct ucred))) {
			memcpy(cred, CMSG_DATA(c), sizeof(*cred));
			*has_cred = true;
		} else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < nfd; i++) {
				int fd;
				memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(fd));
				close(fd);
			}
			*truncated = true;
		}
	}
	return n;
}

static void on_ctl(void *ctx, uint32_t events)
{
	(void)events;
	sandbox *sb = ctx;
	if (sb->compromised[0])
		return;
	char buf[65536];
	struct ucred cred = {0};
	bool has_cred, passed_fds;
	ssize_t n = ctl_recv(sb, buf, sizeof(buf), &cred, &has_cred, &passed_fds);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		loop_del(&sb->ctl_w);
		return; /* the exit itself arrives through the pidfd */
	}
	if (!check_sender(sb, has_cred ? &cred : NULL))
		return;
	if (passed_fds) {
		compromise(sb, "process %d passed descriptors on the control socket",
			   (int)cred.pid);
		return;
	}
	ab_error err = {0};
	if (ab_frame_decoder_feed(sb->dec, buf, (size_t)n, &err) < 0) {
		char msg[600];
		snprintf(msg, sizeof(msg), "protocol violation: %s", err.msg);
		kill_sandbox(sb, msg);
		return;
	}
	for (;;) {
		json_t *f = NULL;
		int r = ab_frame_decoder_next(sb->dec, &f, &err);
		if (r == 0)
			break;
		if (r < 0) {
			char msg[600];
			snprintf(msg, sizeof(msg), "protocol violation: %s", err.msg);
			kill_sandbox(sb, msg);
			return;
		}
		handle_frame(sb, f);
		json_decref(f);
		if (sb->state == SB_DEAD || sb->compromised[0])
			return;
	}
}

static void mark_dead(sandbox *sb, int wstatus_code, int wstatus)
{
	if (sb->state == SB_DEAD)
		return;
	if (!sb->dead_reason[0]) {
		ab_cgroup_stats st = {0};
		if (sb->cg)
			ab_cgroup_stats_read(sb->cg, &st, NULL);
		if (st.oom_kills > sb->stats0.oom_kills ||
		    (sb->state != SB_RUNNING && st.oom_kills))
			snprintf(sb->dead_reason, sizeof(sb->dead_reason),
				 "killed by the OOM killer at the memory limit of %llu MB",
				 (unsigned long long)sb->limits.memory_mb);
		else if (wstatus_code == CLD_EXITED)
			snprintf(sb->dead_reason, sizeof(sb->dead_reason),
				 "the executor exited with status %d", wstatus);
		else
			snprintf(sb->dead_reason, sizeof(sb->dead_reason),
				 "the executor was killed by signal %d", wstatus);
	}
	if (sb->state == SB_RUNNING)
		finish_run(sb, NULL);
	if (sb->create_conn || sb->pend.c || sb->promote_for) {
		char msg[400];
		snprintf(msg, sizeof(msg), "sandbox died during set-up: %s", sb->dead_reason);
		reply_create_error(sb, RPC_ISOLATION, msg);
		pending_failed(sb, msg);
	}
	sb->state = SB_DEAD;
	timer_disarm(&sb->timer);
	if (sb->cg)
		ab_cgroup_kill_all(sb->cg, 2000, NULL);
	/* A dead session waits for its client's close, unless nobody will
	 * ask: pooled sandboxes, one-shot runs, backends of a promotion. */
	if (sb->pooled || sb->hidden || (sb->oneshot && !sb->promote_to))
		sandbox_close(sb);
}

static void on_exit_cb(void *ctx, uint32_t events)
{
	(void)events;
	sandbox *sb = ctx;
	siginfo_t si = {0};
	if (waitid(P_PIDFD, (id_t)sb->pidfd, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0)
		return;
	loop_del(&sb->pid_w);
	close(sb->pidfd);
	sb->pidfd = -1;
	if (sb->closing) {
		sandbox_finalize(sb);
		return;
	}
	/* Whatever the executor flushed before dying belongs to this run. */
	drain(sb, sb->out);
	drain(sb, sb->err);
	mark_dead(sb, si.si_code, si.si_status);
	if (sb->pooled)
		return;
}

static void kill_sandbox(sandbox *sb, const char *why)
{
	if (!sb->dead_reason[0])
		snprintf(sb->dead_reason, sizeof(sb->dead_reason), "%s", why);
	if (sb->pidfd >= 0)
		syscall(SYS_pidfd_send_signal, sb->pidfd, SIGKILL, NULL, 0);
	if (sb->cg)
		ab_cgroup_kill_all(sb->cg, 2000, NULL);
	/* The death itself is processed by on_exit_cb. */
}

static void on_timer(void *ctx)
{
	sandbox *sb = ctx;
	if (sb->state == SB_STARTING || sb->state == SB_SPAWNING) {
		kill_sandbox(sb, "the sandbox did not become ready in time");
		return;
	}
	if (sb->state == SB_READY && sb->owner && !sb->pooled && !sb->hidden && !sb->promote_to &&
	    sb->idle_timeout > 0) {
		snprintf(sb->dead_reason, sizeof(sb->dead_reason),
			 "closed after %g s without use (the idle timeout)", sb->idle_timeout);
		sandbox_close(sb);
		return;
	}
	if (promote_stop(sb, true))
		return; /* the deadline of a call waiting for a promotion */
	if (sb->state != SB_RUNNING)
		return;
	if (sb->timeout_phase == 0) {
		/* First ask nicely: init turns this into SIGINT for the
		 * executor, whose KeyboardInterrupt keeps the session alive. */
		sb->timeout_phase = 1;
		if (sb->pidfd >= 0)
			syscall(SYS_pidfd_send_signal, sb->pidfd, SIGINT, NULL, 0);
		timer_arm(&sb->timer, TIMEOUT_GRACE_S);
	} else {
		sb->timeout_phase = 2;
		char msg[160];
		snprintf(msg, sizeof(msg), "killed after exceeding its time limit of %g s",
			 sb->run_timeout);
		kill_sandbox(sb, msg);
	}
}

/* -------------------------------------------------------------- teardown */

/* Closing is two steps. sandbox_close answers for the sandbox at once:
 * pending requests get their replies, the sandbox disappears from its
 * client's view, and its init gets SIGKILL. sandbox_finalize then releases
 * everything once the init is reaped (from on_exit_cb) or, for a sandbox
 * the zygote is still creating, once the zygote answers (on_spawned). The
 * daemon never blocks waiting for a sandbox to die. */

void sandbox_close(sandbox *sb)
{
	if (sb->closing)
		return;
	sb->closing = true;
	if (sb->run_conn) {
		if (!sb->dead_reason[0])
			snprintf(sb->dead_reason, sizeof(sb->dead_reason),
				 "the sandbox was closed");
		finish_run(sb, NULL);
	}
	reply_create_error(sb, RPC_DEAD, "the sandbox was closed before it was ready");
	promote_cancel(sb);
	files_forget(sb);
	refill_if_deferred(sb);
	if (sb->owner && !sb->close_conn && sb->dead_reason[0] && !sb->retired && !sb->hidden)
		remember_closed(sb, sb->dead_reason);
	if (sb->owner && sb->create_unrecorded)
		sandbox_record_create(sb, sb->owner);
	if (sb->owner && !sb->retired && !sb->hidden)
		audit_event("sandbox.close", sb->id, -1,
			    sb->close_conn ? sb->close_conn->actor : sb->owner->actor,
			    json_pack("{s:s, s:i}", "reason",
				      sb->close_conn	   ? "closed by the client"
				      : sb->dead_reason[0] ? sb->dead_reason
							   : "the client disconnected",
				      "steps", sb->step));
	sb->state = SB_DEAD;
	timer_disarm(&sb->timer);
	if (sb->owner)
		conn_put(sb->owner);
	sb->owner = NULL;
	sb->pooled = false;
	if (sb->pidfd >= 0) {
		syscall(SYS_pidfd_send_signal, sb->pidfd, SIGKILL, NULL, 0);
		return;
	}
	if (sb->spawn_pending)
		return;
	sandbox_finalize(sb);
}

void sandbox_close_reply(sandbox *sb, conn *c, json_t *id)
{
	if (!sb->close_conn && id) {
		sb->close_conn = c;
		sb->close_id = json_incref(id);
		c->refs++;
	}
	sandbox_close(sb);
}

static void sandbox_finalize(sandbox *sb)
{
	if (sb->pidfd >= 0) {
		siginfo_t si;
		waitid(P_PIDFD, (id_t)sb->pidfd, &si, WEXITED);
		loop_del(&sb->pid_w);
		close(sb->pidfd);
		sb->pidfd = -1;
	}
	loop_del(&sb->ctl_w);
	loop_del(&sb->out_w);
	loop_del(&sb->err_w);
	timer_free(&sb->timer);
	if (sb->exec_pidfd >= 0)
		close(sb->exec_pidfd);
	sb->exec_pidfd = -1;
	if (sb->ctl >= 0)
		close(sb->ctl);
	if (sb->out >= 0)
		close(sb->out);
	if (sb->err >= 0)
		close(sb->err);
	sb->ctl = sb->out = sb->err = -1;
	ab_cgroup_destroy(sb->cg);
	sb->cg = NULL;
	if (sb->ws_mounted) {
		char ws[4200];
		snprintf(ws, sizeof(ws), "%s/workspace", sb->dir);
		if (umount2(ws, MNT_DETACH) < 0)
			log_msg("%s: unmount workspace: %s", sb->id, strerror(errno));
		sb->ws_mounted = false;
	}
	if (sb->dir[0] && remove_tree(sb->dir) < 0)
		log_msg("%s: could not remove %s completely", sb->id, sb->dir);
	free_uid_slot(sb->uid_slot);
	for (sandbox **p = &D.sandboxes; *p; p = &(*p)->next)
		if (*p == sb) {
			*p = sb->next;
			break;
		}
	D.nsessions--;
	if (sb->close_conn) {
		conn_reply(sb->close_conn, sb->close_id,
			   json_pack("{s:s, s:b}", "sandbox", sb->id, "closed", 1));
		json_decref(sb->close_id);
		conn_put(sb->close_conn);
		sb->close_conn = NULL;
	}
	ab_frame_decoder_free(sb->dec);
	json_decref(sb->run_promotion);
	json_decref(sb->early);
	json_decref(sb->history);
	json_decref(sb->replayed);
	free(sb->run_code);
	free(sb->o.data);
	free(sb->e.data);
	/* Freed after the current loop iteration: events for its watches may
	 * still be queued in this batch. */
	sb->next = graveyard;
	graveyard = sb;
}

void sandbox_gc(void)
{
	while (graveyard) {
		sandbox *n = graveyard->next;
		free(graveyard);
		graveyard = n;
	}
}

/* Closing one sandbox may close another (a promotion's backend) and
 * finalize it at once, so the walk starts over after each close. */
void sandbox_close_owned_by(conn *c)
{
again:
	for (sandbox *s = D.sandboxes; s; s = s->next)
		if (s->owner == c && !s->pooled && !s->closing) {
			sandbox_close(s);
			goto again;
		}
}

/* At shutdown: close everything, then wait for the inits here, since the
 * loop no longer runs. Sandboxes still being spawned are finalized when
 * zygote_stop() fails their requests. */
void sandbox_close_all(void)
{
again:
	for (sandbox *s = D.sandboxes; s; s = s->next)
		if (!s->closing) {
			sandbox_close(s);
			goto again;
		}
	for (sandbox *s = D.sandboxes, *n; s; s = n) {
		n = s->next;
		if (!s->spawn_pending)
			sandbox_finalize(s);
	}
}
