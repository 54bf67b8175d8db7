"""``train.absent_rows: skip``: sequence encoders run on present rows only, and nothing else changes.

``mixed_model`` and ``mixed_batch`` are conftest's: two sequence modalities and a vector."""

from __future__ import annotations

from typing import Callable

import pytest
import torch
from torch import nn

from mmcore.engine.model import MultimodalModel, encode_present

def _pair(mixed_model: Callable[[float], MultimodalModel], dropout: float) -> tuple[MultimodalModel, MultimodalModel]:
    whole, skipping = mixed_model(dropout), mixed_model(dropout)
    skipping.load_state_dict(whole.state_dict())
    skipping.skip_absent = True
    return whole, skipping


def test_skipping_absent_rows_is_the_same_function_in_eval_mode(mixed_model, mixed_batch) -> None:
    whole, skipping = _pair(mixed_model, 0.3)
    batch, present = mixed_batch
    want, got = whole.eval()(batch, present), skipping.eval()(batch, present)
    assert torch.allclose(got.prediction, want.prediction, atol=1e-6)
    assert torch.allclose(got.z, want.z, atol=1e-6)
    assert torch.equal(got.h[~present], torch.zeros(int((~present).sum()), 8))


def test_skipping_absent_rows_gives_the_same_gradients_without_dropout(mixed_model, mixed_batch) -> None:
    whole, skipping = _pair(mixed_model, 0.0)
    batch, present = mixed_batch
    for model in (whole, skipping):
        model.train()(batch, present).prediction.square().sum().backward()
    for (name, a), b in zip(whole.named_parameters(), skipping.parameters()):
        assert torch.allclose(a.grad, b.grad, atol=1e-6), name


def test_only_present_rows_of_sequence_modalities_reach_their_encoders(mixed_model, mixed_batch) -> None:
    _, skipping = _pair(mixed_model, 0.0)
    seen: dict[str, tuple[int, ...]] = {}
    for name, encoder in skipping.encoders.items():
        encoder.register_forward_hook(lambda mod, args, out, name=name: seen.__setitem__(name, tuple(args[0].shape)))
    batch, present = mixed_batch
    skipping(batch, present)
    # s: rows 1, 2, 4 (lengths 2, 5, 3: cut to 5 frames); t: rows 0, 2, 3 (lengths 1, 2, 4: 4 frames)
    assert seen == {"s": (3, 5, 5), "t": (3, 4, 3), "v": (5, 4)}  # vectors: every row, as always


def test_encode_present_runs_the_whole_batch_when_every_row_or_none_is_present() -> None:
    calls: list[int] = []

    class Count(nn.Module):
        def forward(self, x: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
            calls.append(len(x))
            return x.sum(1)

    x, lengths = torch.ones(4, 3, 2), torch.tensor([3, 1, 2, 3])
    assert torch.equal(encode_present(Count(), x, lengths, torch.ones(4, dtype=torch.bool)), torch.full((4, 2), 3.0))
    encode_present(Count(), x, lengths, torch.zeros(4, dtype=torch.bool))
    out = encode_present(Count(), x, lengths, torch.tensor([False, True, False, True]))
    assert calls == [4, 4, 2]
    assert out.tolist() == [[0, 0], [3, 3], [0, 0], [3, 3]]  # rows 1 and 3, cut to their longest (3): ones summed


@pytest.mark.parametrize("value,skips", [(None, True), ("skip", True), ("encode", False)])
def test_the_recipe_key_reaches_the_plan(value, skips) -> None:
    from mmcore.recipe import load_recipe
    from mmcore.recipe.plan import plan_of

    overrides = [] if value is None else [f"train.absent_rows={value}"]
    assert plan_of(load_recipe("recipes/quickstart.yaml", overrides)).train.skip_absent is skips
