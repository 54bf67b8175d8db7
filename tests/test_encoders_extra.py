"""mmcore.lstm and mmcore.textcnn: registration, contract, padding invariance, agreement with
the unpadded computation, vectors as length-1 sequences, empty rows, bad options."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmcore.builtins.recurrent import LSTMEncoder
from mmcore.builtins.textcnn import TextCNN
from mmcore.errors import DataError, MMCoreError
from mmcore.plugins import get_registry
from mmcore.testing import run_contract
from mmcore.types import ModalitySpec

D, T = 5, 9
SEQ = ModalitySpec("a", D, sequence=True, max_len=T)
VEC = ModalitySpec("v", D)
LSTM_OPTIONS = [
    {"hidden": 8, "pooling": "max"},
    {"hidden": 8, "pooling": "mean"},
    {"hidden": 8, "pooling": "last"},
    {"hidden": 6, "layers": 2, "bidirectional": True, "dropout": 0.3, "pooling": "last"},
]
CNN_OPTIONS = [{"channels": 8}, {"kernels": [2, 7], "channels": 4, "dropout": 0.3}]


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([9, 1, 4, 6, 2, 7])
    x = torch.randn(len(lengths), T, D, generator=gen)
    x = x * (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).unsqueeze(-1)
    return x, lengths


def _with_junk(x: torch.Tensor, lengths: torch.Tensor, extra: int) -> torch.Tensor:
    """``x`` padded by ``extra`` more frames, and every frame past a row's length replaced by junk."""
    padded = torch.cat([x, torch.zeros(x.shape[0], extra, x.shape[2])], dim=1)
    junk = torch.randn(padded.shape, generator=torch.Generator().manual_seed(7)) * 1e3
    junk[:, -1] = float("nan")
    beyond = torch.arange(padded.shape[1]).unsqueeze(0) >= lengths.unsqueeze(1)
    return torch.where(beyond.unsqueeze(-1), junk, padded)


def test_both_are_registered_by_the_core() -> None:
    registry = get_registry()
    assert registry.get("encoder", "mmcore.lstm").factory is LSTMEncoder
    assert registry.get("encoder", "mmcore.textcnn").factory is TextCNN
    assert registry.get("encoder", "mmcore.lstm").origin == "mmcore"
    lstm = {o.name: o.default for o in registry.get("encoder", "mmcore.lstm").options()}
    assert lstm == {"hidden": 128, "layers": 1, "bidirectional": False, "dropout": 0.0, "pooling": "max"}
    cnn = {o.name: o.default for o in registry.get("encoder", "mmcore.textcnn").options()}
    assert cnn == {"kernels": [3, 4, 5], "channels": 128, "dropout": 0.0}


@pytest.mark.parametrize("name", ["mmcore.lstm", "mmcore.textcnn"])
def test_contract(name: str) -> None:
    run_contract(get_registry(), "encoder", name)


@pytest.mark.parametrize("factory,opts", [(LSTMEncoder, o) for o in LSTM_OPTIONS] + [(TextCNN, o) for o in CNN_OPTIONS])
def test_junk_padding_past_lengths_changes_nothing_in_eval(factory, opts) -> None:
    torch.manual_seed(0)
    enc = factory(SEQ, 12, **opts).eval()
    x, lengths = _batch()
    with torch.no_grad():
        ref = enc(x, lengths)
        for extra in (0, 4):
            out = enc(_with_junk(x, lengths, extra), lengths)
            assert torch.isfinite(out).all()
            assert torch.allclose(out, ref, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("pooling", ["max", "mean", "last"])
def test_lstm_row_equals_the_unpadded_row_alone(pooling: str) -> None:
    torch.manual_seed(0)
    enc = LSTMEncoder(SEQ, 12, hidden=8, pooling=pooling).eval()
    x, lengths = _batch()
    with torch.no_grad():
        batched = enc(x, lengths)
        for i, n in enumerate(lengths.tolist()):
            frames, (h_n, _) = enc.rnn(x[i : i + 1, :n])  # the LSTM on the real frames only
            pooled = {"max": frames.amax(1), "mean": frames.mean(1), "last": h_n[-1]}[pooling]
            assert torch.allclose(batched[i], enc.proj(pooled)[0], atol=1e-5)


def test_textcnn_row_equals_the_reference_on_the_unpadded_row() -> None:
    # For a row at least as long as the largest kernel: ReLU(conv) over every full window of the
    # unpadded row, max over time, concatenated, then the linear map (MMIN's TextCNN without its final ReLU).
    torch.manual_seed(0)
    enc = TextCNN(SEQ, 12, kernels=[2, 3], channels=4).eval()
    x, lengths = _batch()
    with torch.no_grad():
        batched = enc(x, lengths)
        for i, n in enumerate(lengths.tolist()):
            if n < 3:
                continue
            row = x[i : i + 1, :n].transpose(1, 2)  # [1, D, n]
            pooled = [F.relu(F.conv1d(row, c.weight, c.bias)).amax(-1) for c in enc.convs]
            assert torch.allclose(batched[i], enc.proj(torch.cat(pooled, -1))[0], atol=1e-5)


def test_textcnn_row_shorter_than_a_kernel_uses_one_zero_completed_window() -> None:
    torch.manual_seed(0)
    enc = TextCNN(SEQ, 6, kernels=[4], channels=3).eval()
    x, lengths = _batch()
    i = 1  # length 1: the one window holds frame 0 and three zero frames
    with torch.no_grad():
        window = torch.zeros(1, D, 4)
        window[0, :, 0] = x[i, 0]
        expected = enc.proj(F.relu(F.conv1d(window, enc.convs[0].weight, enc.convs[0].bias)).amax(-1))
        assert torch.allclose(enc(x, lengths)[i], expected[0], atol=1e-6)


@pytest.mark.parametrize("factory", [LSTMEncoder, TextCNN])
def test_a_vector_is_a_length_one_sequence(factory) -> None:
    torch.manual_seed(0)
    enc = factory(VEC, 12).eval()
    v = torch.randn(4, D)
    with torch.no_grad():
        as_sequence = enc(torch.cat([v.unsqueeze(1), torch.randn(4, 3, D)], dim=1), torch.ones(4, dtype=torch.long))
        assert torch.allclose(enc(v), as_sequence, atol=1e-6)


@pytest.mark.parametrize("factory", [LSTMEncoder, TextCNN])
def test_a_row_of_length_zero_pools_to_zeros(factory) -> None:
    torch.manual_seed(0)
    enc = factory(SEQ, 12, dropout=0.0).eval()
    x, lengths = _batch()
    lengths[2] = 0
    with torch.no_grad():
        out = enc(x, lengths)
    assert torch.allclose(out[2], enc.proj.bias)  # the linear map of a zero vector
    assert torch.isfinite(out).all()


def test_gradients_reach_every_lstm_and_conv_parameter() -> None:
    x, lengths = _batch()
    for enc in (LSTMEncoder(SEQ, 12, hidden=8, layers=2, bidirectional=True), TextCNN(SEQ, 12, channels=4)):
        enc(x, lengths).square().sum().backward()
        for name, p in enc.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize(
    "factory,opts,message",
    [
        ("mmcore.lstm", {"pooling": "attention"}, "pooling: expected 'last' | 'mean' | 'max', got str 'attention'"),
        ("mmcore.lstm", {"hidden": 0}, "hidden: expected int >= 1, got int 0"),
        ("mmcore.lstm", {"dropout": 1.0}, r"dropout: expected float in \[0, 1\), got float 1.0"),
        ("mmcore.lstm", {"dropout": float("nan")}, "dropout: expected a finite float, got float nan"),
        ("mmcore.textcnn", {"kernels": []}, r"kernels: expected list\[int >= 1\] \(non-empty\), got list \[\]"),
        ("mmcore.textcnn", {"kernels": [3, 0]}, "kernels.1: expected int >= 1, got int 0"),
        ("mmcore.textcnn", {"channels": 0}, "channels: expected int >= 1, got int 0"),
    ],
)
def test_bad_options_are_one_line_errors(factory, opts, message) -> None:
    """The ranges live in the signatures: checked by the registry before the factory runs."""
    from mmcore.plugins import get_registry

    with pytest.raises(MMCoreError, match=rf"^encoder '{factory}' \(plugin mmcore\): {message}$"):
        get_registry().get("encoder", factory).build({"spec": SEQ, "dim": 12}, opts)


@pytest.mark.parametrize("factory,name", [(LSTMEncoder, "mmcore.lstm"), (TextCNN, "mmcore.textcnn")])
def test_wrong_feature_width_is_a_data_error(factory, name) -> None:
    enc = factory(SEQ, 12)
    with pytest.raises(DataError, match=f"{name} for modality 'a' expects"):
        enc(torch.randn(2, T, D + 1), torch.tensor([3, 3]))
