#!/bin/sh
# Runs every test: C unit tests, then the integration and adversarial
# tests (pytest) against the real binaries. Ends with one summary line
# "N passed, N failed" and exits non-zero on any failure.
set -u
BUILD=${1:-build}
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
echo "$passed passed, $failed failed"
[ "$unit_rc" -eq 0 ] && [ "$py_rc" -eq 0 ] && [ "$failed" -eq 0 ]
