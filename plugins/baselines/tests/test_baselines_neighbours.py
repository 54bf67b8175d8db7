"""baselines.neighbours: the kernel, similarities and donor weights by hand, the donor bank (a FIFO
ring of present training entries, the only donors at evaluation), row independence in eval, no
leakage, exact zeros, the contract suite, a tiny run that resumes exactly with the bank in the
checkpoint, and `mmcore validate` accepting its group as a balancer target."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import torch

from imputer_data import PRESENT, SPECS, latents, noisy, run_and_resume, validate_targets
from imputer_data import one_thread  # noqa: F401  (an autouse fixture: importing it applies it)
from mmcore.errors import DataError, MMCoreError
from mmcore.plugins import get_registry
from mmcore.testing import run_contract
from mmcore.types import ModalitySpec
from mmcore_baselines import Neighbours
from mmcore_baselines.neighbours import Donors, bandwidth, gaussian_kernel


# -------------------------------------------------------------------------------------- neighbours


def _raw_only(imp: Neighbours) -> Neighbours:
    """σ(+inf) = 1 exactly: the similarity is the kernel of the raw latents, with numbers we know."""
    with torch.no_grad():
        imp.mix_logit.fill_(float("inf"))
    return imp


def _fill_bank(imp: Neighbours, h: torch.Tensor, present: torch.Tensor) -> Neighbours:
    """Write rows into the first slots of the bank by hand, as ``remember`` would from empty."""
    n = h.shape[0]
    with torch.no_grad():
        imp.bank_h[:n] = h * present.unsqueeze(-1)
        imp.bank_present[:n] = present
        imp.bank_filled.fill_(n)
        imp.bank_next.fill_(n % imp.bank_h.shape[0])
    return imp


def _bank(imp: Neighbours) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in imp.state_dict().items() if k.startswith("bank_")}


def _by_hand(d2: float, beta: float) -> float:
    """M3Care's kernel of one squared distance: the mean of three Gaussians, bandwidths β/2, β, 2β."""
    return sum(math.exp(-d2 / b) for b in (beta / 2, beta, 2 * beta)) / 3


def test_bandwidth_and_kernel_by_hand() -> None:
    v = torch.tensor([[0.0], [2.0], [5.0]]).unsqueeze(1)  # [3, 1, 1]
    everyone = torch.ones(3, 1, dtype=torch.bool)
    beta = (4 + 25 + 9) * 2 / 6  # mean squared distance over the ordered pairs j != j'
    assert torch.allclose(bandwidth(v, everyone), torch.tensor([beta]))
    k = gaussian_kernel(v, v, torch.tensor([beta]))[..., 0]
    k4, k9, k25 = (_by_hand(d, beta) for d in (4, 9, 25))
    expected = [[1.0, k4, k25], [k4, 1.0, k9], [k25, k9, 1.0]]
    assert torch.allclose(k, torch.tensor(expected), atol=1e-6)
    query = torch.tensor([[[1.0]]])  # a query outside the pool: its distances to the donors
    assert torch.allclose(gaussian_kernel(query, v, torch.tensor([beta]))[0, :, 0], torch.tensor([_by_hand(d, beta) for d in (1, 1, 16)]))
    # rows without the modality do not enter the bandwidth, whatever they hold: without row 2, β = 4
    without = torch.tensor([[True], [True], [False]])
    assert torch.allclose(bandwidth(v * torch.tensor([1.0, 1.0, 100.0]).view(3, 1, 1), without), torch.tensor([4.0]))
    # fewer than two rows, or no spread: 1
    assert bandwidth(v, torch.tensor([[True], [False], [False]])).item() == 1.0
    assert bandwidth(torch.ones(3, 1, 1), everyone).item() == 1.0


def test_similarity_averages_the_kernels_of_the_modalities_both_have() -> None:
    specs = [ModalitySpec("a", 1), ModalitySpec("b", 1)]
    imp = _raw_only(Neighbours(specs, 1, hidden=[]))
    px = torch.tensor([[[0.0], [0.0]], [[1.0], [2.0]], [[0.0], [5.0]], [[3.0], [0.0]]])
    pp = torch.tensor([[True, True], [True, True], [False, True], [True, False]])
    px = px * pp.unsqueeze(-1)
    pool = Donors(px, pp, imp.project(px))
    xq = torch.tensor([[[1.0], [1.0]], [[0.0], [4.0]]])
    pq = torch.tensor([[True, True], [False, True]])
    s = imp.similarity(xq, pq, imp.project(xq), pool)
    beta_a, beta_b = (1 + 9 + 4) * 2 / 6, (4 + 25 + 9) * 2 / 6  # the pool's: a in rows 0, 1, 3; b in rows 0, 1, 2
    assert torch.allclose(s[0, 1], torch.tensor((1.0 + _by_hand(1, beta_b)) / 2))  # both shared: a at 0, b at 1
    assert torch.allclose(s[0, 2], torch.tensor(_by_hand(16, beta_b)))  # only b shared
    assert torch.allclose(s[0, 3], torch.tensor(_by_hand(4, beta_a)))  # only a shared
    assert s[1, 3].item() == 0.0  # nothing shared: no similarity


def test_eval_fills_from_a_hand_filled_bank() -> None:
    """The whole rule at evaluation, by hand: the donors are the bank, its bandwidth, its rows."""
    specs = [ModalitySpec("a", 1), ModalitySpec("b", 1)]
    imp = _raw_only(Neighbours(specs, 1, hidden=[], threshold=0.5, bank_size=6)).eval()
    bank = torch.tensor([[0.0, 10.0], [1.0, 20.0], [3.0, 30.0], [0.0, 40.0]]).unsqueeze(-1)
    _fill_bank(imp, bank, torch.tensor([[True, True], [True, True], [True, True], [False, True]]))
    with torch.no_grad():
        imp.bank_h[4], imp.bank_present[4] = 999.0, True  # past bank_filled: never a donor
        imp.token.copy_(torch.tensor([[-1.0], [-7.0]]))
    h = torch.tensor([[0.9, 0.0], [0.0, 25.0], [100.0, 0.0]]).unsqueeze(-1)
    present = torch.tensor([[True, False], [False, True], [True, False]])
    before = _bank(imp)
    z = imp(h, present).z
    # row 0 has a = 0.9; β_a over the bank's a (0, 1, 3) = 14/3; squared distances 0.81, 0.01, 4.41:
    # kernels 0.82, 0.99 and 0.39 < t; bank row 3 lacks a, so it shares nothing with row 0
    k0, k1, k2 = (_by_hand(d, 14 / 3) for d in (0.81, 0.01, 4.41))
    assert k2 < 0.5 < min(k0, k1)
    assert torch.allclose(z[0, 1], torch.tensor([(k0 * 10 + k1 * 20) / (k0 + k1)]))
    # row 1 has b = 25; β_b over 10, 20, 30, 40 = 1000/3; distances 225, 25, 25, 225: rows 1 and 2 pass
    # (0.49 and 0.92) and row 3, which passes too, lacks a: a = (1 + 3) / 2
    assert _by_hand(225, 1000 / 3) < 0.5 < _by_hand(25, 1000 / 3)
    assert torch.allclose(z[1, 0], torch.tensor([2.0]))
    assert torch.equal(z[2, 1], imp.token[1])  # row 2 is far from everyone: the token
    assert torch.equal(z[present], h[present])
    assert all(torch.equal(v, _bank(imp)[k]) for k, v in before.items())  # evaluation never writes the bank
    imp.k = 1  # the single most similar donor
    assert torch.allclose(imp(h, present).z[0, 1], torch.tensor([20.0]))


def test_training_donors_are_the_batch_and_the_bank() -> None:
    specs = [ModalitySpec("a", 2), ModalitySpec("b", 2)]
    imp = Neighbours(specs, 2, hidden=[], threshold=0.5, bank_size=3)
    bank_present = torch.tensor([[True, True], [True, False]])
    _fill_bank(imp, 10 + torch.arange(8, dtype=torch.float32).view(2, 2, 2), bank_present)  # slot 2 empty
    x = torch.arange(8, dtype=torch.float32).view(2, 2, 2)
    present = torch.tensor([[True, False], [True, True]])  # row 0 lacks b
    x = x * present.unsqueeze(-1)
    # similarities of row 0 to the pool: itself, batch row 1, bank slots 0, 1, 2 (train); bank only (eval)
    train_s = torch.tensor([[1.0, 0.9, 0.6, 0.95, 0.99], [0.9, 1.0, 0.0, 0.0, 0.0]])
    imp.similarity = lambda x, p, u, pool: train_s if pool.x.shape[0] == 5 else train_s[:, 2:]  # type: ignore[method-assign]
    pool = imp.donors(x, present)[0]
    assert pool.x.shape[0] == 5 and torch.equal(pool.x[:2], x) and torch.equal(pool.x[2:], imp.bank_h)
    w = imp.donor_weights(train_s, present, pool.present)
    # itself (lacks b), bank slot 1 (lacks b) and the empty slot 2 never donate
    assert torch.allclose(w[0, :, 1], torch.tensor([0.0, 0.9, 0.6, 0.0, 0.0])) and w[:, :, 0].abs().sum() == 0
    slot0_b = torch.tensor([12.0, 13.0])  # bank slot 0's b
    assert torch.allclose(imp.eval()(x, present).z[0, 1], slot0_b)  # eval: the bank alone
    z = imp.train()(x, present).z
    assert torch.allclose(z[0, 1], (0.9 * x[1, 1] + 0.6 * slot0_b) / 1.5)  # train: batch row 1 and bank slot 0
    assert torch.equal(z[present], x[present])


def test_the_bank_is_a_fifo_ring_of_present_entries() -> None:
    specs = [ModalitySpec("a", 1), ModalitySpec("b", 1)]
    imp = Neighbours(specs, 1, hidden=[], bank_size=3, norm_weight=0.0)

    def batch(values: list[float], present: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.tensor([[[v], [-v]] for v in values])
        return h + 100.0 * (~present).unsqueeze(-1), present  # noise in absent rows

    everything = torch.ones(2, 2, dtype=torch.bool)
    imp(*batch([1, 2], everything))
    assert imp.bank_h[:, :, 0].tolist() == [[1, -1], [2, -2], [0, 0]] and (imp.bank_filled.item(), imp.bank_next.item()) == (2, 2)
    assert imp.bank_present.tolist() == [[True, True], [True, True], [False, False]]
    imp(*batch([3, 4], torch.tensor([[True, True], [True, False]])))  # wraps: 3 in slot 2, 4 in slot 0
    assert imp.bank_h[:, :, 0].tolist() == [[4, 0], [2, -2], [3, -3]] and (imp.bank_filled.item(), imp.bank_next.item()) == (3, 1)
    assert imp.bank_present.tolist() == [[True, False], [True, True], [True, True]]  # the absent b stored as absent and 0
    imp(*batch([5, 6, 7, 8], torch.ones(4, 2, dtype=torch.bool)))  # longer than the bank: its last 3 rows, from slot 1
    assert imp.bank_h[:, :, 0].tolist() == [[8, -8], [6, -6], [7, -7]] and (imp.bank_filled.item(), imp.bank_next.item()) == (3, 1)


def test_the_bank_never_stores_absent_rows_and_eval_never_writes_it() -> None:
    torch.manual_seed(0)
    imp = Neighbours(SPECS, 5, hidden=[8], bank_size=16)
    h = latents(PRESENT, 5)
    imp(latents(PRESENT, 5, seed=7), PRESENT)  # something in the bank already
    dirty = copy.deepcopy(imp)
    imp(h, PRESENT)
    dirty(noisy(h, PRESENT), PRESENT)
    assert all(torch.equal(v, _bank(dirty)[k]) for k, v in _bank(imp).items())
    assert torch.equal(imp.bank_present[:8], torch.cat([PRESENT, PRESENT])) and not imp.bank_present[8:].any()
    assert imp.bank_h[~imp.bank_present].abs().sum() == 0 and imp.bank_h[imp.bank_present].abs().sum() > 0
    before = _bank(imp)
    imp.eval()(noisy(h, PRESENT), PRESENT)
    assert all(torch.equal(v, _bank(imp)[k]) for k, v in before.items())


def test_eval_rows_are_independent_of_the_call() -> None:
    """A row's evaluation output depends on its own present rows, the bank and the parameters only:
    not on the other rows, nor on its own copy under another condition stacked into the call."""
    torch.manual_seed(0)
    imp = Neighbours(SPECS, 5, hidden=[8], threshold=0.2, bank_size=32)
    gen = torch.Generator().manual_seed(3)
    for seed in range(3):  # fill the bank from training calls with every modality present somewhere
        mask = torch.rand(12, 3, generator=gen) < 0.6
        mask[~mask.any(1), 0] = True
        imp(latents(mask, 5, seed=seed), mask)
    imp.eval()
    h = torch.randn(5, 3, 5, generator=gen)
    only_a, everything = torch.zeros(5, 3, dtype=torch.bool), torch.ones(5, 3, dtype=torch.bool)
    only_a[:, 0] = True
    with torch.no_grad():
        alone = imp(h * only_a.unsqueeze(-1), only_a).z
        stacked = imp(torch.cat([h * only_a.unsqueeze(-1), h]), torch.cat([only_a, everything])).z
        assert torch.allclose(stacked[:5], alone, atol=1e-6)  # its full copy does not leak into it
        assert not torch.allclose(alone[:, 1], imp.token[1].expand(5, 5))  # the bank donates what the condition lacks
        for i in range(5):
            assert torch.allclose(imp(h[i : i + 1] * only_a[i : i + 1].unsqueeze(-1), only_a[i : i + 1]).z[0], alone[i], atol=1e-6)
        assert torch.equal(imp(h, everything).z, imp(h, everything).z)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_neighbours_ignore_absent_rows_and_give_exact_zeros(mode: str) -> None:
    torch.manual_seed(0)
    # a low threshold, so that rows 1 and 2 each have several donors
    imp = Neighbours(SPECS, 5, hidden=[8], threshold=0.01, norm_weight=0.1, bank_size=16)
    imp(latents(PRESENT, 5, seed=7), PRESENT)  # a bank without "c", as the batch
    imp.train(mode == "train")
    h = latents(PRESENT, 5).requires_grad_(True)
    dirty = copy.deepcopy(imp)  # a training call writes the bank: both calls start from the same one
    clean = imp(h, PRESENT)
    shaken = dirty(noisy(h, PRESENT), PRESENT)
    assert torch.allclose(clean.z, shaken.z, atol=1e-6) and torch.allclose(clean.losses["norm"], shaken.losses["norm"])
    assert clean.losses["norm"][2].item() == 0.0  # "c" absent from the whole batch
    assert torch.equal(clean.z[:, 2], imp.token[2].expand(4, 5))  # and nobody can donate it
    probe = torch.randn(clean.z.shape, generator=torch.Generator().manual_seed(5))  # linear: the zero token gets a gradient
    ((clean.z * probe).sum() + clean.losses["norm"].sum()).backward()  # after the bank's in-place write
    assert torch.isfinite(h.grad).all() and h.grad[~PRESENT].abs().sum() == 0
    for name, p in imp.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert imp.threshold_logit.grad.abs() > 0 and imp.mix_logit.grad.abs().sum() > 0 and imp.token.grad.abs().sum() > 0
    for name, p in imp.proj.named_parameters():  # c's projection is unused: c is nowhere
        assert (p.grad.abs().sum() > 0) != name.startswith("2."), name


def test_neighbours_threshold_fixed_or_learned_bank_shapes_and_bad_input() -> None:
    fixed = Neighbours(SPECS, 5, threshold=0.2, learn_threshold=False, bank_size=7)
    assert "threshold_logit" in dict(fixed.named_buffers()) and "threshold_logit" in fixed.state_dict()
    assert torch.isclose(torch.sigmoid(fixed.threshold_logit), torch.tensor(0.2))
    shapes = {k: tuple(v.shape) for k, v in fixed.state_dict().items() if k.startswith("bank_")}
    assert shapes == {"bank_h": (7, 3, 5), "bank_present": (7, 3), "bank_filled": (), "bank_next": ()}
    assert not any(n.startswith("bank_") for n, _ in fixed.named_parameters())
    assert Neighbours(SPECS, 5).bank_h.shape[0] == 1024
    assert Neighbours.loss_groups() == ("norm",) and Neighbours.loss_groups(norm_weight=0) == ()
    assert Neighbours(SPECS, 5, norm_weight=0.0)(latents(PRESENT, 5), PRESENT).losses == {}
    with pytest.raises(MMCoreError, match="needs at least two modalities"):
        Neighbours(SPECS[:1], 5)
    build = get_registry().get("imputer", "baselines.neighbours").build
    with pytest.raises(MMCoreError, match=r"threshold: expected float in \(0, 1\)"):
        build({"specs": SPECS, "dim": 5}, {"threshold": 0.0})
    with pytest.raises(MMCoreError, match=r"threshold: expected float in \(0, 1\)"):
        build({"specs": SPECS, "dim": 5}, {"threshold": 1.0})
    with pytest.raises(MMCoreError, match=r"bank_size: expected int >= 1, got int 0"):
        build({"specs": SPECS, "dim": 5}, {"bank_size": 0})
    with pytest.raises(DataError, match=r"expects h \[B, 3, 5\]"):
        fixed(torch.zeros(2, 3, 6), torch.ones(2, 3, dtype=torch.bool))


def test_neighbours_meets_the_contract() -> None:
    """The unmodified suite, row independence in eval mode included (the donors there are the bank)."""
    run_contract(get_registry(), "imputer", "baselines.neighbours")


def test_tiny_run_trains_and_resumes_exactly_with_the_bank(tmp_path: Path) -> None:
    imputer = {"type": "baselines.neighbours", "hidden": [8], "norm_weight": 0.1, "bank_size": 100}
    check = run_and_resume(tmp_path, imputer, "norm")
    stopped = check.stopped_weights  # the bank has content and has wrapped: 3 steps of 64 rows in a ring of 100
    assert stopped["imputer.bank_filled"].item() == 100 and stopped["imputer.bank_next"].item() == 3 * 64 % 100
    assert stopped["imputer.bank_present"].any(1).all() and stopped["imputer.bank_h"].abs().sum() > 0
    assert {"imputer.threshold_logit", "imputer.bank_h", "imputer.bank_next"} <= check.weights.keys()


def test_validate_accepts_its_groups_as_the_balancer_target() -> None:
    validate_targets("baselines.neighbours", "norm", "share")
