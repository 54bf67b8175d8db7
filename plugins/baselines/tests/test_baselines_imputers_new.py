"""baselines.shaspec and baselines.neighbours: each rule by hand on tiny cases, no leakage, exact
zeros for a modality absent from the batch, gradients, the contract suite, a tiny run that
resumes exactly, and ``mmcore validate`` accepting their loss groups as a balancer target."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import mmcore.testing.modules as contract_modules
from mmcore.cli import app
from mmcore.engine.trainer import run
from mmcore.errors import DataError, MMCoreError
from mmcore.plugins import get_registry
from mmcore.testing import run_contract, tiny_recipe
from mmcore.types import ModalitySpec
from mmcore_baselines import Neighbours, ShaSpec
from mmcore_baselines.neighbours import gaussian_kernel

SPECS = [ModalitySpec("a", 4), ModalitySpec("b", 3), ModalitySpec("c", 2)]
RECIPES = Path(__file__).resolve().parents[3] / "recipes"
PRESENT = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=torch.bool)  # "c" never present


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny loops run faster on one thread and do not fight other processes for cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _latents(present: torch.Tensor, dim: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*present.shape, dim, generator=gen) * present.unsqueeze(-1)


def _noisy(h: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
    gen = torch.Generator().manual_seed(99)
    return h + 100.0 * torch.randn(h.shape, generator=gen) * (~present).unsqueeze(-1)


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
    h = _latents(PRESENT, 5).requires_grad_(True)
    clean, dirty = imp(h, PRESENT), imp(_noisy(h, PRESENT), PRESENT)
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
    assert imp.classifier is None and imp(_latents(PRESENT, 5), PRESENT).losses == {}


def test_shaspec_bad_input() -> None:
    with pytest.raises(MMCoreError, match="needs at least two modalities"):
        ShaSpec(SPECS[:1], 5)
    with pytest.raises(DataError, match=r"expects h \[B, 3, 5\]"):
        ShaSpec(SPECS, 5)(torch.zeros(2, 3, 6), torch.ones(2, 3, dtype=torch.bool))
    with pytest.raises(MMCoreError, match=r"share_distance: expected 'l1' \| 'mse', got str 'l3'"):
        get_registry().get("imputer", "baselines.shaspec").build({"specs": SPECS, "dim": 5}, {"share_distance": "l3"})


def test_shaspec_meets_the_contract() -> None:
    run_contract(get_registry(), "imputer", "baselines.shaspec")


# -------------------------------------------------------------------------------------- neighbours


def _raw_only(imp: Neighbours) -> Neighbours:
    """σ(+inf) = 1 exactly: the similarity is the kernel of the raw latents, with numbers we know."""
    with torch.no_grad():
        imp.mix_logit.fill_(float("inf"))
    return imp


def test_kernel_by_hand() -> None:
    v = torch.tensor([[0.0], [1.0], [3.0]]).unsqueeze(1)  # [3, 1, 1]
    pairs = torch.ones(3, 3, 1, dtype=torch.bool)
    k = gaussian_kernel(v, pairs)[..., 0]
    beta = (1 + 9 + 4) * 2 / 6  # mean squared distance over ordered pairs i != j
    bandwidths = [beta / 2, beta, 2 * beta]

    def by_hand(d2: float) -> float:
        return sum(math.exp(-d2 / b) for b in bandwidths) / 3

    expected = torch.tensor([[1.0, by_hand(1), by_hand(9)], [by_hand(1), 1.0, by_hand(4)], [by_hand(9), by_hand(4), 1.0]])
    assert torch.allclose(k, expected, atol=1e-6)
    # pairs outside the mask do not enter the bandwidth: without row 2, beta = 1
    only = pairs.clone()
    only[2, :], only[:, 2] = False, False
    assert torch.isclose(gaussian_kernel(v, only)[0, 1, 0], torch.tensor(sum(math.exp(-1 / b) for b in (0.5, 1, 2)) / 3))


def test_similarity_averages_the_kernels_of_the_modalities_both_have() -> None:
    specs = [ModalitySpec("a", 1), ModalitySpec("b", 1)]
    imp = _raw_only(Neighbours(specs, 1, hidden=[]))
    x = torch.tensor([[[0.0], [0.0]], [[1.0], [2.0]], [[0.0], [5.0]], [[3.0], [0.0]]])
    present = torch.tensor([[True, True], [True, True], [False, True], [True, False]])
    x = x * present.unsqueeze(-1)
    s, _ = imp.similarity(x, present)
    pairs = present.unsqueeze(1) & present.unsqueeze(0)
    k = gaussian_kernel(x, pairs)
    assert torch.allclose(s[0, 1], (k[0, 1, 0] + k[0, 1, 1]) / 2)  # both modalities shared
    assert torch.allclose(s[0, 2], k[0, 2, 1]) and torch.allclose(s[0, 3], k[0, 3, 0])  # one shared
    assert s[2, 3].item() == 0.0 and s[3, 2].item() == 0.0  # nothing shared: no similarity


def test_donors_are_those_above_the_threshold_weighted_by_similarity() -> None:
    specs = [ModalitySpec("a", 2), ModalitySpec("b", 2)]
    imp = Neighbours(specs, 2, hidden=[], threshold=0.5)
    with torch.no_grad():
        imp.token.copy_(torch.tensor([[-1.0, -1.0], [-7.0, 7.0]]))
    # row 0 lacks b; rows 1-3 have it with these similarities to row 0; row 4 lacks b too
    s = torch.tensor(
        [
            [1.0, 0.9, 0.6, 0.3, 0.8],
            [0.9, 1.0, 0.0, 0.0, 0.0],
            [0.6, 0.0, 1.0, 0.0, 0.0],
            [0.3, 0.0, 0.0, 1.0, 0.0],
            [0.8, 0.0, 0.0, 0.0, 1.0],
        ]
    )
    present = torch.tensor([[True, False], [True, True], [True, True], [True, True], [True, False]])
    x = torch.arange(20, dtype=torch.float32).view(5, 2, 2) * present.unsqueeze(-1)
    w = imp.donor_weights(s, present)
    assert torch.allclose(w[0, :, 1], torch.tensor([0.0, 0.9, 0.6, 0.0, 0.0]))  # 0.3 below t, row 4 lacks b
    assert w[:, :, 0].abs().sum() == 0  # nobody lacks a
    imp.similarity = lambda x, p: (s, x)  # type: ignore[method-assign] - the similarity by hand
    z = imp.eval()(x, present).z
    assert torch.allclose(z[0, 1], (0.9 * x[1, 1] + 0.6 * x[2, 1]) / 1.5)
    assert torch.equal(z[present], x[present])
    # row 4 lacks b and its only link (to row 0, 0.8) is a row without b: the learned token
    assert torch.equal(z[4, 1], imp.token[1])
    imp.k = 1  # the single most similar donor
    assert torch.allclose(imp(x, present).z[0, 1], x[1, 1])


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_neighbours_ignore_absent_rows_and_give_exact_zeros(mode: str) -> None:
    torch.manual_seed(0)
    # a low threshold, so that rows 1 and 2 each have several donors (rows 0 and 3)
    imp = Neighbours(SPECS, 5, hidden=[8], threshold=0.01, norm_weight=0.1).train(mode == "train")
    h = _latents(PRESENT, 5).requires_grad_(True)
    clean, dirty = imp(h, PRESENT), imp(_noisy(h, PRESENT), PRESENT)
    assert torch.allclose(clean.z, dirty.z, atol=1e-6) and torch.allclose(clean.losses["norm"], dirty.losses["norm"])
    assert clean.losses["norm"][2].item() == 0.0  # "c" absent from the whole batch
    assert torch.equal(clean.z[:, 2], imp.token[2].expand(4, 5))  # and nobody can donate it
    probe = torch.randn(clean.z.shape, generator=torch.Generator().manual_seed(5))  # linear: the zero token gets a gradient
    ((clean.z * probe).sum() + clean.losses["norm"].sum()).backward()
    assert torch.isfinite(h.grad).all() and h.grad[~PRESENT].abs().sum() == 0
    for name, p in imp.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert imp.threshold_logit.grad.abs() > 0 and imp.mix_logit.grad.abs().sum() > 0 and imp.token.grad.abs().sum() > 0
    for name, p in imp.proj.named_parameters():  # c's projection is unused in a batch without c
        assert (p.grad.abs().sum() > 0) != name.startswith("2."), name


def test_neighbours_permuting_the_batch_permutes_the_output() -> None:
    """What replaces row independence for a batch-dependent imputer: the order of the rows does not matter."""
    torch.manual_seed(0)
    imp = Neighbours(SPECS, 5, hidden=[8], k=2).eval()
    gen = torch.Generator().manual_seed(3)
    present = torch.rand(9, 3, generator=gen) < 0.6
    present[~present.any(1), 0] = True
    h = _latents(present, 5, seed=1)
    perm = torch.randperm(9, generator=gen)
    with torch.no_grad():
        assert torch.allclose(imp(h, present).z[perm], imp(h[perm], present[perm]).z, atol=1e-6)


def test_neighbours_threshold_fixed_or_learned_and_bad_input() -> None:
    fixed = Neighbours(SPECS, 5, threshold=0.2, learn_threshold=False)
    assert "threshold_logit" in dict(fixed.named_buffers()) and "threshold_logit" in fixed.state_dict()
    assert torch.isclose(torch.sigmoid(fixed.threshold_logit), torch.tensor(0.2))
    assert Neighbours.loss_groups() == ("norm",) and Neighbours.loss_groups(norm_weight=0) == ()
    assert Neighbours(SPECS, 5, norm_weight=0.0)(_latents(PRESENT, 5), PRESENT).losses == {}
    with pytest.raises(MMCoreError, match="needs at least two modalities"):
        Neighbours(SPECS[:1], 5)
    with pytest.raises(MMCoreError, match=r"threshold: expected float > 0"):
        get_registry().get("imputer", "baselines.neighbours").build({"specs": SPECS, "dim": 5}, {"threshold": 0.0})
    with pytest.raises(MMCoreError, match=r"threshold: expected float .*in \[0, 1\)"):
        get_registry().get("imputer", "baselines.neighbours").build({"specs": SPECS, "dim": 5}, {"threshold": 1.0})


def test_neighbours_contract_fails_only_on_row_independence(monkeypatch: pytest.MonkeyPatch) -> None:
    """The suite requires that a row's output ignore the other rows of its batch; this imputer is
    batch-dependent by design (``batch_dependent``), so that one check fails. Every other check
    of the suite passes once it is replaced by the determinism half of the same check."""
    assert Neighbours.batch_dependent is True
    with pytest.raises(AssertionError, match="a row's output depends on other rows of the batch"):
        run_contract(get_registry(), "imputer", "baselines.neighbours")

    def deterministic_only(ctx: Any, module: torch.nn.Module, run: Any, rerun_row0: Any) -> None:
        module.eval()
        with torch.no_grad():
            ctx.expect(torch.equal(run(module), run(module)), "eval mode is not deterministic")

    monkeypatch.setattr(contract_modules, "_check_eval", deterministic_only)
    run_contract(get_registry(), "imputer", "baselines.neighbours")  # leakage, losses, gradients, round trip


# ------------------------------------------------------------------------------------------ engine

NODES: dict[str, Any] = {
    "dataset": {"type": "mmcore.synthetic", "modalities": 3, "classes": 4, "samples": 300, "dim": 8},
    "missing": {"train": {"rates": {"m0": 0.2, "m1": 0.5, "m2": 0.6}}, "eval": {"conditions": "all"}},
    "dim": 8,
    "encoders": {"default": {"type": "mmcore.mlp", "layers": [16]}},
    "fusion": {"type": "mmcore.concat", "layers": [16]},
    "unimodal_heads": {"layers": [8]},
}


@pytest.mark.parametrize(
    "imputer,target",
    [({"type": "baselines.shaspec", "hidden": [8]}, "align"), ({"type": "baselines.neighbours", "hidden": [8], "norm_weight": 0.1}, "norm")],
    ids=["shaspec", "neighbours"],
)
def test_tiny_run_trains_and_resumes_exactly(tmp_path: Path, imputer: dict[str, Any], target: str) -> None:
    nodes = {**NODES, "imputer": imputer, "balancer": {"type": "baselines.inverse_rate"}}
    r = tiny_recipe(tmp_path / "runs", "train.epochs=2", f"+balancer.target={target}", **nodes)
    straight = run(r, show_progress=False)
    half = run({**r, "train": {**r["train"], "max_steps": 3}}, show_progress=False)  # stops mid-epoch
    resumed = run(r, run_dir=half.run_dir, resume=True, show_progress=False)
    a = load_file(str(straight.run_dir / "checkpoints" / "last" / "model.safetensors"))
    b = load_file(str(resumed.run_dir / "checkpoints" / "last" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.results == straight.results
    lines = (straight.run_dir / "metrics.jsonl").read_text().splitlines()
    assert lines == (resumed.run_dir / "metrics.jsonl").read_text().splitlines()
    assert {f"{target}.m0", f"{target}.m2", "weight.m1"} <= set(json.loads(lines[0]))  # its groups, weighed by the balancer
    key = "imputer.compose.weight" if target == "align" else "imputer.threshold_logit"
    assert key in a  # the imputer's parameters travel in the checkpoint


@pytest.mark.parametrize(
    "imputer,target,wrong",
    [("baselines.shaspec", "share", "recon"), ("baselines.neighbours", "norm", "share")],
)
def test_validate_accepts_its_groups_as_the_balancer_target(imputer: str, target: str, wrong: str) -> None:
    runner = CliRunner()
    recipe = str(RECIPES / "quickstart.yaml")
    ok = runner.invoke(app, ["validate", recipe, f"model.imputer={imputer}", f"balancer.target={target}"])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, ["validate", recipe, f"model.imputer={imputer}", f"balancer.target={wrong}"])
    assert bad.exit_code == 2 and f"'{wrong}' is not a loss group" in bad.output and target in bad.output
