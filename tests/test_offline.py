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
    worst = 0.0
    for cls in CLASSES:
        a, sra = sf.read(str(tmp_path / "s" / name / f"{cls}.wav"), dtype="float32")
        b, srb = sf.read(str(out.folder / f"{cls}.wav"), dtype="float32")
        assert sra == srb == info.samplerate and a.shape == b.shape == (info.frames,)
        worst = max(worst, float(np.abs(a - b).max()))
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
