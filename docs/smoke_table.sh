#!/usr/bin/env bash
# Issue 10's smoke table: every installed balancer x {mmcore.zero, redcore.vib} on UCI Handwritten
# (6 modalities) at the quickstart's budget (recipes/quickstart.yaml: 30 epochs, linear decay after
# 15), one seed, plus the new imputers with uniform weights. One seed is a smoke test, not a
# comparison: it shows that each method trains end to end, nothing about which is better.
#
#   docs/smoke_table.sh            run (or finish) the sweeps, then print the table
#   JOBS=2 docs/smoke_table.sh     two runs at a time
#   docs/smoke_table.sh --tables   only print the table
set -euo pipefail
JOBS="${JOBS:-1}"
OUT="${OUT:-runs/smoke}"
RECIPE=recipes/quickstart.yaml
export OMP_NUM_THREADS=1   # one thread per run, whatever JOBS is
VIB='{type: redcore.vib, hidden: [128, 64, 32], blocks: 5}'
NO_TARGET=baselines.ogm_ge,baselines.pmr,baselines.agm,baselines.mmpareto,baselines.inforeg

if [[ "${1:-}" != "--tables" ]]; then
  # VIB has loss groups recon and kl: the weighing balancers weigh recon (their default).
  mmcore sweep "$RECIPE" "model.imputer=$VIB" \
    --grid "balancer=mmcore.uniform,redcore.relative_advantage,baselines.inverse_rate,baselines.gblending,$NO_TARGET" \
    --jobs "$JOBS" --out "$OUT/vib" --metrics macro_f1
  # mmcore.zero has no loss group of its own: the weighing balancers weigh the unimodal heads'.
  mmcore sweep "$RECIPE" model.imputer=mmcore.zero balancer=mmcore.uniform \
    --grid "balancer=mmcore.uniform,{type: redcore.relative_advantage, target: unimodal},{type: baselines.inverse_rate, target: unimodal},{type: baselines.gblending, target: unimodal},$NO_TARGET" \
    --jobs "$JOBS" --out "$OUT/zero" --metrics macro_f1
  # The imputers added with the balancers, with uniform weights.
  mmcore sweep "$RECIPE" balancer=mmcore.uniform \
    --grid "model.imputer=baselines.shaspec,baselines.neighbours" \
    --jobs "$JOBS" --out "$OUT/imputers" --metrics macro_f1
fi

python - "$OUT" <<'PY'
"""The table: test macro-F1 averaged over the 63 conditions, and over the 1- and 2-view ones."""
import json
import sys
from pathlib import Path

out = Path(sys.argv[1])


def views(condition: str) -> int:
    return condition.count("+") + 1


def row(run_dir: Path) -> tuple[str, str, str, str, str]:
    evaluation = json.loads((run_dir / "eval.json").read_text())
    test = evaluation["results"]["test"]
    by_views = {}
    for name, metrics in test.items():
        if name != "average":
            by_views.setdefault(views(name), []).append(metrics["macro_f1"])
    one, two = (sum(by_views[k]) / len(by_views[k]) for k in (1, 2))
    return (f"{test['average']['macro_f1']:.3f}", f"{one:.3f}", f"{two:.3f}",
            str(evaluation["best_epoch"]), f"{evaluation['cost']['train_samples_per_s']:.0f}")


print("| imputer | balancer | test macro-F1 (63) | 1-view | 2-view | best epoch | train samples/s |")
print("|---|---|---|---|---|---|---|")
for sweep in ("vib", "zero", "imputers"):
    info_file = out / sweep / "sweep.json"
    if not info_file.is_file():
        continue
    info = json.loads(info_file.read_text())
    for point in info["points"]:
        values = point["values"]
        imputer = values.get("model.imputer", {"vib": "redcore.vib", "zero": "mmcore.zero"}.get(sweep))
        balancer = values.get("balancer", "mmcore.uniform")
        imputer = imputer["type"] if isinstance(imputer, dict) else imputer
        target = balancer.get("target") if isinstance(balancer, dict) else None
        balancer = (balancer["type"] if isinstance(balancer, dict) else balancer) + (f" ({target})" if target else "")
        run_dir = out / sweep / next(iter(point["runs"].values()))
        cells = row(run_dir) if (run_dir / "eval.json").is_file() else ("not finished",) + ("",) * 4
        print(f"| {imputer} | {balancer} | " + " | ".join(cells) + " |")
PY
