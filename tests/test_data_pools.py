"""One-shot pools: file rules and overrides, soft/hard layers, the exclusion of evaluation-kit files, the installed
lmms-common and sonic-pi-samples pools (every file classified or ignored, no loops, classes filled)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from datafixtures import SR, one_shot, write_wav

from idm.classes import CLASSES
from idm.data.kitmap import load_kitmap
from idm.data.kits import DEFAULT_KITS_ROOT, load_kit
from idm.data.pools import classify_pool, later_attacks, load_pool
from idm.errors import DataError

LMMS = DEFAULT_KITS_ROOT / "lmms" / "samples" / "drums"
SONIC_PI = DEFAULT_KITS_ROOT / "sonic-pi" / "samples"

POOL_YAML = """
pools:
  - name: Test Pool
    folders: [p/one, p/two]
    author: tests
    license: CC0-1.0
    velocity_layers: [soft, hard]
    rules:
      - {match: '^loop', class: null, why: a loop}
      - {match: '^pedal', class: hihat_closed, notes: [44]}
      - {match: '^kick', class: kick}
      - {match: '^snare', class: snare}
    overrides:
      snare_bad: {class: null, why: sounds like a tom}
      oddname: tom_mid
"""

KIT_YAML = """
  - name: Test Eval
    role: validation
    source: folder
    path: p/one
    author: tests
    license: CC0-1.0
    files:
      kick: [kick_eval.wav]
"""


@pytest.fixture
def pool_root(tmp_path: Path) -> tuple[Path, Path]:
    """A kits root with a two-folder pool and a folder kit that uses one of its files; the kit map registering them."""
    import idm.data

    root = tmp_path / "share"
    one, two = root / "p" / "one", root / "p" / "two"
    write_wav(one / "kick_soft.wav", 0.2 * one_shot(0.3, 60, 1))
    write_wav(one / "kick_hard.wav", one_shot(0.3, 60, 2))
    write_wav(one / "kick_eval.wav", one_shot(0.3, 70, 3))
    write_wav(one / "snare1.wav", one_shot(0.2, 200, 4), sr=48000)
    write_wav(one / "snare_bad.wav", one_shot(0.2, 120, 5))
    write_wav(two / "pedal.wav", one_shot(0.1, 5000, 6))
    write_wav(two / "oddname.wav", one_shot(0.4, 110, 7))
    write_wav(two / "loop1.wav", np.tile(one_shot(0.25, 80, 8), 4))
    write_wav(two / "mystery.wav", one_shot(0.2, 300, 9))
    (two / "notes.txt").write_text("not audio")
    text = (Path(idm.data.__file__).parent / "kitmap.yaml").read_text()
    text = text.replace("\npools:\n", POOL_YAML.replace("pools:\n", "pools:\n", 1) + "\n", 1)
    text = text.replace("\n# One-shot pools:", KIT_YAML + "\n# One-shot pools:", 1)
    km_path = tmp_path / "kitmap.yaml"
    km_path.write_text(text)
    return root, km_path


def test_pool_classification(pool_root: tuple[Path, Path]) -> None:
    root, km_path = pool_root
    km = load_kitmap(km_path)
    files = {f.name: f for f in classify_pool("Test Pool", root, km)}
    assert set(files) == {"kick_soft", "kick_hard", "kick_eval", "snare1", "snare_bad", "pedal", "oddname", "loop1",
                          "mystery"}  # fmt: skip
    status = {n: f.status for n, f in files.items()}
    assert status == {"kick_soft": "used", "kick_hard": "used", "kick_eval": "evaluation", "snare1": "used",
                      "snare_bad": "ignored", "pedal": "used", "oddname": "used", "loop1": "ignored",
                      "mystery": "unmatched"}  # fmt: skip
    assert files["kick_eval"].why == "used by the kit 'Test Eval'"
    assert files["snare_bad"].why == "sounds like a tom" and files["loop1"].why == "a loop"
    assert files["oddname"].assignment is not None and files["oddname"].assignment.cls == "tom_mid"
    with pytest.raises(DataError, match="is a kit, not a one-shot pool"):
        classify_pool("Test Eval", root, km)


def test_pool_loads_as_a_kit(pool_root: tuple[Path, Path]) -> None:
    root, km_path = pool_root
    km = load_kitmap(km_path)
    pool = load_kit("Test Pool", root, km)
    assert pool.role == "pool" and pool.license == "CC0-1.0" and pool.author == "tests"
    assert pool.present == ("kick", "snare", "hihat_closed", "tom_mid")
    # kick_soft + kick_hard: one instrument, soft layer for low velocities; kick_eval belongs to the evaluation kit.
    (kick,) = pool.instruments["kick"]
    assert kick.name == "kick" and [(la.vel_lo, la.vel_hi) for la in kick.layers] == [(0.0, 0.5), (0.5, 1.0)]
    assert kick.layers[0].audio.max() < kick.layers[1].audio.max()
    assert kick.loudest() == pytest.approx(km.loudness_db["kick"], abs=1e-6)
    assert kick.layers[0].gain == pytest.approx(kick.layers[1].gain)  # the recorded level difference stays
    assert pool.instruments["hihat_closed"][0].notes == (44,)
    assert [i.name for i in pool.instruments["snare"]] == ["snare1"]
    assert pool.instruments["tom_mid"][0].loudest() == pytest.approx(km.loudness_db["tom_mid"], abs=1e-6)
    # The evaluation kit that takes kick_eval loads from the same folder.
    ev = load_kit("Test Eval", root, km)
    assert ev.role == "validation" and [i.name for i in ev.instruments["kick"]] == ["kick_eval"]


def test_pool_errors(pool_root: tuple[Path, Path], tmp_path: Path) -> None:
    _, km_path = pool_root
    km = load_kitmap(km_path)
    with pytest.raises(DataError, match=r"pool 'Test Pool': folder .* not found: install the Debian packages"):
        load_pool("Test Pool", tmp_path / "empty", km)
    bad = tmp_path / "bad.yaml"
    bad.write_text(km_path.read_text().replace("folders: [p/one, p/two]", "folders: p/one"))
    with pytest.raises(DataError, match="pool 'Test Pool' needs a name, a list of folders and a license"):
        load_kitmap(bad)
    bad.write_text(km_path.read_text().replace("{match: '^kick', class: kick}", "{match: '^kick', class: cowbell}"))
    with pytest.raises(DataError, match="unknown class 'cowbell'"):
        load_kitmap(bad)
    bad.write_text(km_path.read_text().replace("name: Test Pool", "name: LMMS Pool"))
    with pytest.raises(DataError, match="'LMMS Pool' is registered twice"):
        load_kitmap(bad)


def test_later_attacks() -> None:
    hit = one_shot(0.4, 60, 1)
    assert later_attacks(hit) == []
    double = np.concatenate([hit[: int(0.25 * SR)], hit])
    (t,) = later_attacks(double)
    assert t == pytest.approx(0.25, abs=0.02)
    assert len(later_attacks(np.tile(hit[: int(0.3 * SR)], 5))) == 4


# ---- the installed packages ------------------------------------------------------------------------------


def _need_pools() -> None:
    for path, package in ((LMMS, "lmms-common"), (SONIC_PI, "sonic-pi-samples")):
        if not path.exists():
            msg = f"{path} not installed (Debian package {package}; 'make setup' installs it when run as root)"
            if os.environ.get("CI"):
                pytest.fail(msg)
            pytest.skip(msg)


#: Classes each installed pool must fill (sonic-pi's single samples are kicks, snares and one cymbal).
EXPECTED = {"LMMS Pool": CLASSES, "Sonic Pi Pool": ("kick", "snare", "crash")}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_installed_pool(name: str) -> None:
    _need_pools()
    km = load_kitmap()
    files = classify_pool(name)
    # Every audio file of the folders is classified, or ignored by a rule or override, or left to an evaluation kit.
    assert [f.name for f in files if f.status == "unmatched"] == []
    used = [f for f in files if f.status == "used"]
    assert len(used) >= 20
    pool = load_kit(name)
    assert pool.role == "pool" and pool.present == EXPECTED[name]
    assert all(len(pool.instruments[c]) >= 1 for c in EXPECTED[name])
    assert sum(len(i.layers) for ins in pool.instruments.values() for i in ins) == len(used)
    for cls, ins in pool.instruments.items():
        for i in ins:
            assert i.loudest() == pytest.approx(km.loudness_db[cls], abs=1e-3), i.name
            for la in i.layers:
                # One-shots, no loops: at most 3.5 s and no second attack.
                assert la.audio.size <= 3.5 * SR and later_attacks(la.audio) == [], (cls, i.name)


def test_installed_pools_and_unseen_kits_share_no_file() -> None:
    _need_pools()
    km = load_kitmap()
    in_pools = {f.path.resolve() for n in km.names(("pool",)) for f in classify_pool(n) if f.status == "used"}
    for name in ("Sonic Pi Acoustic", "LMMS Acoustic"):
        e = km.entry(name)
        assert e.role == "validation" and e.files is not None
        kit_files = {(e.location(DEFAULT_KITS_ROOT) / f).resolve() for specs in e.files.values() for s in specs
                     for f in s.files}  # fmt: skip
        assert kit_files and not kit_files & in_pools, name
    # The loops of lmms beats/ are ignored, kick04 (an Ogg stream in a RIFF wrapper) is read.
    lmms = {f.name: f for f in classify_pool("LMMS Pool")}
    for loop in ("break01", "jungle01", "rave_kick01", "rave_hihat01", "rave_snare01"):
        assert lmms[loop].status == "ignored" and "loop" in lmms[loop].why
    assert lmms["kick04"].status == "used" and lmms["hihat_foot_pedal01"].assignment is not None
    assert lmms["hihat_foot_pedal01"].assignment.notes == (44,)
    sp = {f.name: f for f in classify_pool("Sonic Pi Pool")}
    assert sp["drum_snare_soft"].status == "evaluation" and sp["drum_roll"].status == "ignored"
    assert sp["bd_gas"].status == "ignored"  # same recordist as the unseen Sonic Pi Acoustic kit
