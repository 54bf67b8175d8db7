"""Every bundled imputer, fusion head and balancer under the degenerate data real missing-modality
datasets produce: a modality absent from a whole batch, a modality never observed in training, a
last batch of one row, a class absent from the training set, a 2-class task, a single modality,
regression, and rows with no modality at all (``missing.train.min_present: 0``), in whole runs.
The components alone on degenerate inputs, and the formulas by hand, are
``tests/test_degenerate_components.py``'s.

Why: these are the inputs on which a mean divides by an empty count, a prototype is the zero
vector, or a ratio's denominator is zero; a balancer that returns NaN there, or a number that is
silently wrong, spoils a whole study. Components are discovered through the registry (those
whose code lives in this repository), so a new one is swept without editing this file: it must
train with finite losses, weights and state, or refuse the case in one line naming itself
(``REFUSALS``, or its declared ``task_kinds``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterator

import pytest

from mmcore.builtins.synthetic import Synthetic
from mmcore.components import Balancer, Logger, declared_needs
from mmcore.errors import MMCoreError
from mmcore.missing import MissingSpec, train_masks
from mmcore.plugins import get_registry
from mmcore.registry import Component
from mmcore.testing import option_sets, short_run, tiny_recipe
from mmcore.types import SplitData

from plugin_helpers import bundled

DATASET = {"type": "mmcore.synthetic", "modalities": 3, "classes": 3, "samples": 120, "dim": 4}  # 84 training rows
CLASS_GAP = "tests.class_gap"  # the dataset above without class 1 in its train split (registered below)
SCALED = "tests.scaled_regression"  # its regression targets in hundreds (registered below)
CAPTURE = "tests.capture"  # a logger keeping every logged scalar
ORIGIN = "tests.degenerate"  # the plugin name these three are registered under


# ------------------------------------------------------------------------- the degenerate cases

# case -> (recipe overrides, recipe nodes): each one degenerate thing on the tiny recipe
CASES: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    # batches of 8 with m0 missing 90% of the time: 43% of batches lack m0 altogether
    "batch_absent": (("train.batch_size=8", "missing.train.rates.m0=0.9"), {}),
    "never_observed": (("missing.train.rates.m1=1.0",), {}),  # m1 is in no training row
    "last_batch_of_one": (("train.batch_size=83",), {}),  # 84 = 83 + 1
    "class_absent": ((), {"dataset": {"type": CLASS_GAP}}),
    "two_classes": ((), {"dataset": {**DATASET, "classes": 2}}),
    "single_modality": ((), {"dataset": {**DATASET, "modalities": 1},
                             "missing": {"train": {"rates": {}}, "eval": {"conditions": "all"}}}),
    "regression": (("train.select=val.mae",), {"dataset": {**DATASET, "task": "regression"}}),
    # targets in raw units (hundreds) under mse: per-row losses of 10^4, past exp's range at η = 0.01
    "regression_in_raw_units": (("train.select=val.mae", "train.task_loss=mse"), {"dataset": {"type": SCALED}}),
    # min_present 0 lets a row lose every modality: about a fifth of the rows have none
    "no_modality_rows": (("missing.train.min_present=0", "missing.train.rates.m0=0.6",
                          "missing.train.rates.m1=0.6", "missing.train.rates.m2=0.6"), {}),
}

_TWO = "needs at least two modalities"
# (component, case) -> a fragment of the one-line refusal; every other pair must train.
# Regression is refused exactly by the balancers whose task_kinds leave it out (derived below).
REFUSALS: dict[tuple[str, str], str] = {
    ("baselines.inverse_rate", "never_observed"): "has missing rate 1.0; it must be in [0, 1)",
    ("baselines.agm", "single_modality"): "it needs at least two",
    ("baselines.balm", "single_modality"): _TWO,
    ("baselines.mmin", "single_modality"): _TWO,
    ("baselines.neighbours", "single_modality"): _TWO,
    ("baselines.shaspec", "single_modality"): _TWO,
    ("redcore.vib", "single_modality"): _TWO,
}

# Documented ranges of the values balancers log (prefix of the logged key -> [low, high]).
RANGES: dict[str, tuple[float, float]] = {
    "beta": (0.0, 1.0),  # redcore: on the unit sphere
    "weight": (0.0, math.inf),  # inverse_rate, uniform: positive
    "ogm_coef": (0.0, 1.0),  # 1 − tanh(·) for ratio > 1, else 1
    "pmr_coef": (0.0, 1.0),  # clipped to [0, 1]
    "pareto_k": (0.001, 0.999),  # the min-norm solver's bounds, or 1/2
    "dro_max_q": (0.0, 1.0),  # a probability
    "blend": (0.0, 10.0),  # capped at max_weight
    "agm_coef": (0.0, math.exp(0.1 * 7.0)),  # exp(alpha · min(gap, 7)), alpha 0.1
    "inforeg_coef": (0.0, 0.95 * math.e),  # beta · exp(tanh(gap)) or 0
}


class _ClassGap:
    """The tiny synthetic dataset with every class-1 row dropped from its train split (validation
    and test keep them): a class the model never trains on, as in small clinical corpora."""

    def __init__(self, seed: int = 0) -> None:
        self.base = Synthetic(**{k: v for k, v in DATASET.items() if k != "type"}, seed=seed)
        self.modalities, self.task = self.base.modalities, self.base.task

    def split(self, name: str) -> SplitData:
        data = self.base.split(name)
        if name != "train":
            return data
        rows = data.select((data.target != 1).nonzero().squeeze(1))
        return SplitData(rows.features, rows.lengths, rows.target, rows.ids, rows.unusable)


class _Scaled:
    """The tiny synthetic regression task with its targets times 100, as raw units (prices, ages
    in days) arrive when nobody standardised them."""

    def __init__(self, seed: int = 0) -> None:
        self.base = Synthetic(**{k: v for k, v in DATASET.items() if k != "type"}, task="regression", seed=seed)
        self.modalities, self.task = self.base.modalities, self.base.task

    def split(self, name: str) -> SplitData:
        data = self.base.split(name)
        return SplitData(data.features, data.lengths, data.target * 100.0, data.ids, data.unusable)


class _Capture(Logger):
    """Keeps every scalar the run logs, for the finiteness and range checks."""

    lines: list[dict[str, float]] = []

    def log_step(self, step: int, scalars: dict[str, float]) -> None:
        _Capture.lines.append(dict(scalars))

    def log_epoch(self, epoch: int, step: int, scalars: dict[str, float]) -> None:
        _Capture.lines.append(dict(scalars))


@pytest.fixture(scope="module", autouse=True)
def _test_components() -> Iterator[None]:
    """The two datasets and the logger, registered for this module only (other modules list the registry)."""
    registry = get_registry()
    for kind, name, factory in (("dataset", CLASS_GAP, _ClassGap), ("dataset", SCALED, _Scaled), ("logger", CAPTURE, _Capture)):
        if registry.find(kind, name) is None:
            registry.register(kind, name, factory, origin=ORIGIN)
    yield
    registry.remove_origin(ORIGIN)


def _recipe(tmp_path: Path, component: Component, case: str) -> dict[str, Any]:
    """The tiny recipe (2 epochs, small widths) with ``component`` in its slot and ``case`` applied."""
    overrides, nodes = CASES[case]
    nodes = {**nodes, "fusion": {"type": "mmcore.concat", "layers": [16], "dropout": 0.2}}
    options = option_sets(component)[0] if component.kind != "balancer" else {}  # the contract's tiny sizes
    node = {"type": component.name, **options}
    single = case == "single_modality"
    if component.kind == "balancer":
        # a balancer weighs the VIB's recon by default; with one modality there is none: the heads'
        node = {**node, "target": "unimodal"} if single else node
        nodes["imputer"] = {"type": "mmcore.zero"} if single else {"type": "redcore.vib", "hidden": [8], "blocks": 1}
        nodes["balancer"] = node
    else:
        nodes[component.kind] = node
    return tiny_recipe(tmp_path, "train.epochs=2", "train.batch_size=32", "train.log_every=1", "model.dim=8",
                       "model.encoders.default.layers=[8]", "model.unimodal_heads.layers=[16]", *overrides,
                       logging=[{"type": CAPTURE}], **nodes)


def _expected_refusal(component: Component, case: str) -> str | None:
    factory = component.factory
    kinds = getattr(factory, "task_kinds", None)
    needs = declared_needs(factory) if isinstance(factory, type) and issubclass(factory, Balancer) else None
    if needs and "unimodal_confidence" in needs:
        kinds = kinds or ("classification",)  # class probabilities: mmcore.recipe.crosschecks says so too
    if case.startswith("regression") and kinds is not None and "regression" not in kinds:
        # validate refuses it ("is defined for classification only"); a dataset without describe()
        # (the raw-units one) reaches the balancer, whose own check must say the same in one line
        return "classification"
    return REFUSALS.get((component.name, case))


# Swept under ``pytest -m slow`` only (about 40 s): cases none of the components failed on when the
# sweep was written; the others found the defects this file names and run in the default suite.
SLOW_CASES = ("last_batch_of_one", "two_classes", "single_modality", "regression")


def _sweep() -> list[Any]:
    return [pytest.param(c, case, id=f"{c.name}-{case}", marks=[pytest.mark.slow] if case in SLOW_CASES else [])
            for kind in ("imputer", "fusion", "balancer") for c in bundled(kind) for case in CASES]


@pytest.mark.parametrize("component,case", _sweep())
def test_component_trains_finitely_or_refuses_in_one_line(tmp_path, component: Component, case: str) -> None:
    refusal = _expected_refusal(component, case)
    _Capture.lines = []
    try:
        result = short_run(_recipe(tmp_path, component, case))
    except MMCoreError as exc:
        message = str(exc)
        assert refusal is not None, f"{component.name} refused {case}: {message}"
        assert refusal in message and component.name in message and "\n" not in message, message
        return
    assert refusal is None, f"{component.name} trained on {case}; expected it to refuse with '{refusal}'"
    assert result.results is not None and _Capture.lines
    for line in _Capture.lines:
        bad = {k: v for k, v in line.items() if isinstance(v, float) and not math.isfinite(v)}
        assert not bad, f"{component.name} on {case}: non-finite logged values {bad}"
        for key, value in line.items():
            low, high = RANGES.get(key.split(".")[0], (-math.inf, math.inf))
            assert low - 1e-6 <= value <= high + 1e-6, f"{component.name} on {case}: {key}={value} outside [{low}, {high}]"
    state = (Path(result.run_dir) / "checkpoints" / "last" / "state.json").read_text()
    assert "NaN" not in state and "Infinity" not in state, f"{component.name} on {case}: non-finite state"


def test_the_sweep_covers_every_kind_and_the_degenerate_data_is_degenerate() -> None:
    swept = {c.name for kind in ("imputer", "fusion", "balancer") for c in bundled(kind)}
    assert {"mmcore.zero", "mmcore.concat", "mmcore.uniform", "redcore.vib", "redcore.relative_advantage",
            "baselines.pmr", "baselines.pattern_dro"} <= swept
    assert all(name in swept for name, _ in REFUSALS), "a refusal names a component that is not registered"
    train = _ClassGap().split("train")
    assert len(train) > 0 and 1 not in train.target.tolist() and set(train.target.tolist()) == {0, 2}
    ids = Synthetic(**{k: v for k, v in DATASET.items() if k != "type"}).split("train").ids
    assert len(ids) == 84  # 83 + 1
    names, rates = ["m0", "m1", "m2"], {"m0": 0.3, "m1": 0.3, "m2": 0.3}
    assert not train_masks(MissingSpec(rates={**rates, "m1": 1.0}), names, ids, seed=0)[:, 1].any()
    empty = ~train_masks(MissingSpec(rates=dict.fromkeys(names, 0.6), min_present=0), names, ids, seed=0).any(1)
    assert 0.1 < float(empty.float().mean()) < 0.35  # about 0.6³ of the rows have no modality
