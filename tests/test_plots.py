"""Piano rolls (``idm separate --plot``): the numbers drawn are the separation's, the PNG is what it claims."""

from __future__ import annotations

import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import drum_loop
from typer.testing import CliRunner

from idm.classes import CLASSES
from idm.cli import app
from idm.peaks import PeakPicking, peak_pick
from idm.plots import (
    ROLL_SIZE,
    offline_piano_roll,
    piano_roll_data,
    piano_roll_figure,
    waveform_envelope,
    write_piano_roll,
)

runner = CliRunner()


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (fails on anything that is not a PNG)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def labelled(ax, label: str):
    lines = [ln for ln in ax.get_lines() if ln.get_label() == label]
    assert len(lines) == 1, [ln.get_label() for ln in ax.get_lines()]
    return lines[0]


@pytest.fixture(scope="module")
def loop_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("roll") / "loop.wav"
    sf.write(str(path), drum_loop(4.0), 44100, subtype="FLOAT")
    return path


def test_threshold_drawn_is_the_pickers(rng: np.random.Generator) -> None:
    """A frame is a candidate peak exactly where it is a local maximum and reaches the drawn threshold."""
    probs = rng.random((len(CLASSES), 400)) ** 4
    params = PeakPicking(pre_max=3, post_max=2, pre_avg=10, post_avg=3, delta=0.1, wait=0,
                         class_delta={"snare": 0.3}, threshold=0.05)  # fmt: skip
    picked = peak_pick(probs, params)
    ks, js = np.nonzero(picked)
    wave = (np.zeros(1), np.zeros(1), np.zeros(1))
    roll = piano_roll_data("t", wave, probs, 100.0, ks, js, params.deltas(CLASSES), np.full(9, 0.05), 10, 3)
    padded = np.pad(probs, ((0, 0), (3, 1)), constant_values=-np.inf)
    local_max = probs == np.lib.stride_tricks.sliding_window_view(padded, 5, axis=1).max(axis=2)
    expect = local_max & (probs >= roll.thresholds.astype(np.float64) - 1e-6)
    assert np.array_equal(picked, expect)
    assert np.allclose(roll.hit_time, js / 100.0) and np.allclose(roll.hit_prob, probs[ks, js])


def test_waveform_envelope_is_min_and_max_of_the_downmix(rng: np.random.Generator, tmp_path: Path) -> None:
    x = rng.standard_normal((10_007, 2)).astype(np.float32) * 0.3
    path = tmp_path / "st.wav"
    sf.write(str(path), x, 8000, subtype="FLOAT")
    t, lo, hi = waveform_envelope(path, bins=100, block=1000)
    mono = x.mean(axis=1)
    span = -(-x.shape[0] // 100)
    assert lo.size == hi.size == t.size == -(-x.shape[0] // span)
    for b in (0, 37, lo.size - 1):
        seg = mono[b * span : (b + 1) * span]
        assert lo[b] == pytest.approx(seg.min(), abs=1e-6) and hi[b] == pytest.approx(seg.max(), abs=1e-6)
    assert 0 < t[0] < t[-1] < x.shape[0] / 8000


def test_figure_draws_the_rolls_numbers(rng: np.random.Generator, tmp_path: Path) -> None:
    probs = rng.random((9, 300)).astype(np.float32)
    ks, js = np.array([0, 4, 4, 8]), np.array([10, 20, 200, 299])
    wave = (np.linspace(0, 3, 50), -rng.random(50), rng.random(50))
    roll = piano_roll_data("clip.wav: model x", wave, probs, 100.0, ks, js, np.full(9, 0.2), np.zeros(9), 5, 5)
    fig = piano_roll_figure(roll)
    axes = fig.axes
    assert len(axes) == 10 and axes[0].get_title() == "clip.wav: model x"
    for k in range(9):
        ax = axes[k + 1]
        assert np.allclose(labelled(ax, "probability").get_ydata(), probs[k])
        assert np.allclose(labelled(ax, "probability").get_xdata(), np.arange(300) / 100.0)
        assert np.allclose(labelled(ax, "threshold").get_ydata(), roll.thresholds[k])
        hits = labelled(ax, "hits")
        assert np.allclose(hits.get_xdata(), js[ks == k] / 100.0)
        assert np.allclose(hits.get_ydata(), probs[k, js[ks == k]])
    out = write_piano_roll(roll, tmp_path / "roll.png")
    assert png_size(out) == ROLL_SIZE


def test_offline_roll_is_the_separations_own_numbers(loop_wav: Path, tmp_path: Path) -> None:
    from idm.runtime.offline import OfflineConfig, OfflineSeparator

    from idm.models import resolve_bundle

    sep = OfflineSeparator(resolve_bundle("live"), OfflineConfig(mode="none"))
    result = sep.separate_file(loop_wav, tmp_path / "out")
    roll = offline_piano_roll(sep, loop_wav, result, "live")
    assert result.analysis.onset_prob is not None
    assert np.array_equal(roll.onset_probs, result.analysis.onset_prob.astype(np.float32))
    assert len(result.onsets) >= 8 and roll.hit_time.size == len(result.onsets)
    assert [CLASSES[k] for k in roll.hit_class] == [o.cls for o in result.onsets]
    assert np.allclose(roll.hit_time, [o.time for o in result.onsets], atol=1e-9)
    # every hit reached the drawn threshold (so the thresholds are the picker's, in its class order)
    assert np.all(roll.hit_prob >= roll.thresholds[roll.hit_class, np.round(roll.hit_time * 44100 / 256).astype(int)]
                  - 1e-6)  # fmt: skip
    assert "loop.wav" in roll.title and "live" in roll.title and f"{len(result.onsets)} hits" in roll.title


def test_separate_plot_writes_a_png_per_input(loop_wav: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["separate", str(loop_wav), "--out", str(tmp_path / "o"), "--plot", "--quiet"])
    assert res.exit_code == 0, res.output
    png = tmp_path / "o" / "loop" / "loop.png"
    assert png_size(png) == ROLL_SIZE
    res = runner.invoke(app, ["separate", str(loop_wav), "--out", str(tmp_path / "n"), "--quiet"])
    assert res.exit_code == 0 and not (tmp_path / "n" / "loop" / "loop.png").exists()


def test_separate_plot_on_the_torch_backend(loop_wav: Path, tiny_ckpt: Path, tmp_path: Path) -> None:
    res = runner.invoke(app, ["separate", str(loop_wav), "--out", str(tmp_path / "o"), "--model", str(tiny_ckpt),
                              "--plot", "--quiet", "--threads", "1"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert png_size(tmp_path / "o" / "loop" / "loop.png") == ROLL_SIZE


def test_missing_matplotlib_is_one_line(loop_wav: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    res = runner.invoke(app, ["separate", str(loop_wav), "--out", str(tmp_path / "o"), "--plot"])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "pip install 'inverse-drum-machine[plot]'" in lines[0], res.output
    assert not (tmp_path / "o").exists()


def test_importing_plots_and_runtime_loads_no_matplotlib() -> None:
    code = "import sys, idm.plots, idm.runtime, idm.eval.figures; assert 'matplotlib' not in sys.modules, 'mpl'"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr


def _record(lat: list[float], **kw) -> dict:
    rec = {"model": "m", "sample_rate": 44100, "period": 256, "reported_latency_samples": 441, "expected_hits": 5,
           "notes_received": 5, "missed": 1, "late": 0, "latencies_ms": lat, "date_utc": "2026-12-01T00:00:00Z",
           "machine": {"cpus": 2, "load_avg_1min": 1.5}}  # fmt: skip
    return rec | kw


def test_latency_numbers_pooling_and_histogram(tmp_path: Path) -> None:
    from idm.plots import LATENCY_SIZE, latency_histogram, latency_stats, pool_latency_records, save_png

    st = latency_stats(np.arange(1.0, 101.0))
    assert st["median"] == 50.5 and st["p95"] == pytest.approx(95.05) and st["n"] == 100
    a, b = _record([9.5, 10.2, 10.4]), _record([11.9, 30.0], missed=0, machine={"cpus": 2, "load_avg_1min": 7.0})
    pooled = pool_latency_records([a, b])
    assert pooled["latencies_ms"] == [9.5, 10.2, 10.4, 11.9, 30.0] and pooled["runs"] == 2
    assert pooled["missed"] == 1 and pooled["expected_hits"] == 10 and pooled["machine"]["load_avg_1min"] == "1.5, 7"
    with pytest.raises(ValueError, match="reported_latency_samples"):
        pool_latency_records([a, _record([1.0], reported_latency_samples=442)])
    fig = latency_histogram(pooled)
    bars = [p for p in fig.axes[0].patches if p.get_gid() == "latency"]
    assert sum(p.get_height() for p in bars) == 5
    tallest = max(bars, key=lambda p: p.get_height())
    assert tallest.get_height() == 2 and tallest.get_x() <= 10.2 < tallest.get_x() + tallest.get_width()
    lines = {ln.get_label().split(" ")[0]: ln.get_xdata()[0] for ln in fig.axes[0].get_lines()}
    assert lines["median"] == pytest.approx(10.4) and lines["reported"] == pytest.approx(10.0)
    assert png_size(save_png(fig, tmp_path / "lat.png")) == LATENCY_SIZE


def test_plot_latency_script(tmp_path: Path) -> None:
    import json

    rec = tmp_path / "jack_latency.json"
    rec.write_text(json.dumps(_record([10.0, 11.0, 12.0, 40.0])))
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "plot_latency.py"
    res = subprocess.run([sys.executable, str(script), str(rec), "--out", str(tmp_path / "h.png")],
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "4 notes, median 11.5 ms, p95 35.8 ms" in res.stdout
    assert png_size(tmp_path / "h.png")[0] > 0


def test_checkpoint_roll_draws_the_separations_analysis_and_given_hits(loop_wav: Path, tiny_ckpt: Path,
                                                                       tmp_path: Path) -> None:  # fmt: skip
    from idm.midi import Onset, write_midi
    from idm.plots import checkpoint_piano_roll
    from idm.separate import Separator, SeparatorConfig

    given = [Onset("kick", 0.5, 100), Onset("snare", 1.0, 90), Onset("kick", 2.0, 80)]
    mid = tmp_path / "hits.mid"
    write_midi(given, mid)
    sep = Separator.from_checkpoint(tiny_ckpt, SeparatorConfig(mode="synth"))
    seen: dict = {}

    def keep(analysis, peaks, folder: Path) -> None:
        seen["roll"] = checkpoint_piano_roll(sep, loop_wav, analysis, peaks, "tiny", str(mid))
        seen["probs"] = analysis.onset_probs

    sep.separate_file(loop_wav, tmp_path / "o", onsets=mid, extra=keep)
    roll = seen["roll"]
    assert np.array_equal(roll.onset_probs, seen["probs"].astype(np.float32))
    assert [roll.classes[k] for k in roll.hit_class] == ["kick", "snare", "kick"]
    assert np.allclose(roll.hit_time, [0.5, 1.0, 2.0], atol=0.5 / sep.frame_rate)
    assert "3 hits from hits.mid (given, not picked)" in roll.title


def test_live_file_plot_draws_the_streamed_hits(loop_wav: Path, tmp_path: Path) -> None:
    """``idm-live --input FILE --plot``: a PNG beside the MIDI file, one triangle per MIDI note, nothing for mic."""
    from test_events_out import midi_notes
    from test_live_file import live

    res = live("--input", str(loop_wav), "--stems-out", str(tmp_path / "o"), "--plot", "--quiet")
    assert res.returncode == 0, res.stderr
    folder = tmp_path / "o" / "loop"
    assert png_size(folder / "loop.png") == ROLL_SIZE
    assert len(midi_notes(folder / "loop.mid")) >= 8
    res = live("--input", str(loop_wav), "--midi-file", str(tmp_path / "take.mid"), "--mode", "none", "--plot", "-q")
    assert res.returncode == 0 and png_size(tmp_path / "take.png") == ROLL_SIZE, res.stderr
    res = live("--input", "demo", "--plot", "--stems-out", str(tmp_path / "d"), "--no-midi", "--seconds", "1")
    assert res.returncode == 1 and "--plot needs a file input" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_live_file_roll_is_the_streams_numbers(loop_wav: Path, tmp_path: Path) -> None:
    """The roll drawn by idm-live: the clip's probabilities, the MIDI file's hits, each at or over its threshold."""
    from idm.runtime.builder import LiveOptions, build_session
    from idm.runtime.extras import ExtraOutputs
    from test_events_out import read_csv

    import idm.plots

    rolls: list = []
    real = idm.plots.write_piano_roll
    try:
        idm.plots.write_piano_roll = lambda roll, path, *a: rolls.append(roll) or real(roll, path, *a)
        opts = LiveOptions(input=str(loop_wav), midi_file=tmp_path / "take.mid", mode="none", midi=False,
                           extras=ExtraOutputs(events=("csv",), plot=True))  # fmt: skip
        session = build_session(opts, log=lambda _t: None)
        session.start()
        while not session.wait(0.05):
            pass
        session.close()
    finally:
        idm.plots.write_piano_roll = real
    assert len(rolls) == 1
    roll = rolls[0]
    rows = read_csv(tmp_path / "take.csv")
    assert [CLASSES[k] for k in roll.hit_class] == [r["class"] for r in rows]
    assert np.allclose(roll.hit_time, [float(r["time"]) for r in rows], atol=0.5 / 172.3)
    frames = np.round(roll.hit_time * 44100 / 256).astype(int)
    assert np.allclose(roll.hit_prob, [float(r["probability"]) for r in rows], atol=1e-5)
    assert np.all(roll.hit_prob >= roll.thresholds[roll.hit_class, frames] - 1e-6)
    assert "loop.wav" in roll.title and f"{len(rows)} hits" in roll.title


def test_spectrograms_draw_each_signal_on_a_common_scale(tmp_path: Path) -> None:
    from idm.plots import SPECTRO_SIZE, log_spectrogram, save_png, spectrogram_figure

    sr = 8000
    t = np.arange(sr) / sr
    tone = np.sin(2 * np.pi * 1000 * t).astype(np.float32)
    db, times, freqs = log_spectrogram(tone, sr, n_fft=512, hop=128)
    assert db.shape == (257, times.size) and abs(db.max()) < 1e-6
    assert abs(freqs[int(np.argmax(db[:, times.size // 2]))] - 1000) <= sr / 512  # the tone's bin
    fig = spectrogram_figure([("tone", tone), ("silence", np.zeros(sr, np.float32))], sr, "test")
    images = [c for ax in fig.axes for c in ax.collections if c.get_gid() == "spectrogram"]
    assert len(images) == 2 and all(im.get_clim() == (-80.0, 0.0) for im in images)
    assert png_size(save_png(fig, tmp_path / "s.png")) == SPECTRO_SIZE


def test_kit_transfer_figure_script(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "benchmarks/figure_kit_transfer.py", "--out", str(tmp_path / "k.png"),
                          "--wav-dir", str(tmp_path / "wav"), "--seconds", "2"], capture_output=True, text=True,
                         check=False, cwd=Path(__file__).resolve().parents[1])  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert png_size(tmp_path / "k.png")[0] > 0
    for name in ("original", "from_recording", "to_red_zeppelin"):
        x, sr = sf.read(str(tmp_path / "wav" / f"{name}.wav"))
        assert sr == 44100 and np.abs(x).max() > 0.1
