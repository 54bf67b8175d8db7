"""The core's generic components: synthetic data, shared layers, encoders, imputer, fusion, balancer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmcore.builtins.balancers import Uniform
from mmcore.builtins.encoders import MLPEncoder, TransformerEncoder
from mmcore.builtins.fusion import ConcatFusion
from mmcore.builtins.imputers import ZeroImputer
from mmcore.builtins.synthetic import Synthetic
from mmcore.components import Balancer
from mmcore.errors import DataError, MMCoreError
from mmcore.nn import length_mask, masked_mean, mlp
from mmcore.plugins import get_registry
from mmcore.types import ModalitySpec, SplitData

SPLITS = ("train", "val", "test")


def _all_tensors(ds: Synthetic) -> list[torch.Tensor]:
    out = []
    for name in SPLITS:
        s = ds.split(name)
        out += [s.ids, s.target, *s.features.values(), *s.lengths.values()]
    return out


# ------------------------------------------------------------------ synthetic dataset


@pytest.mark.parametrize("sequence", [False, True])
def test_synthetic_is_deterministic_in_its_seed(sequence: bool) -> None:
    a = _all_tensors(Synthetic(samples=200, sequence=sequence, seed=3))
    b = _all_tensors(Synthetic(samples=200, sequence=sequence, seed=3))
    c = _all_tensors(Synthetic(samples=200, sequence=sequence, seed=4))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    features = [(x, z) for x, z in zip(a, c) if x.is_floating_point()]
    assert features and all(not torch.equal(x, z) for x, z in features)


def test_synthetic_split_sizes_ids_and_stratification() -> None:
    ds = Synthetic()  # 1200 samples, 4 classes, 15% val, 15% test
    splits = {name: ds.split(name) for name in SPLITS}
    assert [len(splits[n]) for n in SPLITS] == [840, 180, 180]
    assert torch.bincount(splits["val"].target).tolist() == [45, 45, 45, 45]
    assert torch.bincount(splits["train"].target).tolist() == [210, 210, 210, 210]
    ids = torch.cat([s.ids for s in splits.values()])
    assert ids.dtype == torch.int64
    assert torch.equal(torch.sort(ids).values, torch.arange(1200))  # unique across splits
    assert [m.name for m in ds.modalities] == ["m0", "m1", "m2"]
    assert ds.task.kind == "classification" and ds.task.num_classes == 4 and ds.task.out_dim == 4
    assert isinstance(splits["test"], SplitData) and splits["test"].lengths == {}
    assert splits["train"].features["m1"].shape == (840, 16)


def _nearest_mean_accuracy(train: SplitData, test: SplitData, m: str, classes: int) -> float:
    x_train, x_test = train.features[m], test.features[m]
    if x_train.dim() == 3:  # pool valid frames only
        x_train, x_test = masked_mean(x_train, train.lengths[m]), masked_mean(x_test, test.lengths[m])
    means = torch.stack([x_train[train.target == c].mean(0) for c in range(classes)])
    pred = torch.cdist(x_test, means).argmin(1)
    return float((pred == test.target).float().mean())


def test_synthetic_modality_strength_decreases_by_default() -> None:
    ds = Synthetic(seed=0)
    assert ds.signal.tolist() == [2.0, 1.375, 0.75]
    acc = [_nearest_mean_accuracy(ds.split("train"), ds.split("test"), f"m{i}", 4) for i in range(3)]
    assert acc[0] > acc[1] > acc[2]
    assert acc[0] > 0.7 and acc[2] > 0.25 + 0.08  # the weakest is still above chance (0.25)


def test_synthetic_custom_signal_reorders_modalities() -> None:
    ds = Synthetic(modalities=2, classes=2, samples=400, signal=[0.0, 3.0], seed=1)
    weak, strong = (_nearest_mean_accuracy(ds.split("train"), ds.split("test"), m, 2) for m in ("m0", "m1"))
    assert strong > 0.9 and weak < 0.7  # signal 0 leaves m0 at chance


def test_synthetic_sequences_are_padded_with_signal_in_valid_frames() -> None:
    ds = Synthetic(samples=300, sequence=True, max_len=9, dim=5, seed=2)
    spec = ds.modalities[1]
    assert spec.sequence and spec.max_len == 9 and spec.dim == 5
    train = ds.split("train")
    x, lengths = train.features["m1"], train.lengths["m1"]
    assert x.shape == (len(train), 9, 5) and lengths.dtype == torch.int64
    assert int(lengths.min()) >= 3 and int(lengths.max()) <= 9
    assert int(lengths.min()) == 3 and int(lengths.max()) == 9  # 300 draws cover the whole range
    valid = length_mask(lengths, 9)
    assert bool((x[~valid] == 0).all()) and bool((x[valid] != 0).all())
    assert _nearest_mean_accuracy(train, ds.split("test"), "m0", 4) > 0.7


@pytest.mark.parametrize(
    "options,message",
    [
        ({"signal": [1.0, 2.0]}, "'signal' needs one strength per modality \\(3 values\\), got 2"),
        ({"val_fraction": 0.6, "test_fraction": 0.5}, "sum below 1"),
        ({"samples": 10}, "too few for classes=4"),
    ],
)
def test_synthetic_rejects_bad_options(options: dict, message: str) -> None:
    with pytest.raises(DataError, match=message):
        Synthetic(**options)


@pytest.mark.parametrize(
    "options,message",
    [
        ({"signal": [1.0, -1.0, 2.0]}, r"signal.1: expected float >= 0.0 \(finite\), got float -1.0"),
        ({"classes": 1}, "classes: expected int >= 2, got int 1"),
        ({"noise": 0.0}, r"noise: expected float > 0.0 \(finite\), got float 0.0"),
    ],
)
def test_synthetic_ranges_are_in_its_signature(options: dict, message: str) -> None:
    from mmcore.errors import RegistryError
    from mmcore.plugins import get_registry

    with pytest.raises(RegistryError, match=rf"^dataset 'mmcore.synthetic' \(plugin mmcore\): {message}$"):
        get_registry().get("dataset", "mmcore.synthetic").build({}, options)


def test_synthetic_unknown_split_is_a_clear_error() -> None:
    with pytest.raises(DataError, match="has splits train, val, test; got 'dev'"):
        Synthetic(samples=40, classes=2).split("dev")


# ------------------------------------------------------------------ shared layers


def test_masked_mean_by_hand() -> None:
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]], [[5.0, 6.0], [float("nan"), 0.0], [7.0, 8.0]]])
    out = masked_mean(x, torch.tensor([2, 1]))
    assert torch.equal(out, torch.tensor([[2.0, 3.0], [5.0, 6.0]]))  # padding (even NaN) ignored
    assert torch.equal(masked_mean(x[:1], torch.tensor([0])), torch.zeros(1, 2))  # length 0: zeros, not NaN
    assert torch.allclose(masked_mean(x[:1], None), torch.tensor([[104.0 / 3, 106.0 / 3]]))
    assert torch.equal(length_mask(torch.tensor([0, 2]), 3), torch.tensor([[False] * 3, [True, True, False]]))


def test_mlp_builder_layout() -> None:
    net = mlp(4, [8, 6], out_dim=2, dropout=0.1)
    kinds = [type(m) for m in net]
    assert kinds == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    assert [(m.in_features, m.out_features) for m in net if isinstance(m, nn.Linear)] == [(4, 8), (8, 6), (6, 2)]
    assert len(mlp(4, [], out_dim=None)) == 0
    assert [type(m) for m in mlp(4, [3], activation=nn.GELU)] == [nn.Linear, nn.GELU]
    with pytest.raises(ValueError, match="positive"):
        mlp(4, [0])


# ------------------------------------------------------------------ encoders

SEQ = ModalitySpec("s", 5, sequence=True, max_len=6)


def _sequences(lengths: list[int], steps: int = 6, garbage: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    lens = torch.tensor(lengths)
    x = torch.randn(len(lengths), steps, 5)
    valid = length_mask(lens, steps).unsqueeze(-1)
    return torch.where(valid, x, torch.full_like(x, garbage)), lens


def test_mlp_encoder_pools_valid_frames_only() -> None:
    enc = MLPEncoder(SEQ, dim=3, layers=[7]).eval()
    x, lens = _sequences([2, 6, 1])
    out = enc(x, lens)
    assert out.shape == (3, 3)
    assert torch.allclose(out[0], enc.net(x[0, :2]).mean(0), atol=1e-6)
    dirty, _ = _sequences([2, 6, 1], garbage=50.0)
    longer = torch.cat([x, torch.zeros(3, 4, 5)], dim=1)
    assert torch.allclose(enc(dirty, lens), out, atol=1e-6)
    assert torch.allclose(enc(longer, lens), out, atol=1e-6)
    vec = MLPEncoder(ModalitySpec("v", 5), dim=3, layers=[])
    assert vec(torch.randn(4, 5)).shape == (4, 3)


def test_encoders_reject_the_wrong_feature_width() -> None:
    for cls in (MLPEncoder, TransformerEncoder):
        with pytest.raises(DataError, match="modality 's' expects"):
            cls(SEQ, dim=8)(torch.randn(2, 6, 4), torch.tensor([1, 2]))


def test_transformer_padding_invariance_and_empty_rows() -> None:
    torch.manual_seed(0)
    enc = TransformerEncoder(SEQ, dim=8, heads=2).eval()
    x, lens = _sequences([3, 6, 1])
    with torch.no_grad():
        out = enc(x, lens)
        dirty, _ = _sequences([3, 6, 1], garbage=-9.0)
        longer = torch.cat([x, torch.zeros(3, 5, 5)], dim=1)
        assert torch.allclose(enc(dirty, lens), out, atol=1e-5)
        assert torch.allclose(enc(longer, lens), out, atol=1e-5)
        alone = enc(x[:1, :3], lens[:1])  # the row cropped to its own length, in a batch of one
        assert torch.allclose(alone, out[:1], atol=1e-5)
        empty = enc(x, torch.tensor([0, 6, 1]))
        assert torch.equal(empty[0], torch.zeros(8)) and bool(torch.isfinite(empty).all())


def test_transformer_positions_make_order_matter() -> None:
    x, lens = _sequences([4])
    swapped = x[:, [1, 0, 2, 3, 4, 5]]
    torch.manual_seed(0)
    plain = TransformerEncoder(SEQ, dim=8, heads=2).eval()
    torch.manual_seed(0)
    positional = TransformerEncoder(SEQ, dim=8, heads=2, positional=True).eval()
    with torch.no_grad():
        assert torch.allclose(plain(x, lens), plain(swapped, lens), atol=1e-5)  # a set model without positions
        assert not torch.allclose(positional(x, lens), positional(swapped, lens), atol=1e-3)


def test_transformer_treats_vectors_as_length_one_sequences() -> None:
    torch.manual_seed(0)
    vec = TransformerEncoder(ModalitySpec("v", 5), dim=8, heads=2, attn_dropout=0.2).eval()
    x = torch.randn(3, 5)
    with torch.no_grad():
        assert torch.allclose(vec(x, None), vec(x.unsqueeze(1), torch.ones(3, dtype=torch.int64)), atol=1e-6)
    assert vec.blocks[0].attn.dropout == 0.2 and len(vec.blocks) == 2


def test_transformer_rejects_heads_that_do_not_divide_dim() -> None:
    with pytest.raises(MMCoreError, match="latent dim 10 must be divisible by heads=4"):
        TransformerEncoder(SEQ, dim=10)


# ------------------------------------------------------------------ imputer, fusion, balancer


def test_zero_imputer_zeroes_absent_rows_only() -> None:
    specs = [ModalitySpec("a", 2), ModalitySpec("b", 2), ModalitySpec("c", 2)]
    imp = ZeroImputer(specs, dim=4)
    h = torch.randn(2, 3, 4)
    h[1, 2] = float("nan")  # an absent row's content must not survive, even NaN
    present = torch.tensor([[True, False, True], [False, True, False]])
    out = imp(h, present)
    assert torch.equal(out.z[present], h[present])
    assert torch.equal(out.z[~present], torch.zeros(3, 4))
    assert out.losses == {} and list(imp.parameters()) == [] and imp.state_dict() == {}
    with pytest.raises(DataError, match=r"expects h \[B, 3, 4\]"):
        imp(torch.randn(2, 2, 4), present[:, :2])


def test_concat_fusion_shape_and_layout() -> None:
    specs = [ModalitySpec("a", 2), ModalitySpec("b", 9)]
    fus = ConcatFusion(specs, dim=4, out_dim=3, layers=[5], dropout=0.0).eval()
    linears = [m for m in fus.net if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8, 5), (5, 3)]
    z = torch.randn(6, 2, 4)
    out = fus(z, torch.ones(6, 2, dtype=torch.bool))
    assert out.shape == (6, 3)
    assert torch.allclose(out, fus.net(torch.cat([z[:, 0], z[:, 1]], dim=1)))  # modality order kept
    with pytest.raises(DataError, match=r"expects z \[B, 2, 4\]"):
        fus(torch.randn(6, 3, 4), torch.ones(6, 3, dtype=torch.bool))


def test_uniform_balancer() -> None:
    bal = Uniform(["a", "b", "c"], target="kl")
    assert isinstance(bal, Balancer) and bal.target == "kl"
    assert torch.equal(bal.weights(), torch.ones(3)) and bal.state_dict() == {}


def test_builtin_options_are_read_from_signatures() -> None:
    registry = get_registry()
    from mmcore.recipe import type_name

    options = {o.name: (type_name(o.annotation), o.default) for o in registry.get("encoder", "mmcore.mlp").options()}
    assert options == {  # ranges kept
        "layers": ("list[int >= 1]", [256]), "dropout": ("float in [0, 1)", 0.0), "frames": ("'auto' | 'packed' | 'padded'", "auto")
    }
    names = [o.name for o in registry.get("dataset", "mmcore.synthetic").options()]
    assert names[:4] == ["modalities", "classes", "samples", "dim"] and "signal" in names
    fusion = {o.name for o in registry.get("fusion", "mmcore.concat").options()}
    assert fusion == {"layers", "dropout"}
    assert {o.name for o in registry.get("balancer", "mmcore.uniform").options()} == {"target", "norm", "total"}
