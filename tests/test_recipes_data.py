"""The corpus recipes without their data, and through the engine on tiny files in the published layouts.

Without data: ``mmcore run`` must stop at validation, before anything is trained or written, with
one line that names the recipe, ``dataset.root`` and the missing path. With data: tiny files are written in the
exact layout a user has (an MMSA pickle, a ``corpora.features`` folder), the shipped recipe is
shrunk by overrides, and a real run checks what lands in the run directory: metrics per test
condition, the epoch chosen on validation, and that frames past a sequence's length are ignored.
(That every recipe validates is tested in tests/test_cli.py.)
"""

from __future__ import annotations

import io
import json
import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from rich.console import Console
from safetensors.torch import save_file
from typer.testing import CliRunner

from mmcore.cli import app
from mmcore.engine.trainer import RunResult, run
from mmcore.missing import MissingSpec, mask_hash, train_masks
from mmcore.plugins import get_registry
from mmcore.recipe import load_recipe

pytest.importorskip("mmcore_corpora")
pytest.importorskip("mmcore_redcore")  # the recipes are RedCore's

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
runner = CliRunner()
IEMOCAP_CONDITIONS = ["a", "v", "l", "a+v", "a+l", "v+l", "a+v+l"]
SHRINK = [  # the RedCore transformer recipes at toy sizes: one block, two heads, width 8
    "device=cpu",
    "model.dim=8",
    "model.encoders.default.layers=1",
    "model.encoders.default.heads=2",
    "model.imputer.hidden=[8]",
    "model.imputer.blocks=1",
    "model.fusion.layers=[8]",
    "model.unimodal_heads.layers=[8]",
    "train.batch_size=16",
    "train.log_every=1",
]


# --------------------------------------------------------------------------- without the data


def _run_cli(args: list[str]) -> tuple[int, list[str]]:
    result = runner.invoke(app, ["run", *args, "--no-progress"])
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, [line for line in result.output.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("recipe", "root", "what"),
    [
        ("redcore_iemocap.yaml", "nowhere/IEMOCAP_features_2021", "corpora.iemocap: feature folder"),
        ("redcore_mosei.yaml", "nowhere/MOSEI/Processed", "corpora.mosei: feature pickle or folder"),
        ("mosei_regression.yaml", "nowhere/aligned_50.pkl", "corpora.mosei: feature pickle or folder"),
        ("handwritten_sample_rate.yaml", "nowhere/mfeat", "corpora.handwritten"),
    ],
)
def test_run_without_data_fails_with_one_line(tmp_path, monkeypatch, recipe, root, what):
    monkeypatch.chdir(tmp_path)  # relative roots resolve here, where nothing exists
    code, lines = _run_cli([str(RECIPES / recipe), f"dataset.root={root}", f"output={tmp_path / 'runs'}"])
    assert code == 2  # a validation error (mmcore.recipe.machine), before any data is read
    assert len(lines) == 1, lines
    assert lines[0] == (
        f"error: {RECIPES / recipe}: dataset.root: not found: {root}; expected the {what.split(':')[0]} data files "
        f"or folder (`mmcore components {what.split(':')[0]}` says which)"
    )
    assert not (tmp_path / "runs").exists()  # nothing was started


@pytest.mark.parametrize(
    ("recipe", "placeholder"), [("redcore_iemocap.yaml", "data/iemocap"), ("redcore_mosei.yaml", "data/mosei")]
)
def test_placeholder_root_in_the_recipe_is_named(tmp_path, monkeypatch, recipe, placeholder):
    monkeypatch.chdir(tmp_path)
    code, lines = _run_cli([str(RECIPES / recipe), f"output={tmp_path / 'runs'}"])
    assert code == 2 and len(lines) == 1, lines
    assert f"dataset.root: not found: {placeholder};" in lines[0]


def test_iemocap_fold_override_reaches_the_loader(tmp_path):
    """`dataset.fold=3` is the fold whose target folder is looked for; 11 is refused with the valid range."""
    root = tmp_path / "IEMOCAP_features_2021"
    for rel in ("A/comparE.h5", "A/comparE_mean_std.h5", "V/denseface.h5", "L/bert_large.h5"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"")  # existence is checked before any file is opened
    (root / "target" / "1").mkdir(parents=True)
    args = [str(RECIPES / "redcore_iemocap.yaml"), f"dataset.root={root}", f"output={tmp_path / 'runs'}"]
    code, lines = _run_cli([*args, "dataset.fold=3"])
    assert code == 2 and len(lines) == 1, lines  # validation checks the layout (describe), before any run
    assert f"target folder of fold 3 not found: {root / 'target' / '3'}" in lines[0] and "docs/datasets.md" in lines[0]
    code, lines = _run_cli([*args, "dataset.fold=11"])  # the fold's range is in the signature: validation
    assert code == 2 and lines == [f"error: {args[0]}: dataset.fold: expected int in [1, 10], got int 11"]


# --------------------------------------------------------------------------- tiny files


def _lengths(rng: np.random.Generator, n: int, t: int) -> np.ndarray:
    return rng.integers(1, t + 1, size=n).astype(np.int64)


def _padded(rng: np.random.Generator, lengths: np.ndarray, t: int, d: int) -> np.ndarray:
    """[N, t, d] features, zero past each row's length (as the published files pad)."""
    x = rng.normal(size=(len(lengths), t, d)).astype(np.float32)
    x[np.arange(t)[None, :] >= lengths[:, None]] = 0.0
    return x


def write_mmsa_pickle(path: Path, sizes: dict[str, int]) -> dict[str, Any]:
    """An unaligned MMSA pickle (text 6-d x 6 tokens, audio 4-d x 8 frames, vision 3-d x 5 frames).

    The score depends on the valid text frames, so it is learnable; every seventh is exactly 0
    (the ``_nz`` metrics leave those out). Text lengths come from ``text_bert``'s attention
    mask, audio/vision lengths from ``*_lengths``, as in MMSA's unaligned files.
    """
    rng = np.random.default_rng(7)
    data: dict[str, Any] = {}
    clip = 0
    for split, n in sizes.items():
        lens = {"text": _lengths(rng, n, 6), "audio": _lengths(rng, n, 8), "vision": _lengths(rng, n, 5)}
        text = _padded(rng, lens["text"], 6, 6)
        score = np.clip(2.0 * text[:, :, 0].sum(1) / lens["text"], -3.0, 3.0).astype(np.float32)
        score[::7] = 0.0
        mask = (np.arange(6)[None, :] < lens["text"][:, None]).astype(np.float32)
        data[split] = {
            "text": text,
            "audio": _padded(rng, lens["audio"], 8, 4),
            "vision": _padded(rng, lens["vision"], 5, 3),
            "text_bert": np.stack([mask * 101.0, mask, np.zeros_like(mask)], axis=1),
            "audio_lengths": lens["audio"],
            "vision_lengths": lens["vision"].tolist(),
            "id": np.array([f"clip{clip + k:03d}$_$0" for k in range(n)], dtype=object),
            "regression_labels": score,
        }
        clip += n
    with open(path, "wb") as f:
        pickle.dump(data, f, protocol=4)
    return data


def write_features_dir(
    root: Path, modalities: dict[str, tuple[int, int | None]], num_classes: int, garbage: bool = False
) -> None:
    """A ``corpora.features`` folder; ``modalities`` maps name -> (width, T, or None for a vector).

    Classes are quantiles of the first modality's feature 0 (averaged over its valid frames).
    With ``garbage`` the frames past each length hold large noise instead of zeros; everything
    else, labels included, is identical to the clean folder of the same call.
    """
    rng = np.random.default_rng(3)
    offset = 0
    for split, n in (("train", 60), ("val", 30), ("test", 30)):
        tensors: dict[str, torch.Tensor] = {}
        signal = None
        for name, (d, t) in modalities.items():
            if t is None:
                x = rng.normal(size=(n, d)).astype(np.float32)
                tensors[f"x.{name}"] = torch.from_numpy(x)
                signal = x[:, 0] if signal is None else signal
                continue
            lens = _lengths(rng, n, t)
            x = _padded(rng, lens, t, d)
            signal = x[:, :, 0].sum(1) / lens if signal is None else signal
            noise = rng.normal(0.0, 50.0, size=x.shape).astype(np.float32)  # drawn either way: one stream
            if garbage:
                past = np.arange(t)[None, :] >= lens[:, None]
                x[past] = noise[past]
            tensors[f"x.{name}"], tensors[f"len.{name}"] = torch.from_numpy(x), torch.from_numpy(lens)
        edges = np.quantile(signal, np.linspace(0, 1, num_classes + 1)[1:-1])
        tensors["target"] = torch.from_numpy(np.searchsorted(edges, signal).astype(np.int64))
        tensors["ids"] = torch.arange(offset, offset + n, dtype=torch.int64) * 10 + 5  # not row numbers
        offset += n
        meta = {"format": "mmcore-features/1", "task": "classification", "num_classes": str(num_classes),
                "modalities": ",".join(modalities)}
        root.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(root / f"{split}.safetensors"), metadata=meta)


def run_recipe(recipe: str, overrides: list[str]) -> tuple[RunResult, dict[str, Any]]:
    resolved = load_recipe(RECIPES / recipe, overrides, get_registry())
    result = run(resolved, console=Console(file=io.StringIO()), show_progress=False)
    return result, json.loads((result.run_dir / "eval.json").read_text())


def epoch_lines(run_dir: Path) -> list[dict[str, Any]]:
    """The per-epoch validation records of metrics.jsonl (step lines have no "val.<metric>" keys)."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [line for line in lines if any(k.startswith("val.") for k in line)]


# --------------------------------------------------------------------------- through the engine

REGRESSION_METRICS = {"mae", "mse", "corr", "acc2", "f1_2", "acc2_nz", "f1_2_nz", "acc7", "acc5"}


@pytest.fixture
def mosei_pickle(tmp_path) -> tuple[Path, dict[str, Any]]:
    path = tmp_path / "MOSEI" / "Processed" / "unaligned_50.pkl"
    path.parent.mkdir(parents=True)
    return path, write_mmsa_pickle(path, {"train": 48, "valid": 20, "test": 20})


def test_mosei_regression_recipe_selects_the_lowest_validation_mae(tmp_path, mosei_pickle):
    path, raw = mosei_pickle
    overrides = [f"dataset.root={path.parent}", "dataset.file=unaligned_50.pkl", f"output={tmp_path / 'runs'}",
                 *SHRINK, "train.epochs=4", "train.schedule.constant_epochs=2", "train.task_loss=auto",
                 "train.optimizer.lr=3.0e-3"]
    result, ev = run_recipe("mosei_regression.yaml", overrides)

    assert ev["select"] == "val.mae"
    for split in ("val", "test"):
        table = ev["results"][split]
        assert list(table) == [*IEMOCAP_CONDITIONS, "average"]
        for condition, row in table.items():
            assert set(row) == REGRESSION_METRICS, condition
            assert all(math.isfinite(v) for v in row.values()), (condition, row)
            assert row["mae"] >= 0 and -1 <= row["corr"] <= 1
            assert all(0 <= row[k] <= 1 for k in ("acc2", "acc2_nz", "acc7", "acc5", "f1_2", "f1_2_nz"))
        # the average row is the unweighted mean over the seven conditions
        mean_mae = sum(table[c]["mae"] for c in IEMOCAP_CONDITIONS) / len(IEMOCAP_CONDITIONS)
        assert table["average"]["mae"] == pytest.approx(mean_mae, rel=1e-12)

    # MAE is lower-is-better: the chosen epoch has the smallest validation MAE of metrics.jsonl,
    # and the reloaded checkpoint reproduces that number on validation.
    maes = [line["val.mae"] for line in epoch_lines(result.run_dir)]
    assert len(maes) == 4 and len(set(maes)) > 1  # distinct values: argmin and argmax differ
    best = 1 + maes.index(min(maes))
    assert ev["best_epoch"] == result.best_epoch == best
    assert ev["results"]["val"]["average"]["mae"] == pytest.approx(min(maes), rel=1e-5)

    # the sequences really are of varying length below the padded T
    from mmcore_corpora.mmsa import MOSEI

    train = MOSEI(str(path), task="regression").split("train")
    assert train.lengths["a"].tolist() == raw["train"]["audio_lengths"].tolist()
    assert train.lengths["l"].tolist() == raw["train"]["text_bert"][:, 1].sum(1).astype(int).tolist()
    assert min(train.lengths["v"].tolist()) < 5 == train.features["v"].shape[1]


def test_regression_auto_loss_is_l1(tmp_path, mosei_pickle):
    """`task_loss: auto` trains exactly as `l1` (the MOSI/MOSEI habit), not as `mse`."""
    path, _ = mosei_pickle
    base = [f"dataset.root={path}", f"output={tmp_path / 'runs'}", *SHRINK, "train.epochs=1"]
    logs = {}
    for kind in ("auto", "l1", "mse"):
        result, _ = run_recipe("mosei_regression.yaml", [*base, f"train.task_loss={kind}", f"name=loss-{kind}"])
        logs[kind] = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert logs["auto"] == logs["l1"]
    assert [x.get("task_loss") for x in logs["auto"]] != [x.get("task_loss") for x in logs["mse"]]


MOSEI_LIKE = {"a": (4, 7), "v": (3, 5), "l": (5, None)}  # two sequences with lengths, one vector


def test_three_classes_from_features_and_padding_is_ignored(tmp_path):
    """redcore_mosei.yaml on a converted (corpora.features) folder: 3 classes, selection by UA on
    validation; a copy whose padded frames hold large noise gives the very same run."""
    outcomes = []
    for garbage in (False, True):
        root = tmp_path / f"mosei-3class-{garbage}"
        write_features_dir(root, MOSEI_LIKE, num_classes=3, garbage=garbage)
        overrides = ["dataset=corpora.features", f"dataset.root={root}", f"output={tmp_path / 'runs'}", *SHRINK,
                     "train.epochs=3", "train.schedule.constant_epochs=1", "train.optimizer.lr=3.0e-3"]
        result, ev = run_recipe("redcore_mosei.yaml", overrides)
        log = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
        outcomes.append((ev, log))
        assert ev["select"] == "val.balanced_accuracy"
        for split in ("val", "test"):
            assert list(ev["results"][split]) == [*IEMOCAP_CONDITIONS, "average"]
            for row in ev["results"][split].values():
                assert set(row) == {"accuracy", "balanced_accuracy", "macro_f1", "weighted_f1"}
                assert all(0 <= v <= 1 for v in row.values())
        uas = [line["val.balanced_accuracy"] for line in epoch_lines(result.run_dir)]
        assert len(uas) == 3 and ev["best_epoch"] == 1 + uas.index(max(uas))
        assert ev["results"]["val"]["average"]["balanced_accuracy"] == pytest.approx(max(uas), rel=1e-6)
    (clean, clean_log), (noisy, noisy_log) = outcomes
    assert noisy["results"] == clean["results"] and noisy["best_epoch"] == clean["best_epoch"]
    assert noisy_log == clean_log  # every loss of every step: frames past a length never count


HANDWRITTEN_VIEWS = {  # the six view names at toy widths (vectors)
    "fou": (6, None), "fac": (5, None), "kar": (4, None), "pix": (6, None), "zer": (3, None), "mor": (2, None)
}


def test_sample_rate_recipe_uses_the_sample_level_protocol(tmp_path):
    """handwritten_sample_rate.yaml (six views, η = 0.5) on a tiny six-view features folder."""
    root = tmp_path / "handwritten-like"
    write_features_dir(root, HANDWRITTEN_VIEWS, num_classes=4)
    overrides = ["dataset=corpora.features", f"dataset.root={root}", f"output={tmp_path / 'runs'}", "device=cpu",
                 "model.dim=8", "model.encoders.default.layers=[8]", "model.imputer.hidden=[8]",
                 "model.imputer.blocks=1", "model.fusion.layers=[8]", "model.unimodal_heads.layers=[8]",
                 "train.epochs=2", "train.schedule.constant_epochs=1", "train.batch_size=16"]
    result, ev = run_recipe("handwritten_sample_rate.yaml", overrides)
    assert ev["select"] == "val.incomplete.accuracy"
    assert list(ev["results"]["test"]) == ["incomplete", "fou+fac+kar+pix+zer+mor", "average"]

    names = list(HANDWRITTEN_VIEWS)
    ids = torch.arange(60, dtype=torch.int64) * 10 + 5
    masks = train_masks(MissingSpec(sample_rate=0.5), names, ids, seed=0)
    manifest = json.loads((result.run_dir / "manifest.json").read_text())
    assert manifest["train_mask_sha256"] == mask_hash(masks)  # the run drew its masks from η, not rates
    incomplete = ~masks.all(1)
    assert bool(masks.any(1).all())  # min_present: 1
    assert 0 < int(incomplete.sum()) < 60  # some samples complete, some not
