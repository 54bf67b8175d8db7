"""Data parallelism on the CPU (gloo): 2 processes equal 1, resume under DDP, balancer agreement.

The 2-process runs go through ``mmcore run --nproc 2`` (torch.distributed.run), as a user's would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmcore.engine.trainer import run
from mmcore.plugins import get_registry
from mmcore.recipe import dump_yaml
from mmcore.testing import tiny_recipe
from mmcore.testing.distributed import check_balancers_across_ranks

# Equal shares per rank at every step (280 training rows, batch 64: 4×64 + 24, all even), no
# dropout, and only the task loss (the zero imputer has no terms): then the mean of the ranks'
# losses is exactly the global mean and 2 processes compute what 1 does, up to float summation order.
DETERMINISTIC = (
    "model.encoders.default.dropout=0.0",
    "model.fusion.dropout=0.0",
    "model.unimodal_heads=false",
    "train.epochs=3",
)
WEIGHT_TOLERANCE = 1e-5  # max |w_2proc - w_1proc| after 15 Adam steps (measured: ~6e-8)


def _launch(args: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mmcore", *args, "--nproc", "2", "--no-progress"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def _run_dirs(root: Path) -> list[Path]:
    return sorted(p for p in (root / "tiny").iterdir() if p.is_dir())


def _weights(run_dir: Path, ckpt: str = "last") -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "checkpoints" / ckpt / "model.safetensors"))


def test_two_processes_equal_one_and_resume_continues_exactly(tmp_path):
    recipe = tiny_recipe(tmp_path / "one", *DETERMINISTIC)
    single = run(recipe, show_progress=False)

    two_root = tmp_path / "two"
    path = tmp_path / "tiny.yaml"
    path.write_text(dump_yaml({**recipe, "output": str(two_root)}))
    straight = _launch(["run", str(path)])
    assert straight.returncode == 0, straight.stderr[-2000:]
    (two,) = _run_dirs(two_root)
    a, b = _weights(single.run_dir), _weights(two)
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) < WEIGHT_TOLERANCE
    ev1, ev2 = json.loads((single.run_dir / "eval.json").read_text()), json.loads((two / "eval.json").read_text())
    assert ev2["best_epoch"] == ev1["best_epoch"] == single.best_epoch
    assert ev2["cost"]["world_size"] == 2
    for split in ("val", "test"):
        for condition, row in ev1["results"][split].items():
            assert ev2["results"][split][condition] == pytest.approx(row, abs=1e-6)
    assert not (two_root / "tiny" / "rank1").exists()  # rank 0 alone writes

    # stop mid-epoch under DDP, then resume under DDP: equal to the straight 2-process run
    stopped = _launch(["run", str(path), f"output={tmp_path / 'resumed'}", "train.max_steps=7"])
    assert stopped.returncode == 0, stopped.stderr[-2000:]
    assert "stopped at step 7" in stopped.stdout
    (half,) = _run_dirs(tmp_path / "resumed")
    assert not (half / "eval.json").exists()
    resumed = _launch(["resume", str(half), "train.max_steps=null"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    c = _weights(half)
    assert all(torch.equal(b[k], c[k]) for k in b)
    lines = lambda d: (d / "metrics.jsonl").read_text().splitlines()  # noqa: E731
    assert lines(half) == lines(two)


def test_every_installed_balancer_keeps_identical_state_on_every_rank():
    names = [c.name for c in get_registry().all("balancer")]
    assert "redcore.relative_advantage" in names and "mmcore.uniform" in names
    check_balancers_across_ranks(names)


def test_an_error_inside_the_workers_is_one_line_and_a_failed_exit(tmp_path):
    # the CLI checks only that recipe.yaml exists; "nothing to resume" is found inside each worker
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "recipe.yaml").write_text(dump_yaml(tiny_recipe(tmp_path / "out")))
    failed = _launch(["resume", str(run_dir)])
    assert failed.returncode == 1
    errors = [line for line in failed.stderr.splitlines() if line.startswith("error: ")]
    # the ranks leave their errors to the agent, which prints the first failing rank's once (issue 28)
    assert errors[0] == f"error: {run_dir}: nothing to resume (no checkpoint was written yet)"
    assert errors[-1].startswith("error: rank ") and "failed (exit code 1)" in errors[-1]
    assert len(errors) == 2
    assert "Traceback" not in failed.stderr and "terminate called" not in failed.stderr
