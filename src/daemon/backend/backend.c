/* backend.c - the profiles the engine can give a session: a backend and
 * its settings. Adding a backend is one new file with its backend_ops and
 * one entry here (with a tier the router knows). */
#include "backend.h"

const profile profiles[TIER__COUNT] = {
    [TIER_HEAVY] = {.tier = TIER_HEAVY, .name = "heavy", .ops = &linux_backend},
    [TIER_NANO] = {.tier = TIER_NANO,
		   .name = "nano",
		   .ops = &linux_backend,
		   .memory_fixed = true,
		   .restricted = true},
};

const char *tier_name(enum tier t)
{
	return t == TIER_NANO ? "nano" : "heavy";
}
