"""``mmcore convert``: MMSA pickles and MMIN folders into the features format, and back out equal."""

from __future__ import annotations

import importlib.metadata as md

import pytest
import torch
import typer
from typer.testing import CliRunner

from corpora_testdata import write_mmsa
from mmcore.plugins import load_plugins
from mmcore.registry import REQUIRED
from mmcore_corpora import plugin
from mmcore_corpora.features import Features
from mmcore_corpora.mmsa import MOSI

runner = CliRunner()


def _app() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:  # a group, like the real ``mmcore`` app
        """test app"""

    plugin.register_commands(app)
    return app


def _assert_same(a, b) -> None:
    assert a.modalities == b.modalities and a.task == b.task
    for split in ("train", "val", "test"):
        x, y = a.split(split), b.split(split)
        assert torch.equal(x.ids, y.ids) and torch.equal(x.target, y.target)
        for m in x.features:
            assert torch.equal(x.features[m], y.features[m]) and torch.equal(x.lengths[m], y.lengths[m])


def test_convert_mmsa_round_trip(tmp_path):
    pkl = tmp_path / "unaligned_50.pkl"
    write_mmsa(pkl)
    out = tmp_path / "mosi7"
    result = runner.invoke(_app(), ["convert", "mmsa", str(pkl), "--out", str(out), "--task", "7class"])
    assert result.exit_code == 0, result.output
    assert "replaced 3 non-finite feature values" in result.output and f"wrote {out / 'test.safetensors'}" in result.output
    converted = Features(str(out))
    _assert_same(MOSI(str(pkl), task="7class"), converted)
    assert converted.metadata["nonfinite_replaced"] == "3" and "task=7class" in converted.metadata["source"]


def test_convert_iemocap_round_trip(tmp_path, mmin_layout):
    from mmcore_corpora.mmin import IEMOCAP

    root, _ = mmin_layout("iemocap")
    out = tmp_path / "iemocap1"
    result = runner.invoke(_app(), ["convert", "iemocap", str(root), "--fold", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    converted = Features(str(out))
    _assert_same(IEMOCAP(str(root), fold=1), converted)
    assert converted.metadata["preprocessing"] == "audio normalised with fold 1 training statistics (file)"


def test_convert_msp_improv_with_max_len(tmp_path, mmin_layout):
    from mmcore_corpora.mmin import MSPImprov

    root, _ = mmin_layout("msp_improv", folds=(3,))
    out = tmp_path / "msp3"
    result = runner.invoke(_app(), ["convert", "msp-improv", str(root), "--fold", "3", "--max-len", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    _assert_same(MSPImprov(str(root), fold=3, max_len=2), Features(str(out)))


def test_convert_errors_are_one_line(tmp_path):
    result = runner.invoke(_app(), ["convert", "mmsa", str(tmp_path / "none.pkl"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: mmsa: feature pickle or folder not found:")
    assert lines[0].endswith("none.pkl (see docs/datasets.md for the expected layout)")

    write_mmsa(tmp_path / "p.pkl")
    args = ["convert", "mmsa", str(tmp_path / "p.pkl"), "--out", str(tmp_path / "o")]
    assert runner.invoke(_app(), args).exit_code == 0
    again = runner.invoke(_app(), args)
    assert again.exit_code == 1 and "already exists; pass --force to replace it" in again.output
    assert runner.invoke(_app(), args + ["--force"]).exit_code == 0

    bad_fold = runner.invoke(_app(), ["convert", "iemocap", str(tmp_path), "--fold", "0", "--out", str(tmp_path / "i")])
    assert bad_fold.exit_code == 1 and "fold 0 does not exist; valid folds: 1, 2" in bad_fold.output


def test_plugin_is_found_through_its_entry_point():
    points = {ep.name: ep.value for ep in md.entry_points(group="mmcore")}
    if "corpora" not in points:
        pytest.skip("mmcore-corpora is not installed (pip install -e plugins/corpora)")
    assert points["corpora"] == "mmcore_corpora.plugin"
    plugins = load_plugins()
    info = next(i for i in plugins.infos if i.name == "corpora")
    assert info.error is None
    assert {
        "corpora.handwritten", "corpora.iemocap", "corpora.msp_improv", "corpora.mosi", "corpora.mosei", "corpora.features",
    } <= set(plugins.registry.names("dataset"))
    options = {o.name: o.default for o in plugins.registry.get("dataset", "corpora.iemocap").options()}
    assert options == {"root": REQUIRED, "fold": 1, "audio": "comparE", "audio_norm": "file", "max_len": None}
