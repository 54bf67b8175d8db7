#!/usr/bin/env bash
# The results table of docs/redcore.md: RedCore against its ablations on the synthetic dataset
# with imbalanced missing rates (m0, m1, m2 missing 20%, 50%, 80% of training samples), 3 seeds.
#
#   bash docs/redcore_table.sh            # from the repository root, with mmcore installed
#
# Two sweeps, because the zero imputer has no `recon` group for RedCore's balancer to weigh, so
# the grid cannot cross imputers with balancers: (1) redcore.vib under both balancers, (2)
# mmcore.zero with mmcore.uniform. Finished runs are skipped when the script is run again.
# BUDGET shortens the faithful 60-epoch recipe so the 9 runs fit in about 15 minutes on 2 busy
# CPU cores (see docs/redcore.md, "Results"); train.log_every only adds metrics.jsonl lines.
set -euo pipefail

OUT=${OUT:-runs/redcore-table}
SEEDS=${SEEDS:-0,1,2}
BUDGET=(train.epochs=20 train.schedule.constant_epochs=10 train.log_every=11)
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}  # one thread per run: the machine is shared

mmcore sweep recipes/redcore_synthetic.yaml "${BUDGET[@]}" \
  --grid balancer=redcore.relative_advantage,mmcore.uniform \
  --seeds "$SEEDS" --jobs 1 --out "$OUT/vib" --metrics macro_f1,accuracy

mmcore sweep recipes/redcore_synthetic.yaml "${BUDGET[@]}" model.imputer=mmcore.zero balancer=mmcore.uniform \
  --seeds "$SEEDS" --jobs 1 --out "$OUT/zero" --metrics macro_f1,accuracy

# One markdown table from both sweeps' results.csv: test split, average over the 7 conditions.
python - "$OUT" <<'EOF'
import sys
from pathlib import Path

from mmcore.sweep.aggregate import read_csv

out = Path(sys.argv[1])
rows = {
    "`redcore.vib` + `redcore.relative_advantage`": (out / "vib", "balancer", "redcore.relative_advantage"),
    "`redcore.vib` + `mmcore.uniform`": (out / "vib", "balancer", "mmcore.uniform"),
    "`mmcore.zero` + `mmcore.uniform`": (out / "zero", None, None),
}
print("| imputer + balancer | test macro-F1 | test accuracy | seeds |")
print("| --- | --- | --- | --- |")
for label, (sweep, key, value) in rows.items():
    cells = {}
    for r in read_csv(sweep / "results.csv"):
        if r["split"] == "test" and r["condition"] == "average" and (key is None or r[key] == value):
            cells[r["metric"]] = r
    f1, acc = cells["macro_f1"], cells["accuracy"]
    print(f"| {label} | {f1['mean']:.4f} ± {f1['std']:.4f} | {acc['mean']:.4f} ± {acc['std']:.4f} | {f1['n']} |")
EOF
