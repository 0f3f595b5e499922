"""PortAudio I/O through sounddevice (imported lazily): device lookup, callback streams, xruns, stream clock.

The callbacks keep the audio-thread contract: they copy into or out of preallocated ring buffers,
store a timing anchor in a preallocated array, count xruns from the status flags, and return; they
never allocate buffers, take locks or wait. Processing happens on the session's worker thread.
"""

from __future__ import annotations

import os
import threading
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import numpy as np
from idm.runtime.ring import RingBuffer

from idm.errors import DeviceError

__all__ = [
    "AudioStream",
    "DeviceInfo",
    "StreamClock",
    "StreamSpec",
    "find_device",
    "import_sounddevice",
    "list_devices",
    "reinitialize",
]


def import_sounddevice() -> Any:
    """``import sounddevice`` with one-line errors when the package or the PortAudio library is missing."""
    try:
        import sounddevice as sd
    except ImportError:
        raise DeviceError(
            "audio devices need the 'sounddevice' package: pip install 'inverse-drum-machine[live]'"
        ) from None
    except OSError:
        raise DeviceError(
            "audio devices need the PortAudio library (Debian/Ubuntu: apt install libportaudio2; macOS: brew "
            "install portaudio)"
        ) from None
    return sd


@contextmanager
def quiet_stderr() -> Any:
    """Silence C libraries' chatter on file descriptor 2 (libjack, ALSA) while probing for servers."""
    try:
        saved = os.dup(2)
    except OSError:
        yield
        return
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            try:
                yield
            finally:
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def reinitialize() -> None:
    """Re-initialise PortAudio so that host APIs that appeared since import (a JACK server) are listed.

    Only call it while no stream is open.
    """
    sd = import_sounddevice()
    with quiet_stderr():
        sd._terminate()
        sd._initialize()


@dataclass(frozen=True)
class DeviceInfo:
    """One PortAudio device."""

    index: int
    name: str
    hostapi: str
    max_input_channels: int
    max_output_channels: int
    default_samplerate: float

    def describe(self) -> str:
        return (
            f"{self.index:3d}  {self.name}  [{self.hostapi}]  in {self.max_input_channels}, "
            f"out {self.max_output_channels}, {self.default_samplerate:g} Hz"
        )


def list_devices() -> list[DeviceInfo]:
    """All PortAudio devices with their host API names."""
    sd = import_sounddevice()
    apis = sd.query_hostapis()
    out = []
    for d in sd.query_devices():
        out.append(
            DeviceInfo(
                int(d["index"]),
                str(d["name"]),
                str(apis[d["hostapi"]]["name"]),
                int(d["max_input_channels"]),
                int(d["max_output_channels"]),
                float(d["default_samplerate"]),
            )
        )
    return out


def _default_index(kind: str) -> int | None:
    sd = import_sounddevice()
    try:
        idx = sd.default.device[0 if kind == "input" else 1]
        if idx is None or idx < 0:
            idx = sd.query_devices(kind=kind)["index"]
        return int(idx)
    except (ValueError, TypeError, sd.PortAudioError):
        return None


def find_device(spec: str | int | None, kind: str) -> DeviceInfo:
    """Resolve a device by index, by (case-insensitive) name substring, or the default one.

    A name may also match ``"name [host API]"``, e.g. ``"system jack"`` matches JACK's ``system`` device.

    Raises
    ------
    DeviceError
        No match, several matches, or a device without channels of ``kind`` ("input" or "output").
    """
    devices = list_devices()
    chan = "max_input_channels" if kind == "input" else "max_output_channels"
    usable = [d for d in devices if getattr(d, chan) > 0]
    if spec is None or spec == "":
        idx = _default_index(kind)
        match = [d for d in usable if d.index == idx] or usable[:1]
        if not match:
            raise DeviceError(f"no audio {kind} device found (see idm-live --list-devices)")
        return match[0]
    text = str(spec).strip()
    if text.isdigit():
        found = [d for d in devices if d.index == int(text)]
        if not found:
            raise DeviceError(f"no audio device with index {text} (see idm-live --list-devices)")
        if getattr(found[0], chan) == 0:
            raise DeviceError(f"audio device {text} ({found[0].name}) has no {kind} channels")
        return found[0]
    words = text.lower().split()
    found = [d for d in usable if all(w in f"{d.name} {d.hostapi}".lower() for w in words)]
    exact = [d for d in found if d.name.lower() == text.lower()]
    if len(exact) == 1:
        return exact[0]
    if not found:
        raise DeviceError(f"no audio {kind} device matches {text!r} (see idm-live --list-devices)")
    if len(found) > 1:
        names = "; ".join(f"{d.index}: {d.name} [{d.hostapi}]" for d in found[:6])
        raise DeviceError(f"several audio {kind} devices match {text!r} ({names}); give its index")
    return found[0]


class StreamClock:
    """Maps output sample indices (at the processor's rate) to the stream's clock (PortAudio stream time).

    The audio callback stores anchors, (device frame of the block's first sample, stream time of that
    sample), in a small preallocated ring (no allocation, no lock; the reader only looks at entries the
    writer has finished). A callback that runs late reports a later time for its block, so the reader
    uses the earliest ``frame -> time`` offset among the last :attr:`window` anchors: jitter of the
    callback's start does not move the notes, while lost blocks (the offset grows by a block) are
    followed within the window.

    Parameters
    ----------
    device_rate
        The stream's sample rate.
    sample_rate
        The processor's rate (sample indices given to :meth:`time_of`).
    offset
        Seconds added to every anchor (an output-driven stream anchors at the DAC time plus its delay).
    window
        Anchors considered by :meth:`time_of`.
    """

    _SIZE = 64

    def __init__(self, device_rate: float, sample_rate: int, offset: float = 0.0, window: int = 16) -> None:
        self.device_rate = float(device_rate)
        self.sample_rate = int(sample_rate)
        self.offset = float(offset)
        self.window = min(int(window), self._SIZE // 2)
        self._offsets = np.zeros(self._SIZE, dtype=np.float64)  # stream time of device frame 0, per anchor
        self._count = 0
        self._stream: Any = None
        self._last = (0.0, 0.0)  # (stream time, monotonic time) of the last successful now()

    def store(self, frame: int, t: float) -> None:
        """Callback side: record that device ``frame`` is at stream time ``t``."""
        c = self._count
        self._offsets[c % self._SIZE] = t - frame / self.device_rate
        self._count = c + 1  # publish after the write

    def origin(self) -> float | None:
        """Stream time of device frame 0 (least-delayed recent anchor), or None before the first callback."""
        c = self._count
        if c == 0:
            return None
        n = min(c, self.window)
        idx = np.arange(c - n, c) % self._SIZE
        return float(self._offsets[idx].min())

    def now(self) -> float:
        """Current stream time (seconds); extrapolated on the monotonic clock once the stream has stopped."""
        if self._stream is not None:
            try:
                t = float(self._stream.time)
                if t > 0.0:
                    self._last = (t, time.monotonic())
                    return t
            except Exception:  # noqa: S110 - a stopped or lost stream has no time: extrapolate below
                pass
        t0, m0 = self._last
        return t0 + (time.monotonic() - m0) if m0 else 0.0

    def time_of(self, sample: int) -> float | None:
        """Stream time at which processor-rate ``sample`` is due, or None before the stream runs."""
        o = self.origin()
        return None if o is None else o + self.offset + sample / self.sample_rate


@dataclass
class StreamSpec:
    """What to open: devices (indices), channels, rate, block size and the output delay in frames."""

    input_device: int | None = None
    output_device: int | None = None
    input_channels: int = 1
    output_channels: int = 2
    samplerate: float = 44100.0
    blocksize: int = 256
    ring_seconds: float = 4.0
    output_delay_blocks: int = 2  #: the output reads this many blocks behind the callback's position
    host_api: str = ""  #: PortAudio host API name (for messages: "JACK Audio Connection Kit", ...)


#: Seconds PortAudio's stop/close may take. Once a JACK server has gone, both block for good (and
#: ``Pa_Terminate`` at exit hangs or aborts): such a stream is abandoned instead.
STOP_TIMEOUT = 2.0
#: A started stream whose callbacks have not run for this long has stopped (device or server gone).
STALL_SECONDS = 1.5


class AudioStream:
    """A PortAudio callback stream: input only (mic), output only (paced playback) or both (duplex).

    The input callback copies into :attr:`input_ring`; the output callback reads :attr:`output_ring` at
    ``frames - delay`` (constant delay; silence until the worker has written that far). :attr:`frames`
    counts device frames since the start; :attr:`xruns` counts callbacks whose status reported an input
    overflow/underflow or output underflow/overflow; :attr:`underruns` counts output blocks the worker
    had not produced in time.

    :meth:`failure` (called from a non-audio thread) tells when a started stream has stopped by itself:
    PortAudio reports it inactive (JACK's shutdown callback) or its callbacks stalled. :meth:`stop` and
    :meth:`close` never block for more than :data:`STOP_TIMEOUT`: a lost stream is not stopped at all, and
    one whose stop does not return in time is left alone; :attr:`abandoned` is then True and the process
    should end with ``os._exit`` (PortAudio's own clean-up at exit would block or abort).
    """

    def __init__(self, spec: StreamSpec, sample_rate: int) -> None:
        self.spec = spec
        self.sd = import_sounddevice()
        cap = max(int(spec.ring_seconds * spec.samplerate), 8 * spec.blocksize)
        self.has_input = spec.input_device is not None
        self.has_output = spec.output_device is not None
        if not (self.has_input or self.has_output):
            raise ValueError("an audio stream needs an input or an output device")
        self.input_ring = RingBuffer(cap, spec.input_channels) if self.has_input else None
        self.output_ring = RingBuffer(cap, spec.output_channels) if self.has_output else None
        self.delay = spec.output_delay_blocks * spec.blocksize
        offset = 0.0 if self.has_input else self.delay / spec.samplerate
        self.clock = StreamClock(spec.samplerate, sample_rate, offset)
        self.frames = 0
        self.xruns = 0
        self.underruns = 0
        self._stream: Any = None
        self.lost = False  #: the stream stopped by itself (:meth:`failure` said why)
        self._why: str | None = None
        self.abandoned = False  #: stop/close were skipped or timed out: never touch the stream again
        self._started = False
        self._seen = (0, 0.0)  # (frames, monotonic time) when the frame counter last moved, for stall checks

    # ---- callbacks (audio thread) ---------------------------------------------------------------------

    def _status(self, status: Any) -> None:
        if status and (
            status.input_overflow or status.input_underflow or status.output_underflow or status.output_overflow
        ):
            self.xruns += 1

    def _cb_in(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        self._status(status)
        f = self.frames
        self.clock.store(f, time_info.inputBufferAdcTime)
        self.input_ring.write(indata)  # type: ignore[union-attr]
        self.frames = f + frames

    def _cb_out(self, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        self._status(status)
        f = self.frames
        self.clock.store(f, time_info.outputBufferDacTime)
        ring = self.output_ring
        if not ring.read_at(f - self.delay, outdata) and f >= self.delay and ring.written > 0:  # type: ignore[union-attr]
            self.underruns += 1
        self.frames = f + frames

    def _cb_duplex(self, indata: np.ndarray, outdata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        self._status(status)
        f = self.frames
        self.clock.store(f, time_info.inputBufferAdcTime)
        self.input_ring.write(indata)  # type: ignore[union-attr]
        ring = self.output_ring
        if not ring.read_at(f - self.delay, outdata) and f >= self.delay and ring.written > 0:  # type: ignore[union-attr]
            self.underruns += 1
        self.frames = f + frames

    # ---- life cycle -------------------------------------------------------------------------------------

    def open(self) -> AudioStream:
        """Open the stream (not started yet: callbacks begin with :meth:`start`); its latencies are known after.

        Raises :class:`DeviceError` with PortAudio's reason on failure.
        """
        if self._stream is not None:
            return self
        sd, s = self.sd, self.spec
        kw: dict[str, Any] = {"samplerate": s.samplerate, "blocksize": s.blocksize, "dtype": "float32"}
        try:
            if self.has_input and self.has_output:
                self._stream = sd.Stream(
                    device=(s.input_device, s.output_device),
                    channels=(s.input_channels, s.output_channels),
                    callback=self._cb_duplex,
                    **kw,
                )
            elif self.has_input:
                self._stream = sd.InputStream(
                    device=s.input_device, channels=s.input_channels, callback=self._cb_in, **kw
                )
            else:
                self._stream = sd.OutputStream(
                    device=s.output_device, channels=s.output_channels, callback=self._cb_out, **kw
                )
            self.clock._stream = self._stream
        except sd.PortAudioError as e:
            self.close()
            raise DeviceError(f"cannot open the audio stream: {_pa_message(e)}") from None
        return self

    def start(self) -> None:
        """Open (if needed) and start the stream."""
        self.open()
        try:
            self._stream.start()
        except self.sd.PortAudioError as e:
            self.close()
            raise DeviceError(f"cannot start the audio stream: {_pa_message(e)}") from None
        self._started = True
        self._seen = (self.frames, time.monotonic())

    def failure(self, stall: float = STALL_SECONDS) -> str | None:
        """Why the started stream no longer runs, or None while it does (call it from a non-audio thread).

        A stream is lost when PortAudio reports it inactive (JACK calls its shutdown callback when the
        server goes) or when no callback has run for ``stall`` seconds. Sets :attr:`lost`.
        """
        if not self._started or self._stream is None or self.abandoned:
            return None
        if self.lost:
            return self._why
        now = time.monotonic()
        frames = self.frames
        if frames != self._seen[0]:
            self._seen = (frames, now)
        why = None
        jack = "JACK" in self.spec.host_api
        if not self.active:
            why = "the JACK server stopped" if jack else "the audio device stopped (disconnected?)"
        elif now - self._seen[1] > stall:
            what = "the JACK server stopped responding" if jack else "the audio device stopped delivering audio"
            why = f"{what} (no audio callback for {now - self._seen[1]:.1f} s)"
        if why is not None:
            self.lost = True
            self._why = why
        return why

    def _bounded(self, what: str, timeout: float) -> bool:
        """Call the stream's ``stop``/``close`` in a daemon thread; False (stream abandoned) if it did not return."""
        done = threading.Event()
        call = getattr(self._stream, what)

        def run() -> None:
            try:
                with suppress(self.sd.PortAudioError):
                    call()
            finally:
                done.set()

        threading.Thread(target=run, name=f"idm-portaudio-{what}", daemon=True).start()
        if done.wait(timeout):
            return True
        self.abandoned = True
        self.clock._stream = None
        return False

    @property
    def latency(self) -> tuple[float, float]:
        """PortAudio's (input, output) latency in seconds (0 for a missing side)."""
        if self._stream is None:
            return (0.0, 0.0)
        lat = self._stream.latency
        if isinstance(lat, tuple):
            return (float(lat[0]), float(lat[1]))
        return (float(lat), 0.0) if self.has_input else (0.0, float(lat))

    @property
    def active(self) -> bool:
        return self._stream is not None and bool(self._stream.active)

    def stop(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Stop the callbacks (the rings keep what was captured); False if the stream had to be abandoned.

        A lost stream (:meth:`failure`) is not stopped at all: PortAudio's JACK back end would wait for a
        server that is gone. Otherwise PortAudio gets ``timeout`` seconds.
        """
        if self._stream is None or self.abandoned:
            return not self.abandoned
        if self.lost:
            self.abandoned = True
            self.clock._stream = None
            return False
        return self._bounded("stop", timeout)

    def close(self, timeout: float = STOP_TIMEOUT) -> bool:
        """Close the stream (bounded like :meth:`stop`); False if it is abandoned instead."""
        if self._stream is None:
            return not self.abandoned
        if self.lost or self.abandoned:
            self.abandoned = True
            self.clock._stream = None
            return False
        ok = self._bounded("close", timeout)
        if ok:
            self.clock._stream = None
            self._stream = None
        return ok


def _pa_message(e: Exception) -> str:
    msg = str(e.args[0]) if e.args else str(e)
    if "Invalid sample rate" in msg:
        msg += " (the device or JACK server runs at another rate; pass its rate or let idm-live follow it)"
    return msg.splitlines()[0] if msg else type(e).__name__
