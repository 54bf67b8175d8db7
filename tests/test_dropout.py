"""Modality dropout: the hiding rule by hand, seeded by sample id, and exact resume through the engine."""

from __future__ import annotations

import pytest
import torch

from mmcore.engine.dropout import apply_dropout, dropout_uniforms
from mmcore.errors import RecipeError
from mmcore.testing import short_run, tiny_recipe


def test_rule_by_hand():
    present = torch.tensor([[True, True, True], [True, False, True], [False, True, False], [True, True, False]])
    u = torch.tensor([[0.1, 0.9, 0.2], [0.3, 0.0, 0.2], [0.5, 0.1, 0.5], [0.9, 0.8, 0.0]])
    out = apply_dropout(present, u, 0.25)
    expected = torch.tensor(
        [
            [False, True, False],  # 0.1 and 0.2 < 0.25 hidden; 0.9 stays
            [True, False, False],  # 0.2 hidden; 0.3 stays (the absent one's 0.0 is irrelevant)
            [False, True, False],  # its only present modality would go: it stays
            [True, True, False],  # nothing below the rate among the present ones
        ]
    )
    assert torch.equal(out, expected)
    # everything hidden: the present modality of largest u survives
    assert torch.equal(apply_dropout(present[:2], u[:2], 1.0), torch.tensor([[False, True, False], [True, False, False]]))
    assert torch.equal(apply_dropout(present, u, 0.0), present)


def test_uniforms_depend_on_id_epoch_seed_only():
    ids = torch.tensor([5, 9, 2, 7])
    table = dropout_uniforms(3, ids, 2, epoch=1)
    assert table.shape == (4, 2) and table.dtype == torch.float32
    assert torch.equal(dropout_uniforms(3, ids[[2, 0]], 2, epoch=1), table[[2, 0]])  # any shard, any order
    assert not torch.equal(dropout_uniforms(3, ids, 2, epoch=2), table)
    assert not torch.equal(dropout_uniforms(4, ids, 2, epoch=1), table)
    assert not torch.equal(table[:, 0], table[:, 1])


def test_rate_is_realised_on_full_rows():
    ids = torch.arange(20_000)
    present = torch.ones(20_000, 3, dtype=torch.bool)
    out = apply_dropout(present, dropout_uniforms(0, ids, 3, 0), 0.3)
    hidden = 1.0 - out.float().mean().item()
    assert abs(hidden - 0.3) < 0.02  # rows losing all three (2.7%) keep one, a small shortfall
    assert out.any(1).all()


def _weights(run_dir):
    from safetensors.torch import load_file

    return load_file(str(run_dir / "checkpoints" / "last" / "model.safetensors"))


def test_engine_applies_it_and_resume_is_exact(tmp_path):
    plain = short_run(tiny_recipe(tmp_path / "a", "train.epochs=2"))
    recipe = tiny_recipe(tmp_path / "b", "train.epochs=2", "train.modality_dropout=0.4")
    straight = short_run(recipe)
    first = short_run(tiny_recipe(tmp_path / "c", "train.epochs=2", "train.modality_dropout=0.4"), max_steps=7)
    resumed = short_run(tiny_recipe(tmp_path / "c", "train.epochs=2", "train.modality_dropout=0.4"), resume=first.run_dir)
    a, b, c = _weights(plain.run_dir), _weights(straight.run_dir), _weights(resumed.run_dir)
    assert any(not torch.equal(a[k], b[k]) for k in a)  # it changes training
    assert all(torch.equal(b[k], c[k]) for k in b)  # and resumes exactly
    assert resumed.results == straight.results


def test_rate_out_of_range_is_a_recipe_error(tmp_path):
    with pytest.raises(RecipeError, match="train.modality_dropout"):
        tiny_recipe(tmp_path, "train.modality_dropout=1.5")
