/* fuzz.h - shared helpers of the libFuzzer harnesses (docs/fuzzing.md).
 *
 * A harness checks invariants, not just survival: a broken invariant calls
 * FUZZ_CHECK, which prints what failed and aborts, so libFuzzer records the
 * input as a crash like any sanitizer finding. */
#ifndef AB_FUZZ_H
#define AB_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__,       \
				#cond);                                                            \
			abort();                                                                   \
		}                                                                                  \
	} while (0)

/* A private scratch directory for harnesses whose API takes a path. It is
 * on /dev/shm when there is one, so that the fsyncs of the code under test
 * cost nothing; it is removed at exit. Returns its path (static). */
const char *fuzz_scratch_dir(void);

/* Writes len bytes to path (truncating); aborts on failure, which is the
 * harness's fault, not the input's. */
void fuzz_write_file(const char *path, const void *data, size_t len);

/* A small deterministic generator for split sizes and similar choices,
 * seeded from the input so that a crash reproduces from its file alone. */
static inline uint32_t fuzz_next(uint32_t *s)
{
	uint32_t x = *s ? *s : 0x9e3779b9u;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*s = x;
	return x;
}

#endif
