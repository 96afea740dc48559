/* loop.h - the daemon's event loop (its main thread; only the audit writer
 * runs beside it, in record/record.c), one-shot timers, the clock and the
 * log. Everything else in the daemon builds on this. */
#ifndef AB_LOOP_H
#define AB_LOOP_H

#include <stdbool.h>
#include <stdint.h>

typedef struct loop_watch loop_watch;
typedef void (*loop_cb)(void *ctx, uint32_t events);

struct loop_watch {
	int fd;
	loop_cb cb;
	void *ctx;
	uint32_t events;
};

int loop_init(void);
/* Watches w->fd for events; w must live until loop_del. */
int loop_add(loop_watch *w, int fd, uint32_t events, loop_cb cb, void *ctx);
int loop_mod(loop_watch *w, uint32_t events);
void loop_del(loop_watch *w);
/* Runs one iteration (waits at most timeout_ms). */
int loop_run_once(int timeout_ms);
uint64_t now_ns(void);

/* A one-shot timer built on timerfd. */
typedef struct loop_timer {
	loop_watch w;
	void (*fire)(void *ctx);
	void *ctx;
} loop_timer;
int timer_init(loop_timer *t, void (*fire)(void *), void *ctx);
void timer_arm(loop_timer *t, double seconds);
void timer_disarm(loop_timer *t);
void timer_free(loop_timer *t);

void log_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
