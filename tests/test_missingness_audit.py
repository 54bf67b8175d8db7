"""Audit of the missingness protocols on 20,000 ids: the masks a recipe asks for are the masks drawn.

Rates and pattern frequencies are checked against the requested ones within sampling error (4.5
binomial standard deviations per modality; a chi-square over the patterns below its 1e-4 upper
quantile), every row keeps ``min_present`` modalities, rates 0 and 1 are exact, and a mask depends
on (seed, id, spec) only: not on row order, batch size or how the ids are shared among workers or
processes. Evaluation masks are the same for every training seed and method, so that arms are
compared on the same masks (paired).
"""

from __future__ import annotations

import math
import re

import pytest
import torch

from mmcore.conditions import condition_masks, parse_conditions
from mmcore.engine.runtime import Runtime
from mmcore.engine.session import build_session
from mmcore.errors import MMCoreError
from mmcore.frames import STREAM_FRAMES_TRAIN, keep_frames
from mmcore.missing import MissingSpec, pattern_distribution, train_masks

N = 20_000
IDS = torch.arange(N) * 7 + 3  # not 0..N-1: ids are labels, not positions
AVL = ["a", "v", "l"]
# Upper 1e-4 quantiles of chi-square by degrees of freedom (scipy.stats.chi2.isf(1e-4, df)).
CHI2_1E4 = {1: 15.137, 2: 18.421, 3: 21.108, 4: 23.513, 5: 25.745, 6: 27.856, 7: 29.878}

SPECS = {
    "imbalanced": MissingSpec(rates={"a": 0.2, "v": 0.5, "l": 0.8}),
    "shared_half": MissingSpec(rates={"a": 0.5, "v": 0.5, "l": 0.5}),
    "independent": MissingSpec(rates={"a": 0.5, "v": 0.5, "l": 0.5}, min_present=0),
    "two_kept": MissingSpec(rates={"a": 0.3, "v": 0.3, "l": 0.3}, min_present=2),
    "near_boundary": MissingSpec(rates={"a": 0.7, "v": 0.7, "l": 0.6}),
    "pinned": MissingSpec(rates={"a": 0.0, "v": 1.0, "l": 0.3}),
    "eta_half": MissingSpec(sample_rate=0.5),
    "eta_two_kept": MissingSpec(sample_rate=0.7, min_present=2),
    "eta_none_kept": MissingSpec(sample_rate=0.4, min_present=0),
}


def codes(masks: torch.Tensor) -> torch.Tensor:
    """Pattern index of each row: bit j = modality j present (the order of ``all_patterns``)."""
    return (masks.long() * (2 ** torch.arange(masks.shape[1]))).sum(1)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_realised_rates_and_pattern_frequencies_match_the_spec(name: str) -> None:
    spec = SPECS[name]
    masks = train_masks(spec, AVL, IDS, seed=11)
    patterns, probs = pattern_distribution(spec, AVL)
    # per-modality missing rates: the requested ones, or for η the share of incomplete patterns
    wanted = (~patterns).double().T @ probs
    if spec.sample_rate is None:
        assert wanted.tolist() == pytest.approx([spec.rates.get(m, 0.0) for m in AVL], abs=1e-9)
    realised = 1 - masks.double().mean(0)
    sd = (wanted * (1 - wanted) / N).sqrt()
    assert ((realised - wanted).abs() <= 4.5 * sd).all(), (realised, wanted)
    counts = torch.bincount(codes(masks), minlength=8).double()
    expected = torch.zeros(8, dtype=torch.float64)
    expected[codes(patterns)] = probs * N
    assert counts[expected == 0].sum() == 0  # no pattern outside the support (min_present, pinned rates)
    used = expected > 0
    chi2 = float(((counts[used] - expected[used]) ** 2 / expected[used]).sum())
    df = int(used.sum()) - 1
    assert df == 0 or chi2 < CHI2_1E4[df]
    assert int(masks.sum(1).min()) >= spec.min_present
    if spec.sample_rate is not None:  # the share of incomplete samples is η
        incomplete = 1 - masks.all(1).double().mean()
        assert abs(float(incomplete) - spec.sample_rate) <= 4.5 * math.sqrt(spec.sample_rate * (1 - spec.sample_rate) / N)


@pytest.mark.parametrize(
    ("spec", "present"),
    [
        (MissingSpec(rates={"a": 0.0, "v": 1.0, "l": 0.4}), {"a": True, "v": False}),
        (MissingSpec(rates={"a": 1.0, "v": 1.0, "l": 1.0}, min_present=0), {"a": False, "v": False, "l": False}),
        (MissingSpec(sample_rate=0.0), {"a": True, "v": True, "l": True}),
        (MissingSpec(rates={}), {"a": True, "v": True, "l": True}),
    ],
)
def test_rates_zero_and_one_are_exact(spec: MissingSpec, present: dict[str, bool]) -> None:
    masks = train_masks(spec, AVL, IDS, seed=3)
    for m, value in present.items():
        assert bool((masks[:, AVL.index(m)] == value).all()), m


def test_sample_rate_one_leaves_no_sample_complete() -> None:
    masks = train_masks(MissingSpec(sample_rate=1.0), AVL, IDS, seed=3)
    assert not bool(masks.all(1).any()) and bool(masks.any(1).all())


@pytest.mark.parametrize("name", ["imbalanced", "eta_half"])
def test_masks_do_not_depend_on_order_batching_or_sharding(name: str) -> None:
    spec = SPECS[name]
    whole = train_masks(spec, AVL, IDS, seed=5)
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(1))
    assert torch.equal(train_masks(spec, AVL, IDS[perm], seed=5), whole[perm])  # shuffle order
    batches = torch.cat([train_masks(spec, AVL, IDS[i : i + 333], seed=5) for i in range(0, N, 333)])
    assert torch.equal(batches, whole)  # batch size
    shards = [train_masks(spec, AVL, part, seed=5) for part in IDS.tensor_split(3)]  # 3 processes / workers
    assert torch.equal(torch.cat(shards), whole)
    strided = train_masks(spec, AVL, IDS[1::4], seed=5)  # a worker taking every fourth row
    assert torch.equal(strided, whole[1::4])
    assert not torch.equal(train_masks(spec, AVL, IDS, seed=6), whole)  # the seed matters


def test_random_condition_masks_are_the_spec_and_ignore_the_training_seed() -> None:
    cond = parse_conditions([{"random": {"rates": {"a": 0.2, "v": 0.5, "l": 0.8}}, "seed": 7, "name": "r"}], AVL)[0]
    masks = condition_masks(cond, IDS, 3)
    realised = 1 - masks.double().mean(0)
    wanted = torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64)
    assert ((realised - wanted).abs() <= 4.5 * (wanted * (1 - wanted) / N).sqrt()).all()
    # the same spec for training with seed 7 draws on another stream: agreement is chance, not identity
    train = train_masks(SPECS["imbalanced"], AVL, IDS, seed=7)
    assert not torch.equal(train, masks)
    assert torch.equal(condition_masks(cond, IDS.flip(0), 3), masks.flip(0))


def _session(make_recipe, *overrides: str):  # type: ignore[no-untyped-def]
    conditions = "missing.eval.conditions=[all, {random: {rates: {m0: 0.5, m1: 0.5}}, seed: 3, name: r50}]"
    return build_session(make_recipe(conditions, *overrides), Runtime(torch.device("cpu")))


def test_evaluation_masks_are_paired_across_training_seeds_and_methods(make_recipe) -> None:
    base = _session(make_recipe)
    for overrides in (("seed=1",), ("model.dim=8",), ("seed=2", "missing.train.rates={m0: 0.6}")):
        other = _session(make_recipe, *overrides)
        for split in ("val", "test"):
            assert base.eval_masks[split].keys() == other.eval_masks[split].keys()
            for name, masks in base.eval_masks[split].items():
                assert torch.equal(masks, other.eval_masks[split][name]), (overrides, split, name)


@pytest.mark.parametrize("name", ["m0", "m1+m2", "m2+m0"])
def test_a_random_condition_may_not_take_the_name_of_a_fixed_subset(name: str) -> None:
    # Before: accepted, so reports, val.<name>.<metric> and MissBench's MEI read random masks as that subset.
    item = {"random": {"rates": {"m0": 0.5}}, "name": name}
    with pytest.raises(MMCoreError, match=rf"\.name: '{re.escape(name)}' names a fixed subset of modalities"):
        parse_conditions([item], ["m0", "m1", "m2"])
    assert parse_conditions([{**item, "name": f"random-{name}"}], ["m0", "m1", "m2"])[0].random is not None


@pytest.mark.parametrize(("rate", "segment"), [(0.3, 1), (0.3, 5), (0.5, 7), (0.1, 50)])
def test_every_frame_is_dropped_at_the_frame_rate(rate: float, segment: int) -> None:
    keep = keep_frames(rate, segment, IDS, 40, seed=0, stream=STREAM_FRAMES_TRAIN)
    dropped = 1 - keep.double().mean(0)  # per frame position, over 20,000 rows
    sd = math.sqrt(rate * (1 - rate) / N)
    # frames of one row are correlated within a segment; positions are not: each one's rate is binomial
    assert ((dropped - rate).abs() <= 4.5 * sd).all()
    assert torch.equal(keep_frames(rate, segment, IDS.flip(0), 40, 0, STREAM_FRAMES_TRAIN), keep.flip(0))
    longer = keep_frames(rate, segment, IDS, 64, 0, STREAM_FRAMES_TRAIN)
    assert torch.equal(longer[:, :40], keep)  # a longer padding changes no kept frame


def test_frame_rates_zero_and_one_are_exact() -> None:
    assert bool(keep_frames(0.0, 3, IDS, 10, 0, STREAM_FRAMES_TRAIN).all())
    assert not bool(keep_frames(1.0, 3, IDS, 10, 0, STREAM_FRAMES_TRAIN).any())


def test_mnar_on_a_sequence_without_any_valid_frame_draws_without_a_warning(recwarn: pytest.WarningsRecorder) -> None:
    # Before: torch's "std(): degrees of freedom is <= 0" UserWarning, then NaN scores standardised to 0.
    from mmcore.mechanisms import feature_score
    from mmcore.types import SplitData

    n = 50
    g = torch.Generator().manual_seed(0)
    split = SplitData({"a": torch.randn(n, 3, generator=g), "v": torch.randn(n, 4, 2, generator=g)},
                      {"v": torch.zeros(n, dtype=torch.long)}, torch.zeros(n, dtype=torch.long), torch.arange(n))
    assert feature_score(split, "v").tolist() == [0.0] * n  # no driver: mcar for v
    masks = train_masks(MissingSpec(rates={"a": 0.5, "v": 0.5}, mechanism="mnar", min_present=0), ["a", "v"], split.ids, 0, split=split)
    assert masks.shape == (n, 2)
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]
