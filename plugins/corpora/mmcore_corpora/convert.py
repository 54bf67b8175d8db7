"""``mmcore convert``: turn a published feature layout into the features format, once.

Reading MMIN's h5 folders means h5py and a pass over thousands of small datasets; reading an
MMSA pickle means unpickling. Converting writes plain safetensors that ``corpora.features``
loads quickly and with no optional dependency, with the preprocessing (audio normalisation,
padding, non-finite replacement, class derivation) already applied and recorded in metadata.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import typer

from mmcore.clitools import friendly_errors
from mmcore.types import Dataset
from mmcore_corpora.features import check_existing, write_features

convert_app = typer.Typer(
    no_args_is_help=True,
    help="Convert MMIN h5 folders or MMSA pickles into the mmcore features format (see docs/datasets.md).",
)

OutOption = typer.Option(..., "--out", help="Folder to write train/val/test.safetensors into.")
ForceOption = typer.Option(False, "--force", help="Replace existing files in --out.")


def _check(source: Path, out: Path, force: bool) -> None:
    """Before minutes of reading: the input is a regular file or folder, the output folder
    writable and without split files unless ``--force``. Nothing is created here: ``--out`` is
    made only when the three splits have been read and checked (``write_features``), so a
    failed conversion leaves no folder behind."""
    from mmcore.paths import check_output_dir, require_input

    if os.path.lexists(source):  # a missing input is reported by the corpus reader, with its layout hint
        require_input(source, "convert")
    check_output_dir(out, "--out")
    check_existing(out, force)


def _write(dataset: Dataset, out: Path, force: bool, source: str, extra: dict[str, str] | None = None) -> None:
    files = write_features(dataset, out, metadata={"source": source, **(extra or {})}, force=force)
    for path in files:
        typer.echo(f"wrote {path}")


def _mmin(corpus: str, root: Path, fold: int, out: Path, max_len: Optional[int], force: bool) -> None:
    from mmcore_corpora.mmin import IEMOCAP, MSPImprov

    cls = IEMOCAP if corpus == "iemocap" else MSPImprov
    _check(root, out, force)
    dataset = cls(str(root), fold=fold, max_len=max_len)
    norm = f"audio normalised with fold {fold} training statistics ({dataset.audio_norm})"
    _write(dataset, out, force, f"{cls.name} root={root} fold={fold}", {"preprocessing": norm})


@convert_app.command("iemocap")
@friendly_errors
def iemocap(
    root: Path = typer.Argument(..., help="The MMIN feature folder (A/, V/, L/, target/)."),
    out: Path = OutOption,
    fold: int = typer.Option(1, help="Cross-validation fold, 1-10."),
    max_len: Optional[int] = typer.Option(None, help="Cut sequences to this many frames."),
    force: bool = ForceOption,
) -> None:
    """IEMOCAP in the MMIN/RedCore h5 layout -> features format."""
    _mmin("iemocap", root, fold, out, max_len, force)


@convert_app.command("msp-improv")
@friendly_errors
def msp_improv(
    root: Path = typer.Argument(..., help="The MMIN feature folder (A/, V/, L/, target/)."),
    out: Path = OutOption,
    fold: int = typer.Option(1, help="Cross-validation fold, 1-12."),
    max_len: Optional[int] = typer.Option(None, help="Cut sequences to this many frames."),
    force: bool = ForceOption,
) -> None:
    """MSP-IMPROV in the MMIN/RedCore h5 layout -> features format."""
    _mmin("msp_improv", root, fold, out, max_len, force)


@convert_app.command("mmsa")
@friendly_errors
def mmsa(
    file: Path = typer.Argument(..., help="An MMSA feature pickle (aligned_50.pkl, unaligned_50.pkl)."),
    out: Path = OutOption,
    task: str = typer.Option("regression", help="regression, binary, 3class, 3class_sign or 7class."),
    force: bool = ForceOption,
) -> None:
    """CMU-MOSI / CMU-MOSEI MMSA pickle -> features format."""
    from mmcore_corpora.mmsa import MMSAPickle

    _check(file, out, force)
    dataset = MMSAPickle(str(file), "aligned_50.pkl", task)  # the file name is used only for a folder
    replaced = dataset.nonfinite_replaced
    typer.echo(f"replaced {replaced} non-finite feature values (inf/NaN) by 0")
    _write(dataset, out, force, f"mmsa file={file} task={task}", {"nonfinite_replaced": str(replaced)})


def add_commands(app: Any) -> None:
    """Attach ``convert`` to the ``mmcore`` typer application."""
    app.add_typer(convert_app, name="convert")
