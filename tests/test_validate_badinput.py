"""``mmcore validate`` on bad input: process counts this machine cannot run, options it would
ignore, and dataset files it can judge from their layout and headers. One line, exit 2."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from mmcore.cli import app
from mmcore.recipe.machine import device_problems

runner = CliRunner()


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("mmcore.recipe.machine.cpu_cores", lambda: 2)


def _recipe(tmp_path, dataset: str = "mmcore.synthetic", device: str = "cpu"):
    path = tmp_path / "r.yaml"
    path.write_text(f"name: r\noutput: {tmp_path / 'runs'}\ndevice: {device}\ndataset: {dataset}\n")
    return path


def _one_error(result) -> str:
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit), result.exception
    lines = [line for line in result.output.splitlines() if line.strip() and not line.startswith("warning: plugin")]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_far_more_cpu_processes_than_cores_is_refused(tmp_path, two_cores, device):
    line = _one_error(runner.invoke(app, ["validate", str(_recipe(tmp_path, device=device)), "--nproc", "999"]))
    assert line == (
        f"error: {tmp_path / 'r.yaml'}: device: '{device}' with --nproc 999 starts 999 CPU processes (gloo); "
        "this process may use 2 CPU cores; expected --nproc at most 8 (4 a core)"
    )
    # a few a core stay allowed: a 4-GPU run's layout is reproduced or resumed on a small machine
    assert runner.invoke(app, ["validate", str(_recipe(tmp_path, device=device)), "--nproc", "4"]).exit_code == 0
    assert device_problems(device, nproc=8) == [] and len(device_problems(device, nproc=9)) == 1


def test_run_refuses_the_same_count_before_starting_processes(tmp_path, two_cores, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("launched")

    monkeypatch.setattr("mmcore.engine.launch.launch_local", never)
    line = _one_error(runner.invoke(app, ["run", str(_recipe(tmp_path)), "--nproc", "999"]))
    assert "expected --nproc at most 8" in line  # the one check, shared by validate, run and resume
    assert not (tmp_path / "runs").exists()


def test_nproc_with_recipe_only_is_refused_not_ignored(tmp_path):
    line = _one_error(runner.invoke(app, ["validate", str(_recipe(tmp_path)), "--recipe-only", "--nproc", "4"]))
    assert line == "error: --nproc 4 is checked against this machine's devices, which --recipe-only skips; expected one of the two"
    assert runner.invoke(app, ["validate", str(_recipe(tmp_path)), "--recipe-only"]).exit_code == 0


def test_validate_reads_feature_headers_and_the_mmin_layout(tmp_path):
    pytest.importorskip("mmcore_corpora")
    root = tmp_path / "f"
    root.mkdir()
    for offset, split in enumerate(("train", "val", "test")):
        lengths = torch.full((4,), 2.5) if split == "test" else torch.full((4,), 2)
        save_file({"x.a": torch.randn(4, 3, 2), "len.a": lengths, "target": torch.tensor([0, 1, 0, 1]),
                   "ids": torch.arange(4) + 4 * offset}, str(root / f"{split}.safetensors"),
                  metadata={"task": "classification", "num_classes": "2"})
    line = _one_error(runner.invoke(app, ["validate", str(_recipe(tmp_path, f"{{type: corpora.features, root: {root}}}"))]))
    assert line.endswith(f"dataset: corpora.features: {root / 'test.safetensors'}: 'len.a' has dtype F32; expected integers (int64)")

    (tmp_path / "iemocap.h5").write_text("x")
    node = f"{{type: corpora.iemocap, root: {tmp_path / 'iemocap.h5'}}}"
    line = _one_error(runner.invoke(app, ["validate", str(_recipe(tmp_path, node))]))
    assert f"corpora.iemocap: feature folder {tmp_path / 'iemocap.h5'} is a file; expected a folder" in line
