"""The dataset's input transform travels with the run: stored, checksummed, applied by predict/eval.

The measured bug this guards: a dataset that standardises with training statistics, a run that
did not store them, and ``mmcore predict`` on raw rows answering one class for everything.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import mmcore.plugins
from mmcore import InputTransform, hookimpl
from mmcore.after import evaluate_run, predict_file
from mmcore.after.runs import open_run
from mmcore.builtins.synthetic import Synthetic
from mmcore.engine.checkpoint import CheckpointError, verify
from mmcore.engine.trainer import run as train_run
from mmcore.errors import DataError, MMCoreError
from mmcore.plugins import load_plugins
from mmcore.testing import check_dataset, tiny_recipe
from mmcore.transform import TransformError, load_transform, save_transform
from mmcore.types import ModalitySpec

DIM = 8
MEAN = torch.linspace(-40.0, 60.0, DIM)  # raw units far from the model's: unstandardised rows fail loudly
STD = torch.linspace(0.5, 30.0, DIM)


class Measured(Synthetic):
    """Synthetic features declared as standardised raw measurements (raw = x * STD + MEAN)."""

    def input_transform(self) -> InputTransform:
        return InputTransform.standardize({s.name: (MEAN, STD) for s in self.modalities})


class Plugin:
    @hookimpl
    def register_datasets(self, register):  # type: ignore[no-untyped-def]
        register("tst.measured", Measured)


@pytest.fixture(scope="module")
def plugins():
    loaded = load_plugins(extra={"tst": Plugin()})
    old = mmcore.plugins._cached
    mmcore.plugins._cached = loaded
    yield loaded
    mmcore.plugins._cached = old


@pytest.fixture(scope="module")
def run_dir(plugins, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("transform")
    recipe = tiny_recipe(out, "train.epochs=2", dataset={"type": "tst.measured", "modalities": 3, "classes": 4,
                                                         "samples": 400, "dim": DIM})
    return train_run(recipe, plugins=plugins, show_progress=False).run_dir


@pytest.fixture
def copy(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "run"))


def test_rules_round_trip_and_keep_padding_zero() -> None:
    t = InputTransform.standardize({"a": (MEAN, STD)})
    x = torch.randn(5, 4, DIM)
    lengths = torch.tensor([4, 1, 2, 3, 4])
    x = x * (torch.arange(4)[None, :] < lengths[:, None]).unsqueeze(-1)
    raw = t.invert("a", x, lengths)
    assert float(raw[1, 1:].abs().max()) == 0.0  # padding stays zero both ways
    assert torch.allclose(t.apply("a", raw, lengths), x, atol=1e-5)
    assert torch.equal(t.apply("b", x), x)  # a modality it does not name is used as it is


@pytest.mark.parametrize(
    "steps,match",
    [
        ({"z": (MEAN, STD)}, "names modality 'z'"),
        ({"a": (MEAN[:3], STD[:3])}, "must be 8 finite values"),
        ({"a": (MEAN, torch.zeros(DIM))}, "must be > 0"),
    ],
)
def test_malformed_declarations_are_one_line_errors(steps: dict, match: str) -> None:
    with pytest.raises(TransformError, match=match):
        InputTransform.standardize(steps).check([ModalitySpec("a", DIM)], "dataset 'x'")


def test_the_run_stores_the_transform_covered_by_the_checkpoint(copy: Path) -> None:
    stored = load_transform(copy)
    assert stored.present and stored.transform is not None
    assert torch.equal(stored.transform.steps["m1"].stats["std"], STD)
    manifest = json.loads((copy / "manifest.json").read_text())
    assert manifest["input_transform"]["m0"] == {"rule": "standardize", "stats": ["mean", "std"]}
    state = json.loads((copy / "checkpoints" / "best" / "state.json").read_text())
    assert set(state["run_files"]) == {"transform.json", "transform.safetensors"}
    save_transform(copy, InputTransform.standardize({"m0": (MEAN + 1, STD)}), "tst.measured")  # tampered
    with pytest.raises(CheckpointError, match=r"transform\.(json|safetensors): sha256 does not match"):
        verify(copy / "checkpoints" / "best")
    with pytest.raises(MMCoreError, match="transform"):
        evaluate_run(copy)


def _raw_file(run_dir: Path, path: Path, raw: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The test split written as raw (or model-form) rows; returns the engine's logits and ids."""
    from mmcore.engine.evaluate import predict

    with open_run(run_dir) as run:
        split = run.session.splits["test"]
        t = run.transform.transform
        x = {f"x.{m}": (t.invert(m, v) if raw else v).contiguous() for m, v in split.features.items()}
        save_file({**x, "ids": split.ids.contiguous()}, str(path))
        mask = torch.ones(len(split), 3, dtype=torch.bool)
        logits = predict(run.session.model, split, {"c": mask}, 64, run.session.runtime.autocast)["c"]
    return logits, split.ids


def _probs(path: Path) -> tuple[list[int], torch.Tensor]:
    rows = list(csv.DictReader(open(path)))
    return [int(r["prediction"]) for r in rows], torch.tensor([[float(r[f"prob.c{c}"]) for c in range(4)] for r in rows])


def test_raw_rows_through_predict_equal_the_engines_evaluation(copy: Path, tmp_path: Path) -> None:
    logits, _ = _raw_file(copy, tmp_path / "raw.safetensors", raw=True)
    notes: list[str] = []
    predict_file(copy, tmp_path / "raw.safetensors", tmp_path / "p.csv", notes=notes)
    predicted, probs = _probs(tmp_path / "p.csv")
    assert predicted == logits.argmax(-1).tolist()
    assert torch.allclose(probs, torch.softmax(logits, -1), atol=1e-5)
    assert not notes
    # the same raw rows taken as model inputs: what the bug did; the answers are not the engine's
    predict_file(copy, tmp_path / "raw.safetensors", tmp_path / "wrong.csv", input_form="model")
    wrong, _ = _probs(tmp_path / "wrong.csv")
    assert sum(a == b for a, b in zip(wrong, predicted)) < len(predicted) * 0.7


def test_model_form_rows_skip_the_transform(copy: Path, tmp_path: Path) -> None:
    logits, _ = _raw_file(copy, tmp_path / "model.safetensors", raw=False)
    predict_file(copy, tmp_path / "model.safetensors", tmp_path / "p.csv", input_form="model")
    predicted, probs = _probs(tmp_path / "p.csv")
    assert predicted == logits.argmax(-1).tolist()
    with pytest.raises(MMCoreError, match="--input-form: 'scaled' is not one of: raw, model"):
        predict_file(copy, tmp_path / "model.safetensors", tmp_path / "q.csv", input_form="scaled")


def test_input_the_transform_cannot_take_is_refused(copy: Path, tmp_path: Path) -> None:
    huge = torch.full((3, DIM), 3e38)
    save_file({"x.m0": huge, "x.m1": torch.zeros(3, DIM)}, str(tmp_path / "huge.safetensors"))
    with pytest.raises(DataError, match="'x.m0' row 0: the run's input transform gives non-finite values"):
        predict_file(copy, tmp_path / "huge.safetensors", tmp_path / "p.csv")


def test_a_dataset_without_a_transform_gets_inputs_as_given_and_predict_says_so(tmp_path: Path) -> None:
    recipe = tiny_recipe(tmp_path, "train.epochs=1")
    run_dir = train_run(recipe, show_progress=False).run_dir
    stored = load_transform(run_dir)
    assert stored.present and stored.transform is not None and not stored.transform.steps  # synthetic: identity
    (run_dir / "transform.json").unlink()  # a run from before transforms were stored
    (run_dir / "transform.safetensors").unlink()
    for name in ("best", "last"):  # its checkpoints recorded no run files either
        state_file = run_dir / "checkpoints" / name / "state.json"
        state = json.loads(state_file.read_text())
        state.pop("run_files")
        state_file.write_text(json.dumps(state))
    save_file({"x.m0": torch.zeros(2, 8)}, str(tmp_path / "in.safetensors"))
    notes: list[str] = []
    assert predict_file(run_dir, tmp_path / "in.safetensors", tmp_path / "p.csv", notes=notes) == 2
    assert any("predates stored input transforms" in n for n in notes)


def test_eval_applies_the_stored_transform_when_the_dataset_now_declares_another(copy: Path, monkeypatch) -> None:
    before = evaluate_run(copy).results
    shifted = InputTransform.standardize({f"m{i}": (MEAN + 3.0, STD * 2.0) for i in range(3)})
    monkeypatch.setattr(Measured, "input_transform", lambda self: shifted)
    # the dataset's splits are unchanged but it now claims other statistics: mapping its inputs back
    # to "raw" with them and forward with the stored ones changes the inputs, and eval says so
    result = evaluate_run(copy)
    assert any("differs from the one stored" in n for n in result.notes)
    assert result.results != before


def test_the_contract_suite_checks_the_round_trip() -> None:
    check_dataset(Measured, options={"modalities": 2, "classes": 2, "samples": 40, "dim": DIM})

    class Broken(Synthetic):
        def input_transform(self) -> InputTransform:
            return InputTransform.standardize({"m0": (MEAN, STD)})  # wrong width for dim 4

    with pytest.raises(AssertionError, match="must be 4 finite values"):
        check_dataset(Broken, options={"modalities": 2, "classes": 2, "samples": 40, "dim": 4})


def test_every_run_gets_a_model_card_that_eval_refreshes(copy: Path) -> None:
    card = (copy / "MODEL_CARD.md").read_text()
    assert "# Model card: tiny" in card and "`tst.measured`" in card
    assert "- m0: `standardize` with mean, std" in card
    assert "range of per-modality missing rates trained on: 0.3 to 0.3" in card
    assert "| m0+m1+m2 | 3 |" in card and "Averages by number of present modalities" in card
    assert card.index("| m0 | 1 |") < card.index("| m0+m1 | 2 |") < card.index("| m0+m1+m2 | 3 |")
    test = json.loads((copy / "eval.json").read_text())["results"]["test"]
    assert f"{test['m0']['macro_f1']:.4f}" in card
    evaluate_run(copy, split="val")
    assert "`evals/best-val`" in (copy / "MODEL_CARD.md").read_text()


@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_export_equals_predict_on_raw_rows(copy: Path, tmp_path: Path, fmt: str) -> None:
    from mmcore.after.export import ATOL, export_run

    if fmt == "onnx":
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnx")
    record = export_run(copy, fmt)
    assert record["max_abs_diff"] <= ATOL and record["checked_rows"] == 60
    assert (copy / "exports" / record["file"]).is_file() and (copy / "exports" / "README.md").is_file()
    assert f"`exports/{record['file']}`" in (copy / "MODEL_CARD.md").read_text()
    if fmt == "torchscript":  # loads with torch alone; raw rows + mask in, the predict CSV's answers out
        logits, _ = _raw_file(copy, tmp_path / "raw.safetensors", raw=True)
        from safetensors.torch import load_file

        raw = load_file(str(tmp_path / "raw.safetensors"))
        model = torch.jit.load(str(copy / "exports" / "model.ts"))
        n = len(raw["ids"])
        out = model([raw[f"x.m{i}"] for i in range(3)], [torch.ones(n, dtype=torch.int64)] * 3, torch.ones(n, 3, dtype=torch.bool))
        assert torch.allclose(out, logits, atol=ATOL)


def test_export_refuses_an_unknown_format(copy: Path) -> None:
    from mmcore.after.export import export_run

    with pytest.raises(MMCoreError, match="--format: 'tflite' is not one of: torchscript, onnx"):
        export_run(copy, "tflite")


def test_console_does_not_wrap_when_output_is_not_a_terminal(monkeypatch, capsys) -> None:
    from mmcore.clitools import PIPE_WIDTH, make_console

    monkeypatch.delenv("COLUMNS", raising=False)
    console = make_console()  # pytest's captured stdout is not a terminal
    assert console.width == PIPE_WIDTH
    console.print("x" * 150 + " /a/long/run/path/" + "y" * 60)
    assert len(capsys.readouterr().out.strip().splitlines()) == 1
