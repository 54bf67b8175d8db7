"""bf16 on a CPU caps oneDNN's primitive cache (``mmcore.engine.runtime.bound_onednn_cache``):
the cap is set for a CPU bf16 runtime only, and a user's own value is never replaced."""

from __future__ import annotations

import os

import pytest

from mmcore.engine.runtime import ONEDNN_CACHE_CAPACITY, ONEDNN_CACHE_VARIABLE, Runtime


@pytest.fixture
def no_cap(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv(ONEDNN_CACHE_VARIABLE, "")  # records the variable's state, restored after the test
    monkeypatch.delenv(ONEDNN_CACHE_VARIABLE)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    return monkeypatch


def test_cpu_bf16_caps_the_primitive_cache(no_cap: pytest.MonkeyPatch) -> None:
    runtime = Runtime.create("cpu", "bf16")
    assert runtime.precision == "bf16" and runtime.device.type == "cpu"
    assert os.environ[ONEDNN_CACHE_VARIABLE] == str(ONEDNN_CACHE_CAPACITY) == "64"


def test_fp32_leaves_the_cache_alone(no_cap: pytest.MonkeyPatch) -> None:
    Runtime.create("cpu", "fp32")
    assert ONEDNN_CACHE_VARIABLE not in os.environ


def test_a_users_cap_is_kept(no_cap: pytest.MonkeyPatch) -> None:
    no_cap.setenv(ONEDNN_CACHE_VARIABLE, "512")
    Runtime.create("cpu", "bf16")
    assert os.environ[ONEDNN_CACHE_VARIABLE] == "512"
