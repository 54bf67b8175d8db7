"""The rich progress bar and the final table; kept apart so the training loop stays readable."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from mmcore.conditions import AVERAGE


class Reporter:
    """A progress bar over all training steps, annotated with the latest loss and validation score."""

    def __init__(self, console: Console, total: int, done: int = 0, enabled: bool = True) -> None:
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            console=console,
            disable=not enabled,
        )
        self.task = self.progress.add_task("train", total=total, completed=done, info="")
        self._loss = ""
        self._val = ""

    def __enter__(self) -> "Reporter":
        self.progress.__enter__()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.progress.__exit__(kind, exc, tb)

    def set(self, done: int, epoch: int, epochs: int) -> None:
        """``done`` steps finished, in (1-based) ``epoch`` of ``epochs``."""
        self.progress.update(self.task, completed=done, description=f"epoch {epoch}/{epochs}")

    def loss(self, value: float) -> None:
        self._loss = f"loss {value:.4f}"
        self._refresh()

    def validation(self, metric: str, value: float) -> None:
        self._val = f"val {metric} {value:.4f}"
        self._refresh()

    def _refresh(self) -> None:
        self.progress.update(self.task, info="  ".join(x for x in (self._loss, self._val) if x))


def results_table(
    title: str, table: dict[str, dict[str, float]], metrics: list[str] | None = None,
    oracle: dict[str, dict[str, float]] | None = None,
) -> Table:
    """Conditions as rows, metrics as columns; the average row last and in bold. With ``oracle``
    (a Bayes ceiling per condition, ``mmcore.oracle``), each ceiling metric adds its ceiling and
    the model's gap to it, so no result is read without the best any model could score."""
    from mmcore.oracle import gap_rows

    metrics = metrics or list(next(iter(table.values())))
    gaps = gap_rows(table, oracle) if oracle else {}
    extra = [k for k in dict.fromkeys(k for row in gaps.values() for k in row)]
    out = Table(title=Text(title))  # names from recipes and plugins are shown as written, never read as markup
    out.add_column("condition", overflow="fold")  # never cut a condition name
    for m in [*metrics, *extra]:
        out.add_column(Text(m.replace("_", " ") if m in extra else m), justify="right")
    for condition, row in table.items():
        style = "bold" if condition == AVERAGE else None
        more = [f"{gaps[condition][k]:.4f}" if k in gaps.get(condition, {}) else "" for k in extra]
        out.add_row(Text(condition), *[f"{row[m]:.4f}" for m in metrics], *more, style=style)
    return out
