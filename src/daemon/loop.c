/* loop.c - the daemon's event loop: epoll plus timerfd one-shot timers. */
#include <stdio.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>

#include <errno.h>
#include <unistd.h>

#include "loop.h"

static int epfd = -1;

int loop_init(void)
{
	epfd = epoll_create1(EPOLL_CLOEXEC);
	return epfd < 0 ? -errno : 0;
}

int loop_add(loop_watch *w, int fd, uint32_t events, loop_cb cb, void *ctx)
{
	w->fd = fd;
	w->cb = cb;
	w->ctx = ctx;
	w->events = events;
	struct epoll_event ev = {.events = events, .data.ptr = w};
	return epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0 ? -errno : 0;
}

int loop_mod(loop_watch *w, uint32_t events)
{
	if (w->fd < 0 || w->events == events)
		return 0;
	w->events = events;
	struct epoll_event ev = {.events = events, .data.ptr = w};
	return epoll_ctl(epfd, EPOLL_CTL_MOD, w->fd, &ev) < 0 ? -errno : 0;
}

/* Events already fetched by epoll_wait may name a watch that a callback
 * earlier in the same batch removed; those are skipped. */
static loop_watch *deleted[4096];
static int ndeleted;

void loop_del(loop_watch *w)
{
	if (w->fd < 0 || !w->cb)
		return;
	epoll_ctl(epfd, EPOLL_CTL_DEL, w->fd, NULL);
	w->fd = -1;
	w->cb = NULL;
	if (ndeleted < (int)(sizeof(deleted) / sizeof(deleted[0])))
		deleted[ndeleted++] = w;
}

int loop_run_once(int timeout_ms)
{
	struct epoll_event evs[64];
	ndeleted = 0;
	int n = epoll_wait(epfd, evs, 64, timeout_ms);
	if (n < 0)
		return errno == EINTR ? 0 : -errno;
	for (int i = 0; i < n; i++) {
		loop_watch *w = evs[i].data.ptr;
		bool gone = false;
		for (int j = 0; j < ndeleted; j++)
			gone = gone || deleted[j] == w;
		/* A watch freed and reused within this batch would be
		 * misdelivered; callbacks therefore only free objects through
		 * deferred paths (see sandbox_reap). */
		if (gone || !w->cb)
			continue;
		w->cb(w->ctx, evs[i].events);
	}
	return n;
}

uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void timer_cb(void *ctx, uint32_t events)
{
	(void)events;
	loop_timer *t = ctx;
	uint64_t ticks;
	if (read(t->w.fd, &ticks, sizeof(ticks)) != sizeof(ticks))
		return;
	t->fire(t->ctx);
}

int timer_init(loop_timer *t, void (*fire)(void *), void *ctx)
{
	int fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
	if (fd < 0)
		return -errno;
	t->fire = fire;
	t->ctx = ctx;
	int r = loop_add(&t->w, fd, EPOLLIN, timer_cb, t);
	if (r < 0)
		close(fd);
	return r;
}

void timer_arm(loop_timer *t, double seconds)
{
	if (seconds < 0.001)
		seconds = 0.001;
	struct itimerspec its = {0};
	its.it_value.tv_sec = (time_t)seconds;
	its.it_value.tv_nsec = (long)((seconds - (double)(time_t)seconds) * 1e9);
	timerfd_settime(t->w.fd, 0, &its, NULL);
}

void timer_disarm(loop_timer *t)
{
	struct itimerspec its = {0};
	if (t->w.fd >= 0)
		timerfd_settime(t->w.fd, 0, &its, NULL);
}

void timer_free(loop_timer *t)
{
	int fd = t->w.fd;
	loop_del(&t->w);
	if (fd >= 0)
		close(fd);
}
