"""How many graphs ``compile: true`` makes of the IEMOCAP-shaped recipe, and why it breaks them.

Runs the recipe's training for a few steps with ``torch.compile``'s backend replaced by one that
only counts the graphs dynamo hands it (what dynamo traces, its graph breaks and its recompiles
do not depend on the backend; inductor's compile time is roughly per graph). Prints the graph
count, the graph breaks by reason and the recompiles by reason.

    python benchmarks/count_graphs.py                       # the recipe as it is (frames: auto)
    python benchmarks/count_graphs.py model.encoders.default.frames=packed train.epochs=2

A small model (width 32, 1 block) on synthetic IEMOCAP shapes, 400 samples at batch 32: the
shapes and the code paths are the recipe's, the arithmetic is cheap; its one recompile comes from
the width equalling the batch size (duck sizing), which the recipe's sizes do not do. Guards
that inductor itself adds (a CPU reduction's size choice) are out of this count's sight:
``torch._dynamo.utils.compile_times()`` after a real compiled run shows every compile attempt
(``benchmarks/README.md``, issue 25's tenth session). Not a test.
"""

from __future__ import annotations

import collections
import logging
import sys
import tempfile
import time

import torch
from torch._dynamo.utils import counters

SHAPES = "sequence: true, names: [a, v, l], dims: [130, 342, 1024], min_lens: [20, 20, 10], max_lens: [60, 60, 30], classes: 4"


def main() -> None:
    torch.set_num_threads(1)
    graphs = [0]
    real = torch.compile

    def counting(gm, example_inputs, **options):
        graphs[0] += 1
        return gm.forward

    torch.compile = lambda fn, **kw: real(fn, **{**kw, "backend": counting})  # the trainer's options, kept
    reasons: collections.Counter[str] = collections.Counter()

    class Recompiles(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            for line in record.getMessage().splitlines():
                if line.strip().startswith("- "):
                    reasons[line.strip()[2:].split(" #")[0][:110]] += 1

    torch._logging.set_logs(recompiles=True)
    logging.getLogger("torch._dynamo").addHandler(Recompiles())
    from mmcore.engine.trainer import run
    from mmcore.recipe import load_recipe

    dataset = f"dataset={{type: mmcore.synthetic, {SHAPES}, samples: 400, val_fraction: 0.1, test_fraction: 0.1, seed: 0}}"
    recipe = load_recipe("recipes/redcore_iemocap.yaml", [
        dataset, "device=cpu", "compile=true", "train.epochs=1", "train.batch_size=32", "model.dim=32",
        "model.encoders.default.layers=1", "model.encoders.default.heads=2", *sys.argv[1:]])
    with tempfile.TemporaryDirectory() as tmp:
        recipe["output"] = tmp
        start = time.perf_counter()
        result = run(recipe, show_progress=False)
    print(f"{result.step} steps in {time.perf_counter() - start:.0f} s: {graphs[0]} graphs")
    breaks = collections.Counter({k.splitlines()[0][:100]: v for k, v in counters["graph_break"].items()})
    print(f"graph breaks ({sum(breaks.values())}):" + "".join(f"\n  {v} x {k}" for k, v in breaks.most_common()))
    print(f"recompile guards ({sum(reasons.values())}):" + "".join(f"\n  {v} x {k}" for k, v in reasons.most_common()))


if __name__ == "__main__":
    main()
