"""Mistakes plugin authors really make, one subtly broken component each: the contract suite must
fail on it with one line that says what to fix, or warn (``FutureWarning``) where the check is
new in this release and a plugin that passed before must keep passing; and mistakes the engine
does not care about must not fail it (the fusion head reading imputed latents, say). Encoders,
imputers and fusion heads here; balancers, datasets and what a run makes of two warned mistakes in
``test_contract_catches_runs.py``."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from mmcore.builtins.imputers import ZeroImputer
from mmcore.types import ImputerOutput, ModalitySpec
from mmcore.testing import check_encoder, check_fusion, check_imputer

from contract_helpers import fails, passes_quietly, warns


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


@pytest.mark.parametrize(
    "factory,fragment",
    [
        (Squeezes, "output shape (16,) for a batch of one"),
        (CentresOnTheBatch, "a row's output depends on other rows of the batch"),
        (BatchNormInTraining, "a batch of one row in training raises ValueError: Expected more than 1 value"),
        (LazyLayer, "parameters ['lin.weight', 'lin.bias'] appear only after the first forward"),
        (ScalesInPlace, "forward modifies its input x in place"),
        (Double, "output has dtype float64, expected float32"),
    ],
)
def test_broken_encoder_fails(factory: Any, fragment: str) -> None:
    fails(check_encoder, factory, fragment)


def test_encoder_with_batch_statistics_in_training_warns() -> None:
    message = warns(check_encoder, CentresInTraining, "in training a row's output depends on other rows")
    assert message.startswith("encoder 'CentresInTraining' (plugin local): ")


@pytest.mark.parametrize("factory", [DropoutAlwaysOn, RandInForward])
def test_encoder_random_in_eval(factory: Any) -> None:
    fails(check_encoder, factory, "eval mode is not deterministic")


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
    fails(check_encoder, LazyLinearEncoder, "['lin.weight', 'lin.bias'] are uninitialised after building (a Lazy module?)")


def test_fusion_with_parameters_created_in_forward() -> None:
    fails(check_fusion, LazyFusion, "parameters ['head.weight', 'head.bias'] appear only after the first forward")


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
    message = fails(check_encoder, LayersInAList, "eval outputs differ after a state_dict round trip")
    assert "(not in its state_dict: attributes ['layers']; register tensors as buffers, modules in nn.ModuleList)" in message
    with pytest.warns(FutureWarning, match=r"attributes \['layers'\] hold modules outside nn.ModuleList/nn.ModuleDict"):
        with pytest.raises(AssertionError):
            check_encoder(LayersInAList)


def test_encoder_that_clamps_its_input_in_place_warns() -> None:
    warns(check_encoder, ClampsInPlace, "forward modifies its input x in place")


def test_encoder_with_nan_on_an_all_zero_row_warns() -> None:
    """In a run (data.nonfinite: absent zero-fills a missing row) this stopped as 'training diverged: loss is nan'."""
    warns(check_encoder, UnitNorm, "an all-zero row (how absent rows arrive under data.nonfinite: absent) gives a non-finite")
    warns(check_encoder, UnitNormOfOutput, "an all-zero row gives non-finite gradients although its output is masked out")


def test_encoder_that_makes_tensors_on_the_cpu_warns() -> None:
    """Checked on the meta device where there is no GPU (shapes only), on the GPU where there is one."""
    device = "cuda" if torch.cuda.is_available() else "meta"
    warns(check_encoder, ZerosOnTheCpu, f"with its inputs on {device} it mixes devices")


def test_a_correct_encoder_passes_without_warnings() -> None:
    passes_quietly(check_encoder, Linear)


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
    warns(check_imputer, FillsInPlace, "forward modifies its input h in place (the engine hands the same h to balancers")


class DeclaresAnotherGroup(DetachedLoss):
    """Declares ``recon`` (what validate checks a balancer's target against) but returns ``rec``."""

    def forward(self, h: Tensor, present: Tensor) -> ImputerOutput:
        z = torch.where(present.unsqueeze(-1), h, self.fill.expand_as(h))
        return ImputerOutput(z=z, losses={"rec": (z - self.fill).square().mean(-1).mean(0)})


def test_imputer_returning_other_loss_groups_than_declared_warns() -> None:
    warns(check_imputer, DeclaresAnotherGroup, "declares loss_groups ['recon'] but returns ['rec']")


def test_imputer_with_nan_for_a_row_with_nothing_present_warns() -> None:
    warns(check_imputer, MeanOfPresent, "non-finite z in a row where every modality is absent (min_present: 0)")


def test_imputer_loss_without_gradient_warns() -> None:
    warns(check_imputer, DetachedLoss, "loss 'recon' carries no gradient")


def test_imputer_with_zero_loss_terms_passes_quietly() -> None:
    passes_quietly(check_imputer, ZeroLossTerms)


def test_imputer_state_kept_outside_the_state_dict() -> None:
    message = fails(check_imputer, UnregisteredRunningMean, "eval outputs differ after a state_dict round trip")
    assert "not in its state_dict: attributes ['mean']" in message


def test_imputer_that_transforms_present_latents_passes() -> None:
    passes_quietly(check_imputer, RefinesPresent)


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
    warns(check_fusion, ZeroesAbsentInPlace, "forward modifies its input z in place (the unimodal heads read z")


def test_fusion_with_a_class_too_many() -> None:
    fails(check_fusion, OneClassTooMany, "output shape (6, 4), expected (6, 3)")


def test_fusion_reading_imputed_latents_passes() -> None:
    """z at absent positions is the imputer's completion: the fusion head is meant to read it."""
    passes_quietly(check_fusion, Concat)


def test_fusion_with_nan_for_a_row_with_nothing_present_warns() -> None:
    warns(check_fusion, MeanOfPresentFusion, "non-finite output in a row where every modality is absent")
