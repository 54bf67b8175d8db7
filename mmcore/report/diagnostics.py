"""The report's MissBench section: MEI and MLI, and each availability pattern's test score beside
how often the model saw that pattern in training (``eval.json``'s ``diagnostics``,
``mmcore.missbench``). Under imbalanced missing rates the rare patterns are where a model fails;
this table and plot show whether a method's gain sits there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mmcore.conditions import AVERAGE
from mmcore.report import figures
from mmcore.report.html import Document


def scatter(x: Sequence[float], y: Sequence[float], labels: Sequence[str], title: str, xlabel: str, ylabel: str) -> bytes:
    """Points with a log x axis (counts span orders of magnitude), labelled when few."""
    plt = figures.pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    y = figures._drawable(y)
    ax.scatter([max(v, 0.5) for v in x], y, s=14, color="#4C72B0")
    if len(labels) <= 15:
        for xi, yi, label in zip(x, y, labels):
            ax.annotate(label, (max(xi, 0.5), yi), fontsize=6, xytext=(2, 2), textcoords="offset points")
    ax.set_xscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    return figures._png(fig)


def diagnostics_section(doc: Document, evaluation: dict[str, Any], test: dict[str, dict[str, float]], metric: str | None) -> None:
    """MEI/MLI table and the score-against-training-frequency table and plot, or a line saying why not."""
    found = evaluation.get("diagnostics")
    doc.heading("MissBench diagnostics")
    if not isinstance(found, dict):
        doc.text("MissBench diagnostics: not recorded (runs from before they were added to eval.json).")
        return
    doc.text("MEI (modality equity: 1 when every modality's main effect on the score is equal, 0 when one "
             "carries it all) and MLI (the same equity of the encoders' mean gradient norms in training); "
             "definitions and choices in mmcore/missbench.py.", note=True)
    mei = found.get("mei") or {}
    doc.table(["index", "value"], [[f"MEI ({k})", _num(v)] for k, v in mei.items()] + [["MLI", _num(found.get("mli"))]], "missbench")
    counts = found.get("train_patterns") or {}
    if not metric or not counts:
        return
    rows = sorted(((c, int(counts.get(c, 0)), row[metric]) for c, row in test.items() if c != AVERAGE and metric in row),
                  key=lambda r: r[1])
    if not rows:
        return
    doc.table(["pattern", "training rows", f"test {metric}"], [list(r) for r in rows], "pattern_frequency")
    doc.figure("pattern_frequency", scatter([r[1] for r in rows], [r[2] for r in rows], [r[0] for r in rows],
                                            f"test {metric} against training frequency per pattern", "training rows (log)", metric))


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{float(value):.4f}"
