#!/usr/bin/env bash
# Issue 10's regression check: every method that applies to regression, one short run each on a
# small synthetic regression set (3 vector modalities, each a noisy linear view of a shared 4-d
# factor; the target a fixed linear function of it, clipped to [-3, 3]; 630/135/135 samples),
# imbalanced missing rates, 12 epochs, selected on val.mae. PMR, AGM and InfoReg are defined on
# class probabilities and are rejected for regression by `mmcore validate`; the last run shows it.
#
#   docs/regression_smoke.sh      (OUT=runs/regression by default)
set -euo pipefail
OUT="${OUT:-runs/regression}"
export OMP_NUM_THREADS=1
mkdir -p "$OUT/data"
python - "$OUT/data" <<'PY'
import sys
import torch
from safetensors.torch import save_file

root = sys.argv[1]
gen = torch.Generator().manual_seed(0)
n, dims = 900, {"a": 12, "b": 8, "c": 16}
factor = torch.randn(n, 4, generator=gen)
target = (factor @ torch.tensor([1.0, -0.5, 0.8, 0.3])).clamp(-3, 3)
x = {m: factor @ torch.randn(4, d, generator=gen) + 0.7 * torch.randn(n, d, generator=gen) for m, d in dims.items()}
for split, (lo, hi) in {"train": (0, 630), "val": (630, 765), "test": (765, 900)}.items():
    tensors = {f"x.{m}": v[lo:hi].contiguous() for m, v in x.items()}
    tensors["target"] = target[lo:hi].contiguous()
    tensors["ids"] = torch.arange(lo, hi, dtype=torch.int64)
    save_file(tensors, f"{root}/{split}.safetensors", metadata={"task": "regression", "modalities": "a,b,c"})
PY
cat > "$OUT/recipe.yaml" <<YAML
name: regression-smoke
seed: 0
dataset: {type: corpora.features, root: $OUT/data}
missing:
  train: {rates: {a: 0.2, b: 0.5, c: 0.6}, policy: fixed, min_present: 1}
  eval: {conditions: all}
model:
  dim: 32
  encoders: {default: {type: mmcore.mlp, layers: [64], dropout: 0.1}}
  imputer: {type: redcore.vib, hidden: [64, 32, 16], blocks: 2}
  fusion: {type: mmcore.concat, layers: [64], dropout: 0.1}
  unimodal_heads: {layers: [32], weight: 1.0}
balancer: {type: mmcore.uniform}
train: {epochs: 12, batch_size: 64, optimizer: {type: adam, lr: 2.0e-3}, select: val.mae, log_every: 100}
logging: [{type: mmcore.jsonl}]
YAML
run() {  # run <label> <overrides...>
  local label="$1"; shift
  if mmcore run "$OUT/recipe.yaml" output="$OUT/$label" --no-progress "$@" > "$OUT/$label.log" 2>&1; then
    python -c "import json,glob,sys; e=json.load(open(sorted(glob.glob(sys.argv[1]+'/*/*/eval.json'))[-1])); t=e['results']['test']['average']; print(f'| {sys.argv[2]} | {t[\"mae\"]:.3f} | {t[\"corr\"]:.3f} |')" "$OUT/$label" "$label"
  else
    echo "| $label | rejected: $(tail -n 1 "$OUT/$label.log" | cut -c1-160) | |"
  fi
}
echo "| method (imputer + balancer) | test MAE (avg over 7 conditions) | test corr |"
echo "|---|---|---|"
for b in mmcore.uniform redcore.relative_advantage baselines.inverse_rate baselines.ogm_ge baselines.mmpareto baselines.gblending; do
  run "vib+${b#*.}" balancer=$b
done
for i in mmcore.zero baselines.mmin baselines.shaspec baselines.neighbours; do
  run "${i#*.}+uniform" model.imputer=$i
done
run "zero+pmr" model.imputer=mmcore.zero balancer=baselines.pmr
