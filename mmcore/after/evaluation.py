"""``mmcore eval RUN``: a saved run under any evaluation protocol, and robustness curves.

Results never touch the run's own ``eval.json``: they go to ``RUN/evals/<label>/`` as
``eval.json``/``eval.csv`` (the engine's format, one split) plus ``protocol.json`` — the
overrides, the conditions, the split, the checkpoint and its sha256 — so an evaluation can be
told apart and repeated. ``--curve`` adds ``curve.json`` (layout in ``mmcore.report.robustness``).

The curve: for each missing rate r (0 to 0.9 by default) and each of ``draws`` seeds, random
masks with every modality missing at rate r (``uniform``), and per modality masks with only that
modality missing at rate r (the others present); mean ± std (ddof=1) over the draws, then the
area under the curve and relative robustness of ``mmcore.report.robustness``. Masks are drawn by the
engine's evaluation conditions (per sample id, calibrated so the realised per-modality rates
equal r under ``min_present``), so every method and training seed sees the same masks. Rates
that ``min_present`` makes infeasible (uniform r > (M − min_present)/M) are left out and said so;
``min_present`` must lie in 0..M−1 (at M nothing can be missing), and a curve with fewer than two
feasible rates left is an error, not an empty table.
``--over frames`` sweeps the rate of frames dropped inside sequences instead (``mmcore.after.framecurve``).

Before anything is evaluated: the output folder ``RUN/evals/<label>/`` and its files must be
writable, and a curve under a derived label (``curve``, ``curve-frames``, ...) never replaces one
made with other ``--rates``, ``--draws`` or ``--min-present`` (``curve.json`` records them under
``settings``). Such a second curve is refused, one line naming both settings: an explicit
``--label`` keeps both, or replaces the old one when it names that folder. The derived label
already tells protocols apart (the overrides' hash), so only the curve's own settings need this.
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmcore.after.card import write_model_card
from mmcore.after.framecurve import FRAMES, check_frame_curve, frame_curve_points
from mmcore.after.runs import OpenRun, check_run_dir, open_run
from mmcore.conditions import Condition, parse_conditions
from mmcore.engine.evaluate import POOLED
from mmcore.errors import MMCoreError
from mmcore.frames import ceiling_split
from mmcore.oracle import oracle_entry, write_oracle
from mmcore.engine.record import EVAL_FILE
from mmcore.report.robustness import CURVE_FILE, summarize

SPLITS = ("test", "val")
DEFAULT_RATES = tuple(round(0.1 * k, 1) for k in range(10))  # 0.0 … 0.9
UNIFORM = "uniform"
PROTOCOL_FILE = "protocol.json"  # what was evaluated, how, with which weights
CURVE_AXES = ("rates", "frames")  # what --curve sweeps: modality missing rates, or frame drop rates


@dataclass
class EvalResult:
    out_dir: Path
    results: dict[str, dict[str, float]]  # condition -> metric -> value (the chosen split)
    curve: dict[str, Any] | None
    notes: list[str]
    pooled: dict[str, float] | None = None  # every condition's predictions scored together (engine's POOLED row)
    oracle: dict[str, dict[str, float]] | None = None  # the Bayes ceiling per condition, where the data has one


def default_label(overrides: list[str], split: str, checkpoint: str, curve: bool) -> str:
    """``curve``, ``best-test`` or a readable slug of the overrides plus a short hash of them."""
    base = "curve" if curve else f"{checkpoint}-{split}"
    if curve and (split, checkpoint) != ("test", "best"):
        base = f"curve-{checkpoint}-{split}"
    if not overrides:
        return base
    text = re.sub(r"[^A-Za-z0-9+.=_-]+", "-", "_".join(o.rpartition(".")[2] for o in overrides)).strip("-")[:48]
    return f"{base}-{text}-{hashlib.sha1(' '.join(overrides).encode()).hexdigest()[:6]}"


def _check_label(label: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9+.=_-]{0,127}", label):
        raise MMCoreError(f"--label: '{label}' must be 1-128 letters, digits or + . = _ - (it names a folder under evals/)")
    return label


def evaluate_run(
    run_dir: Path,
    overrides: list[str] | None = None,
    *,
    split: str = "test",
    checkpoint: str = "best",
    label: str | None = None,
    device: str | None = None,
    curve: bool = False,
    rates: list[float] | None = None,
    draws: int = 3,
    min_present: int = 1,
    per_modality: bool = True,
    over: str = "rates",
) -> EvalResult:
    """Evaluate a saved run; see the module docstring. Writes ``RUN/evals/<label>/``."""
    if split not in SPLITS:
        raise MMCoreError(f"--split: '{split}' is not one of: {', '.join(SPLITS)}")
    if draws < 1:
        raise MMCoreError(f"--draws: expected an integer >= 1, got {draws}")
    if over not in CURVE_AXES:
        raise MMCoreError(f"--over: '{over}' is not one of: {', '.join(CURVE_AXES)}")
    overrides = list(overrides or [])
    derived = default_label(overrides, split, checkpoint, curve)
    named = label is not None
    label = _check_label(label or (derived.replace("curve", "curve-frames", 1) if curve and over == "frames" else derived))
    settings = curve_settings(over, sorted(set(rates or DEFAULT_RATES)), draws, min_present, per_modality) if curve else None
    out = Path(run_dir) / "evals" / label
    with _owned(Path(run_dir)):
        check_run_dir(Path(run_dir), checkpoint)  # a missing run is named before its output folder
        check_eval_output(out, label, named, settings)
        with open_run(run_dir, overrides, checkpoint, device) as run:
            return _evaluate_open(run, out, split, overrides, curve, rates, draws, min_present, per_modality, over, settings)


def _evaluate_open(run: OpenRun, out: Path, split: str, overrides: list[str], curve: bool, rates: list[float] | None,
                   draws: int, min_present: int, per_modality: bool, over: str,
                   settings: dict[str, Any] | None) -> EvalResult:
    """``evaluate_run`` once the run is open and its output folder checked."""
    notes = list(run.warnings)
    plan = None
    rate_list = sorted(set(rates or DEFAULT_RATES))
    if curve and over == "rates":  # checked before any evaluation runs
        plan = curve_conditions(run.session.names, rate_list, draws, min_present, per_modality, notes)
    if curve and over == "frames":
        check_frame_curve(run, rate_list)  # likewise
    conditions = list(run.session.conditions)
    table = _evaluate(run, conditions, split)  # its average is over the protocol's conditions only
    out.mkdir(parents=True, exist_ok=True)
    _write(run, out, split, table, overrides, conditions)  # eval.json keeps the pooled row apart, as training's does
    ceiling = _oracle(run, conditions, split, out)
    write_model_card(run.run_dir)  # lists this evaluation
    results = {c: row for c, row in table.items() if c != POOLED}
    pooled = getattr(table, "pooled", None)  # engine's score() carries it as .pooled, not as a row
    curve_data = None
    if plan is not None:
        points = _evaluate(run, plan["conditions"], split)
    if curve and over == "frames":
        plan, points = frame_curve_points(run, split, rate_list, draws)
    if plan is not None:
        curve_data = summarize_curve(plan, points, run.session.names, split, draws, min_present)
        curve_data["select"] = run.session.select[1]  # the metric the run was selected by
        curve_data["settings"] = settings  # what check_eval_output compares a later curve's settings with
        (out / CURVE_FILE).write_text(json.dumps(curve_data, indent=1))
    return EvalResult(out, results, curve_data, notes, pooled, ceiling)


_SETTING_OPTIONS = {"over": "--over", "rates": "--rates", "draws": "--draws", "min_present": "--min-present",
                    "per_modality": "per_modality"}


def curve_settings(over: str, rates: list[float], draws: int, min_present: int, per_modality: bool) -> dict[str, Any]:
    """What makes two curves under one label different results (``min_present`` and the
    per-modality curves only apply to the missing-rate curve)."""
    settings: dict[str, Any] = {"over": over, "rates": [float(r) for r in rates], "draws": draws}
    if over == "rates":
        settings |= {"min_present": min_present, "per_modality": per_modality}
    return settings


def _stored_settings(data: Any) -> dict[str, Any] | None:
    """The settings a curve.json was made with; for one written before they were recorded, what
    its layout shows (the union of its curves' rates, draws, min_present). None: not a curve.json."""
    if not isinstance(data, dict) or not isinstance(data.get("curves"), dict):
        return None
    if isinstance(data.get("settings"), dict):
        return data["settings"]
    curves = data["curves"]
    over = "frames" if FRAMES in curves else "rates"
    rates = sorted({float(r) for c in curves.values() if isinstance(c, dict)
                    for r in c.get("rates") or [] if isinstance(r, (int, float))})
    legacy: dict[str, Any] = {"over": over, "rates": rates, "draws": data.get("draws")}
    if over == "rates":
        legacy["min_present"] = data.get("min_present")
    return legacy


def _describe(settings: dict[str, Any], keys: list[str]) -> str:
    def value(v: Any) -> str:
        return ",".join(f"{r:g}" if isinstance(r, (int, float)) else str(r) for r in v) if isinstance(v, list) else str(v)

    return ", ".join(f"{_SETTING_OPTIONS.get(k, k)} {value(settings.get(k))}" for k in keys)


def check_eval_output(out: Path, label: str, named: bool, settings: dict[str, Any] | None) -> None:
    """Before anything is evaluated: ``RUN/evals/<label>/`` and the files written there can be
    written, and a curve under a derived label does not replace one made with other settings.
    A label the user named (``--label``) is theirs to replace."""
    from mmcore.engine.record import read_json
    from mmcore.paths import PathError, check_output_dir, check_output_file

    try:
        check_output_dir(out, "eval", f"the evaluation '{label}' into {out}")
        for name in (EVAL_FILE, "eval.csv", PROTOCOL_FILE, *([CURVE_FILE] if settings is not None else [])):
            check_output_file(out / name, "eval")
    except PathError as exc:
        raise PathError(f"{exc}; remove it or name another --label") from None
    old_file = out / CURVE_FILE
    if settings is None or named or not old_file.is_file():
        return
    try:
        old = _stored_settings(read_json(old_file))
    except MMCoreError as exc:
        raise MMCoreError(f"{exc}; a new curve would replace it: --label {label} to do so, or name another --label") from None
    if old is None:
        raise MMCoreError(f"{old_file}: not a curve.json; a new curve would replace it: --label {label} to do so, "
                          "or name another --label")
    differ = [k for k in settings if k in old and old[k] != settings[k]]
    if differ:
        raise MMCoreError(f"--label: {out} holds a curve made with {_describe(old, differ)}, not {_describe(settings, differ)}; "
                          f"name another --label to keep both, or --label {label} to replace it")


def _oracle(run: OpenRun, conditions: list[Condition], split: str, out: Path) -> dict[str, dict[str, float]] | None:
    """The data's Bayes ceiling under this protocol's conditions (given the kept frames where
    evaluation frames are dropped), written beside the results (``mmcore.oracle``); None where
    the dataset has none."""
    from mmcore.engine.evaluate import condition_mask_table

    s = run.session
    masks = condition_mask_table(conditions, s.splits[split], len(s.names))
    entry = oracle_entry(s.dataset, {split: ceiling_split(s, split)}, {split: masks})
    write_oracle(out, entry)
    return None if entry is None else entry["results"][split]


@contextmanager
def _owned(run_dir: Path) -> Iterator[None]:
    """The run directory held while the evaluation writes into it (refused, one line naming the
    pid, while a training or another evaluation owns it), with a checkpoint write that a kill
    interrupted put right first, as ``mmcore resume`` does."""
    from mmcore.engine.checkpoint import recover
    from mmcore.engine.ownership import own_run_dir

    if not run_dir.is_dir():  # open_run says what is wrong
        yield
        return
    with own_run_dir(run_dir, "evaluate"):
        recover(run_dir / "checkpoints")
        yield


def _evaluate(run: OpenRun, conditions: list[Condition], split: str) -> dict[str, dict[str, float]]:
    from mmcore.engine.evaluate import condition_mask_table, evaluate

    s = run.session
    data = s.splits[split]
    masks = condition_mask_table(conditions, data, len(s.names))
    batch = s.plan.train.eval_batch_size
    return evaluate(s.model, data, masks, s.task, batch, s.runtime.autocast, s.runtime)


def _write(run: OpenRun, out: Path, split: str, results: dict, overrides: list[str], conditions: list[Condition]) -> None:
    from mmcore.engine.evaluate import write_eval

    protocol = {
        "split": split,
        "overrides": overrides,
        "conditions": run.recipe["missing"]["eval"]["conditions"],
        "evaluated": [c.name for c in conditions],
        "checkpoint": str(run.checkpoint.relative_to(run.run_dir)),
        "model_sha256": run.model_sha256,
        "checkpoint_verified": run.verified,
        "device": str(run.session.runtime.device),
        "precision": run.session.runtime.precision,
    }
    write_eval(out, {split: results}, {"split": split, "checkpoint": protocol["checkpoint"]})
    (out / PROTOCOL_FILE).write_text(json.dumps(protocol, indent=1))


def _rate_name(curve: str, rate: float, seed: int) -> str:
    return f"{curve}@{rate:g}#{seed}"


def curve_conditions(
    names: list[str], rates: list[float], draws: int, min_present: int, per_modality: bool, notes: list[str]
) -> dict[str, Any]:
    """The random conditions of every curve point and draw, with infeasible rates left out."""
    if not rates or any(not 0.0 <= r <= 1.0 for r in rates):
        raise MMCoreError(f"--rates: expected missing rates in [0, 1], got {rates}")
    if len(rates) < 2:
        raise MMCoreError(f"--rates: a curve needs at least two rates, got {rates}")
    if not 0 <= min_present < len(names):
        raise MMCoreError(f"--min-present: expected 0..{len(names) - 1} (modalities every curve mask keeps, fewer than "
                          f"the run's {len(names)}, so that some can be missing), got {min_present}")
    curves = {UNIFORM: {m: 1.0 for m in names}} | ({m: {m: 1.0} for m in names} if per_modality and len(names) > 1 else {})
    conditions: list[Condition] = []
    kept: dict[str, list[float]] = {}
    for curve, which in curves.items():
        kept[curve] = []
        for rate in rates:
            items = [{"random": {"rates": {m: rate for m in which}, "min_present": min_present}, "seed": seed,
                      "name": _rate_name(curve, rate, seed)} for seed in range(draws)]
            try:
                conditions += parse_conditions(items, names, where=f"curve {curve} at rate {rate:g}")
            except MMCoreError:
                continue  # infeasible under min_present
            kept[curve].append(rate)
        dropped = [r for r in rates if r not in kept[curve]]
        if dropped and curve == UNIFORM:
            notes.append(f"rates {', '.join(f'{r:g}' for r in dropped)} left out of the uniform curve: infeasible with "
                         f"min_present={min_present} over {len(names)} modalities (--min-present 0 allows them)")
        if len(kept[curve]) < 2:
            del kept[curve]
    if not kept:
        raise MMCoreError(f"--rates/--min-present: no curve has two rates feasible with min_present={min_present} over "
                          f"{len(names)} modalities (rates {', '.join(f'{r:g}' for r in rates)}); lower --min-present "
                          "or choose lower --rates")
    full = parse_conditions("full", names)[0]
    return {"conditions": [full, *conditions], "rates": kept, "full": full.name}


def summarize_curve(plan: dict[str, Any], results: dict[str, dict[str, float]], names: list[str], split: str,
                    draws: int, min_present: int) -> dict[str, Any]:
    """Mean ± std over draws per rate, and the robustness measures per metric (curve.json)."""
    full = results[plan["full"]]
    metrics = [m for m in full]
    curves: dict[str, Any] = {}
    for curve, rates in plan["rates"].items():
        entry: dict[str, Any] = {"rates": rates, "mean": {}, "std": {}, "robustness": {}}
        for metric in metrics:
            per_rate = [[results[_rate_name(curve, r, s)][metric] for s in range(draws)] for r in rates]
            entry["mean"][metric] = [statistics.fmean(v) for v in per_rate]
            entry["std"][metric] = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in per_rate]
            r = summarize(rates, entry["mean"][metric], full[metric])
            entry["robustness"][metric] = {"auc": r.auc, "mean": r.mean, "relative": r.relative}
        curves[curve] = entry
    return {"split": split, "metrics": metrics, "draws": draws, "min_present": min_present,
            "modalities": names, "full": full, "curves": curves}
