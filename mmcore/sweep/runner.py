"""Planning and running a sweep's runs: fixed directories, skip/resume/fresh, local pool or Ray.

Every run has a fixed directory, ``<sweep>/points/<slug>/seed<s>/``, so a sweep started again
knows each run's state from the disk alone:

- ``eval.json`` exists: finished, skipped;
- ``checkpoints/last`` exists: interrupted, resumed from that checkpoint;
- anything else: started fresh (a half-made directory without a checkpoint is deleted).

Before anything runs, the resolved recipe of every run is compared with the ``recipe.yaml``
already in its directory: a sweep restarted after the recipe file changed would otherwise
count old results as new ones. Each run is a separate process (``mmcore.sweep.worker``) whose
stdout and stderr go to ``<sweep>/logs/<slug>/seed<s>.log``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Literal

from mmcore.engine.lifeline import child_env, terminate_group
from mmcore.engine.ownership import own_run_dir
from mmcore.engine.record import run_state as record_state
from mmcore.errors import MMCoreError, RecipeError
from mmcore.recipe import apply_overrides, dump_yaml, parse_yaml, validate_recipe
from mmcore.recipe.buildcheck import one_build_per_node
from mmcore.registry import Registry
from mmcore.sweep.devices import Placement, Slots
from mmcore.sweep.grid import Point

State = Literal["finished", "resume", "fresh"]


@dataclass
class Run:
    """One (grid point, seed): where it lives and the resolved recipe it trains."""

    point: Point
    seed: int
    run_dir: Path
    log: Path
    recipe: dict[str, Any] = field(repr=False)

    @property
    def name(self) -> str:
        return f"{self.point.slug}/seed{self.seed}"


@dataclass
class Outcome:
    """What happened to a run in this invocation of the sweep."""

    run: Run
    status: Literal["skipped", "done", "failed", "interrupted"]
    resumed: bool = False
    seconds: float = 0.0
    error: str | None = None  # for a failure: the last line of its log, or the backend's error


def run_paths(sweep_dir: Path, point: Point, seed: int) -> tuple[Path, Path]:
    """``(run directory, log file)`` of a run: a pure function of the sweep directory, slug and seed."""
    return sweep_dir / "points" / point.slug / f"seed{seed}", sweep_dir / "logs" / point.slug / f"seed{seed}.log"


def plan_runs(
    tree: dict[str, Any],
    source: str,
    base_overrides: list[str],
    points: list[Point],
    seeds: list[int],
    sweep_dir: Path,
    registry: Registry,
) -> list[Run]:
    """Resolve the recipe of every (point, seed); every problem of every point is reported at once."""
    runs: list[Run] = []
    problems: list[str] = []
    with one_build_per_node():  # the points share most component nodes
        for point in points:
            for seed in seeds:
                overrides = [*base_overrides, *point.overrides, f"seed={seed}"]
                where = source if not point.assignments else f"{source} (grid point {point.label})"
                try:
                    recipe = validate_recipe(apply_overrides(tree, overrides), registry, where)
                except RecipeError as error:
                    problems += [p for p in error.problems if p not in problems]  # seeds repeat the same problem
                    continue
                runs.append(Run(point, seed, *run_paths(sweep_dir, point, seed), recipe=recipe))
    if problems:
        raise RecipeError(problems)
    return runs


def run_state(run_dir: Path) -> State:
    return record_state(run_dir)


def _differences(old: Any, new: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(dotted path, saved value, planned value) of every value that differs between two recipe trees."""
    if isinstance(old, dict) and isinstance(new, dict):
        for key in [*old, *(k for k in new if k not in old)]:
            where = f"{path}.{key}".lstrip(".")
            if key not in old or key not in new:
                yield where, old.get(key, "(absent)"), new.get(key, "(absent)")
            else:
                yield from _differences(old[key], new[key], where)
    elif old != new:
        yield path or "(top level)", old, new


def _saved_differences(saved: Path, planned: Any) -> list[tuple[str, Any, Any]]:
    """How a run's saved recipe differs from the planned one, read as today's schema resolves it.

    A run written by an older mmcore lacks the keys added since (``missing.train.mechanism``,
    ...); resolved again, they take their defaults, which reproduce the older behaviour, so a
    sweep restarted over an older sweep folder skips its finished runs instead of calling them
    changed. A saved recipe that matches as written is never resolved again; one today's schema
    refuses is compared as written."""
    tree = parse_yaml(saved.read_text(encoding="utf-8"), str(saved))
    differences = list(_differences(tree, planned))
    if differences:
        try:
            resolved = parse_yaml(dump_yaml(validate_recipe(tree, None, str(saved))), str(saved))
            differences = list(_differences(resolved, planned))
        except RecipeError:
            pass
    return differences


def check_existing(runs: list[Run]) -> None:
    """Refuse to reuse a run directory whose saved recipe differs from the one planned for it."""
    stale: list[str] = []
    saved_values: dict[str, set[str]] = {}
    for run in runs:
        saved = run.run_dir / "recipe.yaml"
        if run_state(run.run_dir) == "fresh" or not saved.is_file():
            continue
        planned = parse_yaml(dump_yaml(run.recipe), "planned")  # the same round trip the saved file went through
        differences = _saved_differences(saved, planned)
        if differences:
            key, was, now = differences[0]
            stale.append(f"{run.run_dir}: its recipe.yaml differs at '{key}' from the recipe planned for it now "
                         f"(saved: {_yaml_value(was)}, now: {_yaml_value(now)})")
        for key, was, _ in differences:
            saved_values.setdefault(key, set()).add(_yaml_value(was))
    if stale:
        stale.append(
            "the recipe, the overrides or the study file changed since these runs were made: "
            "use another --out directory, or delete those runs to redo them" + _reuse_hint(saved_values)
        )
        raise MMCoreError("\n".join(stale))


def _yaml_value(value: Any) -> str:
    """A recipe value as an override writes it (flow style, so a list stays on one line)."""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return "(absent)" if value == "(absent)" else dump_yaml(value).strip().removesuffix("...").strip()


def _reuse_hint(saved_values: dict[str, set[str]]) -> str:
    """The overrides that plan these runs as they were saved, when every run saved the same value:
    runs made by an older mmcore whose defaults differed (train.log_every was 50, train.dropout_masks
    torch) are then reused, and the runs still to do train with the same settings."""
    if not saved_values or any(len(v) != 1 or "(absent)" in v for v in saved_values.values()):
        return ""
    overrides = " ".join(f"{key}={next(iter(v))}" for key, v in saved_values.items())
    return (f"; if they were made by an older mmcore whose defaults differed, add {overrides} "
            "(as overrides, or to the recipe) to reuse them")


def prepare(run: Run) -> State:
    """Make a run ready to start: a fresh run gets a clean directory holding its recipe.yaml."""
    state = run_state(run.run_dir)
    if state == "fresh":
        if run.run_dir.exists():
            with own_run_dir(run.run_dir, "restart"):  # refused while a live process still trains it
                shutil.rmtree(run.run_dir)  # half-made by an earlier attempt, nothing to resume
        run.run_dir.mkdir(parents=True)
        (run.run_dir / "recipe.yaml").write_text(dump_yaml(run.recipe), encoding="utf-8")
    run.log.parent.mkdir(parents=True, exist_ok=True)
    return state


def worker_command(run_dir: Path, resume: bool) -> list[str]:
    return [sys.executable, "-m", "mmcore.sweep.worker", str(run_dir), *(["--resume"] if resume else [])]


def execute(
    run_dir: str, resume: bool, log: str, env: dict[str, str] | None = None,
    started: Callable[[subprocess.Popen[bytes]], None] | None = None,
) -> int:
    """Run the worker for one run in a child process, appending its output to ``log``; its exit code.

    Module-level and argument-only so that a Ray task can call it on another machine. ``started``
    receives the child process (the local pool keeps it to pass Ctrl-C on). Any exception here
    (a Ray cancel arrives as KeyboardInterrupt) kills the child: no orphaned training.
    """
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} {'resume' if resume else 'start'} {run_dir}\n")
        fh.flush()
        command = worker_command(Path(run_dir), resume)
        # its own process group, so that stopping the sweep stops whatever the run started too;
        # MMCORE_PARENT_PID makes the worker die with this process (mmcore.engine.lifeline)
        with subprocess.Popen(command, stdout=fh, stderr=subprocess.STDOUT, env=child_env(env),
                              start_new_session=True) as child:
            if started is not None:
                started(child)
            try:
                return child.wait()
            except BaseException:
                terminate_group(child, signal.SIGKILL)
                raise


def last_log_line(log: Path) -> str:
    """The last non-empty line of a log (usually the error), for the failure report."""
    try:
        lines = [ln.strip() for ln in log.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "(no log)"
    return lines[-1] if lines else "(empty log)"


def thread_env(jobs: int) -> dict[str, str]:
    """Split the CPU threads between parallel runs unless the user chose a thread count.

    N runs that each use every core spend their time contending; torch reads OMP_NUM_THREADS.
    """
    if "OMP_NUM_THREADS" in os.environ or jobs <= 1:
        return {}
    return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // jobs))}


Report = Callable[[Outcome], None]


def finish(run: Run, resume: bool, code: int, seconds: float, error: str | None = None) -> Outcome:
    """The outcome of a worker's exit code. Ctrl-C ends Python with SIGINT (-2): interrupted, not broken."""
    if code == 0:
        return Outcome(run, "done", resume, seconds)
    if code in (-signal.SIGINT, 128 + signal.SIGINT, -signal.SIGTERM, 128 + signal.SIGTERM):
        return Outcome(run, "interrupted", resume, seconds, "interrupted; continues when started again")
    return Outcome(run, "failed", resume, seconds, error or f"exit code {code}: {last_log_line(run.log)}")


@contextlib.contextmanager
def interruptible() -> Iterator[None]:
    """SIGINT and SIGTERM both stop the sweep through KeyboardInterrupt, even in the background.

    A shell starts background jobs with SIGINT ignored, and Python then installs no Ctrl-C
    handler; ``kill`` sends SIGTERM, which would end the sweep without stopping its children.
    Only the main thread may set handlers; elsewhere (a test's thread) nothing changes.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_local(
    todo: list[tuple[Run, bool]], jobs: int, report: Report, place: Placement | None = None
) -> list[Outcome]:
    """Run ``(run, resume)`` pairs as child processes, ``jobs`` at a time; ``report`` sees each outcome.

    With ``place`` (``--jobs-per-device``) ``place.slots`` run at a time instead, each pinned to
    the device of the slot it takes (``mmcore.sweep.devices``)."""
    env = thread_env(jobs)
    slots = Slots(place) if place is not None else None
    jobs = place.slots if place is not None else jobs
    lock = threading.Lock()
    children: list[subprocess.Popen[bytes]] = []
    stopping = threading.Event()

    def one(run: Run, resume: bool) -> Outcome:
        if stopping.is_set():
            return Outcome(run, "interrupted", resume, 0.0, "not started: the sweep was interrupted")
        start = time.monotonic()
        with slots.held() if slots is not None else contextlib.nullcontext(env) as own:
            code = execute(str(run.run_dir), resume, str(run.log), own, started=children.append)
        outcome = finish(run, resume, code, time.monotonic() - start)
        with lock:
            report(outcome)
        return outcome

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(one, run, resume) for run, resume in todo]
        try:
            return [f.result() for f in futures]
        except KeyboardInterrupt:  # stop the queue, pass Ctrl-C on (a terminal sends it to them anyway)
            stopping.set()
            for f in futures:
                f.cancel()
            # SIGTERM, not SIGINT: a sweep started in the background hands its children an ignored
            # SIGINT. Then wait, so that no orphan keeps writing to a run a restart would resume.
            for child in children:
                terminate_group(child)
            for child in children:
                child.wait()
            raise


def run_ray(
    todo: list[tuple[Run, bool]], jobs: int, address: str | None, gpus_per_run: float, report: Report
) -> list[Outcome]:
    """The same runs as Ray tasks (one per run, at most ``jobs`` in flight), each calling ``execute``.

    On a cluster the sweep directory must be on a file system every node sees, and every node
    needs mmcore and the recipe's plugins installed. Ray hides GPUs from tasks that ask for none,
    so GPU runs need ``gpus_per_run`` > 0.
    """
    try:
        import ray
    except ImportError:
        raise MMCoreError("--backend ray needs the 'ray' package: pip install 'mmcore[ray]'") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, log_to_driver=False)
    task = ray.remote(execute).options(num_cpus=1, num_gpus=gpus_per_run)
    queue, pending, outcomes = list(todo), {}, []
    try:
        while queue or pending:
            while queue and len(pending) < max(1, jobs):
                run, resume = queue.pop(0)
                # absolute paths: a Ray worker's working directory is not ours; Ray sets OMP_NUM_THREADS
                ref = task.remote(str(run.run_dir.resolve()), resume, str(run.log.resolve()))
                pending[ref] = (run, resume, time.monotonic())
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                run, resume, start = pending.pop(ref)
                try:
                    code, error = ray.get(ref), None
                except Exception as exc:  # the task itself died (node lost, worker crash)
                    code, error = -1, f"ray task failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                outcome = finish(run, resume, code, time.monotonic() - start, error)
                report(outcome)
                outcomes.append(outcome)
    except KeyboardInterrupt:
        for ref in pending:  # arrives in the task as KeyboardInterrupt; execute() then kills its child
            ray.cancel(ref)
        raise
    finally:
        if started_here:
            ray.shutdown()
    order = {id(run): i for i, (run, _) in enumerate(todo)}
    return sorted(outcomes, key=lambda o: order[id(o.run)])
