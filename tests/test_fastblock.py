"""The transformer block's fast-mask path (train.dropout_masks: fast, and auto on a CPU).

With fast masks the block folds 1/(1-p) into weights and writes masks in place; these tests check
that it is still exactly ``x + drop(Attn(LN x))``, ``x + drop(FF(LN x))`` with the masks it drew
(outputs and every gradient), that packed and padded frames agree under it, that evaluation is
untouched, and which modules ``auto`` gives fast masks.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mmcore.builtins.encoders as encoders
from mmcore.builtins.encoders import MLPEncoder, TransformerEncoder, _PreNormBlock
from mmcore.fastdropout import FastDropout, apply_dropout_masks, keep_bytes, keep_mask, use_fast_dropout
from mmcore.packing import pack, packing, unpack
from mmcore.types import ModalitySpec

P, P_ATTN = 0.25, 0.3


def _recorded(monkeypatch) -> list[torch.Tensor]:
    """Every mask the block draws, in order (attention, branch 1, feed-forward, branch 2)."""
    masks: list[torch.Tensor] = []

    def record(shape, p, device):
        masks.append(keep_bytes(shape, p, device))
        return masks[-1]

    monkeypatch.setattr(encoders, "keep_bytes", record)
    return masks


def _reference(block: _PreNormBlock, x: torch.Tensor, padding: torch.Tensor, masks: list[torch.Tensor]) -> torch.Tensor:
    """The block written out from its modules, dropout as ``x * keep / (1 - p)`` with ``masks``."""
    attn, (batch, steps, dim), heads = block.attn, x.shape, block.attn.num_heads
    q, k, v = F.linear(block.norm1(x), attn.in_proj_weight, attn.in_proj_bias).view(batch, steps, 3, heads, -1).permute(2, 0, 3, 1, 4)
    scores = (q @ k.transpose(-2, -1)) / (dim // heads) ** 0.5
    weights = scores.masked_fill(padding[:, None, None, :], float("-inf")).softmax(-1)
    weights = weights * masks[0] / (1 - P_ATTN)
    heads_out = (weights @ v).transpose(1, 2).reshape(batch, steps, dim)
    x = x + attn.out_proj(heads_out) * masks[1] / (1 - P)
    hidden = F.relu(block.ff[0](block.norm2(x))) * masks[2] / (1 - P)
    return x + block.ff[3](hidden) * masks[3] / (1 - P)


def _block() -> tuple[_PreNormBlock, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    block = _PreNormBlock(16, 4, 2, P, P_ATTN).train()
    assert use_fast_dropout(block) == 4 and block.fast_dropout
    x = torch.randn(5, 7, 16)
    padding = torch.zeros(5, 7, dtype=torch.bool)
    padding[1, 4:] = True
    padding[3, 1:] = True
    return block, x, padding


def _grads(block: nn.Module, x: torch.Tensor, run, valid: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Outputs and the gradients of a weighted sum over the real frames (``valid``) only."""
    block.zero_grad(set_to_none=True)
    xi = x.clone().requires_grad_(True)
    y = run(xi)
    (y * torch.linspace(-1, 1, y.shape[-1]) * valid[..., None]).sum().backward()
    return y.detach(), [xi.grad] + [q.grad for q in block.parameters()]


def test_fast_block_is_the_block_with_the_masks_it_drew(monkeypatch) -> None:
    block, x, padding = _block()
    masks = _recorded(monkeypatch)
    got, got_grads = _grads(block, x, lambda xi: block(xi, padding), ~padding)
    assert [tuple(m.shape) for m in masks] == [(5, 4, 7, 7), (5, 7, 16), (5, 7, 32), (5, 7, 16)]
    assert all(m.any() and not m.all() for m in masks)  # byte masks: 1 kept, 0 dropped  # something was dropped, something kept
    want, want_grads = _grads(block, x, lambda xi: _reference(block, xi, padding, masks), ~padding)
    valid = ~padding  # padded frames' outputs are never read
    assert torch.allclose(got[valid], want[valid], atol=1e-5)
    for a, b in zip(got_grads, want_grads):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


def test_fast_block_packed_equals_padded_when_the_masks_agree(monkeypatch) -> None:
    """Packed and padded draw masks of different shapes; with nothing dropped they must agree
    exactly, scaling and folding included (outputs on real frames and every gradient)."""
    block, x, padding = _block()
    monkeypatch.setattr(encoders, "keep_bytes", lambda shape, p, device: torch.ones(shape, dtype=torch.uint8))
    lengths = (~padding).sum(1)
    p = packing(lengths, x.shape[1])
    padded, padded_grads = _grads(block, x, lambda xi: block(xi, padding), ~padding)
    packed, packed_grads = _grads(block, x, lambda xi: unpack(block(pack(xi, p), p), p), ~padding)
    assert torch.allclose(packed[~padding], padded[~padding], atol=1e-5)
    for a, b in zip(packed_grads, padded_grads):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


def test_evaluation_is_the_same_function_with_either_masks() -> None:
    spec = ModalitySpec("a", 6, sequence=True, max_len=9)
    torch.manual_seed(0)
    plain = TransformerEncoder(spec, 16, layers=2, heads=4, dropout=P, attn_dropout=P_ATTN)
    fast = TransformerEncoder(spec, 16, layers=2, heads=4, dropout=P, attn_dropout=P_ATTN)
    fast.load_state_dict(plain.state_dict())
    use_fast_dropout(fast)
    x, lengths = torch.randn(4, 9, 6), torch.tensor([9, 2, 5, 1])
    assert torch.allclose(fast.eval()(x, lengths), plain.eval()(x, lengths), atol=1e-5)


def test_keep_bytes_are_the_keep_mask_of_the_same_draws() -> None:
    torch.manual_seed(3)
    kept = keep_mask((1001,), 0.2, "cpu")
    torch.manual_seed(3)
    assert torch.equal(keep_bytes((1001,), 0.2, "cpu"), kept.to(torch.uint8))


def _model(vector_transformer: bool = False) -> nn.ModuleDict:
    seq = ModalitySpec("a", 5, sequence=True, max_len=6)
    vec = ModalitySpec("b", 5)
    return nn.ModuleDict({
        "seq": TransformerEncoder(seq, 8, layers=2, heads=2),
        "vec": TransformerEncoder(vec, 8, layers=1, heads=2) if vector_transformer else MLPEncoder(vec, 8, dropout=0.1),
        "head": nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5)),
    })


@pytest.mark.parametrize("vector_transformer", [False, True])
def test_auto_gives_fast_masks_to_sequence_encoders_on_a_cpu_only(vector_transformer) -> None:
    model = _model(vector_transformer)
    assert apply_dropout_masks(model, "auto", "cpu") == 2 * 4  # 2 blocks x (attention, ff, 2 branches)
    assert all(block.fast_dropout for block in model["seq"].blocks)
    assert not any(isinstance(m, FastDropout) for m in [*model["vec"].modules(), *model["head"].modules()])
    if vector_transformer:
        assert not any(block.fast_dropout for block in model["vec"].blocks)
    assert apply_dropout_masks(_model(), "auto", "cuda") == 0  # torch's kernel is fast there
    assert apply_dropout_masks(_model(), "torch", "cpu") == 0
    assert apply_dropout_masks(_model(), "fast", "cpu") == 2 * 4 + 1 + 1  # + the MLP's and the head's


def test_the_recipe_default_is_auto(tmp_path) -> None:
    from mmcore.testing import tiny_recipe

    assert tiny_recipe(tmp_path)["train"]["dropout_masks"] == "auto"
