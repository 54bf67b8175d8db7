"""mar masks for rows whose driver modality is unusable (``data.nonfinite: absent``, or marked by the dataset).

The defect: such a row's driver features are a fill (datacheck zeroes NaN rows; a dataset may
leave anything there), and the mar draw scored the fill as if it were data. With a driver around
3 ± 1 and 300 of 900 rows NaN, the zero fill sat about two standard deviations low, so those rows
lost ``a`` 8.3% and ``b`` 4.3% of the time instead of about a third -- an artefact of the number 0.
Under mar, P(R | X_obs) may read observed data only, and such a row observes no driver, so it now
draws as under mcar with the same rates (restricted to its usable modalities, as every unusable
row); rows with a usable driver keep their masks bit for bit. The numbers are worked out by hand.
"""

from __future__ import annotations

import torch

from mmcore.datacheck import check_splits
from mmcore.mechanisms import draw_dependent
from mmcore.missing import MissingSpec, train_masks
from mmcore.types import ModalitySpec, SplitData, TaskSpec

NAMES = ["d", "a", "b"]  # d drives the missingness of a and b
MAR = MissingSpec(rates={"a": 0.5, "b": 0.5}, mechanism="mar", depends_on="d")
MCAR = MissingSpec(rates={"a": 0.5, "b": 0.5})
SPECS = [ModalitySpec("d", 1), ModalitySpec("a", 2), ModalitySpec("b", 2)]


def _split(driver: torch.Tensor, unusable: torch.Tensor | None = None, seed: int = 0) -> SplitData:
    n = len(driver)
    g = torch.Generator().manual_seed(seed)
    features = {"d": driver.reshape(n, 1), "a": torch.randn(n, 2, generator=g), "b": torch.randn(n, 2, generator=g)}
    return SplitData(features=features, lengths={}, target=torch.zeros(n), ids=torch.arange(n), unusable=unusable)


def _marked(fill: float) -> SplitData:
    """Rows 0-3 have drivers -1, 1, -1, 1; rows 4-7 an unusable driver holding ``fill``; row 8
    has b alone (d and a unusable)."""
    driver = torch.tensor([-1.0, 1.0, -1.0, 1.0] + [fill] * 5)
    flags = torch.zeros(9, 3, dtype=torch.bool)
    flags[4:, 0] = True
    flags[8, 1] = True
    return _split(driver, flags)


def test_a_row_without_its_driver_draws_the_unconditional_distribution() -> None:
    """d is always present (rate 0), so min_present 1 never binds on a whole row: under mcar a
    and b are independent, each present with probability 1/2 (natural parameters 0). A row
    without d restricts that family to {a}, {b}, {a, b} (at least one present), weights
    e^0 = 1 each: 1/3 apiece. Inverse CDF in pattern order (bit j = modality j present: a = 2,
    b = 4, a+b = 6): u below 1/3 -> a, below 2/3 -> b, else both. Row 8 has b alone: b.
    The same masks whatever the fill (0, what datacheck writes, or 1000 from a dataset)."""
    eps = 1e-6
    u = torch.tensor([0.5] * 4 + [1 / 3 - eps, 1 / 3 + eps, 2 / 3 - eps, 2 / 3 + eps, 0.1], dtype=torch.float64)
    expected = [[False, True, False], [False, False, True], [False, False, True], [False, True, True], [False, False, True]]
    for fill in (0.0, 1000.0):
        assert draw_dependent(MAR, NAMES, u, _marked(fill))[4:].tolist() == expected


def test_rows_with_a_usable_driver_keep_their_masks_bit_for_bit() -> None:
    """Through ``check_splits`` (``nonfinite: absent``): rows 600-899 have a NaN driver. The
    other rows draw what they draw on the same split with those rows zeroed and not flagged
    (the split's statistics stay as if every row were whole); the NaN rows draw exactly what
    mcar with the same rates draws for them. Each of a, b is then missing 1/3 of the time there
    (sd √(300·1/3·2/3) = 8.2 rows): 108 and 83 rows here, not the 25 and 13 the zero fill gave."""
    n = 900
    driver = 3 + torch.randn(n, generator=torch.Generator().manual_seed(0))
    driver[600:] = float("nan")
    raw = _split(driver)
    data = check_splits("synthetic", {"train": raw}, SPECS, TaskSpec("regression"), nonfinite="absent")["train"]
    assert data.unusable is not None and int(data.unusable[:, 0].sum()) == 300
    masks = train_masks(MAR, NAMES, data.ids, seed=0, split=data)
    whole = _split(torch.nan_to_num(driver, nan=0.0))
    assert torch.equal(masks[:600], train_masks(MAR, NAMES, whole.ids, seed=0, split=whole)[:600])
    assert torch.equal(masks[600:], train_masks(MCAR, NAMES, data.ids, seed=0, split=data)[600:])
    assert not bool(masks[600:, 0].any())  # the unusable driver is absent, and min_present holds on a, b
    assert bool(masks[600:, 1:].any(1).all())
    lost = (~masks[600:, 1:]).sum(0).tolist()
    assert lost == [108, 83] and all(abs(k - 100) <= 3 * 8.2 for k in lost)


def test_flagging_another_modality_keeps_the_mar_draw() -> None:
    """Only rows lacking the driver take the new path: flagging a non-driver modality keeps the
    mar family for that row (restricted to its usable modalities), which reads the real driver."""
    n = 200
    flags = torch.zeros(n, 3, dtype=torch.bool)
    flags[:50, 1] = True  # a unusable, d usable
    driver = torch.randn(n, generator=torch.Generator().manual_seed(1))
    flagged, plain = _split(driver, flags), _split(driver)
    masks = train_masks(MAR, NAMES, flagged.ids, seed=5, split=flagged)
    assert torch.equal(masks[50:], train_masks(MAR, NAMES, plain.ids, seed=5, split=plain)[50:])
    assert not bool(masks[:50, 1].any()) and bool(masks[:, 0].all())  # d present wherever usable
