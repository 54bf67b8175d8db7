"""Grid expansion: ``--grid KEY=V1,V2`` flags and ``--seeds 0,1,2`` into sweep points.

A grid value is override text, applied exactly like a command-line override (``KEY=VALUE``),
so it is read with the recipe's YAML rules and a component name over a component node swaps
the node (``--grid balancer=mmcore.uniform,redcore.relative_advantage``). Values are split on
*top-level* commas only: ``model.encoders.default.layers=[64,64],[128]`` has two values,
``[64,64]`` and ``[128]``; commas inside brackets, braces or quotes belong to the value.

Each point gets a slug, a directory name made from its assignments plus a short hash of their
exact text. The slug depends on nothing but the grid flags, so a sweep started again finds
the same directories and can skip the runs that already finished.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
from dataclasses import dataclass
from typing import Any

from mmcore.errors import MMCoreError
from mmcore.recipe import apply_overrides, parse_yaml

_CLOSERS = {"[": "]", "{": "}"}
_UNSAFE = re.compile(r"[^A-Za-z0-9._+=-]+")  # characters a slug never contains
SLUG_TEXT_MAX = 96  # readable part of a slug; the hash keeps longer ones distinct


@dataclass(frozen=True)
class Axis:
    """One ``--grid`` flag: a dotted key and its values as override text (unparsed)."""

    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Point:
    """One grid point: the overrides it applies (in ``--grid`` order) and its directory name."""

    assignments: tuple[tuple[str, str], ...]  # (key, value text) per axis
    slug: str

    @property
    def overrides(self) -> list[str]:
        return [f"{key}={value}" for key, value in self.assignments]

    @property
    def label(self) -> str:
        """How the point reads in reports: ``balancer=mmcore.uniform, model.dim=8``."""
        return ", ".join(self.overrides) or "(recipe as given)"


def split_top_level(text: str, where: str = "value list") -> list[str]:
    """Split on commas outside ``[]``, ``{}`` and quotes; whitespace around items is dropped."""
    items: list[str] = []
    stack: list[str] = []
    quote: str | None = None
    start = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if quote is not None:
            if ch == "\\" and quote == '"':
                i += 1  # an escaped character inside double quotes
            elif ch == quote and quote == "'" and text[i + 1 : i + 2] == "'":
                i += 1  # '' is YAML's escaped single quote
            elif ch == quote:
                quote = None
        elif ch in ("'", '"') and _opens_quote(text, i):
            quote = ch
        elif ch in _CLOSERS:
            stack.append(_CLOSERS[ch])
        elif ch in ("]", "}"):
            if not stack or stack.pop() != ch:
                raise MMCoreError(f"{where}: unbalanced '{ch}' at character {i + 1} of '{text}'")
        elif ch == "," and not stack:
            items.append(text[start:i].strip())
            start = i + 1
        i += 1
    if quote is not None:
        raise MMCoreError(f"{where}: unclosed {quote} in '{text}'")
    if stack:
        raise MMCoreError(f"{where}: unclosed bracket in '{text}' (expected '{stack[-1]}')")
    items.append(text[start:].strip())
    return items


def _opens_quote(text: str, i: int) -> bool:
    """YAML quotes a whole scalar: a quote opens only where a value starts (so ``don't`` is plain)."""
    before = text[:i].rstrip()
    return not before or before[-1] in ",[{:"


def parse_axis(flag: str) -> Axis:
    """``KEY=V1,V2,...`` -> Axis; every value must read as an override value (YAML)."""
    where = f"--grid '{flag}'"
    if "=" not in flag:
        raise MMCoreError(f"{where}: expected KEY=V1,V2,... (e.g. --grid balancer=mmcore.uniform,baselines.ogm_ge)")
    key, raw = (part.strip() for part in flag.split("=", 1))
    if key.startswith(("+", "~")):
        raise MMCoreError(f"{where}: a grid key sets a value; '+' and '~' are for plain overrides")
    if key == "seed":
        raise MMCoreError(f"{where}: seeds are given with --seeds 0,1,2, not as a grid")
    values = split_top_level(raw, where)
    if any(v == "" for v in values):
        raise MMCoreError(f"{where}: empty value in '{raw}' (write null for None)")
    duplicates = sorted({v for v in values if values.count(v) > 1})
    if duplicates:
        raise MMCoreError(f"{where}: value {duplicates[0]} is listed twice")
    # Every value must work as an override (a dotted key, valid YAML): RecipeError, exit 2, if not.
    apply_overrides({}, [f"{key}={value}" for value in values], source=where)
    return Axis(key, tuple(values))


def parse_axes(flags: list[str]) -> list[Axis]:
    axes = [parse_axis(flag) for flag in flags]
    keys = [a.key for a in axes]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise MMCoreError(f"--grid: key '{repeated[0]}' is given twice; list all its values in one flag")
    return axes


MAX_SEEDS = 10_000  # seeds per sweep, study or tuning: far above any real one, far below a runaway range


def parse_seeds(text: str, key: str = "--seeds") -> list[int]:
    """``0,1,2`` or a range ``0-4`` (both ends included) or a mix: ``0-2,7``; no repeats, at most
    ``MAX_SEEDS``. The count is checked before any range is expanded and repeats are found with a
    set, so a typo such as ``0-4000000`` for ``0-4`` is an error at once, not minutes of work.
    ``key`` names the option or study key in errors."""
    bounds: list[tuple[int, int]] = []
    for item in split_top_level(text, key):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        if match is None:
            raise MMCoreError(f"{key}: '{item}' is not a seed; expected non-negative integers like 0,1,2 or 0-4")
        low, high = int(match[1]), int(match[2] if match[2] is not None else match[1])
        if high < low:
            raise MMCoreError(f"{key}: range '{item}' runs backwards")
        bounds.append((low, high))
    count = sum(high - low + 1 for low, high in bounds)
    if count > MAX_SEEDS:
        raise MMCoreError(f"{key}: '{text}' is more than {MAX_SEEDS} seeds ({count}); at most {MAX_SEEDS}")
    seeds: list[int] = []
    seen: set[int] = set()
    for low, high in bounds:
        for seed in range(low, high + 1):
            if seed in seen:
                raise MMCoreError(f"{key}: seed {seed} is listed twice")
            seen.add(seed)
            seeds.append(seed)
    return seeds


def slug(assignments: tuple[tuple[str, str], ...]) -> str:
    """A directory name for a point: readable ``key=value__key=value`` plus a hash of the exact text.

    Sanitising can map two values to one text (``[64,64]`` and ``[64_64]``) and long names are
    cut, so the hash of the unsanitised assignments is what guarantees distinct directories.
    """
    if not assignments:
        return "base"
    readable = "__".join(f"{k}={_UNSAFE.sub('-', v).strip('-') or '-'}" for k, v in assignments)
    digest = hashlib.sha256(json.dumps([list(a) for a in assignments]).encode()).hexdigest()[:8]
    return f"{readable[:SLUG_TEXT_MAX]}-{digest}"


def expand(axes: list[Axis]) -> list[Point]:
    """The cartesian product of the axes, first axis slowest, values in the order given."""
    points = []
    for combo in itertools.product(*(a.values for a in axes)):
        assignments = tuple(zip((a.key for a in axes), combo))
        points.append(Point(assignments, slug(assignments)))
    return points


def parsed_values(point: Point) -> dict[str, Any]:
    """The point's values as the recipe will hold them (YAML-parsed), for sweep.json and reports."""
    return {key: parse_yaml(value, f"--grid {key}") for key, value in point.assignments}
