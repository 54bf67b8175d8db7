"""``mmcore sweep``: a recipe over a grid × seeds, one process per run, mean ± std at the end.

    mmcore sweep recipes/quickstart.yaml train.epochs=5 \\
        --grid balancer=mmcore.uniform,redcore.relative_advantage --seeds 0-4 --jobs 4

The sweep directory (``<output>/<name>-sweep/`` or ``--out``) holds::

    sweep.json                   the recipe, base overrides, grid, seeds and every point's runs
    sweep.log                    what each invocation did: skipped, started, resumed, done, failed
    points/<slug>/seed<s>/       a normal run directory (recipe.yaml, eval.json, checkpoints/, ...)
    logs/<slug>/seed<s>.log      the run's stdout and stderr
    results.csv                  mean, std (ddof=1) and n over seeds per point, split, condition, metric

Starting the same command again skips finished runs and resumes interrupted ones, so a sweep
can be extended (add a grid value or a seed) or recovered after a crash at no extra cost.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from rich.console import Console
from rich.text import Text

try:  # POSIX only; elsewhere the sweep lock is the pid in sweep.lock alone
    import fcntl
except ImportError:  # pragma: no cover - exercised on Windows only
    fcntl = None  # type: ignore[assignment]

from mmcore.errors import Interrupted, MMCoreError
from mmcore.paths import check_output_dir
from mmcore.recipe import apply_overrides, load_yaml, validate_recipe
from mmcore.recipe.crosschecks import reported_metrics
from mmcore.registry import Registry
from mmcore.sweep.aggregate import (Row, aggregate, metric_names, pid_alive, read_results, results_table, write_csv,
                                     written_aside)
from mmcore.sweep.devices import Placement, placement, visible_gpus
from mmcore.sweep.grid import Axis, Point, expand, parse_axes, parse_seeds, parsed_values
from mmcore.sweep.runner import Outcome, Run, check_existing, interruptible, plan_runs, prepare, run_local, run_ray
from mmcore.sweep.spread import spread_table

BACKENDS = ("local", "ray")
# What a sweep writes into its directory (see the module docstring): a folder holding only these is a sweep's
SWEEP_ENTRIES = frozenset({"sweep.json", "sweep.log", "sweep.lock", "points", "logs", "results.csv"})


class SweepInterrupted(Interrupted):
    """Ctrl-C during a sweep: one line on how to continue, and the shell's exit code for SIGINT."""


@dataclass
class SweepResult:
    sweep_dir: Path
    runs: list[Run]
    outcomes: list[Outcome]  # one per run, in run order
    rows: list[Row]  # what results.csv holds

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status in ("failed", "interrupted")]


def sweep_dir_for(base_recipe: dict, out: Path | None) -> Path:
    return Path(out) if out is not None else Path(base_recipe["output"]) / f"{base_recipe['name']}-sweep"


class _EventLog:
    """Lines to the screen and to sweep.log, safe to call from the pool's threads."""

    def __init__(self, path: Path, console: Console, total: int) -> None:
        self.path, self.console, self.total, self.count = path, console, total, 0
        self.lock = threading.Lock()

    def line(self, text: str, style: str = "", counted: bool = False) -> None:
        with self.lock:
            if counted:
                self.count += 1
                text = f"[{self.count}/{self.total}] {text}"
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
            self.console.print(Text(text, style=style), soft_wrap=True)  # Text: no markup in paths or errors

    def outcome(self, o: Outcome) -> None:
        if o.status == "skipped":
            self.line(f"skipped (finished): {o.run.name}", "dim", counted=True)
        elif o.status == "done":
            self.line(f"{'resumed, done' if o.resumed else 'done'}: {o.run.name} ({o.seconds:.1f} s)", counted=True)
        elif o.status == "interrupted":
            self.line(f"interrupted: {o.run.name} (continues when the sweep is started again)", "yellow", counted=True)
        else:
            self.line(f"failed: {o.run.name} ({o.seconds:.1f} s; reasons at the end)", "red", counted=True)


def run_sweep(
    recipe_path: str | os.PathLike[str],
    overrides: Sequence[str] = (),
    grid: Sequence[str] = (),
    *,
    seeds: str | None = None,
    jobs: int | None = None,
    out: str | os.PathLike[str] | None = None,
    backend: str = "local",
    ray_address: str | None = None,
    ray_gpus: float | None = None,
    metrics: str | None = None,
    console: Console | None = None,
    registry: Registry | None = None,
    jobs_per_device: int | None = None,
) -> SweepResult:
    """Plan, run (skipping finished runs), aggregate and print a sweep; failures are in the result.

    Every recipe problem of every point is raised before anything runs (``RecipeError``), and so is
    every option problem (``MMCoreError``): an hour of training must not end in a typo.
    ``seeds`` defaults to the recipe's own seed; ``metrics`` (comma-separated) picks the table's
    columns, all metrics by default. ``jobs`` (None: 1) runs at a time; ``jobs_per_device`` K
    instead runs K runs on each visible GPU (on the CPU when there is none), each pinned to its
    device, with the CPU threads divided (``mmcore.sweep.devices``). ``ray_address`` and
    ``ray_gpus`` (None: 0) are for ``backend="ray"`` only.
    """
    console = console or Console()
    if registry is None:
        from mmcore.plugins import get_registry

        registry = get_registry()
    jobs, place = _workers(backend, jobs, ray_gpus, jobs_per_device, ray_address)
    ray_gpus = ray_gpus or 0.0
    chosen = _metric_list(metrics)
    if out is not None and not os.fspath(out).strip():
        raise MMCoreError("--out: expected a folder path, got an empty one")
    plan = _plan(recipe_path, overrides, grid, seeds, None if out is None else Path(out), registry)
    _check_metrics(chosen, plan.runs, registry)
    sweep_dir, runs, points = plan.sweep_dir, plan.runs, plan.points
    sweep_dir.mkdir(parents=True, exist_ok=True)
    with _SweepLock(sweep_dir / "sweep.lock"):
        check_existing(runs)
        _write_sweep_json(plan)
        log = _EventLog(sweep_dir / "sweep.log", console, len(runs))
        outcomes = _execute(plan, log, jobs, backend, ray_address, ray_gpus, place)
        per_point = [
            (p, [read_results(o.run.run_dir) for o in outcomes if o.run.point == p and o.status in ("skipped", "done")])
            for p in points
        ]
        rows = aggregate(per_point)
        write_csv(sweep_dir / "results.csv", rows, [a.key for a in plan.axes])
        _print_summary(console, log, rows, plan, metrics, outcomes)
    return SweepResult(sweep_dir, runs, outcomes, rows)


def _workers(
    backend: str, jobs: int | None, ray_gpus: float | None, jobs_per_device: int | None, ray_address: str | None = None
) -> tuple[int, Placement | None]:
    """The worker options, checked before anything is read: the number of parallel runs and,
    with ``--jobs-per-device``, the devices they are pinned to (which then sets that number).
    An option that would be ignored is refused: the user meant something by it."""
    if backend not in BACKENDS:
        raise MMCoreError(f"--backend: '{backend}' is not a backend; expected one of: {', '.join(BACKENDS)}")
    if jobs is not None and jobs < 1:
        raise MMCoreError(f"--jobs: expected an integer >= 1, got {jobs}")
    if ray_gpus is not None and ray_gpus < 0:
        raise MMCoreError(f"--ray-gpus: expected a number >= 0, got {ray_gpus}")
    for option, value in (("--ray-address", ray_address), ("--ray-gpus", ray_gpus)):
        if value is not None and backend != "ray":
            raise MMCoreError(f"{option}: only with --backend ray (the backend is {backend})")
    if jobs_per_device is None:
        return jobs or 1, None
    if jobs is not None:
        raise MMCoreError("--jobs: not with --jobs-per-device, which sets the runs at a time (K per device); give one of them")
    if backend != "local":
        raise MMCoreError("--jobs-per-device: only with --backend local (on Ray, --ray-gpus 1/K shares a GPU)")
    place = placement(jobs_per_device, visible_gpus())
    return place.slots, place


def _plan(
    recipe_path: str | os.PathLike[str], overrides: Sequence[str], grid: Sequence[str], seeds: str | None,
    out: Path | None, registry: Registry,
) -> "_Plan":
    """Every run of the sweep, each point's recipe validated (all problems raised together)."""
    axes = parse_axes(list(grid))
    source = os.fspath(recipe_path)
    tree = load_yaml(recipe_path)
    base = validate_recipe(apply_overrides(tree, list(overrides)), registry, source)
    seed_list = parse_seeds(seeds) if seeds is not None else [int(base["seed"])]
    points = expand(axes)
    sweep_dir = sweep_dir_for(base, out)
    check_output_dir(sweep_dir, "--out" if out is not None else "output")
    _check_sweep_dir(sweep_dir, "--out" if out is not None else "output")
    runs = plan_runs(tree, source, list(overrides), points, seed_list, sweep_dir, registry)
    return _Plan(sweep_dir, source, list(overrides), base, axes, points, seed_list, runs)


def _check_sweep_dir(sweep_dir: Path, what: str) -> None:
    """Refuse to write into a folder that is not a sweep's: a run directory or anything else
    would be mixed with points/ and logs/ and read as an empty sweep afterwards. A folder with a
    sweep.json (or only the sweep's own entries, as a sweep stopped before writing it leaves)
    is a sweep being restarted or extended: finished runs are skipped."""
    if not sweep_dir.is_dir():
        return  # absent: the sweep creates it (check_output_dir has refused a file)
    entries = {e.name for e in sweep_dir.iterdir()}
    if "sweep.json" in entries or entries <= SWEEP_ENTRIES:
        return
    raise MMCoreError(
        f"{what}: {sweep_dir} is not empty and not a sweep folder (no sweep.json); expected a new or empty "
        f"folder, or an earlier sweep's to continue it"
    )


def _metric_list(metrics: str | None) -> list[str] | None:
    """``--metrics`` as names (None: all), refused when empty: an empty name is a slip, not "all"."""
    if metrics is None:
        return None
    names = [m.strip() for m in metrics.split(",")]
    if not all(names):
        raise MMCoreError(f"--metrics: expected comma-separated metric names, e.g. macro_f1,accuracy; got '{metrics}'")
    return names


def _check_metrics(chosen: list[str] | None, runs: list[Run], registry: Registry) -> None:
    """Every ``--metrics`` name is one the runs' task reports (``reported_metrics``), before any run."""
    if chosen is None:
        return
    known, called = reported_metrics([run.recipe.get("dataset") for run in runs], registry)
    for name in chosen:
        if name not in known:
            raise MMCoreError(f"--metrics: '{name}' is not {called}; expected one of {', '.join(known)}")


@dataclass
class _Plan:
    """Everything decided before a run starts."""

    sweep_dir: Path
    source: str  # the recipe file as given
    overrides: list[str]  # base overrides, applied before each point's
    base: dict[str, Any]  # the recipe with the base overrides, before grid and seed
    axes: list[Axis]
    points: list[Point]
    seeds: list[int]
    runs: list[Run]


def _execute(
    plan: _Plan, log: _EventLog, jobs: int, backend: str, ray_address: str | None, ray_gpus: float,
    place: Placement | None = None,
) -> list[Outcome]:
    """Skip finished runs, prepare and run the others; one outcome per run, in plan order."""
    states = {id(run): prepare(run) for run in plan.runs}
    todo = [(run, states[id(run)] == "resume") for run in plan.runs if states[id(run)] != "finished"]
    log.line(
        f"sweep {plan.sweep_dir}: {len(plan.points)} point(s) × {len(plan.seeds)} seed(s) = {len(plan.runs)} runs; "
        f"{len(plan.runs) - len(todo)} finished, {sum(r for _, r in todo)} to resume, "
        f"{sum(not r for _, r in todo)} to start; backend {backend}, {jobs} at a time"
    )
    outcomes: dict[int, Outcome] = {}
    for run in plan.runs:
        if states[id(run)] == "finished":
            outcomes[id(run)] = Outcome(run, "skipped")
            log.outcome(outcomes[id(run)])
    try:
        with interruptible():
            if backend == "ray":
                done = run_ray(todo, jobs, ray_address, ray_gpus, log.outcome)
            else:
                done = run_local(todo, jobs, log.outcome, place)
    except KeyboardInterrupt:
        log.line("interrupted (Ctrl-C)", "yellow")
        raise SweepInterrupted(
            "sweep interrupted: start the same command again; finished runs are skipped, interrupted ones resume"
        ) from None
    outcomes.update({id(o.run): o for o in done})
    return [outcomes[id(run)] for run in plan.runs]


class _SweepLock:
    """One sweep process per directory: two would delete each other's half-made run directories.

    An ``flock`` on sweep.lock, taken before the file is read, so two sweeps started together
    cannot both see it free; the kernel drops it when its holder dies, however it dies, so a
    killed sweep never blocks its restart. The holder writes its pid in it for the refusal to name.
    A lock file naming a live process that holds no flock (a sweep of an earlier mmcore, without
    one) is refused too.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.handle: Any = None

    def __enter__(self) -> "_SweepLock":
        for _ in range(3):
            handle = open(self.path, "a+")
            try:
                owner = self._take(handle)
            except BaseException:
                handle.close()
                raise
            if owner is None:  # this file was removed by the sweep that just ended: lock its successor
                handle.close()
                continue
            if owner.isdigit() and pid_alive(int(owner)):
                handle.close()
                raise self._refusal(owner)
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            self.handle = handle
            return self
        raise MMCoreError(f"{self.path}: cannot take the sweep lock")

    def _take(self, handle: Any) -> str | None:
        """Lock the open file and return the pid text in it; None when the path no longer names it."""
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                raise self._refusal(handle.read().strip() or "unknown") from None
        try:
            if os.stat(self.path).st_ino != os.fstat(handle.fileno()).st_ino:
                return None
        except FileNotFoundError:
            return None
        handle.seek(0)
        return handle.read().strip()

    def _refusal(self, owner: str) -> MMCoreError:
        return MMCoreError(
            f"{self.path.parent}: another sweep (pid {owner}) is running in this directory; "
            f"wait for it, or delete {self.path.name} if that process is not a sweep"
        )

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)  # before the flock goes, so no one locks a removed file unseen
        self.handle.close()


def _write_sweep_json(plan: _Plan) -> None:
    """What this sweep is, for people and scripts; rewritten by each invocation (the grid may grow)."""
    data = {
        "recipe": str(Path(plan.source).resolve()),
        "overrides": plan.overrides,
        "base_recipe": plan.base,
        "grid": {a.key: list(a.values) for a in plan.axes},
        "seeds": plan.seeds,
        "points": [
            {
                "slug": p.slug,
                "overrides": p.overrides,
                "values": parsed_values(p),
                "runs": {str(r.seed): str(r.run_dir.relative_to(plan.sweep_dir)) for r in plan.runs if r.point == p},
            }
            for p in plan.points
        ],
    }
    with written_aside(plan.sweep_dir / "sweep.json") as aside:
        aside.write_text(json.dumps(data, indent=1), encoding="utf-8")


def _print_summary(
    console: Console, log: _EventLog, rows: list[Row], plan: _Plan, metrics: str | None, outcomes: list[Outcome]
) -> None:
    available = metric_names(rows)
    chosen = available
    if metrics is not None:
        chosen = _metric_list(metrics) or []
        unknown = [m for m in chosen if m not in available]
        if unknown and available:  # a typo must not cost the table of a finished sweep
            console.print(f"[yellow]unknown metric(s) {', '.join(unknown)}; available: {', '.join(available)}[/]")
            chosen = [m for m in chosen if m in available] or available
    if rows:
        console.print(results_table(rows, plan.points, [a.key for a in plan.axes], chosen))
        spread = spread_table(outcomes, chosen)
        if spread is not None:
            console.print(spread)
    failed = [o for o in outcomes if o.status in ("failed", "interrupted")]
    summary = f"results: {plan.sweep_dir / 'results.csv'}"
    if failed:
        summary += f"; {len(failed)} of {len(outcomes)} runs failed (excluded from the table):"
    log.line(summary, "red" if failed else "")
    for o in failed:
        log.line(f"  {o.run.name}: {o.error}\n    log: {o.run.log}", "red")
