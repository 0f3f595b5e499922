"""Every bad input gets a one-line error naming the file, a non-zero exit, and no partial output."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import drum_loop
from typer.testing import CliRunner

from idm.cli import app

runner = CliRunner()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "idm", *args], capture_output=True, text=True, check=False)


def separate(inp: Path, out: Path, model: Path, *extra: str):
    return runner.invoke(app, ["separate", str(inp), "-o", str(out), "--model", str(model), "-q", *extra])


def one_error_line(text: str, *needles: str) -> None:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    err = [ln for ln in lines if "error" in ln]
    assert err, text
    assert "Traceback" not in text
    for n in needles:
        assert any(n in ln for ln in err), (n, text)


def write(path: Path, x: np.ndarray, sr: int = 44100) -> Path:
    sf.write(str(path), x, sr)
    return path


@pytest.mark.parametrize(
    ("name", "make", "needle"),
    [
        ("missing.wav", None, "file not found"),
        ("notaudio.wav", lambda p: p.write_text("hello, not audio"), "not a readable audio file"),
        ("empty.wav", lambda p: write(p, np.zeros(0, np.float32)), "empty audio"),
        ("silent.wav", lambda p: write(p, np.zeros(44100, np.float32)), "silent"),
        ("onesample.wav", lambda p: write(p, np.full(1, 0.5, np.float32)), "too short"),
        ("threech.wav", lambda p: write(p, np.tile(drum_loop(1.0)[:, None], (1, 3))), "3 channels"),
    ],
)
def test_bad_audio_files(tiny_ckpt, tmp_path, name, make, needle):
    path = tmp_path / name
    if make is not None:
        make(path)
    res = separate(path, tmp_path / "out", tiny_ckpt)
    assert res.exit_code == 1
    one_error_line(res.output, name, needle)
    assert not (tmp_path / "out" / path.stem).exists()
    assert not list((tmp_path / "out").glob(".*")) if (tmp_path / "out").exists() else True


def test_nan_and_inf_samples(tiny_ckpt, tmp_path):
    x = drum_loop(1.0)
    x[1000] = np.nan
    x[2000] = np.inf
    path = write(tmp_path / "nan.wav", x, 44100)
    sf.write(str(path), x, 44100, subtype="FLOAT")
    res = separate(path, tmp_path / "out", tiny_ckpt)
    assert res.exit_code == 1
    one_error_line(res.output, "nan.wav", "NaN or infinite", "sample 1000")


@pytest.mark.parametrize("sr", [8000, 96000])
def test_unusual_rates_are_resampled(tiny_ckpt, tmp_path, sr):
    import soxr

    x = soxr.resample(drum_loop(1.5), 44100, sr).astype(np.float32)
    path = write(tmp_path / f"r{sr}.wav", x, sr)
    res = separate(path, tmp_path / "out", tiny_ckpt)
    assert res.exit_code == 0, res.output
    info = sf.info(str(tmp_path / "out" / f"r{sr}" / "kick.wav"))
    assert info.samplerate == sr and info.frames == x.size


def test_one_bad_file_does_not_stop_the_others(tiny_ckpt, tmp_path):
    good = write(tmp_path / "good.wav", drum_loop(1.0))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00garbage")
    res = runner.invoke(
        app, ["separate", str(bad), str(good), "-o", str(tmp_path / "o"), "--model", str(tiny_ckpt), "-q"]
    )
    assert res.exit_code == 1
    assert (tmp_path / "o" / "good" / "good.mid").is_file()
    assert not (tmp_path / "o" / "bad").exists()
    assert "1 of 2 inputs failed" in res.output


def test_existing_output_needs_force(tiny_ckpt, tmp_path):
    good = write(tmp_path / "loop.wav", drum_loop(1.0))
    mine = tmp_path / "o" / "loop"
    mine.mkdir(parents=True)
    (mine / "notes.txt").write_text("the user's own file")
    res = separate(good, tmp_path / "o", tiny_ckpt)
    assert res.exit_code == 1
    one_error_line(res.output, "output folder exists", "--force")
    assert (mine / "notes.txt").read_text() == "the user's own file"
    res = separate(good, tmp_path / "o", tiny_ckpt, "--force")
    assert res.exit_code == 0 and (mine / "kick.wav").is_file() and not (mine / "notes.txt").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere; covered by the file-as-folder case")
def test_unwritable_output(tiny_ckpt, tmp_path):
    good = write(tmp_path / "loop.wav", drum_loop(1.0))
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    res = separate(good, ro, tiny_ckpt)
    assert res.exit_code == 1
    one_error_line(res.output, "cannot write")


def test_output_path_is_a_file(tiny_ckpt, tmp_path):
    good = write(tmp_path / "loop.wav", drum_loop(1.0))
    blocker = tmp_path / "out.txt"
    blocker.write_text("a file where the output folder should go")
    res = separate(good, blocker, tiny_ckpt)
    assert res.exit_code == 1
    one_error_line(res.output, "cannot write")
    assert blocker.read_text().startswith("a file")


def test_bad_checkpoints(tiny_ckpt, official_ckpt, tmp_path):
    wav = write(tmp_path / "loop.wav", drum_loop(1.0))
    notckpt = tmp_path / "notes.ckpt"
    notckpt.write_text("not a checkpoint")
    truncated = tmp_path / "trunc.ckpt"
    truncated.write_bytes(tiny_ckpt.read_bytes()[:2000])
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hook": shutil.rmtree}, evil)  # unpickling would import and call code
    lonely = tmp_path / "lonely" / "official.ckpt"
    lonely.parent.mkdir()
    shutil.copy(official_ckpt, lonely)
    cases = [
        (notckpt, "not a readable"),
        (truncated, "truncated or corrupted"),
        (evil, "refused, unpickling it would run code (shutil.rmtree)"),
        (lonely, "without its config"),
        (tmp_path / "nope.ckpt", "checkpoint not found"),
    ]
    for ckpt, needle in cases:
        res = run("separate", str(wav), "-o", str(tmp_path / "o"), "--model", str(ckpt), "-q")
        assert res.returncode == 2, (ckpt, res.stderr)
        assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: "), res.stderr
        assert needle in res.stderr and str(ckpt.name) in res.stderr, res.stderr
        assert not (tmp_path / "o").exists()
    assert "model.yaml" in run("info", str(lonely)).stderr


def test_unknown_architecture_key(official_ckpt, tmp_path):
    import yaml

    cfg = yaml.safe_load((official_ckpt.parent / "model.yaml").read_text())
    cfg["encoder"]["backbone"]["fancy_attention"] = True
    folder = tmp_path / "ck"
    folder.mkdir()
    shutil.copy(official_ckpt, folder / "m.ckpt")
    (folder / "model.yaml").write_text(yaml.safe_dump(cfg))
    res = run("info", str(folder / "m.ckpt"))
    assert res.returncode == 2 and "encoder.backbone.fancy_attention" in res.stderr
    cfg["encoder"]["backbone"].pop("fancy_attention")
    cfg["decoder"]["sample_synth"]["norm"] = "batch"
    (folder / "model.yaml").write_text(yaml.safe_dump(cfg))
    res = run("info", str(folder / "m.ckpt"))
    assert res.returncode == 2 and "decoder.sample_synth.norm" in res.stderr and "'batch'" in res.stderr


def test_no_model_says_what_is_missing(tmp_path, monkeypatch):
    import idm.cli

    monkeypatch.delenv("IDM_MODEL", raising=False)
    monkeypatch.setattr(idm.cli, "default_model", lambda: None)  # an installation without shipped weights
    wav = write(tmp_path / "loop.wav", drum_loop(1.0))
    res = runner.invoke(app, ["separate", str(wav), "-o", str(tmp_path / "o"), "--backend", "torch"])
    assert res.exit_code == 2
    one_error_line(res.output, "no model", "--model")


def test_debug_shows_traceback(tiny_ckpt, tmp_path):
    res = run(
        "separate", str(tmp_path / "missing.wav"), "-o", str(tmp_path / "o"), "--model", str(tiny_ckpt), "--debug"
    )
    assert res.returncode != 0 and "Traceback" in res.stderr


def test_shipped_model_is_the_default(tmp_path, monkeypatch):
    import idm.cli

    monkeypatch.delenv("IDM_MODEL", raising=False)
    shipped = idm.cli.default_model()
    assert shipped is not None and shipped.name == "model.ckpt" and shipped.parent.name == "live"
    wav = write(tmp_path / "loop.wav", drum_loop(1.0))
    res = runner.invoke(app, ["separate", str(wav), "-o", str(tmp_path / "o"), "--quiet"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "loop" / "kick.wav").is_file() and (tmp_path / "o" / "loop" / "loop.mid").is_file()
