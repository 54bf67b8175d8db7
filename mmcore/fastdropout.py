"""Cheaper dropout masks for CPU training (``train.dropout_masks: fast``), an opt-in.

Why: on a CPU, ``torch.nn.functional.dropout`` draws one Bernoulli sample per element from the
Mersenne-Twister generator, and on RedCore's IEMOCAP model (three transformer encoders with
dropout on attention weights, branches and feed-forward layers) those draws were 22-41% of a
training step's time (``benchmarks/README.md``). Here one 64-bit draw gives four 16-bit
integers, and an element is kept where its integer is at least ``round(p · 2^16)`` below the
top of the range: the same independent keep-with-probability-(1 - p) masks, with p rounded to
a multiple of 1/65536 (0.1 becomes 0.100006), scaled by 1 / (1 - p) as PyTorch scales them.

What changes: the random draws (a run with ``fast`` masks does not reproduce one with ``torch``
masks draw for draw, though each is reproducible on its own from the seed) and p's rounding.
What does not: the mask distribution, the scaling, evaluation (no dropout), and every module
whose ``p`` is 0. It is therefore an option, never a default; on CUDA the stock kernel is
already fast and ``fast`` gains nothing.

``use_fast_dropout(model)`` swaps every ``nn.Dropout`` of a built model for ``FastDropout``
with the same ``p`` and turns on modules that draw masks inside their own forward (they expose a
boolean ``fast_dropout`` attribute, like ``mmcore.transformer``'s attention).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

_LANES = 4  # 16-bit integers per 64-bit draw
_RANGE = 1 << 16


def keep_threshold(p: float) -> int:
    """The int16 value at or above which an element is kept: ``round(p · 2^16)`` values dropped."""
    return int(round(float(p) * _RANGE)) - (_RANGE // 2)


def _lanes(shape: torch.Size | tuple[int, ...], device: torch.device | str) -> Tensor:
    """One uniform int16 per element of ``shape`` (flat), four from each 64-bit draw."""
    count = 1
    for size in shape:
        count = count * size
    # the full 64-bit range: all four 16-bit lanes uniform. randint is random_ on a new tensor (the
    # same draws); dynamo keeps it in a compiled graph, where Tensor.random_ splits the graph, and
    # the size stays symbolic (no int(): a compiled region would specialise on every shape). The
    # first `count` lanes are taken as a view, not a slice: inductor lowers a slice by clamping its
    # end to the length, which its size-oblivious lowering (mmcore.engine.compiling) cannot do
    # when `count` is not a provable multiple of 4 (tests/test_compile.py's 2-head block did not)
    words = torch.randint(-(2**63), 2**63 - 1, ((count + _LANES - 1) // _LANES,), dtype=torch.int64, device=device)
    return words.view(torch.int16).as_strided((count,), (1,))


def keep_mask(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str) -> Tensor:
    """A bool tensor of ``shape``, each element True with probability 1 − p (p rounded to 1/65536)."""
    return (_lanes(shape, device) >= keep_threshold(p)).view(shape)


def keep_bytes(shape: torch.Size | tuple[int, ...], p: float, device: torch.device | str) -> Tensor:
    """``keep_mask`` as uint8 0/1 (the same bytes, no copy): what a dropout multiplies by. On a
    CPU multiplying by a byte mask is 2-3x faster than ``masked_fill`` or ``where`` with a bool
    one (1 thread, 2.6 M floats: 1.8 ms against 4.3 ms), and backward keeps the same 1 byte an
    element."""
    return keep_mask(shape, p, device).view(torch.uint8)


def fast_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """``F.dropout(x, p, training)`` with masks from ``keep_mask``."""
    if not training or p == 0.0:
        return x
    if p >= 1.0:
        return torch.zeros_like(x)
    # the byte mask is all that backward keeps (1 byte an element, as torch's native dropout),
    # where multiplying by a float mask would keep a 4-byte copy
    return (x * (1.0 / (1.0 - p))).mul_(keep_bytes(x.shape, p, x.device))


class FastDropout(nn.Module):
    """``nn.Dropout`` with the cheaper masks; same ``p``, same train/eval behaviour."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        return fast_dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def use_fast_dropout(model: nn.Module, sequences_only: bool = False) -> int:
    """Swap every ``nn.Dropout`` in ``model`` for ``FastDropout`` and set ``fast_dropout = True``
    on modules that draw their own masks; returns how many modules changed. Parameters and
    state dict keys are untouched (dropout has none), so checkpoints are interchangeable.

    ``sequences_only``: only inside modules that declare ``sequence_masks = True`` (a sequence
    encoder, whose per-frame and attention masks are most of a step's draws): what
    ``train.dropout_masks: auto`` does on a CPU, leaving every other module's draws as torch's."""
    roots = [model]
    if sequences_only:
        roots = [m for m in model.modules() if getattr(m, "sequence_masks", False) is True]
    changed = 0
    for root in roots:
        for module in root.modules():
            if isinstance(getattr(module, "fast_dropout", None), bool) and not module.fast_dropout:
                module.fast_dropout = True
                changed += 1
            for name, child in list(module.named_children()):
                if type(child) is nn.Dropout:
                    setattr(module, name, FastDropout(child.p))
                    changed += 1
    return changed


def apply_dropout_masks(model: nn.Module, choice: str, device: torch.device | str) -> int:
    """``train.dropout_masks``: ``torch`` changes nothing, ``fast`` swaps every dropout, ``auto``
    (the default) swaps the sequence encoders' on a CPU only (on CUDA torch's kernel is already
    fast, and vector models such as the quickstart keep their draws bit for bit)."""
    if choice == "fast":
        return use_fast_dropout(model)
    if choice == "auto" and torch.device(device).type == "cpu":
        return use_fast_dropout(model, sequences_only=True)
    return 0
