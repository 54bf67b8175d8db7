"""The ``mmcore`` command line: run, resume, validate, show, plugins, components.

User mistakes end in one red line and a non-zero exit (2 for recipe errors); set
``MMCORE_DEBUG=1`` to see the traceback instead. Plugins add their own commands through the
``register_commands`` hook.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from mmcore.clitools import command_ends_process, err_console, friendly_errors, make_console
from mmcore.components import KINDS
from mmcore.errors import MMCoreError, RecipeError
from mmcore.plugins import get_plugins

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Learning with missing modalities.")
console = make_console()


OverridesArg = typer.Argument(None, help="Overrides: a.b=v, +a.b=v, ~a.b, node=component.name")
MaxParamsOption = typer.Option(
    None, "--max-params", help="Refuse models with more parameters than this (default 500,000,000; see docs/reliability.md)."
)


def _load(recipe: Path, overrides: Optional[list[str]], machine: bool = False, nproc: int = 1) -> dict[str, Any]:
    """The resolved recipe; ``machine``: also checked against this machine (data files, devices
    for ``nproc`` processes), for the commands that run it here."""
    from mmcore.recipe import load_recipe

    plugins = get_plugins()
    for info in plugins.failures:  # skipped plugins are worth one line before anything runs
        if info.error != "disabled by MMCORE_DISABLE_PLUGINS":
            err_console.print(f"[yellow]warning:[/] plugin '{info.name}' skipped: {escape(info.error or '')}", highlight=False)
    return load_recipe(recipe, list(overrides or []), plugins.registry, machine=machine, nproc=nproc)


def _print_results(results: dict[str, dict[str, dict[str, float]]], split: str, run_dir: Path | None = None) -> None:
    from mmcore.engine.progress import results_table
    from mmcore.oracle import read_oracle

    oracle = read_oracle(run_dir) if run_dir is not None else None
    ceiling = ((oracle or {}).get("results") or {}).get(split)
    console.print(results_table(f"{split} metrics per availability condition", results[split], oracle=ceiling))


@app.command()
@friendly_errors
def run(
    recipe: Path = typer.Argument(..., help="The recipe YAML file."),
    overrides: Optional[list[str]] = OverridesArg,
    progress: bool = typer.Option(True, help="Show the progress bar."),
    nproc: int = typer.Option(1, min=1, help="Processes on this machine (DDP through torchrun): one per GPU, or gloo on the CPU."),
    max_params: Optional[int] = MaxParamsOption,
) -> None:
    """Train and evaluate a recipe; writes runs/<name>/<timestamp>/."""
    from mmcore.engine.launch import launch_local, under_torchrun
    from mmcore.engine.sizes import set_max_params
    from mmcore.engine.trainer import run as run_recipe
    from mmcore.paths import check_output_dir

    set_max_params(max_params)
    resolved = _load(recipe, overrides, True, nproc)  # validated once here, so a bad recipe never starts N processes
    check_output_dir(Path(resolved["output"]) / resolved["name"], "output")  # before any data is read
    if nproc > 1 and not under_torchrun():
        argv = ["run", str(recipe), *(overrides or []), "--progress" if progress else "--no-progress"]
        raise typer.Exit(launch_local(nproc, argv))
    _report(run_recipe(resolved, console=console, show_progress=progress), resolved)


@app.command()
@friendly_errors
def resume(
    run_dir: Path = typer.Argument(..., help="A run directory with checkpoints/last."),
    overrides: Optional[list[str]] = typer.Argument(None, help="Only train.max_steps, logging, device, compile, rank_timeout."),
    progress: bool = typer.Option(True, help="Show the progress bar."),
    nproc: int = typer.Option(1, min=1, help="Processes on this machine (DDP through torchrun)."),
    max_params: Optional[int] = MaxParamsOption,
) -> None:
    """Continue an interrupted or stopped run exactly where its last checkpoint left it.

    A finished run is left alone (exit 0); a run whose recipe.yaml was edited is refused (exit 2)."""
    from mmcore.engine.launch import check_resume_overrides, check_unedited, launch_local, under_torchrun
    from mmcore.engine.record import RunRecord, run_state
    from mmcore.engine.sizes import set_max_params
    from mmcore.engine.trainer import run as run_recipe
    from mmcore.paths import check_output_dir

    set_max_params(max_params)
    if not (run_dir / "recipe.yaml").is_file():
        raise MMCoreError(f"{run_dir}: not a run directory (no recipe.yaml)")
    check_resume_overrides(list(overrides or []))
    if run_state(run_dir) == "finished":  # nothing to train: say so, rewrite nothing
        if overrides:  # they would be ignored in silence: a finished run trains no further
            raise MMCoreError(f"{run_dir}: finished (eval.json is written); {' '.join(overrides)} cannot apply, there is "
                              f"nothing to resume. Train further with a new run, or evaluate it with: mmcore eval {run_dir}")
        console.print(f"{run_dir}: finished (eval.json is written); nothing to resume. Evaluate it again with: mmcore eval {run_dir}")
        return
    check_output_dir(run_dir, "resume")
    check_unedited(run_dir, RunRecord(run_dir).manifest.get("recipe"))
    resolved = _load(run_dir / "recipe.yaml", overrides, True, nproc)
    if nproc > 1 and not under_torchrun():
        argv = ["resume", str(run_dir), *(overrides or []), "--progress" if progress else "--no-progress"]
        raise typer.Exit(launch_local(nproc, argv))
    _report(run_recipe(resolved, run_dir=run_dir, resume=True, console=console, show_progress=progress), resolved)


def _report(result: Any, recipe: dict[str, Any]) -> None:
    """Test metrics and where the run is, printed by the main process only."""
    from mmcore.engine.launch import is_main_process

    if not is_main_process():
        return
    if result.stopped_early:
        console.print(
            f"stopped at step {result.step} (train.max_steps); continue with: "
            f"mmcore resume {result.run_dir} train.max_steps=null"
        )
        return
    _print_results(result.results or {}, "test", result.run_dir)
    console.print(f"best epoch {result.best_epoch} by {recipe['train']['select']}; run directory: {result.run_dir}")


@app.command()
@friendly_errors
def sweep(
    recipe: Path = typer.Argument(..., help="The recipe YAML file."),
    overrides: Optional[list[str]] = OverridesArg,
    grid: list[str] = typer.Option([], "--grid", help="KEY=V1,V2,... (repeatable); split on top-level commas."),
    seeds: Optional[str] = typer.Option(None, help="Seeds, e.g. 0,1,2 or 0-4 (default: the recipe's seed)."),
    jobs: Optional[int] = typer.Option(None, help="Runs at a time (Ray: tasks in flight) [default: 1]."),
    jobs_per_device: Optional[int] = typer.Option(
        None, help="K runs at a time on each visible GPU (or K on the CPU), each pinned to its device; replaces --jobs."
    ),
    out: Optional[str] = typer.Option(None, help="Sweep directory (default: <output>/<name>-sweep)."),
    backend: str = typer.Option("local", help="local (process pool) or ray."),
    ray_address: Optional[str] = typer.Option(None, help="ray.init address; none starts a local Ray."),
    ray_gpus: Optional[float] = typer.Option(None, help="GPUs per run on Ray (Ray hides GPUs from tasks without) [default: 0]."),
    metrics: Optional[str] = typer.Option(None, help="Table columns, e.g. macro_f1,accuracy (default: all)."),
    max_params: Optional[int] = MaxParamsOption,
) -> None:
    """Run a recipe over a grid × seeds; finished runs are skipped on restart; mean ± std table."""
    from mmcore.engine.sizes import set_max_params
    from mmcore.sweep import run_sweep

    set_max_params(max_params)

    result = run_sweep(
        recipe, list(overrides or []), grid, seeds=seeds, jobs=jobs, out=out, backend=backend,
        ray_address=ray_address, ray_gpus=ray_gpus, metrics=metrics, console=console, jobs_per_device=jobs_per_device,
    )
    if result.failed:
        raise typer.Exit(1)


@app.command()
@friendly_errors
def validate(
    recipe: Path = typer.Argument(..., help="The recipe YAML file."),
    overrides: Optional[list[str]] = OverridesArg,
    nproc: int = typer.Option(1, min=1, help="Check the devices for this many processes, as `run --nproc` would use."),
    machine: bool = typer.Option(
        True, "--machine/--recipe-only", help="Also check the data files and this machine's devices (--recipe-only: the recipe alone)."
    ),
) -> None:
    """Check a recipe against the schema, the registered components, its data files and this
    machine's devices; every problem in one pass, exit 2 on errors."""
    if nproc != 1 and not machine:  # it would be ignored in silence: only the machine checks read it
        raise RecipeError([f"--nproc {nproc} is checked against this machine's devices, which --recipe-only skips; "
                           "expected one of the two"])
    resolved = _load(recipe, overrides, machine, nproc)
    # soft_wrap: rich's line wrapping is slow on long words (a 100,000-character name took minutes)
    console.print(f"[green]ok[/]: {escape(str(recipe))} ({escape(resolved['name'])})", soft_wrap=True, highlight=False)


@app.command()
@friendly_errors
def show(
    recipe: Path = typer.Argument(..., help="The recipe YAML file."),
    overrides: Optional[list[str]] = OverridesArg,
) -> None:
    """Print the resolved recipe: overrides applied, every default filled in."""
    from mmcore.recipe import dump_yaml

    console.print(dump_yaml(_load(recipe, overrides)), end="", highlight=False, markup=False)


@app.command()
@friendly_errors
def plugins(as_json: bool = typer.Option(False, "--json", help="Print JSON for tools instead of a table.")) -> None:
    """List plugins: name, version, origin, components, and any load error."""
    if as_json:
        import json

        print(json.dumps([info.to_json() for info in get_plugins().infos], indent=2))
        return
    table = Table(title="mmcore plugins")
    for column in ("plugin", "version"):
        table.add_column(column, no_wrap=True)
    table.add_column("origin")
    table.add_column("components")
    for info in get_plugins().infos:
        what = Text(info.error, style="red") if info.error else Text(", ".join(c.split(":", 1)[1] for c in info.components))
        table.add_row(Text(info.name), Text(info.version), Text(info.origin), what)  # third-party text: never markup
    console.print(table)


@app.command()
@friendly_errors
def components(
    kind: Optional[str] = typer.Argument(None, help=f"One of: {', '.join(KINDS)}; or a component's name for its full view."),
) -> None:
    """List registered components with their options and documentation; `components NAME` shows one in full."""
    from mmcore.recipe import type_name
    from mmcore.registry import REQUIRED, did_you_mean

    if kind is not None and "." in kind:
        from mmcore.clitools import component_view

        console.print(component_view(get_plugins().registry, kind), highlight=False, soft_wrap=True, markup=False)
        return
    if kind is not None and kind not in KINDS:
        raise MMCoreError(f"unknown kind '{kind}';{did_you_mean(kind, list(KINDS))} kinds: {', '.join(KINDS)}")
    current = None
    for comp in get_plugins().registry.all(kind):
        if comp.kind != current:
            current = comp.kind
            console.rule(f"[bold]{current}", align="left")
        console.print(f"[bold cyan]{comp.name}[/]  [dim]({comp.origin})[/]  {comp.doc}", highlight=False, soft_wrap=True)
        for opt in comp.options():
            default = "required" if opt.default is REQUIRED else f"= {opt.default!r}"
            console.print(f"    {opt.name}: {type_name(opt.annotation)} {default}", highlight=False, soft_wrap=True, markup=False)


new_app = typer.Typer(help="Write a new project from a template.", no_args_is_help=True)
app.add_typer(new_app, name="new")


@new_app.command("plugin")
@friendly_errors
def new_plugin(
    name: str = typer.Argument(..., help="The plugin's name and namespace (a lower-case identifier)."),
    kinds: str = typer.Option("balancer", "--kinds", "--kind",
                              help="The kinds of the components it starts with, one of each, separated by commas: "
                                   "balancer, imputer, encoder, fusion (e.g. --kinds balancer,imputer)."),
    directory: Optional[Path] = typer.Option(None, "--dir", help="Where to write it (default: ./mmcore-NAME)."),
) -> None:
    """Write a plugin package whose tests (the contract suite, a short run) pass after `pip install -e`."""
    from mmcore.paths import check_output_dir
    from mmcore.scaffold import new_plugin as write

    check_output_dir(directory if directory is not None else Path(f"mmcore-{name}"), "--dir")
    root = write(name, kinds, directory)
    console.print(f"wrote {root}; next: cd {root} && pip install -e . && python -m pytest", highlight=False)


from mmcore.after.commands import add_commands as _add_after_training  # noqa: E402  (eval, predict, report)

_add_after_training(app)

from mmcore.study.commands import add_commands as _add_study  # noqa: E402  (study run|status|report|check)

_add_study(app)


def _add_plugin_commands() -> None:
    for warning in get_plugins().register_commands(app):  # a plugin's command never breaks the core CLI
        err_console.print(f"[yellow]warning:[/] {warning}")


def main() -> None:
    _add_plugin_commands()  # here, not at import: importing the CLI loads no plugin
    command_ends_process()
    from mmcore.engine.launch import under_torchrun

    if not under_torchrun():
        app()
        return
    from mmcore.engine.lifeline import bind_to_parent

    # SIGKILL, not SIGTERM: a rank blocked in a collective would not run a handler until its timeout
    bind_to_parent(signal.SIGKILL)
    try:
        app()
    except SystemExit as done:
        _leave_worker(done.code)
    except Exception as exc:  # a bug, not a user's mistake: its traceback stays, and the agent's
        from mmcore.engine.launch import report_to_agent  # summary names the cause beside the rank

        lines = [line for line in str(exc).splitlines() if line.strip()]
        report_to_agent([f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__])
        raise
    _leave_worker(0)


def _leave_worker(code: int | str | None) -> None:
    """End a torchrun worker once its command has finished, without the interpreter's shutdown.

    A finished 2-process gloo run's rank still aborted now and then while the interpreter tore
    down ("terminate called without an active exception", SIGABRT, so torchrun reported the whole
    run as failed after every file was written): 1 in 120 of the tests' stop-and-resume launches
    with 3 such loops sharing 2 cores, and once in CI. Every file is closed by then (loggers in
    the loop's ``finally``, checkpoints and eval.json written whole), so the worker flushes its
    output and leaves with ``os._exit``; ``atexit`` handlers do not run in torchrun workers. In a
    minimal DDP script the same ending took the aborts from 10 in 50 launches to 0 in 50."""
    import logging
    import os

    if isinstance(code, str):  # SystemExit("message"): printed to stderr, status 1, as Python does
        print(code, file=sys.stderr)
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(int(code or 0))


if __name__ == "__main__":
    sys.exit(main())
