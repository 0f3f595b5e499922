"""Hostile and broken input (issue 13): crafted WAV headers, huge samples, bundles that point outside their
folder or carry out-of-range fields, option values out of range, type-2 MIDI, idm-export output folders.

Every case wants the project's own one-line error and a non-zero exit: no traceback, no hang, no huge
allocation (the subprocess cases run under an address-space limit).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import mido
import numpy as np
import pytest
import soundfile as sf
from conftest import drum_loop
from idm.runtime.engine.bundle import load_bundle

from idm.audio import MAX_ABS_SAMPLE, read_audio
from idm.errors import AudioInputError, BundleError
from idm.midi import read_onsets
from idm.models import resolve_bundle

#: Address-space limit of the CLI subprocesses: a 1 Hz header once drove idm-live to 16.5 GB.
MEMORY_LIMIT = 6 * 2**30
BIN = Path(sys.executable).parent


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def cli(name: str, *args: str | Path, cwd: Path | None = None, timeout: float = 240) -> subprocess.CompletedProcess:
    """Run an installed console script (idm, idm-live, idm-export) for real, memory-limited."""
    return subprocess.run(
        [str(BIN / name), *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
        cwd=cwd,
        preexec_fn=_limit_memory,
        env={**os.environ, "COLUMNS": "200"},
    )


def assert_one_line(res: Any, *needles: str, code: int | None = None) -> str:
    """Exactly one ``error:`` line holding every needle, no traceback, a non-zero exit; returns that line."""
    text = (res.stdout or "") + (res.stderr or "") if hasattr(res, "stderr") else res.output
    rc = res.returncode if hasattr(res, "returncode") else res.exit_code
    assert rc != 0, text
    if code is not None:
        assert rc == code, (rc, text)
    assert "Traceback" not in text, text
    errors = [ln for ln in text.splitlines() if ln.startswith("error: ")]
    assert errors, text
    line = errors[0]
    for n in needles:
        assert n in line, (n, line)
    return line


# ---- audio ---------------------------------------------------------------------------------------------


def wav_with_rate(path: Path, rate: int, seconds: float = 1.0) -> Path:
    """A real float WAV whose header claims ``rate`` (the payload is ``seconds`` of drums at 44.1 kHz)."""
    sf.write(str(path), drum_loop(seconds), 44100, subtype="FLOAT")
    raw = bytearray(path.read_bytes())
    fmt = raw.index(b"fmt ")
    struct.pack_into("<I", raw, fmt + 12, rate)  # sample rate
    struct.pack_into("<I", raw, fmt + 16, (rate * 4) & 0xFFFFFFFF)  # byte rate
    path.write_bytes(bytes(raw))
    return path


@pytest.mark.parametrize("rate", [1, 7999, 384001, 1_000_000])
def test_unsupported_rate_in_process(tmp_path, rate):
    path = wav_with_rate(tmp_path / f"r{rate}.wav", rate)
    with pytest.raises(AudioInputError, match=r"sample rate \d+ Hz is not supported \(8000-384000 Hz"):
        read_audio(path, 44100)
    from idm.runtime.sources import FileSource

    with pytest.raises(AudioInputError, match="is not supported"):
        FileSource(path)


def test_one_hz_header_on_both_clis(tmp_path):
    path = wav_with_rate(tmp_path / "one_hz.wav", 1)
    res = cli("idm", "separate", path, "-o", tmp_path / "out", "-q")
    assert_one_line(res, "one_hz.wav", "sample rate 1 Hz is not supported")
    res = cli("idm-live", "-i", path, "--stems-out", tmp_path / "live", "-q", "--no-midi")
    assert_one_line(res, "one_hz.wav", "sample rate 1 Hz is not supported", code=1)
    assert not (tmp_path / "out" / "one_hz").exists() and not (tmp_path / "live" / "one_hz").exists()


def test_data_chunk_claiming_4_gib_reads_only_the_real_data(tmp_path):
    path = tmp_path / "liar.wav"
    x = drum_loop(1.0)
    sf.write(str(path), x, 44100, subtype="FLOAT")
    raw = bytearray(path.read_bytes())
    struct.pack_into("<I", raw, raw.index(b"data") + 4, 0xFFFFFF00)
    path.write_bytes(bytes(raw))
    clip = read_audio(path, 44100)
    assert clip.samples.size == x.size


@pytest.mark.parametrize("value", [3.4e38, -3.4e38, 1e5])
def test_huge_finite_samples_are_refused(tmp_path, value):
    x = drum_loop(1.0)
    x[5000] = value
    path = tmp_path / "huge.wav"
    sf.write(str(path), x, 44100, subtype="FLOAT")
    with pytest.raises(AudioInputError, match=r"sample 5000 is .*more than 1000 is refused"):
        read_audio(path, 44100)
    res = cli("idm", "separate", path, "-o", tmp_path / "out", "-q")
    assert_one_line(res, "huge.wav", "sample 5000", "refused")
    res = cli("idm-live", "-i", path, "--stems-out", tmp_path / "live", "-q", "--no-midi")
    assert_one_line(res, "huge.wav", "sample 5000", code=1)


def test_loud_but_accepted_input_gives_finite_stems(tmp_path):
    """Just under the limit is processed, and no stem sample is NaN or infinite."""
    x = drum_loop(1.0) * (0.99 * MAX_ABS_SAMPLE / np.abs(drum_loop(1.0)).max())
    path = tmp_path / "loud.wav"
    sf.write(str(path), x.astype(np.float32), 44100, subtype="FLOAT")
    res = cli("idm", "separate", path, "-o", tmp_path / "out", "-q")
    assert res.returncode == 0, res.stderr
    for stem in (tmp_path / "out" / "loud").glob("*.wav"):
        y, _ = sf.read(str(stem), dtype="float32")
        assert np.isfinite(y).all(), stem.name


def test_nan_in_a_live_file_run(tmp_path):
    x = drum_loop(1.0)
    x[30000] = np.nan
    path = tmp_path / "nan.wav"
    sf.write(str(path), x, 44100, subtype="FLOAT")
    res = cli("idm-live", "-i", path, "--stems-out", tmp_path / "live", "-q", "--no-midi")
    assert_one_line(res, "nan.wav", "NaN or infinite", "sample 30000", code=1)


def test_array_inputs_are_checked():
    from idm.runtime.sources import ArraySource

    with pytest.raises(AudioInputError, match="sample rate 1 Hz"):
        ArraySource(np.ones(100, np.float32), 1)
    with pytest.raises(AudioInputError, match="NaN or infinite"):
        ArraySource(np.array([0.1, np.inf], np.float32), 44100)
    with pytest.raises(AudioInputError, match="refused"):
        ArraySource(np.full((10, 2), 3e38, np.float32), 44100)  # would overflow to inf in the downmix


# ---- MIDI for --onsets ------------------------------------------------------------------------------------


def test_type2_midi_onsets(tmp_path):
    mid = mido.MidiFile(type=2)
    for note in (36, 38):
        mid.tracks.append(mido.MidiTrack([mido.Message("note_on", note=note, velocity=100, time=0)]))
    path = tmp_path / "async.mid"
    mid.save(str(path))
    with pytest.raises(AudioInputError, match="type-2 MIDI"):
        read_onsets(path)


# ---- bundles ------------------------------------------------------------------------------------------------


@pytest.fixture
def bundle_copy(tmp_path) -> Path:
    """A private copy of the shipped live bundle (torch-free, no export needed)."""
    dst = tmp_path / "bundle"
    shutil.copytree(resolve_bundle("live"), dst)
    return dst


def edit(bundle: Path, change: Callable[[dict], None]) -> None:
    m = json.loads((bundle / "manifest.json").read_text())
    change(m)
    (bundle / "manifest.json").write_text(json.dumps(m))


def sets(*keys: str | int, value: Any) -> Callable[[dict], None]:
    def change(m: dict) -> None:
        d: Any = m
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value

    return change


def drops(*keys: str) -> Callable[[dict], None]:
    def change(m: dict) -> None:
        d: Any = m
        for k in keys[:-1]:
            d = d[k]
        del d[keys[-1]]

    return change


BAD_MANIFESTS: list[tuple[str, Callable[[dict], None], str]] = [
    ("rate0", sets("audio", "sample_rate", value=0), "audio.sample_rate is 0"),
    ("rate_str", sets("audio", "sample_rate", value="44100"), "audio.sample_rate is a string"),
    ("rate_bool", sets("audio", "sample_rate", value=True), "audio.sample_rate is a boolean"),
    ("lookahead", sets("streaming", "lookahead_frames", value=-5), "streaming.lookahead_frames is -5"),
    ("pp_empty", sets("peak_picking", value={}), "missing key 'peak_picking.pre_max'"),
    ("pp_post0", sets("peak_picking", "post_max", value=0), "peak_picking.post_max is 0"),
    ("delta_nan", sets("peak_picking", "delta", value=float("nan")), "peak_picking.delta is nan"),
    ("delta_len", sets("peak_picking", "delta", value=[0.3] * 4), "4 values for 9 classes"),
    ("hop0", sets("frontend", "hop", value=0), "frontend.hop is 0"),
    ("n_fft_huge", sets("frontend", "n_fft", value=2**40), "frontend.n_fft is"),
    ("eps_neg", sets("frontend", "log_eps", value=-1.0), "frontend.log_eps is -1"),
    ("mel_up", sets("frontend", "mel_fb_file", value="../../../x.npy"), "frontend.mel_fb_file is '../../../x.npy'"),
    ("noise_abs", sets("graphs", "synth", "noise_file", value="/etc/passwd"), "noise_file is '/etc/passwd'"),
    ("parity_up", sets("parity", "file", value="../parity.npz"), "parity.file is '../parity.npz'"),
    ("parity_unhashed", sets("parity", "file", value="README.md"), "parity.file 'README.md' is not hashed"),
    ("files_up", sets("files", "../x.npy", value="0" * 64), "files names '../x.npy'"),
    ("state_huge", sets("graphs", "encoder", "state", 1, "shape", value=[2**20, 2**20]), "more than"),
    ("state_neg", sets("graphs", "encoder", "state", 1, "shape", value=[1, -4]), "shape[1] is -4"),
    ("classes", sets("classes", value=[]), "classes has 0 entries"),
    ("gm_note", sets("classes", 0, "gm_note", value=300), "classes[0].gm_note is 300"),
    ("latency", sets("streaming", "latency_samples", value=1), "streaming.latency_samples is 1"),
    ("no_streaming", drops("streaming"), "missing key 'streaming'"),
    ("tolerance", sets("parity", "tolerance", value={}), "parity.tolerance lacks"),
    ("top_list", lambda m: m.clear(), "'schema' is None"),
    ("n_samples", sets("graphs", "synth", "n_samples", value=10**12), "graphs.synth.n_samples is"),
]


@pytest.mark.parametrize(("name", "change", "needle"), BAD_MANIFESTS, ids=[c[0] for c in BAD_MANIFESTS])
def test_loader_and_check_agree_on_bad_manifests(bundle_copy, name, change, needle):
    from idm.export.cli import app
    from typer.testing import CliRunner

    edit(bundle_copy, change)
    with pytest.raises(BundleError) as info:
        load_bundle(bundle_copy)
    assert needle in str(info.value) and "\n" not in str(info.value)
    res = CliRunner().invoke(app, ["--check", str(bundle_copy)])
    line = assert_one_line(res, needle, code=1)
    assert line == f"error: {info.value}"


def test_symlink_out_of_the_bundle(bundle_copy, tmp_path):
    outside = tmp_path / "secret.npy"
    shutil.copy(bundle_copy / "mel_fb.npy", outside)
    (bundle_copy / "mel_fb.npy").unlink()
    (bundle_copy / "mel_fb.npy").symlink_to(outside)  # same bytes, same hash: only the location is wrong
    with pytest.raises(BundleError, match="a symlink out of the bundle folder"):
        load_bundle(bundle_copy)


def test_hash_covers_every_used_file(bundle_copy):
    np.save(bundle_copy / "mel_fb.npy", np.zeros((513, 128), np.float32))
    with pytest.raises(BundleError, match=r"mel_fb\.npy: sha256 mismatch"):
        load_bundle(bundle_copy)


def test_arrays_with_the_wrong_shape_are_refused(bundle_copy):
    from idm.files import sha256_file

    np.save(bundle_copy / "noise.npy", np.zeros((9, 10), np.float32))
    edit(bundle_copy, sets("files", "noise.npy", value=sha256_file(bundle_copy / "noise.npy")))
    b = load_bundle(bundle_copy)  # the hash matches: the shape check is what stops it
    with pytest.raises(BundleError, match=r"noise\.npy: the synthesizer noise must be a float array of shape"):
        b.noise()


def test_check_and_info_on_a_bundle_pointing_outside(bundle_copy, tmp_path):
    edit(bundle_copy, sets("frontend", "mel_fb_file", value=str(tmp_path / "x.npy")))
    assert_one_line(cli("idm-export", "--check", bundle_copy), "mel_fb_file", code=1)
    assert_one_line(cli("idm", "info", bundle_copy), "mel_fb_file")
    x = tmp_path / "in.wav"
    sf.write(str(x), drum_loop(1.0), 44100)
    assert_one_line(cli("idm-live", "-i", x, "--bundle", bundle_copy, "-q", "--no-midi"), "mel_fb_file", code=1)


# ---- option ranges --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "args", "needle"),
    [
        ("idm", ["separate", "X", "--threads", "0"], "'--threads'"),
        ("idm", ["separate", "X", "--chunk-seconds", "inf"], "'--chunk-seconds': inf"),
        ("idm", ["separate", "X", "--alpha", "nan"], "'--alpha': nan"),
        ("idm", ["separate", "X", "--delta", "nan"], "--delta 'nan'"),
        ("idm", ["separate", "X", "--midi-channel", "17"], "MIDI channel must be 1-16"),
        ("idm", ["separate", "X", "--note-length", "-inf"], "'--note-length'"),
        ("idm", ["demo", "--seconds", "inf"], "'--seconds': inf"),
        ("idm-live", ["-i", "X", "--threads", "100000"], "--threads must be 1-256"),
        ("idm-live", ["-i", "X", "--block-size", "1"], "--block-size must be 16..16384"),
        ("idm-live", ["--wait-ms", "nan"], "'--wait-ms': nan"),
        ("idm-live", ["--seconds", "-1"], "'--seconds'"),
        ("idm-live", ["--midi-tempo", "1e9"], "'--midi-tempo'"),
        ("idm-live", ["--delta", "crash=inf"], "--delta 'crash=inf'"),
        ("idm-export", ["--lookahead", "-5", "x.ckpt"], "'--lookahead'"),
    ],
)
def test_option_ranges(tmp_path, tool, args, needle):
    x = tmp_path / "X.wav"
    sf.write(str(x), drum_loop(1.0), 44100)
    res = cli(tool, *[str(x) if a == "X" else a for a in args], cwd=tmp_path)
    assert_one_line(res, needle)
    assert not (tmp_path / "separated").exists()


# ---- idm-export output folders --------------------------------------------------------------------------------


def test_export_force_never_deletes_a_folder_that_is_not_a_bundle(tiny_stream_ckpt, tmp_path):
    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("years of work")
    res = cli("idm-export", tiny_stream_ckpt, "-o", precious, "--force")
    assert_one_line(res, "not a bundle folder", code=1)
    assert (precious / "chapter1.tex").read_text() == "years of work"


def test_export_force_replaces_a_bundle_and_bad_outputs_are_one_line(tiny_stream_ckpt, tmp_path):
    from idm.export.cli import app
    from typer.testing import CliRunner

    runner = CliRunner()
    out = tmp_path / "b"
    assert runner.invoke(app, [str(tiny_stream_ckpt), "-o", str(out)]).exit_code == 0
    res = runner.invoke(app, [str(tiny_stream_ckpt), "-o", str(out), "--force"])
    assert res.exit_code == 0, res.output
    load_bundle(out)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert_one_line(runner.invoke(app, [str(tiny_stream_ckpt), "-o", str(afile / "sub")]), "afile is a file", code=1)
    ro = Path("/proc/idm-export-test")  # a real file system nobody (root included) can create folders in
    assert_one_line(runner.invoke(app, [str(tiny_stream_ckpt), "-o", str(ro)]), "idm-export-test", code=1)


def test_stems_writer_never_writes_nan(tmp_path):
    """The last guard: whatever a (broken) model outputs, a stem file never holds NaN or infinity."""
    from idm.runtime.stems_writer import StemsWriter

    from idm.errors import OutputError

    w = StemsWriter(tmp_path, 9, 44100, 44100, latency=0)
    w.write(0, np.zeros((9, 256), np.float32))
    bad = np.zeros((9, 256), np.float32)
    bad[4, 100] = np.inf
    with pytest.raises(OutputError, match=r"NaN or infinite samples \(output sample 356\)"):
        w.write(256, bad)
    w.close()
    y, _ = sf.read(str(tmp_path / "tom_floor.wav"))
    assert np.isfinite(y).all()


def test_stereo_file_is_downmixed_block_by_block(tmp_path):
    """read_audio (the torch backend's reader) never holds the stereo file whole: each block is downmixed as it is
    read, so the peak is about two mono copies (blocks, then their concatenation) plus one stereo block, where
    reading stereo first took four (about 85 MB here)."""
    import tracemalloc

    rng = np.random.default_rng(0)
    x = (0.1 * rng.standard_normal((44100 * 120, 2))).astype(np.float32)  # 2 min stereo: 42 MB as float32
    path = tmp_path / "stereo.wav"
    sf.write(str(path), x, 44100, subtype="FLOAT")
    tracemalloc.start()
    try:
        clip = read_audio(path, 44100)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert clip.source_channels == 2 and clip.n_source_samples == x.shape[0]
    assert np.allclose(clip.samples, x.mean(axis=1), atol=1e-7)
    assert peak < 1.25 * x.nbytes, f"peak {peak / 1e6:.1f} MB for a {x.nbytes / 1e6:.1f} MB stereo file"
