"""Kit loaders: a tiny Hydrogen kit and one-shot folder the tests write, the installed AVL SoundFonts, the registry,
and the refusal of the sounds reserved for independent evaluation."""

from __future__ import annotations

import itertools
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from datafixtures import SR, make_folder_kit, make_hydrogen_kit, one_shot

from idm.classes import CLASSES
from idm.data.kitmap import Assignment, FileSpec, check_not_reserved, load_kitmap
from idm.data.kits import (
    DEFAULT_KITS_ROOT,
    load_folder,
    load_hydrogen,
    load_kit,
    load_kit_ref,
    load_oneshots,
    load_sf2,
    loudness_db,
    read_audio,
)
from idm.data.sf2 import read_sf2
from idm.errors import DataError

AVL = DEFAULT_KITS_ROOT / "sounds" / "sf2" / "Black_Pearl_4_LV2.sf2"
HYDROGEN = DEFAULT_KITS_ROOT / "hydrogen" / "data" / "drumkits"
LMMS = DEFAULT_KITS_ROOT / "lmms" / "samples" / "drums"
SONIC_PI = DEFAULT_KITS_ROOT / "sonic-pi" / "samples"


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
        load_kit("Gimme A Hand 1.0")
    with pytest.raises(DataError, match="reserved for independent evaluation"):
        load_kit("BJA_Pacific")
    with pytest.raises(DataError, match="install the Debian packages hydrogen-drumkits"):
        load_kit("ForzeeStereo", tmp_path)
    with pytest.raises(DataError, match="sonic-pi-samples"):
        load_kit("Sonic Pi Acoustic", tmp_path)


def test_registry_entries_have_licenses_and_roles() -> None:
    km = load_kitmap()
    assert km.names(("validation",)) == ["ColomboAcousticDrumkit", "Sonic Pi Acoustic", "LMMS Acoustic"]
    training = km.names(("training", "augmentation"))
    assert len(training) == 12 and "The Black Pearl 1.0" in training
    assert km.names(("pool",)) == ["LMMS Pool", "Sonic Pi Pool"]
    assert km.names()[-2:] == ["LMMS Pool", "Sonic Pi Pool"]  # kits first: the pack and 'idm data kits' list all
    assert not set(training) & set(km.excluded)
    assert all(km.entry(n).license for n in km.names())
    for name in ("Sonic Pi Acoustic", "LMMS Acoustic"):
        e = km.entry(name)
        assert e.source == "folder" and e.files is not None and set(e.files) == set(CLASSES)
    # The reserved sounds are listed with their packages and a reason.
    packages = " ".join(s.package for s in km.reserved.sounds)
    for p in ("fluid-soundfont-gm", "fluid-soundfont-gs", "musescore-general-soundfont", "timgm6mb-soundfont",
              "BJA_Pacific"):  # fmt: skip
        assert p in packages
    assert "training" in km.reserved.reason and "checkpoint selection" in km.reserved.reason


@pytest.mark.parametrize(
    "ref",
    [
        "/usr/share/sounds/sf2/FluidR3_GM.sf2",
        "/usr/share/sounds/sf2/FluidR3_GS.sf2",
        "/usr/share/sounds/sf3/MuseScore_General.sf3",
        "/usr/share/sounds/sf2/MuseScore_General-Lite.sf2",
        "/usr/share/sounds/sf2/TimGM6mb.sf2",
        "/usr/share/hydrogen/data/drumkits/BJA_Pacific",
        "/usr/share/hydrogen/data/drumkits/BJA_Pacific/BD_05.aiff",
        "BJA_Pacific",
    ],
)
def test_reserved_sounds_are_refused_by_path_and_name(ref: str) -> None:
    with pytest.raises(DataError, match="reserved for independent evaluation"):
        check_not_reserved(ref)
    with pytest.raises(DataError, match=r"reserved for independent evaluation \(.*\): never used for training"):
        load_kit_ref(ref)


def test_reserved_sounds_are_refused_by_every_loader(tmp_path: Path) -> None:
    # No reserved package is needed: the loaders refuse names and paths before reading anything.
    for path in (tmp_path / "FluidR3_GM.sf2", tmp_path / "sf2" / "TimGM6mb.sf2"):
        with pytest.raises(DataError, match=r"SoundFont .* is reserved .*(fluid-soundfont-gm|timgm6mb)"):
            load_sf2(path)
    # A symbolic link with an innocent name (like Debian's default-GM.sf2) to a reserved font.
    target = tmp_path / "FluidR3_GM.sf2"
    target.write_bytes(b"RIFF\x04\x00\x00\x00sfbk")
    link = tmp_path / "default-GM.sf2"
    link.symlink_to(target)
    with pytest.raises(DataError, match=r"reserved .*fluid-soundfont-gm"):
        load_sf2(link)
    with pytest.raises(DataError, match="reserved"):
        load_kit_ref(str(link))
    # A Hydrogen kit by folder name, and by its own <name> in a renamed folder.
    with pytest.raises(DataError, match=r"Hydrogen kit .*BJA_Pacific.* is reserved"):
        load_hydrogen(make_hydrogen_kit(tmp_path / "BJA_Pacific"))
    renamed = make_hydrogen_kit(tmp_path / "mykit")
    xml = renamed / "drumkit.xml"
    xml.write_text(xml.read_text().replace("<name>Tiny Kit</name>", "<name>BJA_Pacific</name>"))
    with pytest.raises(DataError, match="Hydrogen kit 'BJA_Pacific' is reserved"):
        load_hydrogen(renamed)
    # One-shot folders and files inside a reserved kit.
    with pytest.raises(DataError, match="reserved"):
        load_folder(make_folder_kit(tmp_path / "BJA_Pacific" / "oneshots"))
    ok = make_folder_kit(tmp_path / "fine")
    (tmp_path / "BJA_Pacific" / "kick.wav").write_bytes((ok / "snare.wav").read_bytes())
    with pytest.raises(DataError, match=r"sample .* is reserved"):
        load_oneshots(tmp_path, {"kick": (FileSpec(("BJA_Pacific/kick.wav",)),)})
    assert load_folder(ok).present  # an ordinary folder still loads


def test_kitmap_refuses_to_register_a_reserved_sound(tmp_path: Path) -> None:
    import idm.data

    text = (Path(idm.data.__file__).parent / "kitmap.yaml").read_text()
    bad = tmp_path / "kitmap.yaml"
    entries = [
        "{name: GM, role: training, source: sf2, path: FluidR3_GM.sf2, license: MIT}",
        "{name: Pacific, role: validation, source: hydrogen, path: BJA_Pacific, license: GPL}",
        "{name: MuseScore_General, role: training, source: folder, path: x, license: MIT}",
        "{name: X, role: validation, source: folder, path: drums, license: MIT, files: {kick: [BJA_Pacific/k.wav]}}",
    ]
    for entry in entries:
        bad.write_text(text.replace("\nkits:\n", f"\nkits:\n  - {entry}\n", 1))
        with pytest.raises(DataError, match="registers a sound reserved for independent evaluation"):
            load_kitmap(bad)
    pool = "pools:\n  - {name: P, folders: [sounds/sf2/TimGM6mb.sf2], license: MIT}\n"
    bad.write_text(text.replace("\npools:\n", "\n" + pool, 1))
    with pytest.raises(DataError, match="'P' registers a sound reserved"):
        load_kitmap(bad)


def test_oneshots_loader_velocity_layers_and_articulations(tmp_path: Path) -> None:
    make_folder_kit(tmp_path)
    files = {
        "kick": (FileSpec(("kick/a.wav", "kick/b.wav")),),
        "hihat_closed": (FileSpec(("hihat_closed_1.wav",)), FileSpec(("snare.wav",), notes=(44,))),
    }
    kit = load_oneshots(tmp_path, files, name="named", license="CC0")
    assert kit.present == ("kick", "hihat_closed") and kit.name == "named" and kit.license == "CC0"
    kick = kit.instruments["kick"][0]
    assert kick.name == "a+b" and [(la.vel_lo, la.vel_hi) for la in kick.layers] == [(0.0, 0.5), (0.5, 1.0)]
    assert kit.instruments["hihat_closed"][1].notes == (44,)
    assert [i.name for i in kit.main("hihat_closed")] == ["hihat_closed_1"]
    with pytest.raises(DataError, match="sample file not found"):
        load_oneshots(tmp_path, {"kick": (FileSpec(("nope.wav",)),)})
    with pytest.raises(DataError, match="unknown class 'cowbell'"):
        load_oneshots(tmp_path, {"cowbell": (FileSpec(("snare.wav",)),)})


def test_read_audio_decodes_an_ogg_stream_wrapped_in_riff(tmp_path: Path) -> None:
    import io

    x = one_shot(0.2, 150, 7)
    buf = io.BytesIO()
    sf.write(buf, x, SR, format="OGG", subtype="VORBIS")
    ogg = buf.getvalue()
    # As lmms-common's kick04.ogg: a RIFF/WAVE header (format tag 0x674f) whose data chunk is an Ogg stream.
    fmt = b"fmt " + (16).to_bytes(4, "little") + bytes.fromhex("4f67010044ac000010b1020002001000")
    data = b"data" + len(ogg).to_bytes(4, "little") + ogg
    body = b"WAVE" + fmt + data
    path = tmp_path / "wrapped.ogg"
    path.write_bytes(b"RIFF" + len(body).to_bytes(4, "little") + body)
    y, sr = read_audio(path)
    plain, _ = sf.read(io.BytesIO(ogg), dtype="float32", always_2d=True)
    assert sr == SR and y.shape == plain.shape and abs(y.shape[0] - x.size) < 2048
    np.testing.assert_array_equal(y, plain)
    path.write_bytes(b"RIFF0000WAVEjunk")
    with pytest.raises(DataError, match="unreadable sample"):
        read_audio(path)


def test_registered_kits_load() -> None:
    _need_avl()
    _need(HYDROGEN / "ForzeeStereo", "hydrogen-drumkits")
    _need(LMMS, "lmms-common")
    _need(SONIC_PI, "sonic-pi-samples")
    km = load_kitmap()
    for name in km.names():
        kit = load_kit(name)
        assert kit.role == km.entry(name).role
        if kit.role != "pool":
            assert {"kick", "snare", "hihat_closed", "hihat_open"} <= set(kit.present), name
        for cls, ins in kit.instruments.items():
            for i in ins:
                assert i.loudest() == pytest.approx(km.loudness_db[cls], abs=1e-3), (name, i.name)
                for la in i.layers:
                    assert la.audio.dtype == np.float32 and la.audio.ndim == 1 and np.isfinite(la.audio).all()
    assert load_kit("VariBreaks").present == CLASSES[:7]
    # The unseen kits assembled from lmms-common and sonic-pi-samples play every class.
    assert load_kit("Sonic Pi Acoustic").present == CLASSES and load_kit("LMMS Acoustic").present == CLASSES


def test_loudness_db_of_a_sine() -> None:
    x = np.sin(2 * np.pi * 100 * np.arange(SR) / SR).astype(np.float32)
    assert loudness_db(x) == pytest.approx(20 * np.log10(np.sqrt(0.5)), abs=0.01)
    y = one_shot(0.2, 100, 0)
    assert loudness_db(y, gain=2.0) == pytest.approx(loudness_db(y) + 6.02, abs=0.01)
