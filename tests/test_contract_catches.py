"""Mistakes plugin authors really make, one subtly broken component each: the contract suite must
fail on it with one line that says what to fix, or warn (``FutureWarning``) where the check is
new in this release and a plugin that passed before must keep passing; and mistakes the engine
does not care about must not fail it (the fusion head reading imputed latents, say)."""

from __future__ import annotations

import json
import warnings
from typing import Any

import pytest
import torch
from torch import Tensor, nn

from mmcore import hookimpl
from mmcore.builtins.balancers import Uniform
from mmcore.builtins.imputers import ZeroImputer
from mmcore.builtins.synthetic import Synthetic
from mmcore.components import Balancer
from mmcore.engine.trainer import run
from mmcore.plugins import load_plugins
from mmcore.recipe import apply_overrides, validate_recipe
from mmcore.types import ImputerOutput, ModalitySpec
from mmcore.testing import check_balancer, check_dataset, check_encoder, check_fusion, check_imputer, tiny_recipe


def _fails(check: Any, factory: Any, fragment: str) -> str:
    """Run ``check`` on ``factory`` expecting an AssertionError whose one-line message has ``fragment``."""
    with pytest.raises(AssertionError) as info, warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # a warned rule it also breaks is beside the point
        check(factory)
    message = str(info.value)
    assert fragment in message, message
    assert "\n" not in message, message
    return message


def _warns(check: Any, factory: Any, fragment: str) -> str:
    """Run ``check`` on ``factory`` expecting it to pass with a FutureWarning that has ``fragment``."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check(factory)
    messages = [str(w.message) for w in caught if issubclass(w.category, FutureWarning)]
    hits = [m for m in messages if fragment in m]
    assert hits, messages
    assert "\n" not in hits[0] and "a later version of the contract suite will fail on it" in hits[0], hits[0]
    return hits[0]


def _passes_quietly(check: Any, factory: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        check(factory)


# ---------------------------------------------------------------------------------------- encoders


class Linear(nn.Module):
    """A correct vector encoder the broken ones below change in one place."""

    contract_modalities = ("vector",)

    def __init__(self, spec: ModalitySpec, dim: int) -> None:
        super().__init__()
        self.lin = nn.Linear(spec.dim, dim)

    def forward(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        return self.lin(x)


class Squeezes(Linear):
    def forward(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        return self.lin(x).squeeze()  # [dim] for a batch of one


class CentresOnTheBatch(Linear):
    def forward(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        out = self.lin(x)
        return out - out.mean(0, keepdim=True)


class BatchNormInTraining(Linear):
    """BatchNorm: row-wise in eval mode (running statistics), batch statistics in training."""

    def __init__(self, spec: ModalitySpec, dim: int) -> None:
        super().__init__(spec, dim)
        self.norm = nn.BatchNorm1d(dim)

    def forward(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        return self.norm(self.lin(x))


class CentresInTraining(Linear):
    """Batch statistics in training, running ones in eval mode, as BatchNorm (which also fails on one row)."""

    def forward(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        out = self.lin(x)
        return out - out.mean(0, keepdim=True) if self.training else out


class DropoutAlwaysOn(Linear):
    def forward(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        return nn.functional.dropout(self.lin(x), 0.5, training=True)


class RandInForward(Linear):
    def forward(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        return self.lin(x) + 0.01 * torch.rand(x.shape[0], 1)


class LazyLayer(nn.Module):
    """Creates its layer on the first forward, after the optimizer has taken the parameters."""

    contract_modalities = ("vector",)

    def __init__(self, spec: ModalitySpec, dim: int) -> None:
        super().__init__()
        self.dim, self.lin = dim, None

    def forward(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        if self.lin is None:
            self.lin = nn.Linear(x.shape[-1], self.dim)
        return self.lin(x)


class ScalesInPlace(Linear):
    """Normalises its input in place: evaluation hands encoders views of the split."""

    def forward(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        return self.lin(x.mul_(0.5))


class ClampsInPlace(Linear):
    """An idempotent in-place change: the same output each call, but the caller's data changed."""

    def forward(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        return self.lin(x.clamp_(-1.0, 1.0))


class UnitNorm(Linear):
    """Normalises its input: 0/0 on the all-zero rows that absent rows are filled with."""

    def forward(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        return self.lin(x / x.norm(dim=-1, keepdim=True))


class UnitNormOfOutput(Linear):
    """Normalises its output: NaN only for the masked row, yet NaN gradients for every weight."""

    def forward(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        out = self.lin(x) - self.lin.bias
        return out / out.norm(dim=-1, keepdim=True)


class ZerosOnTheCpu(Linear):
    """Adds a tensor made without ``device=``: fine on a CPU, an error on a GPU."""

    def forward(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        return self.lin(x) + torch.zeros(x.shape[0], self.lin.out_features)


class Double(Linear):
    def forward(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        return self.lin(x).double()


def test_encoder_squeezed_at_batch_one() -> None:
    _fails(check_encoder, Squeezes, "output shape (16,) for a batch of one")


def test_encoder_that_centres_on_its_batch() -> None:
    _fails(check_encoder, CentresOnTheBatch, "a row's output depends on other rows of the batch")


def test_encoder_with_batch_norm_fails_on_a_batch_of_one() -> None:
    _fails(check_encoder, BatchNormInTraining, "a batch of one row in training raises ValueError: Expected more than 1 value")


def test_encoder_with_batch_statistics_in_training_warns() -> None:
    message = _warns(check_encoder, CentresInTraining, "in training a row's output depends on other rows")
    assert message.startswith("encoder 'CentresInTraining' (plugin local): ")


@pytest.mark.parametrize("factory", [DropoutAlwaysOn, RandInForward])
def test_encoder_random_in_eval(factory: Any) -> None:
    _fails(check_encoder, factory, "eval mode is not deterministic")


def test_encoder_with_parameters_created_in_forward() -> None:
    _fails(check_encoder, LazyLayer, "parameters ['lin.weight', 'lin.bias'] appear only after the first forward")


class LazyLinearEncoder(Linear):
    """torch's own lazy layer: the engine refuses to build a model with it."""

    def __init__(self, spec: ModalitySpec, dim: int) -> None:
        nn.Module.__init__(self)
        self.lin = nn.LazyLinear(dim)


class LazyFusion(nn.Module):
    def __init__(self, specs: list[ModalitySpec], dim: int, out_dim: int) -> None:
        super().__init__()
        self.out_dim, self.head = out_dim, None

    def forward(self, z: Tensor, present: Tensor) -> Tensor:
        if self.head is None:
            self.head = nn.Linear(z.shape[1] * z.shape[2], self.out_dim)
        return self.head(z.flatten(1))


def test_encoder_with_a_lazy_torch_layer() -> None:
    """Before, the suite passed it and a run failed to build the model."""
    _fails(check_encoder, LazyLinearEncoder, "['lin.weight', 'lin.bias'] are uninitialised after building (a Lazy module?)")


def test_fusion_with_parameters_created_in_forward() -> None:
    _fails(check_fusion, LazyFusion, "parameters ['head.weight', 'head.bias'] appear only after the first forward")


class LayersInAList(nn.Module):
    """Keeps its layers in a plain list: parameters(), state_dict() and to() do not see them."""

    contract_modalities = ("vector",)

    def __init__(self, spec: ModalitySpec, dim: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(dim))
        self.layers = [nn.Linear(spec.dim, dim), nn.Tanh()]

    def forward(self, x: Tensor, lengths: Tensor | None) -> Tensor:
        for layer in self.layers:
            x = layer(x)
        return x + self.bias


def test_encoder_with_layers_in_a_plain_list() -> None:
    """Warned as soon as it is built (a layer that never trains), then failed by the round trip."""
    message = _fails(check_encoder, LayersInAList, "eval outputs differ after a state_dict round trip")
    assert "(not in its state_dict: attributes ['layers']; register tensors as buffers, modules in nn.ModuleList)" in message
    with pytest.warns(FutureWarning, match=r"attributes \['layers'\] hold modules outside nn.ModuleList/nn.ModuleDict"):
        with pytest.raises(AssertionError):
            check_encoder(LayersInAList)


def test_encoder_that_scales_its_input_in_place() -> None:
    _fails(check_encoder, ScalesInPlace, "forward modifies its input x in place")


def test_encoder_that_clamps_its_input_in_place_warns() -> None:
    _warns(check_encoder, ClampsInPlace, "forward modifies its input x in place")


def test_encoder_with_nan_on_an_all_zero_row_warns() -> None:
    """In a run (data.nonfinite: absent zero-fills a missing row) this stopped as 'training diverged: loss is nan'."""
    _warns(check_encoder, UnitNorm, "an all-zero row (how absent rows arrive under data.nonfinite: absent) gives a non-finite")
    _warns(check_encoder, UnitNormOfOutput, "an all-zero row gives non-finite gradients although its output is masked out")


def test_encoder_that_makes_tensors_on_the_cpu_warns() -> None:
    """Checked on the meta device where there is no GPU (shapes only), on the GPU where there is one."""
    device = "cuda" if torch.cuda.is_available() else "meta"
    _warns(check_encoder, ZerosOnTheCpu, f"with its inputs on {device} it mixes devices")


def test_encoder_returning_float64() -> None:
    _fails(check_encoder, Double, "output has dtype float64, expected float32")


def test_a_correct_encoder_passes_without_warnings() -> None:
    _passes_quietly(check_encoder, Linear)


# ---------------------------------------------------------------------------------------- imputers


class MeanOfPresent(ZeroImputer):
    """Fills absent positions with the mean of the row's present latents: 0/0 in a row with none."""

    def forward(self, h: Tensor, present: Tensor) -> ImputerOutput:
        keep = present.unsqueeze(-1).float()
        mean = (h * keep).sum(1, keepdim=True) / keep.sum(1, keepdim=True)
        return ImputerOutput(z=torch.where(present.unsqueeze(-1), h, mean.expand_as(h)))


class DetachedLoss(nn.Module):
    """A reconstruction term computed on detached latents: logged and weighed, trains nothing."""

    loss_groups = ("recon",)

    def __init__(self, specs: list[ModalitySpec], dim: int) -> None:
        super().__init__()
        self.fill = nn.Parameter(torch.randn(len(specs), dim))

    def forward(self, h: Tensor, present: Tensor) -> ImputerOutput:
        z = torch.where(present.unsqueeze(-1), h, self.fill.expand_as(h))
        with torch.no_grad():  # meant for logging only, then put in losses
            err = (z - self.fill).square().mean(-1) * present
        return ImputerOutput(z=z, losses={"recon": err.sum(0) / present.sum(0).clamp(min=1)})


class ZeroLossTerms(DetachedLoss):
    """A group switched off by its weight: constant zeros are fine."""

    def forward(self, h: Tensor, present: Tensor) -> ImputerOutput:
        out = super().forward(h, present)
        return ImputerOutput(z=out.z, losses={"recon": h.new_zeros(h.shape[1])})


class UnregisteredRunningMean(ZeroImputer):
    """Fills absent positions with a running mean kept as a plain attribute, not a buffer."""

    def __init__(self, specs: list[ModalitySpec], dim: int) -> None:
        super().__init__(specs, dim)
        self.scale = nn.Parameter(torch.ones(()))
        self.mean = torch.zeros(len(specs), dim)

    def forward(self, h: Tensor, present: Tensor) -> ImputerOutput:
        if self.training:
            seen = present.sum(0).clamp(min=1).unsqueeze(-1)
            self.mean = 0.9 * self.mean + 0.1 * (h.detach() * present.unsqueeze(-1)).sum(0) / seen
        z = torch.where(present.unsqueeze(-1), h * self.scale, self.mean.expand_as(h))
        return ImputerOutput(z=z)


class RefinesPresent(ZeroImputer):
    """Maps present latents through a layer too: allowed (z is the imputer's completed latent)."""

    def __init__(self, specs: list[ModalitySpec], dim: int) -> None:
        super().__init__(specs, dim)
        self.lin = nn.Linear(dim, dim)

    def forward(self, h: Tensor, present: Tensor) -> ImputerOutput:
        return ImputerOutput(z=torch.where(present.unsqueeze(-1), self.lin(h), torch.zeros(())))


class FillsInPlace(nn.Module):
    """Writes a learnt token into the absent rows of h itself: works in a run, same numbers as
    with torch.where; the suite used to fail it with torch's 'leaf Variable ... in-place' error."""

    def __init__(self, specs: list[ModalitySpec], dim: int) -> None:
        super().__init__()
        self.token = nn.Parameter(torch.randn(len(specs), dim))

    def forward(self, h: Tensor, present: Tensor) -> ImputerOutput:
        h[~present] = self.token.expand(h.shape[0], -1, -1)[~present]
        return ImputerOutput(z=h)


def test_imputer_that_fills_h_in_place_warns_instead_of_a_torch_error() -> None:
    _warns(check_imputer, FillsInPlace, "forward modifies its input h in place (the engine hands the same h to balancers")


class DeclaresAnotherGroup(DetachedLoss):
    """Declares ``recon`` (what validate checks a balancer's target against) but returns ``rec``."""

    def forward(self, h: Tensor, present: Tensor) -> ImputerOutput:
        z = torch.where(present.unsqueeze(-1), h, self.fill.expand_as(h))
        return ImputerOutput(z=z, losses={"rec": (z - self.fill).square().mean(-1).mean(0)})


def test_imputer_returning_other_loss_groups_than_declared_warns() -> None:
    _warns(check_imputer, DeclaresAnotherGroup, "declares loss_groups ['recon'] but returns ['rec']")


def test_imputer_with_nan_for_a_row_with_nothing_present_warns() -> None:
    _warns(check_imputer, MeanOfPresent, "non-finite z in a row where every modality is absent (min_present: 0)")


def test_imputer_loss_without_gradient_warns() -> None:
    _warns(check_imputer, DetachedLoss, "loss 'recon' carries no gradient")


def test_imputer_with_zero_loss_terms_passes_quietly() -> None:
    _passes_quietly(check_imputer, ZeroLossTerms)


def test_imputer_state_kept_outside_the_state_dict() -> None:
    message = _fails(check_imputer, UnregisteredRunningMean, "eval outputs differ after a state_dict round trip")
    assert "not in its state_dict: attributes ['mean']" in message


def test_imputer_that_transforms_present_latents_passes() -> None:
    _passes_quietly(check_imputer, RefinesPresent)


# ---------------------------------------------------------------------------------------- fusions


class Concat(nn.Module):
    def __init__(self, specs: list[ModalitySpec], dim: int, out_dim: int) -> None:
        super().__init__()
        self.lin = nn.Linear(len(specs) * dim, out_dim)

    def forward(self, z: Tensor, present: Tensor) -> Tensor:
        return self.lin(z.flatten(1))


class OneClassTooMany(Concat):
    def __init__(self, specs: list[ModalitySpec], dim: int, out_dim: int) -> None:
        super().__init__(specs, dim, out_dim + 1)


class MeanOfPresentFusion(Concat):
    """Averages the present latents only: 0/0 in a row with none."""

    def __init__(self, specs: list[ModalitySpec], dim: int, out_dim: int) -> None:
        nn.Module.__init__(self)
        self.lin = nn.Linear(dim, out_dim)

    def forward(self, z: Tensor, present: Tensor) -> Tensor:
        keep = present.unsqueeze(-1).float()
        return self.lin((z * keep).sum(1) / keep.sum(1))


class ZeroesAbsentInPlace(Concat):
    def forward(self, z: Tensor, present: Tensor) -> Tensor:
        z[~present] = 0.0
        return super().forward(z, present)


def test_fusion_that_zeroes_z_in_place_warns() -> None:
    _warns(check_fusion, ZeroesAbsentInPlace, "forward modifies its input z in place (the unimodal heads read z")


def test_fusion_with_a_class_too_many() -> None:
    _fails(check_fusion, OneClassTooMany, "output shape (6, 4), expected (6, 3)")


def test_fusion_reading_imputed_latents_passes() -> None:
    """z at absent positions is the imputer's completion: the fusion head is meant to read it."""
    _passes_quietly(check_fusion, Concat)


def test_fusion_with_nan_for_a_row_with_nothing_present_warns() -> None:
    _warns(check_fusion, MeanOfPresentFusion, "non-finite output in a row where every modality is absent")


# ---------------------------------------------------------------------------------------- balancers


class InverseLoss(Balancer):
    """Weights 1 / running mean loss, a common pattern; correct as written."""

    def __init__(self, modalities: list[str], target: str = "recon") -> None:
        super().__init__(modalities, target=target)
        self.avg = torch.ones(len(modalities))

    def to(self, device: torch.device | str) -> "InverseLoss":
        super().to(device)
        self.avg = self.avg.to(self.device)
        return self

    def observe(self, stats: Any) -> None:
        seen = stats.present_counts > 0
        self.avg = torch.where(seen, 0.9 * self.avg + 0.1 * stats.losses[self.target], self.avg)

    def weights(self) -> Tensor:
        return 1.0 / self.avg

    def state_dict(self) -> dict[str, Any]:
        return {"avg": self.avg.tolist()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.avg = torch.tensor(state["avg"], dtype=torch.float32, device=self.device)


class LoadsOnTheCpu(InverseLoss):
    """Restores its state on the CPU: a resume on a GPU stops at the first step."""

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.avg = torch.tensor(state["avg"], dtype=torch.float32)


class NeverMoves(InverseLoss):
    """Forgets to move its tensors in to()."""

    def to(self, device: torch.device | str) -> "InverseLoss":
        return Balancer.to(self, device)


class NanForAnAbsentModality(InverseLoss):
    def observe(self, stats: Any) -> None:
        self.avg = 0.9 * self.avg + 0.1 * stats.losses[self.target] / stats.present_counts * stats.present_counts


class RoundsItsState(InverseLoss):
    def state_dict(self) -> dict[str, Any]:
        return {"avg": [round(v, 3) for v in self.avg.tolist()]}


class FloorsTheLosses(InverseLoss):
    """Clamps the losses it receives in place: the engine logs those tensors after observe()."""

    def observe(self, stats: Any) -> None:
        stats.losses[self.target].clamp_(min=0.3)
        super().observe(stats)


class DoublesTheLosses(InverseLoss):
    """Rescales the losses it receives in place, a change that compounds if stats were reused."""

    def observe(self, stats: Any) -> None:
        stats.losses[self.target].mul_(2.0)
        super().observe(stats)


class OneWeight(InverseLoss):
    def weights(self) -> Tensor:
        return self.avg.mean().reshape(1)


@pytest.mark.parametrize(
    "factory,fragment",
    [
        (NanForAnAbsentModality, "weights must be finite and >= 0, got ["),
        (RoundsItsState, "weights differ after load_state_dict"),
        (OneWeight, "weights() shape (1,), expected (3,)"),
    ],
)
def test_broken_balancer_fails(factory: Any, fragment: str) -> None:
    _fails(check_balancer, factory, fragment)


@pytest.mark.parametrize("factory", [FloorsTheLosses, DoublesTheLosses])
def test_balancer_that_changes_the_stats_it_receives_warns(factory: Any) -> None:
    """A warning naming the field, not a resume failure: the engine hands each observe() new stats."""
    message = _warns(check_balancer, factory, "observe(stats) modifies stats.losses['recon'] in place")
    assert message.startswith(f"balancer '{factory.__qualname__}' (plugin local): ")


@pytest.mark.parametrize("factory", [LoadsOnTheCpu, NeverMoves])
def test_balancer_whose_state_stays_on_the_cpu_warns(factory: Any) -> None:
    """The engine moves a balancer with to(device), then loads a checkpoint's state into it."""
    _warns(check_balancer, factory, "(then given load_state_dict(), as on resuming) it returns a tensor on cpu; weights() must be")


def test_a_correct_balancer_passes_without_warnings() -> None:
    _passes_quietly(check_balancer, InverseLoss)


# ---------------------------------------------------------------------------------------- datasets


SMALL = {"modalities": 2, "classes": 3, "samples": 60, "dim": 4}


class RepeatsIds(Synthetic):
    """Ids unique across splits but repeated inside one (a row id column read twice)."""

    contract_options = SMALL

    def split(self, name: str) -> Any:
        data = super().split(name)
        ids = data.ids.clone()
        ids[1] = ids[0]
        return type(data)(data.features, data.lengths, data.target, ids)


class ShufflesUnseeded(Synthetic):
    """Shuffles rows with Python's own random module, which torch.manual_seed does not seed."""

    contract_options = SMALL

    def split(self, name: str) -> Any:
        import random

        data = super().split(name)
        order = torch.tensor(random.sample(range(len(data)), len(data)))
        return type(data)({k: v[order] for k, v in data.features.items()}, data.lengths, data.target[order], data.ids[order])


class OneBasedLabels(Synthetic):
    contract_options = SMALL

    def split(self, name: str) -> Any:
        data = super().split(name)
        return type(data)(data.features, data.lengths, data.target + 1, data.ids)


def describes_too_few_classes(modalities: int = 2, classes: int = 3, samples: int = 60, dim: int = 4) -> Synthetic:
    return Synthetic(modalities=modalities, classes=classes, samples=samples, dim=dim)


def _one_class_short(modalities: int = 2, classes: int = 3, samples: int = 60, dim: int = 4) -> Any:
    return Synthetic.describe(modalities=modalities, classes=classes - 1, dim=dim)


describes_too_few_classes.describe = _one_class_short  # type: ignore[attr-defined]


def test_dataset_with_an_id_repeated_inside_a_split() -> None:
    _fails(check_dataset, RepeatsIds, "sample ids are not unique")


def test_dataset_that_shuffles_differently_each_build() -> None:
    _fails(check_dataset, ShufflesUnseeded, "building twice gives different train tensors")


def test_dataset_with_labels_from_one() -> None:
    _fails(check_dataset, OneBasedLabels, "targets must be int64 class indices in [0, 3)")


def test_dataset_whose_describe_disagrees_warns() -> None:
    _warns(check_dataset, describes_too_few_classes, "describe")


# ------------------------------------------------------------------------- what a run makes of it


class FillsWithWhere(FillsInPlace):
    def forward(self, h: Tensor, present: Tensor) -> ImputerOutput:
        return ImputerOutput(z=torch.where(present.unsqueeze(-1), h, self.token.expand_as(h)))


def test_writing_into_h_in_place_changes_no_number_of_a_run(tmp_path: Any) -> None:
    """Why the suite warns about ``FillsInPlace`` instead of failing it: a run's results and
    weights are those of the same imputer written with ``torch.where``."""
    from safetensors.torch import load_file

    from mmcore import hookimpl
    from mmcore.engine.trainer import run
    from mmcore.plugins import load_plugins
    from mmcore.recipe import validate_recipe
    from mmcore.testing import tiny_recipe

    class Plugin:
        @hookimpl
        def register_imputers(self, register: Any) -> None:
            register("tcc.inplace", FillsInPlace)
            register("tcc.where", FillsWithWhere)

    plugins = load_plugins(extra={"tcc": Plugin()})
    results, weights = [], []
    for name in ("tcc.inplace", "tcc.where"):
        tree = tiny_recipe(tmp_path / name, "train.epochs=1")
        tree["model"]["imputer"] = {"type": name}
        done = run(validate_recipe(tree, plugins.registry, "test"), plugins=plugins, show_progress=False)
        results.append(done.results)
        weights.append(load_file(str(done.run_dir / "checkpoints" / "last" / "model.safetensors")))
    assert results[0] and results[0] == results[1]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


class ZeroesWhatItObserves(Uniform):
    """Uniform weights, but observe() zeroes the step's losses in place."""

    def observe(self, stats: Any) -> None:
        for losses in stats.losses.values():
            losses.zero_()


class ZeroingPlugin:
    @hookimpl
    def register_balancers(self, register: Any) -> None:
        register("zeroing.uniform", ZeroesWhatItObserves)


def test_a_run_logs_the_losses_before_a_balancer_changes_them(tmp_path: Any) -> None:
    """The warning above aside, a run's metrics.jsonl is what the step computed (it was logged after observe())."""
    plugins = load_plugins(entry_points=[], extra={"zeroing": ZeroingPlugin()})
    logged = []
    for balancer in ("mmcore.uniform", "zeroing.uniform"):
        recipe = validate_recipe(apply_overrides(tiny_recipe(tmp_path / balancer), [f"balancer={balancer}"]), plugins.registry, "test")
        done = run(recipe, plugins=plugins, show_progress=False)
        lines = [json.loads(x) for x in (done.run_dir / "metrics.jsonl").read_text().splitlines()]
        logged.append([{k: v for k, v in line.items() if k in ("loss", "task_loss") or k.startswith("unimodal.")}
                       for line in lines if "loss" in line])
    assert logged[0] == logged[1]  # before: every unimodal.<m> of the zeroing run was 0.0
    assert all(line["unimodal.m0"] > 0 for line in logged[1])
