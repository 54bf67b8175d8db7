"""A study's runs: tuning candidates first, then every arm × axis levels × seed, each a fixed directory.

Layout of the study directory::

    prereg.json                          the frozen analysis, the file's hash, amendments
    tune/<arm>/c<k>/seed<s>/             tuning runs (candidate k of the space; validation only)
    runs/<arm>/<level>[+<level>]/seed<s>/  the study's runs, at each arm's chosen values
    logs/<same path>.log                 each run's stdout and stderr
    locks/<same path>/.lock              the claim one invocation holds while it runs that run

A run's overrides, in order: the study's ``overrides``, the axis levels, the arm, the tuned
values, the budget (last, so no arm can change it: ``train.epochs`` and the recipe's schedule
scaled to it, :mod:`mmcore.study.budget`) and the seed. Every recipe is validated
before anything starts and every problem is reported at once.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmcore.errors import RecipeError
from mmcore.recipe import apply_overrides, load_yaml, validate_recipe
from mmcore.recipe.buildcheck import one_build_per_node
from mmcore.registry import Registry
from mmcore.study.budget import StepBudget, scaled_schedule
from mmcore.study.spec import Study, StudyError

NO_AXES = "base"  # the level slug of a study without axes


@dataclass
class StudyRun:
    """One run of a study; the attributes the sweep runner reads (run_dir, log, recipe, name)."""

    kind: str  # "tune" or "main"
    arm: str
    levels: dict[str, str]
    seed: int
    values: dict[str, Any]  # the tuned values it trains with (a candidate, or the chosen one)
    rel: str  # path relative to the study directory: tune/<arm>/c<k>/seed<s> or runs/...
    study_dir: Path
    recipe: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def run_dir(self) -> Path:
        return self.study_dir / self.rel

    @property
    def log(self) -> Path:
        return self.study_dir / "logs" / f"{self.rel}.log"

    @property
    def claim(self) -> Path:
        return self.study_dir / "locks" / self.rel

    @property
    def name(self) -> str:
        return self.rel


def level_slug(levels: dict[str, str]) -> str:
    return "+".join(levels.values()) or NO_AXES


def cells(study: Study) -> list[tuple[str, dict[str, str]]]:
    """(arm, axis levels) for every arm on every level combination it runs on, in file order."""
    combos = [dict(zip(study.axes, c)) for c in itertools.product(*(list(v) for v in study.axes.values()))]
    out = []
    for arm in study.arms:
        alternatives = study.only.get(arm) or [{}]
        out += [(arm, c) for c in combos
                if any(all(c[a] in levels for a, levels in alt.items()) for alt in alternatives)]
    return out


def tuned_arms(study: Study) -> list[str]:
    """The arms tuning runs for: every arm without ``tuned_as``."""
    return [arm for arm in study.arms if arm not in study.tuned_as]


def candidates(study: Study) -> list[dict[str, Any]]:
    """The tuning grid's points (the full product of ``tune.space``), in file order; with Optuna,
    the two corners of the space (every first choice or low end, every last or high end), which
    validation checks before any trial is drawn."""
    if study.tune is None:
        return [{}]
    if study.tune.trials is not None:
        ends = [{k: v[i] if isinstance(v, list) else v["low" if i == 0 else "high"] for k, v in study.tune.space.items()} for i in (0, -1)]
        return ends[:1] if ends[0] == ends[1] else ends
    keys = list(study.tune.space)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(study.tune.space[k] for k in keys))]


def _text(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value)}"  # JSON is YAML: strings stay strings, lists and maps stay nodes


def overrides_for(study: Study, arm: str, levels: dict[str, str], values: dict[str, Any], seed: int,
                  epochs: int | None = None, base: dict[str, Any] | None = None) -> list[str]:
    """The run's overrides; ``epochs`` (budget.steps turned into epochs) wins over budget.epochs, and
    with the recipe's ``base`` tree its schedule is scaled to them (:mod:`mmcore.study.budget`)."""
    study_keys = [study.overrides, *(study.axes[a][lv] for a, lv in levels.items()), study.arms[arm], values]
    out = [_text(k, v) for keys in study_keys for k, v in keys.items()]
    epochs = epochs if epochs is not None else study.budget.get("epochs")
    if epochs is not None:
        out.append(_text("train.epochs", epochs))
        if base is not None:
            scaled = scaled_schedule(base, epochs, {k for keys in study_keys for k in keys})
            out += [_text(k, v) for k, v in scaled.items()]
    return [*out, f"seed={seed}"]


def tune_runs(study: Study, study_dir: Path, chosen: dict[str, dict[str, Any]] | None = None) -> list[StudyRun]:
    """Every tuned arm × candidate × tuning seed, on the tuning levels (``tune.at``)."""
    if study.tune is None:
        return []
    if study.tune.trials is not None:  # drawn while the study runs: those recorded so far
        from mmcore.study.tpe import recorded_runs

        return recorded_runs(study, study_dir)
    runs = []
    for arm in tuned_arms(study):
        for k, values in enumerate(candidates(study)):
            for seed in study.tune.seeds:
                rel = f"tune/{arm}/c{k}/seed{seed}"
                runs.append(StudyRun("tune", arm, dict(study.tune.at), seed, values, rel, study_dir))
    return runs


def _where(levels: dict[str, str]) -> str:
    return ", ".join(f"{a}={lv}" for a, lv in levels.items()) or NO_AXES


def check_cell_folders(study: Study) -> None:
    """Two cells must never share a run folder, nor one level slug: the folder is found again by
    its name on restart, and the results pair arms by slug. Level names containing ``+`` can
    collide when joined (``a+b`` & ``c`` and ``a`` & ``b+c`` both give ``a+b+c``), as can arm
    names containing ``/``; refused before anything runs, naming both cells. Studies without such
    a collision keep their folder names."""
    by_slug: dict[str, tuple[str, dict[str, str]]] = {}
    by_folder: dict[str, tuple[str, dict[str, str]]] = {}
    for arm, levels in cells(study):
        slug = level_slug(levels)
        folder = f"runs/{arm}/{slug}"
        for seen, key, what in ((by_slug, slug, "level name"), (by_folder, folder, "run folder")):
            arm0, levels0 = seen.setdefault(key, (arm, levels))
            if levels0 != levels or (what == "run folder" and arm0 != arm):
                what = "run folder" if f"runs/{arm0}/{slug}" == folder else what
                raise StudyError(
                    f"{study.path}: axes: the cells ({arm0}: {_where(levels0)}) and ({arm}: {_where(levels)}) share the "
                    f"{what} '{folder if what == 'run folder' else slug}'; expected level (and arm) names that stay "
                    "distinct when joined by '+' and '/' (rename one)"
                )


def main_runs(study: Study, study_dir: Path, chosen: dict[str, dict[str, Any]]) -> list[StudyRun]:
    """Every cell × seed at the arm's chosen values (its ``tuned_as`` arm's; the first candidate before tuning ends)."""
    check_cell_folders(study)
    first = candidates(study)[0]
    return [
        StudyRun("main", arm, levels, seed, chosen.get(study.tuned_as.get(arm, arm), first),
                 f"runs/{arm}/{level_slug(levels)}/seed{seed}", study_dir)
        for arm, levels in cells(study)
        for seed in study.seeds
    ]


def resolve(study: Study, runs: list[StudyRun], registry: Registry) -> None:
    """Validate every run's recipe (fills ``run.recipe``); all problems at once, then the budget check."""
    tree = load_yaml(study.recipe)
    steps = StepBudget(study.path, study.budget["steps"], registry) if "steps" in study.budget else None
    problems: list[str] = []
    with one_build_per_node():  # the runs share most component nodes
        for run in runs:
            problems += [p for p in _resolve_one(study, run, tree, steps, registry) if p not in problems]
    if problems:
        raise StudyError("\n".join(problems))
    _check_budget(study, [r for r in runs if r.kind == "main"])


def _resolve_one(study: Study, run: StudyRun, tree: dict[str, Any], steps: StepBudget | None, registry: Registry) -> list[str]:
    """Validate ``run``'s recipe into ``run.recipe``; its problems, if any."""
    where = f"{study.path} (arm {run.arm}, {level_slug(run.levels)}, {run.kind})"

    def validated(epochs: int | None = None) -> dict[str, Any]:
        texts = overrides_for(study, run.arm, run.levels, run.values, run.seed, epochs, tree)
        return validate_recipe(apply_overrides(tree, texts, where), registry, where)

    try:
        run.recipe = validated()
        if steps is not None:
            run.recipe = validated(steps.epochs(run.recipe, f"arm {run.arm}, {level_slug(run.levels)}"))
    except RecipeError as error:
        return list(error.problems)
    except StudyError as error:
        return [str(error)]
    return []


def _check_budget(study: Study, runs: list[StudyRun]) -> None:
    """Equal epochs, batch size and data per cell: with the same data they make equal optimiser steps."""
    seen: dict[str, tuple[str, Any]] = {}
    for run in runs:
        train = run.recipe.get("train", {})
        budget = (train.get("epochs"), train.get("batch_size"), json.dumps(run.recipe.get("dataset"), sort_keys=True))
        key = f"{level_slug(run.levels)}"
        if key in seen and seen[key][1] != budget:
            raise StudyError(
                f"{study.path}: budget: arms '{seen[key][0]}' and '{run.arm}' train with different epochs, batch size "
                f"or data at {key}; expected the same optimiser steps for every arm (set them in budget/overrides, not in an arm)"
            )
        seen.setdefault(key, (run.arm, budget))
