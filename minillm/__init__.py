"""minillm: a from-scratch, educational LLM pipeline in NumPy (CuPy on a GPU)."""
__version__ = "0.1.0"

from minillm.backend import (  # noqa: E402
    use_device, manual_seed, get_default_dtype, set_default_dtype, default_dtype,
)
