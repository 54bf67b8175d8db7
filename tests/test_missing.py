"""Missingness masks: exact marginals, reproducibility per sample id, and evaluation conditions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmcore.conditions import Condition, condition_masks, parse_conditions
from mmcore.errors import MMCoreError
from mmcore.missing import (
    STREAM_EVAL,
    STREAM_TRAIN,
    MissingSpec,
    hash_uniform,
    mask_hash,
    parse_spec,
    pattern_distribution,
    realised_rates,
    train_masks,
)

AVL = ["a", "v", "l"]
SIX = ["fou", "fac", "kar", "pix", "zer", "mor"]
IDS = torch.arange(10_000)
TOL = 0.015


def as_dict(spec: MissingSpec, modalities: list[str]) -> dict[str, float]:
    """The pattern distribution as {"110": p, ...} (one char per modality, 1 = present)."""
    patterns, probs = pattern_distribution(spec, modalities)
    return {"".join("1" if b else "0" for b in row): float(p) for row, p in zip(patterns.tolist(), probs)}


# ---------------------------------------------------------------- hashing


def _splitmix_reference(z: int) -> int:
    """Pure-Python splitmix64 with explicit masking, to check numpy's wrapping arithmetic."""
    mask = (1 << 64) - 1
    z = (z + 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


def test_hash_uniform_matches_a_pure_python_reference() -> None:
    ids = torch.tensor([0, 1, 123456789, -5])
    got = hash_uniform(42, ids, stream=7, epoch=3)
    mask = (1 << 64) - 1
    for i, value in zip(ids.tolist(), got.tolist()):
        h = _splitmix_reference(42)
        for part in (7, 3, i & mask):
            h = _splitmix_reference(h ^ part)
        assert value == (h >> 11) * 2.0**-53
    assert got.dtype == torch.float64


def test_hash_uniform_is_uniform_and_keyed_on_every_part() -> None:
    u = hash_uniform(0, IDS, STREAM_TRAIN)
    assert 0.0 <= float(u.min()) and float(u.max()) < 1.0
    assert abs(float(u.mean()) - 0.5) < 0.01
    assert abs(float((u < 0.25).double().mean()) - 0.25) < 0.015
    others = [hash_uniform(1, IDS, STREAM_TRAIN), hash_uniform(0, IDS, STREAM_EVAL)]
    others.append(hash_uniform(0, IDS, STREAM_TRAIN, 1))
    for other in others:
        assert not torch.equal(u, other)
        assert abs(float(torch.corrcoef(torch.stack([u, other]))[0, 1])) < 0.05


def test_hash_uniform_rejects_float_ids() -> None:
    with pytest.raises(MMCoreError, match="integer"):
        hash_uniform(0, torch.ones(3), STREAM_TRAIN)


# ---------------------------------------------------------------- the distribution, by hand


def test_two_modalities_quarter_rates_by_hand() -> None:
    # Patterns with >= 1 present: 10, 01, 11. P(a missing) = P(01) = 0.25 = P(10), so P(11) = 0.5.
    dist = as_dict(MissingSpec(rates={"a": 0.25, "v": 0.25}), ["a", "v"])
    assert dist == pytest.approx({"10": 0.25, "01": 0.25, "11": 0.5}, abs=1e-12)


def test_rates_on_the_feasibility_boundary_leave_exactly_min_present() -> None:
    # Σ r = M - k: every sample has exactly one modality.
    two = as_dict(MissingSpec(rates={"a": 0.5, "v": 0.5}), ["a", "v"])
    assert two == pytest.approx({"10": 0.5, "01": 0.5}, abs=1e-12)
    dist = as_dict(MissingSpec(rates={"a": 0.6, "v": 0.7, "l": 0.7}), AVL)
    assert dist == pytest.approx({"100": 0.4, "010": 0.3, "001": 0.3}, abs=1e-10)


def test_min_present_two_by_hand() -> None:
    # Allowed: 110, 101, 011, 111; P(l missing) = P(110) = 0.3 etc., the rest is 111.
    dist = as_dict(MissingSpec(rates={"a": 0.3, "v": 0.3, "l": 0.3}, min_present=2), AVL)
    assert dist == pytest.approx({"110": 0.3, "101": 0.3, "011": 0.3, "111": 0.1}, abs=1e-10)


def test_rate_one_and_rate_zero_pin_a_modality() -> None:
    dist = as_dict(MissingSpec(rates={"a": 1.0, "v": 0.5, "l": 0.5}), AVL)
    assert dist == pytest.approx({"010": 0.5, "001": 0.5}, abs=1e-12)
    assert as_dict(MissingSpec(), AVL) == {"111": 1.0}


def test_sample_rate_protocol_by_hand() -> None:
    # Complete with 1 - η = 0.7; the 6 proper non-empty patterns share η = 0.3 equally.
    dist = as_dict(MissingSpec(sample_rate=0.3), AVL)
    proper = {p: 0.05 for p in ("100", "010", "110", "001", "101", "011")}
    assert dist == pytest.approx({"111": 0.7, **proper}, abs=1e-12)


def test_calibrated_distribution_is_a_conditioned_bernoulli_with_exact_marginals() -> None:
    rates = (0.2, 0.5, 0.8)
    patterns, probs = pattern_distribution(MissingSpec(rates=dict(zip(AVL, rates))), AVL)
    assert patterns.shape == (7, 3) and bool(patterns.any(1).all())  # all 7 non-empty patterns
    assert float(probs.sum()) == pytest.approx(1.0, abs=1e-12)
    missing = 1.0 - (probs[:, None] * patterns.double()).sum(0)
    assert missing.tolist() == pytest.approx(list(rates), abs=1e-9)
    # Product form: log p(x) = c + θ·x exactly on the support.
    design = torch.cat([torch.ones(7, 1, dtype=torch.float64), patterns.double()], 1)
    coef = torch.linalg.lstsq(design, probs.log()[:, None]).solution
    assert float((design @ coef - probs.log()[:, None]).abs().max()) < 1e-8
    # ...and the calibrated p' differ from the naive 1 - r (conditioning alone would bias the rates).
    presence = torch.sigmoid(coef[1:, 0])
    assert not torch.allclose(presence, 1.0 - torch.tensor(rates, dtype=torch.float64), atol=1e-3)


def test_sixteen_modalities_are_supported() -> None:
    names = [f"m{i}" for i in range(16)]
    spec = MissingSpec(rates={n: 0.9 if i < 8 else 0.4 for i, n in enumerate(names)}, min_present=3)
    patterns, probs = pattern_distribution(spec, names)
    missing = 1.0 - (probs[:, None] * patterns.double()).sum(0)
    assert missing.tolist() == pytest.approx([0.9] * 8 + [0.4] * 8, abs=1e-9)
    assert int(patterns.sum(1).min()) == 3


# ---------------------------------------------------------------- realised rates on 10 000 samples


def test_imbalanced_rates_realised_with_min_present_one() -> None:
    mask = train_masks(MissingSpec(rates={"a": 0.2, "v": 0.5, "l": 0.8}), AVL, IDS, seed=0)
    assert mask.shape == (10_000, 3) and mask.dtype == torch.bool
    assert realised_rates(mask) == pytest.approx([0.2, 0.5, 0.8], abs=TOL)
    assert int(mask.sum(1).min()) == 1


def test_six_modalities_realised() -> None:
    rates = [0.1, 0.1, 0.5, 0.7, 0.3, 0.3]
    mask = train_masks(MissingSpec(rates=dict(zip(SIX, rates))), SIX, IDS, seed=3)
    assert realised_rates(mask) == pytest.approx(rates, abs=TOL)
    assert int(mask.sum(1).min()) >= 1


def test_min_present_is_honoured() -> None:
    spec = MissingSpec(rates={n: 0.3 for n in SIX}, min_present=4)
    mask = train_masks(spec, SIX, IDS, seed=1)
    assert int(mask.sum(1).min()) == 4
    assert realised_rates(mask) == pytest.approx([0.3] * 6, abs=TOL)
    boundary = train_masks(MissingSpec(rates={"a": 0.6, "v": 0.7, "l": 0.7}), AVL, IDS, seed=1)
    assert bool((boundary.sum(1) == 1).all())


def test_sample_rate_eta_realised() -> None:
    mask = train_masks(MissingSpec(sample_rate=0.4), SIX, IDS, seed=5)
    incomplete = ~mask.all(1)
    assert float(incomplete.double().mean()) == pytest.approx(0.4, abs=TOL)
    assert int(mask.sum(1).min()) >= 1
    # Each modality is missing in 31 of the 62 proper non-empty patterns: rate η / 2.
    assert realised_rates(mask) == pytest.approx([0.2] * 6, abs=TOL)


# ---------------------------------------------------------------- reproducibility and policy


def test_same_seed_and_ids_give_the_same_mask() -> None:
    spec = MissingSpec(rates={"a": 0.3, "v": 0.3, "l": 0.3})
    assert torch.equal(train_masks(spec, AVL, IDS, seed=9), train_masks(spec, AVL, IDS, seed=9))
    assert not torch.equal(train_masks(spec, AVL, IDS, seed=9), train_masks(spec, AVL, IDS, seed=10))


def test_an_ids_mask_does_not_depend_on_the_batch() -> None:
    spec = MissingSpec(rates={"a": 0.2, "v": 0.5, "l": 0.8})
    full = train_masks(spec, AVL, IDS, seed=2)
    order = torch.randperm(10_000, generator=torch.Generator().manual_seed(0))[:300]
    batch = train_masks(spec, AVL, IDS[order], seed=2)
    assert torch.equal(batch, full[order])
    single = train_masks(spec, AVL, IDS[order[:1]], seed=2)
    assert torch.equal(single[0], full[order[0]])


def test_fixed_policy_keeps_patterns_across_epochs_and_resample_redraws() -> None:
    rates = {"a": 0.2, "v": 0.5, "l": 0.8}
    fixed = MissingSpec(rates=rates)
    assert torch.equal(train_masks(fixed, AVL, IDS, 0, epoch=0), train_masks(fixed, AVL, IDS, 0, epoch=7))
    resample = MissingSpec(rates=rates, policy="resample")
    e0, e1 = train_masks(resample, AVL, IDS, 0, epoch=0), train_masks(resample, AVL, IDS, 0, epoch=1)
    changed = float((e0 != e1).any(1).double().mean())
    assert changed > 0.3  # most samples get a new pattern...
    assert realised_rates(e1) == pytest.approx([0.2, 0.5, 0.8], abs=TOL)  # ...at the same rates
    assert torch.equal(e1, train_masks(resample, AVL, IDS, 0, epoch=1))  # and epoch 1 is reproducible


# ---------------------------------------------------------------- bad specs


@pytest.mark.parametrize(
    ("kwargs", "modalities", "message"),
    [
        ({"rates": {"a": 0.6, "v": 0.7, "l": 0.8}}, AVL, r"\{a: 0.6, v: 0.7, l: 0.8\} are infeasible"),
        ({"rates": {"a": 0.3, "v": 0.3, "l": 0.5}, "min_present": 2}, AVL, "infeasible with min_present=2"),
        ({"rates": {"a": 1.0}, "min_present": 3}, AVL, "infeasible"),
        ({"rates": {"vidoe": 0.1}}, AVL + ["video"], "did you mean 'video'"),
        ({"rates": {"a": 0.1}, "min_present": 4}, AVL, "min_present=4 exceeds"),
        ({"sample_rate": 0.3}, ["a"], "no pattern is incomplete"),
        ({"rates": {"a": 0.1}}, [f"m{i}" for i in range(17)] + ["a"], "1 to 16 modalities"),
    ],
)
def test_infeasible_specs_are_rejected(kwargs: dict, modalities: list[str], message: str) -> None:
    with pytest.raises(MMCoreError, match=message):
        pattern_distribution(MissingSpec(**kwargs), modalities)


def test_the_spec_checks_its_cross_field_invariants() -> None:
    # each field's type and range is the recipe schema's check (the test below)
    with pytest.raises(MMCoreError, match="not both"):
        MissingSpec(rates={"a": 0.1}, sample_rate=0.2)
    with pytest.raises(MMCoreError, match="needs depends_on"):
        MissingSpec(rates={"a": 0.1}, mechanism="mar")
    with pytest.raises(MMCoreError, match="mcar depends on nothing"):
        MissingSpec(rates={"a": 0.1}, depends_on="a")


@pytest.mark.parametrize(
    ("train", "problem"),
    [
        ({"rates": {"m0": 1.5}}, "missing.train.rates.m0: expected float in [0, 1], got float 1.5"),
        ({"sample_rate": 2.0}, "missing.train.sample_rate: expected float in [0, 1], got float 2.0"),
        ({"policy": "sometimes"}, "missing.train.policy: expected 'fixed' | 'resample', got str 'sometimes'"),
        ({"min_present": -1}, "missing.train.min_present: expected int >= 0, got int -1"),
        ({"strength": float("nan")}, "missing.train.strength: expected a finite float, got float nan"),
        ({"mechanism": "nmar"}, "missing.train.mechanism: expected 'mcar' | 'mar' | 'mnar', got str 'nmar'; did you mean 'mar'?"),
    ],
)
def test_invalid_spec_values_are_rejected_by_the_recipe_schema(tmp_path, train: dict, problem: str) -> None:
    from mmcore.errors import RecipeError
    from mmcore.recipe import validate_recipe

    tree = {"name": "x", "output": str(tmp_path), "dataset": {"type": "mmcore.synthetic"}, "missing": {"train": train}}
    with pytest.raises(RecipeError) as error:
        validate_recipe(tree)
    assert error.value.problems == [f"recipe: {problem}"]


def test_parse_spec_reads_a_recipe_node_and_names_unknown_keys() -> None:
    spec = parse_spec({"rates": {"a": 0.1}, "policy": "resample", "min_present": 2})
    assert spec == MissingSpec(rates={"a": 0.1}, policy="resample", min_present=2)
    with pytest.raises(MMCoreError, match=r"missing.train: unknown key 'rate'; did you mean 'rates'\?"):
        parse_spec({"rate": {"a": 0.1}})


# ---------------------------------------------------------------- evaluation conditions


def test_all_gives_every_non_empty_subset_by_size_then_order() -> None:
    names = [c.name for c in parse_conditions("all", ["m0", "m1", "m2"])]
    assert names == ["m0", "m1", "m2", "m0+m1", "m0+m2", "m1+m2", "m0+m1+m2"]
    conditions = parse_conditions("all", SIX)
    assert len(conditions) == 2**6 - 1 and len({c.subset for c in conditions}) == 63
    assert conditions[-1].subset == (True,) * 6 and all(c.random is None for c in conditions)


def test_full_and_explicit_subsets() -> None:
    (full,) = parse_conditions("full", AVL)
    assert full.name == "a+v+l" and full.subset == (True, True, True)
    conditions = parse_conditions(["a+v", ["l", "a"], " v "], AVL)
    assert [c.name for c in conditions] == ["a+v", "a+l", "v"]
    assert [c.subset for c in conditions] == [(True, True, False), (True, False, True), (False, True, False)]
    mask = condition_masks(conditions[1], torch.tensor([4, 2, 9]), 3)
    assert mask.tolist() == [[True, False, True]] * 3


def test_short_aliases_only_for_one_letter_names() -> None:
    assert [c.name for c in parse_conditions(["av", "l"], AVL)] == ["a+v", "l"]
    with pytest.raises(MMCoreError, match="unknown modality 'av'"):
        parse_conditions(["av"], ["a", "v", "lang"])


def test_random_condition_has_its_own_seed() -> None:
    value = [{"random": {"rates": {"a": 0.5, "v": 0.2}, "min_present": 1}, "seed": 7, "name": "rnd"}]
    (cond,) = parse_conditions(value, AVL)
    assert (cond.name, cond.seed, cond.subset) == ("rnd", 7, None)
    assert cond.random == MissingSpec(rates={"a": 0.5, "v": 0.2})
    mask = condition_masks(cond, IDS, 3)
    assert realised_rates(mask) == pytest.approx([0.5, 0.2, 0.0], abs=TOL)
    assert torch.equal(mask, condition_masks(cond, IDS, 3))
    other_seed = Condition("rnd", None, cond.random, seed=8, modalities=cond.modalities)
    assert not torch.equal(mask, condition_masks(other_seed, IDS, 3))
    # Not the training draw even with the same seed: evaluation has its own hash stream.
    assert not torch.equal(mask, train_masks(cond.random, AVL, IDS, seed=7))
    order = torch.tensor([9_999, 3, 500])
    assert torch.equal(condition_masks(cond, order, 3), mask[order])


def test_random_condition_with_sample_rate_and_default_name() -> None:
    (cond,) = parse_conditions({"random": {"sample_rate": 0.5}}, AVL)
    assert cond.name == "random" and cond.seed == 0
    assert float((~condition_masks(cond, IDS, 3).all(1)).double().mean()) == pytest.approx(0.5, abs=TOL)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (["a+vidoe"], r"conditions\[0\]: unknown modality 'vidoe'; did you mean 'video'\? available: a, video"),
        ([["audio"]], "unknown modality 'audio'"),
        (["a", "a"], "condition name 'a' appears twice"),
        (["a+a"], "listed twice"),
        ([{"random": {"rates": {"a": 0.5}}}, {"random": {"rates": {"a": 0.2}}}], "'random' appears twice"),
        ([{"random": {"rates": {"vid": 0.5}}}], r"random: missing rate for unknown modality 'vid'; did you mean"),
        ([{"random": {"rates": {"a": 0.9, "video": 0.9}}}], "infeasible"),
        ([{"random": {"rates": {"a": 0.1}}, "sede": 1}], "unknown key 'sede'; did you mean 'seed'"),
        ([{"random": {"rates": {"a": 0.1}, "policy": "resample"}}], "unknown key 'policy'"),
        ([{"seed": 1}], "needs 'random'"),
        ([], "non-empty list"),
        ([3], "expected a subset"),
    ],
)
def test_bad_conditions_are_reported(value: object, message: str) -> None:
    with pytest.raises(MMCoreError, match=message):
        parse_conditions(value, ["a", "video"])


# ---------------------------------------------------------------- reporting helpers


def test_realised_rates_and_mask_hash() -> None:
    mask = torch.tensor([[1, 0], [1, 1], [0, 1], [1, 0]], dtype=torch.bool)
    assert realised_rates(mask) == [0.25, 0.5]
    h = mask_hash(mask)
    assert len(h) == 64 and h == mask_hash(mask.clone())
    flipped = mask.clone()
    flipped[3, 1] = True
    assert mask_hash(flipped) != h
    assert mask_hash(mask.reshape(2, 4)) != h  # same bytes, different shape
    with pytest.raises(MMCoreError, match="bool tensor"):
        mask_hash(mask.int())


def test_masks_follow_the_ids_device_and_pattern_order_is_stable() -> None:
    spec = MissingSpec(rates={"a": 0.2, "v": 0.5, "l": 0.8})
    patterns, _ = pattern_distribution(spec, AVL)
    codes = (patterns.long() * torch.tensor([1, 2, 4])).sum(1)
    assert codes.tolist() == sorted(codes.tolist())  # enumeration order: bit j = modality j
    assert train_masks(spec, AVL, IDS[:5], seed=0).device == IDS.device
    head = train_masks(spec, AVL, IDS[:5], seed=0)
    np.testing.assert_array_equal(head.numpy(), train_masks(spec, AVL, IDS, seed=0)[:5].numpy())
