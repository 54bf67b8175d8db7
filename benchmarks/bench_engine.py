"""Engine overhead: ``mmcore`` training against a plain PyTorch loop of the same model.

Both train the same ``MultimodalModel`` on the same synthetic data with the same masks for the
same number of epochs. The plain loop uses a ``TensorDataset`` + ``DataLoader`` (the usual way),
and no validation, logging or checkpoints; the engine does all of those. The printed ratio is
engine time / plain time (lower is better; < 1 means the engine is faster despite doing more).

    python benchmarks/bench_engine.py [--device cuda] [--epochs 5] [--samples 20000]

Not a test: nothing is asserted, numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from mmcore.engine.build import build_dataset, build_model, train_missing_spec
from mmcore.engine.trainer import run
from mmcore.missing import train_masks
from mmcore.plugins import get_registry
from mmcore.recipe import load_recipe
from mmcore.types import Batch


def plain_loop(recipe: dict, device: torch.device) -> float:
    registry = get_registry()
    dataset = build_dataset(recipe, registry)
    names = [s.name for s in dataset.modalities]
    train = dataset.split("train")
    masks = train_masks(train_missing_spec(recipe, names), names, train.ids, recipe["seed"])
    torch.manual_seed(recipe["seed"])
    model = build_model(recipe, dataset.modalities, dataset.task, registry).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=recipe["train"]["optimizer"]["lr"])
    loader = DataLoader(
        TensorDataset(*[train.features[m] for m in names], train.target, train.ids, masks),
        batch_size=recipe["train"]["batch_size"],
        shuffle=True,
    )
    start = time.perf_counter()
    for _ in range(recipe["train"]["epochs"]):
        model.train()
        for *xs, y, ids, present in loader:
            xs, y, present = [x.to(device) for x in xs], y.to(device), present.to(device)
            batch = Batch(features=dict(zip(names, xs)), lengths={}, target=y, ids=ids)
            out = model(batch, present)
            loss = F.cross_entropy(out.prediction, y)
            if out.unimodal is not None:
                loss = loss + F.cross_entropy(out.unimodal.flatten(0, 1), y.repeat_interleave(len(names)))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def engine(recipe: dict) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        recipe = copy.deepcopy(recipe)
        recipe["output"] = tmp
        start = time.perf_counter()
        run(recipe, show_progress=False)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", default="recipes/quickstart.yaml")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--samples", type=int, default=20000)
    args = parser.parse_args()
    overrides = [f"device={args.device}", f"train.epochs={args.epochs}", f"dataset.samples={args.samples}"]
    overrides += ["model.imputer=mmcore.zero", "balancer=mmcore.uniform", "train.log_every=50"]
    recipe = load_recipe(args.recipe, overrides)
    device = torch.device(args.device)
    plain = plain_loop(recipe, device)
    ours = engine(recipe)
    print(f"device {device}, {args.samples} samples, {args.epochs} epochs")
    print(f"plain PyTorch loop (train only):           {plain:8.2f} s")
    print(f"mmcore run (train + val + checkpoints):   {ours:8.2f} s")
    print(f"ratio mmcore / plain: {ours / plain:.2f}")


if __name__ == "__main__":
    main()
