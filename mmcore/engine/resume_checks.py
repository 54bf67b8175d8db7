"""What a resume checks in a run's checkpoints beyond their bytes, before it trains on.

``checkpoint.verify`` proves each file is the one written; these prove the folders are the ones
``save_checkpoint`` makes and that ``last``'s progress fits this run's length and its ``best``.
"""

from __future__ import annotations

import os
from pathlib import Path

from mmcore.engine.checkpoint import NAMES, STATE_FILE, CheckpointError, verify
from mmcore.engine.record import EVAL_FILE
from mmcore.engine.state import TrainState
from mmcore.errors import MMCoreError

# written when training ends (``steps.write_results``): a folder there failed after the last epoch
RESULT_FILES = (EVAL_FILE, "eval.csv", "MODEL_CARD.md")


def check_result_paths(run_dir: Path) -> None:
    """The files a finished run writes can be written: each is absent or a regular file."""
    for name in RESULT_FILES:
        path = Path(run_dir) / name
        if os.path.lexists(path) and (path.is_symlink() or not path.is_file()):
            kind = "a symbolic link" if path.is_symlink() else "a folder" if path.is_dir() else "not a regular file"
            raise MMCoreError(f"{path}: {kind}, expected a file or nothing (the run writes it when training ends)")


def check_folders(ckpt_dir: Path) -> None:
    """``checkpoints`` and its ``last``/``best`` are real folders, as ``save_checkpoint`` makes them.

    A link would be followed on load and then renamed aside and replaced by the next save (a
    link from ``last`` to ``best`` resumed from best's older step and rewrote best); a broken one
    read as "nothing to resume". Checked before ``recover`` renames anything.
    """
    ckpt_dir = Path(ckpt_dir)
    if ckpt_dir.exists() and not ckpt_dir.is_dir():
        raise CheckpointError(f"{ckpt_dir}: a file, expected the run's checkpoints folder")
    for name in NAMES:
        path = ckpt_dir / name
        if path.is_symlink():
            raise CheckpointError(f"{path}: a symbolic link to {os.readlink(path)}"
                                  f"{'' if path.exists() else ' (broken)'}, expected a checkpoint folder")


def check_progress(path: Path, state: TrainState, steps_per_epoch: int, epochs: int) -> None:
    """``last``'s state agrees with this run's length and with ``best``, before training goes on.

    Checkpoints are written after whole epochs (``epoch == step // steps_per_epoch``) or at a
    ``max_steps`` stop inside one; the best epoch is one of the epochs done, and its checkpoint
    is what the final evaluation loads, so it is checked now rather than after the last epoch.
    """
    file, total = Path(path) / STATE_FILE, steps_per_epoch * epochs
    if state.step > total:
        raise CheckpointError(f"{file}: 'step' is {state.step}, expected at most {total} "
                              f"({epochs} epochs of {steps_per_epoch} steps in this run's recipe)")
    if state.epoch != state.step // steps_per_epoch:
        raise CheckpointError(f"{file}: 'epoch' is {state.epoch}, expected {state.step // steps_per_epoch} "
                              f"for step {state.step} ({steps_per_epoch} steps an epoch)")
    if state.epoch and (state.best_epoch is None or state.best_epoch > state.epoch or state.best_value is None):
        raise CheckpointError(f"{file}: 'best_epoch' is {state.best_epoch} and 'best_value' {state.best_value}, "
                              f"expected one of the {state.epoch} validated epochs and its value")
    if not state.epoch and state.best_epoch is not None:
        raise CheckpointError(f"{file}: 'best_epoch' is {state.best_epoch}, expected null before the first epoch ends")
    if state.best_epoch is not None:
        best = Path(path).parent / "best"
        try:
            verify(best)
        except CheckpointError as exc:
            raise CheckpointError(f"{exc}; the final evaluation loads checkpoints/best (epoch {state.best_epoch}, "
                                  "recorded in checkpoints/last), so training cannot resume without it") from exc
