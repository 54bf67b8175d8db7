"""baselines.mmin: losses by hand, zero terms for never-present modalities, hiding in training,
detached targets, the completed latents, and that hiding is what teaches it to imagine."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from mmcore.errors import DataError, MMCoreError
from mmcore.types import ModalitySpec
from mmcore_baselines import MMINImputer

SPECS = [ModalitySpec("a", 4), ModalitySpec("b", 3), ModalitySpec("c", 2)]
D = 5


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny training loops run faster on one thread, and do not fight other processes for cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _imputer(**opts: object) -> MMINImputer:
    torch.manual_seed(0)
    return MMINImputer(SPECS, D, **{"hidden": [8, 4], "blocks": 2, **opts})


def _latents(present: torch.Tensor, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*present.shape, D, generator=gen) * present.unsqueeze(-1)


PRESENT = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]], dtype=torch.bool)  # "c" never present


def test_losses_by_hand_in_eval_mode() -> None:
    imp = _imputer().eval()  # evaluation hides nothing: visible == present
    h = _latents(PRESENT)
    out = imp(h, PRESENT)
    with torch.no_grad():
        imagined = imp.forward_ae(h.flatten(1)).view(4, 3, D)
        back = imp.backward_ae(imagined.flatten(1)).view(4, 3, D)
    sq = (imagined - h).pow(2).mean(-1)  # [4, 3], per row and modality: ‖·‖² / d
    cyc = (back - h).pow(2).mean(-1)
    # a is present in rows 0, 1, 3; b in rows 0, 2, 3; c nowhere. Weights 4 and 2, divided by M = 3.
    expected_recon = torch.stack([(sq[0, 0] + sq[1, 0] + sq[3, 0]) / 3, (sq[0, 1] + sq[2, 1] + sq[3, 1]) / 3, torch.tensor(0.0)]) * 4 / 3
    expected_cycle = torch.stack([(cyc[0, 0] + cyc[1, 0] + cyc[3, 0]) / 3, (cyc[0, 1] + cyc[2, 1] + cyc[3, 1]) / 3, torch.tensor(0.0)]) * 2 / 3
    assert sorted(out.losses) == ["cycle", "recon"]
    assert torch.allclose(out.losses["recon"], expected_recon, atol=1e-6)
    assert torch.allclose(out.losses["cycle"], expected_cycle, atol=1e-6)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_never_present_modality_gives_exact_zeros_and_gradients_stay_finite(mode: str) -> None:
    imp = _imputer(hide_rate=0.5)
    imp.train(mode == "train")
    h = _latents(PRESENT).requires_grad_(True)
    out = imp(h, PRESENT)
    assert out.losses["recon"][2].item() == 0.0 and out.losses["cycle"][2].item() == 0.0
    assert torch.isfinite(out.z).all() and all(torch.isfinite(t).all() for t in out.losses.values())
    (out.z.square().mean() + sum(t.sum() for t in out.losses.values())).backward()
    assert torch.isfinite(h.grad).all()
    grads = [p.grad for p in imp.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)


def test_completed_latents_are_h_where_present_and_imagined_from_the_others_where_absent() -> None:
    imp = _imputer().eval()
    h = _latents(PRESENT)
    with torch.no_grad():
        z = imp(h, PRESENT).z
        imagined = imp.forward_ae(h.flatten(1)).view(4, 3, D)
        assert torch.equal(z[PRESENT], h[PRESENT])
        assert torch.equal(z[~PRESENT], imagined[~PRESENT])
        # the imagined "b" of row 1 is read from its present "a": change "a", and it changes
        other = h.clone()
        other[1, 0] += 1.0
        assert not torch.allclose(imp(other, PRESENT).z[1, 1], z[1, 1])


def test_hiding_in_training_keeps_a_visible_modality_per_row_and_hits_the_expected_rate() -> None:
    imp = _imputer(hide_rate=0.5).train()
    torch.manual_seed(1)
    everything = torch.ones(12_000, 3, dtype=torch.bool)
    visible = imp.visible(everything)
    assert bool(visible.any(1).all())
    # Each modality hidden with p = 1/2; a row where all three were drawn (p = 1/8) hides nothing.
    # Expected hidden per row: 3·1/2 − 1/8·3 = 1.125, i.e. a fraction 0.375 of the entries.
    assert abs((~visible).float().mean().item() - 0.375) < 0.015
    mixed = torch.rand(500, 3) < 0.6
    mixed[~mixed.any(1), 0] = True
    visible = imp.visible(mixed)
    assert bool((visible <= mixed).all()) and bool(visible.any(1).all())
    single = mixed.sum(1) == 1
    assert torch.equal(visible[single], mixed[single])  # a lone modality is never hidden
    assert torch.equal(imp.eval().visible(mixed), mixed)
    assert torch.equal(_imputer(hide_rate=0.0).train().visible(mixed), mixed)


@pytest.mark.parametrize("detach", [True, False])
def test_the_target_of_a_hidden_modality_is_detached_by_default(detach: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    imp = _imputer(detach_target=detach, cycle_weight=0.0).train()
    present = torch.ones(2, 3, dtype=torch.bool)
    hidden = torch.tensor([[1, 0, 1], [1, 1, 1]], dtype=torch.bool)  # "b" hidden from the input in row 0
    monkeypatch.setattr(imp, "visible", lambda p: hidden)
    h = _latents(present).requires_grad_(True)
    (grad,) = torch.autograd.grad(imp(h, present).losses["recon"][1], h)
    # h[0, 1] reaches recon_b only as its target: no gradient if the target is detached
    assert (grad[0, 1].abs().sum().item() == 0.0) == detach
    assert grad[0, 0].abs().sum() > 0  # the visible "a" feeds the imagination either way


def test_without_cycle_there_is_no_backward_autoencoder_and_no_cycle_group() -> None:
    imp = _imputer(cycle_weight=0.0)
    assert imp.backward_ae is None
    assert not any(n.startswith("backward_ae") for n, _ in imp.named_parameters())
    assert sorted(imp(_latents(PRESENT), PRESENT).losses) == ["recon"]


def test_hiding_is_what_teaches_it_to_imagine(one_thread: None) -> None:
    # b is a fixed linear function of a. Trained on complete rows, only hiding makes the
    # autoencoder produce b from a; with nothing hidden it can copy its input and does not learn it.
    specs = [ModalitySpec("a", 1), ModalitySpec("b", 1)]
    mix = torch.tensor([[1.0, 0, 0, 0], [0, -1, 0, 0], [0.5, 0, 1, 0], [0, 0, 0, 2]])

    def rows(n: int, gen: torch.Generator) -> torch.Tensor:
        a = torch.randn(n, 4, generator=gen)
        return torch.stack([a, a @ mix.T], dim=1)

    errors = {}
    for hide_rate in (0.5, 0.0):
        torch.manual_seed(0)
        imp = MMINImputer(specs, 4, hidden=[16], blocks=2, cycle_weight=0.0, hide_rate=hide_rate)
        opt = torch.optim.Adam(imp.parameters(), lr=1e-2)
        gen = torch.Generator().manual_seed(1)
        for _ in range(150):
            loss = imp.train()(rows(64, gen), torch.ones(64, 2, dtype=torch.bool)).losses["recon"].sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        h = rows(500, gen)
        only_a = torch.tensor([[True, False]]).expand(500, 2)
        with torch.no_grad():
            z = imp.eval()(h * only_a.unsqueeze(-1), only_a).z
        errors[hide_rate] = (z[:, 1] - h[:, 1]).pow(2).mean().item()
    zero_fill = 1.8125  # filling zeros: E‖b‖²/4 = (1 + 1 + 1.25 + 4) / 4
    assert errors[0.5] < 0.15 * zero_fill
    assert errors[0.0] > 4 * errors[0.5]


@pytest.mark.parametrize(
    "opts,message",
    [
        ({"hide_rate": 1.5}, r"hide_rate: expected float in \[0, 1\], got float 1.5"),
        ({"hidden": []}, r"hidden: expected list\[int >= 1\] \(non-empty\), got list \[\]"),
        ({"blocks": 0}, "blocks: expected int >= 1, got int 0"),
        ({"recon_weight": -1.0}, r"recon_weight: expected float >= 0.0 \(finite\), got float -1.0"),
    ],
)
def test_bad_options_are_clear_errors(opts: dict[str, object], message: str) -> None:
    """Ranges are in the signature and checked from it before the factory runs."""
    from mmcore.plugins import get_registry

    with pytest.raises(MMCoreError, match=rf"imputer 'baselines.mmin' \(plugin baselines\): {message}"):
        get_registry().get("imputer", "baselines.mmin").build({"specs": SPECS, "dim": D}, opts)


def test_needs_two_modalities_and_the_right_shapes() -> None:
    with pytest.raises(MMCoreError, match="needs at least two modalities"):
        MMINImputer(SPECS[:1], D)
    with pytest.raises(DataError, match=r"expects h \[B, 3, 5\]"):
        _imputer()(torch.zeros(2, 3, D + 1), torch.ones(2, 3, dtype=torch.bool))
