"""``mmcore study run|status``: plan, validate everything, freeze the analysis, tune, run, report.

Order of work: (1) read the study file, resolve and validate every run's recipe (tuning runs
and the study's runs at every candidate), all problems at once, nothing started on error;
(2) freeze or check the analysis (``prereg.json``); (3) tuning runs, then each arm's choice by
its mean validation score over the tuning seeds (``tune.json``); (4) the study's runs at the
chosen values; (5) the outputs. Restarting does only what is missing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from mmcore.engine.record import RunRecord, read_yaml, run_state
from mmcore.errors import Interrupted, MMCoreError
from mmcore.paths import PathError, check_output_dir
from mmcore.study.execute import run_phase
from mmcore.study.freeze import freeze
from mmcore.study.plan import StudyRun, candidates, main_runs, resolve, tune_runs, tuned_arms
from mmcore.study.spec import Study, StudyError, load_study
from mmcore.sweep.aggregate import written_aside
from mmcore.sweep.devices import Placement, placement, visible_gpus
from mmcore.sweep.runner import Outcome, check_existing, interruptible

BACKENDS = ("local", "ray")
TUNE_FILE = "tune.json"


class StudyInterrupted(Interrupted):
    """Ctrl-C during a study: finished runs are kept, the same command continues."""


@dataclass
class StudyState:
    study: Study
    study_dir: Path
    tune: list[StudyRun]
    main: list[StudyRun]
    chosen: dict[str, dict[str, Any]]


def study_dir_for(study: Study, out: Path | None) -> Path:
    if out is not None:
        return Path(out)
    if study.output is not None:
        return study.output
    recipe = read_yaml(study.recipe)
    return Path(str(recipe.get("output", "runs"))) / f"{study.name}-study"


def score(run: StudyRun, select: str) -> float | None:
    """A tuning run's validation score: ``val.<metric>`` (the average condition) or ``val.<cond>.<metric>``."""
    parts = select.split(".")
    condition, metric = (parts[1], parts[2]) if len(parts) == 3 else ("average", parts[-1])
    return RunRecord(run.run_dir).value("val", condition, metric) if run_state(run.run_dir) == "finished" else None


def choose(study: Study, runs: list[StudyRun]) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Each arm's candidate with the best mean validation score over the tuning seeds (first wins ties)."""
    if study.tune is None:
        return {}, {}
    higher = study.analysis.higher_is_better
    chosen: dict[str, dict[str, Any]] = {}
    table: dict[str, Any] = {}
    for arm in tuned_arms(study):
        groups: dict[str, list[StudyRun]] = {}  # tune/<arm>/<candidate>/seed<s>: c<k> on the grid, t<k> with Optuna
        for r in runs:
            if r.arm == arm:
                groups.setdefault(r.rel.split("/")[2], []).append(r)
        trials = []
        for name, members in groups.items():
            scores = [score(r, study.tune.select) for r in members]
            done = [s for s in scores if s is not None]
            mean = statistics.fmean(done) if done and len(done) == len(scores) else None
            trials.append({"candidate": name, "values": members[0].values, "scores": scores, "mean": mean})
        scored = [t for t in trials if t["mean"] is not None]
        if scored:
            best = (max if higher else min)(scored, key=lambda t: t["mean"])
            chosen[arm] = best["values"]
        table[arm] = {"chosen": chosen.get(arm), "trials": trials}
    return chosen, table


def plan(path: Path, out: Path | None) -> StudyState:
    """Everything a study will run, every recipe validated (the study's runs at every candidate)."""
    from mmcore.plugins import get_registry

    study = load_study(path)
    study_dir = study_dir_for(study, out)
    registry = get_registry()
    tune = tune_runs(study, study_dir)
    chosen, _ = choose(study, tune)
    main = main_runs(study, study_dir, chosen)
    probes = [StudyRun(r.kind, r.arm, r.levels, r.seed, values, r.rel, study_dir)
              for values in candidates(study)[1:] for r in main if r.seed == study.seeds[0]]
    resolve(study, [*tune, *main, *probes], registry)
    return StudyState(study, study_dir, tune, main, chosen)


class _Events:
    """Lines to the screen and to study.log, safe from the pool's threads."""

    def __init__(self, study_dir: Path, console: Console) -> None:
        self.path, self.console, self.lock = study_dir / "study.log", console, threading.Lock()

    def line(self, text: str, style: str = "") -> None:
        with self.lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {text}\n")
            self.console.print(Text(text, style=style), soft_wrap=True)

    def outcome(self, o: Outcome) -> None:
        styles = {"done": "green", "failed": "red", "interrupted": "yellow", "busy": "cyan"}
        extra = f" ({o.seconds:.1f}s)" if o.status == "done" else (f": {o.error}" if o.error else "")
        if o.status != "skipped":
            self.line(f"{o.status} {o.run.name}{extra}", styles.get(o.status, ""))


def finished_count(state: StudyState) -> int:
    return sum(run_state(r.run_dir) == "finished" for r in [*state.tune, *state.main])


def run_study(path: Path, *, jobs: int = 1, backend: str = "local", out: Path | None = None, amend: str | None = None,
              ray_address: str | None = None, ray_gpus: float = 0.0, console: Console | None = None,
              write_outputs: bool = True, jobs_per_device: int | None = None,
              before: Callable[[StudyState], None] | None = None) -> tuple[StudyState, list[Outcome]]:
    """Run (or continue) a study; returns its state and this invocation's outcomes.

    ``jobs_per_device`` K: K runs on each visible GPU (K on the CPU without one) at a time instead
    of ``jobs``, each pinned to its device with the CPU threads divided, as ``mmcore sweep`` does.
    ``before(state)``: a caller's own check of the planned study (``study check`` reads its
    expected file there), called before the study directory is touched or anything runs."""
    console = console or Console()
    place = _workers(backend, jobs, ray_gpus, jobs_per_device)
    state = plan(path, out)
    if before is not None:
        before(state)
    _check_study_dir(state, out)
    # an arm changed under its finished runs is refused before the freeze records the change (a tuned
    # study's runs are checked after tuning, at the values it chooses then)
    check_existing([*state.tune, *(state.main if state.study.tune is None else [])])  # type: ignore[list-item]
    made = _missing_parents(state.study_dir)
    try:
        freeze(state.study, state.study_dir, amend, finished_count(state))
    except BaseException:
        _remove_empty(made)  # a failed first freeze leaves no empty study directory behind
        raise
    events = _Events(state.study_dir, console)
    events.line(f"study {state.study.name}: {len(state.tune)} tuning runs, {len(state.main)} runs, in {state.study_dir}")
    outcomes: list[Outcome] = []
    try:
        with interruptible():  # kill -INT stops a study started in the background too, as it does a sweep
            phase = lambda runs: run_phase(runs, jobs, backend, events.outcome, ray_address, ray_gpus, place)  # noqa: E731
            if state.study.tune is not None and state.study.tune.trials is not None:
                from mmcore.plugins import get_registry
                from mmcore.study.tpe import run_trials

                tune, found = run_trials(state.study, state.study_dir, get_registry(), phase,
                                         lambda r: score(r, state.study.tune.select))  # type: ignore[union-attr]
                outcomes += found
                state = _after_tuning(StudyState(state.study, state.study_dir, tune, state.main, state.chosen))
            elif state.tune:
                outcomes += phase(state.tune)
                state = _after_tuning(state)
            outcomes += phase(state.main)
    except KeyboardInterrupt:
        raise StudyInterrupted(f"interrupted; finished runs are kept: run 'mmcore study run {path}' again to continue") from None
    failed = [o for o in outcomes if o.status in ("failed", "interrupted")]
    if write_outputs and not failed:
        from mmcore.study.outputs import write_outputs as write

        for file in write(state):
            events.line(f"wrote {file}")
    return state, outcomes


def _workers(backend: str, jobs: int, ray_gpus: float, jobs_per_device: int | None) -> Placement | None:
    """The worker options, checked before the study file is read (as ``mmcore sweep`` checks them);
    with ``--jobs-per-device``, the devices its runs are pinned to."""
    if backend not in BACKENDS:
        raise StudyError(f"--backend {backend}: expected one of {', '.join(BACKENDS)}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise StudyError(f"--jobs: expected an integer >= 1, got {jobs}")
    if not ray_gpus >= 0:  # NaN too
        raise StudyError(f"--ray-gpus: expected a number >= 0, got {ray_gpus}")
    if jobs_per_device is not None and backend != "local":
        raise StudyError("--jobs-per-device: only with --backend local (on Ray, --ray-gpus 1/K shares a GPU)")
    if backend == "ray" and importlib.util.find_spec("ray") is None:  # found now, not after the freeze
        raise StudyError("--backend ray needs the 'ray' package: pip install 'mmcore[ray]'")
    return placement(jobs_per_device, visible_gpus()) if jobs_per_device is not None else None


def _check_study_dir(state: StudyState, out: Path | None) -> None:
    """The study directory can be made (or written into), checked before the freeze and any run:
    a regular file there is one line naming where the path came from, never a traceback later."""
    study = state.study
    where = "--out" if out is not None else f"{study.path}: output" if study.output is not None else f"{study.recipe}: output"
    try:
        check_output_dir(state.study_dir, where, target="the study's runs")
    except PathError as error:
        raise StudyError(str(error)) from None


def _missing_parents(path: Path) -> list[Path]:
    """``path`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    for p in (path, *path.parents):
        if os.path.lexists(p):
            break
        missing.append(p)
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders this invocation made, deepest first, only while empty (never anything
    another invocation may have written meanwhile)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _after_tuning(state: StudyState) -> StudyState:
    """Choose each arm's values, record every trial in tune.json, re-plan the study's runs at them."""
    chosen, table = choose(state.study, state.tune)
    missing = [arm for arm in tuned_arms(state.study) if arm not in chosen]
    if missing:
        raise MMCoreError(f"{state.study_dir}: tuning of arm '{missing[0]}' has no complete candidate; "
                          "see the failed runs above and run the study again")
    with written_aside(state.study_dir / TUNE_FILE) as aside:  # whole or not at all: `study report` reads it
        aside.write_text(json.dumps(table, indent=1), encoding="utf-8")
    from mmcore.plugins import get_registry

    main = main_runs(state.study, state.study_dir, chosen)
    resolve(state.study, main, get_registry())
    return StudyState(state.study, state.study_dir, state.tune, main, chosen)


def status_lines(path: Path, out: Path | None) -> list[str]:
    """Per phase and arm: finished / interrupted / not started runs."""
    state = plan(path, out)
    lines = [f"study {state.study.name} in {state.study_dir}"]
    for phase, runs in (("tune", state.tune), ("runs", state.main)):
        for arm in state.study.arms:
            mine = [r for r in runs if r.arm == arm]
            if not mine:
                continue
            states = [run_state(r.run_dir) for r in mine]
            lines.append(f"{phase:5} {arm}: {states.count('finished')}/{len(mine)} finished, "
                         f"{states.count('resume')} interrupted, {states.count('fresh')} not started")
    return lines
