#!/usr/bin/env bash
# The commands behind docs/results_previous.md: every imputer × every balancer on UCI Handwritten with
# imbalanced missing rates, five seeds, then the markdown tables of that page.
#
#   docs/results.sh                 run (or finish) the three sweeps, then print the tables
#   JOBS=2 docs/results.sh          two runs at a time
#   docs/results.sh --tables        only print the tables from the finished sweeps
#
# A sweep started again skips finished runs and resumes interrupted ones, so this script can be
# stopped (Ctrl-C in its terminal) and started again at no cost. Started in the background it
# ignores SIGINT; stop it by signalling the sweep *and* its worker processes, since a worker
# left running would train the same run as the restarted sweep. Run it from the repository root with the
# project's virtualenv active and the plugins installed (baselines, redcore, corpora).
set -euo pipefail

JOBS="${JOBS:-1}"
OUT="${OUT:-runs/results}"
RECIPE=recipes/redcore_handwritten.yaml
# One thread per run whatever --jobs is, so the numbers do not depend on how many ran at once.
export OMP_NUM_THREADS=1
# The per-run budget (docs/results_previous.md, "Protocol"): 15 epochs instead of the recipe's 40,
# full learning rate for 8 of them, then linear decay to 0. Evaluation keeps every condition.
BUDGET=(train.epochs=15 train.schedule.constant_epochs=8)
SEEDS=0-4
# The recipe's VIB node, written out: a bare `redcore.vib` would swap the node and drop its sizes.
VIB='{type: redcore.vib, hidden: [128, 64, 32], blocks: 5}'

if [[ "${1:-}" != "--tables" ]]; then
  # 1. Imputers with a reconstruction loss group: inverse_rate and relative_advantage weigh `recon`.
  mmcore sweep "$RECIPE" "${BUDGET[@]}" \
    --grid "model.imputer=$VIB,baselines.mmin" \
    --grid "balancer=mmcore.uniform,baselines.inverse_rate,baselines.ogm_ge,redcore.relative_advantage" \
    --seeds "$SEEDS" --jobs "$JOBS" --out "$OUT/recon" --metrics macro_f1,accuracy
  # 2. Imputers without one: the two loss-weighting balancers weigh the unimodal heads' losses.
  mmcore sweep "$RECIPE" "${BUDGET[@]}" \
    --grid "model.imputer=mmcore.zero,baselines.missing_token,baselines.mean" \
    --grid "balancer=mmcore.uniform,{type: baselines.inverse_rate, target: unimodal},baselines.ogm_ge,{type: redcore.relative_advantage, target: unimodal}" \
    --seeds "$SEEDS" --jobs "$JOBS" --out "$OUT/no-recon" --metrics macro_f1,accuracy
  # 3. Control: RedCore's β has unit L2 norm, so with six modalities it also scales the recon
  #    group's total weight by 1/√6 (β = 0.408 each if equal). The same total with equal weights:
  mmcore sweep "$RECIPE" "${BUDGET[@]}" \
    --grid "model.imputer={type: redcore.vib, hidden: [128, 64, 32], blocks: 5, recon_weight: 0.061237}" \
    --grid "balancer=mmcore.uniform" \
    --seeds "$SEEDS" --jobs "$JOBS" --out "$OUT/control" --metrics macro_f1,accuracy
fi

# The tables of docs/results_previous.md, from the sweeps' results.csv and the runs' eval.json.
python - "$OUT/recon" "$OUT/no-recon" "$OUT/control" <<'PY'
"""Markdown tables for docs/results_previous.md from finished `mmcore sweep` directories.

Means and standard deviations come from each sweep's results.csv (what `mmcore sweep` computed);
the paired comparisons read each run's eval.json, because a paired test needs the per-seed values.
"""
import csv
import json
import math
import statistics
import sys
from pathlib import Path

import yaml

from mmcore.report import stats as paired_stats

METRICS = ("macro_f1", "accuracy")
NAMES = {"macro_f1": "macro-F1", "accuracy": "accuracy"}
AVERAGE = "average"
REDCORE = ("redcore.vib", "redcore.relative_advantage")


def load_sweep(sweep_dir):
    """One dict per grid point: imputer, balancer, target, csv stats, per-seed eval results, failures."""
    info = json.loads((sweep_dir / "sweep.json").read_text())
    stats = {}
    csv_path = sweep_dir / "results.csv"
    if csv_path.is_file():
        with open(csv_path, newline="") as fh:
            for row in csv.DictReader(fh):
                if row["split"] == "test":
                    key = (row["point"], row["condition"], row["metric"])
                    stats[key] = (float(row["mean"]), float(row["std"]), int(row["n"]))
    points = []
    for p in info["points"]:
        seeds, failed, target, last_best = {}, [], None, 0
        for seed, rel in p["runs"].items():
            run_dir = sweep_dir / rel
            recipe_file = run_dir / "recipe.yaml"
            if recipe_file.is_file() and target is None:
                balancer = yaml.safe_load(recipe_file.read_text())["balancer"]
                target = balancer.get("target")
            if (run_dir / "eval.json").is_file():
                evaluation = json.loads((run_dir / "eval.json").read_text())
                seeds[int(seed)] = evaluation["results"]["test"]
                epochs = yaml.safe_load(recipe_file.read_text())["train"]["epochs"]
                last_best += evaluation["best_epoch"] == epochs
            else:
                log = sweep_dir / "logs" / p["slug"] / f"seed{seed}.log"
                lines = [ln for ln in log.read_text().splitlines() if ln.strip()] if log.is_file() else []
                failed.append((int(seed), lines[-1].strip() if lines else "not run"))
        imputer = p["values"]["model.imputer"]
        balancer = p["values"]["balancer"]
        extra = {k: v for k, v in imputer.items() if k not in ("type", "hidden", "blocks")} if isinstance(imputer, dict) else {}
        points.append({
            "extra": extra,
            "slug": p["slug"],
            "imputer": imputer["type"] if isinstance(imputer, dict) else imputer,
            "balancer": balancer["type"] if isinstance(balancer, dict) else balancer,
            "target": target,
            "stats": {(c, m): v for (s, c, m), v in stats.items() if s == p["slug"]},
            "seeds": seeds,
            "failed": failed,
            "last_best": last_best,
        })
    return points


def short(name):
    return name.split(".", 1)[1]


def label(p):
    """`vib + relative_advantage`, with the weighed loss group where it is not `recon`."""
    text = f"{short(p['imputer'])} + {short(p['balancer'])}"
    if p["balancer"] in ("baselines.inverse_rate", "redcore.relative_advantage") and p["target"] != "recon":
        text += f" ({p['target']})"
    return text + "".join(f" [{k}={v}]" for k, v in p["extra"].items())


def cell(p, condition, metric):
    s = p["stats"].get((condition, metric))
    if s is None:
        return "failed"
    text = f"{s[0]:.4f} ± {s[1]:.4f}"
    return text if s[2] == 5 else f"{text} (n={s[2]})"


def grid_tables(points, imputers, balancers):
    for metric in METRICS:
        print(f"\n**Test {NAMES[metric]}, average over the 63 conditions (mean ± std over seeds)**\n")
        print("| imputer | " + " | ".join(short(b) for b in balancers) + " |")
        print("| --- |" + " ---: |" * len(balancers))
        for imp in imputers:
            row = []
            for bal in balancers:
                p = next((q for q in points if q["imputer"] == imp and q["balancer"] == bal), None)
                if p is None:
                    row.append("not run")
                    continue
                mark = " †" if bal in ("baselines.inverse_rate", "redcore.relative_advantage") and p["target"] != "recon" else ""
                row.append(cell(p, AVERAGE, metric) + mark)
            print(f"| {short(imp)} | " + " | ".join(row) + " |")


def paired(a, b, condition, metric):
    """Mean of a − b over shared seeds and its verdict by a two-sided paired t-test at 5 % (mmcore.report.stats)."""
    c = paired_stats.compare("a", {s: r[condition][metric] for s, r in a["seeds"].items()},
                      "b", {s: r[condition][metric] for s, r in b["seeds"].items()})
    if c.t is None:
        return math.nan, "n/a"
    return c.mean_diff, paired_stats.verdict(c.mean_diff, c.t.p)


def conditions_of(points):
    p = next(q for q in points if q["seeds"])
    first = next(iter(p["seeds"].values()))
    return [c for c in first if c != AVERAGE]


def by_size(points, ranked, conditions):
    print("\n**Test macro-F1 by number of present modalities (mean over the conditions of that size; "
          "mean ± std over seeds)**\n")
    sizes = sorted({c.count("+") + 1 for c in conditions})
    print("| configuration | " + " | ".join(f"{k} present" for k in sizes) + " | average |")
    print("| --- |" + " ---: |" * (len(sizes) + 1))
    for p in ranked:
        row = []
        for k in sizes:
            group = [c for c in conditions if c.count("+") + 1 == k]
            values = [statistics.mean(r[c]["macro_f1"] for c in group) for r in p["seeds"].values()]
            sd = statistics.stdev(values) if len(values) > 1 else 0.0
            row.append(f"{statistics.mean(values):.4f} ± {sd:.4f}")
        print(f"| {label(p)} | " + " | ".join(row) + f" | {cell(p, AVERAGE, 'macro_f1')} |")


def breakdown(shown, conditions):
    print("\n**Per-condition test results (mean ± std over seeds)**\n")
    head = [f"{label(p)} {NAMES[m]}" for p in shown for m in METRICS]
    print("| condition | " + " | ".join(head) + " |")
    print("| --- |" + " ---: |" * len(head))
    for c in [AVERAGE, *conditions]:
        print(f"| {c} | " + " | ".join(cell(p, c, m) for p in shown for m in METRICS) + " |")


def verdicts(redcore, others, conditions):
    print("\n**RedCore (vib + relative_advantage) against every other configuration: paired difference "
          "(RedCore − other) of the test average over seeds, two-sided paired t-test at 5 %**\n")
    print("| other configuration | Δ macro-F1 | verdict | Δ accuracy | verdict |")
    print("| --- | ---: | --- | ---: | --- |")
    for p in others:
        f1, v1 = paired(redcore, p, AVERAGE, "macro_f1")
        acc, v2 = paired(redcore, p, AVERAGE, "accuracy")
        print(f"| {label(p)} | {f1:+.4f} | {v1} | {acc:+.4f} | {v2} |")
    for rival in others[:1]:
        counts = {"win": [], "tie": [], "loss": [], "n/a": []}
        for c in conditions:
            counts[paired(redcore, rival, c, "macro_f1")[1]].append(c)
        print(f"\nPer condition, RedCore against the best other configuration ({label(rival)}), macro-F1, "
              f"same test: {len(counts['win'])} wins, {len(counts['tie'])} ties, {len(counts['loss'])} losses "
              f"of {len(conditions)} conditions.")
        for verdict, plural in (("win", "wins"), ("loss", "losses")):
            if counts[verdict]:
                print(f"- {plural}: " + ", ".join(f"`{c}`" for c in counts[verdict]))


def main(dirs):
    points = [p for d in dirs if (Path(d) / "sweep.json").is_file() for p in load_sweep(Path(d))]
    grid = [p for p in points if not p["extra"]]  # the control has its own row in the ranking
    imputers = list(dict.fromkeys(p["imputer"] for p in grid))
    balancers = list(dict.fromkeys(p["balancer"] for p in grid))
    grid_tables(grid, imputers, balancers)
    print("\n† weighs the unimodal heads' losses (`target: unimodal`): these imputers have no `recon` group.")
    failures = [(label(p), s, e) for p in points for s, e in p["failed"]]
    if failures:
        print("\n**Runs without results** (excluded from every table):\n")
        for name, seed, error in failures:
            print(f"- {name}, seed {seed}: {error}")
    done = [p for p in points if p["seeds"]]
    ranked = sorted(done, key=lambda p: -p["stats"].get((AVERAGE, "macro_f1"), (-1.0,))[0])
    print("\n**Ranking by test average macro-F1**\n")
    print("| rank | configuration | macro-F1 | accuracy | runs whose best epoch was the last |")
    print("| ---: | --- | ---: | ---: | ---: |")
    for i, p in enumerate(ranked, 1):
        print(f"| {i} | {label(p)} | {cell(p, AVERAGE, 'macro_f1')} | {cell(p, AVERAGE, 'accuracy')} "
              f"| {p['last_best']} of {len(p['seeds'])} |")
    conditions = conditions_of(done)
    by_size(points, ranked, conditions)
    redcore = next((p for p in done if (p["imputer"], p["balancer"]) == REDCORE and not p["extra"]), None)
    shown = ranked[:2] + ([redcore] if redcore is not None and redcore not in ranked[:2] else [])
    breakdown(shown, conditions)
    if redcore is not None:
        verdicts(redcore, [p for p in ranked if p is not redcore], conditions)


if __name__ == "__main__":
    main(sys.argv[1:])
PY
