"""Markers for ``Annotated`` type hints in recipe schemas, and type hints in the words of messages.

``Annotated[int, AtLeast(1)]`` reads as ``int >= 1`` in an error and in the reference; the
markers carry no behaviour beyond ``ok`` and ``describe``. The registry keeps them on a
factory's parameters, so a plugin's ``power: Annotated[float, Above(0)]`` is checked by
``validate`` before anything is built and shown by ``mmcore components``, exactly like the
core's own ranges. The common ranges have names (``PositiveInt``, ``Fraction``, ...), exported
by ``mmcore``; a range is written once, in the signature, and the factory does not repeat it.
"""

from __future__ import annotations

import collections.abc as abc
import dataclasses
import inspect
import math
import re
import types
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin

REQUIRED = inspect.Parameter.empty  # marks an option without a default (the registry's Option.default)


# ---------------------------------------------------------------- markers for Annotated[...]


class Constraint:
    """A condition on a value that already has the right type (``Annotated[int, AtLeast(1)]``)."""

    def ok(self, value: Any) -> bool:
        raise NotImplementedError

    def describe(self) -> str:
        """Words appended to the type in messages: ``int >= 1``."""
        raise NotImplementedError


@dataclass(frozen=True)
class AtLeast(Constraint):
    minimum: float

    def ok(self, value: Any) -> bool:
        return value >= self.minimum

    def describe(self) -> str:
        return f">= {self.minimum}"


@dataclass(frozen=True)
class Above(Constraint):
    minimum: float

    def ok(self, value: Any) -> bool:
        return value > self.minimum

    def describe(self) -> str:
        return f"> {self.minimum}"


@dataclass(frozen=True)
class Between(Constraint):
    low: float
    high: float
    high_open: bool = False  # [low, high) instead of [low, high]

    def ok(self, value: Any) -> bool:
        return self.low <= value < self.high if self.high_open else self.low <= value <= self.high

    def describe(self) -> str:
        return f"in [{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"


@dataclass(frozen=True)
class StartsWith(Constraint):
    prefix: str

    def ok(self, value: Any) -> bool:
        return value.startswith(self.prefix)

    def describe(self) -> str:
        return f"starting with '{self.prefix}'"


@dataclass(frozen=True)
class Matches(Constraint):
    pattern: str
    words: str  # what the pattern means, for messages

    def ok(self, value: Any) -> bool:
        return re.fullmatch(self.pattern, value) is not None

    def describe(self) -> str:
        return f"({self.words})"


@dataclass(frozen=True)
class NonEmpty(Constraint):
    def ok(self, value: Any) -> bool:
        return len(value) > 0

    def describe(self) -> str:
        return "(non-empty)"


@dataclass(frozen=True)
class Finite(Constraint):
    """Not NaN and not infinite (``AtLeast``/``Between`` already exclude NaN; this is for open ranges)."""

    def ok(self, value: Any) -> bool:
        return math.isfinite(value)

    def describe(self) -> str:
        return "(finite)"


# ---------------------------------------------------------------- named ranges

PositiveInt = Annotated[int, AtLeast(1)]
Count = Annotated[int, AtLeast(0)]
Rate = Annotated[float, Between(0.0, 1.0)]  # a probability
Fraction = Annotated[float, Between(0.0, 1.0, high_open=True)]  # dropout, Adam's betas
NonNegative = Annotated[float, AtLeast(0.0), Finite()]
Positive = Annotated[float, Above(0.0), Finite()]


@dataclass(frozen=True)
class NodeOf:
    """A component node of this kind: ``{type: <registered name>, **options}``.

    A bare string is shorthand for ``{type: <string>}``, so ``balancer=mmcore.uniform`` works on
    the command line whether or not the file spells the node out.
    """

    kind: str


@dataclass(frozen=True)
class TrueMeansDefaults:
    """On ``bool | SomeSection``: ``true`` resolves to the section with its defaults."""


# ---------------------------------------------------------------- messages


def show(value: Any) -> str:
    """A value as messages quote it: ``str 'big'``, ``int 3``, ``null``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"bool {str(value).lower()}"
    kind = {dict: "mapping"}.get(type(value), type(value).__name__)
    text = repr(value)
    return f"{kind} {text if len(text) <= 40 else text[:37] + '...'}"


def _literal(choice: Any) -> str:
    return "null" if choice is None else str(choice).lower() if isinstance(choice, bool) else repr(choice)


def _constraint_words(constraints: list[Constraint]) -> list[str]:
    """Each constraint's words, with a lower bound folded into a range it repeats: ``Above(0)`` and
    ``Between(0, 1)`` read ``in (0, 1]``, not ``> 0.0 in [0, 1]``."""
    between = next((c for c in constraints if isinstance(c, Between)), None)
    words = []
    for c in constraints:
        if between is not None and isinstance(c, (Above, AtLeast)) and float(c.minimum) == float(between.low):
            if isinstance(c, Above):
                words.append(f"in ({between.low:g}, {between.high:g}{')' if between.high_open else ']'}")
            continue
        if c is between and any(isinstance(o, Above) and float(o.minimum) == float(between.low) for o in constraints):
            continue
        words.append(c.describe())
    return words


def type_name(annotation: Any) -> str:
    """An annotation in the words of the recipe reference: ``int >= 1``, ``'adam' | 'sgd'``."""
    if annotation is Any or annotation is object or annotation is REQUIRED:
        return "any value"
    if annotation is None or annotation is type(None):
        return "null"
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        node = next((m for m in args[1:] if isinstance(m, NodeOf)), None)
        if node is not None:
            return f"{node.kind} node"
        return " ".join([type_name(args[0]), *_constraint_words([m for m in args[1:] if isinstance(m, Constraint)])])
    if origin in (Union, types.UnionType):
        return " | ".join(type_name(a) for a in args)
    if origin is Literal:
        return " | ".join(_literal(a) for a in args)
    if dataclasses.is_dataclass(annotation):
        return "mapping"
    if is_list(origin, annotation):
        return f"list[{type_name(args[0])}]" if args else "list"
    if origin is tuple or annotation is tuple:
        if not args or (len(args) == 2 and args[1] is Ellipsis):
            return f"list[{type_name(args[0])}]" if args else "list"
        return "[" + ", ".join(type_name(a) for a in args) + "]"
    if is_dict(origin, annotation):
        return f"dict[{type_name(args[0])}, {type_name(args[1])}]" if args else "mapping"
    return getattr(annotation, "__name__", str(annotation))


def is_list(origin: Any, annotation: Any) -> bool:
    return origin in (list, abc.Sequence, abc.MutableSequence, abc.Iterable) or annotation is list


def is_dict(origin: Any, annotation: Any) -> bool:
    return origin in (dict, abc.Mapping, abc.MutableMapping) or annotation is dict
