#!/usr/bin/env bash
# Issue 11's protocol: RedCore against uniform weighting and MMIN under imbalanced and balanced
# missing rates, at the reference's step budget, paired over seeds. docs/results.md reports it.
#
#   docs/protocol.sh pilot            the CPU pilot (what docs/results.md reports; 155 runs, ~110 min on 2 cores at JOBS=2)
#   docs/protocol.sh full             the whole grid on sequences, for a GPU machine (see below)
#   docs/protocol.sh handwritten      UCI Handwritten at its recipe's 40 epochs (40 runs, ~22 min on 2 cores at JOBS=2)
#   docs/protocol.sh tables [full]    only the tables, interaction tests and heatmaps (of the pilot, or of full)
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

# What the full grid changes in the recipe: IEMOCAP's frame sequences, transformer encoders in the
# reference's block layout, the reference's IEMOCAP widths (docs/redcore.md)
# (the predictors' widths 256-128-64 are set in the imputers' definitions in the full mode)
DATA_SEQ=(dataset.sequence=true model.dim=128 "dataset.min_lens=[20, 20, 10]" "dataset.max_lens=[60, 60, 30]"
  "model.encoders.default={type: mmcore.transformer, layers: 3, heads: 8, ff_mult: 4, dropout: 0.1, attn_dropout: 0.2, layout: reference}")
EXTRA=()  # the mode's changes to the recipe, before every sweep's own

sweep() {  # sweep <name> <overrides and --grid ...>, on $RECIPE
  local name="$1"; shift
  mmcore sweep "$RECIPE" "${COMMON[@]}" "${EXTRA[@]}" "$@" --seeds "$SEEDS" --jobs "$JOBS" --out "$OUT/$name" --metrics macro_f1,accuracy
}

tune() {  # 4 learning rates per method, seed 0, imbalanced preset; the choice sees validation only
  for lr in 3.0e-4 1.0e-3 3.0e-3 1.0e-2; do
    SEEDS=0 sweep "tune/lr$lr/vib" "missing.train.rates=$IMBALANCED" train.optimizer.lr=$lr "model.imputer=$VIB" \
      --grid "balancer=mmcore.uniform,redcore.relative_advantage"
    SEEDS=0 sweep "tune/lr$lr/mmin" "missing.train.rates=$IMBALANCED" train.optimizer.lr=$lr balancer=mmcore.uniform \
      --grid "model.imputer=$MMIN,$MMIN0"
    SEEDS=0 sweep "tune/lr$lr/zero" "missing.train.rates=$IMBALANCED" train.optimizer.lr=$lr model.imputer=mmcore.zero \
      balancer=mmcore.uniform
  done
  # Every method then runs at the rate it chose (docs/protocol_tables.py --chosen: the best
  # validation macro-F1 of the four), everywhere after.
  while read -r slug lr; do LR[$slug]=$lr; done < <(python docs/protocol_tables.py --chosen "$OUT/tune")
  [[ ${#LR[@]} == 5 ]] || { echo "error: $OUT/tune: expected a chosen rate for 5 methods, found ${#LR[@]}" >&2; exit 1; }
}
declare -A LR
rate() { echo "train.optimizer.lr=${LR[${1%-dropout}]}"; }  # a dropout arm runs at its method's rate

pair() {  # pair <dir> <slug A> <slug B> <key> <value A> <value B> <overrides...>: one grid if the rates agree
  local dir="$1" a="$2" b="$3" key="$4" va="$5" vb="$6"; shift 6
  if [[ $(rate "$a") == "$(rate "$b")" ]]; then
    sweep "$dir/$a+$b" "$(rate "$a")" "$@" --grid "$key=$va,$vb"
  else
    sweep "$dir/$a" "$(rate "$a")" "$@" "$key=$va"
    sweep "$dir/$b" "$(rate "$b")" "$@" "$key=$vb"
  fi
}

arms() {  # arms <preset directory> <rates> <policy> <arms>: arms is one of
  # core      RedCore, VIB + uniform, MMIN (hiding 0.5) + uniform
  # fixed     core + MMIN (hiding 0) and zero-filling, with uniform weights
  # dropout   fixed + modality dropout 0.3 for VIB (both balancers) and MMIN (hiding 0)
  # all       dropout + modality dropout 0.3 for MMIN (hiding 0.5) and zero-filling
  local dir="$1" rates="$2" policy="$3" which="$4"
  local on=("missing.train.rates=$rates" "missing.train.policy=$policy")
  pair "$dir" redcore vib-uniform balancer redcore.relative_advantage mmcore.uniform "${on[@]}" "model.imputer=$VIB"
  if [[ $which == core ]]; then
    sweep "$dir/mmin" "$(rate mmin)" "${on[@]}" "model.imputer=$MMIN" balancer=mmcore.uniform
    return
  fi
  pair "$dir" mmin mmin0 model.imputer "$MMIN" "$MMIN0" "${on[@]}" balancer=mmcore.uniform
  sweep "$dir/zero" "$(rate zero)" "${on[@]}" model.imputer=mmcore.zero balancer=mmcore.uniform
  [[ $which == fixed ]] && return
  # The engine's modality dropout for the imputers that do not hide by themselves: does the
  # per-step practice MMIN's hiding gives close the gap?
  pair "$dir" redcore-dropout vib-uniform-dropout balancer redcore.relative_advantage mmcore.uniform \
    "${on[@]}" "model.imputer=$VIB" train.modality_dropout=0.3
  sweep "$dir/mmin0-dropout" "$(rate mmin0)" "${on[@]}" "model.imputer=$MMIN0" train.modality_dropout=0.3 \
    balancer=mmcore.uniform
  [[ $which == dropout ]] && return
  sweep "$dir/mmin-dropout" "$(rate mmin)" "${on[@]}" "model.imputer=$MMIN" train.modality_dropout=0.3 \
    balancer=mmcore.uniform
  sweep "$dir/zero-dropout" "$(rate zero)" "${on[@]}" model.imputer=mmcore.zero train.modality_dropout=0.3 \
    balancer=mmcore.uniform
}

PRESETS=(imbalanced balanced imbalanced2 imbalanced-resample balanced-resample)  # the tables' order

case "$MODE" in
  pilot)
    # Every axis of the full grid at the pilot's scale (vectors, the quickstart's widths), 5 seeds,
    # in the order a stop loses least: learning-rate tuning, then each method under the imbalanced
    # and balanced presets with the modality-dropout axis, the second imbalanced preset, resampled
    # masks. Not in the pilot (see full): sequences with transformer encoders; modality dropout
    # for MMIN (hiding 0.5) and zero-filling, and under the second preset and resampled masks;
    # MMIN without hiding and zero-filling with resampled masks; dropout rates other than 0.3.
    tune
    arms imbalanced "$IMBALANCED" fixed dropout
    arms balanced "$BALANCED" fixed dropout
    arms imbalanced2 "$IMBALANCED2" fixed fixed
    arms imbalanced-resample "$IMBALANCED" resample core
    arms balanced-resample "$BALANCED" resample core
    ;;
  full)
    # Every axis of issue 11 on sequences (DATA_SEQ): the same tuning, then 3 presets x both mask
    # policies x every arm (5 methods, each with and without modality dropout 0.3) x 5 seeds =
    # 300 runs + 20 tuning runs, under $OUT/full. Sequences with transformer encoders need a GPU.
    EXTRA=("${DATA_SEQ[@]}")
    VIB=${VIB/128, 64, 32/256, 128, 64}; MMIN=${MMIN/128, 64, 32/256, 128, 64}; MMIN0=${MMIN0/128, 64, 32/256, 128, 64}
    OUT="$OUT/full"
    tune
    for policy in fixed resample; do
      suffix=""; [[ $policy == resample ]] && suffix="-resample"
      arms "imbalanced$suffix" "$IMBALANCED" $policy all
      arms "balanced$suffix" "$BALANCED" $policy all
      arms "imbalanced2$suffix" "$IMBALANCED2" $policy all
    done
    ;;
  handwritten)
    # UCI Handwritten (6 modalities) at recipes/redcore_handwritten.yaml's full budget (40
    # epochs): RedCore, VIB + uniform, MMIN (hiding 0.5) + uniform and zero-filling + uniform,
    # under the recipe's imbalanced rates and under balanced ones at their mean (0.4 each), for
    # the interaction.
    RECIPE=recipes/redcore_handwritten.yaml
    HW_IMBALANCED='{fou: 0.1, fac: 0.7, kar: 0.5, pix: 0.7, zer: 0.1, mor: 0.3}'
    HW_BALANCED='{fou: 0.4, fac: 0.4, kar: 0.4, pix: 0.4, zer: 0.4, mor: 0.4}'
    for preset in imbalanced balanced; do
      rates=$HW_IMBALANCED; [[ $preset == balanced ]] && rates=$HW_BALANCED
      sweep "handwritten/$preset/vib" "missing.train.rates=$rates" --grid "balancer=mmcore.uniform,redcore.relative_advantage"
      sweep "handwritten/$preset/mmin" "missing.train.rates=$rates" "model.imputer=$MMIN" balancer=mmcore.uniform
      sweep "handwritten/$preset/zero" "missing.train.rates=$rates" model.imputer=mmcore.zero balancer=mmcore.uniform
    done
    ;;
  tables)  # docs/protocol.sh tables [full]
    [[ "${2:-}" == full ]] && OUT="$OUT/full"
    ;;
  *) echo "usage: docs/protocol.sh pilot|full|handwritten|tables" >&2; exit 2 ;;
esac

if [[ $MODE == handwritten ]]; then
  python docs/handwritten_tables.py "$OUT/handwritten" imbalanced balanced --figures docs/results_figures/handwritten
else
  FIGURES=docs/results_figures
  [[ $OUT == */full ]] && { PRESETS+=(imbalanced2-resample); FIGURES=docs/results_figures/full; }
  python docs/protocol_tables.py "$OUT" "${PRESETS[@]}" --figures "$FIGURES"
fi
