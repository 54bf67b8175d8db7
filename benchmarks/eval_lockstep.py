"""Evaluation items/s of mmcore and of the RedCore reference code in lock step: one warm pass each, in turn.

Why: on a shared VM the box's speed drifts by a third over tens of seconds (``benchmarks/README.md``,
issue 25's ninth session), and ``vs_reference.sh`` compares evaluation figures taken minutes apart
in different processes, so its ratio carries that drift. Here both sides are trained once
(``--epochs``, each its own process and Python), then kept waiting; in each round the
coordinator asks the reference for one evaluation pass over val + test and mmcore for as many
passes, half right before and half right after it, as make up about the same time (mmcore's pass
is ~10x shorter), and the ratio is taken within the round: both figures cover the same stretch
of the box's time. A waiting side blocks on its stdin and takes no CPU.

    REF_PY=/tmp/refvenv/bin/python python benchmarks/eval_lockstep.py --redcore REDCORE_DIR --data DATA

``DATA``: a ``make_iemocap.py`` folder; ``REDCORE_DIR`` and ``REF_PY`` as for
``reference_redcore.py`` (which serves the reference's side with ``--serve-eval``). One pass is:
mmcore, the engine's ``evaluate`` on val and on test, as at the end of a run (``predict`` and
scoring; ``recipes/redcore_iemocap.yaml``, its 7 conditions); the reference, its own
``train_miss.eval`` on its val and test sets (every utterance under its 7 missing patterns, sklearn
metrics), as its script calls it. Items are samples x conditions. ~5 minutes on 2 cores with the
defaults. Not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, Any, Callable

HERE = Path(__file__).resolve().parent
PREFIX = "lockstep "  # protocol lines on a server's stdout start with this; anything else is its own output


def serve(run_pass: Callable[[], int]) -> None:
    """Announce readiness, then answer each ``pass`` line on stdin with one timed pass
    (``run_pass`` returns the items it evaluated); any other line, or end of input, ends it."""
    print(PREFIX + json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() != "pass":
            break
        started = time.perf_counter()
        items = run_pass()
        print(PREFIX + json.dumps({"seconds": time.perf_counter() - started, "items": items}), flush=True)


def serve_mmcore(args: argparse.Namespace) -> None:
    """mmcore's side: the recipe trained ``--epochs`` by the engine, its best weights loaded into a
    fresh session, then val + test through the engine's ``evaluate`` per pass."""
    import torch

    torch.set_num_threads(args.threads)
    from mmcore.engine.checkpoint import load_model_weights
    from mmcore.engine.evaluate import evaluate
    from mmcore.engine.runtime import Runtime
    from mmcore.engine.session import build_session
    from mmcore.engine.trainer import run
    from mmcore.recipe import load_recipe

    recipe = load_recipe(args.recipe, ["device=cpu", f"train.epochs={args.epochs}",
                                       f"dataset={{type: corpora.iemocap, root: {args.data}, fold: {args.fold}}}"])
    with tempfile.TemporaryDirectory() as tmp:
        recipe["output"] = tmp
        result = run(recipe, show_progress=False)
        runtime = Runtime.create("cpu", recipe["precision"])
        session = build_session(recipe, runtime)
        load_model_weights(result.run_dir / "checkpoints" / "best", session.model)
    batch_size, splits = int(recipe["train"]["eval_batch_size"]), ("val", "test")

    def one_pass() -> int:
        for split in splits:
            evaluate(session.model, session.splits[split], session.eval_masks[split], session.task, batch_size,
                     runtime.autocast, runtime)
        return sum(len(session.splits[s]) * len(session.eval_masks[s]) for s in splits)

    serve(one_pass)


class Server:
    """One side's process, spoken to through its stdin and stdout."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        self.name = name
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.reply()  # ready: trained and loaded

    def reply(self) -> dict[str, Any]:
        out: IO[str] = self.proc.stdout  # type: ignore[assignment]
        for line in out:
            if line.startswith(PREFIX):
                return json.loads(line[len(PREFIX):])
        code = self.proc.wait()
        raise SystemExit(f"eval_lockstep: the {self.name} side ended (exit {code}) before answering; run it alone to see why")

    def one_pass(self) -> tuple[int, float]:
        """(items, seconds) of one pass."""
        self.proc.stdin.write("pass\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        answer = self.reply()
        return int(answer["items"]), float(answer["seconds"])

    def passes(self, count: int) -> tuple[int, float]:
        """(items, seconds) summed over ``count`` passes in a row."""
        done = [self.one_pass() for _ in range(count)]
        return sum(n for n, _ in done), sum(s for _, s in done)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc.wait()


def coordinate(args: argparse.Namespace) -> None:
    ref_py = os.environ.get("REF_PY")
    if not ref_py:
        raise SystemExit("eval_lockstep: set REF_PY to a Python that can run the reference (see benchmarks/reference_redcore.py)")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "CUDA_VISIBLE_DEVICES": ""}
    common = ["--data", str(args.data), "--epochs", str(args.epochs), "--fold", str(args.fold), "--threads", str(args.threads)]
    servers: list[Server] = []
    try:  # one side at a time while they train, so that neither slows the other
        servers.append(Server("reference", [ref_py, str(HERE / "reference_redcore.py"), "--redcore", str(args.redcore),
                                            "--serve-eval", *common], env))
        servers.append(Server("mmcore", [os.environ.get("PY", sys.executable), __file__, "--serve-mmcore",
                                         "--recipe", str(args.recipe), *common], env))
        reference, ours = servers
        ref_seconds, our_seconds = reference.passes(1)[1], ours.passes(1)[1]  # untimed: first calls; their length
        # mmcore's pass is several times shorter than the reference's: it runs `half` passes right
        # before and right after each reference pass, so both sides' figures cover the same stretch of time
        half = max(1, round(ref_seconds / our_seconds / 2))
        print(f"  a pass: reference {ref_seconds:.1f} s, mmcore {our_seconds:.1f} s; mmcore runs {half} + {half} passes "
              "around each reference pass", flush=True)
        rounds: list[tuple[float, float]] = []
        for r in range(args.rounds):
            before = ours.passes(half)
            ref_items, ref_time = reference.passes(1)
            after = ours.passes(half)
            ref_rate, our_rate = ref_items / ref_time, (before[0] + after[0]) / (before[1] + after[1])
            rounds.append((ref_rate, our_rate))
            print(f"  round {r + 1}/{args.rounds}: reference {ref_rate:.0f}, mmcore {our_rate:.0f} items/s, "
                  f"ratio {our_rate / ref_rate:.2f}", flush=True)
    finally:
        for side in servers:
            side.close()
    report(rounds, args)


def report(rounds: list[tuple[float, float]], args: argparse.Namespace) -> None:
    ratios = sorted(ours / ref for ref, ours in rounds)

    def spread(values: list[float], fmt: str) -> str:
        q = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else [values[0]] * 3
        return f"{fmt.format(statistics.median(values))} (interquartile {fmt.format(q[0])}-{fmt.format(q[2])}, " \
               f"range {fmt.format(min(values))}-{fmt.format(max(values))})"

    print(f"\neval_lockstep: {len(rounds)} rounds, {args.threads} threads, both sides trained {args.epochs} epoch(s); "
          "one pass = val + test\n")
    print("| | items/s, median (interquartile, range) |\n|---|---|")
    print(f"| reference | {spread([r for r, _ in rounds], '{:.0f}')} |")
    print(f"| mmcore | {spread([o for _, o in rounds], '{:.0f}')} |")
    print(f"| mmcore / reference, within a round | {spread(ratios, '{:.2f}')} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--redcore", type=Path, help="the reference checkout's folder that holds train_miss.py")
    parser.add_argument("--data", type=Path, required=True, help="a make_iemocap.py folder")
    parser.add_argument("--rounds", type=int, default=10, help="timed rounds, one pass of each side per round (default 10)")
    parser.add_argument("--epochs", type=int, default=1, help="training epochs of each side before timing (default 1)")
    parser.add_argument("--fold", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--recipe", type=Path, default=HERE.parent / "recipes" / "redcore_iemocap.yaml")
    parser.add_argument("--serve-mmcore", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.data = args.data.resolve()
    if args.serve_mmcore:
        serve_mmcore(args)
        return
    if args.redcore is None:
        parser.error("--redcore is required")
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: expected at least 1")
    coordinate(args)


if __name__ == "__main__":
    main()
