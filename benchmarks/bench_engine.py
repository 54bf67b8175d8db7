"""Engine overhead: ``mmcore`` training against a plain PyTorch loop of the same model.

Both train the same ``MultimodalModel`` on the same data with the same masks for the same number
of epochs. The plain loop (``plain_loop.py``) uses a ``TensorDataset`` + ``DataLoader`` (the usual
way), and no validation, logging or checkpoints; the engine does all of those. The printed ratio
is engine time / plain time (lower is better; < 1 means the engine is faster despite doing more).

    python benchmarks/bench_engine.py [--recipe recipes/quickstart.yaml] [--device cuda] [--epochs 5]
    python benchmarks/bench_engine.py --recipe recipes/redcore_synthetic.yaml --samples 20000

``--samples`` sets ``dataset.samples`` and so needs a dataset that has that option
(``mmcore.synthetic``); the default recipe reads the Handwritten corpus, whose size is fixed.
For the paper's IEMOCAP-shaped workload see ``bench_iemocap.py``.

Not a test: nothing is asserted, numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plain_loop import plain_loop  # noqa: E402  (the shared baseline next to this file)

from mmcore.errors import MMCoreError  # noqa: E402
from mmcore.engine.trainer import run  # noqa: E402
from mmcore.recipe import load_recipe  # noqa: E402


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
    parser.add_argument("--samples", type=int, default=None, help="dataset.samples (mmcore.synthetic recipes only)")
    args = parser.parse_args()
    overrides = [f"device={args.device}", f"train.epochs={args.epochs}"]
    if args.samples is not None:
        overrides.append(f"dataset.samples={args.samples}")
    overrides += ["model.imputer=mmcore.zero", "balancer=mmcore.uniform", "train.log_every=50"]
    recipe = load_recipe(args.recipe, overrides)
    device = torch.device(args.device)
    plain = plain_loop(recipe, device, evaluate=False).seconds
    ours = engine(recipe)
    size = f"{args.samples} samples" if args.samples is not None else recipe["dataset"]["type"]
    print(f"{args.recipe}: device {device}, {size}, {args.epochs} epochs")
    print(f"plain PyTorch loop (train only):           {plain:8.2f} s")
    print(f"mmcore run (train + val + checkpoints):   {ours:8.2f} s")
    print(f"ratio mmcore / plain: {ours / plain:.2f}")


if __name__ == "__main__":
    try:
        main()
    except MMCoreError as exc:  # a bad recipe or data: one line and its exit code, as mmcore run does
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
