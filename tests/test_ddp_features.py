"""Features added since the multi-process audit, under ``mmcore run --nproc 2`` (gloo, CPU).

Checked (2026-12-08): ``data.nonfinite: absent`` with unusable rows, ``min_present``,
``eval.json``'s ``empty_rows`` and ``manifest.json``'s ``numerics`` give what one process gives;
the engine's guards (parameters made in forward, the divergence probe) stop every rank with the
one-process line; ``hide_rule: subsets`` runs. Found and fixed: torch's advice about
``find_unused_parameters`` printed on every run; a hung rank held the others for gloo's 30
minutes; a checkpoint kept rank 0's random state only, so a resumed rank 1 drew rank 0's numbers
whenever the ranks' draws had drifted apart (shares differing by a row, each GPU's own generator);
and then a balancer's gradient noise differed by rank, so the replicas trained apart in silence.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmcore.engine.ddp import collective_error
from mmcore.engine.launch import check_resume_overrides, edited_keys
from mmcore.engine.runtime import Runtime
from mmcore.engine.trainer import run
from mmcore.errors import MMCoreError, RecipeError
from mmcore.recipe import dump_yaml
from mmcore.testing import tiny_recipe

from process_helpers import processes_mentioning

linux_only = pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="reads the process table from /proc")

DETERMINISTIC = ("model.encoders.default.dropout=0.0", "model.fusion.dropout=0.0", "model.unimodal_heads=false")

# the synthetic data with NaN rows in every split (tests/test_unusable_masks.py's with_nan_rows)
NAN_ROWS = f'''
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
import mmcore.builtins.synthetic as synthetic
from test_unusable_masks import with_nan_rows
original = synthetic.Synthetic.split
synthetic.Synthetic.split = lambda self, name: with_nan_rows(original(self, name))
'''

# rank 1 stops answering at its third step, while rank 0 waits in the step's collectives
HANG_IN_RANK_1 = '''
import os
if os.environ.get("RANK") == "1":
    import time
    import mmcore.engine.trainer as trainer
    original = trainer.Trainer.step
    def step(self, *args, **kwargs):
        if self.state.step == 2:
            time.sleep(900)
        return original(self, *args, **kwargs)
    trainer.Trainer.step = step
'''

# rank 1 is stuck before it joins the process group (an import that hangs)
STUCK_BEFORE_RANK_1_STARTS = '''
import os
if os.environ.get("RANK") == "1":
    import time
    time.sleep(900)
'''

# rank 0 is still busy (writing, say) when the others reach the run's final barrier
SLOW_RANK_0_AT_THE_END = '''
import os
if os.environ.get("RANK") == "0":
    import time
    from mmcore.engine.runtime import Runtime
    original = Runtime.close
    def close(self, wait_for_all=False):
        if wait_for_all:  # SIGTERM is ignored once the results are written: torchrun would wait 30 s more
            time.sleep(20)
        return original(self, wait_for_all)
    Runtime.close = close
'''

# each rank leaves its own weights before the final evaluation
RANK_WEIGHTS = '''
import os
if os.environ.get("RANK") is not None:
    import mmcore.engine.trainer as trainer
    from safetensors.torch import save_file
    original = trainer.Trainer.test
    def test(self, *args, **kwargs):
        weights = {k: v.contiguous() for k, v in self.model.state_dict().items()}
        save_file(weights, os.path.join(os.environ["RANK_WEIGHTS"], f"rank{os.environ['RANK']}.safetensors"))
        return original(self, *args, **kwargs)
    trainer.Trainer.test = test
'''

# the fusion makes a layer in its first forward (guards.check_parameters)
LAYER_IN_FORWARD = '''
import torch
from mmcore.builtins.fusion import ConcatFusion
original = ConcatFusion.forward
def forward(self, z, present):
    if not hasattr(self, "late"):
        self.late = torch.nn.Linear(2, 2)
    return original(self, z, present)
ConcatFusion.forward = forward
'''

# the fusion's training prediction turns NaN after its sixth call (the divergence probe names it)
NAN_AFTER_SIX = '''
from mmcore.builtins.fusion import ConcatFusion
original = ConcatFusion.forward
calls = [0]
def forward(self, z, present):
    out = original(self, z, present)
    if self.training:
        calls[0] += 1
        if calls[0] > 6:
            return out * float("nan")
    return out
ConcatFusion.forward = forward
'''


def _mmcore(tmp_path: Path, args: list[str], nproc: int, hook: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RANK_WEIGHTS": str(tmp_path)}
    if hook is not None:
        folder = tmp_path / "hook"
        folder.mkdir(exist_ok=True)
        (folder / "sitecustomize.py").write_text(hook)
        env["PYTHONPATH"] = os.pathsep.join([str(folder), os.environ.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "mmcore", *args, "--no-progress", *(["--nproc", str(nproc)] if nproc > 1 else [])]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def _recipe(tmp_path: Path, *overrides: str, **nodes: object) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(dump_yaml(tiny_recipe(tmp_path / "unused", *overrides, **nodes)))
    return path


def _run_dir(root: Path) -> Path:
    (run_dir,) = (root / "tiny").iterdir()
    return run_dir


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "checkpoints" / "last" / "model.safetensors"))


def test_two_processes_on_unusable_rows_equal_one_and_print_no_ddp_advice(tmp_path: Path, monkeypatch) -> None:
    import mmcore.builtins.synthetic as synthetic
    from test_unusable_masks import with_nan_rows

    missing = {"train": {"rates": {m: 0.6 for m in ("m0", "m1", "m2")}, "min_present": 1}, "eval": {"conditions": "all"}}
    path = _recipe(tmp_path, *DETERMINISTIC, "train.epochs=2", "data.nonfinite=absent", f"output={tmp_path / '2'}",
                   missing=missing)
    done = _mmcore(tmp_path, ["run", str(path)], 2, NAN_ROWS)
    assert done.returncode == 0, done.stderr[-2000:]
    # torch's once-per-run advice to turn find_unused_parameters off (mmcore.engine.ddp.wrap)
    assert "find_unused_parameters" not in done.stderr and "reducer.cpp" not in done.stderr, done.stderr[-2000:]
    two = _run_dir(tmp_path / "2")
    assert sorted(p.name for p in (tmp_path / "2" / "tiny").iterdir()) == [two.name]  # rank 0 alone writes

    original = synthetic.Synthetic.split  # the same data in this process: one process, as `mmcore run` gives
    monkeypatch.setattr(synthetic.Synthetic, "split", lambda self, name: with_nan_rows(original(self, name)))
    one = run(tiny_recipe(tmp_path / "1", *DETERMINISTIC, "train.epochs=2", "data.nonfinite=absent", missing=missing),
              show_progress=False).run_dir
    a, b = _weights(one), _weights(two)
    assert a.keys() == b.keys() and max(float((a[k] - b[k]).abs().max()) for k in a) < 1e-5  # measured: 3e-8
    eval1, eval2 = (json.loads((d / "eval.json").read_text()) for d in (one, two))
    assert eval2["best_epoch"] == eval1["best_epoch"] and eval2["cost"]["world_size"] == 2
    assert eval2["empty_rows"] == eval1["empty_rows"] and eval1["empty_rows"]["val"]["m0+m1"] > 0
    assert eval2["diagnostics"]["train_patterns"] == eval1["diagnostics"]["train_patterns"]
    for split in ("val", "test"):
        for condition, row in eval1["results"][split].items():
            assert eval2["results"][split][condition] == pytest.approx(row, abs=1e-6)
    manifests = [json.loads((d / "manifest.json").read_text()) for d in (one, two)]
    assert manifests[0]["numerics"] == manifests[1]["numerics"] is not None


WAITED = ("error: rank_timeout: rank {rank} waited 10 s for the other processes at a collective and stopped the run: "
          "another process hung or is that much slower (its own error, if any, is above); a run directory made by then "
          "continues with mmcore resume RUN, with rank_timeout=SECONDS to wait longer")
NOT_STARTED = ("error: rank_timeout: rank 0 waited 10 s for the other processes to start and stopped the run: one of "
               "them is stuck before training; rank_timeout=SECONDS waits longer")


@linux_only
@pytest.mark.parametrize(("hook", "line", "rank"), [
    pytest.param(HANG_IN_RANK_1, WAITED.format(rank=0), 0, id="mid-epoch"),
    pytest.param(SLOW_RANK_0_AT_THE_END, WAITED.format(rank=1), 1, id="final-barrier", marks=pytest.mark.slow),  # 44 s
    pytest.param(STUCK_BEFORE_RANK_1_STARTS, NOT_STARTED, 0, id="before-the-group", marks=pytest.mark.slow),  # 20 s
])
def test_a_hung_rank_ends_the_run_within_rank_timeout(tmp_path: Path, hook: str, line: str, rank: int) -> None:
    path = _recipe(tmp_path, "train.epochs=1", f"output={tmp_path / 'runs'}")
    started = time.monotonic()
    done = _mmcore(tmp_path, ["run", str(path), "rank_timeout=10"], 2, hook)
    seconds = time.monotonic() - started
    assert done.returncode == 1
    assert _errors(done.stderr) == [line, f"error: rank {rank} failed (exit code 1); the other ranks were stopped"]
    assert "Traceback" not in done.stderr
    assert seconds < 150  # start-up, 10 s of waiting and the stop; gloo alone waited 30 minutes
    assert processes_mentioning(str(tmp_path)) == []


@pytest.mark.slow  # 42 s: three 2-process launches
def test_a_resumed_two_process_run_continues_exactly_when_the_ranks_draw_differently(tmp_path: Path) -> None:
    pytest.importorskip("mmcore_baselines")
    # batch 65 of 280 rows: shares of 33 and 32 rows, so dropout and hiding draw more in rank 0,
    # and the ranks' generators part after the first step
    imputer = {"type": "baselines.mmin", "hidden": [8], "blocks": 1, "hide_rule": "subsets", "hide_rate": 1.0}
    path = _recipe(tmp_path, "train.epochs=2", "train.batch_size=65", imputer=imputer)
    straight = _mmcore(tmp_path, ["run", str(path), f"output={tmp_path / 'straight'}"], 2)
    assert straight.returncode == 0, straight.stderr[-2000:]
    stopped = _mmcore(tmp_path, ["run", str(path), f"output={tmp_path / 'half'}", "train.max_steps=5"], 2)
    assert stopped.returncode == 0 and "stopped at step 5" in stopped.stdout, stopped.stderr[-2000:]
    half = _run_dir(tmp_path / "half")
    assert not (half / "eval.json").exists()
    rng = load_file(str(half / "checkpoints" / "last" / "rng.safetensors"))
    assert {"torch", "rank0.torch", "rank1.torch"} <= set(rng) and torch.equal(rng["torch"], rng["rank0.torch"])
    assert not torch.equal(rng["rank0.torch"], rng["rank1.torch"])
    resumed = _mmcore(tmp_path, ["resume", str(half), "train.max_steps=null"], 2)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    straight_dir = _run_dir(tmp_path / "straight")
    a, b = _weights(straight_dir), _weights(half)
    assert all(torch.equal(a[k], b[k]) for k in a)  # rank 1 restored rank 0's state: 9e-3 apart
    lines = [(d / "metrics.jsonl").read_text().splitlines() for d in (straight_dir, half)]
    assert lines[0] == lines[1]


def test_a_balancers_gradient_noise_keeps_the_replicas_equal(tmp_path: Path) -> None:
    pytest.importorskip("mmcore_baselines")
    # batch 65: the ranks' generators part after the first step; OGM-GE adds noise to the gradients
    path = _recipe(tmp_path, "train.epochs=2", "train.batch_size=65", f"output={tmp_path / 'runs'}",
                   balancer={"type": "baselines.ogm_ge"})
    done = _mmcore(tmp_path, ["run", str(path)], 2, RANK_WEIGHTS)
    assert done.returncode == 0, done.stderr[-2000:]
    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1)]
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in ranks[0])  # each drew its own noise: 4e-2 apart


@linux_only
@pytest.mark.parametrize(("hook", "expected"), [
    (LAYER_IN_FORWARD, "error: training step 0: fusion 'mmcore.concat' (plugin mmcore): parameters ['late.weight', "
                       "'late.bias'] appeared during forward, after the optimizer was built"),
    (NAN_AFTER_SIX, "error: training diverged: loss is nan at epoch 2: fusion 'mmcore.concat' (plugin mmcore): its "
                    "prediction has non-finite values (NaN or infinity) (one forward and backward pass from checkpoints/last"),
], ids=["layer-in-forward", "divergence-probe"])
@pytest.mark.slow  # 25 s: two 2-process launches
def test_the_engine_guards_stop_every_rank_with_the_one_process_line(tmp_path: Path, hook: str, expected: str) -> None:
    path = _recipe(tmp_path, "train.epochs=2", f"output={tmp_path / 'runs'}")
    done = _mmcore(tmp_path, ["run", str(path)], 2, hook)
    assert done.returncode == 1
    errors = _errors(done.stderr)
    assert len(errors) == 2 and errors[0].startswith(expected), done.stderr[-2000:]
    assert errors[1].startswith("error: rank ") and errors[1].endswith("failed (exit code 1); the other ranks were stopped")
    assert "Traceback" not in done.stderr and processes_mentioning(str(tmp_path)) == []


def test_rank_timeout_is_checked_and_may_change_on_resume(tmp_path: Path) -> None:
    assert tiny_recipe(tmp_path)["rank_timeout"] == 600
    with pytest.raises(RecipeError, match="rank_timeout"):
        tiny_recipe(tmp_path, "rank_timeout=0")
    check_resume_overrides(["rank_timeout=60"])  # where and how long it waits, not what a step computes
    assert edited_keys({"rank_timeout": 600, "seed": 0}, {"rank_timeout": 60, "seed": 0}) == []


def test_only_a_collective_that_ended_without_the_others_is_one_line() -> None:
    cpu = torch.device("cpu")
    two = Runtime(cpu, rank=1, world_size=2, rank_timeout=7)
    gloo = RuntimeError("[gloo/transport/tcp/unbound_buffer.cc:78] Timed out waiting 7000ms for recv operation to complete")
    line = collective_error(gloo, two)
    assert isinstance(line, MMCoreError) and str(line).startswith("rank_timeout: rank 1 waited 7 s for the other processes")
    wrapped = MMCoreError("training step 3: the model (no single component identified) raised RuntimeError: ...")
    wrapped.__cause__ = gloo  # blame_forward's wrapping of a wait inside the forward
    assert collective_error(wrapped, two) is not None
    lost = collective_error(RuntimeError("[gloo/transport/tcp/pair.cc:538] Connection closed by peer [127.0.0.1]:1"), two)
    assert str(lost).startswith("rank 1 lost the other processes at a collective: one of them ended")
    assert collective_error(RuntimeError("mat1 and mat2 shapes cannot be multiplied"), two) is None
    stopped = MMCoreError("interrupted at step 3: ...")
    stopped.__context__ = gloo  # a SIGTERM that ended the collective: the interrupt's own line stays
    assert collective_error(stopped, two) is None
    assert collective_error(gloo, Runtime(cpu, rank_timeout=7)) is None  # one process waits for nobody
