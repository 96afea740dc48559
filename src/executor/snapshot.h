/* snapshot.h - memory snapshots of the executor (docs/time-travel.md).
 *
 * A snapshot is the executor itself, parked: on {"op":"snapshot"} the
 * executor forks; the parent stops running Python and waits on the
 * snapshot socket the daemon passed with the request, the child carries on
 * as the session's executor. The parked process later forks copies of
 * itself: one that becomes the executor again (a rewind) or a throwaway
 * that evaluates an expression and exits (an inspection). */
#ifndef AB_EXECUTOR_SNAPSHOT_H
#define AB_EXECUTOR_SNAPSHOT_H

#include <jansson.h>

#include "internal.h"

/* The executor's control socket. */
#define AB_SESSION_FD 3

/* Reads one request frame from fd; a descriptor passed with it (at most
 * one) is stored in *passed, else -1. */
int ab_snap_read_request(int fd, size_t max, json_t **out, int *passed, ab_error *err);

/* Handles {"op":"snapshot","id":N} with the snapshot socket sfd. Returns in
 * the process that goes on as the executor (after it told the daemon, on
 * fd 3, "snapshotted" or "snapshot_failed"); the parked parent never
 * returns. */
void ab_snap_take(json_t *req, int sfd);

/* Once per process that will run Python after a fork of the executor
 * (the child that goes on, a resumed copy, a throwaway): what
 * PyOS_AfterFork_Child resets that a snapshot must keep (random's state). */
void ab_snap_after_fork(void);

#endif
