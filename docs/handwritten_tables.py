"""Tables of docs/protocol.sh's Handwritten sweeps, as markdown for docs/results.md.

    python docs/handwritten_tables.py runs/protocol/handwritten imbalanced balanced

Issue 11 asks for the 1-view and 2-view averages next to the 63-condition one: 42 of the 63
conditions keep three or more of the six views, where every method saturates. Per method: test
macro-F1 (mean ± std over seeds) over all conditions, the 6 one-view and the 15 two-view
conditions; then RedCore against each other method on each of the three averages (paired
t-test and Wilcoxon over seeds, Holm over the methods within one average; Cohen's d_z). With
both presets, the interaction test of docs/protocol_tables.py on each average: per seed,
gain(imbalanced) − gain(balanced), gain = RedCore − method. Loading, comparisons, interaction and
cost are docs/protocol_tables.py's; only the per-preset table and the averages are here.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from protocol_tables import figures_option, mean_std, report


def views(condition: str) -> int:
    return condition.count("+") + 1


def average(run: dict, n_views: int | None) -> float:
    """Mean test macro-F1 over the conditions with ``n_views`` views (all of them for None)."""
    chosen = [c for c in run["test"] if c != "average" and (n_views is None or views(c) == n_views)]
    return statistics.fmean(run["test"][c]["macro_f1"] for c in chosen)


SCORES = {label: (lambda run, k=k: average(run, k)) for label, k in {"all conditions": None, "1-view": 1, "2-view": 2}.items()}


def preset_table(name: str, runs: dict[str, dict[int, dict]]) -> None:
    print(f"\n### Preset `{name}`\n")
    runs = {m: seeds for m, seeds in runs.items() if seeds}  # methods with a finished run
    if not runs:
        print("no finished run yet")
        return
    n = len([c for c in next(iter(next(iter(runs.values())).values()))["test"] if c != "average"])
    print(f"| method | seeds | {n}-condition avg | 1-view avg | 2-view avg | selected last epoch |")
    print("|---|---|---|---|---|---|")
    for m, seeds in runs.items():
        cells = [mean_std([f(s) for s in seeds.values()]) for f in SCORES.values()]
        print(f"| {m} | {len(seeds)} | " + " | ".join(cells) + f" | {sum(s['last'] for s in seeds.values())}/{len(seeds)} |")


if __name__ == "__main__":
    args, figures = figures_option(sys.argv[1:])
    report(Path(args[0]), args[1:], preset_table, SCORES, figures)
