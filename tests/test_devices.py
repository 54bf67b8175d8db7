"""--jobs-per-device: which device and how many threads each parallel run gets (mmcore.sweep.devices)."""

from __future__ import annotations

import threading

import pytest

from mmcore.errors import MMCoreError
from mmcore.sweep.devices import Slots, placement, slot_env, visible_gpus


def test_visible_gpus_reads_the_environment_or_the_count() -> None:
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2, 5"}) == ["2", "5"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []
    assert visible_gpus({}, count=3) == ["0", "1", "2"]
    assert visible_gpus({}, count=0) == []


def test_k_runs_per_gpu_each_pinned_and_threads_divided() -> None:
    place = placement(3, ["4", "7"])
    assert place.slots == 6
    assert [place.device_of(s) for s in range(6)] == ["4", "7", "4", "7", "4", "7"]
    envs = [slot_env(place, s, cpus=16, environ={}) for s in range(6)]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs].count("4") == 3
    assert all(e["OMP_NUM_THREADS"] == "2" for e in envs)  # 16 cores over 6 runs, rounded down
    assert "OMP_NUM_THREADS" not in slot_env(place, 0, cpus=16, environ={"OMP_NUM_THREADS": "5"})  # the user's choice
    with pytest.raises(ValueError):
        place.device_of(6)


def test_cpu_only_runs_k_at_a_time_without_pinning() -> None:
    place = placement(2, [])
    assert place.slots == 2 and place.device_of(1) is None
    assert slot_env(place, 1, cpus=2, environ={}) == {"OMP_NUM_THREADS": "1"}
    assert slot_env(placement(1, []), 0, cpus=2, environ={}) == {}  # one run keeps every core
    with pytest.raises(MMCoreError, match="--jobs-per-device"):
        placement(0, [])


def test_slots_spread_over_gpus_first_and_are_reused() -> None:
    slots = Slots(placement(2, ["0", "1"]))
    taken = [slots.take() for _ in range(3)]
    assert [slots.place.device_of(s) for s in taken] == ["0", "1", "0"]
    slots.give(taken[1])
    assert slots.take() == taken[1]  # the freed place on GPU 1 is the next one handed out
    with pytest.raises(ValueError):
        slots.give(3)  # never taken


def test_a_full_pool_waits_for_a_slot_to_come_back() -> None:
    slots = Slots(placement(1, ["0"]))
    first = slots.take()
    got: list[int] = []
    waiter = threading.Thread(target=lambda: got.append(slots.take()))
    waiter.start()
    waiter.join(0.05)
    assert got == []  # still waiting
    slots.give(first)
    waiter.join(5)
    assert got == [first]


def _record_execute(monkeypatch, module) -> list[dict[str, str]]:
    """Replace ``module.execute`` (the child process of one run) by a recorder of each run's env."""
    seen: list[dict[str, str]] = []
    lock = threading.Lock()

    def fake_execute(run_dir, resume, log, env=None, started=None):
        with lock:
            seen.append(dict(env or {}))
        return 0

    monkeypatch.setattr(module, "execute", fake_execute)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    return seen


def test_run_local_pins_each_run_to_its_slot(tmp_path, monkeypatch) -> None:
    from mmcore.sweep import runner

    seen = _record_execute(monkeypatch, runner)
    todo = [(runner.Run(point=None, seed=s, recipe={}, run_dir=tmp_path / str(s), log=tmp_path / f"{s}.log"), False)
            for s in range(5)]
    outcomes = runner.run_local(todo, 1, lambda o: None, placement(2, ["0", "1"]))
    assert [o.status for o in outcomes] == ["done"] * 5
    assert {e["CUDA_VISIBLE_DEVICES"] for e in seen} <= {"0", "1"} and len(seen) == 5


def test_study_runs_are_pinned_and_a_skipped_run_holds_no_slot(tmp_path, monkeypatch) -> None:
    """``mmcore study run --jobs-per-device``: the same slots as a sweep, taken only to train."""
    from mmcore.study import execute as study_exec
    from mmcore.study.plan import StudyRun

    seen = _record_execute(monkeypatch, study_exec)
    monkeypatch.setattr(study_exec, "prepare", lambda run: "fresh")
    monkeypatch.setattr(study_exec, "run_state", lambda d: "finished" if str(d).endswith("a/seed1") else "fresh")
    runs = [StudyRun("main", "a", {}, s, {}, f"runs/a/seed{s}", tmp_path) for s in range(4)]
    place = placement(1, ["3", "5"])
    outcomes = study_exec.run_local(runs, 1, lambda o: None, place)
    assert sorted(o.status for o in outcomes) == ["done", "done", "done", "skipped"]
    assert len(seen) == 3 and {e["CUDA_VISIBLE_DEVICES"] for e in seen} <= {"3", "5"}
    assert all("OMP_NUM_THREADS" in e for e in seen)  # two runs in flight share the cores


def test_study_refuses_jobs_per_device_on_ray(tmp_path) -> None:
    from mmcore.study.run import run_study
    from mmcore.study.spec import StudyError

    with pytest.raises(StudyError, match="--jobs-per-device"):
        run_study(tmp_path / "none.yaml", backend="ray", jobs_per_device=2)


def test_study_cli_reports_a_bad_jobs_per_device_in_one_line(tmp_path) -> None:
    from typer.testing import CliRunner

    from mmcore.cli import app

    result = CliRunner().invoke(app, ["study", "run", str(tmp_path / "s.yaml"), "--jobs-per-device", "0"])
    assert result.exit_code != 0
    assert "--jobs-per-device: expected an integer >= 1" in result.output and "Traceback" not in result.output
