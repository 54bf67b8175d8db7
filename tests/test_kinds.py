"""The component kinds are declared once (``KIND_TABLE``); every table derived from it stays in step."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import mmcore
from mmcore import hookspecs
from mmcore.components import INJECTED, KIND_TABLE, KINDS, Logger
from mmcore.plugins import REGISTER_HOOKS, load_plugins
from mmcore.recipe import schema
from mmcore.options.hints import NodeOf
from mmcore.registry import Registry
from mmcore.testing import CHECKS, check_logger

NAMES = [k.name for k in KIND_TABLE]


@pytest.mark.parametrize("kind", KIND_TABLE, ids=NAMES)
def test_every_kind_has_its_hookspec_with_a_manual(kind):
    spec = getattr(hookspecs, kind.hook)
    assert spec.mmcore_spec is not None  # marked with hookspec
    assert list(inspect.signature(spec).parameters) == ["register"]
    assert len(inspect.getdoc(spec) or "") > 80, f"{kind.hook} needs a docstring that is the author's manual"


@pytest.mark.parametrize("kind", KIND_TABLE, ids=NAMES)
def test_every_kind_has_its_contract_check_schema_node_and_registry_table(kind):
    assert kind.name in CHECKS and callable(CHECKS[kind.name])
    alias = getattr(schema, kind.node)
    assert any(isinstance(m, NodeOf) and m.kind == kind.name for m in alias.__metadata__)
    assert REGISTER_HOOKS[kind.hook] == kind.name and INJECTED[kind.name] == kind.injected
    assert Registry().names(kind.name) == []


def test_no_table_has_a_kind_the_table_of_kinds_lacks():
    assert set(CHECKS) == set(KINDS) and set(REGISTER_HOOKS.values()) == set(KINDS)
    register_hooks = {n for n in dir(hookspecs) if n.startswith("register_") and n != "register_commands"}
    assert register_hooks == {k.hook for k in KIND_TABLE}
    nodes = {n for n in dir(schema) if n.endswith("Node") and n[0].isupper()}
    assert nodes == {k.node for k in KIND_TABLE}


class Recorder(Logger):
    """Writes every call to ``calls.txt`` and drops lines past ``resume_step`` on reopening."""

    def __init__(self, flush_every: int = 1) -> None:
        self.flush_every = flush_every

    def open(self, run_dir: Path, resume_step: int | None = None) -> None:
        self.path = run_dir / "calls.txt"
        lines = self.path.read_text().splitlines() if self.path.exists() else []
        if resume_step is not None:
            lines = [ln for ln in lines if int(ln.split()[1]) <= resume_step]
        self.path.write_text("".join(f"{ln}\n" for ln in lines))

    def log_step(self, step: int, scalars: dict[str, float]) -> None:
        with self.path.open("a") as f:
            f.write(f"step {step} {scalars['loss']:.4f}\n")

    def log_epoch(self, epoch: int, step: int, scalars: dict[str, float]) -> None:
        with self.path.open("a") as f:
            f.write(f"epoch {step} {scalars['select']}\n")


def test_logger_kind_registers_through_its_hook_and_passes_its_check():
    plugin = type("P", (), {"register_loggers": staticmethod(mmcore.hookimpl(lambda register: register("rec.calls", Recorder)))})
    registry = load_plugins(entry_points=[], extra={"rec": plugin}).registry
    component = registry.get("logger", "rec.calls")
    assert [o.name for o in component.options()] == ["flush_every"]
    check_logger(component)


def test_logger_check_rejects_a_logger_that_raises_or_is_not_a_logger():
    class Fragile(Recorder):
        def open(self, run_dir: Path, resume_step: int | None = None) -> None:
            if resume_step is not None:
                raise FileExistsError(run_dir / "calls.txt")
            super().open(run_dir, resume_step)

    with pytest.raises(AssertionError, match=r"open\(run_dir, resume_step=2\) raised FileExistsError.*resumed at step 2"):
        check_logger(Fragile)
    with pytest.raises(AssertionError, match="returned object, not an mmcore.Logger"):
        check_logger(lambda: object())


def test_logger_is_public():
    assert mmcore.Logger is Logger
