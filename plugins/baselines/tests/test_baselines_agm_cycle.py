"""``baselines.agm`` lets a finished run go: after ``run`` returns, its session, model and data
are freed by reference counting alone, as the engine's own runs are
(``tests/test_api_reuse.py::test_a_run_frees_its_model_and_data_when_it_returns``). A session
held in a reference cycle (a closure or bound method kept on the balancer) would live until the
collector ran, with the model's and the data's memory."""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import Any

import pytest
import torch

import mmcore.engine.trainer as trainer
from mmcore.engine.trainer import run
from mmcore.testing import tiny_recipe


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _warm_up() -> None:
    """The first optimizer a process builds imports ``torch._dynamo`` lazily, and that import
    leaves frames in a cycle that reaches back to the caller's (the trainer's, holding the
    session): torch's, once per process, not the balancer's. Build one before measuring."""
    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


@pytest.mark.parametrize("overrides", [("train.max_steps=2",), ("train.epochs=2", "train.log_every=1")],
                         ids=["two-steps", "two-epochs-logged"])
def test_an_agm_run_frees_its_model_and_data_when_it_returns(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              overrides: tuple[str, ...]) -> None:
    made: list[weakref.ref[Any]] = []
    build = trainer.build_session

    def spy(*args: Any, **kwargs: Any) -> Any:
        session = build(*args, **kwargs)
        made.extend([weakref.ref(session), weakref.ref(session.model), weakref.ref(session.splits["train"].target)])
        return session

    def spy_balancer(*args: Any, **kwargs: Any) -> Any:
        balancer = build_balancer(*args, **kwargs)
        made.append(weakref.ref(balancer))
        return balancer

    build_balancer = trainer.build_balancer
    monkeypatch.setattr(trainer, "build_session", spy)
    monkeypatch.setattr(trainer, "build_balancer", spy_balancer)
    recipe = tiny_recipe(tmp_path, "train.epochs=1", *overrides, balancer={"type": "baselines.agm"})
    _warm_up()
    gc.collect()
    gc.disable()  # a cycle would keep them alive until the collector ran
    try:
        result = run(recipe, show_progress=False)
        alive = [ref() is not None for ref in made]
    finally:
        gc.enable()
    assert (result.run_dir / "checkpoints").is_dir()  # the run trained and saved: AGM's hooks ran
    assert len(made) == 4  # session, model, data, balancer
    assert alive == [False, False, False, False]
