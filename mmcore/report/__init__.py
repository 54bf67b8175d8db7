"""``mmcore report RUN|SWEEP -o report.html``: one self-contained HTML page plus its PNG figures.

The page embeds every figure (no network access, opens from disk); the same figures are written
as PNG files in ``<stem>_figures/`` beside it. Needs matplotlib, the optional extra ``report``.
"""

from __future__ import annotations

from pathlib import Path

from mmcore.errors import MMCoreError
from mmcore.report.figures import pyplot
from mmcore.report.sources import is_run, is_sweep

__all__ = ["build_report"]


def build_report(path: Path, out: Path, metric: str | None = None) -> list[Path]:
    """Write the report of a run or a sweep directory; returns the files written (page first)."""
    path = Path(path)
    if not path.is_dir():
        raise MMCoreError(f"{path}: no such directory; expected a run directory or a sweep directory")
    if out.suffix.lower() not in (".html", ".htm"):
        raise MMCoreError(f"-o {out}: expected an .html file name")
    pyplot()  # the one-line "install the extra" error before reading anything
    if is_sweep(path):
        from mmcore.report.sweep import sweep_document

        doc = sweep_document(path, metric)
    elif is_run(path):
        from mmcore.report.run import run_document

        doc = run_document(path, metric)
    else:
        raise MMCoreError(
            f"{path}: neither a run directory (recipe.yaml with eval.json or metrics.jsonl) nor a sweep directory (sweep.json)"
        )
    return doc.write(Path(out))
