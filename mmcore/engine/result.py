"""What a training call returns: ``RunResult`` (also importable from ``mmcore.engine.trainer``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class RunResult:
    """What a training call returns (also the documented test-level API)."""

    run_dir: Path  # absolute: a relative recipe ``output`` gave a path that broke once the caller changed directory
    step: int  # optimisation steps done in total
    stopped_early: bool  # True when ``train.max_steps`` ended the run before its last epoch
    best_epoch: int | None
    results: dict[str, dict[str, dict[str, float]]] | None  # split -> condition -> metric; None if stopped early

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir).absolute()  # absolute(), not resolve(): the caller's symlinks stay as given
