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
from mmcore.options.hints import Positive

MLFLOW_ID = "mlflow_run_id.txt"  # the MLflow run this run directory logs to (for resume)
WANDB_ID = "wandb_run_id.txt"
PARAM_LIMIT = 500  # MLflow rejects longer parameter values on some stores; longer ones are cut with "…"
PROBE_SECONDS = 5.0  # how long an MLflow server may take to answer before the run refuses to start


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


def _first_line(exc: BaseException) -> str:
    """The first non-empty line of an error: trackers put SQL, hints and URLs on the lines after it."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def without_credentials(uri: str) -> str:
    """``uri`` without a ``user:password@`` part: for messages, and for the probe (urllib would
    take the credentials for the host name)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(uri)
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2])) if "@" in parts.netloc else uri


def unreachable(url: str, timeout: float = PROBE_SECONDS) -> str | None:
    """Why no HTTP server answers at ``url`` within ``timeout`` seconds; None when one does.

    MLflow retries a refused connection 7 times with a growing backoff, 1.5-4 minutes before the
    run's first step (measured: 100 s for http://127.0.0.1:9). Any HTTP answer, an error status
    included, means a server is there; MLflow itself reports what it says."""
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(without_credentials(url).rstrip("/") + "/health", timeout=timeout).close()
    except urllib.error.HTTPError:
        return None
    except urllib.error.URLError as exc:
        return str(exc.reason)
    except (OSError, ValueError) as exc:  # a timeout on reading, a malformed URL
        return str(exc) or type(exc).__name__
    return None


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
        run_dir = Path(run_dir)
        uri = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(run_dir / 'mlflow.db').resolve()}"
        shown = without_credentials(uri)
        if uri.lower().startswith(("http://", "https://")):
            why = unreachable(uri)
            if why is not None:
                raise MMCoreError(f"logging: mmcore.mlflow tracking_uri {shown}: no MLflow server answers ({why}); "
                                  "expected a running tracking server, or leave tracking_uri unset for a local store")
        try:
            self._start(run_dir, uri, resume_step)
        except MMCoreError:
            raise
        except Exception as exc:  # a file where a store should be, a bad scheme, a server error
            raise MMCoreError(f"logging: mmcore.mlflow tracking_uri {shown}: cannot open the tracking store "
                              f"({_first_line(exc)})") from exc

    def _start(self, run_dir: Path, uri: str, resume_step: int | None) -> None:
        """A new MLflow run with the recipe as its parameters, or the stored one continued."""
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

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
        init_timeout: seconds ``mode: online`` may wait for the W&B server before the run
            refuses to start (W&B's own default, 90 s, kept a run without network waiting
            1.5 minutes and more).
    """

    def __init__(self, project: str = "mmcore", mode: Literal["offline", "online", "disabled"] = "offline",
                 entity: str | None = None, init_timeout: Positive = 30.0) -> None:
        _require("wandb", "wandb", "mmcore.wandb")
        self.project, self.mode, self.entity, self.init_timeout = project, mode, entity, init_timeout
        self._run: Any = None

    def open(self, run_dir: Path, resume_step: int | None = None) -> None:
        import wandb

        run_dir = Path(run_dir)
        run_id = _stored_id(run_dir, WANDB_ID, resume_step)
        try:
            self._run = wandb.init(
                project=self.project, entity=self.entity, mode=self.mode, dir=str(run_dir), id=run_id,
                name=f"{run_dir.parent.name}/{run_dir.name}", config=flat_params(_recipe(run_dir)),
                resume="allow" if run_id else None, reinit="create_new",
                settings=wandb.Settings(console="off", x_disable_stats=True, silent=True, init_timeout=self.init_timeout),
            )
        except Exception as exc:  # no API key, no network (online), an unwritable run directory
            hint = "; mode: offline logs without network (upload later with `wandb sync`)" if self.mode == "online" else ""
            raise MMCoreError(f"logging: mmcore.wandb could not start its {self.mode} run ({_first_line(exc)}){hint}") from exc
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
