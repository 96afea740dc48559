/* test_run.c - runs in the engine: results, streamed output, deadlines,
 * deaths, interrupts, closing mid-run, and one-shot runs. */
#include <signal.h>

#include "harness.h"

static json_t *audit_body(int i)
{
	return json_object_get(json_array_get(stub_audit, (size_t)i), "body");
}

static const char *err_field(const test_call *tc, const char *key)
{
	return json_string_value(json_object_get(json_object_get(tc->result, "error"), key));
}

AB_TEST(engine_run_result_fields)
{
	engine_test_setup();
	fake_on_run(&(fake_reply){.tier = -1, .match = "print", .out = "1\n", .value = "None"});
	client *cl = test_client(1000);
	sandbox *sb = ready_session(cl, "nano");
	test_call *tc = run_and_pump(sb, cl, "print(1)", 10);
	CHECK_EQ_INT(tc->ndone, 1);
	CHECK_STR(result_str(tc, "status"), "ok");
	CHECK_EQ_INT(result_int(tc, "exit_code"), 0);
	CHECK_STR(result_str(tc, "stdout"), "1\n");
	CHECK_STR(result_str(tc, "stderr"), "");
	CHECK_STR(result_str(tc, "value"), "None");
	CHECK_STR(result_str(tc, "sandbox"), sb->id);
	CHECK_EQ_INT(result_int(tc, "step"), 1);
	CHECK_STR(result_str(tc, "tier"), "nano");
	CHECK_STR(result_str(tc, "route_reason"), "tier \"nano\" was requested");
	CHECK_EQ_INT(result_int(tc, "attempt"), 1);
	CHECK(json_is_false(json_object_get(tc->result, "promoted")));
	CHECK(json_is_false(json_object_get(tc->result, "interrupted")));
	CHECK(json_is_null(json_object_get(tc->result, "limit")));
	CHECK(json_is_null(json_object_get(tc->result, "error")));
	/* The backend got the code with this step. */
	be_inst *b = sb->be;
	CHECK_EQ_INT(b->runs, 1);
	CHECK_STR(b->codes[0], "print(1)");
	CHECK_EQ_INT(b->step, 1);
	check_run_recorded(tc);
	int i = stub_audit_find("run", sb->id, 1);
	CHECK_STR(json_string_value(json_object_get(audit_body(i), "code")), "print(1)");
	CHECK_STR(json_string_value(json_object_get(audit_body(i), "status")), "ok");
	CHECK(sb->state == SB_READY);

	test_call *t2 = run_and_pump(sb, cl, "x = 2", 10);
	CHECK_EQ_INT(result_int(t2, "step"), 2);
	check_run_recorded(t2);
	engine_test_done();
}

AB_TEST(engine_run_error_result_is_sanitized)
{
	engine_test_setup();
	fake_on_run(&(fake_reply){.tier = -1,
				  .status = "error",
				  .exit_code = 999,
				  .error_name = "ValueError",
				  .error_value = "bad"});
	client *cl = test_client(1000);
	sandbox *sb = ready_session(cl, "heavy");
	test_call *tc = run_and_pump(sb, cl, "raise ValueError('bad')", 10);
	CHECK_STR(result_str(tc, "status"), "error");
	CHECK_EQ_INT(result_int(tc, "exit_code"), 999 & 0xff);
	CHECK_STR(err_field(tc, "name"), "ValueError");
	CHECK_STR(err_field(tc, "value"), "bad");
	check_run_recorded(tc);
	engine_test_done();
}

/* A text over its cap is cut between characters: cut through one, it was
 * not UTF-8, jansson refused it and the result lost its whole error. */
AB_TEST(engine_run_error_texts_are_cut_between_characters)
{
	engine_test_setup();
	static char value[30000 * 3 + 1];
	for (int i = 0; i < 30000; i++)
		memcpy(value + 3 * i, "\xe2\x82\xac", 3); /* U+20AC, 3 bytes */
	fake_on_run(&(fake_reply){.tier = -1,
				  .status = "error",
				  .exit_code = 1,
				  .error_name = "ValueError",
				  .error_value = value});
	client *cl = test_client(1000);
	sandbox *sb = ready_session(cl, "heavy");
	test_call *tc = run_and_pump(sb, cl, "raise ValueError('\u20ac' * 30000)", 10);
	CHECK_STR(err_field(tc, "name"), "ValueError");
	const char *v = err_field(tc, "value");
	CHECK(v != NULL);
	CHECK_EQ_INT(strlen(v), 65535); /* 65536 is not a multiple of 3 */
	engine_test_done();
}

/* error.frames of a run whose executor sent extra (the rest of the error
 * members), as the client gets them. */
static json_t *frames_after(const char *extra, test_call **out)
{
	/* Rules are matched in order: each run gets one of its own. */
	static char codes[32][32];
	static int ncodes;
	CHECK(ncodes < 32);
	char *code = codes[ncodes];
	snprintf(code, sizeof(codes[0]), "a()  # run %d", ncodes++);
	fake_on_run(&(fake_reply){.match = code,
				  .tier = -1,
				  .status = "error",
				  .exit_code = 1,
				  .error_name = "KeyError",
				  .error_value = "4",
				  .error_extra = extra});
	client *cl = test_client(1000);
	sandbox *sb = ready_session(cl, "heavy");
	test_call *tc = run_and_pump(sb, cl, code, 10);
	*out = tc;
	CHECK_STR(result_str(tc, "status"), "error");
	CHECK_STR(err_field(tc, "name"), "KeyError");
	check_run_recorded(tc);
	return json_object_get(json_object_get(tc->result, "error"), "frames");
}

static const char *local_field(json_t *frames, size_t i, const char *name, const char *key)
{
	json_t *f = json_array_get(frames, i);
	return json_string_value(
	    json_object_get(json_object_get(json_object_get(f, "locals"), name), key));
}

AB_TEST(engine_run_error_frames_pass_through)
{
	engine_test_setup();
	test_call *tc;
	json_t *frames = frames_after(
	    "{\"frames\": ["
	    "{\"function\": \"<module>\", \"file\": \"<cell-1>\", \"line\": 3,"
	    " \"locals\": {\"a\": {\"type\": \"function\", \"repr\": \"<function a>\"}}},"
	    "{\"function\": \"c\", \"file\": \"<cell-1>\", \"line\": 2, \"locals_omitted\": 7,"
	    " \"unknown\": 1, \"locals\": {\"z\": {\"type\": \"int\", \"repr\": \"4\", \"x\": 1}}}],"
	    " \"frames_omitted\": 3}",
	    &tc);
	CHECK(json_is_array(frames));
	CHECK_EQ_INT(json_array_size(frames), 2);
	json_t *inner = json_array_get(frames, 1);
	CHECK_STR(json_string_value(json_object_get(inner, "function")), "c");
	CHECK_STR(json_string_value(json_object_get(inner, "file")), "<cell-1>");
	CHECK_EQ_INT(json_integer_value(json_object_get(inner, "line")), 2);
	CHECK_EQ_INT(json_integer_value(json_object_get(inner, "locals_omitted")), 7);
	CHECK(json_object_get(inner, "unknown") == NULL); /* only known fields */
	CHECK_STR(local_field(frames, 1, "z", "type"), "int");
	CHECK_STR(local_field(frames, 1, "z", "repr"), "4");
	CHECK(json_object_get(json_object_get(json_object_get(inner, "locals"), "z"), "x") == NULL);
	CHECK_STR(local_field(frames, 0, "a", "repr"), "<function a>");
	json_t *e = json_object_get(tc->result, "error");
	CHECK_EQ_INT(json_integer_value(json_object_get(e, "frames_omitted")), 3);
	/* The audit record keeps the error's name only, not the locals. */
	int i = stub_audit_find("run", result_str(tc, "sandbox"), 1);
	CHECK(i >= 0);
	CHECK(json_object_get(audit_body(i), "error") == NULL);
	CHECK_STR(json_string_value(json_object_get(audit_body(i), "error_name")), "KeyError");
	engine_test_done();
}

AB_TEST(engine_run_error_frames_absent_are_empty)
{
	engine_test_setup();
	test_call *tc;
	json_t *frames = frames_after(NULL, &tc);
	CHECK(json_is_array(frames));
	CHECK_EQ_INT(json_array_size(frames), 0);
	engine_test_done();
}

/* Each of these forged or broken claims is dropped whole: the error keeps
 * its name and value, frames becomes [] and nothing of the claim is kept. */
static const char *const bad_frames[] = {
    "{\"frames\": \"not a list\"}",
    "{\"frames\": {\"function\": \"f\"}}",
    "{\"frames\": [1]}",
    "{\"frames\": [{\"function\": 1, \"file\": \"f\", \"line\": 1, \"locals\": {}}]}",
    "{\"frames\": [{\"function\": \"f\", \"file\": null, \"line\": 1, \"locals\": {}}]}",
    "{\"frames\": [{\"function\": \"f\", \"file\": \"f\", \"line\": \"1\", \"locals\": {}}]}",
    "{\"frames\": [{\"function\": \"f\", \"file\": \"f\", \"line\": 1.5, \"locals\": {}}]}",
    "{\"frames\": [{\"function\": \"f\", \"file\": \"f\", \"line\": 1}]}",
    "{\"frames\": [{\"function\": \"f\", \"file\": \"f\", \"line\": 1, \"locals\": []}]}",
    "{\"frames\": [{\"function\": \"f\", \"file\": \"f\", \"line\": 1, \"locals\": {\"x\": "
    "\"1\"}}]}",
    "{\"frames\": [{\"function\": \"f\", \"file\": \"f\", \"line\": 1, \"locals\": {\"x\": "
    "{\"type\": \"int\"}}}]}",
    "{\"frames\": [{\"function\": \"f\", \"file\": \"f\", \"line\": 1, \"locals\": {\"x\": "
    "{\"type\": \"int\", \"repr\": 1}}}]}",
    "{\"frames\": [{\"function\": \"f\", \"file\": \"f\", \"line\": 1, \"locals\": {},"
    " \"locals_omitted\": -1}]}",
    "{\"frames\": [{\"function\": \"f\", \"file\": \"f\", \"line\": 1, \"locals\": {},"
    " \"locals_omitted\": \"2\"}]}",
    "{\"frames\": [], \"frames_omitted\": -5}",
    "{\"frames\": [], \"frames_omitted\": true}",
    /* a good frame followed by a bad one: the good one goes too */
    "{\"frames\": [{\"function\": \"f\", \"file\": \"f\", \"line\": 1, \"locals\": {}},"
    " {\"function\": \"g\"}]}",
};

AB_TEST(engine_run_error_frames_malformed_are_dropped)
{
	engine_test_setup();
	for (size_t n = 0; n < sizeof(bad_frames) / sizeof(bad_frames[0]); n++) {
		test_call *tc;
		json_t *frames = frames_after(bad_frames[n], &tc);
		if (!json_is_array(frames) || json_array_size(frames) != 0)
			fprintf(stderr, "claim %zu was kept: %s\n", n, bad_frames[n]);
		CHECK(json_is_array(frames));
		CHECK_EQ_INT(json_array_size(frames), 0);
		json_t *e = json_object_get(tc->result, "error");
		CHECK(json_object_get(e, "frames_omitted") == NULL);
		CHECK_STR(err_field(tc, "value"), "4");
	}
	engine_test_done();
}

/* Too many frames or locals is a forgery too (the executor sends at most
 * 16 and 50); strings too long are cut, on a character boundary. */
AB_TEST(engine_run_error_frames_are_bounded)
{
	char *big = malloc(1 << 20);
	CHECK(big != NULL);
	size_t o = 0;
	o += (size_t)sprintf(big + o, "{\"frames\": [");
	for (int i = 0; i < 17; i++)
		o += (size_t)sprintf(big + o, "%s{\"function\": \"f\", \"file\": \"f\", \"line\": %d,"
					      " \"locals\": {}}",
				     i ? "," : "", i);
	sprintf(big + o, "]}");
	engine_test_setup();
	test_call *tc;
	CHECK_EQ_INT(json_array_size(frames_after(big, &tc)), 0);

	o = 0;
	o += (size_t)sprintf(big + o, "{\"frames\": [{\"function\": \"f\", \"file\": \"f\", "
				      "\"line\": 1, \"locals\": {");
	for (int i = 0; i < 51; i++)
		o += (size_t)sprintf(big + o, "%s\"v%d\": {\"type\": \"int\", \"repr\": \"1\"}",
				     i ? "," : "", i);
	sprintf(big + o, "}}]}");
	CHECK_EQ_INT(json_array_size(frames_after(big, &tc)), 0);

	/* 300 x "é" (600 bytes) as names, 2000 x "é" as a repr: cut to 256
	 * and 1024 bytes, whole characters only. */
	o = 0;
	o += (size_t)sprintf(big + o, "{\"frames\": [{\"function\": \"");
	for (int i = 0; i < 300; i++)
		o += (size_t)sprintf(big + o, "\\u00e9");
	o += (size_t)sprintf(big + o, "\", \"file\": \"f\", \"line\": 1, \"locals\": {\"x\": "
				      "{\"type\": \"t\", \"repr\": \"a");
	for (int i = 0; i < 2000; i++)
		o += (size_t)sprintf(big + o, "\\u00e9");
	sprintf(big + o, "\"}}}]}");
	json_t *frames = frames_after(big, &tc);
	CHECK_EQ_INT(json_array_size(frames), 1);
	json_t *fn = json_object_get(json_array_get(frames, 0), "function");
	CHECK_EQ_INT(json_string_length(fn), 256);
	const char *rp = local_field(frames, 0, "x", "repr");
	CHECK(rp != NULL);
	CHECK_EQ_INT(strlen(rp), 1023); /* "a" and 511 whole characters */
	engine_test_done();
	free(big);
}

AB_TEST(engine_run_output_streams_to_the_call)
{
	engine_test_setup();
	fake_on_run(&(fake_reply){.tier = -1, .out = "to out", .err = "to err"});
	client *cl = test_client(1000);
	sandbox *sb = ready_session(cl, "heavy");
	test_call *tc = run_and_pump(sb, cl, "anything", 10);
	CHECK_EQ_INT(json_array_size(tc->outputs), 2);
	CHECK_EQ_INT(tc->outputs_at_end, 2); /* streamed before the result */
	json_t *o = json_array_get(tc->outputs, 0), *e = json_array_get(tc->outputs, 1);
	CHECK_STR(json_string_value(json_object_get(o, "stream")), "stdout");
	CHECK_STR(json_string_value(json_object_get(o, "data")), "to out");
	CHECK_STR(json_string_value(json_object_get(o, "session")), sb->id);
	CHECK_EQ_INT(json_integer_value(json_object_get(o, "attempt")), 1);
	CHECK_STR(json_string_value(json_object_get(e, "stream")), "stderr");
	CHECK_STR(json_string_value(json_object_get(e, "data")), "to err");
	CHECK_STR(result_str(tc, "stdout"), "to out");
	CHECK_STR(result_str(tc, "stderr"), "to err");
	engine_test_done();
}

AB_TEST(engine_run_output_is_capped)
{
	engine_test_setup();
	fake_on_run(&(fake_reply){.tier = -1, .out = "0123456789"});
	client *cl = test_client(1000);
	ab_limits lim;
	ab_limits_default(&lim);
	lim.output_bytes = 4;
	test_call *c = test_call_new(cl, "c");
	engine_create(&c->k, "heavy", &lim, 0);
	fake_backend_pump();
	sandbox *sb = find_session(cl, result_str(c, "sandbox"));
	test_call *tc = run_and_pump(sb, cl, "print('0123456789')", 10);
	CHECK_STR(result_str(tc, "stdout"), "0123");
	CHECK(json_is_true(json_object_get(json_object_get(tc->result, "truncated"), "stdout")));
	/* The limit is recorded beside the run. */
	CHECK(stub_audit_find("limit", sb->id, 1) >= 0);
	engine_test_done();
}

AB_TEST(engine_run_while_busy_is_refused)
{
	engine_test_setup();
	fake_on_run(&(fake_reply){.tier = -1, .hang = true});
	client *cl = test_client(1000);
	sandbox *sb = ready_session(cl, "heavy");
	test_call *a = test_call_new(cl, "a");
	engine_run(sb, &a->k, "while True: pass", 10);
	test_call *b = test_call_new(cl, "b");
	engine_run(sb, &b->k, "1", 10);
	CHECK_EQ_INT(b->nfail, 1);
	CHECK_EQ_INT(b->code, ERR_BUSY);
	CHECK_STR(b->session, sb->id);
	CHECK_EQ_INT(a->ndone + a->nfail, 0);
	CHECK_EQ_INT(((be_inst *)sb->be)->runs, 1);
	engine_test_done();
}

AB_TEST(engine_run_timeout_interrupts_then_kills)
{
	engine_test_setup();
	fake_on_run(&(fake_reply){.tier = -1, .hang = true, .ignore_interrupt = true});
	client *cl = test_client(1000);
	sandbox *sb = ready_session(cl, "heavy");
	be_inst *b = sb->be;
	test_call *tc = test_call_new(cl, "r");
	engine_run(sb, &tc->k, "while True:\n  try: pass\n  except: pass", 5);
	fake_backend_pump();
	double s = 0;
	CHECK(stub_timer_armed(&sb->timer, &s));
	CHECK(s > 4.9 && s <= 5);
	/* First the cell is interrupted, with a grace period. */
	CHECK(stub_timer_fire(&sb->timer));
	CHECK_EQ_INT(b->interrupts, 1);
	CHECK_EQ_INT(b->kills, 0);
	CHECK(stub_timer_armed(&sb->timer, &s));
	CHECK(s == 2.0);
	fake_backend_pump();
	CHECK_EQ_INT(tc->ndone, 0);
	/* Then killed. */
	CHECK(stub_timer_fire(&sb->timer));
	CHECK_EQ_INT(b->kills, 1);
	fake_backend_pump();
	CHECK_EQ_INT(tc->ndone, 1);
	CHECK_STR(result_str(tc, "status"), "timeout");
	CHECK_EQ_INT(result_int(tc, "exit_code"), 124);
	CHECK_STR(result_str(tc, "limit"), "timeout");
	CHECK_STR(result_str(tc, "phase"), "run");
	CHECK_STR(err_field(tc, "name"), "Timeout");
	CHECK_CONTAINS(err_field(tc, "value"), "time limit of 5 s; the sandbox was killed");
	check_run_recorded(tc);
	int i = stub_audit_find("limit", sb->id, 1);
	CHECK(i >= 0 && i < tc->audit_at_end);
	CHECK_STR(json_string_value(json_object_get(audit_body(i), "limit")), "timeout");
	/* The session is dead, with the reason. */
	CHECK(sb->state == SB_DEAD);
	test_call *again = test_call_new(cl, "again");
	CHECK(!engine_session(&again->k, cl, sb->id, false));
	CHECK_EQ_INT(again->code, ERR_DEAD);
	CHECK_CONTAINS(again->msg, "exceeding its time limit of 5 s");
	engine_test_done();
}

AB_TEST(engine_run_timeout_interrupt_keeps_the_session)
{
	engine_test_setup();
	fake_on_run(&(fake_reply){.tier = -1, .match = "sleep", .hang = true});
	client *cl = test_client(1000);
	sandbox *sb = ready_session(cl, "heavy");
	test_call *tc = test_call_new(cl, "r");
	engine_run(sb, &tc->k, "time.sleep(100)", 1);
	CHECK(stub_timer_fire(&sb->timer));
	fake_backend_pump(); /* the KeyboardInterrupt result */
	CHECK_EQ_INT(tc->ndone, 1);
	CHECK_STR(result_str(tc, "status"), "timeout");
	CHECK(!strstr(err_field(tc, "value"), "killed"));
	CHECK_EQ_INT(((be_inst *)sb->be)->kills, 0);
	CHECK(sb->state == SB_READY);
	test_call *next = run_and_pump(sb, cl, "1", 10);
	CHECK_STR(result_str(next, "status"), "ok");
	engine_test_done();
}

AB_TEST(engine_run_backend_death_is_killed_with_reason)
{
	engine_test_setup();
	fake_on_run(&(fake_reply){.tier = -1, .hang = true});
	client *cl = test_client(1000);
	sandbox *sb = ready_session(cl, "heavy");
	test_call *tc = test_call_new(cl, "r");
	engine_run(sb, &tc->k, "import ctypes; ctypes.string_at(0)", 10);
	fake_die(sb->be, SIGSEGV);
	fake_backend_pump();
	CHECK_EQ_INT(tc->ndone, 1);
	CHECK_STR(result_str(tc, "status"), "killed");
	CHECK_EQ_INT(result_int(tc, "exit_code"), 137);
	CHECK_STR(err_field(tc, "name"), "SandboxDied");
	CHECK_STR(err_field(tc, "value"), "the executor was killed by signal 11");
	CHECK(json_is_null(json_object_get(tc->result, "limit")));
	check_run_recorded(tc);
	CHECK(sb->state == SB_DEAD);
	CHECK(!stub_timer_armed(&sb->timer, NULL));
	/* Dead sessions wait for their client's close. */
	CHECK(find_session(cl, sb->id));
	test_call *close = test_call_new(cl, "c");
	engine_close(sb, &close->k);
	fake_backend_pump();
	CHECK_EQ_INT(close->ndone, 1);
	engine_test_done();
}

AB_TEST(engine_run_oom_kill_is_a_memory_limit)
{
	engine_test_setup();
	fake_on_run(&(fake_reply){.tier = -1, .hang = true});
	client *cl = test_client(1000);
	sandbox *sb = ready_session(cl, "heavy");
	test_call *tc = test_call_new(cl, "r");
	engine_run(sb, &tc->k, "x = ' ' * 10**12", 10);
	be_inst *b = sb->be;
	b->stats.oom_kills++;
	b->stats.memory_peak = 123456;
	fake_die(b, SIGKILL);
	fake_backend_pump();
	CHECK_STR(result_str(tc, "status"), "killed");
	CHECK_STR(result_str(tc, "limit"), "memory");
	CHECK_STR(err_field(tc, "name"), "MemoryLimit");
	CHECK_CONTAINS(err_field(tc, "value"), "OOM killer");
	CHECK_EQ_INT(result_int(tc, "memory_peak_bytes"), 123456);
	check_run_recorded(tc);
	engine_test_done();
}

AB_TEST(engine_run_compromised_result_is_not_believed)
{
	engine_test_setup();
	client *cl = test_client(1000);
	sandbox *sb = ready_session(cl, "heavy");
	be_inst *b = sb->be;
	snprintf(b->compromised, sizeof(b->compromised), "a forged control message");
	test_call *tc = run_and_pump(sb, cl, "1", 10);
	CHECK_STR(result_str(tc, "status"), "compromised");
	CHECK_CONTAINS(err_field(tc, "value"), "a forged control message");
	int i = stub_audit_find("run", sb->id, 1);
	CHECK(i >= 0);
	CHECK_STR(json_string_value(json_object_get(audit_body(i), "compromise")),
		  "a forged control message");
	engine_test_done();
}

AB_TEST(engine_interrupt_by_tag)
{
	engine_test_setup();
	fake_on_run(&(fake_reply){.tier = -1, .hang = true});
	client *cl = test_client(1000), *other = test_client(1000);
	sandbox *s1 = ready_session(cl, "heavy"), *s2 = ready_session(cl, "heavy");
	test_call *a = test_call_new(cl, "req-a"), *b = test_call_new(cl, "req-b");
	engine_run(s1, &a->k, "loop()", 30);
	engine_run(s2, &b->k, "loop()", 30);
	fake_backend_pump();
	sandbox *found = NULL;
	json_t *tag = json_string("req-b");
	/* Another client cannot name it. */
	CHECK(!engine_interrupt(other, NULL, tag, &found));
	CHECK(!found);
	const char *phase = engine_interrupt(cl, NULL, tag, &found);
	CHECK_STR(phase, "run");
	CHECK(found == s2);
	CHECK_EQ_INT(((be_inst *)s2->be)->interrupts, 1);
	CHECK_EQ_INT(((be_inst *)s1->be)->interrupts, 0);
	/* Naming the wrong session with the tag finds nothing. */
	found = NULL;
	CHECK(!engine_interrupt(cl, s1, tag, &found));
	json_decref(tag);
	tag = json_string("no-such-request");
	CHECK(!engine_interrupt(cl, NULL, tag, &found));
	json_decref(tag);
	fake_backend_pump();
	CHECK_EQ_INT(b->ndone, 1);
	CHECK_EQ_INT(a->ndone, 0);
	CHECK_STR(result_str(b, "status"), "error");
	CHECK_STR(err_field(b, "name"), "KeyboardInterrupt");
	CHECK(json_is_true(json_object_get(b->result, "interrupted")));
	check_run_recorded(b);
	CHECK(s2->state == SB_READY);
	engine_test_done();
}

AB_TEST(engine_close_while_running)
{
	engine_test_setup();
	fake_on_run(&(fake_reply){.tier = -1, .hang = true});
	client *cl = test_client(1000);
	sandbox *sb = ready_session(cl, "heavy");
	be_inst *b = sb->be;
	char id[32];
	snprintf(id, sizeof(id), "%s", sb->id);
	test_call *run = test_call_new(cl, "r");
	engine_run(sb, &run->k, "loop()", 30);
	test_call *close = test_call_new(cl, "c");
	engine_close(sb, &close->k);
	/* The run and the close are finished at once, the run first; the
	 * backend releases the sandbox later. */
	CHECK_EQ_INT(run->ndone, 1);
	CHECK_STR(result_str(run, "status"), "killed");
	CHECK_STR(err_field(run, "value"), "the sandbox was closed");
	check_run_recorded(run);
	CHECK_EQ_INT(close->ndone, 1);
	CHECK(b->closing && !b->released);
	fake_backend_pump();
	CHECK(b->released);
	CHECK_EQ_INT(fake_live_count(), 0);
	int i = stub_audit_find("sandbox.close", id, -1);
	CHECK_STR(json_string_value(json_object_get(audit_body(i), "reason")),
		  "closed by the client");
	CHECK_EQ_INT(json_integer_value(json_object_get(audit_body(i), "steps")), 1);
	engine_test_done();
}

AB_TEST(engine_exec_closes_its_sandbox_after_the_run)
{
	engine_test_setup();
	fake_on_run(&(fake_reply){.tier = -1, .out = "2\n"});
	client *cl = test_client(1000);
	ab_limits lim;
	ab_limits_default(&lim);
	test_call *tc = test_call_new(cl, "x");
	engine_exec(&tc->k, "nano", &lim, "print(2)", 10);
	CHECK_EQ_INT(tc->ndone, 0); /* the sandbox is starting */
	fake_backend_pump();
	CHECK_EQ_INT(tc->ndone, 1);
	CHECK_STR(result_str(tc, "stdout"), "2\n");
	CHECK_STR(result_str(tc, "tier"), "nano");
	check_run_recorded(tc);
	const char *id = result_str(tc, "sandbox");
	/* Its create is recorded with its run, before it. */
	int c = stub_audit_find("sandbox.create", id, -1), r = stub_audit_find("run", id, 1);
	CHECK(c >= 0 && c < r);
	CHECK(!find_session(cl, id));
	CHECK(fake_inst(1)->closing);
	int i = stub_audit_find("sandbox.close", id, -1);
	CHECK_STR(json_string_value(json_object_get(audit_body(i), "reason")),
		  "its one run is over");
	fake_backend_pump();
	CHECK_EQ_INT(fake_live_count(), 0);
	CHECK_EQ_INT(nsessions, 0);
	engine_test_done();
}

AB_TEST(engine_exec_from_pool_refills_after_the_run)
{
	engine_test_setup();
	fake_on_run(&(fake_reply){.tier = -1, .hang = true});
	stub_zygotes_alive = true;
	D.pool_target[TIER_HEAVY] = 1;
	pool_refill(TIER_HEAVY);
	pool_refill_due();
	fake_backend_pump();
	client *cl = test_client(1000);
	ab_limits lim;
	ab_limits_default(&lim);
	test_call *tc = test_call_new(cl, "x");
	engine_exec(&tc->k, "heavy", &lim, "work()", 10);
	CHECK_EQ_INT(fake_inst(1)->runs, 1); /* ran at once, in the pooled one */
	engine_tick();
	CHECK_EQ_INT(fake_live_count(), 1); /* no refill while it runs */
	fake_finish(fake_inst(1), &(fake_reply){.tier = -1});
	fake_backend_pump();
	CHECK_EQ_INT(tc->ndone, 1);
	CHECK(json_is_true(json_object_get(tc->result, "promoted")) == false);
	pool_refill_due();
	CHECK(fake_inst(2) && !fake_inst(2)->closing);
	engine_test_done();
}

AB_TEST(engine_exec_startup_failure_fails_the_call)
{
	engine_test_setup();
	client *cl = test_client(1000);
	ab_limits lim;
	ab_limits_default(&lim);
	fake_setup_fail_next("sandbox set-up failed: no memory");
	test_call *tc = test_call_new(cl, "x");
	engine_exec(&tc->k, "heavy", &lim, "1", 10);
	fake_backend_pump();
	CHECK_EQ_INT(tc->nfail, 1);
	CHECK_EQ_INT(tc->code, ERR_ISOLATION);
	CHECK_CONTAINS(tc->msg, "no memory");
	CHECK_EQ_INT(fake_live_count(), 0);
	CHECK_EQ_INT(stub_audit_count("run"), 0);
	engine_test_done();
}

AB_TEST(engine_interrupt_exec_while_starting)
{
	engine_test_setup();
	client *cl = test_client(1000);
	ab_limits lim;
	ab_limits_default(&lim);
	fake_hold_ready(true);
	test_call *tc = test_call_new(cl, "x");
	engine_exec(&tc->k, "heavy", &lim, "1", 10);
	fake_backend_pump();
	sandbox *found = NULL;
	json_t *tag = json_string("x");
	CHECK_STR(engine_interrupt(cl, NULL, tag, &found), "starting");
	json_decref(tag);
	CHECK_EQ_INT(tc->ndone, 1);
	CHECK_STR(err_field(tc, "name"), "KeyboardInterrupt");
	CHECK_EQ_INT(fake_inst(1)->runs, 0);
	fake_backend_pump();
	CHECK_EQ_INT(fake_live_count(), 0);
	CHECK_EQ_INT(nsessions, 0);
	engine_test_done();
}

AB_TEST(engine_exec_auto_routes_by_the_cell)
{
	engine_test_setup();
	client *cl = test_client(1000);
	ab_limits lim;
	ab_limits_default(&lim);
	test_call *h = test_call_new(cl, "h"), *n = test_call_new(cl, "n");
	engine_exec(&h->k, "auto", &lim, "import numpy", 10);
	engine_exec(&n->k, "auto", &lim, "import json", 10);
	fake_backend_pump();
	CHECK_STR(result_str(h, "tier"), "heavy");
	CHECK_CONTAINS(result_str(h, "route_reason"), "numpy");
	CHECK(json_is_false(json_object_get(h->result, "promoted")));
	CHECK_STR(result_str(n, "tier"), "nano");
	check_run_recorded(h);
	check_run_recorded(n);
	engine_test_done();
}

AB_TEST(engine_output_stops_streaming_above_the_backlog_cap)
{
	engine_test_setup();
	fake_on_run(&(fake_reply){.tier = -1, .out = "kept"});
	client *cl = test_client(1000);
	sandbox *sb = ready_session(cl, "heavy");
	test_call *tc = test_call_new(cl, "r");
	tc->backlog = 9u << 20; /* a client that does not read */
	engine_run(sb, &tc->k, "print('kept')", 10);
	fake_backend_pump();
	CHECK_EQ_INT(json_array_size(tc->outputs), 0);
	CHECK_STR(result_str(tc, "stdout"), "kept"); /* still in the result */
	engine_test_done();
}
