#!/bin/sh
# Runs every test: C unit tests (the library's, then the engine's), then
# the integration and adversarial tests (pytest) against the real binaries,
# then (if a sanitizer build is given) the unit and integration tests again
# against it, then (if a fuzz build is given) a short run of each fuzzer.
# Ends with one summary line "N passed, N failed" and exits non-zero on any
# failure.
# Usage: run-tests.sh [BUILD [ASAN_BUILD [FUZZ_BUILD]]]
# PYTEST_WORKERS: pytest-xdist workers for the parallel part (default 3; 0
# runs pytest serially).
set -u
BUILD=${1:-build}
ASAN_BUILD=${2:-}
FUZZ_BUILD=${3:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export PYTHONPATH="$ROOT/python"
PASSED=0
FAILED=0
STATUS=0
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT

# unit BINARY LABEL: runs the C unit tests, adds their counts.
unit() {
	"$1" > "$OUT" 2>&1
	rc=$?
	grep -v '^ok ' "$OUT"
	# "N passed, N failed", optionally followed by ", N skipped".
	p=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed\(, [0-9]* skipped\)\{0,1\}$/\1/p' "$OUT" | tail -1)
	f=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed\(, [0-9]* skipped\)\{0,1\}$/\2/p' "$OUT" | tail -1)
	: "${p:=0}" "${f:=1}"
	[ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
	echo "$2: $p passed, $f failed"
	PASSED=$((PASSED + p))
	FAILED=$((FAILED + f))
	[ "$rc" -ne 0 ] && STATUS=1
}

# pytest BUILD LABEL ARGS...: runs pytest against a build, adds its counts.
pytest() {
	build=$1
	label=$2
	shift 2
	AGENTBOX_BIN="$ROOT/$build" /usr/bin/python3 -m pytest -p no:cacheprovider -q -rfE "$@" \
		> "$OUT" 2>&1
	rc=$?
	cat "$OUT"
	# 5: no test selected (e.g. no serial test among the paths): none failed
	[ "$rc" -eq 5 ] && rc=0
	summary=" $(grep -E '(passed|failed|error).* in [0-9.]+s' "$OUT" | tail -1)"
	p=$(echo "$summary" | sed -n 's/.*[ =]\([0-9][0-9]*\) passed.*/\1/p')
	f=$(echo "$summary" | sed -n 's/.*[ =]\([0-9][0-9]*\) failed.*/\1/p')
	e=$(echo "$summary" | sed -n 's/.*[ =]\([0-9][0-9]*\) error.*/\1/p')
	: "${p:=0}" "${f:=0}" "${e:=0}"
	f=$((f + e))
	# pytest failed without a count: a collection error, a crash, no tests
	[ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
	echo "$label: $p passed, $f failed"
	PASSED=$((PASSED + p))
	FAILED=$((FAILED + f))
	[ "$rc" -ne 0 ] && STATUS=1
}

# fuzz FUZZ_BUILD: runs each fuzzer for FUZZ_SMOKE_SECONDS (default 5) on
# its seed corpus (scripts/fuzz.sh); each fuzzer counts as one test.
fuzz() {
	for bin in "$1"/fuzz_*; do
		[ -x "$bin" ] || continue
		t=${bin##*/fuzz_}
		ASAN_OPTIONS=abort_on_error=1:detect_leaks=1 \
			sh scripts/fuzz.sh "${FUZZ_SMOKE_SECONDS:-5}" "$1" "$t" > "$OUT" 2>&1
		rc=$?
		cat "$OUT"
		if [ "$rc" -eq 0 ]; then
			PASSED=$((PASSED + 1))
		else
			FAILED=$((FAILED + 1))
			STATUS=1
		fi
	done
}

# pytest_parallel BUILD LABEL PATHS...: the tests not marked serial on
# PYTEST_WORKERS xdist workers (each worker's daemons get a uid range of their
# own, see tests/conftest.py), then the serial ones (load tests, whole-machine
# measurements) one at a time. Without pytest-xdist, everything in one run.
PYTEST_WORKERS=${PYTEST_WORKERS:-3}
pytest_parallel() {
	build=$1
	label=$2
	shift 2
	if [ "$PYTEST_WORKERS" != 0 ] && /usr/bin/python3 -c 'import xdist' 2>/dev/null; then
		pytest "$build" "$label" -n "$PYTEST_WORKERS" -m "not serial" "$@"
		pytest "$build" "$label (serial)" -m serial "$@"
	else
		[ "$PYTEST_WORKERS" != 0 ] &&
			echo "run-tests: pytest-xdist missing (scripts/deps.sh): running pytest serially"
		pytest "$build" "$label" "$@"
	fi
}

unit "$BUILD/unit-tests" "unit"
unit "$BUILD/engine-tests" "engine unit"
unit "$BUILD/egress-tests" "egress unit"
unit "$BUILD/dlp-tests" "dlp unit"
pytest_parallel "$BUILD" "integration+adversarial" tests/integration tests/adversarial
if [ -n "$ASAN_BUILD" ]; then
	export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
	export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
	export AGENTBOX_SANITIZED=1
	unit "$ASAN_BUILD/unit-tests" "sanitizer unit"
	unit "$ASAN_BUILD/engine-tests" "sanitizer engine unit"
	unit "$ASAN_BUILD/egress-tests" "sanitizer egress unit"
	unit "$ASAN_BUILD/dlp-tests" "sanitizer dlp unit"
	pytest_parallel "$ASAN_BUILD" "sanitizer integration" tests/integration
fi
if [ -n "$FUZZ_BUILD" ]; then
	before=$((PASSED + FAILED))
	fuzz "$FUZZ_BUILD"
	if [ $((PASSED + FAILED)) -eq "$before" ]; then
		echo "fuzz: no fuzzers in $FUZZ_BUILD (make fuzz-build)"
		FAILED=$((FAILED + 1))
		STATUS=1
	fi
fi
echo "$PASSED passed, $FAILED failed"
[ "$STATUS" -eq 0 ] && [ "$FAILED" -eq 0 ]
