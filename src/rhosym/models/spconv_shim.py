"""Make spconv 2.x usable on a CPU (a CPU-only torch build, or a machine without a GPU).

spconv gets the CUDA stream through ``spconv.pytorch.cppcore.get_current_stream``, which calls
``torch.cuda.current_stream()``. Most forward paths guard the call with ``if features.is_cuda``, but
several do not (``ops.indice_conv_backward``, ``ops.implicit_gemm``/``implicit_gemm_backward``,
``ops.get_indice_pairs_implicit_gemm``, the implicit-gemm pooling ops, ``ops.maximum_value_int_`` on a
CUDA build, the point-to-voxel hash in ``hash.py`` and ``utils.py``): on a machine without CUDA the
backward pass of a sparse convolution raises "Torch not compiled with CUDA enabled". The modules import
the function by name, so it must be replaced in every module that holds a reference to it.

:func:`apply` replaces it, in each of those modules, by a function that returns stream 0 (the default
stream, which spconv's CPU kernels ignore) when CUDA is unavailable and calls the original otherwise.
It is idempotent and is called when :mod:`rhosym.models.sparse_cnn` is imported.
"""

from __future__ import annotations

import importlib
import sys

# Modules of spconv that bind ``get_current_stream`` at import (grep of spconv 2.3.8).
MODULES = (
    "spconv.pytorch.cppcore",
    "spconv.pytorch.ops",
    "spconv.pytorch.hash",
    "spconv.pytorch.utils",
    "spconv.pytorch.quantization.core",
    "spconv.pytorch.quantization.quantized.conv",
    "spconv.pytorch.quantization.intrinsic.quantized.conv_relu",
)

_ORIGINAL = None


def _safe_get_current_stream():
    import torch

    if not torch.cuda.is_available():
        return 0
    return _ORIGINAL()


def apply(import_missing: bool = True) -> list[str]:
    """Patch ``get_current_stream`` in spconv's modules; returns the names of the modules patched.

    ``import_missing`` imports the core modules (cppcore, ops, hash, utils) first so that they are
    patched before use; the quantization modules are patched only when already imported (importing them
    pulls in torch.ao) and, being imported later, pick the patched function up from ``cppcore``.
    """
    global _ORIGINAL
    cppcore = importlib.import_module("spconv.pytorch.cppcore")
    if _ORIGINAL is None:
        current = cppcore.get_current_stream
        _ORIGINAL = getattr(current, "__wrapped__", current)
    _safe_get_current_stream.__wrapped__ = _ORIGINAL  # type: ignore[attr-defined]
    patched = []
    for name in MODULES:
        mod = sys.modules.get(name)
        if mod is None and import_missing and "quantization" not in name:
            try:
                mod = importlib.import_module(name)
            except ImportError:  # pragma: no cover - absent in some spconv builds
                mod = None
        if mod is None or not hasattr(mod, "get_current_stream"):
            continue
        mod.get_current_stream = _safe_get_current_stream
        patched.append(name)
    return patched


def is_applied() -> bool:
    """True when spconv's ops module uses the patched function."""
    ops = sys.modules.get("spconv.pytorch.ops")
    return ops is not None and ops.get_current_stream is _safe_get_current_stream
