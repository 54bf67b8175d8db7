"""Tables and interaction tests of docs/protocol.sh's sweeps, as markdown for docs/results.md.

    python docs/protocol_tables.py runs/protocol imbalanced balanced

Per preset: test macro-F1 (mean ± std over seeds) averaged over the 7 conditions, over the
single-modality conditions (a, v, l) and per condition; paired comparisons of RedCore (VIB +
relative advantage) against each other method on the 7-condition average (paired t-test and
Wilcoxon signed-rank over seeds, Holm-corrected within the family of one preset; Cohen's d_z).
The interaction test the paper's claim needs: for each seed, the gain g = RedCore − X under
the imbalanced preset minus the same gain under the balanced one, tested against 0 (paired
t-test on the per-seed gains; seeds pair because a seed fixes initialisation and batch order
while the data are the same). Cost: parameters and training samples/s from each run's eval.json.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path
from typing import Callable

import yaml

from mmcore import stats

CONDITIONS = ("a", "v", "l", "a+v", "a+l", "v+l", "a+v+l")
SINGLE = ("a", "v", "l")
REDCORE = "vib + relative_advantage"


def method(values: dict) -> str:
    imputer, balancer = values["model.imputer"], values["balancer"]
    name = imputer["type"].split(".", 1)[1] if isinstance(imputer, dict) else imputer.split(".", 1)[1]
    if isinstance(imputer, dict) and "hide_rate" in imputer:
        name += f" (hide {imputer['hide_rate']})"
    balancer = balancer["type"] if isinstance(balancer, dict) else balancer
    name = f"{name} + {balancer.split('.', 1)[1]}"
    dropout = float(values.get("train.modality_dropout", 0.0))
    return name + (f" + modality dropout {dropout}" if dropout else "")


def load(preset: Path) -> dict[str, dict[int, dict]]:
    """method -> seed -> {"test": results, "cost": ..., "last": ...} of the finished runs of every
    sweep under ``preset`` (one per imputer: docs/protocol.sh)."""
    out: dict[str, dict[int, dict]] = {}
    for info_file in sorted(preset.glob("*/sweep.json")):
        _load_sweep(info_file.parent, out)
    return out


def _load_sweep(sweep: Path, out: dict[str, dict[int, dict]]) -> None:
    info = json.loads((sweep / "sweep.json").read_text())
    for point in info["points"]:
        base = info["base_recipe"]  # the sweep's recipe with its overrides: what a grid does not vary
        values = {"model.imputer": base["model"]["imputer"], "balancer": base["balancer"],
                  "train.modality_dropout": base["train"].get("modality_dropout", 0.0), **point["values"]}
        runs = out.setdefault(method(values), {})
        for seed, rel in point["runs"].items():
            path = sweep / rel / "eval.json"
            if path.is_file():
                evaluation = json.loads(path.read_text())
                epochs = yaml.safe_load((sweep / rel / "recipe.yaml").read_text())["train"]["epochs"]
                runs[int(seed)] = {"test": evaluation["results"]["test"], "cost": evaluation["cost"],
                                   "last": evaluation["best_epoch"] == epochs}


def score(run: dict, conditions: tuple[str, ...] = CONDITIONS) -> float:
    return statistics.fmean(run["test"][c]["macro_f1"] for c in conditions)


def mean_std(values: list[float]) -> str:
    if not values:
        return "—"
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.4f} ± {sd:.4f}"


def p_text(p: float) -> str:
    return "—" if math.isnan(p) else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


Score = Callable[[dict], float]  # one run -> the figure a comparison is made on
SCORES: dict[str, Score] = {"7-condition": lambda run: score(run)}


def preset_tables(name: str, runs: dict[str, dict[int, dict]]) -> None:
    print(f"\n### Preset `{name}`\n")
    print("| method | seeds | 7-condition avg | a, v, l avg | " + " | ".join(CONDITIONS) + " | selected last epoch |")
    print("|---|---|---|---|" + "---|" * len(CONDITIONS) + "---|")
    for m, seeds in runs.items():
        if not seeds:
            print(f"| {m} | 0 | not finished |" + " |" * (len(CONDITIONS) + 2))
            continue
        per = [mean_std([s["test"][c]["macro_f1"] for s in seeds.values()]).split(" ±")[0] for c in CONDITIONS]
        print(f"| {m} | {len(seeds)} | {mean_std([score(s) for s in seeds.values()])} | "
              f"{mean_std([score(s, SINGLE) for s in seeds.values()])} | " + " | ".join(per)
              + f" | {sum(s['last'] for s in seeds.values())}/{len(seeds)} |")


def comparisons(runs: dict[str, dict[int, dict]], scores: dict[str, Score]) -> None:
    """RedCore against each other method on each score, paired over seeds, Holm within a score."""
    if REDCORE not in runs:
        return
    others = [m for m in runs if m != REDCORE and runs[m]]
    print(f"\nRedCore against each method (paired over seeds; Holm over {len(others)} comparisons per average):\n")
    print("| average | against | seeds | mean difference | t-test p | Holm p | Wilcoxon p | Cohen's d_z | verdict |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, f in scores.items():
        found = [stats.compare(REDCORE, {k: f(v) for k, v in runs[REDCORE].items()},
                               m, {k: f(v) for k, v in runs[m].items()}) for m in others]
        adjusted = stats.holm([c.t.p if c.t else math.nan for c in found])
        for c, p in zip(found, adjusted):
            if c.t is None:
                print(f"| {label} | {c.b} | {len(c.seeds)} | — | — | — | — | — | n/a |")
                continue
            print(f"| {label} | {c.b} | {len(c.seeds)} | {c.t.mean_diff:+.4f} | {p_text(c.t.p)} | {p_text(p)} | "
                  f"{p_text(c.w.p)} | {c.t.cohen_dz:+.2f} | {stats.verdict(c.t.mean_diff, p)} |")


def interaction(imbalanced: dict[str, dict[int, dict]], balanced: dict[str, dict[int, dict]],
                scores: dict[str, Score]) -> None:
    print("\n### The interaction: is RedCore's gain larger under imbalanced rates?\n")
    print("Per seed, gain = RedCore − method; the test is on gain(imbalanced) − gain(balanced) over "
          "seeds (paired t-test; Holm over the methods within one average).\n")
    print("| average | method | seeds | gain, imbalanced | gain, balanced | difference | t-test p | Holm p | Cohen's d_z |")
    print("|---|---|---|---|---|---|---|---|---|")
    if REDCORE not in imbalanced or REDCORE not in balanced:
        return
    for label, f in scores.items():
        rows = []
        for m in imbalanced:
            if m == REDCORE or m not in balanced:
                continue
            seeds = sorted(set(imbalanced[m]) & set(balanced[m]) & set(imbalanced[REDCORE]) & set(balanced[REDCORE]))
            g_imb = [f(imbalanced[REDCORE][s]) - f(imbalanced[m][s]) for s in seeds]
            g_bal = [f(balanced[REDCORE][s]) - f(balanced[m][s]) for s in seeds]
            rows.append((m, seeds, g_imb, g_bal, stats.paired_t(g_imb, g_bal) if len(seeds) >= 2 else None))
        adjusted = stats.holm([r[4].p if r[4] else math.nan for r in rows])
        for (m, seeds, g_imb, g_bal, test), p in zip(rows, adjusted):
            if test is None:
                print(f"| {label} | {m} | {len(seeds)} | — | — | — | — | — | — |")
                continue
            print(f"| {label} | {m} | {len(seeds)} | {statistics.fmean(g_imb):+.4f} | {statistics.fmean(g_bal):+.4f} | "
                  f"{test.mean_diff:+.4f} | {p_text(test.p)} | {p_text(p)} | {test.cohen_dz:+.2f} |")


def costs(runs: dict[str, dict[int, dict]]) -> None:
    print("\n### Cost (from eval.json; one thread per run, two runs at a time on 2 cores)\n")
    print("| method | parameters | training samples/s |")
    print("|---|---|---|")
    for m, seeds in runs.items():
        if not seeds:
            continue
        first = next(iter(seeds.values()))["cost"]
        rate = statistics.fmean(s["cost"]["train_samples_per_s"] for s in seeds.values())
        print(f"| {m} | {sum(first['parameters'].values()):,} | {rate:.0f} |")


def report(root: Path, presets: list[str], table: Callable[[str, dict[str, dict[int, dict]]], None],
           scores: dict[str, Score]) -> None:
    """Every preset's ``table`` and comparisons, the interaction when both presets ran, the cost."""
    loaded = {p: load(root / p) for p in presets if list((root / p).glob("*/sweep.json"))}
    for name, runs in loaded.items():
        table(name, runs)
        comparisons(runs, scores)
    if "imbalanced" in loaded and "balanced" in loaded:
        interaction(loaded["imbalanced"], loaded["balanced"], scores)
    if loaded:
        costs(next(iter(loaded.values())))


if __name__ == "__main__":
    report(Path(sys.argv[1]), sys.argv[2:], preset_tables, SCORES)
