"""Logger plugins: what the engine hands a logger, the default record, TensorBoard, and the
session that run, resume and eval share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from mmcore import Logger, hookimpl
from mmcore.engine.runtime import Runtime
from mmcore.engine.session import build_session
from mmcore.engine.trainer import run, train
from mmcore.plugins import load_plugins
from mmcore.testing import tiny_recipe

CALLS: list[tuple[str, Any]] = []


class Recording(Logger):
    """Keeps every call, in order."""

    def __init__(self, tag: str = "r") -> None:
        self.tag = tag

    def open(self, run_dir: Path, resume_step: int | None = None) -> None:
        CALLS.append(("open", resume_step))

    def log_step(self, step: int, scalars: dict[str, float]) -> None:
        CALLS.append(("step", (step, dict(scalars))))

    def log_epoch(self, epoch: int, step: int, scalars: dict[str, float]) -> None:
        CALLS.append(("epoch", (epoch, step, dict(scalars))))

    def close(self) -> None:
        CALLS.append(("close", None))


class RecordingPlugin:
    @hookimpl
    def register_loggers(self, register: Any) -> None:
        register("rec.recording", Recording)


@pytest.fixture()
def plugins():
    CALLS.clear()
    return load_plugins(extra={"rec": RecordingPlugin()})


def _recipe(tmp_path: Path, plugins, *overrides: str) -> dict[str, Any]:
    from mmcore.recipe import apply_overrides, validate_recipe

    tree = {**tiny_recipe(tmp_path), "logging": [{"type": "mmcore.jsonl"}, {"type": "rec.recording"}]}
    return validate_recipe(apply_overrides(tree, list(overrides)), plugins.registry, "test")


def test_a_logger_plugin_sees_every_logging_step_and_epoch_and_equals_the_record(tmp_path, plugins):
    result = run(_recipe(tmp_path, plugins, "train.epochs=2"), plugins=plugins, show_progress=False)
    kinds = [k for k, _ in CALLS]
    assert kinds[0] == "open" and kinds[-1] == "close" and kinds.count("close") == 1
    steps = [v for k, v in CALLS if k == "step"]
    epochs = [v for k, v in CALLS if k == "epoch"]
    assert [s for s, _ in steps] == [2, 4, 6, 8, 10]  # log_every 2, 10 steps
    assert [(e, s) for e, s, _ in epochs] == [(1, 5), (2, 10)]
    record = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    step_lines = [r for r in record if "loss" in r]
    assert [{k: v for k, v in r.items() if k != "step"} for r in step_lines] == [sc for _, sc in steps]
    epoch_lines = [r for r in record if "val.macro_f1" in r]
    assert epoch_lines[-1]["select.val.macro_f1"] == epochs[-1][2]["select.val.macro_f1"]
    assert all(isinstance(v, float) for _, sc in steps for v in sc.values() if not isinstance(v, int))


def test_resume_opens_loggers_at_the_checkpoint_step(tmp_path, plugins):
    recipe = _recipe(tmp_path, plugins, "train.epochs=2")
    stopped = run({**recipe, "train": {**recipe["train"], "max_steps": 3}}, plugins=plugins, show_progress=False)
    CALLS.clear()
    run(recipe, plugins=plugins, run_dir=stopped.run_dir, resume=True, show_progress=False)
    assert CALLS[0] == ("open", 3)
    assert [v[0] for k, v in CALLS if k == "step"] == [4, 6, 8, 10]


def test_a_failing_run_still_closes_its_loggers(tmp_path, plugins, monkeypatch):
    import mmcore.engine.trainer as trainer

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("validation failed")

    monkeypatch.setattr(trainer, "evaluate", broken)
    with pytest.raises(RuntimeError, match="validation failed"):
        run(_recipe(tmp_path, plugins), plugins=plugins, show_progress=False)
    assert [k for k, _ in CALLS] == ["open", "step", "step", "close"]  # two logging steps, then the failure


def test_tensorboard_writes_an_event_file(tmp_path):
    pytest.importorskip("tensorboard")
    recipe = tiny_recipe(tmp_path, "train.epochs=1")
    recipe["logging"] = [{"type": "mmcore.jsonl"}, {"type": "mmcore.tensorboard", "subdir": "tb"}]
    result = run(recipe, show_progress=False)
    events = list((result.run_dir / "tb").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0


def test_tensorboard_without_its_extra_is_one_line(monkeypatch):
    import builtins as py

    real = py.__import__

    def no_tensorboard(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("torch.utils.tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(py, "__import__", no_tensorboard)
    from mmcore.builtins.loggers import TensorBoardLogger
    from mmcore.errors import MMCoreError

    with pytest.raises(MMCoreError, match=r"pip install 'mmcore\[tensorboard\]'"):
        TensorBoardLogger()


def test_one_session_serves_a_run_and_its_resume(tmp_path):
    recipe = tiny_recipe(tmp_path, "train.epochs=2")
    straight = run(recipe, show_progress=False)
    session = build_session({**recipe, "train": {**recipe["train"], "max_steps": 4}}, Runtime(torch.device("cpu")))
    stopped = train(session, show_progress=False)
    session.recipe = recipe  # the same data, masks and model object; only the step limit goes
    resumed = train(session, run_dir=stopped.run_dir, resume=True, show_progress=False)
    assert stopped.stopped_early and resumed.results == straight.results
