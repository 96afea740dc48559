/* main.c - agentbox-egress, the sidecar proxy (docs/egress.md): reads its
 * files, confines itself, says `ready` on the control channel (fd 3), then
 * serves the sandboxes the daemon attaches until fd 3 closes.
 *
 * Threads: this main thread polls fd 3 and every sandbox's listener and
 * starts one worker per accepted connection (proxy.c). Messages from the
 * daemon are checked like any other input: a malformed one is reported
 * with a `log` event and ignored. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../lib/fdpass.h"
#include "confine.h"
#include "inspect.h"
#include "ctl.h"
#include "internal.h"
#include "policy.h"
#include "proxy.h"
#include "tls.h"

#define CTL_FD 3

static void usage(FILE *f)
{
	fprintf(f,
		"usage: agentbox-egress --ca-cert FILE --ca-key FILE [--upstream-ca FILE]\n"
		"         [--resolve NAME=127.0.0.1:PORT]... [--uid N --gid N]\n"
		"         [--header-timeout-ms N] [--io-timeout-ms N] [--max-conns N]\n"
		"         [--max-conns-per-sandbox N] [--max-body BYTES] [--allow-no-landlock]\n"
		"         [--dlp-cache DIR]\n"
		"The egress sidecar of agentboxd (docs/egress.md). It is started by the daemon\n"
		"with its control channel (a SOCK_SEQPACKET socket) on fd 3, and exits when\n"
		"that channel closes.\n"
		"  --ca-cert, --ca-key    the egress CA (PEM) that signs intercepted hosts\n"
		"  --upstream-ca          extra roots (PEM) for verifying upstream servers\n"
		"  --resolve              for tests: send NAME to this loopback address\n"
		"  --uid, --gid           drop to these ids (when started as root)\n"
		"  --header-timeout-ms    a request head must arrive within this (10000)\n"
		"  --io-timeout-ms        each read and write must progress within this (30000)\n"
		"  --max-conns            connections at once, all sandboxes (256)\n"
		"  --max-conns-per-sandbox  connections at once per sandbox (64)\n"
		"  --max-body             largest request body, bytes (8388608)\n"
		"  --allow-no-landlock    run on a kernel without Landlock (the daemon passes it\n"
		"                         only under --degrade landlock); otherwise refused\n"
		"  --dlp-cache            where the compiled DLP detectors are kept (docs/dlp.md),\n"
		"                         read before the sidecar confines itself\n");
}

static int parse_num(const char *flag, const char *s, long long min, long long max, long long *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || end == s || *end || v < min || v > max) {
		fprintf(stderr, "agentbox-egress: %s %s: expected a number from %lld to %lld\n",
			flag, s, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

static bool sandbox_id_ok(const char *s)
{
	size_t n = strlen(s);
	if (n == 0 || n > EG_SANDBOX_ID_MAX)
		return false;
	for (const char *c = s; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || strchr("-_.:", *c)))
			return false;
	return true;
}

/* Checks that a message has only the listed keys. */
static bool keys_only(const json_t *j, const char *const *keys, const char **bad)
{
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)j, k, v)
	{
		size_t i = 0;
		while (keys[i] && strcmp(keys[i], k) != 0)
			i++;
		if (!keys[i]) {
			*bad = k;
			return false;
		}
	}
	return true;
}

static void close_all(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		close(fds[i]);
}

/* A listening unix stream socket, or why not. */
static const char *check_listener(int fd)
{
	int v = 0;
	socklen_t l = sizeof(v);
	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &v, &l) < 0 || v != AF_UNIX)
		return "not a unix socket";
	l = sizeof(v);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &l) < 0 || v != SOCK_STREAM)
		return "not a stream socket";
	l = sizeof(v);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &l) < 0 || v != 1)
		return "not listening";
	return NULL;
}

/* One message from the daemon. */
static void handle_message(const char *buf, size_t len, int *fds, int nfds)
{
	json_error_t jerr;
	AB_AUTOJSON json_t *j = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	const char *op = json_string_value(json_object_get(j, "op"));
	const char *bad = NULL;
	if (!j || !json_is_object(j) || !op) {
		eg_ctl_log("control: ignored a message that is not a JSON object with \"op\"%s%s",
			   j ? "" : ": ", j ? "" : jerr.text);
		close_all(fds, nfds);
		return;
	}
	if (strcmp(op, "ping") == 0) {
		static const char *const keys[] = {"op", "seq", NULL};
		json_t *seq = json_object_get(j, "seq");
		if (!keys_only(j, keys, &bad) || !json_is_integer(seq) || nfds) {
			eg_ctl_log("control: ignored a malformed ping");
			close_all(fds, nfds);
			return;
		}
		eg_ctl_send(json_pack("{s:s, s:I}", "ev", "pong", "seq", json_integer_value(seq)));
		return;
	}
	const char *id = json_string_value(json_object_get(j, "sandbox"));
	if (!id || !sandbox_id_ok(id)) {
		eg_ctl_log("control: ignored %.16s: no valid \"sandbox\"", op);
		close_all(fds, nfds);
		return;
	}
	ab_error err = {0};
	if (strcmp(op, "attach") == 0 || strcmp(op, "policy") == 0) {
		bool attach = op[0] == 'a';
		static const char *const keys[] = {"op", "sandbox", "policy", NULL};
		if (!keys_only(j, keys, &bad)) {
			eg_ctl_log("control: ignored %s for %s: unknown key %.64s", op, id, bad);
			close_all(fds, nfds);
			return;
		}
		if (nfds != (attach ? 1 : 0)) {
			eg_ctl_log("control: ignored %s for %s: %d descriptors (expected %d)", op,
				   id, nfds, attach ? 1 : 0);
			close_all(fds, nfds);
			return;
		}
		const char *why = attach ? check_listener(fds[0]) : NULL;
		if (why) {
			eg_ctl_log("control: ignored attach for %s: its descriptor is %s", id, why);
			close_all(fds, nfds);
			return;
		}
		eg_policy *pol = NULL;
		if (eg_policy_parse(json_object_get(j, "policy"), eg_now_ms(), &pol, &err) < 0) {
			eg_ctl_log("control: ignored %s for %s: %s", op, id, err.msg);
			close_all(fds, nfds);
			return;
		}
		int rc;
		if (attach) {
			int fl = fcntl(fds[0], F_GETFL);
			if (fl < 0 || fcntl(fds[0], F_SETFL, fl | O_NONBLOCK) < 0)
				rc = ab_error_errno(&err, -errno, "attach %s: O_NONBLOCK", id);
			else
				rc = eg_sandbox_attach(id, fds[0], pol, &err);
		} else {
			rc = eg_sandbox_set_policy(id, pol, &err);
		}
		if (rc < 0) {
			eg_ctl_log("control: ignored %s: %s", op, err.msg);
			eg_policy_unref(pol);
			close_all(fds, nfds);
		}
		return;
	}
	if (strcmp(op, "detach") == 0) {
		static const char *const keys[] = {"op", "sandbox", NULL};
		if (!keys_only(j, keys, &bad) || nfds) {
			eg_ctl_log("control: ignored a malformed detach for %s", id);
			close_all(fds, nfds);
			return;
		}
		if (eg_sandbox_detach(id, &err) < 0)
			eg_ctl_log("control: ignored detach: %s", err.msg);
		return;
	}
	eg_ctl_log("control: ignored unknown op %.32s", op);
	close_all(fds, nfds);
}

/* Reads one control message. Returns -1 when the channel is gone. */
static int control_readable(void)
{
	static char buf[EG_CTL_MSG_MAX + 1];
	int fds[AB_FDPASS_MAX];
	int nfds = 0;
	int n = ab__recv_fds(CTL_FD, buf, sizeof(buf), fds, AB_FDPASS_MAX, &nfds);
	if (n == -EMSGSIZE) {
		eg_ctl_log("control: ignored a message over %d bytes or with too many "
			   "descriptors",
			   EG_CTL_MSG_MAX);
		return 0;
	}
	if (n == -EAGAIN || n == -EINTR)
		return 0;
	if (n <= 0)
		return -1;
	if ((size_t)n > EG_CTL_MSG_MAX) {
		close_all(fds, nfds);
		eg_ctl_log("control: ignored a message over %d bytes", EG_CTL_MSG_MAX);
		return 0;
	}
	handle_message(buf, (size_t)n, fds, nfds);
	return 0;
}

int main(int argc, char **argv)
{
	enum {
		O_CA_CERT = 256,
		O_CA_KEY,
		O_UPSTREAM_CA,
		O_RESOLVE,
		O_UID,
		O_GID,
		O_HEADER_TIMEOUT,
		O_IO_TIMEOUT,
		O_MAX_CONNS,
		O_MAX_PER,
		O_MAX_BODY,
		O_CHECK,
		O_NO_LANDLOCK,
		O_DLP_CACHE,
		O_HELP,
	};
	static const struct option opts[] = {
	    {"ca-cert", required_argument, NULL, O_CA_CERT},
	    {"ca-key", required_argument, NULL, O_CA_KEY},
	    {"upstream-ca", required_argument, NULL, O_UPSTREAM_CA},
	    {"resolve", required_argument, NULL, O_RESOLVE},
	    {"uid", required_argument, NULL, O_UID},
	    {"gid", required_argument, NULL, O_GID},
	    {"header-timeout-ms", required_argument, NULL, O_HEADER_TIMEOUT},
	    {"io-timeout-ms", required_argument, NULL, O_IO_TIMEOUT},
	    {"max-conns", required_argument, NULL, O_MAX_CONNS},
	    {"max-conns-per-sandbox", required_argument, NULL, O_MAX_PER},
	    {"max-body", required_argument, NULL, O_MAX_BODY},
	    {"check-confinement", no_argument, NULL, O_CHECK},
	    {"allow-no-landlock", no_argument, NULL, O_NO_LANDLOCK},
	    {"dlp-cache", required_argument, NULL, O_DLP_CACHE},
	    {"help", no_argument, NULL, O_HELP},
	    {NULL, 0, NULL, 0},
	};
	const char *ca_cert = NULL, *ca_key = NULL, *upstream_ca = NULL, *dlp_cache = NULL;
	long long uid = -1, gid = -1, v;
	bool check = false, allow_no_landlock = false;
	static eg_resolve_map maps[64];
	size_t nmaps = 0;
	ab_error err = {0};
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case O_CA_CERT:
			ca_cert = optarg;
			break;
		case O_DLP_CACHE:
			dlp_cache = optarg;
			break;
		case O_CA_KEY:
			ca_key = optarg;
			break;
		case O_UPSTREAM_CA:
			upstream_ca = optarg;
			break;
		case O_RESOLVE:
			if (nmaps == sizeof(maps) / sizeof(maps[0])) {
				fprintf(stderr, "agentbox-egress: more than 64 --resolve\n");
				return 2;
			}
			if (eg_resolve_map_parse(optarg, &maps[nmaps], &err) < 0) {
				fprintf(stderr, "agentbox-egress: %s\n", err.msg);
				return 2;
			}
			nmaps++;
			break;
		case O_UID:
			if (parse_num("--uid", optarg, 0, UINT_MAX - 1, &uid) < 0)
				return 2;
			break;
		case O_GID:
			if (parse_num("--gid", optarg, 0, UINT_MAX - 1, &gid) < 0)
				return 2;
			break;
		case O_HEADER_TIMEOUT:
			if (parse_num("--header-timeout-ms", optarg, 1, 3600000, &v) < 0)
				return 2;
			eg_cfg.header_timeout_ms = (int)v;
			break;
		case O_IO_TIMEOUT:
			if (parse_num("--io-timeout-ms", optarg, 1, 3600000, &v) < 0)
				return 2;
			eg_cfg.io_timeout_ms = (int)v;
			break;
		case O_MAX_CONNS:
			if (parse_num("--max-conns", optarg, 1, 65536, &v) < 0)
				return 2;
			eg_cfg.max_conns = (int)v;
			break;
		case O_MAX_PER:
			if (parse_num("--max-conns-per-sandbox", optarg, 1, 65536, &v) < 0)
				return 2;
			eg_cfg.max_conns_per_sandbox = (int)v;
			break;
		case O_MAX_BODY:
			if (parse_num("--max-body", optarg, 0, (long long)1 << 30, &v) < 0)
				return 2;
			eg_cfg.max_body = (size_t)v;
			break;
		case O_CHECK:
			check = true;
			break;
		case O_NO_LANDLOCK:
			allow_no_landlock = true;
			break;
		case O_HELP:
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "agentbox-egress: unexpected argument %s\n", argv[optind]);
		return 2;
	}
	if (!ca_cert || !ca_key) {
		fprintf(stderr, "agentbox-egress: --ca-cert and --ca-key are required\n");
		return 2;
	}
	if ((uid < 0) != (gid < 0)) {
		fprintf(stderr, "agentbox-egress: --uid and --gid go together\n");
		return 2;
	}
	eg_cfg.resolve = maps;
	eg_cfg.nresolve = nmaps;
	signal(SIGPIPE, SIG_IGN);

	if (!check) {
		int type = 0;
		socklen_t l = sizeof(type);
		if (getsockopt(CTL_FD, SOL_SOCKET, SO_TYPE, &type, &l) < 0 ||
		    type != SOCK_SEQPACKET) {
			fprintf(stderr, "agentbox-egress: fd 3 is not a SOCK_SEQPACKET socket (it "
					"is started by agentboxd)\n");
			return 2;
		}
		fcntl(CTL_FD, F_SETFD, FD_CLOEXEC);
		eg_ctl_init(CTL_FD);
	}

	/* Files first: after confinement nothing outside /etc and /usr can
	 * be read. A missing TLS layer only disables HTTPS. */
	if (access(ca_cert, R_OK) < 0 || access(ca_key, R_OK) < 0) {
		fprintf(stderr, "agentbox-egress: cannot read %s: %s\n",
			access(ca_cert, R_OK) < 0 ? ca_cert : ca_key, strerror(errno));
		return 2;
	}
	if (eg_tls_init(ca_cert, ca_key, upstream_ca, &err) == 0) {
		eg_cfg.tls_ok = true;
	} else {
		snprintf(eg_cfg.tls_error, sizeof(eg_cfg.tls_error), "%s", err.msg);
		if (!check)
			eg_ctl_log("TLS unavailable, CONNECT will be refused: %s", err.msg);
	}

	/* The detectors, compiled once. Without them nothing could be
	 * inspected: the sidecar does not start (egress fails closed). The
	 * salt keys the hashes findings are recorded by (docs/dlp.md); the
	 * daemon passes it in the environment, which is not kept. */
	char dlp_err[256];
	const char *salt = getenv("AGENTBOX_DLP_SALT");
	if (eg_inspect_init(salt, dlp_cache, dlp_err, sizeof(dlp_err)) < 0) {
		fprintf(stderr, "agentbox-egress: DLP: %s\n", dlp_err);
		if (!check)
			eg_ctl_log("cannot start the DLP engine: %s", dlp_err);
		return 1;
	}
	unsetenv("AGENTBOX_DLP_SALT");

	err = (ab_error){0};
	if (eg_confine(uid >= 0, (uid_t)uid, (gid_t)gid, allow_no_landlock, &err) < 0) {
		fprintf(stderr, "agentbox-egress: confine: %s\n", err.msg);
		if (!check)
			eg_ctl_log("cannot confine the sidecar: %s", err.msg);
		return 1;
	}
	if (check) {
		eg_confine_report();
		return 0;
	}

	eg_ctl_send(json_pack("{s:s}", "ev", "ready"));
	static struct pollfd pfds[EG_SANDBOXES_MAX + 1];
	static int lfds[EG_SANDBOXES_MAX];
	for (;;) {
		size_t n = eg_sandbox_listeners(lfds, EG_SANDBOXES_MAX);
		pfds[0] = (struct pollfd){.fd = CTL_FD, .events = POLLIN};
		for (size_t i = 0; i < n; i++)
			pfds[i + 1] = (struct pollfd){.fd = lfds[i], .events = POLLIN};
		int r = poll(pfds, n + 1, -1);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "agentbox-egress: poll: %s\n", strerror(errno));
			return 1;
		}
		/* Listeners first: a detach in this round's message closes one. */
		for (size_t i = 0; i < n; i++)
			if (pfds[i + 1].revents & POLLIN)
				eg_sandbox_accept(pfds[i + 1].fd);
		if (pfds[0].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) {
			if (pfds[0].revents & POLLNVAL)
				return 0;
			if (control_readable() < 0)
				return 0;
		}
	}
}
