"""The after-training commands: ``mmcore eval``, ``mmcore predict``, ``mmcore report``.

They live here, added to the core CLI by ``add_commands(app)``, so that ``mmcore/cli.py`` stays a
list of commands; each imports its machinery only when run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer
from rich.markup import escape

from mmcore.clitools import err_console, friendly_errors, make_console
from mmcore.errors import MMCoreError

console = make_console()


def _floats(text: Optional[str], what: str) -> Optional[list[float]]:
    if text is None:
        return None
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise MMCoreError(f"{what}: expected comma-separated numbers such as 0,0.1,0.2, got '{text}'") from None


def eval_command(
    run_dir: Path = typer.Argument(..., help="A run directory (runs/<name>/<timestamp>)."),
    overrides: Optional[list[str]] = typer.Argument(None, help="Protocol overrides, e.g. 'missing.eval.conditions=[a, a+v]'."),
    split: str = typer.Option("test", help="test or val."),
    checkpoint: str = typer.Option("best", help="best or last."),
    label: Optional[str] = typer.Option(None, help="Folder under RUN/evals/ (default: derived from the protocol; a curve "
                                                   "there made with other --rates/--draws/--min-present is not replaced "
                                                   "unless named here)."),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, ... (default: the recipe's)."),
    curve: bool = typer.Option(False, "--curve", help="Also a robustness curve over missing rates."),
    rates: Optional[str] = typer.Option(None, help="Curve rates, comma-separated (default 0,0.1,...,0.9)."),
    draws: Optional[int] = typer.Option(None, help="Seeded mask draws per curve rate (default 3)."),
    min_present: Optional[int] = typer.Option(None, help="Curve masks keep at least this many modalities (0 to the number "
                                                         "of modalities - 1; default 1; --over rates only)."),
    over: Optional[str] = typer.Option(None, help="What --curve sweeps: 'rates' (modalities missing, the default) or 'frames' "
                                                  "(frames dropped inside sequences)."),
) -> None:
    """Evaluate a saved run under any protocol; results go to RUN/evals/<label>/."""
    from mmcore.after.evaluation import evaluate_run
    from mmcore.engine.progress import results_table
    from mmcore.paths import check_output_dir

    _curve_options(curve, rates, draws, min_present, over)
    if run_dir.is_dir():
        check_output_dir(run_dir / "evals", "eval")  # results go to RUN/evals/<label>/
    result = evaluate_run(run_dir, list(overrides or []), split=split, checkpoint=checkpoint, label=label, device=device,
                          curve=curve, rates=_floats(rates, "--rates"), draws=3 if draws is None else draws,
                          min_present=1 if min_present is None else min_present, over=over or "rates")
    for note in result.notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    console.print(results_table(f"{split} metrics per availability condition", result.results, oracle=result.oracle))
    if result.curve is not None:
        _print_curve(result.curve)
    console.print(f"written: {result.out_dir}", highlight=False, soft_wrap=True)


def _curve_options(curve: bool, rates: str | None, draws: int | None, min_present: int | None, over: str | None) -> None:
    """A curve option given without ``--curve`` (or ``--min-present`` with ``--over frames``, which
    drops frames, not modalities) would be ignored in silence: one line instead."""
    given = [name for name, value in (("--rates", rates), ("--draws", draws), ("--min-present", min_present), ("--over", over))
             if value is not None]
    if given and not curve:
        raise MMCoreError(f"{given[0]}: only with --curve (it sets the robustness curve); add --curve or leave it out")
    if min_present is not None and over == "frames":
        raise MMCoreError("--min-present: only with --over rates (a frame curve keeps every modality)")


def _print_curve(curve: dict[str, Any]) -> None:
    from rich.table import Table
    from rich.text import Text

    metric = curve.get("select") if curve.get("select") in curve["metrics"] else curve["metrics"][0]
    table = Table(title=f"robustness ({metric}): AUC by the trapezoid rule, relative = mean level / full ({curve['full'][metric]:.4f})")
    for column in ("curve", "rates", "AUC", "mean level", "relative"):
        table.add_column(column, justify="left" if column in ("curve", "rates") else "right")
    for name, c in curve["curves"].items():
        r = c["robustness"][metric]
        table.add_row(Text(name), f"{c['rates'][0]:g}–{c['rates'][-1]:g}", f"{r['auc']:.4f}", f"{r['mean']:.4f}", f"{r['relative']:.4f}")
    console.print(table)


def predict_command(
    run_dir: Path = typer.Argument(..., help="A run directory."),
    input_path: Path = typer.Option(..., "--input", help="A .safetensors file (x.<modality>, ids) or a features folder."),
    out: Path = typer.Option(..., "--out", help="The CSV to write."),
    absent: Optional[str] = typer.Option(None, help="Modalities to treat as absent, comma-separated (e.g. a,l)."),
    split: str = typer.Option("test", help="With a features folder: which split file to read."),
    checkpoint: str = typer.Option("best", help="best or last."),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, ... (default: the recipe's)."),
    input_form: str = typer.Option("raw", "--input-form",
                                   help="raw: the dataset's raw features (the run's stored input transform is applied); "
                                        "model: already in the model's input space."),
) -> None:
    """Predict new inputs with a saved run; absent modalities are explicit."""
    from mmcore.after.predict import predict_file
    from mmcore.paths import check_output_file

    check_output_file(out, "--out")  # before the model is loaded and the input read
    names = [m.strip() for m in (absent or "").split(",") if m.strip()]
    notes: list[str] = []
    n = predict_file(run_dir, input_path, out, absent=names, checkpoint=checkpoint, device=device, split=split,
                     input_form=input_form, notes=notes)
    for note in notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}", highlight=False, soft_wrap=True)
    console.print(f"{n} predictions written to {out}", highlight=False, soft_wrap=True)


def report_command(
    path: Path = typer.Argument(..., help="A run directory or a sweep directory."),
    out: Path = typer.Option(Path("report.html"), "-o", "--out", help="The HTML file; figures go to <stem>_figures/."),
    metric: Optional[str] = typer.Option(None, help="The metric of charts and tests (default: the recipe's train.select)."),
) -> None:
    """A self-contained HTML report (figures embedded, also written as PNG files)."""
    from mmcore.paths import check_output_file
    from mmcore.report import build_report

    check_output_file(out, "--out")
    written = build_report(path, out, metric)
    console.print(f"report: {written[0]} ({len(written) - 1} figures in {written[0].parent / (written[0].stem + '_figures')})",
                  highlight=False, soft_wrap=True)


def add_commands(app: typer.Typer) -> None:
    """Register the three commands on the core CLI."""
    app.command("eval")(friendly_errors(eval_command))
    app.command("predict")(friendly_errors(predict_command))
    app.command("report")(friendly_errors(report_command))
    app.command("export")(friendly_errors(export_command))


def export_command(
    run_dir: Path = typer.Argument(..., help="A run directory."),
    fmt: str = typer.Option("torchscript", "--format", help="torchscript, or onnx (needs the 'export' extra)."),
    checkpoint: str = typer.Option("best", help="best or last."),
) -> None:
    """One self-contained model file (input transform, encoders, imputer, fusion), checked against predict."""
    from mmcore.after.export import export_run

    record = export_run(run_dir, fmt, checkpoint=checkpoint)
    console.print(f"exported: {Path(run_dir) / 'exports' / record['file']} (max |difference| from predict "
                  f"{record['max_abs_diff']:.2e} on {record['checked_rows']} rows, tolerance {record['tolerance']:g})",
                  highlight=False, soft_wrap=True)
    if record["run_precision"] != "fp32":
        err_console.print(f"[yellow]note:[/] the model file computes in float32; the run evaluates in {record['run_precision']}, "
                          "so `mmcore predict` differs from it by that rounding", highlight=False, soft_wrap=True)
