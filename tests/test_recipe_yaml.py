"""Recipe files: YAML 1.2 scalars, duplicate and merge keys, syntax errors with their line, refused
Python tags, missing files and bad top levels, and dumping that keeps strings strings."""

from __future__ import annotations

from pathlib import Path

import yaml

from mmcore.recipe import dump_yaml, load_yaml, parse_yaml
from recipe_helpers import raises, write


# ---------------------------------------------------------------- loading


def test_yaml_12_floats_and_scalars(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "lr: 3e-4\nbig: 1e5\nhalf: .5\nneg: -2.5E-3\nwith_dot: 8.0e-4\nn: 3\n"
        "word: on\nzero_led: 012\nday: 2024-05-01\ntime: 1:30\nyes_: true\nnothing: null\n",
    )
    tree = load_yaml(path)
    assert tree["lr"] == 0.0003 and type(tree["lr"]) is float
    assert tree["big"] == 100000.0 and type(tree["big"]) is float
    assert tree["half"] == 0.5 and tree["neg"] == -0.0025 and tree["with_dot"] == 0.0008
    assert tree["n"] == 3 and type(tree["n"]) is int
    # YAML 1.1 oddities are plain values in YAML 1.2
    assert tree["word"] == "on" and tree["zero_led"] == 12 and tree["day"] == "2024-05-01" and tree["time"] == "1:30"
    assert tree["yes_"] is True and tree["nothing"] is None


def test_duplicate_keys_are_reported_with_lines(tmp_path: Path) -> None:
    text = "name: a\ntrain:\n  optimizer:\n    lr: 1e-3\n    lr: 2e-3\nname: b\n"
    path = write(tmp_path, text)
    assert raises(load_yaml, path) == [
        f"{path}:5: duplicate key 'lr' in train.optimizer (first at line 4)",
        f"{path}:6: duplicate key 'name' at the top level (first at line 1)",
    ]


def test_merge_keys_may_reset_values(tmp_path: Path) -> None:
    path = write(tmp_path, "base: &b {lr: 1, wd: 2}\nopt:\n  <<: *b\n  lr: 3\n")
    assert load_yaml(path)["opt"] == {"lr": 3, "wd": 2}


def test_syntax_error_is_one_line_with_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "name: x\nmodel:\n  dim: [1, 2\ntrain: {}\n")
    problems = raises(load_yaml, path)
    assert len(problems) == 1 and "\n" not in problems[0]
    assert problems[0].startswith(f"{path}:4: invalid YAML: ")
    assert problems[0].endswith("while parsing a flow sequence started at line 3)")  # points at the open '['


def test_python_tags_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, "name: !!python/object/apply:os.getcwd []\n")
    (problem,) = raises(load_yaml, path)
    assert problem.startswith(f"{path}:1: invalid YAML: could not determine a constructor")


def test_missing_file_and_bad_top_level(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    assert raises(load_yaml, missing) == [f"{missing}: no such recipe file"]
    as_list = write(tmp_path, "- a\n- b\n", "list.yaml")
    assert raises(load_yaml, as_list) == [
        f"{as_list}: a recipe must be a mapping (name: ..., dataset: ..., ...); got a list"
    ]
    empty = write(tmp_path, "# nothing\n", "empty.yaml")
    assert raises(load_yaml, empty)[0].endswith("got an empty file")


def test_dump_quotes_strings_that_look_like_other_types() -> None:
    tree = {"a": "3e-4", "b": "on", "c": "012", "d": 1e-05, "e": [1, 2], "f": {"g": None, "h": True}, "i": ""}
    text = dump_yaml(tree)
    assert parse_yaml(text, "dump") == tree
    assert yaml.safe_load(text) == tree  # a YAML 1.1 reader agrees
    assert "e: [1, 2]\n" in text  # short scalar lists stay on one line
