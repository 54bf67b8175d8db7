"""The report's figures, drawn with matplotlib (the optional extra ``report``) into PNG bytes.

matplotlib is imported here only, lazily, with the non-interactive Agg backend so a report can
be made on a headless machine; without it the command ends with one line naming the extra.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from mmcore.errors import MMCoreError

INSTALL_HINT = "mmcore report needs matplotlib, the optional extra 'report': pip install 'mmcore[report]'"
DPI = 100  # a 8-inch figure is 800 px: the page's text width, so 8-point labels stay about 11 px tall
WIDTH = 8.0  # inches; every figure is drawn at the width it is shown at, never scaled down by the page
GROUP_COLOURS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")
DRAW_MAX = 1e300  # beyond this matplotlib's axis margins overflow (a diverged loss of 1.7e308 failed the report)


def _drawable(values: Sequence[Any]) -> list[float]:
    """Values as matplotlib can place them: what is not a finite number within ``DRAW_MAX`` is
    left out of the line (NaN), as inf already is; the page's tables keep every value."""
    return [float(v) if isinstance(v, (int, float)) and abs(v) < DRAW_MAX else math.nan for v in values]


def _legend(name: str) -> str:
    """A series name as a legend entry: matplotlib drops labels that start with '_' from legends."""
    return f" {name}" if str(name).startswith("_") else str(name)


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
    """The figure as PNG bytes, every text drawn as written: names come from users and plugins,
    and matplotlib would read a pair of ``$`` in one (an arm ``a$^$``) as mathtext and fail."""
    import matplotlib
    from matplotlib.text import Text

    for text in fig.findobj(Text):
        text.set_parse_math(False)
    buffer = io.BytesIO()
    with matplotlib.rc_context({"text.parse_math": False}):  # tick labels are made while drawing
        fig.tight_layout()
        fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})  # no version stamp: stable bytes
    pyplot().close(fig)
    return buffer.getvalue()


def lines(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]], title: str, xlabel: str, ylabel: str,
    logy: bool = False, panels: bool = False,
) -> bytes:
    """One line per named series of (x, y); with ``panels``, one small panel per series (metrics
    that coincide, such as accuracy and balanced accuracy on balanced data, would hide each other)."""
    plt = pyplot()
    if panels:
        fig, axes = _small_multiples(list(series), min(4, len(series)), sharey=False)
        for ax, (x, y) in zip(axes, series.values()):
            ax.plot(_drawable(x), _drawable(y), linewidth=1.5, marker="o" if len(x) < 20 else None, markersize=3)
        return _labelled(fig, title, xlabel, None)
    fig, ax = plt.subplots(figsize=(WIDTH, 3.6))
    for name, (x, y) in series.items():
        ax.plot(_drawable(x), _drawable(y), label=_legend(name), linewidth=1.5, marker="o" if len(x) < 20 else None, markersize=3)
    if logy and all(v > 0 for _, y in series.values() for v in _drawable(y) if math.isfinite(v)):
        ax.set_yscale("log")
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8, ncol=2 if len(series) > 4 else 1)
    return _png(fig)


def bars(
    labels: Sequence[str], values: Sequence[float], title: str, ylabel: str,
    errors: Sequence[float] | None = None, groups: Sequence[int] | None = None,
) -> bytes:
    """A bar per label (conditions, modalities), horizontal when there are many; ``groups`` colours
    the bars by group (conditions by number of present modalities) and labels the colours."""
    plt = pyplot()
    many = len(labels) > 12
    values, errors = _drawable(values), _drawable(errors) if errors is not None else None
    colours = [GROUP_COLOURS[(g - 1) % len(GROUP_COLOURS)] for g in groups] if groups else "#4C72B0"
    fig, ax = plt.subplots(figsize=(WIDTH, max(3.0, 0.5 + 0.2 * len(labels))) if many else (WIDTH, 3.6))
    if many:
        ax.barh(range(len(labels)), values, xerr=errors, color=colours, height=0.8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_ylim(len(labels) - 0.5, -0.5)  # the first label on top
        ax.set(title=title, xlabel=ylabel)
    else:
        ax.bar(range(len(labels)), values, yerr=errors, color=colours)
        ax.set_xticks(range(len(labels)), labels, rotation=45 if len(labels) > 4 else 0, ha="right" if len(labels) > 4 else "center", fontsize=8)
        ax.set(title=title, ylabel=ylabel)
    if groups:
        from matplotlib.patches import Patch

        shown = sorted(set(groups))
        ax.legend([Patch(color=GROUP_COLOURS[(g - 1) % len(GROUP_COLOURS)]) for g in shown],
                  [f"{g} present" for g in shown], fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3, axis="x" if many else "y")
    return _png(fig)


def by_count(points: Sequence[tuple[int, float]], title: str, ylabel: str) -> bytes:
    """One dot per condition at its number of present modalities, the mean per count joined by a line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(WIDTH, 3.6))
    points = list(zip([k for k, _ in points], _drawable([v for _, v in points])))
    counts = sorted({k for k, _ in points})
    for k in counts:
        ys = sorted(v for j, v in points if j == k)
        xs = [k + 0.25 * ((i + 0.5) / len(ys) - 0.5) for i in range(len(ys))]  # spread the dots, no randomness
        ax.scatter(xs, ys, s=14, alpha=0.7, color=GROUP_COLOURS[(k - 1) % len(GROUP_COLOURS)])
    means = [sum(v for j, v in points if j == k) / sum(1 for j, _ in points if j == k) for k in counts]
    ax.plot(counts, means, color="#222", marker="o", label="mean over the conditions")
    ax.set_xticks(counts, [str(k) for k in counts])
    ax.set(title=title, xlabel="modalities present", ylabel=ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _png(fig)


def side_by_side(labels: Sequence[str], panels: Mapping[str, Sequence[float]], title: str) -> bytes:
    """Bars per label in one panel per named quantity (a modality's contribution beside its missing rate)."""
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(WIDTH, 3.2), squeeze=False)
    for ax, (name, values) in zip(axes[0], panels.items()):
        ax.barh(range(len(labels)), _drawable(values), color="#4C72B0")
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set_ylim(len(labels) - 0.5, -0.5)
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(title, fontsize=10)
    return _png(fig)


def heatmap(matrix: Sequence[Sequence[float]], rows: Sequence[str], cols: Sequence[str], title: str,
            fmt: str = "{:.3f}", xlabel: str = "", ylabel: str = "") -> bytes:
    """Rows × columns of values, each cell's number written in it (white on dark, black on light):
    0.28 in per row, so 63 conditions make a tall figure with 8-point labels rather than a small
    unreadable one; column labels wrap instead of being cut."""
    plt = pyplot()
    labels = ["\n".join(_wrap(c, 28)) for c in cols]
    label_height = 0.16 * max((x.count("\n") + 1 for x in labels), default=1)
    width = min(WIDTH, 2.6 + 1.3 * len(cols) + 0.06 * max((len(r) for r in rows), default=0))
    fig, ax = plt.subplots(figsize=(width, 1.4 + 0.28 * len(rows) + label_height))
    data = [_drawable(row) for row in matrix]
    image = ax.imshow(data, aspect="auto", cmap="viridis")
    finite = [v for row in data for v in row if math.isfinite(v)]
    middle = (min(finite) + max(finite)) / 2 if finite else 0.0
    ax.set_xticks(range(len(cols)), labels, fontsize=8)
    ax.xaxis.tick_top()
    ax.set_yticks(range(len(rows)), rows, fontsize=8)
    if len(cols) <= 16:
        for i, row in enumerate(data):
            for j, v in enumerate(row):
                if math.isfinite(v):
                    ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=8, color="black" if v > middle else "white")
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.02)
    ax.set_title(title, fontsize=10)
    ax.set(xlabel=xlabel, ylabel=ylabel)
    ax.xaxis.set_label_position("top")
    return _png(fig)


def _wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most about ``width`` characters, broken after commas or spaces."""
    lines, line = [], ""
    for word in re.split(r"(?<=[ ,])", text):
        if line and len(line) + len(word) > width:
            lines.append(line.rstrip())
            line = ""
        line += word
    return [*lines, line.rstrip()] if line else lines


def curves(
    series: Mapping[str, tuple[Sequence[float], Sequence[float], Sequence[float]]], title: str, xlabel: str, ylabel: str
) -> bytes:
    """Robustness curves: mean with a ± std band per named series of (rates, mean, std). More than
    three curves lie on top of each other in one panel, so they become small multiples sharing the
    y axis: one panel per curve, the other curves drawn thin and grey behind it for reference."""
    plt = pyplot()
    if len(series) <= 3:
        fig, ax = plt.subplots(figsize=(WIDTH, 3.6))
        for name, (x, mean, std) in series.items():
            _band(ax, x, mean, std, name)
        ax.set(title=title, xlabel=xlabel, ylabel=ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        return _png(fig)
    fig, axes = _small_multiples(list(series), 4 if len(series) > 6 else 3, sharey=True)
    for ax, (name, (x, mean, std)) in zip(axes, series.items()):
        for other, (xo, mo, _) in series.items():
            if other != name:
                ax.plot(_drawable(xo), _drawable(mo), color="#bbb", linewidth=0.8)
        _band(ax, x, mean, std, name)
    return _labelled(fig, title, xlabel, ylabel)


def _small_multiples(names: Sequence[str], cols: int, sharey: bool) -> tuple[Any, list[Any]]:
    """A grid of panels, one titled panel per name (sharing x), the unused cells blank."""
    nrows = math.ceil(len(names) / cols)
    fig, grid = pyplot().subplots(nrows, cols, figsize=(WIDTH, 0.5 + 2.1 * nrows), sharex=True, sharey=sharey, squeeze=False)
    axes = list(grid.flat)
    for ax, name in zip(axes, names):
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes[len(names):]:
        ax.axis("off")
    return fig, axes[: len(names)]


def _labelled(fig: Any, title: str, xlabel: str, ylabel: str | None) -> bytes:
    fig.suptitle(title, fontsize=10)
    fig.supxlabel(xlabel, fontsize=9)
    if ylabel:
        fig.supylabel(ylabel, fontsize=9)
    return _png(fig)


def _band(ax: Any, x: Sequence[float], mean: Sequence[float], std: Sequence[float], name: str) -> None:
    x, mean, std = _drawable(x), _drawable(mean), _drawable(std)
    ax.plot(x, mean, marker="o", markersize=3, label=_legend(name))
    ax.fill_between(x, _drawable([m - s for m, s in zip(mean, std)]), _drawable([m + s for m, s in zip(mean, std)]), alpha=0.2)
