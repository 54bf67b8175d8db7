"""Options that make RedCore's reference code reachable (issue 11, "Fidelity"): the reference
transformer block, engine-level Kaiming init, the per-epoch learning-rate decay and the pooled
evaluation row. Expectations are built by hand, not read back from the code under test."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from mmcore.builtins.encoders import TransformerEncoder
from mmcore.conditions import AVERAGE
from mmcore.engine.build import build_dataset, build_model, kaiming_normal_init
from mmcore.recipe.plan import plan_of
from mmcore.engine.evaluate import POOLED, score, write_eval
from mmcore.engine.optim import lr_factor
from mmcore.errors import RecipeError
from mmcore.plugins import get_registry
from mmcore.recipe.validate import load_recipe
from mmcore.testing import tiny_recipe
from mmcore.types import ModalitySpec, TaskSpec

ROOT = Path(__file__).resolve().parents[1]
SPEC = ModalitySpec("a", 5)


def _encoder(layout: str, layers: int = 2) -> TransformerEncoder:
    torch.manual_seed(0)
    return TransformerEncoder(SPEC, 8, layers=layers, heads=2, ff_mult=2, dropout=0.3, attn_dropout=0.2, layout=layout)


def test_reference_layout_has_branch_norms_and_no_final_norm():
    ref, pre = _encoder("reference", layers=3), _encoder("prenorm", layers=3)
    # reference: LN before and after each of the two branches, 4 per block, nothing at the end
    assert sum(isinstance(m, nn.LayerNorm) for m in ref.modules()) == 4 * 3
    assert isinstance(ref.norm, nn.Identity)
    # prenorm: 2 per block plus the final norm
    assert sum(isinstance(m, nn.LayerNorm) for m in pre.modules()) == 2 * 3 + 1
    assert isinstance(pre.norm, nn.LayerNorm)
    for block in ref.blocks:
        assert isinstance(block.post1, nn.LayerNorm) and isinstance(block.post2, nn.LayerNorm)
        # dropout only inside the MLP (and attention's own dropout on its weights)
        drops = [m for m in block.modules() if isinstance(m, nn.Dropout)]
        assert drops == [block.ff[2]]
        assert block.attn.dropout == pytest.approx(0.2)


def test_reference_block_matches_hand_built_forward():
    enc = _encoder("reference").eval()
    x = torch.randn(3, 4, 5)
    lengths = torch.tensor([4, 2, 1])
    with torch.no_grad():
        got = enc(x, lengths)
        # by hand: x + LN12(attn(LN1 x)), x + LN22(mlp(LN2 x)), no final norm, mean over valid frames
        y = enc.proj(x)
        padding = torch.arange(4)[None, :] >= lengths[:, None]
        for b in enc.blocks:
            h = b.norm1(y)
            a, _ = b.attn(h, h, h, key_padding_mask=padding, need_weights=False)
            y = y + b.post1(a)
            f = b.ff[3](torch.relu(b.ff[0](b.norm2(y))))
            y = y + b.post2(f)
        want = torch.stack([y[i, : int(n)].mean(0) for i, n in enumerate(lengths)])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_prenorm_layout_keeps_its_state_dict_keys():
    keys = set(_encoder("prenorm").state_dict())
    assert "norm.weight" in keys and not any("post" in k for k in keys)


def test_unknown_layout_is_a_recipe_error(tmp_path):
    enc = {"default": {"type": "mmcore.transformer", "layout": "postnorm"}}
    with pytest.raises(RecipeError, match="layout"):
        tiny_recipe(tmp_path, encoders=enc)


def _model(tmp_path, init: str):
    recipe = tiny_recipe(
        tmp_path,
        f"model.init={init}",
        "model.dim=64",
        encoders={"default": {"type": "mmcore.mlp", "layers": [400]}},
        imputer={"type": "redcore.vib"},
        unimodal_heads={"layers": [300]},
    )
    registry = get_registry()
    dataset = build_dataset(recipe["dataset"], registry)
    torch.manual_seed(0)
    return build_model(plan_of(recipe), dataset.modalities, dataset.task, registry)


def test_kaiming_normal_init_statistics(tmp_path):
    model = _model(tmp_path, "kaiming_normal")
    parts = [*model.encoders.values(), model.fusion, model.unimodal_heads]
    linears = [m for p in parts for m in p.modules() if isinstance(m, nn.Linear)]
    assert linears
    for layer in linears:
        fan_in = layer.weight.shape[1]
        std = layer.weight.std().item()
        # std sqrt(2 / fan_in) (kaiming_normal_, a=0, fan_in); the sample std of n >= 400 draws
        # lies within 15% of it with overwhelming probability
        assert std == pytest.approx(math.sqrt(2.0 / fan_in), rel=0.15), (layer, std)
        assert layer.weight.mean().abs().item() < 3 * math.sqrt(2.0 / fan_in) / math.sqrt(layer.weight.numel()) + 1e-6
        assert torch.count_nonzero(layer.bias) == 0
    default = _model(tmp_path, "default")
    # PyTorch's default Linear init is uniform with std 1/sqrt(3 fan_in), not Kaiming-normal
    first = next(m for m in default.encoders["m0"].modules() if isinstance(m, nn.Linear))
    assert first.weight.std().item() == pytest.approx(1 / math.sqrt(3 * first.weight.shape[1]), rel=0.15)
    # the imputer owns its init: identical under both settings (same seed, built before the init)
    for (k, a), (_, b) in zip(model.imputer.state_dict().items(), default.imputer.state_dict().items()):
        assert torch.equal(a, b), k


def test_linear_epoch_schedule_is_the_reference_rule():
    f = lr_factor({"type": "linear_epoch", "constant_epochs": 30}, 10, 60)
    # epochs 0-29 at 1; epoch e >= 30 at 1 - (e + 1 - 30) / 31, constant within the epoch
    assert [f(s) for s in (0, 299)] == [1.0, 1.0]
    assert f(300) == pytest.approx(30 / 31) and f(309) == pytest.approx(30 / 31)
    assert f(310) == pytest.approx(29 / 31)
    assert f(599) == pytest.approx(1 / 31)  # the last epoch: 1/31 of the rate, never 0


def test_pooled_row_pools_predictions_and_average_stays_over_conditions(tmp_path):
    task = TaskSpec("classification", num_classes=2, class_names=("c0", "c1"))
    target = torch.tensor([0, 1, 1, 1])
    # condition x: 4/4 right; condition y: 1/4 right (predicts 0 everywhere)
    x = torch.tensor([[1.0, 0], [0, 1], [0, 1], [0, 1]])
    y = torch.tensor([[1.0, 0], [1, 0], [1, 0], [1, 0]])
    table = score({"x": x, "y": y}, target, task)
    assert table["x"]["accuracy"] == 1.0 and table["y"]["accuracy"] == 0.25
    assert table[AVERAGE]["accuracy"] == pytest.approx(0.625)  # (1 + 0.25) / 2, not counting pooled
    assert set(table) == {"x", "y", AVERAGE}  # pooled is not a condition row
    assert table.pooled["accuracy"] == pytest.approx(5 / 8)
    # pooled macro-F1 by hand over 8 rows: class 0 tp=2 fp=3 fn=0 -> F1 4/7; class 1 tp=3 fp=0 fn=3 -> 2/3
    assert table.pooled["macro_f1"] == pytest.approx((4 / 7 + 2 / 3) / 2)
    assert table[AVERAGE]["macro_f1"] == pytest.approx((table["x"]["macro_f1"] + table["y"]["macro_f1"]) / 2)
    write_eval(tmp_path, {"test": table}, {})
    saved = json.loads((tmp_path / "eval.json").read_text())
    assert set(saved["results"]["test"]) == {"x", "y", AVERAGE}
    assert saved[POOLED]["test"]["accuracy"] == pytest.approx(5 / 8)
    assert "pooled" not in (tmp_path / "eval.csv").read_text()


@pytest.mark.parametrize("name", ["redcore_synthetic", "redcore_handwritten", "redcore_iemocap_reference", "redcore_mosei"])
def test_redcore_recipes_use_the_reference_options(name):
    recipe = load_recipe(ROOT / "recipes" / f"{name}.yaml", registry=get_registry())
    model = recipe["model"]
    assert model["init"] == "kaiming_normal"
    enc = model["encoders"]["default"]
    if enc["type"] == "mmcore.transformer":
        assert enc["layout"] == "reference"
    assert model["unimodal_heads"]["dropout"] == 0.5


def test_iemocap_recipe_differs_from_its_reference_variant_only_where_stated():
    registry = get_registry()
    ship = load_recipe(ROOT / "recipes" / "redcore_iemocap.yaml", registry=registry)
    ref = load_recipe(ROOT / "recipes" / "redcore_iemocap_reference.yaml", registry=registry)
    assert ship["model"]["imputer"]["detach_target"] is True and ref["model"]["imputer"]["detach_target"] is False
    assert ref["train"]["schedule"]["type"] == "linear_epoch"
    assert ref["model"]["imputer"]["kl_reduction"] == "batch"
    text = (ROOT / "recipes" / "redcore_iemocap.yaml").read_text()
    # every departure is stated on its line as "ref: <the reference's value>"
    for needle in ("ref: detach_target false", "ref: lr 2e-4", "ref: kaiming_normal", "ref: layout reference"):
        assert needle in text


def test_kaiming_normal_init_gives_attention_input_projection_the_reference_std():
    # the reference's transformer encoder: initialize_parameters() draws in_proj_weight from
    # N(0, width ** -0.5); init_net's Kaiming pass skips it (a bare parameter, not a Linear)
    block = nn.Sequential(nn.MultiheadAttention(128, 8, batch_first=True), nn.Linear(128, 512))
    torch.manual_seed(0)
    kaiming_normal_init(block)
    attn = block[0]
    assert attn.in_proj_weight.std().item() == pytest.approx(128**-0.5, rel=0.05)  # 49152 draws
    assert attn.in_proj_weight.mean().abs().item() < 4 * 128**-0.5 / math.sqrt(attn.in_proj_weight.numel())
    # the output projection is a Linear: Kaiming-normal, zero bias, as every other Linear
    assert attn.out_proj.weight.std().item() == pytest.approx(math.sqrt(2.0 / 128), rel=0.1)
    assert torch.count_nonzero(attn.out_proj.bias) == 0 and torch.count_nonzero(attn.in_proj_bias) == 0
