"""`idm separate` and `idm-live --input FILE` outputs for DAW users: note events, activations, sonification,
stem formats, folder inputs with --jobs, errors once on stderr, progress hidden off a terminal."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import drum_loop
from test_events_out import midi_notes, read_csv
from test_live_file import live
from test_offline import NO_TORCH, run

from idm.classes import CLASSES


def idm(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "idm", *args], capture_output=True, text=True, timeout=600,
                          check=False, cwd=cwd, env=dict(os.environ))  # fmt: skip


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import soxr

    d = tmp_path_factory.mktemp("clips")
    sf.write(str(d / "loop.wav"), drum_loop(3.0), 44100, subtype="FLOAT")
    y = soxr.resample(drum_loop(2.5, seed=3), 44100, 48000)[:-37]
    sf.write(str(d / "loop48.wav"), np.stack([y, 0.5 * y], axis=1), 48000, subtype="FLOAT")
    return {"loop": d / "loop.wav", "loop48": d / "loop48.wav"}


def check_events_and_activations(folder: Path, name: str) -> None:
    """CSV and MIDI agree note for note; each probability is the activations' value at the note's frame."""
    mid = midi_notes(folder / f"{name}.mid")
    rows = read_csv(folder / f"{name}.csv")
    assert mid and len(rows) == len(mid)
    for (t, note, vel), row in zip(sorted(mid), rows, strict=True):
        assert abs(float(row["time"]) - t) < 1e-9 and int(row["note"]) == note and int(row["velocity"]) == vel
    with np.load(folder / f"{name}_activations.npz") as d:
        prob, rate = d["onset_prob"], float(d["frame_rate"])
        assert tuple(d["class_names"]) == CLASSES and d["delta"].shape == (9,) and d["threshold"].shape == (9,)
    assert prob.shape[0] == 9 and abs(rate - 44100 / 256) < 1e-9
    for row in rows:
        j = round(float(row["time"]) * rate)  # the tick grid is 0.5 ms, a frame 5.8 ms
        assert abs(float(row["probability"]) - prob[CLASSES.index(row["class"]), j]) < 1e-5, row


def test_separate_writes_events_activations_and_sonification_without_torch(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    res = run(NO_TORCH, "separate", str(clips["loop48"]), "-o", str(tmp_path), "--events", "both",
              "--save-activations", "--sonify", "--note-map", "td", "-q")  # fmt: skip
    assert res.returncode == 0, res.stderr
    folder = tmp_path / "loop48"
    check_events_and_activations(folder, "loop48")
    son, sr = sf.read(str(folder / "loop48_sonified.wav"), dtype="float32")
    info = sf.info(str(clips["loop48"]))
    assert (
        sr == info.samplerate
        and son.shape == (info.frames,)
        and sf.info(str(folder / "loop48_sonified.wav")).subtype == "FLOAT"
    )
    first = min(float(r["time"]) for r in read_csv(folder / "loop48.csv"))
    onset = int(first * sr)
    assert np.abs(son[: max(0, onset - 64)]).max(initial=0.0) < 1e-6  # silent before the first note
    assert np.abs(son[onset : onset + sr // 20]).max() > 1e-3  # and sounding right after it
    import json

    doc = json.loads((folder / "loop48.json").read_text())
    assert doc["source"] == "loop48.wav" and len(doc["events"]) == len(read_csv(folder / "loop48.csv"))


def test_live_file_writes_the_same_events(clips: dict[str, Path], tmp_path: Path) -> None:
    res = live("--input", str(clips["loop"]), "--stems-out", str(tmp_path / "live"), "--events", "csv",
               "--save-activations", "--quiet")  # fmt: skip
    assert res.returncode == 0, res.stderr
    check_events_and_activations(tmp_path / "live" / "loop", "loop")
    res = idm("separate", str(clips["loop"]), "-o", str(tmp_path / "sep"), "--events", "csv", "-q")
    assert res.returncode == 0, res.stderr
    a, b = read_csv(tmp_path / "live" / "loop" / "loop.csv"), read_csv(tmp_path / "sep" / "loop" / "loop.csv")
    key = ("time", "class", "note", "velocity")
    assert [[r[k] for k in key] for r in a] == [[r[k] for k in key] for r in b]
    assert max(abs(float(r["probability"]) - float(q["probability"])) for r, q in zip(a, b, strict=True)) < 1e-5


def test_live_midi_file_events_beside_it_need_force(clips: dict[str, Path], tmp_path: Path) -> None:
    take = tmp_path / "take.mid"
    res = live("--input", str(clips["loop"]), "--midi-file", str(take), "--events", "json", "--mode", "none", "-q")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "take.json").is_file() and not (tmp_path / "take.csv").exists()
    (tmp_path / "take.csv").write_text("mine\n")
    take.unlink()
    res = live("--input", str(clips["loop"]), "--midi-file", str(take), "--events", "csv", "--mode", "none", "-q")
    assert res.returncode == 1 and "take.csv: file exists" in res.stderr and "--force" in res.stderr
    assert (tmp_path / "take.csv").read_text() == "mine\n" and not take.exists()
    res = live("--input", "demo", "--save-activations", "--stems-out", str(tmp_path / "d"), "--no-midi")
    assert res.returncode == 1 and "--save-activations needs a file input" in res.stderr


@pytest.mark.parametrize(("fmt", "ext", "subtype"),
                         [("wav16", "wav", "PCM_16"), ("wav24", "wav", "PCM_24"), ("float", "wav", "FLOAT"),
                          ("flac", "flac", "PCM_24")])  # fmt: skip
def test_stem_formats_round_trip(clips: dict[str, Path], tmp_path: Path, fmt: str, ext: str, subtype: str) -> None:
    from typer.testing import CliRunner

    from idm.cli import app

    out = tmp_path / fmt
    res = CliRunner().invoke(app, ["separate", str(clips["loop"]), "-o", str(out), "--format", fmt, "--mode",
                                   "synth", "--stems", "5", "--sonify", "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    folder = out / "loop"
    n = sf.info(str(clips["loop"])).frames
    files = sorted(folder.glob(f"*.{ext}"))
    assert len(files) == 6  # 5 groups + the sonification
    for f in files:
        info = sf.info(str(f))
        assert info.subtype == subtype and info.format == ext.upper() and info.frames == n and info.samplerate == 44100
    if fmt != "float":  # integer formats hold the float result to their resolution
        ref = tmp_path / "ref"
        res = CliRunner().invoke(app, ["separate", str(clips["loop"]), "-o", str(ref), "--mode", "synth", "--stems",
                                       "5", "-q"])  # fmt: skip
        assert res.exit_code == 0, res.output
        a, _ = sf.read(str(folder / f"kick.{ext}"), dtype="float32")
        b, _ = sf.read(str(ref / "loop" / "kick.wav"), dtype="float32")
        assert np.abs(a - np.clip(b, -1, 1)).max() < (2.0**-14 if subtype == "PCM_16" else 2.0**-22)


def test_bad_output_options_are_one_line(clips: dict[str, Path], tmp_path: Path) -> None:
    for args, words in ((["--format", "mp3"], "wav16, wav24, float, flac"), (["--events", "txt"], "none, csv"),
                        (["--sonify", "--sonify-kit", "No Such Kit"], "--sonify-kit No Such Kit"),
                        (["--jobs", "0"], "--jobs must be at least 1")):  # fmt: skip
        res = idm("separate", str(clips["loop"]), "-o", str(tmp_path / "o"), *args)
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert res.returncode == 2 and len(lines) == 1 and words in lines[0], res.stderr
        assert not (tmp_path / "o" / "loop").exists()


def test_folder_input_with_jobs_reports_each_failure_once(clips: dict[str, Path], tmp_path: Path) -> None:
    src = tmp_path / "takes"
    src.mkdir()
    for name in ("b.wav", "a.flac"):
        x, sr = sf.read(str(clips["loop"]), dtype="float32")
        sf.write(str(src / name), x, sr)
    (src / "c.wav").write_text("not audio")
    (src / "notes.txt").write_text("skip me")
    (src / ".hidden.wav").write_text("skip me too")
    res = idm("separate", str(src), "-o", str(tmp_path / "out"), "--jobs", "2", "--mode", "synth", "--events", "csv")
    assert res.returncode == 1
    err = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(err) == 2 and "c.wav: not a readable audio file" in err[0] and "1 of 3 inputs failed" in err[1], err
    assert "error" not in res.stdout and sorted(res.stdout.split()) == sorted(
        [
            str(src / "a.flac"),
            "->",
            f"{tmp_path / 'out' / 'a'}/",
            str(src / "b.wav"),
            "->",
            f"{tmp_path / 'out' / 'b'}/",
        ]
    )
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a", "b"]
    assert (tmp_path / "out" / "a" / "a.csv").is_file() and (tmp_path / "out" / "b" / "kick.wav").is_file()
    empty = tmp_path / "empty"
    empty.mkdir()
    res = idm("separate", str(empty), "-o", str(tmp_path / "out2"))
    assert res.returncode == 2 and "folder has no audio files" in res.stderr


def test_errors_once_on_stderr_and_no_bar_off_a_terminal(clips: dict[str, Path], tmp_path: Path) -> None:
    res = idm("separate", str(tmp_path / "missing.wav"), str(clips["loop"]), "-o", str(tmp_path / "o"))
    assert res.returncode == 1
    assert res.stderr.count("missing.wav: file not found") == 1 and "missing.wav" not in res.stdout
    assert "━" not in res.stdout + res.stderr and "eta" not in res.stdout + res.stderr  # no progress bar
    assert res.stdout.strip() == f"{clips['loop']} -> {tmp_path / 'o' / 'loop'}/"


def test_progress_view_counts_both_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    from idm.progress_view import SeparateView

    monkeypatch.setattr(Console, "is_terminal", property(lambda self: True))
    with SeparateView(2, quiet=False) as view:
        assert view.live
        update = view.file_progress(Path("x.wav"))
        update("analysing", 30, 100)
        task = view.progress.tasks[-1]
        assert (task.completed, task.total) == (30, 200) and "analysing" in task.description
        update("rendering", 50, 100)
        assert (task.completed, task.total) == (150, 200) and "rendering" in task.description
        view.done(Path("x.wav"), Path("o/x"), None)
        assert view.progress.tasks[0].completed == 1
    assert not SeparateView(1, quiet=True).live


def test_torch_backend_events_and_user_onsets(tiny_ckpt: Path, clips: dict[str, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from idm.cli import app
    from idm.midi import Onset, write_midi

    res = CliRunner().invoke(app, ["separate", str(clips["loop"]), "-o", str(tmp_path / "t"), "--model",
                                   str(tiny_ckpt), "--events", "csv", "--save-activations", "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    folder = tmp_path / "t" / "loop"
    rows = read_csv(folder / "loop.csv")
    mid = midi_notes(folder / "loop.mid")
    assert len(rows) == len(mid)
    assert all(abs(float(r["time"]) - t) < 1e-9 for r, (t, _, _) in zip(rows, sorted(mid), strict=True))
    with np.load(folder / "loop_activations.npz") as d:
        assert d["onset_prob"].shape[0] == 9 and np.all((d["onset_prob"] >= 0) & (d["onset_prob"] <= 1))
    hits = tmp_path / "hits.mid"
    write_midi([Onset("kick", 0.5, 100), Onset("snare", 1.0, 90)], hits)
    res = CliRunner().invoke(app, ["separate", str(clips["loop"]), "-o", str(tmp_path / "u"), "--model",
                                   str(tiny_ckpt), "--onsets", str(hits), "--events", "csv", "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    with open(tmp_path / "u" / "loop" / "loop.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["class"], r["probability"]) for r in rows] == [("kick", ""), ("snare", "")]
