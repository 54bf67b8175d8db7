"""Evaluation encodes sequence rows in length order, in calls of bounded size, and puts them back."""

from __future__ import annotations

import torch
from torch import nn

from mmcore.engine.model import encode_in_length_order
from mmcore.types import SplitData


class Recorder(nn.Module):
    """Sums each row's valid frames and records what every call received."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[list[int], int]] = []

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        self.calls.append((lengths.tolist(), x.shape[1]))
        keep = torch.arange(x.shape[1])[None, :] < lengths[:, None]
        return (x * keep[..., None]).sum(1)


def test_rows_are_encoded_in_length_order_within_the_frame_budget_and_returned_in_place() -> None:
    lengths = torch.tensor([5, 1, 4, 2, 5, 0, 3])
    x = torch.arange(7 * 5 * 2, dtype=torch.float32).reshape(7, 5, 2)
    encoder = Recorder()
    got = encode_in_length_order(encoder, x, lengths, frames_per_call=8)
    # sorted: 0, 1, 2, 3, 4, 5, 5 -> [0, 1, 2] (3 rows x 2 frames = 6 <= 8; a 4th row of 3 would be 12),
    # [3, 4] (2 x 4 = 8), [5] (2 x 5 = 10 > 8), [5]; each call cut to its longest row (at least 1 frame)
    assert encoder.calls == [([0, 1, 2], 2), ([3, 4], 4), ([5], 5), ([5], 5)]
    assert torch.equal(got, Recorder()(x, lengths))  # every row back in its own place


def test_encoding_by_length_is_the_same_function_in_eval_mode(mixed_model, mixed_batch) -> None:
    model = mixed_model(0.3).eval()
    batch, _ = mixed_batch
    for budget in (1, 6, 10, 1000):
        assert torch.allclose(model.encode_by_length(batch, budget), model.encode(batch), atol=1e-6)


def test_split_rows_are_views_of_the_split() -> None:
    features = {"s": torch.randn(6, 4, 3), "v": torch.randn(6, 2)}
    split = SplitData(features, {"s": torch.tensor([4, 1, 2, 3, 4, 2])}, torch.arange(6), torch.arange(10, 16))
    batch = split.rows(2, 5)
    assert batch.ids.tolist() == [12, 13, 14] and batch.lengths["s"].tolist() == [2, 3, 4]
    assert batch.features["s"].data_ptr() == features["s"][2].data_ptr()  # no copy
    assert torch.equal(batch.features["v"], split.select(torch.tensor([2, 3, 4])).features["v"])


def test_predict_leaves_the_unimodal_heads_out_and_gives_the_fusion_prediction(mixed_model, mixed_batch) -> None:
    from contextlib import nullcontext

    from mmcore.engine.evaluate import predict
    from mmcore.nn import mlp

    model = mixed_model(0.3)
    torch.manual_seed(1)
    model.unimodal_heads = nn.ModuleDict({m: mlp(8, [8], 3) for m in model.modalities})
    model.eval()
    calls: list[str] = []
    for name, head in model.unimodal_heads.items():
        head.register_forward_hook(lambda module, args, out, name=name: calls.append(name))
    batch, present = mixed_batch
    split = SplitData(batch.features, batch.lengths, batch.target, batch.ids)
    masks = {"given": present, "all": torch.ones_like(present), "s": torch.tensor([[True, False, False]] * 5)}
    got = predict(model, split, masks, batch_size=2, autocast=nullcontext)
    assert calls == []  # no head ran: predict reads the fusion's prediction only
    with torch.no_grad():
        h = model.encode(batch)
        for name, mask in masks.items():
            full = model.complete(h, mask)
            assert full.unimodal is not None and full.unimodal.shape == (5, 3, 3)  # complete still runs them by default
            assert torch.allclose(got[name], full.prediction, atol=1e-6)
    assert calls == ["s", "t", "v"] * 3
