/* daemon_stubs.h - the daemon around the engine, stubbed for the engine
 * tests and the RPC fuzzer: a loop whose timers fire only when a test says
 * so, a clock that moves only when a test moves it, a record that keeps
 * audit events in memory, zygotes that are alive when a test says so. */
#ifndef AB_DAEMON_STUBS_H
#define AB_DAEMON_STUBS_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "loop.h"
#include "record/record.h"

/* ------------------------------------------------------------- timers */

/* Whether t is armed, and for how many seconds it was armed last. */
bool stub_timer_armed(const loop_timer *t, double *seconds);
/* Fires t as the loop would (it is disarmed first); false if it was not
 * armed, and then nothing happens. */
bool stub_timer_fire(loop_timer *t);
/* Fires every timer armed now, once; returns how many fired. */
int stub_fire_all_timers(void);
/* Moves the clock of now_ns() on. */
void stub_clock_advance(double seconds);

/* ------------------------------------------------------------- record */

/* Every event audit_event() recorded, in order: objects with "kind",
 * "session", "step", "actor" and "body". */
extern json_t *stub_audit;
/* audit_broken() reports a broken log while this is set. */
extern bool stub_audit_broken;
/* The index in stub_audit of the first event of this kind (and session,
 * and step >= 0, when given), or -1. */
int stub_audit_find(const char *kind, const char *session, int64_t step);
int stub_audit_count(const char *kind);
/* Forgets the recorded events. */
void stub_audit_clear(void);

/* ------------------------------------------------------------ zygotes */

/* The fake backend can create instances of every profile (its
 * can_create), false at first. */
extern bool stub_zygotes_alive;

/* ------------------------------------------------------------- egress */

/* egress_why_off() returns this (NULL: egress is on); how often the engine
 * opened and closed a session's egress state. */
extern const char *stub_egress_off;
extern int stub_egress_opened, stub_egress_closed;

/* The last line log_msg() formatted (printed too if AB_ENGINE_LOG is set). */
extern char stub_last_log[1024];

#endif
