"""Stops at the end of a run (issue 28, item 7): a stop during the final evaluation says that
``mmcore resume`` finishes it (and it does), and a stop after the last file is written is a
success, exit 0, never 130 or -15."""

from __future__ import annotations

import os
import signal

import pytest
import typer
from safetensors.torch import load_file

from mmcore import clitools
from mmcore.clitools import friendly_errors, sigterm_as_interrupt
from mmcore.engine import stopping
from mmcore.engine import trainer as trainer_module
from mmcore.engine.trainer import RunInterrupted, run
from mmcore.testing import tiny_recipe


@pytest.fixture
def sigterm_restored():
    previous = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, previous)
    stopping.reset()


def test_a_stop_during_the_final_evaluation_says_resume_finishes_it(tmp_path, monkeypatch):
    straight = run(tiny_recipe(tmp_path / "a", "train.epochs=2"), show_progress=False)
    recipe = tiny_recipe(tmp_path / "b", "train.epochs=2")
    load = trainer_module.load_model_weights

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt  # SIGTERM, as sigterm_as_interrupt delivers it

    monkeypatch.setattr(trainer_module, "load_model_weights", stopped)
    with pytest.raises(RunInterrupted, match="interrupted during the final evaluation") as info:
        run(recipe, show_progress=False)
    message = str(info.value)
    assert "training had finished, step 10" in message and "mmcore resume" in message and "finishes it" in message
    run_dir = message.split("mmcore resume ")[1].split(" finishes")[0]
    assert not os.path.exists(os.path.join(run_dir, "eval.json"))
    monkeypatch.setattr(trainer_module, "load_model_weights", load)
    resumed = run(recipe, run_dir=trainer_module.Path(run_dir), resume=True, show_progress=False)
    assert resumed.results == straight.results
    a = load_file(str(straight.run_dir / "checkpoints" / "best" / "model.safetensors"))
    b = load_file(str(resumed.run_dir / "checkpoints" / "best" / "model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


def test_sigterm_after_the_work_is_complete_is_ignored_and_stays_ignored(sigterm_restored, monkeypatch):
    monkeypatch.setattr(clitools, "_ENDS_PROCESS", [True])  # as in `mmcore`'s own process (cli.main)
    with sigterm_as_interrupt():
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
        stopping.mark_complete()
        os.kill(os.getpid(), signal.SIGTERM)  # the run is written: nothing to stop
    os.kill(os.getpid(), signal.SIGTERM)  # after the command returned, until the process ends
    with sigterm_as_interrupt():  # the next command starts incomplete
        assert not stopping.complete()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)


def test_an_interrupt_after_the_work_is_complete_exits_0(sigterm_restored):
    @friendly_errors
    def finished_then_interrupted() -> None:
        stopping.mark_complete()
        raise KeyboardInterrupt

    @friendly_errors
    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(typer.Exit) as done:
        finished_then_interrupted()
    assert done.value.exit_code == 0
    with pytest.raises(typer.Exit) as stopped:
        interrupted()
    assert stopped.value.exit_code == 130


def test_a_complete_run_is_marked_complete_and_leaves_no_partial_eval_file(tmp_path):
    stopping.reset()
    result = run(tiny_recipe(tmp_path), show_progress=False)
    assert stopping.complete()
    stopping.reset()
    assert (result.run_dir / "eval.json").is_file()
    assert not list(result.run_dir.glob(".eval.json.tmp-*"))
