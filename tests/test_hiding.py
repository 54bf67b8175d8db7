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


# hide_rule: subsets (MMIN's own draw). Row draws: column 0 decides (< rate hides), column 1 picks
# subset j = 1 + floor(u · (2^k − 2)); bit i of j shows the row's i-th present modality.
ROW_DRAWS = torch.tensor([[0.1, 0.0], [0.1, 0.99], [0.1, 0.5], [0.9, 0.0]])
ROW_PRESENT = torch.tensor([[1, 1, 1], [1, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=torch.bool)


def test_subsets_by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(hiding, "row_uniforms", lambda present: ROW_DRAWS)
    visible = hiding.hide(ROW_PRESENT, 0.5, training=True, rule="subsets")
    assert visible.tolist() == [
        [True, False, False],  # j = 1 = 0b001: the first present modality only
        [False, True, True],  # j = 1 + floor(0.99 · 6) = 6 = 0b110
        [False, False, True],  # k = 2: j = 1 + floor(0.5 · 2) = 2 = 0b10, the second present one (column 2)
        [True, True, True],  # 0.9 ≥ 0.5: the row is not hidden
    ]
    assert torch.equal(hiding.hide(ROW_PRESENT, 0.5, training=False, rule="subsets"), ROW_PRESENT)
    assert torch.equal(hiding.hide(ROW_PRESENT, 0.0, training=True, rule="subsets"), ROW_PRESENT)


def _subsets_patterns(rate: float, present: torch.Tensor, monkeypatch: pytest.MonkeyPatch) -> dict[tuple[bool, ...], float]:
    """Every outcome of one row under ``subsets``, with its probability, by enumerating the draws:
    hidden (probability rate) with each of the 2^k − 2 picks (a draw in the middle of its cell), or not."""
    k = int(present.sum())
    picks = max(2**k - 2, 1)
    outcomes: dict[tuple[bool, ...], float] = {}
    cases = [(0.0, (j + 0.5) / picks, rate / picks) for j in range(picks)] + [(1.0, 0.0, 1.0 - rate)] * (rate < 1)
    for decide, pick, weight in cases:
        draws = torch.tensor([[decide, pick]])
        monkeypatch.setattr(hiding, "row_uniforms", lambda present, draws=draws: draws)
        pattern = tuple(hiding.hide(present, rate, training=True, rule="subsets")[0].tolist())
        outcomes[pattern] = outcomes.get(pattern, 0.0) + weight
    return outcomes


@pytest.mark.parametrize("rate", [0.25, 0.5, 1.0])
@pytest.mark.parametrize("row", [[1, 0, 0], [1, 0, 1], [1, 1, 1], [1, 1, 0, 1]])
def test_subsets_fraction_is_what_hide_does(rate: float, row: list[int], monkeypatch: pytest.MonkeyPatch) -> None:
    present = torch.tensor([row], dtype=torch.bool)
    outcomes = _subsets_patterns(rate, present, monkeypatch)
    k = sum(row)
    assert sum(outcomes.values()) == pytest.approx(1.0)
    for pattern, chance in outcomes.items():
        assert any(pattern) and all(p <= bool(r) for p, r in zip(pattern, row))  # never empty, never absent shown
        if k >= 2 and pattern != tuple(map(bool, row)):
            assert chance == pytest.approx(rate / (2**k - 2))  # every proper non-empty subset equally likely
    assert len(outcomes) == (2**k - 2 + (rate < 1) if k >= 2 else 1)
    for m in (i for i, r in enumerate(row) if r):
        hidden = sum(c for p, c in outcomes.items() if not p[m])
        assert hidden == pytest.approx(hiding.hidden_fraction(rate, k, rule="subsets"))


def test_subsets_at_rate_one_is_mmins_six_patterns(monkeypatch: pytest.MonkeyPatch) -> None:
    outcomes = _subsets_patterns(1.0, torch.ones(1, 3, dtype=torch.bool), monkeypatch)
    six = {p for p in ((a, b, c) for a in (False, True) for b in (False, True) for c in (False, True)) if 0 < sum(p) < 3}
    assert set(outcomes) == six and all(c == pytest.approx(1 / 6) for c in outcomes.values())


def test_hidden_fraction_subsets_by_hand() -> None:
    assert hiding.hidden_fraction(0.5, 3, rule="subsets") == 0.25
    assert hiding.hidden_fraction(1.0, 2, rule="subsets") == 0.5  # MMIN: each of three hidden half the time
    assert hiding.hidden_fraction(1.0, 1, rule="subsets") == 0.0
    assert hiding.hidden_fraction(0.5, 3) == hiding.hidden_fraction(0.5, 3, rule="independent")


def test_subsets_empirical_patterns() -> None:
    """200k rows from the real RNG: each pattern's count within 5 SD of its expected count."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(11)
    n = 200_000
    rows = torch.tensor([[1, 1, 1], [1, 0, 1]], dtype=torch.bool).repeat(n // 2, 1)
    visible = hiding.hide(rows, 0.6, training=True, rule="subsets")
    torch.random.set_rng_state(generator_state)
    for row, count in (([1, 1, 1], n // 2), ([1, 0, 1], n // 2)):
        mask = (rows == torch.tensor(row, dtype=torch.bool)).all(1)
        patterns = visible[mask]
        k = sum(row)
        expected = {tuple(map(bool, row)): 1 - 0.6}
        for j in range(1, 2**k - 1):
            shown = iter(bool(j >> i & 1) for i in range(k))
            expected[tuple(next(shown) if r else False for r in row)] = 0.6 / (2**k - 2)
        for pattern, p in expected.items():
            seen = int((patterns == torch.tensor(pattern)).all(1).sum())
            sd = (count * p * (1 - p)) ** 0.5
            assert abs(seen - count * p) < 5 * sd, (row, pattern, seen, count * p)
        assert len(expected) == len({tuple(v) for v in patterns.tolist()})  # no other pattern occurs
    hidden = (rows & ~visible).sum(0).double() / rows.sum(0)
    assert torch.allclose(hidden, torch.full((3,), 0.3, dtype=torch.float64), atol=5 * (0.3 * 0.7 / (n / 2)) ** 0.5)


@pytest.mark.parametrize("rule", ["independent", "subsets"])
def test_draws_come_from_the_global_rng(rule: str) -> None:
    """Each rule draws exactly this from the global torch RNG (the checkpointed state): ``independent``
    one uniform per (row, modality), as every earlier run; ``subsets`` two per row."""
    present = torch.tensor([[1, 1, 1], [1, 0, 1], [0, 1, 1], [1, 1, 0], [1, 1, 1]], dtype=torch.bool)
    torch.manual_seed(5)
    visible = hiding.hide(present, 0.5, training=True, rule=rule)  # type: ignore[arg-type]
    after = torch.rand(1)
    torch.manual_seed(5)
    draws = hiding.uniforms(present) if rule == "independent" else hiding.row_uniforms(present)
    assert draws.shape == ((5, 3) if rule == "independent" else (5, 2))
    assert torch.equal(torch.rand(1), after)
    torch.manual_seed(5)
    assert torch.equal(hiding.hide(present, 0.5, training=True, rule=rule), visible)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["redcore.vib", "baselines.mmin"])
def test_imputers_take_the_rule(name: str) -> None:
    from mmcore.errors import MMCoreError

    assert _imputer(name, hide_rate=1.0, hide_rule="subsets").hide_rule == "subsets"
    assert _imputer(name, hide_rate=0.5).hide_rule == "independent"  # the default: earlier runs' rule
    refused = rf"^{name}: hide_rate: expected float in \[0, 1\) with hide_rule independent, got float 1.0 \("
    with pytest.raises(MMCoreError, match=refused):
        _imputer(name, hide_rate=1.0)
    with pytest.raises(MMCoreError, match=r"\): hide_rule: expected 'independent' \| 'subsets', got str 'mmin'$"):
        _imputer(name, hide_rule="mmin")


@pytest.mark.parametrize("name", ["redcore.vib", "baselines.mmin"])
def test_imputers_hide_with_the_rule(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under subsets the imputer reads only the picked subset: here a alone, so b and c are hidden."""
    monkeypatch.setattr(hiding, "row_uniforms", lambda present: torch.tensor([[0.0, 0.0]]).expand(present.shape[0], 2))
    monkeypatch.setattr(hiding, "uniforms", lambda present: pytest.fail("subsets must not use the per-modality draws"))
    imputer = _imputer(name, hide_rate=1.0, hide_rule="subsets", hide_scope="model").train()
    h = torch.randn(5, 3, 4, requires_grad=True)
    out = imputer(h, torch.ones(5, 3, dtype=torch.bool))
    (grad,) = torch.autograd.grad(out.z.sum(), h)
    assert grad[:, 0].abs().sum() > 0 and grad[:, 1:].abs().sum() == 0


@pytest.mark.parametrize("rule", ["independent", "subsets"])
def test_hiding_never_reads_values_on_the_host(rule: str) -> None:
    """On the meta device a tensor has no values, so ``.item()``, ``nonzero`` or boolean indexing
    (a host sync on a GPU) would raise: hiding that runs there stays on the device."""
    for failing in (lambda t: t.sum().item(), lambda t: t.nonzero()):  # the guard itself still guards
        with pytest.raises((RuntimeError, NotImplementedError)):
            failing(torch.ones(3, device="meta"))
    present = torch.ones(4, 3, dtype=torch.bool, device="meta")
    visible = hiding.hide(present, 0.5, training=True, rule=rule)  # type: ignore[arg-type]
    assert (visible.device.type, visible.shape, visible.dtype) == ("meta", (4, 3), torch.bool)
