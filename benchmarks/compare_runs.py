"""Two run directories (or two folders holding one each), compared on what both versions record.

    python benchmarks/compare_runs.py OLD_RUN NEW_RUN

``engine_equivalence.sh`` hashes whole files, so its hashes differ between two versions as soon as
the newer one records something more (a new ``eval.json`` section, a new ``metrics.jsonl``
field) even when every number is the same. This compares the numbers both record: the tensors of
``checkpoints/best`` and ``checkpoints/last`` (names, dtypes, shapes, bytes), the optimiser
tensors of ``last``, every ``eval.json`` section present in both (timings left out), and every
``metrics.jsonl`` field present in a row both record (same step, both a training or both a
validation row; wall-clock fields left out). It prints one line per
part and what only one side has; exit 1 when a shared number differs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from safetensors.torch import load_file

WALL_CLOCK = {"time", "seconds", "wall", "elapsed"}


def run_dir(path: Path) -> Path:
    """``path`` itself when it holds recipe.yaml, else the one run directory below it."""
    return path if (path / "recipe.yaml").is_file() else next(path.rglob("recipe.yaml")).parent


def compare_tensors(a: Path, b: Path, name: str) -> bool:
    ta, tb = load_file(str(a / "checkpoints" / name)), load_file(str(b / "checkpoints" / name))
    same = sorted(ta) == sorted(tb) and all(ta[k].dtype == tb[k].dtype and ta[k].equal(tb[k]) for k in ta)
    print(f"{name}: {'identical' if same else 'DIFFERENT'} ({len(ta)} tensors)")
    return same


def compare_eval(a: Path, b: Path) -> bool:
    ea, eb = (json.loads((p / "eval.json").read_text()) for p in (a, b))
    for e in (ea, eb):
        e.pop("cost", None)
    shared = sorted(set(ea) & set(eb))
    differ = [k for k in shared if ea[k] != eb[k]]
    only = sorted(set(ea) ^ set(eb))
    print(f"eval.json: {len(shared) - len(differ)}/{len(shared)} shared sections identical"
          + (f"; DIFFERENT: {differ}" if differ else "") + (f"; on one side only: {only}" if only else ""))
    return not differ


def row_key(row: dict) -> tuple[int, str]:
    """A metrics row's identity: its step, and whether it is an epoch's validation row or a step's
    training row (a version that logs at other steps then shares only some rows)."""
    return int(row["step"]), "epoch" if any(k.startswith("val.") for k in row) else "step"


def compare_metrics(a: Path, b: Path) -> bool:
    ra, rb = ({row_key(r): r for r in map(json.loads, (p / "metrics.jsonl").read_text().splitlines())} for p in (a, b))
    shared = sorted(set(ra) & set(rb))
    values = differ = 0
    only: set[str] = set()
    for key in shared:
        x, y = ra[key], rb[key]
        keys = (set(x) & set(y)) - WALL_CLOCK
        only |= (set(x) ^ set(y)) - WALL_CLOCK
        values += len(keys)
        differ += sum(x[k] != y[k] for k in keys)
    print(f"metrics.jsonl: {len(shared)} rows in both ({len(ra)} and {len(rb)} in all), "
          f"{values - differ}/{values} shared values identical" + (f"; fields on one side only: {sorted(only)}" if only else ""))
    return differ == 0 and bool(shared)


def main(old: str, new: str) -> int:
    a, b = run_dir(Path(old)), run_dir(Path(new))
    parts = [compare_tensors(a, b, n) for n in ("best/model.safetensors", "last/model.safetensors", "last/optimizer.safetensors")]
    parts += [compare_eval(a, b), compare_metrics(a, b)]
    return 0 if all(parts) else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:3]))
