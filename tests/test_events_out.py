"""Note events (CSV/JSON) and activations files: formats, tick-exact times against the MIDI file, bad values."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import mido
import numpy as np
import pytest
from idm.runtime.activations_out import Activations, write_activations
from idm.runtime.events_out import COLUMNS, event_rows, parse_event_formats, write_events

from idm.classes import CLASSES
from idm.errors import ConfigError
from idm.midi import MidiStyle, Onset, write_midi


def midi_notes(path: Path) -> list[tuple[float, int, int]]:
    """(seconds, note, velocity) of every note-on, as mido reads the file (tempo honoured)."""
    out, t = [], 0.0
    for msg in mido.MidiFile(str(path)):
        t += msg.time
        if msg.type == "note_on" and msg.velocity > 0:
            out.append((t, msg.note, msg.velocity))
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize(
    ("spec", "want"),
    [("none", ()), ("csv", ("csv",)), ("json", ("json",)), ("both", ("csv", "json")), ("json,csv", ("csv", "json"))],
)
def test_parse_event_formats(spec: str, want: tuple[str, ...]) -> None:
    assert parse_event_formats(spec) == want


def test_parse_event_formats_refuses_unknown_words() -> None:
    with pytest.raises(ConfigError, match="none, csv, json or both"):
        parse_event_formats("txt")


@pytest.mark.parametrize("tempo", [120.0, 97.0])
def test_events_match_the_midi_file(tmp_path: Path, rng: np.random.Generator, tempo: float) -> None:
    """Read back with mido and csv/json, every note has the same time, note and velocity in all three files."""
    style = MidiStyle.of(30.0, 10, "td", tempo)
    onsets = [Onset(CLASSES[int(rng.integers(9))], float(rng.uniform(0, 20)), int(rng.integers(1, 128)),
                    float(rng.uniform(0.2, 1.0))) for _ in range(200)]  # fmt: skip
    onsets.append(Onset("kick", 1.0, 100))  # no probability (user-given onsets)
    write_midi(onsets, tmp_path / "x.mid", style=style)
    files = write_events(onsets, tmp_path / "x", ("csv", "json"), style, source="x.wav")
    assert [p.name for p in files] == ["x.csv", "x.json"]
    mid = midi_notes(tmp_path / "x.mid")
    rows = read_csv(tmp_path / "x.csv")
    assert tuple(rows[0]) == COLUMNS and len(rows) == len(mid) == len(onsets)
    doc = json.loads((tmp_path / "x.json").read_text())
    assert doc["source"] == "x.wav" and doc["midi"]["tempo_bpm"] == tempo and len(doc["events"]) == len(mid)
    for (t, note, vel), row, ev in zip(sorted(mid), rows, doc["events"], strict=True):
        assert abs(float(row["time"]) - t) < 1e-9 and abs(ev["time"] - t) < 1e-9
        assert int(row["note"]) == note == ev["note"] and int(row["velocity"]) == vel == ev["velocity"]
        assert style.note(row["class"]) == note
    td_toms = {r["class"]: int(r["note"]) for r in rows if r["class"].startswith("tom")}
    assert all(td_toms[c] == {"tom_floor": 43, "tom_mid": 45, "tom_high": 48}[c] for c in td_toms)
    blank = [r for r in rows if r["probability"] == ""]
    assert len(blank) == 1 and blank[0]["class"] == "kick"
    assert sum(e["probability"] is None for e in doc["events"]) == 1


def test_times_are_on_the_tick_grid_and_sorted() -> None:
    style = MidiStyle()
    rows = event_rows([Onset("snare", 0.0101, 90, 0.5), Onset("kick", 0.0101, 80, 0.7), Onset("kick", -0.01, 5)])
    assert [r.cls for r in rows] == ["kick", "kick", "snare"]  # by time, then note
    assert rows[0].time == 0.0 and abs(rows[1].time - 19 / 1920) < 1e-12  # 120 BPM: 1920 ticks per second
    assert style.file_time(0.0101) == rows[1].time


def test_activations_round_trip(tmp_path: Path, rng: np.random.Generator) -> None:
    prob = rng.random((9, 50)).astype(np.float32)
    act = Activations(prob, 172.265625, CLASSES, np.full(9, 0.2), np.zeros(9), prob * 2)
    path = write_activations(act, tmp_path / "a_activations.npz")
    with np.load(path) as d:  # no pickles needed
        assert set(d.files) == {"onset_prob", "frame_rate", "class_names", "delta", "threshold", "velocity"}
        np.testing.assert_array_equal(d["onset_prob"], prob)
        assert float(d["frame_rate"]) == 172.265625 and tuple(d["class_names"]) == CLASSES
    with pytest.raises(ValueError, match=r"\[9, F\]"):
        Activations(prob[:3], 1.0, CLASSES, np.zeros(9), np.zeros(9))
