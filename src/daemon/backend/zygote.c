/* zygote.c - the daemon's side of the zygotes, one per tier: starting
 * them, sending spawn requests and matching their replies (which come in
 * request order) to their callbacks.
 *
 * Rotation: every sandbox is a fork of its tier's zygote and shares its
 * Python hash secret and address-space layout. After --zygote-rotate
 * spawns a new zygote (a new interpreter: a new secret, a new layout) is
 * started in the tier's second slot; once it is ready it takes over, and
 * the old one is stopped as soon as its last spawn request is answered.
 * No spawn waits for a rotation. */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <linux/sched.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "backend.h"
#include "loop.h"
#include "fdpass.h"

#define MAX_PENDING 256

struct zygote {
	enum tier tier;
	pid_t pid;
	int pidfd;
	int sock;
	bool ready;
	loop_watch sock_w, pid_w;
	struct {
		zygote_cb cb;
		void *ctx;
	} pending[MAX_PENDING];
	int head, count;
	unsigned spawned;
	bool retiring; /* replaced: stopped once count is 0 */
	uint64_t restarts_ns[5];
};

/* Two slots per tier: the current zygote, and one starting or retiring. */
static struct zygote slots[TIER__COUNT][2] = {
    [TIER_HEAVY] = {{.tier = TIER_HEAVY, .pid = -1, .pidfd = -1, .sock = -1},
		    {.tier = TIER_HEAVY, .pid = -1, .pidfd = -1, .sock = -1}},
    [TIER_NANO] = {{.tier = TIER_NANO, .pid = -1, .pidfd = -1, .sock = -1},
		   {.tier = TIER_NANO, .pid = -1, .pidfd = -1, .sock = -1}},
};
static int cur[TIER__COUNT];

static struct zygote *current(enum tier t)
{
	return &slots[t][cur[t]];
}

static struct zygote *other(enum tier t)
{
	return &slots[t][!cur[t]];
}

static int start_in(struct zygote *z, ab_error *err);
static int start_deferred(enum tier t, ab_error *err);

bool zygote_alive(enum tier t)
{
	return current(t)->pid > 0 && current(t)->ready;
}

int zygote_pending(enum tier t)
{
	return current(t)->count;
}

pid_t zygote_pid(enum tier t)
{
	return current(t)->pid;
}

bool zygote_owns_pid(pid_t pid)
{
	for (int t = 0; t < TIER__COUNT; t++)
		for (int i = 0; i < 2; i++)
			if (slots[t][i].pid == pid)
				return true;
	return false;
}

static void fail_all(struct zygote *z, const char *why)
{
	while (z->count > 0) {
		zygote_cb cb = z->pending[z->head].cb;
		void *ctx = z->pending[z->head].ctx;
		z->head = (z->head + 1) % MAX_PENDING;
		z->count--;
		cb(ctx, -1, -1, why);
	}
}

static char exe_dir_saved[4096];

/* A zygote that dies (a bug, or the OOM killer) is restarted, at most five
 * times a minute, so that one failure does not end the daemon's service. */
static void restart(struct zygote *z)
{
	if (D.shutting_down || !exe_dir_saved[0])
		return;
	uint64_t now = now_ns();
	if (z->restarts_ns[0] && now - z->restarts_ns[0] < 60000000000ull) {
		log_msg("the %s zygote died 5 times within a minute; not restarting it",
			tier_name(z->tier));
		return;
	}
	memmove(z->restarts_ns, z->restarts_ns + 1,
		sizeof(z->restarts_ns) - sizeof(z->restarts_ns[0]));
	z->restarts_ns[4] = now;
	ab_error err = {0};
	if (start_in(z, &err) < 0)
		log_msg("restarting the %s zygote: %s", tier_name(z->tier), err.msg);
	else
		log_msg("restarted the %s zygote", tier_name(z->tier));
}

static void on_zygote_exit(void *ctx, uint32_t events)
{
	struct zygote *z = ctx;
	(void)events;
	siginfo_t si = {0};
	waitid(P_PIDFD, (id_t)z->pidfd, &si, WEXITED | WNOHANG);
	log_msg("%s zygote (pid %d) exited (%s %d)", tier_name(z->tier), z->pid,
		si.si_code == CLD_EXITED ? "status" : "signal", si.si_status);
	loop_del(&z->pid_w);
	loop_del(&z->sock_w);
	close(z->pidfd);
	close(z->sock);
	z->pidfd = z->sock = -1;
	z->pid = -1;
	bool was_current = z == current(z->tier), retiring = z->retiring;
	z->ready = false;
	z->retiring = false;
	fail_all(z, z->tier == TIER_NANO ? "the nano zygote exited" : "the heavy zygote exited");
	/* Only the current zygote is restarted: a retiring one was done, a
	 * successor that died starting leaves the current one serving. */
	if (was_current)
		restart(z);
	else if (!retiring)
		current(z->tier)->spawned = 0; /* a successor died: retry after N more */
}

/* Stops a zygote that no sandbox request waits on any more. */
static void stop_one(struct zygote *z, const char *why);

static void retire_if_idle(struct zygote *z)
{
	if (z->retiring && z->count == 0)
		stop_one(z, "the zygote was replaced");
}

/* Starts a successor once the current zygote has made enough sandboxes. */
static void maybe_rotate(enum tier t)
{
	struct zygote *z = current(t), *o = other(t);
	if (D.zygote_rotate == 0 || z->spawned < D.zygote_rotate || o->pid > 0 || D.shutting_down)
		return;
	ab_error err = {0};
	o->spawned = 0;
	memset(o->restarts_ns, 0, sizeof(o->restarts_ns));
	if (start_in(o, &err) < 0) {
		log_msg("rotating the %s zygote: %s (the current one goes on)", tier_name(t),
			err.msg);
		z->spawned = 0; /* try again after as many more */
	}
}

static void on_zygote_msg(void *ctx, uint32_t events)
{
	struct zygote *z = ctx;
	(void)events;
	char buf[8192];
	int fds[AB_FDPASS_MAX], nfds = 0;
	int n = ab__recv_fds(z->sock, buf, sizeof(buf) - 1, fds, AB_FDPASS_MAX, &nfds);
	if (n <= 0) {
		if (n == -EAGAIN)
			return;
		loop_del(&z->sock_w);
		return; /* the exit is handled by the pidfd watch */
	}
	buf[n] = '\0';
	json_t *msg = json_loads(buf, 0, NULL);
	if (json_is_string(json_object_get(msg, "ready"))) {
		z->ready = true;
		log_msg("%s zygote ready (pid %d)", tier_name(z->tier), z->pid);
		json_decref(msg);
		if (z != current(z->tier)) {
			/* A successor: it serves from now on. */
			struct zygote *old = current(z->tier);
			cur[z->tier] = !cur[z->tier];
			log_msg("rotated the %s zygote (pid %d replaces pid %d after %u sandboxes)",
				tier_name(z->tier), z->pid, old->pid, old->spawned);
			old->retiring = true;
			old->ready = false;
			retire_if_idle(old);
		}
		backend_events()->profile_ready(z->tier);
		for (int t = 0; t < TIER__COUNT; t++) {
			ab_error err = {0};
			if (start_deferred((enum tier)t, &err) < 0)
				log_msg("%s zygote: %s", tier_name((enum tier)t), err.msg);
		}
		return;
	}
	if (z->count == 0) {
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		json_decref(msg);
		return;
	}
	zygote_cb cb = z->pending[z->head].cb;
	void *cctx = z->pending[z->head].ctx;
	z->head = (z->head + 1) % MAX_PENDING;
	z->count--;
	if (json_is_true(json_object_get(msg, "ok")) && nfds == 1) {
		cb(cctx, (pid_t)json_integer_value(json_object_get(msg, "pid")), fds[0], NULL);
	} else {
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		const char *e = json_string_value(json_object_get(msg, "error"));
		cb(cctx, -1, -1, e ? e : "malformed reply from the zygote");
	}
	json_decref(msg);
	retire_if_idle(z);
}

int zygote_start(enum tier t, const char *exe_dir, ab_error *err)
{
	snprintf(exe_dir_saved, sizeof(exe_dir_saved), "%s", exe_dir);
	return start_in(current(t), err);
}

/* A zygote whose start waits: its warm-up (pandas, for heavy) would take
 * the CPU from the first runs of the tiers that start faster. */
static bool deferred[TIER__COUNT];

void zygote_start_later(enum tier t, const char *exe_dir)
{
	snprintf(exe_dir_saved, sizeof(exe_dir_saved), "%s", exe_dir);
	deferred[t] = true;
}

bool zygote_deferred(enum tier t)
{
	return deferred[t];
}

static int start_deferred(enum tier t, ab_error *err)
{
	if (!deferred[t])
		return 0;
	deferred[t] = false;
	log_msg("starting the %s zygote", tier_name(t));
	return start_in(current(t), err);
}

static int start_in(struct zygote *z, ab_error *err)
{
	enum tier t = z->tier;
	const char *exe_dir = exe_dir_saved;
	char exe[4200];
	if (snprintf(exe, sizeof(exe), "%s/agentbox-executor", exe_dir) >= (int)sizeof(exe))
		return ab_error_set(err, -ENAMETOOLONG, "executor path too long");
	/* The zygote runs from a sealed in-memory copy of the executor: every
	 * sandbox is a fork of it, and /proc/self/exe or /proc/self/maps
	 * inside must not reveal where agentbox is installed (L1). */
	int src = open(exe, O_RDONLY | O_CLOEXEC);
	if (src < 0)
		return ab_error_errno(err, -errno, "executor %s", exe);
	int mfd = memfd_create("agentbox-executor", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	if (mfd < 0) {
		int e = -errno;
		close(src);
		return ab_error_errno(err, e, "memfd_create");
	}
	for (;;) {
		char buf[65536];
		ssize_t n = read(src, buf, sizeof(buf));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || write(mfd, buf, (size_t)n) != n) {
			int e = n < 0 ? -errno : 0;
			close(src);
			if (n < 0) {
				close(mfd);
				return ab_error_errno(err, e, "read executor %s", exe);
			}
			break;
		}
	}
	close(src);
	fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL);
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
		close(mfd);
		return ab_error_errno(err, -errno, "socketpair");
	}
	int pidfd = -1;
	struct clone_args ca = {
	    .flags = CLONE_PIDFD, .pidfd = (uint64_t)(uintptr_t)&pidfd, .exit_signal = SIGCHLD};
	pid_t pid = (pid_t)syscall(SYS_clone3, &ca, sizeof(ca));
	if (pid < 0) {
		int e = -errno;
		close(sv[0]);
		close(sv[1]);
		close(mfd);
		return ab_error_errno(err, e, "start zygote");
	}
	if (pid == 0) {
		/* Child: fd 3 is the control socket, stdout goes to stderr so
		 * that nothing can corrupt the daemon's JSON-RPC stream. */
		int devnull = open("/dev/null", O_RDONLY);
		if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(2, 1) < 0 || dup2(sv[1], 3) < 0 ||
		    dup2(mfd, 4) < 0)
			_exit(127);
		syscall(SYS_close_range, 5, ~0U, 0);
		fcntl(4, F_SETFD, FD_CLOEXEC);
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		/* Nothing of the daemon's environment reaches the zygote:
		 * every sandbox is a copy of its memory (L2). argv[0] names no
		 * host path for the same reason. */
		char *argv[] = {"agentbox-executor", "--zygote", "--tier", (char *)tier_name(t),
				NULL};
		char *envp[] = {"LANG=C.UTF-8", "PATH=/usr/bin:/bin", NULL};
		fexecve(4, argv, envp);
		_exit(127);
	}
	close(sv[1]);
	close(mfd);
	z->pid = pid;
	z->pidfd = pidfd;
	z->sock = sv[0];
	z->ready = false;
	z->retiring = false;
	z->spawned = 0;
	fcntl(z->sock, F_SETFL, O_NONBLOCK);
	loop_add(&z->sock_w, z->sock, EPOLLIN, on_zygote_msg, z);
	loop_add(&z->pid_w, z->pidfd, EPOLLIN, on_zygote_exit, z);
	return 0;
}

int zygote_spawn(enum tier t, json_t *req, const int *fds, int nfds, zygote_cb cb, void *ctx,
		 ab_error *err)
{
	struct zygote *z = current(t);
	if (start_deferred(t, err) < 0)
		return -ESRCH;
	if (z->pid < 0)
		return ab_error_set(err, -ESRCH, "the %s zygote is not running", tier_name(t));
	if (z->count == MAX_PENDING)
		return ab_error_set(err, -EAGAIN, "too many sandboxes being created at once");
	char *text = json_dumps(req, JSON_COMPACT);
	if (!text)
		return ab_error_set(err, -ENOMEM, "out of memory");
	int r = ab__send_fds(z->sock, text, strlen(text), fds, nfds);
	free(text);
	if (r < 0)
		return ab_error_errno(err, r, "send spawn request to the zygote");
	int slot = (z->head + z->count) % MAX_PENDING;
	z->pending[slot].cb = cb;
	z->pending[slot].ctx = ctx;
	z->count++;
	z->spawned++;
	maybe_rotate(t);
	return 0;
}

static void stop_one(struct zygote *z, const char *why)
{
	if (z->pid < 0)
		return;
	syscall(SYS_pidfd_send_signal, z->pidfd, SIGKILL, NULL, 0);
	siginfo_t si;
	waitid(P_PIDFD, (id_t)z->pidfd, &si, WEXITED);
	loop_del(&z->pid_w);
	loop_del(&z->sock_w);
	close(z->pidfd);
	close(z->sock);
	z->pid = -1;
	z->pidfd = z->sock = -1;
	z->ready = z->retiring = false;
	fail_all(z, why);
}

void zygote_stop(void)
{
	for (int t = 0; t < TIER__COUNT; t++)
		for (int i = 0; i < 2; i++)
			stop_one(&slots[t][i], "the daemon is shutting down");
}
