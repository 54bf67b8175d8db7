"""The report of a sweep: configurations compared over seeds.

Sections: the configuration × metric table (mean ± std over seeds, from results.csv); paired
tests over seeds between every pair of configurations on the test average (paired t-test and
Wilcoxon signed-rank, Holm-corrected across the pairs that have a test, effect sizes; ``mmcore.report.stats``);
win/tie/loss per condition; a condition × configuration heatmap; robustness curves overlaid
(mean over seeds of each configuration's ``evals/*/curve.json``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from mmcore.report import stats
from mmcore.conditions import AVERAGE
from mmcore.report.analysis import MIN_SEEDS, SMALL_N, by_present, small_n_note
from mmcore.report.percondition import ordered
from mmcore.report.shapley import modalities_of
from mmcore.errors import MMCoreError
from mmcore.metrics import METRICS_DIRECTION
from mmcore.report import figures
from mmcore.report.html import Document
from mmcore.report.sources import RunRecord, chosen_metric, read_json, select_metric
from mmcore.sweep.aggregate import read_csv

SPLIT = "test"


def _label(point: dict[str, Any]) -> str:
    values = point.get("values") or {}
    def text(v: Any) -> str:  # a node as it was written on the command line: {type: x, target: y}
        return yaml.safe_dump(v, default_flow_style=True, width=10**6).strip() if isinstance(v, (dict, list)) else str(v)

    return ", ".join(f"{k}={text(v)}" for k, v in values.items()) or str(point["slug"])


def load_points(sweep_dir: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """sweep.json and, per point, its label and the per-seed test results of its finished runs."""
    info = read_json(sweep_dir / "sweep.json")
    if not isinstance(info, dict) or not isinstance(info.get("points"), list):
        raise MMCoreError(f"{sweep_dir / 'sweep.json'}: expected a sweep description with 'points'")
    points = []
    for p in info["points"]:
        seeds: dict[int, dict[str, dict[str, float]]] = {}
        curves: dict[int, dict[str, Any]] = {}
        for seed, rel in (p.get("runs") or {}).items():
            run_dir = sweep_dir / rel
            record = RunRecord(run_dir)
            if record.finished:
                seeds[int(seed)] = record.results.get(SPLIT, {})
            for label, entry in record.later_evals.items():
                if entry["curve"] is not None:
                    curves.setdefault(int(seed), {})[label] = entry["curve"]
        points.append({"slug": p["slug"], "label": _label(p), "seeds": seeds, "curves": curves})
    return info, points


def sweep_document(sweep_dir: Path, metric: str | None = None) -> Document:
    info, points = load_points(sweep_dir)
    rows = read_csv(sweep_dir / "results.csv") if (sweep_dir / "results.csv").is_file() else []
    available = list(dict.fromkeys(r["metric"] for r in rows))
    metric = chosen_metric(metric, select_metric(info.get("base_recipe") or {}) or next(iter(available), None), available)
    doc = Document(f"mmcore sweep report: {sweep_dir.name}")
    doc.text(f"Sweep directory {sweep_dir}; recipe {info.get('recipe', '?')}; seeds {info.get('seeds', '?')}; "
             f"{len(points)} configuration{'s' if len(points) != 1 else ''}. Split: {SPLIT}. Paired tests pair runs by seed.")
    _table(doc, rows, points)
    if metric is None or not any(p["seeds"] for p in points):
        doc.text("No finished runs: nothing to compare.", note=True)
        return doc
    higher = METRICS_DIRECTION.get(metric, "max") == "max"
    if len(points) > 1:
        _paired(doc, points, metric, higher)
        _win_tie_loss(doc, points, metric, higher)
    else:  # an empty table of pairs would read as a comparison that found nothing
        doc.text("One configuration: no paired tests or win / tie / loss counts (they compare two or more).", note=True)
    _heatmap(doc, rows, points, metric)
    _curves(doc, points, metric)
    return doc


def _table(doc: Document, rows: list[dict[str, Any]], points: list[dict[str, Any]]) -> None:
    doc.heading("Configurations: test average over conditions, mean ± std over seeds")
    if not rows:
        doc.text("No results.csv: the sweep has not aggregated any run yet.", note=True)
        return
    metrics = list(dict.fromkeys(r["metric"] for r in rows if r["split"] == SPLIT and r["condition"] == AVERAGE))
    cell = {(r["point"], r["metric"]): r for r in rows if r["split"] == SPLIT and r["condition"] == AVERAGE}
    body = []
    for p in points:
        line: list[Any] = [p["label"]]
        for m in metrics:
            r = cell.get((p["slug"], m))
            line += [r["mean"], r["std"] if r["n"] > 1 else "n/a"] if r else ["—", "—"]  # results.csv's 0 for one seed
        line.append(max((cell[(p["slug"], m)]["n"] for m in metrics if (p["slug"], m) in cell), default=0))
        body.append(line)
    header = ["configuration", *[f"{m} {s}" for m in metrics for s in ("mean", "std")], "n"]
    doc.table(header, body, "configurations")


def _values(points: list[dict[str, Any]], condition: str, metric: str) -> dict[str, dict[int, float]]:
    return {p["label"]: {s: float(r[condition][metric]) for s, r in p["seeds"].items()
                         if condition in r and metric in r[condition]} for p in points}


def _paired(doc: Document, points: list[dict[str, Any]], metric: str, higher: bool) -> None:
    doc.heading(f"Paired tests over seeds: test {metric}, average over conditions")
    comparisons = stats.compare_all(_values(points, AVERAGE, metric))
    body = []
    for c in comparisons:
        if c.t is None or c.w is None:
            body.append([c.a, c.b, len(c.seeds), "n/a", "n/a", "n/a", "n/a", "n/a", "n/a", "n/a"])
            continue
        word = SMALL_N if len(c.seeds) < MIN_SEEDS else stats.verdict(c.mean_diff, c.p_holm, higher)
        body.append([c.a, c.b, len(c.seeds), c.mean_diff, c.t.p, c.p_holm, c.w.p, c.t.cohen_dz, c.w.rank_biserial, word])
    doc.table(["A", "B", "seeds", f"Δ {metric} (A − B)", "t-test p", "Holm p", "Wilcoxon p", "Cohen's d_z",
               "rank-biserial r", "A's verdict (Holm, 5 %)"], body, "paired")
    doc.text("Paired t-test and Wilcoxon signed-rank test (two-sided) on the per-seed differences; Holm's correction "
             f"{holm_family(comparisons)}; d_z = mean(d)/sd(d); r = (W+ − W−)/(W+ + W−). With n seeds the smallest exact "
             "Wilcoxon p is 2/2^n (0.0625 for 5 seeds). Formulas and sources: mmcore.report.stats. "
             + small_n_note([len(c.seeds) for c in comparisons]), note=True)


def holm_family(comparisons: list[stats.Comparison]) -> str:
    """The family Holm corrects over, as ``stats.compare_all`` forms it: the pairs with a t-test.
    A pair without one (under two shared seeds, a diverged seed) is not counted in it, so the
    others' Holm p are smaller than over every pair; the report says which."""
    tested = sum(c.t is not None for c in comparisons)
    if tested == len(comparisons):
        return f"across the {tested} pair{'s' if tested != 1 else ''} above"
    return (f"across the {tested} of the {len(comparisons)} pairs above that have a test "
            f"(the {len(comparisons) - tested} shown n/a are not counted in the family)")


def _win_tie_loss(doc: Document, points: list[dict[str, Any]], metric: str, higher: bool) -> None:
    doc.heading(f"Win / tie / loss per condition ({metric}, paired t-test at 5 %, uncorrected)")
    conditions = list(dict.fromkeys(c for p in points for r in p["seeds"].values() for c in r if c != AVERAGE))
    seeds = max((len(p["seeds"]) for p in points), default=0)
    if seeds < MIN_SEEDS:
        doc.text(f"{SMALL_N}: {seeds} seeds per configuration; per-condition wins and losses are counted from "
                 f"{MIN_SEEDS} paired seeds on (see the heatmap below for the numbers).", note=True)
        return
    per = {p["label"]: {c: _values([p], c, metric)[p["label"]] for c in conditions} for p in points}
    body = []
    labels = list(per)
    for i, a in enumerate(labels):
        for b in labels[i + 1 :]:
            counts = stats.win_tie_loss(per[a], per[b], higher, min_seeds=MIN_SEEDS)
            body.append([a, b, len(counts["win"]), len(counts["tie"]), len(counts["loss"]), len(counts["n/a"])])
    doc.table(["A", "B", "A wins", "ties", "A loses", "n/a"], body, "win-tie-loss")


def _heatmap(doc: Document, rows: list[dict[str, Any]], points: list[dict[str, Any]], metric: str) -> None:
    """Condition × configuration means, conditions grouped by number present and sorted by their
    mean over configurations, plus the same by number of present modalities as a table."""
    cell = {(r["point"], r["condition"]): r["mean"] for r in rows if r["split"] == SPLIT and r["metric"] == metric}
    found = list(dict.fromkeys(r["condition"] for r in rows if r["split"] == SPLIT and r["metric"] == metric))
    if not found:
        return
    mean_table = {c: {metric: _mean([cell.get((p["slug"], c), math.nan) for p in points])} for c in found}
    modalities = modalities_of([c for c in found if c != AVERAGE]) or []
    conditions = ordered(mean_table, metric, modalities)
    doc.heading(f"Test {metric} per condition and configuration (mean over seeds)")
    doc.text("Conditions grouped by the number of modalities present, then sorted by their mean over the configurations.", note=True)
    matrix = [[cell.get((p["slug"], c), math.nan) for p in points] for c in conditions]
    doc.figure(f"heatmap-{metric}", figures.heatmap(matrix, conditions, [p["label"] for p in points],
                                                    f"test {metric}: condition × configuration"))
    per_point = {p["label"]: by_present({c: {metric: cell[(p["slug"], c)]} for c in found if (p["slug"], c) in cell}, metric)
                 for p in points}
    counts = sorted({k for groups in per_point.values() for k in groups})
    if counts:
        doc.table(["configuration", *[f"{k} present" for k in counts]],
                  [[label, *[groups.get(k, math.nan) for k in counts]] for label, groups in per_point.items()], "sweep-by-present")


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def _nan_for_null(values: list[Any]) -> list[float]:
    """A curve's values, null (a diverged draw's NaN as JSON writes it) read as NaN as in eval.json."""
    return [math.nan if v is None else v for v in values]


def _curves(doc: Document, points: list[dict[str, Any]], metric: str) -> None:
    doc.heading("Robustness curves (uniform missing rate), mean ± std over seeds")
    series = {}
    for p in points:
        per_seed = [c for by_label in p["curves"].values() for c in by_label.values()
                    if "uniform" in c.get("curves", {}) and metric in c["curves"]["uniform"]["mean"]]
        if not per_seed:
            continue
        rates = per_seed[0]["curves"]["uniform"]["rates"]
        same = [_nan_for_null(c["curves"]["uniform"]["mean"][metric]) for c in per_seed if c["curves"]["uniform"]["rates"] == rates]
        mean = [sum(v) / len(v) for v in zip(*same)]
        std = [math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0 for v, m in zip(zip(*same), mean)]
        series[p["label"]] = (rates, mean, std)
    if not series:
        doc.text("No robustness curves found (run `mmcore eval RUN --curve` on the sweep's runs).", note=True)
        return
    doc.figure(f"curves-{metric}", figures.curves(series, f"test {metric} against the uniform missing rate", "missing rate", metric))
