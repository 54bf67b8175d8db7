"""The bundled components alone on the degenerate inputs of ``tests/test_degenerate_batches.py``:
imputers on one-row, absent-column and empty masks, balancers on the NaN the engine pools for a
modality no rank saw, and each balancer's documented formula worked by hand on its degenerate
case (a modality never observed, rows with no modality, a loss past exp's range, a class
without training rows)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mmcore.components import EpochView, StepView
from mmcore.errors import MMCoreError
from mmcore.registry import Component
from mmcore.testing import option_sets
from mmcore.types import ModalitySpec, StepStats

from plugin_helpers import bundled


# ------------------------------------------------------------------- imputers, without training

SPECS = [ModalitySpec(f"m{i}", 4) for i in range(3)]
MASKS = {
    "one_row": [[True, False, True]],
    "column_absent": [[True, False, True], [True, False, False], [False, False, True]],
    "rows_with_none": [[False, False, False], [True, True, False], [False, False, False]],
    "all_absent": [[False, False, False]] * 4,
}


@pytest.mark.parametrize("component", bundled("imputer"), ids=lambda c: c.name)
@pytest.mark.parametrize("mask", list(MASKS))
def test_imputer_output_is_finite_and_absent_columns_cost_exactly_zero(component: Component, mask: str) -> None:
    """``ImputerOutput``'s rule: a modality with no sample to compute a term on contributes
    exactly 0 (never NaN); and z and every gradient stay finite, in training and evaluation."""
    present = torch.tensor(MASKS[mask])
    for options in option_sets(component):
        for training in (True, False):
            torch.manual_seed(0)
            module = component.build({"specs": SPECS, "dim": 8}, options).train(training)
            h = (torch.randn(len(present), 3, 8) * present.unsqueeze(-1)).requires_grad_(True)
            out = module(h, present)
            where = f"{component.name} {options} on {mask} ({'train' if training else 'eval'})"
            assert torch.isfinite(out.z).all(), where
            for group, terms in out.losses.items():
                assert torch.isfinite(terms).all(), f"{where}: {group} = {terms.tolist()}"
                absent = ~present.any(0)
                assert (terms[absent] == 0).all(), f"{where}: {group} of an absent column = {terms.tolist()}"
            (out.z.sum() + sum(t.sum() for t in out.losses.values())).backward()
            grads = [h.grad] + [p.grad for p in module.parameters() if p.grad is not None]
            assert all(torch.isfinite(g).all() for g in grads), f"{where}: non-finite gradient"


@pytest.mark.parametrize("component", bundled("balancer"), ids=lambda c: c.name)
def test_balancer_weights_stay_finite_on_the_pooled_nan_of_an_absent_modality(component: Component) -> None:
    """Under data parallelism the engine pools a term no rank could compute into NaN
    (``mmcore.engine.losses.pool_stats``), with a present count of 0; a batch of one row has
    counts of 0 or 1. Weights must stay finite and non-negative through such steps."""
    names = [s.name for s in SPECS]
    balancer = component.build({"modalities": names, "missing_rates": {"m0": 0.0, "m1": 0.5, "m2": 0.0}}, {})
    for step in range(7):
        terms = torch.tensor([0.5 + step, math.nan, 0.2])
        balancer.observe(StepStats(step, {g: terms.clone() for g in (balancer.target, "recon", "kl", "unimodal")},
                                   torch.tensor([1, 0, 1]), torch.tensor([0.4, 0.3, 0.5]), batch_size=1))
        w = balancer.weights()
        assert torch.isfinite(w).all() and (w >= 0).all(), f"{component.name} step {step}: weights {w.tolist()}"
    logged = {k: v for k, v in balancer.log_values().items() if not torch.isfinite(v).all()}
    assert not logged, f"{component.name}: non-finite logged values {logged}"


# ------------------------------------------------------------- the formulas, by hand, degenerate


def _stats(step: int, losses: list[float], counts: list[int]) -> StepStats:
    return StepStats(step, {"recon": torch.tensor(losses)}, torch.tensor(counts))


def test_relative_advantage_never_observed_modality_by_hand() -> None:
    """L̄ of a modality with no present row stays 0, as the docstring's skip rule says: it reads
    as the best reconstructed (ra = 1), so its β shrinks, and a batch with nothing present
    changes no L̄. η = 0.1·1.5 at step 0; β ← clamp-normalise(1 − η·ra) every 3 steps."""
    from mmcore_redcore.balancer import RelativeAdvantage

    b = RelativeAdvantage(["a", "b", "c"])
    b.observe(_stats(0, [1.0, 0.0, 3.0], [4, 0, 4]))
    ema = [0.7, 0.0, 2.1]
    mean = sum(ema) / 3
    v = [1 - 0.15 * (mean - e) / mean for e in ema]  # ra = (0.25, 1, -1.25)
    norm = math.sqrt(sum(x * x for x in v))
    assert torch.allclose(b.ema, torch.tensor(ema)) and torch.allclose(b.beta, torch.tensor([x / norm for x in v]))
    for step in (1, 2, 3):  # nothing present; step 3 updates β from the unchanged L̄
        b.observe(_stats(step, [0.0, 0.0, 0.0], [0, 0, 0]))
    assert torch.allclose(b.ema, torch.tensor(ema))
    v2 = [x / norm - 0.15 * (mean - e) / mean for x, e in zip(v, ema)]
    norm2 = math.sqrt(sum(x * x for x in v2))
    assert torch.allclose(b.beta, torch.tensor([x / norm2 for x in v2]), atol=1e-6)
    b.observe(_stats(4, [math.nan, 1.0, 1.0], [3, 3, 3]))  # a non-finite term is skipped like an absent one
    assert math.isclose(float(b.ema[0]), 0.7, rel_tol=1e-6) and math.isclose(float(b.ema[1]), 0.7, rel_tol=1e-6)


def test_relative_advantage_with_one_modality_keeps_beta_one() -> None:
    from mmcore_redcore.balancer import RelativeAdvantage

    b = RelativeAdvantage(["only"], interval=1)
    for step in range(4):
        b.observe(_stats(step, [0.3 * (step + 1)], [1]))
    assert b.beta.tolist() == [1.0]  # ra = 0 for a single modality: (1 − 0)/‖1‖


def test_inverse_rate_by_hand_and_rate_one_reads_as_one() -> None:
    from mmcore_baselines.inverse_rate import InverseRate

    w = InverseRate(["a", "b", "c"], {"a": 0.9, "b": 0.3, "c": 0.3}).weights()
    inv = [10.0, 1 / 0.7, 1 / 0.7]
    assert torch.allclose(w, torch.tensor([3 * x / sum(inv) for x in inv]))  # (2.333, 0.333, 0.333)
    with pytest.raises(MMCoreError, match=r"modality 'b' has missing rate 1.0; it must be in \[0, 1\)"):
        InverseRate(["a", "b"], {"a": 0.0, "b": 1.0000000000000002})  # the realised marginal of rate 1
    assert InverseRate(["only"], {"only": 0.0}).weights().tolist() == [1.0]


def test_pattern_dro_rows_with_no_modality_are_no_group_by_hand() -> None:
    """q over patterns (bit mask), the empty one (0) staying at 0: rows with nothing present get
    no weight in the robust term, so at mix 1 their gradient is exactly zero (the docstring)."""
    from mmcore_baselines.pattern_dro import PatternDRO

    b = PatternDRO(["a", "b"], eta=0.5)
    rows = torch.tensor([2.0, 1.0, 0.5], requires_grad=True)
    present = torch.tensor([[False, False], [True, False], [True, True]])  # patterns 0, 1, 3
    view = StepView(0, torch.zeros(3, 2), None, torch.zeros(3, 2, 1), torch.zeros(3, 2, 1), torch.zeros(3, dtype=torch.long),
                    present, lambda m: m, task_rows=rows)
    extra = b.extra_loss(view)
    q = [0.0, math.exp(0.5), 1.0, math.exp(0.25)]  # (1/3)·exp(η·L_g), L_2 = 0: pattern 2 not in the batch
    q = [x / sum(q) for x in q]
    assert torch.allclose(b.q, torch.tensor(q))
    assert math.isclose(float(extra.detach()), q[1] * 1.0 + q[3] * 0.5 - 3.5 / 3, rel_tol=1e-6)
    (rows.mean() + extra).backward()
    assert rows.grad.tolist()[0] == 0.0 and rows.grad[1:].tolist() == pytest.approx([q[1], q[3]])
    single = PatternDRO(["only"])
    assert single.q.tolist() == [0.0, 1.0]


def test_pattern_dro_survives_a_loss_past_exps_range_by_hand() -> None:
    """η·L = 0.01·10^4 = 100 > 88.7: exp overflowed, q became NaN and the run stopped at step 0
    ("extra_loss(view) returned nan"). The shifted update is the same after normalisation:
    q ∝ (0, e^100, 1, e^0.01)/3, so q_1 = 1 and the rest e^-100 (robust term: 10^4)."""
    from mmcore_baselines.pattern_dro import PatternDRO

    b = PatternDRO(["a", "b"])
    rows = torch.tensor([1e4, 1.0])
    present = torch.tensor([[True, False], [True, True]])  # patterns 1 and 3
    view = StepView(0, torch.zeros(2, 1), None, torch.zeros(2, 2, 1), torch.zeros(2, 2, 1), torch.zeros(2), present,
                    lambda m: m, task_rows=rows)
    extra = b.extra_loss(view)
    assert torch.isfinite(b.q).all() and float(b.q[1]) == 1.0 and float(b.q[3]) == pytest.approx(math.exp(-99.99), rel=1e-3)
    assert float(extra) == pytest.approx(1e4 - (1e4 + 1.0) / 2)


def test_ogm_ge_coefficients_in_degenerate_cases() -> None:
    from mmcore_baselines.ogm_ge import coefficients

    assert [t.tolist() for t in coefficients(torch.tensor([0.7]), 0.1)] == [[1.0], [1.0]]  # one modality: k = 1
    ratio, k = coefficients(torch.tensor([0.5, 0.0, 0.0]), 0.1)  # the others' confidence is 0
    assert torch.isfinite(ratio).all() and k.tolist() == [0.0, 1.0, 1.0]  # 1 − tanh(∞) = 0, the bottom of [0, 1]
    ratio, k = coefficients(torch.zeros(2), 0.1)
    assert ratio.tolist() == [0.0, 0.0] and k.tolist() == [1.0, 1.0]


def _epoch(epoch: int, z: torch.Tensor, y: torch.Tensor) -> EpochView:
    return EpochView(epoch, epoch, {}, lambda: (z, y, torch.ones(z.shape[:2], dtype=torch.bool)))


def test_pmr_leaves_a_class_without_training_rows_out_of_the_softmax() -> None:
    """Class 1 has no training row, so no prototype. As a zero vector it was a phantom class at
    the origin, nearest to a's feature: a's score fell to 0.508 and coef_a was 0.97. Without it
    both modalities score 1/(1 + e^-2) (distances 0.8 and 2.8 for a, 0 and 2 for b): coef 0, loss 0."""
    from mmcore_baselines.pmr import PMR

    b = PMR(["a", "b"], alpha=1.0)
    z = torch.tensor([[[1.0, 0.0], [1.0, 0.0]], [[3.0, 0.0], [3.0, 0.0]]])  # one row of class 0, one of class 2
    b.end_epoch(_epoch(1, z, torch.tensor([0, 2])))
    query = torch.tensor([[[0.2, 0.0], [1.0, 0.0]]])
    view = StepView(1, torch.zeros(1, 3), None, query, query, torch.tensor([0]), torch.ones(1, 2, dtype=torch.bool), lambda m: m)
    loss = b.extra_loss(view)
    assert b.coef.tolist() == [0.0, 0.0] and loss is not None and float(loss) == 0.0
    # a later epoch sees class 1: its first prototype is taken as is; class 0 blends with momentum 0.5
    z2 = torch.tensor([[[3.0, 0.0], [3.0, 0.0]], [[2.0, 0.0], [2.0, 0.0]]])
    b.end_epoch(_epoch(2, z2, torch.tensor([0, 1])))
    assert b.proto[0, :, 0].tolist() == [2.0, 2.0, 3.0]  # (1+3)/2; 2 as is (not (0+2)/2); class 2 kept
    fresh = PMR(["a", "b"], alpha=1.0)
    fresh.load_state_dict(json.loads(json.dumps(b.state_dict())))
    assert torch.equal(fresh.seen, b.seen) and torch.equal(fresh.proto, b.proto)


def test_pmr_rows_of_a_class_without_prototype_do_not_count() -> None:
    from mmcore_baselines.pmr import PMR

    b = PMR(["a", "b"], alpha=1.0)
    b.end_epoch(_epoch(1, torch.tensor([[[0.0], [0.0]], [[2.0], [2.0]]]), torch.tensor([0, 2])))
    z = torch.tensor([[[0.0], [5.0]], [[1.0], [1.0]]])  # row 0: class 0; row 1: class 1, no prototype
    view = StepView(1, torch.zeros(2, 3), None, z, z, torch.tensor([0, 1]), torch.ones(2, 2, dtype=torch.bool), lambda m: m)
    loss = b.extra_loss(view)
    pa, pb = 1 / (1 + math.exp(-2)), 1 / (1 + math.exp(2))  # row 0 alone: a at 0 (d 0, 2), b at 5 (d 5, 3)
    assert loss is not None and torch.isfinite(loss)
    assert b.coef.tolist() == pytest.approx([0.0, min(pa / pb - 1, 1.0)])
    assert float(loss) == pytest.approx(-math.log(pb))  # coef_b = 1 (clipped) times b's CE on row 0


def test_agm_modality_absent_from_the_batch_keeps_k_one_and_its_running_score() -> None:
    from mmcore_baselines.agm import AGM

    b = AGM(["a", "b"])
    table = {(True, False): torch.tensor([2.0, 0.0]), (False, True): torch.tensor([0.5, 0.0]),
             (True, True): torch.tensor([3.0, 0.0]), (False, False): torch.tensor([0.0, 0.0])}
    probe = lambda mask: torch.stack([table[tuple(row.tolist())] for row in mask])  # noqa: E731
    present = torch.tensor([[True, False], [True, False]])
    b.extra_loss(StepView(0, torch.zeros(2, 2), None, torch.zeros(2, 2, 1), torch.zeros(2, 2, 1),
                          torch.tensor([0, 1]), present, probe))
    # o_a = ½(f(a) − 0) + ½(f(ab) − f(b)) with b absent in every row: f(b) = f(∅-row) = 0, f(ab) = f(a)
    o_a = torch.tensor([2.0, 0.0])
    logp = o_a.log_softmax(-1)
    s_a = float(-(logp[0] + logp[1]) / 2)
    ratio_a = math.exp(2 * (s_a - s_a / 2))  # s = (s_a, ŝ_b = 0)
    assert b.coef.tolist() == pytest.approx([math.exp(0.1 * (1.0 - ratio_a)), 1.0])
    assert b.running.tolist() == pytest.approx([s_a, 0.0])


def test_balm_and_gblending_with_no_change_give_equal_weights() -> None:
    """BALM: d = 0 for every modality (the KL did not move) gives coef (0 + 1e-8 − 0)/(0 + 1e-8) = 1.
    G-Blending: identical losses at two refreshes give G = 0 everywhere: the uniform fallback, w = 1."""
    from mmcore_baselines.balm import balm_coefficients
    from mmcore_baselines.gblending import GBlending

    assert balm_coefficients(torch.tensor([0.3, 0.2]), torch.tensor([0.3, 0.2])).tolist() == [1.0, 1.0]
    # changes that cancel (d = ±0.5) leave only the 1e-8: ∓0.5/1e-8, finite but far outside [0, 1],
    # as the docstring now says (the reference's formula, kept unclipped)
    assert balm_coefficients(torch.tensor([1.0, 1.0]), torch.tensor([0.5, 1.5])).tolist() == [-5e7, 5e7]
    assert balm_coefficients(torch.tensor([1.0, 1.0]), torch.tensor([0.5, 0.9])).tolist() == pytest.approx([1 / 6, 5 / 6])
    g = GBlending(["a", "b"])
    losses = {"task": torch.tensor(0.7), "unimodal": torch.tensor([0.9, 1.1])}
    for epoch in (1, 2):
        g.end_epoch(EpochView(epoch, epoch, {}, lambda: (torch.zeros(0), torch.zeros(0), torch.zeros(0)), lambda split: losses))
    assert g.weights().tolist() == [1.0, 1.0]


def test_mmpareto_and_inforeg_on_a_modality_that_never_trains() -> None:
    """A never-observed modality's encoder gets zero gradients: MMPareto's min-norm branch must
    keep them zero (k = 0.999 by the mu >= mm rule) and InfoReg's rate is 0 for a zero trace."""
    from mmcore_baselines.inforeg import acquisition_rate, regulation_coefficients
    from mmcore_baselines.mmpareto import pareto_weights

    cos, k = pareto_weights(torch.zeros(5), torch.zeros(5))
    assert float(cos) == 0.0 and float(k) == pytest.approx(0.999)
    assert acquisition_rate(torch.zeros(2, 3), window=10).tolist() == [0.0, 0.0, 0.0]
    gap, beta = regulation_coefficients(torch.tensor([5.0]), torch.tensor([True]), 0.95)
    assert gap.tolist() == [0.0] and beta.tolist() == [0.0]  # one modality: nothing to compare
