"""Data parallelism on the CPU (gloo): balancer agreement and errors inside the workers. That 2
processes equal 1 and that a resume under DDP continues exactly is tests/test_ddp_features.py's.

The 2-process runs go through ``mmcore run --nproc 2`` (torch.distributed.run), as a user's would.
"""

from __future__ import annotations

import subprocess
import sys

from mmcore.plugins import get_registry
from mmcore.recipe import dump_yaml
from mmcore.testing import tiny_recipe
from mmcore.testing.distributed import check_balancers_across_ranks


def _launch(args: list[str]) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "mmcore", *args, "--nproc", "2", "--no-progress"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


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
