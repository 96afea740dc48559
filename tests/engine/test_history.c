/* test_history.c - time travel in the engine (history.c, replay.c) against
 * the fake backend's parked copies: the tree of steps, rewind, eviction,
 * replay in place and in a new sandbox, inspections' answers. */
#include "harness.h"

static json_t *history_of(sandbox *sb, client *cl)
{
	test_call *h = test_call_new(cl, "h");
	engine_history(sb, &h->k);
	CHECK_EQ_INT(h->ndone, 1);
	return h->result;
}

static const char *mem_of(json_t *h, int step)
{
	size_t i;
	json_t *s;
	json_array_foreach(json_object_get(h, "steps"), i, s)
	{
		if (json_integer_value(json_object_get(s, "step")) == step)
			return json_string_value(
			    json_object_get(json_object_get(s, "snapshot"), "memory"));
	}
	return "?";
}

static int parent_of(json_t *h, int step)
{
	size_t i;
	json_t *s;
	json_array_foreach(json_object_get(h, "steps"), i, s)
	{
		if (json_integer_value(json_object_get(s, "step")) == step)
			return (int)json_integer_value(json_object_get(s, "parent"));
	}
	return -1;
}

AB_TEST(engine_history_is_a_tree_and_rewind_moves_the_head)
{
	engine_test_setup();
	fake_backend_snapshots(true);
	client *cl = test_client(1000);
	sandbox *sb = ready_session(cl, "heavy");
	run_and_pump(sb, cl, "a = 1", 10); /* 1 */
	run_and_pump(sb, cl, "a = 2", 10); /* 2 */
	run_and_pump(sb, cl, "a = 3", 10); /* 3 */
	fake_backend_pump();
	json_t *h = history_of(sb, cl);
	CHECK_EQ_INT(json_integer_value(json_object_get(h, "head")), 3);
	CHECK_STR(mem_of(h, 1), "parked");
	CHECK_STR(mem_of(h, 3), "parked");
	test_call *r = test_call_new(cl, "r");
	engine_rewind(sb, &r->k, 2);
	CHECK_EQ_INT(sb->state, SB_STARTING);
	fake_backend_pump();
	CHECK_EQ_INT(r->ndone, 1);
	CHECK_EQ_INT(sb->state, SB_READY);
	CHECK_EQ_INT(result_int(r, "head"), 1);
	CHECK(stub_audit_find("sandbox.rewind", sb->id, 2) >= 0);
	run_and_pump(sb, cl, "a = 'b'", 10); /* 4, a branch from the end of 1 */
	h = history_of(sb, cl);
	CHECK_EQ_INT(parent_of(h, 4), 1);
	CHECK_EQ_INT(parent_of(h, 3), 2); /* the old branch stays */
	/* a run while the rewind waits is refused */
	test_call *r2 = test_call_new(cl, "r2");
	engine_rewind(sb, &r2->k, 3);
	test_call *busy = test_call_new(cl, "busy");
	engine_run(sb, &busy->k, "1", 10);
	CHECK_EQ_INT(busy->nfail, 1);
	CHECK_EQ_INT(busy->code, ERR_BUSY);
	fake_backend_pump();
	CHECK_EQ_INT(r2->ndone, 1);
	engine_test_done();
}

AB_TEST(engine_history_evicts_the_oldest_and_replays_in_place)
{
	engine_test_setup();
	fake_backend_snapshots(true);
	client *cl = test_client(1000);
	test_call *c = test_call_new(cl, "c");
	ab_limits lim;
	ab_limits_default(&lim);
	engine_create_opts(&c->k, "heavy", &lim, 0, NULL, NULL, 2);
	fake_backend_pump();
	sandbox *sb = find_session(cl, result_str(c, "sandbox"));
	CHECK(sb != NULL);
	for (int i = 0; i < 5; i++)
		run_and_pump(sb, cl, "x = 1", 10);
	fake_backend_pump();
	json_t *h = history_of(sb, cl);
	CHECK_STR(mem_of(h, 1), "parked"); /* the start: the first copy is never evicted */
	CHECK_STR(mem_of(h, 3), "evicted");
	int runs_before = ((be_inst *)sb->be)->runs;
	test_call *r = test_call_new(cl, "r");
	engine_rewind(sb, &r->k, 4); /* the state after step 3: evicted */
	fake_backend_pump();
	CHECK_EQ_INT(r->ndone, 1);
	json_t *restored = json_object_get(r->result, "restored");
	CHECK_STR(json_string_value(json_object_get(restored, "memory")), "snapshot+replay");
	/* from the nearest earlier copy the budget kept, the steps after it ran again */
	int from = (int)json_integer_value(json_object_get(restored, "from_state"));
	CHECK(from < 3);
	CHECK_EQ_INT(((be_inst *)sb->be)->runs - runs_before, 3 - from);
	CHECK_EQ_INT(result_int(r, "head"), 3);
	CHECK_EQ_INT(sb->step, 5); /* replayed runs take no step ids */
	engine_test_done();
}

AB_TEST(engine_history_inspections_and_diffs_are_checked)
{
	engine_test_setup();
	fake_backend_snapshots(true);
	client *cl = test_client(1000);
	sandbox *sb = ready_session(cl, "heavy");
	run_and_pump(sb, cl, "x = 1", 10);
	run_and_pump(sb, cl, "x = 2", 10);
	fake_backend_pump();
	test_call *i = test_call_new(cl, "i");
	engine_inspect(sb, &i->k, 2, "x + 1");
	fake_backend_pump();
	CHECK_EQ_INT(i->ndone, 1);
	CHECK_STR(result_str(i, "value"), "x + 1"); /* the fake echoes the expression */
	CHECK(stub_audit_find("sandbox.inspect", sb->id, 2) >= 0);
	test_call *d = test_call_new(cl, "d");
	engine_diff(sb, &d->k, 1, 2);
	fake_backend_pump();
	CHECK_EQ_INT(d->ndone, 1);
	json_t *v = json_object_get(d->result, "variables");
	CHECK_EQ_INT(json_array_size(json_object_get(v, "changed")), 0);
	/* unknown steps are named */
	test_call *bad = test_call_new(cl, "bad");
	engine_inspect(sb, &bad->k, 9, "x");
	CHECK_EQ_INT(bad->nfail, 1);
	CHECK(strstr(bad->msg, "no step 9") != NULL);
	/* closing the session fails what waits on it */
	test_call *w = test_call_new(cl, "w");
	engine_inspect(sb, &w->k, 2, "x");
	test_call *cc = test_call_new(cl, "cc");
	engine_close(sb, &cc->k);
	CHECK_EQ_INT(w->nfail, 1);
	CHECK_EQ_INT(w->code, ERR_DEAD);
	fake_backend_pump();
	engine_test_done();
}

AB_TEST(engine_history_nano_forks_by_replay_in_a_new_sandbox)
{
	engine_test_setup();
	fake_backend_snapshots(true);
	client *cl = test_client(1000);
	sandbox *sb = ready_session(cl, "nano");
	run_and_pump(sb, cl, "x = 1", 10);
	run_and_pump(sb, cl, "x = 2", 10);
	fake_backend_pump();
	json_t *h = history_of(sb, cl);
	CHECK_STR(mem_of(h, 2), "none"); /* nano: no copies */
	test_call *f = test_call_new(cl, "f");
	engine_fork(sb, &f->k, 2);
	for (int n = 0; n < 20 && !f->ndone && !f->nfail; n++)
		fake_backend_pump();
	CHECK_EQ_INT(f->ndone, 1);
	sandbox *fk = find_session(cl, result_str(f, "sandbox"));
	CHECK(fk != NULL && fk != sb);
	json_t *replay = json_object_get(f->result, "replay");
	CHECK_EQ_INT(json_integer_value(json_object_get(replay, "replayed_steps")), 1);
	CHECK(stub_audit_find("sandbox.fork", sb->id, 2) >= 0);
	/* a rewind by replay swaps the new sandbox in under the same id */
	char id[32];
	snprintf(id, sizeof(id), "%s", sb->id);
	test_call *r = test_call_new(cl, "r");
	engine_rewind(sb, &r->k, 2);
	for (int n = 0; n < 20 && !r->ndone && !r->nfail; n++)
		fake_backend_pump();
	CHECK_EQ_INT(r->ndone, 1);
	sandbox *now = find_session(cl, id);
	CHECK(now != NULL);
	CHECK_STR(json_string_value(json_object_get(json_object_get(r->result, "restored"),
						    "memory")),
		  "replay");
	CHECK(now->tl != NULL);
	engine_test_done();
}
