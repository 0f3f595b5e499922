"""idm-live against a real JACK server (dummy backend): mic input through PortAudio, MIDI out through rtmidi.

A JACK client plays a rendered drum loop into idm-live's input port and records the notes idm-live
sends with their exact JACK frame times; the notes are checked against the loop's ground truth and the
end-to-end latency is measured.
"""

from __future__ import annotations

import gc
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import drum_loop

RATE = 44100
PERIOD = 256
LIVE = [sys.executable, "-c", "from idm.runtime.cli import main; main()"]


# ---- the JACK server fixture --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def jack_server():
    """A private jackd (dummy backend, 44.1 kHz, 256 frames) for the session; JACK_DEFAULT_SERVER points at it."""
    if shutil.which("jackd") is None or shutil.which("jack_wait") is None:
        msg = "jackd2 is not installed (apt install jackd2)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    name = f"idm-test-{os.getpid()}"
    proc = subprocess.Popen(
        ["jackd", "-n", name, "--no-realtime", "-d", "dummy", "-r", str(RATE), "-p", str(PERIOD)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    old = os.environ.get("JACK_DEFAULT_SERVER")
    os.environ["JACK_DEFAULT_SERVER"] = name
    try:
        res = subprocess.run(["jack_wait", "-w", "-t", "10"], capture_output=True, text=True, check=False)
        if res.returncode != 0 or proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace") if proc.poll() is not None and proc.stderr else ""
            pytest.fail(f"jackd did not start: {res.stdout} {res.stderr} {err}")
        yield name
    finally:
        if old is None:
            os.environ.pop("JACK_DEFAULT_SERVER", None)
        else:
            os.environ["JACK_DEFAULT_SERVER"] = old
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Player:
    """A JACK client that plays a clip on request (audio out), records MIDI events with their JACK frames (MIDI
    in) and records two audio inputs from the start of playback, stamped with JACK frames."""

    def __init__(self, name: str = "idm-test-player") -> None:
        import jack

        self.client = jack.Client(name, no_start_server=True)
        self.out = self.client.outports.register("out")
        self.midi_in = self.client.midi_inports.register("midi_in")
        self.clip = np.zeros(0, np.float32)
        self.pos = 0
        self.playing = False
        self.start_frame: int | None = None
        self.events: list[tuple[int, bytes]] = []
        self.chunks: list[tuple[int, int]] = []  # (JACK frame, clip position) of every played cycle
        self.ins = [self.client.inports.register(f"in_{i + 1}") for i in range(2)]
        self.rec = np.zeros((2, 30 * RATE), np.float32)
        self.rec_frames: list[tuple[int, int]] = []  # (JACK frame, record position) of every recorded cycle
        self.rec_pos = 0
        self._go = threading.Event()
        self.client.set_process_callback(self._process)
        self.client.activate()

    def _process(self, frames: int) -> None:
        t0 = self.client.last_frame_time
        for offset, data in self.midi_in.incoming_midi_events():
            self.events.append((t0 + offset, bytes(data)))
        buf = self.out.get_array()
        if self._go.is_set() and not self.playing and self.start_frame is None:
            self.playing = True
            self.start_frame = t0
        if self.playing:
            self.chunks.append((t0, self.pos))
            chunk = self.clip[self.pos : self.pos + frames]
            buf[: chunk.size] = chunk
            buf[chunk.size :] = 0.0
            self.pos += chunk.size
            if self.pos >= self.clip.size:
                self.playing = False
        else:
            buf[:] = 0.0
        if self.start_frame is not None and self.rec_pos + frames <= self.rec.shape[1]:
            self.rec_frames.append((t0, self.rec_pos))
            for i, port in enumerate(self.ins):
                self.rec[i, self.rec_pos : self.rec_pos + frames] = port.get_array()
            self.rec_pos += frames

    def recorded(self, channel: int, base: int, n: int) -> np.ndarray:
        """Input ``channel`` on the JACK timeline: frames ``[base, base + n)`` (zeros where nothing was recorded)."""
        out = np.zeros(n, np.float32)
        for frame, pos in self.rec_frames:
            a, b = frame - base, frame - base + PERIOD
            if b <= 0 or a >= n:
                continue
            lo, hi = max(a, 0), min(b, n)
            out[lo:hi] = self.rec[channel, pos + lo - a : pos + hi - a]
        return out

    def played(self, base: int, n: int) -> np.ndarray:
        """The clip on the JACK timeline as it left the output port."""
        out = np.zeros(n, np.float32)
        for frame, pos in self.chunks:
            a = frame - base
            chunk = self.clip[pos : pos + PERIOD]
            lo, hi = max(a, 0), min(a + chunk.size, n)
            if hi > lo:
                out[lo:hi] = chunk[lo - a : hi - a]
        return out

    def play(self, clip: np.ndarray) -> None:
        self.clip = np.ascontiguousarray(clip, dtype=np.float32)
        self._go.set()

    def frame_of(self, sample: int) -> int:
        """JACK frame at which clip sample ``sample`` was played (a cycle the player missed shifts the rest)."""
        frame, pos = max((c for c in self.chunks if c[1] <= sample), key=lambda c: c[1])
        return frame + sample - pos

    @property
    def finished(self) -> bool:
        return self.start_frame is not None and not self.playing

    def ports(self, **kw) -> list[str]:
        return [p.name for p in self.client.get_ports(**kw)]

    def close(self) -> None:
        self.client.deactivate()
        self.client.close()


def _play_through(player: Player, proc: subprocess.Popen, loop: np.ndarray) -> str:
    """Wire idm-live (``proc``: mic input and two monitor outputs on PortAudio, the virtual MIDI port) to the player,
    play ``loop`` and half a second of silence, stop idm-live with Ctrl-C once its last notes are out; its stderr.
    The player is closed and idm-live ended in every case."""
    try:
        midi_port = "idm-live:IDM Drums"
        _wait_for(lambda: midi_port in player.ports(is_midi=True), 120, "the MIDI port", proc)
        _wait_for(lambda: any(p.startswith("PortAudio") for p in player.ports(is_audio=True, is_input=True)), 30,
                  "the PortAudio input", proc)  # fmt: skip
        for p in [p for p in player.ports(is_audio=True, is_input=True) if p.startswith("PortAudio")]:
            for src in player.client.get_all_connections(p):
                player.client.disconnect(src, p)
            player.client.connect(player.out, p)
        player.client.connect(midi_port, player.midi_in)

        def pa_out() -> list[str]:
            return sorted(p for p in player.ports(is_audio=True, is_output=True) if p.startswith("PortAudio"))

        _wait_for(lambda: len(pa_out()) == 2, 30, "the PortAudio outputs", proc)
        for src, dst in zip(pa_out(), player.ins, strict=True):
            player.client.connect(src, dst)
        time.sleep(0.5)
        player.play(np.concatenate([loop, np.zeros(RATE // 2, np.float32)]))
        _wait_for(lambda: player.finished, 60, "the end of playback", proc)
        time.sleep(1.0)  # notes of the last hits leave one latency after them
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        player.close()
    return err


def _gc_off(request) -> None:
    """The test's JACK client runs its process callback in Python, in this process: a garbage collection of the
    large heap earlier tests leave (the Triton interpreter's, say) stalls it for tens of milliseconds and makes
    playback and the MIDI time stamps late. Collect once now and keep the collector off until the test ends."""
    gc.collect()
    gc.freeze()
    gc.disable()
    request.addfinalizer(gc.enable)
    request.addfinalizer(gc.unfreeze)


def loop_onsets(seconds: float, sr: int = RATE) -> list[tuple[str, int]]:
    """Ground truth of :func:`idm.demo.render_demo_loop`: (class, start sample) of every hit."""
    from idm.demo import demo_loop_hits

    return sorted(((cls, start) for start, cls, _ in demo_loop_hits(seconds, sr)), key=lambda e: e[1])


def _save_latencies(path: Path, expected, notes, total: int, latency: int, lat_ms: list[float], missed) -> None:
    """The per-note latencies of one end-to-end run, as JSON, with what is needed to read them."""
    import json
    import platform

    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "what": "idm-live end to end through a JACK server (dummy backend): per-note latency = JACK frame of the "
        "MIDI note - JACK frame at which its hit left the player's audio port (tests/test_live_jack.py)",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": "official checkpoint, exported bundle (non-causal, 331 ms look-ahead)",
        "sample_rate": RATE,
        "period": PERIOD,
        "reported_latency_samples": total,
        "processor_latency_samples": latency,
        "expected_hits": len(expected),
        "notes_received": len(notes),
        "missed": len(missed),
        "on_time_window_ms": round((PERIOD + int(0.020 * RATE)) / RATE * 1000, 3),
        "late": int(sum(abs(v - total / RATE * 1000) > (PERIOD + int(0.020 * RATE)) / RATE * 1000 for v in lat_ms)),
        "latencies_ms": [round(float(v), 4) for v in lat_ms],
        "machine": {"cpus": os.cpu_count(), "load_avg_1min": round(os.getloadavg()[0], 2),
                    "platform": platform.platform()},
    }  # fmt: skip
    path.write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")


def _wait_for(pred, timeout: float, what: str, proc: subprocess.Popen | None = None) -> None:
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if pred():
            return
        if proc is not None and proc.poll() is not None:
            _out, err = proc.communicate()
            pytest.fail(f"idm-live exited early ({proc.returncode}) waiting for {what}: {err[-2000:]}")
        time.sleep(0.05)
    pytest.fail(f"timed out waiting for {what}")


# ---- tests ----------------------------------------------------------------------------------------------------


def test_list_devices_shows_jack(jack_server):
    res = subprocess.run([*LIVE, "--list-devices"], capture_output=True, text=True, timeout=60, check=False)
    assert res.returncode == 0, res.stderr
    assert "JACK Audio Connection Kit" in res.stdout
    assert "system" in res.stdout
    assert "[jack]" in res.stdout


@pytest.fixture(scope="module")
def offline_detected(official_ckpt):
    """True onsets of the test loop that the official model detects offline (right class within 3 frames)."""
    import torch

    from idm.classes import CLASSES
    from idm.peaks import peak_pick
    from idm.separate import Separator, SeparatorConfig

    torch.set_num_threads(2)
    seconds = 6.0
    loop = drum_loop(seconds)
    sep = Separator.from_checkpoint(official_ckpt, SeparatorConfig(mode="synth"))
    an = sep.analyze(loop)
    peaks = peak_pick(an.onset_probs, sep.config.peaks)
    found = {(CLASSES[k], int(j) * sep.hop) for k, j in zip(*np.nonzero(peaks), strict=True)}
    truth = loop_onsets(seconds)
    kept = [(c, s) for c, s in truth if any(c == c2 and abs(s - s2) <= 3 * sep.hop for c2, s2 in found)]
    return loop, truth, kept


def test_jack_end_to_end(jack_server, official_bundle, offline_detected, tmp_path: Path, request):
    from idm.classes import CLASSES, GM_NOTES

    loop, truth, expected = offline_detected
    assert len(expected) >= 8, f"the official model detects too few hits of the loop offline ({len(expected)})"
    manifest = __import__("json").loads((official_bundle / "manifest.json").read_text())
    assert manifest["audio"]["sample_rate"] == RATE

    _gc_off(request)
    player = Player()
    midi_file = tmp_path / "take.mid"
    # --freeze-kit: this test is about timing, ports and latency. With the running kit the official model's
    # bank refreshes (5 s of CPU each, back to back while the kit settles) share the 2-vCPU test machines'
    # one physical core and delayed up to a third of the notes by 30-70 ms even at the lowest thread
    # priority; that cost is measured by benchmarks/bench_live.py and tracked on its own.
    proc = subprocess.Popen(
        [*LIVE, "--input", "mic", "--device", "system", "--midi-api", "jack", "--bundle", str(official_bundle),
         "--block-size", str(PERIOD), "--midi-file", str(midi_file), "--stems-out", str(tmp_path / "stems"),
         "--output-device", "system", "--monitor", "input@1,all@2", "--seconds", "120", "--quiet", "--freeze-kit"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    err = _play_through(player, proc, loop)
    assert proc.returncode == 0, err
    total = int(err.split("idm-live: latency ")[1].split("(")[1].split(" samples")[0])
    latency = int(err.split("model ")[1].split(",")[0])  # the processor's latency
    notes = [(t, d[1], d[2]) for t, d in player.events if len(d) == 3 and d[0] == 0x99 and d[2] > 0]
    offs = [(t, d[1]) for t, d in player.events if len(d) == 3 and d[0] in (0x89, 0x99) and (d[0] == 0x89 or d[2] == 0)]
    assert notes, f"no notes received; stderr: {err[-1500:]}"
    assert len(offs) == len(notes), "every note-on must get its note-off"

    lat_ms = []
    missed = []
    window = PERIOD + int(0.020 * RATE)  # on time: within one period + 20 ms of the latency idm-live reported
    search = int(0.100 * RATE)  # a note this far from it still belongs to the hit (late, not missing)
    for cls, s in expected:
        note = GM_NOTES[CLASSES.index(cls)]
        f = player.frame_of(s)
        cand = [t - f for t, n, _ in notes if n == note and abs(t - f - total) <= search]
        if cand:
            lat_ms.append(min(cand, key=lambda d: abs(d - total)) / RATE * 1000)
        else:
            missed.append((cls, s))
    lat = np.array(lat_ms)
    late = int((np.abs(lat - total / RATE * 1000) > window / RATE * 1000).sum()) if lat.size else 0
    report = (
        f"JACK e2e: {len(lat)}/{len(expected)} detected hits matched ({len(truth)} in the loop, {len(notes)} notes), "
        f"{late} late by more than {window / RATE * 1000:.1f} ms; "
        f"latency: processor {latency / RATE * 1000:.2f} ms, idm-live total {total / RATE * 1000:.2f} ms, "
        f"measured median {np.median(lat):.2f} ms, "
        f"min {lat.min():.2f}, max {lat.max():.2f} ms (period {PERIOD / RATE * 1000:.2f} ms)"
    )
    print(report)
    if os.environ.get("IDM_JACK_LATENCIES"):  # benchmarks/plot_latency.py draws the histogram from this file
        _save_latencies(Path(os.environ["IDM_JACK_LATENCIES"]), expected, notes, total, latency, lat_ms, missed)
    assert not missed, f"hits without a note: {missed}; {report}"
    # a busy machine may delay the odd note (the scheduler is a Python thread); most must be on time
    assert late <= len(expected) // 7, report
    # the latency idm-live reports (the processor's + the input buffering) is the one measured, to a period
    tol_ms = 4.0
    period_ms = PERIOD / RATE * 1000
    assert abs(np.median(lat) - total / RATE * 1000) <= period_ms + tol_ms, report

    # monitor: channel 1 is the input after the constant output delay idm-live printed, bit for bit; channel 2 the
    # stems, one processor latency later
    base = player.chunks[0][0]
    n = loop.size + RATE
    played = player.played(base, n)
    ch1, ch2 = player.recorded(0, base, n), player.recorded(1, base, n)
    delay = int(err.split("monitor: the input plays ")[1].split(" frames")[0])  # buffer + PortAudio's output latency
    same = np.abs(ch1[delay:] - played[:-delay]) < 1e-7
    loud = np.abs(played[:-delay]) > 1e-3
    print(f"monitor: input at +{delay} frames, bit-exact on {same[loud].mean() * 100:.1f} % of the loud samples")
    assert same[loud].mean() > 0.9  # JACK xruns on a loaded machine may drop a few blocks
    assert np.abs(ch1[:delay]).max() == 0.0  # silence until the first valid output
    assert np.abs(ch2[latency + delay : latency + delay + loop.size]).max() > 0.01  # stems start one latency later
    assert np.abs(ch2[: latency + delay - 2 * PERIOD]).max() == 0.0

    # the interrupted session saved its MIDI file and stems
    import mido
    import soundfile as sf

    mid = mido.MidiFile(str(midi_file))
    recorded = [m for m in mid if m.type == "note_on" and m.velocity > 0]
    assert len(recorded) >= len(notes)
    folders = list((tmp_path / "stems").iterdir())
    assert len(folders) == 1 and not folders[0].name.startswith(".")
    for cls in CLASSES:
        data, sr = sf.read(str(folders[0] / f"{cls}.wav"))
        assert sr == RATE and data.size > loop.size
    assert (folders[0] / f"{folders[0].name}.mid").is_file()


def test_realtime_file_to_existing_jack_port(jack_server, tmp_path: Path):
    """A file played in real time (monotonic clock) into an existing JACK MIDI port named by substring.

    With the default (``live``) bundle: the pacing and the port are under test here, not the official model's CPU
    budget (about 40 % of a core per block plus a 5-s bank refresh, which overran its first blocks on a slow 2-core
    machine in one full-suite run; bench_live.py measures that budget)."""
    import soundfile as sf

    clip = tmp_path / "clip.wav"
    sf.write(str(clip), drum_loop(3.0), RATE, subtype="FLOAT")
    player = Player("idm-test-sink")
    try:
        midi = tmp_path / "clip.mid"
        t0 = time.monotonic()
        res = subprocess.run(
            [*LIVE, "--input", str(clip), "--realtime", "--midi-api", "jack",
             "--midi-port", "idm-test-sink", "--midi-file", str(midi), "--quiet"],
            capture_output=True, text=True, timeout=180, check=False,
        )  # fmt: skip
        wall = time.monotonic() - t0
        time.sleep(0.2)
    finally:
        player.close()
    assert res.returncode == 0, res.stderr
    assert "port 'idm-test-sink:midi_in'" in res.stderr
    import mido

    recorded = [m for m in mido.MidiFile(str(midi)) if m.type == "note_on" and m.velocity > 0]
    ons = [(t, d) for t, d in player.events if d[0] == 0x99 and d[2] > 0]
    assert len(recorded) >= 5
    assert len(ons) == len(recorded)
    assert [d[1] for _, d in ons] == [m.note for m in recorded]
    # paced: notes spread over the clip's duration, not sent in one burst
    span = (ons[-1][0] - ons[0][0]) / RATE
    assert span > 1.5, span
    # constant latency: the notes keep the recorded (input-aligned) timing, up to one period and the clock's jitter
    times, t = [], 0.0
    for m in mido.MidiFile(str(midi)):
        t += m.time
        if m.type == "note_on" and m.velocity > 0:
            times.append(t)
    got = np.array([f for f, _ in ons], dtype=float) / RATE
    err = got - np.array(times)
    err -= np.median(err)
    # most notes land within one period and the clock's jitter; on a loaded machine a note may leave a cycle or
    # two late (the scheduler thread or JACK woke late), never drifting: every note stays within a few periods
    tol = PERIOD / RATE + 0.004
    assert np.mean(np.abs(err) < tol) >= 0.8, (err, res.stderr)
    late = re.search(r"late \(max ([0-9.]+) ms\)", res.stderr)
    slack = 3 * PERIOD / RATE + (float(late.group(1)) / 1000 if late else 0.0)
    assert np.abs(err).max() < tol + slack, (err, res.stderr)
    assert wall > 3.0


def test_unknown_midi_port_is_one_line_error(jack_server, official_bundle, tmp_path: Path):
    import soundfile as sf

    clip = tmp_path / "clip.wav"
    sf.write(str(clip), drum_loop(1.0), RATE, subtype="FLOAT")
    res = subprocess.run(
        [*LIVE, "--input", str(clip), "--bundle", str(official_bundle), "--realtime", "--midi-api", "jack",
         "--midi-port", "no-such-port-xyz"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert res.returncode == 1
    lines = [ln for ln in res.stderr.strip().splitlines() if not ln.startswith("idm-live: ")]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no-such-port-xyz" in lines[0], res.stderr


def test_jack_replaced_audio_latency(jack_server, tmp_path: Path, request):
    """--replace on a live input through JACK: each kick of the demo loop comes back as the user's click sample on
    the monitor, at a constant latency measured like the MIDI notes' (both printed, both checked)."""
    import soundfile as sf

    from idm.classes import CLASSES, GM_NOTES
    from idm.demo import render_demo_loop

    seconds = 8.0
    loop = render_demo_loop(seconds, RATE)
    kicks = [s for cls, s in loop_onsets(seconds) if cls == "kick"]
    click = (0.9 * 0.5 ** (np.arange(400) / 20.0)).astype(np.float32)  # a spike: its first sample is its onset
    sf.write(str(tmp_path / "click.wav"), click, RATE, subtype="FLOAT")
    _gc_off(request)
    player = Player("idm-test-replace")
    proc = subprocess.Popen(
        [*LIVE, "--input", "mic", "--device", "system", "--midi-api", "jack", "--block-size", str(PERIOD),
         "--output-device", "system", "--monitor", "replaced@1,input@2", "--replace", f"kick={tmp_path / 'click.wav'}",
         "--replace-mode", "solo", "--seconds", "60", "--quiet", "--freeze-kit"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    err = _play_through(player, proc, loop)
    assert proc.returncode == 0, err
    total = int(err.split("idm-live: latency ")[1].split("(")[1].split(" samples")[0])
    reported = int(err.split("the replaced audio plays ")[1].split(" frames")[0])
    base = player.chunks[0][0]
    n = loop.size + RATE
    rec = player.recorded(0, base, n)
    kick_note = GM_NOTES[CLASSES.index("kick")]
    notes = [t for t, d in player.events if len(d) == 3 and d[0] == 0x99 and d[1] == kick_note and d[2] > 0]
    audio_ms, midi_ms = [], []
    for s in kicks:
        f = player.frame_of(s)
        lo = f - base
        seg = np.abs(rec[lo : lo + int(0.2 * RATE)])
        on = np.flatnonzero(seg > 0.05)
        if on.size:
            audio_ms.append(on[0] / RATE * 1000)
        near = [t - f for t in notes if 0 <= t - f <= int(0.2 * RATE)]
        if near:
            midi_ms.append(min(near) / RATE * 1000)
    report = (
        f"replace over JACK: {len(audio_ms)}/{len(kicks)} kicks replaced, audio latency median "
        f"{np.median(audio_ms):.2f} ms (reported {reported / RATE * 1000:.2f} ms), MIDI median "
        f"{np.median(midi_ms):.2f} ms (reported {total / RATE * 1000:.2f} ms), period {PERIOD / RATE * 1000:.2f} ms"
    )
    print(report)
    assert len(audio_ms) >= 0.8 * len(kicks), report
    tol = PERIOD / RATE * 1000 + 4.0  # hits sit on the model's 5.8 ms frame grid, as the MIDI notes do
    assert abs(np.median(audio_ms) - reported / RATE * 1000) <= tol, report
    assert reported == total  # the notes wait for the monitor: both leave at one latency
    assert abs(np.median(audio_ms) - np.median(midi_ms)) <= tol, report
