"""Engine equivalence in seconds: one hash for a tiny synthetic run, straight and stopped at step 7
then resumed (the two must match), for the mmcore tree first on PYTHONPATH.

    PYTHONPATH=TREE:TREE/plugins/redcore python benchmarks/tiny_equivalence.py [OVERRIDES...]

Run it from two trees (git archive <commit> | tar -x -C DIR) with the same overrides and compare
the lines; benchmarks/engine_equivalence.sh is the full check on the quickstart (minutes to hours).
It hashes what that script hashes: best/last weights, last optimiser tensors, eval.json without
its timings, metrics.jsonl without wall-clock fields.
"""
import hashlib
import json
import sys
import tempfile
from pathlib import Path
from safetensors.torch import load_file
from mmcore.testing import tiny_recipe
from mmcore.engine.trainer import run


def digest(run_dir: Path) -> str:
    h = hashlib.sha256()
    for name in ("best/model.safetensors", "last/model.safetensors", "last/optimizer.safetensors"):
        t = load_file(str(run_dir / "checkpoints" / name))
        for k in sorted(t):
            h.update(f"{name}:{k}:{t[k].dtype}:{tuple(t[k].shape)}".encode()); h.update(t[k].contiguous().numpy().tobytes())
    ev = json.loads((run_dir / "eval.json").read_text()); ev.pop("cost", None)
    h.update(json.dumps(ev, sort_keys=True).encode())
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        row = {k: v for k, v in json.loads(line).items() if k not in ("time", "seconds", "wall", "elapsed")}
        h.update(json.dumps(row, sort_keys=True).encode())
    return h.hexdigest()


out = Path(tempfile.mkdtemp())
extra = sys.argv[1:]
recipe = tiny_recipe(out, "train.epochs=3", *extra)
straight = run(recipe, show_progress=False)
stopped = run({**recipe, "train": {**recipe["train"], "max_steps": 7}}, show_progress=False)
resumed = run(recipe, run_dir=stopped.run_dir, resume=True, show_progress=False)
print("straight", digest(straight.run_dir)); print("resumed ", digest(resumed.run_dir))
