"""The divergence probe and the first step's output check name every part of the model with
parameters: the unimodal heads and a balancer's calibration module too, not only the encoders,
the imputer and the fusion.

Before, a head or a calibration module that made NaN was blamed on a component it feeds or on
the learning rate: a head whose backward pass makes NaN named the encoder of its modality (the
NaN reaches it through ``z``); a head whose prediction is NaN from the first step ended as
"training diverged ... lower train.optimizer.lr" (its output was not looked at); a calibration
whose output turns NaN named the imputer it feeds, at the first step and in the probe. The heads
are the engine's (``model.unimodal_heads``), so the tests swap one in where the engine builds
them; the calibration comes from a test plugin. A fuzz of 5 parts x 3 faults (NaN output from the
start, from the second call, NaN gradients) named the wrong part or none in 5 cases; now none.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from mmcore.components import Balancer
from mmcore.engine import build
from mmcore.engine.blame import ComponentFault

from plugin_helpers import plugins_of, run_failure

HEAD = "the unimodal head for modality 'm1' (model.unimodal_heads)"
PROBE = "(one forward and backward pass from the initial weights, without a step, shows it); a lower learning rate will not help: fix the component"


class BrokenHead(nn.Module):
    """The engine's head for a modality, with one bug: ``sqrt_at_zero`` adds 0 in forward and NaN
    in backward (d sqrt(u)/du at 0 is inf, times 0); ``inf`` makes its prediction infinite from
    its ``start``-th call on."""

    def __init__(self, inner: nn.Module, bug: str, start: int = 1) -> None:
        super().__init__()
        self.inner, self.bug, self.start, self.calls = inner, bug, start, 0

    def forward(self, z: Tensor) -> Tensor:
        out = self.inner(z)
        self.calls += 1
        if self.bug == "sqrt_at_zero":
            return out + torch.sqrt((out * 0).abs())
        if self.bug == "inf" and self.calls >= self.start:
            return out * float("inf")
        return out


@pytest.fixture
def broken_head(monkeypatch: pytest.MonkeyPatch) -> Any:
    """``broken_head(bug, start)`` makes the next model's head for m1 a ``BrokenHead``."""

    def install(bug: str, start: int = 1) -> None:
        real = build.unimodal_heads

        def heads(*args: Any) -> nn.ModuleDict:
            made = real(*args)
            made["m1"] = BrokenHead(made["m1"], bug, start)
            return made

        monkeypatch.setattr(build, "unimodal_heads", heads)

    return install


@pytest.fixture(scope="module")
def plugins() -> Any:
    return plugins_of("probe", balancers={"probe.cal": CalibratedUniform})


def test_nan_gradients_from_a_unimodal_head_name_it_not_the_encoder_it_feeds(tmp_path, plugins, broken_head):
    """Before: "... : encoder 'mmcore.mlp' (plugin mmcore) for modality 'm1': its gradients are non-finite ..."."""
    broken_head("sqrt_at_zero")
    error = run_failure(tmp_path, plugins)
    assert isinstance(error, ComponentFault)
    assert str(error) == f"training diverged: loss is nan at epoch 1: {HEAD}: its gradients are non-finite (NaN or infinity) {PROBE}"


def test_a_head_predicting_nan_from_the_start_is_named_at_step_0(tmp_path, plugins, broken_head):
    """Before: "training diverged: loss is nan at epoch 1; lower train.optimizer.lr or set train.grad_clip"."""
    broken_head("inf")
    error = run_failure(tmp_path, plugins)
    assert isinstance(error, ComponentFault)
    assert str(error) == f"training step 0: {HEAD}: its prediction has non-finite values (NaN or infinity)"
    assert not list(tmp_path.rglob("eval.json"))


def test_a_head_that_turns_nan_later_is_named_by_the_probe(tmp_path, plugins, broken_head):
    """Step 0 is fine (the first step's check passes); from the second call on the head's
    prediction is infinite, the loss NaN, and the probe from the initial weights shows the head."""
    broken_head("inf", start=2)
    error = run_failure(tmp_path, plugins)
    assert str(error) == f"training diverged: loss is nan at epoch 1: {HEAD}: its prediction has non-finite values (NaN or infinity) {PROBE}"


class Calibration(nn.Module):
    """A scale per modality (parameters, as BALM's), whose output is NaN from its ``start``-th call on."""

    start = 2

    def __init__(self, modalities: int) -> None:
        super().__init__()
        self.scale, self.calls = nn.Parameter(torch.ones(modalities, 1)), 0

    def forward(self, h: Tensor, present: Tensor) -> Tensor:
        self.calls += 1
        return h * self.scale * (float("nan") if self.calls >= self.start else 1.0)


class CalibratedUniform(Balancer):
    """Uniform weights, with a calibration module before the imputer."""

    @staticmethod
    def calibration(specs: list[Any], dim: int, **_: Any) -> nn.Module:
        return Calibration(len(specs))


def test_a_calibration_module_that_turns_nan_is_named_not_the_imputer(tmp_path, plugins):
    """Before: "... : imputer 'mmcore.zero' (plugin mmcore): z has non-finite values (NaN or infinity) ..."."""
    error = run_failure(tmp_path, plugins, "balancer={type: probe.cal}")
    assert isinstance(error, ComponentFault)
    assert str(error) == (
        "training diverged: loss is nan at epoch 1: balancer 'probe.cal' (plugin probe) (its calibration module): "
        f"its output has non-finite values (NaN or infinity) {PROBE}"
    )


def test_a_calibration_module_nan_from_the_start_is_named_at_step_0(tmp_path, plugins, monkeypatch):
    """``ModelOutput`` does not keep the calibration's output: on this failure path it is computed
    again. Before: "training step 0: imputer 'mmcore.zero' (plugin mmcore): z has non-finite values ..."."""
    monkeypatch.setattr(Calibration, "start", 1)
    error = run_failure(tmp_path, plugins, "balancer={type: probe.cal}")
    assert str(error) == (
        "training step 0: balancer 'probe.cal' (plugin probe) (its calibration module): its output has non-finite values (NaN or infinity)"
    )


def test_a_head_raising_in_forward_is_named(tmp_path, plugins, monkeypatch, broken_head):
    """A head is labelled for ``blame_forward`` too. Before: "the model (no single component identified) raised ..."."""
    broken_head("none")

    def boom(self: BrokenHead, z: Tensor) -> Tensor:
        raise RuntimeError("head bug")

    monkeypatch.setattr(BrokenHead, "forward", boom)
    error = run_failure(tmp_path, plugins)
    assert str(error) == f"training step 0: {HEAD} raised RuntimeError: head bug"
