#!/usr/bin/env bash
# Scaling of a linear-probe run across processes with torch.distributed (docs/bench/distributed.md):
# the same `abawbench run` as one process, then under torchrun with NPROC processes (gloo on
# CPUs, NCCL on GPUs), each from an empty cache and results folder, alternating ROUNDS times.
# Prints one line per run and the median ratio of wall times.
#
#   bash benchmarks/bench_distributed.sh                       # CPU: 2 processes, resnet10t
#   NPROC=4 DEVICE=cuda MODEL=timm:resnet50 IMAGES=20000 bash benchmarks/bench_distributed.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
NPROC=${NPROC:-2}
DEVICE=${DEVICE:-cpu}
MODEL=${MODEL:-timm:resnet10t}
IMAGES=${IMAGES:-1200}
ROUNDS=${ROUNDS:-3}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

"$PY" -m abawbench data synth --track lsd --out "$WORK/tree" --size "$IMAGES" >/dev/null
run_once() {  # run_once LABEL [torchrun args...]: one cold run; prints its wall seconds
    local label=$1
    shift
    rm -rf "$WORK/cache" "$WORK/runs"
    local start end
    start=$(date +%s.%N)
    "$@" run --track lsd --data "$WORK/tree" --models "$MODEL" --epochs 5 --bootstrap 0 \
        --device "$DEVICE" --no-progress --cache-dir "$WORK/cache" --output "$WORK/runs" >/dev/null
    end=$(date +%s.%N)
    echo "$label $("$PY" -c "print(round($end - $start, 2))")"
}
ratios=()
for round in $(seq "$ROUNDS"); do
    one=$(run_once "1-process" "$PY" -m abawbench | awk '{print $2}')
    many=$(OMP_NUM_THREADS=$(( $(nproc) / NPROC > 0 ? $(nproc) / NPROC : 1 )) \
           run_once "$NPROC-process" "$PY" -m torch.distributed.run --standalone --nproc-per-node "$NPROC" -m abawbench \
           | awk '{print $2}')
    echo "round $round: 1 process ${one} s, $NPROC processes ${many} s"
    ratios+=("$("$PY" -c "print($one / $many)")")
done
printf '%s\n' "${ratios[@]}" | sort -n | awk '{a[NR]=$1} END {printf "median speed-up of %d processes over 1: %.2f\n", '"$NPROC"', a[int((NR+1)/2)]}'
