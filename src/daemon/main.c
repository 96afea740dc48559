/* agentboxd - the supervisor. Never runs untrusted code itself: it starts
 * the zygote, creates sandboxes through it, and serves JSON-RPC over stdio
 * or a unix socket. See docs/protocol.md and docs/architecture.md. */
#include <dirent.h>
#include <fcntl.h>
#include <getopt.h>
#include <grp.h>
#include <limits.h>
#include <libgen.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>

#include "egress/egress.h"
#include "frontend/frontend.h"

daemon_config D;

static bool quiet;

void log_msg(const char *fmt, ...)
{
	if (quiet)
		return;
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fprintf(stderr, "agentboxd[%d]: %s\n", (int)getpid(), buf);
}

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: agentboxd (--stdio | --socket PATH) [options]\n"
	    "\n"
	    "The EnterSandBox supervisor: runs untrusted Python in layered sandboxes and\n"
	    "serves JSON-RPC 2.0 (one object per line; see docs/protocol.md).\n"
	    "\n"
	    "  --stdio              serve one client on stdin/stdout; exit when stdin closes\n"
	    "                       (what the SDK and the CLI start by default)\n"
	    "  --socket PATH        serve clients on a unix socket (mode 0600; peers must\n"
	    "                       have the daemon's uid or be root)\n"
	    "  --home DIR           state directory (default $AGENTBOX_HOME, else\n"
	    "                       $XDG_STATE_HOME/agentbox, else /var/lib/agentbox as root)\n"
	    "  --pool N             ready heavy sandboxes kept warm (default 2, 0 disables)\n"
	    "  --nano-pool N        ready nano sandboxes kept warm (default 2; -1 turns the\n"
	    "                       nano tier off)\n"
	    "  --pool-max N, --nano-pool-max N  what each pool may grow to while creates\n"
	    "                       find it empty (default 32 and 64; never below --pool /\n"
	    "                       --nano-pool); it grows only while the host has more than\n"
	    "                       a quarter of its memory available\n"
	    "  --pool-shrink-after SECONDS  halve a grown pool after this long without a\n"
	    "                       create that found it empty (default 30)\n"
	    "  --idle-timeout SECONDS  close a session after this long without a run or\n"
	    "                       a files call (default 900; 0 never); a client may ask\n"
	    "                       for its own with sandbox.create's idle_timeout\n"
	    "  --zygote-rotate N    start a fresh zygote (a new Python hash secret and address\n"
	    "                       layout) after every N sandboxes of a tier (default 1000;\n"
	    "                       0 never)\n"
	    "  --degrade LAYERS     comma-separated isolation layers that may be missing on\n"
	    "                       this host (e.g. landlock,cgroup); every result then lists\n"
	    "                       them in \"degraded\". Without it a missing layer is fatal.\n"
	    "                       Layers: userns pidns mountns netns ipcns utsns cgroupns\n"
	    "                       pivot_root no_new_privs caps seccomp landlock cgroup rlimits\n"
	    "  --uid-base N         first host uid mapped to sandbox root when running as\n"
	    "                       root (default 1000000000; one uid per sandbox)\n"
	    "  --audit-checkpoints PATH  also append each signed audit checkpoint to PATH\n"
	    "                       (a file, ideally on another host's storage, or - for\n"
	    "                       stdout with --socket) to prove later that the log was\n"
	    "                       not truncated; see docs/audit.md\n"
	    "  --max-connections N  socket clients served at once (default 1024); one more\n"
	    "                       gets a JSON-RPC error line (-32006) and is disconnected\n"
	    "  --max-connections-per-uid N  of those, from one peer uid (default 256)\n"
	    "  --max-sessions-per-connection N  sessions (sandbox.create, run) one client\n"
	    "                       holds at once (default 256); more get -32006\n"
	    "  --max-sessions-per-uid N  sessions of all socket clients of one uid (default\n"
	    "                       1024)\n"
	    "  --audit-group-ms N   relaxed audit durability: replies go out at once and\n"
	    "                       the log is committed at most N ms (1..1000) after an\n"
	    "                       event, so a crash can lose the last N ms of events;\n"
	    "                       without it every reply waits for its events' fsync\n"
	    "                       (daemon.info and every checkpoint say which mode)\n"
	    "  --no-audit           run without the audit log (for benchmarks: actions are\n"
	    "                       then not recorded, and daemon.info says so)\n"
	    "  --policy FILE        the egress policy (YAML; docs/egress.md): default mode,\n"
	    "                       deny and allow rules, named intents; an error in it\n"
	    "                       stops the start-up (the message names the line).\n"
	    "                       Without it: default deny, no intents\n"
	    "  --no-egress          no egress sidecar: sandboxes have no network at all,\n"
	    "                       and sandbox.create with network rules is refused\n"
	    "  --egress-upstream-ca FILE  CA certificates (PEM) the sidecar trusts for\n"
	    "                       upstream TLS instead of the system's roots\n"
	    "  --egress-resolve NAME=127.0.0.1:PORT  for tests only (repeatable): the sidecar\n"
	    "                       sends every request for NAME to this loopback address\n"
	    "                       (only 127.x.x.x is accepted)\n"
	    "  --quiet              no log lines on stderr (the default with --stdio)\n"
	    "  --verbose            log lines on stderr even with --stdio (or set\n"
	    "                       AGENTBOX_DEBUG=1)\n"
	    "  --version, --help\n");
}

static int resolve_home(const char *arg, ab_error *err)
{
	const char *env = getenv("AGENTBOX_HOME");
	const char *xdg = getenv("XDG_STATE_HOME");
	const char *home = getenv("HOME");
	int n;
	if (arg)
		n = snprintf(D.home, sizeof(D.home), "%s", arg);
	else if (env && *env)
		n = snprintf(D.home, sizeof(D.home), "%s", env);
	else if (geteuid() == 0)
		n = snprintf(D.home, sizeof(D.home), "/var/lib/agentbox");
	else if (xdg && *xdg)
		n = snprintf(D.home, sizeof(D.home), "%s/agentbox", xdg);
	else if (home && *home)
		n = snprintf(D.home, sizeof(D.home), "%s/.local/state/agentbox", home);
	else
		return ab_error_set(err, -EINVAL,
				    "cannot find a state directory: set AGENTBOX_HOME");
	if (n >= (int)sizeof(D.home) - 64)
		return ab_error_set(err, -ENAMETOOLONG, "state directory path too long");
	/* mkdir -p, then private */
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s", D.home);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		mkdir(tmp, 0755);
		*p = '/';
	}
	/* Private: sandboxes open their workspace with the daemon's
	 * credentials before they drop them (see jail.c). */
	if (mkdir(D.home, 0700) < 0 && errno != EEXIST)
		return ab_error_errno(err, -errno, "create %s", D.home);
	char sessions[4200];
	snprintf(sessions, sizeof(sessions), "%s/sessions", D.home);
	if (mkdir(sessions, 0700) < 0 && errno != EEXIST)
		return ab_error_errno(err, -errno, "create %s", sessions);
	return 0;
}

/* Workspaces left by a daemon that was killed (S8). Their processes died
 * with it (PR_SET_PDEATHSIG); their cgroups are reaped by the cgroup
 * layer. */
static void reap_stale_sessions(void)
{
	char sessions[4200];
	snprintf(sessions, sizeof(sessions), "%s/sessions", D.home);
	int lock = -1;
	char lockpath[4300];
	snprintf(lockpath, sizeof(lockpath), "%s/daemon.lock", D.home);
	lock = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	/* Another live daemon on the same home owns its sessions. */
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
	if (lock < 0 || fcntl(lock, F_SETLK, &fl) < 0) {
		log_msg("another daemon uses %s; not reaping its sessions", D.home);
		return;
	}
	/* The lock stays held for the daemon's lifetime (fd kept open). */
	DIR *d = opendir(sessions);
	if (!d)
		return;
	struct dirent *de;
	int n = 0;
	while ((de = readdir(d))) {
		if (strncmp(de->d_name, "sb-", 3) != 0)
			continue;
		char p[4500];
		snprintf(p, sizeof(p), "%s/%s", sessions, de->d_name);
		if (remove_tree(p) == 0)
			n++;
	}
	closedir(d);
	if (n)
		log_msg("removed %d workspaces left by an earlier daemon", n);
}

static int listen_socket(const char *path, ab_error *err)
{
	/* Bound and listening under a temporary name first, then renamed into
	 * place: a client that sees the path can connect (no window between
	 * bind and listen in which it would be refused). */
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int n = snprintf(sa.sun_path, sizeof(sa.sun_path), "%s.%d.tmp", path, (int)getpid());
	if (n < 0 || (size_t)n >= sizeof(sa.sun_path))
		return ab_error_set(err, -ENAMETOOLONG, "socket path too long: %s", path);
	const char *tmp = sa.sun_path;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return ab_error_errno(err, -errno, "socket");
	struct stat st;
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			close(fd);
			return ab_error_set(err, -EEXIST, "%s exists and is not a socket", path);
		}
		unlink(path);
	}
	unlink(tmp);
	mode_t old = umask(0177);
	int r = bind(fd, (struct sockaddr *)&sa, sizeof(sa));
	umask(old);
	if (r < 0 || chmod(tmp, 0600) < 0 || listen(fd, 64) < 0 || rename(tmp, path) < 0) {
		int e = -errno;
		close(fd);
		unlink(tmp);
		return ab_error_errno(err, e, "listen on %s", path);
	}
	return fd;
}

static loop_watch listen_w;
/* A descriptor held in reserve: when accept fails for lack of descriptors,
 * it is given up for a moment so that the waiting client can be accepted,
 * told why and closed, instead of staying queued while epoll reports the
 * listener readable again and again. */
static int reserve_fd = -1;
/* The listener stops being watched for a moment when even that fails. */
static loop_timer listen_pause;

static void reserve_open(void)
{
	if (reserve_fd < 0)
		reserve_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* Sends a client that will not be served one JSON-RPC error line (with a
 * null id: it has sent no request yet) and closes it. The socket is new
 * and the line short, so the write neither blocks nor comes up short. */
static void refuse_client(int fd, const char *why, json_t *data)
{
	json_t *msg = json_pack("{s:s, s:n, s:{s:i, s:s, s:o}}", "jsonrpc", "2.0", "id", "error",
				"code", ERR_RESOURCES, "message", why, "data", data);
	char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
	json_decref(msg);
	if (text) {
		size_t len = strlen(text);
		text[len] = '\n';
		ssize_t n;
		do
			n = send(fd, text, len + 1, MSG_NOSIGNAL | MSG_DONTWAIT);
		while (n < 0 && errno == EINTR);
		free(text);
	}
	close(fd);
}

static void pause_listener(int why)
{
	log_msg("accept: %s; not accepting for 0.5 s", strerror(why));
	loop_mod(&listen_w, 0);
	timer_arm(&listen_pause, 0.5);
}

static void listen_resume(void *ctx)
{
	(void)ctx;
	reserve_open();
	loop_mod(&listen_w, EPOLLIN);
}

/* accept failed with EMFILE or ENFILE: accepts one waiting client with the
 * reserve descriptor and refuses it. If that does not work either, the
 * listener is paused briefly rather than retried in a hot loop. */
static void shed_one(int accept_errno)
{
	int fd = -1;
	reserve_open();
	if (reserve_fd >= 0) {
		close(reserve_fd);
		reserve_fd = -1;
		fd = accept4(listen_w.fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (fd >= 0) {
			struct rlimit rl = {0};
			getrlimit(RLIMIT_NOFILE, &rl);
			char why[200];
			snprintf(why, sizeof(why),
				 "the daemon is out of file descriptors (%s, limit %llu): try "
				 "again later",
				 accept_errno == ENFILE ? "the host's file table is full"
							: "its own limit",
				 (unsigned long long)rl.rlim_cur);
			refuse_client(fd, why,
				      json_pack("{s:s, s:I}", "limit", "daemon_fds", "max",
						(json_int_t)rl.rlim_cur));
		}
		reserve_open();
	}
	if (fd < 0 || reserve_fd < 0)
		pause_listener(accept_errno);
}

static void on_accept(void *ctx, uint32_t events)
{
	(void)ctx;
	(void)events;
	int fd = accept4(listen_w.fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
	if (fd < 0) {
		if (errno == EMFILE || errno == ENFILE)
			shed_one(errno);
		else if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
			pause_listener(errno);
		return;
	}
	struct ucred cr;
	socklen_t len = sizeof(cr);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0 ||
	    (cr.uid != geteuid() && cr.uid != 0)) {
		const char *msg =
		    "{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32600,"
		    "\"message\":\"permission denied: peer uid is not the daemon's\"}}\n";
		if (write(fd, msg, strlen(msg)) < 0) {
		}
		close(fd);
		log_msg("refused a client with uid %d", (int)cr.uid);
		return;
	}
	unsigned total, of_uid;
	conn_count(cr.uid, &total, &of_uid);
	char why[200];
	if (total >= D.max_conns) {
		snprintf(why, sizeof(why),
			 "too many connections: the daemon serves at most %u clients at once "
			 "(--max-connections)",
			 D.max_conns);
		refuse_client(fd, why,
			      json_pack("{s:s, s:I}", "limit", "connections", "max",
					(json_int_t)D.max_conns));
		log_msg("refused a client of uid %d: %u connections", (int)cr.uid, total);
		return;
	}
	if (of_uid >= D.max_conns_per_uid) {
		snprintf(why, sizeof(why),
			 "too many connections from uid %u: at most %u at once "
			 "(--max-connections-per-uid)",
			 (unsigned)cr.uid, D.max_conns_per_uid);
		refuse_client(fd, why,
			      json_pack("{s:s, s:I, s:I}", "limit", "connections_per_uid", "uid",
					(json_int_t)cr.uid, "max",
					(json_int_t)D.max_conns_per_uid));
		log_msg("refused a client of uid %d: %u connections of that uid", (int)cr.uid,
			of_uid);
		return;
	}
	conn *c = conn_new(fd, fd, false);
	if (!c) {
		close(fd);
		return;
	}
	c->cl.uid = cr.uid;
	c->peer_pid = cr.pid;
	snprintf(c->cl.actor, sizeof(c->cl.actor), "uid %d pid %d", (int)cr.uid, (int)cr.pid);
}

/* Parses the value of a --max-* flag: 1 .. 1000000. */
static bool parse_cap(const char *flag, const char *arg, unsigned *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(arg, &end, 10);
	if (errno || !*arg || *end || arg[0] == '-' || v < 1 || v > 1000000) {
		fprintf(stderr, "agentboxd: --%s: expected 1..1000000, got \"%s\"\n", flag, arg);
		return false;
	}
	*out = (unsigned)v;
	return true;
}

static loop_watch sig_w;

static void on_signal(void *ctx, uint32_t events)
{
	(void)ctx;
	(void)events;
	struct signalfd_siginfo si;
	while (read(sig_w.fd, &si, sizeof(si)) == sizeof(si)) {
		if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT || si.ssi_signo == SIGHUP) {
			log_msg("signal %d: shutting down", (int)si.ssi_signo);
			D.shutting_down = true;
		}
		/* SIGCHLD: sandboxes and the zygote are reaped through their
		 * pidfds; anything else reparented to us (we are a subreaper)
		 * is reaped here. */
	}
}

static void reap_orphans(void);

/* The directory of agentbox-executor: next to agentboxd in a build tree, or
 * $PREFIX/libexec/agentbox in the layout of `make install` ($PREFIX/bin
 * holds agentboxd). Both are fixed relative to the daemon's own executable,
 * never taken from the environment. Writes the directory to out. */
static int executor_dir(const char *bin_dir, char *out, size_t len, ab_error *err)
{
	char cand[PATH_MAX];
	snprintf(out, len, "%s", bin_dir);
	if (snprintf(cand, sizeof(cand), "%s/agentbox-executor", bin_dir) < (int)sizeof(cand) &&
	    access(cand, X_OK) == 0)
		return 0;
	char installed[PATH_MAX];
	if (snprintf(installed, sizeof(installed), "%s/../libexec/agentbox", bin_dir) >=
	    (int)sizeof(installed))
		return ab_error_set(err, -ENAMETOOLONG, "path too long: %s", bin_dir);
	if (snprintf(cand, sizeof(cand), "%s/agentbox-executor", installed) < (int)sizeof(cand) &&
	    access(cand, X_OK) == 0) {
		snprintf(out, len, "%s", installed);
		return 0;
	}
	return ab_error_set(err, -ENOENT,
			    "cannot find agentbox-executor in %s (a build tree) or in %s (an "
			    "installed tree); rebuild with `make` or reinstall with `make install`",
			    bin_dir, installed);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"stdio", no_argument, 0, 's'},
	    {"socket", required_argument, 0, 'S'},
	    {"home", required_argument, 0, 'H'},
	    {"pool", required_argument, 0, 'p'},
	    {"degrade", required_argument, 0, 'd'},
	    {"uid-base", required_argument, 0, 'u'},
	    {"nano-pool", required_argument, 0, 'n'},
	    {"pool-max", required_argument, 0, 'x'},
	    {"nano-pool-max", required_argument, 0, 'X'},
	    {"pool-shrink-after", required_argument, 0, 'K'},
	    {"idle-timeout", required_argument, 0, 'I'},
	    {"zygote-rotate", required_argument, 0, 'R'},
	    {"audit-checkpoints", required_argument, 0, 'A'},
	    {"no-audit", no_argument, 0, 'N'},
	    {"audit-group-ms", required_argument, 0, 'G'},
	    {"max-connections", required_argument, 0, 'C'},
	    {"max-connections-per-uid", required_argument, 0, 'c'},
	    {"max-sessions-per-connection", required_argument, 0, 'M'},
	    {"max-sessions-per-uid", required_argument, 0, 'm'},
	    {"policy", required_argument, 0, 'P'},
	    {"no-egress", no_argument, 0, 'E'},
	    {"egress-upstream-ca", required_argument, 0, 'U'},
	    {"egress-resolve", required_argument, 0, 'r'},
	    {"quiet", no_argument, 0, 'q'},
	    {"verbose", no_argument, 0, 'v'},
	    {"help", no_argument, 0, 'h'},
	    {"version", no_argument, 0, 'V'},
	    {0, 0, 0, 0},
	};
	bool use_stdio = false;
	const char *sock_path = NULL, *home = NULL, *degrade = NULL, *checkpoints = NULL;
	bool no_audit = false;
	unsigned group_ms = 0;
	const char *policy_file = NULL;
	static const char *resolve[64];
	static char upstream_ca[PATH_MAX];
	egress_opts eo = {.resolve = resolve};
	D.pool_target[TIER_HEAVY] = 2;
	D.pool_target[TIER_NANO] = 2;
	D.pool_max[TIER_HEAVY] = 32;
	D.pool_max[TIER_NANO] = 64;
	D.pool_shrink_after = 30;
	D.idle_timeout = 900;
	D.zygote_rotate = 1000;
	D.uid_base = 1000000000u;
	D.max_conns = 1024;
	D.max_conns_per_uid = 256;
	D.max_sessions_per_conn = 256;
	D.max_sessions_per_uid = 1024;
	int o, verbose = -1;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		char *end;
		switch (o) {
		case 's':
			use_stdio = true;
			break;
		case 'S':
			sock_path = optarg;
			break;
		case 'H':
			home = optarg;
			break;
		case 'p':
			D.pool_target[TIER_HEAVY] = (int)strtol(optarg, &end, 10);
			if (*end || D.pool_target[TIER_HEAVY] < 0 ||
			    D.pool_target[TIER_HEAVY] > 64) {
				fprintf(stderr, "agentboxd: --pool: expected 0..64, got \"%s\"\n",
					optarg);
				return 2;
			}
			break;
		case 'n':
			D.pool_target[TIER_NANO] = (int)strtol(optarg, &end, 10);
			if (*end || D.pool_target[TIER_NANO] < -1 ||
			    D.pool_target[TIER_NANO] > 256) {
				fprintf(stderr,
					"agentboxd: --nano-pool: expected -1..256, got \"%s\"\n",
					optarg);
				return 2;
			}
			break;
		case 'x':
		case 'X': {
			long v = strtol(optarg, &end, 10);
			if (!*optarg || *end || v < 0 || v > 256) {
				fprintf(stderr, "agentboxd: --%s: expected 0..256, got \"%s\"\n",
					o == 'x' ? "pool-max" : "nano-pool-max", optarg);
				return 2;
			}
			D.pool_max[o == 'x' ? TIER_HEAVY : TIER_NANO] = (int)v;
			break;
		}
		case 'K': {
			ab_error e = {0};
			if (ab_parse_seconds(optarg, &D.pool_shrink_after, &e) < 0) {
				fprintf(stderr, "agentboxd: --pool-shrink-after: %s\n", e.msg);
				return 2;
			}
			break;
		}
		case 'd':
			degrade = optarg;
			break;
		case 'u':
			D.uid_base = (uid_t)strtoul(optarg, &end, 10);
			if (*end || D.uid_base < 65536 || D.uid_base > 4000000000u) {
				fprintf(stderr,
					"agentboxd: --uid-base: expected 65536..4000000000\n");
				return 2;
			}
			break;
		case 'I': {
			ab_error e = {0};
			if (strcmp(optarg, "0") == 0) {
				D.idle_timeout = 0;
			} else if (ab_parse_seconds(optarg, &D.idle_timeout, &e) < 0) {
				fprintf(stderr, "agentboxd: --idle-timeout: %s\n", e.msg);
				return 2;
			}
			break;
		}
		case 'R': {
			unsigned long v = strtoul(optarg, &end, 10);
			if (!*optarg || *end || v > 1000000) {
				fprintf(
				    stderr,
				    "agentboxd: --zygote-rotate: expected 0..1000000, got \"%s\"\n",
				    optarg);
				return 2;
			}
			D.zygote_rotate = (unsigned)v;
			break;
		}
		case 'A':
			checkpoints = optarg;
			break;
		case 'N':
			no_audit = true;
			break;
		case 'G': {
			unsigned long v = strtoul(optarg, &end, 10);
			if (!*optarg || *end || v < 1 || v > 1000) {
				fprintf(
				    stderr,
				    "agentboxd: --audit-group-ms: expected 1..1000, got \"%s\"\n",
				    optarg);
				return 2;
			}
			group_ms = (unsigned)v;
			break;
		}
		case 'C':
			if (!parse_cap("max-connections", optarg, &D.max_conns))
				return 2;
			break;
		case 'c':
			if (!parse_cap("max-connections-per-uid", optarg, &D.max_conns_per_uid))
				return 2;
			break;
		case 'M':
			if (!parse_cap("max-sessions-per-connection", optarg,
				       &D.max_sessions_per_conn))
				return 2;
			break;
		case 'm':
			if (!parse_cap("max-sessions-per-uid", optarg, &D.max_sessions_per_uid))
				return 2;
			break;
		case 'P':
			policy_file = optarg;
			break;
		case 'E':
			eo.off = true;
			break;
		case 'U':
			if (!realpath(optarg, upstream_ca) || access(upstream_ca, R_OK) < 0) {
				fprintf(stderr, "agentboxd: --egress-upstream-ca %s: %s\n", optarg,
					strerror(errno));
				return 2;
			}
			eo.upstream_ca = upstream_ca;
			break;
		case 'r': {
			ab_error e = {0};
			if (egress_resolve_check(optarg, &e) < 0) {
				fprintf(stderr, "agentboxd: --egress-resolve %s\n", e.msg);
				return 2;
			}
			if (eo.nresolve == 64) {
				fprintf(stderr, "agentboxd: --egress-resolve: at most 64\n");
				return 2;
			}
			resolve[eo.nresolve++] = optarg;
			break;
		}
		case 'q':
			verbose = 0;
			break;
		case 'v':
			verbose = 1;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("agentboxd %s\n", AGENTBOX_VERSION);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	for (int t = 0; t < TIER__COUNT; t++)
		if (D.pool_max[t] < D.pool_target[t])
			D.pool_max[t] = D.pool_target[t];
	if (optind < argc || use_stdio == (sock_path != NULL)) {
		fprintf(stderr, "agentboxd: give exactly one of --stdio or --socket PATH\n");
		usage(stderr);
		return 2;
	}
	/* A private daemon shares the client's terminal: stay silent there
	 * unless asked. Errors that stop the daemon are printed regardless. */
	const char *dbg = getenv("AGENTBOX_DEBUG");
	if (verbose < 0)
		verbose = !use_stdio || (dbg && *dbg && strcmp(dbg, "0") != 0);
	quiet = !verbose;
	if (checkpoints && strcmp(checkpoints, "-") == 0 && use_stdio) {
		fprintf(stderr, "agentboxd: --audit-checkpoints -: stdout carries the JSON-RPC "
				"stream with --stdio; give a file\n");
		return 2;
	}
	if (checkpoints && no_audit) {
		fprintf(stderr, "agentboxd: --audit-checkpoints and --no-audit contradict\n");
		return 2;
	}
	unsigned allowed = 0;
	if (degrade) {
		char buf[512];
		snprintf(buf, sizeof(buf), "%s", degrade);
		for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
			int l = ab_layer_from_name(tok);
			if (l < 0) {
				fprintf(stderr, "agentboxd: --degrade: unknown layer \"%s\"\n",
					tok);
				return 2;
			}
			allowed |= 1u << l;
		}
	}

	ab_error err = {0};
	signal(SIGPIPE, SIG_IGN);
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	if (resolve_home(home, &err) < 0) {
		fprintf(stderr, "agentboxd: %s\n", err.msg);
		return 1;
	}
	D.privileged = geteuid() == 0;
	/* The files API acts with a sandbox's uid and gid as file-system
	 * credentials (files.c), where supplementary groups still count; as
	 * uid 0 the daemon has no use for them. */
	if (D.privileged && setgroups(0, NULL) < 0)
		log_msg("cannot drop supplementary groups (%s): files API calls keep them",
			strerror(errno));
	/* As root the daemon lives in a mount namespace of its own, so that
	 * each workspace can be a tmpfs capped at the sandbox's disk limit
	 * without those mounts appearing on the host, and so that they vanish
	 * with the daemon whatever way it ends. */
	if (D.privileged) {
		if (unshare(CLONE_NEWNS) == 0 &&
		    mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) == 0)
			D.private_mounts = true;
		else
			log_msg("no private mount namespace (%s): workspaces are not size-capped",
				strerror(errno));
	}

	/* cgroups first: on v2 the daemon moves itself into a leaf. */
	int cg = ab_cgroup_root_init(&err);
	if (cg == 0) {
		int n = ab_cgroup_reap_stale(NULL);
		if (n > 0)
			log_msg("reaped %d cgroups left by an earlier daemon", n);
	}
	ab_probe_layers(D.layers);
	if (cg < 0) {
		D.layers[AB_LAYER_CGROUP].present = false;
		snprintf(D.layers[AB_LAYER_CGROUP].why, sizeof(D.layers[AB_LAYER_CGROUP].why), "%s",
			 err.msg);
	}
	bool missing = false;
	for (int i = 0; i < AB_LAYER__COUNT; i++) {
		if (D.layers[i].present)
			continue;
		if (allowed & (1u << i)) {
			D.degraded |= 1u << i;
			log_msg("WARNING: isolation layer %s is missing (%s); running degraded as "
				"requested",
				ab_layer_name((enum ab_layer)i), D.layers[i].why);
		} else {
			fprintf(
			    stderr,
			    "agentboxd: isolation layer \"%s\" is missing: %s\n"
			    "  (refusing to start; run `agentbox doctor`, or pass --degrade %s to "
			    "accept the risk)\n",
			    ab_layer_name((enum ab_layer)i), D.layers[i].why,
			    ab_layer_name((enum ab_layer)i));
			missing = true;
		}
	}
	if (missing)
		return 1;

	if (loop_init() < 0) {
		perror("agentboxd: epoll");
		return 1;
	}
	reap_stale_sessions();
	routes_init();
	engine_init();
	sigset_t ss;
	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGHUP);
	sigaddset(&ss, SIGCHLD);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	int sfd = signalfd(-1, &ss, SFD_CLOEXEC | SFD_NONBLOCK);
	loop_add(&sig_w, sfd, EPOLLIN, on_signal, NULL);

	char self[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n < 0) {
		perror("agentboxd: /proc/self/exe");
		return 1;
	}
	self[n] = '\0';
	/* The log must be writable before anything is done: every action is
	 * recorded, starting with this start-up and the layers in force. */
	if (audit_init(D.home, checkpoints, no_audit, group_ms ? RECORD_GROUP : RECORD_DURABLE,
		       group_ms, &err) < 0) {
		fprintf(stderr, "agentboxd: audit log: %s\n", err.msg);
		return 1;
	}
	json_t *layers = json_object();
	for (int i = 0; i < AB_LAYER__COUNT; i++)
		json_object_set_new(layers, ab_layer_name((enum ab_layer)i),
				    json_string(D.layers[i].present	   ? "present"
						: (D.degraded & (1u << i)) ? "degraded"
									   : "missing"));
	audit_event("daemon.start", NULL, -1, "daemon",
		    json_pack("{s:s, s:i, s:i, s:s, s:s, s:o, s:o, s:s, s:s}", "version",
			      AGENTBOX_VERSION, "pid", (int)getpid(), "uid", (int)getuid(), "home",
			      D.home, "cgroup", ab_cgroup_version(), "layers", layers, "degraded",
			      degraded_list(), "mode", use_stdio ? "stdio" : "socket", "audit_sync",
			      audit_mode_name()));
	audit_sync();
	if (audit_broken()) {
		fprintf(stderr, "agentboxd: audit log: %s\n", audit_broken());
		return 1;
	}
	char exe_dir[PATH_MAX];
	if (executor_dir(dirname(self), exe_dir, sizeof(exe_dir), &err) < 0) {
		fprintf(stderr, "agentboxd: %s\n", err.msg);
		return 1;
	}
	/* Egress before any sandbox: the backend hands each new one's socket
	 * to it. A bad policy file stops the start-up; a missing CA or
	 * sidecar only leaves sandboxes without a network. */
	egress_configure(&eo);
	if (egress_init(D.home, exe_dir, policy_file, &err) < 0) {
		fprintf(stderr, "agentboxd: %s\n", err.msg);
		audit_shutdown();
		return 1;
	}
	/* Nano first: it is ready in a fraction of the time heavy's warm-up
	 * (pandas) takes, and serves the first runs of most clients; heavy
	 * starts once nano is ready, or at once when a client needs it. */
	for (int t = TIER__COUNT - 1; t >= 0; t--) {
		if (D.pool_target[t] < 0)
			continue;
		if (t == TIER_HEAVY && D.pool_target[TIER_NANO] >= 0) {
			zygote_start_later(TIER_HEAVY, exe_dir);
			continue;
		}
		if (zygote_start((enum tier)t, exe_dir, &err) < 0) {
			fprintf(stderr, "agentboxd: %s zygote: %s\n", tier_name((enum tier)t),
				err.msg);
			return 1;
		}
	}

	if (use_stdio) {
		fcntl(0, F_SETFL, fcntl(0, F_GETFL) | O_NONBLOCK);
		fcntl(1, F_SETFL, fcntl(1, F_GETFL) | O_NONBLOCK);
		if (!conn_new(0, 1, true)) {
			fprintf(stderr, "agentboxd: cannot serve stdio\n");
			return 1;
		}
	} else {
		int lfd = listen_socket(sock_path, &err);
		if (lfd < 0) {
			fprintf(stderr, "agentboxd: %s\n", err.msg);
			return 1;
		}
		reserve_open();
		int r = reserve_fd < 0 ? -errno : timer_init(&listen_pause, listen_resume, NULL);
		if (r == 0)
			r = loop_add(&listen_w, lfd, EPOLLIN, on_accept, NULL);
		if (r < 0) {
			fprintf(stderr, "agentboxd: cannot watch %s: %s\n", sock_path,
				strerror(-r));
			return 1;
		}
		log_msg("listening on %s", sock_path);
	}
	log_msg("agentboxd %s started (home %s, cgroup %s, %s)", AGENTBOX_VERSION, D.home,
		ab_cgroup_version(),
		D.privileged ? "root: one host uid per sandbox" : "unprivileged");

	while (!D.shutting_down) {
		if (loop_run_once(1000) < 0)
			break;
		conn_reap();
		engine_tick();
		reap_orphans();
		audit_flush(); /* last: what this iteration recorded, in one commit */
	}
	engine_shutdown();
	zygote_stop();
	engine_tick();
	egress_shutdown();
	audit_event("daemon.stop", NULL, -1, "daemon", json_pack("{s:i}", "pid", (int)getpid()));
	audit_shutdown();
	ab_cgroup_root_cleanup();
	if (sock_path)
		unlink(sock_path);
	log_msg("stopped");
	return 0;
}

/* We are a subreaper: processes orphaned below us (none expected, since
 * sandboxes die with their init) must not linger as zombies. Sandboxes
 * and the zygote are waited for through their pidfds, so only reap pids
 * that are not theirs. */
static void reap_orphans(void)
{
	for (;;) {
		siginfo_t si = {0};
		if (waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid == 0)
			return;
		bool known = zygote_owns_pid(si.si_pid) || engine_owns_pid(si.si_pid) ||
			     egress_owns_pid(si.si_pid);
		if (known)
			return; /* its pidfd watch will reap it */
		waitid(P_PID, (id_t)si.si_pid, &si, WEXITED | WNOHANG);
	}
}
