"""Whether a checkpoint's optimiser state fits the optimiser this run built, before torch loads it.

``mmcore.engine.checkpoint.load_checkpoint`` raises each problem named here with its file. Kept
apart from the checkpoint's files and bytes: these rules are about torch's optimisers.
"""

from __future__ import annotations

from typing import Any

import torch


def dtype_name(tensor: torch.Tensor) -> str:
    """``float32`` for ``torch.float32``: how messages name a dtype."""
    return str(tensor.dtype).removeprefix("torch.")


def state_problem(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], step: int) -> str | None:
    """The optimiser's tensors fit this run's parameters before torch loads them.

    ``Optimizer.load_state_dict`` checks only the parameter groups: it casts every tensor to its
    parameter's dtype, keeps entries for indices that match no parameter, and Adam re-initialises
    a parameter without state at its next step. Each optimiser mmcore builds (adam, adamw, sgd)
    keeps per parameter tensors of that parameter's shape and dtype, plus a 0-d ``step``, and
    after the first step every parameter with state holds the same keys.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    keys: dict[int, set[str]] = {}
    for name, value in tensors.items():
        prefix, _, rest = name.partition(".")
        index, _, key = rest.partition(".")
        if prefix != "state" or not index.isdigit() or not key or int(index) >= len(params):
            return f"unexpected tensor '{name}' (expected state.<index>.<key> for one of this run's {len(params)} parameters)"
        param = params[int(index)]
        if value.dim() == 0:
            if not value.is_floating_point():
                return f"'{name}' has dtype {dtype_name(value)}, expected a floating-point step counter"
        elif tuple(value.shape) != tuple(param.shape) or value.dtype != param.dtype:
            return (f"'{name}' is {dtype_name(value)} {tuple(value.shape)}, expected its parameter's "
                    f"{dtype_name(param)} {tuple(param.shape)}")
        keys.setdefault(int(index), set()).add(key)
    every = set().union(*keys.values()) if keys else set()
    for index, own in sorted(keys.items()):
        if own != every:
            return (f"state.{index} lacks {', '.join(sorted(every - own))} "
                    f"(the other parameters' state holds {', '.join(sorted(every))})")
    stateless = all(group.get("momentum") == 0 for group in optimizer.param_groups)  # sgd without momentum keeps none
    if step > 0 and params and not tensors and not stateless:
        return f"no optimiser state, expected the state of {len(params)} parameters after {step} steps"


# set by the schedule at every step, or how torch computes rather than what: free to differ
_FREE_GROUP_KEYS = frozenset({"params", "lr", "initial_lr", "foreach", "fused", "capturable", "differentiable"})


def changed_setting(optimizer: torch.optim.Optimizer, meta: dict[str, Any]) -> str | None:
    """The checkpoint's optimiser settings are the recipe's (checked unedited against the manifest).

    ``load_state_dict`` takes betas, eps and weight decay from the checkpoint over the ones the
    recipe built, so an edited ``state.json`` would continue with other settings in silence.
    """
    saved = meta.get("param_groups")
    if not isinstance(saved, list) or len(saved) != len(optimizer.param_groups) or not all(isinstance(g, dict) for g in saved):
        return None  # the group structure is load_state_dict's own check, named by the caller
    for index, (old, new) in enumerate(zip(saved, optimizer.param_groups)):
        for key in sorted(set(old) & set(new) - _FREE_GROUP_KEYS):
            value = list(new[key]) if isinstance(new[key], tuple) else new[key]
            if old[key] != value:
                return f"optimizer group {index} '{key}' is {old[key]!r}, expected {value!r} (the recipe's train.optimizer)"
    return None
