/* harness.c - the fake front end and the shared set-up (harness.h). */
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"

static void tc_done(call *k, json_t *result)
{
	test_call *tc = (test_call *)k;
	CHECK_EQ_INT(tc->ndone + tc->nfail, 0); /* finished exactly once */
	CHECK(!tc->freed);
	tc->ndone++;
	tc->result = result;
	tc->audit_at_end = (int)json_array_size(stub_audit);
	tc->outputs_at_end = (int)json_array_size(tc->outputs);
}

static void tc_fail(call *k, const char *session, int code, const char *msg, json_t *data)
{
	test_call *tc = (test_call *)k;
	CHECK_EQ_INT(tc->ndone + tc->nfail, 0);
	CHECK(!tc->freed);
	tc->nfail++;
	tc->code = code;
	snprintf(tc->msg, sizeof(tc->msg), "%s", msg);
	snprintf(tc->session, sizeof(tc->session), "%s", session ? session : "");
	tc->data = data;
	tc->audit_at_end = (int)json_array_size(stub_audit);
	tc->outputs_at_end = (int)json_array_size(tc->outputs);
}

static void tc_output(call *k, const char *session, const char *stream, json_t *data, int attempt)
{
	test_call *tc = (test_call *)k;
	/* Nothing streams for a call that was finished. */
	CHECK_EQ_INT(tc->ndone + tc->nfail, 0);
	json_array_append_new(tc->outputs,
			      json_pack("{s:s, s:s, s:o, s:i}", "session", session, "stream",
					stream, "data", data, "attempt", attempt));
}

static void tc_rerun(call *k, const char *session, int attempt, const char *tier,
		     const char *reason)
{
	test_call *tc = (test_call *)k;
	CHECK_EQ_INT(tc->ndone + tc->nfail, 0);
	json_array_append_new(tc->reruns,
			      json_pack("{s:s, s:i, s:s, s:s}", "session", session, "attempt",
					attempt, "tier", tier, "reason", reason));
}

static size_t tc_backlog(const call *k)
{
	return ((const test_call *)k)->backlog;
}

static void tc_free(call *k)
{
	((test_call *)k)->freed = true; /* kept for the test to read */
}

static const call_ops test_call_ops = {
    .done = tc_done,
    .fail = tc_fail,
    .output = tc_output,
    .rerun = tc_rerun,
    .backlog = tc_backlog,
    .free = tc_free,
};

test_call *test_call_new(client *cl, const char *tag)
{
	test_call *tc = calloc(1, sizeof(*tc));
	CHECK(tc);
	json_t *t = tag ? json_string(tag) : NULL;
	call_init(&tc->k, &test_call_ops, cl, t);
	json_decref(t);
	tc->outputs = json_array();
	tc->reruns = json_array();
	return tc;
}

client *test_client(uid_t uid)
{
	client *cl = calloc(1, sizeof(*cl));
	CHECK(cl);
	cl->uid = uid;
	cl->refs = 1;
	snprintf(cl->actor, sizeof(cl->actor), "test-%u", (unsigned)uid);
	return cl;
}

static char home[] = "/tmp/ab-engine-test-XXXXXX";
static bool home_made;

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)ftw;
	return flag == FTW_DP ? rmdir(path) : unlink(path);
}

void engine_test_done(void)
{
	if (!home_made)
		return;
	home_made = false;
	nftw(home, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void engine_test_setup(void)
{
	CHECK(mkdtemp(home));
	home_made = true;
	/* A failing CHECK exits: the scratch home goes then too. */
	atexit(engine_test_done);
	char root[256];
	snprintf(root, sizeof(root), "%s/instances", home);
	CHECK(mkdir(root, 0700) == 0);
	memset(&D, 0, sizeof(D));
	snprintf(D.home, sizeof(D.home), "%s", home);
	D.pool_target[TIER_HEAVY] = 0;
	D.pool_target[TIER_NANO] = 0;
	D.max_conns = D.max_conns_per_uid = 100;
	D.max_sessions_per_conn = D.max_sessions_per_uid = 100;
	fake_backend_init(root);
	routes_init();
	engine_init();
}

sandbox *find_session(client *cl, const char *id)
{
	return engine_session(NULL, cl, id, true);
}

sandbox *ready_session(client *cl, const char *tier)
{
	ab_limits lim;
	ab_limits_default(&lim);
	test_call *tc = test_call_new(cl, "create");
	engine_create(&tc->k, tier, &lim, 0);
	fake_backend_pump();
	CHECK_EQ_INT(tc->ndone, 1);
	sandbox *sb = find_session(cl, json_string_value(json_object_get(tc->result, "sandbox")));
	CHECK(sb && sb->state == SB_READY);
	return sb;
}

test_call *run_and_pump(sandbox *sb, client *cl, const char *code, double timeout)
{
	test_call *tc = test_call_new(cl, "run");
	engine_run(sb, &tc->k, code, timeout);
	fake_backend_pump();
	CHECK_EQ_INT(tc->ndone + tc->nfail, 1);
	return tc;
}

const char *result_str(const test_call *tc, const char *key)
{
	return json_string_value(json_object_get(tc->result, key));
}

long long result_int(const test_call *tc, const char *key)
{
	json_t *v = json_object_get(tc->result, key);
	CHECK(json_is_integer(v));
	return json_integer_value(v);
}

void check_run_recorded(const test_call *tc)
{
	CHECK_EQ_INT(tc->ndone, 1);
	const char *sid = result_str(tc, "sandbox");
	int i = stub_audit_find("run", sid, result_int(tc, "step"));
	if (i < 0 || i >= tc->audit_at_end)
		fprintf(stderr, "no run event for %s step %lld before the call was done (at %d)\n",
			sid, result_int(tc, "step"), i);
	CHECK(i >= 0 && i < tc->audit_at_end);
}
