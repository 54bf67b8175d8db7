"""``mmcore study run|status|report|check FILE``: the study commands, added to the CLI by ``add_commands``."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from mmcore.clitools import friendly_errors

console = Console()
study_app = typer.Typer(help="Studies: arms × axes × seeds, tuned, pre-registered, analysed.", no_args_is_help=True)

OutOption = typer.Option(None, "--out", help="Study directory (default: the file's output, or <recipe output>/<name>-study).")
AmendOption = typer.Option(None, "--amend", help="Record a change of the analysis section, with this reason.")


@study_app.command("run")
@friendly_errors
def run(
    file: Path = typer.Argument(..., help="The study YAML file."),
    jobs: int = typer.Option(1, help="Runs at a time (Ray: tasks in flight)."),
    jobs_per_device: Optional[int] = typer.Option(
        None, help="K runs at a time on each visible GPU (or K on the CPU), each pinned to its device; replaces --jobs."
    ),
    backend: str = typer.Option("local", help="local (process pool) or ray."),
    out: Optional[Path] = OutOption,
    amend: Optional[str] = AmendOption,
    ray_address: Optional[str] = typer.Option(None, help="ray.init address; none starts a local Ray."),
    ray_gpus: float = typer.Option(0.0, help="GPUs per run on Ray."),
) -> None:
    """Validate every run, freeze the analysis, tune, run every arm × axes × seed, write the outputs."""
    from mmcore.study.run import run_study

    state, outcomes = run_study(file, jobs=jobs, backend=backend, out=out, amend=amend,
                                ray_address=ray_address, ray_gpus=ray_gpus, console=console,
                                jobs_per_device=jobs_per_device)
    unfinished = sum(o.status in ("failed", "interrupted") for o in outcomes)
    if unfinished:  # the per-run lines scrolled by: say what the exit means and what to do next
        typer.echo(f"error: {unfinished} of {len(outcomes)} runs did not finish (listed above; logs in "
                   f"{state.study_dir / 'logs'}), so the study's outputs were not written: fix the cause and run "
                   f"'mmcore study run {file}' again (finished runs are kept), or 'mmcore study report {file}' "
                   "for the finished runs alone", err=True)
        raise typer.Exit(1)


@study_app.command("status")
@friendly_errors
def status(file: Path = typer.Argument(..., help="The study YAML file."), out: Optional[Path] = OutOption) -> None:
    """Finished, interrupted and not-started runs per phase and arm."""
    from mmcore.study.run import status_lines

    for line in status_lines(file, out):
        console.print(line, highlight=False)


@study_app.command("report")
@friendly_errors
def report(file: Path = typer.Argument(..., help="The study YAML file."), out: Optional[Path] = OutOption,
           amend: Optional[str] = AmendOption) -> None:
    """Write study.md, tables.tex, results.csv and report.html from the finished runs."""
    from mmcore.study.freeze import freeze
    from mmcore.study.outputs import reportable, write_outputs
    from mmcore.study.run import finished_count, plan

    state = plan(file, out)
    line = reportable(state)  # before any amendment: a study with nothing to report changes nothing
    freeze(state.study, state.study_dir, amend, finished_count(state), create=False)
    console.print(line, highlight=False)
    for path in write_outputs(state):
        console.print(f"wrote {path}", highlight=False)


@study_app.command("check")
@friendly_errors
def check(file: Path = typer.Argument(..., help="The study YAML file."),
          expected: Path = typer.Option(..., "--expected", help="The expected numbers (a reproduction pack)."),
          out: Optional[Path] = OutOption, jobs: int = typer.Option(1, help="Runs at a time.")) -> None:
    """Run (or read) the study and compare each cell's mean with the expected file; exit 1 on a failure."""
    from mmcore.study.check import Expected, compare, load_expected
    from mmcore.study.run import StudyState, run_study

    read: list[Expected] = []

    def read_expected_first(state: StudyState) -> None:  # before the study directory or any run
        read.append(load_expected(expected, state.study))

    state, outcomes = run_study(file, jobs=jobs, out=out, console=console, before=read_expected_first)
    results = compare(state, read[0])
    table = Table("cell", "n", "expected", "actual", "tolerance", "", title=f"{file} against {expected}")
    for c in results:
        table.add_row(Text(c.cell), str(c.n), f"{c.expected:.10f}", "n/a" if c.actual is None else f"{c.actual:.10f}",
                      f"{c.tolerance:g}", "[green]pass[/]" if c.passed else "[red]FAIL[/]")
    console.print(table)
    if not all(c.passed for c in results) or any(o.status in ("failed", "interrupted") for o in outcomes):
        raise typer.Exit(1)


def add_commands(app: typer.Typer) -> None:
    app.add_typer(study_app, name="study")
