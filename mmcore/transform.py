"""A dataset's input transform: how raw features become what the model sees, stored with the run.

Why it exists: a dataset that standardises its features with training-split statistics hands the
engine standardised tensors, so a trained model has only ever seen standardised inputs. Without
those statistics, ``mmcore predict`` on raw rows is silently wrong (every row one class). So a
dataset declares the transform it applies, the run stores it, and ``eval``, ``predict`` and
``export`` apply the stored one.

How a dataset declares it — an optional method, read once when a run starts::

    def input_transform(self) -> InputTransform | None:
        return InputTransform.standardize({"a": (mean_a, std_a)})   # [D] tensors per modality

``split(name)`` keeps returning model inputs (the transform already applied); the transform maps
the dataset's raw features to them. A modality the transform does not name is used as it is;
``InputTransform.identity()`` says "nothing to do" explicitly; a dataset without the method (or
returning ``None``) declares nothing, and ``predict`` says it feeds inputs as given.

Rules are names in one table (``RULES``) with the statistics each needs, so that a stored
transform is data (tensors + a name), never code. For sequence modalities a rule applies to the
valid frames only; padding stays zero, as the loaders pad after transforming.

On disk (in the run directory, covered by every checkpoint's checksums, see
``mmcore.engine.checkpoint``): ``transform.json`` (format, whether one was declared, the rule and
statistic names per modality) and ``transform.safetensors`` (``<modality>.<statistic>`` tensors).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from mmcore.errors import MMCoreError
from mmcore.types import ModalitySpec, SplitData

JSON_FILE = "transform.json"
TENSOR_FILE = "transform.safetensors"
FILES = (JSON_FILE, TENSOR_FILE)
FORMAT = 1


@dataclass(frozen=True)
class Rule:
    """One named rule: the statistics it needs (each a [D] tensor), forward and inverse maps."""

    stats: tuple[str, ...]
    apply: Callable[[Tensor, dict[str, Tensor]], Tensor]
    invert: Callable[[Tensor, dict[str, Tensor]], Tensor]
    doc: str


RULES: dict[str, Rule] = {
    "identity": Rule((), lambda x, s: x, lambda x, s: x, "x as it is"),
    # std is kept > 0 by the declaring dataset (a constant training column gets std 1, so it stays at 0)
    "standardize": Rule(("mean", "std"), lambda x, s: (x - s["mean"]) / s["std"], lambda x, s: x * s["std"] + s["mean"],
                        "(x - mean) / std per feature, with the training split's mean and std"),
}


class TransformError(MMCoreError):
    """A declared or stored transform that is malformed, or input it cannot take."""


@dataclass(frozen=True)
class Step:
    """The rule of one modality and its statistics ([D] float32 tensors on the CPU)."""

    rule: str
    stats: dict[str, Tensor] = field(default_factory=dict)


@dataclass(frozen=True)
class InputTransform:
    """Per modality, the map from the dataset's raw features to the model's inputs."""

    steps: dict[str, Step] = field(default_factory=dict)  # modality -> step; unnamed: identity

    @classmethod
    def identity(cls) -> "InputTransform":
        """The dataset's features are its raw features (declared, nothing to apply)."""
        return cls({})

    @classmethod
    def standardize(cls, stats: dict[str, tuple[Any, Any]]) -> "InputTransform":
        """``{modality: (mean, std)}`` with [D] arrays or tensors; std must be > 0."""
        steps = {m: Step("standardize", {"mean": _tensor(mean), "std": _tensor(std)}) for m, (mean, std) in stats.items()}
        return cls(steps)

    def check(self, specs: list[ModalitySpec], where: str) -> "InputTransform":
        """Rule names, statistic names and shapes against the modalities; one-line error otherwise."""
        dims = {s.name: s.dim for s in specs}
        for m, step in self.steps.items():
            if m not in dims:
                raise TransformError(f"{where}: transform names modality '{m}'; modalities: {', '.join(dims)}")
            if step.rule not in RULES:
                raise TransformError(f"{where}: modality '{m}': unknown transform rule '{step.rule}'; rules: {', '.join(RULES)}")
            need = RULES[step.rule].stats
            if sorted(step.stats) != sorted(need):
                raise TransformError(f"{where}: modality '{m}': rule '{step.rule}' needs statistics {list(need)}, got {sorted(step.stats)}")
            for k, t in step.stats.items():
                if tuple(t.shape) != (dims[m],) or not bool(torch.isfinite(t).all()):
                    raise TransformError(f"{where}: '{m}.{k}' must be {dims[m]} finite values, got shape {list(t.shape)}")
            if step.rule == "standardize" and not bool((step.stats["std"] > 0).all()):
                raise TransformError(f"{where}: '{m}.std' must be > 0 everywhere (use 1 for constant features)")
        return self

    def apply(self, name: str, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Raw features of modality ``name`` -> model inputs (valid frames only for sequences)."""
        return self._map(name, x, lengths, inverse=False)

    def invert(self, name: str, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """Model inputs -> raw features (the round trip the contract suite checks)."""
        return self._map(name, x, lengths, inverse=True)

    def _map(self, name: str, x: Tensor, lengths: Tensor | None, inverse: bool) -> Tensor:
        step = self.steps.get(name)
        if step is None or step.rule == "identity":
            return x
        rule = RULES[step.rule]
        stats = {k: v.to(device=x.device, dtype=x.dtype) for k, v in step.stats.items()}
        out = (rule.invert if inverse else rule.apply)(x, stats)
        if x.dim() == 3 and lengths is not None:  # padding stays zero
            valid = torch.arange(x.shape[1], device=x.device).unsqueeze(0) < lengths.to(x.device).unsqueeze(1)
            out = out * valid.unsqueeze(-1).to(out.dtype)
        return out

    def apply_split(self, split: SplitData, inverse: bool = False) -> SplitData:
        """Every modality of a split mapped (a new SplitData; ids, targets and lengths shared)."""
        features = {m: self._map(m, x, split.lengths.get(m), inverse) for m, x in split.features.items()}
        return SplitData(features, split.lengths, split.target, split.ids, split.unusable)

    def same_as(self, other: "InputTransform") -> bool:
        """Equal rules and statistics (to float32 rounding), modality by modality."""
        mine = {m: s for m, s in self.steps.items() if s.rule != "identity"}
        theirs = {m: s for m, s in other.steps.items() if s.rule != "identity"}
        if sorted(mine) != sorted(theirs):
            return False
        for m, step in mine.items():
            o = theirs[m]
            if step.rule != o.rule or sorted(step.stats) != sorted(o.stats):
                return False
            if not all(torch.allclose(step.stats[k], o.stats[k], rtol=1e-6, atol=1e-7) for k in step.stats):
                return False
        return True

    def describe(self) -> dict[str, Any]:
        """The JSON half: rule and statistic names per modality."""
        return {m: {"rule": s.rule, "stats": sorted(s.stats)} for m, s in sorted(self.steps.items())}


def _tensor(value: Any) -> Tensor:
    return torch.as_tensor(value, dtype=torch.float64).reshape(-1).to(torch.float32).contiguous()


def declared_transform(dataset: Any, specs: list[ModalitySpec], where: str) -> InputTransform | None:
    """The dataset's declared transform, checked; ``None`` when it declares none."""
    method = getattr(dataset, "input_transform", None)
    if method is None:
        return None
    transform = method()
    if transform is None:
        return None
    if not isinstance(transform, InputTransform):
        raise TransformError(f"{where}: input_transform() returned {type(transform).__name__}, not mmcore.transform.InputTransform")
    return transform.check(specs, where)


# --- the run directory's copy --------------------------------------------------------------------
def save_transform(run_dir: Path, transform: InputTransform | None, dataset: str) -> None:
    """Write ``transform.json`` and ``transform.safetensors`` (empty when nothing is declared)."""
    from safetensors.torch import save_file

    run_dir = Path(run_dir)
    tensors = {} if transform is None else {f"{m}.{k}": v.contiguous() for m, s in transform.steps.items() for k, v in s.stats.items()}
    save_file(tensors, str(run_dir / TENSOR_FILE))
    payload = {
        "format": FORMAT,
        "dataset": dataset,
        "declared": transform is not None,
        "modalities": {} if transform is None else transform.describe(),
        "rules": {name: rule.doc for name, rule in RULES.items()},
    }
    (run_dir / JSON_FILE).write_text(json.dumps(payload, indent=1))


@dataclass(frozen=True)
class StoredTransform:
    """What a run directory holds: ``transform`` is None when the dataset declared none."""

    transform: InputTransform | None
    present: bool  # False for a run written before transforms were stored


def load_transform(run_dir: Path) -> StoredTransform:
    """The run's stored transform, checked for format; one-line error when damaged."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    run_dir = Path(run_dir)
    meta_file, tensor_file = run_dir / JSON_FILE, run_dir / TENSOR_FILE
    if not meta_file.is_file():
        return StoredTransform(None, False)
    try:
        meta = json.loads(meta_file.read_text())
        tensors = load_file(str(tensor_file))
    except (OSError, ValueError, SafetensorError) as exc:
        raise TransformError(f"{meta_file.parent}: transform files unreadable ({type(exc).__name__}: {exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or not isinstance(meta.get("modalities"), dict):
        raise TransformError(f"{meta_file}: not a transform record of format {FORMAT}")
    if not meta.get("declared"):
        return StoredTransform(None, True)
    steps: dict[str, Step] = {}
    for m, node in meta["modalities"].items():
        names = node.get("stats", []) if isinstance(node, dict) else []
        missing = [f"{m}.{k}" for k in names if f"{m}.{k}" not in tensors]
        if not isinstance(node, dict) or missing:
            raise TransformError(f"{meta_file}: modality '{m}': statistics {missing or '?'} missing from {TENSOR_FILE}")
        steps[m] = Step(str(node.get("rule")), {k: tensors[f"{m}.{k}"] for k in names})
    return StoredTransform(InputTransform(steps), True)
