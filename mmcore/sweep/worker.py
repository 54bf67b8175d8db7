"""One sweep run in its own process: ``python -m mmcore.sweep.worker RUN_DIR [--resume]``.

The sweep writes the run's resolved recipe to ``RUN_DIR/recipe.yaml`` before starting it, so
the worker needs nothing else: it validates that file again (plugins are loaded afresh in this
process) and trains into the fixed directory. A separate process per run keeps runs from
sharing global state (RNGs, CUDA context, plugin registry) and lets a crash kill one run only.

Exit codes: 0 done; 130 interrupted (Ctrl-C); the error's exit code (1, or 2 for recipe errors)
for a user-facing error, printed as one line; any other exception prints its traceback into
the run's log.
"""

from __future__ import annotations

import sys
from pathlib import Path

from mmcore.errors import MMCoreError


def train_run_dir(run_dir: Path, resume: bool) -> None:
    """Train (or continue) the run whose resolved recipe is ``run_dir/recipe.yaml``."""
    from rich.console import Console

    from mmcore.engine.ownership import own_run_dir
    from mmcore.engine.trainer import run
    from mmcore.recipe import load_recipe

    recipe = load_recipe(run_dir / "recipe.yaml")
    with own_run_dir(run_dir, "train"):  # a restarted sweep never trains a run beside an orphan
        console = Console(width=120, force_terminal=False)  # the output goes to a log file
        result = run(recipe, run_dir=run_dir, resume=resume, console=console, show_progress=False)
    console.print(f"done: best epoch {result.best_epoch}, {result.step} steps, eval.json in {result.run_dir}")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    resume = "--resume" in args
    paths = [a for a in args if a != "--resume"]
    if len(paths) != 1:
        print("usage: python -m mmcore.sweep.worker RUN_DIR [--resume]", file=sys.stderr)
        return 2
    from mmcore.engine.lifeline import bind_to_parent

    bind_to_parent()  # SIGTERM when the sweep dies, however it dies: no orphaned training
    try:
        train_run_dir(Path(paths[0]), resume)
    except MMCoreError as exc:
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"error: {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # the sweep reads 130 as "interrupted": the run continues next time
        print("interrupted: the run continues from checkpoints/last when the sweep is started again", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
