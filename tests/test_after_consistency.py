"""``mmcore eval``, ``predict`` and ``export`` agree with each other and with the numbers the
training run wrote, on good inputs: the same conditions and numbers as ``eval.json``, predictions
that scored by hand give eval's metrics and do not depend on the batch a row comes in, raw inputs
through the run's transform, and an exported model that gives predict's outputs for every presence
pattern, a batch of one and any input dtype. Runs: vectors with a standardising transform,
sequences (the MLP encoder packs frames), and RedCore's imputer and balancer."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from torch import Tensor, nn

import mmcore.plugins
from mmcore import InputTransform, hookimpl
from mmcore.after import evaluate_run, predict_file
from mmcore.after.export import ATOL, ExportError, export_run
from mmcore.after.runs import open_run
from mmcore.builtins.synthetic import Synthetic
from mmcore.engine.evaluate import condition_mask_table, predict
from mmcore.engine.trainer import run as train_run
from mmcore.plugins import load_plugins
from mmcore.testing import tiny_recipe
from mmcore.types import ImputerOutput

DIM = 8
MEAN = torch.linspace(-40.0, 60.0, DIM)  # raw units far from the model's: a skipped transform shows
STD = torch.linspace(0.5, 30.0, DIM)


class Measured(Synthetic):
    """Synthetic features declared as standardised raw measurements (raw = x * STD + MEAN)."""

    def input_transform(self) -> InputTransform:
        return InputTransform.standardize({s.name: (MEAN, STD) for s in self.modalities})


class RowSelect(nn.Module):
    """Fills absent latents from the rows it selects by boolean indexing: a trace fixes their number."""

    loss_groups: tuple[str, ...] = ()

    def __init__(self, specs: list[Any], dim: int) -> None:
        super().__init__()
        self.fill = nn.Parameter(torch.zeros(len(specs), dim))

    def forward(self, h: Tensor, present: Tensor) -> ImputerOutput:
        z = h.clone()
        for i in range(h.shape[1]):
            rows = (~present[:, i]).nonzero().squeeze(1)
            z[rows, i] = self.fill[i].expand(len(rows), -1) + h[rows].mean(1)
        return ImputerOutput(z=z, losses={})


class Plugin:
    @hookimpl
    def register_datasets(self, register):  # type: ignore[no-untyped-def]
        register("tstc.measured", Measured)

    @hookimpl
    def register_imputers(self, register):  # type: ignore[no-untyped-def]
        register("tstc.rowselect", RowSelect)


@pytest.fixture(scope="module")
def plugins():
    loaded = load_plugins(extra={"tstc": Plugin()})
    old = mmcore.plugins._cached
    mmcore.plugins._cached = loaded  # eval, predict and export open the run with get_registry()
    yield loaded
    mmcore.plugins._cached = old


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _train(plugins, out: Path, modalities: int = 3, *overrides: str, **nodes: Any) -> Path:
    names = [f"m{i}" for i in range(modalities)]
    dataset = {"type": "tstc.measured", "modalities": modalities, "classes": 4, "samples": 400, "dim": DIM,
               **nodes.pop("dataset", {})}
    missing = {"train": {"rates": {m: 0.3 for m in names}}, "eval": {"conditions": "all"}}
    recipe = tiny_recipe(out, "train.epochs=2", *overrides, dataset=dataset, missing=missing, **nodes)
    return train_run(recipe, plugins=plugins, show_progress=False).run_dir


@pytest.fixture(scope="module")
def vectors(plugins, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(plugins, tmp_path_factory.mktemp("vectors"))


@pytest.fixture(scope="module")
def sequences(plugins, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(plugins, tmp_path_factory.mktemp("sequences"), 2, dataset={"sequence": True, "max_len": 6})


@pytest.fixture(scope="module")
def redcore(plugins, tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mmcore_redcore")
    return _train(plugins, tmp_path_factory.mktemp("redcore"), imputer={"type": "redcore.vib", "hidden": [16, 8], "blocks": 2},
                  balancer={"type": "redcore.relative_advantage", "interval": 2, "eta_every": 3})


RUNS = ["vectors", "sequences", "redcore"]


@pytest.fixture(params=RUNS)
def copy(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A copy of each trained run, so that what a test writes stays its own."""
    return Path(shutil.copytree(request.getfixturevalue(request.param), tmp_path / "run"))


def test_eval_reproduces_what_training_wrote(copy: Path) -> None:
    """Best: eval.json's conditions and numbers, bit for bit. Last: the validation average the
    last epoch logged to metrics.jsonl."""
    written = json.loads((copy / "eval.json").read_text())
    for split in ("test", "val"):
        result = evaluate_run(copy, split=split)
        assert list(result.results) == list(written["results"][split])
        assert result.results == written["results"][split] and result.pooled == written["pooled"][split]
    lines = [json.loads(line) for line in (copy / "metrics.jsonl").read_text().splitlines() if line.strip()]
    last = [line for line in lines if "val.accuracy" in line][-1]
    average = evaluate_run(copy, split="val", checkpoint="last").results["average"]
    logged = {k[4:]: v for k, v in last.items() if k.startswith("val.") and k[4:] in average}
    assert logged and all(average[k] == logged[k] for k in logged)


# --- predict -----------------------------------------------------------------------------------
def _split(run_dir: Path) -> tuple[Any, list[str], dict[str, Tensor], dict[str, Tensor]]:
    """The test split, the modality names, its rows as raw features, and eval's condition masks."""
    with open_run(run_dir) as run:
        s, split = run.session, run.session.splits["test"]
        raw = {m: run.transform.transform.invert(m, split.features[m], split.lengths.get(m)) for m in s.names}
        return split, s.names, raw, condition_mask_table(list(s.conditions), split, len(s.names))


def _write(path: Path, split: Any, features: dict[str, Tensor], mask: Tensor, rows: Tensor, omit: bool = False) -> Path:
    """An input file of ``rows``: absent rows all NaN, or (``omit``) modalities absent everywhere left out."""
    tensors = {"ids": split.ids[rows].contiguous()}
    for i, (m, x) in enumerate(features.items()):
        if omit and not bool(mask[rows, i].any()):
            continue
        keep = mask[rows, i].reshape(-1, *[1] * (x.dim() - 1))
        tensors[f"x.{m}"] = torch.where(keep, x[rows], torch.full_like(x[rows], float("nan"))).contiguous()
        if m in split.lengths:
            tensors[f"len.{m}"] = split.lengths[m][rows].contiguous()
    save_file(tensors, str(path))
    return path


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_predictions_scored_by_hand_give_evals_metrics(copy: Path, tmp_path: Path) -> None:
    """Each condition's rows hidden in the file: accuracy counted by hand equals eval's, and the
    full condition's confusion matrix equals eval.json's."""
    split, names, raw, masks = _split(copy)
    written = json.loads((copy / "eval.json").read_text())
    target, n = split.target.tolist(), len(split)
    for condition, mask in masks.items():
        predict_file(copy, _write(tmp_path / "in.safetensors", split, raw, mask, torch.arange(n)), tmp_path / "p.csv")
        predicted = [int(r["prediction"]) for r in _rows(tmp_path / "p.csv")]
        correct = sum(p == t for p, t in zip(predicted, target))
        assert correct / n == pytest.approx(written["results"]["test"][condition]["accuracy"], abs=1e-9), condition
        if condition == "+".join(names):
            matrix = [[0] * 4 for _ in range(4)]
            for p, t in zip(predicted, target):
                matrix[t][p] += 1
            assert written["confusion"]["test"]["condition"] == condition and written["confusion"]["test"]["matrix"] == matrix


def test_a_rows_prediction_does_not_depend_on_the_rest_of_the_file(copy: Path, tmp_path: Path) -> None:
    """Row order, a row alone, a subset: the same probabilities (to float rounding of other batch
    shapes); an absent modality as NaN rows, left out of the file, or named by --absent: the same file."""
    split, names, raw, masks = _split(copy)
    n, full = len(split), masks["+".join(names)]
    predict_file(copy, _write(tmp_path / "all.safetensors", split, raw, full, torch.arange(n)), tmp_path / "all.csv")
    base = {r["id"]: r for r in _rows(tmp_path / "all.csv")}
    probs = [k for k in next(iter(base.values())) if k.startswith("prob.")]
    order = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    for name, rows in (("shuffled", order), ("one", order[:1]), ("some", order[5:12])):
        predict_file(copy, _write(tmp_path / f"{name}.safetensors", split, raw, full, rows), tmp_path / f"{name}.csv")
        got = _rows(tmp_path / f"{name}.csv")
        assert [r["id"] for r in got] == [str(i) for i in split.ids[rows].tolist()]
        for r in got:
            assert r["prediction"] == base[r["id"]]["prediction"]
            assert [float(r[k]) for k in probs] == pytest.approx([float(base[r["id"]][k]) for k in probs], abs=1e-6)
    first = names[0]
    only_rest = masks["+".join(names[1:])]
    outputs = []
    for how in ("nan", "omitted", "option"):
        mask = full if how == "option" else only_rest
        path = _write(tmp_path / f"{how}.safetensors", split, raw, mask, torch.arange(n), omit=how == "omitted")
        predict_file(copy, path, tmp_path / f"{how}.csv", absent=[first] if how == "option" else None)
        outputs.append((tmp_path / f"{how}.csv").read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]
    assert all(r[f"present.{first}"] == "0" for r in _rows(tmp_path / "nan.csv"))


def test_raw_rows_go_through_the_runs_transform(copy: Path, tmp_path: Path) -> None:
    """The raw rows (``--input-form raw``) and the model's own inputs (``model``) predict alike."""
    split, names, raw, masks = _split(copy)
    full, rows = masks["+".join(names)], torch.arange(len(split))
    model_inputs = {m: split.features[m] for m in names}
    predict_file(copy, _write(tmp_path / "raw.safetensors", split, raw, full, rows), tmp_path / "raw.csv")
    predict_file(copy, _write(tmp_path / "model.safetensors", split, model_inputs, full, rows), tmp_path / "model.csv",
                 input_form="model")
    a, b = _rows(tmp_path / "raw.csv"), _rows(tmp_path / "model.csv")
    assert [r["prediction"] for r in a] == [r["prediction"] for r in b]
    first = next(k for k in a[0] if k.startswith("prob."))
    assert [float(r[first]) for r in a] == pytest.approx([float(r[first]) for r in b], abs=1e-5)
    assert len({r["prediction"] for r in a}) > 1  # a skipped transform answers one class for every row


# 1: a row of length 0 (len.<m> = 0) was made length 1 before the padding was cleared, so its frame 0
# (padding: anything, zeros from a writer) was read as data, and in raw form mapped by the transform;
# the exported model encoded it with length 0 (no frame), so it differed from predict by ~5e-3
def test_an_empty_sequence_reads_no_padding(sequences: Path, tmp_path: Path) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 6, DIM, generator=g) * 10 + 5
    lengths = torch.tensor([0, 3, 6])
    zeroed = x.clone()
    zeroed[0], zeroed[1, 3:] = 0.0, 0.0
    nan_padded = zeroed.clone()
    nan_padded[1, 3:] = float("nan")  # NaN padding in a present row: padding, not a partly NaN row
    absent = torch.full((3, 6, DIM), float("nan"))
    got = {}
    for name, rows in (("junk", x), ("zeros", zeroed), ("nan", nan_padded)):
        for form in ("raw", "model"):
            save_file({"x.m0": rows, "len.m0": lengths, "x.m1": absent}, str(tmp_path / "in.safetensors"))
            predict_file(sequences, tmp_path / "in.safetensors", tmp_path / "p.csv", input_form=form)
            got[name, form] = [[r[k] for k in r if k.startswith("prob.")] for r in _rows(tmp_path / "p.csv")]
    for form in ("raw", "model"):
        assert got["junk", form] == got["zeros", form] == got["nan", form]
    # as the datasets load an empty sequence: one zero frame of the model's inputs, whatever the form
    assert got["junk", "raw"][0] == got["junk", "model"][0]
    one_zero_frame = torch.zeros(1, 6, DIM)
    save_file({"x.m0": one_zero_frame, "len.m0": torch.tensor([1]), "x.m1": absent[:1]}, str(tmp_path / "z.safetensors"))
    predict_file(sequences, tmp_path / "z.safetensors", tmp_path / "z.csv", input_form="model")
    assert [r[k] for r in _rows(tmp_path / "z.csv") for k in r if k.startswith("prob.")] == got["junk", "raw"][0]
    # a row NaN up to its length with zero padding after it: absent, as if the file left it out
    half = torch.zeros(3, 6, DIM)
    half[:, :2] = float("nan")
    full_length = torch.full((3,), 6)
    save_file({"x.m0": x, "len.m0": full_length, "x.m1": half, "len.m1": torch.full((3,), 2)}, str(tmp_path / "h.safetensors"))
    save_file({"x.m0": x, "len.m0": full_length}, str(tmp_path / "o.safetensors"))
    for name in ("h", "o"):
        predict_file(sequences, tmp_path / f"{name}.safetensors", tmp_path / f"{name}.csv")
    assert (tmp_path / "h.csv").read_bytes() == (tmp_path / "o.csv").read_bytes()
    run_dir = Path(shutil.copytree(sequences, tmp_path / "run"))
    export_run(run_dir, "torchscript")
    with torch.no_grad():
        logits = torch.jit.load(str(run_dir / "exports" / "model.ts"))([x, absent], [lengths, lengths],
                                                                       torch.tensor([[True, False]] * 3))
    expected = torch.tensor([[float(p) for p in row] for row in got["junk", "raw"]])
    assert float((torch.softmax(logits, -1) - expected).abs().max()) <= 1e-6


# 6: a run with data.nonfinite: absent counts a row with some NaN or inf as missing that modality in
# its own evaluation; predict refused the same row ("partly NaN", "infinite values")
def test_predict_follows_the_runs_nonfinite_policy(plugins, tmp_path: Path) -> None:
    run_dir = _train(plugins, tmp_path, 3, "data.nonfinite=absent", "train.epochs=1")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(4, DIM, generator=g), torch.randn(4, DIM, generator=g)
    damaged, hidden = x.clone(), x.clone()
    damaged[0, 3], damaged[1, 2] = float("nan"), float("inf")
    hidden[:2] = float("nan")
    notes: list[str] = []
    save_file({"x.m0": damaged, "x.m1": y}, str(tmp_path / "damaged.safetensors"))
    save_file({"x.m0": hidden, "x.m1": y}, str(tmp_path / "hidden.safetensors"))
    predict_file(run_dir, tmp_path / "damaged.safetensors", tmp_path / "d.csv", notes=notes)
    predict_file(run_dir, tmp_path / "hidden.safetensors", tmp_path / "h.csv")
    assert (tmp_path / "d.csv").read_bytes() == (tmp_path / "h.csv").read_bytes()
    assert [r["present.m0"] for r in _rows(tmp_path / "d.csv")] == ["0", "0", "1", "1"]
    assert notes == ["'x.m0': 2 rows with NaN or inf taken as absent (the run's data.nonfinite: absent)"]


# --- export ------------------------------------------------------------------------------------
def _patterns(m: int) -> list[Tensor]:
    return [torch.tensor([(k >> i) & 1 == 1 for i in range(m)]) for k in range(1, 2**m)]


# 2: a sequence run with the MLP encoder (frames: auto packs) failed to export, blamed on the path
# ("cannot write .../model.ts: "); 3: RedCore's imputer could not be exported at all; 4: float64
# features or a 0/1 integer mask failed inside the TorchScript interpreter, NaN absent rows gave NaN
def test_export_gives_predicts_outputs_for_every_pattern_batch_and_dtype(copy: Path) -> None:
    record = export_run(copy, "torchscript")
    split, names, raw, _ = _split(copy)
    m, n = len(names), len(split)
    assert record["checked_patterns"] == 2**m - 1 and record["checked_single_rows"] > 0
    model = torch.jit.load(str(copy / "exports" / "model.ts"))
    features = [raw[name] for name in names]
    lengths = [split.lengths.get(name, torch.ones(n, dtype=torch.int64)) for name in names]
    with open_run(copy) as run:
        s = run.session
        masks = {str(p.tolist()): p.expand(n, m).clone() for p in _patterns(m)}
        expected = predict(s.model, split, masks, s.plan.train.eval_batch_size, s.runtime.autocast)
    with torch.no_grad():
        for key, mask in masks.items():
            assert float((model(features, lengths, mask) - expected[key]).abs().max()) <= ATOL, key
            for r in (0, n // 2):
                one = model([x[r : r + 1] for x in features], [x[r : r + 1] for x in lengths], mask[r : r + 1])
                assert float((one - expected[key][r : r + 1]).abs().max()) <= ATOL, (key, r)
        mask = next(iter(masks.values()))  # the first modality alone: the others' rows NaN
        nan_rows = [x if i == 0 else torch.full_like(x, float("nan")) for i, x in enumerate(features)]
        reference = model(features, lengths, mask)
        assert torch.equal(model(nan_rows, lengths, mask), reference)
        assert float((model([x.double() for x in features], lengths, mask.long()) - reference).abs().max()) <= 1e-6


def test_onnx_export_gives_predicts_outputs(sequences: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    run_dir = Path(shutil.copytree(sequences, tmp_path / "run"))
    record = export_run(run_dir, "onnx")
    assert record["max_abs_diff"] <= ATOL and record["checked_patterns"] == 3


def test_export_refuses_a_component_whose_trace_does_not_generalise(plugins, tmp_path: Path) -> None:
    """Boolean indexing of absent rows: the trace fixes their number, so the check on every
    pattern fails; one line naming the components, and no file left."""
    run_dir = _train(plugins, tmp_path, imputer={"type": "tstc.rowselect"})
    with pytest.raises(ExportError, match=r"imputer tstc.rowselect; fusion mmcore.concat\)") as info:
        export_run(run_dir, "torchscript")
    assert "\n" not in str(info.value) and not (run_dir / "exports" / "model.ts").exists()


# 5: a bf16 run was refused ("differs from predict by 1.2e-03 ... components behave differently when
# traced"): the float32 artifact was checked against predict under the run's bf16 autocast
def test_a_bf16_run_exports_checked_in_float32(plugins, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mmcore.cli import app

    run_dir = _train(plugins, tmp_path, 3, "precision=bf16", "train.epochs=1")
    result = CliRunner().invoke(app, ["export", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert "computes in float32; the run evaluates in bf16" in result.output
    record = json.loads((run_dir / "exports" / "export.json").read_text())
    assert record["run_precision"] == "bf16" and record["precision"] == "fp32" and record["max_abs_diff"] <= ATOL


# 7: when the dataset now declares another transform, eval maps its splits back through the stored
# one, but not the clean copies (frames not dropped) that the frame curve reads: its points were
# scored on inputs the model never saw, in silence
def test_a_frame_curve_uses_the_stored_transform_too(plugins, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = _train(plugins, tmp_path, 2, "missing.frames.eval_rate=0.5", "train.epochs=1",
                     dataset={"sequence": True, "max_len": 6})
    shifted = InputTransform.standardize({m: (MEAN + 3.0, STD * 2.0) for m in ("m0", "m1")})
    monkeypatch.setattr(Measured, "input_transform", lambda self: shifted)
    curve = evaluate_run(run_dir, curve=True, over="frames", rates=[0.0, 0.5], draws=1).curve
    plain = evaluate_run(run_dir, ["missing.frames.eval_rate=0"])
    assert any("differs from the one stored" in note for note in plain.notes)
    assert curve is not None and curve["full"] == plain.results["m0+m1"]


# --- another protocol -----------------------------------------------------------------------------
def test_eval_under_another_protocol_gives_the_requested_conditions(vectors: Path, tmp_path: Path) -> None:
    """Trained with random masks, evaluated under fixed subsets and random rates: the conditions are
    the ones named, a fixed one has training's numbers, and the training protocol does not matter."""
    run_dir = Path(shutil.copytree(vectors, tmp_path / "run"))
    written = json.loads((run_dir / "eval.json").read_text())["results"]["test"]
    conditions = "[m1, {random: {rates: {m0: 0.5, m2: 0.2}}, seed: 3, name: r}, m0+m2]"
    result = evaluate_run(run_dir, [f"missing.eval.conditions={conditions}", "missing.train.rates={m0: 0.9}"])
    assert list(result.results) == ["m1", "r", "m0+m2", "average"]
    assert result.results["m1"] == written["m1"] and result.results["m0+m2"] == written["m0+m2"]
    assert json.loads((result.out_dir / "protocol.json").read_text())["evaluated"] == ["m1", "r", "m0+m2"]
    assert evaluate_run(run_dir, ["missing.train.rates={m0: 0.9, m1: 0.0, m2: 0.0}"]).results == written
