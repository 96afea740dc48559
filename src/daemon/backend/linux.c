/* linux.c - the Linux-namespace backend: a sandbox is a fork of its
 * profile's zygote (backend/zygote.c) in its own namespaces, cgroup,
 * workspace and host uid, driven over a control socket.
 *
 * Nothing that comes from a sandbox is trusted: control frames are
 * size-capped and only two kinds are accepted at the moment they are
 * expected (ready, then the result carrying the run's nonce); the sender of
 * every control message is checked by the kernel's record of it; output is
 * handed to the engine, which caps it. */
#include <dirent.h>
#include <fcntl.h>
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
#include <sys/un.h>
#include <sys/wait.h>

#include "backend.h"
#include "egress/egress.h"
#include "fdpass.h"
#include "jail.h"
#include "loop.h"
#include "record/record.h"

#define UID_SLOTS 65536

/* What the backend knows of an instance's life (the engine has its own,
 * richer state; this one only says which frames are expected). */
enum be_phase { B_SPAWNING, B_STARTING, B_IDLE, B_RUNNING, B_DEAD };

struct be_inst {
	const profile *prof;
	const char *id; /* the owner's id buffer (a promotion swaps its contents) */
	void *owner;
	enum be_phase phase;
	ab_limits limits;
	bool closing;	    /* close() was called: released follows */
	bool spawn_pending; /* the zygote has not answered yet */
	uid_t host_uid;
	int uid_slot;
	char dir[4096];	 /* $HOME/sessions/<id> */
	char ws[4200];	 /* dir/workspace */
	bool ws_mounted; /* the workspace is a size-capped tmpfs */
	/* Egress (heavy): the listening socket dir/egress.sock, handed to
	 * the egress module under b->id; "" when none. */
	char egress_sock[4200];
	bool egress_attached;
	ab_cgroup *cg;
	pid_t pid; /* host pid of the sandbox's init */
	int pidfd, ctl, out, err;
	loop_watch pid_w, ctl_w, out_w, err_w;
	ab_frame_decoder *dec;
	json_t *early; /* ready/fatal that came before the zygote's answer */
	/* Who may speak on the control socket (check_sender): until the
	 * executor is known, one sender (init or executor); then only the
	 * executor, by the kernel-stamped pid of every message. */
	pid_t ctl_first_pid;
	pid_t exec_pid;	    /* host pid of the executor, once it was ready */
	int exec_pidfd;	    /* the executor's pidfd, -1 until then */
	dev_t ctl_peer_dev; /* the executor's end of the control socket */
	ino_t ctl_peer_ino;
	bool fd_check;	       /* pidfd_getfd works on this executor */
	char compromised[256]; /* why the session was found hijacked, or "" */
	char kill_reason[300]; /* why the backend killed it on its own, or "" */
	char nonce[33];	       /* of the run in progress */
	int step;
	int64_t vm_peak0_kb; /* nano: the executor's peak address space, as of
			      * the end of its last run (or ready) */
	/* Time travel (docs/time-travel.md): the parked snapshots; the one
	 * whose child the executor is (it reports the executor's end); a
	 * snapshot asked for and not answered yet, and the executor's child
	 * that will go on as the executor once it speaks. */
	struct snap *snaps;
	struct snap *exec_parent;
	struct snap *resuming; /* a restore waits for this snapshot's copy */
	int snap_pending;      /* id, or -1 */
	pid_t snap_child;
	int snap_child_pidfd;
	pid_t last_sender; /* of the control message being decoded */
	loop_watch exec_w; /* the executor's pidfd, once it is not init's child */
	int exec_status;   /* its wait status, as its parked parent reported */
	bool exec_status_known;
	bool exec_expected_dead; /* killed by a restore: its end is no news */
	bool exec_forked;	 /* the executor is no longer init's child (pid 2): init
				  * neither forwards to it nor ends with it */
	int restore_processes, restore_threads; /* what the last restore stopped */
	be_inst *gc_next;
};

/* A parked copy of the executor (executor/snapshot.c), with its socket. */
typedef struct snap {
	be_inst *b;
	int id;
	int fd; /* the daemon's end of its socket (SO_PASSCRED) */
	pid_t pid;
	int pidfd;
	loop_watch w, pid_w;
	ab_frame_decoder *dec;
	bool parked;
	bool root; /* the sandbox's first executor: init's child */
	char nonce[33]; /* of the inspection in progress, or "" */
	bool answered;	/* that inspection's answer was delivered */
	struct snap *next;
} snap;

static unsigned char uid_used[UID_SLOTS / 8];
static const be_events *EV;
static be_inst *graveyard;

void backend_init(const be_events *ev)
{
	EV = ev;
}

const be_events *backend_events(void)
{
	return EV;
}

static void on_ctl(void *ctx, uint32_t events);
static void on_out(void *ctx, uint32_t events);
static void on_exit_cb(void *ctx, uint32_t events);
static void handle_frame(be_inst *b, json_t *f);
static void lx_kill(be_inst *b, const char *why);
static void finalize(be_inst *b);
static bool adopt_snap_child(be_inst *b, pid_t p);
static void snapshot_done(be_inst *b, json_t *f);
static void snapshot_refused(be_inst *b, json_t *f);
static void snaps_free_all(be_inst *b);
static void on_exec_exit(void *ctx, uint32_t events);
static void lx_drain(be_inst *b);

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

/* ------------------------------------------------------------- creation */

/* Does this sandbox get egress (docs/egress.md)? Heavy only, and only with
 * a network namespace of its own: without one the relay would listen on
 * the host's loopback and the proxy variables would point there, so the
 * sandbox gets neither (and the host's network, as the degraded netns
 * layer says). */
static bool wants_egress(const profile *p)
{
	if (p->restricted || p->memory_fixed || !egress_enabled())
		return false;
	if (D.degraded & (1u << AB_LAYER_NETNS)) {
		static bool said;
		if (!said)
			log_msg("egress: no network namespaces, so sandboxes get no egress relay "
				"(their code uses the host's network directly)");
		said = true;
		return false;
	}
	return true;
}

/* The sandbox's egress socket: a listening unix socket in the egress
 * module's tmpfs (egress_socket_dir) or at dir/egress.sock (both the
 * daemon's, 0700), owned by the sandbox's host uid and mode
 * 0600: only its bind mount inside the sandbox reaches it. The listening
 * descriptor goes to the egress module, which serves it. */
static int egress_setup(be_inst *b, gid_t gid, ab_error *err)
{
	const char *bundle = egress_ca_bundle();
	if (!bundle || bundle[0] != '/')
		return ab_error_set(err, -ENOENT, "egress is on but has no CA bundle");
	const char *sdir = egress_socket_dir();
	char name[80];
	snprintf(name, sizeof(name), sdir ? "%s.sock" : "egress.sock", b->id);
	if (!sdir)
		sdir = b->dir;
	snprintf(b->egress_sock, sizeof(b->egress_sock), "%s/%s", sdir, name);
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	int dfd = -1;
	if (strlen(b->egress_sock) < sizeof(sun.sun_path)) {
		memcpy(sun.sun_path, b->egress_sock, strlen(b->egress_sock) + 1);
	} else {
		/* A home too long for sun_path: bound through a descriptor
		 * of the directory instead. */
		dfd = open(sdir, O_PATH | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0)
			return ab_error_errno(err, -errno, "egress: open %s", sdir);
		snprintf(sun.sun_path, sizeof(sun.sun_path), "/proc/self/fd/%d/%s", dfd, name);
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int r = 0;
	if (fd < 0)
		r = ab_error_errno(err, -errno, "egress: socket");
	else if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		r = ab_error_errno(err, -errno, "egress: bind %s", b->egress_sock);
	else if (chmod(b->egress_sock, 0600) < 0 ||
		 (D.privileged && chown(b->egress_sock, b->host_uid, gid) < 0))
		r = ab_error_errno(err, -errno, "egress: set the owner of %s", b->egress_sock);
	else if (listen(fd, 64) < 0)
		r = ab_error_errno(err, -errno, "egress: listen on %s", b->egress_sock);
	if (dfd >= 0)
		close(dfd);
	if (r < 0) {
		if (fd >= 0)
			close(fd);
		return r;
	}
	egress_attach(b->id, fd);
	b->egress_attached = true;
	return 0;
}

static void on_spawned(void *ctx, pid_t pid, int pidfd, const char *error)
{
	be_inst *b = ctx;
	b->spawn_pending = false;
	if (b->closing) {
		/* Closed while the zygote was busy: finish the job. */
		if (pidfd >= 0) {
			b->pid = pid;
			b->pidfd = pidfd;
			loop_add(&b->pid_w, pidfd, EPOLLIN, on_exit_cb, b);
			syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
			if (D.shutting_down)
				finalize(b);
		} else {
			finalize(b);
		}
		return;
	}
	if (pid < 0) {
		char msg[600];
		snprintf(msg, sizeof(msg), "could not create the sandbox: %s", error);
		log_msg("%s: %s", b->id, msg);
		b->phase = B_DEAD;
		/* b stays readable until backend_gc, even if the engine
		 * closes it from setup_failed. */
		EV->setup_failed(b->owner, msg);
		if (!b->closing)
			EV->exited(b->owner, 0, 0, NULL);
		return;
	}
	b->pid = pid;
	b->pidfd = pidfd;
	b->phase = B_STARTING;
	loop_add(&b->pid_w, pidfd, EPOLLIN, on_exit_cb, b);
	if (b->compromised[0]) {
		/* Found out before the zygote answered: kill it now. */
		lx_kill(b, b->compromised);
		return;
	}
	if (b->early) {
		/* The executor was faster than the zygote's answer. */
		json_t *f = b->early;
		b->early = NULL;
		handle_frame(b, f);
		json_decref(f);
	}
}

static void close_fds(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

static int lx_create(const profile *p, const char *id, const ab_limits *lim, void *owner,
		     be_inst **out, ab_error *err)
{
	enum tier tier = p->tier;
	if (!zygote_alive(tier) && zygote_pid(tier) <= 0 && !zygote_deferred(tier))
		return ab_error_set(err, -ESRCH, "the %s zygote is not running", p->name);
	be_inst *b = calloc(1, sizeof(*b));
	if (!b)
		return ab_error_set(err, -ENOMEM, "out of memory");
	b->prof = p;
	b->id = id;
	b->owner = owner;
	b->limits = *lim;
	b->phase = B_SPAWNING;
	b->ctl = b->out = b->err = b->pidfd = b->exec_pidfd = b->snap_child_pidfd = -1;
	b->snap_pending = -1;
	b->pid_w.fd = b->ctl_w.fd = b->out_w.fd = b->err_w.fd = b->exec_w.fd = -1;
	b->uid_slot = -1;
	b->vm_peak0_kb = -1;
	b->dec = ab_frame_decoder_new(AB_FRAME_IDLE_MAX);
	int r = 0;
	if (!b->dec) {
		r = ab_error_set(err, -ENOMEM, "out of memory");
		goto fail;
	}
	gid_t host_gid = getegid();
	b->host_uid = geteuid();
	if (D.privileged) {
		b->uid_slot = alloc_uid_slot();
		if (b->uid_slot < 0) {
			r = ab_error_set(err, -EAGAIN, "no free sandbox uid");
			goto fail;
		}
		b->host_uid = D.uid_base + (uid_t)b->uid_slot;
		host_gid = (gid_t)b->host_uid;
	}
	snprintf(b->dir, sizeof(b->dir), "%s/sessions/%s", D.home, id);
	snprintf(b->ws, sizeof(b->ws), "%s/workspace", b->dir);
	if (mkdir(b->dir, 0700) < 0 || mkdir(b->ws, 0755) < 0) {
		r = ab_error_errno(err, -errno, "create workspace %s", b->ws);
		goto fail;
	}
	if (D.private_mounts) {
		/* R4/R5 for the workspace: its size and inode count are capped
		 * like /tmp's, and its pages are charged to the sandbox. */
		char opts[160];
		unsigned long long mb = (unsigned long long)lim->disk_mb;
		snprintf(opts, sizeof(opts), "size=%llum,nr_inodes=%llu,mode=0755,uid=%u,gid=%u",
			 mb + 1, (unsigned long long)ab_disk_inodes(lim->disk_mb),
			 (unsigned)b->host_uid, (unsigned)host_gid);
		if (mount("tmpfs", b->ws, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0) {
			r = ab_error_errno(err, -errno, "mount workspace tmpfs on %s", b->ws);
			goto fail;
		}
		b->ws_mounted = true;
	} else if (D.privileged && chown(b->ws, b->host_uid, host_gid) < 0) {
		r = ab_error_errno(err, -errno, "chown workspace %s", b->ws);
		goto fail;
	}
	if (wants_egress(p) && egress_setup(b, host_gid, err) < 0)
		goto fail;
	/* fds for the zygote: control, stdout, stderr, then the cgroup's. */
	int fds[12] = {-1, -1, -1}, ncg = 0;
	if (!(D.degraded & (1u << AB_LAYER_CGROUP))) {
		r = ab_cgroup_create(id, lim, &b->cg, err);
		if (r == 0)
			r = ncg = ab_jail_open_cgroup_procs(b->cg, fds + 3, err);
		if (r < 0) {
			ab_error_prefix(err, "cgroup");
			goto fail;
		}
	}
	int ctl[2] = {-1, -1}, o[2] = {-1, -1}, e[2] = {-1, -1};
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, ctl) < 0) {
		r = ab_error_errno(err, -errno, "socketpair");
		close_fds(fds + 3, ncg);
		goto fail;
	}
	/* Every message the daemon reads on its end carries the kernel's
	 * record of the writer (check_sender); the executor's end is
	 * remembered to check later that the executor still holds it. */
	int one = 1;
	struct stat peer;
	if (setsockopt(ctl[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0 ||
	    fstat(ctl[1], &peer) < 0 || pipe2(o, O_CLOEXEC) < 0 || pipe2(e, O_CLOEXEC) < 0) {
		r = ab_error_errno(err, -errno, "control socket and output pipes");
		int all[6] = {ctl[0], ctl[1], o[0], o[1], e[0], e[1]};
		close_fds(all, 6);
		close_fds(fds + 3, ncg);
		goto fail;
	}
	b->ctl_peer_dev = peer.st_dev;
	b->ctl_peer_ino = peer.st_ino;
	b->ctl = ctl[0];
	b->out = o[0];
	b->err = e[0];
	fcntl(b->ctl, F_SETFL, O_NONBLOCK);
	fcntl(b->out, F_SETFL, O_NONBLOCK);
	fcntl(b->err, F_SETFL, O_NONBLOCK);
	/* A larger pipe buffer lets bursts of output through without stalling
	 * the sandbox; the engine's cap per run still applies. */
	fcntl(o[1], F_SETPIPE_SZ, 1 << 20);
	fcntl(e[1], F_SETPIPE_SZ, 1 << 20);
	loop_add(&b->ctl_w, b->ctl, EPOLLIN, on_ctl, b);
	loop_add(&b->out_w, b->out, EPOLLIN, on_out, b);
	loop_add(&b->err_w, b->err, EPOLLIN, on_out, b);

	fds[0] = ctl[1];
	fds[1] = o[1];
	fds[2] = e[1];
	json_t *req = json_pack("{s:s, s:s, s:o, s:I, s:I, s:b, s:I}", "op", "spawn", "workspace",
				b->ws, "limits", ab_limits_to_json(lim), "host_uid",
				(json_int_t)b->host_uid, "host_gid", (json_int_t)host_gid,
				"privileged", D.privileged, "degraded", (json_int_t)D.degraded);
	if (req && b->egress_attached &&
	    (json_object_set_new(req, "egress_socket", json_string(b->egress_sock)) < 0 ||
	     json_object_set_new(req, "ca_bundle", json_string(egress_ca_bundle())) < 0)) {
		json_decref(req);
		req = NULL;
	}
	r = zygote_spawn(tier, req, fds, 3 + ncg, on_spawned, b, err);
	json_decref(req);
	close_fds(fds, 3 + ncg);
	if (r < 0)
		goto fail;
	b->spawn_pending = true;
	*out = b;
	return 0;
fail:
	b->closing = true;
	b->owner = NULL; /* the caller learns of the failure from r */
	finalize(b);
	return r;
}

/* Fixed when a sandbox is built: the size of its tmpfs, its processes'
 * descriptor limit (which depends on pids), and for nano the address-space
 * limit that is its memory cap. */
static bool lx_limits_fit(const profile *p, const ab_limits *old, const ab_limits *lim)
{
	bool nano = p->memory_fixed;
	return old->disk_mb == lim->disk_mb && (!nano || old->memory_mb == lim->memory_mb) &&
	       ab_limits_nofile(old, nano) == ab_limits_nofile(lim, nano);
}

static bool lx_adopt_limits(be_inst *b, const ab_limits *old, const ab_limits *lim)
{
	if (!lx_limits_fit(b->prof, old, lim))
		return false;
	/* Pooled sandboxes have the default limits: a request for those
	 * needs no cgroup writes on its critical path. */
	bool same =
	    old->memory_mb == lim->memory_mb && old->pids == lim->pids && old->cpu == lim->cpu;
	if (b->cg && !same) {
		ab_error err = {0};
		if (ab_cgroup_set_limits(b->cg, lim, &err) < 0) {
			log_msg("%s: pooled sandbox unusable: %s", b->id, err.msg);
			return false;
		}
	}
	b->limits = *lim;
	return true;
}

/* ------------------------------------------------------------------ runs */

/* The executor's peak address space in KiB (VmPeak), or -1. */
static int64_t executor_vm_peak_kb(const be_inst *b)
{
	pid_t pid = b->exec_pid; /* pinned by its pidfd since ready */
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
static bool lx_memory_cap_hit(be_inst *b, uint64_t memory_mb)
{
	if (!b->prof->memory_fixed || b->vm_peak0_kb < 0)
		return false;
	int64_t peak = executor_vm_peak_kb(b);
	int64_t before = b->vm_peak0_kb;
	b->vm_peak0_kb = peak;
	int64_t cap = (int64_t)memory_mb << 10;
	struct rlimit st;
	int64_t stack_kb = 8 << 10;
	if (getrlimit(RLIMIT_STACK, &st) == 0 && st.rlim_cur != RLIM_INFINITY &&
	    st.rlim_cur <= (64u << 20))
		stack_kb = (int64_t)(st.rlim_cur >> 10);
	int64_t margin = stack_kb + 64;
	return peak > before && peak <= cap && peak + margin >= cap;
}

static void send_frame_bounded(be_inst *b, json_t *frame)
{
	char *buf = NULL;
	size_t total;
	ab_error err = {0};
	if (ab_frame_encode(frame, &buf, &total, &err) < 0) {
		lx_kill(b, err.msg);
		return;
	}
	/* The executor is idle and reading; a sandbox that stops reading its
	 * control socket gets two seconds before it is killed, so the daemon
	 * never blocks for longer than that. */
	size_t off = 0;
	uint64_t deadline = now_ns() + 2000000000ull;
	while (off < total) {
		ssize_t n = send(b->ctl, buf + off, total - off, MSG_NOSIGNAL);
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
			struct pollfd p = {.fd = b->ctl, .events = POLLOUT};
			poll(&p, 1, (int)((deadline - now) / 1000000) + 1);
			continue;
		}
		break;
	}
	free(buf);
	if (off < total)
		lx_kill(b, "the executor stopped reading its control socket");
}

static void lx_run(be_inst *b, int step, const char *nonce, const char *code, size_t frame_max)
{
	b->phase = B_RUNNING;
	b->step = step;
	snprintf(b->nonce, sizeof(b->nonce), "%s", nonce);
	/* The result may be as large as the run's output limit allows, and
	 * not larger: the executor is told, and fits its result into it. */
	ab_frame_decoder_set_max(b->dec, frame_max);
	json_t *req = json_pack("{s:s, s:i, s:s, s:s, s:I}", "op", "run", "step", step, "nonce",
				nonce, "code", code, "frame_max", (json_int_t)frame_max);
	send_frame_bounded(b, req);
	json_decref(req);
}

static void lx_interrupt(be_inst *b)
{
	/* SIGINT for the executor, whose KeyboardInterrupt ends the run and
	 * keeps the session: straight to it once it is a snapshot's child,
	 * else through init, which forwards it to its child. */
	if (b->exec_forked && b->exec_pidfd >= 0)
		syscall(SYS_pidfd_send_signal, b->exec_pidfd, SIGINT, NULL, 0);
	else if (b->pidfd >= 0)
		syscall(SYS_pidfd_send_signal, b->pidfd, SIGINT, NULL, 0);
}

static void lx_stats(be_inst *b, be_stats *st)
{
	memset(st, 0, sizeof(*st));
	ab_cgroup_stats cs = {0};
	if (b->cg && ab_cgroup_stats_read(b->cg, &cs, NULL) == 0) {
		st->cpu_us = cs.cpu_usage_us;
		st->memory_peak = cs.memory_peak;
		st->oom_kills = cs.oom_kills;
		st->pids_max_hits = cs.pids_max_hits;
	}
}

static const char *lx_compromised(be_inst *b)
{
	return b->compromised[0] ? b->compromised : NULL;
}

static const char *lx_workspace(be_inst *b, uid_t *uid)
{
	*uid = b->host_uid;
	return b->ws;
}

static bool lx_can_create(const profile *p)
{
	return zygote_alive(p->tier);
}

static int lx_creates_pending(const profile *p)
{
	return zygote_pending(p->tier);
}

static bool lx_owns_pid(be_inst *b, pid_t pid)
{
	return b->pid == pid;
}

/* ---------------------------------------------------------------- output */

static void read_output(be_inst *b, int fd)
{
	char buf[65536];
	ssize_t n = read(fd, buf, sizeof(buf));
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		loop_del(fd == b->out ? &b->out_w : &b->err_w);
		return;
	}
	EV->output(b->owner, fd == b->out ? 0 : 1, buf, (size_t)n);
}

/* Reads what is already in the pipe: everything the executor flushed
 * before it sent its result. A grandchild that keeps the pipe open (S2)
 * cannot delay the result: we stop at EAGAIN. */
static void drain_fd(be_inst *b, int fd)
{
	if (fd < 0)
		return;
	for (int i = 0; i < 4096; i++) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, 0) <= 0 || !(p.revents & POLLIN))
			return;
		read_output(b, fd);
	}
}

static void lx_drain(be_inst *b)
{
	drain_fd(b, b->out);
	drain_fd(b, b->err);
}

static void on_out(void *ctx, uint32_t events)
{
	(void)events;
	be_inst *b = ctx;
	/* Which pipe? Both watches share this callback. */
	struct pollfd p[2] = {{.fd = b->out, .events = POLLIN}, {.fd = b->err, .events = POLLIN}};
	poll(p, 2, 0);
	if (b->out >= 0 && (p[0].revents & (POLLIN | POLLHUP)))
		read_output(b, b->out);
	if (b->err >= 0 && (p[1].revents & (POLLIN | POLLHUP)))
		read_output(b, b->err);
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

static void compromise(be_inst *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void compromise(be_inst *b, const char *fmt, ...)
{
	if (b->compromised[0])
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(b->compromised, sizeof(b->compromised), fmt, ap);
	va_end(ap);
	log_msg("%s: compromised: %s", b->id, b->compromised);
	audit_event(
	    "compromise", b->id, b->phase == B_RUNNING ? b->step : -1, "daemon",
	    json_pack("{s:s, s:i}", "reason", b->compromised, "executor_pid", (int)b->exec_pid));
	/* Nothing more is read from the socket: what is already buffered
	 * may have been written by the intruder. */
	loop_del(&b->ctl_w);
	char why[300];
	snprintf(why, sizeof(why), "compromised: %s", b->compromised);
	lx_kill(b, why);
}

/* Returns true if the writer of a message may speak. */
static bool check_sender(be_inst *b, const struct ucred *cred)
{
	if (!cred || cred->pid <= 0) {
		compromise(b, "a control message arrived without the kernel's record of its "
			      "sender");
		return false;
	}
	b->last_sender = cred->pid;
	if (b->exec_pid > 0) {
		if (cred->pid == b->exec_pid)
			return true;
		/* A snapshot in progress: the executor's child that goes on. */
		if (b->snap_pending >= 0 &&
		    (cred->pid == b->snap_child || (b->snap_child == 0 && adopt_snap_child(b, cred->pid))))
			return true;
		compromise(b, "process %d, not the executor (%d), wrote to the control socket",
			   (int)cred->pid, (int)b->exec_pid);
		return false;
	}
	if (b->ctl_first_pid == 0)
		b->ctl_first_pid = cred->pid;
	if (cred->pid == b->ctl_first_pid)
		return true;
	compromise(b,
		   "processes %d and %d both wrote to the control socket before the sandbox "
		   "was ready",
		   (int)b->ctl_first_pid, (int)cred->pid);
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
static bool socket_intact(be_inst *b, bool first)
{
	if (!b->fd_check || b->exec_pidfd < 0)
		return true;
	int fd = (int)syscall(SYS_pidfd_getfd, b->exec_pidfd, 3, 0);
	if (fd < 0 && first && (errno == EPERM || errno == EACCES || errno == ENOSYS)) {
		static bool warned;
		if (!warned)
			log_msg("the executors' control sockets cannot be inspected "
				"(pidfd_getfd: %s); the sender of every control message is "
				"still checked",
				strerror(errno));
		warned = true;
		b->fd_check = false;
		return true;
	}
	if (fd < 0 && errno == ESRCH)
		return true; /* it died: the pidfd reports that */
	if (fd < 0 && errno == EBADF) {
		compromise(b, "the executor no longer has its control socket on fd 3");
		return false;
	}
	if (fd < 0) {
		/* The daemon's own trouble (no free descriptor, memory): the
		 * session cannot be vouched for, but nothing says it lied. */
		char msg[200];
		snprintf(msg, sizeof(msg),
			 "the daemon could not check the executor's control socket: %s",
			 strerror(errno));
		lx_kill(b, msg);
		loop_del(&b->ctl_w);
		return false;
	}
	struct stat st;
	int r = fstat(fd, &st);
	close(fd);
	if (r < 0 || st.st_dev != b->ctl_peer_dev || st.st_ino != b->ctl_peer_ino) {
		compromise(b, "the executor's fd 3 is no longer the control socket it was given");
		return false;
	}
	return true;
}

/* Called with the ready frame: its sender, the one writer so far, must be
 * the sandbox init's child. It becomes the only process that may speak. */
static bool identify_executor(be_inst *b)
{
	pid_t p = b->ctl_first_pid;
	int pidfd = p > 0 ? (int)syscall(SYS_pidfd_open, p, 0) : -1;
	if (pidfd < 0) {
		compromise(b, "the sender of the ready frame (pid %d) cannot be found", (int)p);
		return false;
	}
	/* Read after the pidfd pins the process: if pid p were reused in
	 * between, its parent would not be this init, which reaps nothing
	 * but the executor's relatives and forks nothing but the executor. */
	pid_t ppid = proc_ppid(p);
	/* A resumed copy is the child of its parked snapshot. */
	pid_t parent = b->resuming ? b->resuming->pid : b->pid;
	struct pollfd pf = {.fd = pidfd, .events = POLLIN};
	if (ppid != parent || poll(&pf, 1, 0) != 0) {
		close(pidfd);
		compromise(b,
			   "the ready frame came from pid %d, which is not the sandbox's "
			   "executor (parent %d, expected %d)",
			   (int)p, (int)ppid, (int)parent);
		return false;
	}
	b->exec_pid = p;
	b->exec_pidfd = pidfd;
	b->fd_check = true;
	b->vm_peak0_kb = b->prof->memory_fixed ? executor_vm_peak_kb(b) : -1;
	return socket_intact(b, true);
}

static void handle_frame(be_inst *b, json_t *f)
{
	const char *ev = json_string_value(json_object_get(f, "ev"));
	if (!ev) {
		lx_kill(b, "protocol violation: frame without \"ev\"");
		return;
	}
	if (b->phase == B_SPAWNING && !b->early &&
	    (strcmp(ev, "ready") == 0 || strcmp(ev, "fatal") == 0)) {
		/* The sandbox's first frame can arrive before the zygote has
		 * told us its pid: keep it for on_spawned. */
		b->early = json_incref(f);
		return;
	}
	if (strcmp(ev, "ready") == 0 && b->phase == B_STARTING) {
		if (!identify_executor(b))
			return;
		b->phase = B_IDLE;
		if (b->resuming) {
			snap *sn = b->resuming;
			b->resuming = NULL;
			b->exec_parent = sn;
			b->exec_forked = true;
			b->exec_expected_dead = false;
			loop_add(&b->exec_w, b->exec_pidfd, EPOLLIN, on_exec_exit, b);
			EV->restored(b->owner, sn->id, NULL);
			return;
		}
		EV->ready(b->owner);
	} else if (strcmp(ev, "snapshotted") == 0 && b->snap_pending >= 0 && b->snap_child > 0 &&
		   b->last_sender == b->snap_child) {
		snapshot_done(b, f);
	} else if (strcmp(ev, "snapshot_failed") == 0 && b->snap_pending >= 0 &&
		   b->last_sender == b->exec_pid) {
		snapshot_refused(b, f);
	} else if (strcmp(ev, "fatal") == 0 && b->phase == B_STARTING) {
		const char *e = json_string_value(json_object_get(f, "error"));
		char msg[600];
		snprintf(msg, sizeof(msg), "sandbox set-up failed: %.400s", e ? e : "unknown");
		log_msg("%s: %s", b->id, msg);
		lx_kill(b, msg);
		EV->setup_failed(b->owner, msg);
	} else if (strcmp(ev, "result") == 0 && b->phase == B_RUNNING) {
		/* User code shares the executor's process and can write to
		 * the control socket; a result without this run's nonce is a
		 * forgery and is ignored: the run goes on, under its timer. */
		const char *nonce = json_string_value(json_object_get(f, "nonce"));
		if (!nonce || strcmp(nonce, b->nonce) != 0)
			return;
		if (!socket_intact(b, false))
			return;
		b->phase = B_IDLE;
		ab_frame_decoder_set_max(b->dec, AB_FRAME_IDLE_MAX);
		EV->result(b->owner, f);
	} else {
		/* "started", and frames out of sequence, which can only come
		 * from user code writing to the control socket: ignored rather
		 * than trusted. */
	}
}

/* Reads one message with its sender's credentials. The control buffer has
 * room for the credentials only: descriptors a sandbox tries to pass are
 * never installed in the daemon (the kernel drops them and sets
 * MSG_CTRUNC), and passing any is itself a compromise. */
static ssize_t recv_with_cred(int fd, char *buf, size_t len, struct ucred *cred, bool *has_cred,
			      bool *passed_fds)
{
	union {
		struct cmsghdr h;
		char b[CMSG_SPACE(sizeof(struct ucred))];
	} cm;
	struct iovec iov = {.iov_base = buf, .iov_len = len};
	struct msghdr m = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.b, .msg_controllen = sizeof(cm.b)};
	ssize_t n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	*has_cred = *passed_fds = false;
	if (n <= 0)
		return n;
	*passed_fds = (m.msg_flags & MSG_CTRUNC) != 0;
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS &&
		    c->cmsg_len == CMSG_LEN(sizeof(struct ucred))) {
			memcpy(cred, CMSG_DATA(c), sizeof(*cred));
			*has_cred = true;
		} else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
			size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < nfd; i++) {
				int d;
				memcpy(&d, CMSG_DATA(c) + i * sizeof(int), sizeof(d));
				close(d);
			}
			*passed_fds = true;
		}
	}
	return n;
}

static void on_ctl(void *ctx, uint32_t events)
{
	(void)events;
	be_inst *b = ctx;
	if (b->compromised[0])
		return;
	char buf[65536];
	struct ucred cred = {0};
	bool has_cred, passed_fds;
	ssize_t n = recv_with_cred(b->ctl, buf, sizeof(buf), &cred, &has_cred, &passed_fds);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		loop_del(&b->ctl_w);
		return; /* the exit itself arrives through the pidfd */
	}
	if (!check_sender(b, has_cred ? &cred : NULL))
		return;
	if (passed_fds) {
		compromise(b, "process %d passed descriptors on the control socket", (int)cred.pid);
		return;
	}
	ab_error err = {0};
	if (ab_frame_decoder_feed(b->dec, buf, (size_t)n, &err) < 0) {
		char msg[600];
		snprintf(msg, sizeof(msg), "protocol violation: %s", err.msg);
		lx_kill(b, msg);
		return;
	}
	for (;;) {
		json_t *f = NULL;
		int r = ab_frame_decoder_next(b->dec, &f, &err);
		if (r == 0)
			break;
		if (r < 0) {
			char msg[600];
			snprintf(msg, sizeof(msg), "protocol violation: %s", err.msg);
			lx_kill(b, msg);
			return;
		}
		/* The engine may close the instance while it handles a
		 * frame; b stays readable until backend_gc. */
		handle_frame(b, f);
		json_decref(f);
		if (b->phase == B_DEAD || b->compromised[0] || b->closing)
			return;
	}
}

/* ------------------------------------------------------------ time travel
 *
 * Heavy sandboxes keep parked copies of their executor (docs/time-travel.md,
 * executor/snapshot.c). On a snapshot request the executor forks: the
 * parent parks (it becomes snapshot id and answers on its own socket), the
 * child goes on as the executor on the control socket. So the executor's
 * pid changes with every snapshot; the daemon accepts the new one only if
 * the kernel says it is the old executor's child, and it pins it with a
 * pidfd before it believes anything it says. A parked snapshot runs no
 * Python: what it reports (the executor's end, "parked") is checked to come
 * from its pid, which is the pid of an executor the daemon already knew.
 * Inspections run in throwaway copies whose answers are accepted only
 * with the inspection's nonce. */

/* A variables listing is at most about 520 KB (1,000 names, reprs cut at
 * 200 characters, types at 300 bytes). */
#define SNAP_FRAME_MAX (1u << 20)

static snap *snap_graveyard;

static snap *snap_find(be_inst *b, int id)
{
	for (snap *s = b->snaps; s; s = s->next)
		if (s->id == id)
			return s;
	return NULL;
}

static void snap_free(be_inst *b, snap *sn)
{
	for (snap **p = &b->snaps; *p; p = &(*p)->next)
		if (*p == sn) {
			*p = sn->next;
			break;
		}
	if (b->exec_parent == sn)
		b->exec_parent = NULL;
	if (b->resuming == sn)
		b->resuming = NULL;
	loop_del(&sn->w);
	loop_del(&sn->pid_w);
	if (sn->fd >= 0)
		close(sn->fd);
	/* The pid of a parked snapshot is the executor's old pid: the
	 * executor's own pidfd when the snapshot kept it. */
	if (sn->pidfd >= 0 && sn->pidfd != b->exec_pidfd)
		close(sn->pidfd);
	ab_frame_decoder_free(sn->dec);
	sn->fd = sn->pidfd = -1;
	sn->dec = NULL;
	/* Freed with the instances (backend_gc): events for its watches may
	 * still be queued in this batch. */
	sn->next = snap_graveyard;
	snap_graveyard = sn;
}

static void snap_lost(be_inst *b, snap *sn, const char *why)
{
	int id = sn->id;
	if (b->snap_pending == id && !sn->parked) {
		/* The executor refused to fork and closed its end: its answer
		 * on the control socket says why (snapshot_refused). */
		loop_del(&sn->w);
		return;
	}
	bool inspecting = sn->nonce[0] && !sn->answered;
	snap_free(b, sn);
	if (inspecting)
		EV->inspected(b->owner, id, NULL, why);
	if (!b->closing)
		EV->snapshot_lost(b->owner, id, why);
}

/* The executor's end of its life, as its parked parent reported it. */
static void snap_frame(be_inst *b, snap *sn, pid_t sender, json_t *f)
{
	const char *ev = json_string_value(json_object_get(f, "ev"));
	if (!ev)
		return;
	/* The answer of an inspection: from the throwaway copy (or, when it
	 * timed out, the parked process); only with the inspection's nonce.
	 * The next inspection may be asked for at once: the parked process
	 * reads it once this copy is reaped. */
	if (strcmp(ev, "inspected") == 0 && sn->nonce[0] && !sn->answered) {
		const char *nonce = json_string_value(json_object_get(f, "nonce"));
		if (nonce && strcmp(nonce, sn->nonce) == 0) {
			sn->answered = true;
			sn->nonce[0] = '\0';
			EV->inspected(b->owner, sn->id, f, NULL);
		}
		return;
	}
	if (sender == sn->pid) {
		if (strcmp(ev, "parked") == 0) {
			sn->parked = true;
		} else if (strcmp(ev, "exited") == 0 && b->exec_parent == sn) {
			json_t *st = json_object_get(f, "status");
			if (json_is_integer(st) && !b->exec_status_known) {
				b->exec_status = (int)json_integer_value(st);
				b->exec_status_known = true;
			}
		} else if (strcmp(ev, "resume_failed") == 0 && b->resuming == sn) {
			b->resuming = NULL;
			lx_kill(b, "the snapshot could not be copied to resume it");
		} else if (strcmp(ev, "inspect_ended") == 0 && sn->nonce[0]) {
			const char *nonce = json_string_value(json_object_get(f, "nonce"));
			if (nonce && strcmp(nonce, sn->nonce) == 0) {
				bool answered = sn->answered;
				sn->nonce[0] = '\0';
				if (!answered)
					EV->inspected(b->owner, sn->id, NULL,
						      "the copy ended without an answer");
			}
			/* Half a frame left by the throwaway (or what it
			 * started) would sit in the daemon for good. */
			if (ab_frame_decoder_buffered(sn->dec) > 0)
				snap_lost(b, sn, "its socket was left holding half a frame");
		}
		return;
	}
	/* Anyone else on this socket is a throwaway copy or something it
	 * started: nothing but an answer (above) counts. */
}

static void on_snap(void *ctx, uint32_t events)
{
	(void)events;
	snap *sn = ctx;
	be_inst *b = sn->b;
	char buf[65536];
	struct ucred cred = {0};
	bool has_cred, passed;
	ssize_t n = recv_with_cred(sn->fd, buf, sizeof(buf), &cred, &has_cred, &passed);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		snap_lost(b, sn, "the parked snapshot ended");
		return;
	}
	ab_error err = {0};
	if (!has_cred || passed || ab_frame_decoder_feed(sn->dec, buf, (size_t)n, &err) < 0) {
		snap_lost(b, sn, "its socket carried something else than frames");
		return;
	}
	/* Outside an inspection only the copy itself writes: anyone else is
	 * something an inspection left running. */
	if (cred.pid != sn->pid && !sn->nonce[0]) {
		snap_lost(b, sn, "a process other than the copy wrote to its socket");
		return;
	}
	for (;;) {
		json_t *f = NULL;
		int r = ab_frame_decoder_next(sn->dec, &f, &err);
		if (r == 0)
			return;
		if (r < 0) {
			snap_lost(b, sn, "its socket carried something else than frames");
			return;
		}
		snap_frame(b, sn, cred.pid, f);
		json_decref(f);
		if (!snap_find(b, sn->id) || b->phase == B_DEAD)
			return; /* freed or killed meanwhile */
	}
}

static void on_snap_exit(void *ctx, uint32_t events)
{
	(void)events;
	snap *sn = ctx;
	snap_lost(sn->b, sn, "the parked snapshot's process ended");
}

static int lx_snapshot(be_inst *b, int id, ab_error *err)
{
	if (b->prof->restricted)
		return ab_error_set(err, -ENOTSUP,
				    "the %s tier cannot copy its interpreter (no fork)", b->prof->name);
	if (b->phase != B_IDLE || b->exec_pid <= 0 || b->snap_pending >= 0 || b->resuming)
		return ab_error_set(err, -EBUSY, "the executor is not idle");
	if (snap_find(b, id))
		return ab_error_set(err, -EEXIST, "snapshot %d exists", id);
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return ab_error_errno(err, -errno, "socketpair");
	int one = 1;
	snap *sn = calloc(1, sizeof(*sn));
	ab_frame_decoder *dec = ab_frame_decoder_new(SNAP_FRAME_MAX);
	if (!sn || !dec || setsockopt(sv[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0) {
		free(sn);
		ab_frame_decoder_free(dec);
		close(sv[0]);
		close(sv[1]);
		return ab_error_set(err, -ENOMEM, "snapshot: out of resources");
	}
	fcntl(sv[0], F_SETFL, O_NONBLOCK);
	json_t *req = json_pack("{s:s, s:i}", "op", "snapshot", "id", id);
	char *text = NULL;
	size_t len = 0;
	int r = ab_frame_encode(req, &text, &len, err);
	json_decref(req);
	/* One small frame to an idle executor: it fits the socket's buffer. */
	if (r == 0 && (r = ab__send_fds(b->ctl, text, len, &sv[1], 1)) < 0)
		ab_error_errno(err, r, "snapshot request");
	free(text);
	close(sv[1]);
	if (r < 0) {
		free(sn);
		ab_frame_decoder_free(dec);
		close(sv[0]);
		return r;
	}
	sn->b = b;
	sn->id = id;
	sn->fd = sv[0];
	sn->dec = dec;
	sn->pid = b->exec_pid; /* the parent parks: the executor as it is */
	sn->root = b->exec_parent == NULL && !b->resuming;
	sn->pidfd = -1;
	sn->w.fd = sn->pid_w.fd = -1;
	loop_add(&sn->w, sn->fd, EPOLLIN, on_snap, sn);
	sn->next = b->snaps;
	b->snaps = sn;
	b->snap_pending = id;
	b->snap_child = 0;
	return 0;
}

/* The executor's child spoke: is it the one that goes on? */
static bool adopt_snap_child(be_inst *b, pid_t p)
{
	int pidfd = (int)syscall(SYS_pidfd_open, p, 0);
	if (pidfd < 0)
		return false;
	/* Read after the pidfd pins it: a recycled pid would not be the
	 * executor's child. */
	struct pollfd pf = {.fd = pidfd, .events = POLLIN};
	if (proc_ppid(p) != b->exec_pid || poll(&pf, 1, 0) != 0) {
		close(pidfd);
		return false;
	}
	b->snap_child = p;
	b->snap_child_pidfd = pidfd;
	return true;
}

static void on_exec_exit(void *ctx, uint32_t events);

/* "snapshotted": the child goes on as the executor; the old executor's
 * pidfd now pins the parked snapshot. */
static void snapshot_done(be_inst *b, json_t *f)
{
	snap *sn = snap_find(b, b->snap_pending);
	int id = b->snap_pending;
	b->snap_pending = -1;
	if (!sn) {
		lx_kill(b, "protocol violation: a snapshot nobody asked for");
		return;
	}
	sn->pidfd = b->exec_pidfd;
	/* The fork happened: the parent is parking (its "parked" may come a
	 * moment later; requests wait in its socket until it reads them). */
	sn->parked = true;
	loop_del(&b->exec_w);
	loop_add(&sn->pid_w, sn->pidfd, EPOLLIN, on_snap_exit, sn);
	b->exec_pid = b->snap_child;
	b->exec_pidfd = b->snap_child_pidfd;
	b->snap_child = 0;
	b->snap_child_pidfd = -1;
	b->exec_parent = sn;
	b->exec_forked = true;
	b->exec_status_known = false;
	loop_add(&b->exec_w, b->exec_pidfd, EPOLLIN, on_exec_exit, b);
	if (!socket_intact(b, false))
		return;
	json_t *kept = json_object_get(f, "not_kept");
	EV->snapshotted(b->owner, id, json_is_object(kept) ? kept : NULL, NULL);
}

static void snapshot_refused(be_inst *b, json_t *f)
{
	int id = b->snap_pending;
	b->snap_pending = -1;
	if (b->snap_child_pidfd >= 0)
		close(b->snap_child_pidfd);
	b->snap_child = 0;
	b->snap_child_pidfd = -1;
	snap *sn = snap_find(b, id);
	if (sn)
		snap_free(b, sn);
	char why[300];
	snprintf(why, sizeof(why), "%.250s",
		 json_string_value(json_object_get(f, "error")) ?: "the executor refused");
	EV->snapshotted(b->owner, id, NULL, why);
}

/* The executor died while it was not init's child (a parked snapshot is
 * its parent): the sandbox lives on with its snapshots, every other
 * process of it is killed, and the engine hears of the end with the
 * status the parent reported. */
static void on_exec_exit(void *ctx, uint32_t events)
{
	(void)events;
	be_inst *b = ctx;
	loop_del(&b->exec_w);
	if (b->exec_expected_dead || b->closing)
		return;
	/* Its parent reports the status as soon as it reaps it: a moment
	 * after the pidfd said so. */
	snap *parent = b->exec_parent;
	for (int i = 0; i < 20 && parent && !b->exec_status_known; i++) {
		struct pollfd pf = {.fd = parent->fd, .events = POLLIN};
		if (poll(&pf, 1, 5) > 0) {
			on_snap(parent, POLLIN);
			parent = b->exec_parent;
		}
	}
	lx_drain(b);
	b->phase = B_DEAD;
	/* What the dead executor left half-sent is garbage: the memory goes
	 * now, not when the session is closed (a restore makes a new one). */
	loop_del(&b->ctl_w);
	if (b->ctl >= 0)
		close(b->ctl);
	b->ctl = -1;
	ab_frame_decoder_free(b->dec);
	b->dec = NULL;
	if (b->snap_pending >= 0) {
		json_t *f = json_pack("{s:s}", "error", "the executor ended before the copy was made");
		snapshot_refused(b, f);
		json_decref(f);
	}
	int code = CLD_KILLED, status = SIGKILL;
	if (b->exec_status_known) {
		if (WIFEXITED(b->exec_status)) {
			code = CLD_EXITED;
			status = WEXITSTATUS(b->exec_status);
		} else if (WIFSIGNALED(b->exec_status)) {
			status = WTERMSIG(b->exec_status);
		}
	}
	pid_t keep[1 + 256];
	size_t n = 0;
	keep[n++] = b->pid;
	for (snap *s = b->snaps; s && n < sizeof(keep) / sizeof(keep[0]); s = s->next)
		keep[n++] = s->pid;
	if (b->cg)
		ab_cgroup_kill_except(b->cg, keep, n, 2000, NULL, NULL);
	EV->exited(b->owner, code, status, b->kill_reason[0] ? b->kill_reason : NULL);
}

static int lx_restore(be_inst *b, int id, ab_error *err)
{
	snap *sn = snap_find(b, id);
	if (!sn || !sn->parked)
		return ab_error_set(err, -ENOENT, "snapshot %d is not parked", id);
	if (b->closing || b->pidfd < 0 || b->compromised[0])
		return ab_error_set(err, -ESRCH, "the sandbox is gone");
	if (b->snap_pending >= 0 || b->resuming)
		return ab_error_set(err, -EBUSY, "a snapshot or a restore is in progress");
	int sv[2];
	struct stat peer;
	int one = 1;
	ab_frame_decoder *dec = ab_frame_decoder_new(AB_FRAME_IDLE_MAX);
	if (!dec)
		return ab_error_set(err, -ENOMEM, "out of memory");
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		ab_frame_decoder_free(dec);
		return ab_error_errno(err, -errno, "socketpair");
	}
	if (setsockopt(sv[0], SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0 ||
	    fstat(sv[1], &peer) < 0) {
		int e = -errno;
		close(sv[0]);
		close(sv[1]);
		ab_frame_decoder_free(dec);
		return ab_error_errno(err, e, "control socket");
	}
	/* Everything but init and the parked snapshots goes: the executor,
	 * whatever it started. Its end is no news. */
	b->exec_expected_dead = true;
	loop_del(&b->exec_w);
	pid_t keep[1 + 256];
	size_t n = 0;
	keep[n++] = b->pid;
	for (snap *s = b->snaps; s && n < sizeof(keep) / sizeof(keep[0]); s = s->next)
		keep[n++] = s->pid;
	/* What a copy cannot bring back is named in the rewind's result:
	 * the executor's other threads, the processes it had started. */
	b->restore_threads = 0;
	if (b->exec_pid > 0 && b->phase != B_DEAD) {
		char task[64];
		snprintf(task, sizeof(task), "/proc/%d/task", (int)b->exec_pid);
		DIR *d = opendir(task);
		struct dirent *de;
		while (d && (de = readdir(d)))
			b->restore_threads += de->d_name[0] != '.';
		if (d)
			closedir(d);
		if (b->restore_threads > 0)
			b->restore_threads--;
	}
	int killed = 0;
	bool exec_alive = b->phase != B_DEAD;
	if (b->cg && ab_cgroup_kill_except(b->cg, keep, n, 2000, &killed, err) < 0) {
		close(sv[0]);
		close(sv[1]);
		ab_frame_decoder_free(dec);
		return ab_error_prefix(err, "stopping the running interpreter");
	}
	if (!b->cg && b->exec_pidfd >= 0)
		syscall(SYS_pidfd_send_signal, b->exec_pidfd, SIGKILL, NULL, 0);
	b->restore_processes = killed - (exec_alive && killed > 0 ? 1 : 0);
	/* The new control socket replaces the old one. */
	loop_del(&b->ctl_w);
	if (b->ctl >= 0)
		close(b->ctl);
	ab_frame_decoder_free(b->dec);
	b->dec = dec;
	b->ctl = sv[0];
	fcntl(b->ctl, F_SETFL, O_NONBLOCK);
	b->ctl_peer_dev = peer.st_dev;
	b->ctl_peer_ino = peer.st_ino;
	b->ctl_first_pid = 0;
	if (b->exec_pidfd >= 0 && (!b->exec_parent || b->exec_pidfd != b->exec_parent->pidfd))
		close(b->exec_pidfd);
	b->exec_pidfd = -1;
	b->exec_pid = 0;
	b->exec_parent = NULL;
	b->exec_status_known = false;
	if (b->snap_child_pidfd >= 0)
		close(b->snap_child_pidfd);
	b->snap_child_pidfd = -1;
	b->snap_child = 0;
	loop_add(&b->ctl_w, b->ctl, EPOLLIN, on_ctl, b);
	json_t *req = json_pack("{s:s}", "op", "resume");
	char *text = NULL;
	size_t len = 0;
	int r = ab_frame_encode(req, &text, &len, err);
	json_decref(req);
	if (r == 0 && (r = ab__send_fds(sn->fd, text, len, &sv[1], 1)) < 0)
		ab_error_errno(err, r, "resume request");
	free(text);
	close(sv[1]);
	if (r < 0) {
		lx_kill(b, "the snapshot could not be asked to resume");
		return r;
	}
	b->resuming = sn;
	b->phase = B_STARTING;
	b->kill_reason[0] = '\0';
	return 0;
}

static int lx_inspect(be_inst *b, int id, const char *op, const char *expr, double timeout,
		      ab_error *err)
{
	snap *sn = snap_find(b, id);
	if (!sn || !sn->parked)
		return ab_error_set(err, -ENOENT, "snapshot %d is not parked", id);
	if (sn->nonce[0])
		return ab_error_set(err, -EBUSY, "snapshot %d is being inspected", id);
	unsigned char rnd[16];
	if (getrandom(rnd, sizeof(rnd), 0) != sizeof(rnd))
		return ab_error_set(err, -EIO, "no randomness for a nonce");
	for (int i = 0; i < 16; i++)
		snprintf(sn->nonce + 2 * i, 3, "%02x", rnd[i]);
	sn->answered = false;
	json_t *req = json_pack("{s:s, s:s, s:f}", "op", op, "nonce", sn->nonce, "timeout", timeout);
	if (expr)
		json_object_set_new(req, "expr", json_string(expr));
	char *text = NULL;
	size_t len = 0;
	int r = ab_frame_encode(req, &text, &len, err);
	json_decref(req);
	if (r == 0 && (r = ab__send_fds(sn->fd, text, len, NULL, 0)) < 0)
		ab_error_errno(err, r, "inspection request");
	free(text);
	if (r < 0)
		sn->nonce[0] = '\0';
	return r;
}

static bool lx_discard(be_inst *b, int id)
{
	snap *sn = snap_find(b, id);
	if (!sn)
		return true;
	/* The executor's parent reports its end; the sandbox's first
	 * executor is init's child, and init ends the sandbox when it ends. */
	if (sn == b->exec_parent || sn->root)
		return false;
	/* Closing its socket ends it (its read fails); an exit request first
	 * for a snapshot that is busy with an inspection. */
	json_t *req = json_pack("{s:s}", "op", "exit");
	char *text = NULL;
	size_t len = 0;
	if (ab_frame_encode(req, &text, &len, NULL) == 0)
		(void)ab__send_fds(sn->fd, text, len, NULL, 0);
	free(text);
	json_decref(req);
	snap_free(b, sn);
	return true;
}

static int64_t lx_snapshot_bytes(be_inst *b, int id)
{
	snap *sn = snap_find(b, id);
	if (!sn || sn->pid <= 0)
		return -1;
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)sn->pid);
	FILE *f = fopen(path, "re");
	if (!f)
		return -1;
	long long kb, total = 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Private_Clean: %lld kB", &kb) == 1 ||
		    sscanf(line, "Private_Dirty: %lld kB", &kb) == 1)
			total += kb;
	fclose(f);
	/* The pidfd still pins the process: the numbers were its own. */
	struct pollfd pf = {.fd = sn->pidfd, .events = POLLIN};
	if (sn->pidfd < 0 || poll(&pf, 1, 0) != 0)
		return -1;
	return total * 1024;
}

static json_t *lx_restore_stopped(be_inst *b)
{
	return json_pack("{s:i, s:i}", "processes", b->restore_processes, "threads",
			 b->restore_threads);
}

static uint64_t lx_memory_usage(be_inst *b)
{
	return b->cg ? ab_cgroup_memory_usage(b->cg) : 0;
}

static void snaps_free_all(be_inst *b)
{
	while (b->snaps)
		snap_free(b, b->snaps);
	if (b->snap_child_pidfd >= 0)
		close(b->snap_child_pidfd);
	b->snap_child_pidfd = -1;
	loop_del(&b->exec_w);
}

/* -------------------------------------------------------------- the end */

static void on_exit_cb(void *ctx, uint32_t events)
{
	(void)events;
	be_inst *b = ctx;
	siginfo_t si = {0};
	if (waitid(P_PIDFD, (id_t)b->pidfd, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0)
		return;
	loop_del(&b->pid_w);
	close(b->pidfd);
	b->pidfd = -1;
	if (b->closing) {
		finalize(b);
		return;
	}
	/* Whatever the executor flushed before dying belongs to this run. */
	lx_drain(b);
	b->phase = B_DEAD;
	if (b->snap_pending >= 0) {
		json_t *f = json_pack("{s:s}", "error", "the sandbox ended before the copy was made");
		snapshot_refused(b, f);
		json_decref(f);
	}
	/* What is left of the sandbox (processes that escaped init's death
	 * in the cgroup) goes with it. */
	if (b->cg)
		ab_cgroup_kill_all(b->cg, 2000, NULL);
	EV->exited(b->owner, si.si_code, si.si_status, b->kill_reason[0] ? b->kill_reason : NULL);
}

static void lx_kill(be_inst *b, const char *why)
{
	if (!b->kill_reason[0] && why)
		snprintf(b->kill_reason, sizeof(b->kill_reason), "%s", why);
	/* An executor that is a snapshot's child dies alone (and whatever it
	 * started): the sandbox and its snapshots stay for a rewind. Not so
	 * for a compromised session, where nothing is trusted any more. */
	if (b->exec_forked && !b->compromised[0] && b->pidfd >= 0 && b->cg) {
		pid_t keep[1 + 256];
		size_t n = 0;
		keep[n++] = b->pid;
		for (snap *s = b->snaps; s && n < sizeof(keep) / sizeof(keep[0]); s = s->next)
			keep[n++] = s->pid;
		if (ab_cgroup_kill_except(b->cg, keep, n, 2000, NULL, NULL) == 0)
			return; /* on_exec_exit follows */
	}
	if (b->pidfd >= 0)
		syscall(SYS_pidfd_send_signal, b->pidfd, SIGKILL, NULL, 0);
	if (b->cg)
		ab_cgroup_kill_all(b->cg, 2000, NULL);
	/* The death itself is processed by on_exit_cb. */
}

/* Closing is two steps: close() kills the init at once, and finalize()
 * releases everything once the init is reaped (on_exit_cb) or, for a
 * sandbox the zygote is still creating, once the zygote answers
 * (on_spawned). The daemon never blocks waiting for a sandbox to die. */
static void lx_close(be_inst *b)
{
	if (b->closing)
		return;
	b->closing = true;
	if (b->pidfd >= 0) {
		syscall(SYS_pidfd_send_signal, b->pidfd, SIGKILL, NULL, 0);
		return;
	}
	if (b->spawn_pending)
		return;
	finalize(b);
}

static void lx_close_now(be_inst *b)
{
	lx_close(b);
	if (b->spawn_pending)
		return; /* finalized when zygote_stop() fails its request */
	if (b->pidfd >= 0) {
		siginfo_t si;
		waitid(P_PIDFD, (id_t)b->pidfd, &si, WEXITED);
		loop_del(&b->pid_w);
		close(b->pidfd);
		b->pidfd = -1;
		finalize(b);
	}
}

static void finalize(be_inst *b)
{
	snaps_free_all(b);
	loop_del(&b->pid_w);
	if (b->pidfd >= 0)
		close(b->pidfd);
	loop_del(&b->ctl_w);
	loop_del(&b->out_w);
	loop_del(&b->err_w);
	if (b->exec_pidfd >= 0)
		close(b->exec_pidfd);
	if (b->ctl >= 0)
		close(b->ctl);
	if (b->out >= 0)
		close(b->out);
	if (b->err >= 0)
		close(b->err);
	ab_cgroup_destroy(b->cg);
	if (b->egress_attached) {
		/* b->id, not the id at attach: a promotion renames the
		 * session (engine/promote.c, egress_renamed). */
		egress_detach(b->id);
		b->egress_attached = false;
	}
	if (b->egress_sock[0] && unlink(b->egress_sock) < 0 && errno != ENOENT)
		log_msg("%s: unlink %s: %s", b->id, b->egress_sock, strerror(errno));
	b->egress_sock[0] = '\0';
	if (b->ws_mounted && umount2(b->ws, MNT_DETACH) < 0)
		log_msg("%s: unmount workspace: %s", b->id, strerror(errno));
	if (b->dir[0] && remove_tree(b->dir) < 0)
		log_msg("%s: could not remove %s completely", b->id, b->dir);
	free_uid_slot(b->uid_slot);
	ab_frame_decoder_free(b->dec);
	json_decref(b->early);
	b->pidfd = b->exec_pidfd = b->ctl = b->out = b->err = -1;
	b->cg = NULL;
	b->dec = NULL;
	b->early = NULL;
	b->phase = B_DEAD;
	/* Freed after the current loop iteration (backend_gc): events for
	 * its watches may still be queued in this batch. */
	b->gc_next = graveyard;
	graveyard = b;
	if (b->owner)
		EV->released(b->owner);
}

void backend_gc(void)
{
	while (snap_graveyard) {
		snap *n = snap_graveyard->next;
		free(snap_graveyard);
		snap_graveyard = n;
	}
	while (graveyard) {
		be_inst *n = graveyard->gc_next;
		free(graveyard);
		graveyard = n;
	}
}

/* Removes a tree without following symlinks. Directories the sandbox made
 * unreadable are opened up first (an unprivileged daemon needs that). The
 * sandbox is dead when this runs, so the tree no longer changes. */
static int remove_at(int parent, const char *name, int depth)
{
	if (unlinkat(parent, name, 0) == 0 || errno == ENOENT)
		return 0;
	if (errno != EISDIR && errno != EPERM)
		return -errno;
	if (depth > 10000)
		return -ELOOP;
	int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0) {
		fchmodat(parent, name, 0700, 0);
		fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0)
			return -errno;
	}
	fchmod(fd, 0700);
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	int r = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		int rr = remove_at(dirfd(d), de->d_name, depth + 1);
		if (rr < 0)
			r = rr;
	}
	closedir(d);
	if (unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
		r = -errno;
	return r;
}

int remove_tree(const char *path)
{
	return remove_at(AT_FDCWD, path, 0);
}

const backend_ops linux_backend = {
    .name = "linux",
    .create = lx_create,
    .adopt_limits = lx_adopt_limits,
    .limits_fit = lx_limits_fit,
    .run = lx_run,
    .interrupt = lx_interrupt,
    .kill = lx_kill,
    .drain = lx_drain,
    .stats = lx_stats,
    .memory_cap_hit = lx_memory_cap_hit,
    .compromised = lx_compromised,
    .workspace = lx_workspace,
    .close = lx_close,
    .close_now = lx_close_now,
    .owns_pid = lx_owns_pid,
    .can_create = lx_can_create,
    .creates_pending = lx_creates_pending,
    .snapshot = lx_snapshot,
    .restore = lx_restore,
    .inspect = lx_inspect,
    .discard = lx_discard,
    .snapshot_bytes = lx_snapshot_bytes,
    .memory_usage = lx_memory_usage,
    .restore_stopped = lx_restore_stopped,
};
