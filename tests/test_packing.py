"""Packed frames (mmcore.packing, ``frames: packed``): the padded computation on real frames only."""

from __future__ import annotations

import pytest
import torch

from mmcore.builtins.encoders import MLPEncoder, TransformerEncoder
from mmcore.fastdropout import use_fast_dropout
from mmcore.nn import masked_mean
from mmcore.packing import PACK_BELOW_EVALUATION, PACK_BELOW_TRAINING, pack, packed_mean, packing, unpack, use_packing
from mmcore.types import ModalitySpec

SPEC = ModalitySpec("s", 5, sequence=True, max_len=9)


def _inputs(lengths: list[int], steps: int = 9) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    return torch.randn(len(lengths), steps, 5, generator=gen), torch.tensor(lengths)


def test_pack_unpack_round_trip_and_mean_match_the_padded_layout() -> None:
    x, lengths = _inputs([3, 9, 0, 1])
    p = packing(lengths, 9)
    assert p.frames == 13 and p.counts.tolist() == [3, 9, 0, 1]
    packed = pack(x, p)
    assert torch.equal(packed[:3], x[0, :3]) and torch.equal(packed[3:12], x[1]) and torch.equal(packed[12], x[3, 0])
    back = unpack(packed, p)
    valid = (torch.arange(9)[None, :] < lengths[:, None]).unsqueeze(-1)
    assert torch.equal(back, torch.where(valid, x, 0.0))
    assert torch.allclose(packed_mean(packed, p), masked_mean(x, lengths), atol=1e-6)
    assert torch.equal(packed_mean(packed, p)[2], torch.zeros(5))  # an empty row gives zeros
    assert p.keep[2].tolist() == [True] + [False] * 8  # ... and keeps one key, so softmax stays finite


def _pair(cls, **options):
    torch.manual_seed(0)
    padded = cls(SPEC, dim=8, frames="padded", **options)
    packed = cls(SPEC, dim=8, frames="packed", **options)
    packed.load_state_dict(padded.state_dict())
    return padded, packed


ENCODERS = [
    (TransformerEncoder, {"heads": 2, "layers": 2}),
    (TransformerEncoder, {"heads": 2, "layout": "reference", "positional": True}),
    (MLPEncoder, {"layers": [16, 7], "dropout": 0.3}),
]


@pytest.mark.parametrize("cls,options", ENCODERS)
def test_packed_equals_padded_in_eval_mode(cls, options) -> None:
    padded, packed = _pair(cls, **options)
    x, lengths = _inputs([3, 9, 0, 5, 1])
    x[0, 3:] = 1e3  # padding content must not matter to either
    want = padded.eval()(x, lengths)
    got = packed.eval()(x, lengths)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    vector = torch.randn(4, 5)  # vectors do not take the packed path at all
    assert torch.equal(packed(vector), padded(vector))


@pytest.mark.parametrize("cls,options", ENCODERS)
def test_packed_gradients_equal_padded_with_dropout_off(cls, options) -> None:
    options = {**options, "dropout": 0.0} | ({"attn_dropout": 0.0} if cls is TransformerEncoder else {})
    padded, packed = _pair(cls, **options)
    x, lengths = _inputs([4, 9, 2, 7])
    grads = []
    for model in (padded.train(), packed.train()):
        xi = x.clone().requires_grad_(True)
        model(xi, lengths).pow(2).sum().backward()
        grads.append([xi.grad] + [q.grad for q in model.parameters()])
    for want, got in zip(*grads):
        assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()


def test_packed_training_with_dropout_keeps_rows_independent_of_padding() -> None:
    """In training the dropout draws differ from padded, but a row's output still ignores padding."""
    _, packed = _pair(TransformerEncoder, heads=2, dropout=0.3, attn_dropout=0.3)
    use_fast_dropout(packed)
    x, lengths = _inputs([3, 9])
    y = x.clone()
    y[0, 3:] = 7.0
    torch.manual_seed(1)
    a = packed.train()(x, lengths)
    torch.manual_seed(1)
    b = packed.train()(y, lengths)
    assert torch.equal(a, b) and torch.isfinite(a).all()


def test_auto_packs_training_batches_with_any_padding_and_evaluation_batches_with_enough() -> None:
    nearly, sparse, full = torch.tensor([9, 9, 8, 9]), torch.tensor([3, 9, 0, 5]), torch.tensor([9, 9, 9, 9])
    assert use_packing("auto", sparse, 9) and not use_packing("auto", nearly, 9)  # evaluation (the default)
    assert use_packing("auto", nearly, 9, training=True) and not use_packing("auto", full, 9, training=True)
    assert use_packing("packed", full, 9) and not use_packing("padded", sparse, 9, training=True)
    at = torch.tensor([8, 8, 8, 8, 8])  # 40 of 50 real: exactly PACK_BELOW_EVALUATION is not below it
    assert PACK_BELOW_EVALUATION == 0.8 and not use_packing("auto", at, 10) and use_packing("auto", at - 1, 10)
    assert PACK_BELOW_TRAINING == 1.0 and use_packing("auto", at, 10, training=True)
    assert use_packing("auto", torch.tensor([99, 0]), 9)  # lengths past the padding count as full rows
    assert not use_packing("auto", torch.tensor([99, 9]), 9, training=True)


@pytest.mark.parametrize("cls,options", ENCODERS)
def test_auto_takes_the_packed_path_on_padded_training_batches_and_the_padded_one_on_full_ones(cls, options) -> None:
    """Same seed, training mode (dropout on): ``auto`` draws exactly what the path it chose draws."""
    padded, packed = _pair(cls, **options)
    auto = cls(SPEC, dim=8, frames="auto", **options)
    auto.load_state_dict(padded.state_dict())
    for lengths, twin in (([3, 9, 0, 5, 1], packed), ([9, 8, 9, 9, 9], packed), ([9, 9, 9, 9, 9], padded)):
        x, lengths = _inputs(lengths)
        torch.manual_seed(5)
        want = twin.train()(x, lengths)
        torch.manual_seed(5)
        assert torch.equal(auto.train()(x, lengths), want)
        assert torch.allclose(auto.eval()(x, lengths), padded.eval()(x, lengths), atol=1e-5)


def test_synthetic_correlated_lengths_follow_one_duration_and_leave_independent_draws_alone() -> None:
    from mmcore.builtins.synthetic import Synthetic

    shape = {"modalities": 3, "samples": 400, "sequence": True, "dims": [4, 5, 6], "min_lens": [20, 20, 10],
             "max_lens": [60, 60, 30], "seed": 5}
    default, independent = Synthetic(**shape).split("train"), Synthetic(**shape, lengths="independent").split("train")
    assert all(torch.equal(default.features[m], independent.features[m]) for m in default.features)
    together = Synthetic(**shape, lengths="correlated").split("train").lengths
    a, v, l = (together[m].float() for m in ("m0", "m1", "m2"))
    assert torch.equal(a, v)  # the same range: the same length
    assert torch.corrcoef(torch.stack([a, l]))[0, 1] > 0.95
    assert a.min() >= 20 and a.max() == 60 and l.min() >= 10 and l.max() <= 30
    apart = default.lengths
    assert abs(torch.corrcoef(torch.stack([apart["m0"].float(), apart["m2"].float()]))[0, 1]) < 0.2
