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
    data = files[0].read_bytes()  # protobuf records: the metric names are stored as plain strings
    for key in (b"train/loss", b"train/task_loss", b"val.macro_f1", b"select.val.macro_f1"):
        assert key in data


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
