"""Loss groups: the named per-modality loss terms a model produces, and the balancer's target among them.

A loss group is a ``[M]`` tensor of per-modality terms (``ImputerOutput.losses[group]``). The
imputer produces its own groups (``recon``, ``kl``, ``cycle``, ...); the engine adds
``unimodal`` (the unimodal heads' task losses) when ``model.unimodal_heads`` is on. A balancer
weighs the terms of exactly one group, its ``target``.

An imputer *declares* its groups with a ``loss_groups`` attribute on its factory: a collection
of names, or a callable taking the imputer's recipe options and returning one (MMIN's ``cycle``
exists only when ``cycle_weight > 0``). ``mmcore validate`` then checks ``balancer.target``
against them before anything is built, and the engine checks once, on the first step, against
the groups the model really returned. An imputer without the attribute is checked at step 0 only.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection
from typing import Any

from mmcore.errors import MMCoreError

UNIMODAL = "unimodal"  # the group the engine adds when unimodal heads are on


def declared_groups(factory: Any, options: dict[str, Any]) -> frozenset[str] | None:
    """The groups an imputer factory declares for these options, or None if it declares nothing."""
    declared = getattr(factory, "loss_groups", None)
    if declared is None:
        return None
    if callable(declared):
        try:
            declared = declared(**options)
        except Exception:  # cannot tell from the options alone: the first step tells
            return None
    if isinstance(declared, str) or not isinstance(declared, Collection):
        return None
    return frozenset(str(g) for g in declared)


def weighs_target(balancer: Any) -> bool:
    """Whether a balancer (class or instance) acts on its target group, so the group must exist.

    A balancer says so with the class attribute ``target_required = True``; unset, nothing is
    checked (``mmcore.uniform``'s all-ones weights on a missing group change nothing, and older
    third-party balancers keep working as before).
    """
    cls = balancer if isinstance(balancer, type) else type(balancer)
    # Undeclared (None): not checked, so third-party balancers written before loss groups keep
    # working as they did; the shipped balancers that weigh their target declare True.
    return bool(getattr(cls, "target_required", None))


def target_message(target: str, groups: Collection[str], imputer: str, heads: bool, balancer: str) -> str:
    """The one line that says the target does not exist, what does, and what to set instead."""
    available = sorted(groups)
    listed = ", ".join(available) if available else "none"
    if available:
        close = difflib.get_close_matches(target, available, n=1, cutoff=0.6)
        best = close[0] if close else ("recon" if "recon" in available else available[0])
        others = [g for g in available if g != best]
        fix = f"set balancer.target={best}" + (f" (or {', '.join(others)})" if others else "")
    else:
        fix = "use an imputer with loss terms, set model.unimodal_heads=true (group 'unimodal'), or balancer=mmcore.uniform"
    if target == UNIMODAL and not heads:
        fix = "set model.unimodal_heads=true, or " + fix
    return (
        f"balancer.target: '{target}' is not a loss group of this model (imputer '{imputer}'"
        f"{' + unimodal heads' if heads else ''}), and {balancer} weighs its target; available: {listed}; {fix}"
    )


def recipe_groups(resolved: dict[str, Any], registry: Any) -> frozenset[str] | None:
    """The groups a resolved recipe's model will produce, when its imputer declares them."""
    node = resolved["model"]["imputer"]
    component = registry.find("imputer", node.get("type", ""))
    if component is None:
        return None
    groups = declared_groups(component.factory, {k: v for k, v in node.items() if k != "type"})
    if groups is None:
        return None
    return groups | ({UNIMODAL} if resolved["model"].get("unimodal_heads") else frozenset())


def target_problems(resolved: dict[str, Any], registry: Any) -> list[str]:
    """``balancer.target`` checked against the declared groups (nothing when they are unknown)."""
    groups = recipe_groups(resolved, registry)
    node = resolved["balancer"]
    component = registry.find("balancer", node.get("type", ""))
    if groups is None or component is None or not weighs_target(component.factory):
        return []
    target = node.get("target")
    if not isinstance(target, str) or target in groups:
        return []
    heads = bool(resolved["model"].get("unimodal_heads"))
    return [target_message(target, groups, resolved["model"]["imputer"]["type"], heads, node["type"])]


def check_target(balancer: Any, groups: Collection[str], imputer: str, heads: bool, name: str) -> None:
    """The engine's one check, on the first step, against the groups the model returned
    (the target, and the groups a balancer asks gradients of; ``task`` always exists)."""
    if weighs_target(balancer) and balancer.target not in groups:
        raise MMCoreError(target_message(balancer.target, groups, imputer, heads, name))
    lacking = sorted(set(getattr(balancer, "gradient_groups", ())) - set(groups) - {"task"})
    if lacking:
        hint = "; set model.unimodal_heads=true" if UNIMODAL in lacking and not heads else ""
        raise MMCoreError(
            f"balancer: {name} needs the gradients of loss group(s) {', '.join(lacking)}, which this model "
            f"(imputer '{imputer}'{' + unimodal heads' if heads else ''}) does not produce; "
            f"available: {', '.join(sorted(set(groups) | {'task'}))}{hint}"
        )
