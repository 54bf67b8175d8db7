"""Reading what runs and sweeps leave on disk, with one-line errors for anything unreadable.

A run directory (DESIGN §6): ``recipe.yaml``, ``metrics.jsonl`` (step lines with ``loss``;
epoch lines with ``val``), ``eval.json``, ``manifest.json`` and ``evals/<label>/`` (later
evaluations by ``mmcore eval``, robustness curves in ``curve.json``). A sweep directory:
``sweep.json``, ``results.csv`` and one run directory per point and seed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmcore.errors import MMCoreError
from mmcore.robustness import CURVE_FILE

GRAD_NORM = "grad_norm"  # metrics.jsonl keys grad_norm.<modality>: per-modality encoder gradient norms
SCALARS_SHOWN = ("loss", "task_loss")  # the step-line scalars plotted as training curves


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise MMCoreError(f"{path}: cannot read: {error.strerror or error}") from None
    except ValueError as error:
        raise MMCoreError(f"{path}: not valid JSON: {error}") from None


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
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
    return data


@dataclass
class Metrics:
    """metrics.jsonl split into step lines (training) and epoch lines (validation, as ``val: {metric: v}``)."""

    steps: list[dict[str, Any]] = field(default_factory=list)
    epochs: list[dict[str, Any]] = field(default_factory=list)

    def series(self, key: str) -> tuple[list[float], list[float]]:
        rows = [r for r in self.steps if isinstance(r.get(key), (int, float))]
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
    if not path.is_file():
        return metrics
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
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


def is_run(path: Path) -> bool:
    return (path / "recipe.yaml").is_file() and ((path / "eval.json").is_file() or (path / "metrics.jsonl").is_file())


def is_sweep(path: Path) -> bool:
    return (path / "sweep.json").is_file()


def later_evals(run_dir: Path) -> dict[str, dict[str, Any]]:
    """``evals/<label>/``: label -> {"eval": eval.json or None, "curve": curve.json or None}."""
    out: dict[str, dict[str, Any]] = {}
    base = run_dir / "evals"
    if not base.is_dir():
        return out
    for folder in sorted(p for p in base.iterdir() if p.is_dir()):
        entry = {
            "eval": read_eval(folder / "eval.json") if (folder / "eval.json").is_file() else None,
            "curve": read_json(folder / CURVE_FILE) if (folder / CURVE_FILE).is_file() else None,
        }
        if entry["eval"] is not None or entry["curve"] is not None:
            out[folder.name] = entry
    return out


def select_metric(recipe: dict[str, Any]) -> str | None:
    select = (recipe.get("train") or {}).get("select")
    return select.rsplit(".", 1)[-1] if isinstance(select, str) else None


def finite(values: list[float]) -> bool:
    return bool(values) and all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)
