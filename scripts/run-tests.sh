#!/bin/sh
# Runs every test: C unit tests, then the integration and adversarial
# tests (pytest) against the real binaries, then (if a sanitizer build is
# given) the unit and integration tests again against it. Ends with one
# summary line "N passed, N failed" and exits non-zero on any failure.
# Usage: run-tests.sh [BUILD [ASAN_BUILD]]
set -u
BUILD=${1:-build}
ASAN_BUILD=${2:-}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export AGENTBOX_BIN="$ROOT/$BUILD"
export PYTHONPATH="$ROOT/python"

unit_out=$(mktemp)
"$BUILD/unit-tests" > "$unit_out" 2>&1
unit_rc=$?
cat "$unit_out"
u_pass=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p' "$unit_out" | tail -1)
u_fail=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p' "$unit_out" | tail -1)
rm -f "$unit_out"
: "${u_pass:=0}" "${u_fail:=1}"

py_out=$(mktemp)
/usr/bin/python3 -m pytest -p no:cacheprovider -q -rfE tests/integration tests/adversarial > "$py_out" 2>&1
py_rc=$?
cat "$py_out"
summary=$(grep -E '(passed|failed|error).* in [0-9.]+s' "$py_out" | tail -1)
rm -f "$py_out"
p_pass=$(echo " $summary" | sed -n 's/.*[ =]\([0-9][0-9]*\) passed.*/\1/p')
p_fail=$(echo " $summary" | sed -n 's/.*[ =]\([0-9][0-9]*\) failed.*/\1/p')
p_err=$(echo " $summary" | sed -n 's/.*[ =]\([0-9][0-9]*\) error.*/\1/p')
: "${p_pass:=0}" "${p_fail:=0}" "${p_err:=0}"
if [ "$py_rc" -ne 0 ] && [ "$p_fail" -eq 0 ] && [ "$p_err" -eq 0 ]; then
	p_err=1 # pytest failed without a count (collection error, crash, no tests)
fi

passed=$((u_pass + p_pass))
failed=$((u_fail + p_fail + p_err))
echo "unit: $u_pass passed, $u_fail failed; pytest: $p_pass passed, $((p_fail + p_err)) failed"

if [ -n "$ASAN_BUILD" ]; then
	echo "== sanitizer build ($ASAN_BUILD): unit and integration tests"
	export ASAN_OPTIONS=detect_leaks=0:abort_on_error=1
	export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
	a_out=$(mktemp)
	"$ASAN_BUILD/unit-tests" > "$a_out" 2>&1
	a_rc=$?
	tail -1 "$a_out"
	a_pass=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1/p' "$a_out" | tail -1)
	a_fail=$(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\2/p' "$a_out" | tail -1)
	[ "$a_rc" -ne 0 ] && grep -v '^ok ' "$a_out"
	: "${a_pass:=0}" "${a_fail:=1}"
	AGENTBOX_BIN="$ROOT/$ASAN_BUILD" /usr/bin/python3 -m pytest -p no:cacheprovider -q -rfE \
		tests/integration > "$a_out" 2>&1
	ai_rc=$?
	cat "$a_out"
	summary=$(grep -E '(passed|failed|error).* in [0-9.]+s' "$a_out" | tail -1)
	rm -f "$a_out"
	ai_pass=$(echo " $summary" | sed -n 's/.*[ =]\([0-9][0-9]*\) passed.*/\1/p')
	ai_fail=$(echo " $summary" | sed -n 's/.*[ =]\([0-9][0-9]*\) failed.*/\1/p')
	ai_err=$(echo " $summary" | sed -n 's/.*[ =]\([0-9][0-9]*\) error.*/\1/p')
	: "${ai_pass:=0}" "${ai_fail:=0}" "${ai_err:=0}"
	[ "$ai_rc" -ne 0 ] && [ "$ai_fail" -eq 0 ] && [ "$ai_err" -eq 0 ] && ai_err=1
	echo "sanitizer: unit $a_pass passed, $a_fail failed; integration $ai_pass passed, $((ai_fail + ai_err)) failed"
	passed=$((passed + a_pass + ai_pass))
	failed=$((failed + a_fail + ai_fail + ai_err))
	[ "$a_rc" -ne 0 ] && unit_rc=$a_rc
	[ "$ai_rc" -ne 0 ] && py_rc=$ai_rc
fi

echo "$passed passed, $failed failed"
[ "$unit_rc" -eq 0 ] && [ "$py_rc" -eq 0 ] && [ "$failed" -eq 0 ]
