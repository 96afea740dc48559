/* fuzz_rpc.c - JSON-RPC request handling of agentboxd: the connection
 * layer's line splitting (src/daemon/conn.c), request validation and
 * method dispatch (src/daemon/rpc.c) and the files API's parameter checks
 * (src/daemon/files.c), linked as they are against the stubs of
 * rpc_stubs.c; no daemon, no sandbox.
 *
 * Input: byte 0 holds flags (audit log broken, nano disabled, shutting
 * down), byte 1 seeds the split sizes, the rest is what a client writes to
 * its socket. It reaches the connection through a pipe in chunks of
 * arbitrary sizes, as reads do. Invariants:
 *  - everything the daemon writes is one JSON-RPC 2.0 response per line:
 *    an object with "jsonrpc": "2.0", an "id", and exactly one of
 *    "result" or "error" ({"code": integer, "message": string});
 *  - every request that is an object with an id (string, integer or
 *    null) gets exactly one response, with that id, in order; nothing else
 *    gets more than one;
 *  - the files API created nothing outside the workspace. */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "fuzz.h"
#include "rpc_stubs.h"

#define FLAG_AUDIT_BROKEN 1
#define FLAG_NO_NANO 2
#define FLAG_SHUTTING_DOWN 4

static char sbdir[PATH_MAX], wsdir[PATH_MAX + 16];

static void init_sandbox(sandbox *sb, const char *id, enum sb_state st)
{
	memset(sb, 0, sizeof(*sb));
	snprintf(sb->id, sizeof(sb->id), "%s", id);
	snprintf(sb->dir, sizeof(sb->dir), "%s", sbdir);
	snprintf(sb->dead_reason, sizeof(sb->dead_reason), "killed by the fuzzer");
	sb->state = st;
	ab_limits_default(&sb->limits);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	snprintf(sbdir, sizeof(sbdir), "%s/sb", fuzz_scratch_dir());
	snprintf(wsdir, sizeof(wsdir), "%s/workspace", sbdir);
	FUZZ_CHECK(mkdir(sbdir, 0700) == 0);
	init_sandbox(&fuzz_sb.ready, "sb-ready", SB_READY);
	init_sandbox(&fuzz_sb.busy, "sb-busy", SB_RUNNING);
	init_sandbox(&fuzz_sb.dead, "sb-dead", SB_DEAD);
	return 0;
}

/* The ids of the requests that must be answered, in order: objects with an
 * id member of a valid type, as conn.c and rpc.c parse them. */
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

static void check_responses(int fd, json_t *ids, size_t max_lines)
{
	off_t size = lseek(fd, 0, SEEK_END);
	FUZZ_CHECK(size >= 0);
	char *out = malloc((size_t)size + 1);
	FUZZ_CHECK(out);
	FUZZ_CHECK(pread(fd, out, (size_t)size, 0) == size);
	out[size] = '\0';
	FUZZ_CHECK(size == 0 || out[size - 1] == '\n');
	size_t next_id = 0, lines = 0;
	for (char *p = out; *p;) {
		char *nl = strchr(p, '\n');
		FUZZ_CHECK(nl);
		*nl = '\0';
		lines++;
		json_error_t je;
		json_t *r = json_loads(p, 0, &je);
		if (!r)
			fprintf(stderr, "response is not JSON: %s\n%s\n", je.text, p);
		FUZZ_CHECK(json_is_object(r));
		const char *ver = json_string_value(json_object_get(r, "jsonrpc"));
		FUZZ_CHECK(ver && strcmp(ver, "2.0") == 0);
		json_t *id = json_object_get(r, "id");
		FUZZ_CHECK(id);
		json_t *result = json_object_get(r, "result"), *error = json_object_get(r, "error");
		FUZZ_CHECK((result != NULL) != (error != NULL));
		if (error) {
			FUZZ_CHECK(json_is_integer(json_object_get(error, "code")));
			FUZZ_CHECK(json_is_string(json_object_get(error, "message")));
		}
		/* Answers to requests with an id come in request order; the
		 * others (null id: unreadable requests) fit in between. */
		if (next_id < json_array_size(ids) && json_equal(id, json_array_get(ids, next_id)))
			next_id++;
		else
			FUZZ_CHECK(json_is_null(id));
		json_decref(r);
		p = nl + 1;
	}
	if (next_id != json_array_size(ids)) {
		fprintf(stderr, "%zu of %zu requests with an id were answered\n", next_id,
			json_array_size(ids));
		fprintf(stderr, "%s", out);
	}
	FUZZ_CHECK(next_id == json_array_size(ids));
	FUZZ_CHECK(lines <= max_lines);
	free(out);
}

/* Checks that dir holds exactly the one entry want. */
static void check_only_entry(const char *dir, const char *want)
{
	DIR *d = opendir(dir);
	FUZZ_CHECK(d);
	struct dirent *de;
	int n = 0;
	while ((de = readdir(d))) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (strcmp(de->d_name, want) != 0)
			fprintf(stderr, "created outside the workspace: %s/%s\n", dir, de->d_name);
		FUZZ_CHECK(strcmp(de->d_name, want) == 0);
		n++;
	}
	closedir(d);
	FUZZ_CHECK(n == 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	fuzz_audit_broken = data[0] & FLAG_AUDIT_BROKEN;
	D.pool_target[TIER_NANO] = (data[0] & FLAG_NO_NANO) ? -1 : 1;
	D.pool_target[TIER_HEAVY] = 1;
	D.shutting_down = data[0] & FLAG_SHUTTING_DOWN;
	uint32_t seed = data[1] * 0x01010101u;
	const uint8_t *s = data + 2;
	size_t n = size - 2;

	remove_tree(wsdir);
	FUZZ_CHECK(mkdir(wsdir, 0700) == 0);
	int p[2];
	FUZZ_CHECK(pipe2(p, O_CLOEXEC) == 0);
	int out = memfd_create("responses", MFD_CLOEXEC);
	FUZZ_CHECK(out >= 0);
	int keep = dup(out);
	FUZZ_CHECK(keep >= 0);
	conn *c = conn_new(p[0], out, false);
	FUZZ_CHECK(c);
	c->refs++; /* keeps c readable after conn_close, for the checks */
	size_t pos = 0;
	while (pos < n) {
		uint32_t x = fuzz_next(&seed);
		size_t chunk = (x & 3) == 0 ? 4096 : 1 + (x >> 2) % 256;
		if (chunk > n - pos)
			chunk = n - pos;
		FUZZ_CHECK(write(p[1], s + pos, chunk) == (ssize_t)chunk);
		pos += chunk;
		c->rw.cb(c->rw.ctx, EPOLLIN);
		if (c->closing)
			break;
	}
	/* End of stream: the client hangs up. */
	close(p[1]);
	if (!c->closing)
		c->rw.cb(c->rw.ctx, EPOLLIN | EPOLLHUP);
	FUZZ_CHECK(c->closing && c->wlen == 0);
	conn_reap();
	FUZZ_CHECK(c->rfd < 0);
	conn_put(c);

	size_t lines = 0;
	for (size_t i = 0; i < n; i++)
		lines += s[i] == '\n';
	json_t *ids = expected_ids(s, n);
	check_responses(keep, ids, lines);
	check_only_entry(fuzz_scratch_dir(), "sb");
	check_only_entry(sbdir, "workspace");
	json_decref(ids);
	close(keep);
	return 0;
}
