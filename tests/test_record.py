"""RunRecord, the one reader of the run-directory format, and the moved report modules' old paths."""

from __future__ import annotations

import importlib
import json
import sys
import warnings

import pytest

from mmcore.engine.record import RunRecord, run_state
from mmcore.errors import MMCoreError


def _run_dir(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.yaml").write_text("name: r\nseed: 3\n")
    (run / "metrics.jsonl").write_text(
        json.dumps({"step": 1, "loss": 2.0}) + "\n" + json.dumps({"step": 5, "loss": 1.0}) + "\n"
        + json.dumps({"epoch": 1, "step": 5, "val.macro_f1": 0.5}) + "\n"
    )
    return run


def test_record_reads_every_file_once_finished(tmp_path):
    run = _run_dir(tmp_path)
    record = RunRecord.load(run)
    assert record.state == "fresh" and not record.finished and record.results == {}
    assert record.recipe == {"name": "r", "seed": 3}
    assert record.steps_done() == 5 and record.metrics.epochs[0]["val"] == {"macro_f1": 0.5}
    (run / "eval.json").write_text(json.dumps({"results": {"test": {"average": {"acc": 0.75}}}, "pooled": {}}))
    record = RunRecord.load(run)
    assert run_state(run) == "finished" and record.value("test", "average", "acc") == 0.75
    assert record.value("test", "average", "f1") is None and record.manifest == {}


def test_record_errors_are_one_line_naming_the_file(tmp_path):
    run = _run_dir(tmp_path)
    (run / "eval.json").write_text('{"results": 3}')
    with pytest.raises(MMCoreError, match=r"eval\.json: expected"):
        RunRecord.load(run).results
    with pytest.raises(MMCoreError, match="no such run directory"):
        RunRecord.load(tmp_path / "absent")


@pytest.mark.parametrize("name", ["stats", "shapley", "robustness"])
def test_old_import_paths_warn_and_name_the_new_one(name):
    sys.modules.pop(f"mmcore.{name}", None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        old = importlib.import_module(f"mmcore.{name}")
    assert old is importlib.import_module(f"mmcore.report.{name}")
    assert any(issubclass(w.category, DeprecationWarning) and f"mmcore.report.{name}" in str(w.message) for w in caught)
