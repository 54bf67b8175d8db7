"""mmcore.mlflow and mmcore.wandb: what a run logs reaches a real tracker store, offline.

Each test skips cleanly where its optional extra is not installed. Nothing here touches the
network: MLflow writes to a SQLite file, W&B runs in offline mode.
"""

from __future__ import annotations

import builtins
import json
from pathlib import Path
from typing import Any

import pytest

from mmcore.engine.trainer import run
from mmcore.errors import MMCoreError
from mmcore.testing import tiny_recipe


def _record(run_dir: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if "loss" in r], [r for r in lines if "val.macro_f1" in r]


def test_mlflow_store_holds_the_record_and_a_resume_continues_the_same_run(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    from mlflow.tracking import MlflowClient

    from mmcore.builtins.trackers import MLFLOW_ID

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    recipe = tiny_recipe(tmp_path, "train.epochs=2")
    recipe["logging"] = [{"type": "mmcore.jsonl"}, {"type": "mmcore.mlflow", "tracking_uri": uri, "experiment": "t"}]
    stopped = run({**recipe, "train": {**recipe["train"], "max_steps": 4}}, show_progress=False)
    first_id = (stopped.run_dir / MLFLOW_ID).read_text().strip()
    done = run(recipe, run_dir=stopped.run_dir, resume=True, show_progress=False)
    assert (done.run_dir / MLFLOW_ID).read_text().strip() == first_id  # one MLflow run for the whole training

    client = MlflowClient(tracking_uri=uri)
    steps, epochs = _record(done.run_dir)
    loss = {m.step: m.value for m in client.get_metric_history(first_id, "train/loss")}
    assert loss == pytest.approx({r["step"]: r["loss"] for r in steps})
    val = {m.step: m.value for m in client.get_metric_history(first_id, "val.macro_f1")}
    assert val == pytest.approx({r["step"]: r["val.macro_f1"] for r in epochs})
    found = client.get_run(first_id)
    assert found.info.status == "FINISHED" and found.data.params["train.epochs"] == "2"
    assert client.get_experiment(found.info.experiment_id).name == "t"


def test_wandb_offline_run_holds_the_scalars(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("wandb")
    from mmcore.builtins.trackers import WANDB_ID

    monkeypatch.setenv("WANDB_SILENT", "true")
    recipe = tiny_recipe(tmp_path, "train.epochs=1")
    recipe["logging"] = [{"type": "mmcore.jsonl"}, {"type": "mmcore.wandb", "project": "mmcore-test"}]
    done = run(recipe, show_progress=False)
    run_id = (done.run_dir / WANDB_ID).read_text().strip()
    files = list((done.run_dir / "wandb").glob(f"offline-run-*-{run_id}/run-{run_id}.wandb"))
    assert len(files) == 1
    history = {row["_step"]: row for row in _wandb_history(files[0])}
    steps, epochs = _record(done.run_dir)
    assert {s: history[s]["train/loss"] for s in history if "train/loss" in history[s]} == pytest.approx(
        {r["step"]: r["loss"] for r in steps})
    assert {s: history[s]["val.macro_f1"] for s in history if "val.macro_f1" in history[s]} == pytest.approx(
        {r["step"]: r["val.macro_f1"] for r in epochs})


def _wandb_history(path: Path) -> list[dict[str, Any]]:
    """The history rows of an offline W&B run file, read without W&B's reader (it has no public one).

    The file is W&B's 7-byte header (":W&B", magic, version) and then LevelDB's log format: 32 KiB
    blocks of records, each a 7-byte header (CRC32C, little-endian length, type) and a payload; a
    type of 1 is a whole record, 2/3/4 the first/middle/last piece of one split across blocks; a
    block tail shorter than a header is padding. Each record is a ``wandb_internal_pb2.Record``.
    """
    from wandb.proto import wandb_internal_pb2

    data, pos, block, pieces, rows = path.read_bytes(), 7, 32768, b"", []
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(data[pos + 4:pos + 6], "little"), data[pos + 6]
        payload, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        pieces = payload if kind in (1, 2) else pieces + payload
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pieces)
            if record.WhichOneof("record_type") == "history":
                rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in record.history.item})
    return rows


@pytest.mark.parametrize(("name", "module", "extra"), [("MlflowLogger", "mlflow", "mlflow"), ("WandbLogger", "wandb", "wandb")])
def test_a_tracker_without_its_extra_is_one_line(monkeypatch: pytest.MonkeyPatch, name: str, module: str, extra: str) -> None:
    real = builtins.__import__

    def missing(target: str, *args: Any, **kwargs: Any) -> Any:
        if target == module or target.startswith(module + "."):
            raise ImportError(f"No module named '{module}'")
        return real(target, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", missing)
    from mmcore.builtins import trackers

    with pytest.raises(MMCoreError, match=rf"mmcore\.{module} needs the '{extra}' package.*pip install 'mmcore\[{extra}\]'"):
        getattr(trackers, name)()


@pytest.mark.parametrize("name", ["mmcore.mlflow", "mmcore.wandb"])
def test_trackers_pass_the_logger_contract(name: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mmcore.plugins import get_registry
    from mmcore.testing import ContractSkip, check_logger

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'contract.db'}")
    try:
        check_logger(get_registry().get("logger", name))
    except ContractSkip as skip:
        pytest.skip(str(skip))


def test_flat_params_are_dotted_strings() -> None:
    from mmcore.builtins.trackers import PARAM_LIMIT, flat_params

    flat = flat_params({"model": {"fusion": {"type": "mmcore.concat", "layers": [8, 8]}}, "seed": 0, "long": "x" * 600})
    assert flat["model.fusion.type"] == "mmcore.concat" and flat["model.fusion.layers"] == "[8, 8]" and flat["seed"] == "0"
    assert len(flat["long"]) == PARAM_LIMIT
