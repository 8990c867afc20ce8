"""The allocator tuning (part of the speed wing): after `minillm.fast.enable()` big freed blocks
are reused, not handed back to the kernel and re-faulted; `import minillm` alone changes nothing
in the process (environment, allocator)."""
import os
import subprocess
import sys

import pytest

from minillm.fast import allocator

glibc = pytest.mark.skipif(allocator._glibc() is None or not sys.platform.startswith("linux"),
                           reason="allocator tuning is for glibc on Linux only")

# A training step's pattern in miniature: several multi-megabyte arrays live at once, then
# all are freed. Prints whether minillm tuned malloc, and the share of the arrays' pages that
# page-faulted again in each later cycle (each fault is a page the kernel zeroes).
FAULTS = """
import os, pkgutil, importlib, resource, sys
environ = dict(os.environ)
import minillm
import minillm.fast
if sys.argv[1] == "enable":
    minillm.fast.enable()
else:  # every module of the package, imported: none may change the process
    for module in pkgutil.walk_packages(minillm.__path__, "minillm."):
        if not module.name.endswith("__main__"):
            importlib.import_module(module.name)
    assert dict(os.environ) == environ, set(os.environ.items()) ^ set(environ.items())
import numpy
from minillm.fast import allocator
n = 8 * (1 << 20) // 8
def cycle():
    arrays = [numpy.ones(n) for _ in range(4)]
cycle()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(30):
    cycle()
pages = 4 * n * 8 / resource.getpagesize()
print(allocator.tuned, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 30 / pages)
"""


def faulting_share(how: str = "enable", **env) -> tuple[str, float]:
    out = subprocess.run([sys.executable, "-c", FAULTS, how], env={**os.environ, **env}, capture_output=True,
                         text=True, check=True).stdout.split()
    return out[0], float(out[1])


@glibc
def test_enable_tunes_the_allocator_so_big_arrays_reuse_their_pages():
    tuned, share = faulting_share()
    assert tuned == "True" and share < 0.02


@glibc
def test_the_opt_out_keeps_the_system_allocator_which_faults_again():
    tuned, share = faulting_share(MINILLM_MALLOC="system")
    assert tuned == "False" and share > 0.1  # the cost the tuning removes


@glibc
def test_importing_every_module_changes_neither_the_environment_nor_the_allocator():
    """The subprocess asserts os.environ is unchanged after importing all of minillm; the
    allocator is untouched when big arrays still fault as the system allocator's do."""
    tuned, share = faulting_share("import")
    assert tuned == "False" and share > 0.1


@glibc
def test_tuning_twice_is_harmless(monkeypatch):
    """The second call (a second `enable()`, a user's own call) reports the tuning and does
    not reach for malloc again."""
    first = allocator.tune_allocator()
    monkeypatch.setattr(allocator, "_glibc", lambda: pytest.fail("the allocator was tuned a second time"))
    assert allocator.tune_allocator() == first
