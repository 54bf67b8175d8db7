#!/usr/bin/env bash
# The commands behind docs/results.md: every imputer × every balancer on UCI Handwritten with
# imbalanced missing rates, five seeds, then the markdown tables of that page.
#
#   docs/results.sh                 run (or finish) both sweeps, then print the tables
#   JOBS=2 docs/results.sh          two runs at a time
#   docs/results.sh --tables        only print the tables from the finished sweeps
#
# A sweep started again skips finished runs and resumes interrupted ones, so this script can be
# stopped (Ctrl-C) and started again at no cost. Run it from the repository root with the
# project's virtualenv active and the plugins installed (baselines, redcore, corpora).
set -euo pipefail

JOBS="${JOBS:-1}"
OUT="${OUT:-runs/results}"
RECIPE=recipes/redcore_handwritten.yaml
# One thread per run whatever --jobs is, so the numbers do not depend on how many ran at once.
export OMP_NUM_THREADS=1
# The per-run budget (docs/results.md, "Protocol"): 15 epochs instead of the recipe's 40,
# full learning rate for 8 of them, then linear decay to 0. Evaluation keeps every condition.
BUDGET=(train.epochs=15 train.schedule.constant_epochs=8)
SEEDS=0-4
# The recipe's VIB node, written out: a bare `redcore.vib` would swap the node and drop its sizes.
VIB='{type: redcore.vib, hidden: [128, 64, 32], blocks: 5}'

if [[ "${1:-}" != "--tables" ]]; then
  # 1. Imputers with a reconstruction loss group: inverse_rate and relative_advantage weigh `recon`.
  mmcore sweep "$RECIPE" "${BUDGET[@]}" \
    --grid "model.imputer=$VIB,baselines.mmin" \
    --grid "balancer=mmcore.uniform,baselines.inverse_rate,baselines.ogm_ge,redcore.relative_advantage" \
    --seeds "$SEEDS" --jobs "$JOBS" --out "$OUT/recon" --metrics macro_f1,accuracy
  # 2. Imputers without one: the two loss-weighting balancers weigh the unimodal heads' losses.
  mmcore sweep "$RECIPE" "${BUDGET[@]}" \
    --grid "model.imputer=mmcore.zero,baselines.missing_token,baselines.mean" \
    --grid "balancer=mmcore.uniform,{type: baselines.inverse_rate, target: unimodal},baselines.ogm_ge,{type: redcore.relative_advantage, target: unimodal}" \
    --seeds "$SEEDS" --jobs "$JOBS" --out "$OUT/no-recon" --metrics macro_f1,accuracy
fi

python "$(dirname "$0")/results_tables.py" "$OUT/recon" "$OUT/no-recon"
