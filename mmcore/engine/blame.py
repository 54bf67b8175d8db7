"""Naming the component whose forward pass raised, so a plugin's bug is one line, not a traceback.

Only on failure: the traceback's frames are searched for the innermost ``self`` that is one of
the model's components (an encoder, the imputer, the fusion head); nothing runs on the happy path.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from torch import nn

from mmcore.errors import MMCoreError
from mmcore.recipe.plan import Node, RunPlan
from mmcore.registry import Registry


def component_labels(model: Any, plan: RunPlan, registry: Registry) -> dict[int, str]:
    """``id(module) -> "encoder 'mmcore.mlp' (plugin mmcore) for modality 'a'"`` for the plan's components."""
    labels: dict[int, str] = {}

    def label(kind: str, node: Node, extra: str = "") -> str:
        return registry.get(kind, node["type"]).label + extra

    for m, encoder in model.encoders.items():
        labels[id(encoder)] = label("encoder", plan.model.encoder(m), f" for modality '{m}'")
    labels[id(model.imputer)] = label("imputer", plan.model.imputer)
    labels[id(model.fusion)] = label("fusion", plan.model.fusion)
    if getattr(model, "calibration", None) is not None:
        labels[id(model.calibration)] = label("balancer", plan.balancer, " (its calibration module)")
    return labels


@contextlib.contextmanager
def blame_forward(labels: dict[int, str], doing: str) -> Iterator[None]:
    """Re-raise an unexpected exception as one ``MMCoreError`` naming the component it came from."""
    try:
        yield
    except MMCoreError:
        raise
    except Exception as exc:
        culprit = None
        tb = exc.__traceback__
        while tb is not None:  # the innermost frame whose ``self`` is a component wins
            owner = tb.tb_frame.f_locals.get("self")
            if isinstance(owner, nn.Module) and id(owner) in labels:
                culprit = labels[id(owner)]
            tb = tb.tb_next
        where = culprit or "the model (no single component identified)"
        raise MMCoreError(f"{doing}: {where} raised {type(exc).__name__}: {exc}") from exc
