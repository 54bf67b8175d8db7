"""Reading and writing recipe YAML: safe, strict about duplicates, YAML 1.2 scalars.

PyYAML implements YAML 1.1, whose scalar rules surprise people writing configs: ``3e-4`` is a
string (1.1 floats need a dot), ``on``/``no`` are booleans, ``012`` is octal, ``1:30`` is 90 and
``2024-05-01`` a date. Recipes are read with the YAML 1.2 core schema instead, so a value means
what it looks like. Loading never constructs Python objects (``SafeLoader`` underneath), and a
mapping that repeats a key is an error rather than silently keeping the last value.

Writing uses a dumper that quotes every string a YAML 1.1 *or* 1.2 reader could mistake for
another type, so a resolved recipe reads back identically here and in other tools.

Small hostile inputs are bounded before they can cost time or memory: a recipe is at most
``MAX_BYTES`` of text, nests at most ``MAX_DEPTH`` levels, and expands to at most ``MAX_VALUES``
values once aliases are followed (a 500-byte "billion laughs" document of nested aliases would
otherwise expand to 10^9 values during validation). Only plain-data tags are constructed: no
``!!binary``, ``!!timestamp``, ``!!set``, ``!!omap`` or ``!!pairs``, whose values JSON cannot hold.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from mmcore.errors import RecipeError
from mmcore.paths import is_readable_kind

_MERGE_TAG = "tag:yaml.org,2002:merge"

# Bounds far above any real recipe (the shipped ones are under 3 KB, 6 levels, 200 values).
MAX_BYTES = 1 << 20
MAX_DEPTH = 64
MAX_VALUES = 100_000

# The YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution), written so
# that int and float never match the same text: a float needs a dot or an exponent.
_NULL = re.compile(r"^(?:~|null|Null|NULL|)$")
_BOOL = re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$")
_INT = re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$")
_FLOAT = re.compile(
    r"""^(?:
        [-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?   # 1.5  1.  .5  2.0e-4
      | [-+]?[0-9]+[eE][-+]?[0-9]+                             # 3e-4  1e5
      | [-+]?\.(?:inf|Inf|INF)
      | \.(?:nan|NaN|NAN)
    )$""",
    re.X,
)
_MERGE = re.compile(r"^(?:<<)$")

_RESOLVERS: list[tuple[str, re.Pattern[str], list[str | None]]] = [
    ("tag:yaml.org,2002:null", _NULL, ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", _BOOL, list("tTfF")),
    ("tag:yaml.org,2002:int", _INT, list("-+0123456789")),
    ("tag:yaml.org,2002:float", _FLOAT, list("-+0123456789.")),
    (_MERGE_TAG, _MERGE, ["<"]),
]


class RecipeLoader(yaml.SafeLoader):
    """``SafeLoader`` with the YAML 1.2 core schema's implicit types (no timestamps, no 1.1 bools)."""

    yaml_implicit_resolvers: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}


for _tag, _regex, _first in _RESOLVERS:
    RecipeLoader.add_implicit_resolver(_tag, _regex, _first)


def _construct_int(loader: yaml.SafeLoader, node: ScalarNode) -> int:
    """1.2 integers: ``012`` is twelve (1.1 made it octal ten); octal is spelt ``0o12``."""
    text = str(loader.construct_scalar(node))
    try:
        if text.startswith("0o"):
            return int(text[2:], 8)
        if text.startswith("0x"):
            return int(text[2:], 16)
        return int(text, 10)
    except ValueError:  # Python refuses to convert more than 4300 digits (CVE-2020-10735)
        raise yaml.constructor.ConstructorError(
            None, None, f"an integer of {len(text)} digits is too large", node.start_mark
        ) from None


def _refuse(loader: yaml.SafeLoader, node: Node) -> Any:
    raise yaml.constructor.ConstructorError(
        None, None, f"tag {node.tag.replace('tag:yaml.org,2002:', '!!')} is not allowed in a recipe (plain data only)",
        node.start_mark,
    )


RecipeLoader.add_constructor("tag:yaml.org,2002:int", _construct_int)
for _tag in ("binary", "timestamp", "set", "omap", "pairs"):
    RecipeLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _refuse)


class RecipeDumper(yaml.SafeDumper):
    """``SafeDumper`` that quotes strings which either YAML 1.1 or our 1.2 reader would retype."""

    yaml_implicit_resolvers = {k: list(v) for k, v in yaml.SafeDumper.yaml_implicit_resolvers.items()}


for _tag, _regex, _first in _RESOLVERS:
    RecipeDumper.add_implicit_resolver(_tag, _regex, _first)


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    # Short lists of numbers or names (layers, betas, subsets) read best on one line.
    flow = bool(data) and not any(isinstance(x, (list, dict)) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


RecipeDumper.add_representer(list, _represent_list)


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


def _duplicate_keys(root: Node, source: str) -> list[str]:
    """Every key repeated within one mapping, with its line and the mapping's dotted path."""
    found: list[tuple[int, str]] = []
    seen: set[int] = set()  # aliases share nodes: visit each once (and never loop)
    stack: list[tuple[Node, str]] = [(root, "")]
    while stack:
        node, path = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, MappingNode):
            first_line: dict[tuple[str, str], int] = {}
            for key, value in node.value:
                if key.tag == _MERGE_TAG:  # `<<: *base` may re-set keys on purpose
                    stack.append((value, path))
                    continue
                if not isinstance(key, ScalarNode):
                    stack.append((value, path))
                    continue
                line = key.start_mark.line + 1
                ident = (key.tag, key.value)
                if ident in first_line:
                    where = f"in {path}" if path else "at the top level"
                    first = first_line[ident]
                    found.append((line, f"{source}:{line}: duplicate key '{key.value}' {where} (first at line {first})"))
                else:
                    first_line[ident] = line
                stack.append((value, _join(path, key.value)))
        elif isinstance(node, SequenceNode):
            stack.extend((item, _join(path, i)) for i, item in enumerate(node.value))
    return [message for _, message in sorted(found)]


def _yaml_problem(error: yaml.YAMLError, source: str) -> str:
    """A PyYAML error as one line: ``file:line: invalid YAML: what (column c)``."""
    if isinstance(error, yaml.MarkedYAMLError):
        mark = error.problem_mark or error.context_mark
        what = error.problem or error.context or "syntax error"
        if mark is not None:
            where = f"column {mark.column + 1}"
            context = error.context_mark
            if error.problem and error.context and context is not None and context.line != mark.line:
                where += f"; {error.context} started at line {context.line + 1}"  # e.g. an unclosed '['
            return f"{source}:{mark.line + 1}: invalid YAML: {what} ({where})"
        return f"{source}: invalid YAML: {what}"
    return f"{source}: invalid YAML: {str(error).splitlines()[0] if str(error) else type(error).__name__}"


def _flow_depth(text: str) -> int:
    """The deepest nesting of ``[``/``{`` outside quotes and comments, in one pass over the text.

    Checked before parsing because PyYAML's scanner slows down quadratically with flow depth
    (200 KB of ``[`` takes minutes). Brackets inside plain scalars count too, which can only
    over-estimate; no real recipe comes near the bound.
    """
    depth = deepest = 0
    quote = ""
    comment = False
    previous = "\n"
    for ch in text:
        if comment:
            comment = ch != "\n"
        elif quote:
            if ch == quote:
                quote = ""
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth = max(depth - 1, 0)
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and previous in " \t\n":
            comment = True
        elif ch == "\n":
            quote = ""
        previous = ch
    return deepest


def _check_size(root: Node, source: str) -> None:
    """Refuse documents that nest deeper than ``MAX_DEPTH`` or expand to over ``MAX_VALUES``
    values when aliases are followed (and alias cycles), without expanding anything."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    active: set[int] = set()
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children: list[Node] = []
        if isinstance(node, SequenceNode):
            children = list(node.value)
        elif isinstance(node, MappingNode):
            children = [n for pair in node.value for n in pair]
        if done:
            active.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            if size[key] > MAX_VALUES:
                raise RecipeError([
                    f"{source}: the document expands to more than {MAX_VALUES} values once its aliases "
                    f"(*name) are followed; a recipe is far smaller"
                ])
            if depth[key] > MAX_DEPTH:
                raise RecipeError([f"{source}: invalid YAML: nested deeper than {MAX_DEPTH} levels"])
            continue
        if key in size:
            continue
        if key in active:
            raise RecipeError([f"{source}:{node.start_mark.line + 1}: an alias refers to a value that contains it (a cycle)"])
        active.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)


def _reader_problem(error: yaml.reader.ReaderError, text: str, source: str) -> str:
    """A forbidden character (NUL, most control characters) as ``file:line: ...``."""
    line = text.count("\n", 0, max(error.position, 0)) + 1
    char = error.character
    code = f"#x{char:04x}" if isinstance(char, int) else repr(char)
    return f"{source}:{line}: invalid YAML: the control character {code} is not allowed (position {error.position})"


def parse_yaml(text: str, source: str) -> Any:
    """Parse one YAML document with the recipe rules; ``source`` names it in error messages.

    Raises ``RecipeError`` for syntax errors (one line with the line number), duplicate keys
    (all of them), tags that would construct anything but plain data, control characters, and
    documents over the size bounds of this module.
    """
    if len(text) > MAX_BYTES:
        raise RecipeError([f"{source}: {len(text)} characters is too large for a recipe (at most {MAX_BYTES})"])
    if _flow_depth(text) > MAX_DEPTH:
        raise RecipeError([f"{source}: invalid YAML: brackets nested deeper than {MAX_DEPTH} levels"])
    loader: RecipeLoader | None = None
    try:
        loader = RecipeLoader(text)  # the reader rejects control characters here already
        node = loader.get_single_node()
        if node is None:
            return None
        _check_size(node, source)
        duplicates = _duplicate_keys(node, source)
        if duplicates:
            raise RecipeError(duplicates)
        return loader.construct_document(node)
    except yaml.reader.ReaderError as error:
        raise RecipeError([_reader_problem(error, text, source)]) from None
    except yaml.YAMLError as error:
        raise RecipeError([_yaml_problem(error, source)]) from None
    except RecursionError:
        raise RecipeError([f"{source}: invalid YAML: nested too deeply"]) from None
    finally:
        if loader is not None:
            loader.dispose()


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a recipe file into plain data; the top level must be a mapping."""
    source = os.fspath(path)
    if os.path.exists(source) and not is_readable_kind(Path(source)):  # a FIFO would block the read
        raise RecipeError([f"{source}: not a regular file (a FIFO, device or socket), not a recipe file"])
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RecipeError([f"{source}: no such recipe file"]) from None
    except IsADirectoryError:
        raise RecipeError([f"{source}: is a directory, not a recipe file"]) from None
    except UnicodeDecodeError as error:
        raise RecipeError([f"{source}: not UTF-8 text (byte {error.start})"]) from None
    except OSError as error:
        raise RecipeError([f"{source}: cannot read the recipe: {error.strerror or error}"]) from None
    data = parse_yaml(text, source)
    if not isinstance(data, dict):
        got = "an empty file" if data is None else f"a {type(data).__name__}"
        raise RecipeError([f"{source}: a recipe must be a mapping (name: ..., dataset: ..., ...); got {got}"])
    return data


def dump_yaml(tree: Any) -> str:
    """Plain data as readable YAML in the given key order; ``parse_yaml`` reads it back equal."""
    return yaml.dump(
        tree,
        Dumper=RecipeDumper,
        sort_keys=False,
        default_flow_style=False,
        allow_unicode=True,
        width=100,
    )
