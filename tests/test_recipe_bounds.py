"""Hostile or absurd recipe input: bounded, one line each, never a hang, a traceback or a silent number."""

from __future__ import annotations

import typing

import pytest

from mmcore.errors import RecipeError
from mmcore.recipe import apply_overrides, check_value, parse_yaml
from mmcore.recipe.loader import MAX_DEPTH, MAX_VALUES, load_yaml
from mmcore.recipe.schema import Optimizer, Recipe, RunName


def _problem(text: str) -> str:
    with pytest.raises(RecipeError) as info:
        parse_yaml(text, "r.yaml")
    assert len(info.value.problems) == 1
    return info.value.problems[0]


def test_alias_bomb_is_refused_before_expanding():
    rows = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for prev, cur in zip("abcdef", "bcdefg"):
        rows.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    assert len("\n".join(rows)) < 600  # 9^7 = 4.8 million values from a few hundred bytes
    assert f"expands to more than {MAX_VALUES} values" in _problem("\n".join(rows))


def test_merge_key_bomb_is_counted_too():
    rows = ["a: &a {k0: 1, k1: 2, k2: 3, k3: 4, k4: 5, k5: 6, k6: 7, k7: 8}"]
    for i in range(1, 10):
        rows.append(f"m{i}: &m{i} {{<<: [" + ", ".join([f"*{'a' if i == 1 else f'm{i - 1}'}"] * 8) + "]}")
    assert "expands to more than" in _problem("\n".join(rows))


def test_small_aliases_still_work():
    assert parse_yaml("a: &x {k: 1}\nb: {<<: *x, j: 2}\nc: *x", "r.yaml") == {
        "a": {"k": 1}, "b": {"k": 1, "j": 2}, "c": {"k": 1},
    }  # fmt: skip


def test_recursive_alias_is_refused():
    assert "a cycle" in _problem("a: &a [1, *a]")


def test_deep_flow_nesting_is_refused_quickly():
    assert f"nested deeper than {MAX_DEPTH} levels" in _problem("[" * 200_000)
    assert parse_yaml("x: '[[[[[[[[' # {{{{{{{{\ny: [[1]]", "r.yaml") == {"x": "[[[[[[[[", "y": [[1]]}


def test_deep_block_nesting_is_refused():
    text = "a:\n" + "".join(" " * i + "b:\n" for i in range(1, MAX_DEPTH + 2))
    assert f"nested deeper than {MAX_DEPTH} levels" in _problem(text)


def test_document_size_bound():
    assert "too large for a recipe" in _problem("x: " + "y" * (1 << 20))


@pytest.mark.parametrize("char, code", [("\x00", "#x0000"), ("\x07", "#x0007"), ("\x1b", "#x001b")])
def test_control_characters_name_the_line(char, code):
    assert _problem(f"a: 1\nb: x{char}y") == f"r.yaml:2: invalid YAML: the control character {code} is not allowed (position 9)"


def test_control_character_in_a_file(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_bytes(b"name: a\x00b\n")
    with pytest.raises(RecipeError, match=r"r.yaml:1: invalid YAML: the control character #x0000"):
        load_yaml(path)


def test_control_character_in_an_override_value():
    with pytest.raises(RecipeError) as info:
        apply_overrides({"name": "a"}, ["name=x\x00y"])
    assert info.value.problems == [
        "command line: override 'name=x\x00y': the value is not valid YAML: invalid YAML: the control character "
        "#x0000 is not allowed (position 1)"
    ]


def test_huge_integer_is_one_line():
    assert _problem("seed: " + "9" * 5000) == "r.yaml:1: invalid YAML: an integer of 5000 digits is too large (column 7)"


@pytest.mark.parametrize("tag", ["binary aGk=", "timestamp 2024-01-01", "set {a: null}", "omap [{a: 1}]", "pairs [{a: 1}]"])
def test_non_plain_tags_are_refused(tag):
    assert f"tag !!{tag.split()[0]} is not allowed in a recipe" in _problem(f"x: !!{tag}")


def test_ints_must_fit_64_bits():
    assert check_value(2**63 - 1, int, "seed") == []
    assert check_value(2**63, int, "seed") == ["seed: expected int within the 64-bit range (|x| < 2^63), got 64 bits"]
    assert check_value(-(2**63) - 1, int, "x") == ["x: expected int within the 64-bit range (|x| < 2^63), got 64 bits"]


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan"), 10**400])
def test_floats_must_be_finite(value):
    (problem,) = check_value(value, float, "model.imputer.kl_weight")
    assert problem.startswith("model.imputer.kl_weight: expected a finite float, got ")


def test_learning_rate_range():
    lr = typing.get_type_hints(Optimizer, include_extras=True)["lr"]
    assert check_value(2e-4, lr, "lr") == [] and check_value(10, lr, "lr") == []
    for bad in (1e300, 0.0, -1e-3, 10.5):
        (problem,) = check_value(bad, lr, "lr")
        assert problem == f"lr: expected float in (0, 10] (finite), got float {bad!r}"
    assert check_value(float("nan"), lr, "lr") == ["lr: expected a finite float, got float nan"]


def test_run_name_is_a_bounded_directory_name():
    assert check_value("a" * 255, RunName, "name") == []
    for bad in ("a" * 256, "a\tb", "x\x7f", "", "..", "a/b"):
        assert check_value(bad, RunName, "name"), bad
    assert typing.get_type_hints(Recipe, include_extras=True)["name"] is RunName
