"""Frames missing inside a present sequence modality: the recipe's ``missing.frames``.

The protocol of MuteBench and of MissMAC-Bench's instance level, where a modality is there but
parts of its sequence are not. Our definition (the benchmarks' own drop procedures are not
reproduced here): the valid frames of a row are cut into consecutive segments of ``segment``
frames, starting at a per-row random phase, and each segment is dropped independently with
probability ``rate``. Every frame then lies in exactly one segment, so every frame is dropped
with probability ``rate`` exactly, whatever the row's length; the phase keeps segment borders
from lining up across rows.

A dropped frame is zeroed in place: time positions and lengths stay (a sensor that stops sending
leaves a gap, it does not shorten the clip), so nothing of its values reaches a model -- the
leakage rule of the modality masks, at frame level. A row whose every valid frame is dropped
counts as lacking the modality: it is marked ``unusable``, which the engine applies to training
masks and evaluation conditions alike.

Drops are a pure function of (seed, sample id, modality, segment, rate): counter-based hashes of
``mmcore.missing``, on streams of their own, so they do not depend on batching or row order and
are the same when a run resumes. Training frames use the run's seed; validation and test frames
use ``missing.frames.seed`` (default 0) on another stream, so every method and training seed is
scored on the same frames, as with random evaluation conditions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch
from torch import Tensor

from mmcore.errors import MMCoreError
from mmcore.missing import hash_uniform
from mmcore.text import did_you_mean
from mmcore.types import ModalitySpec, SplitData

STREAM_FRAMES_TRAIN = 0x66727472  # "frtr"
STREAM_FRAMES_EVAL = 0x66726576  # "frev"


@dataclass(frozen=True)
class FrameSpec:
    """How often frames of present sequence modalities are dropped, in segments."""

    rate: float = 0.0  # probability that a frame (its segment) is dropped, at training
    segment: int = 1  # frames per dropped segment
    eval_rate: float | None = None  # the rate at validation and test; None: the training rate
    seed: int = 0  # seed of the validation and test frames (training frames use the run's seed)
    modalities: tuple[str, ...] | None = None  # sequence modalities it applies to; None: all of them

    def rate_for(self, training: bool) -> float:
        return self.rate if training or self.eval_rate is None else self.eval_rate


def frame_spec(node: dict | None) -> FrameSpec:
    """The ``missing.frames`` node of a resolved recipe (absent in runs made before it existed)."""
    if not node:
        return FrameSpec()
    names = node.get("modalities")
    return FrameSpec(float(node.get("rate", 0.0)), int(node.get("segment", 1)), node.get("eval_rate"),
                     int(node.get("seed", 0)), None if names is None else tuple(names))


def ceiling_split(session: Any, name: str) -> SplitData:
    """An evaluation split as a Bayes ceiling must see it: where evaluation frames are dropped,
    lengths count the kept frames (a ceiling given what is left); otherwise the split itself."""
    spec = session.plan.missing.frames
    if spec.rate_for(False) <= 0.0:
        return session.splits[name]
    return kept_lengths(session.clean_split(name), session.specs, spec, session.plan.seed, False)


def frame_targets(spec: FrameSpec, specs: Sequence[ModalitySpec]) -> list[int]:
    """Indices of the modalities whose frames are dropped; a one-line error for a frame rate on
    vector data or an unknown name."""
    if max(spec.rate, spec.eval_rate or 0.0) <= 0.0:
        return []
    sequences = [i for i, s in enumerate(specs) if s.sequence]
    if spec.modalities is None:
        if not sequences:
            raise MMCoreError(
                f"missing.frames: rate {spec.rate:g} (eval_rate {spec.eval_rate}) drops frames, but no modality of this "
                f"dataset is a sequence ({', '.join(s.name for s in specs)} are vectors); expected rate 0"
            )
        return sequences
    names = [s.name for s in specs]
    out = []
    for name in spec.modalities:
        if name not in names:
            raise MMCoreError(f"missing.frames.modalities: unknown modality '{name}';{did_you_mean(name, names)} available: {', '.join(names)}")
        if not specs[names.index(name)].sequence:
            raise MMCoreError(f"missing.frames.modalities: '{name}' is a vector modality; frames can only be dropped from sequences")
        out.append(names.index(name))
    return out


def keep_frames(rate: float, segment: int, ids: Tensor, frames: int, seed: int, stream: int) -> Tensor:
    """Bool ``[N, frames]``, True where a frame is kept (on the CPU)."""
    n = int(ids.shape[0])
    if rate <= 0.0 or frames == 0:
        return torch.ones((n, frames), dtype=torch.bool)
    phase = (hash_uniform(seed, ids, stream, 0) * segment).long().clamp(max=segment - 1)  # [N]
    blocks = math.ceil((frames + segment - 1) / segment)
    dropped = torch.stack([hash_uniform(seed, ids, stream, b + 1) < rate for b in range(blocks)], dim=1)  # [N, blocks]
    block_of = (torch.arange(frames)[None, :] + phase[:, None]) // segment  # [N, frames]
    return ~dropped.gather(1, block_of)


def _keeps(split: SplitData, specs: Sequence[ModalitySpec], spec: FrameSpec, seed: int, training: bool) -> list[tuple[int, Tensor, Tensor]]:
    """(modality index, kept ``[N, T]``, valid ``[N, T]``) per modality whose frames are dropped (CPU)."""
    targets = frame_targets(spec, specs)
    rate = spec.rate_for(training)
    if not targets or rate <= 0.0:
        return []
    base = STREAM_FRAMES_TRAIN if training else STREAM_FRAMES_EVAL
    seed = seed if training else spec.seed
    out = []
    for j in targets:
        name = specs[j].name
        frames = int(split.features[name].shape[1])
        keep = keep_frames(rate, spec.segment, split.ids.cpu(), frames, seed, base ^ (j << 8))
        out.append((j, keep, torch.arange(frames)[None, :] < split.lengths[name].cpu()[:, None]))
    return out


def drop_frames(split: SplitData, specs: Sequence[ModalitySpec], spec: FrameSpec, seed: int, training: bool) -> SplitData:
    """The split with dropped frames zeroed and fully dropped rows marked unusable (a new object;
    the tensors it does not touch are shared)."""
    keeps = _keeps(split, specs, spec, seed, training)
    if not keeps:
        return split
    features = dict(split.features)
    unusable = torch.zeros((len(split), len(specs)), dtype=torch.bool) if split.unusable is None else split.unusable.cpu().clone()
    for j, keep, valid in keeps:
        x = features[specs[j].name]
        features[specs[j].name] = x * keep.to(x.device)[..., None].to(x.dtype)
        unusable[:, j] |= ~(keep & valid).any(1)
    return replace(split, features=features, unusable=unusable.to(split.ids.device))


def kept_lengths(split: SplitData, specs: Sequence[ModalitySpec], spec: FrameSpec, seed: int, training: bool) -> SplitData:
    """The split with each sequence's length replaced by its count of kept valid frames: what a
    Bayes ceiling given the kept frames needs (``mmcore.oracle`` reads frame counts from lengths).
    Only for ceilings: its lengths no longer say where the padding starts."""
    keeps = _keeps(split, specs, spec, seed, training)
    lengths = dict(split.lengths)
    for j, keep, valid in keeps:
        name = specs[j].name
        lengths[name] = (keep & valid).sum(1).to(split.lengths[name].device, split.lengths[name].dtype)
    return replace(split, lengths=lengths) if keeps else split
