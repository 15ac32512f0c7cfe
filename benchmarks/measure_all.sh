#!/usr/bin/env bash
# Every speed and score target of docs/BENCHMARKS.md, measured in one sequential job so the
# numbers share one machine state. Run it on a quiet machine (nothing else using the cores):
#
#   benchmarks/measure_all.sh [OUT_DIR]          # default OUT_DIR: /tmp/abawbench-measure
#
# Each step writes its output to OUT_DIR/<step>.txt; the default-run steps use a fresh cache
# (cold) and then the same cache again (warm).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
ABAWBENCH=${ABAWBENCH:-$( [ -x .venv/bin/abawbench ] && echo .venv/bin/abawbench || echo abawbench )}
OUT=${1:-/tmp/abawbench-measure}
rm -rf "$OUT" && mkdir -p "$OUT"
export HF_HUB_OFFLINE=1

step() {  # step NAME COMMAND...: run, time, keep the output
  local name=$1; shift
  echo "== $name: $*" | tee "$OUT/$name.txt"
  local start=$(date +%s.%N)
  "$@" >> "$OUT/$name.txt" 2>&1
  local code=$?
  local end=$(date +%s.%N)
  awk -v c="$code" -v s="$start" -v e="$end" 'BEGIN { printf "exit %s, wall %.1f s\n", c, e - s }' | tee -a "$OUT/$name.txt"
}

for track in lsd mtl; do
  export ABAWBENCH_CACHE="$OUT/cache-$track"
  step "default-$track-cold" "$ABAWBENCH" run --track "$track" --output "$OUT/runs-cold" --no-progress
  step "default-$track-warm" "$ABAWBENCH" run --track "$track" --output "$OUT/runs-warm" --no-progress
done
export ABAWBENCH_CACHE="$OUT/cache-lsd-pixel-cache"
step "default-lsd-cold-pixel-cache" "$ABAWBENCH" run --track lsd --output "$OUT/runs-cold-pixel-cache" --no-progress --pixel-cache
unset ABAWBENCH_CACHE
step protocol "$PY" benchmarks/bench_protocol.py --model mobilenetv3_small_100 --images 600 --epochs 20 --rounds 7
step protocol-hog "$PY" benchmarks/bench_protocol.py --model hog --images 600 --epochs 20 --rounds 7
step protocol-resnet18 "$PY" benchmarks/bench_protocol.py --model resnet18 --images 300 --skip-probe --rounds 7
step protocol-mobilenet-1-worker "$PY" benchmarks/bench_protocol.py --model mobilenetv3_small_100 --images 600 --workers 1 --skip-probe --rounds 7
step cache "$PY" benchmarks/bench_cache.py --repeat 31
step scoring "$PY" benchmarks/bench_scoring.py
step bootstrap "$PY" benchmarks/bench_bootstrap.py
step indexing "$PY" benchmarks/bench_indexing.py --repeat 3
step synthface "$PY" -m abawbench_builtins.synthface.bench --images 2000 --repeats 3
echo "outputs in $OUT"
