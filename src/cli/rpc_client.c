#include <stdarg.h>
/* rpc_client.c - the CLI's JSON-RPC client of agentboxd.
 *
 * Single-threaded and blocking: the CLI has one request in flight at a time,
 * so the reader simply reads lines until the response with the wanted id
 * arrives. Everything from the daemon is parsed with a bounded line buffer.
 */
#include "rpc_client.h"

#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

extern char **environ;

struct rpc_client {
	int rfd;   /* lines from the daemon */
	int wfd;   /* requests to the daemon (== rfd for a socket) */
	pid_t pid; /* private daemon, or -1 */
	char name[PATH_MAX + 32];
	char *buf; /* bytes read but not yet consumed */
	size_t len, cap;
	json_int_t next_id;
	int timeout_ms;			  /* per call; -1 waits forever */
	bool broken;			  /* after a transport failure */
	volatile sig_atomic_t *interrupt; /* see rpc_client_set_interrupt */
	bool interrupt_sent;		  /* for the call in progress */
};

static bool is_executable(const char *path)
{
	return access(path, X_OK) == 0;
}

/* Copies path to out if it is an executable file. Returns 1 if it was, 0
 * if not, or a negative code if it does not fit. */
static int take_if_executable(const char *path, char *out, size_t outlen, ab_error *err)
{
	if (!is_executable(path))
		return 0;
	if ((size_t)snprintf(out, outlen, "%s", path) >= outlen)
		return ab_error_set(err, -ENAMETOOLONG, "path too long: %s", path);
	return 1;
}

/* $AGENTBOX_DAEMON names the executable, $AGENTBOX_BIN the directory of the
 * built or installed binaries (or the executable itself): an explicit choice
 * that is not usable is an error rather than skipped, so that the user never
 * runs another daemon than the one asked for. */
static int from_env(const char *name, bool may_be_dir, char *out, size_t outlen, ab_error *err)
{
	const char *env = getenv(name);
	if (!env || !*env)
		return 0;
	char cand[PATH_MAX];
	struct stat st;
	bool dir = may_be_dir && stat(env, &st) == 0 && S_ISDIR(st.st_mode);
	if ((size_t)snprintf(cand, sizeof(cand), dir ? "%s/agentboxd" : "%s", env) >= sizeof(cand))
		return ab_error_set(err, -ENAMETOOLONG, "%s is too long", name);
	int r = take_if_executable(cand, out, outlen, err);
	if (r == 0)
		return ab_error_set(err, -ENOENT,
				    "%s=%s does not name an executable agentboxd (checked %s); fix "
				    "it, or unset it to search next to this program, $PATH and the "
				    "standard places",
				    name, env, cand);
	return r;
}

int rpc_find_daemon(char *out, size_t outlen, ab_error *err)
{
	int r = from_env("AGENTBOX_DAEMON", false, out, outlen, err);
	if (r == 0)
		r = from_env("AGENTBOX_BIN", true, out, outlen, err);
	if (r != 0)
		return r < 0 ? r : 0;

	char self[PATH_MAX];
	char here[PATH_MAX + 16] = "(unknown: /proc/self/exe unreadable)";
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n > 0) {
		self[n] = '\0';
		char *slash = strrchr(self, '/');
		if (slash)
			*slash = '\0';
		snprintf(here, sizeof(here), "%s/agentboxd", self);
		r = take_if_executable(here, out, outlen, err);
		if (r != 0)
			return r < 0 ? r : 0;
	}

	const char *path = getenv("PATH");
	if (path) {
		const char *p = path;
		while (*p) {
			size_t dlen = strcspn(p, ":");
			char cand[PATH_MAX];
			int w = snprintf(cand, sizeof(cand), "%.*s/agentboxd",
					 (int)(dlen ? dlen : 1), dlen ? p : ".");
			if (w > 0 && (size_t)w < sizeof(cand)) {
				r = take_if_executable(cand, out, outlen, err);
				if (r != 0)
					return r < 0 ? r : 0;
			}
			p += dlen;
			if (*p == ':')
				p++;
		}
	}
	static const char *const standard[] = {"/usr/local/bin/agentboxd", "/usr/bin/agentboxd"};
	for (size_t i = 0; i < sizeof(standard) / sizeof(standard[0]); i++) {
		r = take_if_executable(standard[i], out, outlen, err);
		if (r != 0)
			return r < 0 ? r : 0;
	}
	return ab_error_set(err, -ENOENT,
			    "cannot find agentboxd: looked at $AGENTBOX_DAEMON and $AGENTBOX_BIN "
			    "(not set), %s, $PATH, %s and %s; build it with `make`, install it "
			    "with `make install`, or set AGENTBOX_BIN to the directory that holds "
			    "it",
			    here, standard[0], standard[1]);
}

static rpc_client *client_new(void)
{
	rpc_client *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->rfd = c->wfd = -1;
	c->pid = -1;
	c->next_id = 1;
	c->timeout_ms = RPC_DEFAULT_TIMEOUT_MS;
	return c;
}

int rpc_client_spawn(rpc_client **out, ab_error *err)
{
	return rpc_client_spawn_degraded(NULL, out, err);
}

int rpc_client_spawn_degraded(const char *degrade, rpc_client **out, ab_error *err)
{
	char path[PATH_MAX];
	int r = rpc_find_daemon(path, sizeof(path), err);
	if (r < 0)
		return r;

	/* A daemon that dies must show up as EPIPE on write, not kill us. */
	signal(SIGPIPE, SIG_IGN);

	int to_d[2], from_d[2];
	if (pipe2(to_d, O_CLOEXEC) < 0)
		return ab_error_errno(err, -errno, "pipe");
	if (pipe2(from_d, O_CLOEXEC) < 0) {
		r = -errno;
		close(to_d[0]);
		close(to_d[1]);
		return ab_error_errno(err, r, "pipe");
	}

	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, to_d[0], STDIN_FILENO);
	posix_spawn_file_actions_adddup2(&fa, from_d[1], STDOUT_FILENO);
	/* Its own process group: a Ctrl-C at the terminal interrupts the CLI,
	 * and the daemon then shuts down in order on EOF instead of dying
	 * mid-request. */
	posix_spawnattr_t attr;
	posix_spawnattr_init(&attr);
	posix_spawnattr_setpgroup(&attr, 0);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP);
	char *argv[] = {path, "--stdio", degrade ? "--degrade" : NULL, (char *)degrade, NULL};
	pid_t pid;
	int rc = posix_spawn(&pid, path, &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	close(to_d[0]);
	close(from_d[1]);
	if (rc != 0) {
		close(to_d[1]);
		close(from_d[0]);
		return ab_error_errno(err, -rc, "start %s", path);
	}

	rpc_client *c = client_new();
	if (!c) {
		close(to_d[1]);
		close(from_d[0]);
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		return ab_error_set(err, -ENOMEM, "out of memory");
	}
	c->rfd = from_d[0];
	c->wfd = to_d[1];
	c->pid = pid;
	snprintf(c->name, sizeof(c->name), "%s (pid %d)", path, (int)pid);
	*out = c;
	return 0;
}

int rpc_client_connect(const char *path, rpc_client **out, ab_error *err)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	if (strlen(path) >= sizeof(sa.sun_path))
		return ab_error_set(err, -ENAMETOOLONG, "socket path %s is longer than %zu bytes",
				    path, sizeof(sa.sun_path) - 1);
	memcpy(sa.sun_path, path, strlen(path) + 1);

	signal(SIGPIPE, SIG_IGN);
	int fd AB_AUTOCLOSE = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return ab_error_errno(err, -errno, "socket");
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
		return ab_error_errno(err, -errno, "connect to the daemon socket %s", path);

	rpc_client *c = client_new();
	if (!c)
		return ab_error_set(err, -ENOMEM, "out of memory");
	c->rfd = c->wfd = ab_steal_fd(&fd);
	snprintf(c->name, sizeof(c->name), "unix:%s", path);
	*out = c;
	return 0;
}

int rpc_client_open(const char *socket_path, rpc_client **out, ab_error *err)
{
	return rpc_client_open_degraded(socket_path, NULL, out, err);
}

int rpc_client_open_degraded(const char *socket_path, const char *degrade, rpc_client **out,
			     ab_error *err)
{
	if (!socket_path || !*socket_path)
		socket_path = getenv("AGENTBOX_SOCKET");
	if (socket_path && *socket_path) {
		if (degrade)
			return ab_error_set(
			    err, -EINVAL,
			    "the daemon on %s is shared, and which isolation "
			    "layers it may run without is its operator's decision (agentboxd "
			    "--degrade); --degrade applies only to the private daemon that "
			    "`agentbox run` starts without --socket and $AGENTBOX_SOCKET",
			    socket_path);
		return rpc_client_connect(socket_path, out, err);
	}
	return rpc_client_spawn_degraded(degrade, out, err);
}

/* Reaps the private daemon if it has exited (waiting up to wait_ms) and
 * describes how it ended. */
static void describe_exit(rpc_client *c, int wait_ms, char *out, size_t outlen)
{
	if (c->pid < 0) {
		snprintf(out, outlen, "closed the connection");
		return;
	}
	for (int waited = 0;; waited += 10) {
		int st;
		pid_t w = waitpid(c->pid, &st, WNOHANG);
		if (w == c->pid) {
			c->pid = -1;
			if (WIFEXITED(st))
				snprintf(out, outlen, "exited with status %d", WEXITSTATUS(st));
			else if (WIFSIGNALED(st))
				snprintf(out, outlen, "was killed by signal %d (%s)", WTERMSIG(st),
					 strsignal(WTERMSIG(st)));
			else
				snprintf(out, outlen, "ended (wait status %d)", st);
			return;
		}
		if (w < 0 || waited >= wait_ms) {
			snprintf(out, outlen, "closed its stdout");
			return;
		}
		nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
	}
}

/* Marks the connection unusable and sets err to "<what> ...", where the
 * message names the daemon (c->name) through the caller's format. */
__attribute__((format(printf, 4, 5))) static int fail(rpc_client *c, ab_error *err, int code,
						      const char *fmt, ...)
{
	char msg[sizeof(err->msg)];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	c->broken = true;
	return ab_error_set(err, code, "%s", msg);
}

static int write_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

static bool interrupt_pending(const rpc_client *c)
{
	return c->interrupt && *c->interrupt && !c->interrupt_sent;
}

/* Reads one line (without its '\n') into *line; it stays valid until the
 * next call. Returns its length, -EINTR when an interrupt is to be sent
 * (rpc_client_set_interrupt), or a negative code with err set. */
static ssize_t read_line(rpc_client *c, char **line, const struct timespec *deadline, ab_error *err)
{
	for (;;) {
		char *nl = c->len ? memchr(c->buf, '\n', c->len) : NULL;
		if (nl) {
			*nl = '\0';
			*line = c->buf;
			return nl - c->buf;
		}
		if (c->len > RPC_MAX_LINE) {
			char why[64];
			snprintf(why, sizeof(why), "%u bytes", RPC_MAX_LINE);
			return fail(c, err, -EPROTO,
				    "protocol violation: the daemon %s sent a line longer than %s",
				    c->name, why);
		}
		if (c->cap - c->len < 4096) {
			size_t ncap = c->cap ? c->cap * 2 : 65536;
			if (ncap > RPC_MAX_LINE + 65536)
				ncap = RPC_MAX_LINE + 65536;
			char *nb = realloc(c->buf, ncap);
			if (!nb)
				return fail(c, err, -ENOMEM, "reading from the daemon %s: %s",
					    c->name, "out of memory");
			c->buf = nb;
			c->cap = ncap;
		}
		/* A signal that came while no system call was waiting. */
		if (interrupt_pending(c))
			return -EINTR;
		if (deadline) {
			struct timespec now;
			clock_gettime(CLOCK_MONOTONIC, &now);
			long long left = (deadline->tv_sec - now.tv_sec) * 1000LL +
					 (deadline->tv_nsec - now.tv_nsec) / 1000000;
			struct pollfd pfd = {.fd = c->rfd, .events = POLLIN};
			int pr = left > 0 ? poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left) : 0;
			if (pr < 0 && errno == EINTR && interrupt_pending(c))
				return -EINTR;
			if (pr < 0 && errno == EINTR)
				continue;
			if (pr == 0) {
				char why[64];
				snprintf(why, sizeof(why), "%d ms", c->timeout_ms);
				return fail(c, err, -ETIMEDOUT,
					    "the daemon %s did not answer within %s", c->name, why);
			}
		}
		ssize_t n = read(c->rfd, c->buf + c->len, c->cap - c->len);
		if (n < 0 && errno == EINTR && interrupt_pending(c))
			return -EINTR;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return fail(c, err, -errno, "reading from the daemon %s: %s", c->name,
				    strerror(errno));
		if (n == 0) {
			char how[128];
			describe_exit(c, 2000, how, sizeof(how));
			return fail(c, err, -EPIPE, "the daemon %s %s", c->name, how);
		}
		c->len += (size_t)n;
	}
}

/* Drops the line returned by the last read_line. */
static void consume_line(rpc_client *c, size_t linelen)
{
	size_t used = linelen + 1;
	memmove(c->buf, c->buf + used, c->len - used);
	c->len -= used;
}

static void dispatch_output(json_t *params, json_int_t id, rpc_output_fn on_output, void *ud,
			    bool rerun)
{
	json_t *req = json_object_get(params, "request");
	const char *stream = rerun ? "rerun" : json_string_value(json_object_get(params, "stream"));
	json_t *data = json_object_get(params, rerun ? "reason" : "data");
	if (!on_output || !json_is_integer(req) || json_integer_value(req) != id || !stream ||
	    !json_is_string(data))
		return;
	on_output(stream, json_string_value(data), json_string_length(data), ud);
}

/* Sends a sandbox.interrupt request for the request run_id. */
static int send_interrupt(rpc_client *c, json_int_t run_id, ab_error *err)
{
	json_t *req AB_AUTOJSON =
	    json_pack("{s:s, s:I, s:s, s:{s:I}}", "jsonrpc", "2.0", "id", c->next_id++, "method",
		      "sandbox.interrupt", "params", "request", run_id);
	char *text AB_AUTOFREE = req ? json_dumps(req, JSON_COMPACT) : NULL;
	if (!text)
		return ab_error_set(err, -ENOMEM, "cannot build the interrupt request");
	int r = write_all(c->wfd, text, strlen(text));
	if (r == 0)
		r = write_all(c->wfd, "\n", 1);
	if (r < 0) {
		c->broken = true;
		return ab_error_set(err, r, "sending the interrupt to the daemon %s: %s", c->name,
				    strerror(-r));
	}
	return 0;
}

int rpc_client_call(rpc_client *c, const char *method, json_t *params, rpc_output_fn on_output,
		    void *ud, json_t **result, int *rpc_code, ab_error *err)
{
	if (rpc_code)
		*rpc_code = 0;
	*result = NULL;
	if (c->broken)
		return ab_error_set(err, -EPIPE, "%s: the connection to the daemon is closed",
				    method);

	json_int_t id = c->next_id++;
	json_t *req AB_AUTOJSON =
	    json_pack("{s:s, s:I, s:s}", "jsonrpc", "2.0", "id", id, "method", method);
	if (!req || (params && json_object_set(req, "params", params) < 0))
		return ab_error_set(err, -ENOMEM, "%s: cannot build the request", method);
	char *text AB_AUTOFREE = json_dumps(req, JSON_COMPACT | JSON_ENSURE_ASCII);
	if (!text)
		return ab_error_set(err, -ENOMEM, "%s: cannot encode the request", method);
	size_t tlen = strlen(text);
	int r = write_all(c->wfd, text, tlen);
	if (r == 0)
		r = write_all(c->wfd, "\n", 1);
	if (r < 0) {
		char how[128];
		describe_exit(c, 2000, how, sizeof(how));
		c->broken = true;
		return ab_error_set(err, r, "%s: the daemon %s %s (write: %s)", method, c->name,
				    how, strerror(-r));
	}

	struct timespec deadline, *dl = NULL;
	if (c->timeout_ms >= 0) {
		clock_gettime(CLOCK_MONOTONIC, &deadline);
		deadline.tv_sec += c->timeout_ms / 1000;
		deadline.tv_nsec += (c->timeout_ms % 1000) * 1000000L;
		if (deadline.tv_nsec >= 1000000000L) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000L;
		}
		dl = &deadline;
	}
	c->interrupt_sent = false;
	for (;;) {
		char *line = NULL;
		ssize_t n = read_line(c, &line, dl, err);
		if (n == -EINTR) {
			/* The answer to this request is not waited for: the
			 * loop skips responses with other ids, and the run's
			 * own result says how it ended. */
			c->interrupt_sent = true;
			if (send_interrupt(c, id, err) < 0)
				return ab_error_prefix(err, "%s", method);
			continue;
		}
		if (n < 0)
			return ab_error_prefix(err, "%s", method);
		json_error_t jerr;
		json_t *msg AB_AUTOJSON = json_loadb(line, (size_t)n, JSON_ALLOW_NUL, &jerr);
		consume_line(c, (size_t)n);
		if (!msg || !json_is_object(msg)) {
			c->broken = true;
			return ab_error_set(
			    err, -EPROTO,
			    "%s: protocol violation: the daemon %s sent a line that "
			    "is not a JSON object (%s)",
			    method, c->name, msg ? "not an object" : jerr.text);
		}
		json_t *mid = json_object_get(msg, "id");
		const char *mname = json_string_value(json_object_get(msg, "method"));
		if (mname && !mid) {
			if (strcmp(mname, "sandbox.output") == 0 ||
			    strcmp(mname, "sandbox.rerun") == 0)
				dispatch_output(json_object_get(msg, "params"), id, on_output, ud,
						strcmp(mname, "sandbox.rerun") == 0);
			continue; /* other notifications are ignored */
		}
		if (!json_is_integer(mid) || json_integer_value(mid) != id)
			continue; /* not ours (e.g. an error with id null); keep reading */
		json_t *e = json_object_get(msg, "error");
		if (e && !json_is_null(e)) {
			json_t *code = json_object_get(e, "code");
			const char *m = json_string_value(json_object_get(e, "message"));
			if (rpc_code)
				*rpc_code =
				    json_is_integer(code) ? (int)json_integer_value(code) : -32603;
			return ab_error_set(err, -EREMOTEIO, "%s: %s", method,
					    m ? m : "(the daemon gave no message)");
		}
		json_t *res = json_object_get(msg, "result");
		if (!res) {
			c->broken = true;
			return ab_error_set(err, -EPROTO,
					    "%s: protocol violation: response without result or "
					    "error",
					    method);
		}
		*result = json_incref(res);
		return 0;
	}
}

void rpc_client_set_timeout(rpc_client *c, int timeout_ms)
{
	c->timeout_ms = timeout_ms;
}

void rpc_client_set_interrupt(rpc_client *c, volatile sig_atomic_t *flag)
{
	c->interrupt = flag;
}

void rpc_client_close(rpc_client *c)
{
	if (!c)
		return;
	if (c->wfd >= 0 && c->wfd != c->rfd)
		close(c->wfd);
	if (c->pid > 0) {
		/* EOF on stdin tells the daemon to shut down; give it 5 s. */
		int st;
		bool done = false;
		for (int waited = 0; waited < 5000; waited += 10) {
			pid_t w = waitpid(c->pid, &st, WNOHANG);
			if (w == c->pid || w < 0) {
				done = true;
				break;
			}
			nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
		}
		if (!done) {
			kill(c->pid, SIGKILL);
			waitpid(c->pid, &st, 0);
		}
	}
	if (c->rfd >= 0)
		close(c->rfd);
	free(c->buf);
	free(c);
}
