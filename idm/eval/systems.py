"""The systems scored by ``idm eval``: a checkpoint (offline), its streaming bundle, the oracle and the mixture.

Every system turns a rendered clip into an :class:`Estimate`: 9 class stems (masked and synthesized,
project order, the clip's length) and onset times per class.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from idm.audio import resample
from idm.classes import CLASSES
from idm.errors import IDMError
from idm.eval.sets import RenderedClip

__all__ = [
    "PACES",
    "CheckpointSystem",
    "Estimate",
    "MixtureSystem",
    "OracleSystem",
    "StreamSystem",
    "System",
    "make_system",
]

#: How a stream is fed: "live" = as fast as possible, but at the real-time rate while a one-shot bank is
#: being re-synthesized (a new bank lands after as much audio as it would for a live user on this machine);
#: "fast" = always as fast as possible (banks land later in the clip than live).
PACES: tuple[str, ...] = ("live", "fast")


@dataclass
class Estimate:
    """A system's output for one clip; ``None`` = the system does not produce that output (n/a)."""

    masked: np.ndarray | None  # [9, N] float
    synth: np.ndarray | None  # [9, N] float
    onsets: list[np.ndarray]  # per class (project order), seconds from the clip start
    onsets_are_truth: bool = False


class System(Protocol):
    """Anything that estimates stems and onsets for a clip."""

    name: str
    spec: str
    kind: str

    def estimate(self, clip: RenderedClip) -> Estimate: ...

    def close(self) -> None: ...


def _fit(x: np.ndarray, n: int) -> np.ndarray:
    if x.shape[-1] >= n:
        return x[..., :n]
    return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, n - x.shape[-1])])


class MixtureSystem:
    """Lower bound: every stem estimate is the mixture; no onsets."""

    kind = "mixture"

    def __init__(self, name: str) -> None:
        self.name, self.spec = name, "mixture"

    def estimate(self, clip: RenderedClip) -> Estimate:
        mix = np.broadcast_to(clip.mixture, (len(CLASSES), clip.mixture.shape[-1]))
        return Estimate(masked=mix, synth=None, onsets=[np.zeros(0) for _ in CLASSES])

    def close(self) -> None:
        pass


class OracleSystem:
    """Upper bound: alpha-Wiener masks of the mixture computed from the true stems; onsets = the ground truth."""

    kind = "oracle"

    def __init__(self, name: str, alpha: float = 1.0, n_fft: int = 1024, hop: int = 256) -> None:
        self.name, self.spec = name, "oracle"
        self.alpha, self.n_fft, self.hop = alpha, n_fft, hop

    def estimate(self, clip: RenderedClip) -> Estimate:
        import torch

        from idm.model.wiener import wiener_separate

        with torch.inference_mode():
            masked = wiener_separate(
                torch.from_numpy(np.ascontiguousarray(clip.mixture, dtype=np.float32)),
                torch.from_numpy(np.ascontiguousarray(clip.stems, dtype=np.float32)),
                self.alpha,
                self.n_fft,
                self.hop,
            ).numpy()
        return Estimate(masked=masked, synth=None, onsets=[o.copy() for o in clip.onsets], onsets_are_truth=True)

    def close(self) -> None:
        pass


class CheckpointSystem:
    """A project or official checkpoint through the offline :class:`idm.separate.Separator`.

    One analysis and one one-shot bank per clip serve both the masked and the synthesized stems.
    """

    kind = "checkpoint"

    def __init__(
        self, name: str, path: str | Path, *, alpha: float = 1.0, device: str = "cpu", seed: int = 1234
    ) -> None:
        from idm.checkpoint import load_model
        from idm.separate import Separator, SeparatorConfig

        self.name, self.spec = name, str(path)
        model = load_model(path)
        self.masked = Separator(model, SeparatorConfig(mode="masked", alpha=alpha, seed=seed, device=device))
        self.synth = Separator(model, SeparatorConfig(mode="synth", alpha=alpha, seed=seed, device=device))

    def estimate(self, clip: RenderedClip) -> Estimate:
        from idm.peaks import peak_pick

        sep, sr, n = self.masked, clip.sample_rate, clip.mixture.shape[-1]
        x = resample(clip.mixture, sr, sep.sample_rate)
        analysis = sep.analyze(x)
        peaks = peak_pick(analysis.onset_probs, sep.config.peaks or sep.model.config.peaks)
        act = analysis.activations(peaks)
        shots = sep.one_shots(analysis.kit_embedding)
        stems = []
        for s in (self.masked, self.synth):
            st = np.concatenate([c for _, c in s.render(x, analysis, act, shots)], axis=-1)
            stems.append(_fit(resample(st, sep.sample_rate, sr), n))
        onsets = [np.flatnonzero(peaks[k]) / analysis.frame_rate for k in range(len(CLASSES))]
        return Estimate(masked=stems[0], synth=stems[1], onsets=onsets)

    def close(self) -> None:
        pass


class StreamSystem:
    """A streaming bundle (or a checkpoint exported to one) run through :class:`~idm.runtime.engine.StreamProcessor`.

    Each clip is streamed in ``block``-sample blocks through a fresh processor (as a user opening the
    file would), with the running kit embedding and gains (not frozen), once with masked and once with
    synthesized stems; outputs are taken after the processor's latency (``output[latency:]``).
    """

    kind = "stream"

    def __init__(
        self,
        name: str,
        path: str | Path,
        *,
        alpha: float = 1.0,
        threads: int = 1,
        provider: str = "cpu",
        block: int = 256,
        pace: str = "live",
    ) -> None:
        from idm.runtime.engine.bundle import load_bundle

        if pace not in PACES:
            raise IDMError(f"unknown stream pace {pace!r}; expected one of {', '.join(PACES)}")
        if block < 1:
            raise IDMError(f"stream block size must be at least 1, got {block}")
        self.name, self.spec = name, f"stream:{path}"
        self.alpha, self.threads, self.provider, self.block, self.pace = alpha, threads, provider, block, pace
        path = Path(path)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if path.is_file():
            from idm.export.bundle import export_bundle

            self._tmp = tempfile.TemporaryDirectory(prefix="idm-eval-bundle-")
            path = export_bundle(path, Path(self._tmp.name) / "bundle")
        self.bundle = load_bundle(path)
        #: bank re-syntheses that landed during the last clip's runs (masked, synth)
        self.bank_updates: tuple[int, int] = (0, 0)

    def _run(self, x: np.ndarray, stems: str) -> tuple[np.ndarray, list[np.ndarray], int]:
        from idm.runtime.engine.processor import ProcessorConfig, StreamProcessor

        cfg = ProcessorConfig(provider=self.provider, threads=self.threads, stems=stems, alpha=self.alpha)
        with StreamProcessor(self.bundle, cfg) as proc:
            n, lat = x.shape[-1], proc.latency
            out = np.zeros((len(proc.class_names), n + lat), dtype=np.float32)
            events: list[Any] = []
            pacer = _Pacer(proc, self.pace)
            for a in range(0, n, self.block):
                pacer.wait(a)
                res = proc.process(x[a : a + self.block])
                assert res.stems is not None
                out[:, res.start : res.start + res.stems.shape[1]] = res.stems
                events += res.events
            res = proc.flush()
            assert res.stems is not None
            out[:, res.start : res.start + res.stems.shape[1]] = res.stems
            events += res.events
            onsets = [
                np.array([(e.sample - lat) / proc.sample_rate for e in events if e.cls == k])
                for k in range(len(CLASSES))
            ]
            return out[:, lat : lat + n], onsets, proc.bank_updates

    def estimate(self, clip: RenderedClip) -> Estimate:
        sr_model = int(self.bundle.manifest["audio"]["sample_rate"])
        x = np.ascontiguousarray(resample(clip.mixture, clip.sample_rate, sr_model), dtype=np.float32)
        n = clip.mixture.shape[-1]
        masked, onsets, up_m = self._run(x, "masked")
        synth, _, up_s = self._run(x, "synth")
        self.bank_updates = (up_m, up_s)
        fit = [_fit(resample(s, sr_model, clip.sample_rate), n) for s in (masked, synth)]
        return Estimate(masked=fit[0], synth=fit[1], onsets=onsets)

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


class _Pacer:
    """Holds a stream to the real-time rate while the processor's one-shot bank is being re-synthesized."""

    def __init__(self, proc: Any, pace: str) -> None:
        self.proc, self.pace = proc, pace
        self._since: tuple[float, int] | None = None  # (wall clock, input sample) when the refresh began

    def _refreshing(self) -> bool:
        ref = self.proc._refresher  # the processor's bank thread (None when frozen or refresh is off)
        if ref is None:
            return False
        if ref.error is not None:
            raise IDMError(f"one-shot bank synthesis failed in the stream processor: {ref.error}")
        return not np.array_equal(ref.latest()[1], self.proc._requested)

    def wait(self, sample: int) -> None:
        if self.pace == "fast":
            return
        if not self._refreshing():
            self._since = None
            return
        now = time.perf_counter()
        if self._since is None:
            self._since = (now, sample)
            return
        t0, s0 = self._since
        ahead = (sample - s0) / self.proc.sample_rate - (now - t0)
        if ahead > 0:
            time.sleep(ahead)


def make_system(
    name: str, spec: str, *, alpha: float = 1.0, threads: int = 1, device: str = "cpu", pace: str = "live"
) -> System:
    """A system from its spec: ``mixture``, ``oracle``, ``stream:PATH`` (bundle or checkpoint) or a checkpoint."""
    if spec == "mixture":
        return MixtureSystem(name)
    if spec == "oracle":
        return OracleSystem(name, alpha)
    if spec.startswith("stream:"):
        path = Path(spec.removeprefix("stream:"))
        if not path.exists():
            raise IDMError(f"system {name}: {path} not found (stream: takes a bundle folder or a checkpoint)")
        return StreamSystem(name, path, alpha=alpha, threads=threads, provider=device, pace=pace)
    path = Path(spec)
    if not path.is_file():
        raise IDMError(f"system {name}: {spec} is not a checkpoint file, 'stream:PATH', 'oracle' or 'mixture'")
    return CheckpointSystem(name, path, alpha=alpha, device=device)
