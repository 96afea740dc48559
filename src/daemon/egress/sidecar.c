/* sidecar.c - starting and supervising agentbox-egress (docs/egress.md,
 * "Daemon <-> sidecar").
 *
 * The sidecar runs as a child of the daemon with one end of a
 * SOCK_SEQPACKET pair as its fd 3 and a pipe as its stderr, whose lines go
 * to the daemon's log. Its exit (a pidfd) and its silence (no pong for
 * PING_DEAD_S) are recorded as egress.sidecar events, and it is started
 * again after a backoff that doubles from 100 ms to 5 s (and starts over
 * once a sidecar has stayed up for a while). When it says ready, every
 * sandbox is attached again from the daemon's own copies of the listening
 * sockets, so a restart loses connections in flight and nothing else.
 *
 * Everything it sends is untrusted: messages are bounded (EG_MSG_MAX),
 * must be JSON objects with a known "ev", any descriptor that rides along
 * is closed, and request events are re-built field by field before they
 * are recorded (state.c). */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "egress/sidecar.h"
#include "engine/engine.h"
#include "record/redact.h"

#define EG_MSG_MAX (1u << 20)
#define PING_EVERY_S 1.0
#define PING_DEAD_S 5.0
#define BACKOFF_MIN_S 0.1
#define BACKOFF_MAX_S 5.0
#define STABLE_S 10.0 /* up this long: the next restart starts from the minimum */

enum sc_state { SC_DISABLED, SC_STARTING, SC_RUNNING, SC_DOWN };
static const char *const state_names[] = {"disabled", "starting", "running", "down"};

static struct {
	char **argv; /* argv[0] is the executable */
	enum sc_state state;
	pid_t pid;
	int pidfd, sock, errfd;
	loop_watch pid_w, sock_w, err_w;
	loop_timer restart_t, ping_t;
	bool timers_ok, stopping, hung;
	unsigned restarts;
	double backoff;
	uint64_t started_ns, alive_ns;
	json_int_t seq;
	char errbuf[512];
	size_t errlen;
	unsigned unknown_logged;
} sc = {.state = SC_DISABLED, .pidfd = -1, .sock = -1, .errfd = -1, .backoff = BACKOFF_MIN_S};

static char *msgbuf;

static int spawn(ab_error *err);

bool sidecar_ready(void)
{
	return sc.state == SC_RUNNING;
}

bool sidecar_owns_pid(pid_t pid)
{
	return pid > 0 && pid == sc.pid;
}

json_t *sidecar_status(void)
{
	return json_pack("{s:s, s:o, s:i}", "state", state_names[sc.state], "pid",
			 sc.pid > 0 ? json_integer(sc.pid) : json_null(), "restarts",
			 (int)sc.restarts);
}

/* --------------------------------------------------------------- stderr */

/* One line of the sidecar's stderr into the daemon's log, with anything
 * that is not printable ASCII shown as '?'. */
static void log_line(const char *s, size_t n)
{
	char line[sizeof(sc.errbuf) + 1];
	for (size_t i = 0; i < n && i < sizeof(line) - 1; i++)
		line[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
	line[n < sizeof(line) - 1 ? n : sizeof(line) - 1] = '\0';
	log_msg("agentbox-egress: %s", line);
}

static void on_stderr(void *ctx, uint32_t events)
{
	(void)ctx;
	(void)events;
	for (int rounds = 0; rounds < 16; rounds++) {
		ssize_t n = read(sc.errfd, sc.errbuf + sc.errlen, sizeof(sc.errbuf) - sc.errlen);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0 || errno != EAGAIN) {
				if (sc.errlen)
					log_line(sc.errbuf, sc.errlen);
				sc.errlen = 0;
				loop_del(&sc.err_w);
				close(sc.errfd);
				sc.errfd = -1;
			}
			return;
		}
		sc.errlen += (size_t)n;
		char *nl;
		while ((nl = memchr(sc.errbuf, '\n', sc.errlen))) {
			log_line(sc.errbuf, (size_t)(nl - sc.errbuf));
			sc.errlen -= (size_t)(nl - sc.errbuf) + 1;
			memmove(sc.errbuf, nl + 1, sc.errlen);
		}
		if (sc.errlen == sizeof(sc.errbuf)) {
			log_line(sc.errbuf, sc.errlen);
			sc.errlen = 0;
		}
	}
}

/* -------------------------------------------------------------- the end */

static void close_fds(void)
{
	if (sc.errfd >= 0)
		on_stderr(NULL, 0); /* what it said last */
	if (sc.errfd >= 0) {
		loop_del(&sc.err_w);
		close(sc.errfd);
		sc.errfd = -1;
	}
	if (sc.sock >= 0) {
		loop_del(&sc.sock_w);
		close(sc.sock);
		sc.sock = -1;
	}
	if (sc.pidfd >= 0) {
		loop_del(&sc.pid_w);
		close(sc.pidfd);
		sc.pidfd = -1;
	}
}

static void schedule_restart(void)
{
	if (sc.stopping)
		return;
	if ((double)(now_ns() - sc.started_ns) / 1e9 >= STABLE_S)
		sc.backoff = BACKOFF_MIN_S;
	timer_arm(&sc.restart_t, sc.backoff);
	sc.backoff = sc.backoff * 2 > BACKOFF_MAX_S ? BACKOFF_MAX_S : sc.backoff * 2;
}

static void on_exit_cb(void *ctx, uint32_t events)
{
	(void)ctx;
	(void)events;
	siginfo_t si = {0};
	int r = waitid(P_PID, (id_t)sc.pid, &si, WEXITED | WNOHANG);
	if (r == 0 && si.si_pid == 0)
		return; /* not yet */
	if (r < 0 && errno != ECHILD)
		return;
	/* ECHILD: reaped elsewhere; its status is lost (reported as 0). */
	pid_t pid = sc.pid;
	close_fds();
	sc.pid = 0;
	sc.state = SC_DOWN;
	timer_disarm(&sc.ping_t);
	bool killed = si.si_code == CLD_KILLED || si.si_code == CLD_DUMPED;
	log_msg("agentbox-egress (pid %d) %s %d%s; restarting in %.1f s", (int)pid,
		killed ? "was killed by signal" : "exited with status", si.si_status,
		sc.hung ? " (it had stopped answering)" : "", sc.backoff);
	audit_event("egress.sidecar", NULL, -1, "daemon",
		    json_pack("{s:s, s:i, s:o, s:o, s:b, s:i}", "state", "exited", "pid", (int)pid,
			      "status", killed ? json_null() : json_integer(si.si_status), "signal",
			      killed ? json_integer(si.si_status) : json_null(), "hung", sc.hung,
			      "restarts", (int)sc.restarts));
	sc.hung = false;
	schedule_restart();
}

static void on_restart(void *ctx)
{
	(void)ctx;
	if (sc.stopping || sc.pid > 0)
		return;
	sc.restarts++;
	ab_error err = {0};
	if (spawn(&err) < 0) {
		log_msg("agentbox-egress: %s", err.msg);
		schedule_restart();
	}
}

/* Kills a sidecar that stopped answering; its exit is handled as any. */
static void kill_hung(const char *why)
{
	if (sc.pid <= 0 || sc.hung)
		return;
	sc.hung = true;
	log_msg("agentbox-egress (pid %d) %s: killing it", (int)sc.pid, why);
	audit_event(
	    "egress.sidecar", NULL, -1, "daemon",
	    json_pack("{s:s, s:i, s:s}", "state", "hung", "pid", (int)sc.pid, "reason", why));
	kill(sc.pid, SIGKILL);
}

static void on_ping(void *ctx)
{
	(void)ctx;
	if (sc.pid <= 0)
		return;
	if ((double)(now_ns() - sc.alive_ns) / 1e9 > PING_DEAD_S) {
		kill_hung(sc.state == SC_STARTING ? "did not become ready within 5 s"
						  : "did not answer pings for 5 s");
		return;
	}
	if (sc.state == SC_RUNNING) {
		json_t *m = json_pack("{s:s, s:I}", "op", "ping", "seq", ++sc.seq);
		sidecar_send(m, -1);
		json_decref(m);
	}
	timer_arm(&sc.ping_t, PING_EVERY_S);
}

/* ------------------------------------------------------------- messages */

void sidecar_send(json_t *msg, int fd)
{
	if (sc.state != SC_RUNNING || sc.sock < 0 || !msg)
		return;
	char *text = json_dumps(msg, JSON_COMPACT);
	if (!text)
		return;
	size_t len = strlen(text);
	if (len > EG_MSG_MAX) {
		/* A policy too large to send: the sandbox loses its egress
		 * rather than keeping an old policy. */
		const char *id = json_string_value(json_object_get(msg, "sandbox"));
		log_msg("egress: a message for %s is larger than 1 MiB; detaching it",
			id ? id : "?");
		free(text);
		if (id) {
			json_t *d = json_pack("{s:s, s:s}", "op", "detach", "sandbox", id);
			sidecar_send(d, -1);
			json_decref(d);
		}
		return;
	}
	struct iovec iov = {.iov_base = text, .iov_len = len};
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};
	if (fd >= 0) {
		memset(&u, 0, sizeof(u));
		mh.msg_control = u.buf;
		mh.msg_controllen = sizeof(u.buf);
		struct cmsghdr *c = CMSG_FIRSTHDR(&mh);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(c), &fd, sizeof(int));
	}
	ssize_t n;
	do
		n = sendmsg(sc.sock, &mh, MSG_DONTWAIT | MSG_NOSIGNAL);
	while (n < 0 && errno == EINTR);
	free(text);
	if (n < 0 && (errno == EAGAIN || errno == ENOBUFS))
		kill_hung("does not read its messages");
	/* Other errors: it is gone, and its exit is on its way. */
}

static void on_event(json_t *m)
{
	const char *ev = json_string_value(json_object_get(m, "ev"));
	if (!ev)
		ev = "";
	if (strcmp(ev, "ready") == 0) {
		if (sc.state != SC_STARTING)
			return;
		sc.state = SC_RUNNING;
		sc.alive_ns = now_ns();
		log_msg("agentbox-egress (pid %d) is ready", (int)sc.pid);
		state_reattach_all();
	} else if (strcmp(ev, "pong") == 0) {
		if (json_is_integer(json_object_get(m, "seq")))
			sc.alive_ns = now_ns();
	} else if (strcmp(ev, "request") == 0) {
		state_record_request(m);
	} else if (strcmp(ev, "log") == 0) {
		json_t *s = json_object_get(m, "msg");
		if (json_is_string(s))
			log_line(json_string_value(s),
				 json_string_length(s) > 500 ? 500 : json_string_length(s));
	} else if (sc.unknown_logged < 10) {
		sc.unknown_logged++;
		log_msg("egress: the sidecar sent an unknown message (ignored)");
	}
}

static void on_message(void *ctx, uint32_t events)
{
	(void)ctx;
	(void)events;
	for (int rounds = 0; rounds < 64 && sc.sock >= 0; rounds++) {
		struct iovec iov = {.iov_base = msgbuf, .iov_len = EG_MSG_MAX};
		union {
			char buf[CMSG_SPACE(sizeof(int) * 8)];
			struct cmsghdr align;
		} u;
		struct msghdr mh = {.msg_iov = &iov,
				    .msg_iovlen = 1,
				    .msg_control = u.buf,
				    .msg_controllen = sizeof(u.buf)};
		ssize_t n = recvmsg(sc.sock, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			return;
		/* Descriptors are never expected from it. */
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
				for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
				     i++) {
					int fd;
					memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
					close(fd);
				}
		if (n <= 0) {
			/* Its end is closed (or broken): the exit follows. */
			loop_del(&sc.sock_w);
			return;
		}
		sc.alive_ns = now_ns();
		if (mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
			log_msg("egress: dropped a sidecar message larger than 1 MiB");
			continue;
		}
		json_error_t je;
		json_t *m = json_loadb(msgbuf, (size_t)n, JSON_REJECT_DUPLICATES, &je);
		if (!json_is_object(m)) {
			if (sc.unknown_logged < 10) {
				sc.unknown_logged++;
				log_msg("egress: the sidecar sent a message that is not a JSON "
					"object (ignored)");
			}
		} else {
			on_event(m);
		}
		json_decref(m);
	}
}

/* ---------------------------------------------------------------- start */

static int spawn(ab_error *err)
{
	int sp[2], ep[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
		return ab_error_errno(err, -errno, "socketpair for agentbox-egress");
	if (pipe2(ep, O_CLOEXEC) < 0) {
		int e = -errno;
		close(sp[0]);
		close(sp[1]);
		return ab_error_errno(err, e, "pipe for agentbox-egress");
	}
	int big = 4 << 20;
	if (setsockopt(sp[0], SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big)) < 0)
		setsockopt(sp[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
	/* The salt findings are hashed with (record/redact.c): the same
	 * value gets the same hash in the sidecar's events and in redacted
	 * audit events. Made before the fork: the child only execs. */
	char salt_env[100] = "AGENTBOX_DLP_SALT=";
	if (redact_salt())
		snprintf(salt_env, sizeof(salt_env), "AGENTBOX_DLP_SALT=%s", redact_salt());
	char *envp[] = {"PATH=/usr/sbin:/usr/bin:/sbin:/bin", salt_env, NULL};
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		int e = -errno;
		close(sp[0]);
		close(sp[1]);
		close(ep[0]);
		close(ep[1]);
		return ab_error_errno(err, e, "fork agentbox-egress");
	}
	if (pid == 0) {
		/* The child: only async-signal-safe calls until exec. */
		sigset_t none;
		sigemptyset(&none);
		sigprocmask(SIG_SETMASK, &none, NULL);
		struct sigaction dfl = {.sa_handler = SIG_DFL};
		sigaction(SIGPIPE, &dfl, NULL);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		int null = open("/dev/null", O_RDWR | O_CLOEXEC);
		int a = fcntl(sp[1], F_DUPFD_CLOEXEC, 10), e = fcntl(ep[1], F_DUPFD_CLOEXEC, 10),
		    nl = fcntl(null, F_DUPFD_CLOEXEC, 10);
		if (null < 0 || a < 0 || e < 0 || nl < 0 || dup2(nl, 0) < 0 || dup2(nl, 1) < 0 ||
		    dup2(e, 2) < 0 || dup2(a, 3) < 0)
			_exit(127);
		syscall(SYS_close_range, 4u, ~0u, 0u);
		execve(sc.argv[0], sc.argv, envp);
		static const char msg[] = "cannot execute agentbox-egress\n";
		if (write(2, msg, sizeof(msg) - 1) < 0) {
		}
		_exit(127);
	}
	close(sp[1]);
	close(ep[1]);
	sc.pid = pid;
	sc.sock = sp[0];
	sc.errfd = ep[0];
	fcntl(sc.sock, F_SETFL, O_NONBLOCK);
	fcntl(sc.errfd, F_SETFL, O_NONBLOCK);
	sc.pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (sc.pidfd < 0 || loop_add(&sc.pid_w, sc.pidfd, EPOLLIN, on_exit_cb, NULL) < 0) {
		/* Without a way to see it exit it cannot be supervised. */
		int e = -errno;
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		sc.pid = 0;
		close_fds();
		sc.state = SC_DOWN;
		return ab_error_errno(err, e ? e : -EIO, "watch agentbox-egress");
	}
	loop_add(&sc.sock_w, sc.sock, EPOLLIN, on_message, NULL);
	loop_add(&sc.err_w, sc.errfd, EPOLLIN, on_stderr, NULL);
	sc.state = SC_STARTING;
	sc.started_ns = sc.alive_ns = now_ns();
	sc.unknown_logged = 0;
	timer_arm(&sc.ping_t, PING_EVERY_S);
	audit_event("egress.sidecar", NULL, -1, "daemon",
		    json_pack("{s:s, s:i, s:i}", "state", sc.restarts ? "restarted" : "started",
			      "pid", (int)pid, "restarts", (int)sc.restarts));
	return 0;
}

int sidecar_start(const char *exe, char *const *args, ab_error *err)
{
	size_t n = 0;
	while (args[n])
		n++;
	sc.argv = calloc(n + 2, sizeof(char *));
	msgbuf = malloc(EG_MSG_MAX);
	if (!sc.argv || !msgbuf)
		return ab_error_set(err, -ENOMEM, "out of memory");
	sc.argv[0] = strdup(exe);
	for (size_t i = 0; i < n; i++)
		sc.argv[i + 1] = strdup(args[i]);
	for (size_t i = 0; i <= n; i++)
		if (!sc.argv[i])
			return ab_error_set(err, -ENOMEM, "out of memory");
	if (timer_init(&sc.restart_t, on_restart, NULL) < 0 ||
	    timer_init(&sc.ping_t, on_ping, NULL) < 0)
		return ab_error_set(err, -ENOMEM, "egress timers");
	sc.timers_ok = true;
	sc.state = SC_DOWN;
	if (spawn(err) < 0) {
		log_msg("agentbox-egress: %s; trying again", err->msg);
		schedule_restart();
	}
	return 0;
}

void sidecar_stop(void)
{
	sc.stopping = true;
	if (sc.pid > 0) {
		kill(sc.pid, SIGTERM);
		siginfo_t si = {0};
		for (int i = 0; i < 100; i++) {
			si.si_pid = 0;
			if (waitid(P_PID, (id_t)sc.pid, &si, WEXITED | WNOHANG) < 0 ||
			    si.si_pid != 0)
				break;
			usleep(10000);
		}
		if (si.si_pid == 0) {
			kill(sc.pid, SIGKILL);
			waitid(P_PID, (id_t)sc.pid, &si, WEXITED);
		}
		sc.pid = 0;
	}
	close_fds();
	if (sc.timers_ok) {
		timer_free(&sc.restart_t);
		timer_free(&sc.ping_t);
		sc.timers_ok = false;
	}
	if (sc.argv) {
		for (size_t i = 0; sc.argv[i]; i++)
			free(sc.argv[i]);
		free(sc.argv);
		sc.argv = NULL;
	}
	free(msgbuf);
	msgbuf = NULL;
	sc.state = SC_DISABLED;
}
