"""The one reader of the run-directory format, beside the engine that writes it (DESIGN §6).

A run directory holds ``recipe.yaml``, ``metrics.jsonl`` (step lines with ``loss``; epoch lines
with ``val.<metric>`` keys), ``eval.json`` (``{"results": {split: {condition: {metric: v}}},
"pooled": ..., "cost": ...}``), ``manifest.json``, ``checkpoints/{best,last}/`` and
``evals/<label>/`` (later evaluations by ``mmcore eval``; robustness curves in ``curve.json``).

Everything that reads those files — sweep aggregation, reports, ``eval``/``predict`` and studies —
goes through :class:`RunRecord` or the readers here, so a format change is made in one place and
every unreadable file is the same one-line error naming the file.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from mmcore.errors import MMCoreError

EVAL_FILE = "eval.json"
METRICS_FILE = "metrics.jsonl"
RECIPE_FILE = "recipe.yaml"
MANIFEST_FILE = "manifest.json"
CURVE_FILE = "curve.json"  # written by ``mmcore eval --curve`` under RUN/evals/<label>/
VAL_LOSS = "val_loss"  # epoch lines: the task loss on validation, averaged over conditions

State = Literal["finished", "resume", "fresh"]
Results = dict[str, dict[str, dict[str, float]]]  # split -> condition -> metric -> value


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise MMCoreError(f"{path}: cannot read: {error.strerror or error}") from None
    except ValueError as error:
        raise MMCoreError(f"{path}: not valid JSON: {error}") from None


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise MMCoreError(f"{path}: cannot read: {error.strerror or error}") from None
    except yaml.YAMLError as error:
        raise MMCoreError(f"{path}: not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise MMCoreError(f"{path}: expected a mapping (a resolved recipe)")
    return data


def read_eval(path: Path) -> dict[str, Any]:
    """An eval.json: ``{"results": {split: {condition: {metric: value}}}, ...}``."""
    data = read_json(path)
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, dict) or not all(isinstance(t, dict) for t in results.values()):
        raise MMCoreError(f"{path}: expected {{'results': {{split: {{condition: {{metric: value}}}}}}}}")
    for split, table in results.items():
        for condition, row in table.items():
            _check_row(path, f"results.{split}.{condition}", row)
    return data


def _check_row(path: Path, where: str, row: Any) -> None:
    """Every value of ``{metric: value}`` a number. ``null`` becomes NaN: strict JSON writers
    (JavaScript, ``allow_nan=False``) spell NaN so, and every reader then shows 'n/a' where one
    failed on it and another skipped it."""
    if not isinstance(row, dict):
        raise MMCoreError(f"{path}: {where}: expected {{metric: value}}, got {repr(row)[:80]}")
    for metric, value in row.items():
        if value is None:
            row[metric] = math.nan
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise MMCoreError(f"{path}: {where}.{metric}: expected a number, got {repr(value)[:80]}")


@dataclass
class Metrics:
    """metrics.jsonl split into step lines (training) and epoch lines (validation, as ``val: {metric: v}``)."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)

    def series(self, key: str) -> tuple[list[float], list[float]]:
        rows = [r for r in self.steps if isinstance(r.get(key), (int, float))]
        return [float(r["step"]) for r in rows], [float(r[key]) for r in rows]

    def epoch_series(self, key: str) -> tuple[list[float], list[float]]:
        """An epoch-line scalar (e.g. :data:`VAL_LOSS`) against the step it was logged at."""
        rows = [r for r in self.epochs if isinstance(r.get(key), (int, float)) and isinstance(r.get("step"), (int, float))]
        return [float(r["step"]) for r in rows], [float(r[key]) for r in rows]

    def per_modality(self, modalities: list[str]) -> dict[str, list[str]]:
        """Prefixes of keys ``<prefix>.<modality>`` in step lines -> the modalities they cover."""
        out: dict[str, list[str]] = {}
        for row in self.steps:
            for key in row:
                prefix, _, m = key.rpartition(".")
                if prefix and m in modalities and m not in out.setdefault(prefix, []):
                    out[prefix].append(m)
        return {p: [m for m in modalities if m in ms] for p, ms in out.items()}


def read_metrics(path: Path) -> Metrics:
    metrics = Metrics()
    if not Path(path).is_file():
        return metrics
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            raise MMCoreError(f"{path}:{number}: not a JSON line") from None
        if not isinstance(row, dict):
            raise MMCoreError(f"{path}:{number}: expected a JSON object")
        flat = {k[4:]: v for k, v in row.items() if k.startswith("val.")}  # the jsonl logger's epoch lines
        if isinstance(row.get("val"), dict):  # epoch lines of runs from before the logger kind
            metrics.epochs.append(row)
        elif flat and "loss" not in row:
            metrics.epochs.append({**row, "val": flat})
        elif "step" in row:
            metrics.steps.append(row)
    return metrics


def run_state(run_dir: Path) -> State:
    """``finished`` (eval.json), ``resume`` (checkpoints/last beside recipe.yaml) or ``fresh``."""
    run_dir = Path(run_dir)
    if (run_dir / EVAL_FILE).is_file():
        return "finished"
    if (run_dir / "checkpoints" / "last").is_dir() and (run_dir / RECIPE_FILE).is_file():
        return "resume"
    return "fresh"


def is_run(path: Path) -> bool:
    path = Path(path)
    return (path / RECIPE_FILE).is_file() and ((path / EVAL_FILE).is_file() or (path / METRICS_FILE).is_file())


def later_evals(run_dir: Path) -> dict[str, dict[str, Any]]:
    """``evals/<label>/``: label -> {"eval": eval.json or None, "curve": curve.json or None}."""
    out: dict[str, dict[str, Any]] = {}
    base = Path(run_dir) / "evals"
    if not base.is_dir():
        return out
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        entry = {
            "eval": read_eval(folder / EVAL_FILE) if (folder / EVAL_FILE).is_file() else None,
            "curve": read_json(folder / CURVE_FILE) if (folder / CURVE_FILE).is_file() else None,
        }
        if entry["eval"] is not None or entry["curve"] is not None:
            out[folder.name] = entry
    return out


@dataclass
class RunRecord:
    """What one run directory holds, read lazily: each file is parsed on first use, then kept."""

    path: Path
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, path: Path) -> RunRecord:
        """The record of ``path``; a one-line error when it is not a directory."""
        path = Path(path)
        if not path.is_dir():
            raise MMCoreError(f"{path}: no such run directory")
        return cls(path)

    def _get(self, key: str, read: Any) -> Any:
        if key not in self._cache:
            self._cache[key] = read()
        return self._cache[key]

    @property
    def state(self) -> State:
        return run_state(self.path)

    @property
    def finished(self) -> bool:
        return (self.path / EVAL_FILE).is_file()

    @property
    def recipe(self) -> dict[str, Any] | None:
        file = self.path / RECIPE_FILE
        return self._get("recipe", lambda: read_yaml(file) if file.is_file() else None)

    @property
    def eval(self) -> dict[str, Any] | None:
        """The whole eval.json (``results``, ``pooled``, cost figures), or None before the run ends."""
        file = self.path / EVAL_FILE
        return self._get("eval", lambda: read_eval(file) if file.is_file() else None)

    @property
    def results(self) -> Results:
        """split -> condition -> metric -> value; empty before the run ends."""
        return (self.eval or {}).get("results", {})

    @property
    def metrics(self) -> Metrics:
        return self._get("metrics", lambda: read_metrics(self.path / METRICS_FILE))

    @property
    def manifest(self) -> dict[str, Any]:
        """manifest.json, or {} when absent or unreadable (it is informative, never required)."""
        def read() -> dict[str, Any]:
            try:
                data = read_json(self.path / MANIFEST_FILE)
            except MMCoreError:
                return {}
            return data if isinstance(data, dict) else {}

        return self._get("manifest", read)

    @property
    def later_evals(self) -> dict[str, dict[str, Any]]:
        return self._get("later", lambda: later_evals(self.path))

    def value(self, split: str, condition: str, metric: str) -> float | None:
        """One number of eval.json, or None where the run did not report it."""
        v = self.results.get(split, {}).get(condition, {}).get(metric)
        return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

    def steps_done(self) -> int:
        """The last step logged in metrics.jsonl (0 when nothing was logged)."""
        steps = [int(r["step"]) for r in self.metrics.steps if isinstance(r.get("step"), int)]
        return max(steps, default=0)


def finite(values: list[float]) -> bool:
    return bool(values) and all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
