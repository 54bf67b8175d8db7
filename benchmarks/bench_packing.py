"""Packed, padded and auto frames: the recipe's three transformer encoders, one training step's
forward + backward, interleaved so that a loaded box's noise hits all alike.

    python benchmarks/bench_packing.py                      # independent lengths, shuffled batches
    python benchmarks/bench_packing.py --lengths correlated --sort   # IEMOCAP-like durations, bucketed

Prints per-repeat milliseconds for each layout and the median ratios padded / packed and
padded / auto (``frames: auto`` packs a batch only when under 80% of its frames are real). Batches come
from ``mmcore.synthetic`` with IEMOCAP's shapes (130/342/1024-d, 20-60/20-60/10-30 frames); each
is cut to its longest row first, as the trainer does (``trim_padding``). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from mmcore.builtins.encoders import TransformerEncoder
from mmcore.builtins.synthetic import Synthetic
from mmcore.engine.batching import length_order, trim_padding
from mmcore.types import Batch


def _encoders(specs, frames: str) -> list[TransformerEncoder]:
    torch.manual_seed(0)
    return [TransformerEncoder(s, 128, layers=3, heads=8, dropout=0.1, attn_dropout=0.2, frames=frames) for s in specs]


def _step(encoders, batch: Batch) -> None:
    loss = sum(enc(batch.features[enc.spec.name], batch.lengths[enc.spec.name]).square().mean() for enc in encoders)
    loss.backward()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lengths", choices=["independent", "correlated"], default="independent")
    ap.add_argument("--sort", action="store_true", help="train.batch_order=length's bucketing")
    ap.add_argument("--batches", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"options: {vars(args)}")
    data = Synthetic(modalities=3, samples=1200, sequence=True, dims=[130, 342, 1024], names=["a", "v", "l"],
                     min_lens=[20, 20, 10], max_lens=[60, 60, 30], lengths=args.lengths, val_fraction=0.01,
                     test_fraction=0.01)
    split = data.split("train")
    order = torch.randperm(len(split.target), generator=torch.Generator().manual_seed(0))
    if args.sort:
        order = length_order(order, split.lengths, 128)
    batches = []
    for i in range(args.batches):
        rows = order[i * 128 : (i + 1) * 128]
        batches.append(trim_padding(Batch({m: x[rows] for m, x in split.features.items()},
                                          {m: v[rows] for m, v in split.lengths.items()}, split.target[rows], rows)))
    frames = {m: sum(int(b.lengths[m].sum()) for b in batches) / sum(b.features[m].shape[0] * b.features[m].shape[1] for b in batches)
              for m in ("a", "v", "l")}
    print("real frames / padded frames: " + ", ".join(f"{m} {f:.2f}" for m, f in frames.items()))
    kinds = ["padded", "packed", "auto"]
    models = {f: _encoders(data.modalities, f) for f in kinds}
    times: dict[str, list[float]] = {f: [] for f in kinds}
    for r in range(args.repeats + 1):
        for frames_kind in kinds[r % 3:] + kinds[: r % 3]:  # each goes first in turn
            start = time.perf_counter()
            for b in batches:
                _step(models[frames_kind], b)
            if r:  # the first round warms up
                times[frames_kind].append((time.perf_counter() - start) * 1000 / len(batches))
    for kind, ms in times.items():
        print(f"{kind}: " + " ".join(f"{t:.0f}" for t in ms) + " ms/step")
    for kind in ("packed", "auto"):
        ratios = [a / b for a, b in zip(times["padded"], times[kind])]
        print(f"padded / {kind}: median {statistics.median(ratios):.2f} ({' '.join(f'{x:.2f}' for x in ratios)})")


if __name__ == "__main__":
    main()
