"""Running a study's runs: each claimed by a lock, skipped when finished, resumed when interrupted.

Two invocations of ``mmcore study run`` on one study share the work: before a run starts, its
claim ``locks/<run>/.lock`` is taken with :func:`mmcore.engine.runlock.hold_run_lock` (an flock
the kernel drops when the holder dies, so a killed study never blocks its own restart). A run
whose claim is held elsewhere is left to its owner; this invocation waits for it at the end of
the phase, because the next phase (or the report) needs its result, and then looks at it again:
finished there, it is skipped; left unfinished (that invocation was killed), it is run here, so a
phase never ends with a run missing that the outputs would silently lack. A run directory still
locked by a process without the claim (the worker of a study killed a moment ago, still saving
its checkpoint) is waited for in the same way. Runs are child processes
(``mmcore.sweep.worker``) as in a sweep; Ctrl-C or SIGTERM stops them, and every finished run
(``eval.json`` written) stays finished.
"""

from __future__ import annotations

import contextlib
import subprocess
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from mmcore.engine.record import run_state
from mmcore.engine.runlock import RunLockedError, hold_run_lock
from mmcore.sweep.devices import Placement, Slots
from mmcore.sweep.runner import Outcome, check_existing, execute, finish, prepare, run_ray, thread_env
from mmcore.study.plan import StudyRun

WAIT_POLL_S = 1.0  # how often a run owned by another invocation is looked at again

Report = Callable[[Outcome], None]


def _claim(run: StudyRun) -> contextlib.AbstractContextManager[None]:
    run.claim.mkdir(parents=True, exist_ok=True)
    return hold_run_lock(run.claim, action="run")


def _check_run_dir_free(run: StudyRun) -> None:
    """Raise ``RunLockedError`` while a process holds the run directory itself: with the claim
    free, that is an orphaned worker finishing its last save, or a hand-started ``mmcore resume``."""
    if run.run_dir.is_dir():
        with hold_run_lock(run.run_dir, action="run"):
            pass


def _busy(run: StudyRun, error: RunLockedError, claimed: bool) -> Outcome:
    """Left to its owner for now: another invocation (its claim), or the process the error names."""
    why = str(error) if claimed else "run by another invocation"
    return Outcome(run, "busy", False, 0.0, why)  # type: ignore[arg-type]


def run_one(run: StudyRun, env: dict[str, str], children: list[subprocess.Popen[bytes]],
            stopping: threading.Event, slots: Slots | None = None) -> Outcome:
    """Claim, check, prepare and train one run; ``busy`` when another invocation holds it.

    With ``slots`` (``--jobs-per-device``) the run holds a device slot only while it trains, so a
    run skipped or owned elsewhere never keeps a GPU place from the others."""
    if stopping.is_set():
        return Outcome(run, "interrupted", False, 0.0, "not started: the study was interrupted")  # type: ignore[arg-type]
    claimed = False
    try:
        with _claim(run):
            claimed = True
            if run_state(run.run_dir) == "finished":  # finished by another invocation meanwhile
                return Outcome(run, "skipped")  # type: ignore[arg-type]
            _check_run_dir_free(run)
            resume = prepare(run) == "resume"  # type: ignore[arg-type]
            start = time.monotonic()
            with slots.held() if slots is not None else contextlib.nullcontext(env) as own:
                code = execute(str(run.run_dir), resume, str(run.log), own, started=children.append)
            return finish(run, resume, code, time.monotonic() - start)  # type: ignore[arg-type]
    except RunLockedError as error:
        return _busy(run, error, claimed)


def run_local(runs: list[StudyRun], jobs: int, report: Report, place: Placement | None = None) -> list[Outcome]:
    """The runs ``jobs`` at a time in threads, each a child process; Ctrl-C stops and reaps them all.

    With ``place`` (``--jobs-per-device``) ``place.slots`` run at a time instead, each pinned to
    the device of the slot it holds (``mmcore.sweep.devices``), as in a sweep."""
    slots = Slots(place) if place is not None else None
    jobs = place.slots if place is not None else jobs
    env, lock = thread_env(jobs), threading.Lock()
    children: list[subprocess.Popen[bytes]] = []
    stopping = threading.Event()

    def one(run: StudyRun) -> Outcome:
        outcome = run_one(run, env, children, stopping, slots)
        with lock:
            report(outcome)
        return outcome

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(one, run) for run in runs]
        try:
            return [f.result() for f in futures]
        except KeyboardInterrupt:
            stopping.set()
            for f in futures:
                f.cancel()
            for child in children:  # SIGTERM: a background study hands its children an ignored SIGINT
                if child.poll() is None:
                    child.terminate()
            for child in children:
                child.wait()
            raise


def run_on_ray(runs: list[StudyRun], jobs: int, address: str | None, gpus: float, report: Report) -> list[Outcome]:
    """The runs as Ray tasks; the driver holds every claim while they run."""
    outcomes: list[Outcome] = []
    with contextlib.ExitStack() as stack:
        todo = []
        for run in runs:
            try:
                stack.enter_context(_claim(run))
            except RunLockedError as error:
                outcomes.append(_busy(run, error, claimed=False))
                continue
            if run_state(run.run_dir) == "finished":
                outcomes.append(Outcome(run, "skipped"))  # type: ignore[arg-type]
                continue
            try:
                _check_run_dir_free(run)
            except RunLockedError as error:
                outcomes.append(_busy(run, error, claimed=True))
                continue
            todo.append((run, prepare(run) == "resume"))  # type: ignore[arg-type]
        outcomes += run_ray(todo, jobs, address, gpus, report)  # type: ignore[arg-type]
    return outcomes


def wait_for(runs: list[StudyRun]) -> None:
    """Block until no other process holds any of these runs' claims or run directories."""
    for run in runs:
        while True:
            try:
                with _claim(run):
                    _check_run_dir_free(run)
                    break
            except RunLockedError:
                time.sleep(WAIT_POLL_S)


def run_phase(runs: list[StudyRun], jobs: int, backend: str, report: Report,
              ray_address: str | None = None, ray_gpus: float = 0.0, place: Placement | None = None) -> list[Outcome]:
    """Every unfinished run of a phase, one outcome each; a run that another process owns is
    waited for and then taken up again (skipped if it finished there, run here if not)."""
    check_existing(runs)  # type: ignore[arg-type]  (a changed recipe never reuses old results)
    pending = [r for r in runs if run_state(r.run_dir) != "finished"]
    for run in runs:
        if run not in pending:
            report(Outcome(run, "skipped"))  # type: ignore[arg-type]
    outcomes: dict[int, Outcome] = {}
    while pending:
        if backend == "ray":
            found = run_on_ray(pending, jobs, ray_address, ray_gpus, report)
        else:
            found = run_local(pending, jobs, report, place)
        outcomes.update({id(o.run): o for o in found})
        pending = [o.run for o in found if o.status == "busy"]  # type: ignore[misc]
        wait_for(pending)
    return [outcomes[id(r)] for r in runs if id(r) in outcomes]
