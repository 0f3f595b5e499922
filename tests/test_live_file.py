"""idm-live with a file input: same outputs as `idm separate --mode synth`, MIDI recording, Ctrl-C, bad inputs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf
from conftest import drum_loop

LIVE = [sys.executable, "-c", "from idm.runtime.cli import main; main()"]


def live(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*LIVE, *args], capture_output=True, text=True, timeout=timeout, check=False, env=env or dict(os.environ)
    )


def notes_of(path: Path) -> list[tuple[str, int, int, int]]:
    """(type, note, velocity, absolute tick) of every note message of a MIDI file."""
    out = []
    for track in mido.MidiFile(str(path)).tracks:
        tick = 0
        for m in track:
            tick += m.time
            if m.type in ("note_on", "note_off"):
                out.append((m.type, m.note, m.velocity, tick))
    return out


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A mono 44.1 kHz loop and a stereo 48 kHz one of odd length."""
    import soxr

    d = tmp_path_factory.mktemp("clips")
    x = drum_loop(5.0)
    sf.write(str(d / "loop.wav"), x, 44100, subtype="FLOAT")
    y = soxr.resample(drum_loop(4.0, seed=3), 44100, 48000)[:-37]
    sf.write(str(d / "loop48.wav"), np.stack([y, 0.5 * y], axis=1), 48000, subtype="FLOAT")
    return {"loop": d / "loop.wav", "loop48": d / "loop48.wav"}


@pytest.fixture(scope="module")
def separated(official_ckpt: Path, clips: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """`idm separate --mode synth` of both clips and `--mode masked` of the first (the Separator the CLI runs)."""
    import torch

    from idm.separate import Separator, SeparatorConfig

    torch.set_num_threads(2)
    out = {"synth": tmp_path_factory.mktemp("separate-synth"), "masked": tmp_path_factory.mktemp("separate-masked")}
    sep = Separator.from_checkpoint(official_ckpt, SeparatorConfig(mode="synth"))
    for p in clips.values():
        sep.separate_file(p, out["synth"])
    sep.config.mode = "masked"
    sep.separate_file(clips["loop"], out["masked"])
    return out


@pytest.mark.parametrize(("name", "mode"), [("loop", "synth"), ("loop48", "synth"), ("loop", "masked")])
def test_file_mode_equals_idm_separate(name, mode, clips, separated, official_bundle, tmp_path):
    from idm.classes import CLASSES

    separated = separated[mode]
    res = live(
        "--input", str(clips[name]), "--bundle", str(official_bundle), "--stems-out", str(tmp_path), "--mode", mode
    )
    assert res.returncode == 0, res.stderr
    assert f"wrote {tmp_path / name}/" in res.stdout
    info = sf.info(str(clips[name]))
    worst = 0.0
    for cls in CLASSES:
        a, sra = sf.read(str(separated / name / f"{cls}.wav"), dtype="float32")
        b, srb = sf.read(str(tmp_path / name / f"{cls}.wav"), dtype="float32")
        assert sra == srb == info.samplerate
        assert b.shape == a.shape == (info.frames,)  # latency removed, the input's length
        worst = max(worst, float(np.abs(a - b).max()))
    assert worst < 1e-4, worst
    offline = notes_of(separated / name / f"{name}.mid")
    streamed = notes_of(tmp_path / name / f"{name}.mid")
    assert len(offline) >= 10
    assert streamed == offline
    assert sorted(p.name for p in (tmp_path / name).iterdir()) == sorted(
        [f"{c}.wav" for c in CLASSES] + [f"{name}.mid"]
    )
    print(f"{name} {mode}: stems max abs diff vs idm separate {worst:.2e}, {len(offline) // 2} notes equal")


def test_five_stems_midi_file_and_force(clips, official_bundle, tmp_path):
    from idm.classes import GROUPS

    midi = tmp_path / "take.mid"
    args = ["--input", str(clips["loop"]), "--bundle", str(official_bundle), "--stems-out", str(tmp_path / "out"),
            "--stems", "5", "--midi-file", str(midi)]  # fmt: skip
    res = live(*args)
    assert res.returncode == 0, res.stderr
    folder = tmp_path / "out" / "loop"
    assert sorted(p.name for p in folder.iterdir()) == sorted([f"{g}.wav" for g in GROUPS] + ["loop.mid"])
    assert notes_of(midi) == notes_of(folder / "loop.mid")
    assert any(t == "note_on" for t, *_ in notes_of(midi))
    n = sf.info(str(clips["loop"])).frames
    assert all(sf.info(str(folder / f"{g}.wav")).frames == n for g in GROUPS)
    # again without --force: refused, nothing touched; with --force: replaced
    before = (folder / "kick.wav").stat().st_mtime_ns
    res = live(*args)
    assert res.returncode == 1
    assert res.stderr.strip().startswith("error: ") and len(res.stderr.strip().splitlines()) == 1
    assert (folder / "kick.wav").stat().st_mtime_ns == before
    res = live(*args, "--force")
    assert res.returncode == 0, res.stderr
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


def test_sigint_leaves_complete_files(official_bundle, tmp_path):
    """Ctrl-C during a real-time file run: complete files of the processed part, kept under names that say partial
    (``out/long.partial/``, ``rec.partial.mid``), exit 130 (tests/test_live_faults.py covers SIGTERM and the note)."""
    from idm.classes import CLASSES

    clip = tmp_path / "long.wav"
    sf.write(str(clip), np.tile(drum_loop(5.0), 6), 44100, subtype="FLOAT")  # 30 s, played in real time
    midi = tmp_path / "rec.mid"
    proc = subprocess.Popen(
        [*LIVE, "--input", str(clip), "--bundle", str(official_bundle), "--realtime", "--no-midi",
         "--midi-file", str(midi), "--stems-out", str(tmp_path / "out")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        t_end = time.monotonic() + 120
        while time.monotonic() < t_end and "latency" not in _peek(proc):
            time.sleep(0.1)
        time.sleep(4.0)  # a few seconds of real-time processing
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "stopping" in err and "incomplete" in err
    assert not midi.exists() and not (tmp_path / "out" / "long").exists()
    midi = tmp_path / "rec.partial.mid"
    notes = notes_of(midi)
    assert any(t == "note_on" for t, *_ in notes)
    assert sum(t == "note_on" for t, *_ in notes) == sum(t == "note_off" for t, *_ in notes)
    folder = tmp_path / "out" / "long.partial"
    lengths = {sf.info(str(folder / f"{c}.wav")).frames for c in CLASSES}
    assert len(lengths) == 1
    n = lengths.pop()
    # what was processed before the interrupt, not the whole file (on a loaded machine the run falls behind real time)
    assert 0 < n < 20 * 44100
    assert notes_of(folder / "long.mid") == notes
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".")]


_STDERR: dict[int, str] = {}


def _peek(proc: subprocess.Popen[str]) -> str:
    """Non-blocking read of what a child has written to stderr so far."""
    import fcntl

    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    fl = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, fl | os.O_NONBLOCK)
    try:
        chunk = os.read(fd, 65536).decode(errors="replace")
    except BlockingIOError:
        chunk = ""
    finally:
        fcntl.fcntl(fd, fcntl.F_SETFL, fl)
    _STDERR[proc.pid] = _STDERR.get(proc.pid, "") + chunk
    return _STDERR[proc.pid]


# ---- bad inputs: one line, exit 1 -----------------------------------------------------------------------------


def _one_line_error(res: subprocess.CompletedProcess[str], *words: str) -> None:
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.strip().splitlines() if not ln.startswith("idm-live: ")]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("error: "), res.stderr
    for w in words:
        assert w in lines[0], res.stderr


def test_missing_file(official_bundle, tmp_path):
    _one_line_error(live("--input", str(tmp_path / "nope.wav"), "--bundle", str(official_bundle)), "file not found")


def test_not_audio(official_bundle, tmp_path):
    bad = tmp_path / "bad.wav"
    bad.write_text("not audio")
    _one_line_error(live("--input", str(bad), "--bundle", str(official_bundle)), "not a readable audio file")


def test_silent_file(official_bundle, tmp_path):
    p = tmp_path / "silent.wav"
    sf.write(str(p), np.zeros(44100, np.float32), 44100)
    _one_line_error(live("--input", str(p), "--bundle", str(official_bundle), "--stems-out", str(tmp_path)), "silent")
    assert not list(tmp_path.glob(".silent*"))


def test_default_bundle_and_missing_env_bundle(clips, tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "IDM_BUNDLE"}
    res = live("--input", str(clips["loop"]), "--stems-out", str(tmp_path / "o"), "--mode", "synth", env=env)
    assert res.returncode == 0, res.stderr
    assert "latency 11.6 ms (512 samples" in res.stderr  # the shipped live model: causal, 512 samples
    res = live("--input", str(clips["loop"]), "--stems-out", str(tmp_path / "m"), env=env)
    assert res.returncode == 0, res.stderr
    assert "latency 34.8 ms (1536 samples" in res.stderr  # a file's default: masked stems, one FFT window more
    env["IDM_BUNDLE"] = str(tmp_path / "missing")
    _one_line_error(live("--input", str(clips["loop"]), env=env), "IDM_BUNDLE")


def test_not_a_bundle(clips, tmp_path):
    _one_line_error(live("--input", str(clips["loop"]), "--bundle", str(tmp_path)), "not an IDM bundle")


def test_bad_options(clips, official_bundle, tmp_path):
    b = ["--bundle", str(official_bundle)]
    _one_line_error(live("--input", str(clips["loop"]), *b, "--stems-out", str(tmp_path), "--mode", "none"), "--mode")
    _one_line_error(live("--input", str(clips["loop"]), *b, "--stems", "7"), "--stems")
    _one_line_error(live("--input", str(clips["loop"]), *b, "--block-size", "3"), "--block-size")
    _one_line_error(live("--input", "mic", *b, "--kit", "clip"), "--kit clip")
    _one_line_error(live("--input", str(clips["loop"]), *b, "--monitor", "kick"), "--monitor")


def test_unknown_device(official_bundle):
    res = live("--input", "mic", "--device", "no-such-device-xyz", "--bundle", str(official_bundle), "--no-midi")
    _one_line_error(res)
    assert "no-such-device-xyz" in res.stderr or "PortAudio" in res.stderr or "no audio" in res.stderr


def test_midi_port_impossible(clips, official_bundle):
    """No ALSA sequencer on these machines: a virtual ALSA port cannot exist; the message says what to do."""
    if Path("/dev/snd/seq").exists():
        pytest.skip("this machine has an ALSA sequencer")
    res = live("--input", str(clips["loop"]), "--bundle", str(official_bundle), "--realtime", "--midi-api", "alsa")
    _one_line_error(res, "MIDI", "--no-midi")


def test_demo_with_default_bundle(official_bundle, tmp_path):
    """`--input demo` finds its bundle through $IDM_BUNDLE and plays the loop in real time (clock or device)."""
    from idm.classes import CLASSES

    env = dict(os.environ, IDM_BUNDLE=str(official_bundle))
    t0 = time.monotonic()
    res = live("--input", "demo", "--seconds", "2", "--no-midi", "--stems-out", str(tmp_path), env=env)
    wall = time.monotonic() - t0
    assert res.returncode == 0, res.stderr
    folder = tmp_path / "demo_loop"
    assert {sf.info(str(folder / f"{c}.wav")).frames for c in CLASSES} == {2 * 44100}
    assert any(t == "note_on" for t, *_ in notes_of(folder / "demo_loop.mid"))
    assert wall > 2.0  # paced, not as fast as possible
