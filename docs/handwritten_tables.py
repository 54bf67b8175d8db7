"""Tables of docs/protocol.sh's Handwritten sweeps, as markdown for docs/results.md.

    python docs/handwritten_tables.py runs/protocol/handwritten imbalanced balanced

Issue 11 asks for the 1-view and 2-view averages next to the 63-condition one: 42 of the 63
conditions keep three or more of the six views, where every method saturates. Per method: test
macro-F1 (mean ± std over seeds) over all conditions, the 6 one-view and the 15 two-view
conditions; then RedCore against each other method on each of the three averages (paired
t-test and Wilcoxon over seeds, Holm over the methods within one average; Cohen's d_z). With
both presets, the interaction test of docs/protocol_tables.py on each average: per seed,
gain(imbalanced) − gain(balanced), gain = RedCore − method. The runs are read as
docs/protocol_tables.py reads them.
"""

from __future__ import annotations

import math
import statistics
import sys
from pathlib import Path

from protocol_tables import REDCORE, costs, load, mean_std, p_text

from mmcore import stats


def views(condition: str) -> int:
    return condition.count("+") + 1


def average(run: dict, n_views: int | None) -> float:
    """Mean test macro-F1 over the conditions with ``n_views`` views (all of them for None)."""
    chosen = [c for c in run["test"] if c != "average" and (n_views is None or views(c) == n_views)]
    return statistics.fmean(run["test"][c]["macro_f1"] for c in chosen)


AVERAGES = {"all conditions": None, "1-view": 1, "2-view": 2}


def preset_tables(name: str, runs: dict[str, dict[int, dict]]) -> None:
    print(f"\n### Preset `{name}`\n")
    runs = {m: seeds for m, seeds in runs.items() if seeds}  # methods with a finished run
    if not runs:
        print("no finished run yet")
        return
    n = len([c for c in next(iter(next(iter(runs.values())).values()))["test"] if c != "average"])
    print(f"| method | seeds | {n}-condition avg | 1-view avg | 2-view avg | selected last epoch |")
    print("|---|---|---|---|---|---|")
    for m, seeds in runs.items():
        cells = [mean_std([average(s, k) for s in seeds.values()]) for k in AVERAGES.values()]
        print(f"| {m} | {len(seeds)} | " + " | ".join(cells) + f" | {sum(s['last'] for s in seeds.values())}/{len(seeds)} |")
    if REDCORE not in runs:
        return
    others = [m for m in runs if m != REDCORE]
    print(f"\nRedCore against each method (paired over seeds; Holm over {len(others)} comparisons per average):\n")
    print("| average | against | seeds | mean difference | t-test p | Holm p | Wilcoxon p | Cohen's d_z | verdict |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, k in AVERAGES.items():
        comparisons = [stats.compare(REDCORE, {i: average(v, k) for i, v in runs[REDCORE].items()},
                                     m, {i: average(v, k) for i, v in runs[m].items()}) for m in others]
        adjusted = stats.holm([c.t.p if c.t else math.nan for c in comparisons])
        for c, p in zip(comparisons, adjusted):
            if c.t is None:
                print(f"| {label} | {c.b} | {len(c.seeds)} | — | — | — | — | — | n/a |")
                continue
            print(f"| {label} | {c.b} | {len(c.seeds)} | {c.t.mean_diff:+.4f} | {p_text(c.t.p)} | {p_text(p)} | "
                  f"{p_text(c.w.p)} | {c.t.cohen_dz:+.2f} | {stats.verdict(c.t.mean_diff, p)} |")


def interaction(imbalanced: dict[str, dict[int, dict]], balanced: dict[str, dict[int, dict]]) -> None:
    print("\n### The interaction: is RedCore's gain larger under imbalanced rates?\n")
    print("Per seed, gain = RedCore − method; the test is on gain(imbalanced) − gain(balanced) over "
          "seeds (paired t-test; Holm over the methods within one average).\n")
    print("| average | method | seeds | gain, imbalanced | gain, balanced | difference | t-test p | Holm p | Cohen's d_z |")
    print("|---|---|---|---|---|---|---|---|---|")
    if REDCORE not in imbalanced or REDCORE not in balanced:
        return
    for label, k in AVERAGES.items():
        rows = []
        for m in imbalanced:
            if m == REDCORE or m not in balanced:
                continue
            seeds = sorted(set(imbalanced[m]) & set(balanced[m]) & set(imbalanced[REDCORE]) & set(balanced[REDCORE]))
            g_imb = [average(imbalanced[REDCORE][s], k) - average(imbalanced[m][s], k) for s in seeds]
            g_bal = [average(balanced[REDCORE][s], k) - average(balanced[m][s], k) for s in seeds]
            rows.append((m, seeds, g_imb, g_bal, stats.paired_t(g_imb, g_bal) if len(seeds) >= 2 else None))
        adjusted = stats.holm([r[4].p if r[4] else math.nan for r in rows])
        for (m, seeds, g_imb, g_bal, test), p in zip(rows, adjusted):
            if test is None:
                print(f"| {label} | {m} | {len(seeds)} | — | — | — | — | — | — |")
                continue
            print(f"| {label} | {m} | {len(seeds)} | {statistics.fmean(g_imb):+.4f} | {statistics.fmean(g_bal):+.4f} | "
                  f"{test.mean_diff:+.4f} | {p_text(test.p)} | {p_text(p)} | {test.cohen_dz:+.2f} |")


def main() -> None:
    root, presets = Path(sys.argv[1]), sys.argv[2:]
    loaded = {p: load(root / p) for p in presets if list((root / p).glob("*/sweep.json"))}
    for name, runs in loaded.items():
        preset_tables(name, runs)
    if "imbalanced" in loaded and "balanced" in loaded:
        interaction(loaded["imbalanced"], loaded["balanced"])
    if loaded:
        costs(next(iter(loaded.values())))


if __name__ == "__main__":
    main()
