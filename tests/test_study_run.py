"""Studies that train: the reproduction pack CI checks, concurrent invocations, and the Ray backend."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACK = ROOT / "studies" / "repro"


def _mmcore(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "mmcore", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)


def _small(tmp_path: Path) -> Path:
    """The pack's study at 2 seeds and 1 epoch: 4 short runs."""
    study = tmp_path / "study.yaml"
    study.write_text((PACK / "study.yaml").read_text().replace("recipe: recipe.yaml", f"recipe: {PACK / 'recipe.yaml'}")
                     .replace("seeds: 3", "seeds: 2").replace("budget: {epochs: 5}", "budget: {epochs: 1}"))
    return study


@pytest.mark.slow  # 45 s: a study's reproduction pack run end to end
def test_reproduction_pack_matches_its_expected_numbers(tmp_path):
    proc = _mmcore("study", "check", str(PACK / "study.yaml"), "--expected", str(PACK / "expected.yaml"),
                   "--out", str(tmp_path / "repro"))
    output, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, output
    assert output.count("pass") == 2 and "FAIL" not in output


def test_two_invocations_never_run_the_same_run_twice(tmp_path):
    study, out = _small(tmp_path), tmp_path / "out"
    procs = [_mmcore("study", "run", str(study), "--out", str(out)) for _ in range(2)]
    for proc in procs:
        output, _ = proc.communicate(timeout=900)
        assert proc.returncode == 0, output
    logs = sorted((out / "logs").rglob("*.log"))
    assert len(logs) == 4
    for log in logs:  # each run started exactly once, by one of the two invocations
        assert log.read_text().count(" start ") == 1, log


def test_ray_backend_runs_a_study(tmp_path):
    pytest.importorskip("ray")
    proc = _mmcore("study", "run", str(_small(tmp_path)), "--out", str(tmp_path / "out"), "--backend", "ray", "--jobs", "2")
    output, _ = proc.communicate(timeout=900)
    assert proc.returncode == 0, output
    assert (tmp_path / "out" / "study.md").is_file()


@pytest.mark.slow  # 39 s: a study killed and restarted in worker processes
def test_killed_study_keeps_finished_runs_and_continues(tmp_path):
    import signal
    import time

    study, out = _small(tmp_path), tmp_path / "out"
    proc = _mmcore("study", "run", str(study), "--out", str(out))
    first = out / "runs" / "uniform" / "base" / "seed0"
    deadline = time.monotonic() + 600
    while not (first / "eval.json").is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=300)
    again = _mmcore("study", "run", str(study), "--out", str(out))
    output, _ = again.communicate(timeout=900)
    assert again.returncode == 0, output
    assert (out / "logs" / "runs" / "uniform" / "base" / "seed0.log").read_text().count("=== ") == 1  # never rerun
    assert all((run / "eval.json").is_file() for run in (out / "runs").glob("*/*/seed*"))
    assert (out / "study.md").is_file()
