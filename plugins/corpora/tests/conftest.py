"""Fixtures of the corpora plugin's tests; the file writers live in corpora_testdata.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest

from corpora_testdata import write_mmin


@pytest.fixture
def mmin_layout(tmp_path) -> Callable[..., tuple[Path, dict[str, Any]]]:
    pytest.importorskip("h5py")

    def make(corpus: str = "iemocap", folds: tuple[int, ...] = (1,)) -> tuple[Path, dict[str, Any]]:
        root = tmp_path / corpus
        root.mkdir()
        return root, write_mmin(root, corpus, folds)

    return make
