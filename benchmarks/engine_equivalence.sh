#!/usr/bin/env bash
# Engine equivalence: the numbers a refactor must not change, as one hash per run.
#
#   benchmarks/engine_equivalence.sh [OUT_DIR]        # prints one "<case> <sha256>" line per case
#   CASES="quickstart resume" benchmarks/engine_equivalence.sh   # only those cases (the default: all four)
#
# Runs the tree this script lives in (PYTHONPATH puts its mmcore and its plugins first), on the CPU:
#   quickstart      recipes/quickstart.yaml, 3 epochs, 1 process
#   gloo2           the same on 2 processes (mmcore run --nproc 2, gloo)
#   resume          the same as quickstart, stopped at step 20 (mid-epoch, mid-log interval) and resumed
#   resume_gloo2    the same as gloo2, stopped at step 20 and resumed on 2 processes
# Each case hashes the weights of checkpoints/best and checkpoints/last (tensor names, dtypes,
# shapes and bytes), the optimiser tensors of last, eval.json without its "cost" (timings) and
# metrics.jsonl without wall-clock fields. To compare two versions, run the script from each tree
# (for the old one: git archive <commit> | tar -x -C DIR, copy this script in) and diff the output;
# resume must also print the same hash as quickstart, resume_gloo2 the same as gloo2.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
export PYTHONPATH="$root:$root/plugins/redcore:$root/plugins/corpora:$root/plugins/baselines${PYTHONPATH:+:$PYTHONPATH}"
export CUDA_VISIBLE_DEVICES=""
cd "$root"
common=(train.epochs=3 device=cpu)
mm() { python -m mmcore "$@" --no-progress > "$out/last.log" 2>&1 || { cat "$out/last.log"; exit 1; }; }
rundir() { find "$out/$1" -name recipe.yaml -printf '%h\n' | head -1; }

cases="${CASES:-quickstart gloo2 resume resume_gloo2}"
wants() { [[ " $cases " == *" $1 "* ]]; }

if wants quickstart; then mm run recipes/quickstart.yaml "${common[@]}" "output=$out/quickstart"; fi
if wants gloo2; then mm run recipes/quickstart.yaml "${common[@]}" "output=$out/gloo2" --nproc 2; fi
if wants resume; then
  mm run recipes/quickstart.yaml "${common[@]}" "output=$out/resume" train.max_steps=20
  mm resume "$(rundir resume)" train.max_steps=null
fi
if wants resume_gloo2; then
  mm run recipes/quickstart.yaml "${common[@]}" "output=$out/resume_gloo2" train.max_steps=20 --nproc 2
  mm resume "$(rundir resume_gloo2)" train.max_steps=null --nproc 2
fi

for case in $cases; do
  python - "$(rundir $case)" "$case" <<'PY'
import hashlib, json, sys
from pathlib import Path
from safetensors.torch import load_file
run, case = Path(sys.argv[1]), sys.argv[2]
h = hashlib.sha256()
for name in ("best/model.safetensors", "last/model.safetensors", "last/optimizer.safetensors"):
    tensors = load_file(str(run / "checkpoints" / name))
    for key in sorted(tensors):
        t = tensors[key].contiguous()
        h.update(f"{name}:{key}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
ev = json.loads((run / "eval.json").read_text())
ev.pop("cost", None)
h.update(json.dumps(ev, sort_keys=True).encode())
for line in (run / "metrics.jsonl").read_text().splitlines():
    row = {k: v for k, v in json.loads(line).items() if k not in ("time", "seconds", "wall", "elapsed")}
    h.update(json.dumps(row, sort_keys=True).encode())
print(case, h.hexdigest())
PY
done
