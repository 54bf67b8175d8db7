"""A study's numbers: per-seed values from each finished run (via RunRecord) and the declared analysis.

Nothing here reads a file other than through :class:`mmcore.engine.record.RunRecord`. The family
of the primary endpoint is exactly the declared ``compare`` pairs on every cell (axis-level
combination) both arms of a pair run on; Holm is applied over that family and nothing else.
Secondary endpoints get the same tests, Holm within each endpoint's own family, and are
labelled secondary. The interaction is tested per pair (``interaction.pairs``, default every compare pair) and per
level of the other axes, with Holm over exactly that family of interaction tests.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from mmcore.engine.record import RunRecord
from mmcore.report.analysis import Effect, by_present, endpoint_value, holm_family, interaction, paired, split_endpoint
from mmcore.study.plan import StudyRun, cells, level_slug
from mmcore.study.spec import Study

Values = dict[int, float]  # seed -> value


@dataclass
class StudyNumbers:
    """Everything the outputs print, computed once."""

    study: Study
    cells: list[tuple[str, dict[str, str]]]
    values: dict[str, dict[tuple[str, str], Values]]  # endpoint -> (arm, level slug) -> seed -> value
    effects: dict[str, list[tuple[str, Effect]]]  # endpoint -> [(level slug, effect)], Holm within endpoint
    interactions: list[tuple[str, Effect]] = field(default_factory=list)  # (other levels, effect)
    present: dict[tuple[str, str], dict[int, float]] = field(default_factory=dict)  # mean over seeds by k views
    cost: dict[str, dict[str, Any]] = field(default_factory=dict)  # arm -> steps, parameters, s/step


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


def _effects(study: Study, values: dict[tuple[str, str], Values]) -> list[tuple[str, Effect]]:
    slugs = list(dict.fromkeys(level_slug(lv) for _, lv in cells(study)))
    family = []
    for a, b in study.analysis.compare:
        for slug in slugs:
            if (a, slug) in values and (b, slug) in values:
                family.append((slug, paired(f"{a} − {b}", values[(a, slug)], values[(b, slug)])))
    adjusted = holm_family([e for _, e in family])
    return [(slug, e) for (slug, _), e in zip(family, adjusted)]


def _interactions(study: Study, values: dict[tuple[str, str], Values]) -> list[tuple[str, Effect]]:
    if study.analysis.interaction is None:
        return []
    axis, l1, l2 = study.analysis.interaction
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
        for a, b in study.analysis.interaction_pairs or study.analysis.compare:
            need = [(a, s1), (b, s1), (a, s2), (b, s2)]
            if all(k in values for k in need):
                label = f"({a} − {b}) at {l1} − at {l2}"
                out.append((level_slug(rest), interaction(label, *(values[k] for k in need))))
    adjusted = holm_family([e for _, e in out])
    return [(where, e) for (where, _), e in zip(out, adjusted)]


def _present(study: Study, runs: list[StudyRun]) -> dict[tuple[str, str], dict[int, float]]:
    split, _, metric = split_endpoint(study.analysis.primary)
    per: dict[tuple[str, str], dict[int, list[float]]] = {}
    for run in runs:
        record = RunRecord(run.run_dir)
        if record.finished:
            for k, v in by_present(record.results.get(split, {}), metric).items():
                per.setdefault((run.arm, level_slug(run.levels)), {}).setdefault(k, []).append(v)
    return {key: {k: statistics.fmean(v) for k, v in ks.items()} for key, ks in per.items()}


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


def compute(study: Study, runs: list[StudyRun]) -> StudyNumbers:
    values = _collect(study, runs)
    primary = study.analysis.primary
    return StudyNumbers(
        study=study, cells=cells(study), values=values,
        effects={e: _effects(study, values[e]) for e in values},
        interactions=_interactions(study, values[primary]),
        present=_present(study, runs), cost=_cost(study, runs),
    )
