"""Evaluation conditions: the named availability patterns a model is scored under.

A condition is either a fixed subset of modalities (every sample alike: ``"a+v"``), or random
masks at given rates with their own seed -- drawn, like training masks, as a pure function of
(seed, sample id, spec) on a separate hash stream, so they are the same for every training seed
and every method. ``"all"`` expands to every non-empty subset, which is how results are reported
per condition and averaged.

Rows with unusable modalities (``SplitData.unusable``) lack them under every condition. A random
condition draws around them as training masks do (``mmcore.missing``: ``min_present`` holds
among a row's usable modalities). A fixed subset is what a deployment with only those sensors
would see, so a row whose subset modalities are all unusable has nothing present there; it is
still scored -- the model's guess from nothing, as in deployment -- so every condition scores
the same rows and the average and pooled rows stay comparable, and ``empty_rows`` counts such
rows per condition for ``eval.json``'s ``empty_rows`` (split -> condition -> rows; conditions
with none are left out, and so is the key when no condition has any).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mmcore.errors import MMCoreError
from mmcore.missing import (
    MAX_MODALITIES,
    MECHANISM_KEYS,
    STREAM_EVAL,
    MissingSpec,
    all_patterns,
    check_keys,
    check_spec,
    hash_uniform,
    parse_spec,
    spec_masks,
)
from mmcore.text import did_you_mean
from mmcore.types import SplitData

AVERAGE = "average"  # the row that averages every condition; reserved, no condition may take it


@dataclass(frozen=True)
class Condition:
    """A named evaluation condition: a fixed subset of present modalities, or random masks."""

    name: str  # how results are reported, e.g. "a+v" or "random"
    subset: tuple[bool, ...] | None  # present flag per modality (modality order), or None
    random: MissingSpec | None  # random masks drawn per sample id, or None
    seed: int = 0  # the random condition's own seed, independent of the training seed
    modalities: tuple[str, ...] | None = None  # names the random spec refers to (set by parse_conditions)


def all_subsets(modalities: Sequence[str]) -> list[tuple[bool, ...]]:
    """Every non-empty subset, by size, then in modality order (lexicographic on positions)."""
    m = len(modalities)
    rows = [tuple(bool(b) for b in row) for row in all_patterns(m)[1:]]
    return sorted(rows, key=lambda r: (sum(r), [i for i in range(m) if r[i]]))


def subset_name(subset: Sequence[bool], modalities: Sequence[str]) -> str:
    return "+".join(n for n, on in zip(modalities, subset) if on)


def parse_conditions(
    value: Any, modalities: Sequence[str], where: str = "missing.eval.conditions"
) -> list[Condition]:
    """Evaluation conditions from the recipe.

    ``"all"``: every non-empty subset (the full set included); ``"full"``: all present; a list of
    items, each a subset written ``"a+v"`` or ``[a, v]``, or a mapping
    ``{random: {rates: {...}, min_present: 1}, seed: 7, name: random}``; ``all`` or ``full`` as an
    item of the list stands for its conditions there (``[all, {random: ..., name: r40}]``: every
    subset and a random-rate condition, the form a train × test rate study uses).
    Short aliases: when every modality name is one character (IEMOCAP's ``a, v, l``), a string
    without ``+`` that is not itself a modality name is read letter by letter, so ``"av"`` is
    ``{a, v}``. A random condition's name may not be modalities joined by ``+``: that names a
    fixed subset in reports, selection and MissBench's MEI.
    """
    modalities = list(modalities)
    if not modalities or len(modalities) > MAX_MODALITIES:
        raise MMCoreError(f"{where}: need 1 to {MAX_MODALITIES} modalities, got {len(modalities)}")
    if value == "all":
        subsets = all_subsets(modalities)
        return [Condition(subset_name(s, modalities), s, None) for s in subsets]
    if value == "full":
        return [Condition(subset_name([True] * len(modalities), modalities), (True,) * len(modalities), None)]
    items = [value] if isinstance(value, (str, Mapping)) else value
    if not isinstance(items, (list, tuple)) or not items:
        raise MMCoreError(f"{where}: expected 'all', 'full' or a non-empty list of conditions, got {value!r}")
    out: list[Condition] = []
    for i, item in enumerate(items):  # "all" / "full" inside a list expand in place (subsets + random rates)
        keyword = isinstance(item, str) and item in ("all", "full") and item not in modalities
        out += parse_conditions(item, modalities, where) if keyword else [_parse_item(item, modalities, f"{where}[{i}]")]
    names = [c.name for c in out]
    for name in names:
        if names.count(name) > 1:
            raise MMCoreError(f"{where}: condition name '{name}' appears twice; give each a distinct 'name'")
    return out


def _parse_item(item: Any, modalities: list[str], where: str) -> Condition:
    if isinstance(item, Mapping):
        return _parse_random(item, modalities, where)
    if isinstance(item, str):
        names = _split_subset_string(item, modalities)
    elif isinstance(item, (list, tuple)) and all(isinstance(n, str) for n in item):
        names = list(item)
    else:
        raise MMCoreError(f"{where}: expected a subset like 'a+v' or [a, v], or a mapping with 'random', got {item!r}")
    if not names:
        raise MMCoreError(f"{where}: a condition needs at least one present modality")
    for name in names:
        if name not in modalities:
            raise MMCoreError(
                f"{where}: unknown modality '{name}';{did_you_mean(name, modalities)} "
                f"available: {', '.join(modalities)} (or 'all' / 'full' for the whole list)"
            )
        if names.count(name) > 1:
            raise MMCoreError(f"{where}: modality '{name}' is listed twice in {item!r}")
    subset = tuple(n in names for n in modalities)
    return Condition(subset_name(subset, modalities), subset, None)


def _split_subset_string(text: str, modalities: list[str]) -> list[str]:
    if "+" in text:
        return [part.strip() for part in text.split("+")]
    text = text.strip()
    if text in modalities or not all(len(n) == 1 for n in modalities):
        return [text] if text else []
    return list(text)  # short alias: "av" -> a, v


def _parse_random(item: Mapping, modalities: list[str], where: str) -> Condition:
    check_keys(item, ("random", "seed", "name"), where)
    if "random" not in item:
        raise MMCoreError(f"{where}: a mapping condition needs 'random' (rates or sample_rate, min_present)")
    keys = ("rates", "sample_rate", "min_present", *MECHANISM_KEYS)
    spec = parse_spec(item["random"], f"{where}.random", keys=keys)
    try:
        check_spec(spec, modalities)  # unknown names and infeasible rates fail here, early
    except MMCoreError as err:
        raise MMCoreError(f"{where}.random: {err}") from None
    seed = item.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise MMCoreError(f"{where}.seed: expected an integer, got {seed!r}")
    name = item.get("name", "random")
    if not isinstance(name, str) or not name:
        raise MMCoreError(f"{where}.name: expected a non-empty string, got {name!r}")
    if name == AVERAGE:
        raise MMCoreError(f"{where}.name: '{AVERAGE}' is reserved for the row that averages the conditions")
    if all(part in modalities for part in name.split("+")):
        # reports, selection and MissBench's MEI read such a name as that fixed subset of modalities
        raise MMCoreError(
            f"{where}.name: '{name}' names a fixed subset of modalities, but this condition draws random masks; "
            f"give it a name that is not modalities joined by '+' (e.g. 'random-{name}')"
        )
    return Condition(name, None, spec, seed, tuple(modalities))


def condition_masks(condition: Condition, ids: Tensor, num_modalities: int, split: SplitData | None = None) -> Tensor:
    """Presence masks bool ``[N, M]`` for one evaluation condition, on the ids' device.

    A random condition under mar / mnar reads the split's data (``ids`` are the split's ids)."""
    n = int(ids.shape[0])
    if condition.subset is not None:
        if len(condition.subset) != num_modalities:
            raise MMCoreError(
                f"condition '{condition.name}' has {len(condition.subset)} flags, expected {num_modalities}"
            )
        return torch.tensor(condition.subset, dtype=torch.bool, device=ids.device).expand(n, -1).clone()
    if condition.random is None:
        raise MMCoreError(f"condition '{condition.name}' has neither a subset nor a random spec")
    names = condition.modalities or tuple(f"m{i}" for i in range(num_modalities))
    if len(names) != num_modalities:
        raise MMCoreError(f"condition '{condition.name}' refers to {len(names)} modalities, expected {num_modalities}")
    u = hash_uniform(condition.seed, ids, STREAM_EVAL)
    return spec_masks(condition.random, names, u, split).to(ids.device)


def empty_rows(masks: Mapping[str, Tensor]) -> dict[str, int]:
    """Per condition, how many rows its masks leave with no modality present (one host sync);
    conditions that leave none are omitted, so data without unusable rows gives ``{}``."""
    if not masks:
        return {}
    counts = torch.stack([(~m.any(1)).sum() for m in masks.values()]).tolist()
    return {name: int(c) for name, c in zip(masks, counts) if c}
