"""The report's figures, drawn with matplotlib (the optional extra ``report``) into PNG bytes.

matplotlib is imported here only, lazily, with the non-interactive Agg backend so a report can
be made on a headless machine; without it the command ends with one line naming the extra.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

from mmcore.errors import MMCoreError

INSTALL_HINT = "mmcore report needs matplotlib, the optional extra 'report': pip install 'mmcore[report]'"
DPI = 80  # small PNGs: the report of the quickstart run is about half a megabyte


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend, or a one-line error naming the extra."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=True)
        import matplotlib.pyplot as plt
    except ImportError:
        raise MMCoreError(INSTALL_HINT) from None
    return plt


def _png(fig: Any) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})  # no version stamp: stable bytes
    pyplot().close(fig)
    return buffer.getvalue()


def lines(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str, xlabel: str, ylabel: str, logy: bool = False
) -> bytes:
    """One line per named series of (x, y)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for name, (x, y) in series.items():
        ax.plot(list(x), list(y), label=name, linewidth=1.5)
    if logy and all(v > 0 for _, y in series.values() for v in y if math.isfinite(v)):
        ax.set_yscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8, ncol=2 if len(series) > 4 else 1)
    return _png(fig)


def bars(labels: Sequence[str], values: Sequence[float], title: str, ylabel: str, errors: Sequence[float] | None = None) -> bytes:
    """A bar per label (conditions, modalities), horizontal when there are many."""
    plt = pyplot()
    many = len(labels) > 12
    fig, ax = plt.subplots(figsize=(6.4, max(3.0, 0.22 * len(labels))) if many else (6.4, 3.4))
    if many:
        ax.barh(range(len(labels)), list(values), xerr=errors, color="#4C72B0")
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.invert_yaxis()
        ax.set(title=title, xlabel=ylabel)
    else:
        ax.bar(range(len(labels)), list(values), yerr=errors, color="#4C72B0")
        ax.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 4 else 0, ha="right", fontsize=8)
        ax.set(title=title, ylabel=ylabel)
    ax.grid(alpha=0.3, axis="x" if many else "y")
    return _png(fig)


def heatmap(matrix: Sequence[Sequence[float]], rows: Sequence[str], cols: Sequence[str], title: str) -> bytes:
    """Rows × columns of values with the numbers written in the cells when there is room."""
    plt = pyplot()
    # the columns' labels are written at 30°: about 0.035 in of height per character at fontsize 8
    label_height = 0.035 * max((len(c) for c in cols), default=0)
    fig, ax = plt.subplots(figsize=(min(12.0, 2.0 + 1.1 * len(cols)), min(16.0, 1.2 + 0.26 * len(rows) + label_height)))
    data = [[v if math.isfinite(v) else float("nan") for v in row] for row in matrix]
    image = ax.imshow(data, aspect="auto", cmap="viridis")
    ax.set_xticks(range(len(cols)), cols, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    if len(rows) * len(cols) <= 400:
        for i, row in enumerate(data):
            for j, v in enumerate(row):
                if math.isfinite(v):
                    ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=6, color="white")
    fig.colorbar(image, ax=ax)
    ax.set_title(title)
    return _png(fig)


def curves(
    series: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float]]], title: str, xlabel: str, ylabel: str
) -> bytes:
    """Robustness curves: mean with a ± std band per named series of (rates, mean, std)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, (x, mean, std) in series.items():
        ax.plot(list(x), list(mean), marker="o", markersize=3, label=name)
        ax.fill_between(list(x), [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)], alpha=0.2)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)
