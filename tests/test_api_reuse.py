"""``run`` used as a library: several runs in one process, runs that fail, and what a caller hands it.

A notebook, a script that trains several recipes in turn and a test suite call
``mmcore.engine.trainer.run`` directly. Each test is one way such a caller was let down before
(``mmcore.engine.calling``): its random numbers moved by the run, the previous run's data kept
alive into the next, its recipe changed under it, a ``KeyError`` for the YAML tree as read, a ``TypeError`` for a ``str``
run directory, an earlier run's files overwritten by a fresh run into its directory, SIGTERM
ignored for good after a CLI command ran in-process, two runs in threads training on one generator.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import threading
import weakref
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import mmcore.engine.trainer as trainer
from mmcore.engine import ownership, sizes, stopping
from mmcore.engine.runlock import hold_run_lock
from mmcore.engine.trainer import RunInterrupted, run
from mmcore.errors import MMCoreError, RecipeError
from mmcore.recipe import apply_overrides, load_yaml, validate_recipe
from mmcore.testing import tiny_recipe
from mmcore.types import ModalitySpec

from plugin_helpers import plugins_of

ONE_EPOCH = "train.epochs=1"


def _fds() -> set[str]:
    return {os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd") if os.path.exists(f"/proc/self/fd/{fd}")}


def _stopped(recipe: dict[str, Any], steps: int) -> dict[str, Any]:
    return {**recipe, "train": {**recipe["train"], "max_steps": steps}}


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files through /proc")
def test_runs_in_one_process_repeat_their_numbers_and_leave_the_callers_random_state(tmp_path):
    recipe = tiny_recipe(tmp_path, ONE_EPOCH)
    first = run(recipe, show_progress=False)
    files = _fds()
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    second = run(recipe, show_progress=False)
    # the run seeded the global generator from the recipe (seed 0) and trained on it
    assert torch.equal(torch.get_rng_state(), before)
    assert second.results == first.results and second.run_dir != first.run_dir
    assert _fds() == files  # no handle (lock, log, tensor file) left open by the second run
    assert ownership._held == {}


def test_evaluating_a_saved_run_leaves_the_callers_random_state(tmp_path):
    from mmcore.after import evaluate_run

    done = run(tiny_recipe(tmp_path, ONE_EPOCH), show_progress=False)
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    result = evaluate_run(done.run_dir, label="again")
    assert torch.equal(torch.get_rng_state(), before)  # before: reseeded from the run's recipe
    assert result.results == done.results["test"]


def test_a_run_frees_its_model_and_data_when_it_returns(tmp_path, monkeypatch):
    made: list[weakref.ref[Any]] = []
    build = trainer.build_session

    def spy(*args: Any, **kwargs: Any) -> Any:
        session = build(*args, **kwargs)
        made.extend([weakref.ref(session), weakref.ref(session.model), weakref.ref(session.splits["train"].target)])
        return session

    monkeypatch.setattr(trainer, "build_session", spy)
    # torch imports torch._dynamo when the process builds its first optimizer, and that import's frames
    # stay in a cycle reaching the first Trainer: build one here, so the test sees only mmcore's references
    torch.optim.Adam([nn.Parameter(torch.zeros(1))])
    gc.collect()
    gc.disable()  # before: the trainer sat in a reference cycle, freed only when the collector ran
    try:
        run(tiny_recipe(tmp_path, ONE_EPOCH), show_progress=False)
        alive = [ref() is not None for ref in made]
    finally:
        gc.enable()
    assert alive == [False, False, False]


@pytest.mark.parametrize("fault", ["interrupt", "error"])
def test_a_failed_run_leaves_the_process_ready_for_the_next(tmp_path, monkeypatch, fault):
    recipe = tiny_recipe(tmp_path, ONE_EPOCH)
    straight = run(recipe, show_progress=False)
    step, calls = trainer.Trainer.step, [0]

    def failing(self: Any, *args: Any) -> None:
        calls[0] += 1
        if calls[0] == 3:
            raise KeyboardInterrupt if fault == "interrupt" else RuntimeError("a bug mid-epoch")
        step(self, *args)

    monkeypatch.setattr(trainer.Trainer, "step", failing)
    torch.manual_seed(99)
    before = torch.get_rng_state()
    expected = (RunInterrupted, "interrupted at step 2") if fault == "interrupt" else (RuntimeError, "a bug mid-epoch")
    with pytest.raises(expected[0], match=expected[1]):
        run(recipe, show_progress=False)
    assert torch.equal(torch.get_rng_state(), before)
    assert ownership._held == {}
    failed_dir = max((tmp_path / "tiny").iterdir())
    with hold_run_lock(failed_dir):  # the lock was given up: another owner can take it
        pass
    monkeypatch.setattr(trainer.Trainer, "step", step)
    assert run(recipe, show_progress=False).results == straight.results


class Extending(nn.Module):
    """An encoder with a plugin author's slip: it extends its ``layers`` option in place."""

    def __init__(self, spec: Any, dim: int, layers: list[int] = [8]) -> None:  # noqa: B006
        super().__init__()
        layers.append(dim)
        widths = [spec.dim, *layers]
        self.net = nn.Sequential(*(nn.Linear(a, b) for a, b in zip(widths, widths[1:])))

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.net(x)


def test_the_callers_recipe_is_not_changed_by_a_run_so_it_repeats(tmp_path):
    plugins = plugins_of("extending", encoders={"extending.mlp": Extending})
    tree = apply_overrides(tiny_recipe(tmp_path, ONE_EPOCH), ["model.encoders.default={type: extending.mlp, layers: [8]}"])
    recipe = validate_recipe(tree, plugins.registry, "test")
    first = run(recipe, plugins=plugins, show_progress=False)
    # before: [8, 16, 16, 16, 16, 16, 16] (three encoders, each built twice), and another model next time
    assert recipe["model"]["encoders"]["default"]["layers"] == [8]
    assert run(recipe, plugins=plugins, show_progress=False).results == first.results


def test_each_build_gets_its_own_options_so_every_modality_has_the_same_encoder(tmp_path):
    plugins = plugins_of("extending", encoders={"extending.mlp": Extending})
    component, options = plugins.registry.get("encoder", "extending.mlp"), {"layers": [8]}
    spec = ModalitySpec(name="m0", dim=4)
    widths = [[layer.out_features for layer in component.build({"spec": spec, "dim": 16}, options).net] for _ in range(3)]
    assert widths == [[8, 16]] * 3 and options == {"layers": [8]}  # before: [8, 16], [8, 16, 16], [8, 16, 16, 16]


def test_a_second_run_while_another_thread_trains_is_refused(tmp_path, monkeypatch):
    recipe = tiny_recipe(tmp_path, ONE_EPOCH)
    straight = run(recipe, show_progress=False)
    step, inside, go_on = trainer.Trainer.step, threading.Event(), threading.Event()

    def paused(self: Any, *args: Any) -> None:
        if threading.current_thread().name == "pool-1":
            inside.set()
            go_on.wait(60)
        step(self, *args)

    monkeypatch.setattr(trainer.Trainer, "step", paused)
    results: list[Any] = []
    worker = threading.Thread(target=lambda: results.append(run(recipe, show_progress=False).results), name="pool-1")
    worker.start()
    try:
        assert inside.wait(60)
        with pytest.raises(MMCoreError) as info:  # before: both trained on one generator, wrong numbers in both
            run(recipe, show_progress=False)
    finally:
        go_on.set()
        worker.join(120)
    assert str(info.value).startswith("run: another run is training in this process (thread 'pool-1'); runs in one process share")
    assert results == [straight.results]
    assert run(recipe, show_progress=False).results == straight.results  # the next one, once it is done


def test_an_out_of_memory_message_names_this_runs_phase_not_an_earlier_runs(tmp_path, monkeypatch):
    def diverging(self: Any, *args: Any) -> None:
        raise RuntimeError("a bug mid-epoch")

    monkeypatch.setattr(trainer.Trainer, "step", diverging)
    with pytest.raises(RuntimeError):
        run(tiny_recipe(tmp_path, ONE_EPOCH), show_progress=False)  # leaves "training epoch 1" behind

    def no_memory(*args: Any, **kwargs: Any) -> None:
        raise torch.OutOfMemoryError("CUDA out of memory")  # moving the splits to the device, say

    monkeypatch.setattr(trainer, "build_session", no_memory)
    with pytest.raises(torch.OutOfMemoryError):
        run(tiny_recipe(tmp_path, ONE_EPOCH, "train.batch_size=32"), show_progress=False)
    # before: "out of memory while training epoch 1; the recipe: 3,152 parameters (...), batch size 64, model.dim 16"
    assert sizes.out_of_memory_message().startswith("out of memory while starting the run; lower train.batch_size")


@pytest.mark.parametrize(
    ("given", "fragment"),
    [
        ({"name": "x", "dataset": {"type": "mmcore.synthetic"}}, "run: the recipe is not resolved (no 'seed', 'device'"),
        ({}, "run: the recipe is not resolved (no 'name'"),
        ("recipes/quickstart.yaml", "run: the recipe is a str; expected a resolved recipe (a dict): mmcore.recipe.load_recipe(path)"),
        (Path("recipes/quickstart.yaml"), "run: the recipe is a PosixPath" if os.name == "posix" else "run: the recipe is a"),
    ],
)
def test_a_recipe_that_is_not_resolved_is_one_line(tmp_path, given, fragment):
    with pytest.raises(RecipeError) as info:  # before: KeyError 'logging' or TypeError from plan_of
        run(given, show_progress=False)
    assert str(info.value).startswith(fragment) and "\n" not in str(info.value)
    assert info.value.exit_code == 2


def test_a_str_run_dir_is_created_holds_the_recipe_and_resumes(tmp_path):
    recipe = tiny_recipe(tmp_path / "runs", "train.epochs=2")
    straight = run(recipe, show_progress=False)
    target = tmp_path / "mine" / "run"  # missing: before, "cannot open the run lock"
    stopped = run(_stopped(recipe, 7), run_dir=str(target), show_progress=False)
    assert stopped.run_dir == target and stopped.step == 7
    assert load_yaml(target / "recipe.yaml") == _stopped(recipe, 7)  # before: none, so `mmcore resume` had no recipe
    resumed = run(recipe, run_dir=str(target), resume=True, show_progress=False)  # before: TypeError on '/'
    assert resumed.step == 10 and resumed.results == straight.results


def test_a_fresh_run_into_an_earlier_runs_directory_is_refused_and_changes_nothing(tmp_path):
    recipe = tiny_recipe(tmp_path, ONE_EPOCH)
    earlier = run(recipe, show_progress=False).run_dir
    files = {p: p.read_bytes() for p in earlier.rglob("*") if p.is_file() and p.name != ".lock"}
    with pytest.raises(MMCoreError) as info:  # before: trained again, eval.json overwritten, metrics.jsonl mixed
        run(tiny_recipe(tmp_path, ONE_EPOCH, "seed=5"), run_dir=earlier, show_progress=False)
    assert str(info.value) == (
        f"{earlier}: already holds a run (eval.json, metrics.jsonl, checkpoints); expected a new or empty directory "
        "for a fresh run: continue that run with resume=True if it saved a checkpoint, or delete it, or choose another run_dir"
    )
    assert {p: p.read_bytes() for p in earlier.rglob("*") if p.is_file() and p.name != ".lock"} == files


def test_an_empty_given_directory_trains_and_keeps_a_recipe_already_there(tmp_path):
    recipe = tiny_recipe(tmp_path, ONE_EPOCH)
    target = tmp_path / "prepared"
    target.mkdir()
    (target / "recipe.yaml").write_text("# the sweep's copy\n", encoding="utf-8")
    result = run(recipe, run_dir=target, show_progress=False)
    assert result.run_dir == target and (target / "eval.json").is_file()
    assert (target / "recipe.yaml").read_text(encoding="utf-8") == "# the sweep's copy\n"


def test_resuming_a_missing_directory_names_it(tmp_path):
    missing = tmp_path / "gone"
    with pytest.raises(MMCoreError) as info:
        run(tiny_recipe(tmp_path, ONE_EPOCH), run_dir=missing, resume=True, show_progress=False)
    assert str(info.value) == f"{missing}: cannot resume: no such run directory (expected the folder of an earlier run)"
    assert not missing.exists()


def test_a_cli_command_called_in_process_gives_the_sigterm_handler_back(tmp_path):
    from typer.testing import CliRunner

    from mmcore.cli import app
    from mmcore.recipe import dump_yaml
    from mmcore.testing.recipes import TINY

    (tmp_path / "tiny.yaml").write_text(dump_yaml({**TINY, "output": str(tmp_path / "runs")}), encoding="utf-8")
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        done = CliRunner().invoke(app, ["run", str(tmp_path / "tiny.yaml"), "train.epochs=1", "--no-progress"])
        # before: the command's handler stayed, ignoring SIGTERM for the rest of the caller's process
        handler = signal.getsignal(signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGTERM)
    finally:
        signal.signal(signal.SIGTERM, previous)
        stopping.reset()
    assert done.exit_code == 0, done.output
    assert getattr(handler, "__name__", "") == "<lambda>" and received == [signal.SIGTERM]


def test_import_mmcore_leaves_the_process_settings_alone():
    script = (
        "import os, warnings, logging, signal, torch\n"
        "env, filters = dict(os.environ), list(warnings.filters)\n"
        "handlers, threads = list(logging.root.handlers), torch.get_num_threads()\n"
        "sigs = [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)]\n"
        "import mmcore, mmcore.engine.trainer\n"
        "assert dict(os.environ) == env, set(os.environ.items()) ^ set(env.items())\n"
        "assert list(warnings.filters) == filters\n"
        "assert list(logging.root.handlers) == handlers and torch.get_num_threads() == threads\n"
        "assert [signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)] == sigs\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "MMCORE_RANK_ERRORS"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
