#!/usr/bin/env bash
# The whole GPU check in one prepared call, for a machine with an NVIDIA GPU (docs/bench/gpu.md).
#
# Why one script: device time is scarce (minutes per task), so everything that needs a card runs
# in one go, each step under its own time limit, each writing its own file under $OUT, and a
# failing step does not stop the others.
#
#   OUT=/tmp/gpu-out bash scripts/device_check.sh          # any machine with CUDA and python3
#
# Steps: environment -> the CUDA tests (tests/test_gpu.py, skipped everywhere else) and the whole
# suite -> scripts/gpu_check.py (resnet50 112 px bf16: abawbench's path vs timm's bare forward,
# same batches on the card) -> benchmarks/bench_protocol.py on the GPU (the full pipeline:
# JPEG decode in DataLoader workers, uint8 copy, normalisation on the card, bf16 forward) ->
# the default `abawbench run --track lsd` on the GPU, cold then warm.
#
# Packages the machine lacks travel as wheels in .whl/ (see the device README); abawbench itself
# is installed from this checkout into /tmp/site without touching the machine's own packages.
set -uo pipefail
OUT=${OUT:-/tmp/device-check}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site

STEPS=${STEPS:-all}  # or a space-separated subset of the step names below

step() {  # step NAME SECONDS COMMAND... : run with a limit, log to $OUT/NAME.log, record the status
    local name=$1 limit=$2
    shift 2
    [[ $STEPS == all || " $STEPS " == *" $name "* ]] || return 0
    local start=$SECONDS
    timeout "$limit" "$@" >"$OUT/$name.log" 2>&1
    local status=$?
    echo "$name: exit $status in $((SECONDS - start)) s" | tee -a "$OUT/steps.txt"
}

if compgen -G ".whl/*.whl" >/dev/null; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
$PY -m pip install -q --no-index --no-deps --no-build-isolation --no-compile --no-cache-dir --target /tmp/site . \
    || { echo "installing abawbench failed" | tee -a "$OUT/steps.txt"; exit 1; }

# The step limits add up to 570 s: with the installs, one call of at most 600 s (a whole run
# took 200-260 s on an H100). pytest-xdist is used where the machine has it.
XDIST=$($PY -c "import xdist" 2>/dev/null && echo "-n 8")

{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    nproc
    $PY -c "import torch, torchvision, timm, PIL; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'torchvision', torchvision.__version__, 'timm', timm.__version__, 'pillow', PIL.__version__)"
} >"$OUT/environment.txt" 2>&1

step tests_gpu 60 $PY -m pytest -q -p no:cacheprovider tests/test_gpu.py tests/test_preprocess.py tests/test_device.py
step tests_all 120 $PY -m pytest -q -p no:cacheprovider -x $XDIST \
    --deselect tests/test_gpu.py --deselect tests/test_preprocess.py --deselect tests/test_device.py  # run by tests_gpu
step gpu_check 60 $PY scripts/gpu_check.py --device cuda --arch resnet50 --image-size 112 --batch-size 256
step pipeline_resnet50 120 $PY benchmarks/bench_protocol.py --model timm:resnet50 --device cuda --images 20000 \
    --workers 14 --batch-size 256 --skip-probe
step distributed_lsd 60 env PYTHONPATH=/tmp/site $PY -m torch.distributed.run --standalone \
    --nproc-per-node "$(nvidia-smi -L | wc -l)" -m abawbench run --track lsd --device cuda --no-progress \
    --output /tmp/device-runs-ddp --cache-dir /tmp/device-cache-ddp
step run_lsd_cold 90 $PY -m abawbench.cli run --track lsd --device cuda --no-progress --output /tmp/device-runs --cache-dir /tmp/device-cache
step run_lsd_warm 60 $PY -m abawbench.cli run --track lsd --device cuda --no-progress --output /tmp/device-runs-warm --cache-dir /tmp/device-cache
cp /tmp/device-runs/lsd/leaderboard.md "$OUT/" 2>/dev/null || true
