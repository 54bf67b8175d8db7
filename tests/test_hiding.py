"""mmcore.hiding: the hiding rule by hand, and what each imputer that reconstructs does with it."""

from __future__ import annotations

import pytest
import torch

from mmcore import hiding
from mmcore.types import ModalitySpec

PRESENT = torch.tensor([[1, 1, 1], [1, 0, 1], [1, 0, 0]], dtype=torch.bool)
DRAWS = torch.tensor([[0.1, 0.9, 0.2], [0.8, 0.1, 0.9], [0.3, 0.5, 0.5]])


def test_hide_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hiding, "uniforms", lambda present: DRAWS)
    # u < 0.5 hides (0,0), (0,2), (1,1) [absent anyway], (2,0); row 2 would be left empty, so keeps its one
    visible = hiding.hide(PRESENT, 0.5, training=True)
    assert visible.tolist() == [[False, True, False], [True, False, True], [True, False, False]]
    assert torch.equal(hiding.hide(PRESENT, 0.5, training=False), PRESENT)  # evaluation hides nothing
    assert torch.equal(hiding.hide(PRESENT, 0.0, training=True), PRESENT)


@pytest.mark.parametrize("rate", [0.25, 0.5, 0.9])
@pytest.mark.parametrize("present_count", [1, 2, 3])
def test_hidden_fraction_is_what_hide_does(rate: float, present_count: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every draw pattern of one row, weighted by its probability: the chance modality 0 is hidden."""
    present = torch.ones(1, present_count, dtype=torch.bool)
    chance = 0.0
    for drawn in range(2**present_count):
        bits = [bool(drawn >> m & 1) for m in range(present_count)]
        draws = torch.tensor([[0.0 if bit else 1.0 for bit in bits]])  # 0 < rate draws, 1 does not
        monkeypatch.setattr(hiding, "uniforms", lambda present, draws=draws: draws)
        weight = rate ** sum(bits) * (1 - rate) ** (present_count - sum(bits))
        chance += weight * float(not hiding.hide(present, rate, training=True)[0, 0])
    assert chance == pytest.approx(hiding.hidden_fraction(rate, present_count))


def test_hidden_fraction_by_hand() -> None:
    assert hiding.hidden_fraction(0.5, 3) == pytest.approx(0.375)  # not MMIN's 0.5 (see mmcore.hiding)
    assert hiding.hidden_fraction(0.9, 3) == pytest.approx(0.171)
    assert hiding.hidden_fraction(0.5, 1) == 0.0


def test_complete_by_scope() -> None:
    real, imputed = torch.ones(1, 3, 2), torch.zeros(1, 3, 2)
    present = torch.tensor([[True, True, False]])
    visible = torch.tensor([[False, True, False]])
    assert hiding.complete(real, imputed, present, visible, "imputer")[0, :, 0].tolist() == [1.0, 1.0, 0.0]
    assert hiding.complete(real, imputed, present, visible, "model")[0, :, 0].tolist() == [0.0, 1.0, 0.0]


def _imputer(name: str, **options: object) -> torch.nn.Module:
    from mmcore.plugins import get_registry

    specs = [ModalitySpec(n, 4) for n in ("a", "b", "c")]
    return get_registry().get("imputer", name).build({"specs": specs, "dim": 4}, {"hidden": [8], "blocks": 1, **options})


@pytest.mark.parametrize("name", ["redcore.vib", "baselines.mmin"])
def test_a_hidden_modality_stays_a_target(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # modality a is hidden in every row; b and c stay visible
    monkeypatch.setattr(hiding, "uniforms", lambda present: torch.tensor([[0.0, 1.0, 1.0]]).expand(present.shape))
    imputer = _imputer(name, hide_rate=0.5, hide_scope="model", detach_target=False).train()
    h = torch.randn(5, 3, 4, requires_grad=True)
    present = torch.ones(5, 3, dtype=torch.bool)
    torch.manual_seed(0)
    out = imputer(h, present)
    # the reconstruction of a still learns from a's real latent ...
    (grad,) = torch.autograd.grad(out.losses["recon"][0], h, retain_graph=True)
    assert grad[:, 0].abs().sum() > 0
    # ... while nothing downstream sees it under hide_scope: model
    (grad,) = torch.autograd.grad(out.z.sum(), h)
    assert grad[:, 0].abs().sum() == 0


@pytest.mark.parametrize("name", ["redcore.vib", "baselines.mmin"])
def test_scope_imputer_shows_the_real_latent(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hiding, "uniforms", lambda present: torch.tensor([[0.0, 1.0, 1.0]]).expand(present.shape))
    imputer = _imputer(name, hide_rate=0.5).train()
    h = torch.randn(5, 3, 4, requires_grad=True)
    out = imputer(h, torch.ones(5, 3, dtype=torch.bool))
    (grad,) = torch.autograd.grad(out.z[:, 0].sum(), h)
    assert grad[:, 0].abs().sum() > 0


def test_vib_without_hiding_draws_nothing() -> None:
    """hide_rate 0 (the default) consumes no random numbers, so earlier runs reproduce bit for bit."""
    imputer = _imputer("redcore.vib").train()
    h, present = torch.randn(4, 3, 4), torch.ones(4, 3, dtype=torch.bool)
    torch.manual_seed(3)
    imputer(h, present)
    after = torch.rand(1)
    torch.manual_seed(3)
    torch.randn(4, 3, 4)  # the reparameterisation's draw, the only one
    assert torch.equal(torch.rand(1), after)
