"""Turning a recipe's plan (``mmcore.recipe.plan``) into objects: dataset, model, balancer, loggers.

Only registered components can be built; a recipe names them, never an import path. Everything
here reads the typed plan that validation's result was read into once, never raw recipe keys.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from mmcore.components import Balancer, Logger
from mmcore.conditions import Condition, parse_conditions
from mmcore.engine.blame import NamedLogger
from mmcore.engine.model import MultimodalModel, unimodal_heads
from mmcore.engine.sizes import checked_build, record
from mmcore.errors import MMCoreError, RecipeError
from mmcore.missing import MissingSpec, marginal_rates
from mmcore.recipe.crosschecks import encoder_problems, spec_problems
from mmcore.recipe.plan import Node, RunPlan
from mmcore.registry import Registry
from mmcore.types import Dataset, ModalitySpec, TaskSpec


def build_component(registry: Registry, kind: str, node: Node, path: str, **injected: Any) -> Any:
    """Build one component node ``{type: name, **options}``; factory failures become one line."""
    component = registry.get(kind, node["type"])
    options = {k: v for k, v in node.items() if k != "type"}
    try:
        return component.build(injected, options)  # its own failures are one line naming the plugin
    except (TypeError, ValueError) as exc:  # a callable without a signature, say: where, not a traceback
        raise MMCoreError(f"{path}: building {kind} '{node['type']}' failed: {type(exc).__name__}: {exc}") from exc


def build_dataset(node: Node, registry: Registry) -> Dataset:
    """The dataset of a ``dataset:`` node, checked to describe its modalities and task."""
    dataset = build_component(registry, "dataset", node, "dataset")
    if not getattr(dataset, "modalities", None) or not isinstance(getattr(dataset, "task", None), TaskSpec):
        raise MMCoreError(f"dataset '{node['type']}' did not return modalities and a TaskSpec")
    return dataset


def build_model(plan: RunPlan, specs: list[ModalitySpec], task: TaskSpec, registry: Registry) -> MultimodalModel:
    """The plan's encoders, imputer, fusion and optional unimodal heads, in modality order,
    after a memory-free build on ``meta`` has shown it is within the size limits (``sizes``)."""
    record(dim=plan.model.dim, batch_size=plan.train.batch_size)
    return checked_build(lambda: _build_model(plan, specs, task, registry))


def _build_model(plan: RunPlan, specs: list[ModalitySpec], task: TaskSpec, registry: Registry) -> MultimodalModel:
    cfg, dim = plan.model, plan.model.dim
    names = [s.name for s in specs]
    problems = encoder_problems(cfg.encoders, names)  # validation's check, against the loaded modalities
    if problems:
        raise RecipeError(problems)
    encoders = {
        s.name: build_component(registry, "encoder", cfg.encoder(s.name), f"model.encoders.{s.name}", spec=s, dim=dim)
        for s in specs
    }
    imputer = build_component(registry, "imputer", cfg.imputer, "model.imputer", specs=list(specs), dim=dim)
    fusion = build_component(registry, "fusion", cfg.fusion, "model.fusion", specs=list(specs), dim=dim, out_dim=task.out_dim)
    heads: nn.ModuleDict | None = None
    if cfg.heads is not None:
        heads = unimodal_heads(names, dim, task.out_dim, list(cfg.heads.layers), cfg.heads.dropout)
    if cfg.init == "kaiming_normal":
        # the imputer is left alone: it owns its init (redcore.vib already uses this one, and its
        # zero-initialised residual branches are a documented choice this must not undo)
        for part in [*encoders.values(), fusion, heads]:
            if isinstance(part, nn.Module):
                kaiming_normal_init(part)
    calibration = build_calibration(plan.balancer, list(specs), dim, registry)
    return MultimodalModel(specs, encoders, imputer, fusion, heads, calibration, dim=dim, out_dim=task.out_dim)


def build_calibration(node: Node, specs: list[ModalitySpec], dim: int, registry: Registry) -> nn.Module | None:
    """The module the factory of the balancer ``node`` puts before the imputer (``calibration`` in
    the ``register_balancers`` manual), or None. Built with the model, not with the balancer, so
    that ``mmcore eval`` and ``predict`` rebuild the same weights from the recipe alone."""
    hook = getattr(registry.get("balancer", node["type"]).factory, "calibration", None)
    if hook is None:
        return None
    options = {k: v for k, v in node.items() if k != "type"}
    try:
        module = hook(specs=specs, dim=dim, **options)
    except MMCoreError:
        raise
    except Exception as exc:  # a plugin's hook: any failure becomes one line naming it
        raise MMCoreError(f"balancer: building the calibration of '{node['type']}' failed: {type(exc).__name__}: {exc}") from exc
    if module is not None and not isinstance(module, nn.Module):
        raise MMCoreError(f"balancer: '{node['type']}'.calibration returned {type(module).__name__}, not an nn.Module or None")
    return module


_INIT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def kaiming_normal_init(module: nn.Module) -> None:
    """The reference's init: Kaiming-normal weights and zero biases on every Linear and Conv layer
    of ``module``, and N(0, 1/width) on attention's packed input projection.

    RedCore's reference (github sunjunaimer/RedCore) does this in two steps. The model first calls
    each transformer encoder's ``initialize_parameters()`` (``models/redcore_mmin_model.py``;
    ``models/networks/transformer.py``), which draws ``attn.in_proj_weight`` from
    N(0, std = width ** -0.5) (and the other block weights, which the next step overwrites). Then
    ``init_net`` (``models/networks/tools.py``, ``init_weights`` with the default
    ``init_type='kaiming'``) applies ``kaiming_normal_(w, a=0, mode='fan_in')`` (std =
    sqrt(2 / fan_in)) and ``constant_(bias, 0)`` to every module whose class name contains Linear or
    Conv, attention's output projection included. ``in_proj_weight`` is a bare parameter of
    ``nn.MultiheadAttention``, not a Linear, so it keeps the first step's N(0, 1/width); before
    this was fixed mmcore left it at PyTorch's xavier-uniform (std sqrt(1/(2·width)), 0.71× the
    reference's). Other layers (LayerNorm, embeddings, ...) keep their defaults.
    """
    for layer in module.modules():
        if isinstance(layer, _INIT_LAYERS):
            nn.init.kaiming_normal_(layer.weight, a=0, mode="fan_in")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
        elif isinstance(layer, nn.MultiheadAttention) and layer.in_proj_weight is not None:
            nn.init.normal_(layer.in_proj_weight, std=layer.embed_dim**-0.5)


def train_missing_spec(plan: RunPlan, modalities: list[str]) -> MissingSpec:
    """The plan's training ``MissingSpec``, checked against the loaded modalities by the check
    validation makes against the described ones (``spec_problems``)."""
    problems = spec_problems(plan.missing.train, modalities)
    if problems:
        raise RecipeError(problems)
    return plan.missing.train


def eval_conditions(plan: RunPlan, modalities: list[str]) -> list[Condition]:
    """The evaluation conditions, parsed against the loaded modalities."""
    return parse_conditions(plan.missing.conditions, modalities)


DEFAULT_LOGGING: tuple[dict[str, Any], ...] = ({"type": "mmcore.jsonl"}, {"type": "mmcore.console"})
PROGRESS_LOGGERS = frozenset({"mmcore.console"})  # left out when a caller turns progress off


def build_loggers(
    nodes: tuple[Node, ...] | None, registry: Registry, show_progress: bool = True, console: Any = None
) -> list[Logger]:
    """The recipe's ``logging`` nodes (None: the ``metrics.jsonl`` record and the progress bar)."""
    nodes = [dict(n) for n in (DEFAULT_LOGGING if nodes is None else nodes)]
    out = []
    for i, node in enumerate(nodes):
        if not show_progress and node["type"] in PROGRESS_LOGGERS:
            continue
        logger = build_component(registry, "logger", node, f"logging[{i}]")  # a Logger: Component.build checks
        if console is not None and hasattr(logger, "use_console"):
            logger.use_console(console)
        out.append(NamedLogger(logger, registry.get("logger", node["type"]).label))  # a failing call names it
    return out


def build_balancer(node: Node, modalities: list[str], spec: MissingSpec, registry: Registry) -> Balancer:
    """The balancer of ``node``, told the modalities and their realised training missing rates."""
    rates = marginal_rates(spec, modalities)
    return build_component(registry, "balancer", node, "balancer", modalities=list(modalities), missing_rates=rates)
