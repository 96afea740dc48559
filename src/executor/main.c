/* agentbox-executor - the program that embeds CPython.
 *
 * It runs in one mode: as a tier's zygote, started by agentboxd with a
 * SOCK_SEQPACKET control socket on fd 3. The zygote initialises the
 * interpreter once (heavy: imports and warms numpy, pandas, matplotlib),
 * then waits for spawn requests. Each request carries the new sandbox's
 * limits and descriptors; the zygote clones the sandbox (see jail.c), whose
 * executor process (PID 2 inside) runs session_main below and speaks the
 * executor protocol on its own socket:
 *
 *   daemon -> executor   {"op":"run","step":N,"nonce":"...","code":"...",
 *                        "frame_max":N}  {"op":"snapshot","id":N} (+ a socket,
 *                        see snapshot.h)  {"op":"exit"}
 *   executor -> daemon   {"ev":"ready"}  {"ev":"started","step":N}
 *                        {"ev":"result","step":N, ...cell result...}
 *                        {"ev":"fatal","error":"..."}  (set-up failed)
 *
 * Everything the executor sends is untrusted by the daemon: user code runs
 * in this process and can write to the socket itself.
 */
#include <Python.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>

#include "frame.h"
#include "internal.h"
#include "cell.h"
#include "confine.h"
#include "fdpass.h"
#include "jail.h"
#include "snapshot.h"

#define ZYGOTE_FD 3
#define SESSION_FD 3
#define MAX_REQUEST (16u << 20)

/* The only environment user code sees (L2): nothing of the daemon's. */
static const char *const session_env[][2] = {
    {"PATH", "/usr/local/bin:/usr/bin:/bin"},
    {"HOME", "/workspace"},
    {"LANG", "C.UTF-8"},
    {"LC_ALL", "C.UTF-8"},
    {"TMPDIR", "/tmp"},
    {"MPLBACKEND", "Agg"},
    {"MPLCONFIGDIR", "/tmp/.matplotlib"},
    {"OPENBLAS_NUM_THREADS", "1"},
    {"OMP_NUM_THREADS", "1"},
    {"MKL_NUM_THREADS", "1"},
    {"PYTHONDONTWRITEBYTECODE", "1"},
    {"PYTHONUNBUFFERED", "1"},
};

/* Added for a sandbox with egress (docs/egress.md): the proxy is init's
 * relay, the CA bundle (system roots and the sidecar's CA) is mounted by
 * the jail. */
#define EGRESS_PROXY "http://127.0.0.1:3128"
#define EGRESS_NO_PROXY "localhost,127.0.0.1,::1"
static const char *const egress_env[][2] = {
    {"HTTP_PROXY", EGRESS_PROXY},  {"HTTPS_PROXY", EGRESS_PROXY}, {"http_proxy", EGRESS_PROXY},
    {"https_proxy", EGRESS_PROXY}, {"NO_PROXY", EGRESS_NO_PROXY}, {"no_proxy", EGRESS_NO_PROXY},
};
static const char *const ca_env[][2] = {
    {"SSL_CERT_FILE", AB_JAIL_CA_BUNDLE},
    {"REQUESTS_CA_BUNDLE", AB_JAIL_CA_BUNDLE},
    {"CURL_CA_BUNDLE", AB_JAIL_CA_BUNDLE},
    {"PIP_CERT", AB_JAIL_CA_BUNDLE},
};

/* What the zygote tells the sandbox's executor about itself (copied into
 * the sandbox with the rest of the zygote's memory). */
typedef struct session_opts {
	bool egress; /* init relays 127.0.0.1:3128 to the egress socket */
	bool ca;     /* the CA bundle is mounted */
} session_opts;

static bool nano_tier;

static int send_event(json_t *ev)
{
	ab_error err = {0};
	int r = ab_frame_write(SESSION_FD, ev, &err);
	json_decref(ev);
	return r;
}

/* Post-fork fix-ups inside the sandbox: a fresh environment in os.environ,
 * fresh seeds for random and numpy (forked children would otherwise share
 * the zygote's generator state), and matplotlib's cached config dir (the
 * zygote's one does not exist in the sandbox). */
static const char post_fork_py[] =
    "import os, sys, random\n"
    "os.environ.clear()\n"
    "os.environ.update(__agentbox_env)\n"
    "random.seed()\n"
    "if 'platform' in sys.modules:\n"
    "    sys.modules['platform']._uname_cache = None\n"
    "if 'numpy' in sys.modules:\n"
    "    sys.modules['numpy'].random.seed()\n"
    "if 'matplotlib' in sys.modules:\n"
    "    _m = sys.modules['matplotlib']\n"
    "    for _f in ('get_configdir', 'get_cachedir'):\n"
    "        getattr(getattr(_m, _f, None), 'cache_clear', lambda: None)()\n"
    "    del _m, _f\n"
    "if __agentbox_nano:\n"
    "    sys.path[:] = [p for p in sys.path\n"
    "                   if 'dist-packages' not in p and 'site-packages' not in p]\n"
    "del os, sys, random\n";

/* Sets name=value in the C environment (what programs user code starts
 * inherit) and in env (what becomes os.environ). */
static int env_put(PyObject *env, const char *name, const char *value)
{
	if (setenv(name, value, 1) < 0)
		return -1;
	PyObject *v = PyUnicode_FromString(value);
	if (!v || PyDict_SetItemString(env, name, v) < 0) {
		Py_XDECREF(v);
		return -1;
	}
	Py_DECREF(v);
	return 0;
}

static int post_fork(const session_opts *opts)
{
	clearenv();
	PyObject *env = PyDict_New();
	if (!env)
		return -1;
	for (size_t i = 0; i < sizeof(session_env) / sizeof(session_env[0]); i++) {
		if (env_put(env, session_env[i][0], session_env[i][1]) < 0) {
			Py_DECREF(env);
			return -1;
		}
	}
	for (size_t i = 0; opts->egress && i < sizeof(egress_env) / sizeof(egress_env[0]); i++) {
		if (env_put(env, egress_env[i][0], egress_env[i][1]) < 0) {
			Py_DECREF(env);
			return -1;
		}
	}
	for (size_t i = 0; opts->ca && i < sizeof(ca_env) / sizeof(ca_env[0]); i++) {
		if (env_put(env, ca_env[i][0], ca_env[i][1]) < 0) {
			Py_DECREF(env);
			return -1;
		}
	}
	PyObject *main = PyImport_AddModule("__main__"); /* borrowed */
	PyObject *globals = main ? PyModule_GetDict(main) : NULL;
	if (!globals || PyDict_SetItemString(globals, "__agentbox_env", env) < 0 ||
	    PyDict_SetItemString(globals, "__agentbox_nano", nano_tier ? Py_True : Py_False) < 0) {
		Py_DECREF(env);
		return -1;
	}
	Py_DECREF(env);
	PyObject *r = PyRun_String(post_fork_py, Py_file_input, globals, globals);
	PyDict_DelItemString(globals, "__agentbox_env");
	PyDict_DelItemString(globals, "__agentbox_nano");
	if (!r) {
		PyErr_Print();
		return -1;
	}
	Py_DECREF(r);
	return 0;
}

/* Runs a typical cell once before the sandbox reports ready, so that the
 * copy-on-write faults and lazy initialisation it triggers (the cell
 * machinery, pandas' first describe()) are paid here, while the sandbox
 * waits in the pool, and not by the client's first run. The cell's
 * traces (names, "_", its linecache entry) are removed afterwards. */
static const char warm_cell[] =
    "import sys as __ab_sys\n"
    "if 'pandas' in __ab_sys.modules:\n"
    "    __ab_df = __ab_sys.modules['pandas'].DataFrame({'A': [1, 2, 3]})\n"
    "    repr(__ab_df.describe()); __ab_df._repr_html_()\n"
    "1\n";
static const char warm_cleanup[] =
    "import linecache as __ab_lc\n"
    "__ab_lc.cache.pop('<warm-up>', None)\n"
    "for __ab_n in ('__ab_sys', '__ab_df', '__ab_lc', '_', '__ab_n'):\n"
    "    globals().pop(__ab_n, None)\n";

static void warm_session(void)
{
	json_t *r = ab_cell_run(warm_cell, "<warm-up>");
	json_decref(r);
	PyObject *main = PyImport_AddModule("__main__");
	PyObject *globals = main ? PyModule_GetDict(main) : NULL;
	PyObject *res =
	    globals ? PyRun_String(warm_cleanup, Py_file_input, globals, globals) : NULL;
	if (!res)
		PyErr_Clear();
	Py_XDECREF(res);
}

/* Cuts a string member of obj to at most keep bytes (on a character
 * boundary), marking the cut. */
static void cut_member(json_t *obj, const char *key, size_t keep)
{
	json_t *v = json_object_get(obj, key);
	if (!json_is_string(v) || json_string_length(v) <= keep)
		return;
	const char *p = json_string_value(v);
	while (keep > 0 && ((unsigned char)p[keep] & 0xC0) == 0x80)
		keep--;
	char *buf = malloc(keep + 32);
	if (!buf) {
		json_object_set_new(obj, key, json_string("... [truncated]"));
		return;
	}
	memcpy(buf, p, keep);
	memcpy(buf + keep, "... [truncated]", 16);
	json_object_set_new(obj, key, json_stringn(buf, keep + 15));
	free(buf);
}

/* The daemon refuses a result frame over the run's frame_max (derived from
 * the session's output limit) and kills the sandbox that sent one, so a
 * result that does not fit gives up, in this order, the post-mortem frames
 * of its error, its rich outputs, the length of its texts, and everything
 * but its outcome. */
static void fit_result(json_t *res, size_t max)
{
	const size_t flags = JSON_COMPACT | JSON_ENSURE_ASCII;
	if (json_dumpb(res, NULL, 0, flags) <= max)
		return;
	char note[200];
	snprintf(note, sizeof(note),
		 "<output omitted: the result exceeds the %zu bytes the session's output limit "
		 "allows>",
		 max);
	json_t *error = json_object_get(res, "error");
	size_t nframes = json_array_size(json_object_get(error, "frames"));
	if (nframes > 0) {
		/* Counted as omitted, so that an empty list is not read as an
		 * exception without frames. */
		json_int_t omitted =
		    json_integer_value(json_object_get(error, "frames_omitted")) + (json_int_t)nframes;
		json_object_set_new(error, "frames", json_array());
		json_object_set_new(error, "frames_omitted", json_integer(omitted));
		if (json_dumpb(res, NULL, 0, flags) <= max)
			return;
	}
	if (json_array_size(json_object_get(res, "results")) > 0) {
		json_object_set_new(res, "results", json_pack("[{s:s}]", "text/plain", note));
		if (json_dumpb(res, NULL, 0, flags) <= max)
			return;
	}
	/* JSON escaping may take six bytes per byte of text: three texts of
	 * max/32 bytes each stay below max. */
	cut_member(res, "value", max / 32);
	if (json_is_object(error)) {
		cut_member(error, "name", 256);
		cut_member(error, "value", max / 32);
		cut_member(error, "traceback", max / 32);
	}
	if (json_dumpb(res, NULL, 0, flags) <= max)
		return;
	json_object_set_new(res, "value", json_null());
	json_object_set_new(res, "results", json_array());
	if (json_is_object(error)) {
		json_object_set_new(error, "value", json_string(note));
		json_object_set_new(error, "traceback", json_string(""));
	}
}

/* The executor's main loop, PID 2 of the sandbox, jail complete. */
static int session_main(void *arg)
{
	const session_opts *opts = arg;
	PyOS_AfterFork_Child();
	if (post_fork(opts) < 0) {
		send_event(json_pack("{s:s, s:s}", "ev", "fatal", "error",
				     "executor: post-fork initialisation failed"));
		return 127;
	}
	warm_session();
	if (send_event(json_pack("{s:s}", "ev", "ready")) < 0)
		return 127;
	for (;;) {
		json_t *req = NULL;
		ab_error err = {0};
		int passed = -1;
		/* Nano's filter has no recvmsg, and nano takes no snapshots. */
		int rr = nano_tier ? ab_frame_read(SESSION_FD, MAX_REQUEST, &req, &err)
				   : ab_snap_read_request(SESSION_FD, MAX_REQUEST, &req, &passed, &err);
		if (rr < 0)
			return 0; /* the daemon closed the session */
		const char *op = json_string_value(json_object_get(req, "op"));
		if (op && strcmp(op, "snapshot") == 0) {
			ab_snap_take(req, passed);
			json_decref(req);
			continue;
		}
		if (passed >= 0)
			close(passed);
		if (op && strcmp(op, "run") == 0) {
			const char *code = json_string_value(json_object_get(req, "code"));
			json_int_t step = json_integer_value(json_object_get(req, "step"));
			/* Copied out of the request before user code runs; see
			 * docs/executor-protocol.md on forged results. */
			char nonce[64];
			snprintf(nonce, sizeof(nonce), "%s",
				 json_string_value(json_object_get(req, "nonce")) ?: "");
			if (!code)
				code = "";
			char filename[64];
			snprintf(filename, sizeof(filename), "<cell-%lld>", (long long)step);
			/* A timeout's SIGINT that arrived after the previous
			 * cell finished must not interrupt this one. */
			if (PyErr_CheckSignals() < 0)
				PyErr_Clear();
			send_event(json_pack("{s:s, s:I}", "ev", "started", "step", step));
			json_t *res = ab_cell_run(code, filename);
			json_object_set_new(res, "ev", json_string("result"));
			json_object_set_new(res, "step", json_integer(step));
			json_object_set_new(res, "nonce", json_string(nonce));
			json_int_t frame_max =
			    json_integer_value(json_object_get(req, "frame_max"));
			if (frame_max < (json_int_t)AB_FRAME_IDLE_MAX ||
			    frame_max > (json_int_t)AB_FRAME_MAX_DEFAULT)
				frame_max = AB_FRAME_MAX_DEFAULT;
			fit_result(res, (size_t)frame_max);
			if (send_event(res) < 0) {
				json_decref(req);
				return 0;
			}
		} else if (op && strcmp(op, "exit") == 0) {
			json_decref(req);
			return 0;
		} else {
			send_event(json_pack("{s:s, s:s}", "ev", "fatal", "error",
					     "executor: unknown request"));
		}
		json_decref(req);
	}
}

/* ---------------------------------------------------------------- zygote */

static void reply(int sock, json_t *msg, const int *fds, int nfds)
{
	char *text = json_dumps(msg, JSON_COMPACT);
	json_decref(msg);
	if (text) {
		ab__send_fds(sock, text, strlen(text), fds, nfds);
		free(text);
	}
}

static void reply_error(int sock, const char *what)
{
	reply(sock, json_pack("{s:b, s:s}", "ok", 0, "error", what), NULL, 0);
}

/* An optional absolute path of a spawn request into buf; "" if absent. */
static int spawn_path(json_t *req, const char *key, char *buf, size_t size, ab_error *err)
{
	json_t *v = json_object_get(req, key);
	buf[0] = '\0';
	if (!v || json_is_null(v))
		return 0;
	const char *s = json_string_value(v);
	if (!s || s[0] != '/' || json_string_length(v) >= size ||
	    strlen(s) != json_string_length(v))
		return ab_error_set(err, -EINVAL, "spawn: bad %s path", key);
	memcpy(buf, s, json_string_length(v) + 1);
	return 0;
}

/* The egress fields of a spawn request (docs/egress.md): the sandbox's
 * listening socket and the CA bundle, on the host. Heavy only; a bundle
 * without a socket is refused. Without a network namespace of its own the
 * sandbox gets no egress at all: a relay would listen on the host's
 * loopback, and the proxy variables would point there. */
static int spawn_egress(json_t *req, ab_jail_config *cfg, ab_error *err)
{
	if (spawn_path(req, "egress_socket", cfg->egress_socket, sizeof(cfg->egress_socket), err) <
		0 ||
	    spawn_path(req, "ca_bundle", cfg->ca_bundle, sizeof(cfg->ca_bundle), err) < 0)
		return -1;
	if (!cfg->egress_socket[0] && cfg->ca_bundle[0])
		return ab_error_set(err, -EINVAL, "spawn: ca_bundle without egress_socket");
	if (cfg->egress_socket[0] && cfg->nano)
		return ab_error_set(err, -EINVAL, "spawn: nano sandboxes have no egress");
	if (cfg->egress_socket[0] && (cfg->degraded & (1u << AB_LAYER_NETNS))) {
		fprintf(stderr, "agentbox-executor: no network namespace: the sandbox gets no "
				"egress relay\n");
		cfg->egress_socket[0] = cfg->ca_bundle[0] = '\0';
	}
	return 0;
}

/* Handles one spawn request: fds are [ctl, stdout, stderr, cgroup.procs...].
 * The zygote closes its copies whatever happens. */
static void handle_spawn(int sock, json_t *req, int *fds, int nfds)
{
	ab_error err = {0};
	ab_jail_config cfg = {0};
	ab_limits_default(&cfg.limits);
	if (nfds < 3 || nfds - 3 > 8) {
		reply_error(sock, "spawn: expected 3 to 11 descriptors");
		return;
	}
	const char *ws = json_string_value(json_object_get(req, "workspace"));
	if (!ws || ws[0] != '/' || strlen(ws) >= sizeof(cfg.workspace)) {
		reply_error(sock, "spawn: bad workspace path");
		return;
	}
	snprintf(cfg.workspace, sizeof(cfg.workspace), "%s", ws);
	if (ab_limits_from_json(&cfg.limits, json_object_get(req, "limits"), &err) < 0) {
		reply_error(sock, err.msg);
		return;
	}
	cfg.ctl_fd = fds[0];
	cfg.out_fd = fds[1];
	cfg.err_fd = fds[2];
	cfg.n_cgroup_fds = nfds - 3;
	for (int i = 0; i < cfg.n_cgroup_fds; i++)
		cfg.cgroup_fds[i] = fds[3 + i];
	cfg.host_uid = (uid_t)json_integer_value(json_object_get(req, "host_uid"));
	cfg.host_gid = (gid_t)json_integer_value(json_object_get(req, "host_gid"));
	cfg.privileged = json_is_true(json_object_get(req, "privileged"));
	cfg.degraded = (unsigned)json_integer_value(json_object_get(req, "degraded"));
	cfg.nano = nano_tier;
	if (spawn_egress(req, &cfg, &err) < 0) {
		reply_error(sock, err.msg);
		return;
	}
	/* On the stack of this call, which lasts until the sandbox is
	 * cloned: the sandbox has its own copy. */
	session_opts opts = {.egress = cfg.egress_socket[0] != '\0',
			     .ca = cfg.ca_bundle[0] != '\0'};

	pid_t pid;
	int pidfd;
	fflush(NULL);
	PyOS_BeforeFork();
	int r = ab_jail_spawn(&cfg, session_main, &opts, &pid, &pidfd, &err);
	PyOS_AfterFork_Parent();
	if (r < 0) {
		reply_error(sock, err.msg);
		return;
	}
	reply(sock, json_pack("{s:b, s:i}", "ok", 1, "pid", (int)pid), &pidfd, 1);
	close(pidfd);
}

/* The standard library a nano worker has warm; see docs/architecture.md. */
static const char warm_nano_py[] =
    "import json, re, math, cmath, datetime, time, calendar, collections, itertools\n"
    "import functools, operator, decimal, fractions, statistics, random, string\n"
    "import textwrap, unicodedata, base64, binascii, hashlib, hmac, secrets, uuid\n"
    "import typing, dataclasses, enum, abc, copy, pprint, heapq, bisect, array\n"
    "import struct, io, csv, difflib, fnmatch, html, html.parser, zlib, codecs\n"
    "import numbers, contextlib, warnings, traceback, inspect, ast, keyword, weakref\n"
    "import types, graphlib, zoneinfo, pathlib, threading, queue, xml.etree.ElementTree\n"
    "json.loads(json.dumps({'a': [1, 2.5, None]})); re.compile(r'\\w+').findall('a b')\n"
    "decimal.Decimal('1.1') + decimal.Decimal('2.2'); statistics.mean([1, 2, 3])\n"
    "datetime.datetime(2020, 1, 1).isoformat(); uuid.UUID(int=1); hashlib.sha256(b'')\n"
    "import gc; gc.collect(); gc.freeze()\n";

static int warm_nano(ab_error *err)
{
	PyObject *globals = PyDict_New();
	if (!globals)
		return ab_error_set(err, -ENOMEM, "warm nano: out of memory");
	PyDict_SetItemString(globals, "__builtins__", PyEval_GetBuiltins());
	PyObject *r = PyRun_String(warm_nano_py, Py_file_input, globals, globals);
	Py_DECREF(globals);
	if (!r) {
		PyErr_Print();
		return ab_error_set(err, -EINVAL,
				    "warm nano: importing the standard library failed");
	}
	Py_DECREF(r);
	return 0;
}

static int zygote_loop(void)
{
	static char buf[65536];
	for (;;) {
		int fds[AB_FDPASS_MAX], nfds = 0;
		int n = ab__recv_fds(ZYGOTE_FD, buf, sizeof(buf) - 1, fds, AB_FDPASS_MAX, &nfds);
		if (n == 0)
			return 0; /* the daemon went away */
		if (n < 0) {
			if (n == -EMSGSIZE) {
				reply_error(ZYGOTE_FD, "zygote: oversized request");
				continue;
			}
			return 1;
		}
		buf[n] = '\0';
		json_t *req = json_loads(buf, 0, NULL);
		const char *op = json_string_value(json_object_get(req, "op"));
		if (op && strcmp(op, "spawn") == 0)
			handle_spawn(ZYGOTE_FD, req, fds, nfds);
		else
			reply_error(ZYGOTE_FD, "zygote: unknown request");
		for (int i = 0; i < nfds; i++)
			close(fds[i]);
		json_decref(req);
	}
}

static int init_python(void)
{
	/* A timeout's first phase and sandbox.interrupt reach the cell as
	 * SIGINT, which Python turns into KeyboardInterrupt only if SIGINT was
	 * not ignored when it started; a daemon started in the background of a
	 * shell inherits it ignored, and so would every sandbox. */
	signal(SIGINT, SIG_DFL);
	PyConfig config;
	PyConfig_InitPythonConfig(&config);
	config.buffered_stdio = 0;
	config.parse_argv = 0;
	config.use_environment = 0;
	config.user_site_directory = 0;
	config.write_bytecode = 0;
	config.install_signal_handlers = 1;
	config.safe_path = 1;
	PyStatus st = PyConfig_SetString(&config, &config.program_name, L"/usr/bin/python3");
	if (!PyStatus_Exception(st))
		st = Py_InitializeFromConfig(&config);
	PyConfig_Clear(&config);
	if (PyStatus_Exception(st)) {
		fprintf(stderr, "agentbox-executor: cannot initialise Python: %s\n",
			st.err_msg ? st.err_msg : "unknown error");
		return -1;
	}
	return 0;
}

static void usage(FILE *f)
{
	fprintf(f, "usage: agentbox-executor --zygote [--tier heavy|nano] [--no-warm]\n"
		   "Started by agentboxd with a control socket on fd 3; not for direct use.\n");
}

int main(int argc, char **argv)
{
	bool zygote = false, warm = true;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--zygote") == 0)
			zygote = true;
		else if (strcmp(argv[i], "--no-warm") == 0)
			warm = false;
		else if (strcmp(argv[i], "--tier") == 0 && i + 1 < argc) {
			const char *t = argv[++i];
			if (strcmp(t, "nano") == 0)
				nano_tier = true;
			else if (strcmp(t, "heavy") != 0) {
				fprintf(stderr, "agentbox-executor: --tier: heavy or nano\n");
				return 2;
			}
		} else if (strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return 0;
		} else {
			usage(stderr);
			return 2;
		}
	}
	if (!zygote) {
		usage(stderr);
		return 2;
	}
	if (fcntl(ZYGOTE_FD, F_GETFD) < 0) {
		fprintf(stderr, "agentbox-executor: no control socket on fd 3\n");
		return 2;
	}
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	/* Thread pools must stay at one thread: the zygote clones new user
	 * namespaces, which a multi-threaded process cannot do. */
	setenv("OPENBLAS_NUM_THREADS", "1", 1);
	setenv("OMP_NUM_THREADS", "1", 1);
	setenv("MKL_NUM_THREADS", "1", 1);
	setenv("MPLBACKEND", "Agg", 1);
	if (init_python() < 0)
		return 1;
	ab_error err = {0};
	if (ab_cell_init(&err) < 0 ||
	    (warm && (nano_tier ? warm_nano(&err) : ab_cell_warm_heavy(&err)) < 0)) {
		fprintf(stderr, "agentbox-executor: %s\n", err.msg);
		return 1;
	}
	/* Every sandbox loads the same seccomp programs: built once here.
	 * If that fails, each sandbox builds its own, as before. */
	if (ab_seccomp_precompile(&err) < 0)
		fprintf(stderr, "agentbox-executor: %s (each sandbox builds its own filter)\n",
			err.msg);
	/* Tell the daemon we are ready to spawn. */
	reply(ZYGOTE_FD, json_pack("{s:b, s:s}", "ok", 1, "ready", "zygote"), NULL, 0);
	return zygote_loop();
}
