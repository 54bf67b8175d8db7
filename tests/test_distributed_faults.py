"""Faults of ``mmcore run --nproc 2`` on the CPU (gloo): each ends in a clear line, a failed exit
and no process left behind.

Found by a fuzz of multi-process runs (2026-12-07): a batch that left a rank without rows crashed
that rank mid-epoch with a reshape traceback; a rank's unexpected exception ended with
``rank 1 failed`` and no cause; a SIGTERM printed torch's "Received 15 death signal" and runpy's
warning; a launcher signalled in its first seconds ended the command silently with exit 241.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mmcore.engine.launch import _agent_code
from mmcore.engine.runtime import Runtime
from mmcore.errors import MMCoreError
from mmcore.recipe import dump_yaml
from mmcore.testing import tiny_recipe

from process_helpers import processes_mentioning

linux_only = pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads the process table from /proc")

# raises in rank 1 at its third step, while rank 0 waits in the step's all-reduce
RAISE_IN_RANK_1 = '''
import json
import os
if os.environ.get("RANK") == "1":
    import mmcore.engine.trainer as trainer
    original = trainer.Trainer.step
    def step(self, *args, **kwargs):
        if self.state.step == 2:
            raise RuntimeError("injected fault in rank 1")
        return original(self, *args, **kwargs)
    trainer.Trainer.step = step
'''


def _launch(tmp_path: Path, *args: str, env: dict[str, str] | None = None, **popen: object) -> subprocess.Popen:
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(dump_yaml(tiny_recipe(tmp_path / "runs")))
    cmd = [sys.executable, "-m", "mmcore", "run", str(recipe), *args, "--nproc", "2", "--no-progress"]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}, **popen)


def _gone(text: str, seconds: float = 30) -> list[str]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and processes_mentioning(text):
        time.sleep(0.2)
    return processes_mentioning(text)


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


@pytest.mark.parametrize(("rows", "batch", "world", "smallest"), [(280, 93, 2, 1), (40, 1, 2, 1), (280, 64, 3, 24), (10, 4, 3, 2)])
def test_a_batch_that_leaves_a_rank_without_rows_is_refused(rows: int, batch: int, world: int, smallest: int) -> None:
    runtime = Runtime(device=__import__("torch").device("cpu"), rank=0, world_size=world)
    if smallest >= world:
        runtime.check_shares(rows, batch)
        return
    with pytest.raises(MMCoreError, match=f"leaves .* only {smallest} rows?, so a process would get none"):
        runtime.check_shares(rows, batch)


def test_one_process_takes_any_batch() -> None:
    Runtime(device=__import__("torch").device("cpu")).check_shares(280, 93)


@linux_only
def test_an_empty_share_is_one_line_before_the_run_directory_is_made(tmp_path: Path) -> None:
    done = _launch(tmp_path, "train.batch_size=93")  # 280 rows: the last batch has 1 row for 2 processes
    _, stderr = done.communicate(timeout=300)
    assert done.returncode == 1
    assert _errors(stderr)[0] == ("error: train.batch_size: 93 with 2 processes leaves the last batch of each epoch "
                                  "(280 training rows) only 1 row, so a process would get none; expected every batch "
                                  "to have at least 2 rows: choose another train.batch_size or run fewer processes")
    assert "Traceback" not in stderr and not (tmp_path / "runs").exists()


@linux_only
def test_an_unexpected_error_in_one_rank_names_the_rank_and_the_cause(tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(RAISE_IN_RANK_1)
    path = os.pathsep.join([str(hooks), os.environ.get("PYTHONPATH", "")])
    done = _launch(tmp_path, env={"PYTHONPATH": path})
    _, stderr = done.communicate(timeout=300)
    assert done.returncode == 1
    # the traceback of a bug stays (rank 1's own), and the summary names the cause beside the rank
    assert _errors(stderr)[-2:] == ["error: RuntimeError: injected fault in rank 1",
                                    "error: rank 1 failed (exit code 1); the other ranks were stopped"]
    assert _gone(str(tmp_path)) == []


@pytest.mark.slow  # 28 s: three 2-process launches
@linux_only
def test_sigterm_mid_epoch_stops_every_process_in_one_line_and_resumes(tmp_path: Path) -> None:
    main = _launch(tmp_path, "train.epochs=20")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((tmp_path / "runs").glob("*/*/checkpoints/last")):
        time.sleep(0.1)
    main.send_signal(signal.SIGTERM)
    _, stderr = main.communicate(timeout=120)
    assert main.returncode == 130
    (run_dir,) = (tmp_path / "runs" / "tiny").iterdir()
    assert _errors(stderr) and _errors(stderr)[-1].startswith("error: interrupted at step ")
    assert f"continue with: mmcore resume {run_dir}" in stderr
    assert "death signal" not in stderr and "RuntimeWarning" not in stderr  # torch's and runpy's lines
    assert _gone(str(tmp_path)) == []
    assert (run_dir / "checkpoints" / "last" / "state.json").is_file()

    resumed = subprocess.run([sys.executable, "-m", "mmcore", "resume", str(run_dir), "--nproc", "2", "--no-progress"],
                             capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    steps = [json.loads(line)["step"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    epochs = [json.loads(line).get("epoch") for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert (run_dir / "eval.json").is_file() and steps == sorted(steps) and max(steps) == 100 and epochs[-1] == 20


def test_a_launcher_ended_by_a_signal_is_one_line_and_128_plus_the_signal(capsys: pytest.CaptureFixture[str]) -> None:
    assert _agent_code(0, interrupted=False) == 0 and _agent_code(3, interrupted=False) == 3
    assert capsys.readouterr().err == ""
    assert _agent_code(-signal.SIGTERM, interrupted=False) == 143  # was -15, which the shell saw as 241
    assert capsys.readouterr().err == ("error: the launcher (torch.distributed.run) was ended by signal 15 before the "
                                       "processes could report; a run directory made by then continues with mmcore resume RUN\n")


def test_a_busy_master_port_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "mmcore.engine.launch", "--nproc-per-node", "2", f"--master-port={port}",
             "-m", "mmcore", "run", str(tmp_path / "never-read.yaml")],
            capture_output=True, text=True, timeout=120,
        )
    assert done.returncode == 1
    (line,) = _errors(done.stderr)
    assert line.startswith("error: the processes could not be started (DistNetworkError: ") and "EADDRINUSE" in line
    assert "Traceback" not in done.stderr


def test_two_runs_started_in_the_same_second_get_their_own_directories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mmcore.engine import rundir

    monkeypatch.setattr(rundir.time, "strftime", lambda fmt: "20261207-120000")
    first = rundir.new_run_dir(str(tmp_path), "tiny", {"name": "tiny"})
    # the other run claims the next name between this run's look and its mkdir
    monkeypatch.setattr(Path, "exists", lambda self: False)
    second = rundir.new_run_dir(str(tmp_path), "tiny", {"name": "tiny"})
    assert (first.name, second.name) == ("20261207-120000", "20261207-120000-1")
