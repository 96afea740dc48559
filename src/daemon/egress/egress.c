/* egress.c - the daemon's egress module (docs/egress.md): its set-up from
 * the daemon's flags, the CA, the policy file and the sidecar; and what the
 * front ends ask of it before a method runs (network parameters, who is the
 * operator). The state per sandbox is state.c's, the process sidecar.c's,
 * the rules policy.c's.
 *
 * Egress is off (egress_enabled() false) with --no-egress or when the CA or
 * the sidecar's executable is missing: sandboxes then get no relay and no
 * socket, so they have no network at all; nothing ever fails open. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../egress/ca.h"
#include "egress/egress.h"
#include "egress/policy.h"
#include "egress/sidecar.h"
#include "engine/engine.h"
#include "fileio.h"

#define NETWORK_JSON_MAX (256u << 10)

static egress_opts opts;
static bool on;
static char why_off[600] = "not started";
static char bundle[PATH_MAX];
static char sock_dir[PATH_MAX]; /* "" : each sandbox's own directory */
static char audit_db[PATH_MAX];

void egress_configure(const egress_opts *o)
{
	opts = *o;
}

int egress_resolve_check(const char *arg, ab_error *err)
{
	const char *eq = strchr(arg, '=');
	char name[EG_HOST_MAX + 2], host[EG_HOST_MAX + 1];
	if (!eq || eq == arg || (size_t)(eq - arg) > EG_HOST_MAX)
		return ab_error_set(err, -EINVAL, "\"%.300s\": expected NAME=127.0.0.1:PORT", arg);
	snprintf(name, sizeof(name), "%.*s", (int)(eq - arg), arg);
	ab_error e = {0};
	if (eg_host_normalize(name, host, &e) < 0 || eg_host_is_ip(host))
		return ab_error_set(err, -EINVAL, "\"%.300s\": NAME must be a host name: %s", arg,
				    e.msg[0] ? e.msg : "an IP address needs no mapping");
	const char *addr = eq + 1, *colon = strrchr(addr, ':');
	char ip[64];
	if (!colon || colon == addr || (size_t)(colon - addr) >= sizeof(ip))
		return ab_error_set(err, -EINVAL, "\"%.300s\": expected NAME=127.0.0.1:PORT", arg);
	snprintf(ip, sizeof(ip), "%.*s", (int)(colon - addr), addr);
	unsigned char a[4];
	if (inet_pton(AF_INET, ip, a) != 1 || a[0] != 127)
		return ab_error_set(
		    err, -EINVAL,
		    "\"%.300s\": only a loopback address (127.x.x.x) may be named: "
		    "this flag is for tests and must never send traffic off the host",
		    arg);
	char *end;
	errno = 0;
	unsigned long port = strtoul(colon + 1, &end, 10);
	if (!colon[1] || *end || errno || port < 1 || port > 65535)
		return ab_error_set(err, -EINVAL, "\"%.300s\": PORT must be 1..65535", arg);
	return 0;
}

bool egress_owns_pid(pid_t pid)
{
	return sidecar_owns_pid(pid);
}

const char *egress_why_off(void)
{
	return on ? NULL : why_off;
}

const char *egress_audit_db(void)
{
	return audit_db;
}

bool egress_enabled(void)
{
	return on;
}

const char *egress_socket_dir(void)
{
	return on && sock_dir[0] ? sock_dir : NULL;
}

/* Copies the bundle into dst (0644); 0 or -errno. */
static int copy_file(const char *src, const char *dst)
{
	int in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (in < 0)
		return -errno;
	int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (out < 0) {
		int e = -errno;
		close(in);
		return e;
	}
	char buf[65536];
	ssize_t n;
	int r = 0;
	while ((n = read(in, buf, sizeof(buf))) > 0)
		if ((r = ab__write_all(out, buf, (size_t)n)) < 0)
			break;
	if (n < 0)
		r = -errno;
	close(in);
	if (close(out) < 0 && r == 0)
		r = -errno;
	return r;
}

/* As root the daemon has a mount namespace of its own: the sockets and
 * the bundle that sandboxes see through bind mounts live on a small tmpfs
 * of their own, so a sandbox's /proc/self/mountinfo names "/ca-bundle.pem"
 * and "/<id>.sock" on a tmpfs, not a path of the host (test_l1). Without
 * private mounts the workspace leaks its host path the same way, and the
 * sockets stay in each sandbox's directory. */
static int runtime_tmpfs(const char *dir, ab_error *err)
{
	snprintf(sock_dir, sizeof(sock_dir), "%s/run", dir);
	if (mkdir(sock_dir, 0700) < 0 && errno != EEXIST)
		return ab_error_errno(err, -errno, "mkdir %s", sock_dir);
	if (mount("tmpfs", sock_dir, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
		  "size=4m,nr_inodes=65536,mode=0700") < 0)
		return ab_error_errno(err, -errno, "mount tmpfs on %s", sock_dir);
	char dst[PATH_MAX + 32];
	snprintf(dst, sizeof(dst), "%s/ca-bundle.pem", sock_dir);
	int r = copy_file(bundle, dst);
	if (r < 0)
		return ab_error_errno(err, r, "copy the CA bundle to %s", dst);
	snprintf(bundle, sizeof(bundle), "%s", dst);
	return 0;
}

const char *egress_ca_bundle(void)
{
	return on ? bundle : NULL;
}

/* Egress stays off: why, in the log and the record. */
static void turn_off(const char *why)
{
	snprintf(why_off, sizeof(why_off), "%s", why);
	log_msg("egress unavailable, sandboxes have no network: %s", why);
	audit_event("egress.sidecar", NULL, -1, "daemon",
		    json_pack("{s:s, s:s}", "state", "disabled", "reason", why));
}

int egress_init(const char *home, const char *exe_dir, const char *policy_file, ab_error *err)
{
	snprintf(audit_db, sizeof(audit_db), "%s/audit.db", home);
	json_t *pol = NULL;
	if (policy_file) {
		char abs[PATH_MAX];
		if (!realpath(policy_file, abs))
			return ab_error_errno(err, -errno, "policy file %s", policy_file);
		if (eg_policy_load(abs, &pol, err) < 0)
			return err->code;
		policy_file = abs;
		if (state_init(pol, abs, err) < 0)
			return err->code;
	} else if (!(pol = eg_policy_default()) || state_init(pol, NULL, err) < 0) {
		return err->code ? err->code : ab_error_set(err, -ENOMEM, "out of memory");
	}
	if (opts.off) {
		turn_off("turned off (--no-egress)");
		return 0;
	}
	char dir[PATH_MAX], cert[PATH_MAX + 16], key[PATH_MAX + 16], exe[PATH_MAX + 32];
	snprintf(dir, sizeof(dir), "%s/egress", home);
	snprintf(cert, sizeof(cert), "%s/ca.pem", dir);
	snprintf(key, sizeof(key), "%s/ca.key", dir);
	snprintf(bundle, sizeof(bundle), "%s/ca-bundle.pem", dir);
	snprintf(exe, sizeof(exe), "%s/agentbox-egress", exe_dir);
	ab_error e = {0};
	if (eg_ca_ensure(dir, &e) < 0) {
		char why[600];
		snprintf(why, sizeof(why), "egress CA: %s", e.msg);
		turn_off(why);
		return 0;
	}
	if (D.private_mounts && runtime_tmpfs(dir, &e) < 0) {
		char why[600];
		sock_dir[0] = '\0';
		snprintf(why, sizeof(why), "egress runtime files: %s", e.msg);
		turn_off(why);
		return 0;
	}
	if (access(exe, X_OK) < 0) {
		char why[600];
		snprintf(why, sizeof(why), "cannot run %s: %s", exe, strerror(errno));
		turn_off(why);
		return 0;
	}
	/* Its arguments (docs/egress.md). As root, a uid and gid of its own:
	 * one below the sandboxes' range (--uid-base), which no sandbox is
	 * ever given (they get uid_base + slot) and which owns nothing on the
	 * host, so the sidecar can signal, trace or read no sandbox process
	 * and no file of the daemon's once it has dropped to it. */
	char *args[16 + 2 * 64 + 1];
	char uid[16];
	int n = 0;
	args[n++] = "--ca-cert";
	args[n++] = cert;
	args[n++] = "--ca-key";
	args[n++] = key;
	if (opts.upstream_ca) {
		args[n++] = "--upstream-ca";
		args[n++] = (char *)opts.upstream_ca;
	}
	/* The compiled detectors the daemon keeps in its home (record/
	 * redact.c made them): read before the sidecar drops privileges. */
	args[n++] = "--dlp-cache";
	args[n++] = (char *)home;
	for (int i = 0; i < opts.nresolve && i < 64; i++) {
		args[n++] = "--resolve";
		args[n++] = (char *)opts.resolve[i];
	}
	if (D.privileged) {
		snprintf(uid, sizeof(uid), "%u", (unsigned)(D.uid_base - 1));
		args[n++] = "--uid";
		args[n++] = uid;
		args[n++] = "--gid";
		args[n++] = uid;
	}
	/* Without Landlock the sidecar refuses to run unless the operator
	 * chose to run without that layer. */
	if (D.degraded & (1u << AB_LAYER_LANDLOCK))
		args[n++] = "--allow-no-landlock";
	args[n] = NULL;
	if (sidecar_start(exe, args, &e) < 0) {
		char why[600];
		snprintf(why, sizeof(why), "agentbox-egress: %s", e.msg);
		turn_off(why);
		return 0;
	}
	on = true;
	return 0;
}

void egress_shutdown(void)
{
	sidecar_stop();
	state_shutdown();
	on = false;
	snprintf(why_off, sizeof(why_off), "the daemon is shutting down");
}

int egress_parse_network(json_t *v, json_t **out, ab_error *err)
{
	*out = NULL;
	if (!v || json_is_null(v) ||
	    (json_is_string(v) && strcmp(json_string_value(v), "none") == 0))
		return 0;
	if (!json_is_array(v))
		return ab_error_set(err, -EINVAL,
				    "params.network: expected \"none\" or a list of rules (host "
				    "patterns or rule objects)");
	json_t *rules = eg_rules_normalize(v, "sandbox", "params.network", err);
	if (!rules)
		return -EINVAL;
	char *text = json_dumps(rules, JSON_COMPACT);
	size_t len = text ? strlen(text) : SIZE_MAX;
	free(text);
	if (len > NETWORK_JSON_MAX) {
		json_decref(rules);
		return ab_error_set(err, -EINVAL, "params.network: the rules take more than %u KiB",
				    NETWORK_JSON_MAX >> 10);
	}
	if (json_array_size(rules) == 0) {
		json_decref(rules);
		return 0;
	}
	*out = rules;
	return 0;
}

int egress_parse_dlp(json_t *v, json_t **out, ab_error *err)
{
	*out = NULL;
	if (!v || json_is_null(v))
		return 0;
	*out = eg_dlp_normalize(v, "params.dlp", err);
	return *out ? 0 : -EINVAL;
}

bool egress_is_operator(const client *cl)
{
	return cl->local || cl->uid == 0 || cl->uid == geteuid();
}
