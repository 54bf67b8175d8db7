"""The contract suite on every installed component, and on broken components it must reject."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from mmcore.builtins.balancers import Uniform
from mmcore.builtins.encoders import MLPEncoder, TransformerEncoder
from mmcore.builtins.imputers import ZeroImputer
from mmcore.builtins.synthetic import Synthetic
from mmcore.components import Balancer
from mmcore.plugins import get_registry
from mmcore.registry import Registry
from mmcore.testing import (
    ContractSkip,
    check_balancer,
    check_dataset,
    check_encoder,
    check_fusion,
    check_imputer,
    contract_cases,
    option_sets,
    run_contract,
)
from mmcore.types import ImputerOutput, ModalitySpec

CASES = contract_cases(get_registry())


@pytest.mark.parametrize("kind,name", CASES, ids=[f"{k}:{n}" for k, n in CASES])
def test_registered_component_meets_contract(kind: str, name: str) -> None:
    try:
        run_contract(get_registry(), kind, name)
    except ContractSkip as skip:  # e.g. a corpus that needs a data path: reported, not hidden
        pytest.skip(str(skip))


def test_cases_cover_the_builtins_and_filter_by_origin() -> None:
    builtin = set(contract_cases(get_registry(), origin="mmcore"))
    assert builtin - {c for c in builtin if c[0] == "logger"} == {
        ("dataset", "mmcore.synthetic"),
        ("encoder", "mmcore.mlp"),
        ("encoder", "mmcore.transformer"),
        ("encoder", "mmcore.lstm"),
        ("encoder", "mmcore.textcnn"),
        ("imputer", "mmcore.zero"),
        ("fusion", "mmcore.concat"),
        ("balancer", "mmcore.uniform"),
    }
    assert builtin <= set(CASES)


def test_cases_of_a_missing_or_skipped_plugin_fail_instead_of_passing_vacuously() -> None:
    with pytest.raises(AssertionError, match="plugin 'no-such-plugin' registered no components"):
        contract_cases(get_registry(), origin="no-such-plugin")
    registry = Registry()
    registry.failed["broken"] = "failed to load: ImportError: no module named torchvision"
    with pytest.raises(AssertionError, match="plugin 'broken' was skipped.*ImportError: no module named torchvision"):
        contract_cases(registry, origin="broken")


def test_run_contract_rejects_unknown_kind() -> None:
    with pytest.raises(AssertionError, match="unknown component kind 'decoder'"):
        run_contract(get_registry(), "decoder", "mmcore.mlp")


# ------------------------------------------------------------------ broken encoders


class WrongWidth(nn.Module):
    def __init__(self, spec: ModalitySpec, dim: int) -> None:
        super().__init__()
        self.lin = nn.Linear(spec.dim, dim + 1)

    def forward(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        return self.lin(x if x.dim() == 2 else x.mean(1))


class MeanOverPadding(WrongWidth):
    """Averages padded frames too: the bug RedCore's reference encoder has."""

    def __init__(self, spec: ModalitySpec, dim: int) -> None:
        nn.Module.__init__(self)
        self.lin = nn.Linear(spec.dim, dim)


class NanOnEmpty(MeanOverPadding):
    def forward(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        if x.dim() == 2:
            return self.lin(x)
        return self.lin(x.sum(1) / lengths.unsqueeze(1))  # 0/0 for a length-0 row


class UnsavedBuffer(MeanOverPadding):
    """A random projection kept out of the state_dict: a checkpoint cannot restore it."""

    def __init__(self, spec: ModalitySpec, dim: int) -> None:
        super().__init__(spec, dim)
        self.register_buffer("proj", torch.randn(dim, dim), persistent=False)

    contract_modalities = ("vector",)

    def forward(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        return self.lin(x) @ self.proj


class Detached(UnsavedBuffer):
    """Gradients never reach the weights."""

    def forward(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        return self.lin(x).detach()


@pytest.mark.parametrize(
    "factory,message",
    [
        (WrongWidth, "output shape"),
        (Detached, "not connected to the module's parameters"),
        (MeanOverPadding, "extra zero padding past lengths changes the output"),
        (NanOnEmpty, "a row of length 0 gives a non-finite output"),
        (UnsavedBuffer, "eval outputs differ after a state_dict round trip"),
    ],
)
def test_check_encoder_rejects(factory: Any, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_encoder(factory)


# ------------------------------------------------------------------ broken imputers


class LeakyImputer(ZeroImputer):
    """Present latents shifted by the mean of all rows, absent ones included: a leak."""

    def forward(self, h: Tensor, present: Tensor) -> ImputerOutput:
        return ImputerOutput(z=h + h.mean(dim=1, keepdim=True))


class NanLossImputer(ZeroImputer):
    """Mean squared latent over present samples: 0/0 for a modality absent from the batch."""

    def forward(self, h: Tensor, present: Tensor) -> ImputerOutput:
        per_m = (h.square().sum(-1) * present).sum(0) / present.sum(0)
        return ImputerOutput(z=h, losses={"recon": per_m})


class BatchMixer(ZeroImputer):
    """Shifts every row by the batch's presence rates, so a row's z depends on its neighbours."""

    def forward(self, h: Tensor, present: Tensor) -> ImputerOutput:
        return ImputerOutput(z=h + present.float().mean(dim=0)[None, :, None])


class NoisyEval(ZeroImputer):
    def forward(self, h: Tensor, present: Tensor) -> ImputerOutput:
        return ImputerOutput(z=h + torch.randn_like(h))


class ScalarLoss(ZeroImputer):
    def forward(self, h: Tensor, present: Tensor) -> ImputerOutput:
        return ImputerOutput(z=h, losses={"kl": h.square().mean()})


@pytest.mark.parametrize(
    "factory,message",
    [
        (LeakyImputer, "depends on the h rows of absent modalities"),
        (NanLossImputer, "loss 'recon' is not finite"),
        (BatchMixer, "depends on other rows of the batch"),
        (NoisyEval, "eval mode is not deterministic"),
        (ScalarLoss, r"loss 'kl' has shape \(\)"),
    ],
)
def test_check_imputer_rejects(factory: Any, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_imputer(factory)


def test_check_fusion_rejects_a_fixed_width_head() -> None:
    def fixed_width(specs: list[ModalitySpec], dim: int, out_dim: int) -> nn.Module:
        return nn.Sequential(nn.Flatten(), nn.Linear(len(specs) * dim, 3))

    class Wrap(nn.Module):
        def __init__(self, specs: list[ModalitySpec], dim: int, out_dim: int) -> None:
            super().__init__()
            self.net = fixed_width(specs, dim, out_dim)

        def forward(self, z: Tensor, present: Tensor) -> Tensor:
            return self.net(z)

    with pytest.raises(AssertionError, match=r"out_dim=1"):
        check_fusion(Wrap)


# ------------------------------------------------------------------ broken balancers


class TensorState(Uniform):
    def state_dict(self) -> dict[str, Any]:
        return {"w": torch.ones(3)}


class Forgetful(Balancer):
    """Counts steps but does not restore the count."""

    def __init__(self, modalities: list[str]) -> None:
        super().__init__(modalities)
        self.seen = 0

    def observe(self, stats: Any) -> None:
        self.seen += 1

    def weights(self) -> Tensor:
        return torch.full((len(self.modalities),), float(self.seen))

    def state_dict(self) -> dict[str, Any]:
        return {"seen": self.seen}


class NegativeWeights(Uniform):
    def weights(self) -> Tensor:
        return -super().weights()


@pytest.mark.parametrize(
    "factory,message",
    [
        (TensorState, "not JSON-serialisable"),
        (Forgetful, "weights differ after load_state_dict"),
        (NegativeWeights, "weights must be finite and >= 0"),
        (lambda modalities: {"weights": [1.0] * len(modalities)}, "returned dict, not an mmcore.Balancer"),
    ],
)
def test_check_balancer_rejects(factory: Any, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_balancer(factory)


# ------------------------------------------------------------------ broken datasets and options


class DuplicateIds(Synthetic):
    contract_options = {"samples": 40, "classes": 2, "dim": 3}

    def split(self, name: str) -> Any:
        data = super().split(name)
        data.ids = torch.arange(len(data))  # restarts at 0 in every split
        return data


class DirtyPadding(Synthetic):
    contract_options = {"samples": 40, "classes": 2, "dim": 3, "sequence": True, "max_len": 6}

    def split(self, name: str) -> Any:
        data = super().split(name)
        data.features["m0"] = data.features["m0"] + 1.0
        return data


LATENT_OPTIONS = {"samples": 60, "classes": 3, "dim": 4, "tau": 1.0}


class OracleMissingRows(Synthetic):
    contract_options = LATENT_OPTIONS

    def oracle(self, split: Any, masks: dict) -> Any:
        return {"full": {"accuracy": 0.9}}


class OracleOutOfRange(Synthetic):
    contract_options = LATENT_OPTIONS

    def oracle(self, split: Any, masks: dict) -> Any:
        return {name: {"accuracy": 1.5} for name in masks}


class OracleInverted(Synthetic):
    contract_options = LATENT_OPTIONS

    def oracle(self, split: Any, masks: dict) -> Any:
        table = super().oracle(split, masks)
        return {"full": table["first"], "first": table["full"]}


@pytest.mark.parametrize(
    "factory,message",
    [
        (DuplicateIds, "ids are not unique"),
        (DirtyPadding, "is not zero past its lengths"),
        (OracleMissingRows, "one row per condition given"),
        (OracleOutOfRange, "accuracy = 1.5 is out of range"),
        (OracleInverted, "ceiling with every modality is worse"),
    ],
)
def test_check_dataset_rejects(factory: Any, message: str) -> None:
    with pytest.raises(AssertionError, match=message):
        check_dataset(factory)


def test_check_dataset_rejects_seed_dependent_data() -> None:
    def unstable(samples: int = 40) -> Synthetic:
        return Synthetic(samples=samples, classes=2, dim=3, seed=int(torch.randint(0, 1000, ())))

    with pytest.raises(AssertionError, match="building twice"):
        check_dataset(unstable)


def test_required_option_without_contract_options_skips() -> None:
    def needs_path(path: str, scale: float = 1.0) -> Synthetic:
        return Synthetic()

    with pytest.raises(ContractSkip, match=r"needs options \['path'\]"):
        check_dataset(needs_path)
    needs_path.contract_options = lambda: {"path": "unused"}  # type: ignore[attr-defined]
    assert option_sets(get_registry().get("dataset", "mmcore.synthetic")) == Synthetic.contract_options
    registry = Registry()
    component = registry.register("dataset", "test.path", needs_path, origin="test")
    assert option_sets(component) == [{"path": "unused"}]


def test_every_contract_option_set_is_built() -> None:
    built: list[dict[str, Any]] = []

    def recording(spec: ModalitySpec, dim: int, layers: list[int] = [4]) -> nn.Module:  # noqa: B006
        built.append({"spec": spec.sequence, "layers": layers})
        return MLPEncoder(spec, dim, layers=layers)

    recording.contract_options = [{"layers": [3]}, {"layers": []}]  # type: ignore[attr-defined]
    check_encoder(recording)
    assert {(b["spec"], tuple(b["layers"])) for b in built} == {
        (False, (3,)), (True, (3,)), (False, ()), (True, ())
    }


def test_bad_build_is_reported_with_its_options() -> None:
    with pytest.raises(AssertionError, match=r"layers.0: expected int >= 1, got int 0 \(vector modality, options \{'layers': \[0\]\}\)"):
        check_encoder(MLPEncoder, options={"layers": [0]})
    with pytest.raises(AssertionError, match=r"building with options \{'heads': 3\} failed: MMCoreError: .*divisible by heads=3"):
        check_encoder(TransformerEncoder, options={"heads": 3})


# ------------------------------------------------------------------ rules added with the kinds table


class FillsFromAbsentRows(nn.Module):
    """Fills absent positions with the (supposedly zeroed) absent rows themselves plus a bias."""

    def __init__(self, specs: list[ModalitySpec], dim: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, h: Tensor, present: Tensor) -> ImputerOutput:
        return ImputerOutput(z=torch.where(present.unsqueeze(-1), h, h + self.bias), losses={})


def test_check_imputer_rejects_reading_absent_rows_for_absent_positions() -> None:
    with pytest.raises(AssertionError, match="z at absent positions is computed from the h rows of absent modalities"):
        check_imputer(FillsFromAbsentRows)


def test_check_dataset_rejects_float64_features() -> None:
    class Doubles(Synthetic):
        def split(self, name: str):
            s = super().split(name)
            return type(s)({k: v.double() for k, v in s.features.items()}, s.lengths, s.target, s.ids)

    with pytest.raises(AssertionError, match=r"modality 'm0': torch.float64 \(\d+, 4\), expected torch.float32"):
        check_dataset(Doubles, options={"modalities": 2, "classes": 3, "samples": 60, "dim": 4})
