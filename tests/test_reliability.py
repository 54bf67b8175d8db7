"""Issue 28's faults, each as a test: blocking paths, unwritable outputs, a full disk while a
checkpoint is written, absurd model sizes, a run directory owned twice."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

import mmcore.engine.checkpoint as ckpt
from mmcore.data import require
from mmcore.engine.ownership import own_run_dir
from mmcore.engine.runlock import RunLockedError
from mmcore.engine.sizes import SizeError, checked_build, is_out_of_memory, out_of_memory_message
from mmcore.errors import DataError, MMCoreError, RecipeError
from mmcore.paths import PathError, check_output_dir, check_output_file, require_file
from mmcore.recipe.loader import load_yaml


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


def test_a_fifo_is_refused_by_every_reader_without_blocking(fifo):
    with pytest.raises(DataError, match="not a regular file or folder"):
        require(fifo, "corpora.mosi", "feature pickle or folder")
    with pytest.raises(PathError, match="FIFO"):
        require_file(fifo, "x")
    with pytest.raises(RecipeError, match="not a regular file"):
        load_yaml(fifo)
    from mmcore_corpora.mmsa import MMSAPickle
    from mmcore_corpora.safe_pickle import load_pickle

    with pytest.raises(MMCoreError):
        MMSAPickle(str(fifo), "aligned_50.pkl", "regression")
    with pytest.raises(DataError, match="not a regular file"):
        load_pickle(fifo)


def test_convert_mmsa_refuses_a_fifo(fifo, tmp_path):
    from typer.testing import CliRunner

    from mmcore.cli import app
    from mmcore_corpora.convert import add_commands

    add_commands(app)
    result = CliRunner().invoke(app, ["convert", "mmsa", str(fifo), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1 and "FIFO" in result.output


def test_unwritable_outputs_are_refused_up_front(tmp_path):
    with pytest.raises(PathError) as proc:
        check_output_file(Path("/proc/o.csv"), "--out")
    # the file named, the folder tested and why in words; no errno text that contradicts it
    assert str(proc.value) == ("--out: cannot write /proc/o.csv: a test file could not be created in /proc "
                               "(this file system does not allow new files)")
    with pytest.raises(PathError, match=r"cannot write into /proc/x/runs: a test file could not be created in /proc \("):
        check_output_dir(Path("/proc/x/runs"), "output")
    (tmp_path / "d").mkdir()
    with pytest.raises(PathError, match="a folder"):
        check_output_file(tmp_path / "d", "--out")
    with pytest.raises(PathError, match="expected a folder"):
        check_output_dir(tmp_path / "f", "--out") if (tmp_path / "f").write_text("x") else None
    assert check_output_file(tmp_path / "new" / "o.csv", "--out") == tmp_path / "new" / "o.csv"
    assert not (tmp_path / "new").exists() and not list(tmp_path.glob(".mmcore-write-probe-*"))


def test_disk_full_as_safetensors_error_is_one_line_with_free_space(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(model.parameters())
    from mmcore.engine.state import TrainState

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(No space left on device (os error 28))")

    monkeypatch.setattr(ckpt, "save_file", full)
    with pytest.raises(ckpt.CheckpointError) as info:
        ckpt.save_checkpoint(tmp_path / "ckpt" / "last", model, opt, TrainState())
    message = str(info.value)
    assert "\n" not in message and "No space left" in message and "free in" in message
    assert list((tmp_path / "ckpt").iterdir()) == []  # the partial .last.tmp-PID is gone


def test_an_absurd_model_size_is_refused_before_allocating(monkeypatch):
    def huge() -> torch.nn.Module:
        return torch.nn.Sequential(*[torch.nn.Linear(1000, 1000) for _ in range(1_000_000_000)])

    with pytest.raises(SizeError, match="more than"):
        checked_build(lambda: torch.nn.Linear(100_000, 100_000))  # 10^10 parameters, meta only
    with pytest.raises(SizeError):
        checked_build(huge)  # stopped by the counts, not after a billion modules
    monkeypatch.setenv("MMCORE_MAX_PARAMS", "10")
    with pytest.raises(SizeError, match="--max-params"):
        checked_build(lambda: torch.nn.Linear(4, 4))
    monkeypatch.setenv("MMCORE_MAX_PARAMS", "100")
    assert isinstance(checked_build(lambda: torch.nn.Linear(4, 4)), torch.nn.Linear)


def test_the_shape_only_build_skips_random_fills_and_the_real_build_keeps_them():
    import subprocess
    import sys

    # normal_ on meta goes through torch's Python reference, which imports torch._dynamo (~1.8 s)
    code = (
        "import sys, torch\n"
        "from mmcore.engine.sizes import checked_build\n"
        "def build():\n"
        "    layer = torch.nn.Linear(8, 8)\n"
        "    torch.nn.init.kaiming_normal_(layer.weight)\n"
        "    return layer\n"
        "torch.manual_seed(3)\n"
        "built = checked_build(build)\n"
        "torch.manual_seed(3)\n"
        "assert torch.equal(built.weight, build().weight)\n"
        "print('torch._dynamo' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_out_of_memory_is_recognised_and_named():
    assert is_out_of_memory(MemoryError()) and is_out_of_memory(RuntimeError("CUDA out of memory. Tried"))
    assert not is_out_of_memory(RuntimeError("shape mismatch"))
    assert out_of_memory_message().startswith("out of memory while ")


def test_a_run_directory_has_one_owner_and_nesting_is_allowed(tmp_path):
    import subprocess
    import sys

    with own_run_dir(tmp_path, "train"):
        with own_run_dir(tmp_path, "train"):  # the sweep worker, then the trainer it calls
            pass
        code = f"from mmcore.engine.ownership import own_run_dir\nwith own_run_dir({str(tmp_path)!r}, 'resume'): pass"
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode != 0 and f"in use by process {os.getpid()}" in done.stderr
    with pytest.raises(RunLockedError) if False else own_run_dir(tmp_path, "train"):
        pass
