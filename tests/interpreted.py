"""Import a module of Triton kernels through Triton's CPU interpreter, for tests of the fused kernels."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def import_interpreted(name: str) -> ModuleType:
    """Import ``name`` with ``TRITON_INTERPRET=1`` set only meanwhile (Triton decides per kernel, at definition).

    Skips the calling test module when Triton is missing, or when Triton (its own library kernels too) or the
    module was imported earlier in this process without the interpreter: then run the file on its own.
    """
    prev = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        pytest.importorskip("triton")
        importlib.import_module("triton.experimental.gluon")  # imported at the first launch; it asserts the mode
        from triton.language import standard

        module = importlib.import_module(name)
    finally:
        if prev is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = prev
    if not (module.interpreting() and type(standard.zeros_like).__name__ == "InterpretedFunction"):
        pytest.skip("Triton was imported before without TRITON_INTERPRET", allow_module_level=True)
    return module
