#!/usr/bin/env bash
# Issue 11's protocol: RedCore against uniform weighting and MMIN under imbalanced and balanced
# missing rates, at the reference's step budget, paired over seeds. docs/results.md reports it.
#
#   docs/protocol.sh pilot            the CPU pilot (what docs/results.md reports; 40 runs, ~22 min on 2 cores at JOBS=2)
#   docs/protocol.sh full             the whole grid, for a GPU machine (see below)
#   docs/protocol.sh handwritten      UCI Handwritten at its recipe's 40 epochs (30 runs, ~20 min on 2 cores at JOBS=2)
#   docs/protocol.sh tables [pilot]   only the tables and the interaction tests
#   JOBS=2 SEEDS=0-2 docs/protocol.sh pilot   fewer seeds first; a rerun adds the rest
#
# A sweep started again skips finished runs, so the script can be stopped and restarted.
# Every method gets the same budget (recipes/protocol_synthetic.yaml: 48 epochs x 44 steps =
# 2112 optimiser steps), the same data, masks and seeds, and the same speed options (fused Adam,
# fast dropout masks: they change rounding and random draws, equally for every method).
set -euo pipefail
MODE="${1:-pilot}"
JOBS="${JOBS:-2}"
SEEDS="${SEEDS:-0-4}"
OUT="${OUT:-runs/protocol}"
RECIPE=recipes/protocol_synthetic.yaml
export OMP_NUM_THREADS=1
COMMON=(train.optimizer.implementation=fused train.dropout_masks=fast)
VIB='{type: redcore.vib, hidden: [128, 64, 32], blocks: 5, kl_reduction: batch}'
MMIN='{type: baselines.mmin, hidden: [128, 64, 32], blocks: 5, hide_rate: 0.5}'
MMIN0='{type: baselines.mmin, hidden: [128, 64, 32], blocks: 5, hide_rate: 0.0}'
# The reference's presets (A, V, L): two imbalanced, one balanced
IMBALANCED='{a: 0.2, v: 0.5, l: 0.8}'
IMBALANCED2='{a: 0.5, v: 0.8, l: 0.2}'
BALANCED='{a: 0.5, v: 0.5, l: 0.5}'

sweep() {  # sweep <name> <overrides and --grid ...>, on $RECIPE
  local name="$1"; shift
  mmcore sweep "$RECIPE" "${COMMON[@]}" "$@" --seeds "$SEEDS" --jobs "$JOBS" --out "$OUT/$name" --metrics macro_f1,accuracy
}

case "$MODE" in
  pilot)
    # Every axis of the full grid at the pilot's scale (vectors, the quickstart's widths), 5 seeds.
    # In the order a stop loses least: learning-rate tuning first (seed 0, validation only), then
    # each method under the imbalanced and balanced presets, the modality-dropout axis, the
    # second imbalanced preset and resampled masks. Methods: RedCore (VIB + relative advantage),
    # VIB + uniform, MMIN (hiding 0.5 and 0) + uniform, zero-filling + uniform.
    # Not in the pilot (see full): sequences with transformer encoders, the dropout axis under the
    # second preset and with resampled masks, MMIN without hiding and zero-filling with resampled
    # masks, dropout rates other than 0.3.
    for lr in 3.0e-4 1.0e-3 3.0e-3 1.0e-2; do
      SEEDS=0 sweep "tune/lr$lr/vib" "missing.train.rates=$IMBALANCED" train.optimizer.lr=$lr "model.imputer=$VIB" \
        --grid "balancer=mmcore.uniform,redcore.relative_advantage"
      SEEDS=0 sweep "tune/lr$lr/mmin" "missing.train.rates=$IMBALANCED" train.optimizer.lr=$lr balancer=mmcore.uniform \
        --grid "model.imputer=$MMIN,$MMIN0"
      SEEDS=0 sweep "tune/lr$lr/zero" "missing.train.rates=$IMBALANCED" train.optimizer.lr=$lr model.imputer=mmcore.zero \
        balancer=mmcore.uniform
    done
    # Each method whose best validation score came at another rate than the recipe's also runs at
    # that rate under both presets; the tables then compare every method at its chosen rate too.
    python docs/protocol_tables.py --chosen "$OUT/tune" | while read -r slug lr; do
      case $slug in
        redcore) arm=("model.imputer=$VIB" balancer=redcore.relative_advantage) ;;
        vib-uniform) arm=("model.imputer=$VIB" balancer=mmcore.uniform) ;;
        mmin) arm=("model.imputer=$MMIN" balancer=mmcore.uniform) ;;
        mmin0) arm=("model.imputer=$MMIN0" balancer=mmcore.uniform) ;;
        zero) arm=(model.imputer=mmcore.zero balancer=mmcore.uniform) ;;
      esac
      sweep "imbalanced/tuned-$slug" "missing.train.rates=$IMBALANCED" train.optimizer.lr="$lr" "${arm[@]}" </dev/null
      sweep "balanced/tuned-$slug" "missing.train.rates=$BALANCED" train.optimizer.lr="$lr" "${arm[@]}" </dev/null
    done
    pilot_arms() {  # pilot_arms <preset directory> <rates> <policy> [dropout]
      local dir="$1" rates="$2" policy="$3"
      local on=("missing.train.rates=$rates" "missing.train.policy=$policy")
      sweep "$dir/vib" "${on[@]}" "model.imputer=$VIB" --grid "balancer=mmcore.uniform,redcore.relative_advantage"
      sweep "$dir/mmin" "${on[@]}" "model.imputer=$MMIN" balancer=mmcore.uniform
      if [[ "${4:-}" == dropout || $policy == fixed ]]; then
        sweep "$dir/mmin0" "${on[@]}" "model.imputer=$MMIN0" balancer=mmcore.uniform
        sweep "$dir/zero" "${on[@]}" model.imputer=mmcore.zero balancer=mmcore.uniform
      fi
      if [[ "${4:-}" == dropout ]]; then
        # The engine's modality dropout for the imputers that do not hide by themselves: does the
        # per-step practice MMIN's hiding gives close the gap?
        sweep "$dir/vib-dropout" "${on[@]}" "model.imputer=$VIB" train.modality_dropout=0.3 \
          --grid "balancer=mmcore.uniform,redcore.relative_advantage"
        sweep "$dir/mmin0-dropout" "${on[@]}" "model.imputer=$MMIN0" train.modality_dropout=0.3 balancer=mmcore.uniform
      fi
    }
    pilot_arms imbalanced "$IMBALANCED" fixed dropout
    pilot_arms balanced "$BALANCED" fixed dropout
    pilot_arms imbalanced2 "$IMBALANCED2" fixed
    pilot_arms imbalanced-resample "$IMBALANCED" resample nodropout
    pilot_arms balanced-resample "$BALANCED" resample nodropout
    ;;
  full)
    # Every axis of issue 11: three presets x both mask policies x modality dropout {0, 0.3} x
    # imputer {VIB, MMIN hide 0.5, MMIN hide 0} x balancer {uniform, relative advantage}, then
    # zero-filling with uniform weights, 4 learning rates tuned on validation per method
    # (seed 0, first preset; pick the best val.macro_f1 and pass it as train.optimizer.lr).
    # 3 x 2 x 2 x 6 x 5 seeds = 360 runs + 30 zero runs; with sequences (IEMOCAP's frame
    # shapes and transformer encoders: DATA_SEQ below) it needs a GPU.
    DATA_SEQ=(dataset.sequence=true model.dim=128 "model.imputer.hidden=[256, 128, 64]" "dataset.min_lens=[20, 20, 10]" "dataset.max_lens=[60, 60, 30]"
      "model.encoders.default={type: mmcore.transformer, layers: 3, heads: 8, ff_mult: 4, dropout: 0.1, attn_dropout: 0.2, layout: reference}")
    SEEDS_TUNE=0
    for lr in 3.0e-4 1.0e-3 3.0e-3 1.0e-2; do
      SEEDS=$SEEDS_TUNE sweep "tune-lr$lr" "${DATA_SEQ[@]}" "missing.train.rates=$IMBALANCED" train.optimizer.lr=$lr \
        --grid "model.imputer=$VIB,$MMIN,$MMIN0" --grid "balancer=mmcore.uniform,redcore.relative_advantage"
    done
    for preset in imbalanced imbalanced2 balanced; do
      rates=$IMBALANCED; [[ $preset == imbalanced2 ]] && rates=$IMBALANCED2; [[ $preset == balanced ]] && rates=$BALANCED
      for policy in fixed resample; do
        sweep "full-$preset-$policy" "${DATA_SEQ[@]}" "missing.train.rates=$rates" missing.train.policy=$policy \
          --grid "model.imputer=$VIB,$MMIN,$MMIN0" --grid "balancer=mmcore.uniform,redcore.relative_advantage" \
          --grid "train.modality_dropout=0.0,0.3"
        sweep "full-$preset-$policy-zero" "${DATA_SEQ[@]}" "missing.train.rates=$rates" missing.train.policy=$policy \
          model.imputer=mmcore.zero balancer=mmcore.uniform --grid "train.modality_dropout=0.0,0.3"
      done
    done
    ;;
  handwritten)
    # UCI Handwritten (6 modalities) at recipes/redcore_handwritten.yaml's full budget (40
    # epochs): RedCore, VIB + uniform and MMIN (hiding 0.5) + uniform, under the recipe's
    # imbalanced rates and under balanced ones at their mean (0.4 each), for the interaction.
    RECIPE=recipes/redcore_handwritten.yaml
    HW_IMBALANCED='{fou: 0.1, fac: 0.7, kar: 0.5, pix: 0.7, zer: 0.1, mor: 0.3}'
    HW_BALANCED='{fou: 0.4, fac: 0.4, kar: 0.4, pix: 0.4, zer: 0.4, mor: 0.4}'
    for preset in imbalanced balanced; do
      rates=$HW_IMBALANCED; [[ $preset == balanced ]] && rates=$HW_BALANCED
      sweep "handwritten/$preset/vib" "missing.train.rates=$rates" --grid "balancer=mmcore.uniform,redcore.relative_advantage"
      sweep "handwritten/$preset/mmin" "missing.train.rates=$rates" "model.imputer=$MMIN" balancer=mmcore.uniform
    done
    ;;
  tables) ;;
  *) echo "usage: docs/protocol.sh pilot|full|handwritten|tables" >&2; exit 2 ;;
esac

if [[ $MODE == handwritten ]]; then
  python docs/handwritten_tables.py "$OUT/handwritten" imbalanced balanced
else
  python docs/protocol_tables.py "$OUT" imbalanced balanced imbalanced2 imbalanced-resample balanced-resample \
    --figures docs/results_figures
fi
