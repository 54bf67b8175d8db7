"""Bad input to ``mmcore eval``, ``predict`` and ``export``: one line naming the file and the key or
option, a non-zero exit, and the output location checked before any work is done (fuzz report
defects 13-15, 28-30, 32)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from test_after import copy, one_line_error, run_dir  # noqa: F401  (fixtures: one trained run per module, a copy per test)
from typer.testing import CliRunner

from mmcore.after import evaluate_run
from mmcore.after.evaluation import curve_conditions
from mmcore.cli import app
from mmcore.errors import MMCoreError

CURVE = ["--curve", "--rates", "0,0.5", "--draws", "1"]


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening the run (building the model, loading weights) fails the test: the error must come first."""
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the run was opened before the bad input was refused")

    monkeypatch.setattr("mmcore.after.runs.open_run", refuse)
    monkeypatch.setattr("mmcore.after.evaluation.open_run", refuse)


def ok(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return result.output


# 13: RUN/exports a file; 32: RUN/exports/model.ts a folder — named before the run is opened
def test_export_output_paths_are_checked_before_the_export(copy: Path, no_work: None) -> None:
    (copy / "exports").write_text("x")
    line = one_line_error(["export", str(copy)])
    assert f"{copy / 'exports'} is a file; expected a folder" in line
    (copy / "exports").unlink()
    (copy / "exports" / "model.ts").mkdir(parents=True)
    line = one_line_error(["export", str(copy)])
    assert f"{copy / 'exports' / 'model.ts'} is a folder; expected a file to write" in line
    assert "components" not in line
    assert "no such directory" in one_line_error(["export", str(copy / "nope")])  # the run is named first


def test_a_failed_write_of_the_artifact_names_the_path_not_the_components(tmp_path: Path) -> None:
    from mmcore.after.export import ExportError, _save

    (tmp_path / "model.ts").mkdir()
    with pytest.raises(ExportError, match=r"export: cannot write .*model\.ts") as info:
        _save(b"the traced model's bytes", tmp_path / "model.ts")
    assert "components" not in str(info.value)


# 32: the tracer's warnings about shape checks are silenced, since the export is checked against predict
def test_export_prints_no_tracer_warnings_and_is_checked(copy: Path) -> None:
    from mmcore.after.export import ATOL, export_run

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        record = export_run(copy, "torchscript")
    assert not [w for w in caught if issubclass(w.category, torch.jit.TracerWarning)]
    assert record["max_abs_diff"] <= ATOL and record["checked_rows"] > 0
    assert (copy / "exports" / "model.ts").is_file()


# 14: RUN/evals/<label> a file — refused before the evaluation, not after it
def test_eval_output_folder_is_checked_before_evaluating(copy: Path, no_work: None) -> None:
    (copy / "evals").mkdir()
    (copy / "evals" / "best-test").write_text("x")
    line = one_line_error(["eval", str(copy)])
    assert f"{copy / 'evals' / 'best-test'} is a file; expected a folder" in line and "--label" in line
    (copy / "evals" / "mine" / "eval.json").mkdir(parents=True)
    assert f"{copy / 'evals' / 'mine' / 'eval.json'} is a folder" in one_line_error(["eval", str(copy), "--label", "mine"])


# 15: a 0-d (or otherwise wrong-rank) tensor is named with its key and the expected shape
@pytest.mark.parametrize("tensors, key, shape", [
    ({"x.m0": torch.tensor(1.0)}, "x.m0", "[]"),
    ({"x.m0": torch.zeros(4, 8), "x.m1": torch.tensor(2.0)}, "x.m1", "[]"),
    ({"x.m0": torch.zeros(8)}, "x.m0", "[8]"),
])
def test_predict_refuses_a_tensor_of_the_wrong_rank(copy: Path, tmp_path: Path, tensors: dict, key: str,
                                                     shape: str) -> None:
    path = tmp_path / "in.safetensors"
    save_file(tensors, str(path))
    line = one_line_error(["predict", str(copy), "--input", str(path), "--out", str(tmp_path / "p.csv")])
    assert f"{path}: '{key}' has shape {shape}" in line and f"'{key[2:]}' expects [N, 8]" in line
    assert not (tmp_path / "p.csv").exists()


# 28: --min-present outside 0..M-1 is an error, not an empty robustness table with exit 0
def test_min_present_out_of_range_is_refused(copy: Path) -> None:
    for value, expected in (("99", "expected 0..2"), ("3", "expected 0..2"), ("-1", "expected 0..2")):
        line = one_line_error(["eval", str(copy), *CURVE, "--min-present", value])
        assert "--min-present" in line and expected in line and f"got {value}" in line
    assert not (copy / "evals" / "curve").exists()
    out = ok(["eval", str(copy), *CURVE, "--min-present", "2"])  # M - 1: one modality missing at a time
    assert "robustness" in out
    assert json.loads((copy / "evals" / "curve" / "curve.json").read_text())["min_present"] == 2


def test_curve_options_without_the_curve_are_refused(copy: Path, no_work: None) -> None:
    """Without --curve, --rates/--draws/--min-present/--over would be ignored in silence."""
    for option, value in (("--rates", "0,0.5"), ("--draws", "2"), ("--min-present", "0"), ("--over", "frames")):
        line = one_line_error(["eval", str(copy), option, value])
        assert f"{option}: only with --curve" in line
    line = one_line_error(["eval", str(copy), "--curve", "--over", "frames", "--min-present", "0"])
    assert "--min-present: only with --over rates" in line
    assert not (copy / "evals").exists()


def test_a_curve_with_no_two_feasible_rates_is_an_error() -> None:
    with pytest.raises(MMCoreError, match="no curve has two rates feasible with min_present=1 over 3 modalities"):
        curve_conditions(["a", "b", "c"], [0.9, 1.0], 1, 1, False, [])
    plan = curve_conditions(["a", "b", "c"], [0.0, 0.5], 1, 0, False, [])
    assert plan["rates"] == {"uniform": [0.0, 0.5]}


# 29: a second curve with other settings never silently replaces the first under the derived label
def test_a_curve_with_other_settings_does_not_overwrite_the_first(copy: Path) -> None:
    ok(["eval", str(copy), *CURVE])
    first = (copy / "evals" / "curve" / "curve.json").read_text()
    assert json.loads(first)["settings"] == {"over": "rates", "rates": [0.0, 0.5], "draws": 1, "min_present": 1,
                                             "per_modality": True}
    for extra, named in ((["--draws", "2"], "--draws 1, not --draws 2"), (["--min-present", "0"], "--min-present 1, not"),
                         (["--rates", "0,0.3"], "--rates 0,0.5, not --rates 0,0.3")):
        line = one_line_error(["eval", str(copy), *CURVE, *extra])
        assert named in line and f"{copy / 'evals' / 'curve'}" in line and "--label" in line
    assert (copy / "evals" / "curve" / "curve.json").read_text() == first
    ok(["eval", str(copy), *CURVE])  # the same settings again: the same numbers, allowed
    ok(["eval", str(copy), *CURVE, "--draws", "2", "--label", "curve-d2"])  # both kept
    assert json.loads((copy / "evals" / "curve-d2" / "curve.json").read_text())["draws"] == 2
    assert json.loads((copy / "evals" / "curve" / "curve.json").read_text())["draws"] == 1
    ok(["eval", str(copy), *CURVE, "--draws", "2", "--label", "curve"])  # named: replaced on purpose
    assert json.loads((copy / "evals" / "curve" / "curve.json").read_text())["draws"] == 2


def test_a_curve_written_before_settings_were_recorded_is_compared_by_its_layout(copy: Path) -> None:
    evaluate_run(copy, curve=True, rates=[0.0, 0.5], draws=1)
    path = copy / "evals" / "curve" / "curve.json"
    data = json.loads(path.read_text())
    del data["settings"]
    path.write_text(json.dumps(data))
    with pytest.raises(MMCoreError, match="--draws 1, not --draws 2"):
        evaluate_run(copy, curve=True, rates=[0.0, 0.5], draws=2)
    evaluate_run(copy, curve=True, rates=[0.0, 0.5], draws=1)  # the same settings as its layout shows


# 30: a manifest.json that exists but cannot be read is a one-line error, not a skipped check
@pytest.mark.parametrize("text, message", [
    ("not json", "not valid JSON"),
    ("[1, 2]", "expected a JSON object"),
    ('{"data_sha256": [1]}', "'data_sha256': expected a mapping of split names to sha256 strings"),
])
def test_an_unreadable_manifest_is_an_error(copy: Path, text: str, message: str) -> None:
    (copy / "manifest.json").write_text(text)
    line = one_line_error(["eval", str(copy)])
    assert f"{copy / 'manifest.json'}: " in line and message in line
    assert not (copy / "evals").exists()


def test_the_manifest_checksums_are_still_checked_and_optional(copy: Path) -> None:
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["data_sha256"]["test"] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert any("the test split differs" in n for n in evaluate_run(copy).notes)
    (copy / "manifest.json").unlink()  # a run without a manifest has nothing to check against
    assert not any("differs" in n for n in evaluate_run(copy).notes)
