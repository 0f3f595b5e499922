"""Training pack round trip (kits as 16-bit FLAC + GMD subset) and the 'idm data' commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from datafixtures import make_folder_kit, make_gmd, make_hydrogen_kit, one_shot, write_midi, write_wav
from typer.testing import CliRunner

from idm.classes import CLASSES
from idm.cli import app
from idm.data.gmd import GrooveMidi
from idm.data.kits import load_kit, load_kits
from idm.data.pack import PACK_FORMAT, load_pack_kits, write_pack
from idm.errors import DataError, OutputError

runner = CliRunner()


@pytest.fixture
def kits_root(tmp_path: Path) -> Path:
    root = tmp_path / "share"
    make_hydrogen_kit(root / "hydrogen" / "data" / "drumkits" / "VariBreaks")
    make_hydrogen_kit(root / "hydrogen" / "data" / "drumkits" / "ColomboAcousticDrumkit")
    return root


def test_pack_round_trip(tmp_path: Path, kits_root: Path) -> None:
    gmd = make_gmd(tmp_path / "gmd")
    out = tmp_path / "pack"
    names = ["VariBreaks", "ColomboAcousticDrumkit"]
    rep = write_pack(gmd, out, kits_root, kits=names)
    assert rep.kits == 2 and rep.performances == 3 and rep.bytes > 0
    meta = json.loads((out / "kits.json").read_text())
    assert meta["format"] == PACK_FORMAT and [k["license"] for k in meta["kits"]] == [
        "GPL-2+",
        "GPL-2+ (with a composition exception)",
    ]
    orig, packed = load_kits(names, kits_root), load_pack_kits(out)
    assert [k.name for k in packed] == names and [k.role for k in packed] == ["augmentation", "validation"]
    for a, b in zip(orig, packed, strict=True):
        assert a.license == b.license and a.present == b.present
        for cls in CLASSES:
            for ia, ib in zip(a.instruments[cls], b.instruments[cls], strict=True):
                assert (ia.name, ia.notes) == (ib.name, ib.notes)
                for la, lb in zip(ia.layers, ib.layers, strict=True):
                    assert (la.vel_lo, la.vel_hi) == (lb.vel_lo, lb.vel_hi) and la.audio.size == lb.audio.size
                    # Equal played samples, within 16-bit quantisation of the peak-normalised sample.
                    step = la.gain * float(np.abs(la.audio).max()) / 32767
                    np.testing.assert_allclose(lb.audio * lb.gain, la.audio * la.gain, rtol=0, atol=0.51 * step)
    # The loaders take the pack as a kits root; the pack's GMD root has train + validation only.
    assert load_kit("VariBreaks", out).n_layers == orig[0].n_layers
    g = GrooveMidi(out / "gmd")
    assert {p.split for p in g.performances} == {"train", "validation"} and (out / "gmd" / "events.npz").is_file()
    src = GrooveMidi(gmd)
    for p in g.performances:
        np.testing.assert_array_equal(g.events(p).time, src.events(p).time)
    with pytest.raises(DataError, match="no kit 'ForzeeStereo' in this pack"):
        load_pack_kits(out, ["ForzeeStereo"])


def test_pack_round_trip_with_a_pool(tmp_path: Path) -> None:
    # A kits root with lmms-like folders: the registered "LMMS Pool" finds its files there.
    root = tmp_path / "share"
    drums, beats = root / "lmms" / "samples" / "drums", root / "lmms" / "samples" / "beats"
    for i, (name, freq) in enumerate([("kick01", 55), ("snare02", 200), ("hihat_closed01", 7000),
                                      ("hihat_foot_pedal01", 5000), ("tom03", 80), ("clap01", 900)]):  # fmt: skip
        write_wav(drums / f"{name}.wav", one_shot(0.3, freq, i))
    write_wav(beats / "break01.wav", one_shot(1.0, 100, 9))
    gmd = make_gmd(tmp_path / "gmd")
    out = tmp_path / "pack"
    rep = write_pack(gmd, out, root, kits=["LMMS Pool"])
    assert rep.kits == 1 and rep.layers == 5  # the clap and the loop are not in the pool
    meta = json.loads((out / "kits.json").read_text())
    assert [(k["name"], k["role"], k["license"]) for k in meta["kits"]] == [("LMMS Pool", "pool", "GPL-2+")]
    (orig,) = load_kits(["LMMS Pool"], root)
    (packed,) = load_pack_kits(out)
    assert packed.role == "pool" and packed.present == orig.present == (
        "kick", "snare", "hihat_closed", "tom_floor")  # fmt: skip
    for cls in CLASSES:
        for ia, ib in zip(orig.instruments[cls], packed.instruments[cls], strict=True):
            assert (ia.name, ia.notes) == (ib.name, ib.notes)
            (la,), (lb,) = ia.layers, ib.layers
            step = la.gain * float(np.abs(la.audio).max()) / 32767
            np.testing.assert_allclose(lb.audio * lb.gain, la.audio * la.gain, rtol=0, atol=0.51 * step)
    assert [i.notes for i in packed.instruments["hihat_closed"]] == [(), (44,)]
    assert load_kit("LMMS Pool", out).role == "pool"  # a pack is a kits root for pools too


def test_pack_refuses_to_overwrite(tmp_path: Path, kits_root: Path) -> None:
    gmd = make_gmd(tmp_path / "gmd")
    out = tmp_path / "pack"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(OutputError, match="--force"):
        write_pack(gmd, out, kits_root, kits=["VariBreaks"])
    assert (out / "mine.txt").read_text() == "keep"
    write_pack(gmd, out, kits_root, kits=["VariBreaks"], force=True)
    assert not (out / "mine.txt").exists() and (out / "kits.json").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".pack.")]  # no temporary folder left


def test_bad_pack(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a data pack"):
        load_pack_kits(tmp_path)
    (tmp_path / "kits.json").write_text('{"format": "other"}')
    with pytest.raises(DataError, match="unknown pack format"):
        load_pack_kits(tmp_path)


def test_cli_pack_and_bad_inputs(tmp_path: Path, kits_root: Path) -> None:
    r = runner.invoke(app, ["data", "pack", "--gmd", str(tmp_path / "nope"), "--out", str(tmp_path / "p")])
    assert r.exit_code == 1 and "error:" in r.output and "root not found" in r.output
    r = runner.invoke(app, ["data", "kits", "--kits-root", str(tmp_path / "empty")])
    assert r.exit_code == 1 and "install the Debian packages hydrogen-drumkits" in r.output


def test_cli_render(tmp_path: Path) -> None:
    import soundfile as sf

    midi = tmp_path / "x.mid"
    write_midi(midi, [(0.1, 36, 100), (0.5, 38, 90), (0.75, 46, 80), (1.0, 42, 80), (1.2, 49, 100)])
    kit = make_folder_kit(tmp_path / "kit")
    out = tmp_path / "o" / "x.wav"
    r = runner.invoke(app, ["data", "render", str(midi), "--kit", str(kit), "--out", str(out), "--stems"])
    assert r.exit_code == 0, r.output
    assert "4 of 5 hits" in r.output  # the folder kit has no crash
    mix, sr = sf.read(str(out), dtype="float32")
    assert sr == 44100 and mix.size > 1.2 * sr
    stems = np.stack([sf.read(str(out.with_name("x_stems") / f"{c}.wav"), dtype="float32")[0] for c in CLASSES])
    np.testing.assert_allclose(stems.sum(0), mix, atol=1e-6)
    r = runner.invoke(app, ["data", "render", str(midi), "--kit", str(kit), "--out", str(out)])
    assert r.exit_code == 1 and "--force" in r.output
    r = runner.invoke(app, ["data", "render", str(midi), "--kit", "Nope", "--out", str(tmp_path / "y.wav")])
    assert r.exit_code == 1 and "unknown kit 'Nope'" in r.output
