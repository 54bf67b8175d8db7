"""``mmcore resume`` on a damaged or tampered run directory: each fault is one line naming the file,
the key and what was expected (exit 1), and a refusal leaves every file as it was. Checksums catch
damaged tensor files (``tests/test_checkpoint.py``); these cases pass them, as a checkpoint folder
copied from another run or an edited ``state.json`` would. A valid resume stays bit-exact."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from typer.testing import CliRunner

from mmcore.cli import app
from mmcore.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from mmcore.engine.state import TrainState
from mmcore.engine.trainer import run
from mmcore.testing import tiny_recipe

runner = CliRunner()
STOP = 7  # tiny: 5 steps an epoch, 3 epochs; step 7 is inside epoch 2, after best = epoch 1


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A run stopped at step ``STOP`` (resumable) and the same recipe trained straight through."""
    root = tmp_path_factory.mktemp("resume_damage")
    recipe = tiny_recipe(root / "runs", "train.epochs=3")
    straight = run(recipe, show_progress=False)
    stopped = run({**recipe, "train": {**recipe["train"], "max_steps": STOP}}, show_progress=False)
    assert stopped.stopped_early and stopped.step == STOP
    return {"stopped": stopped.run_dir, "straight": straight.run_dir}


@pytest.fixture
def run_dir(runs, tmp_path) -> Path:
    """A fresh copy of the stopped run, to damage."""
    return Path(shutil.copytree(runs["stopped"], tmp_path / "run", symlinks=True))


def _tree(root: Path) -> dict[str, str]:
    """Every path under ``root`` with its content hash (or link target): what a refusal must keep."""
    out = {}
    for p in sorted(root.rglob("*")):
        key = str(p.relative_to(root))
        out[key] = "link:" + os.readlink(p) if p.is_symlink() else hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
    return out


def _state(run_dir: Path) -> dict:
    return json.loads((run_dir / "checkpoints/last/state.json").read_text())


def _set_state(run_dir: Path, data: dict) -> None:
    (run_dir / "checkpoints/last/state.json").write_text(json.dumps(data, indent=1))


def _retensor(run_dir: Path, name: str, change: Callable[[dict[str, torch.Tensor]], None]) -> None:
    """Rewrite a tensor file of checkpoints/last and record its new checksum, so only the content is wrong."""
    file = run_dir / "checkpoints/last" / name
    tensors = load_file(str(file))
    change(tensors)
    save_file(tensors, str(file))
    data = _state(run_dir)
    data["files"][name] = {"sha256": hashlib.sha256(file.read_bytes()).hexdigest(), "size": file.stat().st_size}
    _set_state(run_dir, data)


def _edit_state(**values) -> Callable[[Path], None]:
    return lambda run_dir: _set_state(run_dir, {**_state(run_dir), **values})


def _edit_group(run_dir: Path) -> None:
    data = _state(run_dir)
    data["optimizer"]["param_groups"][0]["weight_decay"] = 0.5
    _set_state(run_dir, data)


def _link_last_to_best(run_dir: Path) -> None:
    shutil.rmtree(run_dir / "checkpoints/last")
    (run_dir / "checkpoints/last").symlink_to(run_dir / "checkpoints/best")


def _dangling_last(run_dir: Path) -> None:
    shutil.rmtree(run_dir / "checkpoints/last")
    (run_dir / "checkpoints/last").symlink_to(run_dir / "nowhere")


def _checkpoints_file(run_dir: Path) -> None:
    shutil.rmtree(run_dir / "checkpoints")
    (run_dir / "checkpoints").write_text("x")


def _other_data(run_dir: Path) -> None:
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest["data_sha256"]["train"] = "0" * 64  # as if the dataset's files changed under the same recipe
    (run_dir / "manifest.json").write_text(json.dumps(manifest))


def _first(tensors: dict[str, torch.Tensor], prefix: str = "") -> str:
    return sorted(k for k in tensors if k.startswith(prefix))[0]


BEST_NEEDED = "the final evaluation loads checkpoints/best (epoch 1, recorded in checkpoints/last), so training cannot resume without it"
BEST_INTACT = "; checkpoints/best (step 5) is intact: `mmcore eval` can still evaluate it, but training cannot resume from a damaged last"

# id -> (damage, expected message after "error: {run_dir}/")
CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "last links to best": (_link_last_to_best, "checkpoints/last: a symbolic link to {run}/checkpoints/best, expected a checkpoint folder"),
    "last a broken link": (_dangling_last, "checkpoints/last: a symbolic link to {run}/nowhere (broken), expected a checkpoint folder"),
    "checkpoints a file": (_checkpoints_file, "checkpoints: a file, expected the run's checkpoints folder"),
    "best missing": (lambda d: shutil.rmtree(d / "checkpoints/best"),
                     f"checkpoints/best/state.json: missing (not a complete checkpoint); {BEST_NEEDED}"),
    "model float64": (
        lambda d: _retensor(d, "model.safetensors", lambda t: t.update({(k := _first(t)): t[k].double()})),
        "checkpoints/last/model.safetensors: 'encoders.m0.net.0.bias' has dtype float64, the model expects float32" + BEST_INTACT,
    ),
    "optimizer shape": (
        lambda d: _retensor(d, "optimizer.safetensors", lambda t: t.update({"state.1.exp_avg": torch.zeros(33)})),
        "checkpoints/last/optimizer.safetensors: 'state.1.exp_avg' is float32 (33,), expected its parameter's float32 (32,)" + BEST_INTACT,
    ),
    "optimizer float16": (
        lambda d: _retensor(d, "optimizer.safetensors", lambda t: t.update({"state.1.exp_avg": t["state.1.exp_avg"].half()})),
        "checkpoints/last/optimizer.safetensors: 'state.1.exp_avg' is float16 (32,), expected its parameter's float32 (32,)" + BEST_INTACT,
    ),
    "optimizer key missing": (
        lambda d: _retensor(d, "optimizer.safetensors", lambda t: t.pop("state.1.exp_avg")),
        "checkpoints/last/optimizer.safetensors: state.1 lacks exp_avg (the other parameters' state holds exp_avg, exp_avg_sq, step)"
        + BEST_INTACT,
    ),
    "optimizer extra index": (
        lambda d: _retensor(d, "optimizer.safetensors", lambda t: t.update({"state.9999.exp_avg": torch.zeros(2)})),
        "checkpoints/last/optimizer.safetensors: unexpected tensor 'state.9999.exp_avg' (expected state.<index>.<key> for one "
        "of this run's {params} parameters)" + BEST_INTACT,
    ),
    "optimizer empty": (
        lambda d: _retensor(d, "optimizer.safetensors", lambda t: t.clear()),
        "checkpoints/last/optimizer.safetensors: no optimiser state, expected the state of {params} parameters after 7 steps"
        + BEST_INTACT,
    ),
    "optimizer settings edited": (
        _edit_group,
        "checkpoints/last/state.json: optimizer group 0 'weight_decay' is 0.5, expected 0.0 (the recipe's train.optimizer)" + BEST_INTACT,
    ),
    "step true": (_edit_state(step=True), "checkpoints/last/state.json: invalid training state: 'step' is True, expected an integer >= 0"),
    "step past the end": (
        _edit_state(step=99),
        "checkpoints/last/state.json: 'step' is 99, expected at most 15 (3 epochs of 5 steps in this run's recipe)",
    ),
    "epoch behind step": (_edit_state(epoch=0), "checkpoints/last/state.json: 'epoch' is 0, expected 1 for step 7 (5 steps an epoch)"),
    "best epoch not done": (
        _edit_state(best_epoch=2),
        "checkpoints/last/state.json: 'best_epoch' is 2 and 'best_value' {best_value}, "
        "expected one of the 1 validated epochs and its value",
    ),
    "log sums not numbers": (
        _edit_state(log_sums={"loss": "x"}),
        "checkpoints/last/state.json: invalid training state: 'log_sums' is {{'loss': 'x'}}, expected an object of numbers or "
        "lists of numbers",
    ),
    "eval.json a folder": (lambda d: (d / "eval.json").mkdir(),
                           "eval.json: a folder, expected a file or nothing (the run writes it when training ends)"),
    "other data": (
        _other_data,
        "manifest.json: 'data_sha256.train' differs from the train split loaded now; expected the data the run started with: "
        "restore the dataset's files, or start a new run with `mmcore run`",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_damaged_run_is_refused_in_one_line_and_left_as_it_was(run_dir, case):
    damage, expected = CASES[case]
    values = {"run": run_dir, "params": len(load_file(str(run_dir / "checkpoints/last/optimizer.safetensors"))) // 3,
              "best_value": _state(run_dir)["best_value"]}
    damage(run_dir)
    before = _tree(run_dir)
    result = runner.invoke(app, ["resume", str(run_dir), "--no-progress"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1, result.output
    assert lines == [f"error: {run_dir}/{expected.format(**values)}"]
    assert _tree(run_dir) == before


def test_a_valid_resume_is_still_bit_exact(runs, run_dir):
    result = runner.invoke(app, ["resume", str(run_dir), "train.max_steps=null", "--no-progress"])
    assert result.exit_code == 0, result.output
    for name in ("model.safetensors", "optimizer.safetensors"):
        a, b = (load_file(str(d / "checkpoints/last" / name)) for d in (runs["straight"], run_dir))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((run_dir / "eval.json").read_text())["results"] == json.loads((runs["straight"] / "eval.json").read_text())["results"]
    assert (run_dir / "metrics.jsonl").read_text() == (runs["straight"] / "metrics.jsonl").read_text()


@pytest.mark.parametrize("kind,momentum", [("adam", None), ("sgd", 0.9), ("sgd", 0.0)])
def test_every_optimiser_state_passes_the_checks_and_round_trips(tmp_path, kind, momentum):
    """SGD without momentum keeps no state at all: that is not an empty, damaged optimizer file."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    make = (lambda m: torch.optim.Adam(m.parameters(), lr=0.1)) if kind == "adam" else (
        lambda m: torch.optim.SGD(m.parameters(), lr=0.1, momentum=momentum))
    optimizer = make(model)
    model(torch.randn(5, 3)).sum().backward()
    optimizer.step()
    save_checkpoint(tmp_path / "last", model, optimizer, TrainState(step=1))
    fresh = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 1))
    restored = make(fresh)
    assert load_checkpoint(tmp_path / "last", fresh, restored).step == 1
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), fresh.parameters()))
    for p, q in zip(model.parameters(), fresh.parameters()):
        assert optimizer.state[p].keys() == restored.state[q].keys()
        saved = {k: v for k, v in optimizer.state[p].items() if v is not None}
        assert all(torch.equal(v, restored.state[q][k]) for k, v in saved.items())


def test_run_files_of_the_wrong_type_are_named(run_dir):
    """``run_files: []`` would have skipped the check of the input transform's files."""
    _edit_state(run_files=[])(run_dir)
    with pytest.raises(CheckpointError, match=r"state.json: 'run_files' is a list, expected an object"):
        load_checkpoint(run_dir / "checkpoints/last", nn.Linear(1, 1), torch.optim.Adam(nn.Linear(1, 1).parameters()))


def test_a_record_line_damaged_before_the_resume_step_is_named_and_no_line_is_duplicated(runs, run_dir):
    """A kill tears only the last line, written after the checkpoint, and it is written again;
    a line torn before the resume step records steps that are not trained again: said, not hidden."""
    record = run_dir / "metrics.jsonl"
    lines = record.read_text().splitlines()
    torn = next(i for i, line in enumerate(lines) if json.loads(line)["step"] <= STOP and "epoch" in json.loads(line))
    record.write_text("\n".join(lines[:torn] + [lines[torn][:20]] + lines[torn + 1 :]) + "\n")
    with pytest.warns(UserWarning, match=rf"metrics.jsonl: line {torn + 1} is not complete JSON \(damaged\); it is dropped"):
        result = runner.invoke(app, ["resume", str(run_dir), "train.max_steps=null", "--no-progress"])
    assert result.exit_code == 0, result.output
    straight = (runs["straight"] / "metrics.jsonl").read_text().splitlines()
    assert record.read_text().splitlines() == straight[:torn] + straight[torn + 1 :]


def test_a_missing_record_is_named_on_resume(run_dir):
    (run_dir / "metrics.jsonl").unlink()
    with pytest.warns(UserWarning, match=r"metrics.jsonl: missing; the record restarts after step 7"):
        result = runner.invoke(app, ["resume", str(run_dir), "--no-progress"])
    assert result.exit_code == 0, result.output
