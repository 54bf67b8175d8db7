"""A third-party component that misbehaves at training time is named in one line, never trained on.

Each fake component below has one bug a plugin author could ship: a wrong shape, dtype or a
detached output, loss terms of the wrong shape (which used to broadcast into wrong numbers),
NaN from the first step, a balancer with negative weights or a raising hook, ``sys.exit`` in a
forward pass (which used to end ``mmcore run`` with status 0), a logger that raises. The run
must stop with one line that names the component, its plugin and what was expected; a fault
after the first checkpoint leaves a run that ``mmcore resume`` continues once it is fixed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from typer.testing import CliRunner

import mmcore
from mmcore import ImputerOutput, hookimpl
from mmcore.engine.trainer import run
from mmcore.errors import MMCoreError
from mmcore.plugins import load_plugins
from mmcore.recipe import apply_overrides, dump_yaml
from mmcore.testing import check_balancer, check_encoder, check_fusion, check_logger, tiny_recipe

from plugin_helpers import recipe_with, run_failure

BROKEN = {"on": True}  # the mid-run fault is "fixed" by switching this off before the resume


class Encoder(nn.Module):
    def __init__(self, spec: Any, dim: int, bug: str = "none") -> None:
        super().__init__()
        self.lin, self.bug = nn.Linear(spec.dim, dim), bug

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        out = self.lin(x)
        if self.bug == "wide":
            return torch.cat([out, out[:, :1]], 1)
        if self.bug == "detached":
            return out.detach()
        if self.bug == "float64":
            return out.double()
        if self.bug == "nan":
            return out * float("nan")
        if self.bug == "exit":
            sys.exit(0)
        return out


class Imputer(nn.Module):
    loss_groups = ("recon",)

    def __init__(self, specs: Any, dim: int, bug: str = "none") -> None:
        super().__init__()
        self.lin, self.bug = nn.Linear(dim, dim), bug

    def forward(self, h: Tensor, present: Tensor) -> ImputerOutput:
        z = torch.where(present.unsqueeze(-1), h, self.lin(h * 0))
        recon = (z - h).pow(2).mean((0, 2))
        return ImputerOutput(z=z, losses={"recon": recon.unsqueeze(1) if self.bug == "column" else recon})


class Fusion(nn.Module):
    def __init__(self, specs: Any, dim: int, out_dim: int, bug: str = "none") -> None:
        super().__init__()
        self.lin = nn.Linear(dim * len(specs), out_dim + (1 if bug == "extra_class" else 0))

    def forward(self, z: Tensor, present: Tensor) -> Tensor:
        return self.lin(z.flatten(1))


class Weights(mmcore.Balancer):
    def __init__(self, modalities: list[str], target: str = "unimodal", bug: str = "none", at: int = 0) -> None:
        super().__init__(modalities, target)
        self.bug, self.at, self.seen = bug, at, 0

    def weights(self) -> Tensor:
        w = torch.ones(len(self.modalities), device=self.device)
        if self.bug == "attached":  # a plugin from before the checks: it worked, so it keeps working
            return w.requires_grad_()
        return -w if self.bug == "negative" else w

    def observe(self, stats: Any) -> None:
        self.seen += 1
        if self.bug == "observe" and self.seen > self.at and BROKEN["on"]:
            raise ValueError("observe is broken")

    def state_dict(self) -> dict[str, Any]:
        return {"seen": torch.tensor(self.seen) if self.bug == "tensor_state" else self.seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seen = int(state["seen"])


class Raising(mmcore.Logger):
    def __init__(self, where: str = "log_step") -> None:
        self.where = where

    def log_step(self, step: int, scalars: dict[str, float]) -> None:
        if self.where == "log_step":
            raise OSError("disk on fire")

    def close(self) -> None:
        if self.where == "close":
            raise OSError("cannot flush")


class Faulty:
    @hookimpl
    def register_encoders(self, register: Any) -> None:
        register("faulty.enc", Encoder)

    @hookimpl
    def register_imputers(self, register: Any) -> None:
        register("faulty.imp", Imputer)

    @hookimpl
    def register_fusions(self, register: Any) -> None:
        register("faulty.fus", Fusion)

    @hookimpl
    def register_balancers(self, register: Any) -> None:
        register("faulty.bal", Weights)

    @hookimpl
    def register_loggers(self, register: Any) -> None:
        register("faulty.log", Raising)


@pytest.fixture(scope="module")
def plugins() -> Any:
    return load_plugins(extra={"faulty": Faulty()})


ENC = "model.encoders.m1={type: faulty.enc, bug: %s}"
CASES = [
    (ENC % "wide", "encoder 'faulty.enc' (plugin faulty) for modality 'm1': its output has shape [64, 17], expected [64, 16]"),
    (ENC % "float64", "encoder 'faulty.enc' (plugin faulty) for modality 'm1': its output has dtype float64, expected float32"),
    (ENC % "detached", "encoder 'faulty.enc' (plugin faulty) for modality 'm1': its output does not require grad"),
    (ENC % "nan", "encoder 'faulty.enc' (plugin faulty) for modality 'm1': its output has non-finite values"),
    (ENC % "exit", "encoder 'faulty.enc' (plugin faulty) for modality 'm1' raised SystemExit: 0"),
    ("model.imputer={type: faulty.imp, bug: column}", "imputer 'faulty.imp' (plugin faulty): losses['recon'] (one term per modality) has shape [3, 1], expected [3]"),
    ("model.fusion={type: faulty.fus, bug: extra_class}", "fusion 'faulty.fus' (plugin faulty): its prediction has shape [64, 5], expected [64, 4]"),
    ("balancer={type: faulty.bal, bug: negative}", "balancer 'faulty.bal' (plugin faulty): weights() at training step 0: weights() returned m0=-1.0, m1=-1.0, m2=-1.0; weights must be finite and >= 0"),
    ("balancer={type: faulty.bal, bug: observe}", "balancer 'faulty.bal' (plugin faulty): observe(stats) at training step 0 raised ValueError: observe is broken"),
    ("balancer={type: faulty.bal, bug: tensor_state}", "balancer 'faulty.bal' (plugin faulty): state_dict() at training step 5: state_dict() is not JSON data"),
    ("logging=[{type: faulty.log}]", "logger 'faulty.log' (plugin faulty): log_step() at step 2 raised OSError: disk on fire"),
    ("logging=[{type: mmcore.jsonl}, {type: faulty.log, where: close}]", "logger 'faulty.log' (plugin faulty): close() raised OSError: cannot flush"),
]


IDS = ["enc-wide", "enc-float64", "enc-detached", "enc-nan", "enc-exit", "imp-loss-column", "fus-extra-class",
       "bal-negative", "bal-observe", "bal-tensor-state", "log-step", "log-close"]


@pytest.mark.parametrize(("override", "expected"), CASES, ids=IDS)
def test_a_faulty_component_stops_the_run_with_one_line_naming_it(tmp_path, plugins, override, expected):
    assert expected in str(run_failure(tmp_path, plugins, override))


def test_attached_weights_train_as_before_with_a_warning_naming_the_replacement(tmp_path, plugins):
    plain = run(recipe_with(tmp_path / "a", plugins, "balancer={type: faulty.bal}"), plugins=plugins, show_progress=False)
    with pytest.warns(FutureWarning, match=r"return weights.detach\(\)"):
        attached = run(recipe_with(tmp_path / "b", plugins, "balancer={type: faulty.bal, bug: attached}"), plugins=plugins,
                       show_progress=False)
    assert json.loads((attached.run_dir / "eval.json").read_text())["results"] == \
        json.loads((plain.run_dir / "eval.json").read_text())["results"]


def test_sys_exit_in_a_component_is_exit_1_with_one_line_not_a_silent_exit_0(tmp_path, plugins, monkeypatch):
    """Through the command line: before, ``mmcore run`` ended with status 0 and printed nothing."""
    import mmcore.plugins as loader
    from mmcore.cli import app

    monkeypatch.setattr(loader, "_cached", plugins)
    tree = apply_overrides(tiny_recipe(tmp_path, "train.epochs=1"), [ENC % "exit"])
    (tmp_path / "r.yaml").write_text(dump_yaml(tree))
    result = CliRunner().invoke(app, ["run", str(tmp_path / "r.yaml"), "--no-progress"])
    output = result.output  # stdout and stderr, as a terminal shows them
    assert result.exit_code == 1, output
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if line.strip()]
    assert lines == ["error: training step 0: encoder 'faulty.enc' (plugin faulty) for modality 'm1' raised SystemExit: 0"]


def test_a_fault_after_a_checkpoint_says_how_to_resume_and_the_resume_finishes(tmp_path, plugins):
    BROKEN["on"] = True
    recipe = recipe_with(tmp_path, plugins, "train.epochs=2", "balancer={type: faulty.bal, bug: observe, at: 7}")
    with pytest.raises(MMCoreError) as info:
        run(recipe, plugins=plugins, show_progress=False)
    message = str(info.value)
    assert message.startswith("balancer 'faulty.bal' (plugin faulty): observe(stats) at training step 7 raised ValueError")
    assert "checkpoints/last holds step 5" in message and "continue with: mmcore resume " in message
    run_dir = message.rsplit("mmcore resume ", 1)[1]
    BROKEN["on"] = False  # the plugin is fixed
    try:
        result = run(recipe, plugins=plugins, run_dir=Path(run_dir), resume=True, show_progress=False)
    finally:
        BROKEN["on"] = True
    assert result.step == 10 and result.results is not None
    assert json.loads((result.run_dir / "eval.json").read_text())


def test_the_contract_suite_refuses_what_the_engine_refuses():
    with pytest.raises(AssertionError, match=r"encoder 'x.enc' \(plugin x\): output has dtype float64, expected float32"):
        check_encoder(_component("encoder", Encoder), options={"bug": "float64"})
    with pytest.raises(AssertionError, match=r"weights\(\) has dtype complex64, expected a real"):
        check_balancer(_component("balancer", _ComplexWeights))
    with pytest.raises(AssertionError, match=r"log_values\(\)\['w'\] is shape \[5\], expected a scalar or a \[3\] tensor"):
        check_balancer(_component("balancer", _WideLog))
    with pytest.raises(AssertionError, match=r"logger 'x.log' \(plugin x\): close\(\) raised SystemExit: 0"):
        check_logger(_component("logger", _ExitingLogger))


def test_the_named_logger_forwards_every_method_of_the_logger_interface():
    from mmcore.engine.blame import NamedLogger

    public = {n for n, v in vars(mmcore.Logger).items() if callable(v) and not n.startswith("_")}
    assert public <= set(vars(NamedLogger)), public - set(vars(NamedLogger))


def _component(kind: str, factory: Any) -> Any:
    from mmcore.registry import Registry

    return Registry().register(kind, f"x.{kind[:3]}", factory, origin="x")


class _DoubleFusion(Fusion):
    def forward(self, z: Tensor, present: Tensor) -> Tensor:
        return super().forward(z, present).double()


class _GradWeights(mmcore.Balancer):
    def weights(self) -> Tensor:
        return torch.ones(len(self.modalities), requires_grad=True)


class _ComplexWeights(mmcore.Balancer):
    def weights(self) -> Tensor:
        return torch.ones(len(self.modalities), dtype=torch.complex64)


def test_what_a_run_accepted_before_these_checks_still_passes_the_contract_suite():
    """Kept working for plugins written earlier: a float64 prediction (the loss takes it), and
    weights that require grad (detached, with a warning naming the replacement)."""
    check_fusion(_component("fusion", _DoubleFusion))
    with pytest.warns(FutureWarning, match=r"return weights.detach\(\)"):
        check_balancer(_component("balancer", _GradWeights))


class _WideLog(mmcore.Balancer):
    def log_values(self) -> dict[str, Tensor]:
        return {"w": torch.ones(len(self.modalities) + 2)}


class _ExitingLogger(mmcore.Logger):
    def close(self) -> None:
        sys.exit(0)
