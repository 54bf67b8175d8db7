"""The core's loggers: the run's record (``metrics.jsonl``), the progress bar, TensorBoard.

The engine calls loggers on the main rank only (``mmcore.Logger`` documents the order).
"""

from __future__ import annotations

import json
import math
import os
import re
import warnings
from pathlib import Path
from typing import Annotated, Any

from mmcore.components import ContractSkip, Logger
from mmcore.errors import MMCoreError
from mmcore.options.hints import Matches

RECORD = "metrics.jsonl"
# A file or folder name inside the run directory: '../x' wrote outside it, '' and 'a/b' failed
# with a traceback only when the run opened its loggers, after the run directory was made.
PlainName = Annotated[str, Matches(r"(?!\.{1,2}$)[^/\\\x00]+", "a plain name inside the run directory, without '/'")]


class JsonlLogger(Logger):
    """``metrics.jsonl``: one JSON line per logging step and per epoch — the run's record.

    Resume never duplicates or loses a line: on ``open`` with a resume step, every line whose
    ``step`` lies past the checkpoint the run continues from is dropped (those steps are about
    to be trained again), and so is a torn last line left by a kill. Lines are flushed and
    fsynced as they are written.

    Args:
        filename: the record's file name inside the run directory (reports and sweeps read
            ``metrics.jsonl``).
    """

    def __init__(self, filename: PlainName = RECORD) -> None:
        self.filename = filename
        self._file: Any = None

    def open(self, run_dir: Path, resume_step: int | None = None) -> None:
        path = Path(run_dir) / self.filename
        if resume_step is not None and path.exists():
            lines = path.read_text().splitlines()
            kept = [line for line in lines if _kept(line, resume_step)]
            _warn_lost(path, lines, resume_step)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text("".join(line + "\n" for line in kept))
            os.replace(tmp, path)
        elif resume_step:
            warnings.warn(f"{path}: missing; the record restarts after step {resume_step} and lacks the lines before it",
                          stacklevel=2)
        self._file = open(path, "a")

    def _write(self, line: dict[str, Any]) -> None:
        self._file.write(json.dumps(line, allow_nan=True) + "\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def log_step(self, step: int, scalars: dict[str, float]) -> None:
        self._write({"step": step, **scalars})

    def log_epoch(self, epoch: int, step: int, scalars: dict[str, float]) -> None:
        self._write({"epoch": epoch, "step": step, **scalars})

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _warn_lost(path: Path, lines: list[str], resume_step: int) -> None:
    """Say when a torn line lies at or before the resume step: the steps it recorded are not
    trained again, so the record lacks it for good. A kill tears only the last line, written
    after the checkpoint the run resumes from; any other torn line is damage done later."""
    for number, line in enumerate(lines, 1):
        if not line.strip() or _complete(line):
            continue
        step = re.match(r'\{(?:"epoch": \d+, )?"step": (\d+)', line)
        if int(step.group(1)) <= resume_step if step is not None else number < len(lines):
            warnings.warn(f"{path}: line {number} is not complete JSON (damaged); it is dropped and the record "
                          f"lacks it (the resume continues from step {resume_step}, after it)", stacklevel=3)


def _complete(line: str) -> bool:
    try:
        json.loads(line)
    except json.JSONDecodeError:
        return False
    return True


def _kept(line: str, resume_step: int) -> bool:
    """A complete line written at or before the step the run resumes from."""
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return False  # torn by a kill mid-write
    return isinstance(record, dict) and isinstance(record.get("step"), int) and record["step"] <= resume_step


class ConsoleLogger(Logger):
    """The rich progress bar over all training steps, with the latest loss and validation value."""

    def __init__(self) -> None:
        self._reporter: Any = None
        self._console: Any = None

    def use_console(self, console: Any) -> None:
        """The engine passes its console so that the bar and the results share one terminal."""
        self._console = console

    def open(self, run_dir: Path, resume_step: int | None = None) -> None:
        self._start = resume_step or 0

    def progress(self, step: int, total: int, epoch: int, epochs: int) -> None:
        if self._reporter is None:
            from rich.console import Console

            from mmcore.engine.progress import Reporter

            self._reporter = Reporter(self._console or Console(), total=total, done=self._start)
            self._reporter.__enter__()
        self._reporter.set(step, epoch, epochs)

    def log_step(self, step: int, scalars: dict[str, float]) -> None:
        if self._reporter is not None and "loss" in scalars:
            self._reporter.loss(scalars["loss"])

    def log_epoch(self, epoch: int, step: int, scalars: dict[str, float]) -> None:
        selected = [(k, v) for k, v in scalars.items() if k.startswith("select.")]
        if self._reporter is not None and selected:
            key, value = selected[0]
            self._reporter.validation(key.split(".", 1)[1], value)

    def close(self) -> None:
        if self._reporter is not None:
            self._reporter.__exit__(None, None, None)
            self._reporter = None


class TensorBoardLogger(Logger):
    """TensorBoard event files under ``<run>/<subdir>`` (optional extra ``tensorboard``).

    Args:
        subdir: folder inside the run directory for the event files.
    """

    def __init__(self, subdir: PlainName = "tensorboard") -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        except ImportError as exc:
            raise MMCoreError(
                "logging: mmcore.tensorboard needs the 'tensorboard' package; "
                "install the extra with: pip install 'mmcore[tensorboard]'"
            ) from exc
        self.subdir = subdir
        self._writer: Any = None

    def open(self, run_dir: Path, resume_step: int | None = None) -> None:
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events past the resume point, as metrics.jsonl drops its lines
        self._writer = SummaryWriter(str(Path(run_dir) / self.subdir), purge_step=resume_step)

    def log_step(self, step: int, scalars: dict[str, float]) -> None:
        for key, value in scalars.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self._writer.add_scalar(f"train/{key}", value, step)

    def log_epoch(self, epoch: int, step: int, scalars: dict[str, float]) -> None:
        for key, value in scalars.items():
            if isinstance(value, (int, float)) and math.isfinite(value):
                self._writer.add_scalar(key, value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def _tensorboard_contract_options() -> dict[str, Any]:
    """The contract suite checks this logger only where its extra is installed."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        raise ContractSkip("mmcore.tensorboard needs the 'tensorboard' extra") from None
    return {}


TensorBoardLogger.contract_options = _tensorboard_contract_options  # type: ignore[attr-defined]
