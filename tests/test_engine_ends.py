"""Four loose ends of the training engine, each a run that looked fine and was not.

- a component that makes a layer inside its first ``forward`` trained it never (the optimiser was
  built before it existed) and lost it on resume, in silence: now the run stops at step 0 naming it;
- NaN gradients made by one encoder's backward stopped as "training diverged ... lower
  train.optimizer.lr": now the encoder is named (a probe on the failure path only);
- ``train(session)`` a second time trained on from the first run's weights as a "new" run: refused;
- ``RunResult.run_dir`` was relative under a relative ``output`` and broke after a ``chdir``.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from typer.testing import CliRunner

from mmcore.engine import guards, trainer as trainer_module
from mmcore.engine.blame import ComponentFault
from mmcore.engine.runtime import Runtime
from mmcore.engine.session import build_session
from mmcore.engine.trainer import Trainer, run, train
from mmcore.errors import MMCoreError
from mmcore.recipe import apply_overrides, dump_yaml
from mmcore.testing import tiny_recipe

from plugin_helpers import plugins_of, recipe_with, run_failure

LABEL = "encoder 'ends.enc' (plugin ends) for modality 'm1'"


class Encoder(nn.Module):
    """A linear encoder with one bug a plugin could ship (``bug``)."""

    def __init__(self, spec: Any, dim: int, bug: str = "none") -> None:
        super().__init__()
        self.lin, self.bug, self.dim, self.calls = nn.Linear(spec.dim, dim), bug, dim, 0

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        out = self.lin(x)
        self.calls += 1
        if self.bug == "late_layer":  # made on the first call: after the optimiser was built
            if not hasattr(self, "extra"):
                self.extra = nn.Linear(self.dim, self.dim).to(x.device)
            return self.extra(out)
        if self.bug == "sqrt_at_zero":  # forward adds 0; backward: d sqrt(u)/du at u = 0 is inf, times 0 is NaN
            return out + torch.sqrt((out * 0).abs())
        if self.bug == "glitch" and self.calls == 3:  # one bad step, then fine: nothing for a probe to find
            return out * float("inf")
        return out


@pytest.fixture(scope="module")
def plugins() -> Any:
    return plugins_of("ends", encoders={"ends.enc": Encoder})


# ------------------------------------------------------------------------ 1. a layer made in forward


def test_a_layer_made_in_the_first_forward_stops_the_run_naming_its_component(tmp_path, plugins):
    """Before: the run finished (5 steps, eval.json), ``extra`` never trained and absent from resume."""
    error = run_failure(tmp_path, plugins, "model.encoders.m1={type: ends.enc, bug: late_layer}")
    assert isinstance(error, ComponentFault)
    assert str(error) == (
        f"training step 0: {LABEL}: parameters ['extra.weight', 'extra.bias'] appeared during forward, after the optimizer "
        "was built: they would never be trained, and a checkpoint would not restore them; create every layer in __init__"
    )
    assert not list(tmp_path.rglob("eval.json")) and not list(tmp_path.rglob("last"))


def test_the_command_line_says_it_in_one_line_with_exit_1(tmp_path, plugins, monkeypatch):
    import mmcore.plugins as loader
    from mmcore.cli import app

    monkeypatch.setattr(loader, "_cached", plugins)
    tree = apply_overrides(tiny_recipe(tmp_path, "train.epochs=1"), ["model.encoders.m1={type: ends.enc, bug: late_layer}"])
    (tmp_path / "r.yaml").write_text(dump_yaml(tree))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "r.yaml"), "--no-progress"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1, result.output
    assert lines[0].startswith(f"error: training step 0: {LABEL}: parameters ['extra.weight', 'extra.bias'] appeared")


def test_the_parameter_check_runs_once_in_a_run(tmp_path, plugins, monkeypatch):
    """One look at the ids after the first forward, none in the 9 steps after it."""
    calls = []

    def counted(*args: Any) -> None:
        calls.append(args[3])
        guards.check_parameters(*args)

    monkeypatch.setattr(trainer_module, "check_parameters", counted)
    result = run(recipe_with(tmp_path, plugins, "train.epochs=2"), plugins=plugins, show_progress=False)
    assert result.step == 10 and calls == ["training step 0"]


# ------------------------------------------------------------------ 2. divergence from one component


def test_nan_gradients_from_one_encoder_name_it_not_the_learning_rate(tmp_path, plugins):
    """Before: "training diverged: loss is nan at epoch 1; lower train.optimizer.lr or set train.grad_clip"."""
    error = run_failure(tmp_path, plugins, "model.encoders.m1={type: ends.enc, bug: sqrt_at_zero}")
    assert isinstance(error, ComponentFault)
    assert str(error) == (
        f"training diverged: loss is nan at epoch 1: {LABEL}: its gradients are non-finite (NaN or infinity) although the "
        "gradient reaching its output is finite, so its own backward pass makes them (one forward and backward pass from "
        "the initial weights, without a step, shows it); a lower learning rate will not help: fix the component"
    )


def test_after_a_checkpoint_the_probe_starts_from_it_and_the_message_says_how_to_resume(tmp_path, plugins, monkeypatch):
    """Epoch 1 is fine; the bug starts in epoch 2 (switched on by a flag), and the message keeps the resume hint."""
    on = {"bug": False}
    real = Encoder.forward

    def later(self: Encoder, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        self.bug = "sqrt_at_zero" if on["bug"] else "none"
        return real(self, x, lengths)

    monkeypatch.setattr(Encoder, "forward", later)
    end_epoch = Trainer.end_epoch

    def switch_on(self: Trainer, epoch: int) -> None:
        end_epoch(self, epoch)
        on["bug"] = True

    monkeypatch.setattr(Trainer, "end_epoch", switch_on)
    error = run_failure(tmp_path, plugins, "model.encoders.m1={type: ends.enc}", "train.epochs=2")
    message = str(error)
    assert message.startswith(f"training diverged: loss is nan at epoch 2: {LABEL}: its gradients are non-finite")
    assert "(one forward and backward pass from checkpoints/last, without a step, shows it)" in message
    assert "checkpoints/last holds step 5" in message and "continue with: mmcore resume " in message


def test_a_divergence_no_component_shows_keeps_its_message(tmp_path, plugins):
    """An infinity at one step only (as a too-high learning rate gives): the probe finds nothing to name."""
    error = run_failure(tmp_path, plugins, "model.encoders.m1={type: ends.enc, bug: glitch}")
    assert type(error) is not ComponentFault
    assert str(error) == "training diverged: loss is nan at epoch 1; lower train.optimizer.lr or set train.grad_clip"


# -------------------------------------------------------------------- 3. a session trains once


def test_training_a_session_twice_is_refused_and_its_resume_still_works(tmp_path):
    recipe = tiny_recipe(tmp_path, "train.epochs=1")
    session = build_session({**recipe, "train": {**recipe["train"], "max_steps": 3}}, Runtime(torch.device("cpu")))
    stopped = train(session, show_progress=False)
    runs = sorted((tmp_path / "tiny").iterdir())
    with pytest.raises(MMCoreError) as info:
        train(session, show_progress=False)  # before: a second "fresh" run from the first one's weights
    assert str(info.value) == (
        f"train: this session already trained (run {stopped.run_dir}), so its model holds trained weights; a session trains "
        "once: build a new one (mmcore.engine.session.build_session, or run(recipe)) for a fresh run, or continue that run "
        f"with run_dir='{stopped.run_dir}', resume=True"
    )
    assert sorted((tmp_path / "tiny").iterdir()) == runs  # refused before a run directory was made
    session.recipe = recipe  # the documented use: the same session resumes its run
    resumed = train(session, run_dir=stopped.run_dir, resume=True, show_progress=False)
    assert resumed.step == 5 and resumed.results is not None


def test_fit_twice_on_one_trainer_is_refused(tmp_path):
    recipe = tiny_recipe(tmp_path, "train.epochs=1", "train.max_steps=2")
    trainer = Trainer(build_session(recipe, Runtime(torch.device("cpu"))), show_progress=False)
    first = trainer.fit()
    with pytest.raises(MMCoreError, match=r"^Trainer\.fit: this trainer has already run \(run .*\); a session trains once"):
        trainer.fit()
    assert first.step == 2 and trainer.state.step == 2  # the refused call trained nothing


# ---------------------------------------------------------------- 4. an absolute run directory


def test_the_run_directory_is_absolute_under_a_relative_output(tmp_path, monkeypatch):
    """Before: ``Path('runs/tiny/<stamp>')``, which named nothing once the caller changed directory."""
    monkeypatch.chdir(tmp_path)
    result = run(tiny_recipe("runs", "train.epochs=1"), show_progress=False)
    assert result.run_dir.is_absolute() and result.run_dir.parent == tmp_path / "runs" / "tiny"
    os.chdir(tmp_path.parent)
    assert (result.run_dir / "eval.json").is_file()
