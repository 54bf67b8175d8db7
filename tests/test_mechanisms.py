"""The mar and mnar mechanisms: exact marginals, the dependence each one defines, purity, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmcore.conditions import condition_masks, parse_conditions
from mmcore.errors import MMCoreError
from mmcore.mechanisms import feature_score, sample_distributions
from mmcore.missing import MissingSpec, parse_spec, realised_rates, train_masks
from mmcore.types import SplitData

AVL = ["a", "v", "l"]
N = 6000
TOL = 4 * (0.25 / N) ** 0.5  # four binomial standard deviations at the worst rate


def make_split(n: int = N, seed: int = 0) -> SplitData:
    g = torch.Generator().manual_seed(seed)
    features = {"a": torch.randn(n, 4, generator=g), "v": torch.randn(n, 5, 3, generator=g), "l": torch.randn(n, 3, generator=g)}
    lengths = {"v": torch.randint(1, 6, (n,), generator=g)}
    return SplitData(features, lengths, torch.randint(0, 4, (n,), generator=g), torch.arange(100, 100 + n))


SPLIT = make_split()


def masks(spec: MissingSpec, split: SplitData = SPLIT, seed: int = 0) -> torch.Tensor:
    return train_masks(spec, AVL, split.ids, seed, split=split)


def drop_by_half(missing: torch.Tensor, score: np.ndarray) -> tuple[float, float]:
    """Missing rate among the lower and the upper half of a driver score."""
    high = torch.from_numpy(score > np.median(score))
    return float(missing[~high].double().mean()), float(missing[high].double().mean())


@pytest.mark.parametrize(
    "node, digest",
    [  # sha256 of the masks drawn by the code before issue 23 (d756efe): committed results reproduce
        ({"rates": {"a": 0.2, "v": 0.5, "l": 0.8}}, "ca8e8b430283ee6366e33c29a6350c1d2e71196e6c24b65452adac12527060d0"),
        ({"sample_rate": 0.5}, "89de2a820c4eb4bebca02de8d7965f0324b7981ee5554fadc0ab7bdf74c8bc9b"),
        ({"rates": {"a": 0.7, "v": 0.3}, "min_present": 0}, "37dbb0db4bb2babe9801ce053a3f533a25f2d8a25b59cc80b737d5e26fe69a09"),
        ({"rates": {"a": 0.5, "v": 0.5, "l": 0.5}, "policy": "resample"}, "8c83bd045d03bc05068754b2b837a9438772dee93b4e8cf446339f387eca568a"),
    ],
)
def test_mcar_masks_are_unchanged(node: dict, digest: str) -> None:
    """mcar (every shipped recipe) draws exactly the masks it drew before the mechanisms existed."""
    import hashlib

    drawn = train_masks(parse_spec(node), AVL, torch.arange(100, 5100), 3, epoch=2)
    assert hashlib.sha256(drawn.numpy().tobytes()).hexdigest() == digest


def test_mar_rates_are_exact_marginals_and_realised() -> None:
    spec = MissingSpec(rates={"v": 0.3, "l": 0.5}, mechanism="mar", depends_on="a")
    patterns, probs = sample_distributions(spec, AVL, SPLIT)
    expected = (~torch.from_numpy(patterns)).double().T @ torch.from_numpy(probs.mean(0))
    assert expected.tolist() == pytest.approx([0.0, 0.3, 0.5], abs=1e-9)
    assert realised_rates(masks(spec)) == pytest.approx([0.0, 0.3, 0.5], abs=TOL)


def test_mar_depends_on_the_driver_and_not_on_the_dropped_modalitys_values() -> None:
    spec = MissingSpec(rates={"v": 0.3, "l": 0.5}, mechanism="mar", depends_on="a")
    mask = masks(spec)
    low, high = drop_by_half(~mask[:, 2], feature_score(SPLIT, "a"))
    assert high - low > 0.3  # strength 2: a larger driver is missing l far more often
    flipped = masks(MissingSpec(rates={"v": 0.3, "l": 0.5}, mechanism="mar", depends_on="a", strength=-2.0))
    low, high = drop_by_half(~flipped[:, 2], feature_score(SPLIT, "a"))
    assert low - high > 0.3
    # the defining property of mar: the values that go missing do not decide whether they go missing
    changed = SplitData({**SPLIT.features, "l": torch.randn(N, 3) * 5 + 1}, SPLIT.lengths, SPLIT.target, SPLIT.ids)
    assert torch.equal(masks(spec, changed), mask)


def test_mnar_self_depends_on_the_modalitys_own_values() -> None:
    spec = MissingSpec(rates={"a": 0.3, "v": 0.5, "l": 0.6}, mechanism="mnar")
    mask = masks(spec)
    assert realised_rates(mask) == pytest.approx([0.3, 0.5, 0.6], abs=TOL)
    for j, name in enumerate(AVL):  # sequences included: v's score averages its valid frames
        low, high = drop_by_half(~mask[:, j], feature_score(SPLIT, name))
        assert high - low > 0.25, name
    # changing l's own values changes which rows lose l
    changed = SplitData({**SPLIT.features, "l": -SPLIT.features["l"]}, SPLIT.lengths, SPLIT.target, SPLIT.ids)
    assert not torch.equal(masks(spec, changed)[:, 2], mask[:, 2])


def test_mnar_label_depends_on_the_class() -> None:
    spec = MissingSpec(rates={"a": 0.2, "v": 0.4, "l": 0.4}, mechanism="mnar", depends_on="label")
    mask = masks(spec)
    assert realised_rates(mask) == pytest.approx([0.2, 0.4, 0.4], abs=TOL)
    by_class = [float((~mask[SPLIT.target == c, 1]).double().mean()) for c in range(4)]
    assert by_class == sorted(by_class) and by_class[-1] - by_class[0] > 0.3


def test_min_present_holds_and_rates_stay_exact_under_mnar() -> None:
    spec = MissingSpec(rates={"a": 0.3, "v": 0.3, "l": 0.3}, mechanism="mnar", min_present=2)
    mask = masks(spec)
    assert bool((mask.sum(1) >= 2).all())
    assert realised_rates(mask) == pytest.approx([0.3, 0.3, 0.3], abs=TOL)


def test_masks_do_not_depend_on_row_order_and_follow_the_seed() -> None:
    spec = MissingSpec(rates={"a": 0.3, "v": 0.5, "l": 0.6}, mechanism="mnar")
    order = torch.randperm(N, generator=torch.Generator().manual_seed(1))
    shuffled = SplitData(
        {k: v[order] for k, v in SPLIT.features.items()}, {k: v[order] for k, v in SPLIT.lengths.items()},
        SPLIT.target[order], SPLIT.ids[order],
    )
    assert torch.equal(masks(spec, shuffled), masks(spec)[order])
    assert torch.equal(masks(spec), masks(spec))
    assert not torch.equal(masks(spec, seed=1), masks(spec))


def test_zero_strength_is_mcar() -> None:
    rates = {"a": 0.3, "v": 0.5, "l": 0.6}
    mcar = masks(MissingSpec(rates=rates))
    flat = masks(MissingSpec(rates=rates, mechanism="mnar", strength=0.0))
    assert float((mcar == flat).all(1).double().mean()) > 0.999  # equal up to float rounding at a cdf edge


def test_random_eval_condition_under_mar_reads_the_split() -> None:
    item = {"random": {"rates": {"v": 0.5}, "mechanism": "mar", "depends_on": "a"}, "seed": 3, "name": "mar"}
    (cond,) = parse_conditions([item], AVL)
    mask = condition_masks(cond, SPLIT.ids, 3, SPLIT)
    assert realised_rates(mask)[1] == pytest.approx(0.5, abs=TOL)
    low, high = drop_by_half(~mask[:, 1], feature_score(SPLIT, "a"))
    assert high - low > 0.3
    with pytest.raises(MMCoreError, match="pass the split"):
        condition_masks(cond, SPLIT.ids, 3)


@pytest.mark.parametrize(
    ("node", "message"),
    [
        ({"rates": {"v": 0.3}, "mechanism": "mar"}, "mar' needs depends_on"),
        ({"rates": {"v": 0.3}, "mechanism": "mar", "depends_on": "audio"}, "unknown modality 'audio'"),
        ({"rates": {"v": 0.3, "a": 0.2}, "mechanism": "mar", "depends_on": "a"}, "driver 'a' must be always present"),
        ({"rates": {"v": 0.3}, "mechanism": "mnar", "depends_on": "lable"}, "did you mean 'label'"),
        ({"sample_rate": 0.3, "mechanism": "mnar"}, "needs per-modality 'rates'"),
        ({"rates": {"v": 0.3}, "depends_on": "a"}, "mcar depends on nothing"),
        ({"rates": {"a": 0.7, "v": 0.7, "l": 0.7}, "mechanism": "mnar"}, "infeasible with min_present=1"),
    ],
)
def test_bad_mechanism_specs_are_one_line_errors(node: dict, message: str) -> None:
    with pytest.raises(MMCoreError, match=message) as info:
        masks(parse_spec(node))
    assert "\n" not in str(info.value)


# ---------------------------------------------------------------- through a recipe and a run


def test_recipe_validation_names_a_missing_driver(make_recipe) -> None:
    from mmcore.errors import RecipeError

    with pytest.raises(RecipeError, match=r"missing.train: mechanism 'mar': depends_on names unknown modality 'm7'"):
        make_recipe("missing.train.rates={m1: 0.3}", "missing.train.mechanism=mar", "missing.train.depends_on=m7")
    with pytest.raises(RecipeError, match=r"missing.train.mechanism"):
        make_recipe("missing.train.mechanism=mcr")


def test_a_run_trains_and_evaluates_under_mar_and_mnar(make_recipe) -> None:
    import json

    from mmcore.engine.trainer import run

    recipe = make_recipe(
        "train.epochs=1", "missing.train.rates={m1: 0.4, m2: 0.4}", "missing.train.mechanism=mar",
        "missing.train.depends_on=m0",
        "missing.eval.conditions=[m0+m1+m2, {random: {rates: {m0: 0.3, m1: 0.3, m2: 0.3}, mechanism: mnar}, name: mnar}]",
    )
    result = run(recipe, show_progress=False)
    assert set(result.results["test"]) == {"m0+m1+m2", "mnar", "average"}
    hashes = [json.loads((result.run_dir / "manifest.json").read_text())["train_mask_sha256"]]
    mcar = make_recipe("train.max_steps=1", "missing.train.rates={m1: 0.4, m2: 0.4}")
    hashes.append(json.loads((run(mcar, show_progress=False).run_dir / "manifest.json").read_text())["train_mask_sha256"])
    assert len(hashes[0]) == 64 and hashes[0] != hashes[1]  # the manifest's mask hash covers the mechanism
