"""The trainer's calls into a plugin's balancer, each one named when it fails and its result checked.

A balancer is a plugin object outside the model, so ``blame_forward`` does not see it: each hook
runs inside ``blame_call`` (an exception, ``sys.exit`` included, or an unusable return value is
one line naming the balancer and its plugin), and its returns pass ``mmcore.engine.outputs``.
Checks that read values from the device run only when the trainer says so (the first step, a
logging step), so an ordinary step adds no host sync.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch
from torch import Tensor

from mmcore.components import Balancer, EpochView, StepView
from mmcore.engine.blame import blame_call
from mmcore.engine.outputs import (
    BadOutput, check_extra_loss, check_state_dict, check_weight_values, check_weights, grads_finite, usable_weights,
)
from mmcore.types import StepStats


class BalancerCalls:
    """``balancer``'s hooks as the trainer calls them; ``step`` gives the training step for messages."""

    def __init__(self, balancer: Balancer, label: str, names: list[str], device: torch.device, step: Callable[[], int]) -> None:
        self.balancer, self.label, self.names, self.device, self.step = balancer, label, names, device, step

    def call(self, hook: str) -> contextlib.AbstractContextManager[None]:
        """Around one hook (and the checks of what it returned)."""
        return blame_call(self.label, f"{hook} at training step {self.step()}")

    def weights(self, read_values: bool = False) -> Tensor:
        """``[M]`` weights on the device; attached ones detached with a warning. ``read_values``:
        also refuse NaN, infinite or negative ones (one host read)."""
        with self.call("weights()"):
            weights = self.balancer.weights()
            check_weights(weights, len(self.names), self.device)
            if read_values:
                check_weight_values(weights, self.names)
            return usable_weights(weights)

    def check_weight_values(self, weights: Tensor) -> None:
        """The values of weights already returned (a logging step reads the host anyway)."""
        with self.call("weights()"):
            check_weight_values(weights, self.names)

    def extra_loss(self, view: StepView, read_value: bool = False) -> Tensor | None:
        """The balancer's own loss term: None or a scalar (``read_value``: also a finite one)."""
        with self.call("extra_loss(view)"):
            extra = self.balancer.extra_loss(view)
            check_extra_loss(extra, self.device, finite=read_value)
            return extra

    def modulate_gradients(self, model: torch.nn.Module, stats: StepStats, read_values: bool = False) -> None:
        """The balancer's change to the gradients; ``read_values``: gradients that were finite
        before it must be finite after it (two host reads)."""
        finite_before = read_values and grads_finite(model)
        with self.call("modulate_gradients(model, stats)"):
            self.balancer.modulate_gradients(model, stats)
            if finite_before and not grads_finite(model):
                raise BadOutput(None, "gradients were finite before it and NaN or infinite after it")

    def observe(self, stats: StepStats) -> None:
        with self.call("observe(stats)"):
            self.balancer.observe(stats)

    def end_epoch(self, view: EpochView) -> None:
        with self.call("end_epoch(view)"):
            self.balancer.end_epoch(view)

    def state_dict(self) -> dict[str, Any]:
        """The balancer's state as JSON data (it goes into the checkpoint's ``state.json``)."""
        with self.call("state_dict()"):
            state = self.balancer.state_dict()
            check_state_dict(state)
            return state

    def load_state_dict(self, state: dict[str, Any], where: str) -> None:
        with blame_call(self.label, f"load_state_dict() of {where}"):
            self.balancer.load_state_dict(state)
