"""Faults in live use, with real processes: a JACK server killed mid-stream, a MIDI destination that goes away,
an unwritable MIDI file, interrupted file runs, stale partial folders of killed runs, two runs on one output.

Each JACK test starts its own jackd (dummy backend) so that killing it leaves the session's server alone.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf
from conftest import drum_loop

RATE = 44100
LIVE = [sys.executable, "-c", "from idm.runtime.cli import main; main()"]

# A JACK client in its own process: plays a clip in a loop into every PortAudio input port (audio mode), or
# counts the note-ons reaching its MIDI input and quits after a number of them (sink mode).
CLIENT = r"""
import sys, time
import jack
import numpy as np
import soundfile as sf
mode, name = sys.argv[1], sys.argv[2]
c = jack.Client(name, no_start_server=True)
if mode == "audio":
    clip = sf.read(sys.argv[3], dtype="float32")[0]
    out = c.outports.register("out")
    pos = [0]
    @c.set_process_callback
    def process(frames):
        buf = out.get_array()
        i = pos[0] % clip.size
        n = min(frames, clip.size - i)
        buf[:n] = clip[i:i + n]
        buf[n:] = clip[:frames - n]
        pos[0] += frames
    c.activate()
    print("ready", flush=True)
    connected = set()
    while True:
        for p in c.get_ports("PortAudio", is_audio=True, is_input=True):
            if p.name not in connected:
                c.connect(out, p)
                connected.add(p.name)
        time.sleep(0.1)
else:
    limit = int(sys.argv[3])
    inp = c.midi_inports.register("midi_in")
    got = [0]
    @c.set_process_callback
    def process(frames):
        for _, buf in inp.incoming_midi_events():
            data = bytes(buf)
            if len(data) == 3 and data[0] & 0xF0 == 0x90 and data[2] > 0:
                got[0] += 1
    c.activate()
    print("ready", flush=True)
    while got[0] < limit:
        time.sleep(0.002)
    c.deactivate()
    c.close()
    print(got[0], flush=True)
"""


class Lines:
    """Collects a child's stream line by line with the time each line arrived."""

    def __init__(self, stream) -> None:
        self.lines: list[tuple[float, str]] = []
        self._t = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._t.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait_for(self, text: str, timeout: float, proc: subprocess.Popen | None = None) -> float:
        t_end = time.monotonic() + timeout
        while time.monotonic() < t_end:
            for t, line in list(self.lines):
                if text in line:
                    return t
            if proc is not None and proc.poll() is not None:
                time.sleep(0.2)
                pytest.fail(f"process exited ({proc.returncode}) before {text!r}: {self.text()[-3000:]}")
            time.sleep(0.02)
        pytest.fail(f"timed out waiting for {text!r}: {self.text()[-3000:]}")

    def text(self) -> str:
        self._t.join(0.5)
        return "\n".join(line for _, line in self.lines)


@pytest.fixture
def jackd(tmp_path: Path):
    """A private JACK server for one test; yields (name, process, environment for its clients)."""
    if shutil.which("jackd") is None or shutil.which("jack_wait") is None:
        msg = "jackd2 is not installed (apt install jackd2)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    name = f"idm-faults-{os.getpid()}-{time.monotonic_ns() % 100000}"
    proc = subprocess.Popen(
        ["jackd", "-n", name, "--no-realtime", "-d", "dummy", "-r", str(RATE), "-p", "256"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    env = {**os.environ, "JACK_DEFAULT_SERVER": name, "JACK_NO_AUDIO_RESERVATION": "1"}
    children: list[subprocess.Popen] = []
    try:
        res = subprocess.run(["jack_wait", "-w", "-t", "10"], capture_output=True, text=True, env=env, check=False)
        if res.returncode != 0:
            pytest.fail(f"jackd did not start: {res.stdout} {res.stderr}")
        yield name, proc, env, children
    finally:
        for c in children:
            if c.poll() is None:
                c.kill()
                c.communicate()
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        if proc.returncode not in (0, None):
            # a killed server keeps its slot in JACK's registry of servers (8 of them, shared by every process on
            # the machine) until a server of the same name starts: start one and stop it properly
            again = subprocess.Popen(["jackd", "-n", name, "--no-realtime", "-d", "dummy", "-r", str(RATE)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
            subprocess.run(["jack_wait", "-w", "-t", "10"], capture_output=True, env=env, check=False)
            again.terminate()
            again.wait(10)
            for f in Path("/dev/shm").glob(f"jack_sem.*_{name}_*"):  # the dead clients' semaphores
                f.unlink(missing_ok=True)


def _client(env: dict, children: list, *args: str) -> tuple[subprocess.Popen, Lines]:
    p = subprocess.Popen([sys.executable, "-c", CLIENT, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=env)  # fmt: skip
    children.append(p)
    lines = Lines(p.stdout)
    lines.wait_for("ready", 60, p)
    return p, lines


def test_jack_server_killed_mid_stream(jackd, tmp_path: Path):
    """jackd SIGKILLed while idm-live records the mic: one line within 2 s, complete files, exit 1, no hang."""
    from idm.classes import CLASSES

    _name, server, env, children = jackd
    clip = tmp_path / "loop.wav"
    sf.write(str(clip), drum_loop(4.0), RATE, subtype="FLOAT")
    midi = tmp_path / "take.mid"
    out = tmp_path / "stems"
    live = subprocess.Popen(
        [*LIVE, "--input", "mic", "--device", "system", "--midi-api", "jack", "--midi-file", str(midi),
         "--stems-out", str(out), "--quiet", "--freeze-kit", "--seconds", "600"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    children.append(live)
    err = Lines(live.stderr)
    err.wait_for("idm-live: latency", 180, live)
    _client(env, children, "audio", "idm-faults-player", str(clip))
    time.sleep(5.0)  # the loop plays into idm-live for a few seconds
    server.kill()
    t_kill = time.monotonic()
    server.wait()
    t_line = err.wait_for("error: ", 30, None)
    try:
        live.wait(30)
    except subprocess.TimeoutExpired:
        pytest.fail(f"idm-live hangs after the JACK server died: {err.text()[-2000:]}")
    t_exit = time.monotonic()
    stderr = err.text()
    assert live.returncode == 1, stderr
    errors = [ln for ln in stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "JACK server" in errors[0], stderr
    assert t_line - t_kill < 2.0, f"the error came {t_line - t_kill:.2f} s after the server died"
    # then it processes what the ring had captured (up to its 4 s; slower than real time on a loaded machine), saves
    # and exits: never a hang
    assert t_exit - t_kill < 30.0
    # every file complete, up to the failure: a readable MIDI file with the notes heard, WAVs of equal length
    recorded = [m for m in mido.MidiFile(str(midi)) if m.type == "note_on" and m.velocity > 0]
    assert len(recorded) >= 5, stderr
    folders = list(out.iterdir())
    assert len(folders) == 1 and not folders[0].name.startswith("."), folders
    lengths = {sf.info(str(folders[0] / f"{c}.wav")).frames for c in CLASSES}
    assert len(lengths) == 1
    n = lengths.pop()
    assert 2 * RATE < n < 60 * RATE
    data, _ = sf.read(str(folders[0] / "kick.wav"))
    assert data.shape[0] == n and np.abs(data).max() > 0.0  # the header matches the data: the file was closed
    assert (folders[0] / f"{folders[0].name}.mid").is_file()
    live_stdout = live.stdout.read() if live.stdout else ""
    assert f"wrote {midi}" in live_stdout


def test_midi_destination_disappears(jackd, tmp_path: Path):
    """The JACK client owning the connected MIDI port quits mid-run: warned once, counted, files go on, exit 1."""
    _name, _server, env, children = jackd
    clip = tmp_path / "clip.wav"
    sf.write(str(clip), drum_loop(8.0), RATE, subtype="FLOAT")
    sink, sink_out = _client(env, children, "sink", "idm-faults-sink", "12")
    midi = tmp_path / "clip.mid"
    res = subprocess.run(
        [*LIVE, "--input", str(clip), "--realtime", "--midi-api", "jack", "--midi-port", "idm-faults-sink",
         "--midi-file", str(midi), "--mode", "none", "--quiet"],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip
    try:
        sink.wait(10)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the MIDI sink did not get its notes: {res.returncode} {res.stderr[-3000:]}")
    arrived = int(sink_out.text().splitlines()[-1])
    assert res.returncode == 1, res.stderr
    assert res.stderr.count("is gone") == 1, res.stderr  # warned once
    summary = next(ln for ln in res.stderr.splitlines() if "processed" in ln and "sent" in ln)
    sent = int(summary.split(" sent")[0].rsplit(" ", 1)[1])
    lost = int(summary.split(" not delivered")[0].rsplit(" ", 1)[1])
    recorded = [m for m in mido.MidiFile(str(midi)) if m.type == "note_on" and m.velocity > 0]
    assert sent == len(recorded) > arrived + 10, (sent, arrived, res.stderr)  # the file went on to the end
    # counted as delivered: what arrived, plus at most the notes sent between the sink's exit and the next check of
    # the port (every 0.25 s; more on a loaded machine, where notes leave late and in bursts)
    assert arrived <= sent - lost <= arrived + 6, (sent, lost, arrived, res.stderr)
    errors = [ln for ln in res.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and f"{lost} of {sent} notes were not delivered" in errors[0]


def test_unwritable_midi_file_is_found_before_starting(tmp_path: Path):
    clip = tmp_path / "clip.wav"
    sf.write(str(clip), drum_loop(1.0), RATE, subtype="FLOAT")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    for bad, words in [
        (blocker / "take.mid", "is not a folder"),  # parent is a file
        (tmp_path, "is a folder"),
        (Path("/proc/idm-no-such-dir/take.mid"), "cannot write the MIDI file"),  # unwritable even for root
    ]:
        t0 = time.monotonic()
        res = subprocess.run([*LIVE, "--input", str(clip), "--midi-file", str(bad), "--stems-out", str(tmp_path / "o")],
                             capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
        assert res.returncode == 1, res.stderr
        lines = [ln for ln in res.stderr.strip().splitlines() if not ln.startswith("idm-live: ")]
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], res.stderr
        assert "latency" not in res.stderr  # found before anything was loaded or processed
        assert not (tmp_path / "o").exists() or not list((tmp_path / "o").iterdir())
        assert time.monotonic() - t0 < 60


def _start_file_run(clip: Path, out: Path, midi: Path) -> tuple[subprocess.Popen, Lines]:
    proc = subprocess.Popen(
        [*LIVE, "--input", str(clip), "--realtime", "--no-midi", "--midi-file", str(midi), "--stems-out", str(out),
         "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    err = Lines(proc.stderr)
    err.wait_for("idm-live: latency", 180, proc)
    return proc, err


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupted_file_run_keeps_a_partial_result(tmp_path: Path, sig):
    """A file run stopped halfway: exit 130, nothing under the final names, the partial result kept and labelled."""
    from idm.classes import CLASSES

    clip = tmp_path / "long.wav"
    sf.write(str(clip), np.tile(drum_loop(5.0), 6), RATE, subtype="FLOAT")  # 30 s, played in real time
    out, midi = tmp_path / "out", tmp_path / "long.mid"
    proc, err = _start_file_run(clip, out, midi)
    time.sleep(3.0)
    proc.send_signal(sig)
    proc.wait(120)
    stdout = proc.stdout.read() if proc.stdout else ""
    stderr = err.text()
    assert proc.returncode == 130, stderr
    assert "incomplete: the input stopped at" in stderr and "of 30.0 s" in stderr
    assert not (out / "long").exists() and not midi.exists()  # never presented as complete
    partial = out / "long.partial"
    assert f"partial {partial}/" in stdout and f"partial {tmp_path / 'long.partial.mid'}" in stdout
    note = (partial / "PARTIAL.txt").read_text()
    assert note.startswith("INCOMPLETE") and "interrupted" in note and "of 30.0 s" in note
    lengths = {sf.info(str(partial / f"{c}.wav")).frames for c in CLASSES}
    assert len(lengths) == 1 and 0 < lengths.pop() < 25 * RATE  # complete WAVs of what was processed
    ons = [m for m in mido.MidiFile(str(tmp_path / "long.partial.mid")) if m.type == "note_on" and m.velocity > 0]
    assert ons
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def _default_sigint() -> None:
    """In the child: Ctrl-C's default, as under a terminal. A suite started in the background of a shell without job
    control inherits SIGINT ignored, and Python then keeps it ignored: the interrupt would never arrive."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_idm_separate_interrupted_writes_nothing(tmp_path: Path):
    """`idm separate` on a long file, interrupted: exit 130, no folder under the final name, no hidden leftovers."""
    clip = tmp_path / "long.wav"
    sf.write(str(clip), np.tile(drum_loop(5.0), 36), RATE, subtype="FLOAT")  # 3 minutes
    out = tmp_path / "out"
    for sig in (signal.SIGINT, signal.SIGTERM):
        proc = subprocess.Popen(
            [sys.executable, "-c", "from idm.cli import main; main()", "separate", str(clip), "--out", str(out),
             "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint,
        )  # fmt: skip
        t_end = time.monotonic() + 120
        while time.monotonic() < t_end and not (out.exists() and any(out.iterdir())):
            time.sleep(0.05)  # its hidden folder appears when the work starts
        time.sleep(0.5)
        proc.send_signal(sig)
        _out, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err
        assert f"error: interrupted: {clip} was not separated" in err, err
        assert not out.exists() or list(out.iterdir()) == [], list(out.iterdir())


def test_stale_partial_folders_are_removed(tmp_path: Path):
    """A run killed outright leaves its hidden folder; the next run removes it (its owner is gone) and says so."""
    clip = tmp_path / "long.wav"
    sf.write(str(clip), np.tile(drum_loop(5.0), 6), RATE, subtype="FLOAT")
    out, midi = tmp_path / "out", tmp_path / "k.mid"
    proc, _err = _start_file_run(clip, out, midi)
    time.sleep(1.0)
    proc.kill()
    proc.wait()
    stale = [p for p in out.iterdir() if p.name.startswith(".")]
    assert [p.name for p in stale] == [".long.partial"]
    assert (stale[0] / ".idm-owner").is_file()
    foreign = out / ".other.partial"  # no owner file (an older version's): reported, left alone
    foreign.mkdir()
    short = tmp_path / "short.wav"
    sf.write(str(short), drum_loop(1.0), RATE, subtype="FLOAT")
    res = subprocess.run([*LIVE, "--input", str(short), "--stems-out", str(out)], capture_output=True, text=True,
                         timeout=300, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert f"removed {stale[0]}: unfinished output of a run that was killed (pid {proc.pid})" in res.stderr
    assert f"{foreign}: unfinished output of an interrupted run (not removed" in res.stderr
    assert not stale[0].exists() and foreign.is_dir()
    assert sorted(p.name for p in out.iterdir()) == [".other.partial", "short"]


def test_two_runs_one_output_name(tmp_path: Path):
    """Two idm-live runs started together on the same output without --force: one writes it, the other is refused
    at once (the hidden folder is claimed by an atomic rename); the result of neither is lost."""
    clip = tmp_path / "song.wav"
    sf.write(str(clip), drum_loop(3.0), RATE, subtype="FLOAT")
    out = tmp_path / "out"
    cmd = [*LIVE, "--input", str(clip), "--stems-out", str(out), "--quiet"]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    codes = sorted(p.returncode for p in procs)
    errs = "\n".join(e for _, e in results)
    if codes == [0, 0]:  # one finished before the other claimed the name: then the second must have been refused
        pytest.fail(f"both runs claim success on one output: {errs}")
    assert codes == [0, 1], errs
    loser = next(e for (_, e), p in zip(results, procs, strict=True) if p.returncode == 1)
    names = sorted(p.name for p in out.iterdir())
    if names == ["song", "song-2"]:  # both claimed in turn: the last commit refused to replace and kept its result
        assert "this run's result is in" in loser, loser
    else:
        assert names == ["song"], names
        assert "another run (pid" in loser or "output folder exists" in loser, loser


def test_commit_never_replaces_a_folder_written_meanwhile(tmp_path: Path):
    """The last step itself refuses to replace: a folder that appeared after the start check is kept, and this
    run's result goes beside it under a free name (in-process, two OutputFolders standing for two runs)."""
    from idm.runtime.outputs import OutputFolder

    from idm.errors import OutputError

    a = OutputFolder(tmp_path, "song")
    (a.path / "kick.wav").write_bytes(b"a")
    other = tmp_path / "song"
    other.mkdir()
    (other / "kick.wav").write_bytes(b"theirs")
    with pytest.raises(OutputError, match=r"written by another run meanwhile \(kept\); this run's result is in"):
        a.commit()
    assert (other / "kick.wav").read_bytes() == b"theirs"
    assert (tmp_path / "song-2" / "kick.wav").read_bytes() == b"a"
    b = OutputFolder(tmp_path, "tune")
    with pytest.raises(OutputError, match=rf"another run \(pid {os.getpid()}\) is writing this output now"):
        OutputFolder(tmp_path, "tune")
    b.discard()


def test_stalled_stream_is_lost_and_never_waited_for():
    """A stream whose callbacks stop (PortAudio still says active) is found lost after the stall time, and stop/close
    then return at once without touching PortAudio (whose calls block for good once a JACK server is gone)."""
    pytest.importorskip("sounddevice")
    from idm.runtime.audio_io import AudioStream, StreamSpec

    calls: list[str] = []

    class Hanging:
        active = True

        def stop(self):
            calls.append("stop")
            time.sleep(3600)

        def close(self):
            calls.append("close")
            time.sleep(3600)

    st = AudioStream(StreamSpec(input_device=0, host_api="JACK Audio Connection Kit"), 44100)
    st._stream = Hanging()
    st._started = True
    st._seen = (st.frames, time.monotonic())
    assert st.failure(stall=0.2) is None
    st.frames += 256  # a callback ran
    time.sleep(0.1)
    assert st.failure(stall=0.2) is None
    time.sleep(0.3)
    why = st.failure(stall=0.2)
    assert why is not None and "JACK server stopped responding" in why and st.lost
    t0 = time.monotonic()
    assert st.stop() is False and st.close() is False and st.abandoned
    assert time.monotonic() - t0 < 0.1 and calls == []
    # a stream that is not lost but whose stop hangs: abandoned after the timeout, never waited for longer
    st2 = AudioStream(StreamSpec(input_device=0), 44100)
    st2._stream = Hanging()
    t0 = time.monotonic()
    assert st2.stop(timeout=0.3) is False and st2.abandoned
    assert 0.25 < time.monotonic() - t0 < 2.0 and calls == ["stop"]
    assert st2.close() is False and calls == ["stop"]
