"""Loggers with a bad configuration: one line at start-up, quickly, and nothing left half-open.

Found by a fuzz of the logger options (2026-12-07): an unreachable MLflow server held the run
for 1.5-4 minutes of MLflow's retries, W&B online without network for 90 s, a ``metrics.jsonl``
name of ``../x`` wrote outside the run directory, and a logger's bad option left a run directory
behind. Nothing here needs the network: the "servers" are local sockets.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest

from mmcore import Logger, hookimpl
from mmcore.engine.trainer import run
from mmcore.errors import MMCoreError, RecipeError
from mmcore.plugins import get_registry, load_plugins
from mmcore.recipe import apply_overrides, validate_recipe
from mmcore.testing import tiny_recipe


def _with_loggers(tmp_path: Path, *nodes: dict[str, Any], registry: Any = None) -> dict[str, Any]:
    tree = {**tiny_recipe(tmp_path / "runs", "train.epochs=1"), "logging": [{"type": "mmcore.jsonl"}, *nodes]}
    return validate_recipe(apply_overrides(tree, []), registry or get_registry(), "test")


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("node", [
    {"type": "mmcore.jsonl", "filename": "../outside.jsonl"},
    {"type": "mmcore.jsonl", "filename": ""},
    {"type": "mmcore.jsonl", "filename": "sub/metrics.jsonl"},
    {"type": "mmcore.tensorboard", "subdir": ".."},
])
def test_a_file_name_outside_the_run_directory_is_a_validation_error(tmp_path: Path, node: dict[str, Any]) -> None:
    option = "filename" if "filename" in node else "subdir"
    with pytest.raises(RecipeError) as caught:
        _with_loggers(tmp_path, node)
    (problem,) = caught.value.problems
    assert problem.startswith(f"test: logging.1.{option}: expected str (a plain name inside the run directory, without '/')")


def test_mlflow_without_a_server_is_one_line_within_seconds(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    uri = f"http://127.0.0.1:{_closed_port()}"
    recipe = _with_loggers(tmp_path, {"type": "mmcore.mlflow", "tracking_uri": uri.replace("//", "//me:secret@")})
    started = time.monotonic()
    with pytest.raises(MMCoreError) as caught:
        run(recipe, show_progress=False)
    assert time.monotonic() - started < 30  # MLflow's own retries took 100 s here
    message = str(caught.value)  # the password is not printed, and not taken for the host by the probe
    assert message.startswith(f"logging: mmcore.mlflow tracking_uri {uri}: no MLflow server answers (")
    assert "Connection refused" in message and "\n" not in message and "secret" not in message


def test_a_server_that_accepts_but_never_answers_is_found_by_the_probe() -> None:
    from mmcore.builtins.trackers import unreachable

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        started = time.monotonic()
        why = unreachable(f"http://127.0.0.1:{silent.getsockname()[1]}", timeout=0.5)
    assert why is not None and "timed out" in why and time.monotonic() - started < 5


def test_mlflow_store_that_is_not_a_database_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    pytest.importorskip("sqlalchemy")
    text = tmp_path / "notes.txt"
    text.write_text("not a database\n" * 100)
    recipe = _with_loggers(tmp_path, {"type": "mmcore.mlflow", "tracking_uri": f"sqlite:///{text}"})
    with pytest.raises(MMCoreError) as caught:
        run(recipe, show_progress=False)
    message = str(caught.value)  # sqlalchemy's own message has the SQL and a URL on further lines
    assert "\n" not in message and "cannot open the tracking store (DatabaseError: " in message


def test_wandb_online_gets_a_bounded_wait_and_a_one_line_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wandb = pytest.importorskip("wandb")
    seen: dict[str, Any] = {}

    def no_network(**kwargs: Any) -> None:
        seen.update(kwargs)
        raise wandb.errors.CommError("Timed out while retrying: no such host\nConsider increasing the init_timeout setting")

    monkeypatch.setattr(wandb, "init", no_network)
    recipe = _with_loggers(tmp_path, {"type": "mmcore.wandb", "mode": "online", "init_timeout": 5})
    with pytest.raises(MMCoreError) as caught:
        run(recipe, show_progress=False)
    assert seen["settings"].init_timeout == 5 and seen["mode"] == "online"
    assert str(caught.value) == ("logging: mmcore.wandb could not start its online run (CommError: Timed out while "
                                 "retrying: no such host); mode: offline logs without network (upload later with `wandb sync`)")


CLOSED: list[str] = []


class Opens(Logger):
    def open(self, run_dir: Path, resume_step: int | None = None) -> None:
        pass

    def close(self) -> None:
        CLOSED.append("opens")


class FailsToOpen(Logger):
    def open(self, run_dir: Path, resume_step: int | None = None) -> None:
        raise MMCoreError("logging: faults.fails cannot reach its store")


class FaultPlugin:
    @hookimpl
    def register_loggers(self, register: Any) -> None:
        register("faults.opens", Opens)
        register("faults.fails", FailsToOpen)


def test_a_logger_opened_before_another_failed_is_closed(tmp_path: Path) -> None:
    CLOSED.clear()
    registry = load_plugins(extra={"faults": FaultPlugin()}).registry
    recipe = _with_loggers(tmp_path, {"type": "faults.opens"}, {"type": "faults.fails"}, registry=registry)
    with pytest.raises(MMCoreError, match="cannot reach its store"):
        run(recipe, plugins=load_plugins(extra={"faults": FaultPlugin()}), show_progress=False)
    assert CLOSED == ["opens"]  # a W&B run or an open file would otherwise be left until the process ends


def test_a_logger_that_cannot_be_built_leaves_no_run_directory(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    recipe = _with_loggers(tmp_path, {"type": "mmcore.mlflow", "experiment": "  "})
    with pytest.raises(MMCoreError, match="experiment must be a non-empty name"):
        run(recipe, show_progress=False)
    assert not (tmp_path / "runs").exists()
