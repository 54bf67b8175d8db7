"""redcore.vib: shapes, KL and recon against closed forms, determinism, leakage, edge batches."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from mmcore.errors import MMCoreError
from mmcore.types import ImputerOutput, ModalitySpec
from mmcore_redcore.imputer import ResidualPredictor, VIBImputer

SPECS = [ModalitySpec("a", 5), ModalitySpec("b", 3, sequence=True, max_len=4), ModalitySpec("c", 7)]
# zero_init off: a predictor that already depends on its inputs, as after some training
SMALL = {"hidden": [16, 8], "blocks": 2, "zero_init": False}


def build(dim: int = 6, **options) -> VIBImputer:
    torch.manual_seed(0)
    return VIBImputer(SPECS, dim, **{**SMALL, **options})


def inputs(batch: int = 5, dim: int = 6, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    present = torch.tensor([[1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 1, 1], [1, 0, 0]], dtype=torch.bool)[:batch]
    h = torch.randn(batch, 3, dim, generator=gen) * present.unsqueeze(-1)  # the engine zeroes absent rows
    return h, present


def set_identity_heads(imp: VIBImputer, logvar: float = 0.0) -> None:
    """μ = h and log σ² = ``logvar`` (with ``activation='none'``), so the KL is known by hand."""
    d = imp.dim
    with torch.no_grad():
        for head in imp.heads:
            head.weight.zero_()
            head.weight[:d].copy_(torch.eye(d))
            head.bias.zero_()
            head.bias[d:] = logvar


def test_output_shapes_and_groups() -> None:
    imp = build()
    h, present = inputs()
    out = imp(h, present)
    assert isinstance(out, ImputerOutput)
    assert out.z.shape == (5, 3, 6)
    assert sorted(out.losses) == ["kl", "recon"] and all(t.shape == (3,) for t in out.losses.values())


def test_kl_matches_the_closed_form_by_hand() -> None:
    imp = build(dim=2, activation="none")
    set_identity_heads(imp, logvar=math.log(2.0))
    imp.eval()
    h = torch.tensor([[[0.5, -1.0], [0.0, 0.0], [1.0, 1.0]], [[1.0, 0.0], [2.0, 0.0], [0.0, 0.0]]])
    present = torch.tensor([[True, False, True], [True, True, False]])
    kl = imp(h, present).losses["kl"]
    # per sample ½ Σ_j (μ² + σ² − 1 − log σ²) with σ² = 2 over 2 dims:
    # ½ Σ_j μ² + ½·2·(1 − ln 2) = ½ Σ_j μ² + 0.3068528
    # a: samples 0, 1: ½(1.25) + 0.3068528 = 0.9318528, ½(1) + 0.3068528 = 0.8068528 -> mean 0.8693528
    # b: sample 1 only: ½(4) + 0.3068528 = 2.3068528;  c: sample 0 only: ½(2) + 0.3068528 = 1.3068528
    expected = 1.6e-3 * torch.tensor([0.8693528, 2.3068528, 1.3068528])
    assert torch.allclose(kl, expected, rtol=1e-6, atol=0)

    # the same from torch.distributions, per present sample
    mu, std = h, torch.full_like(h, math.sqrt(2.0))
    normal = torch.distributions.Normal
    per = torch.distributions.kl_divergence(normal(mu, std), normal(0.0, 1.0)).sum(-1)
    mean_present = (per * present).sum(0) / present.sum(0)
    assert torch.allclose(kl, 1.6e-3 * mean_present, rtol=1e-6)


def test_kl_variants_keep_the_reference_objective() -> None:
    h = torch.tensor([[[0.5, -1.0], [0.0, 0.0], [1.0, 1.0]], [[1.0, 0.0], [2.0, 0.0], [0.0, 0.0]]])
    present = torch.tensor([[True, False, True], [True, True, False]])

    def kl(**options) -> torch.Tensor:
        imp = build(dim=2, activation="none", **options)
        set_identity_heads(imp, logvar=math.log(2.0))
        return imp.eval()(h, present).losses["kl"]

    default = kl()
    # The reference: 8e-4 · Σ_j −(1 + log σ² − μ² − σ²) / B — no ½, divided by the batch size.
    reference = kl(kl_half=False, kl_weight=8e-4, kl_reduction="batch")
    counts = present.sum(0).float()
    assert torch.allclose(reference, default * counts / 2, rtol=1e-6)  # B = 2
    # Without the ½ and with half the weight, averaged over present samples: the same objective.
    assert torch.allclose(kl(kl_half=False, kl_weight=8e-4), default, rtol=1e-6)


def test_recon_is_the_squared_error_of_the_prediction_on_present_samples() -> None:
    # Training mode with σ ≈ 0 (log σ² = −60): z = μ = h up to 1e-13, so recon is known exactly.
    imp = build(activation="none", zero_init=False)
    set_identity_heads(imp, logvar=-60.0)
    imp.train()
    h, present = inputs()
    out = imp(h, present)
    imp.eval()
    for m in range(3):
        # marking m absent everywhere exposes ĝ_m for every sample (ĝ_m never reads m itself)
        hidden = present.clone()
        hidden[:, m] = False
        g = imp(h * hidden.unsqueeze(-1), hidden).z[:, m]
        rows = present[:, m]
        expected = 0.15 * (g[rows] - h[rows, m]).pow(2).sum(-1).mean()
        assert torch.allclose(out.losses["recon"][m], expected, rtol=1e-5)


def test_evaluation_predicts_only_absent_rows_and_reports_no_recon() -> None:
    imp = build().eval()
    h, present = inputs()
    out = imp(h, present)
    assert torch.equal(out.losses["recon"], torch.zeros(3))
    # each absent row equals the prediction made for that row alone
    for row in range(h.shape[0]):
        alone = imp(h[row : row + 1], present[row : row + 1]).z
        assert torch.allclose(out.z[row : row + 1], alone, atol=1e-6)


def test_completed_latent_is_mu_where_present_and_prediction_where_absent() -> None:
    imp = build(activation="none")
    set_identity_heads(imp)
    imp.eval()
    h, present = inputs()
    z = imp(h, present).z
    assert torch.equal(z[present], h[present])  # μ = h through the identity heads
    assert not torch.equal(z[~present], torch.zeros_like(z[~present]))


def test_two_evaluation_passes_are_identical_and_training_samples() -> None:
    imp = build()
    h, present = inputs()
    imp.eval()
    first, second = imp(h, present), imp(h, present)
    assert torch.equal(first.z, second.z)
    assert all(torch.equal(first.losses[k], second.losses[k]) for k in first.losses)
    imp.train()
    a, b = imp(h, present).z, imp(h, present).z
    assert not torch.equal(a[present], b[present])  # z = μ + ε·σ in training
    torch.manual_seed(3)
    c = imp(h, present).z
    torch.manual_seed(3)
    assert torch.equal(c, imp(h, present).z)


@pytest.mark.parametrize("absent_input", ["learned", "zero"])
def test_absent_rows_of_h_are_never_read(absent_input: str) -> None:
    imp = build(absent_input=absent_input)
    if absent_input == "learned":
        with torch.no_grad():
            imp.absent.add_(0.3)  # as if trained: not zeros
    h, present = inputs()
    noisy = (h + 5 * torch.randn(h.shape) * (~present).unsqueeze(-1)).requires_grad_(True)
    for mode in ("eval", "train"):
        imp.train(mode == "train")
        torch.manual_seed(1)
        ref = imp(h, present)
        torch.manual_seed(1)
        out = imp(noisy, present)
        assert torch.equal(out.z, ref.z)
        assert all(torch.equal(out.losses[k], ref.losses[k]) for k in ref.losses)
    (out.z.sum() + out.losses["kl"].sum() + out.losses["recon"].sum()).backward()
    assert torch.equal(noisy.grad[~present], torch.zeros_like(noisy.grad[~present]))


def test_a_completed_latent_depends_only_on_its_own_samples_present_modalities() -> None:
    imp = build().eval()
    h, present = inputs()  # sample 0: a, b present, c absent
    base = imp(h, present).z
    changed = h.clone()
    changed[0, 0] += 1.0  # a present modality of sample 0
    assert not torch.allclose(imp(changed, present).z[0, 2], base[0, 2])
    other = h.clone()
    other[1:] = torch.randn_like(other[1:]) * present[1:].unsqueeze(-1)  # every other sample
    assert torch.allclose(imp(other, present).z[0], base[0], atol=1e-6)


def test_absent_embedding_is_learned_only_when_asked() -> None:
    learned, zero = build(), build(absent_input="zero")
    assert any(p is learned.absent for p in learned.parameters())
    assert all(p is not zero.absent for p in zero.parameters()) and "absent" in zero.state_dict()
    h, present = inputs()
    out = learned(h, present)
    (out.z.sum() + out.losses["recon"].sum()).backward()
    assert learned.absent.grad is not None and learned.absent.grad.abs().sum() > 0


def test_a_modality_never_present_gives_zero_terms_and_finite_gradients() -> None:
    imp = build()
    h, present = inputs()
    present[:, 2] = False
    h = (h * present.unsqueeze(-1)).requires_grad_(True)
    out = imp(h, present)
    assert out.losses["kl"][2].item() == 0.0 and out.losses["recon"][2].item() == 0.0
    assert all(torch.isfinite(t).all() for t in out.losses.values()) and torch.isfinite(out.z).all()
    (out.z.square().mean() + out.losses["kl"].sum() + out.losses["recon"].sum()).backward()
    grads = [p.grad for p in imp.parameters() if p.grad is not None] + [h.grad]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_nothing_present_at_all_is_finite() -> None:
    imp = build()
    h = torch.zeros(3, 3, 6)
    out = imp(h, torch.zeros(3, 3, dtype=torch.bool))
    assert torch.equal(out.losses["kl"], torch.zeros(3)) and torch.equal(out.losses["recon"], torch.zeros(3))
    assert torch.isfinite(out.z).all()


@pytest.mark.parametrize("detach", [False, True])
def test_detach_target_stops_the_recon_gradient_into_the_target(detach: bool) -> None:
    imp = build(detach_target=detach)
    h, present = inputs()
    imp(h, present).losses["recon"][0].backward()
    own = imp.heads[0].weight.grad  # modality a's head produces the target z_a
    assert (own is None or own.abs().sum() == 0) == detach
    other = imp.heads[1].weight.grad  # b's latent feeds the predictor of a either way
    assert other is not None and other.abs().sum() > 0


def test_residual_predictor_wiring_and_sizes() -> None:
    torch.manual_seed(0)
    pred = ResidualPredictor(in_dim=12, out_dim=6, hidden=[10, 4], blocks=2)
    linear_sizes = lambda seq: [(l.in_features, l.out_features) for l in seq if isinstance(l, nn.Linear)]  # noqa: E731
    assert linear_sizes(pred.encoders[0]) == [(12, 10), (10, 4)]
    assert linear_sizes(pred.decoders[0]) == [(4, 10), (10, 12)]
    assert linear_sizes(pred.head) == [(12, 12), (12, 6)]
    assert [type(l) for l in pred.encoders[0]] == [nn.Linear, nn.LeakyReLU, nn.Linear]
    assert [type(l) for l in pred.decoders[0]] == [nn.Linear, nn.ReLU, nn.Linear]
    x = torch.randn(3, 12)
    out0 = pred.decoders[0](pred.encoders[0](x))
    x1 = x + out0
    out1 = pred.decoders[1](pred.encoders[1](x1))
    assert torch.allclose(pred(x), pred.head(x1 + out1))


@pytest.mark.parametrize("zero_init", [True, False])
def test_reference_sizes_and_initialisation(zero_init: bool) -> None:
    torch.manual_seed(0)
    imp = VIBImputer(SPECS, 128, zero_init=zero_init)  # the reference's sizes: d = 128, 5 blocks of 256-128-64
    pred = imp.predictors[0]
    assert len(pred.encoders) == 5
    assert [l.out_features for l in pred.encoders[0] if isinstance(l, nn.Linear)] == [256, 128, 64]
    assert pred.head[2].out_features == 128 and imp.heads[0].out_features == 256
    assert all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in imp.modules() if isinstance(m, nn.Linear))
    w = pred.encoders[0][0].weight.detach()  # Kaiming normal, fan-in 256: std √(2/256) = 0.0884
    assert abs(float(w.std()) - math.sqrt(2 / 256)) < 0.01
    zeroed = [pred.head[2].weight] + [dec[-1].weight for dec in pred.decoders]
    assert all(bool((p == 0).all()) == zero_init for p in zeroed)


def test_zero_init_predicts_zero_so_recon_is_the_latent_norm() -> None:
    imp = build(activation="none", zero_init=True)
    set_identity_heads(imp, logvar=-60.0)  # σ ≈ 0: training-mode z equals μ = h
    imp.train()
    h, present = inputs()
    out = imp(h, present)
    assert torch.equal(out.z[~present], torch.zeros_like(out.z[~present]))  # ĝ = 0 at init
    # recon_m = 0.15 · mean over present samples of ‖0 − μ‖² = 0.15 · mean ‖h‖²
    expected = 0.15 * torch.stack([h[present[:, m], m].pow(2).sum(-1).mean() for m in range(3)])
    assert torch.allclose(out.losses["recon"], expected, rtol=1e-6)
    # The reference's init: a residual stack that amplifies its input.
    torch.manual_seed(0)
    with torch.no_grad():
        amplified = VIBImputer(SPECS, 6, hidden=[16, 8], blocks=5, zero_init=False).eval()(h, present)
    assert float(amplified.z[~present].abs().mean()) > 5 * float(h[present].abs().mean())


@pytest.mark.parametrize(
    "specs,options,message",
    [
        (SPECS[:1], {}, "needs at least two modalities"),
        (SPECS, {"blocks": 0}, "blocks: expected int >= 1, got int 0"),
        (SPECS, {"hidden": []}, r"hidden: expected list\[int >= 1\] \(non-empty\), got list \[\]"),
        (SPECS, {"hidden": [8, 0]}, "hidden.1: expected int >= 1, got int 0"),
        (SPECS, {"absent_input": "mean"}, "absent_input: expected 'learned' | 'zero', got str 'mean'"),
        (SPECS, {"kl_weight": -1.0}, r"kl_weight: expected float >= 0.0 \(finite\), got float -1.0"),
    ],
)
def test_bad_options_are_one_line_errors(specs: list[ModalitySpec], options: dict, message: str) -> None:
    """Ranges are in the signature and checked from it before the factory runs."""
    from mmcore.plugins import get_registry

    with pytest.raises(MMCoreError, match=message):
        get_registry().get("imputer", "redcore.vib").build({"specs": specs, "dim": 6}, options)


def test_wrong_input_shape_is_a_clear_error() -> None:
    imp = build()
    with pytest.raises(MMCoreError, match=r"expected h of shape \[B, 3, 6\], got \[2, 3, 5\]"):
        imp(torch.zeros(2, 3, 5), torch.ones(2, 3, dtype=torch.bool))


def test_monitors_are_mean_latent_norm_and_variance_over_present_rows() -> None:
    imp = build()
    set_identity_heads(imp, logvar=math.log(0.25))  # μ = h, σ² = 0.25 in every dimension
    h, present = inputs()
    torch.manual_seed(1)
    out = imp(h, present)
    assert sorted(out.monitors) == ["sigma2", "z_sq"]
    assert out.monitors["sigma2"].tolist() == pytest.approx([0.25, 0.25, 0.25], rel=1e-6)
    # ‖z‖² of the sampled latent z = μ + σ ε, replayed with the same generator state
    torch.manual_seed(1)
    z = h + torch.randn_like(h) * 0.5
    by_hand = [float(z[present[:, i], i].pow(2).sum(-1).mean()) for i in range(3)]
    assert out.monitors["z_sq"].tolist() == pytest.approx(by_hand, rel=1e-5)
    assert not any(t.requires_grad for t in out.monitors.values())
    imp.eval()
    assert imp(h, present).monitors == {}  # training only: evaluation has nothing to explain
