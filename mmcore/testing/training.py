"""The training-level API for plugin tests: run a resolved recipe, stop it, resume it.

``short_run(recipe)`` trains and evaluates the way ``mmcore run`` does and returns the engine's
``RunResult``: ``run_dir`` (the run directory, with ``metrics.jsonl``, ``eval.json`` and
``checkpoints/{last,best}``), ``step`` (optimisation steps done), ``stopped_early``,
``best_epoch`` and ``results`` (split -> condition -> metric -> value; None when stopped early).

Stop and resume in a test, the check that a component's state survives a checkpoint::

    recipe = tiny_recipe(tmp_path, balancer={"type": "myplugin.fancy"})
    straight = short_run(recipe)
    half = short_run(recipe, max_steps=7)          # stops after 7 steps, resumably
    resumed = short_run(recipe, resume=half.run_dir)
    assert resumed.results == straight.results
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def short_run(recipe: dict[str, Any], *, max_steps: int | None = None, resume: str | Path | None = None) -> Any:
    """Train ``recipe`` (resolved, e.g. by ``tiny_recipe``) without a progress bar.

    ``max_steps`` stops after that many optimisation steps in total (``train.max_steps``);
    ``resume`` continues the run directory of an earlier stopped run from its last checkpoint.
    """
    from mmcore.engine.trainer import run  # the engine is heavy; plugin tests that never train skip it

    if max_steps is not None:
        recipe = {**recipe, "train": {**recipe["train"], "max_steps": int(max_steps)}}
    run_dir = None if resume is None else Path(resume)
    return run(recipe, run_dir=run_dir, resume=run_dir is not None, show_progress=False)
