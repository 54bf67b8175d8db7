"""Inductor's check of the CPU's vector instructions, done for the one set it will use.

Why: before its first CPU kernel, inductor (torch 2.13, ``torch._inductor.cpu_vec_isa``) checks
every vector instruction set the CPU reports, on the benchmark box AVX-512 with VNNI, AVX-512 and
AVX2, by compiling a test file with each set's flags and loading the library in a child Python;
then it uses only the first, the widest. That took 6.7 s with a cold inductor cache and 1.0 s with
a warm one (the IEMOCAP benchmark box, 2 cores; ``benchmarks/README.md``, issue 25's twelfth
session), more than a quarter of a compiled run's cold first step. Checking the widest set alone,
with inductor's own check, and passing the verdict as inductor's ``cpp.vec_isa_ok`` setting (the
one ``TORCHINDUCTOR_VEC_ISA_OK`` sets) gives the same kernels for the price of one base check.

The verdict is only given where it is exact: a true verdict, on Linux x86-64, with no
``ATEN_CPU_CAPABILITY`` or ``cpp.simdlen`` choosing another set and ``TORCHINDUCTOR_VEC_ISA_OK``
unset. Everywhere else, and on a failed check (inductor then falls back to a narrower set after
checking it), inductor checks as it always does. The checks inductor runs on top of a set's base
check (VNNI, AVX-512 BF16, AMX) are not governed by the setting and still run; where AMX's fails,
inductor takes the next set, AVX-512 with VNNI, whose flags are a subset of those the passed base
check built with. The module reads inductor internals that may move between torch versions;
where they are missing it gives no verdict.
"""

from __future__ import annotations

import functools
import os
import platform
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torch._inductor.cpu_vec_isa import VecISA


@functools.cache
def widest_vector_isa_builds() -> bool | None:
    """True where inductor's check of the widest vector set this CPU reports passes; None where
    inductor should check for itself (see the module docstring). Checked once per process."""
    isa = widest_vector_isa()
    if isa is None:
        return None
    try:
        from torch._inductor.cpu_vec_isa import VecISA

        return True if isa.check_build(VecISA._avx_code) else None
    except (ImportError, AttributeError):
        return None


def widest_vector_isa() -> VecISA | None:
    """The vector set inductor would use on this CPU (the first of its list that the CPU reports),
    without checking that it builds; None where this module gives no verdict."""
    if sys.platform != "linux" or platform.machine() != "x86_64" or os.environ.get("ATEN_CPU_CAPABILITY"):
        return None
    try:
        from torch._inductor import config
        from torch._inductor import cpu_vec_isa

        if config.cpp.vec_isa_ok is not None or config.cpp.simdlen is not None:
            return None
        reported = cpu_vec_isa.x86_isa_checker()
        return next(
            (
                isa
                for isa in cpu_vec_isa.supported_vec_isa_list
                if isinstance(isa, cpu_vec_isa.VecISA) and all(flag in reported for flag in str(isa).split())
            ),
            None,
        )
    except (ImportError, AttributeError):
        return None
