"""Count the numpy array allocations a piece of code makes, exactly (a test helper).

:mod:`tracemalloc` sees numpy's data buffers (domain ``np.lib.tracemalloc_domain``) only while they are alive,
so a temporary freed before the call returns never shows in a snapshot, and the peak of traced memory mixes
it with Python objects. This helper installs, for the calling thread's context only, a numpy memory handler
(NEP 49, ``PyDataMem_SetHandler``) whose ``malloc``/``calloc``/``realloc`` count each call and forward to
numpy's default handler; ``free`` is the default handler's own C function, so arrays allocated under it can be
freed at any time later, with or without this module. Other threads (and contexts) keep the default handler.

>>> with count_numpy_allocations() as allocs:
...     y = x + 1
>>> allocs  # [("malloc", nbytes)]
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

__all__ = ["count_numpy_allocations"]

_MALLOC = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_CALLOC = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t)
_REALLOC = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_FREE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)


class _Allocator(ctypes.Structure):  # PyDataMemAllocator (numpy/ndarraytypes.h)
    _fields_ = [("ctx", ctypes.c_void_p), ("malloc", _MALLOC), ("calloc", _CALLOC), ("realloc", _REALLOC),
                ("free", _FREE)]  # fmt: skip


class _Handler(ctypes.Structure):  # PyDataMem_Handler, version 1
    _fields_ = [("name", ctypes.c_char * 127), ("version", ctypes.c_uint8), ("allocator", _Allocator)]


_SET_HANDLER, _GET_HANDLER = 304, 305  # PyDataMem_Set/GetHandler in numpy's C-API table (__multiarray_api.h)
_CAPSULE_NAME = b"mem_handler"

_api = ctypes.pythonapi
_api.PyCapsule_New.restype = ctypes.py_object
_api.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
_api.PyCapsule_GetPointer.restype = ctypes.c_void_p
_api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]

_log: list[tuple[str, int]] = []
_lock = threading.Lock()
_state: dict[str, object] = {}


def _install() -> tuple[object, object]:
    """The counting handler capsule and the set-handler function (built once, kept for the process)."""
    if _state:
        return _state["capsule"], _state["set"]
    table = ctypes.cast(
        _api.PyCapsule_GetPointer(np._core._multiarray_umath._ARRAY_API, None), ctypes.POINTER(ctypes.c_void_p)
    )
    set_handler = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.py_object)(table[_SET_HANDLER])
    default = ctypes.PYFUNCTYPE(ctypes.py_object)(table[_GET_HANDLER])()  # the handler in place (numpy's)
    base = ctypes.cast(_api.PyCapsule_GetPointer(default, _CAPSULE_NAME), ctypes.POINTER(_Handler)).contents
    alloc = base.allocator

    def c_malloc(ctx: int, size: int) -> int:
        _log.append(("malloc", size))
        return alloc.malloc(ctx, size)

    def c_calloc(ctx: int, n: int, size: int) -> int:
        _log.append(("calloc", n * size))
        return alloc.calloc(ctx, n, size)

    def c_realloc(ctx: int, ptr: int, size: int) -> int:
        _log.append(("realloc", size))
        return alloc.realloc(ctx, ptr, size)

    # the handler and its name live in malloc'd memory that is never freed: arrays allocated under the handler
    # point at it for as long as they live (the callbacks are kept in _state, never collected)
    callbacks = (_MALLOC(c_malloc), _CALLOC(c_calloc), _REALLOC(c_realloc))
    handler = _Handler(b"idm-test-counting", 1, _Allocator(alloc.ctx, *callbacks, alloc.free))
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    mem = libc.malloc(ctypes.sizeof(_Handler) + len(_CAPSULE_NAME) + 1)
    ctypes.memmove(mem, ctypes.addressof(handler), ctypes.sizeof(_Handler))
    name = mem + ctypes.sizeof(_Handler)
    ctypes.memmove(name, _CAPSULE_NAME + b"\0", len(_CAPSULE_NAME) + 1)
    capsule = _api.PyCapsule_New(mem, name, None)
    _state.update(capsule=capsule, set=set_handler, callbacks=callbacks, base=default)
    return capsule, set_handler


@contextmanager
def count_numpy_allocations() -> Iterator[list[tuple[str, int]]]:
    """Within the block, every numpy data allocation of this thread is logged as ``(kind, nbytes)``."""
    capsule, set_handler = _install()
    with _lock:
        _log.clear()
        old = set_handler(capsule)  # type: ignore[operator]
        try:
            yield _log
        finally:
            set_handler(old)  # type: ignore[operator]
