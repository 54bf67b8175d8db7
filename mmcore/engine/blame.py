"""Naming the component whose forward pass raised (or whose balancer or logger call failed), so a
plugin's bug is one line, not a traceback.

Only on failure: the traceback's frames are searched for the innermost ``self`` that is one of
the model's components (an encoder, the imputer, the fusion head, a balancer's calibration module,
a unimodal head); nothing runs on the happy path.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator

import torch
from torch import Tensor, nn

from mmcore.components import Logger
from mmcore.engine.outputs import BadOutput, first_nonfinite
from mmcore.errors import MMCoreError
from mmcore.recipe.plan import Node, RunPlan
from mmcore.registry import Registry


class ComponentFault(MMCoreError):
    """A plugin's component failed or returned something unusable; the message names it. The
    trainer adds where the run can continue from, since the fix is in the plugin, not the run."""


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
    for m, head in (getattr(model, "unimodal_heads", None) or {}).items():  # the engine's, not a plugin's
        labels[id(head)] = f"the unimodal head for modality '{m}' (model.unimodal_heads)"
    return labels


@contextlib.contextmanager
def blame_forward(labels: dict[int, str], doing: str, unnamed: bool = True) -> Iterator[None]:
    """Re-raise an unexpected exception as one ``MMCoreError`` naming the component it came from.

    ``unnamed=False`` lets an exception that no component raised pass as it is (evaluation: the
    code around the model is the engine's, whose bugs keep their traceback)."""
    try:
        yield
    except BadOutput as exc:  # a component returned something unusable: name it and what was expected
        where = labels.get(id(exc.module), "a component of the model")
        raise ComponentFault(f"{doing}: {where}: {exc.problem}") from exc
    except MMCoreError:
        raise
    except (Exception, SystemExit) as exc:  # sys.exit in a plugin's forward is a bug, not a clean exit
        culprit = None
        tb = exc.__traceback__
        while tb is not None:  # the innermost frame whose ``self`` is a component wins
            owner = tb.tb_frame.f_locals.get("self")
            if isinstance(owner, nn.Module) and id(owner) in labels:
                culprit = labels[id(owner)]
            tb = tb.tb_next
        if culprit is None and not unnamed:
            raise
        where = culprit or "the model (no single component identified)"
        raise ComponentFault(f"{doing}: {where} raised {type(exc).__name__}: {exc}") from exc


def check_finite_outputs(
    model: Any, names: list[str], out: Any, labels: dict[int, str], doing: str, present: Tensor | None = None
) -> None:
    """The first component, in the order data flows (encoders, calibration, imputer, fusion,
    unimodal heads), whose output in ``out`` (a ``ModelOutput``) has a NaN or infinity, named as
    ``ComponentFault`` (one host read; ``present``: see ``nonfinite_output``)."""
    found = nonfinite_output(model, names, out, labels, present)
    if found is not None:
        raise ComponentFault(f"{doing}: {found}")


def nonfinite_output(model: Any, names: list[str], out: Any, labels: dict[int, str], present: Tensor | None = None) -> str | None:
    """``"<component>: <what> has non-finite values ..."`` for ``check_finite_outputs``, or None.

    ``ModelOutput`` does not keep a balancer's calibration module's output, so when the imputer's
    looks guilty and ``present`` is given, the calibration is run again on ``out.h`` (this failure
    path only) and named instead when its output on present rows is non-finite. The unimodal
    heads come last: they read ``z`` beside the fusion and feed only the loss."""
    found = first_nonfinite(_output_parts(model, names, out))
    calibration = getattr(model, "calibration", None)
    if found is not None and found[0] is model.imputer and calibration is not None and present is not None:
        found = first_nonfinite([(calibration, "its output", _calibrated(calibration, out.h, present))]) or found
    if found is None:
        return None
    return f"{labels.get(id(found[0]), 'a component of the model')}: {found[1]} has non-finite values (NaN or infinity)"


def _output_parts(model: Any, names: list[str], out: Any) -> list[tuple[Any, str, Tensor | None]]:
    """What each component returned, in the order data flows."""
    parts = [(model.encoders[m], "its output", out.h[:, i]) for i, m in enumerate(names)]
    parts += [(model.imputer, "z", out.z)] + [(model.imputer, f"losses['{g}']", t) for g, t in out.losses.items()]
    parts += [(model.fusion, "its prediction", out.prediction)]
    if getattr(out, "unimodal", None) is not None:
        parts += [(model.unimodal_heads[m], "its prediction", out.unimodal[:, i]) for i, m in enumerate(names)]
    return parts


def _calibrated(calibration: nn.Module, h: Tensor, present: Tensor) -> Tensor | None:
    """The calibration's output on the present rows (absent ones are dropped after it, as in
    ``MultimodalModel.complete``), or None when it cannot be computed again (the imputer keeps the blame)."""
    try:
        with torch.no_grad():
            return calibration(h.detach(), present).where(present.unsqueeze(-1), 0.0)
    except Exception:  # noqa: BLE001 - a second look must not replace the fault being reported
        return None


@contextlib.contextmanager
def blame_call(label: str, doing: str) -> Iterator[None]:
    """One call into a plugin object that is not a module of the model (a balancer's hook, a
    logger's method): its exception, ``sys.exit`` included, or a ``BadOutput`` from the checks of
    what it returned, becomes one line naming ``label`` (``balancer 'x.y' (plugin x)``)."""
    try:
        yield
    except BadOutput as exc:
        raise ComponentFault(f"{label}: {doing}: {exc.problem}") from exc
    except MMCoreError:
        raise
    except (Exception, SystemExit) as exc:
        raise ComponentFault(f"{label}: {doing} raised {type(exc).__name__}: {exc}") from exc


class NamedLogger(Logger):
    """A plugin's logger whose every call fails as one line naming it (``blame_call``): a logger
    that raises in ``log_step`` stops the run with its name (the checkpoints stay resumable)
    instead of a traceback, and ``sys.exit`` in ``close`` cannot end the process with status 0.
    Every public method of ``Logger`` is forwarded here by name (a test keeps them in step), so a
    method added to ``Logger`` cannot fall through to the base class's no-op."""

    def __init__(self, inner: Logger, label: str) -> None:
        self.inner, self.label = inner, label

    def __getattr__(self, name: str) -> Any:  # anything else a caller reads (use_console, files, ...)
        return getattr(self.inner, name)

    def open(self, run_dir: Any, resume_step: int | None = None) -> None:
        with blame_call(self.label, "open()"):
            self.inner.open(run_dir, resume_step)

    def log_step(self, step: int, scalars: dict[str, float]) -> None:
        with blame_call(self.label, f"log_step() at step {step}"):
            self.inner.log_step(step, scalars)

    def progress(self, step: int, total: int, epoch: int, epochs: int) -> None:
        with blame_call(self.label, f"progress() at step {step}"):
            self.inner.progress(step, total, epoch, epochs)

    def log_epoch(self, epoch: int, step: int, scalars: dict[str, float]) -> None:
        with blame_call(self.label, f"log_epoch() after epoch {epoch}"):
            self.inner.log_epoch(epoch, step, scalars)

    def close(self) -> None:
        with blame_call(self.label, "close()"):
            self.inner.close()


def close_all(loggers: list[Logger]) -> None:
    """Close every logger, also after one of them failed; the first failure is raised at the end,
    unless an exception is already on its way out (the run's own error is the one to report)."""
    failed: BaseException | None = None
    for logger in loggers:
        try:
            logger.close()
        except Exception as exc:
            failed = failed or exc
    if failed is not None and sys.exc_info()[1] is None:
        raise failed
