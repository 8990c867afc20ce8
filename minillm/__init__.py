"""minillm: a from-scratch, educational LLM pipeline in NumPy (CuPy on a GPU).

The names most lessons need are importable from here: `Tensor`, `no_grad`, `gradcheck`,
the multi-tensor functions (`concatenate`, `stack`, `split`, `where`, `maximum`,
`minimum`), and the backend switches (`use_device`, `manual_seed`, default dtype).

`import minillm` changes nothing in the process: it loads no other module until one of these
names is asked for (PEP 562), and no module changes the environment or the allocator when it
is imported. The speed wing does, when switched on: `minillm.fast.enable()` (the `minillm`
command calls it first thing, before NumPy loads, so it can choose OpenBLAS's kernels).
"""
__version__ = "0.1.0"

_HOMES = {  # name -> the module that defines it
    **dict.fromkeys(["use_device", "manual_seed", "make_rng", "get_default_dtype", "set_default_dtype",
                     "default_dtype", "set_debug_nan", "to_numpy"], "minillm.engine.backend"),
    **dict.fromkeys(["Tensor", "no_grad", "concatenate", "stack", "split", "where", "maximum", "minimum"],
                    "minillm.engine.tensor"),
    **dict.fromkeys(["gradcheck", "GradcheckError"], "minillm.engine.gradcheck"),
}
_PACKAGES = ("errors", "engine", "model", "tokenizers", "data", "io", "phases", "app", "fast")
__all__ = list(_HOMES)


def __getattr__(name: str):
    """Load a top-level name's module (or a package, `minillm.engine`) the first time it is used."""
    import importlib
    if name in _PACKAGES:
        return importlib.import_module(f"minillm.{name}")
    if name not in _HOMES:
        raise AttributeError(f"module 'minillm' has no attribute {name!r}")
    return getattr(importlib.import_module(_HOMES[name]), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOMES])
