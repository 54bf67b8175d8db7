"""mmcore.engine.cpu_isa: inductor's vector-set check, run for the set inductor will use only."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys

import pytest
import torch

from mmcore.engine import cpu_isa
from mmcore.engine.compiling import compiler_settings
from compile_helpers import compiled_or_skip

x86_linux = pytest.mark.skipif(
    sys.platform != "linux" or platform.machine() != "x86_64", reason="the verdict is only given on Linux x86-64"
)


@pytest.fixture(autouse=True)
def fresh_verdict():
    cpu_isa.widest_vector_isa_builds.cache_clear()
    yield
    cpu_isa.widest_vector_isa_builds.cache_clear()


@x86_linux
def test_only_the_widest_set_is_checked(monkeypatch):
    from torch._inductor import cpu_vec_isa

    checked: list[str] = []
    monkeypatch.setattr(cpu_vec_isa.VecISA, "check_build", lambda self, code: checked.append(str(self)) or True)
    if cpu_isa.widest_vector_isa() is None:
        pytest.skip("this CPU reports no x86 vector set inductor knows")
    assert cpu_isa.widest_vector_isa_builds() is True
    assert cpu_isa.widest_vector_isa_builds() is True
    assert checked == [str(cpu_isa.widest_vector_isa())]


@x86_linux
def test_the_widest_set_is_the_one_inductor_picks_after_checking_them_all():
    """Inductor's own list, with its own checks of every set (a few seconds with a cold cache);
    its first entry is what it picks where ``ATEN_CPU_CAPABILITY`` is unset. The list is rebuilt
    here rather than read from the cache an earlier compilation filled under mmcore's verdict."""
    from torch._inductor import cpu_vec_isa

    build_list = getattr(cpu_vec_isa.valid_vec_isa_list, "__wrapped__", cpu_vec_isa.valid_vec_isa_list)
    checked = build_list()
    if not checked:
        pytest.skip("inductor found no vector set that builds here (no working C++ compiler)")
    assert str(cpu_isa.widest_vector_isa()) == str(checked[0])
    assert cpu_isa.widest_vector_isa_builds() is True


@x86_linux
def test_a_failed_check_leaves_the_checks_to_inductor(monkeypatch):
    from torch._inductor import cpu_vec_isa

    monkeypatch.setattr(cpu_vec_isa.VecISA, "check_build", lambda self, code: False)
    if cpu_isa.widest_vector_isa() is None:
        pytest.skip("this CPU reports no x86 vector set inductor knows")
    assert cpu_isa.widest_vector_isa_builds() is None
    assert "cpp.vec_isa_ok" not in compiler_settings(torch.nn.Linear(2, 2))["options"]


@x86_linux
def test_a_passed_check_is_handed_to_inductor(monkeypatch):
    from torch._inductor import cpu_vec_isa

    monkeypatch.setattr(cpu_vec_isa.VecISA, "check_build", lambda self, code: True)
    if cpu_isa.widest_vector_isa() is None:
        pytest.skip("this CPU reports no x86 vector set inductor knows")
    options = compiler_settings(torch.nn.Linear(2, 2))["options"]
    assert options == {"fallback_random": True, "cpp.vec_isa_ok": True}


@pytest.mark.parametrize(
    "choice",
    [
        ("env", "ATEN_CPU_CAPABILITY", "avx2"),
        ("config", "vec_isa_ok", False),
        ("config", "simdlen", 256),
    ],
)
def test_a_users_own_choice_of_vector_set_is_left_alone(monkeypatch, choice):
    from torch._inductor import config, cpu_vec_isa

    def must_not_check(self, code):
        raise AssertionError("checked a set although the user chose one")

    monkeypatch.setattr(cpu_vec_isa.VecISA, "check_build", must_not_check)
    where, name, value = choice
    if where == "env":
        monkeypatch.setenv(name, value)
        chosen = contextlib.nullcontext()
    else:  # inductor's own patch: monkeypatch's undo would delete the setting from its config
        chosen = config.patch({f"cpp.{name}": value})
    with chosen:
        assert cpu_isa.widest_vector_isa() is None
        assert cpu_isa.widest_vector_isa_builds() is None


_COUNT_BASE_CHECKS = """
import json, torch
from torch._inductor import cpu_vec_isa
from mmcore.engine.compiling import compiler_settings

real = cpu_vec_isa.VecISA.check_build
base = []

def recording(self, code):
    if code == cpu_vec_isa.VecISA._avx_code:
        base.append(str(self))
    return real(self, code)

cpu_vec_isa.VecISA.check_build = recording
settings = compiler_settings(torch.nn.Linear(2, 2))
out = torch.compile(lambda x: (x * 2).relu(), dynamic=False, **settings)(torch.arange(-4.0, 4.0))
assert out.tolist() == [0.0] * 5 + [2.0, 4.0, 6.0], out
print(json.dumps(base))
"""


@pytest.mark.slow  # 15 s: an inductor compilation in a child process
@x86_linux
def test_a_compilation_under_mmcores_settings_runs_only_the_one_base_check(tmp_path):
    """The verdict reaches inductor: a real compilation in a fresh process (its caches empty, a
    fresh inductor cache so that kernels are generated) builds and loads inductor's base probe
    for the widest set only, where inductor alone checks every set the CPU reports."""
    if cpu_isa.widest_vector_isa() is None:
        pytest.skip("this CPU reports no x86 vector set inductor knows")
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}

    def compile_in_a_child() -> str:
        done = subprocess.run([sys.executable, "-c", _COUNT_BASE_CHECKS], env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(done.stderr[-2000:])
        return done.stdout

    stdout = compiled_or_skip(compile_in_a_child)
    assert json.loads(stdout.strip().splitlines()[-1]) == [str(cpu_isa.widest_vector_isa())]
