"""Tables of docs/protocol.sh's Handwritten sweeps, as markdown for docs/results.md.

    python docs/handwritten_tables.py runs/protocol/handwritten

Issue 11 asks for the 1-view and 2-view averages next to the 63-condition one: 42 of the 63
conditions keep three or more of the six views, where every method saturates. Per method: test
macro-F1 (mean ± std over seeds) over all conditions, the 6 one-view and the 15 two-view
conditions; then RedCore against each other method on each of the three averages (paired
t-test and Wilcoxon over seeds, Holm over the methods within one average; Cohen's d_z). The
runs are read as docs/protocol_tables.py reads them.
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


def main() -> None:
    runs = load(Path(sys.argv[1]))
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
        score = lambda s: average(s, k)  # noqa: E731
        comparisons = [stats.compare(REDCORE, {i: score(v) for i, v in runs[REDCORE].items()},
                                     m, {i: score(v) for i, v in runs[m].items()}) for m in others]
        adjusted = stats.holm([c.t.p if c.t else math.nan for c in comparisons])
        for c, p in zip(comparisons, adjusted):
            if c.t is None:
                print(f"| {label} | {c.b} | {len(c.seeds)} | — | — | — | — | — | n/a |")
                continue
            print(f"| {label} | {c.b} | {len(c.seeds)} | {c.t.mean_diff:+.4f} | {p_text(c.t.p)} | {p_text(p)} | "
                  f"{p_text(c.w.p)} | {c.t.cohen_dz:+.2f} | {stats.verdict(c.t.mean_diff, p)} |")
    costs(runs)


if __name__ == "__main__":
    main()
