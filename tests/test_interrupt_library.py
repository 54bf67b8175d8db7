"""Ctrl-C during ``mmcore.engine.trainer.run`` in a library loop.

The defect: ``run`` turns a Ctrl-C (or SIGTERM) in training into ``RunInterrupted``, which was an
``MMCoreError`` only, so a loop over recipes that stops on ``except KeyboardInterrupt`` never saw
it (a Ctrl-C before training, while data loads, is a plain ``KeyboardInterrupt``; the same key in
training was not) and its ``except MMCoreError`` went on to the next recipe. ``RunInterrupted`` is
now also a ``KeyboardInterrupt``. It stays an ``MMCoreError``: ``except RunInterrupted``, the CLI's
one line with exit code 130 and the resumable run are as they were, and a loop whose only handler
is ``except MMCoreError`` still continues (catch ``RunInterrupted`` or ``KeyboardInterrupt`` first).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from mmcore.engine import trainer
from mmcore.engine.trainer import RunInterrupted, run
from mmcore.errors import MMCoreError
from mmcore.recipe import dump_yaml
from mmcore.testing import tiny_recipe

TWO_EPOCHS = "train.epochs=2"  # 5 steps an epoch: checkpoints/last holds step 5 after the first


@pytest.fixture
def ctrl_c_at_step_7(monkeypatch: pytest.MonkeyPatch) -> None:
    """The 8th training step of the process (step 7, in epoch 2) is interrupted, as by Ctrl-C."""
    step, calls = trainer.Trainer.step, [0]

    def interrupted(self: Any, *args: Any) -> None:
        calls[0] += 1
        if calls[0] == 8:
            raise KeyboardInterrupt
        step(self, *args)

    monkeypatch.setattr(trainer.Trainer, "step", interrupted)


def test_a_loop_stopping_on_keyboard_interrupt_stops_on_ctrl_c_in_training(tmp_path: Path, ctrl_c_at_step_7: None) -> None:
    """Before: the ``except MMCoreError`` branch took it and the loop trained recipe b."""
    finished, stopped_by = [], None
    for name in ("a", "b"):
        try:
            finished.append(run(tiny_recipe(tmp_path / name, TWO_EPOCHS), show_progress=False))
        except KeyboardInterrupt as exc:
            stopped_by = exc
            break
        except MMCoreError:
            continue
    assert isinstance(stopped_by, RunInterrupted) and finished == []
    assert str(stopped_by).startswith("interrupted at step 7: checkpoints/last holds step 5")
    assert not (tmp_path / "b").exists()


def test_except_run_interrupted_and_except_mmcore_error_still_catch_it_and_it_resumes(tmp_path: Path, monkeypatch, ctrl_c_at_step_7: None) -> None:
    recipe = tiny_recipe(tmp_path, TWO_EPOCHS)
    with pytest.raises(RunInterrupted) as info:
        run(recipe, show_progress=False)
    error = info.value
    assert isinstance(error, MMCoreError) and error.exit_code == 130
    run_dir = Path(str(error).split("continue with: mmcore resume ")[1])
    assert (run_dir / "checkpoints" / "last").is_dir() and not (run_dir / "eval.json").exists()
    try:  # a handler written for MMCoreError sees it as before
        raise error
    except MMCoreError as caught:
        assert caught is error
    monkeypatch.undo()  # no more interruptions: the stopped run resumes to the straight run's numbers
    resumed = run(recipe, run_dir=run_dir, resume=True, show_progress=False)
    straight = run(tiny_recipe(tmp_path / "straight", TWO_EPOCHS), show_progress=False)
    assert resumed.step == 10 and resumed.results == straight.results


def test_the_command_line_still_says_it_in_one_line_with_exit_130(tmp_path: Path, ctrl_c_at_step_7: None) -> None:
    from mmcore.cli import app

    (tmp_path / "r.yaml").write_text(dump_yaml(tiny_recipe(tmp_path, TWO_EPOCHS)))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "r.yaml"), "--no-progress"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 130 and len(lines) == 1, result.output
    assert lines[0].startswith("error: interrupted at step 7: checkpoints/last holds step 5")
    assert "continue with: mmcore resume " in lines[0]


def _ctrl_c(*args: Any, **kwargs: Any) -> None:
    raise KeyboardInterrupt


def test_a_sweep_or_study_stopped_by_ctrl_c_stops_a_loop_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep's and the study's own ``Interrupted`` were ``MMCoreError`` only, as
    ``RunInterrupted`` was: all three are ``mmcore.errors.Interrupted`` now."""
    from mmcore.errors import Interrupted
    from mmcore.study import run as study_run
    from mmcore.sweep import sweep as sweep_module
    from mmcore.sweep import Interrupted as exported

    from recipe_helpers import quiet_console, small_recipe_file

    monkeypatch.setattr(sweep_module, "run_local", _ctrl_c)
    monkeypatch.setattr(study_run, "run_phase", _ctrl_c)
    recipe = small_recipe_file(tmp_path)
    (tmp_path / "study.yaml").write_text(f"name: s\nrecipe: {recipe}\nseeds: 2\narms:\n  uniform: {{balancer: mmcore.uniform}}\n"
                                         "  dropout: {from: uniform, train.modality_dropout: 0.3}\n"
                                         "analysis:\n  primary: test.average.macro_f1\n  compare: [[dropout, uniform]]\n")
    calls = {"sweep": lambda: sweep_module.run_sweep(recipe, [], [], seeds="0", out=tmp_path / "sw", console=quiet_console()),
             "study": lambda: study_run.run_study(tmp_path / "study.yaml", out=tmp_path / "st", console=quiet_console())}
    for name, call in calls.items():
        stopped_by = None
        for _ in range(2):  # a loop over sweeps: the first Ctrl-C ends it
            try:
                call()
            except KeyboardInterrupt as exc:
                stopped_by = exc
                break
            except MMCoreError:
                continue
        assert isinstance(stopped_by, Interrupted) and isinstance(stopped_by, MMCoreError), name
        assert stopped_by.exit_code == 130 and "again" in str(stopped_by), (name, str(stopped_by))
    assert exported is sweep_module.SweepInterrupted  # the name mmcore.sweep exported before
