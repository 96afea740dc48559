/* fuzz_rpc.c - agentboxd's request path: the JSON-RPC front end
 * (src/daemon/frontend/conn.c: line splitting; rpc.c: request validation,
 * dispatch) and the engine (src/daemon/engine/: sessions, runs, promotion,
 * the files API), linked as they are against the in-memory backend and the
 * stubbed loop, record and zygotes of tests/engine (fake_backend.c,
 * daemon_stubs.c). No process is started: the fake backend answers runs
 * from rules, and its events are delivered after each request line, so
 * that every request goes through the real engine.
 *
 * The connection starts with three sessions of its own, which the harness
 * renames so that inputs can name them: "sb-ready" (tier auto, idle),
 * "sb-busy" (running a cell that never ends) and "sb-dead" (its executor
 * died). The fake backend's rules, by what the code contains: "hang" never
 * ends (an interrupt ends it), "spin" ignores interrupts too, "import lzma"
 * fails in nano with ModuleNotFoundError (a promotion to heavy), "raise"
 * ends in an error, "print" writes to stdout and stderr; anything else
 * succeeds.
 *
 * Input: byte 0 holds flags (audit log broken, nano disabled, shutting
 * down, fire every armed timer after each line), byte 1 seeds the split
 * sizes, the rest is what a client writes to its socket. It reaches the
 * connection through a pipe in chunks of arbitrary sizes, as reads do, but
 * never with more than one line end per read. Invariants:
 *  - everything the daemon writes is one JSON-RPC 2.0 message per line:
 *    a response (an object with "jsonrpc": "2.0", an "id", and exactly one
 *    of "result" or "error" ({"code": integer, "message": string})) or a
 *    notification of a run's output or rerun, naming its request;
 *  - every request that is an object with an id (string, integer or null)
 *    gets exactly one response with that id; nothing else gets more than
 *    one. Answers to runs may come after those of later requests, at the
 *    latest when the client hangs up (AB_FUZZ_RPC_DUMP=1 prints what the
 *    daemon wrote);
 *  - every audit event has a kind, an actor and an object body;
 *  - after each line, the engine and the backend agree on every sandbox's
 *    state, and none is left closing;
 *  - once the client has gone, every sandbox is released and freed, and the
 *    files API created nothing outside any workspace. */
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>

#include "daemon_stubs.h"
#include "fake_backend.h"
#include "frontend/frontend.h"
#include "fuzz.h"

#define FLAG_AUDIT_BROKEN 1
#define FLAG_NO_NANO 2
#define FLAG_SHUTTING_DOWN 4
#define FLAG_FIRE_TIMERS 8

static char home[PATH_MAX], root[PATH_MAX + 16], routes_file[PATH_MAX + 16];

/* ------------------------------------------------ the harness's own calls */

static void hc_done(call *k, json_t *result)
{
	(void)k;
	json_decref(result);
}

static void hc_fail(call *k, const char *session, int code, const char *msg, json_t *data)
{
	(void)k;
	(void)session;
	(void)code;
	(void)msg;
	json_decref(data);
}

static void hc_output(call *k, const char *session, const char *stream, json_t *data, int attempt)
{
	(void)k;
	(void)session;
	(void)stream;
	(void)attempt;
	json_decref(data);
}

static void hc_rerun(call *k, const char *session, int attempt, const char *tier,
		     const char *reason)
{
	(void)k;
	(void)session;
	(void)attempt;
	(void)tier;
	(void)reason;
}

static size_t hc_backlog(const call *k)
{
	(void)k;
	return 0;
}

static void hc_free(call *k)
{
	free(k);
}

static const call_ops harness_ops = {
    .done = hc_done,
    .fail = hc_fail,
    .output = hc_output,
    .rerun = hc_rerun,
    .backlog = hc_backlog,
    .free = hc_free,
};

static call *harness_call(client *cl)
{
	call *k = calloc(1, sizeof(*k));
	FUZZ_CHECK(k);
	call_init(k, &harness_ops, cl, NULL);
	return k;
}

/* A ready session of cl, renamed to name. */
static sandbox *named_session(client *cl, const char *name)
{
	ab_limits lim;
	ab_limits_default(&lim);
	engine_create(harness_call(cl), "auto", &lim, 0);
	fake_backend_pump();
	sandbox *sb = sandboxes; /* the newest */
	FUZZ_CHECK(sb && sb->owner == cl && sb->state == SB_READY);
	snprintf(sb->id, sizeof(sb->id), "%s", name);
	return sb;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	snprintf(home, sizeof(home), "%s/home", fuzz_scratch_dir());
	snprintf(root, sizeof(root), "%s/instances", fuzz_scratch_dir());
	snprintf(routes_file, sizeof(routes_file), "%s/routes.json", home);
	FUZZ_CHECK(mkdir(home, 0700) == 0 && mkdir(root, 0700) == 0);
	snprintf(D.home, sizeof(D.home), "%s", home);
	D.max_conns = D.max_conns_per_uid = 8;
	D.max_sessions_per_conn = D.max_sessions_per_uid = 6;
	fake_backend_init(root);
	fake_backend_snapshots(true); /* time travel's paths too */
	fake_on_run(
	    &(fake_reply){.tier = -1, .match = "spin", .hang = true, .ignore_interrupt = true});
	fake_on_run(&(fake_reply){.tier = -1, .match = "hang", .hang = true});
	fake_on_run(&(fake_reply){.tier = TIER_NANO,
				  .match = "import lzma",
				  .status = "error",
				  .error_name = "ModuleNotFoundError",
				  .error_value = "No module named 'lzma'"});
	fake_on_run(&(fake_reply){.tier = -1,
				  .match = "raise",
				  .status = "error",
				  .exit_code = 1,
				  .error_name = "ValueError",
				  .error_value = "raised"});
	fake_on_run(&(fake_reply){.tier = -1, .match = "print", .out = "out\n", .err = "err\n"});
	routes_init();
	engine_init();
	return 0;
}

/* ------------------------------------------------------------ invariants */

/* The ids of the requests that must be answered: objects with an id member
 * of a valid type, as conn.c and rpc.c parse them. */
static json_t *expected_ids(const uint8_t *s, size_t n)
{
	json_t *ids = json_array();
	FUZZ_CHECK(ids);
	size_t pos = 0;
	for (;;) {
		const uint8_t *nl = memchr(s + pos, '\n', n - pos);
		if (!nl)
			break;
		size_t len = (size_t)(nl - (s + pos));
		while (len > 0 && (s[pos + len - 1] == '\r' || s[pos + len - 1] == ' '))
			len--;
		json_t *req =
		    len ? json_loadb((const char *)s + pos, len,
				     JSON_REJECT_DUPLICATES | JSON_DECODE_ANY | JSON_ALLOW_NUL,
				     NULL)
			: NULL;
		json_t *id = json_object_get(req, "id");
		if (id && (json_is_string(id) || json_is_integer(id) || json_is_null(id)))
			json_array_append(ids, id);
		json_decref(req);
		pos = (size_t)(nl - s) + 1;
	}
	return ids;
}

/* Takes one id equal to id out of ids; false if there is none. */
static bool take_id(json_t *ids, json_t *id)
{
	for (size_t i = 0; i < json_array_size(ids); i++)
		if (json_equal(json_array_get(ids, i), id)) {
			json_array_remove(ids, i);
			return true;
		}
	return false;
}

static void check_notification(json_t *r)
{
	const char *m = json_string_value(json_object_get(r, "method"));
	FUZZ_CHECK(m && (strcmp(m, "sandbox.output") == 0 || strcmp(m, "sandbox.rerun") == 0));
	json_t *params = json_object_get(r, "params");
	FUZZ_CHECK(json_is_object(params));
	FUZZ_CHECK(json_is_string(json_object_get(params, "sandbox")));
	FUZZ_CHECK(json_object_get(params, "request"));
	FUZZ_CHECK(json_is_integer(json_object_get(params, "attempt")));
}

static void check_messages(int fd, json_t *ids, size_t max_responses)
{
	off_t size = lseek(fd, 0, SEEK_END);
	FUZZ_CHECK(size >= 0);
	char *out = malloc((size_t)size + 1);
	FUZZ_CHECK(out);
	FUZZ_CHECK(pread(fd, out, (size_t)size, 0) == size);
	out[size] = '\0';
	if (getenv("AB_FUZZ_RPC_DUMP"))
		fprintf(stderr, "%s", out);
	FUZZ_CHECK(size == 0 || out[size - 1] == '\n');
	size_t responses = 0;
	for (char *p = out; *p;) {
		char *nl = strchr(p, '\n');
		FUZZ_CHECK(nl);
		*nl = '\0';
		json_error_t je;
		json_t *r = json_loads(p, 0, &je);
		if (!r)
			fprintf(stderr, "message is not JSON: %s\n%s\n", je.text, p);
		FUZZ_CHECK(json_is_object(r));
		const char *ver = json_string_value(json_object_get(r, "jsonrpc"));
		FUZZ_CHECK(ver && strcmp(ver, "2.0") == 0);
		json_t *id = json_object_get(r, "id");
		if (!id) {
			check_notification(r);
			json_decref(r);
			p = nl + 1;
			continue;
		}
		responses++;
		json_t *result = json_object_get(r, "result"), *error = json_object_get(r, "error");
		FUZZ_CHECK((result != NULL) != (error != NULL));
		if (error) {
			FUZZ_CHECK(json_is_integer(json_object_get(error, "code")));
			FUZZ_CHECK(json_is_string(json_object_get(error, "message")));
		}
		/* Unreadable requests are answered with a null id, beyond the
		 * requests that had one. */
		if (!take_id(ids, id)) {
			if (!json_is_null(id))
				fprintf(stderr,
					"an answer no request asked for (or a second):\n%s\n", p);
			FUZZ_CHECK(json_is_null(id));
		}
		json_decref(r);
		p = nl + 1;
	}
	if (json_array_size(ids) > 0) {
		char *left = json_dumps(ids, JSON_COMPACT);
		fprintf(stderr, "requests with these ids were not answered: %s\n", left);
		free(left);
	}
	FUZZ_CHECK(json_array_size(ids) == 0);
	FUZZ_CHECK(responses <= max_responses);
	free(out);
}

static void check_audit(void)
{
	size_t i;
	json_t *e;
	json_array_foreach(stub_audit, i, e)
	{
		const char *kind = json_string_value(json_object_get(e, "kind"));
		const char *actor = json_string_value(json_object_get(e, "actor"));
		FUZZ_CHECK(kind && kind[0] && actor && actor[0]);
		FUZZ_CHECK(json_is_object(json_object_get(e, "body")));
	}
	stub_audit_clear();
}

/* Between lines: what the engine believes of each sandbox is what its
 * backend instance is, and every teardown has completed. */
static void check_engine(void)
{
	for (sandbox *s = sandboxes; s; s = s->next) {
		FUZZ_CHECK(s->state != SB_CLOSING);
		FUZZ_CHECK(s->be && !s->be->closing);
		switch (s->state) {
		case SB_STARTING:
			FUZZ_CHECK(s->be->phase == FAKE_STARTING);
			break;
		case SB_READY:
			FUZZ_CHECK(s->be->phase == FAKE_IDLE);
			FUZZ_CHECK(!s->run_call);
			break;
		case SB_RUNNING:
			FUZZ_CHECK(s->be->phase == FAKE_RUNNING);
			FUZZ_CHECK(s->run_call || s->run_internal);
			break;
		case SB_DEAD:
			FUZZ_CHECK(s->be->phase == FAKE_DEAD);
			break;
		default:
			break;
		}
	}
}

/* The directory holds nothing. */
static void check_empty(const char *dir)
{
	DIR *d = opendir(dir);
	FUZZ_CHECK(d);
	struct dirent *de;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		fprintf(stderr, "left behind: %s/%s\n", dir, de->d_name);
		FUZZ_CHECK(!"a file outside any workspace");
	}
	closedir(d);
}

/* One loop iteration's worth of work after a line was read. */
static void settle(bool fire_timers)
{
	fake_backend_pump();
	if (fire_timers && stub_fire_all_timers() > 0)
		fake_backend_pump();
	engine_tick();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	/* What an earlier input taught the router must not change this one. */
	unlink(routes_file);
	stub_audit_broken = false;
	D.shutting_down = false;
	D.pool_target[TIER_NANO] = (data[0] & FLAG_NO_NANO) ? -1 : 0;
	D.pool_target[TIER_HEAVY] = 0;
	bool fire_timers = data[0] & FLAG_FIRE_TIMERS;
	uint32_t seed = data[1] * 0x01010101u;
	const uint8_t *s = data + 2;
	size_t n = size - 2;
	fake_stray_files = 0;

	int p[2];
	FUZZ_CHECK(pipe2(p, O_CLOEXEC) == 0);
	int out = memfd_create("responses", MFD_CLOEXEC);
	FUZZ_CHECK(out >= 0);
	int keep = dup(out);
	FUZZ_CHECK(keep >= 0);
	conn *c = conn_new(p[0], out, false);
	FUZZ_CHECK(c);
	client_hold(&c->cl); /* keeps c readable after conn_close, for the checks */

	named_session(&c->cl, "sb-ready");
	sandbox *busy = named_session(&c->cl, "sb-busy");
	engine_run(busy, harness_call(&c->cl), "hang()", 30);
	sandbox *dead = named_session(&c->cl, "sb-dead");
	fake_die(dead->be, SIGKILL);
	fake_backend_pump();
	FUZZ_CHECK(busy->state == SB_RUNNING && dead->state == SB_DEAD);
	stub_audit_broken = data[0] & FLAG_AUDIT_BROKEN;
	D.shutting_down = data[0] & FLAG_SHUTTING_DOWN;

	size_t pos = 0;
	while (pos < n) {
		uint32_t x = fuzz_next(&seed);
		size_t chunk = (x & 3) == 0 ? 4096 : 1 + (x >> 2) % 256;
		if (chunk > n - pos)
			chunk = n - pos;
		/* At most one line end per read, so that each request is
		 * settled before the next is read. */
		const uint8_t *nl = memchr(s + pos, '\n', chunk);
		if (nl)
			chunk = (size_t)(nl - (s + pos)) + 1;
		FUZZ_CHECK(write(p[1], s + pos, chunk) == (ssize_t)chunk);
		pos += chunk;
		c->rw.cb(c->rw.ctx, EPOLLIN);
		settle(fire_timers);
		if (c->closing)
			break;
		check_engine();
	}
	/* End of stream: the client hangs up. */
	close(p[1]);
	if (!c->closing)
		c->rw.cb(c->rw.ctx, EPOLLIN | EPOLLHUP);
	FUZZ_CHECK(c->closing && c->wlen == 0);
	conn_reap();
	FUZZ_CHECK(c->rfd < 0);
	settle(false);
	conn_put(c);

	/* Everything of this client is gone. */
	FUZZ_CHECK(!sandboxes && nsessions == 0 && fake_live_count() == 0);
	if (fake_stray_files)
		fprintf(stderr, "written outside the workspace: %s\n", fake_stray_name);
	FUZZ_CHECK(fake_stray_files == 0);
	check_empty(root);

	size_t lines = 0;
	for (size_t i = 0; i < n; i++)
		lines += s[i] == '\n';
	json_t *ids = expected_ids(s, n);
	check_messages(keep, ids, lines);
	check_audit();
	json_decref(ids);
	close(keep);
	return 0;
}
