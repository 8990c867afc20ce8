"""minillm: a from-scratch, educational LLM pipeline in NumPy (CuPy on a GPU).

The names most lessons need are importable from here: `Tensor`, `no_grad`, `gradcheck`,
the multi-tensor functions (`concatenate`, `stack`, `split`, `where`, `maximum`,
`minimum`), and the backend switches (`use_device`, `manual_seed`, default dtype).
Importing it tunes glibc's malloc for NumPy's big temporaries (`minillm.fast.allocator`) and,
before NumPy loads, picks OpenBLAS's faster kernels on CPUs where that was measured
(`minillm.fast.blas_kernels`).
"""
__version__ = "0.1.0"

from minillm.fast.blas_kernels import choose_kernels  # noqa: E402

choose_kernels()  # before anything imports NumPy: OpenBLAS reads the choice once, as it loads

from minillm.fast.allocator import tune_allocator  # noqa: E402

tune_allocator()  # before the first big array: see fast/allocator.py for why

from minillm.engine.backend import (  # noqa: E402
    use_device,
    manual_seed,
    make_rng,
    get_default_dtype,
    set_default_dtype,
    default_dtype,
    set_debug_nan,
    to_numpy,
)
from minillm.engine.tensor import (  # noqa: E402
    Tensor,
    no_grad,
    concatenate,
    stack,
    split,
    where,
    maximum,
    minimum,
)
from minillm.engine.gradcheck import gradcheck, GradcheckError  # noqa: E402

__all__ = [
    "Tensor", "no_grad", "gradcheck", "GradcheckError", "concatenate", "stack", "split",
    "where", "maximum", "minimum", "use_device", "manual_seed", "make_rng",
    "get_default_dtype", "set_default_dtype", "default_dtype", "set_debug_nan", "to_numpy",
]
