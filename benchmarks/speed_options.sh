#!/usr/bin/env bash
# Issue 14's speed figures on the paper's setting: the IEMOCAP-shaped files of
# ../shared/data/make_iemocap.py (1200/300/300), recipes/redcore_iemocap.yaml's model, 2 threads,
# 3 epochs (30 steps) per run, engine against the plain loop, once per configuration:
#   1. the defaults (fp32, torch's dropout masks, foreach Adam)
#   2. + train.dropout_masks=fast + train.optimizer.implementation=fused
#   3. + precision=bf16
#   4. + compile=true
# and, with OLD=<a checkout of 7c9e745> set, the engine before this round's speed work (which
# issue 14 measured at the reference code's speed, 0.98x), for the ratio against the reference.
#
#   python ../shared/data/make_iemocap.py --out DATA --n-train 1200 --n-val 300 --n-test 300 --seed 0
#   ROOT=DATA [OLD=/tmp/old] bash benchmarks/speed_options.sh
# Run it on an otherwise idle machine: every figure is a wall-clock rate.
set -euo pipefail
ROOT="${ROOT:?set ROOT to the output folder of make_iemocap.py}"
EPOCHS="${EPOCHS:-3}"
BENCH=(python benchmarks/bench_iemocap.py --root "$ROOT" --epochs "$EPOCHS" --repeats 1)
FAST=(--set train.dropout_masks=fast --set train.optimizer.implementation=fused)
if [[ -n "${OLD:-}" ]]; then
  echo "### before this round's speed work ($OLD)"
  (cd "$OLD" && PYTHONPATH="$OLD" python benchmarks/bench_iemocap.py --root "$ROOT" --epochs "$EPOCHS" --repeats 1)
fi
echo "### defaults"; "${BENCH[@]}"
echo "### fast dropout masks + fused Adam"; "${BENCH[@]}" "${FAST[@]}"
echo "### + bf16"; "${BENCH[@]}" "${FAST[@]}" --set precision=bf16
echo "### + compile"; "${BENCH[@]}" "${FAST[@]}" --set precision=bf16 --set compile=true
