/* snapshot.c - memory snapshots of the executor; see snapshot.h and
 * docs/time-travel.md.
 *
 * The parked process runs no Python: between its fork and its end it only
 * reads requests on its snapshot socket, reaps its children and reports
 * their ends, all in C. Python runs again only in the copies it forks, each
 * of which first calls ab_snap_after_fork(). So user code never runs in a
 * parked process, and what it sends is as trustworthy as the executor was
 * at the moment of the snapshot (the daemon still checks every frame). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "frame.h"
#include "snapshot.h"

#define REPR_MAX 200		/* a variable's repr in a listing */
#define VALUE_MAX (64u << 10)	/* an inspected expression's repr */
#define DIGEST_MAX (1u << 20)	/* bytes of a repr that its digest covers */
#define VARS_MAX 1000		/* variables listed */
#define REQUEST_MAX (1u << 20)	/* a request on the snapshot socket */

/* random's state when the snapshot was taken: PyOS_AfterFork_Child runs
 * random's at-fork hook, which reseeds it, and a restored session must
 * draw the numbers it would have drawn. */
static PyObject *saved_random;

static int send_frame(int fd, json_t *ev)
{
	ab_error err = {0};
	int r = ab_frame_write(fd, ev, &err);
	json_decref(ev);
	return r;
}

int ab_snap_read_request(int fd, size_t max, json_t **out, int *passed, ab_error *err)
{
	*passed = -1;
	unsigned char hdr[4];
	size_t got = 0;
	while (got < sizeof(hdr)) {
		union {
			char b[CMSG_SPACE(sizeof(int) * 4)];
			struct cmsghdr align;
		} cm;
		struct iovec iov = {.iov_base = hdr + got, .iov_len = sizeof(hdr) - got};
		struct msghdr m = {.msg_iov = &iov,
				   .msg_iovlen = 1,
				   .msg_control = cm.b,
				   .msg_controllen = sizeof(cm.b)};
		ssize_t n = recvmsg(fd, &m, MSG_CMSG_CLOEXEC);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (*passed >= 0)
				close(*passed);
			*passed = -1;
			return ab_error_set(err, n == 0 ? -EPIPE : -errno, "read request header");
		}
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
			if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS)
				continue;
			size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < k; i++) {
				int d;
				memcpy(&d, CMSG_DATA(c) + i * sizeof(int), sizeof(d));
				if (*passed < 0)
					*passed = d;
				else
					close(d);
			}
		}
		got += (size_t)n;
	}
	uint32_t be;
	memcpy(&be, hdr, 4);
	size_t len = ntohl(be);
	if (len > max)
		return ab_error_set(err, -EMSGSIZE, "request of %zu bytes", len);
	char *buf = malloc(len ? len : 1);
	if (!buf)
		return ab_error_set(err, -ENOMEM, "out of memory");
	for (size_t off = 0; off < len;) {
		ssize_t n = read(fd, buf + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			free(buf);
			return ab_error_set(err, -EPIPE, "read request body");
		}
		off += (size_t)n;
	}
	json_error_t je;
	*out = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &je);
	free(buf);
	if (!json_is_object(*out)) {
		json_decref(*out);
		*out = NULL;
		return ab_error_set(err, -EINVAL, "request is not a JSON object");
	}
	return 0;
}

/* ---------------------------------------------------- what is not kept */

static int count_dir(const char *path)
{
	DIR *d = opendir(path);
	if (!d)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

/* Children of every thread of this process (from /proc/self/task/T/children). */
static int count_children(void)
{
	DIR *d = opendir("/proc/self/task");
	if (!d)
		return -1;
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		char path[300], buf[4096];
		snprintf(path, sizeof(path), "/proc/self/task/%s/children", de->d_name);
		int fd = open(path, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			continue;
		ssize_t k = read(fd, buf, sizeof(buf) - 1);
		close(fd);
		if (k <= 0)
			continue;
		buf[k] = '\0';
		for (char *p = strtok(buf, " \n"); p; p = strtok(NULL, " \n"))
			n++;
	}
	closedir(d);
	return n;
}

/* Sockets this process holds, other than the descriptors skip0 and skip1. */
static int count_sockets(int skip0, int skip1)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return -1;
	int n = 0, self = dirfd(d);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.')
			continue;
		int fd = atoi(de->d_name);
		if (fd == self || fd == skip0 || fd == skip1)
			continue;
		char path[64], link[64];
		snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
		ssize_t k = readlink(path, link, sizeof(link) - 1);
		if (k > 0) {
			link[k] = '\0';
			if (strncmp(link, "socket:", 7) == 0)
				n++;
		}
	}
	closedir(d);
	return n;
}

/* ---------------------------------------------------------------- forks */

static void set_oom_adj(const char *v)
{
	int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (write(fd, v, strlen(v)) < 0) {
			/* best effort: the kernel's choice then falls on size alone */
		}
		close(fd);
	}
}

static void save_random(void)
{
	PyObject *name = PyUnicode_FromString("random");
	PyObject *mod = name ? PyImport_GetModule(name) : NULL;
	Py_XDECREF(name);
	PyObject *inst = mod ? PyObject_GetAttrString(mod, "_inst") : NULL;
	PyObject *st = inst ? PyObject_CallMethod(inst, "getstate", NULL) : NULL;
	if (!st)
		PyErr_Clear();
	Py_XDECREF(saved_random);
	saved_random = st;
	Py_XDECREF(inst);
	Py_XDECREF(mod);
}

void ab_snap_after_fork(void)
{
	PyOS_AfterFork_Child();
	/* The copy that runs code is the one the kernel should pick when
	 * the sandbox runs out of memory, not a parked snapshot. */
	set_oom_adj("500");
	if (!saved_random)
		return;
	PyObject *name = PyUnicode_FromString("random");
	PyObject *mod = name ? PyImport_GetModule(name) : NULL;
	PyObject *inst = mod ? PyObject_GetAttrString(mod, "_inst") : NULL;
	PyObject *r = inst ? PyObject_CallMethod(inst, "setstate", "(O)", saved_random) : NULL;
	if (!r)
		PyErr_Clear();
	Py_XDECREF(r);
	Py_XDECREF(inst);
	Py_XDECREF(mod);
	Py_XDECREF(name);
}

/* --------------------------------------------------- inspection (copies) */

static char *bounded_repr(PyObject *v, size_t max, size_t *full_len, uint64_t *digest)
{
	PyObject *r = PyObject_Repr(v);
	const char *s = NULL;
	Py_ssize_t n = 0;
	char *out;
	if (r)
		s = PyUnicode_AsUTF8AndSize(r, &n);
	if (!s) {
		PyObject *t, *e, *tb;
		PyErr_Fetch(&t, &e, &tb);
		char buf[200];
		snprintf(buf, sizeof(buf), "<repr failed: %s>",
			 t ? ((PyTypeObject *)t)->tp_name : "?");
		Py_XDECREF(t);
		Py_XDECREF(e);
		Py_XDECREF(tb);
		Py_XDECREF(r);
		if (full_len)
			*full_len = strlen(buf);
		if (digest)
			*digest = 0;
		return strdup(buf);
	}
	if (digest) {
		uint64_t h = 1469598103934665603ull;
		size_t cover = (size_t)n < DIGEST_MAX ? (size_t)n : DIGEST_MAX;
		for (size_t i = 0; i < cover; i++)
			h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
		*digest = h;
	}
	if (full_len)
		*full_len = (size_t)n;
	size_t keep = (size_t)n;
	if (keep > max) {
		keep = max;
		while (keep > 0 && ((unsigned char)s[keep] & 0xC0) == 0x80)
			keep--;
	}
	out = malloc(keep + 4);
	if (out) {
		memcpy(out, s, keep);
		strcpy(out + keep, keep < (size_t)n ? "..." : "");
	}
	Py_DECREF(r);
	return out;
}

static char *type_name(PyObject *v)
{
	PyTypeObject *t = Py_TYPE(v);
	PyObject *mod = PyObject_GetAttrString((PyObject *)t, "__module__");
	const char *m = mod && PyUnicode_Check(mod) ? PyUnicode_AsUTF8(mod) : NULL;
	PyErr_Clear();
	char buf[300];
	const char *name = t->tp_name;
	const char *dot = strrchr(name, '.');
	if (m && strcmp(m, "builtins") != 0)
		snprintf(buf, sizeof(buf), "%s.%s", m, dot ? dot + 1 : name);
	else
		snprintf(buf, sizeof(buf), "%s", dot ? dot + 1 : name);
	Py_XDECREF(mod);
	return strdup(buf);
}

static json_t *error_of_pending(void)
{
	PyObject *t, *e, *tb;
	PyErr_Fetch(&t, &e, &tb);
	PyErr_NormalizeException(&t, &e, &tb);
	const char *name = t ? ((PyTypeObject *)t)->tp_name : "Error";
	char *value = e ? bounded_repr(e, 2000, NULL, NULL) : NULL;
	json_t *j = json_pack("{s:s, s:s}", "name", name, "value", value ? value : "");
	free(value);
	Py_XDECREF(t);
	Py_XDECREF(e);
	Py_XDECREF(tb);
	return j;
}

static json_t *inspect_expr(const char *expr)
{
	PyObject *main = PyImport_AddModule("__main__");
	PyObject *globals = main ? PyModule_GetDict(main) : NULL;
	if (!globals)
		return json_pack("{s:{s:s, s:s}}", "error", "name", "InternalError", "value",
				 "no __main__");
	PyObject *code = Py_CompileString(expr, "<inspect>", Py_eval_input);
	PyObject *v = code ? PyEval_EvalCode(code, globals, globals) : NULL;
	Py_XDECREF(code);
	if (!v)
		return json_pack("{s:o}", "error", error_of_pending());
	size_t full = 0;
	char *r = bounded_repr(v, VALUE_MAX, &full, NULL);
	char *t = type_name(v);
	json_t *j = json_pack("{s:s, s:s, s:b}", "value", r ? r : "", "type", t ? t : "?",
			      "truncated", full > VALUE_MAX);
	free(r);
	free(t);
	Py_DECREF(v);
	return j;
}

/* The session's variables: __main__'s names except dunders and "_", each
 * with its type, a repr cut at REPR_MAX and a digest of the whole repr
 * (what a diff compares). */
static json_t *list_vars(void)
{
	PyObject *main = PyImport_AddModule("__main__");
	PyObject *globals = main ? PyModule_GetDict(main) : NULL;
	json_t *vars = json_object();
	size_t omitted = 0;
	PyObject *k, *v;
	Py_ssize_t pos = 0;
	while (globals && PyDict_Next(globals, &pos, &k, &v)) {
		const char *name = PyUnicode_Check(k) ? PyUnicode_AsUTF8(k) : NULL;
		if (!name) {
			PyErr_Clear();
			continue;
		}
		if ((name[0] == '_' && name[1] == '_') || strcmp(name, "_") == 0)
			continue;
		if (json_object_size(vars) >= VARS_MAX) {
			omitted++;
			continue;
		}
		Py_INCREF(v);
		uint64_t digest = 0;
		char *r = bounded_repr(v, REPR_MAX, NULL, &digest);
		char *t = type_name(v);
		char hex[17];
		snprintf(hex, sizeof(hex), "%016llx", (unsigned long long)digest);
		json_object_set_new(vars, name,
				    json_pack("{s:s, s:s, s:s}", "type", t ? t : "?", "repr",
					      r ? r : "", "digest", hex));
		free(r);
		free(t);
		Py_DECREF(v);
	}
	return json_pack("{s:o, s:I}", "vars", vars, "omitted", (json_int_t)omitted);
}

/* ---------------------------------------------------------------- parked */

static pid_t fork_copy(void)
{
	fflush(NULL);
	return fork();
}

/* Reaps every child that ended: the executor this copy is the parent of
 * (its end is reported on sfd) and the throwaway copy t (*t_done). */
static void reap(int sfd, pid_t *active, pid_t t, bool *t_done, int *t_status)
{
	int st;
	pid_t p;
	while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
		if (p == *active) {
			send_frame(sfd, json_pack("{s:s, s:i}", "ev", "exited", "status", st));
			*active = 0;
		} else if (t > 0 && p == t) {
			*t_done = true;
			*t_status = st;
		}
	}
}

static void serve_inspection(int sfd, int sigfd, pid_t *active, json_t *req, bool vars)
{
	char nonce[64];
	snprintf(nonce, sizeof(nonce), "%s", json_string_value(json_object_get(req, "nonce")) ?: "");
	double timeout = json_number_value(json_object_get(req, "timeout"));
	if (!(timeout > 0 && timeout <= 3600))
		timeout = 10;
	const char *expr = json_string_value(json_object_get(req, "expr"));
	pid_t t = fork_copy();
	if (t < 0) {
		send_frame(sfd, json_pack("{s:s, s:s, s:{s:s, s:s}}", "ev", "inspected", "nonce",
					  nonce, "error", "name", "SnapshotError", "value",
					  "the snapshot could not be copied (fork failed)"));
		return;
	}
	if (t == 0) {
		close(sigfd);
		sigset_t set;
		sigemptyset(&set);
		sigaddset(&set, SIGCHLD);
		sigprocmask(SIG_UNBLOCK, &set, NULL);
		ab_snap_after_fork();
		json_t *r = vars ? list_vars() : inspect_expr(expr ? expr : "None");
		json_object_set_new(r, "ev", json_string("inspected"));
		json_object_set_new(r, "nonce", json_string(nonce));
		fflush(NULL);
		send_frame(sfd, r);
		_exit(0);
	}
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	bool done = false;
	int status = 0;
	while (!done) {
		clock_gettime(CLOCK_MONOTONIC, &now);
		double left = timeout - ((double)(now.tv_sec - start.tv_sec) +
					 (double)(now.tv_nsec - start.tv_nsec) / 1e9);
		if (left <= 0) {
			kill(t, SIGKILL);
			waitpid(t, &status, 0);
			send_frame(sfd, json_pack("{s:s, s:s, s:{s:s, s:s}}", "ev", "inspected",
						  "nonce", nonce, "error", "name", "Timeout", "value",
						  "the inspection did not finish in time"));
			break;
		}
		struct pollfd pf = {.fd = sigfd, .events = POLLIN};
		poll(&pf, 1, (int)(left * 1000) + 1);
		struct signalfd_siginfo si;
		while (read(sigfd, &si, sizeof(si)) > 0) {
		}
		reap(sfd, active, t, &done, &status);
	}
	send_frame(sfd, json_pack("{s:s, s:s, s:i}", "ev", "inspect_ended", "nonce", nonce,
				  "status", status));
}

/* Becomes the executor again: the copy that returns from park(). */
static void resume_copy(int sigfd, int ctl)
{
	close(sigfd);
	if (dup2(ctl, AB_SESSION_FD) < 0)
		_exit(127);
	close(ctl);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_UNBLOCK, &set, NULL);
	ab_snap_after_fork();
}

/* The parked snapshot's loop: returns only in a copy asked to resume. */
static void park(int sfd, pid_t active, json_int_t id)
{
	/* The control socket is the child's now. */
	if (dup2(sfd, AB_SESSION_FD) < 0)
		_exit(127);
	close(sfd);
	sfd = AB_SESSION_FD;
	set_oom_adj("0");
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigprocmask(SIG_BLOCK, &set, NULL);
	int sigfd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
	if (sigfd < 0)
		_exit(127);
	send_frame(sfd, json_pack("{s:s, s:I}", "ev", "parked", "id", id));
	for (;;) {
		struct pollfd pf[2] = {{.fd = sfd, .events = POLLIN}, {.fd = sigfd, .events = POLLIN}};
		if (poll(pf, 2, -1) < 0 && errno != EINTR)
			_exit(127);
		if (pf[1].revents) {
			struct signalfd_siginfo si;
			while (read(sigfd, &si, sizeof(si)) > 0) {
			}
			bool unused = false;
			int st;
			reap(sfd, &active, 0, &unused, &st);
		}
		if (!pf[0].revents)
			continue;
		json_t *req = NULL;
		int passed = -1;
		ab_error err = {0};
		if (ab_snap_read_request(sfd, REQUEST_MAX, &req, &passed, &err) < 0)
			_exit(0); /* the daemon let go of this snapshot */
		const char *op = json_string_value(json_object_get(req, "op"));
		if (op && strcmp(op, "resume") == 0 && passed >= 0) {
			pid_t p = fork_copy();
			if (p == 0) {
				json_decref(req);
				resume_copy(sigfd, passed);
				return;
			}
			close(passed);
			if (p < 0)
				send_frame(sfd, json_pack("{s:s, s:s}", "ev", "resume_failed",
							  "error", strerror(errno)));
			else
				active = p;
		} else if (op && (strcmp(op, "inspect") == 0 || strcmp(op, "vars") == 0)) {
			if (passed >= 0)
				close(passed);
			serve_inspection(sfd, sigfd, &active, req, strcmp(op, "vars") == 0);
		} else if (op && strcmp(op, "exit") == 0) {
			_exit(0);
		} else if (passed >= 0) {
			close(passed);
		}
		json_decref(req);
	}
}

void ab_snap_take(json_t *req, int sfd)
{
	json_int_t id = json_integer_value(json_object_get(req, "id"));
	int threads = count_dir("/proc/self/task");
	if (sfd < 0 || threads != 1) {
		char why[200];
		if (sfd < 0)
			snprintf(why, sizeof(why), "no snapshot socket came with the request");
		else
			snprintf(why, sizeof(why),
				 "%d thread%s running besides the interpreter's: a copy would not "
				 "have them",
				 threads - 1, threads - 1 == 1 ? " is" : "s are");
		if (sfd >= 0)
			close(sfd);
		send_frame(AB_SESSION_FD, json_pack("{s:s, s:I, s:s}", "ev", "snapshot_failed",
						    "id", id, "error", why));
		return;
	}
	/* A process with children would hand them to the parked parent
	 * (their wait() would then fail in the copy that goes on). */
	int children = count_children();
	if (children != 0) {
		close(sfd);
		char why[200];
		snprintf(why, sizeof(why),
			 "%d child process%s running: %s would stay with the snapshot", children,
			 children == 1 ? " is" : "es are", children == 1 ? "it" : "they");
		send_frame(AB_SESSION_FD, json_pack("{s:s, s:I, s:s}", "ev", "snapshot_failed",
						    "id", id, "error", why));
		return;
	}
	json_t *kept = json_pack("{s:i}", "sockets", count_sockets(AB_SESSION_FD, sfd));
	save_random();
	fflush(NULL);
	PyOS_BeforeFork();
	pid_t p = fork();
	if (p < 0) {
		int e = errno;
		PyOS_AfterFork_Parent();
		close(sfd);
		json_decref(kept);
		send_frame(AB_SESSION_FD,
			   json_pack("{s:s, s:I, s:s}", "ev", "snapshot_failed", "id", id, "error",
				     e == EAGAIN ? "no process left under the pids limit" : strerror(e)));
		return;
	}
	if (p > 0) {
		/* The parent keeps the state: parked, it runs no Python. */
		json_decref(kept);
		park(sfd, p, id);
		/* A copy asked to resume: the executor again, on a new socket. */
		send_frame(AB_SESSION_FD, json_pack("{s:s, s:I}", "ev", "ready", "resumed", id));
		return;
	}
	close(sfd);
	ab_snap_after_fork();
	json_t *ev = json_pack("{s:s, s:I, s:o}", "ev", "snapshotted", "id", id, "not_kept", kept);
	send_frame(AB_SESSION_FD, ev);
}
