"""Unusable modalities (``SplitData.unusable``: NaN or inf features under ``data.nonfinite: absent``,
fully dropped frames, or marked by the dataset) and the drawn masks.

The defect: masks were drawn first and ``~unusable`` ANDed in afterwards, so a row whose one usable
modality the draw hid ended with nothing present despite ``min_present: 1`` (174 of 1,000 rows at
rates 0.6 when 300 rows have only m0), ``train_patterns`` left those rows out (it summed to 826),
and nothing said how many rows a fixed evaluation condition left with nothing to predict from.
Now unusable modalities are absent before the draw; rows with every modality usable keep their
masks bit for bit. The expected numbers below are worked out by hand in the comments.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import mmcore.plugins
from mmcore import hookimpl
from mmcore.builtins.synthetic import Synthetic
from mmcore.conditions import condition_masks, empty_rows, parse_conditions
from mmcore.engine.evaluate import condition_mask_table, usable
from mmcore.errors import MMCoreError
from mmcore.missbench import NO_MODALITY, pattern_counts
from mmcore.missing import MissingSpec, draw_masks, train_masks, usable_rows
from mmcore.types import SplitData

NAMES = ["m0", "m1", "m2"]


def _split(n: int, unusable: torch.Tensor | None, seed: int = 0) -> SplitData:
    g = torch.Generator().manual_seed(seed)
    features = {m: torch.randn(n, 4, generator=g) for m in NAMES}
    return SplitData(features=features, lengths={}, target=torch.randint(0, 2, (n,), generator=g),
                     ids=torch.arange(1000, 1000 + n), unusable=unusable)


def _only_m0(n: int, rows: int) -> torch.Tensor:
    """The first ``rows`` rows have m0 only: m1 and m2 unusable."""
    flags = torch.zeros(n, 3, dtype=torch.bool)
    flags[:rows, 1:] = True
    return flags


SPECS = {
    "rates": MissingSpec(rates={"m0": 0.6, "m1": 0.6, "m2": 0.6}),
    "rates-min2": MissingSpec(rates={"m0": 0.3, "m1": 0.3, "m2": 0.3}, min_present=2),
    "sample_rate": MissingSpec(sample_rate=0.9),
    "resample": MissingSpec(rates={"m0": 0.6, "m1": 0.6, "m2": 0.6}, policy="resample"),
    "mnar-self": MissingSpec(rates={"m0": 0.5, "m1": 0.5, "m2": 0.5}, mechanism="mnar"),
    "mar": MissingSpec(rates={"m1": 0.6, "m2": 0.6}, mechanism="mar", depends_on="m0"),
}


@pytest.mark.parametrize("name", list(SPECS))
def test_training_masks_keep_min_present_among_usable_modalities(name: str) -> None:
    spec, n = SPECS[name], 1000
    flags = _only_m0(n, 300)
    flags[300:400, 0] = True  # and 100 rows lack m0
    flags[399] = True  # and one row has nothing (all its frames dropped): it draws the empty pattern
    data = _split(n, flags)
    masks = usable(train_masks(spec, NAMES, data.ids, seed=3, epoch=2, split=data), data)
    have = ~flags
    need = torch.clamp(have.sum(1), max=spec.min_present)
    assert not (masks & flags).any()  # an unusable modality is never present
    assert bool((masks.sum(1) >= need).all())  # min_present among the usable ones: no empty row
    assert bool(masks[:300, 0].all())  # a row with m0 alone keeps it
    assert sum(pattern_counts(masks, NAMES).values()) == n
    # the rows with every modality usable draw exactly what they drew when no row was unusable
    whole = train_masks(spec, NAMES, data.ids, seed=3, epoch=2, split=_split(n, None))
    assert torch.equal(masks[400:], whole[400:])


def test_the_old_rule_left_rows_empty_and_now_counts_them() -> None:
    """The old rule (draw, then AND ~unusable): a row with m0 alone is empty whenever the draw
    hides m0, 0.6 of the time, so about 0.6 × 300 = 180 rows (sd √(300·0.6·0.4) = 8.5; 174
    here). ``pattern_counts`` now counts them under ``NO_MODALITY`` and sums to N."""
    n, flags = 1000, _only_m0(1000, 300)
    old = train_masks(SPECS["rates"], NAMES, _split(n, flags).ids, seed=0) & ~flags  # no split: the plain draw
    empty = int((~old.any(1)).sum())
    assert empty == 174 and abs(empty - 180) <= 3 * 8.5
    assert pattern_counts(old, NAMES)[NO_MODALITY] == empty
    assert sum(pattern_counts(old, NAMES).values()) == n


def test_a_row_draws_from_the_same_family_restricted_to_its_usable_modalities() -> None:
    """Rates 0.5 each, min_present 1, three modalities: by symmetry p(x) ∝ q^|x| on non-empty x,
    and m0 present with probability 1/2 gives (q + 2q² + q³) / (3q + 3q² + q³) = 1/2, so
    q² + q - 1 = 0, q = (√5 - 1)/2. A row without m2 has {m0}, {m1}, {m0, m1} with weights
    q, q, q²: probabilities (3 - √5)/2 = 0.381966, the same, and √5 - 2 = 0.236068. Inverse CDF
    in pattern order: u below 0.381966 -> m0, below 0.763932 -> m1, else m0+m1 (m0 missing
    0.382 of the time there, not 0.5: the lowered constraint binds)."""
    spec = MissingSpec(rates={"m0": 0.5, "m1": 0.5, "m2": 0.5})
    first, second = (3 - math.sqrt(5)) / 2, 3 - math.sqrt(5)
    u = torch.tensor([first - 1e-6, first + 1e-6, second - 1e-6, second + 1e-6], dtype=torch.float64)
    have = np.array([[True, True, False]] * 4)
    got = draw_masks(spec, NAMES, u, have).tolist()
    assert got == [[True, False, False], [False, True, False], [False, True, False], [True, True, False]]


def test_the_sample_rate_protocol_on_a_rows_usable_modalities() -> None:
    """η = 0.5, min_present 1, m2 unusable: {m0, m1} with probability 0.5, else {m0} or {m1},
    0.25 each (pattern order m0, m1, m0+m1: CDF 0.25, 0.5, 1). With m0 alone: always m0."""
    spec = MissingSpec(sample_rate=0.5)
    u = torch.tensor([0.2, 0.3, 0.6, 0.2, 0.99], dtype=torch.float64)
    have = np.array([[True, True, False]] * 3 + [[True, False, False]] * 2)
    got = draw_masks(spec, NAMES, u, have).tolist()
    assert got == [[True, False, False], [False, True, False], [True, True, False], [True, False, False], [True, False, False]]


def test_fewer_usable_than_min_present_keeps_them_all() -> None:
    spec = SPECS["rates-min2"]
    u = torch.linspace(0.0, 0.999, 50, dtype=torch.float64)
    have = np.array([[True, False, False]] * 25 + [[False, True, True]] * 25)
    got = draw_masks(spec, NAMES, u, have)
    assert got[:25].tolist() == [[True, False, False]] * 25
    assert got[25:].tolist() == [[False, True, True]] * 25  # two usable, min_present 2: both
    nothing = np.zeros((3, 3), dtype=bool)  # every frame dropped in every modality: nothing to keep
    for spec in (SPECS["rates"], SPECS["sample_rate"]):
        assert not draw_masks(spec, NAMES, u[:3], nothing).any()


def test_rate_zero_and_rate_one_stay_pinned() -> None:
    """m0 never missing (rate 0) stays present where usable; m2 always missing (rate 1) stays
    absent even where it is the only usable modality besides an unusable m0 (the row has m1)."""
    spec = MissingSpec(rates={"m0": 0.0, "m1": 0.5, "m2": 1.0})
    u = torch.linspace(0.0, 0.999, 40, dtype=torch.float64)
    have = np.array([[True, True, False]] * 20 + [[False, True, True]] * 20)
    got = draw_masks(spec, NAMES, u, have)
    assert bool(got[:20, 0].all()) and not bool(got[:, 2].any())
    assert got[20:].tolist() == [[False, True, False]] * 20


def test_an_all_false_unusable_changes_nothing() -> None:
    n = 200
    flagged = _split(n, torch.zeros(n, 3, dtype=torch.bool))
    assert usable_rows(flagged, n, 3) is None
    spec = SPECS["rates"]
    assert torch.equal(train_masks(spec, NAMES, flagged.ids, 1, split=flagged), train_masks(spec, NAMES, flagged.ids, 1))


def test_an_unusable_mask_of_the_wrong_shape_is_one_line() -> None:
    data = _split(10, torch.zeros(10, 2, dtype=torch.bool))
    with pytest.raises(MMCoreError, match=r"unusable mask has shape \(10, 2\), expected \(10, 3\)"):
        train_masks(SPECS["rates"], NAMES, data.ids, 0, split=data)


def test_random_conditions_draw_around_unusable_and_fixed_ones_are_counted() -> None:
    n = 500
    flags = _only_m0(n, 100)
    flags[100:130, 0] = True  # 30 rows lack m0
    data = _split(n, flags)
    r60 = {"random": {"rates": {"m0": 0.6, "m1": 0.6, "m2": 0.6}}, "name": "r60"}
    conditions = parse_conditions(["all", r60], NAMES)
    table = condition_mask_table(conditions, data, 3)
    assert not (~table["r60"].any(1)).any()  # the random condition keeps one usable modality per row
    # fixed subsets: m0 alone is empty on the 30 rows lacking m0; m1, m2, m1+m2 on the 100 with m0 only
    assert empty_rows(table) == {"m0": 30, "m1": 100, "m2": 100, "m1+m2": 100}
    whole = condition_masks(conditions[-1], data.ids, 3, _split(n, None))
    assert torch.equal(table["r60"][130:], whole[130:])


def test_pattern_counts_add_up_to_the_rows() -> None:
    masks = torch.tensor([[0, 0], [1, 0], [1, 1], [0, 0]], dtype=torch.bool)
    assert pattern_counts(masks, ["a", "b"]) == {NO_MODALITY: 2, "a": 1, "a+b": 1}


# --------------------------------------------------------------------------- a whole run


def with_nan_rows(s: SplitData) -> SplitData:
    """``s`` with m0 NaN in every fifth row (by id), m1 NaN in every seventh (also the data of
    tests/test_ddp_features.py's two-process run)."""
    features = dict(s.features)
    for modality, every in (("m0", 5), ("m1", 7)):
        x = features[modality].clone()
        x[s.ids % every == 0] = float("nan")
        features[modality] = x
    return SplitData(features, dict(s.lengths), s.target, s.ids, s.unusable)


class WithNaN(Synthetic):
    """Synthetic data with NaN rows in every split (``with_nan_rows``)."""

    def split(self, name: str) -> SplitData:
        return with_nan_rows(super().split(name))


class Plugin:
    @hookimpl
    def register_datasets(self, register):  # type: ignore[no-untyped-def]
        register("tunu.nan", WithNaN)


@pytest.fixture()
def plugins():
    loaded = mmcore.plugins.load_plugins(extra={"tunu": Plugin()})
    old = mmcore.plugins._cached
    mmcore.plugins._cached = loaded  # tiny_recipe validates against get_registry()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield loaded
    torch.set_num_threads(threads)
    mmcore.plugins._cached = old


def test_a_run_on_unusable_rows_keeps_min_present_and_counts_empty_rows(plugins, tmp_path: Path) -> None:
    from mmcore.engine.trainer import run as train_run
    from mmcore.testing import tiny_recipe

    missing = {"train": {"rates": {m: 0.6 for m in NAMES}}, "eval": {"conditions": "all"}}
    dataset = {"type": "tunu.nan", "modalities": 3, "classes": 4, "samples": 400, "dim": 8}
    recipe = tiny_recipe(tmp_path, "train.epochs=1", "data.nonfinite=absent", dataset=dataset, missing=missing)
    result = train_run(recipe, plugins=plugins, show_progress=False)
    written = json.loads((result.run_dir / "eval.json").read_text())
    patterns = written["diagnostics"]["train_patterns"]
    assert sum(patterns.values()) == 280 and NO_MODALITY not in patterns  # every training row, none empty
    data = WithNaN(modalities=3, classes=4, samples=400, dim=8)
    for split in ("val", "test"):
        ids = data.split(split).ids
        m0, m1 = ids % 5 == 0, ids % 7 == 0
        expected = {"m0": int(m0.sum()), "m1": int(m1.sum()), "m0+m1": int((m0 & m1).sum())}
        assert written["empty_rows"][split] == {k: v for k, v in expected.items() if v}
        assert set(written["results"][split]) >= {"m0", "m1", "m0+m1", "average"}  # still scored
