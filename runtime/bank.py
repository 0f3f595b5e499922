"""One-shot bank: ``synth.onnx`` run once per kit embedding, refreshed on a background thread."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

__all__ = ["BankRefresher", "BankSynth"]


class BankSynth:
    """Synthesizes a bank ``[K, N]`` (project class order) from a kit embedding with the bundle's fixed noise."""

    def __init__(self, session: Any, noise: np.ndarray) -> None:
        self.session = session
        self.noise = np.ascontiguousarray(noise, dtype=np.float32)
        self._inputs = [i.name for i in session.get_inputs()]

    @property
    def length(self) -> int:
        return int(self.noise.shape[-1])

    def __call__(self, kit_embedding: np.ndarray) -> np.ndarray:
        kit = np.ascontiguousarray(np.asarray(kit_embedding, dtype=np.float32).reshape(1, -1))
        shots, _ = self.session.run(None, {self._inputs[0]: kit, self._inputs[1]: self.noise})
        return np.ascontiguousarray(shots, dtype=np.float32)


class BankRefresher:
    """Background re-synthesis of the bank when the kit embedding moves; the audio path never waits.

    :meth:`request` posts the newest kit embedding (older pending requests are dropped); the worker thread
    synthesizes and publishes ``(version, kit, bank)`` as one tuple, so :meth:`latest` is an atomic read.
    """

    def __init__(self, synth: BankSynth, kit: np.ndarray, bank: np.ndarray) -> None:
        self.synth = synth
        self._latest: tuple[int, np.ndarray, np.ndarray] = (0, np.array(kit, dtype=np.float32), bank)
        self._pending: np.ndarray | None = None
        self._wake = threading.Event()
        self._stop = False
        self.busy = False
        self.error: BaseException | None = None
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
