#!/usr/bin/env bash
# mmcore's IEMOCAP recipe against the RedCore reference code, interleaved on one box in one hour:
# REPEATS triples (default 3, the order alternating) of 2-epoch runs, each its own process: the
# reference, mmcore's defaults, mmcore with the fp32 opt-ins (OPT_INS, default fast dropout masks and
# fused Adam); then a markdown table with the ratios taken within each triple. ~8 minutes on an
# idle 2-core box.
#
#   REF_PY=/tmp/refvenv/bin/python benchmarks/vs_reference.sh REDCORE_DIR [OUT.md]
#
# REDCORE_DIR: your checkout's folder that holds train_miss.py; REF_PY: a Python with what the
# reference imports (benchmarks/reference_redcore.py says which). mmcore runs with PY (default
# python) through benchmarks/bench_iemocap.py, the reference through reference_redcore.py, both on
# make_iemocap.py's files (1200/300/300, seed 0; made in DATA if absent), THREADS threads (2).
# LOCKSTEP=1 then appends eval_lockstep.py's table (evaluation of both sides in lock step, the
# measurement the box's drift disturbs least; ~5 more minutes).
set -euo pipefail
ref_dir="${1:?usage: REF_PY=... benchmarks/vs_reference.sh REDCORE_DIR [OUT.md]}"
out="${2:-/dev/stdout}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
PY="${PY:-python}"
REF_PY="${REF_PY:?set REF_PY to a Python that can run the reference (see benchmarks/reference_redcore.py)}"
THREADS="${THREADS:-2}"
REPEATS="${REPEATS:-3}"
DATA="${DATA:-/tmp/quiet_ab_iemocap}"
export OMP_NUM_THREADS="$THREADS" CUDA_VISIBLE_DEVICES=""
source benchmarks/iemocap_data.sh
iemocap_data "$DATA" 1200 300
jsonl="$(mktemp)"
echo "vs_reference: $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $THREADS threads, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

OPT_INS="${OPT_INS:-train.dropout_masks=fast train.optimizer.implementation=fused}"

run() {  # run LABEL REPEAT: one run, its last (JSON) line into $jsonl with label and repeat
  local line extra=()
  if [[ "$1" == opt-ins ]]; then for o in $OPT_INS; do extra+=("--override=$o"); done; fi
  if [[ "$1" != reference ]]; then
    line=$("$PY" benchmarks/bench_iemocap.py --case engine --threads "$THREADS" --device cpu \
      "--override=dataset={type: corpora.iemocap, root: $DATA, fold: 1}" --override=train.epochs=2 "${extra[@]}" 2>/dev/null | tail -1)
  else
    line=$("$REF_PY" benchmarks/reference_redcore.py --redcore "$ref_dir" --data "$DATA" --epochs 2 --threads "$THREADS" 2>/dev/null | tail -1)
  fi
  if [[ "$line" != \{* ]]; then echo "vs_reference.sh: the $1 run (repeat $2) printed no result; rerun it alone to see why" >&2; exit 1; fi
  echo "{\"label\": \"$1\", \"repeat\": $2, ${line#\{}" >> "$jsonl"
  echo "  $1 (repeat $2) done, load $(cut -d' ' -f1 /proc/loadavg)" >&2
}

for ((r = 1; r <= REPEATS; r++)); do
  if ((r % 2)); then labels=(reference mmcore opt-ins); else labels=(opt-ins mmcore reference); fi
  for label in "${labels[@]}"; do run "$label" "$r"; done
done

"$PY" - "$jsonl" "$THREADS" "$OPT_INS" > "$out" <<'PYEOF'
import json, statistics, sys
runs = [json.loads(line) for line in open(sys.argv[1])]
pairs = {}
for run in runs:
    pairs.setdefault(run["repeat"], {})[run["label"]] = run
def spread(values, fmt):
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"
print(f"vs_reference.sh: {len(pairs)} interleaved triple(s) of 2-epoch runs, {sys.argv[2]} threads, opt-ins: {sys.argv[3]}. "
      "Median (min-max); ratios are taken within each triple.\n")
print("| | reference | mmcore defaults | defaults / reference | mmcore opt-ins | opt-ins / reference |\n|---|---|---|---|---|---|")
# (row, mmcore's key, the reference's key, format); the reference's evaluation figure is always
# over every pass of its run, mmcore's both ways: eval.json's final pass, and every pass as the reference
for name, key, ref_key, fmt in [("training samples/s", "samples_per_s", "samples_per_s", "{:.1f}"),
                                ("evaluation items/s (mmcore: eval.json, final pass)", "eval_items_per_s", "eval_items_per_s", "{:.0f}"),
                                ("evaluation items/s (both: every pass)", "eval_items_per_s_all_passes", "eval_items_per_s", "{:.0f}"),
                                ("peak RSS (MB)", "peak_rss_mb", "peak_rss_mb", "{:.0f}")]:
    ref = [p["reference"][ref_key] for p in pairs.values()]
    cells = [spread(ref, fmt)]
    for label in ("mmcore", "opt-ins"):
        ours = [p[label][key] for p in pairs.values()]
        cells += [spread(ours, fmt), spread([o / r for o, r in zip(ours, ref)], "{:.2f}")]
    print(f"| {name} | " + " | ".join(cells) + " |")
PYEOF
rm -f "$jsonl"
if [[ "${LOCKSTEP:-0}" == 1 ]]; then
  echo "vs_reference: evaluation in lock step (eval_lockstep.py)" >&2
  { echo; REF_PY="$REF_PY" "$PY" benchmarks/eval_lockstep.py --redcore "$ref_dir" --data "$DATA" --threads "$THREADS" \
      | sed -n '/^eval_lockstep:/,$p'; } >> "$out"
fi
