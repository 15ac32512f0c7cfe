#!/usr/bin/env bash
# Regenerate the HUST-ANT LSD ablation (leaderboards/hust_ant_lsd_ablation.md and .json) on the
# embedded synthetic default: run every configuration of the table, the DLN ensemble, render.
# The JSON records the commit the table was rendered at, the commits its results were measured at,
# and every row's settings.
#
#   plugins/abawbench_builtins/hust_ant/regenerate_ablation.sh     # from anywhere
#   KEEP_RUNS=1 plugins/abawbench_builtins/hust_ant/regenerate_ablation.sh   # resume
set -euo pipefail
cd "$(dirname "$0")/../../.."
ABAWBENCH=${ABAWBENCH:-$( [ -x .venv/bin/abawbench ] && echo .venv/bin/abawbench || echo abawbench )}
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python )}
CONFIGS=plugins/abawbench_builtins/hust_ant/configs
RUNS=runs/hust_ant
export HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1}

[ "${KEEP_RUNS:-0}" = 1 ] || rm -rf "$RUNS"
# order matters once: small/lsd_dln_warm_start.toml starts from an entry of small/lsd_linear_probe.toml
for config in small/lsd_linear_probe ablation/lsd_smooth_balanced ablation/lsd_lp_cosine ablation/lsd_lp_synthstats \
              small/lsd_oversampled ablation/lsd_lp32 small/lsd_finetune small/lsd_dln small/lsd_dln_warm_start; do
  "$ABAWBENCH" run --config "$CONFIGS/$config.toml" --no-progress
done
for seed in 0 1; do
  "$ABAWBENCH" ensemble --method mean-prob --track lsd --runs "$RUNS/small/lsd_dln" --seed "$seed" --members \
    dln-resnet10t__finetune-linear__cross-entropy,dln-mobilenetv3_small_100__finetune-linear__cross-entropy
done

# Render: the remedies table with each row's own reference, the commit and every row's settings
# (ablation.py), then the report's ablation view (docs/reports.md) of every entry measured on the
# baseline's data against the baseline, per-class deltas included.
"$PYTHON" -m abawbench_builtins.hust_ant.ablation --runs "$RUNS" --out leaderboards/hust_ant_lsd_ablation --preamble plugins/abawbench_builtins/hust_ant/ablation_preamble.md
baseline=$(ls "$RUNS/small/lsd_linear_probe/lsd" | grep -E '^resnet10t__linear-probe-linear__cross-entropy__[0-9a-f]{8}$')
pooled=()
for folder in "$RUNS"/*/*/; do pooled+=(--runs "$folder"); done
"$ABAWBENCH" leaderboard --track lsd "${pooled[@]}" --reference "$baseline" --no-references --format markdown \
  --output leaderboards/hust_ant_lsd_ablation_view.md
