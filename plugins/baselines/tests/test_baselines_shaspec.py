"""baselines.shaspec: its completed latents and losses by hand, no leakage, exact zeros for a
modality absent from the batch, a zero weight removing its group, the contract suite, a tiny run
that resumes exactly, and `mmcore validate` accepting its groups as a balancer target."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from imputer_data import PRESENT, SPECS, latents, noisy, run_and_resume, validate_targets
from imputer_data import one_thread  # noqa: F401  (an autouse fixture: importing it applies it)
from mmcore.errors import DataError, MMCoreError
from mmcore.plugins import get_registry
from mmcore.testing import run_contract
from mmcore_baselines import ShaSpec


# ----------------------------------------------------------------------------------------- shaspec


def _shaspec_by_hand() -> ShaSpec:
    """d = 2, every projection one Linear with weights we know."""
    torch.manual_seed(0)
    imp = ShaSpec(SPECS, 2)
    with torch.no_grad():
        imp.shared[0].weight.copy_(2 * torch.eye(2))  # s = 2h + (1, 0)
        imp.shared[0].bias.copy_(torch.tensor([1.0, 0.0]))
        for i, proj in enumerate(imp.specific):  # p_m = (m + 1) h
            proj[0].weight.copy_((i + 1) * torch.eye(2))
            proj[0].bias.zero_()
        imp.compose.weight.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 0, 0, 1.0]]))  # compose([s, p]) = (s_0, p_1)
        imp.classifier.weight.zero_()
        imp.classifier.bias.zero_()  # uniform logits: CE = log 3 everywhere
    return imp


def test_shaspec_completed_latents_by_hand() -> None:
    imp = _shaspec_by_hand()
    h = torch.tensor([[[1.0, 2.0], [3.0, -1.0], [0.0, 0.0]]])  # a, b present; c absent
    present = torch.tensor([[True, True, False]])
    z = imp(h, present).z
    s_a, s_b = torch.tensor([3.0, 4.0]), torch.tensor([7.0, -2.0])
    p_a, p_b = torch.tensor([1.0, 2.0]), torch.tensor([6.0, -2.0])
    assert torch.allclose(z[0, 0], s_a + torch.stack([s_a[0], p_a[1]]))  # (6, 6)
    assert torch.allclose(z[0, 1], s_b + torch.stack([s_b[0], p_b[1]]))  # (14, -4)
    assert torch.allclose(z[0, 2], (s_a + s_b) / 2)  # the absent c: mean of present shared features, (5, 1)


def test_shaspec_losses_by_hand() -> None:
    imp = _shaspec_by_hand()
    h = torch.tensor([[[1.0, 2.0], [3.0, -1.0], [0.0, 0.0]], [[0.0, 1.0], [0.0, 0.0], [0.0, 0.0]]])
    present = torch.tensor([[True, True, False], [True, False, False]])
    out = imp(h, present)
    assert sorted(out.losses) == ["align", "share"]
    # align: log 3 for every present (row, modality), averaged per modality, times 0.02 / M; c nowhere
    ce = math.log(3) * 0.02 / 3
    assert torch.allclose(out.losses["align"], torch.tensor([ce, ce, 0.0]))
    # share (L1, weight 0.1): only row 0 has a partner; s_a = (3, 4), s_b = (7, -2): mean |s_a - s_b| = 5
    assert torch.allclose(out.losses["share"], torch.tensor([0.5, 0.5, 0.0]))
    imp.share_distance = "mse"  # mean (s_a - s_b)² = (16 + 36) / 2
    assert torch.allclose(imp(h, present).losses["share"], torch.tensor([2.6, 2.6, 0.0]))


def test_shaspec_share_compares_with_the_mean_of_the_other_present_modalities() -> None:
    imp = _shaspec_by_hand()
    shared = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [4.0, 6.0]]])
    everything = torch.ones(1, 3, dtype=torch.bool)
    # a: |0 - (3, 3)| → 3; b: |(2, 0) - (2, 3)| → 1.5; c: |(4, 6) - (1, 0)| → 4.5
    assert torch.allclose(imp.share_terms(shared, everything), torch.tensor([3.0, 1.5, 4.5]))


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_shaspec_ignores_absent_rows_and_gives_exact_zeros(mode: str) -> None:
    torch.manual_seed(0)
    imp = ShaSpec(SPECS, 5, hidden=[8]).train(mode == "train")
    h = latents(PRESENT, 5).requires_grad_(True)
    clean, dirty = imp(h, PRESENT), imp(noisy(h, PRESENT), PRESENT)
    assert torch.equal(clean.z, dirty.z)
    assert all(torch.equal(clean.losses[g], dirty.losses[g]) for g in clean.losses)
    assert clean.losses["align"][2].item() == 0.0 and clean.losses["share"][2].item() == 0.0
    (clean.z.square().mean() + sum(t.sum() for t in clean.losses.values())).backward()
    assert torch.isfinite(h.grad).all() and h.grad[~PRESENT].abs().sum() == 0
    for name, p in imp.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        # c is absent from the whole batch: its specific projection is never used, everything else learns
        assert (p.grad.abs().sum() > 0) != name.startswith("specific.2."), name


def test_shaspec_weight_zero_removes_its_group_and_its_classifier() -> None:
    assert ShaSpec.loss_groups() == ("align", "share")
    assert ShaSpec.loss_groups(align_weight=0.0) == ("share",)
    imp = ShaSpec(SPECS, 5, align_weight=0.0, share_weight=0.0)
    assert imp.classifier is None and imp(latents(PRESENT, 5), PRESENT).losses == {}


def test_shaspec_bad_input() -> None:
    with pytest.raises(MMCoreError, match="needs at least two modalities"):
        ShaSpec(SPECS[:1], 5)
    with pytest.raises(DataError, match=r"expects h \[B, 3, 5\]"):
        ShaSpec(SPECS, 5)(torch.zeros(2, 3, 6), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(MMCoreError, match=r"share_distance: expected 'l1' \| 'mse', got str 'l3'"):
        get_registry().get("imputer", "baselines.shaspec").build({"specs": SPECS, "dim": 5}, {"share_distance": "l3"})


def test_shaspec_meets_the_contract() -> None:
    run_contract(get_registry(), "imputer", "baselines.shaspec")


def test_tiny_run_trains_and_resumes_exactly(tmp_path: Path) -> None:
    check = run_and_resume(tmp_path, {"type": "baselines.shaspec", "hidden": [8]}, "align")
    assert "imputer.compose.weight" in check.weights  # its parameters travel in the checkpoint


def test_validate_accepts_its_groups_as_the_balancer_target() -> None:
    validate_targets("baselines.shaspec", "share", "recon")
