"""Groove MIDI Dataset loader on MIDI files the tests write: splits, the 22-to-9 mapping, timing, the events cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from datafixtures import make_gmd, write_midi

from idm.classes import CLASSES, GM_TO_CLASS
from idm.data.gmd import Events, GrooveMidi, read_events
from idm.errors import DataError


def test_gm_to_class_folds_pedal_hat_and_ride_bell() -> None:
    assert GM_TO_CLASS[44] == "hihat_closed"
    assert GM_TO_CLASS[53] == "ride"
    assert GM_TO_CLASS[22] == "hihat_closed" and GM_TO_CLASS[26] == "hihat_open"


def test_read_events_maps_notes_and_times(tmp_path: Path) -> None:
    hits = [(0.5, 36, 100), (0.5, 44, 30), (1.0, 53, 90), (1.25, 38, 127), (1.5, 22, 60), (2.0, 58, 70),
            (2.5, 39, 80), (3.0, 26, 50)]  # fmt: skip
    path = tmp_path / "x.mid"
    write_midi(path, hits, bpm=97.0)
    ev = read_events(path)
    # 39 (hand clap) is not a drum class: dropped.
    assert len(ev) == 7
    np.testing.assert_allclose(ev.time, [0.5, 0.5, 1.0, 1.25, 1.5, 2.0, 3.0], atol=2e-3)
    names = [CLASSES[c] for c in ev.cls]
    assert names == ["kick", "hihat_closed", "ride", "snare", "hihat_closed", "tom_floor", "hihat_open"]
    assert ev.note.tolist() == [36, 44, 53, 38, 22, 58, 26]
    assert ev.velocity.tolist() == [100, 30, 90, 127, 60, 70, 50]


def test_tempo_changes_are_honoured(tmp_path: Path) -> None:
    import mido

    # 480 ticks per beat; 1 beat at 120 BPM (0.5 s), then 60 BPM: the second hit 1 beat later is at 1.5 s.
    track = mido.MidiTrack([
        mido.MetaMessage("set_tempo", tempo=500_000, time=0),
        mido.Message("note_on", channel=9, note=36, velocity=90, time=480),
        mido.MetaMessage("set_tempo", tempo=1_000_000, time=0),
        mido.Message("note_on", channel=9, note=38, velocity=90, time=480),
    ])  # fmt: skip
    mido.MidiFile(type=0, ticks_per_beat=480, tracks=[track]).save(str(tmp_path / "t.mid"))
    ev = read_events(tmp_path / "t.mid")
    np.testing.assert_allclose(ev.time, [0.5, 1.5])


def test_splits_and_window(tmp_path: Path) -> None:
    g = GrooveMidi(make_gmd(tmp_path / "gmd"))
    assert [len(g.split(s)) for s in ("train", "validation", "test")] == [2, 1, 1]
    p = g.split("train")[0]
    ev = g.events(p)
    assert len(ev) > 20 and np.all(np.diff(ev.time) >= 0)
    w = ev.window(2.0, 4.0, pre=1.0)
    assert w.time.min() >= -1.0 and w.time.max() < 2.0
    assert len(w) == int(np.sum((ev.time >= 1.0) & (ev.time < 4.0)))


def test_events_cache_round_trip_and_invalidation(tmp_path: Path) -> None:
    root = make_gmd(tmp_path / "gmd")
    g = GrooveMidi(root)
    perfs = g.performances
    g.write_events_cache(perfs)
    g2 = GrooveMidi(root)
    for p in perfs:
        a, b = g.events(p), g2.events(p)
        for f in ("time", "cls", "velocity", "note"):
            np.testing.assert_array_equal(getattr(a, f), getattr(b, f))
    # A changed MIDI file is parsed again, not taken from the stale cache.
    p = perfs[0]
    write_midi(root / p.midi_filename, [(0.25, 36, 10)])
    ev = GrooveMidi(root).events(p)
    assert len(ev) == 1 and ev.velocity[0] == 10


def test_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="root not found"):
        GrooveMidi(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"no info\.csv"):
        GrooveMidi(tmp_path / "empty")
    root = make_gmd(tmp_path / "gmd")
    with pytest.raises(DataError, match="unknown GMD split"):
        GrooveMidi(root).split("dev")
    (root / "info.csv").write_text("drummer,split\nx,train\n")
    with pytest.raises(DataError, match="missing columns"):
        GrooveMidi(root)
    (tmp_path / "bad.mid").write_bytes(b"not midi at all")
    with pytest.raises(DataError, match="not a readable MIDI file"):
        read_events(tmp_path / "bad.mid")
    with pytest.raises(DataError, match="velocity outside"):
        Events.from_lists([0.0], [0], [0])


def test_numpy_modules_do_not_import_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, idm.data.gmd, idm.data.kits, idm.data.render, idm.data.targets, idm.data.pack, "
            "idm.data.evalset, idm.data.examples, idm.data.cli; assert 'torch' not in sys.modules")  # fmt: skip
    subprocess.run([sys.executable, "-c", code], check=True)
