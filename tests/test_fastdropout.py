"""train.dropout_masks: fast — the mask rule, its distribution, the swap, and a run that trains with it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from mmcore.builtins.encoders import TransformerEncoder, _PreNormBlock
from mmcore.fastdropout import FastDropout, fast_dropout, keep_mask, keep_threshold, use_fast_dropout
from mmcore.testing import short_run, tiny_recipe
from mmcore.types import ModalitySpec


def test_threshold_drops_round_p_times_65536_of_the_int16_range():
    assert keep_threshold(0.0) == -32768  # every int16 is kept
    assert keep_threshold(0.5) == 0  # the non-negative half is kept
    assert keep_threshold(0.1) == 6554 - 32768  # 0.1 * 65536 = 6553.6 -> 6554 values dropped


def test_keep_rate_is_one_minus_p_and_elements_are_independent():
    torch.manual_seed(0)
    n = 400_000
    for p in (0.1, 0.2, 0.5):
        mask = keep_mask((n,), p, "cpu").float()
        sd = math.sqrt(p * (1 - p) / n)
        assert abs(mask.mean().item() - (1 - p)) < 5 * sd  # 5 sigma
        # each of the four 16-bit lanes of a 64-bit draw is unbiased, and neighbours uncorrelated
        lanes = mask.view(-1, 4).mean(0)
        assert torch.all((lanes - (1 - p)).abs() < 5 * math.sqrt(p * (1 - p) / (n / 4)))
        centred = mask - mask.mean()
        assert abs((centred[1:] * centred[:-1]).mean().item()) < 5 * p * (1 - p) / math.sqrt(n)


def test_fast_dropout_scales_like_torch_and_is_identity_in_eval():
    x = torch.ones(1000, 100)
    y = fast_dropout(x, 0.2, True)
    kept = y != 0
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.8))
    assert fast_dropout(x, 0.2, False) is x and fast_dropout(x, 0.0, True) is x
    assert torch.equal(fast_dropout(x, 1.0, True), torch.zeros_like(x))
    assert abs(y.mean().item() - 1.0) < 0.01  # E[y] = x, as for nn.Dropout
    # reproducible from the generator's seed
    torch.manual_seed(3)
    a = keep_mask((7, 9), 0.3, "cpu")
    torch.manual_seed(3)
    assert torch.equal(a, keep_mask((7, 9), 0.3, "cpu"))


def test_gradients_flow_through_kept_elements_only():
    x = torch.randn(50, 40, requires_grad=True)
    torch.manual_seed(1)
    y = fast_dropout(x, 0.5, True)
    y.sum().backward()
    kept = y.detach() != 0
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 2.0))
    assert torch.equal(x.grad[~kept], torch.zeros_like(x.grad[~kept]))


def test_swap_replaces_every_dropout_and_turns_on_attention_dropout():
    spec = ModalitySpec("a", 5, sequence=True, max_len=6)
    model = nn.ModuleDict({"enc": TransformerEncoder(spec, 8, layers=2, heads=2), "head": nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5))})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    changed = use_fast_dropout(model)
    # 2 blocks x (ff dropout, post1, post2, attention) + the head's dropout
    assert changed == 2 * 4 + 1
    assert not any(type(m) is nn.Dropout for m in model.modules())
    assert all(block.fast_dropout for block in model["enc"].blocks)
    assert model["head"][1].p == 0.5 and isinstance(model["head"][1], FastDropout)
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("path", ["sdpa", "written_eval", "fast"])
def test_block_attention_is_multihead_attention(path, monkeypatch):
    """Each of ``attend``'s paths computes nn.MultiheadAttention's function from its weights:
    SDPA (training without attention dropout), the written-out product a CPU evaluates with,
    and the same product with fast masks (training with p > 0, here with the mask drawn as
    all-keep so that the two can be compared)."""
    import mmcore.builtins.encoders as encoders

    torch.manual_seed(0)
    block = _PreNormBlock(16, 4, 2, 0.0, 0.0 if path == "sdpa" else 0.3).eval()
    x = torch.randn(5, 7, 16)
    padding = torch.zeros(5, 7, dtype=torch.bool)
    padding[1, 4:] = True
    padding[3, 1:] = True
    expected, _ = block.attn(x, x, x, key_padding_mask=padding, need_weights=False)
    written: list[float] = []
    original = encoders.written_out_attention
    monkeypatch.setattr(encoders, "written_out_attention", lambda *a: written.append(a[-1]) or original(*a))
    if path == "sdpa":
        block.train()  # training, p = 0: the fused kernel
    if path == "fast":
        taken: list[float] = []
        # nothing dropped: the explicit path then computes MHA with v scaled by 1/(1-p)
        monkeypatch.setattr(encoders, "keep_bytes", lambda shape, p, device: taken.append(p) or torch.ones(shape, dtype=torch.uint8))
        block.fast_dropout = True
        block.train()
        v_rows = slice(32, 48)  # in_proj's v rows: undo the 1/(1-p) the path applies to v
        with torch.no_grad():
            block.attn.in_proj_weight[v_rows] *= 0.7
            block.attn.in_proj_bias[v_rows] *= 0.7
    assert torch.allclose(block.attend(x, padding), expected, atol=1e-6)
    assert written == {"sdpa": [], "written_eval": [0.0], "fast": [0.3]}[path]  # the path named ran
    if path == "fast":
        assert taken == [0.3]  # with the attention dropout's p


def test_fast_attention_dropout_keeps_padding_masked_in_training():
    torch.manual_seed(0)
    block = _PreNormBlock(16, 4, 2, 0.0, 0.5).train()
    block.fast_dropout = True
    x = torch.randn(3, 6, 16)
    padding = torch.zeros(3, 6, dtype=torch.bool)
    padding[0, 2:] = True
    y = block.attend(x, padding)
    x2 = x.clone()
    x2[0, 2:] = 1e3  # padded frames of row 0 changed: row 0's valid outputs must not move
    torch.manual_seed(0)
    y_ref = block.attend(x, padding)
    torch.manual_seed(0)
    y2 = block.attend(x2, padding)
    assert torch.allclose(y_ref[0, :2], y2[0, :2], atol=1e-5)
    assert torch.isfinite(y).all()


def test_a_run_with_fast_masks_and_length_order_learns(tmp_path, monkeypatch):
    import mmcore.engine.trainer as trainer

    calls: list[int] = []
    real = trainer.length_order
    monkeypatch.setattr(trainer, "length_order", lambda order, *a: calls.append(len(order)) or real(order, *a))
    swapped: list[int] = []
    real_apply = trainer.apply_dropout_masks
    monkeypatch.setattr(trainer, "apply_dropout_masks", lambda model, *a: swapped.append(real_apply(model, *a)) or swapped[-1])
    dataset = {"type": "mmcore.synthetic", "modalities": 3, "classes": 4, "samples": 400, "dim": 8,
               "sequence": True, "min_lens": [2, 2, 2], "max_lens": [9, 9, 9]}
    recipe = tiny_recipe(
        tmp_path, "train.dropout_masks=fast", "train.batch_order=length", "train.epochs=4",
        dataset=dataset, encoders={"default": {"type": "mmcore.transformer", "layers": 1, "heads": 2, "attn_dropout": 0.2}},
    )
    assert recipe["train"]["dropout_masks"] == "fast" and recipe["train"]["batch_order"] == "length"
    result = short_run(recipe)
    evaluation = json.loads((Path(result.run_dir) / "eval.json").read_text())
    assert evaluation["results"]["test"]["average"]["accuracy"] > 0.5  # chance: 0.25
    assert len(calls) == 4  # once per epoch, over the whole training split
    assert swapped == [3 * 4 + 1]  # per encoder its block's ff, two branch dropouts and attention; the fusion's
