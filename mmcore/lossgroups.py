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
import inspect
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

    A balancer says so with the class attribute ``target_required = True``; unset, only a target
    that differs from the balancer's default is checked (``target_must_exist``), so older
    third-party balancers keep working as before.
    """
    cls = balancer if isinstance(balancer, type) else type(balancer)
    return bool(getattr(cls, "target_required", None))


def default_target(balancer: Any) -> str | None:
    """The ``target`` a balancer factory uses when the recipe names none (None if it takes none)."""
    factory = balancer if isinstance(balancer, type) or inspect.isroutine(balancer) else type(balancer)
    try:
        parameter = inspect.signature(factory).parameters.get("target")
    except (TypeError, ValueError):
        return None
    if parameter is None or parameter.default is inspect.Parameter.empty:
        return None
    return parameter.default


def target_must_exist(balancer: Any, target: str) -> bool:
    """A target must be a group of the model when the balancer weighs it, or when it was chosen:
    a target other than the default (``mmcore.uniform`` aimed at ``recn``) is a typo, not a no-op."""
    return weighs_target(balancer) or target != default_target(balancer)


def target_message(
    target: str, groups: Collection[str], imputer: str, heads: bool, balancer: str, weighs: bool = True
) -> str:
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
        # The heads are the fix here; without other groups, only the balancer swap remains.
        fix = "set model.unimodal_heads=true, or " + (fix if available else "balancer=mmcore.uniform")
    return (
        f"balancer.target: '{target}' is not a loss group of this model (imputer '{imputer}'"
        f"{' + unimodal heads' if heads else ''}), and {balancer} "
        f"{'weighs its target' if weighs else 'would weigh nothing'}; available: {listed}; {fix}"
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
    target = node.get("target")
    if groups is None or component is None or not isinstance(target, str) or target in groups:
        return []
    if not target_must_exist(component.factory, target):
        return []
    heads = bool(resolved["model"].get("unimodal_heads"))
    weighs = weighs_target(component.factory)
    return [target_message(target, groups, resolved["model"]["imputer"]["type"], heads, node["type"], weighs)]


def check_target(balancer: Any, groups: Collection[str], imputer: str, heads: bool, name: str) -> None:
    """The engine's one check, on the first step, against the groups the model returned
    (the target, and the groups a balancer asks gradients of; ``task`` always exists)."""
    if balancer.target not in groups and target_must_exist(balancer, balancer.target):
        raise MMCoreError(target_message(balancer.target, groups, imputer, heads, name, weighs_target(balancer)))
    lacking = sorted(set(getattr(balancer, "gradient_groups", ())) - set(groups) - {"task"})
    if lacking:
        hint = "; set model.unimodal_heads=true" if UNIMODAL in lacking and not heads else ""
        raise MMCoreError(
            f"balancer: {name} needs the gradients of loss group(s) {', '.join(lacking)}, which this model "
            f"(imputer '{imputer}'{' + unimodal heads' if heads else ''}) does not produce; "
            f"available: {', '.join(sorted(set(groups) | {'task'}))}{hint}"
        )
