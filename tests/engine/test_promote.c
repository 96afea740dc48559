/* test_promote.c - tier "auto": a nano run that fails for lack of the tier
 * is rerun in heavy after the session's steps are replayed there; cells
 * the router sends to heavy promote before they run. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "harness.h"

/* lzma is one of the modules the router believes nano has
 * (ab_router_nano_modules): a nano executor without it fails the import. */
static void lzma_missing_in_nano(void)
{
	fake_on_run(&(fake_reply){.tier = TIER_NANO,
				  .match = "import lzma",
				  .out = "nano output\n",
				  .status = "error",
				  .exit_code = 1,
				  .error_name = "ModuleNotFoundError",
				  .error_value = "No module named 'lzma'"});
	fake_on_run(&(fake_reply){.tier = TIER_HEAVY, .match = "import lzma", .out = "heavy\n"});
}

static const char *err_field_name(const test_call *tc)
{
	return json_string_value(json_object_get(json_object_get(tc->result, "error"), "name"));
}

static bool nano_has(const char *module)
{
	for (const char *const *m = ab_router_nano_modules(); *m; m++)
		if (strcmp(*m, module) == 0)
			return true;
	return false;
}

AB_TEST(engine_auto_promotes_on_a_module_nano_lacks)
{
	CHECK(nano_has("lzma"));
	engine_test_setup();
	lzma_missing_in_nano();
	client *cl = test_client(1000);
	sandbox *sb = ready_session(cl, "auto");
	CHECK(sb->tier == TIER_NANO && sb->tier_auto);
	char id[32];
	snprintf(id, sizeof(id), "%s", sb->id);
	be_inst *nano = sb->be;
	test_call *first = run_and_pump(sb, cl, "x = 1", 10);
	CHECK_STR(result_str(first, "status"), "ok");

	test_call *tc = test_call_new(cl, "r");
	engine_run(sb, &tc->k, "import lzma\nprint('heavy')", 10);
	fake_backend_pump();
	/* The nano attempt's output was streamed, then superseded. */
	CHECK_EQ_INT(json_array_size(tc->reruns), 1);
	json_t *rr = json_array_get(tc->reruns, 0);
	CHECK_EQ_INT(json_integer_value(json_object_get(rr, "attempt")), 2);
	CHECK_STR(json_string_value(json_object_get(rr, "tier")), "heavy");
	CHECK_CONTAINS(json_string_value(json_object_get(rr, "reason")), "ModuleNotFoundError");
	CHECK_EQ_INT(tc->ndone, 1);
	CHECK_STR(result_str(tc, "status"), "ok");
	CHECK_EQ_INT(result_int(tc, "attempt"), 2);
	CHECK_STR(result_str(tc, "tier"), "heavy");
	CHECK_STR(result_str(tc, "stdout"), "heavy\n");
	CHECK_STR(result_str(tc, "sandbox"), id); /* the same session id */
	CHECK_EQ_INT(result_int(tc, "step"), 2);
	CHECK(json_is_true(json_object_get(tc->result, "promoted")));
	json_t *promo = json_object_get(tc->result, "promotion");
	CHECK(json_is_object(promo));
	json_t *steps = json_object_get(promo, "replayed_steps");
	CHECK_EQ_INT(json_array_size(steps), 1);
	CHECK_STR(json_string_value(json_array_get(steps, 0)), "ok");
	/* Both attempts streamed, numbered. */
	CHECK_EQ_INT(json_array_size(tc->outputs), 2);
	CHECK_EQ_INT(json_integer_value(json_object_get(json_array_get(tc->outputs, 0), "attempt")),
		     1);
	CHECK_EQ_INT(json_integer_value(json_object_get(json_array_get(tc->outputs, 1), "attempt")),
		     2);
	/* The heavy instance replayed the nano step, then ran the cell. */
	be_inst *heavy = fake_inst(2);
	CHECK(heavy && heavy->prof->tier == TIER_HEAVY);
	CHECK_EQ_INT(heavy->runs, 2);
	CHECK_STR(heavy->codes[0], "x = 1");
	CHECK_STR(heavy->codes[1], "import lzma\nprint('heavy')");
	CHECK(nano->closing);
	/* Recorded: the promotion and the run, before the answer. */
	check_run_recorded(tc);
	int p = stub_audit_find("sandbox.promote", id, -1);
	CHECK(p >= 0 && p < tc->audit_at_end);
	/* The session now lives in heavy. */
	sandbox *now = find_session(cl, id);
	CHECK(now && now->be == heavy && now->tier == TIER_HEAVY);
	fake_backend_pump();
	CHECK(nano->released);
	test_call *next = run_and_pump(now, cl, "y = 2", 10);
	CHECK_STR(result_str(next, "tier"), "heavy");
	CHECK_EQ_INT(result_int(next, "step"), 3);
	CHECK_EQ_INT(heavy->runs, 3);
	/* Heavy did better: the module is learned. */
	char path[4200];
	snprintf(path, sizeof(path), "%s/routes.json", D.home);
	FILE *f = fopen(path, "r");
	CHECK(f);
	char buf[4096] = {0};
	CHECK(fread(buf, 1, sizeof(buf) - 1, f) > 0);
	fclose(f);
	CHECK_CONTAINS(buf, "lzma");
	engine_test_done();
}

AB_TEST(engine_auto_routes_a_heavy_cell_before_it_runs)
{
	CHECK(!nano_has("numpy"));
	engine_test_setup();
	client *cl = test_client(1000);
	sandbox *sb = ready_session(cl, "auto");
	be_inst *nano = sb->be;
	test_call *tc = test_call_new(cl, "r");
	engine_run(sb, &tc->k, "import numpy", 10);
	fake_backend_pump();
	CHECK_EQ_INT(tc->ndone, 1);
	CHECK_EQ_INT(nano->runs, 0); /* never tried in nano */
	CHECK_EQ_INT(json_array_size(tc->reruns), 0);
	CHECK_EQ_INT(result_int(tc, "attempt"), 1);
	CHECK_STR(result_str(tc, "tier"), "heavy");
	CHECK(json_is_true(json_object_get(tc->result, "promoted")));
	CHECK_CONTAINS(result_str(tc, "route_reason"), "numpy");
	check_run_recorded(tc);
	engine_test_done();
}

AB_TEST(engine_nano_session_gets_a_hint_not_a_rerun)
{
	engine_test_setup();
	lzma_missing_in_nano();
	client *cl = test_client(1000);
	sandbox *sb = ready_session(cl, "nano");
	test_call *tc = run_and_pump(sb, cl, "import lzma", 10);
	CHECK_STR(result_str(tc, "status"), "error");
	CHECK_STR(result_str(tc, "tier"), "nano");
	CHECK_EQ_INT(json_array_size(tc->reruns), 0);
	CHECK_CONTAINS(result_str(tc, "tier_hint"), "needs the heavy tier");
	CHECK_EQ_INT(fake_live_count(), 1); /* no heavy sandbox */
	engine_test_done();
}

AB_TEST(engine_promotion_failure_keeps_the_session_in_nano)
{
	engine_test_setup();
	lzma_missing_in_nano();
	client *cl = test_client(1000);
	sandbox *sb = ready_session(cl, "auto");
	test_call *tc = test_call_new(cl, "r");
	engine_run(sb, &tc->k, "import lzma", 10);
	fake_setup_fail_next("sandbox set-up failed: no cgroup");
	fake_backend_pump();
	CHECK_EQ_INT(tc->ndone, 1);
	CHECK_STR(result_str(tc, "status"), "error");
	CHECK_STR(err_field_name(tc), "PromotionFailed");
	CHECK_EQ_INT(result_int(tc, "attempt"), 2);
	CHECK(sb->state == SB_READY && sb->tier == TIER_NANO && !sb->promote_to);
	int p = stub_audit_find("sandbox.promote", sb->id, -1);
	CHECK(p >= 0);
	CHECK(json_is_string(json_object_get(
	    json_object_get(json_array_get(stub_audit, (size_t)p), "body"), "failed")));
	fake_backend_pump();
	CHECK_EQ_INT(fake_live_count(), 1);
	engine_test_done();
}

AB_TEST(engine_promotion_deadline)
{
	engine_test_setup();
	lzma_missing_in_nano();
	client *cl = test_client(1000);
	sandbox *sb = ready_session(cl, "auto");
	test_call *tc = test_call_new(cl, "r");
	fake_hold_ready(true); /* the heavy instance never becomes ready */
	engine_run(sb, &tc->k, "import lzma", 10);
	fake_backend_pump();
	CHECK_EQ_INT(tc->ndone, 0);
	CHECK(sb->promote_to);
	CHECK(stub_timer_fire(&sb->timer));
	CHECK_EQ_INT(tc->ndone, 1);
	CHECK_STR(result_str(tc, "status"), "timeout");
	CHECK_STR(result_str(tc, "phase"), "promotion");
	CHECK(!sb->promote_to && sb->state == SB_READY);
	fake_backend_pump();
	CHECK_EQ_INT(fake_live_count(), 1);
	engine_test_done();
}

/* An auto session of cl whose run of "import lzma" waits for its heavy
 * sandbox, which is held starting. */
static sandbox *promotion_waiting(client *cl, test_call **run)
{
	lzma_missing_in_nano();
	sandbox *sb = ready_session(cl, "auto");
	*run = test_call_new(cl, "r");
	fake_hold_ready(true);
	engine_run(sb, &(*run)->k, "import lzma", 10);
	fake_backend_pump();
	CHECK_EQ_INT((*run)->ndone + (*run)->nfail, 0);
	CHECK(sb->promote_to && sb->promote_to->state == SB_STARTING);
	CHECK_EQ_INT(fake_live_count(), 2);
	return sb;
}

AB_TEST(engine_interrupt_during_promotion)
{
	engine_test_setup();
	client *cl = test_client(1000);
	test_call *run;
	sandbox *sb = promotion_waiting(cl, &run);
	sandbox *found = NULL;
	json_t *tag = json_string("r");
	CHECK_STR(engine_interrupt(cl, NULL, tag, &found), "promotion");
	json_decref(tag);
	CHECK(found == sb);
	CHECK_EQ_INT(run->ndone, 1);
	CHECK_STR(err_field_name(run), "KeyboardInterrupt");
	CHECK(json_is_true(json_object_get(run->result, "interrupted")));
	CHECK(sb->state == SB_READY && sb->tier == TIER_NANO && !sb->promote_to);
	fake_backend_pump();
	CHECK_EQ_INT(fake_live_count(), 1);
	engine_test_done();
}

AB_TEST(engine_client_gone_during_promotion)
{
	engine_test_setup();
	client *cl = test_client(1000);
	test_call *run;
	promotion_waiting(cl, &run);
	engine_client_gone(cl);
	/* Answered once: which of the two sandboxes closes first decides
	 * how (a failed promotion, or a session closed while it waited). */
	CHECK_EQ_INT(run->ndone + run->nfail, 1);
	if (run->ndone)
		CHECK_STR(err_field_name(run), "PromotionFailed");
	else
		CHECK_EQ_INT(run->code, ERR_DEAD);
	fake_backend_pump();
	CHECK_EQ_INT(fake_live_count(), 0);
	CHECK_EQ_INT(nsessions, 0);
	engine_tick();
	CHECK(!sandboxes);
	engine_test_done();
}

AB_TEST(engine_close_during_promotion)
{
	engine_test_setup();
	client *cl = test_client(1000);
	test_call *run;
	sandbox *sb = promotion_waiting(cl, &run);
	test_call *close = test_call_new(cl, "c");
	engine_close(sb, &close->k);
	CHECK_EQ_INT(run->nfail, 1);
	CHECK_CONTAINS(run->msg, "waited for the heavy tier");
	fake_backend_pump();
	CHECK_EQ_INT(close->ndone, 1);
	CHECK_EQ_INT(fake_live_count(), 0);
	CHECK_EQ_INT(nsessions, 0);
	engine_test_done();
}

AB_TEST(engine_heavy_dies_during_replay)
{
	engine_test_setup();
	lzma_missing_in_nano();
	fake_on_run(&(fake_reply){.tier = TIER_HEAVY, .match = "x = 1", .hang = true});
	client *cl = test_client(1000);
	sandbox *sb = ready_session(cl, "auto");
	run_and_pump(sb, cl, "x = 1", 10);
	test_call *tc = test_call_new(cl, "r");
	engine_run(sb, &tc->k, "import lzma", 10);
	fake_backend_pump();
	be_inst *heavy = fake_inst(2);
	CHECK(heavy && heavy->runs == 1); /* replaying x = 1 */
	CHECK_EQ_INT(tc->ndone, 0);
	fake_die(heavy, SIGKILL);
	fake_backend_pump();
	CHECK_EQ_INT(tc->ndone, 1);
	CHECK_STR(err_field_name(tc), "PromotionFailed");
	CHECK_CONTAINS(
	    json_string_value(json_object_get(json_object_get(tc->result, "error"), "value")),
	    "replaying step 1 of 1 in heavy ended with killed");
	CHECK(sb->state == SB_READY && sb->tier == TIER_NANO && !sb->promote_to);
	CHECK_EQ_INT(fake_live_count(), 1);
	/* The session goes on in nano. */
	test_call *next = run_and_pump(sb, cl, "y = 2", 10);
	CHECK_STR(result_str(next, "tier"), "nano");
	engine_test_done();
}
