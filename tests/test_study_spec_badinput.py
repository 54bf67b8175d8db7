"""Bad study files found by fuzzing: each is one ``StudyError`` line naming the file and the key,
raised promptly by ``load_study`` (never a traceback, a hang or a silently wrong study)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from mmcore.study.spec import MAX_SEEDS, StudyError, load_study
from test_study_spec import RECIPE  # the tiny two-modality recipe, its output folder a field

STUDY = """\
name: s
recipe: recipe.yaml
budget: {epochs: 1}
seeds: 3
arms:
  uniform: {balancer: mmcore.uniform}
  dropout: {from: uniform, train.modality_dropout: 0.3, train.optimizer.lr: 3e-4}
axes:
  rates:
    imbalanced: {missing.train.rates: {m0: 0.1, m1: 0.6}}
    balanced: {missing.train.rates: {m0: 0.35, m1: 0.35}}
tune: {space: {train.optimizer.lr: [0.01, 0.001]}, select: val.macro_f1}
analysis:
  primary: test.average.macro_f1
  compare: [[dropout, uniform]]
  interaction: {axis: rates, levels: [imbalanced, balanced]}
  secondary: [test.single_views.macro_f1]
  higher_is_better: true
"""


def _write(tmp_path: Path, study: str | bytes = STUDY) -> Path:
    (tmp_path / "recipe.yaml").write_text(RECIPE.format(output=tmp_path / "out"))
    path = tmp_path / "study.yaml"
    if isinstance(study, bytes):
        path.write_bytes(study)
    else:
        path.write_text(study)
    return path


def _error(tmp_path: Path, study: str | bytes) -> str:
    path = _write(tmp_path, study)
    with pytest.raises(StudyError) as caught:
        load_study(path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(str(path)), message
    assert caught.value.exit_code == 2
    return message


def _edit(old: str, new: str) -> str:
    assert old in STUDY, old
    return STUDY.replace(old, new)


def test_valid_study_loads_to_the_same_values(tmp_path):
    study = load_study(_write(tmp_path))
    assert study.name == "s" and study.seeds == [0, 1, 2]
    assert study.arms == {
        "uniform": {"balancer": "mmcore.uniform"},
        "dropout": {"balancer": "mmcore.uniform", "train.modality_dropout": 0.3, "train.optimizer.lr": 3e-4},
    }
    assert study.axes["rates"] == {"imbalanced": {"missing.train.rates": {"m0": 0.1, "m1": 0.6}},
                                   "balanced": {"missing.train.rates": {"m0": 0.35, "m1": 0.35}}}
    assert study.analysis.primary == "test.average.macro_f1"
    assert study.analysis.families == {"": [("dropout", "uniform")]}
    assert study.analysis.secondary == ["test.single_views.macro_f1"]
    assert study.analysis.higher_is_better is True
    assert study.tune is not None and study.tune.space == {"train.optimizer.lr": [0.01, 0.001]}
    assert study.tune.at == {"rates": "imbalanced"}
    # names shipped studies use stay legal: '-', '_', '.', '+' and digits inside a name
    ok = load_study(_write(tmp_path, _edit("name: s", "name: a.b_c-1+2").replace("uniform", "uni_form.v2-x")))
    assert ok.name == "a.b_c-1+2" and "uni_form.v2-x" in ok.arms


def test_string_seed_ranges_keep_their_order(tmp_path):
    assert load_study(_write(tmp_path, _edit("seeds: 3", "seeds: 5-7,0"))).seeds == [5, 6, 7, 0]
    assert load_study(_write(tmp_path, _edit("seeds: 3", "seeds: [3, 1, 3]"))).seeds == [1, 3]


# 1. non-UTF-8 bytes
def test_non_utf8_is_one_line(tmp_path):
    message = _error(tmp_path, b"name: s\xff\xfe\n" + STUDY.encode()[len("name: s\n"):])
    assert "not UTF-8" in message


# 2. a FIFO never blocks
@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes on this platform")
def test_fifo_is_refused_promptly(tmp_path):
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def load() -> None:
        try:
            load_study(fifo)
            outcome.append(None)
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            outcome.append(error)

    start = time.monotonic()
    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    worker.join(5)
    if worker.is_alive():  # unblock the reader so the test process can exit
        with open(fifo, "w"):
            pass
        pytest.fail("load_study blocked on a FIFO")
    assert time.monotonic() - start < 5
    assert isinstance(outcome[0], StudyError) and "not a regular file" in str(outcome[0])
    assert "\n" not in str(outcome[0])


# 3. duplicate keys, and the recipe reader's other rules
@pytest.mark.parametrize("study, message", [
    (_edit("  dropout:", "  uniform: {balancer: mmcore.uniform}\n  dropout:"), "duplicate key 'uniform' in arms"),
    (STUDY + "seeds: 4\n", "duplicate key 'seeds' at the top level"),
    (_edit("name: s", "name: !!python/name:os.system s"), "study.yaml:1:"),
    (_edit("name: s", "name: \"s\x07\""), "study.yaml:1: invalid YAML: the control character"),
    (_edit("name: s", "name: \"s\\x07\""), "name: 's\\x07' is not a usable study name"),
])
def test_duplicate_keys_and_unsafe_yaml(tmp_path, study, message):
    assert message in _error(tmp_path, study)


# 4. unhashable or non-string values where a name is expected
@pytest.mark.parametrize("edit, message", [
    (("from: uniform,", "from: [uniform],"), "arms.dropout.from: expected an arm name (a string)"),
    (("  uniform: {balancer", "  1: {balancer"), "arms: expected an arm name (a string), got 1"),
    (("  uniform: {balancer: mmcore.uniform}", "  uniform: mmcore.uniform"), "arms.uniform: expected a mapping"),
    (("train.optimizer.lr: 3e-4}", "train.optimizer.lr: 3e-4, tuned_as: [uniform]}"),
     "arms.dropout.tuned_as: expected an arm name (a string)"),
    (("uniform: {balancer: mmcore.uniform}", "uniform: {balancer: mmcore.uniform, only: {rates: [{a: 1}]}}"),
     "arms.uniform.only.rates: expected levels among imbalanced, balanced"),
    (("levels: [imbalanced, balanced]", "levels: [[imbalanced], balanced]"), "analysis.interaction.levels: expected two levels"),
    (("compare: [[dropout, uniform]]", "compare: [[[dropout], uniform]]"),
     "analysis.compare[0]: expected an arm name (a string), got ['dropout']"),
    (("select: val.macro_f1}", "select: val.macro_f1, at: {rates: [imbalanced]}}"), "tune.at: expected axis -> one level"),
])
def test_names_must_be_strings(tmp_path, edit, message):
    assert message in _error(tmp_path, _edit(*edit))


def test_tuned_as_an_arm_given_as_a_string(tmp_path):
    study = _edit("train.optimizer.lr: 3e-4}", "train.optimizer.lr: 3e-4, tuned_as: uniform}")
    assert "arms.uniform: expected a mapping" in _error(tmp_path, study.replace(
        "  uniform: {balancer: mmcore.uniform}", "  uniform: mmcore.uniform"))


# 5. higher_is_better is a YAML boolean
@pytest.mark.parametrize("value", ["'false'", "2020-01-01", "no", "1"])
def test_higher_is_better_must_be_a_boolean(tmp_path, value):
    message = _error(tmp_path, _edit("higher_is_better: true", f"higher_is_better: {value}"))
    assert "analysis.higher_is_better: expected true or false" in message


def test_higher_is_better_false_is_false(tmp_path):
    assert load_study(_write(tmp_path, _edit("higher_is_better: true", "higher_is_better: false"))).analysis.higher_is_better is False


# 6. seeds: linear, capped, non-negative
@pytest.mark.parametrize("value, message", [
    ("0-200000", f"seeds: '0-200000' is more than {MAX_SEEDS} seeds"),
    ("0-1000000000000", f"at most {MAX_SEEDS}"),
    ("50000", f"seeds: 50000 is more than {MAX_SEEDS} seeds"),
    ("1000000000", f"at most {MAX_SEEDS}"),
    (f"[{', '.join(str(i) for i in range(MAX_SEEDS + 1))}]", f"at most {MAX_SEEDS}"),
    ("[-1, 2]", "seeds: seed -1 is negative"),
    ("'0-3,2'", "seeds: seed 2 is listed twice"),
    ("'4-2'", "seeds: range '4-2' runs backwards"),
])
def test_seeds_are_capped_and_fast(tmp_path, value, message):
    start = time.monotonic()
    assert message in _error(tmp_path, _edit("seeds: 3", f"seeds: {value}"))
    assert time.monotonic() - start < 5


def test_many_seeds_within_the_cap_parse_fast(tmp_path):
    start = time.monotonic()
    study = load_study(_write(tmp_path, _edit("seeds: 3", f"seeds: 0-{MAX_SEEDS - 1}")))
    assert study.seeds == list(range(MAX_SEEDS)) and time.monotonic() - start < 5


def test_tune_seeds_are_capped(tmp_path):
    message = _error(tmp_path, _edit("select: val.macro_f1}", "select: val.macro_f1, seeds: 0-99999}"))
    assert f"tune.seeds: '0-99999' is more than {MAX_SEEDS} seeds" in message


# 7. names are single safe path components
@pytest.mark.parametrize("edit, message", [
    (("  uniform: {balancer", "  ../../../escaped: {balancer"), "arms: '../../../escaped' is not a usable arm name"),
    (("name: s", "name: ../escaped"), "name: '../escaped' is not a usable study name"),
    (("name: s", "name: a\\b"), "is not a usable study name"),
    (("name: s", "name: '..'"), "name: '..' is not a usable study name"),
    (("name: s", "name: '-rf'"), "name: '-rf' is not a usable study name"),
    (("name: s", "name: ' s'"), "name: ' s' is not a usable study name"),
    (("  uniform: {balancer", "  .: {balancer"), "arms: '.' is not a usable arm name"),
    (("  uniform: {balancer", "  '': {balancer"), "arms: '' is not a usable arm name"),
    (("    balanced: {", "    ../up: {"), "axes.rates: '../up' is not a usable level name"),
])
def test_names_are_safe_folder_names(tmp_path, edit, message):
    study = _edit(*edit)
    if "uniform: {balancer" not in study:  # the arm was renamed: keep the rest consistent
        new = edit[1].strip().split(":")[0].strip("'")
        study = study.replace("from: uniform", f"from: '{new}'").replace(", uniform]]", f", '{new}']]")
    if "../up" in study:
        study = study.replace("levels: [imbalanced, balanced]", "levels: [imbalanced, ../up]")
    assert message in _error(tmp_path, study)


# 8. an arm compared with itself
def test_compare_an_arm_with_itself(tmp_path):
    message = _error(tmp_path, _edit("compare: [[dropout, uniform]]", "compare: [[dropout, uniform], [uniform, uniform]]"))
    assert "analysis.compare[1]: compares 'uniform' with itself" in message


# 9. secondary must be a list
def test_secondary_as_a_string(tmp_path):
    message = _error(tmp_path, _edit("secondary: [test.single_views.macro_f1]", "secondary: test.single_views.macro_f1"))
    assert "analysis.secondary: expected a list of split.condition.metric endpoints" in message


# 10. endpoints name metrics the study's task reports
@pytest.mark.parametrize("edit, message", [
    (("primary: test.average.macro_f1", "primary: test.average.bogus_metric"),
     "analysis.primary: 'bogus_metric' is not a classification metric;"),
    (("primary: test.average.macro_f1", "primary: test.average.mae"), "analysis.primary: 'mae' is not a classification metric"),
    (("secondary: [test.single_views.macro_f1]", "secondary: [test.single_views.macro_f1, test.average.f1]"),
     "analysis.secondary[1]: 'f1' is not a classification metric"),
    (("select: val.macro_f1}", "select: val.bogus}"), "tune.select: 'bogus' is not a classification metric"),
])
def test_unknown_metric_is_refused(tmp_path, edit, message):
    message_got = _error(tmp_path, _edit(*edit))
    assert message in message_got and "macro_f1" in message_got.split(";", 1)[1]


def test_unevaluated_split_is_refused(tmp_path):
    message = _error(tmp_path, _edit("primary: test.average.macro_f1", "primary: train.average.macro_f1"))
    assert "analysis.primary: 'train' is not an evaluated split; expected one of val, test" in message


def test_metrics_fall_back_to_every_known_metric_when_the_task_is_unknown(tmp_path):
    # an arm that switches the dataset to one that cannot describe itself: every metric mmcore computes
    study = _edit("  uniform: {balancer: mmcore.uniform}", "  uniform: {balancer: mmcore.uniform, dataset: {type: nobody.data}}")
    assert load_study(_write(tmp_path, study.replace("test.average.macro_f1", "test.average.mae"))).analysis.primary == "test.average.mae"
    assert "'bogus' is not a known metric" in _error(tmp_path, study.replace("test.average.macro_f1", "test.average.bogus"))
