"""docs/protocol_tables.py on a hand-built sweep layout: labels, the learning-rate choice (validation
only), the tuned arms docs/protocol.sh reads, and the interaction test's numbers."""

from __future__ import annotations

import importlib.util
import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from mmcore.report import stats

SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "protocol_tables.py"
VIB = {"type": "redcore.vib", "hidden": [8], "blocks": 1}
MMIN = {"type": "baselines.mmin", "hidden": [8], "blocks": 1, "hide_rate": 0.5}
MMIN0 = {**MMIN, "hide_rate": 0.0}


@pytest.fixture(scope="module")
def tables():
    spec = importlib.util.spec_from_file_location("protocol_tables", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_sweep(path: Path, imputer, balancer: str, test: list[float], val: list[float] | None = None,
                lr: float = 1.0e-3, dropout: float = 0.0) -> None:
    """One sweep of one point, a run per seed whose every condition scores ``test[seed]``."""
    runs = {}
    for seed, value in enumerate(test):
        run = path / "points" / "p" / f"seed{seed}"
        run.mkdir(parents=True)
        conditions = {c: {"macro_f1": value} for c in ("a", "v", "l", "a+v", "a+l", "v+l", "a+v+l", "average")}
        valid = (val or test)[seed]
        (run / "eval.json").write_text(json.dumps({
            "best_epoch": 2, "select": "val.macro_f1", "pooled": {"test": {"macro_f1": value}},
            "results": {"test": conditions, "val": {"average": {"macro_f1": valid}}},
            "cost": {"parameters": {"encoders": 10, "fusion": 5}, "train_samples_per_s": 200.0}}))
        (run / "recipe.yaml").write_text(yaml.safe_dump({"train": {"epochs": 3, "batch_size": 10, "optimizer": {"lr": lr}}}))
        (run / "metrics.jsonl").write_text(json.dumps({"step": 2, "epoch": 1, "loss": 1.0}) + "\n"
                                           + json.dumps({"epoch": 1, "step": 4, "val.macro_f1": valid}) + "\n")
        runs[str(seed)] = f"points/p/seed{seed}"
    base = {"model": {"imputer": imputer}, "balancer": balancer,
            "train": {"modality_dropout": dropout, "optimizer": {"lr": lr}}}
    (path / "sweep.json").write_text(json.dumps({"base_recipe": base, "points": [{"values": {}, "runs": runs}]}))


def test_labels_name_hiding_and_dropout(tables) -> None:
    values = {"model.imputer": MMIN, "balancer": "mmcore.uniform", "train.modality_dropout": 0.3}
    assert tables.method(values) == "mmin (hide 0.5) + uniform + modality dropout 0.3"
    assert tables.method({"model.imputer": "mmcore.zero", "balancer": "mmcore.uniform"}) == "zero + uniform"


def test_one_method_at_two_rates_in_one_preset_is_refused(tables, tmp_path: Path) -> None:
    write_sweep(tmp_path / "imbalanced" / "a", VIB, "mmcore.uniform", test=[0.5])
    write_sweep(tmp_path / "imbalanced" / "b", VIB, "mmcore.uniform", test=[0.6], lr=3e-3)
    with pytest.raises(SystemExit, match="vib \\+ uniform seed 0 also ran in another sweep"):
        tables.load(tmp_path / "imbalanced")


def test_the_chosen_rate_is_the_best_on_validation_not_on_test(tables, tmp_path: Path, capsys) -> None:
    # At 3e-3 RedCore is better on validation and worse on test: the choice must follow validation.
    write_sweep(tmp_path / "lr1.0e-3" / "vib", VIB, "redcore.relative_advantage", test=[0.9], val=[0.5])
    write_sweep(tmp_path / "lr3.0e-3" / "vib", VIB, "redcore.relative_advantage", test=[0.1], val=[0.6], lr=3e-3)
    write_sweep(tmp_path / "lr1.0e-3" / "mmin", MMIN, "mmcore.uniform", test=[0.5], val=[0.7])
    write_sweep(tmp_path / "lr3.0e-3" / "mmin", MMIN, "mmcore.uniform", test=[0.5], val=[0.4], lr=3e-3)
    chosen = tables.tuning(tmp_path)
    assert chosen == {"vib + relative_advantage": 3e-3, "mmin (hide 0.5) + uniform": 1e-3}
    assert "| vib + relative_advantage | 0.5000 | 0.6000 | 0.003 |" in capsys.readouterr().out

    # what docs/protocol.sh reads: one "<slug> <rate>" line per tuned method
    lines = subprocess.run([sys.executable, str(SCRIPT), "--chosen", str(tmp_path)], capture_output=True,
                           text=True, check=True).stdout.splitlines()
    assert sorted(lines) == ["mmin 0.001", "redcore 0.003"]


def test_interaction_is_the_paired_difference_of_per_seed_gains(tables, tmp_path: Path, capsys) -> None:
    red_imb, other_imb = [0.60, 0.62, 0.61], [0.50, 0.50, 0.52]
    red_bal, other_bal = [0.55, 0.56, 0.57], [0.54, 0.55, 0.55]
    write_sweep(tmp_path / "imbalanced" / "vib", VIB, "redcore.relative_advantage", red_imb)
    write_sweep(tmp_path / "imbalanced" / "mmin", MMIN, "mmcore.uniform", other_imb)
    write_sweep(tmp_path / "balanced" / "vib", VIB, "redcore.relative_advantage", red_bal)
    write_sweep(tmp_path / "balanced" / "mmin", MMIN, "mmcore.uniform", other_bal)
    tables.report(tmp_path, ["imbalanced", "balanced"], tables.preset_tables, tables.SCORES, tmp_path / "figures")
    out = capsys.readouterr().out
    assert (tmp_path / "figures" / "imbalanced.png").read_bytes().startswith(b"\x89PNG")
    assert f"]({tmp_path / 'figures' / 'balanced.png'})" in out

    gains_imb = [r - o for r, o in zip(red_imb, other_imb)]  # 0.10, 0.12, 0.09
    gains_bal = [r - o for r, o in zip(red_bal, other_bal)]  # 0.01, 0.01, 0.02
    expected = stats.paired_t(gains_imb, gains_bal)
    assert expected.mean_diff == pytest.approx(0.09)
    row = next(line for line in out.splitlines() if line.startswith("| 7-condition | mmin (hide 0.5) + uniform | 3 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[3:6] == [f"{statistics.fmean(gains_imb):+.4f}", f"{statistics.fmean(gains_bal):+.4f}", "+0.0900"]
    assert cells[6] == f"{expected.p:.3f}"
    # Cost: 10 + 5 parameters; an epoch of 4 steps x 10 rows at 200 rows/s is 0.2 s.
    assert "| vib + relative_advantage | 15 | 200 | 0.20 |" in out
    assert out.count("| vib + relative_advantage | 0.001 | 3 | 0.6100 ± 0.0100 |") == 1


def test_balanced_partner_follows_the_scripts_directory_names(tables) -> None:
    assert tables.balanced_partner("imbalanced") == "balanced"
    assert tables.balanced_partner("imbalanced2") == "balanced"
    assert tables.balanced_partner("imbalanced-resample") == "balanced-resample"


def test_effects_compare_a_method_with_and_without_its_ingredient(tables, tmp_path: Path, capsys) -> None:
    with_hiding, without = [0.60, 0.63, 0.62], [0.58, 0.60, 0.61]
    write_sweep(tmp_path / "mmin", MMIN, "mmcore.uniform", with_hiding)
    write_sweep(tmp_path / "mmin0", MMIN0, "mmcore.uniform", without)
    write_sweep(tmp_path / "vib", VIB, "mmcore.uniform", [0.5, 0.5, 0.5])  # its dropout twin did not run: no row
    tables.effects(tables.load(tmp_path), tables.SCORES)
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| 7-condition |")]
    expected = stats.paired_t(with_hiding, without)
    assert len(rows) == 1  # one pair ran, so Holm over one leaves p as it is
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    assert cells[1:4] == ["mmin (hide 0.5) + uniform", "mmin (hide 0.0) + uniform", "3"]
    assert cells[4] == f"{expected.mean_diff:+.4f}" == "+0.0200"
    assert cells[5] == cells[6] == f"{expected.p:.3f}"
