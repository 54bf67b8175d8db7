"""A study's numbers: per-seed values from each finished run (via RunRecord) and the declared analysis.

Nothing here reads a file other than through :class:`mmcore.engine.record.RunRecord`. The family
of the primary endpoint is exactly the declared ``compare`` pairs on every cell (axis-level
combination) both arms of a pair run on; Holm is applied over that family and nothing else (a
study declaring several named families gets Holm within each). Secondary endpoints get the same
tests, Holm within each endpoint's own families, and are labelled secondary. Each declared
interaction is tested per pair (its ``pairs``, default every compare pair) and per level of the
other axes, with Holm over exactly that declaration's interaction tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mmcore.engine.record import RunRecord
from mmcore.report.analysis import Effect, by_present, endpoint_value, holm_family, interaction, paired, split_endpoint
from mmcore.report.stats import mean_or_nan
from mmcore.study.extras import Finished
from mmcore.study.plan import StudyRun, cells, level_slug
from mmcore.study.spec import Interaction, Study

Values = dict[int, float]  # seed -> value


@dataclass
class StudyNumbers:
    """Everything the outputs print, computed once."""

    study: Study
    cells: list[tuple[str, dict[str, str]]]
    values: dict[str, dict[tuple[str, str], Values]]  # endpoint -> (arm, level slug) -> seed -> value
    effects: dict[str, dict[str, list[tuple[str, Effect]]]]  # endpoint -> family -> [(level slug, effect)], Holm within
    # endpoint -> per declared interaction: [(other axes' levels, effect)], Holm within each declaration
    interactions: dict[str, list[tuple[Interaction, list[tuple[str, Effect]]]]] = field(default_factory=dict)
    conditions: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)  # mean over seeds per condition
    present: dict[tuple[str, str], dict[int, float]] = field(default_factory=dict)  # mean over seeds by k views
    cost: dict[str, dict[str, Any]] = field(default_factory=dict)  # arm -> steps, parameters, s/step
    # level slug -> condition -> the data's Bayes ceiling (eval.json's oracle, mean over the cell's runs)
    ceilings: dict[str, dict[str, float]] = field(default_factory=dict)
    finished: list[Finished] = field(default_factory=list)  # what mmcore.study.extras reads


def endpoints(study: Study) -> list[str]:
    return [study.analysis.primary, *(e for e in study.analysis.secondary if e != study.analysis.primary)]


def _collect(study: Study, runs: list[StudyRun]) -> dict[str, dict[tuple[str, str], Values]]:
    out: dict[str, dict[tuple[str, str], Values]] = {e: {} for e in endpoints(study)}
    for run in runs:
        record = RunRecord(run.run_dir)
        if not record.finished:
            continue
        for endpoint in out:
            value = endpoint_value(record.results, endpoint)
            if value is not None:
                out[endpoint].setdefault((run.arm, level_slug(run.levels)), {})[run.seed] = value
    return out


def _effects(study: Study, values: dict[tuple[str, str], Values]) -> dict[str, list[tuple[str, Effect]]]:
    return {name: _family(study, pairs, values) for name, pairs in study.analysis.families.items()}


def _family(study: Study, pairs: list[tuple[str, str]], values: dict[tuple[str, str], Values]) -> list[tuple[str, Effect]]:
    slugs = list(dict.fromkeys(level_slug(lv) for _, lv in cells(study)))
    family = []
    for a, b in pairs:
        for slug in slugs:
            if (a, slug) in values and (b, slug) in values:
                family.append((slug, paired(f"{a} − {b}", values[(a, slug)], values[(b, slug)])))
    adjusted = holm_family([e for _, e in family])
    return [(slug, e) for (slug, _), e in zip(family, adjusted)]


def _interactions(study: Study, values: dict[tuple[str, str], Values]) -> list[tuple[Interaction, list[tuple[str, Effect]]]]:
    return [(one, _interaction(study, one, values)) for one in study.analysis.interactions]


def _interaction(study: Study, declared: Interaction, values: dict[tuple[str, str], Values]) -> list[tuple[str, Effect]]:
    axis, l1, l2 = declared.axis, declared.level1, declared.level2
    others = [a for a in study.axes if a != axis]
    out = []
    seen = set()
    for _, levels in cells(study):
        rest = {a: levels[a] for a in others}
        key = tuple(rest.items())
        if key in seen:
            continue
        seen.add(key)
        s1, s2 = level_slug({**levels, axis: l1}), level_slug({**levels, axis: l2})
        for a, b in declared.pairs or study.analysis.compare:
            need = [(a, s1), (b, s1), (a, s2), (b, s2)]
            if all(k in values for k in need):
                label = f"({a} − {b}) at {l1} − at {l2}"
                out.append((level_slug(rest), interaction(label, *(values[k] for k in need))))
    adjusted = holm_family([e for _, e in out])
    return [(where, e) for (where, _), e in zip(out, adjusted)]


def _per_cell_means(study: Study, runs: list[StudyRun], rows: Any) -> dict[tuple[str, str], dict[Any, float]]:
    """(arm, cell) -> key -> mean over seeds, where ``rows(split table, metric)`` gives each finished
    run's key -> value pairs for the primary endpoint's split and metric."""
    split, _, metric = split_endpoint(study.analysis.primary)
    per: dict[tuple[str, str], dict[Any, list[float]]] = {}
    for run in runs:
        record = RunRecord(run.run_dir)
        if record.finished:
            for key, value in rows(record.results.get(split) or {}, metric):
                per.setdefault((run.arm, level_slug(run.levels)), {}).setdefault(key, []).append(value)
    return {cell: {k: mean_or_nan(v) for k, v in found.items()} for cell, found in per.items()}


def _present(study: Study, runs: list[StudyRun]) -> dict[tuple[str, str], dict[int, float]]:
    """Means over the conditions with k modalities present, then over seeds."""
    return _per_cell_means(study, runs, lambda table, metric: by_present(table, metric).items())


def _conditions(study: Study, runs: list[StudyRun]) -> dict[tuple[str, str], dict[str, float]]:
    """Every condition's value, mean over seeds."""
    return _per_cell_means(study, runs, lambda table, metric: [
        (c, float(m[metric])) for c, m in table.items() if isinstance(m.get(metric), (int, float))])


def _cost(study: Study, runs: list[StudyRun]) -> dict[str, dict[str, Any]]:
    """Per arm (its first finished run): optimiser steps logged (metrics.jsonl), parameters and
    seconds per step (batch size / eval.json's training samples per second; the last, smaller
    batch of an epoch makes it a slight overestimate)."""
    out: dict[str, dict[str, Any]] = {}
    for run in runs:
        record = RunRecord(run.run_dir)
        if not record.finished or run.arm in out:
            continue
        cost = (record.eval or {}).get("cost") or {}
        params = cost.get("parameters")
        total = sum(params.values()) if isinstance(params, dict) else params
        rate, batch = cost.get("train_samples_per_s"), ((record.recipe or {}).get("train") or {}).get("batch_size")
        per_step = batch / rate if isinstance(rate, (int, float)) and rate > 0 and isinstance(batch, int) else None
        out[run.arm] = {"steps": record.steps_done(), "parameters": total, "seconds_per_step": per_step}
    return out


def _ceilings(study: Study, runs: list[StudyRun]) -> dict[str, dict[str, float]]:
    """Per cell, the Bayes ceiling of the primary's split and metric per condition, where the
    data has one (``mmcore.oracle``); pooled over arms, which share the cell's data and masks."""
    split, _, metric = split_endpoint(study.analysis.primary)
    per: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        record = RunRecord(run.run_dir)
        entry = (record.eval or {}).get("oracle") if record.finished else None
        table = ((entry or {}).get("results") or {}).get(split) or {} if isinstance(entry, dict) else {}
        for condition, row in table.items():
            if isinstance(row, dict) and isinstance(row.get(metric), (int, float)):
                per.setdefault(level_slug(run.levels), {}).setdefault(condition, []).append(float(row[metric]))
    return {slug: {c: mean_or_nan(v) for c, v in found.items()} for slug, found in per.items()}


def compute(study: Study, runs: list[StudyRun]) -> StudyNumbers:
    values = _collect(study, runs)
    return StudyNumbers(
        study=study, cells=cells(study), values=values,
        effects={e: _effects(study, values[e]) for e in values},
        interactions={e: _interactions(study, values[e]) for e in values},
        present=_present(study, runs), cost=_cost(study, runs), conditions=_conditions(study, runs),
        ceilings=_ceilings(study, runs), finished=_finished(runs),
    )


def _finished(runs: list[StudyRun]) -> list[Finished]:
    out = []
    for run in runs:
        record = RunRecord(run.run_dir)
        if record.finished:
            out.append(Finished(run.arm, level_slug(run.levels), run.seed, record.eval or {}, record.recipe or {}))
    return out
