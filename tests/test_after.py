"""mmcore eval / predict on a saved run: the same numbers as training, curves, absent modalities,
and one-line errors for bad input."""

from __future__ import annotations

import csv
import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from typer.testing import CliRunner

from mmcore.after import evaluate_run, predict_file
from mmcore.after.runs import open_run, sha256_file
from mmcore.cli import app
from mmcore.engine.trainer import run as train_run
from mmcore.errors import MMCoreError
from mmcore.testing import tiny_recipe


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("after")
    return train_run(tiny_recipe(out, "train.epochs=2"), show_progress=False).run_dir


@pytest.fixture
def copy(run_dir: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run_dir, tmp_path / "run"))


def same(a: dict[str, dict[str, float]], b: dict[str, dict[str, float]]) -> bool:
    """Condition -> metric tables equal to 1e-12 (pytest.approx does not nest)."""
    return list(a) == list(b) and all(a[c] == pytest.approx(b[c], abs=1e-12) for c in a)


def trained(run_dir: Path, split: str = "test") -> dict[str, dict[str, float]]:
    return json.loads((run_dir / "eval.json").read_text())["results"][split]


def test_eval_equals_the_numbers_written_at_the_end_of_training(copy: Path) -> None:
    before = (copy / "eval.json").read_bytes()
    for split in ("test", "val"):
        result = evaluate_run(copy, split=split)
        assert same(result.results, trained(copy, split))
        pooled = json.loads((copy / "eval.json").read_text())["pooled"][split]  # a trained run always has it
        assert pooled and result.pooled == pytest.approx(pooled, abs=1e-12)
        assert result.out_dir == copy / "evals" / f"best-{split}"
        written = json.loads((result.out_dir / "eval.json").read_text())
        assert written["results"][split] == result.results
    assert (copy / "eval.json").read_bytes() == before  # the run's own results are never touched


def test_eval_under_another_protocol_writes_its_manifest(copy: Path) -> None:
    result = evaluate_run(copy, ["missing.eval.conditions=[m0, m0+m2]"])
    assert list(result.results) == ["m0", "m0+m2", "average"]
    full = trained(copy)
    for c in ("m0", "m0+m2"):
        assert result.results[c] == pytest.approx(full[c], abs=1e-12)
    assert result.results["average"]["accuracy"] == pytest.approx((full["m0"]["accuracy"] + full["m0+m2"]["accuracy"]) / 2)
    protocol = json.loads((result.out_dir / "protocol.json").read_text())
    assert protocol["overrides"] == ["missing.eval.conditions=[m0, m0+m2]"]
    assert protocol["evaluated"] == ["m0", "m0+m2"] and protocol["checkpoint"] == "checkpoints/best"
    assert protocol["model_sha256"] == sha256_file(copy / "checkpoints" / "best" / "model.safetensors")
    assert result.out_dir.name.startswith("best-test-conditions")
    assert (result.out_dir / "eval.csv").is_file()


def test_curve_at_rate_zero_equals_the_full_condition(copy: Path) -> None:
    result = evaluate_run(copy, curve=True, rates=[0.0, 0.3, 0.6, 0.9], draws=2)
    curve = json.loads((result.out_dir / "curve.json").read_text())
    full = trained(copy)["m0+m1+m2"]
    assert curve["full"] == pytest.approx(full, abs=1e-12)
    assert set(curve["curves"]) == {"uniform", "m0", "m1", "m2"}
    assert curve["curves"]["uniform"]["rates"] == [0.0, 0.3, 0.6]  # 0.9 > 2/3 is infeasible with min_present=1
    assert any("0.9 left out" in n for n in result.notes)
    assert curve["curves"]["m0"]["rates"] == [0.0, 0.3, 0.6, 0.9]
    for name, c in curve["curves"].items():
        for metric, value in full.items():
            assert c["mean"][metric][0] == pytest.approx(value, abs=1e-12) and c["std"][metric][0] == 0.0
        f = c["mean"]["macro_f1"]
        r = c["rates"]
        auc = sum((r[k + 1] - r[k]) * (f[k] + f[k + 1]) / 2 for k in range(len(r) - 1))
        assert c["robustness"]["macro_f1"]["auc"] == pytest.approx(auc)
        assert c["robustness"]["macro_f1"]["relative"] == pytest.approx(auc / (r[-1] - r[0]) / full["macro_f1"])


def test_predict_with_absent_modalities_matches_the_engine(copy: Path, tmp_path: Path) -> None:
    from mmcore.engine.evaluate import predict

    with open_run(copy) as run:
        split = run.session.splits["test"]
        n = len(split)
        x1 = split.features["m1"].clone()
        x1[:5] = float("nan")  # rows 0-4: m1 absent by NaN
        save_file({"x.m0": split.features["m0"].contiguous(), "x.m1": x1.contiguous(), "ids": split.ids.contiguous()},
                  str(tmp_path / "new.safetensors"))
        mask = torch.tensor([True, True, False]).expand(n, 3).clone()  # m2 not in the file
        mask[:5, 1] = False
        logits = predict(run.session.model, split, {"c": mask}, 64, run.session.runtime.autocast)["c"]
    assert predict_file(copy, tmp_path / "new.safetensors", tmp_path / "p.csv") == n
    rows = list(csv.DictReader(open(tmp_path / "p.csv")))
    probs = torch.softmax(logits, -1)
    assert [int(r["id"]) for r in rows] == split.ids.tolist()
    for i, r in enumerate(rows):
        assert int(r["prediction"]) == int(logits[i].argmax())
        assert [float(r[f"prob.c{c}"]) for c in range(4)] == pytest.approx(probs[i].tolist(), abs=1e-6)
        assert (r["present.m0"], r["present.m1"], r["present.m2"]) == ("1", "0" if i < 5 else "1", "0")
    # --absent hides a modality the file has: the same as leaving it out
    predict_file(copy, tmp_path / "new.safetensors", tmp_path / "q.csv", absent=["m1"])
    only_m0 = list(csv.DictReader(open(tmp_path / "q.csv")))
    assert all(r["present.m1"] == "0" for r in only_m0)
    assert [r["prob.c0"] for r in only_m0[:5]] == [r["prob.c0"] for r in rows[:5]]


def test_a_run_from_before_checksums_still_evaluates(copy: Path) -> None:
    state_file = copy / "checkpoints" / "best" / "state.json"
    state = json.loads(state_file.read_text())
    del state["files"]
    state_file.write_text(json.dumps(state))
    result = evaluate_run(copy)
    assert same(result.results, trained(copy))
    assert any("loaded without verification" in n for n in result.notes)


def one_line_error(args: list[str], code: int = 1) -> str:
    result = CliRunner().invoke(app, args)
    assert result.exit_code == code, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


def test_bad_runs_and_options_are_one_line_errors(copy: Path, tmp_path: Path) -> None:
    assert "no such directory" in one_line_error(["eval", str(tmp_path / "nope")])
    assert "not a run directory" in one_line_error(["eval", str(tmp_path)])
    assert "--split" in one_line_error(["eval", str(copy), "--split", "train"])
    assert "--label" in one_line_error(["eval", str(copy), "--label", "../x"])
    assert "--rates" in one_line_error(["eval", str(copy), "--curve", "--rates", "0,x"])
    shutil.rmtree(copy / "checkpoints" / "last")
    assert "available: best" in one_line_error(["eval", str(copy), "--checkpoint", "last"])
    model = copy / "checkpoints" / "best" / "model.safetensors"
    data = bytearray(model.read_bytes())
    data[-1] ^= 0xFF
    model.write_bytes(bytes(data))
    assert "sha256" in one_line_error(["eval", str(copy)])
    assert "no such directory" in one_line_error(["report", str(tmp_path / "nope"), "-o", str(tmp_path / "r.html")])


def test_bad_prediction_inputs_are_one_line_errors(copy: Path, tmp_path: Path) -> None:
    good = torch.zeros(4, 8)
    cases = {
        "wrong-dim": ({"x.m0": torch.zeros(4, 7)}, "expects [4, 8]"),
        "unknown": ({"x.m0": good, "x.audio": good.clone()}, "'x.audio' is not a modality"),
        "dtype": ({"x.m0": torch.zeros(4, 8, dtype=torch.bool)}, "dtype"),
        "partly-nan": ({"x.m0": torch.tensor([[float("nan")] + [0.0] * 7] * 4)}, "partly NaN"),
        "nothing-present": ({"x.m0": torch.full((4, 8), float("nan"))}, "no modality present"),
    }
    for name, (tensors, message) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(tensors, str(path))
        assert message in one_line_error(["predict", str(copy), "--input", str(path), "--out", str(tmp_path / "p.csv")])
    path = tmp_path / "ok.safetensors"
    save_file({"x.m0": good}, str(path))
    assert "--absent" in one_line_error(["predict", str(copy), "--input", str(path), "--out", "p.csv", "--absent", "zz"])
    assert "expected a .csv" in one_line_error(["predict", str(copy), "--input", str(path), "--out", "p.txt"])
    assert "no such file" in one_line_error(["predict", str(copy), "--input", str(tmp_path / "no.st"), "--out", "p.csv"])
    (tmp_path / "junk.safetensors").write_bytes(b"not a file")
    assert "not a readable" in one_line_error(["predict", str(copy), "--input", str(tmp_path / "junk.safetensors"),
                                               "--out", "p.csv"])


def test_nan_free_metrics_are_finite(copy: Path) -> None:
    assert all(math.isfinite(v) for row in evaluate_run(copy).results.values() for v in row.values())


def test_report_of_a_real_run_shows_its_curve_and_gradient_norms(copy: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from mmcore.report import build_report

    evaluate_run(copy, curve=True, rates=[0.0, 0.5], draws=1, per_modality=False)
    text = build_report(copy, tmp_path / "r.html")[0].read_text()
    curve = json.loads((copy / "evals" / "curve" / "curve.json").read_text())
    assert f"{curve['curves']['uniform']['robustness']['macro_f1']['auc']:.4f}" in text
    assert 'data-file="grad-norm.png"' in text and 'data-file="curve-curve.png"' in text
    assert "Cost figures (parameters, samples/s, memory): not recorded" not in text


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the fallback on a machine without CUDA")
def test_a_gpu_run_evaluates_on_the_cpu(copy: Path) -> None:
    recipe = (copy / "recipe.yaml").read_text()
    assert "device: cpu" in recipe
    (copy / "recipe.yaml").write_text(recipe.replace("device: cpu", "device: cuda"))
    result = evaluate_run(copy)
    assert same(result.results, trained(copy))
    assert any("no CUDA here, evaluating on the CPU" in n for n in result.notes)
