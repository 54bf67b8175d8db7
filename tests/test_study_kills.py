"""Interrupted and concurrent studies and sweeps: a study stopped anywhere and started again ends
with the tables of one that never stopped, and two invocations on one folder never leave a table
with a run missing, a half-written file or two sweeps in one directory.

Most tests never train: finished runs are hand-made eval.json files (as in test_study_run_badinput)
and a run's training is a stand-in that writes one. One test trains tiny runs in a child process,
stopped by SIGINT as a background job would be, and checks the resumed run against a straight one.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mmcore.cli import app
from mmcore.engine.runlock import hold_run_lock
from mmcore.errors import MMCoreError
from mmcore.recipe import dump_yaml
from mmcore.study import execute
from mmcore.study.freeze import freeze
from mmcore.study.run import plan, run_study
from mmcore.sweep import run_sweep
from test_study_ports import RECIPE  # the tiny two-modality recipe
from test_sweep import RECIPE as SWEEP_RECIPE
from recipe_helpers import quiet_console
from test_sweep import fake_finished
from test_sweep import plan as sweep_plan

STUDY = """\
name: s
recipe: recipe.yaml
budget: {epochs: 1}
seeds: [0, 1]
arms:
  uniform: {balancer: mmcore.uniform}
  dropout: {from: uniform, train.modality_dropout: 0.3}
analysis:
  primary: test.average.macro_f1
  compare: [[dropout, uniform]]
"""


def _study(tmp_path: Path, text: str = STUDY, recipe_text: str = RECIPE) -> Path:
    (tmp_path / "recipe.yaml").write_text(recipe_text)
    (tmp_path / "study.yaml").write_text(text)
    return tmp_path / "study.yaml"


def _finish_at(run_dir: Path, value: float) -> None:
    """A hand-made finished run: an eval.json with test and val tables (3 conditions, 1 metric)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    table = {"average": {"macro_f1": value}, "m0": {"macro_f1": 0.4}, "m1": {"macro_f1": 0.3}}
    (run_dir / "eval.json").write_text(json.dumps({"results": {"test": table, "val": table}}))


def _finish_one(run, value: float | None = None) -> None:
    """A hand-made finished run of a planned study, with the recipe.yaml its training would have written."""
    _finish_at(run.run_dir, _value(run.run_dir) if value is None else value)
    (run.run_dir / "recipe.yaml").write_text(dump_yaml(run.recipe))


def _value(run_dir: Path) -> float:
    """runs/<arm>/base/seed<s>: 0.5 + 0.01 s, and 0.1 more for the dropout arm."""
    return 0.5 + 0.01 * int(run_dir.name[len("seed"):]) + (0.1 if run_dir.parts[-3] == "dropout" else 0.0)


def _cli(*args: str | Path):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture
def trained(monkeypatch):
    """Training stood in for: each run 'trains' by writing its eval.json; the runs so trained, in order."""
    done: list[str] = []

    def fake_execute(run_dir: str, resume: bool, log: str, env=None, started=None) -> int:
        _finish_at(Path(run_dir), _value(Path(run_dir)))
        done.append(str(Path(run_dir).relative_to(Path(run_dir).parents[3])))
        return 0

    monkeypatch.setattr(execute, "execute", fake_execute)
    monkeypatch.setattr(execute, "WAIT_POLL_S", 0.05)
    return done


def _held_until(path: Path, release: threading.Event) -> threading.Thread:
    """Hold the lock of ``path`` (a claim or a run directory) in another thread until ``release``,
    as an invocation that is then killed (or an orphaned worker finishing its save) would;
    returns once held."""
    held = threading.Event()

    def hold() -> None:
        path.mkdir(parents=True, exist_ok=True)
        with hold_run_lock(path, action="run"):
            held.set()
            release.wait(60)

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    assert held.wait(10)
    return thread


@pytest.mark.parametrize("held", ["claim", "run directory"])
def test_a_run_left_unfinished_by_another_invocation_is_run_here(tmp_path, trained, held, monkeypatch):
    """Before: the run another invocation held was waited for, then left out: the study wrote its
    tables from 3 of 4 runs and exited 0 (a held run directory, the orphan of a study killed a
    moment ago, was the same). Now it is run here once free, and every table has all 4 runs."""
    path = _study(tmp_path)
    out = tmp_path / "out"
    last = plan(path, out).main[-1]
    if held == "run directory":  # half-made by the killed invocation: recipe.yaml, no checkpoint
        last.run_dir.mkdir(parents=True)
        (last.run_dir / "recipe.yaml").write_text("half")
    release = threading.Event()
    holder = _held_until(last.claim if held == "claim" else last.run_dir, release)
    waited = execute.wait_for

    def owner_dies_while_waited_for(runs):  # the holder goes once this study found the run busy
        release.set()
        waited(runs)

    monkeypatch.setattr(execute, "wait_for", owner_dies_while_waited_for)
    state, outcomes = run_study(path, out=out, console=quiet_console())
    holder.join()
    assert [o.status for o in outcomes] == ["done"] * 4
    assert sorted(trained) == sorted(r.rel for r in state.main) and trained[-1] == last.rel  # each once
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 * 2 * 3  # 4 runs × (test, val) × 3 conditions: none missing
    assert f"busy {last.rel}" in (out / "study.log").read_text()


def test_a_kill_while_the_outputs_are_written_keeps_the_previous_ones(tmp_path):
    """Before: results.csv was written in place; a kill after 10 of its rows left a 10-line table
    beside a complete study.md. Now every output is written in full aside, then moved in."""
    path, out = _study(tmp_path), tmp_path / "out"
    state = plan(path, out)
    freeze(state.study, out, None, 0)
    for run in state.main:
        _finish_one(run)
    assert _cli("study", "report", path, "--out", out).exit_code == 0
    before = {name: (out / name).read_bytes() for name in ("study.md", "results.csv", "tables.tex")}
    _finish_one(state.main[0], 0.9)  # the next report would differ
    killer = f"""
import csv, os, signal, sys
import mmcore.study.outputs as outputs
rows = [0]
class Writer:
    def __init__(self, fh): self.w = csv.writer(fh)
    def writerow(self, row):
        self.w.writerow(row)
        rows[0] += 1
        if rows[0] == 10:
            os.kill(os.getpid(), signal.SIGKILL)
outputs.csv = type("csv", (), {{"writer": Writer}})
from mmcore.cli import app
sys.argv = ["mmcore", "study", "report", {str(path)!r}, "--out", {str(out)!r}]
app()
"""
    proc = subprocess.run([sys.executable, "-c", killer], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stdout + proc.stderr
    assert {name: (out / name).read_bytes() for name in before} == before  # the previous outputs, whole
    assert len(list(out.glob(".outputs.tmp-*"))) == 1  # the killed invocation's unfinished folder
    assert _cli("study", "report", path, "--out", out).exit_code == 0
    assert (out / "results.csv").read_bytes() != before["results.csv"] and "0.9" in (out / "results.csv").read_text()
    assert not list(out.glob(".*tmp*"))  # the dead invocation's folder is cleared by the next report


def test_a_report_from_some_runs_names_the_missing_ones_in_its_files(tmp_path):
    """Before: a report from 3 of 4 runs said so on the screen only; study.md, tables.tex and
    report.html read as the whole study (the n of a cell was the only trace)."""
    path, out = _study(tmp_path), tmp_path / "out"
    state = plan(path, out)
    freeze(state.study, out, None, 0)
    for run in state.main[:3]:
        _finish_one(run)
    assert _cli("study", "report", path, "--out", out).exit_code == 0
    line = "Not finished: 1 of 4 runs (runs/dropout/base/seed1); they are missing from every table."
    for name in ("study.md", "tables.tex", "report.html"):
        assert line in (out / name).read_text(), name
    _finish_one(state.main[3])
    assert _cli("study", "report", path, "--out", out).exit_code == 0
    assert "Not finished" not in (out / "study.md").read_text()


def test_a_file_written_aside_is_whole_or_the_old_one(tmp_path):
    from mmcore.sweep.aggregate import written_aside  # results.csv, sweep.json and tune.json are written so

    target = tmp_path / "results.csv"
    target.write_text("old\n")
    with pytest.raises(KeyboardInterrupt):
        with written_aside(target) as aside:
            aside.write_text("half")
            raise KeyboardInterrupt  # Ctrl-C mid-write
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["results.csv"]
    with written_aside(target) as aside:
        aside.write_text("new\n")
    assert target.read_text() == "new\n" and [p.name for p in tmp_path.iterdir()] == ["results.csv"]


def test_a_sweep_lock_taken_but_not_yet_named_is_refused(tmp_path):
    """Before: the lock was a pid file made with O_EXCL and then written; a second sweep that read
    it in between found no pid, deleted it as stale and ran beside the first. Now the lock is an
    flock taken before the file is read: held, it is refused, pid or not; free, it is taken."""
    import fcntl

    recipe, sweep_dir = tmp_path / "tiny.yaml", tmp_path / "sw"
    recipe.write_text(SWEEP_RECIPE.format(output=tmp_path / "runs"))
    (run,) = sweep_plan(recipe, [], [0], sweep_dir)
    fake_finished(run, 0.5, 0.5, {})
    with open(sweep_dir / "sweep.lock", "a+") as other:  # another sweep, its pid not written yet
        fcntl.flock(other.fileno(), fcntl.LOCK_EX)
        with pytest.raises(MMCoreError, match=r"another sweep \(pid unknown\) is running"):
            run_sweep(recipe, [], [], seeds="0", out=sweep_dir, console=quiet_console())
        assert (sweep_dir / "sweep.lock").exists()  # its lock is left alone
    result = run_sweep(recipe, [], [], seeds="0", out=sweep_dir, console=quiet_console())  # released: a dead sweep's
    assert [o.status for o in result.outcomes] == ["skipped"] and not (sweep_dir / "sweep.lock").exists()


def test_an_edited_study_file_is_on_record_or_refused(tmp_path):
    """Between an interrupted run and its restart the file may gain seeds (allowed: recorded in
    prereg.json and listed in study.md) or change an arm under finished runs (refused, naming the
    run and the key, before the freeze records anything); the analysis needs --amend (as before)."""
    path, out = _study(tmp_path), tmp_path / "out"
    state = plan(path, out)
    freeze(state.study, out, None, 0)
    for run in state.main:
        _finish_one(run)
    frozen = (out / "prereg.json").read_text()

    path.write_text(STUDY.replace("train.modality_dropout: 0.3", "train.modality_dropout: 0.5"))
    result = _cli("study", "run", path, "--out", out)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "runs/dropout/base/seed0: its recipe.yaml differs at 'train.modality_dropout' from the recipe planned" \
        in " ".join(result.output.split())
    assert (out / "prereg.json").read_text() == frozen and not (out / "logs").exists()  # nothing recorded or run

    path.write_text(STUDY.replace("seeds: [0, 1]", "seeds: [0, 1, 2]"))
    for run in plan(path, out).main:
        _finish_one(run)  # the new seed, as if run
    assert _cli("study", "report", path, "--out", out).exit_code == 0
    prereg = json.loads((out / "prereg.json").read_text())
    assert [(c["parts"], c["finished_runs"]) for c in prereg["changes"]] == [(["seeds"], 6)]
    assert "with 6 finished runs: seeds (the analysis as frozen)" in (out / "study.md").read_text()
    assert _cli("study", "report", path, "--out", out).exit_code == 0  # the same file again: no new record
    assert len(json.loads((out / "prereg.json").read_text())["changes"]) == 1


@pytest.mark.slow  # 29 s: a background study, SIGINT, restart and a straight study
def test_a_background_study_stopped_by_sigint_resumes_to_a_straight_runs_numbers(tmp_path):
    """A study of 2 arms × 1 seed started in the background (SIGINT ignored, as a shell's ``&``
    does) and sent ``kill -INT`` mid-way through its second run. Before: the signal was ignored and the study ran
    on. Now it stops (exit 130, resumable); started again it skips the finished run, resumes the
    stopped one, and that run's numbers equal a straight run of the same recipe."""
    from mmcore.engine.trainer import run as train
    from mmcore.recipe import load_recipe

    recipe_text = RECIPE.replace("samples: 200", "samples: 96").replace("epochs: 1, batch_size: 64",
                                                                         "epochs: 12, batch_size: 32")
    one_seed = STUDY.replace("budget: {epochs: 1}", "budget: {epochs: 12}").replace("seeds: [0, 1]", "seeds: [0]")
    path = _study(tmp_path, one_seed.replace("  compare: [[dropout, uniform]]\n", ""), recipe_text)
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "mmcore", "study", "run", str(path), "--out", str(out)]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    first, second = plan(path, out).main[:2]
    deadline = time.monotonic() + 120
    while not (second.run_dir / "checkpoints" / "last").is_dir() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, output
    assert "interrupted" in output and not (second.run_dir / "eval.json").exists()

    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert first.log.read_text().count("=== ") == 1  # finished before the stop: never run again
    assert " resume " in second.log.read_text()
    straight = tmp_path / "straight"
    straight.mkdir()
    train(load_recipe(second.run_dir / "recipe.yaml"), run_dir=straight, show_progress=False)
    resumed = json.loads((second.run_dir / "eval.json").read_text())["results"]
    assert resumed == json.loads((straight / "eval.json").read_text())["results"]
    written = (out / "results.csv").read_text().splitlines()
    results = [json.loads((r.run_dir / "eval.json").read_text())["results"] for r in plan(path, out).main]
    assert len(written) == 1 + sum(len(m) for r in results for t in r.values() for m in t.values())  # every run
