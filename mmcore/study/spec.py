"""The study file: a recipe, a budget, seeds, arms, axes, an optional tuning grid and the analysis.

    name: ra-vs-uniform
    recipe: ../recipes/redcore_handwritten.yaml    # relative to the study file
    overrides: {train.optimizer.implementation: fused}   # optional, every run
    budget: {epochs: 40}                           # or {steps: 440}: every arm gets exactly this
    seeds: 10                                      # 10 -> 0..9; or [0, 3, 5]; or "0-4"
    arms:                                          # named override sets on the recipe
      redcore: {balancer: redcore.relative_advantage}
      uniform: {balancer: mmcore.uniform}
      uniform-dropout: {from: uniform, train.modality_dropout: 0.3, only: {rates: [imbalanced]}, tuned_as: uniform}
    axes:                                          # crossed with every arm (``only`` restricts an arm)
      rates:
        imbalanced: {missing.train.rates: {...}}
        balanced: {missing.train.rates: {...}}
    tune: {space: {train.optimizer.lr: [3.0e-4, 1.0e-3]}, seeds: 2, select: val.macro_f1}
    # or Optuna's seeded TPE (extra `tune`): space {train.optimizer.lr: {low: 1.0e-4, high: 1.0e-2, log: true}},
    #   optuna: {trials: 20, seed: 0}; lists are categorical there (mmcore.study.tpe)
    analysis:
      primary: test.average.macro_f1
      compare: [[redcore, uniform]]                # one Holm family; or family name -> pairs
      interaction: {axis: rates, levels: [imbalanced, balanced], pairs: [[redcore, uniform]]}   # or a list
      secondary: [test.single_views.macro_f1]

``from: other`` starts an arm from another arm's overrides (and its ``only``); an arm's own keys
win. ``only: {axis: [levels]}`` runs the arm on those levels of that axis only; a list of such
mappings runs it on the union (``[{policy: fixed}, {rates: [imbalanced]}]``: every fixed-mask
cell plus the imbalanced ones), which is how a grid that is not a full product is written.
``tuned_as: other`` skips the arm's own tuning and trains it at the values ``other`` chose (an
ablation of a tuned method at that method's rate). ``compare`` as a mapping declares several
Holm families (``{vs-redcore: [[redcore, uniform]], ingredients: [[a, b]]}``), each corrected
over exactly its own pairs. Every problem is one line naming the file and key;
:class:`StudyError` exits with 2 before anything starts.

A study file is read with the recipe rules (:func:`mmcore.recipe.loader.parse_yaml`: YAML 1.2
scalars, duplicate keys refused, plain data only, size bounds; a FIFO or device is refused before
it is opened). Arm, level and study names become folder names, so each must be one safe path
component (:func:`_safe_name`). A study has at most ``MAX_SEEDS`` seeds (a typo such as
``0-40000`` for ``0-4`` is an error, not hours of validation), and endpoints name metrics the
study's task reports (its dataset's ``describe``; every metric mmcore computes when it cannot say).
The analysis section, the pre-registration, is read by :mod:`mmcore.study.spec_analysis`.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmcore.errors import MMCoreError, RecipeError
from mmcore.paths import is_readable_kind
from mmcore.recipe.loader import parse_yaml
from mmcore.report.analysis import MIN_SEEDS
from mmcore.study.spec_analysis import Analysis, Interaction, endpoint, metric_named, parse_analysis
from mmcore.study.spec_errors import StudyError, fail as _fail
from mmcore.study.task_metrics import Metrics, study_metrics
from mmcore.sweep.grid import MAX_SEEDS, parse_seeds

TOP_KEYS = ("name", "recipe", "overrides", "budget", "seeds", "arms", "axes", "tune", "analysis", "output")
TUNE_KEYS = ("space", "seeds", "select", "at", "optuna")
ARM_META = ("from", "only", "tuned_as")
SEEDS_EXPECTED = "expected a count, a list of non-negative integers or a range like 0-4"


@dataclass(frozen=True)
class Tune:
    space: dict[str, Any]  # key -> [values] (a grid axis; categorical under Optuna) or {low, high, log} (Optuna)
    seeds: list[int]
    select: str  # val.<metric> (or val.<condition>.<metric>)
    at: dict[str, str]  # axis -> the level tuning runs on
    trials: int | None = None  # Optuna TPE trials instead of the grid (mmcore.study.tpe)
    sampler_seed: int = 0  # the TPE sampler's seed: the same study file suggests the same trials


@dataclass(frozen=True)
class Study:
    path: Path
    name: str
    recipe: Path
    overrides: dict[str, Any]
    budget: dict[str, int]
    seeds: list[int]
    arms: dict[str, dict[str, Any]]  # resolved: ``from`` applied, meta keys removed
    only: dict[str, list[dict[str, list[str]]]]  # arm -> alternatives (axis -> levels); [] = everywhere
    tuned_as: dict[str, str]  # arm -> the arm whose tuned values it trains at (not tuned itself)
    axes: dict[str, dict[str, dict[str, Any]]]
    tune: Tune | None
    analysis: Analysis
    output: Path | None
    raw: dict[str, Any] = field(repr=False)
    metrics: Metrics = field(repr=False)  # the metric names endpoints may use (task_metrics)

    @property
    def analysis_text(self) -> str:
        """The analysis section, canonical JSON: what the pre-registration freezes."""
        return json.dumps(self.raw.get("analysis"), sort_keys=True)

    def file_hash(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def read_plain(path: Path, what: str = "a study file") -> Any:
    """The file's plain data, read as recipes are (the loader's rules); problems as one line.
    ``what`` names the file's role in errors."""
    if path.exists() and not is_readable_kind(path):  # a FIFO would block the read forever
        raise StudyError(f"{path}: not a regular file (a FIFO, device or socket), not {what}")
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise StudyError(f"{path}: cannot read: no such file; expected {what}") from None
    except IsADirectoryError:
        raise StudyError(f"{path}: is a directory; expected {what}") from None
    except UnicodeDecodeError as error:
        raise StudyError(f"{path}: not UTF-8 text (byte {error.start})") from None
    except OSError as error:
        raise StudyError(f"{path}: cannot read: {error.strerror or error}") from None
    try:
        return parse_yaml(text, str(path))
    except RecipeError as error:  # already "file:line: what"; one line, however many problems
        more = len(error.problems) - 1
        raise StudyError(error.problems[0] + (f" (and {more} more)" if more > 0 else "")) from None


def _safe_name(path: Path, key: str, value: Any, what: str) -> str:
    """A name that becomes a folder: one path component that cannot climb out or read as an option."""
    if not isinstance(value, str):
        raise _fail(path, key, f"expected {'an' if what[0] in 'aeiou' else 'a'} {what} (a string), got {value!r}")
    if (not value or value in (".", "..") or any(c in value for c in "/\\") or value[0] == "-"
            or value != value.strip() or any(not c.isprintable() for c in value)):
        raise _fail(path, key, f"{value!r} is not a usable {what}: expected one folder name (no '/' or '\\', "
                    "not '.' or '..', no leading '-' or surrounding spaces, no control characters)")
    return value


def load_study(path: Path) -> Study:
    """Parse and check a study file; every problem raises one line naming the file and key."""
    path = Path(path)
    raw = read_plain(path)
    if not isinstance(raw, dict):
        raise _fail(path, "(top level)", "expected a mapping with name, recipe, seeds, arms and analysis")
    unknown = [k for k in raw if k not in TOP_KEYS]
    if unknown:
        raise _fail(path, str(unknown[0]), f"unknown key; expected one of {', '.join(TOP_KEYS)}")
    for key in ("name", "recipe", "seeds", "arms", "analysis"):
        if key not in raw:
            raise _fail(path, key, "missing; every study names it")
    if not isinstance(raw["name"], str) or not raw["name"].strip():
        raise _fail(path, "name", "expected a non-empty string")
    _safe_name(path, "name", raw["name"], "study name")
    recipe = (path.parent / str(raw["recipe"])).resolve()
    if not recipe.is_file():
        raise _fail(path, "recipe", f"no such file {recipe} (paths are relative to the study file)")
    axes = _axes(path, raw.get("axes") or {})
    arms, only, tuned_as = _arms(path, raw["arms"], axes)
    seeds = _seeds(path, "seeds", raw["seeds"])
    overrides = _mapping(path, "overrides", raw.get("overrides") or {})
    metrics = study_metrics(recipe, [[overrides], *([lv for lv in levels.values()] for levels in axes.values()), list(arms.values())])
    analysis = parse_analysis(path, raw["analysis"], arms, axes, len(seeds), metrics)
    output = raw.get("output")
    return Study(
        path=path, name=raw["name"], recipe=recipe, overrides=overrides,
        budget=_budget(path, raw.get("budget") or {}), seeds=seeds, arms=arms, only=only, tuned_as=tuned_as, axes=axes,
        tune=_tune(path, raw.get("tune"), axes, metrics), analysis=analysis,
        output=(path.parent / str(output)) if output else None, raw=raw, metrics=metrics,
    )


def _mapping(path: Path, key: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise _fail(path, key, "expected a mapping of recipe keys (dotted paths) to values")
    return dict(value)


def _seeds(path: Path, key: str, value: Any) -> list[int]:
    """A count (0..N-1), a list (sorted, repeats dropped) or text ``0-4,7`` (in order, no repeats);
    seeds are non-negative (as the recipe's ``seed``) and at most ``MAX_SEEDS`` of them."""
    too_many = f"more than {MAX_SEEDS} seeds; a study has at most {MAX_SEEDS}"
    if isinstance(value, bool):
        raise _fail(path, key, SEEDS_EXPECTED)
    if isinstance(value, int):
        if value < 1:
            raise _fail(path, key, "expected at least 1 seed")
        if value > MAX_SEEDS:
            raise _fail(path, key, f"{value} is {too_many}")
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        if any(s < 0 for s in value):
            raise _fail(path, key, f"seed {min(value)} is negative; {SEEDS_EXPECTED}")
        seeds = sorted(set(value))
        if len(seeds) > MAX_SEEDS:
            raise _fail(path, key, f"{len(seeds)} seeds is {too_many}")
        return seeds
    if not isinstance(value, str):
        raise _fail(path, key, SEEDS_EXPECTED)
    try:
        return parse_seeds(value, key)
    except MMCoreError as error:
        raise StudyError(f"{path}: {error}") from None


def _budget(path: Path, value: Any) -> dict[str, int]:
    if not isinstance(value, dict) or len(value) > 1 or any(k not in ("steps", "epochs") for k in value):
        raise _fail(path, "budget", "expected {steps: N} or {epochs: N}")
    for k, v in value.items():
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise _fail(path, f"budget.{k}", "expected a positive integer")
    return dict(value)


def _axes(path: Path, value: Any) -> dict[str, dict[str, dict[str, Any]]]:
    if not isinstance(value, dict):
        raise _fail(path, "axes", "expected axis -> level -> overrides")
    axes: dict[str, dict[str, dict[str, Any]]] = {}
    for axis, levels in value.items():
        if not isinstance(levels, dict) or not levels:
            raise _fail(path, f"axes.{axis}", "expected at least one level: level -> overrides")
        for lv in levels:  # a level's name is a folder of the run directories
            _safe_name(path, f"axes.{axis}", str(lv), "level name")
        axes[str(axis)] = {str(lv): _mapping(path, f"axes.{axis}.{lv}", ov or {}) for lv, ov in levels.items()}
    return axes


Only = list[dict[str, list[str]]]  # alternatives: a cell runs when it matches any one of them


def _arms(path: Path, value: Any, axes: dict[str, dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], dict[str, Only], dict[str, str]]:
    """Resolve ``from`` (the base's overrides and ``only``, the arm's own keys winning) and ``tuned_as``."""
    if not isinstance(value, dict) or not value:
        raise _fail(path, "arms", "expected at least one arm: name -> overrides")
    for name, body in value.items():  # every name a folder, every body a mapping, before any is resolved
        _safe_name(path, "arms", name, "arm name")
        _mapping(path, f"arms.{name}", body or {})
        for meta in ("from", "tuned_as"):
            if (body or {}).get(meta) is not None and not isinstance(body[meta], str):
                raise _fail(path, f"arms.{name}.{meta}", f"expected an arm name (a string), got {body[meta]!r}")
    arms: dict[str, dict[str, Any]] = {}
    only: dict[str, Only] = {}
    tuned_as: dict[str, str] = {}

    def resolve(name: str, trail: tuple[str, ...]) -> None:
        if name in arms:
            return
        body = _mapping(path, f"arms.{name}", value[name] or {})
        base, own_only, twin = body.pop("from", None), body.pop("only", None), body.pop("tuned_as", None)
        overrides: dict[str, Any] = {}
        restrict: Only = []
        if base is not None:
            if base not in value:
                raise _fail(path, f"arms.{name}.from", f"'{base}' is not an arm; expected one of {', '.join(value)}")
            if base in trail:
                raise _fail(path, f"arms.{name}.from", f"circular: {' -> '.join((*trail, name, base))}")
            resolve(base, (*trail, name))
            overrides, restrict = dict(arms[base]), list(only[base])
        overrides.update(body)
        arms[name], only[name] = overrides, _only(path, name, own_only, axes) if own_only is not None else restrict
        if twin is not None:
            if twin not in value or twin == name or (value[twin] or {}).get("tuned_as") is not None:
                raise _fail(path, f"arms.{name}.tuned_as", "expected another arm that is tuned itself (no tuned_as of its own)")
            tuned_as[name] = str(twin)

    for name in value:
        resolve(name, ())
    return {n: arms[n] for n in value}, {n: only[n] for n in value}, tuned_as


def _only(path: Path, arm: str, value: Any, axes: dict[str, dict[str, Any]]) -> Only:
    alternatives = value if isinstance(value, list) else [value]
    if not alternatives or not all(isinstance(a, dict) and a for a in alternatives):
        raise _fail(path, f"arms.{arm}.only", "expected axis -> [levels], or a list of such mappings")
    out: Only = []
    for alternative in alternatives:
        one = {}
        for axis, levels in alternative.items():
            if axis not in axes:
                raise _fail(path, f"arms.{arm}.only.{axis}", f"not an axis; expected one of {', '.join(axes) or '(none)'}")
            levels = [levels] if isinstance(levels, str) else levels
            bad = ([lv for lv in levels or [] if not isinstance(lv, str) or lv not in axes[axis]]
                   if isinstance(levels, list) else [levels])
            if bad or not levels:
                raise _fail(path, f"arms.{arm}.only.{axis}", f"expected levels among {', '.join(axes[axis])}")
            one[str(axis)] = [str(lv) for lv in levels]
        out.append(one)
    return out


def _tune(path: Path, value: Any, axes: dict[str, dict[str, Any]], metrics: Metrics | None = None) -> Tune | None:
    if value is None:
        return None
    if not isinstance(value, dict) or "space" not in value:
        raise _fail(path, "tune", "expected {space: {key: [values]}, seeds: N, select: val.METRIC}")
    unknown = [k for k in value if k not in TUNE_KEYS]
    if unknown:
        raise _fail(path, f"tune.{unknown[0]}", f"unknown key; expected one of {', '.join(TUNE_KEYS)}")
    trials, sampler_seed = _optuna(path, value.get("optuna"))
    space = _mapping(path, "tune.space", value["space"])
    for key, values in space.items():
        if isinstance(values, dict) and trials is not None:
            _range(path, f"tune.space.{key}", values)
        elif not isinstance(values, list) or not values:
            raise _fail(path, f"tune.space.{key}", "expected a non-empty list of values"
                        + (" or a range {low: a, high: b, log: true|false}" if trials is not None else ""))
    select = str(value.get("select", "val.macro_f1"))
    if not select.startswith("val."):
        raise _fail(path, "tune.select", "expected val.<metric>: tuning never reads the test split")
    if metrics is not None and len(select.split(".")) in (2, 3) and all(select.split(".")):
        metric_named(path, "tune.select", select.split(".")[-1], metrics)
    at = value.get("at") or {}
    if not isinstance(at, dict) or any(a not in axes or not isinstance(lv, str) or lv not in axes[a] for a, lv in at.items()):
        raise _fail(path, "tune.at", "expected axis -> one level of that axis")
    at = {a: str(at.get(a, next(iter(levels)))) for a, levels in axes.items()}
    return Tune(space, _seeds(path, "tune.seeds", value.get("seeds", 1)), select, at, trials, sampler_seed)


def _optuna(path: Path, value: Any) -> tuple[int | None, int]:
    """``tune.optuna: {trials: N, seed: S}`` -> (N, S); (None, 0) for the grid."""
    if value is None:
        return None, 0
    if not isinstance(value, dict) or any(k not in ("trials", "seed") for k in value):
        raise _fail(path, "tune.optuna", "expected {trials: N, seed: S (optional, default 0)}")
    trials, seed = value.get("trials"), value.get("seed", 0)
    if not isinstance(trials, int) or isinstance(trials, bool) or trials < 1:
        raise _fail(path, "tune.optuna.trials", "expected a positive integer")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise _fail(path, "tune.optuna.seed", "expected an integer")
    return trials, seed


def _range(path: Path, key: str, spec: dict[str, Any]) -> None:
    low, high = spec.get("low"), spec.get("high")
    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high))
    if set(spec) - {"low", "high", "log"} or not numbers or not low < high or (spec.get("log") and low <= 0):
        raise _fail(path, key, "expected a range {low: a, high: b > a, log: true|false} (log needs a > 0)")


__all__ = ["MAX_SEEDS", "MIN_SEEDS", "Analysis", "Interaction", "Study", "StudyError", "Tune", "endpoint", "load_study", "read_plain"]
