"""``MODEL_CARD.md``: what a run is, on one page, generated from the run's own files.

Why: a trained model leaves the lab as a directory; whoever receives it needs to know what data
(and which checksums) it saw, under which missingness it was trained and selected, how it does
per availability condition, and what its inputs must look like — without reading JSON. The card
is generated from ``manifest.json``, ``recipe.yaml``, ``eval.json`` and ``transform.json`` only,
so it never disagrees with them; ``run`` writes it, ``eval`` and ``export`` refresh it (listing
their outputs under ``evals/`` and ``exports/``).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path
from typing import Any

import yaml

from mmcore.report.html import number
from mmcore.text import markdown_cell

CARD_FILE = "MODEL_CARD.md"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _present(condition: str, names: set[str]) -> int | None:
    parts = condition.split("+")
    return len(parts) if names and all(p in names for p in parts) else None


def _metrics_section(results: dict[str, dict[str, float]]) -> list[str]:
    """Per-condition test metrics, sorted by present modalities then name, and averages by count."""
    rows = {c: r for c, r in results.items() if isinstance(r, dict)}
    names = {p for c in rows for p in c.split("+") if c != "average"}
    full = max(rows, key=lambda c: len(c.split("+")), default="")
    names = set(full.split("+")) if full else names
    metrics = list(next(iter(rows.values()), {}))
    if not metrics:
        return ["No test results recorded (the run stopped before its final evaluation)."]
    by_count: dict[int, list[dict[str, float]]] = {}
    header = " | ".join(markdown_cell(m) for m in metrics)  # names from plugins and recipes: never markup
    lines = ["| condition | present | " + header + " |", "|" + " --- |" * (len(metrics) + 2)]
    order = sorted(rows, key=lambda c: (_present(c, names) or 99, c))
    for c in order:
        k = _present(c, names)
        if k is not None:
            by_count.setdefault(k, []).append(rows[c])
        shown = " | ".join(_number(rows[c].get(m)) for m in metrics)
        lines.append(f"| {markdown_cell(c)} | {k if k is not None else '—'} | {shown} |")
    lines += ["", "Averages by number of present modalities:", "",
              "| present | conditions | " + header + " |", "|" + " --- |" * (len(metrics) + 2)]
    for k in sorted(by_count):
        group = by_count[k]
        means = [_mean([r[m] for r in group if m in r]) for m in metrics]
        lines.append(f"| {k} | {len(group)} | " + " | ".join(_number(v) for v in means) + " |")
    return lines


def _number(value: Any) -> str:
    """A metric as the reports show it (NaN as n/a, not ``nan``); a missing or non-numeric one as n/a."""
    return number(float(value)) if isinstance(value, (int, float)) and not isinstance(value, bool) else "n/a"


def _mean(values: list[Any]) -> float:
    """The mean of a group's numbers, NaN when one is not a number or the sum is not finite."""
    if not values or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return math.nan
    try:
        return statistics.fmean(values)
    except (OverflowError, ValueError):  # opposite infinities, or sums past the float range
        return math.nan


def _mechanism(train: dict[str, Any]) -> str:
    """``mcar``, or ``mar on <modality>`` / ``mnar on self|label`` with its strength (mmcore.mechanisms)."""
    mechanism = train.get("mechanism", "mcar")
    if mechanism == "mcar":
        return "`mcar`"
    return f"`{mechanism}` on `{train.get('depends_on') or 'self'}` (strength {train.get('strength', 2.0):g})"


def _training_section(recipe: dict[str, Any]) -> list[str]:
    train = (recipe.get("missing") or {}).get("train") or {}
    rates = train.get("rates") or {}
    values = [float(v) for v in rates.values()]
    span = f"{min(values):g} to {max(values):g}" if values else "none (all modalities present)"
    cfg = recipe.get("train") or {}
    return [
        f"- missing rates: {json.dumps(rates) if rates else 'none'}" + (f", sample_rate {train['sample_rate']}" if train.get("sample_rate") is not None else ""),
        f"- range of per-modality missing rates trained on: {span}; mechanism: {_mechanism(train)}, "
        f"policy `{train.get('policy', 'fixed')}`, min_present {train.get('min_present', 1)}",
        f"- selection: `{cfg.get('select')}` on validation; epochs {cfg.get('epochs')}, batch {cfg.get('batch_size')}, "
        f"optimizer {json.dumps(cfg.get('optimizer'))}",
        f"- modality dropout: {cfg.get('modality_dropout') or 0}",
    ]


def _model_section(recipe: dict[str, Any]) -> list[str]:
    model = recipe.get("model") or {}
    encoders = model.get("encoders") or {}
    enc = ", ".join(f"{m}: `{n.get('type')}`" for m, n in encoders.items() if isinstance(n, dict))
    return [
        f"- encoders: {enc}",
        f"- imputer: `{(model.get('imputer') or {}).get('type')}`; fusion: `{(model.get('fusion') or {}).get('type')}`; "
        f"latent dim {model.get('dim')}; unimodal heads: {'yes' if model.get('unimodal_heads') else 'no'}",
        f"- balancer: `{(recipe.get('balancer') or {}).get('type')}`",
    ]


def _inputs_section(transform: dict[str, Any]) -> list[str]:
    if not transform:
        return ["No input transform was stored (a run from before transforms were stored): prepare inputs as the "
                "dataset prepared its splits and call `mmcore predict --input-form model`."]
    if not transform.get("declared"):
        return ["The dataset declares no input transform: `mmcore predict` feeds inputs to the model as given."]
    steps = transform.get("modalities") or {}
    if not steps:
        return ["The dataset's features are the model's inputs (identity transform)."]
    lines = ["`mmcore predict` (default `--input-form raw`) applies, per modality (`transform.json`, "
             "`transform.safetensors`):", ""]
    lines += [f"- {m}: `{s.get('rule')}` with {', '.join(s.get('stats', []))}" for m, s in steps.items()]
    return lines


def _listing(run_dir: Path, folder: str) -> list[str]:
    base = run_dir / folder
    if not base.is_dir():
        return []
    return [f"- `{folder}/{p.name}`" for p in sorted(base.iterdir()) if not p.name.startswith(".")]


def _run_recipe(run_dir: Path) -> dict[str, Any]:
    """The run's ``recipe.yaml`` as plain data, ``{}`` when damaged (a card still says what is known).

    Read with libyaml's safe loader where PyYAML has it: the card is rewritten at every checkpoint,
    and ``load_yaml``'s recipe checks (duplicate keys, size bounds) on the file mmcore wrote cost
    a tenth of a tiny run's time and change nothing a card shows."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        recipe = yaml.load((run_dir / "recipe.yaml").read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - a safe loader
    except Exception:  # noqa: BLE001 - unreadable, not UTF-8, not YAML
        return {}
    return recipe if isinstance(recipe, dict) else {}


def model_card(run_dir: Path) -> str:
    """The card's Markdown text (see the module docstring for its sources)."""
    run_dir = Path(run_dir)
    recipe = _run_recipe(run_dir)
    manifest = _read_json(run_dir / "manifest.json")
    evaluation = _read_json(run_dir / "eval.json")
    transform = _read_json(run_dir / "transform.json")
    dataset = recipe.get("dataset") or {}
    test = (evaluation.get("results") or {}).get("test") or {}
    lines = [f"# Model card: {recipe.get('name', run_dir.name)}", "",
             f"Run `{run_dir.name}`, created {manifest.get('created', '?')}. Generated from manifest.json, "
             "recipe.yaml, eval.json and transform.json; do not edit (rewritten by `mmcore run`, `eval`, `export`).", "",
             "## Data", "", f"- dataset: `{dataset.get('type')}` with options "
             f"{json.dumps({k: v for k, v in dataset.items() if k != 'type'})}"]
    lines += [f"- sha256 of the {split} split: `{digest}`" for split, digest in (manifest.get("data_sha256") or {}).items()]
    lines += ["", "## Inputs", "", *_inputs_section(transform), "", "## Model", "", *_model_section(recipe),
              "", "## Training", "", *_training_section(recipe), f"- best epoch: {evaluation.get('best_epoch')}", "",
              "## Test metrics per availability condition", "", *_metrics_section(test), "",
              "## Versions", "", f"- mmcore {manifest.get('mmcore')}, torch {manifest.get('torch')}, python {manifest.get('python')}",
              "- plugins: " + ", ".join(f"{p.get('name')} {p.get('version')}" for p in manifest.get("plugins") or []),
              f"- git {manifest.get('git')}; device {manifest.get('device')} ({manifest.get('device_name')}), "
              f"precision {manifest.get('precision')}, seed {manifest.get('seed')}"]
    for folder, title in (("evals", "Later evaluations"), ("exports", "Exports")):
        listed = _listing(run_dir, folder)
        if listed:
            lines += ["", f"## {title}", "", *listed]
    return "\n".join(lines) + "\n"


def write_model_card(run_dir: Path) -> Path | None:
    """Write ``RUN/MODEL_CARD.md``; ``None`` when the folder cannot be written (a card never fails a run)."""
    path = Path(run_dir) / CARD_FILE
    try:
        path.write_text(model_card(Path(run_dir)))
    except OSError:
        return None
    return path
