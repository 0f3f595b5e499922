"""The live session: source -> worker thread -> StreamProcessor -> sinks (MIDI scheduler, files, monitor).

The worker polls its source (the device's input ring, or a file/loop released at the audio clock's
pace, or a file as fast as possible), resamples to the processor's rate, processes and hands the
results to the sinks. The audio callbacks never wait for it; it never waits for them (short sleeps of
a fraction of a block when nothing is there yet).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from idm.runtime.audio_io import AudioStream
from idm.runtime.engine.replace import Replacer
from idm.runtime.monitor import Monitor
from idm.runtime.outputs import MidiRecorder, OutputFolder
from idm.runtime.scheduler import MidiScheduler, MonotonicClock
from idm.runtime.sources import Resampler
from idm.runtime.stems_writer import StemsWriter

from idm.classes import CLASSES
from idm.errors import DeviceError, IDMError

__all__ = ["LiveSession", "LiveStats", "Source"]

#: Python's GIL hand-over interval while a stream runs (default 5 ms is close to a whole audio block).
SWITCH_INTERVAL = 0.0005


class Source(Protocol):
    """What the worker reads: mono float32 blocks at ``sample_rate``."""

    sample_rate: int
    position: int
    frames: int | None
    finished: bool

    def read(self, n: int) -> np.ndarray: ...

    def close(self) -> None: ...


@dataclass
class LiveStats:
    """Counters for the status panel; each field has one writer (the worker unless noted)."""

    processed: int = 0  #: input frames processed (source rate)
    level_db: float = -120.0  #: input peak over the last ~100 ms, dBFS
    load_pct: float = 0.0  #: processing time / audio duration over the last 0.5 s
    load_max_pct: float = 0.0  #: worst block over the last ~2 s
    overruns: int = 0  #: blocks that took longer to process than the audio they hold (a missed deadline when live)
    worst_pct: float = 0.0  #: the worst block of the session, processing time in % of its audio
    hits: list[int] = field(default_factory=lambda: [0] * len(CLASSES))
    last_hit: list[float] = field(default_factory=lambda: [-1e9] * len(CLASSES))  #: monotonic time
    events: int = 0
    started: float = field(default_factory=time.monotonic)
    _loads: deque[tuple[float, float, float]] = field(default_factory=lambda: deque(maxlen=4096))
    _levels: deque[tuple[float, float]] = field(default_factory=lambda: deque(maxlen=4096))

    def block(self, now: float, peak: float, seconds: float, took: float) -> None:
        """Account one processed block: ``seconds`` of audio took ``took`` seconds to process."""
        self._loads.append((now, seconds, took))
        if seconds > 0:
            pct = 100.0 * took / seconds
            self.overruns += pct > 100.0
            self.worst_pct = max(self.worst_pct, pct)
        while self._loads and self._loads[0][0] < now - 2.0:
            self._loads.popleft()
        recent = [(d, t) for w, d, t in self._loads if w >= now - 0.5]
        dur = sum(d for d, _ in recent)
        self.load_pct = 100.0 * sum(t for _, t in recent) / dur if dur > 0 else 0.0
        self.load_max_pct = max(100.0 * t / d for _, d, t in self._loads if d > 0)
        self._levels.append((now, peak))
        while self._levels and self._levels[0][0] < now - 0.1:
            self._levels.popleft()
        p = max(v for _, v in self._levels)
        self.level_db = 20.0 * float(np.log10(max(p, 1e-6)))


class LiveSession:
    """A running session; build it with :func:`idm.runtime.builder.build_session`.

    Life cycle: :meth:`start` (stream, scheduler, worker), then wait for :attr:`done` or call
    :meth:`stop` (Ctrl-C), then :meth:`close`, which flushes and closes everything and returns the
    paths written. Nothing recorded is lost on a stop: the processor is flushed and the files are
    completed and renamed into place.

    Parameters
    ----------
    processor
        A :class:`idm.runtime.engine.processor.StreamProcessor`.
    source
        Where audio comes from.
    chunk
        Frames read per step (the device block for live input, larger for files).
    pacer
        Returns how many source frames may have been consumed by now (paced file or loop); None: no pacing.
    stream
        The audio stream (mic input and/or monitor output), started by :meth:`start`.
    """

    def __init__(
        self,
        processor: Any,
        source: Source,
        chunk: int,
        pacer: Callable[[], int] | None = None,
        stream: AudioStream | None = None,
        scheduler: MidiScheduler | None = None,
        recorder: MidiRecorder | None = None,
        midi_file: Path | None = None,
        stems_writer: StemsWriter | None = None,
        output_folder: OutputFolder | None = None,
        monitor: Monitor | None = None,
        seconds: float | None = None,
        input_quality: str = "VHQ",
        keep_partial: bool = True,
        monotonic_clock: MonotonicClock | None = None,
        latency_samples: int = 0,
        extras: Callable[[Path], list[Path]] | None = None,
        replacer: Replacer | None = None,
        replaced_writer: StemsWriter | None = None,
    ) -> None:
        self.processor = processor
        self.source = source
        self.chunk = int(chunk)
        self.pacer = pacer
        self.stream = stream
        self.scheduler = scheduler
        self.recorder = recorder
        self.midi_file = midi_file
        self.extras = extras  #: writes the optional files beside a MIDI file (``base`` without suffix)
        self.replacer = replacer  #: drum replacement (``--replace``): the replaced mix of each block
        self.replaced_writer = replaced_writer  #: writes the replaced mix (``replaced.wav`` in the stems folder)
        self.stems_writer = stems_writer
        self.output_folder = output_folder
        self.monitor = monitor
        self.max_frames = None if seconds is None else int(seconds * source.sample_rate)
        self.keep_partial = keep_partial
        self.monotonic_clock = monotonic_clock
        self.latency_samples = int(latency_samples)  #: what notes and stems lag the input (processor + scheduling)
        self.model_rate = int(processor.sample_rate)
        self.resampler = Resampler(source.sample_rate, self.model_rate, quality=input_quality)
        self.stats = LiveStats()
        self.realtime = stream is not None or pacer is not None  #: blocks have deadlines (overruns are reported)
        self.done = threading.Event()
        self.error: BaseException | None = None
        self.interrupted = False
        self.end_of_input = False
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._work, name="idm-live-worker", daemon=True)
        block_seconds = self.chunk / source.sample_rate
        self._poll = max(0.0005, block_seconds / 4)
        self._closed = False
        self._switch: float | None = None
        self.written: list[Path] = []
        self.partial: list[Path] = []  #: incomplete results kept under names that say so (file inputs)
        self._lost: DeviceError | None = None

    # ---- life cycle ------------------------------------------------------------------------------------

    def start(self) -> LiveSession:
        if self.stream is not None:
            # the audio callback needs the GIL within a fraction of a block: make the worker yield it sooner
            self._switch = sys.getswitchinterval()
            sys.setswitchinterval(SWITCH_INTERVAL)
        if self.scheduler is not None:
            self.scheduler.start()
        if self.stream is not None:
            self.stream.start()
        if self.monotonic_clock is not None:
            self.monotonic_clock.start()
        self.stats.started = time.monotonic()
        self._worker.start()
        return self

    def stop(self) -> None:
        """Ask the worker to finish (Ctrl-C): it processes what has arrived, flushes the processor and returns."""
        self.interrupted = True
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        return self.done.wait(timeout)

    @property
    def seconds_processed(self) -> float:
        return self.stats.processed / self.source.sample_rate

    # ---- worker -----------------------------------------------------------------------------------------

    def _work(self) -> None:
        try:
            self._loop()
            self._flush()
        except BaseException as e:  # handed to the main thread, which reports it
            self.error = e
        finally:
            self.done.set()

    def _limit(self) -> int:
        """Frames to read now: a whole chunk once released (paced), less only at the end of the input."""
        n = self.chunk
        end = None
        if self.max_frames is not None:
            end = self.max_frames
        if self.source.frames is not None:
            end = self.source.frames if end is None else min(end, self.source.frames)
        if end is not None:
            n = min(n, end - self.source.position)
        if self.pacer is not None and self.pacer() - self.source.position < n:
            return 0  # wait for the clock to release a whole block
        return n

    def _loop(self) -> None:
        src = self.source
        while True:
            if self._stop.is_set():
                self._drain()
                return
            if self.max_frames is not None and src.position >= self.max_frames:
                self.end_of_input = True
                return
            if src.finished:
                self.end_of_input = True
                return
            n = self._limit()
            x = src.read(n) if n > 0 else None
            if x is None or x.size == 0:
                if src.finished:
                    self.end_of_input = True
                    return
                lost = self.stream_lost()
                if lost is not None:  # what the stream captured before is processed, then the processor flushed
                    self.error = lost
                    self._drain()
                    return
                time.sleep(self._poll)
                continue
            self._process(x, last=src.finished)

    def _drain(self) -> None:
        """Stopping: process the input that has already arrived (a mic's ring), nothing more."""
        ring = self.stream.input_ring if self.stream is not None else None
        if ring is None:
            return
        target = ring.written
        while ring.read < target:
            x = self.source.read(self.chunk)
            if x.size == 0:
                break
            self._process(x)

    def stream_lost(self) -> DeviceError | None:
        """The error that ends the session when the stream stopped by itself (device unplugged, JACK server gone).

        Any non-audio thread may ask (the CLI reports it at once; the worker ends the session once it has
        processed what the stream captured before). The same error object is returned every time.
        """
        if self._lost is None:
            st = self.stream
            if st is None or self._stop.is_set():
                return None
            why = st.failure()
            if why is None:
                return None
            self._lost = DeviceError(
                f"{why} after {st.frames / st.spec.samplerate:.1f} s; idm-live stopped (the files keep what was "
                "recorded until then)"
            )
        return self._lost

    def _process(self, x: np.ndarray, last: bool = False) -> None:
        now = time.monotonic()
        peak = float(np.max(np.abs(x))) if x.size else 0.0
        y = self.resampler(x, last=last)
        took = 0.0
        if y.size:
            t0 = time.perf_counter()
            blk = self.processor.process(y)
            took = time.perf_counter() - t0
            self._sink(blk, y)
        self.stats.processed += x.size
        self.stats.block(now, peak, x.size / self.source.sample_rate, took)

    def _flush(self) -> None:
        tail = self.resampler(np.zeros(0, np.float32), last=True)
        if tail.size:
            self._sink(self.processor.process(tail), tail)
        if self.stats.processed == 0 and not tail.size:
            return  # stopped before any audio arrived: nothing to flush
        blk = self.processor.flush()
        self._sink(blk, np.zeros(0 if blk.stems is None else blk.stems.shape[-1], np.float32))
        if self.monitor is not None:
            self.monitor.finish()

    def _sink(self, blk: Any, x: np.ndarray) -> None:
        if blk.events:
            now = time.monotonic()
            for e in blk.events:
                self.stats.hits[e.cls] += 1
                self.stats.last_hit[e.cls] = now
            self.stats.events += len(blk.events)
            if self.scheduler is not None:
                self.scheduler.push(blk.events)
            if self.recorder is not None:
                self.recorder.add(blk.events)
        limit = None
        if self.source.frames is not None and self.max_frames is None:
            limit = self.source.frames
        if self.stems_writer is not None and blk.stems is not None:
            self.stems_writer.write(blk.start, blk.stems, limit)
        n = blk.stems.shape[-1] if blk.stems is not None else x.size
        xin = x if x.size == n else np.zeros(n, np.float32)
        replaced = None
        if self.replacer is not None:
            replaced = self._replace(blk, xin)
            if self.replaced_writer is not None:
                self.replaced_writer.write(blk.start, replaced[None], limit)
        if self.monitor is not None:
            self.monitor.write(blk.stems, xin, replaced)

    def _replace(self, blk: Any, x: np.ndarray) -> np.ndarray:
        """The replaced mix of one processed block (in pieces of the replacer's largest block when longer)."""
        r = self.replacer
        assert r is not None
        n = x.size
        if n <= r.max_block:
            return r.process(blk.start, blk.events, blk.stems, x).mix
        parts = []
        for a in range(0, n, r.max_block):
            b = min(n, a + r.max_block)
            ev = [e for e in blk.events if blk.start + a <= e.sample < blk.start + b]
            st = None if blk.stems is None else blk.stems[:, a:b]
            parts.append(r.process(blk.start + a, ev, st, x[a:b]).mix.copy())
        return np.concatenate(parts)

    # ---- close --------------------------------------------------------------------------------------------

    @property
    def complete(self) -> bool:
        """Whether the outputs are a complete result: a live input (mic, demo) is complete up to where it stopped
        (Ctrl-C, an error); a file only when it was processed to its end (or to ``--seconds``) without error."""
        if self.keep_partial:
            return True
        return self.end_of_input and self.error is None and not self.interrupted

    def close(self) -> list[Path]:
        """Flush and close everything (idempotent); returns the files/folders written.

        MIDI notes still due are sent at their time after the end of input (they are dropped on an
        interrupt, with their note-offs sent at once). Files are completed even after an interrupt or an
        error (an audio server that went away included). A file input that was not processed to its end
        is not presented as complete: its folder is kept as ``<name>.partial/`` with a ``PARTIAL.txt`` note
        and its MIDI file as ``<name>.partial.mid`` (:attr:`partial` lists them).
        """
        if self._closed:
            return self.written
        self._closed = True
        if not self.done.is_set():
            self._stop.set()
            self.done.wait()
        complete = self.complete
        kept = False
        try:
            if self.scheduler is not None:
                self.scheduler.stop(drain=self.end_of_input and not self.interrupted and self.error is None)
            if self.stream is not None:
                if self.stream.has_output and self.end_of_input and not self.interrupted:
                    self._play_out()
                # bounded: after a lost JACK server PortAudio's stop/close never return (the stream is abandoned)
                if self.stream.stop():
                    self.stream.close()
            length = self.source.position
            if self.stems_writer is not None:
                self.stems_writer.close(length)
            if self.replaced_writer is not None:
                self.replaced_writer.close(length)
            if not complete and self.stats.processed == 0:  # stopped before any audio: nothing to keep
                if self.output_folder is not None:
                    self.output_folder.discard()
                kept = True
                return self.written
            if self.recorder is not None:
                if self.midi_file is not None:
                    if complete:
                        self.written.append(self.recorder.write(self.midi_file))
                        if self.extras is not None:
                            self.written += self.extras(self.midi_file.with_suffix(""))
                    else:
                        part = self.recorder.write(_free_name(self.midi_file))
                        self.partial.append(part)
                        if self.extras is not None:
                            self.partial += self.extras(part.with_suffix(""))
                if self.output_folder is not None:
                    midi = self.recorder.write(self.output_folder.path / f"{self.output_folder.target.name}.mid")
                    if self.extras is not None:
                        self.extras(midi.with_suffix(""))
            if self.output_folder is not None:
                if complete:
                    self.written.append(self.output_folder.commit())
                else:
                    self.partial.append(self.output_folder.keep_partial(self.partial_note()))
            kept = True
        finally:
            if self.output_folder is not None and not kept and self.output_folder.path.exists():
                with contextlib.suppress(IDMError):  # whatever went wrong above, keep what was written
                    self.partial.append(self.output_folder.keep_partial(self.partial_note()))
            close_port = getattr(self.scheduler.port, "close", None) if self.scheduler is not None else None
            if close_port is not None:
                close_port()
            self.source.close()
            close = getattr(self.processor, "close", None)
            if close is not None:
                close()
            if self._switch is not None:
                sys.setswitchinterval(self._switch)
        return self.written

    def stopped_at(self) -> str:
        """Where the input stopped, e.g. ``12.3 s of 30.0 s``."""
        done = f"{self.seconds_processed:.1f} s"
        if self.source.frames:
            done += f" of {self.source.frames / self.source.sample_rate:.1f} s"
        return done

    def partial_note(self) -> str:
        """The text of ``PARTIAL.txt``: why the run stopped and how far it got."""
        why = "interrupted (Ctrl-C or SIGTERM)" if self.interrupted else f"stopped by an error: {self.error}"
        name = getattr(self.source, "path", None)
        return (
            f"INCOMPLETE: idm-live {why}.\n"
            f"Input {name if name is not None else '?'}: processed {self.stopped_at()}; the files here cover only "
            "that part.\nRun again to get the complete result.\n"
        )

    def _play_out(self) -> None:
        """End of a paced input: let the output stream play what the monitor still holds."""
        st = self.stream
        assert st is not None and st.output_ring is not None
        deadline = time.monotonic() + 2.0 + self.latency_samples / self.model_rate
        while st.frames - st.delay < st.output_ring.written and time.monotonic() < deadline:
            time.sleep(0.01)


def _free_name(path: Path) -> Path:
    """``take.partial.mid`` beside ``take.mid`` (``take.partial-2.mid``... if taken): never replaces a file."""
    for i in range(1, 1000):
        cand = path.with_name(f"{path.stem}.partial{'' if i == 1 else f'-{i}'}{path.suffix}")
        if not cand.exists():
            return cand
    return path.with_name(f"{path.stem}.partial-{time.time_ns()}{path.suffix}")
