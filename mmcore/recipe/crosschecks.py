"""Checks of a resolved recipe that need more than one value: the output folder, the selection
metric, and everything that depends on the dataset's modalities and task.

Without these, a mistake such as ``min_present: 4`` with three modalities or a condition naming a
modality the dataset lacks surfaces only after the data is loaded, minutes into a run. The
dataset's description is obtained cheaply through an optional ``describe`` attribute of its
factory (see ``mmcore.hookspecs.register_datasets``): a callable that takes the dataset's recipe
options and returns ``(modalities, task)`` without loading tensors. A dataset that has no
``describe``, or whose ``describe`` fails (its files are not there yet, say), is not an error
here: those checks are skipped and the run makes them once the data is loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from mmcore.components import Balancer, declared_needs
from mmcore.conditions import AVERAGE, parse_conditions
from mmcore.errors import MMCoreError, RecipeError
from mmcore.frames import frame_spec, frame_targets
from mmcore.lossgroups import target_problems
from mmcore.metrics import METRICS_DIRECTION, TASK_METRICS
from mmcore.missing import MissingSpec, check_spec
from mmcore.paths import PathError, check_output_dir
from mmcore.recipe.buildcheck import build_problems
from mmcore.recipe.plan import missing_spec
from mmcore.registry import Registry, did_you_mean
from mmcore.types import ModalitySpec, TaskSpec


Metrics = tuple[list[str], str]  # metric names runs report, and how to call them in an error


def reported_metrics(datasets: Sequence[Any], registry: Registry) -> Metrics:
    """The metric names that runs on these ``dataset`` nodes report, known from the nodes' options
    alone (each component's ``describe``, no data built): the metrics of their task kind when every
    node says the same kind; every metric mmcore computes when one cannot say, or they differ.
    Why: a study's endpoints and a sweep's ``--metrics`` are checked before anything trains."""
    kinds: set[str | None] = set()
    for node in datasets:
        try:
            described = describe_dataset(node, registry) if isinstance(node, dict) else None
        except (MMCoreError, TypeError, ValueError):  # the recipe's own problems are the run's to report
            described = None
        kinds.add(described[1].kind if described is not None and described[1] is not None else None)
    kind = next(iter(kinds)) if len(kinds) == 1 else None
    if kind in TASK_METRICS:
        return list(TASK_METRICS[kind]), f"a {kind} metric"
    return sorted(METRICS_DIRECTION), "a known metric"


def describe_dataset(
    node: dict[str, Any], registry: Registry
) -> tuple[list[str], TaskSpec | None, list[ModalitySpec] | None] | None:
    """The dataset's modality names, task and (when it gives them) modality specs from its
    factory's ``describe``, or None."""
    component = registry.find("dataset", node.get("type", ""))
    describe = getattr(component.factory, "describe", None) if component is not None else None
    return described_by(describe, {k: v for k, v in node.items() if k != "type"})


def described_by(
    describe: Any, options: dict[str, Any]
) -> tuple[list[str], TaskSpec | None, list[ModalitySpec] | None] | None:
    """``describe_dataset`` for a factory's ``describe`` attribute (or None) and its options; the
    contract suite (``mmcore.testing.check_dataset``) compares it with the built dataset."""
    if not callable(describe):
        return None
    try:
        try:
            modalities, task = describe(**options)
        except MMCoreError:
            if "root" not in options:
                raise
            # the files are wrong (``machine.dataset_file_problems`` reports that); a corpus whose
            # names and task follow from its options alone still gives them, so that the
            # balancer and metric checks run beside the file error
            modalities, task = describe(**{k: v for k, v in options.items() if k != "root"})
        names = [m.name if isinstance(m, ModalitySpec) else m for m in modalities]
    except (Exception, SystemExit):  # cannot describe itself now (sys.exit too): the run checks the loaded data
        return None
    if not names or not all(isinstance(n, str) for n in names) or not isinstance(task, (TaskSpec, type(None))):
        return None
    specs = list(modalities) if all(isinstance(m, ModalitySpec) for m in modalities) else None
    return names, task, specs


def output_problems(output: str) -> list[str]:
    """Whether run directories can be created under ``output``, tried now rather than after
    loading the data (``mmcore.paths.check_output_dir``: a probe in the nearest existing folder)."""
    if "\x00" in output:
        return [f"output: {output!r} holds a NUL character, which no path can"]
    try:
        check_output_dir(Path(output).expanduser(), "output", target="run directories")
    except (PathError, ValueError) as error:
        return [str(error)]
    return []


def select_problems(select: str, conditions: Sequence[str] | None = None, task: TaskSpec | None = None) -> list[str]:
    """``train.select`` is ``val.<metric>`` or ``val.<condition>.<metric>`` naming a real metric
    (of the task's kind when known) and, when the conditions are known, a real condition."""
    parts = select.split(".")
    if parts[0] != "val" or len(parts) not in (2, 3) or not all(parts):
        return [f"train.select: '{select}' must be 'val.<metric>' or 'val.<condition>.<metric>'"]
    metric = parts[-1]
    allowed = list(TASK_METRICS[task.kind]) if task is not None else sorted(METRICS_DIRECTION)
    kind = f"a {task.kind} metric" if task is not None else "a known metric"
    problems = []
    if metric not in allowed:
        problems.append(f"train.select: '{metric}' is not {kind};{did_you_mean(metric, allowed)} available: {', '.join(allowed)}")
    if len(parts) == 3 and conditions is not None and parts[1] not in conditions:
        problems.append(
            f"train.select: unknown condition '{parts[1]}';{did_you_mean(parts[1], list(conditions))} "
            f"available: {', '.join(conditions)}"
        )
    return problems


def sound(found: Sequence[str], *paths: str) -> bool:
    """Whether every dotted ``path`` passed its own checks: no problem in ``found`` is at it, below
    it or above it. A cross-field check reads only sound values, so it runs beside the type errors
    of other keys and a recipe's every problem is reported in one pass."""
    where = [p.split(": ", 1)[0] for p in found]
    return not any(w == p or w.startswith(p + ".") or p.startswith(w + ".") for w in where for p in paths)


def encoder_problems(encoders: Mapping[str, Any], names: list[str]) -> list[str]:
    """``model.encoders`` keys are modalities or ``default``, and every modality has an encoder."""
    problems = modality_key_problems(list(encoders), names, "model.encoders", extra=("default",))
    if "default" not in encoders:
        problems += [f"model.encoders: no encoder for modality '{m}' and no 'default'" for m in names if m not in encoders]
    return problems


def modality_key_problems(keys: list[str], names: list[str], path: str, extra: tuple[str, ...] = ()) -> list[str]:
    """One line per key of ``path`` that names no modality (or one of ``extra``)."""
    allowed = list(names) + list(extra)
    return [
        f"{path}.{k}: not a modality of this dataset;{did_you_mean(k, allowed)} available: {', '.join(allowed)}"
        for k in keys
        if k not in allowed
    ]


def train_missing_problems(train: dict[str, Any], names: list[str] | None) -> list[str]:
    """``missing.train``: rates or one sample rate, a consistent mechanism and (with the
    modalities) ``spec_problems``."""
    if train["rates"] and train["sample_rate"] is not None:
        return ["missing.train: give per-modality 'rates' or one 'sample_rate', not both; expected one of them"]
    try:
        spec = missing_spec(train)
    except MMCoreError as error:
        return [f"missing.train: {error}"]
    return [] if names is None else spec_problems(spec, names)


def spec_problems(spec: MissingSpec, names: list[str]) -> list[str]:
    """A training spec against the modalities (described, or loaded by the session): rates that
    name modalities, and a distribution that ``min_present`` and the mechanism allow."""
    unknown = modality_key_problems(list(spec.rates), names, "missing.train.rates")
    if unknown:
        return unknown
    try:
        check_spec(spec, names)
    except MMCoreError as error:
        return [f"missing.train: {error}"]
    return []


def parse_select(select: str, conditions: Sequence[str], task: TaskSpec) -> tuple[str, str]:
    """``val.macro_f1`` → (average, macro_f1); ``val.<condition>.<metric>`` → (condition, metric),
    checked by ``select_problems`` (the same check validation makes) against the real conditions
    and task, so a recipe that reached the engine unvalidated fails before the first epoch."""
    problems = select_problems(select, conditions, task)
    if problems:
        raise RecipeError(problems)
    parts = select.split(".")
    return (parts[1], parts[2]) if len(parts) == 3 else (AVERAGE, parts[1])


def dataset_problems(resolved: dict[str, Any], names: list[str], task: TaskSpec | None, found: Sequence[str] = ()) -> list[str]:
    """Everything in the recipe that names the dataset's modalities or depends on its task, each
    check made only on values that passed their own (``found`` lists the problems so far)."""
    problems: list[str] = []
    if sound(found, "model.encoders"):
        problems += encoder_problems(resolved["model"]["encoders"], names)
    if sound(found, "missing.train"):
        problems += train_missing_problems(resolved["missing"]["train"], names)
    conditions: list[str] | None = None
    if sound(found, "missing.eval"):
        try:
            conditions = [c.name for c in parse_conditions(resolved["missing"]["eval"]["conditions"], names)]
        except MMCoreError as error:
            problems.append(str(error))
    if sound(found, "train.select"):
        problems += select_problems(resolved["train"]["select"], conditions, task)
    return problems


def cross_problems(resolved: dict[str, Any], registry: Registry, found: Sequence[str] = ()) -> list[str]:
    """Every cross-field problem of a recipe, beside the problems ``found`` by the value checks:
    a check runs when the values it reads are sound, whatever is wrong elsewhere."""
    problems = output_problems(resolved["output"]) if sound(found, "output") else []
    if sound(found, "balancer", "model.imputer", "model.unimodal_heads"):
        problems += target_problems(resolved, registry)
    # the modalities do not wait for the dataset's other options: describe reads what it can
    # (a bad option it needs makes it fail, and the checks are skipped)
    node = resolved.get("dataset")
    described = describe_dataset(node, registry) if isinstance(node, dict) and sound(found, "dataset.type") else None
    if described is not None:
        names, task, specs = described
        if sound(found, "missing.frames"):
            problems += frame_problems(resolved, specs)
        problems += dataset_problems(resolved, names, task, found)
        if specs is not None:  # the constructors' own cross-field checks (``buildcheck``)
            problems += build_problems(resolved, registry, specs, task, found)
    else:
        if sound(found, "missing.train"):
            problems += train_missing_problems(resolved["missing"]["train"], None)
        if sound(found, "train.select"):
            problems += select_problems(resolved["train"]["select"])
    if sound(found, "balancer", "model.unimodal_heads"):
        problems += balancer_task_problems(resolved, registry, described[1] if described else None)
    return problems


def frame_problems(resolved: dict[str, Any], specs: list[ModalitySpec] | None) -> list[str]:
    """``missing.frames`` against the modality kinds, when the dataset describes them as specs:
    a frame rate on vector data, or a frames modality that is unknown or a vector."""
    if specs is None:
        return []
    try:
        frame_targets(frame_spec(resolved["missing"]["frames"]), specs)
    except MMCoreError as error:
        return [str(error)]
    return []


def balancer_task_problems(resolved: dict[str, Any], registry: Registry, task: TaskSpec | None) -> list[str]:
    """A balancer against what it reads: its factory's ``task_kinds`` against the dataset's task,
    and, for one that ``needs`` the unimodal confidences (class probabilities of the unimodal
    heads), heads in the model and a classification task."""
    node = resolved["balancer"]
    component = registry.find("balancer", node.get("type", ""))
    if component is None:
        return []
    kinds = getattr(component.factory, "task_kinds", None)
    factory = component.factory
    # declared needs only: a balancer from before ``needs`` still gets confidences when they
    # exist, and is not held to what it never said it reads
    needs = (declared_needs(factory) or frozenset()) if isinstance(factory, type) and issubclass(factory, Balancer) else frozenset()
    problems = []
    if "unimodal_confidence" in needs:
        kinds = kinds or ("classification",)
        if not resolved["model"].get("unimodal_heads"):
            problems.append(
                f"balancer: {node['type']} reads the unimodal heads' confidences; set model.unimodal_heads "
                f"(e.g. {{layers: [128], weight: 1.0}})"
            )
    if task is not None and kinds and task.kind not in kinds:
        problems.append(f"balancer: {node['type']} is defined for {' and '.join(kinds)} only; this dataset's task is {task.kind}")
    return problems
