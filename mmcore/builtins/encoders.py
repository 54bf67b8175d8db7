"""Generic per-modality encoders: an MLP and a small pre-norm transformer.

Both accept vectors ``[B, D]`` and padded sequences ``[B, T, D]`` with ``lengths [B]``, and
both are *padding invariant*: frames past a row's length never influence its output, so
results do not depend on how far a batch happens to be padded.

With ``frames: packed`` a sequence's per-frame work runs on its real frames only
(``mmcore.packing``): the same function as ``frames: padded`` (outputs and gradients agree to
float rounding), about a third less arithmetic on IEMOCAP-shaped lengths, but dropout masks are
drawn for the real frames only, so training draws differ from a padded run's. ``frames: auto``
(the default) packs a batch only when padding is worth removing (``mmcore.packing.use_packing``).
Vectors are untouched by the option.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmcore.atenops import masked_softmax
from mmcore.errors import MMCoreError
from mmcore.fastdropout import FastDropout, keep_bytes
from mmcore.options.hints import Fraction, PositiveInt
from mmcore.nn import check_encoder_input, key_bias, length_mask, masked_mean, mlp, sinusoidal_positions
from mmcore.packing import Packing, pack, packed_mean, packing, unpack, use_packing
from mmcore.types import ModalitySpec


class MLPEncoder(nn.Module):
    """MLP per vector or per frame, then a mean over valid frames.

    Args:
        layers: hidden widths, each followed by ReLU and dropout; a final linear layer maps to ``dim``.
        dropout: dropout probability after each hidden layer.
        frames: ``packed`` runs a sequence's MLP on its real frames only, ``padded`` on every
            frame (the same outputs; different dropout draws in training), ``auto`` packs a
            training batch with any padding and an evaluation batch under 80% real (as
            ``mmcore.transformer``). Vectors: no effect.
    """

    def __init__(
        self,
        spec: ModalitySpec,
        dim: int,
        layers: list[PositiveInt] = [256],  # noqa: B006 - never mutated; a list default shows in the recipe schema
        dropout: Fraction = 0.0,
        frames: Literal["auto", "packed", "padded"] = "auto",
    ) -> None:
        super().__init__()
        self.spec = spec
        self.frames = frames
        self.net = mlp(spec.dim, list(layers), out_dim=dim, dropout=dropout)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        check_encoder_input("mmcore.mlp", self.spec, x)
        if x.dim() == 3 and lengths is not None and use_packing(self.frames, lengths, x.shape[1], self.training):
            p = packing(lengths, x.shape[1])
            return packed_mean(self.net(pack(x, p)), p)
        y = self.net(x)  # Linear acts on the last axis, so sequences are encoded frame by frame
        if y.dim() == 3:
            y = masked_mean(y, lengths)
        return y


class _PreNormBlock(nn.Module):
    """``x + drop(Attn(LN(x)))`` then ``x + drop(FF(LN(x)))``: the textbook pre-norm layout.

    With ``branch_norm`` (``layout: reference``) it becomes the block of RedCore's reference code
    (github sunjunaimer/RedCore, ``models/networks/transformer.py``, ``ResidualAttentionBlock``):
    ``x + LN(Attn(LN(x)))`` then ``x + LN(FF(LN(x)))``, each branch's output normalised and no
    dropout on the branches (only inside attention and inside the feed-forward layer).
    """

    compile_region = True  # compile: true compiles this block (one code for all blocks), not the whole model

    def __init__(
        self, dim: int, heads: int, ff_mult: int, dropout: float, attn_dropout: float, branch_norm: bool = False
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=attn_dropout, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        # ReLU in place: it rewrites the product it follows (autograd keeps its output, not its
        # input), which saves a [frames, ff_mult * dim] buffer and a pass over new memory
        self.ff = nn.Sequential(
            nn.Linear(dim, ff_mult * dim), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(ff_mult * dim, dim)
        )
        # the reference normalises each branch's output instead of dropping it out
        self.post1: nn.Module = nn.LayerNorm(dim) if branch_norm else nn.Dropout(dropout)
        self.post2: nn.Module = nn.LayerNorm(dim) if branch_norm else nn.Dropout(dropout)
        self.fast_dropout = False  # attention dropout from mmcore.fastdropout (train.dropout_masks: fast)

    def forward(self, x: Tensor, frames: Tensor | Packing) -> Tensor:
        """``x``: ``[B, T, dim]`` with ``frames`` the ``[B, T]`` padding mask, or the packed
        ``[N, dim]`` real frames with their ``Packing``; every op but attention is per frame."""
        if isinstance(frames, Packing):
            heads = pack(self._attention(unpack(self._in_proj(self.norm1(x)), frames), frames.keep), frames)
        else:
            heads = self._attention(self._in_proj(self.norm1(x)), ~frames)
        x = x + _dropped_linear(heads, self.attn.out_proj, self.post1)
        ff = self.ff
        if _fast(ff[2]):  # fast masks: zero before the ReLU (the same as after it), 1/(1-p) in ff[3]
            hidden = _dropped_linear(self.norm2(x), ff[0], ff[2], scale=False).relu_()
            return x + _dropped_linear(hidden, ff[3], self.post2, in_scale=1.0 / (1.0 - ff[2].p))
        return x + self.post2(ff(self.norm2(x)))

    def attend(self, x: Tensor, padding: Tensor) -> Tensor:
        """Self-attention with ``self.attn``'s weights, computed here rather than by its forward:
        the same function as ``nn.MultiheadAttention(x, x, x, key_padding_mask=padding)``
        (tested), without its per-call mask merging and checks (a measurable share of a CPU
        step), and with attention-weight dropout from ``mmcore.fastdropout`` when
        ``fast_dropout`` is on (``train.dropout_masks: fast``, or ``auto`` on a CPU)."""
        return self.attn.out_proj(self._attention(self._in_proj(x), ~padding))

    def _in_proj(self, x: Tensor) -> Tensor:
        return F.linear(x, self.attn.in_proj_weight, self.attn.in_proj_bias)

    def _attention(self, qkv: Tensor, keep: Tensor) -> Tensor:
        """Heads' attention of ``qkv [B, T, 3 dim]`` over the keys ``keep [B, T]`` -> ``[B, T, dim]``
        (before the output projection).

        The product is written out (:func:`written_out_attention`) where it is the faster path:
        in training with fast masks (the masks are drawn here, compiled or not), and on a CPU
        without dropout (evaluation), where SDPA's fused kernel ran these short, 16-wide heads at
        about 10 GFLOP/s, half the written-out rate (``benchmarks/README.md``, issue 25's fifth
        session). Elsewhere (a GPU's fused kernels, torch's masks):
        ``scaled_dot_product_attention``. The same function up to rounding (tested)."""
        attn = self.attn
        batch, steps, dim = qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3
        heads = attn.num_heads
        q, k, v = qkv.view(batch, steps, 3, heads, dim // heads).permute(2, 0, 3, 1, 4)  # [B, h, T, dh] each
        p = attn.dropout if self.training else 0.0
        written = (self.fast_dropout if p > 0.0 else q.device.type == "cpu" and not self.training)
        if written:
            y = written_out_attention(q, k, v, keep, p)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :], dropout_p=p)
        return y.transpose(1, 2).reshape(batch, steps, dim)


def written_out_attention(q: Tensor, k: Tensor, v: Tensor, keep: Tensor, p: float = 0.0) -> Tensor:
    """``softmax(q k^T / sqrt(dh) + mask) v`` for ``[B, h, T, dh]`` heads and keys ``keep [B, T]``,
    with attention-weight dropout of rate ``p`` from :func:`keep_bytes` (``p`` 0: none).

    Each step on the smaller operand: q scaled by ``dh^-1/2`` (not the ``T x T`` scores), the
    padding added as a ``-inf`` bias in place, the dropped weights zeroed and ``1/(1-p)``
    applied to v. SDPA's CPU math path instead converts the bool mask, guards fully masked rows
    (``all``, ``isneginf``) and scales the ``T x T`` weights (35% slower, 1 thread); its fused
    CPU kernel is slower still on short sequences with 16-wide heads. Every row must keep at
    least one key (the encoders keep frame 0), or its weights are NaN."""
    scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1)
    if torch.compiler.is_compiling() and q.device.type == "cpu":  # aten's softmax: inductor's is slower on a CPU
        weights = masked_softmax(scores, keep)
    else:
        weights = scores.add_(key_bias(keep, q.dtype)[:, None, None, :]).softmax(dim=-1)
    if p == 0.0:
        return weights @ v
    return (weights * keep_bytes(weights.shape, p, weights.device)) @ (v * (1.0 / (1.0 - p)))


def _fast(dropout: nn.Module) -> bool:
    """A training ``FastDropout`` with 0 < p < 1. Compiled regions trace the same masks
    (:func:`mmcore.fastdropout.keep_bytes` draws with ``randint``, which dynamo keeps in the graph)."""
    return isinstance(dropout, FastDropout) and dropout.training and 0.0 < dropout.p < 1.0


def _dropped_linear(x: Tensor, linear: nn.Module, after: nn.Module, in_scale: float = 1.0, scale: bool = True) -> Tensor:
    """``after(linear(x * in_scale))``. When ``after`` is a training ``FastDropout`` its byte mask
    multiplies the linear's output in place and ``1/(1-p)`` (unless ``scale`` is off: the
    feed-forward layer leaves it to its second linear) goes into the small weight and bias: one
    pass over the activations instead of three (scale, select, and the select's backward);
    ``in_scale`` likewise goes into the weight. Otherwise (torch's masks, a LayerNorm branch,
    evaluation) ``after`` runs as it is."""
    weight, bias = linear.weight, linear.bias
    out_scale = 1.0 / (1.0 - after.p) if scale and _fast(after) else 1.0
    if in_scale * out_scale != 1.0:
        weight = weight * (in_scale * out_scale)
    if out_scale != 1.0 and bias is not None:
        bias = bias * out_scale
    y = F.linear(x, weight, bias)
    if not _fast(after):
        return after(y)
    return y.mul_(keep_bytes(y.shape, after.p, y.device))


class TransformerEncoder(nn.Module):
    """Pre-norm transformer with a padding mask, then a mean over valid frames.

    Layout ``prenorm`` (default): input projection, ``layers`` pre-norm blocks, final LayerNorm,
    length-aware mean pooling. Layout ``reference``: RedCore's reference block
    (``x + LN(Attn(LN x))``, ``x + LN(FF(LN x))``, dropout only inside attention and the
    feed-forward layer) and no final LayerNorm, since each branch is already normalised.
    A vector is treated as a sequence of length 1. Defaults are smaller than RedCore's reference
    encoder (3 blocks, 8 heads, MLP x4, ReLU, dropout 0.1, attention dropout 0.2, no positions);
    unlike it, padding is masked here in both layouts.

    Args:
        layers: number of transformer blocks.
        heads: attention heads; must divide the latent ``dim``.
        ff_mult: width of the feed-forward layer as a multiple of ``dim``.
        dropout: dropout on the residual branches and inside the feed-forward layer.
        attn_dropout: dropout on the attention weights.
        positional: add sinusoidal position codes (order then matters).
        layout: ``prenorm`` or ``reference`` (RedCore's block, see above).
        frames: ``packed`` runs every per-frame operation (projections, feed-forward layers,
            norms, dropout) on a sequence's real frames only and lays them out padded for
            attention alone; ``padded`` runs them on every frame. The same outputs and gradients
            (to float rounding); training draws different dropout masks. ``auto`` packs every
            training batch that has padding (measured faster even at 95% real frames) and, in
            evaluation, a batch under 80% real (evaluation's length-ordered calls are nearly
            full, and packing them measured slower). Vectors: no effect.
    """

    def __init__(
        self,
        spec: ModalitySpec,
        dim: int,
        layers: PositiveInt = 2,
        heads: PositiveInt = 4,
        ff_mult: PositiveInt = 4,
        dropout: Fraction = 0.1,
        attn_dropout: Fraction = 0.1,
        positional: bool = False,
        layout: Literal["prenorm", "reference"] = "prenorm",
        frames: Literal["auto", "packed", "padded"] = "auto",
    ) -> None:
        super().__init__()
        if dim % heads != 0:  # ranges are in the signature; this invariant spans two values
            raise MMCoreError(f"mmcore.transformer for modality '{spec.name}': latent dim {dim} must be divisible by heads={heads}")
        self.spec = spec
        self.dim = dim
        self.positional = positional
        self.sequence_masks = spec.sequence  # train.dropout_masks: auto gives its blocks fast masks on a CPU
        self.frames = frames
        self.proj = nn.Linear(spec.dim, dim)
        self.blocks = nn.ModuleList(
            [_PreNormBlock(dim, heads, ff_mult, dropout, attn_dropout, layout == "reference") for _ in range(layers)]
        )
        # pre-norm stacks need a final norm on the residual stream; the reference has none
        self.norm: nn.Module = nn.LayerNorm(dim) if layout == "prenorm" else nn.Identity()

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        check_encoder_input("mmcore.transformer", self.spec, x)
        if x.dim() == 2:
            x, lengths = x.unsqueeze(1), None
        batch, steps, _ = x.shape
        if lengths is not None and use_packing(self.frames, lengths, steps, self.training):
            return self._forward_packed(x, packing(lengths, steps))
        y = self.proj(x)
        if self.positional:
            y = y + sinusoidal_positions(steps, self.dim, device=y.device).to(y.dtype)
        if lengths is None:
            padding = torch.zeros(batch, steps, dtype=torch.bool, device=x.device)
        else:
            padding = ~length_mask(lengths, steps)
        # A row of length 0 would mask every key and turn softmax into NaN; letting it attend to
        # frame 0 keeps it finite, and masked_mean below still returns zeros for it.
        padding[:, 0] = False
        for block in self.blocks:
            y = block(y, padding)
        return masked_mean(self.norm(y), lengths)

    def _forward_packed(self, x: Tensor, p: Packing) -> Tensor:
        """``forward`` on the real frames only (``frames: packed``)."""
        y = self.proj(pack(x, p))
        if self.positional:
            y = y + sinusoidal_positions(p.steps, self.dim, device=y.device).to(y.dtype).index_select(0, p.positions)
        for block in self.blocks:
            y = block(y, p)
        return packed_mean(self.norm(y), p)
