/* test_runner.c - the runner's own accounting (tests/integration/
 * test_unit_runner.py runs this test with AB_UNIT_SELFTEST_SKIP=1 and checks
 * that it is counted as skipped, not as passed). */
#include "unit.h"

AB_TEST(runner_selftest_skip)
{
	if (getenv("AB_UNIT_SELFTEST_SKIP"))
		SKIP("AB_UNIT_SELFTEST_SKIP is set");
}
