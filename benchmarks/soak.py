"""Soak benchmark: a long stream through the StreamProcessor in varying block sizes, as fast as possible.

What it checks (and prints as a markdown table, with PASS/FAIL per line):

- **memory**: the process's RSS, sampled every minute of audio, stays under a stated bound after the first
  segment (no growth with time: ``--rss-growth-mib``);
- **timing**: the p99 of the per-block processing time (as a share of the block's duration) per segment does
  not drift (the last segment's p99 within ``--drift`` times the first's, plus 1 % of a block for timer noise);
- **notes**: notes per minute are stable: every minute of audio that repeats an earlier minute gets the same
  number of notes (to ``note_tolerance``; the first minute, which starts from silence, is left out);
- **note-offs**: every note-on sent through the real :class:`MidiScheduler` (a stepped stream clock, a port that
  tracks what sounds) gets its note-off, no note starts while it sounds; and the hour's MIDI file, written and
  read back with mido, pairs every note-on with a note-off;
- **equivalence**: the varying-block stream equals the same stream processed in one fixed block size (the
  offline path's blocking): the same events (class, velocity, sample) and stems to ``--atol``.

The audio is the synthesized demo loop in a few variants (tempo, seed, level) plus a quiet minute, one
variant per minute (``unit_seconds``), repeated. The kit is frozen so that both runs use the same one-shot bank.

Usage: ``python benchmarks/soak.py --minutes 60 [--bundle DIR] [--segment-minutes 10] [--json OUT]``.
The tests run :func:`soak` for two minutes (``tests/test_soak.py``).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Block sizes the varying stream draws from (PortAudio/JACK periods, odd host sizes, file chunks).
BLOCKS = (16, 32, 64, 100, 128, 256, 257, 441, 480, 512, 1024, 2048, 4096)
#: The fixed block size of the reference run, and the lock-step unit (both runs cover the same output range).
REF_BLOCK = 4096
STEP = REF_BLOCK * 11
#: (bpm, seed, gain) of the audio variants; a variant of gain 0 is a quiet minute (noise at -70 dBFS).
VARIANTS = ((100.0, 0, 1.0), (132.0, 1, 0.5), (87.0, 2, 0.8), (0.0, 3, 0.0), (120.0, 4, 0.25))


def rss_mib() -> float:
    """Resident set size of this process (MiB), from /proc (0 where unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class LoopAudio:
    """One unit (a minute by default) per variant, rendered once; sample ``i`` of the stream is in unit
    ``i // minute`` of the cycle.

    A unit is a whole number of ``hop`` samples (a minute is 59.9977 s at 44.1 kHz), so that every repeat of a
    variant meets the model's frame grid at the same phase: otherwise the same audio shifted by a fraction of
    a frame is a different input, and the model finds a few more or fewer hits in it.
    """

    def __init__(self, sr: int, unit_seconds: float = 60.0, hop: int = 256) -> None:
        from idm.demo import render_demo_loop

        self.sr = sr
        self.minute = round(unit_seconds * sr / hop) * hop
        self.minutes: list[np.ndarray] = []
        for bpm, seed, gain in VARIANTS:
            if gain == 0.0:
                x = (np.random.default_rng(seed).standard_normal(self.minute) * 10 ** (-70 / 20)).astype(np.float32)
            else:
                x = gain * render_demo_loop(self.minute / sr, sr, seed=seed, bpm=bpm)
            self.minutes.append(np.ascontiguousarray(x, dtype=np.float32))

    def variant(self, minute: int) -> int:
        return minute % len(self.minutes)

    def read(self, a: int, b: int) -> np.ndarray:
        out = np.empty(b - a, np.float32)
        i = a
        while i < b:
            m, off = divmod(i, self.minute)
            n = min(b - i, self.minute - off)
            out[i - a : i - a + n] = self.minutes[self.variant(m)][off : off + n]
            i += n
        return out


class SteppedClock:
    """The stream's clock for the scheduler: output sample ``s`` is due when the stream has produced it."""

    def __init__(self, sr: int) -> None:
        self.sr = sr
        self.samples = 0

    def now(self) -> float:
        return self.samples / self.sr

    def time_of(self, sample: int) -> float | None:
        return sample / self.sr


class TrackingPort:
    """A MIDI port that checks the stream it receives: note-on only when silent, note-off only when sounding."""

    def __init__(self) -> None:
        self.sounding: set[tuple[int, int]] = set()
        self.ons = 0
        self.offs = 0
        self.errors: list[str] = []

    def send(self, msg: tuple[int, ...] | list[int]) -> None:
        status, note, vel = msg
        key = (status & 0x0F, note)
        if status & 0xF0 == 0x90 and vel > 0:
            if key in self.sounding and len(self.errors) < 5:
                self.errors.append(f"note-on of sounding note {note}")
            self.sounding.add(key)
            self.ons += 1
        else:
            if key not in self.sounding and len(self.errors) < 5:
                self.errors.append(f"note-off of silent note {note}")
            self.sounding.discard(key)
            self.offs += 1


@dataclass
class Segment:
    minutes: float
    blocks: int
    p50_pct: float
    p99_pct: float
    p99_ms_256: float  #: p99 of blocks of at most 256 samples, ms
    rss_mib: float


@dataclass
class SoakResult:
    seconds: float
    wall_s: float
    blocks: int
    events: int
    segments: list[Segment]
    rss_first_mib: float
    rss_max_mib: float
    rss_end_mib: float
    unit_seconds: float  #: the length of one unit of audio (notes are counted per unit)
    notes_per_minute: list[int]  #: notes per unit
    note_minute_spread: int  #: largest difference between two minutes of the same audio
    port_ons: int
    port_offs: int
    port_errors: list[str]
    file_ons: int
    file_offs: int
    file_unpaired: int
    events_equal: bool
    events_ref: int
    max_stem_diff: float
    checks: dict[str, bool] = field(default_factory=dict)


def _load_pcts(times: list[float], sizes: list[int], sr: int) -> np.ndarray:
    return 100.0 * np.asarray(times) / (np.asarray(sizes) / sr)


def _keys(events: Any) -> list[tuple[int, int, int]]:
    return [(e.cls, e.velocity, e.sample) for e in events]


def _midi_pairs(path: Path) -> tuple[int, int, int]:
    """(note-ons, note-offs, unpaired) of a MIDI file read back with mido."""
    import mido

    ons = offs = unpaired = 0
    sounding: set[tuple[int, int]] = set()
    for msg in mido.MidiFile(str(path)):
        if msg.type == "note_on" and msg.velocity > 0:
            ons += 1
            if (msg.channel, msg.note) in sounding:
                unpaired += 1
            sounding.add((msg.channel, msg.note))
        elif msg.type in ("note_off", "note_on"):
            offs += 1
            if (msg.channel, msg.note) not in sounding:
                unpaired += 1
            sounding.discard((msg.channel, msg.note))
    return ons, offs, unpaired + len(sounding)


def soak(
    bundle: str | Path | None = None,
    minutes: float = 60.0,
    segment_minutes: float = 10.0,
    mode: str = "synth",
    seed: int = 0,
    rss_growth_mib: float = 32.0,
    drift: float = 1.5,
    note_tolerance: int = 1,
    atol: float = 1e-4,
    unit_seconds: float = 60.0,
    workdir: str | Path | None = None,
    progress: Any = None,
) -> SoakResult:
    """Run the soak; see the module docstring. ``progress(text)`` gets a line per segment."""
    import tempfile

    from idm.runtime.defaults import default_bundle
    from idm.runtime.engine.bundle import load_bundle
    from idm.runtime.engine.processor import ProcessorConfig, StreamProcessor
    from idm.runtime.outputs import MidiRecorder
    from idm.runtime.scheduler import MidiScheduler

    b = load_bundle(bundle if bundle is not None else default_bundle())
    cfg = ProcessorConfig(provider="cpu", threads=1, stems=mode, freeze=True, max_block=REF_BLOCK)
    proc = StreamProcessor(b, cfg)
    ref = StreamProcessor(b, cfg)
    sr = proc.sample_rate
    audio = LoopAudio(sr, unit_seconds, proc.hop)
    total = int(minutes * 60 * sr)
    seg_len = int(segment_minutes * 60 * sr)
    rng = np.random.default_rng(seed)
    clock = SteppedClock(sr)
    port = TrackingPort()
    sched = MidiScheduler(port, clock, note_seconds=0.05).start()
    recorder = MidiRecorder(sr, proc.latency)
    per_minute = np.zeros(int(np.ceil(total / audio.minute)), np.int64)

    segments: list[Segment] = []
    times: list[float] = []
    sizes: list[int] = []
    rss_first = rss_max = 0.0
    next_rss = audio.minute
    n_blocks = n_events = n_ref = 0
    events_equal = True
    max_diff = 0.0
    k = len(proc.class_names)
    out_a = np.zeros((k, STEP), np.float32)
    out_b = np.zeros((k, STEP), np.float32)
    t_start = time.perf_counter()
    pos = 0

    def close_segment(end: int) -> None:
        nonlocal times, sizes, rss_first
        pct = _load_pcts(times, sizes, sr)
        small = np.asarray(times)[np.asarray(sizes) <= 256] * 1000
        rss = rss_mib()
        p99_small = float(np.percentile(small, 99)) if small.size else 0.0
        p50, p99 = float(np.percentile(pct, 50)), float(np.percentile(pct, 99))
        segments.append(Segment(end / sr / 60, len(times), p50, p99, p99_small, rss))
        if len(segments) == 1:
            rss_first = rss
        if progress is not None:
            s = segments[-1]
            progress(
                f"{s.minutes:6.1f} min: {s.blocks} blocks, p50 {s.p50_pct:.1f} %, p99 {s.p99_pct:.1f} % of the block, "
                f"RSS {s.rss_mib:.0f} MiB, {time.perf_counter() - t_start:.0f} s"
            )
        times, sizes = [], []

    try:
        while pos < total:
            n = min(STEP, total - pos)
            x = audio.read(pos, pos + n)
            # the stream under test: random block sizes, timed
            i = 0
            evs = []
            while i < n:
                m = min(int(rng.choice(BLOCKS)), n - i)
                t0 = time.perf_counter()
                blk = proc.process(x[i : i + m])
                dt = time.perf_counter() - t0
                times.append(dt)
                sizes.append(m)
                if blk.stems is not None:
                    out_a[:, i : i + m] = blk.stems
                if blk.events:
                    evs.extend(blk.events)
                i += m
            # the reference: one block size
            revs = []
            for j in range(0, n, REF_BLOCK):
                rb = ref.process(x[j : j + REF_BLOCK])
                if rb.stems is not None:
                    out_b[:, j : j + rb.stems.shape[1]] = rb.stems
                revs.extend(rb.events)
            if mode != "none":
                max_diff = max(max_diff, float(np.abs(out_a[:, :n] - out_b[:, :n]).max()))
            if _keys(evs) != _keys(revs):
                events_equal = False
            n_events += len(evs)
            n_ref += len(revs)
            for e in evs:
                per_minute[min(len(per_minute) - 1, max(0, e.sample - proc.latency) // audio.minute)] += 1
            sched.push(evs)
            recorder.add(evs)
            pos += n
            clock.samples = pos
            if pos >= next_rss:
                rss = rss_mib()
                if segments:
                    rss_max = max(rss_max, rss)
                next_rss += audio.minute
            seg_end = (len(segments) + 1) * seg_len
            if pos >= seg_end or pos >= total:
                n_blocks += len(times)
                close_segment(pos)
        tail = proc.flush()
        rtail = ref.flush()
        sched.push(tail.events)
        recorder.add(tail.events)
        n_events += len(tail.events)
        n_ref += len(rtail.events)
        if _keys(tail.events) != _keys(rtail.events):
            events_equal = False
        if tail.stems is not None and rtail.stems is not None:
            max_diff = max(max_diff, float(np.abs(tail.stems - rtail.stems).max()))
        # the stream goes on (silence): the clock passes every due time, the scheduler sends the rest and every
        # note-off (each one is due a note length after its note-on was sent)
        stopper = threading.Thread(target=sched.stop, kwargs={"drain": True, "timeout": 120})
        stopper.start()
        while stopper.is_alive():
            clock.samples += sr // 20
            time.sleep(0.005)
        wall = time.perf_counter() - t_start
    finally:
        proc.close()
        ref.close()
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        mid = recorder.write(Path(tmp) / "soak.mid")
        file_ons, file_offs, unpaired = _midi_pairs(mid)
    # notes per minute: every repeat of a minute of audio gets the same count. The first minute is left out: it
    # starts from silence, every later one after the same preceding minute (the model hears a second back).
    full = [int(c) for c in per_minute[: total // audio.minute]]
    spread = 0
    for v in range(len(VARIANTS)):
        same = full[v :: len(VARIANTS)][1:] if v == 0 else full[v :: len(VARIANTS)]
        if len(same) > 1:
            spread = max(spread, max(same) - min(same))
    res = SoakResult(
        seconds=total / sr,
        wall_s=wall,
        blocks=n_blocks,
        events=n_events,
        segments=segments,
        rss_first_mib=rss_first,
        rss_max_mib=max(rss_max, rss_first),
        rss_end_mib=rss_mib(),
        unit_seconds=unit_seconds,
        notes_per_minute=full,
        note_minute_spread=spread,
        port_ons=port.ons,
        port_offs=port.offs,
        port_errors=port.errors,
        file_ons=file_ons,
        file_offs=file_offs,
        file_unpaired=unpaired,
        events_equal=events_equal,
        events_ref=n_ref,
        max_stem_diff=max_diff,
    )
    first, last = segments[0].p99_pct, segments[-1].p99_pct
    res.checks = {
        "rss": res.rss_max_mib <= res.rss_first_mib + rss_growth_mib,
        "p99 drift": last <= drift * first + 1.0,
        "notes per minute": spread <= note_tolerance,
        "note-offs (port)": port.ons == n_events and port.offs == port.ons and not port.errors,
        "note-offs (file)": file_ons == n_events and file_offs == file_ons and unpaired == 0,
        "equal to one block size": events_equal and n_ref == n_events and max_diff <= atol,
    }
    return res


def table(res: SoakResult, rss_growth_mib: float, drift: float) -> str:
    ok = {k: ("PASS" if v else "FAIL") for k, v in res.checks.items()}
    lines = [
        "| measure | value | check |",
        "|---|---|---|",
        f"| audio / wall time | {res.seconds / 60:.1f} min / {res.wall_s:.0f} s "
        f"({res.seconds / res.wall_s:.1f}x real time, both runs) | |",
        f"| blocks (varying, {min(BLOCKS)}-{max(BLOCKS)} samples) / notes | {res.blocks} / {res.events} | |",
        f"| RSS after the first segment / max after it / at the end | {res.rss_first_mib:.0f} / "
        f"{res.rss_max_mib:.0f} / {res.rss_end_mib:.0f} MiB | growth <= {rss_growth_mib:g} MiB: {ok['rss']} |",
    ]
    for s in res.segments:
        lines.append(
            f"| segment to {s.minutes:.1f} min: per-block time p50 / p99 (% of the block), p99 of blocks <= 256 | "
            f"{s.p50_pct:.1f} / {s.p99_pct:.1f} %, {s.p99_ms_256:.3f} ms | |"
        )
    lines += [
        f"| p99 drift (last segment / first) | {res.segments[-1].p99_pct / max(res.segments[0].p99_pct, 1e-9):.2f} | "
        f"<= {drift:g}x (+1 %): {ok['p99 drift']} |",
        f"| notes per {res.unit_seconds:g} s of audio (min / max; largest spread between repeats of one stretch) | "
        f"{min(res.notes_per_minute)} / {max(res.notes_per_minute)}; {res.note_minute_spread} | "
        f"{ok['notes per minute']} |",
        f"| MIDI port: note-ons / note-offs / errors | {res.port_ons} / {res.port_offs} / {len(res.port_errors)} | "
        f"{ok['note-offs (port)']} |",
        f"| MIDI file (mido): note-ons / note-offs / unpaired | {res.file_ons} / {res.file_offs} / "
        f"{res.file_unpaired} | {ok['note-offs (file)']} |",
        f"| vs one block size ({REF_BLOCK}): events equal / max stem difference | {res.events_equal} "
        f"({res.events_ref} reference events) / {res.max_stem_diff:.2e} | {ok['equal to one block size']} |",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", default=None, help="bundle folder (default: the shipped live model)")
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--segment-minutes", type=float, default=10.0)
    ap.add_argument("--mode", default="synth", choices=("synth", "masked", "none"))
    ap.add_argument("--rss-growth-mib", type=float, default=32.0)
    ap.add_argument("--drift", type=float, default=1.5)
    ap.add_argument("--json", default=None, help="also write the result as JSON here")
    args = ap.parse_args(argv)
    res = soak(
        args.bundle,
        args.minutes,
        args.segment_minutes,
        args.mode,
        rss_growth_mib=args.rss_growth_mib,
        drift=args.drift,
        progress=lambda t: print(t, file=sys.stderr, flush=True),
    )
    print(table(res, args.rss_growth_mib, args.drift))
    if args.json:
        Path(args.json).write_text(json.dumps(res.__dict__, default=lambda o: o.__dict__, indent=1))
    return 0 if all(res.checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
