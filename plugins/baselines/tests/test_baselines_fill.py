"""baselines.missing_token and baselines.mean: what fills an absent latent, how the mean is kept."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from mmcore.errors import DataError, MMCoreError
from mmcore.types import ModalitySpec
from mmcore_baselines import MissingToken, RunningMean

SPECS = [ModalitySpec("a", 4), ModalitySpec("b", 3), ModalitySpec("c", 2)]


def _mask(rows: list[list[int]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.bool)


# ------------------------------------------------------------------------ missing_token


def test_missing_token_fills_absent_rows_and_keeps_present_ones() -> None:
    imp = MissingToken(SPECS, dim=2)
    assert torch.equal(imp.token, torch.zeros(3, 2))  # starts as mmcore.zero
    with torch.no_grad():
        imp.token.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    h = torch.arange(12, dtype=torch.float32).reshape(2, 3, 2)
    present = _mask([[1, 0, 1], [0, 1, 0]])
    h = h * present.unsqueeze(-1)
    out = imp(h, present)
    expected = torch.tensor([[[0.0, 1.0], [3.0, 4.0], [4.0, 5.0]], [[1.0, 2.0], [8.0, 9.0], [5.0, 6.0]]])
    assert torch.equal(out.z, expected) and out.losses == {}


def test_a_token_learns_only_from_rows_where_its_modality_is_absent() -> None:
    imp = MissingToken(SPECS, dim=2)
    present = _mask([[1, 0, 1], [1, 1, 0], [1, 0, 1]])  # "a" never absent, "b" absent twice, "c" once
    h = torch.randn(3, 3, 2) * present.unsqueeze(-1)
    imp(h, present).z.sum().backward()
    # d(sum z)/d token_m = number of rows where m is absent, for every coordinate
    assert torch.equal(imp.token.grad, torch.tensor([[0.0, 0.0], [2.0, 2.0], [1.0, 1.0]]))


def test_wrong_shapes_are_data_errors() -> None:
    for imp in (MissingToken(SPECS, dim=2), RunningMean(SPECS, dim=2)):
        with pytest.raises(DataError, match=r"expects h \[B, 3, 2\] and present \[B, 3\]"):
            imp(torch.zeros(4, 3, 5), torch.ones(4, 3, dtype=torch.bool))


# ------------------------------------------------------------------------------- mean


def test_mean_is_a_buffer_saved_in_the_state_dict() -> None:
    imp = RunningMean(SPECS, dim=2)
    assert [n for n, _ in imp.named_parameters()] == []
    assert sorted(dict(imp.named_buffers())) == ["mean", "seen"]
    assert sorted(imp.state_dict()) == ["mean", "seen"]


def test_ema_update_by_hand() -> None:
    imp = RunningMean(SPECS, dim=1, momentum=0.5).train()
    # batch 1: a present in rows 0, 1 (values 2, 4), b in row 2 (value 6), c never present
    h1 = torch.tensor([[[2.0], [0.0], [0.0]], [[4.0], [0.0], [0.0]], [[0.0], [6.0], [0.0]]])
    p1 = _mask([[1, 0, 0], [1, 0, 0], [0, 1, 0]])
    out = imp(h1, p1)
    # first sighting sets the mean outright: a = 3, b = 6; c unseen stays 0
    assert torch.equal(imp.mean, torch.tensor([[3.0], [6.0], [0.0]]))
    assert torch.equal(imp.seen, torch.tensor([2, 1, 0]))
    # training fills with the updated mean: row 0 lacks b and c, row 2 lacks a and c
    assert torch.equal(out.z[:, :, 0], torch.tensor([[2.0, 6.0, 0.0], [4.0, 6.0, 0.0], [3.0, 6.0, 0.0]]))

    # batch 2: a = 9 in one row, c = 1 (first sighting), b absent everywhere
    h2 = torch.tensor([[[9.0], [0.0], [1.0]]])
    imp(h2, _mask([[1, 0, 1]]))
    # a: 0.5·3 + 0.5·9 = 6; b unchanged at 6; c set to 1
    assert torch.equal(imp.mean, torch.tensor([[6.0], [6.0], [1.0]]))
    assert torch.equal(imp.seen, torch.tensor([3, 1, 1]))


def test_exact_running_average_by_hand() -> None:
    imp = RunningMean(SPECS, dim=1, momentum=None).train()
    imp(torch.tensor([[[2.0], [0.0], [0.0]], [[4.0], [0.0], [0.0]]]), _mask([[1, 0, 0], [1, 0, 0]]))
    imp(torch.tensor([[[9.0], [5.0], [0.0]]]), _mask([[1, 1, 0]]))
    imp(torch.tensor([[[1.0], [0.0], [0.0]], [[0.0], [7.0], [0.0]]]), _mask([[1, 0, 0], [0, 1, 0]]))
    # a: (2 + 4 + 9 + 1) / 4 = 4; b: (5 + 7) / 2 = 6; c: never seen
    assert torch.allclose(imp.mean, torch.tensor([[4.0], [6.0], [0.0]]))
    assert torch.equal(imp.seen, torch.tensor([4, 2, 0]))


def test_eval_uses_the_stored_mean_and_never_updates_it() -> None:
    imp = RunningMean(SPECS, dim=2).train()
    imp(torch.randn(5, 3, 2), torch.ones(5, 3, dtype=torch.bool))
    stored = imp.mean.clone()
    imp.eval()
    h = torch.randn(4, 3, 2)
    present = _mask([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 1]])
    h = h * present.unsqueeze(-1)
    z = imp(h, present).z
    assert torch.equal(imp.mean, stored)
    assert torch.equal(z[0, 1], stored[1]) and torch.equal(z[1, 2], stored[2]) and torch.equal(z[2, 0], stored[0])
    assert torch.equal(z[3], h[3])


def test_mean_survives_a_safetensors_round_trip() -> None:
    first = RunningMean(SPECS, dim=2, momentum=None).train()
    for _ in range(3):
        first(torch.randn(6, 3, 2), torch.rand(6, 3) < 0.6)
    second = RunningMean(SPECS, dim=2, momentum=None)
    second.load_state_dict(st_load(st_save({k: v.contiguous() for k, v in first.state_dict().items()})))
    assert torch.equal(second.mean, first.mean) and torch.equal(second.seen, first.seen)
    # and the exact average continues identically from the restored count
    h, present = torch.randn(4, 3, 2), torch.rand(4, 3) < 0.5
    first(h, present), second.train()(h, present)
    assert torch.equal(second.mean, first.mean)


def test_mean_gradient_flows_to_present_latents_only() -> None:
    imp = RunningMean(SPECS, dim=2).train()
    h = torch.randn(3, 3, 2, requires_grad=True)
    present = _mask([[1, 0, 1], [1, 1, 0], [0, 1, 1]])
    imp(h, present).z.sum().backward()
    assert torch.equal(h.grad, present.unsqueeze(-1).expand(3, 3, 2).float())  # the mean is detached


def test_bad_momentum_is_a_clear_error() -> None:
    from mmcore.plugins import get_registry

    with pytest.raises(MMCoreError, match=r"baselines.mean' \(plugin baselines\): momentum: expected float in \(0, 1\], got float 0.0"):
        get_registry().get("imputer", "baselines.mean").build({"specs": SPECS, "dim": 2}, {"momentum": 0.0})
