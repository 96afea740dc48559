/* test_session.c - sessions in the engine: creation from the pool or a
 * backend, refusals, caps, deadlines, closing and clients that leave. */
#include "harness.h"

static int count_sandboxes(void)
{
	int n = 0;
	for (sandbox *s = sandboxes; s; s = s->next)
		n++;
	return n;
}

AB_TEST(engine_create_fresh_is_done_when_ready)
{
	engine_test_setup();
	client *cl = test_client(1000);
	ab_limits lim;
	ab_limits_default(&lim);
	test_call *tc = test_call_new(cl, "c");
	engine_create(&tc->k, "nano", &lim, 0);
	/* Nothing answered yet: the backend is starting the instance. */
	CHECK_EQ_INT(tc->ndone + tc->nfail, 0);
	be_inst *b = fake_inst(1);
	CHECK(b && b->prof->tier == TIER_NANO);
	CHECK(sandboxes && sandboxes->state == SB_STARTING);
	double s = 0;
	CHECK(stub_timer_armed(&sandboxes->timer, &s));
	CHECK(s >= 59 && s <= 61); /* the start-up deadline */
	CHECK_EQ_INT(stub_audit_find("sandbox.create", NULL, -1), -1);

	CHECK(fake_backend_pump() > 0);
	CHECK_EQ_INT(tc->ndone, 1);
	CHECK_STR(result_str(tc, "tier"), "nano");
	CHECK(json_is_false(json_object_get(tc->result, "pooled")));
	sandbox *sb = find_session(cl, result_str(tc, "sandbox"));
	CHECK(sb && sb->state == SB_READY && sb->be == b);
	int i = stub_audit_find("sandbox.create", sb->id, -1);
	CHECK(i >= 0 && i < tc->audit_at_end);
	CHECK(tc->freed); /* the engine dropped its reference */
	engine_test_done();
}

AB_TEST(engine_create_from_pool_is_done_at_once)
{
	engine_test_setup();
	stub_zygotes_alive = true;
	D.pool_target[TIER_NANO] = 1;
	fake_profile_ready(TIER_NANO); /* the zygote came up: fill the pool */
	pool_refill_due();
	CHECK_EQ_INT(fake_live_count(), 1);
	fake_backend_pump();
	CHECK(sandboxes && sandboxes->role == ROLE_POOL && sandboxes->state == SB_READY);
	CHECK(!sandboxes->owner);

	client *cl = test_client(1000);
	ab_limits lim;
	ab_limits_default(&lim);
	test_call *tc = test_call_new(cl, "c");
	engine_create(&tc->k, "nano", &lim, 0);
	CHECK_EQ_INT(tc->ndone, 1); /* no pump needed */
	CHECK(json_is_true(json_object_get(tc->result, "pooled")));
	sandbox *sb = find_session(cl, result_str(tc, "sandbox"));
	CHECK(sb && sb->be == fake_inst(1) && sb->owner == cl);
	CHECK(stub_audit_find("sandbox.create", sb->id, -1) >= 0);
	/* The pool is topped up after a short delay (the client's next
	 * requests first), not within the iteration. */
	CHECK_EQ_INT(fake_live_count(), 1);
	engine_tick();
	CHECK_EQ_INT(fake_live_count(), 1);
	pool_refill_due();
	CHECK_EQ_INT(fake_live_count(), 2);
	CHECK(fake_inst(2) && fake_inst(2)->prof->tier == TIER_NANO);
	engine_test_done();
}

AB_TEST(engine_create_pool_limits_mismatch_starts_fresh)
{
	engine_test_setup();
	stub_zygotes_alive = true;
	D.pool_target[TIER_NANO] = 1;
	pool_refill(TIER_NANO);
	pool_refill_due();
	fake_backend_pump();
	client *cl = test_client(1000);
	ab_limits lim;
	ab_limits_default(&lim);
	lim.memory_mb += 64; /* nano's memory cap is fixed when it is built */
	test_call *tc = test_call_new(cl, "c");
	engine_create(&tc->k, "nano", &lim, 0);
	CHECK_EQ_INT(tc->ndone, 0);
	fake_backend_pump();
	CHECK_EQ_INT(tc->ndone, 1);
	CHECK(json_is_false(json_object_get(tc->result, "pooled")));
	engine_test_done();
}

AB_TEST(engine_create_backend_refuses)
{
	engine_test_setup();
	client *cl = test_client(1000);
	ab_limits lim;
	ab_limits_default(&lim);
	fake_fail_next_create("fake: the zygote is not running");
	test_call *tc = test_call_new(cl, "c");
	engine_create(&tc->k, "heavy", &lim, 0);
	CHECK_EQ_INT(tc->nfail, 1);
	CHECK_EQ_INT(tc->ndone, 0);
	CHECK_EQ_INT(tc->code, ERR_RESOURCES);
	CHECK_CONTAINS(tc->msg, "the zygote is not running");
	CHECK(!sandboxes);
	CHECK_EQ_INT(nsessions, 0);
	CHECK_EQ_INT(engine_sessions_of(cl), 0);
	engine_test_done();
}

AB_TEST(engine_create_setup_failure_fails_the_call)
{
	engine_test_setup();
	client *cl = test_client(1000);
	ab_limits lim;
	ab_limits_default(&lim);
	fake_setup_fail_next("sandbox set-up failed: mount /proc: Permission denied");
	test_call *tc = test_call_new(cl, "c");
	engine_create(&tc->k, "heavy", &lim, 0);
	CHECK_EQ_INT(tc->ndone + tc->nfail, 0);
	fake_backend_pump();
	CHECK_EQ_INT(tc->nfail, 1);
	CHECK_EQ_INT(tc->code, ERR_ISOLATION);
	CHECK_CONTAINS(tc->msg, "mount /proc");
	/* Closed and released: nothing is left of it. */
	CHECK_EQ_INT(fake_live_count(), 0);
	CHECK_EQ_INT(engine_sessions_of(cl), 0);
	CHECK_EQ_INT(nsessions, 0);
	CHECK_EQ_INT(stub_audit_count("sandbox.create"), 0);
	engine_test_done();
}

AB_TEST(engine_create_startup_deadline)
{
	engine_test_setup();
	client *cl = test_client(1000);
	ab_limits lim;
	ab_limits_default(&lim);
	fake_hold_ready(true);
	test_call *tc = test_call_new(cl, "c");
	engine_create(&tc->k, "heavy", &lim, 0);
	fake_backend_pump();
	CHECK_EQ_INT(tc->ndone + tc->nfail, 0);
	CHECK(stub_timer_fire(&sandboxes->timer));
	CHECK_EQ_INT(fake_inst(1)->kills, 1);
	fake_backend_pump();
	CHECK_EQ_INT(tc->nfail, 1);
	CHECK_EQ_INT(tc->code, ERR_ISOLATION);
	CHECK_CONTAINS(tc->msg, "did not become ready in time");
	/* Nobody knows its id: it must not stay as a dead session that
	 * counts against the client's caps. */
	CHECK_EQ_INT(engine_sessions_of(cl), 0);
	CHECK_EQ_INT(fake_live_count(), 0);
	engine_test_done();
}

AB_TEST(engine_sessions_per_connection_cap)
{
	engine_test_setup();
	D.max_sessions_per_conn = 2;
	client *cl = test_client(1000), *other = test_client(1001);
	sandbox *a = ready_session(cl, "heavy");
	ready_session(cl, "nano");
	ab_limits lim;
	ab_limits_default(&lim);
	test_call *tc = test_call_new(cl, "c3");
	engine_create(&tc->k, "heavy", &lim, 0);
	CHECK_EQ_INT(tc->nfail, 1);
	CHECK_EQ_INT(tc->code, ERR_RESOURCES);
	CHECK_CONTAINS(tc->msg, "at most 2");
	CHECK_STR(json_string_value(json_object_get(tc->data, "limit")), "sessions_per_connection");
	CHECK_EQ_INT(fake_live_count(), 2); /* no backend was asked */
	/* Another client has its own count. */
	ready_session(other, "heavy");
	/* One closed no longer counts. */
	test_call *close = test_call_new(cl, "x");
	engine_close(a, &close->k);
	fake_backend_pump();
	CHECK_EQ_INT(close->ndone, 1);
	ready_session(cl, "heavy");
	engine_test_done();
}

AB_TEST(engine_sessions_per_uid_cap)
{
	engine_test_setup();
	D.max_sessions_per_uid = 1;
	client *a = test_client(1000), *b = test_client(1000), *c = test_client(1001);
	ready_session(a, "heavy");
	ab_limits lim;
	ab_limits_default(&lim);
	test_call *tc = test_call_new(b, "c");
	engine_create(&tc->k, "heavy", &lim, 0);
	CHECK_EQ_INT(tc->nfail, 1);
	CHECK_STR(json_string_value(json_object_get(tc->data, "limit")), "sessions_per_uid");
	ready_session(c, "heavy");
	engine_test_done();
}

AB_TEST(engine_create_refused_when_shutting_down_or_nano_disabled)
{
	engine_test_setup();
	client *cl = test_client(1000);
	ab_limits lim;
	ab_limits_default(&lim);
	D.pool_target[TIER_NANO] = -1;
	test_call *tc = test_call_new(cl, "c");
	engine_create(&tc->k, "nano", &lim, 0);
	CHECK_EQ_INT(tc->nfail, 1);
	CHECK_EQ_INT(tc->code, ERR_ISOLATION);
	/* auto then starts in heavy */
	test_call *au = test_call_new(cl, "a");
	engine_create(&au->k, "auto", &lim, 0);
	fake_backend_pump();
	CHECK_EQ_INT(au->ndone, 1);
	CHECK_STR(result_str(au, "tier"), "heavy");
	D.shutting_down = true;
	test_call *sd = test_call_new(cl, "s");
	engine_create(&sd->k, "heavy", &lim, 0);
	CHECK_EQ_INT(sd->nfail, 1);
	CHECK_CONTAINS(sd->msg, "shutting down");
	engine_test_done();
}

AB_TEST(engine_idle_timeout_closes_the_session)
{
	engine_test_setup();
	client *cl = test_client(1000);
	ab_limits lim;
	ab_limits_default(&lim);
	test_call *tc = test_call_new(cl, "c");
	engine_create(&tc->k, "heavy", &lim, 30);
	fake_backend_pump();
	sandbox *sb = find_session(cl, result_str(tc, "sandbox"));
	char id[32];
	snprintf(id, sizeof(id), "%s", sb->id);
	double s = 0;
	CHECK(stub_timer_armed(&sb->timer, &s));
	CHECK(s == 30);
	CHECK(stub_timer_fire(&sb->timer));
	CHECK(!find_session(cl, id));
	fake_backend_pump();
	CHECK_EQ_INT(fake_live_count(), 0);
	test_call *r = test_call_new(cl, "r");
	CHECK(!engine_session(&r->k, cl, id, false));
	CHECK_EQ_INT(r->code, ERR_NO_SANDBOX);
	CHECK_CONTAINS(r->msg, "without use (the idle timeout)");
	int i = stub_audit_find("sandbox.close", id, -1);
	CHECK(i >= 0);
	CHECK_CONTAINS(
	    json_string_value(json_object_get(
		json_object_get(json_array_get(stub_audit, (size_t)i), "body"), "reason")),
	    "idle timeout");
	engine_test_done();
}

AB_TEST(engine_close_answers_once_the_teardown_began)
{
	engine_test_setup();
	client *cl = test_client(1000);
	sandbox *sb = ready_session(cl, "heavy");
	char id[32];
	snprintf(id, sizeof(id), "%s", sb->id);
	test_call *tc = test_call_new(cl, "x");
	engine_close(sb, &tc->k);
	/* Unreachable and answered at once; still accounted until released. */
	CHECK(!find_session(cl, id));
	CHECK(fake_inst(1)->closing);
	CHECK_EQ_INT(tc->ndone, 1);
	CHECK(json_is_true(json_object_get(tc->result, "closed")));
	CHECK_EQ_INT(nsessions, 1);
	int i = stub_audit_find("sandbox.close", id, -1);
	CHECK(i >= 0 && i < tc->audit_at_end);
	CHECK(stub_audit_find("sandbox.released", id, -1) < 0);
	fake_backend_pump();
	CHECK(fake_inst(1)->released);
	CHECK_EQ_INT(nsessions, 0);
	CHECK(stub_audit_find("sandbox.released", id, -1) > i);
	engine_tick();
	CHECK(!sandboxes);
	engine_test_done();
}

AB_TEST(engine_client_gone_closes_its_sessions)
{
	engine_test_setup();
	fake_on_run(&(fake_reply){.tier = -1, .match = "loop", .hang = true});
	client *cl = test_client(1000), *other = test_client(1000);
	sandbox *a = ready_session(cl, "heavy");
	ready_session(cl, "nano");
	sandbox *keep = ready_session(other, "heavy");
	test_call *run = test_call_new(cl, "r");
	engine_run(a, &run->k, "loop()", 30);
	fake_backend_pump();
	CHECK_EQ_INT(run->ndone, 0);
	engine_client_gone(cl);
	/* The run in progress is answered at once. */
	CHECK_EQ_INT(run->ndone, 1);
	CHECK_STR(result_str(run, "status"), "killed");
	CHECK_EQ_INT(engine_sessions_of(cl), 0);
	CHECK_EQ_INT(stub_audit_count("sandbox.close"), 2);
	int i = stub_audit_find("sandbox.close", NULL, -1);
	CHECK_STR(json_string_value(json_object_get(
		      json_object_get(json_array_get(stub_audit, (size_t)i), "body"), "reason")),
		  "the client disconnected");
	fake_backend_pump();
	CHECK_EQ_INT(fake_live_count(), 1);
	CHECK(keep->state == SB_READY && engine_sessions_of(other) == 1);
	engine_tick();
	CHECK_EQ_INT(count_sandboxes(), 1);
	engine_test_done();
}

AB_TEST(engine_shutdown_releases_everything)
{
	engine_test_setup();
	client *cl = test_client(1000);
	ready_session(cl, "heavy");
	ready_session(cl, "nano");
	engine_shutdown();
	CHECK_EQ_INT(fake_live_count(), 0);
	CHECK(!sandboxes);
	CHECK_EQ_INT(nsessions, 0);
	engine_test_done();
}

AB_TEST(engine_a_dead_pooled_sandbox_is_replaced)
{
	engine_test_setup();
	stub_zygotes_alive = true;
	D.pool_target[TIER_NANO] = 1;
	fake_profile_ready(TIER_NANO);
	pool_refill_due();
	fake_backend_pump();
	CHECK(fake_inst(1) && sandboxes && sandboxes->state == SB_READY);
	/* Killed while it waited in the pool: closed, and replaced. */
	fake_die(fake_inst(1), 9);
	fake_backend_pump();
	CHECK(fake_inst(1)->released);
	pool_refill_due();
	CHECK(fake_inst(2) && !fake_inst(2)->closing);
	fake_backend_pump();
	CHECK_EQ_INT(fake_live_count(), 1);
	/* Another death within a second: not replaced yet (no busy loop on a
	 * host that kills every new sandbox); a second later it is. */
	stub_clock_advance(0.5);
	fake_die(fake_inst(2), 9);
	fake_backend_pump();
	pool_refill_due();
	CHECK(!fake_inst(3));
	stub_clock_advance(0.6);
	fake_profile_ready(TIER_NANO); /* anything that asks for a refill */
	pool_refill_due();
	CHECK(fake_inst(3));
	engine_test_done();
}

AB_TEST(engine_a_pooled_sandbox_whose_setup_fails_is_not_retried_at_once)
{
	engine_test_setup();
	stub_zygotes_alive = true;
	D.pool_target[TIER_NANO] = 1;
	fake_setup_fail_next("no namespaces today");
	fake_profile_ready(TIER_NANO);
	pool_refill_due();
	fake_backend_pump();
	CHECK(fake_inst(1) && fake_inst(1)->released);
	pool_refill_due();
	engine_tick();
	CHECK(!fake_inst(2));
	engine_test_done();
}
