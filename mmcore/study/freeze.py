"""Pre-registration: the analysis is fixed at the first run and every later change is on record.

The first ``study run`` writes ``prereg.json`` into the study directory: the study file's
sha256, its ``analysis`` section and the time. A later ``run`` or ``report`` whose analysis
differs is refused (exit 2) unless ``--amend "reason"`` is given; the amendment is appended
with its reason, the time, the previous analysis and the number of finished runs that existed
when it was made (an analysis changed after the results were in is worth less, and a reader
must see that). Changes elsewhere in the file (more seeds, another arm) are not amendments of
the analysis and need no ``--amend``, but they are on record too: the freeze keeps a short hash
of each part of the file (``sections``: ``seeds``, ``budget``, ``arms.<arm>``, ``axes.<axis>``…),
and a ``run`` or ``report`` that finds parts changed appends them to ``changes`` with the time
and the number of finished runs, which study.md lists beside the amendments. (A finished run
whose recipe the change alters is refused before anything runs, by the runner's recipe check.)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any

from mmcore.study.spec import Study, StudyError

PREREG = "prereg.json"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def read_prereg(study_dir: Path) -> dict[str, Any] | None:
    path = study_dir / PREREG
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise StudyError(f"{path}: not valid JSON ({error}); restore it from a backup, never edit it") from None
    if not isinstance(data, dict) or "analysis" not in data:
        raise StudyError(f"{path}: expected the pre-registration written by 'mmcore study run'")
    return data


def _check_json(study: Study) -> None:
    """The analysis must be JSON (the freeze is JSON): a value JSON cannot hold (a YAML date, say)
    is the study file's error, found before the study directory is made."""
    def first_bad(key: str, value: Any) -> tuple[str, Any] | None:
        if isinstance(value, dict):
            return next((bad for k, v in value.items() if (bad := first_bad(f"{key}.{k}", v))), None) \
                if all(isinstance(k, str) for k in value) else (key, value)
        if isinstance(value, list):
            return next((bad for i, v in enumerate(value) if (bad := first_bad(f"{key}[{i}]", v))), None)
        if value is None or isinstance(value, (str, bool, int)) or (isinstance(value, float) and math.isfinite(value)):
            return None
        return key, value

    bad = first_bad("analysis", study.raw.get("analysis"))
    if bad is not None:
        raise StudyError(f"{study.path}: {bad[0]}: {bad[1]!s} ({type(bad[1]).__name__}) cannot be frozen; expected "
                         "plain values (strings, finite numbers, booleans, lists, mappings with string keys)")


def _write(study_dir: Path, data: dict[str, Any], first: bool = False) -> None:
    """``prereg.json`` written aside and moved in whole, so a kill never leaves half of one. The
    aside file is this process's own: two invocations of one study start together (the runs
    share the work), and with one shared name the second move found the file gone.

    ``first``: the first freeze, which never replaces one that a concurrent invocation wrote
    meanwhile (a hard link fails if the name exists; where links are unsupported, a move)."""
    text = json.dumps(data, indent=1, sort_keys=True)
    tmp = study_dir / f".{PREREG}.tmp-{os.getpid()}"
    try:
        tmp.write_text(text, encoding="utf-8")
    except BaseException:
        tmp.unlink(missing_ok=True)  # never a half aside file left behind
        raise
    if not first:
        tmp.replace(study_dir / PREREG)
        return
    try:
        os.link(tmp, study_dir / PREREG)
    except FileExistsError:
        pass  # another invocation froze first; its freeze stands and is checked below
    except OSError:
        tmp.replace(study_dir / PREREG)
        return
    tmp.unlink()


def sections(study: Study) -> dict[str, str]:
    """A short hash of each part of the study file outside the analysis, each arm and axis on
    its own, so that a later change can be named (``seeds``, ``arms.dropout``)."""
    out = {}
    for key, value in study.raw.items():
        if key == "analysis":
            continue
        parts = value.items() if key in ("arms", "axes") and isinstance(value, dict) else [("", value)]
        for name, part in parts:
            text = json.dumps(part, sort_keys=True, default=str)
            out[f"{key}.{name}" if name else key] = hashlib.sha256(text.encode()).hexdigest()[:16]
    return out


def _record_changes(study: Study, data: dict[str, Any], finished_runs: int) -> bool:
    """Append the parts changed since the last record to ``changes``; whether there were any.
    A freeze without ``sections`` (an mmcore before this record) has nothing to compare with."""
    before = data.get("sections")
    if not isinstance(before, dict):
        return False
    now = sections(study)
    changed = sorted(k for k in {*before, *now} if before.get(k) != now.get(k))
    if not changed:
        return False
    data.setdefault("changes", []).append({"at": _now(), "finished_runs": finished_runs, "parts": changed,
                                           "file_sha256": study.file_hash()})
    data["sections"] = now
    return True


def freeze(study: Study, study_dir: Path, amend: str | None, finished_runs: int, create: bool = True) -> dict[str, Any] | None:
    """Check the analysis against the frozen one; write the freeze (first run) or an amendment.

    ``create`` is False for ``report``/``status``: reading never pre-registers a study.
    """
    _check_json(study)  # before anything is made or compared
    current = study.raw.get("analysis")
    data = read_prereg(study_dir)
    if data is None:
        if not create:
            return None
        study_dir.mkdir(parents=True, exist_ok=True)
        first = {"file_sha256": study.file_hash(), "analysis": current, "frozen_at": _now(), "amendments": [],
                 "sections": sections(study), "changes": []}
        _write(study_dir, first, first=True)
        data = read_prereg(study_dir)  # this invocation's freeze, or a concurrent one's that came first
        if data is None:  # removed between the write and this read: nothing sound to check against
            raise StudyError(f"{study_dir / PREREG}: removed while this study was being pre-registered; run it again")
    if json.dumps(data["analysis"], sort_keys=True) == study.analysis_text:
        if _record_changes(study, data, finished_runs):
            _write(study_dir, data)
        return data
    if not amend:
        raise StudyError(
            f"{study.path}: analysis: differs from the one pre-registered at {data.get('frozen_at')} "
            f"({study_dir / PREREG}); expected the frozen analysis, or --amend \"reason\" to record the change"
        )
    data.setdefault("amendments", []).append({
        "reason": amend, "at": _now(), "finished_runs": finished_runs,
        "previous": data["analysis"], "file_sha256": study.file_hash(),
    })
    data["analysis"] = current
    _record_changes(study, data, finished_runs)
    _write(study_dir, data)
    return data
