"""The balancer hooks: optional statistics only when asked, an extra loss, per-group gradients, epoch end."""

from __future__ import annotations

from typing import Any

import torch

import mmcore
from mmcore.components import EpochView, StepView, requested_stats
from mmcore.testing import short_run, tiny_recipe


class Legacy(mmcore.Balancer):
    def observe(self, stats: Any) -> None:  # written before ``needs``: still gets confidences
        self.seen = stats.unimodal_confidence


class Recorder(mmcore.Balancer):
    """Records what every hook received, and adds a known extra term."""

    needs = frozenset({"group_grads"})
    gradient_groups = ("task", "unimodal")
    calls: list[tuple[str, Any]] = []

    def extra_loss(self, view: StepView) -> torch.Tensor:
        probe = view.probe(torch.zeros_like(view.present).index_fill_(1, torch.tensor([0]), True))
        Recorder.calls.append(("extra", (view.z.shape, view.present.shape, probe.shape, probe.requires_grad)))
        return 0.25 * view.z.pow(2).mean()

    def modulate_gradients(self, model: Any, stats: Any) -> None:
        Recorder.calls.append(("grads", stats))

    def end_epoch(self, view: EpochView) -> None:
        z, target, present = view.latents()
        Recorder.calls.append(("epoch", (view.epoch, sorted(view.val)[:1], z.shape, target.shape, present.shape)))


def test_requested_stats():
    assert requested_stats(mmcore.Balancer(["a"])) == frozenset()
    assert requested_stats(Legacy(["a"])) == {"unimodal_confidence"}
    assert requested_stats(Recorder(["a"])) == {"group_grads"}
    from mmcore_baselines.ogm_ge import OGMGE
    from mmcore_redcore.balancer import RelativeAdvantage

    assert requested_stats(OGMGE(["a", "b"])) == {"unimodal_confidence"}
    assert requested_stats(RelativeAdvantage(["a", "b"])) == frozenset()


def test_hooks_reach_the_balancer(tmp_path, monkeypatch):
    Recorder.calls = []
    recipe = tiny_recipe(tmp_path, "train.epochs=1")
    from mmcore.engine import trainer

    monkeypatch.setattr(trainer, "build_balancer", lambda *a, **k: Recorder(["m0", "m1", "m2"]))
    short_run(recipe)
    kinds = [k for k, _ in Recorder.calls]
    assert kinds == ["extra", "grads"] * 5 + ["epoch"]
    zshape, pshape, probe_shape, probe_grad = Recorder.calls[0][1]
    assert zshape[1:] == (3, 16) and pshape[1] == 3 and probe_shape == (zshape[0], 4) and not probe_grad
    stats = Recorder.calls[1][1]
    assert stats.unimodal_confidence is None  # not asked for
    assert set(stats.group_grads) == {"task", "unimodal"}
    assert len(stats.group_grads["task"]) == 3
    assert all(g.abs().sum() > 0 for g in stats.group_grads["unimodal"][0])
    epoch, _, z, target, present = Recorder.calls[-1][1]
    assert epoch == 1 and z == (280, 3, 16) and target == (280,) and present == (280, 3)
    lines = (next(tmp_path.rglob("metrics.jsonl"))).read_text()
    assert "balancer_loss" in lines


def test_group_gradients_sum_to_the_total(tmp_path):
    """task + unimodal (+ the zero imputer's nothing) is the whole loss: their encoder gradients add up."""
    from mmcore.engine import losses
    from mmcore.engine.model import MultimodalModel  # noqa: F401 - the model the session builds
    from mmcore.engine.runtime import runtime_for
    from mmcore.engine.session import build_session

    recipe = tiny_recipe(tmp_path)
    with runtime_for(recipe) as rt:
        session = build_session(recipe, rt)
        model, data = session.model, session.splits["train"]
        index = torch.arange(16)
        present = torch.ones(16, 3, dtype=torch.bool)
        out = model(data.select(index), present)
        w = torch.ones(3)
        loss, task, groups = losses.combine(out, data.target[index], "ce", 1.0, "recon", w)
        gg = losses.group_gradients(model, session.names, ("task", "unimodal"), groups, task, "recon", w, rt)
        loss.backward()
        for i, m in enumerate(session.names):
            for j, p in enumerate(model.encoders[m].parameters()):
                torch.testing.assert_close(gg["task"][i][j] + gg["unimodal"][i][j], p.grad)


class _Seen(torch.nn.Module):
    """An imputer that records its input and passes it on."""

    def forward(self, h: torch.Tensor, present: torch.Tensor) -> Any:
        from mmcore.types import ImputerOutput

        self.seen = h.clone()
        return ImputerOutput(z=h)


class _Affine(torch.nn.Module):
    """A calibration whose output is non-zero everywhere, absent rows included."""

    def forward(self, h: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        return 2.0 * h + 1.0


def test_calibration_sits_between_the_zeroing_and_the_imputer():
    from mmcore.engine.model import MultimodalModel
    from mmcore.types import ModalitySpec

    specs = [ModalitySpec("a", 2), ModalitySpec("b", 2)]
    fusion = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    model = MultimodalModel(specs, {"a": torch.nn.Identity(), "b": torch.nn.Identity()}, _Seen(), _FusionOf(fusion), None, _Affine())
    h = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[5.0, 6.0], [7.0, 8.0]]])
    present = torch.tensor([[True, False], [True, True]])
    out = model.complete(h, present)
    # the imputer sees 2h + 1 at present rows and 0 at absent ones (zeroed again after the calibration)
    expected = torch.tensor([[[3.0, 5.0], [0.0, 0.0]], [[11.0, 13.0], [15.0, 17.0]]])
    assert torch.equal(model.imputer.seen, expected)
    # ModelOutput.h stays uncalibrated, so a probe re-runs the same path (calibrating once)
    assert torch.equal(out.h, torch.where(present.unsqueeze(-1), h, 0.0))
    assert torch.allclose(model.probe(out.h, present), out.prediction.detach())


class _FusionOf(torch.nn.Module):
    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, z: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        return self.net(z)
