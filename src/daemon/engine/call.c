/* call.c - clients and calls: how a front end asks the engine and hears
 * back. A call is finished exactly once (done or fail); streamed output
 * and rerun notices may come before. */
#include "engine.h"

void client_hold(client *cl)
{
	cl->refs++;
}

void client_put(client *cl)
{
	if (cl && --cl->refs == 0 && cl->free)
		cl->free(cl);
}

void client_learns(client *cl, uint64_t ticket)
{
	if (cl && ticket > cl->need)
		cl->need = ticket;
}

void call_init(call *k, const call_ops *ops, client *who, json_t *tag)
{
	k->ops = ops;
	k->who = who;
	client_hold(who);
	k->tag = json_incref(tag);
	k->refs = 1;
}

call *call_hold(call *k)
{
	if (k)
		k->refs++;
	return k;
}

void call_put(call *k)
{
	if (!k || --k->refs > 0)
		return;
	client *who = k->who;
	json_decref(k->tag);
	k->ops->free(k);
	client_put(who);
}

void call_done(call *k, json_t *result)
{
	if (!result) {
		/* Callers pass a freshly built result: NULL means building it
		 * ran out of memory, which is an error, not a success. */
		call_fail(k, NULL, ERR_INTERNAL,
			  "out of memory: the daemon could not build the result of this request",
			  NULL);
		return;
	}
	k->ops->done(k, result);
	call_put(k);
}

void call_fail(call *k, const char *session, int code, const char *msg, json_t *data)
{
	k->ops->fail(k, session, code, msg, data);
	call_put(k);
}
