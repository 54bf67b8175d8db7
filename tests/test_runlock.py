"""The run-directory lock: a second owner is refused with the first owner's pid; a dead owner keeps nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from mmcore.engine.runlock import RunLockedError, hold_run_lock

pytest.importorskip("fcntl")


def test_second_holder_is_refused_naming_the_owner(tmp_path):
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from mmcore.engine.runlock import hold_run_lock
        with hold_run_lock(Path({str(tmp_path)!r})):
            print("held", flush=True)
            time.sleep(60)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "held"
        with pytest.raises(RunLockedError, match=rf"cannot resume: the run is in use by process {owner.pid}\b"):
            with hold_run_lock(tmp_path, action="resume"):
                pass
    finally:
        owner.kill()
        owner.wait()
    # the kernel released the dead owner's lock: the run can be taken again at once
    with hold_run_lock(tmp_path):
        assert (tmp_path / ".lock").read_text() == str(os.getpid())
    assert (tmp_path / ".lock").read_text() == ""
