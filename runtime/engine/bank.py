"""One-shot bank: ``synth.onnx`` run once per kit embedding, refreshed on a background thread."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import numpy as np

__all__ = ["BACKGROUND_NICE", "BankRefresher", "BankSynth", "lower_thread_priority"]

#: Nice value of the bank thread: on a loaded core the audio path (nice 0) gets ~98 % of the time it wants.
BACKGROUND_NICE = 19


def lower_thread_priority(nice: int = BACKGROUND_NICE) -> bool:
    """Give the calling thread the scheduling weight of ``nice`` (Linux: nice values are per thread).

    Returns whether it took effect (elsewhere, or without permission, the thread keeps its priority).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
    except OSError:
        return False
    return True


class BankSynth:
    """Synthesizes a bank ``[K, N]`` (project class order) from a kit embedding with the bundle's fixed noise."""

    def __init__(self, session: Any, noise: np.ndarray) -> None:
        self.session = session
        self.noise = np.ascontiguousarray(noise, dtype=np.float32)
        self._inputs: list[str] = []  # read on first use: the session may still be being created

    @property
    def length(self) -> int:
        return int(self.noise.shape[-1])

    def __call__(self, kit_embedding: np.ndarray) -> np.ndarray:
        kit = np.ascontiguousarray(np.asarray(kit_embedding, dtype=np.float32).reshape(1, -1))
        if not self._inputs:
            self._inputs = [i.name for i in self.session.get_inputs()]
        shots, _ = self.session.run(None, {self._inputs[0]: kit, self._inputs[1]: self.noise})
        return np.ascontiguousarray(shots, dtype=np.float32)


class BankRefresher:
    """Background re-synthesis of the bank when the kit embedding moves; the audio path never waits.

    :meth:`request` posts the newest kit embedding (older pending requests are dropped); the worker thread
    synthesizes and publishes ``(version, kit, bank)`` as one tuple, so :meth:`latest` is an atomic read.
    The thread runs at the lowest priority (:func:`lower_thread_priority`), and the synthesis session should
    have one intra-op thread (it then runs in this thread): a refresh never takes a core from the audio path.
    """

    def __init__(self, synth: BankSynth, kit: np.ndarray, bank: np.ndarray) -> None:
        self.synth = synth
        self._latest: tuple[int, np.ndarray, np.ndarray] = (0, np.array(kit, dtype=np.float32), bank)
        self._pending: np.ndarray | None = None
        self._wake = threading.Event()
        self._stop = False
        self.busy = False
        self.error: BaseException | None = None
        self.low_priority = False
        self._thread = threading.Thread(target=self._run, name="idm-bank", daemon=True)
        self._thread.start()

    def latest(self) -> tuple[int, np.ndarray, np.ndarray]:
        """``(version, kit_embedding, bank)`` of the newest finished bank."""
        return self._latest

    @property
    def has_request(self) -> bool:
        """A request is waiting for the thread."""
        return self._pending is not None

    def request(self, kit: np.ndarray) -> None:
        """Ask for a bank for ``kit`` (non-blocking)."""
        self._pending = np.array(kit, dtype=np.float32)
        self._wake.set()

    def _run(self) -> None:
        self.low_priority = lower_thread_priority()
        while True:
            self._wake.wait()
            self._wake.clear()
            if self._stop:
                return
            kit = self._pending
            if kit is None:
                continue
            self._pending = None
            self.busy = True
            try:
                bank = self.synth(kit)
            except BaseException as e:  # reported to the owner; the old bank stays in use
                self.error = e
                bank = None
            finally:
                self.busy = False
            if bank is not None:
                version = self._latest[0] + 1
                self._latest = (version, kit, bank)

    def close(self) -> None:
        """Stop the thread (waits for a synthesis in progress to finish)."""
        self._stop = True
        self._wake.set()
        self._thread.join()
