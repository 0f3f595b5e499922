"""Torch-free offline separation (``idm separate`` on bundles): equal to streaming the file and to the torch backend,
models by name, ``idm info``/``idm models``, and one-line errors where PyTorch is needed but absent."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import drum_loop
from test_live_file import live, notes_of

from idm.classes import CLASSES, GROUPS

#: Run the idm CLI with torch (and onnx) made unimportable: what a torch-free installation sees.
NO_TORCH = (
    "import sys; sys.modules['torch'] = None; sys.modules['onnx'] = None; "
    "from idm.cli import main; sys.argv = ['idm', *sys.argv[1:]]; main()"
)
NO_TORCH_EXPORT = (
    "import sys; sys.modules['torch'] = None; sys.modules['onnx'] = None; "
    "from idm.export.cli import main; sys.argv = ['idm-export', *sys.argv[1:]]; main()"
)


def run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, check=False,
        env=dict(os.environ),
    )  # fmt: skip


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import soxr

    d = tmp_path_factory.mktemp("clips")
    sf.write(str(d / "loop.wav"), drum_loop(4.0), 44100, subtype="FLOAT")
    y = soxr.resample(drum_loop(3.0, seed=3), 44100, 48000)[:-37]
    sf.write(str(d / "loop48.wav"), np.stack([y, 0.5 * y], axis=1), 48000, subtype="FLOAT")
    return {"loop": d / "loop.wav", "loop48": d / "loop48.wav"}


@pytest.mark.parametrize(("name", "mode"), [("loop", "masked"), ("loop48", "masked"), ("loop", "synth")])
def test_offline_equals_streaming_the_file(name: str, mode: str, clips: dict[str, Path], tmp_path: Path) -> None:
    from idm.runtime.offline import OfflineConfig, OfflineSeparator

    from idm.models import resolve_bundle

    bundle = resolve_bundle("live")
    res = live("--input", str(clips[name]), "--bundle", str(bundle), "--stems-out", str(tmp_path / "s"), "--mode",
               mode, "--quiet")  # fmt: skip
    assert res.returncode == 0, res.stderr
    sep = OfflineSeparator(bundle, OfflineConfig(mode=mode))
    out = sep.separate_file(clips[name], tmp_path / "o")
    assert out.folder == tmp_path / "o" / name
    info = sf.info(str(clips[name]))
    channels = info.channels if mode == "masked" else 1  # stereo masked stems stay stereo; idm-live is mono
    worst = 0.0
    for cls in CLASSES:
        a, sra = sf.read(str(tmp_path / "s" / name / f"{cls}.wav"), dtype="float32")
        b, srb = sf.read(str(out.folder / f"{cls}.wav"), dtype="float32", always_2d=True)
        assert sra == srb == info.samplerate and a.shape == (info.frames,) and b.shape == (info.frames, channels)
        worst = max(worst, float(np.abs(a - b.mean(axis=1)).max()))  # masks are linear in the mix
    assert worst < 1e-4, worst
    streamed = notes_of(tmp_path / "s" / name / f"{name}.mid")
    assert len(streamed) >= 10 and notes_of(out.folder / f"{name}.mid") == streamed
    print(f"{name} {mode}: offline vs streamed stems max abs diff {worst:.2e}, {len(streamed) // 2} notes equal")


def test_five_stems_and_midi_only(clips: dict[str, Path], tmp_path: Path) -> None:
    from idm.runtime.offline import OfflineConfig, OfflineSeparator

    from idm.models import resolve_bundle

    bundle = resolve_bundle("live")
    nine = OfflineSeparator(bundle).separate_file(clips["loop"], tmp_path / "9").folder
    five = OfflineSeparator(bundle, OfflineConfig(stems=5)).separate_file(clips["loop"], tmp_path / "5").folder
    assert sorted(p.stem for p in five.glob("*.wav")) == sorted(GROUPS)
    toms = sum(sf.read(str(nine / f"{c}.wav"))[0] for c in ("tom_floor", "tom_mid", "tom_high"))
    np.testing.assert_allclose(sf.read(str(five / "toms.wav"))[0], toms, atol=1e-6)
    none = OfflineSeparator(bundle, OfflineConfig(mode="none")).separate_file(clips["loop"], tmp_path / "n")
    assert [p.name for p in none.folder.iterdir()] == ["loop.mid"]
    assert notes_of(none.folder / "loop.mid") == notes_of(nine / "loop.mid")


def test_onnx_and_torch_backends_agree(clips: dict[str, Path], tmp_path: Path) -> None:
    """The shipped live model: `--backend onnx` (bundle) and `--backend torch` (checkpoint), masked stems."""
    from typer.testing import CliRunner

    from idm.cli import app

    runner = CliRunner()
    for backend in ("onnx", "torch"):
        res = runner.invoke(app, ["separate", str(clips["loop"]), "-o", str(tmp_path / backend), "--backend",
                                  backend, "--quiet"])  # fmt: skip
        assert res.exit_code == 0, res.output
    worst = max(
        float(np.abs(sf.read(str(tmp_path / "onnx" / "loop" / f"{c}.wav"))[0]
                     - sf.read(str(tmp_path / "torch" / "loop" / f"{c}.wav"))[0]).max())
        for c in CLASSES
    )  # fmt: skip
    assert worst < 1e-4, worst
    assert notes_of(tmp_path / "onnx" / "loop" / "loop.mid") == notes_of(tmp_path / "torch" / "loop" / "loop.mid")
    print(f"onnx vs torch backend, masked stems: max abs diff {worst:.1e}")


def test_separate_runs_without_torch(clips: dict[str, Path], tmp_path: Path) -> None:
    res = run(NO_TORCH, "separate", str(clips["loop48"]), "-o", str(tmp_path), "--quiet")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "loop48" / "kick.wav").is_file() and (tmp_path / "loop48" / "loop48.mid").is_file()
    res = run(NO_TORCH, "separate", str(clips["loop"]), "-o", str(tmp_path / "p"), "--bundle", "paper", "--quiet")
    assert res.returncode == 0, res.stderr


def test_default_output_folder_is_separated(clips: dict[str, Path], tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "idm", "separate", str(clips["loop"]), "-q"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "separated" / "loop" / "loop.mid").is_file()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["separate", "X", "--backend", "torch"], ("needs torch", "pip install")),
        (["separate", "X", "--model", "my.ckpt"], ("needs torch", "pip install")),
        (["info", "IDM/weights/live/model.ckpt"], ("needs torch", "pip install")),
        (["train", "configs/tiny.yaml", "--data", "x", "--out", "y"], ("torch", "pip install")),
    ],
)
def test_torch_needed_is_one_line(args: list[str], words: tuple[str, ...], clips: dict[str, Path]) -> None:
    import idm

    args = [str(clips["loop"]) if a == "X" else a for a in args]
    args = [str(Path(idm.__file__).parent) + a[3:] if a.startswith("IDM/") else a for a in args]
    res = run(NO_TORCH, *args)
    assert res.returncode != 0
    lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
    assert all(w in lines[0] for w in words), lines[0]


def test_info_models_and_check_without_torch() -> None:
    res = run(NO_TORCH, "info", "paper")
    assert res.returncode == 0, res.stderr
    assert "latency" in res.stdout and "idm-paper" in res.stdout and "synth.onnx" in res.stdout
    res = run(NO_TORCH, "models")
    assert res.returncode == 0, res.stderr
    assert "live" in res.stdout and "paper" in res.stdout and "11.6 ms" in res.stdout and "435.4 ms" in res.stdout
    res = run(NO_TORCH_EXPORT, "--check", "live")
    assert res.returncode == 0, res.stderr
    assert "onnx.checker skipped" in res.stdout


def test_names_resolve_and_unknown_names_are_one_line(tmp_path: Path) -> None:
    from idm.errors import IDMError
    from idm.models import resolve_bundle, resolve_checkpoint, shipped_models

    assert [m.name for m in shipped_models()] == ["live", "paper"]
    assert resolve_bundle("paper").name == "bundle" and resolve_checkpoint("live").name == "model.ckpt"
    assert resolve_bundle(str(tmp_path)) == tmp_path  # a path stays a path
    with pytest.raises(IDMError, match="no shipped model 'studio'"):
        resolve_bundle("studio")


def test_midi_options_and_sensitivity_on_idm_separate(clips: dict[str, Path], tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from idm.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["separate", str(clips["loop"]), "-o", str(tmp_path / "a"), "--mode", "synth",
                              "--midi-channel", "1", "--note-map", "td", "--note-length", "20", "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    import mido

    msgs = [m for m in mido.MidiFile(str(tmp_path / "a" / "loop" / "loop.mid")) if m.type == "note_on"]
    assert msgs and {m.channel for m in msgs} == {0}
    default = notes_of(tmp_path / "a" / "loop" / "loop.mid")
    res = runner.invoke(app, ["separate", str(clips["loop"]), "-o", str(tmp_path / "b"), "--mode", "synth",
                              "--delta", "0.5", "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    fewer = notes_of(tmp_path / "b" / "loop" / "loop.mid")
    assert 0 < len(fewer) < len(default)
    res = runner.invoke(app, ["separate", str(clips["loop"]), "-o", str(tmp_path / "c"), "--mode", "synth",
                              "--delta", "kick=0.95,hihat_closed=0.95", "-q"])  # fmt: skip
    assert res.exit_code == 0, res.output
    some = notes_of(tmp_path / "c" / "loop" / "loop.mid")
    assert len(some) < len(default) and any(n[1] == 38 for n in some)  # kick and hats fewer, the snare kept
    for bad, word in (("cowbell=0.5", "CLASS=VALUE"), ("nan", "within"), ("2", "within"), ("x", "not a number")):
        res = runner.invoke(app, ["separate", str(clips["loop"]), "-o", str(tmp_path / "d"), "--delta", bad])
        assert res.exit_code == 2 and word in res.output, res.output
    res = runner.invoke(app, ["separate", str(clips["loop"]), "-o", str(tmp_path / "d"), "--midi-channel", "17"])
    assert res.exit_code == 2 and "1-16" in res.output


def test_live_file_defaults_to_separated_masked(clips: dict[str, Path], tmp_path: Path) -> None:
    """`idm-live --input FILE` with no output option writes masked stems to separated/, as idm separate does."""
    res = subprocess.run([sys.executable, "-c", "from idm.runtime.cli import main; main()", "--input",
                          str(clips["loop"]), "--quiet"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr
    res = subprocess.run([sys.executable, "-m", "idm", "separate", str(clips["loop"]), "-o", "offline", "-q"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr
    worst = max(
        float(np.abs(sf.read(str(tmp_path / "separated" / "loop" / f"{c}.wav"))[0]
                     - sf.read(str(tmp_path / "offline" / "loop" / f"{c}.wav"))[0]).max())
        for c in CLASSES
    )  # fmt: skip
    assert worst < 1e-4, worst  # masked, the default of both for files


def test_version_on_every_command() -> None:
    for code in ("from idm.cli import main; main()", "from idm.runtime.cli import main; main()",
                 "from idm.export.cli import main; main()"):  # fmt: skip
        res = subprocess.run([sys.executable, "-c", code, "--version"], capture_output=True, text=True, timeout=60,
                             check=False)  # fmt: skip
        assert res.returncode == 0 and res.stdout.startswith("inverse-drum-machine 0.1.0"), res.stdout + res.stderr


def test_transcribe_api_matches_the_file_path(clips: dict[str, Path], tmp_path: Path) -> None:
    from idm.runtime.offline import OfflineSeparator

    import idm
    from idm.models import resolve_bundle

    t = idm.transcribe(clips["loop48"])
    assert t.sample_rate == 48000 and t.stems is not None
    n = sf.info(str(clips["loop48"])).frames
    assert set(t.stems) == set(CLASSES) and all(v.shape == (n,) for v in t.stems.values())
    out = OfflineSeparator(resolve_bundle("live")).separate_file(clips["loop48"], tmp_path)
    assert [(h.cls, round(h.time, 6), h.velocity) for h in t.hits] == [
        (o.cls, round(o.time, 6), o.velocity) for o in out.onsets
    ]
    assert all(0.0 < h.probability <= 1.0 for h in t.hits)
    file_kick, _ = sf.read(str(out.folder / "kick.wav"), dtype="float32")
    assert file_kick.shape == (n, 2)  # the file keeps the input's stereo; transcribe() downmixes
    assert np.abs(t.stems["kick"] - file_kick.mean(axis=1)).max() < 1e-3  # one-shot vs streamed resampling
    x, sr = sf.read(str(clips["loop"]), dtype="float32")
    g = idm.transcribe(x, sr, stems="synth", groups=True)
    assert set(g.stems or {}) == {"kick", "snare", "toms", "hihat", "cymbals"} and g.hits
    assert idm.transcribe(x, sr, stems=None).stems is None
    from idm.errors import AudioInputError

    with pytest.raises(AudioInputError, match="sample_rate"):
        idm.transcribe(x)
    t.write_midi(tmp_path / "t.mid")
    assert notes_of(tmp_path / "t.mid") == notes_of(out.folder / "loop48.mid")


def test_separator_from_pretrained() -> None:
    from idm.separate import Separator

    sep = Separator.from_pretrained("live")
    assert sep.model.config.encoder.causal and sep.sample_rate == 44100
