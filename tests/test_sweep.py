"""mmcore sweep: grid expansion, fixed run directories, skip/resume, aggregation, failures, Ray.

Most tests never train: finished runs are faked by writing eval.json files at the planned
paths, which the sweep then skips and aggregates. Three tests start real worker processes
(tiny synthetic runs): the 2 × 2 sweep with --jobs 2, a failing run, and the Ray backend.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from mmcore.cli import app
from mmcore.errors import MMCoreError, RecipeError
from mmcore.plugins import get_registry
from mmcore.recipe import load_yaml
from mmcore.sweep import run_sweep
from mmcore.sweep.aggregate import mean_std, read_csv
from mmcore.sweep.grid import Axis, expand, parse_axes, parse_axis, parse_seeds, parsed_values, slug, split_top_level
from mmcore.sweep.runner import plan_runs, prepare, run_paths, run_state

from process_helpers import processes_mentioning
from recipe_helpers import SMALL_RECIPE, quiet_console, small_recipe_file

runner = CliRunner()

RECIPE = SMALL_RECIPE


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    return small_recipe_file(tmp_path, RECIPE)


def plan(recipe: Path, grid: list[str], seeds: list[int], sweep_dir: Path, overrides: list[str] = ()):
    """The runs a sweep with these flags will make (same functions the sweep calls)."""
    points = expand(parse_axes(grid))
    return plan_runs(load_yaml(recipe), str(recipe), list(overrides), points, seeds, sweep_dir, get_registry())


def fake_finished(run, accuracy: float, macro_f1: float, per_condition: dict[str, float]) -> None:
    """A finished run without training: its recipe.yaml (as the sweep writes it) and an eval.json."""
    prepare(run)
    test = {"average": {"accuracy": accuracy, "macro_f1": macro_f1}}
    test.update({c: {"accuracy": v, "macro_f1": v} for c, v in per_condition.items()})
    results = {"val": {"average": {"accuracy": 0.5, "macro_f1": 0.5}}, "test": test}
    (run.run_dir / "eval.json").write_text(json.dumps({"best_epoch": 1, "results": results}))


# ---------------------------------------------------------------- grid expansion


def test_split_on_top_level_commas_only():
    text = "a, [1,2],{x: 1, y: [3,4]},'c,d',\"e,f\""
    assert split_top_level(text) == ["a", "[1,2]", "{x: 1, y: [3,4]}", "'c,d'", '"e,f"']
    for bad, what in [("[1,2", "unclosed bracket"), ("1],2", "unbalanced ']'"), ("[1,2}", "unbalanced '}'")]:
        with pytest.raises(MMCoreError, match=what):
            split_top_level(bad)
    with pytest.raises(MMCoreError, match="unclosed '"):
        split_top_level("'a,b")
    assert split_top_level("don't,it's") == ["don't", "it's"]  # a quote inside a word is plain text
    assert split_top_level("'it''s,ok',[a, 'b,c'],\"q\\\",r\"") == ["'it''s,ok'", "[a, 'b,c']", '"q\\",r"']


def test_expand_is_the_cartesian_product_in_flag_order():
    axes = parse_axes(
        [
            "balancer=mmcore.uniform,redcore.relative_advantage",
            "model.encoders.default.layers=[64,64],[128]",
            "train.optimizer.lr=1e-3,3e-4",
        ]
    )
    assert axes[1] == Axis("model.encoders.default.layers", ("[64,64]", "[128]"))
    points = expand(axes)
    assert len(points) == 8
    first = ["balancer=mmcore.uniform", "model.encoders.default.layers=[64,64]", "train.optimizer.lr=1e-3"]
    assert points[0].overrides == first
    assert points[1].overrides[2] == "train.optimizer.lr=3e-4"  # last axis fastest
    assert points[4].overrides[0] == "balancer=redcore.relative_advantage"  # first axis slowest
    assert len({p.slug for p in points}) == 8
    assert parsed_values(points[1]) == {
        "balancer": "mmcore.uniform", "model.encoders.default.layers": [64, 64], "train.optimizer.lr": 0.0003
    }
    quoted = parse_axis("name='a,b',\"c\",plain")
    assert quoted.values == ("'a,b'", '"c"', "plain")
    assert [parsed_values(p)["name"] for p in expand([quoted])] == ["a,b", "c", "plain"]
    assert expand([]) == [expand([])[0]] and expand([])[0].overrides == [] and expand([])[0].slug == "base"


def test_grid_values_apply_like_overrides_and_swap_component_nodes(recipe, tmp_path):
    grid = ["model.encoders.default=mmcore.mlp,mmcore.transformer", "model.fusion.layers=[16,4]"]
    runs = plan(recipe, grid, [3], tmp_path / "sw")
    assert [r.seed for r in runs] == [3, 3] and all(r.recipe["seed"] == 3 for r in runs)
    mlp, transformer = (r.recipe["model"]["encoders"]["default"] for r in runs)
    assert mlp["type"] == "mmcore.mlp" and mlp["layers"] == [256]  # swapped: the node's old options are gone
    assert transformer["type"] == "mmcore.transformer" and transformer["layers"] == 2  # its own default, not [8]
    assert all(r.recipe["model"]["fusion"]["layers"] == [16, 4] for r in runs)


@pytest.mark.parametrize(
    "flag, message",
    [
        ("balancer", "expected KEY=V1,V2"),
        ("seed=0,1", "--seeds"),
        ("+model.dim=8", "'\\+' and '~'"),
        ("model.dim=8,,16", "empty value"),
        ("model.dim=8,8", "listed twice"),
    ],
)
def test_bad_grid_flags(flag, message):
    with pytest.raises(MMCoreError, match=message):
        parse_axes([flag])


def test_bad_grid_yaml_and_repeated_keys_and_seeds():
    with pytest.raises(RecipeError, match="not valid YAML") as info:
        parse_axis("model.dim=a: b: c")
    assert info.value.exit_code == 2
    with pytest.raises(MMCoreError, match="given twice"):
        parse_axes(["model.dim=8", "model.dim=16"])
    assert parse_seeds("0-2,7") == [0, 1, 2, 7]
    for bad in ("x", "1,1", "3-1", "-1"):
        with pytest.raises(MMCoreError, match="--seeds"):
            parse_seeds(bad)


def test_slug_and_run_directories_are_a_pure_function_of_the_flags(tmp_path):
    # Pinned: a sweep restarted by a later version must find the same directories. The hash is
    # sha256('[["balancer", "mmcore.uniform"]]')[:8], checked with `printf ... | sha256sum`.
    assert slug((("balancer", "mmcore.uniform"),)) == "balancer=mmcore.uniform-09652814"
    again = expand(parse_axes(["model.fusion.layers=[64,64],'64-64'"]))
    assert [p.slug for p in again] == [p.slug for p in expand(parse_axes(["model.fusion.layers=[64,64],'64-64'"]))]
    assert all(p.slug.startswith("model.fusion.layers=64-64-") for p in again)
    assert again[0].slug != again[1].slug  # the same readable text ([64,64] and '64-64'), told apart by the hash
    long = slug((("dataset.path", "x" * 300),))
    assert len(long) == 96 + 9 and "/" not in slug((("output", "a/b"),))
    run_dir, log = run_paths(tmp_path, again[0], 3)
    assert run_dir == tmp_path / "points" / again[0].slug / "seed3"
    assert log == tmp_path / "logs" / again[0].slug / "seed3.log"
    # in a fresh interpreter (no shared hash seed), the same slug
    code = "from mmcore.sweep.grid import slug; print(slug((('balancer', 'mmcore.uniform'),)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "balancer=mmcore.uniform-09652814"


# ---------------------------------------------------------------- aggregation


def test_mean_and_sample_std_by_hand():
    stat = mean_std([0.5, 0.6, 0.7])
    assert stat.mean == pytest.approx(0.6) and stat.std == pytest.approx(0.1) and stat.n == 3
    # 0.2, 0.4, 0.9: mean 0.5; squared deviations 0.09 + 0.01 + 0.16 = 0.26; / (3 - 1) -> sqrt(0.13)
    assert mean_std([0.2, 0.4, 0.9]).std == pytest.approx(0.13**0.5)
    assert mean_std([0.42]) == type(stat)(0.42, 0.0, 1)


def test_aggregation_of_finished_runs_matches_hand_computed_values(recipe, tmp_path):
    sweep_dir = tmp_path / "sw"
    grid = ["model.dim=8,16"]
    runs = plan(recipe, grid, [0, 1, 2], sweep_dir)
    by = {(r.point.overrides[0], r.seed): r for r in runs}
    fake_finished(by["model.dim=8", 0], 0.5, 0.2, {"m0": 0.1, "m0+m1": 0.3})
    fake_finished(by["model.dim=8", 1], 0.6, 0.4, {"m0": 0.2, "m0+m1": 0.5})
    fake_finished(by["model.dim=8", 2], 0.7, 0.9, {"m0": 0.6})  # a condition one run lacks: n counts it
    for seed in (0, 1, 2):
        fake_finished(by["model.dim=16", seed], 0.8, 0.8, {})

    result = run_sweep(recipe, [], grid, seeds="0,1,2", out=sweep_dir, console=quiet_console(), metrics="macro_f1")
    assert [o.status for o in result.outcomes] == ["skipped"] * 6 and not result.failed
    rows = {(r["point"], r["split"], r["condition"], r["metric"]): r for r in read_csv(sweep_dir / "results.csv")}
    dim8 = by["model.dim=8", 0].point.slug
    acc = rows[dim8, "test", "average", "accuracy"]
    assert (acc["mean"], acc["std"], acc["n"]) == (pytest.approx(0.6), pytest.approx(0.1), 3)
    assert acc["model.dim"] == "8"
    f1 = rows[dim8, "test", "average", "macro_f1"]
    assert (f1["mean"], f1["std"]) == (pytest.approx(0.5), pytest.approx(0.13**0.5))
    m0 = rows[dim8, "test", "m0", "accuracy"]  # 0.1, 0.2, 0.6: mean 0.3; (0.04 + 0.01 + 0.09) / 2 = 0.07
    assert (m0["mean"], m0["std"], m0["n"]) == (pytest.approx(0.3), pytest.approx(0.07**0.5), 3)
    both = rows[dim8, "test", "m0+m1", "accuracy"]  # 0.3, 0.5: mean 0.4; (0.01 + 0.01) / 1
    assert (both["mean"], both["std"], both["n"]) == (pytest.approx(0.4), pytest.approx(0.02**0.5), 2)
    dim16 = rows[by["model.dim=16", 0].point.slug, "test", "average", "macro_f1"]
    assert (dim16["mean"], dim16["std"], dim16["n"]) == (pytest.approx(0.8), 0.0, 3)
    assert rows[dim8, "val", "average", "accuracy"]["mean"] == pytest.approx(0.5)
    saved = json.loads((sweep_dir / "sweep.json").read_text())
    assert saved["grid"] == {"model.dim": ["8", "16"]} and saved["seeds"] == [0, 1, 2]
    assert saved["points"][1]["values"] == {"model.dim": 16}
    assert saved["points"][0]["runs"]["2"] == f"points/{dim8}/seed2"


def test_screen_table_shows_mean_pm_std_per_point(recipe, tmp_path):
    from mmcore.sweep.aggregate import aggregate, results_table

    points = expand(parse_axes(["model.dim=8,16"]))
    runs = [{"test": {"average": {"accuracy": v, "macro_f1": 0.25}}} for v in (0.5, 0.6, 0.7)]
    rows = aggregate([(points[0], runs), (points[1], [])])  # the second point's runs all failed
    console = Console(record=True, width=200, file=open(os.devnull, "w"))
    console.print(results_table(rows, points, ["model.dim"], ["accuracy", "macro_f1"]))
    lines = [ln for ln in console.export_text().splitlines() if "│" in ln]
    assert [c.strip() for c in lines[0].split("│")[1:-1]] == ["8", "0.6000 ± 0.1000", "0.2500 ± 0.0000", "3"]
    assert [c.strip() for c in lines[1].split("│")[1:-1]] == ["16", "—", "—", "0"]


def test_exit_codes_of_the_worker_map_to_outcomes(tmp_path):
    from mmcore.sweep import worker
    from mmcore.sweep.runner import Run, finish

    (point,) = expand([])
    run_dir, log = run_paths(tmp_path, point, 0)
    log.parent.mkdir(parents=True)
    log.write_text("=== start\nerror: something precise\n")
    run = Run(point, 0, run_dir, log, recipe={})
    assert finish(run, False, 0, 1.0).status == "done"
    assert finish(run, True, -2, 1.0).status == "interrupted" and finish(run, True, 130, 1.0).status == "interrupted"
    failed = finish(run, False, 1, 1.0)
    assert failed.status == "failed" and failed.error == "exit code 1: error: something precise"
    assert worker.main([]) == 2  # usage
    assert worker.main([str(tmp_path / "nowhere")]) == 2  # no recipe.yaml: a recipe error, one line


def test_a_changed_recipe_is_not_mixed_with_old_results(recipe, tmp_path):
    sweep_dir = tmp_path / "sw"
    (run,) = plan(recipe, [], [0], sweep_dir)
    fake_finished(run, 0.5, 0.5, {})
    with pytest.raises(MMCoreError, match="differs at 'train.epochs'"):
        run_sweep(recipe, ["train.epochs=2"], [], seeds="0", out=sweep_dir, console=quiet_console())
    assert run_state(run.run_dir) == "finished"  # nothing was touched


def test_recipe_errors_of_any_point_stop_the_sweep_before_it_starts(recipe, tmp_path):
    args = ["sweep", str(recipe), "--grid", "model.dim=8,-1", "--seeds", "0,1", "--out", str(tmp_path / "sw")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "(grid point model.dim=-1)" in result.output and "Traceback" not in result.output
    assert result.output.count("expected") == 1  # one problem, not one per seed
    assert not (tmp_path / "sw").exists()


def test_one_sweep_per_directory(recipe, tmp_path):
    sweep_dir = tmp_path / "sw"
    (run,) = plan(recipe, [], [0], sweep_dir)
    fake_finished(run, 0.5, 0.5, {})
    (sweep_dir / "sweep.lock").write_text(str(os.getpid()))  # a live process holds it
    with pytest.raises(MMCoreError, match="another sweep"):
        run_sweep(recipe, [], [], seeds="0", out=sweep_dir, console=quiet_console())
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (sweep_dir / "sweep.lock").write_text(str(gone.pid))  # its process has exited: a stale lock
    result = run_sweep(recipe, [], [], seeds="0", out=sweep_dir, console=quiet_console())
    assert [o.status for o in result.outcomes] == ["skipped"] and not (sweep_dir / "sweep.lock").exists()


# ---------------------------------------------------------------- real runs


def test_two_by_two_sweep_resumes_restarts_and_then_skips(recipe, tmp_path):
    from mmcore.engine.trainer import run as train

    sweep_dir = tmp_path / "sw"
    grid = ["model.encoders.default.layers=[8],[8,8]"]
    runs = plan(recipe, grid, [0, 1], sweep_dir)
    interrupted, half_made = runs[0], runs[3]
    prepare(interrupted)  # stopped after one of its three steps: checkpoints/last, no eval.json
    stopped = train(
        {**interrupted.recipe, "train": {**interrupted.recipe["train"], "max_steps": 1}},
        run_dir=interrupted.run_dir, console=quiet_console(), show_progress=False,
    )
    assert stopped.stopped_early and run_state(interrupted.run_dir) == "resume"
    half_made.run_dir.mkdir(parents=True)
    (half_made.run_dir / "junk.txt").write_text("a crash before the first checkpoint")

    args = ["sweep", str(recipe), "--grid", grid[0], "--seeds", "0,1", "--jobs", "2", "--out", str(sweep_dir)]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "0 finished, 1 to resume, 3 to start" in first.output
    assert f"resumed, done: {interrupted.name}" in first.output
    assert not (half_made.run_dir / "junk.txt").exists() and run_state(half_made.run_dir) == "finished"
    assert "macro_f1" in first.output and "±" in first.output
    saved = json.loads((interrupted.run_dir / "eval.json").read_text())
    assert saved["best_epoch"] == 1
    assert "resume" in (interrupted.log).read_text()  # the worker's log, appended per attempt
    table = read_csv(sweep_dir / "results.csv")
    averages = [r for r in table if r["split"] == "test" and r["condition"] == "average" and r["metric"] == "accuracy"]
    assert [r["model.encoders.default.layers"] for r in averages] == ["[8]", "[8,8]"]
    assert all(r["n"] == 2 for r in averages)
    for point_rows in ([r for r in runs if r.point == p] for p in {r.point for r in runs}):
        results = [json.loads((r.run_dir / "eval.json").read_text())["results"] for r in point_rows]
        values = [res["test"]["average"]["accuracy"] for res in results]
        expected = mean_std(values)
        row = next(a for a in averages if a["point"] == point_rows[0].point.slug)
        assert (row["mean"], row["std"]) == (pytest.approx(expected.mean), pytest.approx(expected.std))

    before = {r.name: os.stat(r.run_dir / "eval.json").st_mtime_ns for r in runs}
    listing = {r.name: sorted(p.name for p in r.run_dir.rglob("*")) for r in runs}
    csv_before = (sweep_dir / "results.csv").read_text()
    second = runner.invoke(app, args)
    assert second.exit_code == 0, second.output
    assert "4 finished, 0 to resume, 0 to start" in second.output
    assert {r.name: os.stat(r.run_dir / "eval.json").st_mtime_ns for r in runs} == before
    assert {r.name: sorted(p.name for p in r.run_dir.rglob("*")) for r in runs} == listing
    log = (sweep_dir / "sweep.log").read_text().split("4 finished, 0 to resume")[1]
    assert all(f"skipped (finished): {r.name}" in log for r in runs)
    assert (sweep_dir / "results.csv").read_text() == csv_before


def test_a_failing_run_is_reported_excluded_and_the_exit_code_is_non_zero(recipe, tmp_path):
    sweep_dir = tmp_path / "sw"
    grid = ["dataset.samples=200,2"]  # samples=2 passes validation (a range) and fails when the dataset is built (< classes)
    good, bad = plan(recipe, grid, [0], sweep_dir)
    fake_finished(good, 0.5, 0.5, {})
    result = runner.invoke(app, ["sweep", str(recipe), "--grid", grid[0], "--seeds", "0", "--out", str(sweep_dir)])
    assert result.exit_code == 1, result.output
    flat = " ".join(result.output.split())
    assert f"failed: {bad.name}" in flat and "1 of 2 runs failed" in flat
    assert str(bad.log) in flat and "'samples' (2) must be at least 'classes' (3)" in flat
    assert "'samples' (2) must be at least 'classes' (3)" in bad.log.read_text()
    points = {r["point"] for r in read_csv(sweep_dir / "results.csv")}
    assert points == {good.point.slug}  # the failure is excluded from aggregation
    assert run_state(bad.run_dir) == "fresh"  # started again next time


def test_ray_backend_without_ray_says_how_to_install(recipe, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(MMCoreError, match=r"pip install 'mmcore\[ray\]'"):
        run_sweep(recipe, [], [], seeds="0", out=tmp_path / "sw", backend="ray", console=quiet_console())
    with pytest.raises(MMCoreError, match="not a backend"):
        run_sweep(recipe, [], [], backend="slurm", console=quiet_console())


def test_ray_backend_runs_the_same_worker(recipe, tmp_path):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = run_sweep(
            recipe, [], ["model.dim=4"], seeds="0", jobs=2, out=tmp_path / "sw", backend="ray", console=quiet_console()
        )
    finally:
        ray.shutdown()
    assert [o.status for o in result.outcomes] == ["done"], result.outcomes[0].error
    assert run_state(result.runs[0].run_dir) == "finished"
    assert {r["n"] for r in read_csv(tmp_path / "sw" / "results.csv")} == {1}


def test_sigterm_to_a_background_sweep_stops_its_workers(recipe: Path, tmp_path: Path) -> None:
    """A shell starts background jobs with SIGINT ignored; `kill` (SIGTERM) must still stop the
    sweep *and* its workers, so that no orphan keeps writing to a run that a restart resumes."""
    import signal
    import time

    out = tmp_path / "sw"
    command = [sys.executable, "-m", "mmcore.cli", "sweep", str(recipe), "train.epochs=200", "dataset.samples=2000"]
    command += ["--grid", "model.dim=8,9", "--jobs", "2", "--out", str(out)]
    sweep = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(out.glob("points/*/seed*/metrics.jsonl"))) < 2:
        time.sleep(0.2)
    assert len(list(out.glob("points/*/seed*/metrics.jsonl"))) == 2, "the workers never started"
    sweep.send_signal(signal.SIGTERM)
    assert sweep.wait(timeout=60) == 130
    assert processes_mentioning(str(out)) == []
    assert "interrupted" in (out / "sweep.log").read_text()
