"""What the engine accepts back from a plugin's component, checked where it is received.

A third-party encoder that returns ``[B, d+1]``, an imputer whose loss terms are ``[M, 1]`` or
a fusion head with one class too many used to surface as a traceback from ``torch.stack`` or the
loss, or worse, to train on broadcast numbers without an error. Each check here is on shapes,
dtypes and devices only (no host sync, so every step can afford it) and raises ``BadOutput``,
which names the module; the caller (``mmcore.engine.blame``) turns that into one line with the
component's registered name and plugin.

Values (NaN, negative weights) need a host read: the trainer checks them once on the first
step and at logging steps (``first_nonfinite``, ``weights_value_problem``).
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import torch
from torch import Tensor

from mmcore.errors import MMCoreError
from mmcore.types import ImputerOutput


class BadOutput(MMCoreError):
    """A component returned something the engine cannot use. ``module`` is the culprit (an
    ``nn.Module`` of the model, or None for a balancer), so the message can name it."""

    def __init__(self, module: Any, problem: str) -> None:
        self.module, self.problem = module, problem
        super().__init__(problem)


def tensor_problem(
    value: Any, shape: Sequence[int], what: str, device: torch.device | None = None, double_ok: bool = False
) -> str | None:
    """Why ``value`` is not a floating-point tensor of ``shape`` (on ``device``), or None.

    For an activation (``double_ok`` False) float64 is refused with the integer types: the model
    computes in float32 (or in autocast's lower precision), and a float64 output fails in the
    next layer or turns everything after it into float64. A loss term may be float64: it is
    only summed."""
    expected = f"a float tensor of shape {list(shape)}"
    if not isinstance(value, Tensor):
        return f"{what} is {type(value).__name__}, expected {expected}"
    if tuple(value.shape) != tuple(shape):
        return f"{what} has shape {list(value.shape)}, expected {list(shape)}"
    if not value.dtype.is_floating_point or (value.dtype == torch.float64 and not double_ok):
        return f"{what} has dtype {str(value.dtype).removeprefix('torch.')}, expected float32 (or autocast's bfloat16/float16)"
    if device is not None and value.device.type != device.type:
        return f"{what} is on device {value.device}, expected {device} (where its inputs are)"
    return None


def check_tensor(
    module: Any, value: Any, shape: Sequence[int], what: str, device: torch.device | None = None, double_ok: bool = False
) -> None:
    problem = tensor_problem(value, shape, what, device, double_ok)
    if problem is not None:
        raise BadOutput(module, problem)


def check_connected(module: Any, value: Tensor, what: str) -> None:
    """In a training forward, an output of a module with trainable parameters must carry a
    gradient: a detached (or recomputed-as-constant) output trains nothing, silently."""
    if not (module.training and torch.is_grad_enabled()) or value.requires_grad:
        return
    if any(p.requires_grad for p in module.parameters()):
        raise BadOutput(module, f"{what} does not require grad although the module has trainable parameters "
                                "(detached? its parameters would never train)")


def check_imputer_output(module: Any, out: Any, h: Tensor) -> None:
    """An ``ImputerOutput`` whose ``z`` is ``[B, M, d]`` like ``h`` (and carries ``h``'s gradient
    on to the encoders) and whose loss terms and monitors are ``[M]``."""
    if not isinstance(out, ImputerOutput):
        raise BadOutput(module, f"returned {type(out).__name__}, expected mmcore.ImputerOutput(z, losses, monitors)")
    z_shape, device = tuple(h.shape), h.device
    check_tensor(module, out.z, z_shape, "z", device)
    if h.requires_grad and not out.z.requires_grad:
        raise BadOutput(module, "z does not require grad although its input h does (detached? the encoders would not train)")
    m = z_shape[1]
    for field in ("losses", "monitors"):
        table = getattr(out, field)
        if not isinstance(table, dict):
            raise BadOutput(module, f"{field} is {type(table).__name__}, expected a dict of name -> [{m}] tensor")
        for name, term in table.items():
            if not isinstance(name, str):
                raise BadOutput(module, f"{field} key {name!r} is not a str")
            check_tensor(module, term, (m,), f"{field}['{name}'] (one term per modality)", device, double_ok=True)


def weights_problem(value: Any, m: int, device: torch.device) -> str | None:
    """Why balancer weights are unusable without reading their values: not an ``[M]`` real
    tensor on the model's device. Integer and float64 weights multiply the loss terms as they
    always did (float64 makes the loss float64), so they stay accepted; weights that require
    grad are detached by ``usable_weights`` with a warning."""
    if isinstance(value, Tensor) and value.dtype.is_complex:
        return f"weights() has dtype {str(value.dtype).removeprefix('torch.')}, expected a real (float or integer) tensor"
    if isinstance(value, Tensor) and not value.dtype.is_floating_point:
        value = value.float()  # the shape and device checks below are the activations' rule
    return tensor_problem(value, (m,), "weights()", device, double_ok=True)


GRAD_WEIGHTS_WARNING = (
    "weights() returned a tensor that requires grad; mmcore detaches it (weights are not trained, "
    "and a later version will refuse it): return weights.detach()"
)


def usable_weights(weights: Tensor) -> Tensor:
    """``weights`` detached, with a deprecation warning when the balancer left them attached.

    The engine never optimises a balancer's own parameters, so the gradient that used to flow
    into them changed nothing in the model; detaching keeps every model number as it was."""
    if weights.requires_grad:
        warnings.warn(GRAD_WEIGHTS_WARNING, FutureWarning, stacklevel=2)
        return weights.detach()
    return weights


def weights_value_problem(weights: Tensor, names: list[str]) -> str | None:
    """Why weight values are unusable (one host read): non-finite or negative."""
    values = weights.detach().float().tolist()
    bad = [f"{n}={v}" for n, v in zip(names, values) if not (v >= 0 and v != float("inf"))]
    if bad:
        return f"weights() returned {', '.join(bad)}; weights must be finite and >= 0"
    return None


def check_weight_values(weights: Tensor, names: list[str]) -> None:
    problem = weights_value_problem(weights, names)
    if problem is not None:
        raise BadOutput(None, problem)


def first_nonfinite(parts: list[tuple[Any, str, Tensor | None]]) -> tuple[Any, str] | None:
    """The first ``(module, what)`` of ``parts`` whose tensor has a NaN or infinity (one host
    read for all of them), in the order given: encoders, imputer, fusion, so the component that
    produced the first non-finite value is named, not the ones it fed."""
    kept = [(module, what, t) for module, what, t in parts if t is not None and t.numel() > 0]
    if not kept:
        return None
    finite = torch.stack([torch.isfinite(t.detach()).all() for _, _, t in kept]).tolist()
    for (module, what, _), ok in zip(kept, finite):
        if not ok:
            return module, what
    return None


def check_weights(value: Any, m: int, device: torch.device) -> None:
    problem = weights_problem(value, m, device)
    if problem is not None:
        raise BadOutput(None, problem)


def check_extra_loss(value: Any, device: torch.device, finite: bool = False) -> None:
    """``extra_loss`` returns None or a scalar float tensor (a ``[B]`` term cannot be backpropagated);
    ``finite`` also reads its value (the first step's check)."""
    if value is not None:
        check_tensor(None, value, (), "extra_loss(view)", device, double_ok=True)
        if finite and not bool(torch.isfinite(value.detach())):
            raise BadOutput(None, f"extra_loss(view) returned {float(value.detach())}; it must be finite")


def grads_finite(model: Any) -> bool:
    """Whether every gradient of ``model`` is finite (one host read)."""
    grads = [p.grad.detach() for p in model.parameters() if p.grad is not None]
    return not grads or bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())


def check_log_values(values: Any, m: int) -> None:
    """``log_values`` maps names to scalars or ``[M]`` tensors (one entry per modality)."""
    if not isinstance(values, dict):
        raise BadOutput(None, f"log_values() returned {type(values).__name__}, expected a dict of name -> tensor")
    for key, value in values.items():
        ok = isinstance(key, str) and isinstance(value, Tensor) and value.numel() in (1, m) and value.dim() <= 1
        if not ok:
            got = f"shape {list(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
            raise BadOutput(None, f"log_values()[{key!r}] is {got}, expected a scalar or a [{m}] tensor (one value per modality)")


def check_state_dict(state: Any) -> None:
    """``state_dict`` must be JSON data (it goes into the checkpoint's ``state.json``): a tensor
    in it used to fail inside the checkpoint writer with a traceback."""
    import json

    try:
        json.dumps(state)
    except (TypeError, ValueError) as exc:
        raise BadOutput(None, f"state_dict() is not JSON data ({exc}); keep tensors as lists of numbers") from None
