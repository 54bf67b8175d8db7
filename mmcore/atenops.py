"""Operations that a compiled region leaves to aten's kernels instead of inductor's.

Why: inductor decomposes ``softmax`` and its backward into generic reductions, and on a CPU
those ran the attention weights of the IEMOCAP recipe's blocks (``[B, 8, T, T]``, T <= 60) 2.3x
(forward) and 3.5x (backward) slower than aten's hand-vectorised kernels: 2.77 + 1.18 ms against
1.23 ms a block forward, 2.32 against 0.66 ms backward (2 threads; ``benchmarks/README.md``,
issue 25's eleventh session). That lost most of what fusing the rest of a block saved: compiled
steps ran 1-4% faster than eager with inductor's softmax, 4-7% with aten's.

A ``torch.library`` custom op is opaque to inductor: it is called as it is, and AOT autograd's
and inductor's caches keep graphs that hold it (a custom ``autograd.Function`` made them bypass
the cache; see :func:`mmcore.packing.pack`). The forward and the backward are each an op, so
neither half is decomposed. Eager code does not call these: it computes the same thing with
aten directly and an op's dispatch would only add overhead.
"""

from __future__ import annotations

import torch
from torch import Tensor

from mmcore.nn import key_bias


@torch.library.custom_op("mmcore::masked_softmax", mutates_args=())
def masked_softmax(scores: Tensor, keep: Tensor) -> Tensor:
    """``softmax(scores + mask)`` over the last axis, for ``[B, h, T, T]`` scores and keys
    ``keep [B, T]`` (False: ``-inf``, weight 0). A row must keep at least one key."""
    return (scores + key_bias(keep, scores.dtype)[:, None, None, :]).softmax(dim=-1)


@masked_softmax.register_fake
def _(scores: Tensor, keep: Tensor) -> Tensor:
    return torch.empty_like(scores)


@torch.library.custom_op("mmcore::softmax_backward", mutates_args=())
def softmax_backward(grad: Tensor, weights: Tensor) -> Tensor:
    """The gradient of a last-axis softmax's input from its output's, aten's kernel:
    ``weights * (grad - sum(grad * weights))``; zero where a weight is (the masked keys)."""
    return torch._softmax_backward_data(grad, weights, -1, weights.dtype)


@softmax_backward.register_fake
def _(grad: Tensor, weights: Tensor) -> Tensor:
    return torch.empty_like(weights)


def _save_weights(ctx: torch.autograd.function.FunctionCtx, inputs: tuple[Tensor, Tensor], output: Tensor) -> None:
    ctx.save_for_backward(output)


def _masked_softmax_backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, None]:
    (weights,) = ctx.saved_tensors  # type: ignore[attr-defined]
    return softmax_backward(grad, weights), None


masked_softmax.register_autograd(_masked_softmax_backward, setup_context=_save_weights)
