"""The paper's setting: RedCore's IEMOCAP recipe on IEMOCAP-shaped data, engine against a plain loop.

The model is ``recipes/redcore_iemocap.yaml``'s (transformer encoders on 130-, 342- and 1024-d
frame sequences, the VIB imputer, relative-advantage balancing). The data is ``mmcore.synthetic``
with IEMOCAP's shapes (20-60, 20-60 and 10-30 frames, 4 classes; 1200 training and 300 + 300
evaluation utterances by default), or, with ``--root``, the files of
``../shared/data/make_iemocap.py`` read by ``corpora.iemocap`` (fold 1; needs h5py).

Each measurement runs in its own process (so peak RSS is that run's own), engine and plain loop
interleaved, ``--repeats`` pairs. Printed: training samples/s and ms per step (each epoch's first
step left out: it carries the previous epoch's validation), evaluation items/s (samples x
conditions: the final val + test pass, as ``eval.json`` reports it, and over every evaluation
pass of the run, as ``reference_redcore.py`` times the reference), peak RSS, time from the
training call to the end of the first step, the engine / plain ratios, and time-to-accuracy:
the validation macro-F1 averaged over the 7 conditions per epoch, and the steps and seconds
until it first reaches 0.5 and 0.7.

    python benchmarks/bench_iemocap.py                      # 1200/300/300, 10 epochs, 3 pairs
    python benchmarks/bench_iemocap.py --quick              # under 2 minutes on 2 cores
    python benchmarks/bench_iemocap.py --scale              # 1x, 4x, 16x the training set
    python benchmarks/bench_iemocap.py --set precision=bf16 --set compile=true --device cuda
    python benchmarks/bench_iemocap.py --against model.encoders.default.frames=padded   # A/B: new default vs old
    python benchmarks/bench_iemocap.py --root DATA --epochs 60 --repeats 1 --engine-only \
        --recipe recipes/redcore_iemocap_reference.yaml     # time-to-accuracy of the reference variant

Not a test: nothing is asserted; numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import time

_STARTED = time.perf_counter()  # before torch is imported: the import is part of a user's startup

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_RECIPE = HERE.parent / "recipes" / "redcore_iemocap.yaml"
THRESHOLDS = (0.5, 0.7)
SCALES = (1, 4, 16)
# IEMOCAP's feature shapes as the MMIN/RedCore feature folder holds them (acoustic ComParE 130-d,
# visual DenseFace 342-d, lexical BERT-large 1024-d), the lengths make_iemocap.py draws
SHAPES = "sequence: true, names: [a, v, l], dims: [130, 342, 1024], min_lens: [20, 20, 10], max_lens: [60, 60, 30], classes: 4"


def dataset_override(n_train: int, n_eval: int, root: str | None) -> str:
    """The ``dataset=`` override: synthetic with IEMOCAP's shapes, or the generator's files."""
    if root:
        return f"dataset={{type: corpora.iemocap, root: {root}, fold: 1}}"
    total = n_train + 2 * n_eval
    fraction = n_eval / total  # classes are balanced, so each class gives the same share
    return (f"dataset={{type: mmcore.synthetic, {SHAPES}, samples: {total}, "
            f"val_fraction: {fraction!r}, test_fraction: {fraction!r}, seed: 0}}")


# --- one measurement, in its own process ---------------------------------------------------------
def _clock_logger(sink: dict[str, Any]) -> type:
    """A logger that timestamps every step and keeps each epoch's validation score."""
    from mmcore.components import Logger

    class Clock(Logger):
        def __init__(self) -> None:
            sink.setdefault("steps", [])
            sink.setdefault("epochs", [])

        def open(self, run_dir: Any, resume_step: int | None = None) -> None:
            pass

        def log_step(self, step: int, scalars: dict[str, float]) -> None:
            pass

        def progress(self, step: int, total: int, epoch: int, epochs: int) -> None:
            sink["steps"].append((step, epoch, time.perf_counter(), time.process_time()))

        def log_epoch(self, epoch: int, step: int, scalars: dict[str, float]) -> None:
            sink["epochs"].append((epoch, step, time.perf_counter(), float(scalars.get("val.macro_f1", float("nan")))))
            sink.setdefault("rss", []).append((step, _resident_mb(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))

        def close(self) -> None:
            pass

    return Clock


def _time_evaluation_passes(sink: dict[str, Any]) -> None:
    """Time every evaluation pass of the run (each epoch's validation and the final val + test)
    into ``sink["passes"]`` as (seconds, samples x conditions), by wrapping the trainer's
    ``evaluate``. Why: ``eval.json``'s figure is the final pass alone, about a second here,
    while ``reference_redcore.py`` times every evaluation pass of the reference's run (tens of
    seconds); on a box whose speed drifts over tens of seconds (``benchmarks/README.md``, ninth
    session) the two windows sample that drift differently. This figure uses the reference's
    definition."""
    import mmcore.engine.trainer as trainer

    evaluate = trainer.evaluate
    sink["passes"] = []

    def timed(model: Any, split: Any, masks: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        result = evaluate(model, split, masks, *args, **kwargs)
        sink["passes"].append((time.perf_counter() - started, len(split) * len(masks)))
        return result

    trainer.evaluate = timed


def _pass_rate(passes: list[tuple[float, int]]) -> float:
    """Samples x conditions per second over all timed evaluation passes."""
    seconds = sum(s for s, _ in passes)
    return sum(n for _, n in passes) / seconds if seconds else float("nan")


def _resident_mb() -> float:
    """The process's resident set now (MB), from /proc (Linux); NaN elsewhere. Peak RSS alone
    cannot show whether memory keeps growing, so the clock logger samples this once an epoch."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return float("nan")
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _step_rates(steps: list[tuple[int, int, float, float]], n_train: int, batch_size: int, clock: int = 2) -> tuple[float, float]:
    """(samples/s, ms per step) over the steps that are not an epoch's first; ``clock`` 3: per
    second of the process's CPU time (all its threads), which other processes on a loaded box
    disturb less than wall time."""
    per_epoch = -(-n_train // batch_size)
    seconds, samples, count = 0.0, 0, 0
    for a, b in zip(steps, steps[1:]):
        e0, t0, step, e1, t1 = a[1], a[clock], b[0], b[1], b[clock]
        if e1 != e0:
            continue  # this interval holds the previous epoch's validation and checkpoints
        position = (step - 1) % per_epoch
        seconds += t1 - t0
        samples += min(batch_size, n_train - position * batch_size)
        count += 1
    if not count:
        return float("nan"), float("nan")
    return samples / seconds, 1000 * seconds / count


def time_to(epochs: list[tuple[int, int, float, float]], started: float) -> dict[str, Any]:
    """Steps and seconds (since the training call) until the validation score first reaches each threshold."""
    out: dict[str, Any] = {}
    for threshold in THRESHOLDS:
        hit = next(((step, t - started) for _, step, t, f1 in epochs if f1 >= threshold), None)
        out[str(threshold)] = None if hit is None else {"steps": hit[0], "seconds": round(hit[1], 2)}
    return out


def measure(kind: str, recipe_path: Path, overrides: list[str], threads: int, device: str) -> dict[str, Any]:
    """One engine run or one plain run of the recipe with ``overrides``; a JSON-able summary."""
    import torch

    torch.set_num_threads(threads)
    from mmcore.plugins import get_registry
    from mmcore.recipe import load_recipe

    imported = time.perf_counter()
    recipe = load_recipe(recipe_path, [f"device={device}", *overrides])
    cfg = recipe["train"]
    out: dict[str, Any] = {"kind": kind, "import_s": round(imported - _STARTED, 2)}
    if kind == "plain":
        sys.path.insert(0, str(HERE))
        from plain_loop import plain_loop

        result = plain_loop(recipe, torch.device(device))
        out |= {
            "samples_per_s": result.step_samples / max(result.step_seconds, 1e-9),
            "ms_per_step": 1000 * result.step_seconds / max(1, result.steps - int(cfg["epochs"])),
            "eval_items_per_s": result.eval_items_per_s,
            "first_step_s": result.first_step_s,
            "steps": result.steps,
            "train_s": result.seconds,
        }
    else:
        from mmcore.engine.trainer import run

        sink: dict[str, Any] = {}
        _time_evaluation_passes(sink)
        registry = get_registry()
        if "bench.clock" not in registry.names("logger"):
            registry.register("logger", "bench.clock", _clock_logger(sink), origin="benchmarks")
        recipe["logging"] = [{"type": "mmcore.jsonl"}, {"type": "bench.clock"}]
        with tempfile.TemporaryDirectory() as tmp:
            recipe["output"] = tmp
            called = time.perf_counter()
            result = run(recipe, show_progress=False)
            ended = time.perf_counter()
            cost = json.loads((result.run_dir / "eval.json").read_text())["cost"] if result.results else {}
        n_train = _train_size(recipe)
        rate, ms = _step_rates(sink["steps"], n_train, int(cfg["batch_size"]))
        out |= {
            "samples_per_s": rate,
            "samples_per_cpu_s": _step_rates(sink["steps"], n_train, int(cfg["batch_size"]), clock=3)[0],
            "ms_per_step": ms,
            "eval_items_per_s": cost.get("eval_items_per_s", float("nan")),
            "eval_items_per_s_all_passes": _pass_rate(sink["passes"]),
            "first_step_s": sink["steps"][0][2] - called if sink["steps"] else float("nan"),
            "last_step_s": sink["steps"][-1][2] - called if sink["steps"] else float("nan"),  # compilation included
            "steps": result.step,
            "train_s": ended - called,
            "n_train": n_train,
            "val_f1": [round(e[3], 4) for e in sink["epochs"]],
            "time_to": time_to(sink["epochs"], called),
            "peak_gpu_mb": cost.get("peak_gpu_memory_mb"),
            # (step, resident MB, peak MB so far) at each epoch's end: flat or growing over the run
            "rss_by_epoch": [(step, round(now, 1), round(peak, 1)) for step, now, peak in sink.get("rss", [])],
        }
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _train_size(recipe: dict[str, Any]) -> int:
    ds = recipe["dataset"]
    if ds["type"] == "mmcore.synthetic":
        return int(round(ds["samples"] * (1 - ds["val_fraction"] - ds["test_fraction"])))
    from mmcore.engine.build import build_dataset
    from mmcore.plugins import get_registry

    return len(build_dataset(recipe["dataset"], get_registry()).split("train"))


# --- the orchestration ----------------------------------------------------------------------------
def _spawn(kind: str, overrides: list[str], args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--case", kind, "--recipe", str(args.recipe), "--threads", str(args.threads), "--device", args.device]
    cmd += [f"--override={o}" for o in overrides]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.stderr.write(done.stderr[-3000:])
        raise SystemExit(f"bench_iemocap: the {kind} run failed (exit {done.returncode})")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _spread(values: list[float], fmt: str = "{:.1f}") -> str:
    values = [v for v in values if v == v]
    if not values:
        return "-"
    if len(values) == 1:
        return fmt.format(values[0])
    return f"{fmt.format(statistics.median(values))} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def _pair(kind: str, base: list[str], args: argparse.Namespace) -> dict[str, Any]:
    """One run of a pair: the engine, or the other side (the plain loop, or the engine with --against)."""
    if kind == "plain" and args.against:
        return _spawn("engine", [*base, *args.against], args)
    return _spawn(kind, base, args)


def compare(args: argparse.Namespace, base: list[str]) -> None:
    runs: dict[str, list[dict[str, Any]]] = {"engine": [], "plain": []}
    for r in range(args.repeats):
        kinds = ("engine", "plain") if r % 2 == 0 else ("plain", "engine")  # alternate who goes first
        for kind in ("engine",) if args.engine_only else kinds:
            runs[kind].append(_pair(kind, base, args))
            print(f"  pair {r + 1}/{args.repeats}: {kind} {runs[kind][-1]['samples_per_s']:.1f} samples/s", flush=True)
    e, p = runs["engine"], runs["plain"] or [dict.fromkeys(runs["engine"][0], float("nan")) for _ in runs["engine"]]
    nan = float("nan")
    ratio = lambda key: [a.get(key, nan) / b.get(key, nan) if b.get(key) else nan for a, b in zip(e, p)]  # noqa: E731 - per pair, the same window
    other = f"with {' '.join(args.against)}" if args.against else "plain loop"
    print(f"\ntraining set {e[0]['n_train']} utterances, {e[0]['steps']} steps; median (min-max) of {args.repeats}")
    print(f"{'':28}{'mmcore':>22}{other[:22]:>22}{'ratio':>18}")
    rows = [
        ("training samples/s", "samples_per_s", "{:.1f}"),
        ("ms per step", "ms_per_step", "{:.0f}"),
        ("samples per CPU-second", "samples_per_cpu_s", "{:.1f}"),
        ("evaluation items/s", "eval_items_per_s", "{:.0f}"),
        ("  over every pass", "eval_items_per_s_all_passes", "{:.0f}"),
        ("peak RSS (MB)", "peak_rss_mb", "{:.0f}"),
        ("call to first step (s)", "first_step_s", "{:.2f}"),
        ("call to end of run (s)", "train_s", "{:.1f}"),
        ("import torch+mmcore (s)", "import_s", "{:.2f}"),
    ]
    for label, key, fmt in rows:
        print(f"{label:28}{_spread([x.get(key, nan) for x in e], fmt):>22}{_spread([x.get(key, nan) for x in p], fmt):>22}"
              f"{_spread(ratio(key), '{:.2f}'):>18}")
    print("\ntime-to-accuracy (validation macro-F1, average of the 7 conditions), per engine run:")
    for i, x in enumerate(e):
        reached = ", ".join(
            f"{t}: " + (f"step {v['steps']}, {v['seconds']} s" if v else "not reached") for t, v in x["time_to"].items()
        )
        print(f"  run {i + 1}: per epoch {x['val_f1']}; {reached}")


def scale(args: argparse.Namespace) -> None:
    print(f"\nscaling: the training set at {', '.join(f'{s}x' for s in SCALES)}, evaluation sets fixed, "
          f"{args.scale_steps} steps each (engine)")
    print(f"{'train size':>12}{'first step (s)':>16}{'samples/s':>12}{'peak RSS (MB)':>15}{'RSS x':>8}{'first step x':>14}")
    first = None
    for factor in SCALES:
        n = args.train * factor
        overrides = [dataset_override(n, args.eval, None), "train.epochs=1", f"train.max_steps={args.scale_steps}", *args.set]
        x = _spawn("engine", overrides, args)
        first = first or x
        print(f"{n:>12}{x['first_step_s']:>16.2f}{x['samples_per_s']:>12.1f}{x['peak_rss_mb']:>15.0f}"
              f"{x['peak_rss_mb'] / first['peak_rss_mb']:>8.2f}{x['first_step_s'] / first['first_step_s']:>14.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="300/75/75 utterances, 2 epochs, 1 pair: under 2 minutes on 2 cores")
    parser.add_argument("--scale", action="store_true", help="also run 1x, 4x and 16x the training set")
    parser.add_argument("--train", type=int, default=None, help="training utterances (default 1200; --quick 300)")
    parser.add_argument("--eval", type=int, default=None, help="validation and test utterances each (default 300; --quick 75)")
    parser.add_argument("--epochs", type=int, default=None, help="default 10; --quick 2")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved engine/plain pairs (default 3; --quick 1)")
    parser.add_argument("--scale-steps", type=int, default=None, help="steps per --scale run (default 10; --quick 3)")
    parser.add_argument("--root", default=None, help="read make_iemocap.py's files (corpora.iemocap, fold 1) instead")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE, help="default recipes/redcore_iemocap.yaml")
    parser.add_argument("--engine-only", action="store_true", help="no plain-loop runs (for long time-to-accuracy runs)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a recipe override for every run")
    parser.add_argument("--against", action="append", default=[], metavar="KEY=VALUE",
                        help="compare with the engine under these overrides (e.g. the old default) instead of the plain loop")
    parser.add_argument("--case", choices=["engine", "plain"], help=argparse.SUPPRESS)
    parser.add_argument("--override", action="append", default=[], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(measure(args.case, args.recipe, args.override, args.threads, args.device)))
        return
    quick = args.quick
    args.train = args.train or (300 if quick else 1200)
    args.eval = args.eval or (75 if quick else 300)
    args.epochs = args.epochs or (2 if quick else 10)
    args.repeats = args.repeats or (1 if quick else 3)
    args.scale_steps = args.scale_steps or (3 if quick else 10)
    base = [dataset_override(args.train, args.eval, args.root), f"train.epochs={args.epochs}", *args.set]
    print(f"bench_iemocap: {args.recipe.name}, {args.threads} threads, device {args.device}, overrides {args.set or 'none'}")
    compare(args, base)
    if args.scale:
        scale(args)


if __name__ == "__main__":
    main()
