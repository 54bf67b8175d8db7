"""The analysis section of a study file: the pre-registration. Its primary endpoint, the compared
pairs (Holm families), interactions, secondary endpoints and the direction of "better" are read
here and frozen before any run (``mmcore.study.freeze``); ``mmcore.study.spec`` reads the rest
of the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmcore.metrics import METRICS_DIRECTION
from mmcore.registry import did_you_mean
from mmcore.report.analysis import split_endpoint
from mmcore.study.spec_errors import fail
from mmcore.study.task_metrics import Metrics
from mmcore.types import EVAL_SPLITS

ANALYSIS_KEYS = ("primary", "compare", "interaction", "secondary", "higher_is_better")


@dataclass(frozen=True)
class Interaction:
    """Per seed (a − b at ``level1``) − (a − b at ``level2``) of ``axis``, for each pair in ``pairs``
    (None: every compare pair) and each level of the other axes; Holm over exactly those tests."""

    axis: str
    level1: str
    level2: str
    pairs: list[tuple[str, str]] | None = None


@dataclass(frozen=True)
class Analysis:
    primary: str
    families: dict[str, list[tuple[str, str]]]  # Holm family name -> its pairs ("" for a plain list)
    interactions: list[Interaction]
    secondary: list[str]
    higher_is_better: bool = True

    @property
    def interaction_pairs(self) -> list[tuple[str, str]] | None:
        """The first interaction's declared pairs (None: every compare pair)."""
        return self.interactions[0].pairs if self.interactions else None

    @property
    def compare(self) -> list[tuple[str, str]]:
        """Every declared pair, family after family."""
        return [pair for pairs in self.families.values() for pair in pairs]



def metric_named(path: Path, key: str, metric: str, metrics: Metrics) -> None:
    allowed, kind = metrics
    if metric not in allowed:
        raise fail(path, key, f"'{metric}' is not {kind};{did_you_mean(metric, allowed)} expected one of {', '.join(allowed)}")


def endpoint(path: Path, key: str, value: Any, metrics: Metrics | None = None) -> str:
    """``split.condition.metric``; with ``metrics``, an evaluated split and a metric the runs report."""
    if not isinstance(value, str):
        raise fail(path, key, f"expected split.condition.metric (a string), e.g. test.average.macro_f1, got {value!r}")
    try:
        split, _, metric = split_endpoint(value)
    except ValueError as error:
        raise fail(path, key, str(error)) from None
    if metrics is not None:
        if split not in EVAL_SPLITS:
            raise fail(path, key, f"'{split}' is not an evaluated split; expected one of {', '.join(EVAL_SPLITS)}")
        metric_named(path, key, metric, metrics)
    return value


def parse_analysis(path: Path, value: Any, arms: dict[str, Any], axes: dict[str, dict[str, Any]], n_seeds: int,
              metrics: Metrics | None = None) -> Analysis:
    if not isinstance(value, dict):
        raise fail(path, "analysis", "expected a mapping with primary and compare")
    unknown = [k for k in value if k not in ANALYSIS_KEYS]
    if unknown:
        raise fail(path, f"analysis.{unknown[0]}", f"unknown key; expected one of {', '.join(ANALYSIS_KEYS)}")
    if "primary" not in value:
        raise fail(path, "analysis.primary", "missing; expected split.condition.metric, e.g. test.average.macro_f1")
    families = _families(path, value.get("compare") or [], arms)
    compared = {n for pairs in families.values() for p in pairs for n in p}
    unused = [n for n in arms if n not in compared]
    if compared and unused:
        raise fail(path, "arms", f"arm '{unused[0]}' is in no analysis.compare pair; compare it or remove it")
    if compared and n_seeds < 2:
        raise fail(path, "seeds", "expected at least 2 seeds: the paired tests need two pairs (5 for win/loss words)")
    raw = value.get("interaction")
    listed = raw if isinstance(raw, list) else ([] if raw is None else [raw])
    secondary = value.get("secondary") or []
    if not isinstance(secondary, list):
        raise fail(path, "analysis.secondary", f"expected a list of split.condition.metric endpoints, got {secondary!r}")
    # absent: the primary metric's own direction (mae, mse: lower is better), else higher
    higher = value.get("higher_is_better", METRICS_DIRECTION.get(str(value["primary"]).rsplit(".", 1)[-1], "max") == "max")
    if not isinstance(higher, bool):
        raise fail(path, "analysis.higher_is_better", f"expected true or false (a YAML boolean), got {higher!r}")
    return Analysis(
        primary=endpoint(path, "analysis.primary", value["primary"], metrics),
        families=families,
        interactions=[_interaction(path, "analysis.interaction" + (f"[{i}]" if isinstance(raw, list) else ""), one, axes,
                                   [p for pairs in families.values() for p in pairs])
                      for i, one in enumerate(listed)],
        secondary=[endpoint(path, f"analysis.secondary[{i}]", s, metrics) for i, s in enumerate(secondary)],
        higher_is_better=higher,
    )


def _families(path: Path, value: Any, arms: dict[str, Any]) -> dict[str, list[tuple[str, str]]]:
    """``compare``: a list of pairs (one family, named "") or family name -> list of pairs."""
    named = value if isinstance(value, dict) else {"": value}
    families: dict[str, list[tuple[str, str]]] = {}
    for family, pairs in named.items():
        key = "analysis.compare" + (f".{family}" if family else "")
        if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 for p in pairs):
            raise fail(path, key, "expected a list of [arm, arm] pairs (or family name -> such a list)")
        for i, pair in enumerate(pairs):
            for name in pair:
                if not isinstance(name, str):
                    raise fail(path, f"{key}[{i}]", f"expected an arm name (a string), got {name!r}")
                if name not in arms:
                    raise fail(path, f"{key}[{i}]", f"'{name}' is not an arm; expected one of {', '.join(arms)}")
            if pair[0] == pair[1]:
                raise fail(path, f"{key}[{i}]", f"compares '{pair[0]}' with itself; expected two different arms")
        families[str(family)] = [(str(a), str(b)) for a, b in pairs]
    return families


def _interaction(path: Path, key: str, value: Any, axes: dict[str, dict[str, Any]], compare: list[tuple[str, str]]) -> Interaction:
    if not isinstance(value, dict) or "axis" not in value:
        raise fail(path, key, "expected {axis: NAME, levels: [L1, L2], pairs: [[ARM, ARM]] (optional)} (or a list of them)")
    axis = str(value["axis"])
    if axis not in axes:
        raise fail(path, f"{key}.axis", f"'{axis}' is not an axis; expected one of {', '.join(axes) or '(none)'}")
    if len(axes[axis]) < 2:
        raise fail(path, f"{key}.axis", f"'{axis}' has one level; an interaction needs two")
    levels = value.get("levels") or list(axes[axis])[:2]
    if (not isinstance(levels, list) or len(levels) != 2 or any(not isinstance(lv, str) or lv not in axes[axis] for lv in levels)
            or levels[0] == levels[1]):
        raise fail(path, f"{key}.levels", f"expected two levels of '{axis}' among {', '.join(axes[axis])}")
    return Interaction(axis, str(levels[0]), str(levels[1]), _interaction_pairs(path, key, value.get("pairs"), compare))


def _interaction_pairs(path: Path, key: str, pairs: Any, compare: list[tuple[str, str]]) -> list[tuple[str, str]] | None:
    """``interaction.pairs``: a subset of the compare pairs; None when absent (every pair)."""
    if pairs is None:
        return None
    declared = [list(p) for p in compare]
    if not isinstance(pairs, list) or not pairs or any(not isinstance(p, list) or p not in declared for p in pairs):
        raise fail(path, f"{key}.pairs", f"expected a non-empty list of analysis.compare pairs, e.g. [{declared[0] if declared else '[a, b]'}]")
    return [(str(a), str(b)) for a, b in pairs]
