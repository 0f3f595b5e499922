"""Kit loaders: a tiny Hydrogen kit and one-shot folder the tests write, the installed AVL SoundFonts, the registry."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from datafixtures import SR, make_folder_kit, make_hydrogen_kit, one_shot

from idm.classes import CLASSES
from idm.data.kitmap import Assignment, load_kitmap
from idm.data.kits import DEFAULT_KITS_ROOT, load_folder, load_hydrogen, load_kit, load_sf2, loudness_db
from idm.data.sf2 import read_sf2
from idm.errors import DataError

AVL = DEFAULT_KITS_ROOT / "sounds" / "sf2" / "Black_Pearl_4_LV2.sf2"
HYDROGEN = DEFAULT_KITS_ROOT / "hydrogen" / "data" / "drumkits"


def _need(path: Path, package: str) -> Path:
    if not path.exists():
        msg = f"{path} not installed (Debian package {package}; 'make setup' installs it when run as root)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def _need_avl() -> Path:
    return _need(AVL, "avldrums.lv2-soundfont")


@pytest.mark.parametrize(
    ("name", "cls", "notes"),
    [
        ('Hi-Hat Pedal (Paiste Alpha Metal edge 14")', "hihat_closed", (44,)),
        ("VariBreaks Hat 1 Pd", "hihat_closed", (44,)),
        ("Sabian Hat Open", "hihat_open", ()),
        ("VariBreaks Hat 1 Op", "hihat_open", ()),
        ("Closed HH 3", "hihat_closed", ()),
        ("a#3 - hi-hat open", "hihat_open", ()),
        ('Ride Bell (Custom, Zagrebin 22")', "ride", (53,)),
        ("ride-crash20inch", "ride", ()),
        ("Crash Jazz", "crash", ()),
        ("c3 - bass drum 1", "kick", ()),
        ("BassDrum", "kick", ()),
        ("Snare Rock", "snare", ()),
        ('Tom Low (Tama Superstar 16")', "tom_floor", ()),
        ("c4 - middle tom", "tom_mid", ()),
        ("d4 - high tom", "tom_high", ()),
        ("Snare Rimshot", None, ()),
        ("Hand Clap", None, ()),
        ("Sabian Hat Semi-Open", None, ()),
        ("Cowbell", None, ()),
    ],
)
def test_name_rules(name: str, cls: str | None, notes: tuple[int, ...]) -> None:
    a = load_kitmap().classify(name)
    if cls is None:
        assert a is None
    else:
        assert a is not None and (a.cls, a.notes) == (cls, notes)


def test_hydrogen_loader(tmp_path: Path) -> None:
    folder = make_hydrogen_kit(tmp_path / "Tiny")
    km = load_kitmap()
    kit = load_hydrogen(folder, {"Weird Name": Assignment("tom_mid")})
    assert kit.name == "Tiny Kit" and kit.license == "CC0" and kit.author == "tests"
    assert kit.present == ("kick", "snare", "hihat_closed", "tom_mid")
    kick = kit.layers("kick")
    assert [(la.vel_lo, la.vel_hi) for la in kick] == [(0.0, 0.5), (0.5, 1.0)]
    # Relative layer gains survive normalisation (1.5 : 1), and the loudest layer meets the class target.
    assert kick[0].gain / kick[1].gain == pytest.approx(1.5)
    assert kit.instruments["kick"][0].loudest() == pytest.approx(km.loudness_db["kick"], abs=1e-6)
    assert kit.instruments["tom_mid"][0].loudest() == pytest.approx(km.loudness_db["tom_mid"], abs=1e-6)
    # Leading silence trimmed to 0.5 ms before the attack; the 48 kHz snare is resampled to 44.1 kHz.
    src = sf.read(str(folder / "kick_hard.wav"), dtype="float32")[0]
    head = kick[1].audio
    assert SR // 2000 <= np.argmax(np.abs(head) > 0.01 * np.abs(head).max()) <= SR // 2000 + 5
    assert abs(head.size - (src.size - 300)) < 40
    assert abs(kit.layers("snare")[0].audio.size - int(0.3 * SR) * 44100 / 48000) < 3
    # The pedal hat (old one-sample format) is an articulation for GMD note 44 only.
    pedal = kit.instruments["hihat_closed"][0]
    assert pedal.notes == (44,) and len(pedal.layers) == 1
    assert kit.main("hihat_closed") == (pedal,)  # no plain closed hat: the articulation plays all


def test_hydrogen_without_override_ignores_unknown_names(tmp_path: Path) -> None:
    kit = load_hydrogen(make_hydrogen_kit(tmp_path / "Tiny"), normalise_loudness=False)
    assert not kit.has("tom_mid") and not kit.has("tom_floor")
    assert kit.layers("kick")[0].gain == 1.5


def test_hydrogen_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no drumkit\.xml"):
        load_hydrogen(tmp_path)
    folder = make_hydrogen_kit(tmp_path / "Tiny")
    xml = folder / "drumkit.xml"
    xml.write_text(xml.read_text()[:300])
    with pytest.raises(DataError, match=r"broken drumkit\.xml"):
        load_hydrogen(folder)
    make_hydrogen_kit(folder)
    (folder / "snare.wav").unlink()
    with pytest.raises(DataError, match=r"snare\.wav: sample file not found"):
        load_hydrogen(folder)
    make_hydrogen_kit(folder)
    (folder / "snare.wav").write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(DataError, match="unreadable sample"):
        load_hydrogen(folder)
    make_hydrogen_kit(folder)
    xml.write_text(xml.read_text().replace("<min>0</min><max>0.5</max>", "<min>zero</min><max>0.5</max>"))
    with pytest.raises(DataError, match="not a number"):
        load_hydrogen(folder)


def test_folder_loader(tmp_path: Path) -> None:
    kit = load_folder(make_folder_kit(tmp_path / "oneshots"), name="mine")
    assert kit.present == ("kick", "snare", "hihat_closed", "hihat_open")
    assert [i.name for i in kit.instruments["kick"]] == ["a", "b"]
    assert [i.name for i in kit.instruments["hihat_open"]] == ["hihat_open"]
    assert [i.name for i in kit.instruments["hihat_closed"]] == ["hihat_closed_1"]
    (tmp_path / "none").mkdir()
    with pytest.raises(DataError, match="no one-shots found"):
        load_folder(tmp_path / "none")
    with pytest.raises(DataError, match="not found"):
        load_folder(tmp_path / "missing")


def test_silent_sample_is_refused(tmp_path: Path) -> None:
    sf.write(str(tmp_path / "kick.wav"), np.zeros(1000, np.float32), SR)
    with pytest.raises(DataError, match="silent sample"):
        load_folder(tmp_path)


def test_sf2_avl_black_pearl() -> None:
    path = _need_avl()
    font = read_sf2(path)
    # The hi-hats (closed, pedal, open) share one exclusive class: one choke group.
    groups = {k: {z.exclusive_class for z in font.key_zones(k)} for k in (42, 44, 46)}
    assert all(len(g) == 1 for g in groups.values()) and len(set.union(*groups.values())) == 1
    assert groups[42] != {0}
    entry = load_kitmap().entry("AVL Black Pearl 4")
    kit = load_sf2(path, entry.sf2_map, name=entry.name)
    assert kit.present == CLASSES
    kick = kit.layers("kick")
    assert len(kick) == 5
    # Velocity layers tile 1..127 without gaps or overlaps.
    ranges = sorted((round(la.vel_lo * 127), round(la.vel_hi * 127)) for la in kick)
    assert ranges[0][0] == 1 and ranges[-1][1] == 127
    assert all(b[0] == a[1] + 1 for a, b in itertools.pairwise(ranges))
    # No mid tom in the AVL kits: the rack tom 3 semitones down (longer by 2^(3/12)).
    mid, high = kit.layers("tom_mid")[4].audio, kit.layers("tom_high")[4].audio
    assert mid.size / high.size == pytest.approx(2 ** (3 / 12), rel=0.03)
    assert {i.notes for i in kit.instruments["ride"]} == {(), (53,), (59,)}


def test_sf2_bad_input(tmp_path: Path) -> None:
    (tmp_path / "x.sf2").write_bytes(b"RIFF\x04\x00\x00\x00WAVE")
    with pytest.raises(DataError, match="not a SoundFont"):
        read_sf2(tmp_path / "x.sf2")
    with pytest.raises(DataError, match="not found"):
        read_sf2(tmp_path / "missing.sf2")


def test_registry_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"unknown kit 'Nope'; known kits: The Black Pearl 1\.0"):
        load_kit("Nope")
    with pytest.raises(DataError, match="excluded"):
        load_kit("BJA_Pacific")
    with pytest.raises(DataError, match="install the Debian packages hydrogen-drumkits"):
        load_kit("ForzeeStereo", tmp_path)


def test_registry_entries_have_licenses_and_roles() -> None:
    km = load_kitmap()
    assert km.names(("validation",)) == ["ColomboAcousticDrumkit"]
    training = km.names(("training", "augmentation"))
    assert len(training) == 12 and "The Black Pearl 1.0" in training
    assert not set(training) & set(km.excluded)
    assert all(km.entry(n).license for n in km.names())


def test_registered_kits_load() -> None:
    _need_avl()
    _need(HYDROGEN / "ForzeeStereo", "hydrogen-drumkits")
    km = load_kitmap()
    for name in km.names():
        kit = load_kit(name)
        assert {"kick", "snare", "hihat_closed", "hihat_open"} <= set(kit.present), name
        for cls, ins in kit.instruments.items():
            for i in ins:
                assert i.loudest() == pytest.approx(km.loudness_db[cls], abs=1e-3), (name, i.name)
                for la in i.layers:
                    assert la.audio.dtype == np.float32 and la.audio.ndim == 1 and np.isfinite(la.audio).all()
    assert load_kit("VariBreaks").present == CLASSES[:7]


def test_loudness_db_of_a_sine() -> None:
    x = np.sin(2 * np.pi * 100 * np.arange(SR) / SR).astype(np.float32)
    assert loudness_db(x) == pytest.approx(20 * np.log10(np.sqrt(0.5)), abs=0.01)
    y = one_shot(0.2, 100, 0)
    assert loudness_db(y, gain=2.0) == pytest.approx(loudness_db(y) + 6.02, abs=0.01)
