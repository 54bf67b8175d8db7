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

``check_resume(recipe, stop_after=7)`` does exactly that and checks everything a resume must
keep: the last checkpoint's weights (and buffers) bit for bit, the results, and every line of
``metrics.jsonl``. It returns the three runs, the straight run's weights and log lines, and the stopped run's
checkpoint as it was before the resume overwrote it, for a test's own checks of what was
logged or saved mid-run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
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


@dataclass
class ResumeCheck:
    """The runs of ``check_resume`` and what the straight run left behind."""

    straight: Any  # RunResult of the uninterrupted run
    stopped: Any  # RunResult of the run stopped after ``stop_after`` steps
    resumed: Any  # RunResult of the stopped run resumed to the end
    weights: dict[str, Any]  # the straight run's last checkpoint (parameters and buffers)
    lines: list[str]  # the straight run's metrics.jsonl lines
    # the stopped run's checkpoint as it was before resuming (the resumed run overwrites it)
    stopped_weights: dict[str, Any]
    stopped_state: dict[str, Any]  # its state.json (step, balancer state, ...)

    def logged(self) -> set[str]:
        """Every key any line of the straight run's metrics.jsonl holds."""
        return set().union(*(json.loads(line) for line in self.lines))


def check_resume(recipe: dict[str, Any], stop_after: int) -> ResumeCheck:
    """Train straight, train again stopping after ``stop_after`` steps, resume that run, and
    assert that the resumed run equals the straight one: checkpoint tensors bit for bit, the
    results and ``metrics.jsonl`` line for line. Stop mid-epoch to test mid-epoch state."""
    from safetensors.torch import load_file
    import torch

    straight = short_run(recipe)
    stopped = short_run(recipe, max_steps=stop_after)
    assert stopped.step == stop_after, f"the stopped run did {stopped.step} steps, not {stop_after}"
    last = Path(stopped.run_dir) / "checkpoints" / "last"
    stopped_weights = load_file(str(last / "model.safetensors"))
    stopped_state = json.loads((last / "state.json").read_text())
    resumed = short_run(recipe, resume=stopped.run_dir)
    a = load_file(str(Path(straight.run_dir) / "checkpoints" / "last" / "model.safetensors"))
    b = load_file(str(Path(resumed.run_dir) / "checkpoints" / "last" / "model.safetensors"))
    assert a.keys() == b.keys(), f"checkpoint keys differ: {sorted(a.keys() ^ b.keys())}"
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"after resuming, these tensors differ from the straight run's: {differ}"
    assert resumed.results == straight.results, "the resumed run's results differ from the straight run's"
    lines = (Path(straight.run_dir) / "metrics.jsonl").read_text().splitlines()
    assert lines == (Path(resumed.run_dir) / "metrics.jsonl").read_text().splitlines(), "metrics.jsonl differs after resuming"
    return ResumeCheck(straight, stopped, resumed, a, lines, stopped_weights, stopped_state)
