"""Seeded fuzzing of recipes and overrides through the real command line (in process).

Every shipped recipe is mutated — wrong types, missing and unknown keys, out-of-range and
non-finite numbers, unicode and control characters, YAML tags and aliases, deep nesting,
truncation, non-mapping documents — and bad override strings are added. Each case must end with
exit 0 (valid) or 2 (a recipe error), never a traceback, within a per-case time bound that only a
hang could exceed. A sample of mutants of the tiny recipe that validate is then run for one
short epoch: a run may refuse (exit 1 or 2) but never crash with a traceback.

The seed is fixed, so a failure reproduces; the failing case's text is in the assertion message.
"""

from __future__ import annotations

import copy
import random
import signal
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest
from typer.testing import CliRunner

from mmcore.cli import app
from mmcore.recipe import dump_yaml, parse_yaml
from mmcore.testing.recipes import TINY

SEED = 20240513
RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))
TREE_CASES, TEXT_CASES, OVERRIDE_CASES = 14, 12, 8  # per recipe: 7 recipes -> 238 cases
PER_RUN = 3  # edge values combined in one short run
CASE_SECONDS, RUN_SECONDS = 20, 120  # far above the real cost (milliseconds, seconds): only a hang trips them

HOSTILE_VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 2**63, -(2**63) - 1, 10**30, 1e308, -1e-300, float("inf"), float("-inf"),
    float("nan"), 0.5, 1.0000001, "", "x", "é中文🙂", "a\x00b", "\x1b[31mred", "\u202eevil", "a" * 5000,
    "val.nope", "mmcore.nope", [], [1, "a", None], [[[[]]]], {}, {"type": 3}, {"type": "mmcore.mlp", "x": 1},
    {"nested": {"deep": [1, {"deeper": None}]}},
]
TAGS = ["!!python/object:os.system", "!!python/name:os.system", "!!binary", "!!set", "!!timestamp", "!!omap", "!custom", "!!str", "!!int"]
BAD_OVERRIDES = [
    "", "=", "==", "a..b=1", ".a=1", "a.=1", "~", "~nope", "~name", "+name=x", "+", "+=1", "name", "x=[", "x={a:",
    "seed=1e400", "seed=" + "9" * 5000, "seed=.nan", "seed=-1", "seed=9223372036854775808", "name=a\x00b",
    "name=\x07", "model.dim=0", "model=3", "train=[]", "train.optimizer.lr=.inf", "train.optimizer.lr=1e300",
    "balancer=mmcore.nope", "model.encoders.default=mmcore.mlp", "missing.train.rates.zz=0.5",
    "missing.eval.conditions=[nope]", "train.select=val.nope", "output=/proc/mmcore-fuzz/runs", "x.y.z=1",
    "model.fusion.layers.99=1", "model.fusion.layers.a=1", "dataset=[1]", "train.epochs=!!binary aGk=",
    "name=&a [*a]", "name=" + "[" * 300, "+train.epochs=3", "~train.epochs.x", "é=1",
]


class _Timeout(Exception):
    pass


@contextmanager
def _deadline(seconds: int) -> Iterator[None]:
    """Interrupt a hang (SIGALRM) so that the test reports it instead of stalling CI."""

    def on_alarm(signum: int, frame: Any) -> None:
        raise _Timeout(f"no result within {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# ---------------------------------------------------------------- mutations


def _paths(tree: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(tree, dict):
        for k, v in tree.items():
            out += _paths(v, prefix + (k,))
    elif isinstance(tree, list):
        for i, v in enumerate(tree):
            out += _paths(v, prefix + (i,))
    return out


def _parent(tree: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        tree = tree[key]
    return tree


def _mutate_tree(tree: dict[str, Any], rng: random.Random) -> Any:
    tree = copy.deepcopy(tree)
    path = rng.choice(_paths(tree))
    parent, last = _parent(tree, path), path[-1]
    op = rng.randrange(7)
    if op <= 2:
        parent[last] = copy.deepcopy(rng.choice(HOSTILE_VALUES))
    elif op == 3:
        del parent[last]
    elif op == 4 and isinstance(parent, dict):
        parent[rng.choice(["epocs", "typ", "unknown_key", "é", 7, "type"])] = rng.choice([1, "x", None])
    elif op == 5:
        nested: Any = 1
        for _ in range(rng.choice([10, 70])):
            nested = [nested] if rng.random() < 0.5 else {"k": nested}
        parent[last] = nested
    else:
        return rng.choice([[1, 2], 42, "just a string", None, 1.5, [tree]])
    return tree


def _mutate_text(text: str, rng: random.Random) -> str | bytes:
    op = rng.randrange(11)
    at = rng.randrange(len(text) + 1)
    if op == 0:
        return text[:at] + rng.choice(["\x00", "\x01", "\x07", "\x1b", "\x7f", "\ufffe", "\t", "\r"]) + text[at:]
    if op == 1:
        i = text.find(": ", at)
        i = i if i >= 0 else text.find(": ")
        return text[: i + 2] + rng.choice(TAGS) + " " + text[i + 2 :]
    if op == 2:
        bomb = "".join(f"l{i}: &l{i} [" + ",".join([f"*l{i - 1}" if i else '"x"'] * 9) + "]\n" for i in range(8))
        return bomb + text
    if op == 3:
        depth = rng.choice([65, 1000, 100_000])
        return text + "\ndeep: " + "[" * depth + "]" * rng.choice([0, depth])
    if op == 4:
        return text[:at]
    if op == 5:
        return text[:at] + rng.choice("[]{}:,&*!|>'\"%@`#-?\n ") + text[at + 1 :]
    if op == 6:
        lines = text.splitlines(keepends=True)
        i = rng.randrange(len(lines))
        return "".join(lines[: i + 1] + lines[i:])  # a duplicated line: usually a duplicate key
    if op == 7:
        return rng.choice(["", "---\n", "[1, 2]\n", "42\n", "'text'\n", "~\n", "a: 1\n---\nb: 2\n", "%YAML 1.1\n---\na: 1\n"])
    if op == 8:
        return text + f"\nseed: {'9' * rng.choice([19, 400, 5000])}\n"
    if op == 9:
        return text.encode("utf-8")[:at] + rng.choice([b"\xff", b"\xc3", b"\xef\xbb\xbf", b"\x80\x81"]) + text.encode()[at:]
    return text + "\nx: &a {k: 1}\ny: {<<: *a, j: *a}\nz: &r [*r]\n"


def _random_override(tree: Any, rng: random.Random) -> str:
    if rng.random() < 0.5:
        return rng.choice(BAD_OVERRIDES)
    keys = rng.choice(_paths(tree))
    value = rng.choice(HOSTILE_VALUES)
    text = dump_yaml(value).strip() if not isinstance(value, str) or value else "''"
    text = text.removesuffix("\n...").replace("\n", " ")
    op = rng.choice(["", "+", "~"])
    dotted = ".".join(str(k) for k in keys)
    return f"~{dotted}" if op == "~" else f"{op}{dotted}={text}"


def _cases() -> list[tuple[str, str | bytes, list[str]]]:
    rng = random.Random(SEED)
    cases: list[tuple[str, str | bytes, list[str]]] = []
    for recipe in RECIPES:
        text = recipe.read_text(encoding="utf-8")
        tree = parse_yaml(text, str(recipe))
        for i in range(TREE_CASES):
            cases.append((f"{recipe.stem}/tree{i}", dump_yaml(_mutate_tree(tree, rng)), []))
        for i in range(TEXT_CASES):
            cases.append((f"{recipe.stem}/text{i}", _mutate_text(text, rng), []))
        for i in range(OVERRIDE_CASES):
            overrides = [_random_override(tree, rng) for _ in range(rng.randint(1, 3))]
            cases.append((f"{recipe.stem}/override{i}", text, overrides))
    return cases


# ---------------------------------------------------------------- running a case


def _invoke(args: list[str], seconds: int) -> tuple[int, str]:
    runner = CliRunner()
    with _deadline(seconds):
        result = runner.invoke(app, args, catch_exceptions=True)
    output = result.output + (getattr(result, "stderr", "") if getattr(result, "stderr_bytes", None) else "")
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{type(result.exception).__name__}: {result.exception}\n{output[-2000:]}")
    return result.exit_code, output


def test_fuzzed_recipes_and_overrides_end_in_exit_0_or_2(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # a mutant's relative output folder is probed here
    monkeypatch.delenv("MMCORE_DEBUG", raising=False)
    cases = _cases()
    assert len(cases) >= 200
    outcomes = {0: 0, 2: 0}
    for name, content, overrides in cases:
        path = tmp_path / "case.yaml"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
        try:
            code, output = _invoke(["validate", str(path), *overrides], CASE_SECONDS)
        except (AssertionError, _Timeout) as error:
            raise AssertionError(f"case {name} crashed: {error}\noverrides: {overrides!r}\n{str(content)[:1500]}") from None
        assert code in (0, 2), f"case {name}: exit {code}\n{output[-1500:]}\noverrides: {overrides!r}"
        assert "Traceback" not in output, f"case {name}: traceback\n{output[-1500:]}"
        if code == 2:
            assert output.lstrip().startswith("error: "), f"case {name}: {output[:500]}"
        outcomes[code] += 1
    assert outcomes[0] > 0 and outcomes[2] > len(cases) // 2  # the mutations do hit and miss


# Edge values that validate; a run must either use them or refuse with one line.
EDGES: list[tuple[tuple[str, ...], Any]] = [
    (("model", "dim"), 1),
    (("missing", "train", "rates", "m0"), 1.0),
    (("missing", "train", "min_present"), 3),
    (("missing", "train", "min_present"), 0),
    (("missing", "train", "policy"), "resample"),
    (("missing", "eval", "conditions"), "full"),
    (("train", "optimizer", "lr"), 10.0),
    (("train", "optimizer", "type"), "sgd"),
    (("train", "batch_size"), 1),
    (("train", "grad_clip"), 1e-30),
    (("train", "log_every"), 10**9),
    (("train", "select"), "val.m0+m1.accuracy"),
    (("model", "unimodal_heads"), False),
    (("model", "fusion", "dropout"), 0.99),
    (("data", "nonfinite"), "absent"),
    (("balancer",), {"type": "redcore.relative_advantage", "target": "unimodal"}),
]


def _short_run_tree(tmp_path: Path, name: str) -> dict[str, Any]:
    tree = copy.deepcopy(TINY)
    tree.update({"output": str(tmp_path / "runs"), "name": name})
    tree["train"].update({"epochs": 1, "log_every": 2})
    tree["dataset"]["samples"] = 120
    return tree


def test_the_largest_valid_seed_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tree = _short_run_tree(tmp_path, "big-seed")
    tree["seed"] = 2**63 - 1
    path = tmp_path / "seed.yaml"
    path.write_text(dump_yaml(tree), encoding="utf-8")
    assert _invoke(["run", str(path), "--no-progress"], RUN_SECONDS)[0] == 0


def test_a_sample_of_validating_mutants_runs_without_a_traceback(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MMCORE_DEBUG", raising=False)
    edges = random.Random(SEED + 1).sample(EDGES, k=len(EDGES))
    runs = [edges[j : j + PER_RUN] for j in range(0, len(edges), PER_RUN)]  # every edge value, a few per run
    ran = 0
    for i, picks in enumerate(runs):
        tree = _short_run_tree(tmp_path, f"fuzz{i}")
        for keys, value in picks:
            node = tree
            for key in keys[:-1]:
                node = node.setdefault(key, {})
            node[keys[-1]] = copy.deepcopy(value)
        path = tmp_path / f"run{i}.yaml"
        path.write_text(dump_yaml(tree), encoding="utf-8")
        code, output = _invoke(["validate", str(path)], CASE_SECONDS)
        if code != 0:
            continue  # an invalid combination: the other test covers refusals
        code, output = _invoke(["run", str(path), "--no-progress"], RUN_SECONDS)
        assert code in (0, 1, 2), f"{picks}: exit {code}\n{output[-1500:]}"
        assert "Traceback" not in output, f"{picks}: traceback\n{output[-1500:]}"
        ran += 1
    assert ran >= len(runs) // 2
