"""The run report's per-condition sections: test metrics grouped by how many modalities are
present, the confusion matrix, modality contributions beside training missing rates, and the
full recipe and manifest.

At 63 conditions (six modalities, every subset) a chart in recipe order is a wall of bars; what
a reader asks is "how does the score fall as modalities go missing, and which subsets are
weak", so conditions are grouped by their number of present modalities and sorted by score
within a group (best first), and the group means get a table and a plot of their own.
"""

from __future__ import annotations

import json
import math
from typing import Any

import yaml

from mmcore.conditions import AVERAGE
from mmcore.metrics import METRICS_DIRECTION
from mmcore.report import figures
from mmcore.report.analysis import by_present
from mmcore.report.html import Document
from mmcore.report.shapley import shapley

Table = dict[str, dict[str, float]]


def present_count(condition: str, modalities: list[str]) -> int | None:
    """How many modalities the condition ``a+v`` keeps; None for a condition that is not a subset."""
    parts = condition.split("+")
    return len(parts) if modalities and set(parts) <= set(modalities) else None


def ordered(test: Table, metric: str | None, modalities: list[str]) -> list[str]:
    """Conditions by number of present modalities, then by ``metric`` (best first), then by name;
    conditions that are not subsets (random masks) after them, ``average`` last."""
    higher = METRICS_DIRECTION.get(metric or "", "max") == "max"

    def key(c: str) -> tuple[int, float, str]:
        k = present_count(c, modalities)
        v = test[c].get(metric, math.nan) if metric else math.nan
        score = -v if higher else v
        return (k if k is not None else 10**6, score if math.isfinite(score) else math.inf, c)

    return sorted((c for c in test if c != AVERAGE), key=key) + ([AVERAGE] if AVERAGE in test else [])


def conditions_section(doc: Document, test: Table, metric: str | None, modalities: list[str]) -> None:
    """Sorted table (groups shaded in turn), the by-present-count table and plot, the sorted bar chart."""
    doc.heading("Test metrics per condition")
    if not test:
        doc.text("No test results (no eval.json).", note=True)
        return
    names = list(dict.fromkeys(k for row in test.values() for k in row))
    order = ordered(test, metric, modalities)
    counts = {c: present_count(c, modalities) for c in order}
    rows = [[c, counts[c] if counts[c] is not None else "", *[test[c].get(k, math.nan) for k in names]] for c in order]
    shaded = frozenset(i for i, c in enumerate(order) if (counts[c] or 0) % 2 == 0 and counts[c] is not None)
    if metric:
        doc.text(f"Grouped by the number of modalities present, then sorted by test {metric} (best first).", note=True)
    doc.table(["condition", "present", *names], rows, "conditions", group_rows=shaded)
    if not metric or not any(metric in row for row in test.values()):
        return
    groups = by_present(test, metric)
    if groups:
        doc.heading(f"Test {metric} by number of present modalities", 3)
        spread = {k: [test[c][metric] for c in order if counts[c] == k and metric in test[c]] for k in groups}
        doc.table(["present", "conditions", f"mean {metric}", "min", "max"],
                  [[k, len(spread[k]), groups[k], min(spread[k]), max(spread[k])] for k in groups], "by-present")
        points = [(k, v) for k, vs in spread.items() for v in vs]
        doc.figure(f"by-present-{metric}", figures.by_count(points, f"test {metric} against the number of present modalities", metric))
    labels = [c for c in order if c != AVERAGE and metric in test[c]]
    doc.figure(f"conditions-{metric}", figures.bars(labels, [test[c][metric] for c in labels], f"test {metric} per condition",
                                                    metric, groups=[counts[c] for c in labels] if all(counts[c] for c in labels) else None))


def confusion_section(doc: Document, evaluation: dict[str, Any]) -> None:
    """The test confusion matrix of the condition with every modality present (eval.json's ``confusion``)."""
    found = (evaluation.get("confusion") or {}).get("test")
    if not isinstance(found, dict) or not isinstance(found.get("matrix"), list):
        return  # regression, too many classes, or a run from before eval.json kept it
    doc.heading("Confusion matrix")
    classes = [str(c) for c in found.get("classes") or range(len(found["matrix"]))]
    condition = found.get("condition", "?")
    matrix = [[float(v) for v in row] for row in found["matrix"]]
    doc.figure("confusion", figures.heatmap(matrix, classes, classes, f"test, condition {condition}: true class × predicted class",
                                            fmt="{:.0f}", xlabel="predicted", ylabel="true"))
    doc.text(f"Counts of test rows under condition {condition} (rows: true class; columns: predicted). eval.json also "
             "keeps the matrix of every condition's predictions pooled.", note=True)


def training_rates(recipe: dict[str, Any], modalities: list[str]) -> dict[str, float] | None:
    """Each modality's training missing rate from the recipe (``missing.train.rates``), if given per modality."""
    train = (recipe.get("missing") or {}).get("train") or {}
    rates = train.get("rates")
    if isinstance(train.get("sample_rate"), (int, float)):
        return {m: float(train["sample_rate"]) for m in modalities}
    if isinstance(rates, (int, float)):
        return {m: float(rates) for m in modalities}
    if isinstance(rates, dict) and all(isinstance(rates.get(m), (int, float)) for m in modalities):
        return {m: float(rates[m]) for m in modalities}
    return None


def contributions_section(doc: Document, test: Table, modalities: list[str], recipe: dict[str, Any],
                          metric: str | None = None) -> None:
    """Exact Shapley values per metric, with each modality's training missing rate beside them."""
    doc.heading("Modality contributions (Shapley values)")
    doc.text("Exact Shapley value of each modality for each test metric over the evaluated subsets, with "
             "v(∅) = 0: the values sum to the full-modality score. Larger means the modality adds more on average "
             "over the orders in which modalities could be added. A modality missing often in training usually "
             "contributes less: its training missing rate is shown beside it.", note=True)
    names = list(dict.fromkeys(k for c, row in test.items() if c != AVERAGE for k in row))
    rows: list[list[Any]] = []
    for metric in names:
        c = shapley({k: row[metric] for k, row in test.items() if metric in row}, modalities)
        if c.values is None:
            doc.text(f"Modality contributions: {c.reason}.")
            return
        rows.append([metric, *c.values.values(), sum(c.values.values())])
    if not rows:
        doc.text("Modality contributions: not available: no test results.")
        return
    rates = training_rates(recipe, modalities)
    if rates is not None:
        rows.append(["training missing rate", *[rates[m] for m in modalities], ""])
    doc.table(["metric", *modalities, "sum"], rows, "shapley")
    first = next((r for r in rows if r[0] == metric), rows[0])
    panels = {f"Shapley value ({first[0]})": first[1:-1]}
    if rates is not None:
        panels["training missing rate"] = [rates[m] for m in modalities]
    doc.figure("shapley", figures.side_by_side(modalities, panels, "each modality's contribution and how often it was missing in training"))


def sources_section(doc: Document, recipe: dict[str, Any], manifest: dict[str, Any]) -> None:
    """The resolved recipe and the manifest in full: what was run, on what data, with which versions."""
    doc.heading("Recipe and manifest")
    doc.text("recipe.yaml (resolved, overrides applied):", note=True)
    doc.code(yaml.safe_dump(recipe, sort_keys=False, allow_unicode=True, width=100), "recipe")
    if manifest:
        doc.text("manifest.json:", note=True)
        doc.code(json.dumps(manifest, indent=1, ensure_ascii=False), "manifest")
    else:
        doc.text("No manifest.json in this run directory.", note=True)
