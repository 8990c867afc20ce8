"""OpenBLAS's kernels: `minillm.fast.enable()` picks the measured faster ones for Zen 4, and only
when it can; `import minillm` alone picks nothing."""
import os
import subprocess
import sys

import pytest

from minillm.fast import blas_kernels

ZEN4 = "processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 25\nmodel\t\t: 17\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n"
ZEN3 = ZEN4.replace(" avx512f avx512bw", "")
ZEN5 = ZEN4.replace("cpu family\t: 25", "cpu family\t: 26")
INTEL = ZEN4.replace("AuthenticAMD", "GenuineIntel").replace(": 25", ": 6")


@pytest.mark.parametrize("cpuinfo, expected", [(ZEN4, "Haswell"), (ZEN3, None), (ZEN5, None), (INTEL, None),
                                               ("", None), ("cpu family\t: unknown\n", None)],
                         ids=["zen4", "zen3-no-avx512", "zen5", "intel", "empty", "garbled"])
def test_preferred_core_only_for_the_measured_cpu(cpuinfo, expected):
    assert blas_kernels.preferred_core(cpuinfo) == expected


def test_the_first_processor_decides():
    assert blas_kernels.preferred_core(ZEN4 + "\n" + INTEL) == "Haswell"


# Prints what minillm chose and what OpenBLAS then loaded.
REPORT = """
import sys
first = sys.argv[1]
if first == "numpy":
    import numpy
import minillm.fast
if first != "import-only":
    minillm.fast.enable()
import numpy
from minillm.fast import blas_kernels
print(blas_kernels.chosen, blas_kernels.loaded_core())
"""


def _report(first: str, **env) -> list[str]:
    base = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    out = subprocess.run([sys.executable, "-c", REPORT, first], env={**base, **env}, capture_output=True,
                         text=True, check=True).stdout.split()
    return out


def _this_cpu():
    try:
        with open("/proc/cpuinfo") as info:
            return blas_kernels.preferred_core(info.read())
    except OSError:
        return None


def test_enable_chooses_before_numpy_loads_and_respects_the_user():
    expected = _this_cpu()
    chosen, loaded = _report("minillm")
    if loaded == "None":
        pytest.skip("NumPy does not use OpenBLAS here")
    assert chosen == str(expected)
    if expected is not None:
        assert loaded == expected, "OpenBLAS runs the kernels minillm chose"
    # NumPy already loaded: too late to choose, so nothing is set
    chosen, loaded_late = _report("numpy")
    assert chosen == "None"
    # the user's own choice wins: the kernels OpenBLAS loads for it with NumPy imported first
    chosen, loaded_user = _report("minillm", OPENBLAS_CORETYPE="Prescott")
    assert chosen == "None" and loaded_user == _report("numpy", OPENBLAS_CORETYPE="Prescott")[1]
    # import alone: nothing is chosen, OpenBLAS keeps its own choice
    assert _report("import-only") == ["None", loaded_late]
    if expected is not None:
        assert loaded_user != expected
