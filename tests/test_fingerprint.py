"""Sample fingerprints: copies are found whatever their gain, trim, rate or encoding; the unseen evaluation kits share
no sample with the training kits and pools; the reserved sounds (where installed) none with anything registered."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from datafixtures import SR, make_folder_kit, one_shot, write_wav
from typer.testing import CliRunner

from idm.cli import app
from idm.data.fingerprint import DEFAULT_THRESHOLD, Sample, compare, fingerprint_kits, reserved_samples, similarity
from idm.data.kitmap import load_kitmap
from idm.data.kits import DEFAULT_KITS_ROOT, load_folder, load_kits, prepare_sample

runner = CliRunner()


def _drum(seed: int, freq: float, noise: float = 0.5, seconds: float = 0.4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = np.sin(2 * np.pi * freq * t * (1 + 0.3 * np.exp(-30 * t))) * np.exp(-8 * t)
    x += noise * rng.standard_normal(t.size) * np.exp(-25 * t)
    return prepare_sample((0.7 * x / np.abs(x).max()).astype(np.float32), SR)


def _ogg(x: np.ndarray) -> np.ndarray:
    buf = io.BytesIO()
    sf.write(buf, x, SR, format="OGG", subtype="VORBIS")
    buf.seek(0)
    y, sr = sf.read(buf, dtype="float32")
    return prepare_sample(y, sr)


def test_copies_are_found_and_different_recordings_are_not() -> None:
    import soxr

    x = _drum(1, 60)
    copies = {
        "gain and polarity": -0.2 * x,
        "leading silence": prepare_sample(np.r_[np.zeros(400, np.float32), x], SR),
        "48 kHz": prepare_sample(soxr.resample(x, SR, 48000).astype(np.float32), 48000),
        "Ogg Vorbis": _ogg(x),
        "shorter": x[: int(0.12 * SR)],
    }
    sim = similarity([x], list(copies.values()))[0]
    for (name, _), s in zip(copies.items(), sim, strict=True):
        assert s >= 0.93, name
    assert similarity([x], [x])[0, 0] == pytest.approx(1.0, abs=1e-5)
    # The same drum with another noise (another hit), another pitch, another drum: well under the threshold.
    others = [_drum(2, 60), _drum(4, 66), _drum(3, 200, noise=1.0), np.zeros(100, np.float32)]
    assert similarity([x], others)[0].max() < 0.7
    assert similarity([], [x]).shape == (0, 1)


def test_compare_reports_the_most_similar_pair_per_kit() -> None:
    a, b, c = _drum(1, 60), _drum(2, 180), _drum(3, 90)
    checked = [Sample("E1", "kick", a), Sample("E1", "snare", b), Sample("E2", "tom", c)]
    refs = [Sample("T", "other", _drum(4, 120)), Sample("T", "kick copy", 0.5 * a)]
    rep = compare(checked, refs, threshold=0.9, top=2)
    assert [m.kit for m in rep.matches] == ["E1", "E2"] and rep.references == 2
    e1, e2 = rep.matches
    assert (e1.sample, e1.other_kit, e1.other_sample, e1.samples) == ("kick", "T", "kick copy", 2)
    assert e1.cosine > 0.99 and e2.cosine < 0.7
    assert not rep.ok and [(x.label, y.label) for _, x, y in rep.above] == [("kick", "kick copy")]
    assert len(rep.top) == 2 and rep.top[0][0] == pytest.approx(e1.cosine)
    assert compare(checked[1:], refs).ok


def test_fingerprint_kits_and_cli_on_folder_kits(tmp_path: Path) -> None:
    one = make_folder_kit(tmp_path / "one")
    two = make_folder_kit(tmp_path / "two")
    write_wav(two / "snare.wav", one_shot(0.2, 230, 99))  # another snare; the rest are the same files
    (t_one,), (t_two,) = [load_folder(one, name="one")], [load_folder(two, name="two")]
    rep = fingerprint_kits([t_one], [t_two])
    assert not rep.ok and len(rep.above) == 4  # two kicks, two hats
    labels = {x.label for _, x, _ in rep.above}
    assert labels == {"kick: a", "kick: b", "hihat_closed: hihat_closed_1", "hihat_open: hihat_open"}
    args = ["data", "fingerprint", "--check", str(one), "--against", str(two), "--no-reserved", "--top", "1"]
    r = runner.invoke(app, args)
    assert r.exit_code == 1, r.output
    assert "error: 4 sample pairs reach the threshold 0.9" in r.output and "max 1.000" in r.output
    write_wav(two / "kick" / "a.wav", one_shot(0.3, 58, 50))
    write_wav(two / "kick" / "b.wav", one_shot(0.3, 63, 51))
    write_wav(two / "hihat_open.wav", one_shot(1.0, 6100, 52))
    write_wav(two / "hihat_closed_1.wav", one_shot(0.08, 7100, 53))
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, [*args[:-2], "--threshold", "1.5"])
    assert r.exit_code == 2 and "'--threshold': 1.5 is not a number" in r.output  # a usage error, at parse time


# ---- the registered kits -----------------------------------------------------------------------------------


def _need_kits() -> None:
    for path, package in (
        (DEFAULT_KITS_ROOT / "hydrogen" / "data" / "drumkits" / "ColomboAcousticDrumkit", "hydrogen-drumkits"),
        (DEFAULT_KITS_ROOT / "sounds" / "sf2" / "Black_Pearl_4_LV2.sf2", "avldrums.lv2-soundfont"),
        (DEFAULT_KITS_ROOT / "lmms" / "samples" / "drums", "lmms-common"),
        (DEFAULT_KITS_ROOT / "sonic-pi" / "samples", "sonic-pi-samples"),
    ):
        if not path.exists():
            msg = f"{path} not installed (Debian package {package}; 'make setup' installs it when run as root)"
            if os.environ.get("CI"):
                pytest.fail(msg)
            pytest.skip(msg)


def test_unseen_kits_share_no_sample_with_training_kits_or_pools() -> None:
    _need_kits()
    km = load_kitmap()
    unseen = load_kits(km.names(("validation",)))
    training = load_kits(km.names(("training", "augmentation", "pool")))
    assert len(unseen) >= 3 and {k.role for k in unseen} == {"validation"}
    assert {"LMMS Pool", "Sonic Pi Pool"} <= {k.name for k in training}
    rep = fingerprint_kits(unseen, training)
    assert [m.kit for m in rep.matches] == [k.name for k in unseen]
    for m in rep.matches:
        assert m.cosine < DEFAULT_THRESHOLD, m
    assert rep.ok
    # The check does see copies: "The Black Pearl 1.0" and "AVL Black Pearl 4" share their hi-hat recordings.
    same = fingerprint_kits(load_kits(["The Black Pearl 1.0"]), load_kits(["AVL Black Pearl 4"]))
    assert not same.ok and max(m.cosine for m in same.matches) > 0.99


def test_cli_fingerprint_on_the_registered_kits() -> None:
    _need_kits()
    r = runner.invoke(app, ["data", "fingerprint", "--no-reserved"])
    assert r.exit_code == 0, r.output
    for name in load_kitmap().names(("validation",)):
        assert f"  {name} " in r.output
    assert "checked kits against" in r.output and "most similar pairs:" in r.output


def test_reserved_sounds_are_not_in_training_kits_or_pools() -> None:
    found = reserved_samples()
    if not found:
        pytest.skip("no reserved evaluation sound is installed here (fluid-soundfont-gm, ..., BJA_Pacific)")
    _need_kits()
    km = load_kitmap()
    registered = load_kits(km.names())
    rep = compare(found, [s for k in registered for s in _samples(k)])
    for m in rep.matches:
        assert m.cosine < DEFAULT_THRESHOLD, m


def _samples(kit: object) -> list[Sample]:
    from idm.data.fingerprint import kit_samples
    from idm.data.kits import Kit

    assert isinstance(kit, Kit)
    return kit_samples(kit)
