"""One process per run directory inside the engine (issue 28): training, resuming and ``eval``
hold the run's lock, a second process is refused with one line naming the owner, and ``eval``
puts right a checkpoint write that a kill interrupted, as ``resume`` does."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmcore.after import evaluate_run
from mmcore.cli import app
from mmcore.engine import trainer as trainer_module
from mmcore.engine.checkpoint import verify
from mmcore.engine.ownership import owned
from mmcore.engine.runlock import RunLockedError
from mmcore.engine.trainer import run
from mmcore.errors import MMCoreError
from mmcore.testing import tiny_recipe

runner = CliRunner()
HOLD = (
    "import sys\nfrom pathlib import Path\nfrom mmcore.engine.runlock import hold_run_lock\n"
    "with hold_run_lock(Path(sys.argv[1]), action='train'):\n    print('held', flush=True)\n    sys.stdin.read()\n"
)


@pytest.fixture
def holder():
    """``holder(run_dir)``: another live process that owns ``run_dir`` until the test ends."""
    procs: list[subprocess.Popen] = []

    def start(run_dir: Path) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run_dir)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for proc in procs:
        proc.communicate(input="", timeout=30)


def _stopped(tmp_path: Path, steps: int = 3) -> tuple[dict, Path]:
    recipe = tiny_recipe(tmp_path / "runs", "train.epochs=2")
    result = run({**recipe, "train": {**recipe["train"], "max_steps": steps}}, show_progress=False)
    return recipe, result.run_dir


def test_resume_and_eval_beside_a_live_owner_are_refused_and_touch_nothing(tmp_path, holder):
    recipe, run_dir = _stopped(tmp_path)
    ckpts = run_dir / "checkpoints"
    shutil.copytree(ckpts / "last", ckpts / ".last.tmp-4242")  # what a live writer has in flight
    before = sorted(p.name for p in ckpts.iterdir())
    owner = holder(run_dir)
    with pytest.raises(RunLockedError, match=rf"cannot resume: the run is in use by process {owner.pid}\b"):
        run(recipe, run_dir=run_dir, resume=True, show_progress=False)
    with pytest.raises(RunLockedError, match=rf"cannot evaluate: the run is in use by process {owner.pid}\b"):
        evaluate_run(run_dir, checkpoint="last")
    result = runner.invoke(app, ["resume", str(run_dir), "--no-progress"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"in use by process {owner.pid}" in result.output and len(result.output.strip().splitlines()) == 1
    assert sorted(p.name for p in ckpts.iterdir()) == before  # no recovery ran under another owner
    assert not owned(run_dir)


def test_training_owns_its_directory_until_the_last_file_and_gives_it_up(tmp_path, monkeypatch):
    seen: list[bool] = []
    test = trainer_module.Trainer.test

    def watched(self, seconds):
        seen.append(owned(self.run_dir))
        return test(self, seconds)

    monkeypatch.setattr(trainer_module.Trainer, "test", watched)
    result = run(tiny_recipe(tmp_path / "runs"), show_progress=False)
    assert seen == [True] and not owned(result.run_dir)
    code = f"from mmcore.engine.ownership import own_run_dir\nwith own_run_dir({str(result.run_dir)!r}, 'resume'): pass"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0  # free for the next process


def test_a_trainer_that_fails_to_start_gives_the_directory_back(tmp_path):
    recipe = tiny_recipe(tmp_path / "runs")
    empty = tmp_path / "empty-run"
    empty.mkdir()
    with pytest.raises(MMCoreError, match="nothing to resume"):
        run(recipe, run_dir=empty, resume=True, show_progress=False)
    assert not owned(empty)


def test_eval_recovers_a_checkpoint_write_a_kill_interrupted(tmp_path):
    recipe = tiny_recipe(tmp_path / "runs")
    run_dir = run(recipe, show_progress=False).run_dir
    ckpts = run_dir / "checkpoints"
    step = verify(ckpts / "best")["step"]
    # killed between save_checkpoint's two renames: best moved aside, its replacement complete
    (ckpts / "best").rename(ckpts / ".best.old-4242")
    shutil.copytree(ckpts / ".best.old-4242", ckpts / ".best.tmp-4242")
    result = evaluate_run(run_dir)
    assert sorted(p.name for p in ckpts.iterdir()) == ["best", "last"] and verify(ckpts / "best")["step"] == step
    assert result.results and not owned(run_dir)
