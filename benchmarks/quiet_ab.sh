#!/usr/bin/env bash
# Issue 25's A/B measurements for a quiet box, in one command: ~11 minutes on an idle 2-core box
# (~12 with bf16).
#
#   benchmarks/quiet_ab.sh OUT.md          # a markdown table in OUT.md, every run's JSON in OUT.md.jsonl
#   QUICK=1 benchmarks/quiet_ab.sh OUT.md  # tiny sizes, checks that the script works (numbers mean nothing)
#
# On the IEMOCAP-shaped files of make_iemocap.py (1200/300/300, seed 0; made under /tmp if DATA has
# none), the recipe recipes/redcore_iemocap.yaml, fp32 unless said, THREADS threads (default 2), each
# run its own process (benchmarks/bench_iemocap.py --case engine):
#   1. three interleaved repeats (the order alternates) of 2 epochs (20 steps) each of
#        default      the defaults (frames: auto, dropout_masks: auto, absent_rows: skip)
#        encode       absent_rows=encode (absent rows encoded too: the default before 131e118)
#        old-default  frames=padded dropout_masks=torch absent_rows=encode (the defaults before issue 25)
#        fast-fused   dropout_masks=fast optimizer fused (the fp32 opt-ins)
#        bf16         the same and precision=bf16, only where the CPU has avx512_bf16 or AMX (elsewhere
#                     torch emulates bf16: 6x slower per sample on this AMD EPYC box, bench_step.py)
#   2. one pair over 10 epochs (100 steps): eager defaults, then compile=true (COMPILE_TIMEOUT s at most,
#      default 400): time to the end of step 1 and of step 100, compilation included.
# Peak RSS is each run's own. Ratios are taken within a repeat; "x ref" divides by the reference
# code's medians that issue 25 measured on an idle box of this kind (91.5 samples/s, 496 evaluation
# items/s, 4.25 GB): quoted, not re-run here; benchmarks/vs_reference.sh runs the reference beside mmcore.
set -euo pipefail
out="${1:?usage: benchmarks/quiet_ab.sh OUT.md}"
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
PY="${PY:-python}"
THREADS="${THREADS:-2}"
if [[ "${QUICK:-0}" == 1 ]]; then
  DATA="${DATA:-/tmp/quiet_ab_quick}"; sizes=(256 32)
  REPEATS=1; EPOCHS=1; LONG_EPOCHS=2; COMPILE_TIMEOUT="${COMPILE_TIMEOUT:-240}"
else
  DATA="${DATA:-/tmp/quiet_ab_iemocap}"; sizes=(1200 300)
  REPEATS=3; EPOCHS=2; LONG_EPOCHS=10; COMPILE_TIMEOUT="${COMPILE_TIMEOUT:-400}"
fi
export OMP_NUM_THREADS="$THREADS" CUDA_VISIBLE_DEVICES=""
jsonl="$out.jsonl"
: > "$jsonl"
started=$SECONDS
echo "quiet_ab: $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $THREADS threads, load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
source benchmarks/iemocap_data.sh
iemocap_data "$DATA" "${sizes[@]}"

declare -A CONFIG=(
  [default]=""
  [encode]="train.absent_rows=encode"
  [old-default]="model.encoders.default.frames=padded train.dropout_masks=torch train.absent_rows=encode"
  [fast-fused]="train.dropout_masks=fast train.optimizer.implementation=fused"
  [bf16]="precision=bf16 train.dropout_masks=fast train.optimizer.implementation=fused"
  [compile]="compile=true"
)

# one LABEL REPEAT EPOCHS [TIMEOUT]: one engine run, its JSON line (label and repeat added) into $jsonl
one() {
  local label="$1" repeat="$2" epochs="$3" limit="${4:-0}" line
  local args=(benchmarks/bench_iemocap.py --case engine --threads "$THREADS" --device cpu
              "--override=dataset={type: corpora.iemocap, root: $DATA, fold: 1}" "--override=train.epochs=$epochs")
  for o in ${CONFIG[$label]}; do args+=("--override=$o"); done
  if line=$(timeout "$limit" "$PY" "${args[@]}" 2> "$out.$label.err" | tail -1); then
    echo "{\"label\": \"$label\", \"repeat\": $repeat, \"epochs\": $epochs, ${line#\{}" >> "$jsonl"
    rm -f "$out.$label.err"
  else
    echo "{\"label\": \"$label\", \"repeat\": $repeat, \"epochs\": $epochs, \"failed\": \"exit or timeout after ${limit}s, see $out.$label.err\"}" >> "$jsonl"
  fi
  echo "  [$((SECONDS - started)) s] $label (repeat $repeat) done" >&2
}

order=(default encode old-default fast-fused)
if grep -qE 'avx512_bf16|amx_bf16' /proc/cpuinfo; then order+=(bf16); fi
for ((r = 1; r <= REPEATS; r++)); do
  labels=("${order[@]}")
  if ((r % 2 == 0)); then for ((i = 0; i < ${#order[@]}; i++)); do labels[i]="${order[${#order[@]} - 1 - i]}"; done; fi
  for label in "${labels[@]}"; do one "$label" "$r" "$EPOCHS"; done
done
CONFIG[eager]=""
one eager 1 "$LONG_EPOCHS"
one compile 1 "$LONG_EPOCHS" "$COMPILE_TIMEOUT"

"$PY" - "$jsonl" "$out" "$((SECONDS - started))" "$THREADS" "$DATA" <<'PYEOF'
import json, statistics, sys
jsonl, out, seconds, threads, data = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
runs = [json.loads(line) for line in open(jsonl)]
REF = {"samples_per_s": 91.5, "eval_items_per_s": 496.0, "peak_rss_mb": 4250.0}
nan = float("nan")

def cell(values, fmt):
    values = [v for v in values if isinstance(v, (int, float)) and v == v]
    if not values:
        return "-"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"

def of(label, key, epochs=None):
    return [r.get(key, nan) for r in runs if r["label"] == label and (epochs is None or r["epochs"] == epochs)]

def paired(label, key, base="default"):
    ref = {r["repeat"]: r.get(key) for r in runs if r["label"] == base and "failed" not in r}
    return [r[key] / ref[r["repeat"]] for r in runs if r["label"] == label and r.get(key) and ref.get(r["repeat"])]

short = [l for l in ("default", "encode", "old-default", "fast-fused", "bf16") if of(l, "label")]
epochs = runs[0]["epochs"]
lines = [f"quiet_ab.sh: {len([r for r in runs if r['label'] in short]) // max(1, len(short))} interleaved repeat(s) of "
         f"{epochs} epoch(s) per configuration, {threads} threads, data {data}; {seconds} s in all. "
         "Median (min-max); 'x default' is the ratio within each repeat; 'x ref' uses the reference's quoted medians "
         "(91.5 samples/s, 496 items/s, 4250 MB).", ""]
rows = [("training samples/s", "samples_per_s", "{:.1f}"), ("samples per CPU-second", "samples_per_cpu_s", "{:.1f}"),
        ("evaluation items/s", "eval_items_per_s", "{:.0f}"), ("peak RSS (MB)", "peak_rss_mb", "{:.0f}"),
        ("call to end of step 1 (s)", "first_step_s", "{:.2f}")]
lines.append("| | " + " | ".join(short) + " |")
lines.append("|---|" + "---|" * len(short))
for name, key, fmt in rows:
    lines.append(f"| {name} | " + " | ".join(cell(of(l, key), fmt) for l in short) + " |")
    if any(l != "default" for l in short):
        lines.append(f"| {name}, x default | " + " | ".join("1" if l == "default" else cell(paired(l, key), "{:.2f}") for l in short) + " |")
    if key in REF:
        lines.append(f"| {name}, x ref | " + " | ".join(cell([v / REF[key] for v in of(l, key)], "{:.2f}") for l in short) + " |")
failed = [f"{r['label']} (repeat {r['repeat']}): {r['failed']}" for r in runs if "failed" in r]
long = {l: next((r for r in runs if r["label"] == l), None) for l in ("eager", "compile")}
if long["eager"]:
    lines += ["", f"eager against compile=true, {long['eager']['epochs']} epochs each, one pair (compilation included):", "",
              "| | eager | compile | compile / eager |", "|---|---|---|---|"]
    for name, key, fmt in [("steps", "steps", "{:.0f}"), ("call to end of step 1 (s)", "first_step_s", "{:.1f}"),
                           ("call to end of the last step (s)", "last_step_s", "{:.1f}"),
                           ("training samples/s (steps after the first of each epoch)", "samples_per_s", "{:.1f}"),
                           ("peak RSS (MB)", "peak_rss_mb", "{:.0f}")]:
        e, c = long["eager"].get(key, nan), (long["compile"] or {}).get(key, nan)
        ratio = c / e if isinstance(c, (int, float)) and e else nan
        lines.append(f"| {name} | {cell([e], fmt)} | {cell([c], fmt)} | {cell([ratio], '{:.2f}')} |")
if failed:
    lines += ["", "Failed or timed out: " + "; ".join(failed)]
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PYEOF
