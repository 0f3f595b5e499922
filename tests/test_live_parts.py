"""idm-live building blocks: ring buffers, the MIDI scheduler's timing, monitor routing, stems alignment, defaults."""

from __future__ import annotations

import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np
import pytest
import soundfile as sf

from idm.errors import BundleError, IDMError


def test_runtime_modules_import_without_torch():
    mods = (
        "audio_io builder cli defaults live midi_out monitor outputs prepass ring scheduler sources status stems_writer"
    )
    code = (
        "import sys; sys.modules['torch'] = None\n"
        + "".join(f"import idm.runtime.{m}\n" for m in mods.split())
        + "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
        + "assert 'sounddevice' not in sys.modules and 'rtmidi' not in sys.modules, 'device libraries load lazily'\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr


# ---- ring buffer ----------------------------------------------------------------------------------------------


def test_ring_wraps_and_keeps_order(rng):
    from idm.runtime.ring import RingBuffer

    ring = RingBuffer(100, 2)
    data = rng.standard_normal((1000, 2)).astype(np.float32)
    out = np.zeros((1000, 2), np.float32)
    buf = np.zeros((37, 2), np.float32)
    w = r = 0
    while r < 1000:
        n = int(rng.integers(1, 40))
        if w < 1000 and ring.free() >= min(n, 1000 - w):
            assert ring.write(data[w : w + n])
            w += min(n, 1000 - w)
        got = ring.read_into(buf[: int(rng.integers(1, 38))])
        out[r : r + got] = buf[:got]
        r += got
    np.testing.assert_array_equal(out, data)
    assert ring.drops == 0


def test_ring_drop_becomes_a_gap_of_silence():
    from idm.runtime.ring import RingBuffer

    ring = RingBuffer(8, 1)
    assert ring.write(np.ones((6, 1), np.float32))
    assert not ring.write(2 * np.ones((4, 1), np.float32))  # does not fit: dropped whole
    assert ring.drops == 1 and ring.dropped_frames == 4
    buf = np.zeros((8, 1), np.float32)
    assert ring.pending_gap() == 0
    assert ring.read_into(buf) == 6  # stops at the gap
    assert ring.pending_gap() == 4  # the reader inserts 4 frames of silence here
    assert ring.write(3 * np.ones((2, 1), np.float32))
    assert ring.read_into(buf) == 2 and np.all(buf[:2] == 3)


def test_ring_read_at_follows_the_readers_clock():
    from idm.runtime.ring import RingBuffer

    ring = RingBuffer(16, 1)
    out = np.full((4, 1), 9.0, np.float32)
    assert not ring.read_at(0, out) and np.all(out == 0)  # nothing written yet: silence
    ring.write(np.arange(10, dtype=np.float32)[:, None])
    assert ring.read_at(4, out) and out[:, 0].tolist() == [4, 5, 6, 7]
    assert not ring.read_at(8, out) and np.all(out == 0)  # not all written yet
    assert not ring.read_at(-4, out)


# ---- scheduler ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ev:
    cls: int
    note: int
    velocity: int
    sample: int


class Recorder:
    def __init__(self) -> None:
        self.got: list[tuple[float, tuple[int, ...]]] = []

    def send(self, message):
        self.got.append((time.monotonic(), tuple(message)))


def test_scheduler_sends_at_sample_time_with_constant_delay():
    from idm.runtime.scheduler import MidiScheduler, MonotonicClock

    sr = 1000
    clock = MonotonicClock(sr)
    port = Recorder()
    sched = MidiScheduler(port, clock, delay_samples=50, note_seconds=0.05).start()
    clock.start()
    t0 = clock.t0
    # events found "late" in blocks of 100 samples: each still leaves at its own sample + delay
    sched.push([Ev(0, 36, 100, 120), Ev(1, 38, 90, 180)])
    time.sleep(0.1)
    sched.push([Ev(2, 42, 80, 250)])
    time.sleep(0.45)
    sched.stop(drain=True, timeout=5)
    ons = [(t - t0, m) for t, m in port.got if m[0] == 0x99]
    offs = [(t - t0, m) for t, m in port.got if m[0] == 0x89]
    assert [m for _, m in ons] == [(0x99, 36, 100), (0x99, 38, 90), (0x99, 42, 80)]
    for (t, _), s in zip(ons, (120, 180, 250), strict=True):
        assert (s + 50) / sr - 0.001 <= t <= (s + 50) / sr + 0.015, (t, s)
    assert [m[1] for _, m in offs] == [36, 38, 42]
    for (t_on, _), (t_off, _) in zip(ons, offs, strict=True):
        assert 0.045 <= t_off - t_on <= 0.07
    assert sched.stats.sent == 3


def test_scheduler_stop_sends_note_offs_and_drops_future_notes():
    from idm.runtime.scheduler import MidiScheduler, MonotonicClock

    clock = MonotonicClock(1000)
    port = Recorder()
    sched = MidiScheduler(port, clock, note_seconds=1.0).start()
    clock.start()
    sched.push([Ev(0, 36, 100, 10), Ev(0, 36, 100, 5000)])
    time.sleep(0.1)
    sched.stop(drain=False, timeout=5)
    assert [m for _, m in port.got] == [(0x99, 36, 100), (0x89, 36, 0)]
    assert sched.stats.dropped == 1


def test_scheduler_ends_a_note_before_its_next_hit_and_maps_notes():
    from idm.runtime.scheduler import MidiScheduler, MonotonicClock

    sr = 1000
    clock = MonotonicClock(sr)
    port = Recorder()
    # hats 20 ms apart with 50 ms notes; class 6 (tom_high) mapped to 48 as on Roland modules, on channel 1
    notes = (36, 38, 42, 46, 43, 45, 48, 49, 51)
    sched = MidiScheduler(port, clock, note_seconds=0.05, channel=0, notes=notes).start()
    clock.start()
    t0 = clock.t0
    sched.push([Ev(2, 42, 100, 100), Ev(2, 42, 90, 120), Ev(6, 50, 80, 130)])
    time.sleep(0.3)
    sched.stop(drain=True, timeout=5)
    msgs = [m for _, m in port.got]
    assert msgs == [(0x90, 42, 100), (0x80, 42, 0), (0x90, 42, 90), (0x90, 48, 80), (0x80, 42, 0), (0x80, 48, 0)]
    t_off_first = port.got[1][0] - t0
    assert 0.119 <= t_off_first <= 0.135  # at the second hit, not 50 ms after the first
    assert sched.stats.sent == 3


def test_scheduler_without_clock_sends_at_once():
    from idm.runtime.scheduler import MidiScheduler

    port = Recorder()
    sched = MidiScheduler(port, None).start()
    sched.push([Ev(0, 36, 64, 10**9)])
    sched.stop(drain=True, timeout=5)
    assert [m for _, m in port.got] == [(0x99, 36, 64), (0x89, 36, 0)]


# ---- monitor routing --------------------------------------------------------------------------------------------


def test_parse_monitor():
    from idm.runtime.monitor import INPUT, parse_monitor

    from idm.classes import CLASSES

    m = parse_monitor("kick,toms@2,input@1", 2)
    assert m[:, CLASSES.index("kick")].tolist() == [1, 1]
    for t in ("tom_floor", "tom_mid", "tom_high"):
        assert m[:, CLASSES.index(t)].tolist() == [0, 1]
    assert m[:, INPUT].tolist() == [1, 0]
    assert parse_monitor("all", 1)[0, :INPUT].sum() == 9
    for bad in ("bongo", "kick@3", "kick@x", ""):
        with pytest.raises(IDMError, match="--monitor"):
            parse_monitor(bad, 2)


def test_monitor_writes_mix_at_the_output_position():
    from idm.runtime.monitor import Monitor, parse_monitor
    from idm.runtime.ring import RingBuffer

    ring = RingBuffer(1024, 2)
    mon = Monitor(ring, parse_monitor("snare@1,input@2", 2), 44100, 44100)
    stems = np.zeros((9, 100), np.float32)
    stems[1] = 0.5
    x = np.linspace(0, 1, 100, dtype=np.float32)
    mon.write(stems, x)
    out = np.zeros((100, 2), np.float32)
    assert ring.read_at(0, out)
    np.testing.assert_allclose(out[:, 0], 0.5)
    np.testing.assert_allclose(out[:, 1], x)


# ---- stems writer: latency dropped, input length, resampled ----------------------------------------------------


@pytest.mark.parametrize("out_rate", [44100, 48000])
def test_stems_writer_alignment(tmp_path, out_rate):
    from idm.runtime.stems_writer import StemsWriter

    latency, n_in = 1000, 20000
    w = StemsWriter(tmp_path, 9, 44100, out_rate, latency)
    # output timeline: input sample i appears at output i + latency; put an impulse at input sample 5000
    total = n_in + latency
    y = np.zeros((9, total), np.float32)
    y[2, 5000 + latency] = 1.0
    pos = 0
    for n in (1, 999, 3, 7000, total):
        blk = y[:, pos : pos + n]
        w.write(pos, blk)
        pos += blk.shape[-1]
    n_out = round(n_in * out_rate / 44100)
    w.close(n_out)
    data, sr = sf.read(str(tmp_path / "hihat_closed.wav"), dtype="float32")
    assert sr == out_rate and data.shape == (n_out,)
    assert abs(int(np.argmax(data)) - round(5000 * out_rate / 44100)) <= 1


# ---- default bundle ------------------------------------------------------------------------------------------------


def test_default_bundle(monkeypatch, tmp_path):
    from idm.runtime import defaults

    monkeypatch.delenv("IDM_BUNDLE", raising=False)
    if (defaults.shipped_bundle_dir() / "manifest.json").is_file():
        assert defaults.default_bundle() == defaults.shipped_bundle_dir()
    else:
        with pytest.raises(BundleError, match="--bundle"):
            defaults.default_bundle()
    monkeypatch.setenv("IDM_BUNDLE", str(tmp_path))
    assert defaults.default_bundle() == tmp_path
    monkeypatch.setenv("IDM_BUNDLE", str(tmp_path / "nope"))
    with pytest.raises(BundleError, match="IDM_BUNDLE"):
        defaults.default_bundle()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are a Linux feature")
def test_bank_refresher_runs_at_the_lowest_priority() -> None:
    import os
    import threading

    from idm.runtime.engine.bank import BACKGROUND_NICE, BankRefresher

    seen: dict[str, int] = {}
    done = threading.Event()
    mine = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    class Synth:
        def __call__(self, kit: np.ndarray) -> np.ndarray:
            seen["nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            done.set()
            return np.zeros((9, 4), np.float32)

    ref = BankRefresher(Synth(), np.zeros(6, np.float32), np.zeros((9, 4), np.float32))  # type: ignore[arg-type]
    try:
        ref.request(np.ones(6, np.float32))
        assert done.wait(10)
        assert ref.low_priority and seen["nice"] == BACKGROUND_NICE
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == mine  # the caller keeps its own
        deadline = time.monotonic() + 5
        while ref.latest()[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert ref.latest()[0] == 1
    finally:
        ref.close()


def test_overruns_are_counted_and_reported_for_real_time_sessions():
    """A block that took longer than its audio is an overrun: in the stats, the status panel and the summary."""
    from types import SimpleNamespace

    from idm.runtime.live import LiveStats
    from idm.runtime.status import render_status, summary
    from rich.console import Console

    stats = LiveStats()
    for took in (0.001, 0.004, 0.0065, 0.002, 0.012):  # blocks of 5.8 ms: two over budget
        stats.block(time.monotonic(), 0.1, 256 / 44100, took)
    assert stats.overruns == 2
    assert abs(stats.worst_pct - 100 * 0.012 / (256 / 44100)) < 1e-9
    source = SimpleNamespace(frames=0, sample_rate=44100)
    session = SimpleNamespace(stats=stats, stream=None, scheduler=None, latency_samples=512, model_rate=44100,
                              seconds_processed=1.0, source=source, processor=None, realtime=True)  # fmt: skip
    line = summary(session)
    assert "2 overruns (worst block 207 % of its time)" in line, line
    console = Console(width=120, record=True)
    console.print(render_status(session))
    assert "2 blocks over their time budget (worst 207 %)" in console.export_text()
    session.realtime = False  # a file processed as fast as it goes has no deadlines
    assert "overrun" not in summary(session)
