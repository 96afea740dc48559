/* pool.c - sandboxes started before anyone asks: taking one, refilling,
 * and the pool's size, which follows demand. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"

sandbox *sandbox_from_pool(client *owner, enum tier tier, const ab_limits *lim)
{
	for (sandbox *s = sandboxes; s; s = s->next) {
		if (s->role != ROLE_POOL || s->state != SB_READY || s->tier != tier ||
		    !s->prof->ops->adopt_limits(s->be, &s->limits, lim))
			continue;
		s->limits = *lim;
		s->role = ROLE_SESSION;
		s->from_pool = true;
		s->owner = owner;
		client_hold(owner);
		return s;
	}
	return NULL;
}

/* The pool adapts to demand. Its size starts at the configured one
 * (--pool, --nano-pool) and grows by one for every create that found it
 * empty, up to --pool-max, and only while the host has memory to spare
 * (MemAvailable above a quarter of MemTotal); after --pool-shrink-after
 * without a miss it halves back towards the configured size, closing
 * ready sandboxes it no longer needs.
 *
 * Refilling (directories, a tmpfs, cgroups, a request to the zygote: a
 * few milliseconds of the loop's time, then a fork competing for the CPU)
 * waits REFILL_DELAY_MS after the take that asked for it, so that the
 * client's next requests (a run, a close) come first; then it goes one
 * sandbox at a time, and only while the zygote has nothing else to do, so
 * that a client's create never queues behind refills. */
#define REFILL_DELAY_MS 15

static loop_timer refill_timer;
static bool refill_timer_ok, refill_armed;

static struct {
	bool wanted;
	int target;	   /* the size now, base <= target <= max */
	uint64_t miss_ns;  /* the last create that found the pool empty */
	uint64_t death_ns; /* the last replacement of a pooled sandbox that died */
} pool[TIER__COUNT];

void pool_refill_due(void)
{
	if (refill_armed)
		timer_disarm(&refill_timer);
	refill_armed = false;
	pool_refill_pending();
}

static void refill_due(void *ctx)
{
	(void)ctx;
	pool_refill_due();
}

void pool_refill(enum tier tier)
{
	pool[tier].wanted = true;
	if (refill_armed)
		return;
	if (!refill_timer_ok)
		refill_timer_ok = timer_init(&refill_timer, refill_due, NULL) == 0;
	if (refill_timer_ok) {
		refill_armed = true;
		timer_arm(&refill_timer, REFILL_DELAY_MS / 1000.0);
	}
}

/* The pool's size now: it adapts to demand. */
static int pool_target(enum tier tier)
{
	return pool[tier].target > D.pool_target[tier] ? pool[tier].target : D.pool_target[tier];
}

static int pool_count(enum tier tier, bool ready_only);

/* A create of this tier with these limits found no ready sandbox. If the
 * pool could have served it (its sandboxes have the default limits) and
 * was empty, there is more demand than the pool covers. */
void pool_missed(enum tier tier, const ab_limits *lim)
{
	ab_limits def;
	ab_limits_default(&def);
	const profile *p = &profiles[tier];
	if (!p->ops->limits_fit(p, &def, lim) || pool_count(tier, true) > 0)
		return;
	pool[tier].miss_ns = now_ns();
	if (pool_target(tier) < D.pool_max[tier])
		pool[tier].target = pool_target(tier) + 1;
	pool_refill(tier);
}

/* True while the host has more than a quarter of its memory available. */
static bool memory_to_spare(void)
{
	FILE *f = fopen("/proc/meminfo", "re");
	if (!f)
		return false;
	char line[128];
	unsigned long long total = 0, avail = 0, v;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "MemTotal: %llu kB", &v) == 1)
			total = v;
		else if (sscanf(line, "MemAvailable: %llu kB", &v) == 1)
			avail = v;
	}
	fclose(f);
	return total > 0 && avail > total / 4;
}

static int pool_count(enum tier tier, bool ready_only)
{
	int n = 0;
	for (sandbox *s = sandboxes; s; s = s->next)
		if (s->role == ROLE_POOL && s->tier == tier &&
		    (ready_only ? s->state == SB_READY
				: s->state == SB_READY || s->state == SB_STARTING))
			n++;
	return n;
}

static void pool_fill(enum tier tier)
{
	const profile *p = &profiles[tier];
	if (D.shutting_down || !p->ops->can_create(p) || D.pool_target[tier] < 0)
		return;
	int want = pool_target(tier);
	if (pool_count(tier, false) >= want)
		return;
	/* One at a time, and only when the zygote is idle: come back on the
	 * next loop iteration (the zygote's answer is one). */
	if (p->ops->creates_pending(p) > 0 ||
	    (pool_count(tier, false) >= D.pool_target[tier] && !memory_to_spare())) {
		pool[tier].wanted = true;
		return;
	}
	ab_limits lim;
	ab_limits_default(&lim);
	sandbox *sb;
	ab_error err = {0};
	if (sandbox_create(NULL, tier, &lim, NULL, &sb, &err) < 0) {
		log_msg("pool refill (%s): %s", tier_name(tier), err.msg);
		return;
	}
	pool[tier].wanted = pool_count(tier, false) < want;
}

/* A ready pooled sandbox of this tier died: refill, at most once a second
 * per tier (a host that kills every new sandbox gets no busy loop). */
void pool_replace_dead(enum tier tier)
{
	uint64_t now = now_ns();
	if (pool[tier].death_ns && now - pool[tier].death_ns < 1000000000ull)
		return;
	pool[tier].death_ns = now;
	pool_refill(tier);
}

/* Halves a grown pool after D.pool_shrink_after seconds without a miss. */
static void pool_shrink(enum tier tier)
{
	if (pool[tier].target <= D.pool_target[tier] ||
	    now_ns() - pool[tier].miss_ns < (uint64_t)(D.pool_shrink_after * 1e9))
		return;
	int base = D.pool_target[tier];
	pool[tier].target = base + (pool[tier].target - base) / 2;
	pool[tier].miss_ns = now_ns(); /* the next halving is one period later */
	int extra = pool_count(tier, true) - pool_target(tier);
	for (sandbox *s = sandboxes; s && extra > 0; s = s->next)
		if (s->role == ROLE_POOL && s->tier == tier && s->state == SB_READY) {
			sandbox_close(s); /* finalized later: s stays in the list */
			extra--;
		}
}

void pool_refill_pending(void)
{
	if (refill_armed)
		return; /* not yet: see REFILL_DELAY_MS */
	for (int t = 0; t < TIER__COUNT; t++) {
		if (D.pool_target[t] < 0)
			continue;
		pool_shrink((enum tier)t);
		if (pool[t].wanted) {
			pool[t].wanted = false;
			pool_fill((enum tier)t);
		}
	}
}
