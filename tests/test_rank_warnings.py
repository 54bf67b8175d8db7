"""Under ``mmcore run --nproc``, torch's and Python's warnings print once (rank 0), not once per rank."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from mmcore.engine.launch import RANK_ERRORS_ENV

PROBE = "import mmcore, os, warnings; warnings.warn('same notice'); print(os.environ.get('TORCH_CPP_LOG_LEVEL'))"


@pytest.mark.parametrize(("rank", "shown"), [("0", True), ("1", False), ("3", False)])
def test_only_rank_zero_prints_warnings(tmp_path, rank: str, shown: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("TORCH_CPP_LOG_LEVEL", "PYTHONWARNINGS")}
    env.update({RANK_ERRORS_ENV: str(tmp_path), "RANK": rank, "WORLD_SIZE": "4"})
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0
    assert ("same notice" in done.stderr) is shown
    assert done.stdout.strip() == ("None" if shown else "ERROR")  # torch's C++ warnings too


def test_a_process_outside_mmcore_launch_keeps_its_warnings(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in (RANK_ERRORS_ENV, "PYTHONWARNINGS")}
    env.update({"RANK": "1", "WORLD_SIZE": "2"})  # plain torchrun: the user's own launcher, left alone
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, timeout=120)
    assert "same notice" in done.stderr
