"""``run`` called from Python: what a caller hands it is checked, and the process is left as found.

The CLI hands ``run`` a recipe it has just resolved and a run directory it made itself. A
notebook, a script that trains several recipes in turn or a test suite may hand it anything: the
YAML tree as read, a path, a ``str`` run directory, a directory that holds an earlier run. Each is
either accepted as it would be meant or refused with one line, never a ``KeyError`` from deep in
the engine, a lock file that "cannot be opened", or an earlier run's files overwritten. And the
caller's process keeps its own random numbers and gets its memory back when ``run`` returns.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from mmcore.errors import MMCoreError, RecipeError
from mmcore.recipe import dump_yaml
from mmcore.recipe.schema import Recipe

RESOLVE_HINT = "mmcore.recipe.load_recipe(path) or mmcore.recipe.validate_recipe(tree) gives one"
# what a finished, stopped or running run leaves in its directory: a fresh run there would
# overwrite its results and append its lines to the earlier run's metrics.jsonl
EARLIER_RUN = ("eval.json", "metrics.jsonl", "checkpoints")


def resolved_copy(recipe: Any) -> dict[str, Any]:
    """The run's own copy of a resolved recipe, or one line saying what was expected.

    ``run`` reads a resolved recipe's keys directly (``plan_of``): anything else failed there with
    a ``KeyError`` or ``TypeError`` traceback. The copy keeps the caller's dict as it was: the
    engine hands the recipe's own lists to component factories, and one that extended its
    ``layers`` in place changed the caller's recipe, so the same dict trained another model the
    second time it was run."""
    if not isinstance(recipe, Mapping):
        raise RecipeError([f"run: the recipe is a {type(recipe).__name__}; expected a resolved recipe (a dict): {RESOLVE_HINT}"])
    missing = [f.name for f in dataclasses.fields(Recipe) if f.name not in recipe]
    if missing:
        raise RecipeError([f"run: the recipe is not resolved (no {', '.join(repr(k) for k in missing)}); "
                           f"expected every default written out: {RESOLVE_HINT}"])
    return copy.deepcopy(dict(recipe))


def as_path(run_dir: str | Path | None) -> Path | None:
    """A ``str`` run directory works as a ``Path`` does (a resume with one failed on ``/``)."""
    return None if run_dir is None else Path(run_dir)


def resume_dir(run_dir: Path | None) -> Path:
    """The directory a resume continues, refused at once when there is none: a missing one was
    reported as a lock file that "cannot be opened"."""
    if run_dir is None:
        raise MMCoreError("resume needs a run directory")
    if not run_dir.is_dir():
        raise MMCoreError(f"{run_dir}: cannot resume: no such run directory (expected the folder of an earlier run)")
    return run_dir


def fresh_run_dir(run_dir: Path, recipe: dict[str, Any]) -> Path:
    """``run_dir`` made ready for a fresh run: created when missing, with the recipe beside the
    run as ``new_run_dir`` writes it (so ``mmcore resume`` and ``mmcore eval`` can read it).

    A directory that holds an earlier run is refused: training there overwrote its checkpoints
    and ``eval.json`` and appended to its ``metrics.jsonl``, leaving a record of two runs under
    the first one's ``recipe.yaml``. A sweep's fresh directory holds its ``recipe.yaml`` only."""
    earlier = [name for name in EARLIER_RUN if (run_dir / name).exists()]
    if earlier:
        raise MMCoreError(f"{run_dir}: already holds a run ({', '.join(earlier)}); expected a new or empty directory "
                          "for a fresh run: continue that run with resume=True if it saved a checkpoint, or delete it, or choose another run_dir")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        recipe_file = run_dir / "recipe.yaml"
        if not recipe_file.exists():
            recipe_file.write_text(dump_yaml(recipe), encoding="utf-8")
    except OSError as exc:
        raise MMCoreError(f"{run_dir}: cannot create the run directory: {exc.strerror or exc}") from exc
    return run_dir


_TRAINING = threading.RLock()  # held by the thread that trains; re-entered by run()'s own fit()
_TRAINER: list[str] = []  # that thread's name, for the message


@contextlib.contextmanager
def one_run_at_a_time() -> Iterator[None]:
    """Refuse a second run while another thread of this process trains.

    Runs in one process share torch's global generator: two runs in threads (a thread pool over
    recipes) each seeded it and drew their dropout from it in turn, so both finished with numbers
    that neither recipe gives on its own (a 2-epoch tiny run: test accuracy 0.457 and 0.381 where
    it is 0.490 alone), written to their run directories as that recipe's results."""
    if not _TRAINING.acquire(blocking=False):
        raise MMCoreError(
            f"run: another run is training in this process (thread '{_TRAINER[0] if _TRAINER else '?'}'); runs in one "
            "process share torch's random generator, so two at once would not repeat their numbers: run them one "
            "after another, or in separate processes (mmcore sweep)"
        )
    first = not _TRAINER
    if first:
        _TRAINER.append(threading.current_thread().name)
    try:
        yield
    finally:
        if first:
            _TRAINER.clear()
        _TRAINING.release()


@contextlib.contextmanager
def callers_random_state(device: torch.device) -> Iterator[None]:
    """The caller's torch random state, restored when the run ends however it ends.

    A run seeds torch's global generator from the recipe (weights, dropout); a script that drew
    numbers after ``run`` returned drew them from wherever training had left the generator. The
    run's own numbers do not depend on the caller's state (``build_session`` seeds first), so
    restoring it changes nothing inside a run. Only the run's CUDA device is saved, and only when
    it runs there: saving any other would start CUDA in a process that never asked for it."""
    cpu = torch.get_rng_state()
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    try:
        yield
    finally:
        torch.set_rng_state(cpu)
        if cuda is not None:
            with contextlib.suppress(RuntimeError):  # a failed device must not hide the run's own error
                torch.cuda.set_rng_state(cuda, device)


def step_reader(trainer: Any) -> Callable[[], int]:
    """The trainer's current step, for messages, without a reference back to the trainer.

    A closure over the trainer, held by an object the trainer holds, made a reference cycle: the
    session (the whole dataset on the device) and the model outlived ``run`` until Python's cycle
    collector happened to run, so a script's next run was built beside the previous one's data."""
    ref = weakref.ref(trainer)
    return lambda: ref().state.step
