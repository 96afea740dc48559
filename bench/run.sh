#!/bin/sh
# Runs every benchmark (what `make bench` runs). Benchmarks report numbers and
# ratios; they never fail on a missed goal (only on a broken setup).
#
#   sh bench/run.sh [BUILD_DIR] [--quick]      (BUILD_DIR default: build)
set -u
BUILD=build
QUICK=
for a in "$@"; do
	case "$a" in
	--quick) QUICK=--quick ;;
	*) BUILD=$a ;;
	esac
done
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
case "$BUILD" in
/*) ;;
*) BUILD="$ROOT/$BUILD" ;;
esac
PY=/usr/bin/python3
for f in agentboxd agentbox-executor agentbox-egress; do
	if [ ! -x "$BUILD/$f" ]; then
		echo "bench: $BUILD/$f is missing; run make first" >&2
		exit 2
	fi
done

rc=0
echo "== bench_latency =="
$PY bench/bench_latency.py --build "$BUILD" $QUICK || rc=1
echo
echo "== bench_memory =="
$PY bench/bench_memory.py --build "$BUILD" $QUICK || rc=1
echo
echo "== bench_audit =="
$PY bench/bench_audit.py --build "$BUILD" $QUICK || rc=1
echo
echo "== bench_nano =="
$PY bench/bench_nano.py --build "$BUILD" $QUICK || rc=1
echo
echo "== bench_goals =="
$PY bench/bench_goals.py --build "$BUILD" $QUICK || rc=1
echo
echo "== bench_egress =="
$PY bench/bench_egress.py --build "$BUILD" $QUICK || rc=1
echo
echo "== bench_dlp =="
$PY bench/bench_dlp.py --build "$BUILD" $QUICK || rc=1
echo
echo "== bench_time_travel =="
$PY bench/bench_time_travel.py --build "$BUILD" $QUICK || rc=1
exit $rc
