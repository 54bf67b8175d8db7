"""Shared fixtures: the core's tiny resolved recipe (``mmcore.testing.tiny_recipe``), and a tiny
model and batch with two sequence modalities and a vector (absent-row skipping, evaluation order)."""

from __future__ import annotations

from typing import Any, Callable, Iterator

import pytest
import torch

from mmcore.builtins.encoders import MLPEncoder, TransformerEncoder
from mmcore.builtins.fusion import ConcatFusion
from mmcore.builtins.imputers import ZeroImputer
from mmcore.engine.model import MultimodalModel
from mmcore.testing import tiny_recipe
from mmcore.types import Batch, ModalitySpec

MIXED = [ModalitySpec("s", 5, sequence=True, max_len=9), ModalitySpec("t", 3, sequence=True, max_len=6), ModalitySpec("v", 4)]


@pytest.fixture
def make_recipe(tmp_path) -> Callable[..., dict[str, Any]]:
    """``make_recipe("train.epochs=2", ...)``: the tiny recipe with overrides, resolved, writing under tmp_path."""

    def make(*overrides: str) -> dict[str, Any]:
        return tiny_recipe(tmp_path / "runs", *overrides)

    return make


@pytest.fixture
def mixed_model() -> Callable[[float], MultimodalModel]:
    """``mixed_model(dropout)``: a transformer on ``s``, MLPs on ``t`` and ``v``, the zero imputer
    and concat fusion, width 8, the same weights on every call (seed 0)."""

    def make(dropout: float) -> MultimodalModel:
        torch.manual_seed(0)
        encoders = {
            "s": TransformerEncoder(MIXED[0], dim=8, heads=2, layers=2, dropout=dropout, attn_dropout=dropout),
            "t": MLPEncoder(MIXED[1], dim=8, layers=[16], dropout=dropout),
            "v": MLPEncoder(MIXED[2], dim=8, layers=[16], dropout=dropout),
        }
        return MultimodalModel(MIXED, encoders, ZeroImputer(MIXED, 8), ConcatFusion(MIXED, 8, 3, layers=[8], dropout=dropout))

    return make


@pytest.fixture
def mixed_batch() -> tuple[Batch, torch.Tensor]:
    """Five rows of ``mixed_model``'s modalities with unequal lengths, and a ``present`` mask in
    which each row lacks one modality (two rows lack ``s``, two ``t``, one ``v``)."""
    gen = torch.Generator().manual_seed(1)
    lengths = {"s": torch.tensor([9, 2, 5, 1, 3]), "t": torch.tensor([1, 6, 2, 4, 3])}
    features = {"s": torch.randn(5, 9, 5, generator=gen), "t": torch.randn(5, 6, 3, generator=gen), "v": torch.randn(5, 4, generator=gen)}
    present = torch.tensor([[0, 1, 1], [1, 0, 1], [1, 1, 0], [0, 1, 1], [1, 0, 1]], dtype=torch.bool)
    return Batch(features, lengths, torch.tensor([0, 1, 2, 0, 1]), torch.arange(5)), present


@pytest.fixture(scope="module")
def one_torch_thread() -> Iterator[None]:
    """One torch thread for a module whose many tiny runs gain nothing from more (2 shared cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
