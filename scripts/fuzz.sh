#!/bin/sh
# Runs libFuzzer harnesses built by `make fuzz-build` (docs/fuzzing.md).
# Usage: fuzz.sh SECONDS BUILD TARGET...
# Each target runs for SECONDS on its seed corpus (tests/fuzz/corpus/TARGET,
# read only) plus a scratch corpus (BUILD/corpus/TARGET) that keeps the
# inputs it finds between runs. Prints one line per target: libFuzzer's
# final "#N DONE cov: ..." line, or the crash and the file that reproduces
# it (BUILD/crashes/TARGET-*). Exits non-zero if any target failed.
# "ok" lines give the executions, the last coverage line of libFuzzer
# ("#N ... cov: C ft: F corp: ...") and the exec/s it averaged.
set -u
SECONDS_EACH=$1
BUILD=$2
shift 2
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export ASAN_OPTIONS=${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
STATUS=0
for t in "$@"; do
	bin="$BUILD/fuzz_$t"
	seeds="tests/fuzz/corpus/$t"
	scratch="$BUILD/corpus/$t"
	log="$BUILD/logs/$t.log"
	mkdir -p "$scratch" "$BUILD/crashes" "$BUILD/logs"
	if [ ! -x "$bin" ]; then
		echo "fuzz $t: FAILED: $bin is missing (make fuzz-build)"
		STATUS=1
		continue
	fi
	# -timeout: one input taking 10 s is a hang; -rss_limit_mb: the machine
	# is shared.
	"$bin" -max_total_time="$SECONDS_EACH" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$BUILD/crashes/$t-" \
		"$scratch" "$seeds" > "$log" 2>&1
	rc=$?
	done_line=$(grep -a '^Done [0-9]* runs' "$log" | tail -1)
	cov=$(grep -a -E '^#[0-9]+.*cov: ' "$log" | tail -1)
	if [ "$rc" -eq 0 ] && [ -n "$done_line" ]; then
		execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
		rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
		echo "fuzz $t: ok, ${SECONDS_EACH}s, ${execs:-?} executions (${rate:-?}/s): $cov"
	else
		echo "fuzz $t: FAILED (exit $rc), log $log"
		grep -a -E 'ERROR: |SUMMARY: |invariant failed|Test unit written to|runtime error' \
			"$log" | head -8 | sed 's/^/  /'
		STATUS=1
	fi
done
exit $STATUS
