"""CPU-seconds per training sample of the IEMOCAP recipe's step, recipe variants interleaved in one process.

What a loaded box disturbs least: every variant's model is built up front (same seed, same
batches), then each repeat runs ``--steps`` steps of every variant in turn (the order reversed on
odd repeats) and records the process's CPU time per sample; ratios are taken within a repeat.
A step is the engine's (``mmcore.engine``'s pieces): the batch cut to its longest row, forward
under the recipe's precision, the objective with every loss weight 1, backward, the recipe's
gradient clipping and optimiser, the recipe's dropout masks (``train.dropout_masks``). No
validation, logging or checkpoints.

    python benchmarks/bench_step.py --root DATA                        # default against the old default
    python benchmarks/bench_step.py --root DATA --variant padded=model.encoders.default.frames=padded
    python benchmarks/bench_step.py --root DATA --threads 1 --repeats 5 --variant \\
        best=precision=bf16,train.dropout_masks=fast,train.optimizer.implementation=fused
    python benchmarks/bench_step.py --root DATA --threads 2 --profile 3   # then where the default's step goes
    python benchmarks/bench_step.py --root DATA --threads 2 --repeats 6 --variant compiled=compile=true

``--variant NAME=KEY=VALUE[,KEY=VALUE...]`` adds a variant (``default``, the recipe as it is, is
always first; without ``--variant``: ``old-default``, i.e. ``frames=padded`` and
``dropout_masks=torch``, the defaults before issue 25). A variant with ``compile=true`` compiles as
the trainer does (``mmcore.engine.compiling``) and runs three untimed steps first, so its
compilation stays out of the timing (``bench_iemocap.py --case engine`` times a whole run with
it). DATA: the files of ``../shared/data/make_iemocap.py``. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
OLD_DEFAULT = "old-default=model.encoders.default.frames=padded,train.dropout_masks=torch"


def build(recipe_path: Path, root: str, overrides: list[str]) -> dict[str, Any]:
    """The recipe's data, masks, model (with its dropout masks), optimiser and runtime."""
    from mmcore.engine import losses
    from mmcore.engine.build import build_dataset, build_model, train_missing_spec
    from mmcore.engine.compiling import compile_for_training
    from mmcore.engine.optim import build_optimizer
    from mmcore.engine.runtime import Runtime
    from mmcore.fastdropout import apply_dropout_masks
    from mmcore.missing import train_masks
    from mmcore.plugins import get_registry
    from mmcore.recipe import load_recipe
    from mmcore.recipe.plan import plan_of

    recipe = load_recipe(recipe_path, ["device=cpu", f"dataset={{type: corpora.iemocap, root: {root}, fold: 1}}", *overrides])
    plan, registry = plan_of(recipe), get_registry()
    dataset = build_dataset(plan.dataset, registry)
    names = [s.name for s in dataset.modalities]
    train = dataset.split("train")
    torch.manual_seed(0)
    model = build_model(plan, dataset.modalities, dataset.task, registry)
    apply_dropout_masks(model, plan.train.dropout_masks, "cpu")
    model.skip_absent = plan.train.skip_absent
    forward = compile_for_training(model, model)[0] if recipe["compile"] else model
    return {
        "train": train, "names": names, "model": model.train(), "forward": forward,
        "warmup": 3 if recipe["compile"] else 1,
        "present": train_masks(train_missing_spec(plan, names), names, train.ids, 0),
        "optimizer": build_optimizer(recipe["train"]["optimizer"], model),
        "kind": losses.task_loss_kind(dataset.task, recipe["train"]["task_loss"]),
        "runtime": Runtime.create("cpu", recipe["precision"]), "clip": recipe["train"]["grad_clip"],
    }


def batches(run: dict[str, Any], count: int, size: int) -> list[tuple[Any, torch.Tensor]]:
    """``count`` shuffled batches of ``size`` rows, each cut to its longest row as the trainer cuts them."""
    from mmcore.engine.batching import trim_padding
    from mmcore.types import Batch

    train = run["train"]
    order = torch.randperm(len(train.target), generator=torch.Generator().manual_seed(1))
    out = []
    for i in range(count):
        rows = order[(i * size) % len(order):][:size]
        batch = Batch({m: x[rows] for m, x in train.features.items()}, {m: v[rows] for m, v in train.lengths.items()},
                      train.target[rows], rows)
        out.append((trim_padding(batch), run["present"][rows]))
    return out


def step(run: dict[str, Any], batch: Any, present: torch.Tensor) -> None:
    from mmcore.engine import losses

    with run["runtime"].autocast():
        out = run["forward"](batch, present)
    loss, _, _ = losses.combine(out, batch.target, run["kind"], 1.0, "", torch.ones(len(run["names"])))
    run["optimizer"].zero_grad(set_to_none=True)
    loss.backward()
    if run["clip"]:
        torch.nn.utils.clip_grad_norm_(run["model"].parameters(), float(run["clip"]))
    run["optimizer"].step()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", required=True, help="make_iemocap.py's files (read by corpora.iemocap, fold 1)")
    ap.add_argument("--recipe", type=Path, default=HERE.parent / "recipes" / "redcore_iemocap.yaml")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME=KEY=VALUE[,KEY=VALUE]")
    ap.add_argument("--steps", type=int, default=2, help="steps per variant per repeat")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--profile", type=int, default=0, metavar="STEPS", help="then profile STEPS steps of the default, by operator")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"bench_step: {vars(args)}", flush=True)
    variants = {"default": []} | {v.split("=", 1)[0]: v.split("=", 1)[1].split(",") for v in args.variant or [OLD_DEFAULT]}
    runs = {name: build(args.recipe, args.root, overrides) for name, overrides in variants.items()}
    data = batches(runs["default"], args.steps + 1, args.batch)
    for run in runs.values():
        for _ in range(run["warmup"]):
            step(run, *data[-1])  # warm-up (allocator, first-call paths, compilation), outside the timing
    cpu: dict[str, list[float]] = {name: [] for name in runs}
    for repeat in range(args.repeats):
        for name in list(runs) if repeat % 2 == 0 else list(runs)[::-1]:
            began, samples = time.process_time(), 0
            for batch, present in data[:-1]:
                step(runs[name], batch, present)
                samples += len(batch.target)
            cpu[name].append(1000 * (time.process_time() - began) / samples)
        print(f"  repeat {repeat + 1}: " + ", ".join(f"{n} {v[-1]:.2f}" for n, v in cpu.items()) + " ms CPU/sample", flush=True)
    print(f"\n{'variant':16}{'ms CPU per sample':>28}{'default is x faster':>30}")
    for name, values in cpu.items():
        ratios = [v / d for v, d in zip(values, cpu["default"])]
        print(f"{name:16}{statistics.median(values):>10.2f} ({min(values):.2f}-{max(values):.2f})"
              f"{statistics.median(ratios):>16.3f} ({min(ratios):.3f}-{max(ratios):.3f})")
    if args.profile:
        profile_steps(runs["default"], batches(runs["default"], args.profile, args.batch))


def profile_steps(run: dict[str, Any], data: list[tuple[Any, torch.Tensor]]) -> None:
    """Self CPU time by operator over ``data``'s steps: where a step's time goes, as shares."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for batch, present in data:
            step(run, batch, present)
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))


if __name__ == "__main__":
    main()
