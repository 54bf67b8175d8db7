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
    # RedCore (VIB + relative advantage), VIB with uniform weights and MMIN (hiding 0.5) with
    # uniform weights, under one imbalanced and the balanced preset: the smallest grid that tests
    # the interaction, plus RedCore with modality dropout 0.3. Not in the pilot: the second
    # imbalanced preset, resampled masks, the rest of the modality-dropout axis, MMIN without
    # hiding, zero-filling, learning-rate tuning (see full).
    for preset in imbalanced balanced; do
      rates=$IMBALANCED; [[ $preset == balanced ]] && rates=$BALANCED
      sweep "$preset/vib" "missing.train.rates=$rates" "model.imputer=$VIB" \
        --grid "balancer=mmcore.uniform,redcore.relative_advantage"
      sweep "$preset/mmin" "missing.train.rates=$rates" "model.imputer=$MMIN" balancer=mmcore.uniform
      # RedCore with the engine's modality dropout: does the practice MMIN's hiding gives close the gap?
      sweep "$preset/vib-dropout" "missing.train.rates=$rates" "model.imputer=$VIB" balancer=redcore.relative_advantage \
        train.modality_dropout=0.3
    done
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
  python docs/protocol_tables.py "$OUT" imbalanced balanced
fi
