"""MIDI files as DAW users expect: notes of one drum never overlap, note length, channel, note maps, tempo."""

from __future__ import annotations

from pathlib import Path

import mido
import pytest

from idm.errors import IDMError
from idm.midi import NOTE_MAPS, MidiStyle, Onset, load_note_map, read_onsets, write_midi


def _notes(path: Path) -> list[tuple[float, str, int, int, int]]:
    """(seconds, type, channel, note, velocity) of every note message."""
    out, t = [], 0.0
    for m in mido.MidiFile(str(path)):
        t += m.time
        if m.type in ("note_on", "note_off"):
            out.append((round(t, 4), m.type, m.channel, m.note, m.velocity))
    return out


def test_a_note_ends_before_the_next_hit_of_the_same_drum(tmp_path: Path) -> None:
    path = tmp_path / "a.mid"
    write_midi([Onset("kick", 0.0, 100), Onset("kick", 0.0348, 90), Onset("snare", 0.01, 80)], path)
    got = _notes(path)
    kick = [g for g in got if g[3] == 36]
    assert [g[1] for g in kick] == ["note_on", "note_off", "note_on", "note_off"]
    assert kick[1][0] == kick[2][0] == pytest.approx(0.0348, abs=1e-3)  # ended at the next hit (before it, same tick)
    assert got.index(kick[1]) < got.index(kick[2])
    assert kick[3][0] == pytest.approx(0.0848, abs=1e-3)  # the last one keeps its 50 ms
    snare = [g for g in got if g[3] == 38]
    assert snare[1][0] - snare[0][0] == pytest.approx(0.05, abs=1e-3)  # other drums are not cut


def test_style_length_channel_map_and_tempo(tmp_path: Path) -> None:
    path = tmp_path / "b.mid"
    style = MidiStyle.of(note_ms=20, channel=1, note_map="td", tempo_bpm=97.0)
    hits = [Onset("tom_high", 0.5, 100), Onset("tom_mid", 1.25, 64), Onset("kick", 2.0, 127)]
    write_midi(hits, path, style=style)
    got = _notes(path)
    assert {g[2] for g in got} == {0}  # channel 1
    assert [g[3] for g in got if g[1] == "note_on"] == [48, 45, 36]
    ons = [g[0] for g in got if g[1] == "note_on"]
    assert ons == pytest.approx([0.5, 1.25, 2.0], abs=1e-3)  # same seconds at 97 BPM
    offs = [g[0] for g in got if g[1] == "note_off"]
    assert [b - a for a, b in zip(ons, offs, strict=True)] == pytest.approx([0.02] * 3, abs=1e-3)
    tempo = next(m for m in mido.MidiFile(str(path)).tracks[0] if m.type == "set_tempo").tempo
    assert round(mido.tempo2bpm(tempo)) == 97
    back = read_onsets(path)  # the project reads its own files back (tom notes 48/45 are GM toms too)
    assert [round(o.time, 3) for o in back] == [0.5, 1.25, 2.0]


def test_note_map_files_and_errors(tmp_path: Path) -> None:
    f = tmp_path / "map.yaml"
    f.write_text("tom_mid: 45\ncrash: 57\n")
    m = load_note_map(f)
    assert m["tom_mid"] == 45 and m["crash"] == 57 and m["kick"] == NOTE_MAPS["gm"]["kick"]
    f.write_text("cowbell: 56\n")
    with pytest.raises(IDMError, match="unknown class 'cowbell'"):
        load_note_map(f)
    f.write_text("kick: 200\n")
    with pytest.raises(IDMError, match="0-127"):
        load_note_map(f)
    with pytest.raises(IDMError, match="not a map name"):
        load_note_map("ssd5")
    for bad in ({"channel": 17}, {"note_seconds": 0.0}, {"tempo_bpm": 0.0}):
        with pytest.raises(IDMError):
            MidiStyle(**bad)  # type: ignore[arg-type]
