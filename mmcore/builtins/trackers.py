"""Experiment trackers as loggers: ``mmcore.mlflow`` and ``mmcore.wandb`` (optional extras).

Both receive exactly what ``metrics.jsonl`` receives (the run's record stays the source of
truth), with the same key convention as ``mmcore.tensorboard``: step scalars as ``train/<key>``,
epoch scalars under their own names (``val.macro_f1``, ``val_loss``, ``select.…``), all at the
optimisation step. The resolved recipe goes in as the tracker's parameters (MLflow params,
W&B config), flattened to dotted keys.

Nothing here reaches the network unless the user points it there: MLflow writes to a local
SQLite store inside the run directory unless ``tracking_uri`` (or ``MLFLOW_TRACKING_URI``) says
otherwise; W&B runs in ``offline`` mode unless ``mode: online`` is set (``wandb sync`` uploads
an offline run later). A resumed run continues the same tracker run: its id is kept in a small
text file in the run directory.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Literal

from mmcore.components import ContractSkip, Logger
from mmcore.errors import MMCoreError

MLFLOW_ID = "mlflow_run_id.txt"  # the MLflow run this run directory logs to (for resume)
WANDB_ID = "wandb_run_id.txt"
PARAM_LIMIT = 500  # MLflow rejects longer parameter values on some stores; longer ones are cut with "…"


def _require(module: str, extra: str, logger: str) -> Any:
    """Import ``module`` or end with one line naming the extra."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise MMCoreError(f"logging: {logger} needs the '{extra}' package; install the extra with: "
                          f"pip install 'mmcore[{extra}]'") from None


def flat_params(node: Any, prefix: str = "") -> dict[str, str]:
    """A nested recipe as ``{"model.fusion.type": "mmcore.concat", ...}`` with string values."""
    if isinstance(node, dict):
        out: dict[str, str] = {}
        for key, value in node.items():
            out.update(flat_params(value, f"{prefix}{key}."))
        return out
    text = str(node)
    return {prefix.rstrip("."): text if len(text) <= PARAM_LIMIT else text[: PARAM_LIMIT - 1] + "…"}


def _finite(scalars: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in scalars.items() if isinstance(v, (int, float)) and math.isfinite(v)}


def _recipe(run_dir: Path) -> dict[str, Any]:
    from mmcore.engine.record import RECIPE_FILE, read_yaml

    path = Path(run_dir) / RECIPE_FILE
    return read_yaml(path) if path.is_file() else {}


def _stored_id(run_dir: Path, name: str, resume_step: int | None) -> str | None:
    path = Path(run_dir) / name
    return path.read_text().strip() or None if resume_step is not None and path.is_file() else None


class MlflowLogger(Logger):
    """An MLflow run per mmcore run (optional extra ``mlflow``).

    Args:
        tracking_uri: the MLflow tracking store; null: ``MLFLOW_TRACKING_URI`` when set, else a
            SQLite store ``mlflow.db`` inside the run directory (local, no server needed).
        experiment: the MLflow experiment the run is filed under (created when missing).
    """

    def __init__(self, tracking_uri: str | None = None, experiment: str = "mmcore") -> None:
        _require("mlflow", "mlflow", "mmcore.mlflow")
        if not experiment.strip():
            raise MMCoreError("logging: mmcore.mlflow experiment must be a non-empty name")
        self.tracking_uri, self.experiment = tracking_uri, experiment
        self._client: Any = None
        self._run_id: str | None = None

    def open(self, run_dir: Path, resume_step: int | None = None) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        run_dir = Path(run_dir)
        uri = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(run_dir / 'mlflow.db').resolve()}"
        self._client = MlflowClient(tracking_uri=uri)
        self._run_id = _stored_id(run_dir, MLFLOW_ID, resume_step)
        if self._run_id is None:
            found = self._client.get_experiment_by_name(self.experiment)
            experiment_id = found.experiment_id if found else self._client.create_experiment(self.experiment)
            run = self._client.create_run(experiment_id, run_name=f"{run_dir.parent.name}/{run_dir.name}")
            self._run_id = run.info.run_id
            (run_dir / MLFLOW_ID).write_text(self._run_id + "\n")
            params = [Param(k, v) for k, v in flat_params(_recipe(run_dir)).items()]
            for start in range(0, len(params), 100):  # MLflow takes at most 100 params per batch
                self._client.log_batch(self._run_id, params=params[start : start + 100])
        else:
            self._client.update_run(self._run_id, status="RUNNING")

    def _log(self, step: int, scalars: dict[str, float], prefix: str) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(f"{prefix}{k}", v, now, step) for k, v in _finite(scalars).items()]
        for start in range(0, len(metrics), 1000):  # the store's batch limit
            self._client.log_batch(self._run_id, metrics=metrics[start : start + 1000])

    def log_step(self, step: int, scalars: dict[str, float]) -> None:
        self._log(step, scalars, "train/")

    def log_epoch(self, epoch: int, step: int, scalars: dict[str, float]) -> None:
        self._log(step, {**scalars, "epoch": epoch}, "")

    def close(self) -> None:
        if self._client is not None and self._run_id is not None:
            self._client.set_terminated(self._run_id)
        self._client = None


class WandbLogger(Logger):
    """A Weights & Biases run per mmcore run (optional extra ``wandb``), offline by default.

    Args:
        project: the W&B project.
        mode: offline (files under ``<run>/wandb``, upload later with ``wandb sync``), online, or
            disabled.
        entity: the W&B user or team; null: the account's default.
    """

    def __init__(self, project: str = "mmcore", mode: Literal["offline", "online", "disabled"] = "offline",
                 entity: str | None = None) -> None:
        _require("wandb", "wandb", "mmcore.wandb")
        self.project, self.mode, self.entity = project, mode, entity
        self._run: Any = None

    def open(self, run_dir: Path, resume_step: int | None = None) -> None:
        import wandb

        run_dir = Path(run_dir)
        run_id = _stored_id(run_dir, WANDB_ID, resume_step)
        self._run = wandb.init(
            project=self.project, entity=self.entity, mode=self.mode, dir=str(run_dir), id=run_id,
            name=f"{run_dir.parent.name}/{run_dir.name}", config=flat_params(_recipe(run_dir)),
            resume="allow" if run_id else None, reinit="create_new",
            settings=wandb.Settings(console="off", x_disable_stats=True, silent=True),
        )
        (run_dir / WANDB_ID).write_text(str(self._run.id) + "\n")

    def log_step(self, step: int, scalars: dict[str, float]) -> None:
        self._run.log({f"train/{k}": v for k, v in _finite(scalars).items()}, step=step)

    def log_epoch(self, epoch: int, step: int, scalars: dict[str, float]) -> None:
        self._run.log({**_finite(scalars), "epoch": epoch}, step=step)

    def close(self) -> None:
        if self._run is not None:
            self._run.finish()
            self._run = None


def _skip_without(module: str) -> Any:
    def options() -> dict[str, Any]:
        """The contract suite checks this logger only where its extra is installed."""
        try:
            __import__(module)
        except ImportError:
            raise ContractSkip(f"mmcore.{module} needs the '{module}' extra") from None
        return {"mode": "disabled"} if module == "wandb" else {}

    return options


MlflowLogger.contract_options = _skip_without("mlflow")  # type: ignore[attr-defined]
WandbLogger.contract_options = _skip_without("wandb")  # type: ignore[attr-defined]
