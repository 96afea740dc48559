/* harness.h - a fake front end for the engine tests: clients and calls
 * that keep what the engine told them, and the set-up every test shares. */
#ifndef AB_ENGINE_HARNESS_H
#define AB_ENGINE_HARNESS_H

#include "daemon_stubs.h"
#include "engine/engine.h"
#include "fake_backend.h"
#include "unit.h"

/* A call as a front end would keep it. The test holds a reference, so it
 * stays readable after the engine finished it. */
typedef struct test_call {
	call k;
	int ndone, nfail;   /* finished: exactly one of these becomes 1 */
	json_t *result;	    /* done */
	int code;	    /* fail */
	char msg[512];	    /* fail */
	char session[32];   /* fail: the session the refusal concerns, or "" */
	json_t *data;	    /* fail */
	json_t *outputs;    /* [{"stream", "data", "attempt", "session"}] */
	json_t *reruns;	    /* [{"attempt", "tier", "reason"}] */
	int audit_at_end;   /* audit events recorded when it was finished */
	int outputs_at_end; /* outputs received when it was finished */
	size_t backlog;	    /* what backlog() answers: bytes "queued" for the client */
	bool freed;
} test_call;

/* Sets up the engine with the fake backend, the stubs and a scratch home;
 * pools are empty and zygotes down unless the test changes that. */
void engine_test_setup(void);
/* Removes the scratch home; every test ends with it (the runner ends a
 * test with _exit, which runs no atexit handlers). */
void engine_test_done(void);
/* A client (never freed) with this uid. */
client *test_client(uid_t uid);
/* A new call of cl, with tag (may be NULL; a string here). */
test_call *test_call_new(client *cl, const char *tag);
/* The reachable session of cl with this id, or NULL. */
sandbox *find_session(client *cl, const char *id);
/* A ready session of cl in tier ("auto", "heavy" or "nano"). */
sandbox *ready_session(client *cl, const char *tier);
/* Runs code in sb, pumps the backend, and checks the run was finished. */
test_call *run_and_pump(sandbox *sb, client *cl, const char *code, double timeout);
/* The string member key of tc's result. */
const char *result_str(const test_call *tc, const char *key);
long long result_int(const test_call *tc, const char *key);
/* Checks tc was done with a run result whose "run" audit event was
 * recorded before it was finished. */
void check_run_recorded(const test_call *tc);

#endif
