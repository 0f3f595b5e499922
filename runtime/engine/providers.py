"""onnxruntime execution providers: ``auto`` (CUDA when a GPU is usable, else CPU), ``cpu`` or ``cuda``."""

from __future__ import annotations

import threading
from typing import Any

from idm.errors import BundleError, ConfigError

__all__ = ["PROVIDERS", "PendingSession", "make_session", "resolve_providers"]

PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def resolve_providers(choice: str) -> list[str]:
    """Provider list for onnxruntime; ``cuda`` without a CUDA-enabled onnxruntime is an error."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    if choice == "cpu":
        return [PROVIDERS["cpu"]]
    if choice == "cuda":
        if PROVIDERS["cuda"] not in available:
            both = _installed("onnxruntime") and _installed("onnxruntime-gpu")
            raise ConfigError(
                "provider cuda: onnxruntime and onnxruntime-gpu are both installed and the CPU one won; "
                "pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"
                if both
                else "provider cuda: this onnxruntime has no CUDA support: pip uninstall -y onnxruntime && "
                "pip install onnxruntime-gpu"
            )
        return [PROVIDERS["cuda"], PROVIDERS["cpu"]]
    if choice == "auto":
        return [PROVIDERS["cuda"], PROVIDERS["cpu"]] if PROVIDERS["cuda"] in available else [PROVIDERS["cpu"]]
    raise ConfigError(f"unknown provider {choice!r} (use auto, cpu or cuda)")


def _installed(dist: str) -> bool:
    import importlib.metadata as md

    try:
        md.version(dist)
    except md.PackageNotFoundError:
        return False
    return True


def make_session(
    path: str,
    threads: int = 1,
    providers: list[str] | None = None,
    strict: bool = False,
    arena: bool = True,
    spinning: bool = True,
) -> Any:
    """An onnxruntime session with ``threads`` intra-op threads.

    With ``strict``, a session that silently fell back from the first provider (e.g. CUDA listed but no GPU)
    raises :class:`ConfigError`. ``arena=False`` hands the memory of a run back when it ends (for a graph
    run once, such as the synthesizer offline, instead of keeping its peak in the CPU arena).
    ``spinning=False`` lets idle intra-op threads sleep instead of busy-waiting: less CPU burnt for batch work
    on a shared machine, at the cost of a little wake-up latency (keep it on for real-time blocks).
    """
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = max(1, int(threads))
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    so.enable_cpu_mem_arena = arena
    if not spinning:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    want = providers or [PROVIDERS["cpu"]]
    try:
        sess = ort.InferenceSession(path, so, providers=want)
    except Exception as e:  # onnxruntime's errors (Fail, InvalidProtobuf, ...) share no public base
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BundleError(f"{path}: onnxruntime cannot load the graph ({first[:200]})") from None
    if strict and sess.get_providers()[0] != want[0]:
        raise ConfigError(f"provider {want[0]} is not usable here (no GPU visible to onnxruntime?)")
    return sess


class PendingSession:
    """A session being created on a background thread; the first use waits for it (and re-raises its error).

    onnxruntime releases the GIL while it loads and optimises a graph, so a process can create its sessions
    while it goes on importing modules and reading its input. ``run`` and every other session attribute
    (``get_inputs``, ``get_providers``, ...) go to the finished session.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._session: Any = None
        self._error: BaseException | None = None
        # not a daemon: a process that exits early (an error in the caller) waits for it instead of tearing down
        # onnxruntime under a thread still inside it (std::terminate, exit -6)
        self._thread = threading.Thread(target=self._create, args=args, kwargs=kwargs, name="idm-session")
        self._thread.start()

    def _create(self, *args: Any, **kwargs: Any) -> None:
        try:
            self._session = make_session(*args, **kwargs)
        except BaseException as e:  # handed to the thread that uses the session
            self._error = e

    def result(self) -> Any:
        """The session, once created (waits); raises what its creation raised."""
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._session

    def run(self, *args: Any, **kwargs: Any) -> Any:
        return self.result().run(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.result(), name)
