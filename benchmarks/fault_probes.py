"""Issue 28's fault probes, wider than the tests: ``python benchmarks/fault_probes.py kill|late DIR [N]``.

``kill``: the tiny run (2 epochs, 5 steps each) killed with SIGKILL at 13 event points (after
steps 2, 6 and 9; between the epochs; after the 7th to 11th checkpoint-file fsync, i.e. inside
the 3rd and 4th checkpoint writes; before the 2nd to 4th checkpoint's final rename; before
eval.json), each resumed and compared bit for bit (results, best and last, metrics.jsonl) with
a straight run. A kill before the first checkpoint has nothing to resume, and says so.

``late``: ``mmcore run`` of the tiny recipe sent SIGTERM the moment eval.json appears, the moment
eval.csv appears, and the moment checkpoints/last holds the final step; N rounds. A complete run
must exit 0; an interrupted one 130 with the resume command.

Slow on purpose (a process per point): not part of the test suite, which keeps four kill points
(tests/test_kill_anywhere.py).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

POINTS = [("step", n) for n in (2, 6, 9)] + [("between-epochs", 1)] + [("inside-write", n) for n in range(7, 12)]
POINTS += [("between-renames", n) for n in (2, 3, 4)] + [("final-evaluation", 1)]


def kill(root: Path) -> None:
    import test_kill_anywhere as t

    from mmcore.engine.trainer import run
    from mmcore.testing import tiny_recipe

    killer = t.KILLER.replace('if event == "between-epochs":', 'if event == "step":\n    wrap(tr.Trainer, "step")\nelif event == "between-epochs":')
    straight = run(tiny_recipe(root / "straight", t.EPOCHS), show_progress=False)
    exact = killed = 0
    for i, (event, nth) in enumerate(POINTS):
        run_dir = root / f"{i}-{event}-{nth}" / "run"
        child = subprocess.run([sys.executable, "-c", killer, event, str(nth), str(run_dir), t.EPOCHS], capture_output=True, text=True)
        if child.returncode != -signal.SIGKILL:
            print(f"{event} {nth}: not killed (exit {child.returncode})")
            continue
        killed += 1
        try:
            resumed = run(tiny_recipe(run_dir.parent / "runs", t.EPOCHS), run_dir=run_dir, resume=True, show_progress=False)
        except Exception as exc:  # noqa: BLE001 - reported, the probe goes on
            print(f"{event} {nth}: resume refused: {exc}")
            continue
        same = resumed.results == straight.results
        same = same and all(t._same(t._checkpoint(run_dir, n), t._checkpoint(straight.run_dir, n)) for n in ("best", "last"))
        same = same and (run_dir / "metrics.jsonl").read_text() == (straight.run_dir / "metrics.jsonl").read_text()
        exact += same
        print(f"{event} {nth}: {'bit-exact' if same else 'DIFFERS'}", flush=True)
    print(f"{exact}/{killed} kill -9 resumes bit-exact over {len(POINTS)} points")


def late(root: Path, rounds: int) -> None:
    from mmcore.recipe import dump_yaml
    from mmcore.testing import tiny_recipe

    moments = {
        "eval.json appears": lambda d: list(d.glob("tiny/*/eval.json")),
        "eval.csv appears": lambda d: list(d.glob("tiny/*/eval.csv")),
        "last holds the final step": lambda d: [p for p in d.glob("tiny/*/checkpoints/last/state.json") if '"step": 10,' in p.read_text()],
    }
    root.mkdir(parents=True, exist_ok=True)
    for i in range(rounds):
        for k, (name, seen) in enumerate(moments.items()):
            out = root / f"{i}-{k}"
            recipe = root / f"{i}-{k}.yaml"
            recipe.write_text(dump_yaml(tiny_recipe(out, "train.epochs=2")))
            proc = subprocess.Popen([sys.executable, "-m", "mmcore", "run", str(recipe), "--no-progress"],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            while proc.poll() is None and not seen(out):
                time.sleep(0.002)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate()
            done = "yes" if list(out.glob("tiny/*/eval.json")) else "no"
            last = err.strip().splitlines()[-1][:120] if err.strip() else ""
            print(f"{name:26s} exit {proc.returncode:4d}  eval.json {done:3s} {last}", flush=True)


if __name__ == "__main__":
    what, where = sys.argv[1], Path(sys.argv[2])
    kill(where) if what == "kill" else late(where, int(sys.argv[3]) if len(sys.argv) > 3 else 3)
