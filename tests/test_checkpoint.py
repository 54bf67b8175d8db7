"""Checkpoints that survive any crash: damaged files are refused with one line, a kill between the
renames is recovered, write failures leave the previous checkpoint intact, and the metrics record
never duplicates or loses a line across a resume."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from compile_helpers import compiled_or_skip
from mmcore.cli import app
from mmcore.engine import checkpoint as ckpt
from mmcore.engine.checkpoint import CheckpointError, recover, verify
from mmcore.engine.trainer import run
from mmcore.errors import MMCoreError
from mmcore.recipe import dump_yaml
from mmcore.testing import tiny_recipe

runner = CliRunner()


def _stopped(tmp_path: Path, steps: int = 7) -> tuple[dict, Path]:
    """A run stopped (resumably) after ``steps`` steps: both checkpoints exist, no eval.json."""
    recipe = tiny_recipe(tmp_path / "runs", "train.epochs=2")
    result = run({**recipe, "train": {**recipe["train"], "max_steps": steps}}, show_progress=False)
    assert result.stopped_early
    return recipe, result.run_dir


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "checkpoints" / "last" / "model.safetensors"))


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """The uninterrupted run every resumed run must equal."""
    recipe = tiny_recipe(tmp_path_factory.mktemp("straight"), "train.epochs=2")
    return run(recipe, show_progress=False)


def _damage(path: Path, how: str) -> None:
    data = path.read_bytes()
    if how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "zero":
        path.write_bytes(bytes(len(data)))
    elif how == "garble-tail":
        path.write_bytes(data[:-8] + b"\xff" * 8)
    elif how == "header":
        path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not a header!!}" + data[24:])
    elif how == "delete":
        path.unlink()


CASES = [
    (name, how)
    for name in ("model.safetensors", "optimizer.safetensors", "rng.safetensors")
    for how in ("truncate", "empty", "zero", "garble-tail", "header", "delete")
] + [("state.json", how) for how in ("truncate", "empty", "zero", "delete")]


@pytest.mark.parametrize("name,how", CASES)
def test_every_damaged_checkpoint_file_is_a_one_line_error_naming_it(tmp_path, name, how):
    _, run_dir = _stopped(tmp_path)
    _damage(run_dir / "checkpoints" / "last" / name, how)
    result = runner.invoke(app, ["resume", str(run_dir), "--no-progress"])
    assert result.exit_code == 1, result.output
    lines = [x for x in result.output.splitlines() if x.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    assert name in lines[0] and "Traceback" not in result.output


@pytest.mark.parametrize(
    "content",
    ['[1, 2]', '{"files": {}, "optimizer": {}}', '{"step": "x", "epoch": 0, "balancer": {}, "files": {}, "optimizer": {}}'],
)
def test_wrong_json_shapes_in_state_are_refused(tmp_path, content):
    _, run_dir = _stopped(tmp_path)
    state_file = run_dir / "checkpoints" / "last" / "state.json"
    if content.startswith('{"step"'):  # keep the checksums, break the state
        data = json.loads(state_file.read_text())
        data["step"] = "x"
        content = json.dumps(data)
    state_file.write_text(content)
    result = runner.invoke(app, ["resume", str(run_dir), "--no-progress"])
    assert result.exit_code == 1 and "state.json" in result.output and "Traceback" not in result.output


def test_a_kill_between_the_renames_is_recovered_and_resume_equals_a_straight_run(tmp_path, straight):
    recipe, run_dir = _stopped(tmp_path)
    ckpts = run_dir / "checkpoints"
    # the window inside save_checkpoint: old renamed aside, new one not yet in place
    (ckpts / "last").rename(ckpts / ".last.old-4242")
    shutil.copytree(ckpts / ".last.old-4242", ckpts / ".last.tmp-4242")
    shutil.copytree(ckpts / "best", ckpts / ".best.tmp-777")  # an unfinished write of best
    (ckpts / ".best.tmp-777" / "state.json").unlink()
    resumed = run(recipe, run_dir=run_dir, resume=True, show_progress=False)
    assert sorted(p.name for p in ckpts.iterdir()) == ["best", "last"]  # leftovers removed
    a, b = _weights(straight.run_dir), _weights(resumed.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.results == straight.results


def test_recover_prefers_the_newest_complete_checkpoint(tmp_path):
    _, run_dir = _stopped(tmp_path, steps=3)
    ckpts = run_dir / "checkpoints"
    older = verify(ckpts / "last")["step"]
    (ckpts / "last").rename(ckpts / ".last.old-1")
    _, newer_dir = _stopped(tmp_path / "b", steps=7)
    shutil.copytree(newer_dir / "checkpoints" / "last", ckpts / ".last.tmp-1")
    actions = recover(ckpts)
    assert verify(ckpts / "last")["step"] == 7 != older
    assert any("recovered checkpoints/last from .last.tmp-1" in a for a in actions)


def test_best_intact_last_damaged_says_so(tmp_path):
    _, run_dir = _stopped(tmp_path)
    _damage(run_dir / "checkpoints" / "last" / "model.safetensors", "truncate")
    result = runner.invoke(app, ["resume", str(run_dir), "--no-progress"])
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert "model.safetensors" in text and "truncated" in text and "checkpoints/best (step 5) is intact" in text


def test_disk_full_keeps_the_previous_checkpoint_and_leaves_no_partial_folder(tmp_path, monkeypatch):
    recipe, run_dir = _stopped(tmp_path, steps=3)
    before = verify(run_dir / "checkpoints" / "last")
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt, "save_file", full)
    with pytest.raises(CheckpointError, match="No space left on device"):
        run({**recipe, "train": {**recipe["train"], "max_steps": 7}}, run_dir=run_dir, resume=True, show_progress=False)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == names == ["last"]
    assert verify(run_dir / "checkpoints" / "last") == before


def test_output_pointing_at_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("not a folder")
    recipe = tiny_recipe(tmp_path)
    recipe_file = tmp_path / "r.yaml"
    recipe_file.write_text(dump_yaml({**recipe, "output": str(blocker)}))
    result = runner.invoke(app, ["run", str(recipe_file), "--no-progress"])
    assert result.exit_code == 2 and "Traceback" not in result.output and "afile" in result.output
    with pytest.raises(MMCoreError, match="afile"):  # the engine's own check, past validation
        run({**recipe, "output": str(blocker)}, show_progress=False)
    assert blocker.read_text() == "not a folder"


def test_jsonl_record_has_no_duplicate_or_lost_line_after_a_kill(tmp_path, straight):
    recipe, run_dir = _stopped(tmp_path, steps=7)
    record = run_dir / "metrics.jsonl"
    # lines written after the checkpoint, then a kill mid-line
    record.write_text(record.read_text() + '{"step": 8, "epoch": 2, "loss": 1.0}\n{"step": 10, "ep')
    resumed = run(recipe, run_dir=run_dir, resume=True, show_progress=False)
    assert record.read_text().splitlines() == (straight.run_dir / "metrics.jsonl").read_text().splitlines()
    assert resumed.results == straight.results


def test_sigterm_is_handled_like_ctrl_c_and_says_what_can_be_resumed(tmp_path):
    recipe = tiny_recipe(tmp_path / "runs", "train.epochs=400", "dataset.samples=2000")
    path = tmp_path / "long.yaml"
    path.write_text(dump_yaml(recipe))
    proc = subprocess.Popen(
        [sys.executable, "-m", "mmcore", "run", str(path), "--no-progress"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "runs").glob("tiny/*/checkpoints/last")):
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "interrupted at step" in err and "checkpoints/last holds step" in err and "mmcore resume" in err
    assert "Traceback" not in err
    (run_dir,) = (tmp_path / "runs" / "tiny").iterdir()
    step = verify(run_dir / "checkpoints" / "last")["step"]
    assert f"holds step {step}" in " ".join(err.split())


def test_bf16_autocast_on_cpu_trains_and_selects(tmp_path):
    result = run(tiny_recipe(tmp_path, "precision=bf16", "train.epochs=2"), show_progress=False)
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["precision"] == "bf16" and result.best_epoch in (1, 2)
    assert 0.0 <= result.results["test"]["average"]["accuracy"] <= 1.0


@pytest.mark.slow  # 31 s: an inductor compilation of a whole run (tests/test_compile.py checks the regions quickly)
def test_compile_on_cpu(tmp_path):
    result = compiled_or_skip(lambda: run(tiny_recipe(tmp_path, "compile=true", "train.epochs=1"), show_progress=False))
    assert result.step == 5 and result.results is not None
