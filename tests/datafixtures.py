"""Small data the idm.data tests write themselves: MIDI files, a GMD-like root, one-shots, Hydrogen kits."""

from __future__ import annotations

import csv
from pathlib import Path

import mido
import numpy as np
import soundfile as sf

SR = 44100


def write_midi(path: Path, hits: list[tuple[float, int, int]], bpm: float = 120.0, tpb: int = 480) -> None:
    """A type-0 MIDI file of (seconds, note, velocity) drum hits on channel 10 at a fixed tempo."""
    tempo = mido.bpm2tempo(bpm)
    msgs = []
    for t, note, vel in hits:
        tick = round(mido.second2tick(t, tpb, tempo))
        msgs.append((tick, 1, mido.Message("note_on", channel=9, note=note, velocity=vel)))
        msgs.append((tick + 30, 0, mido.Message("note_off", channel=9, note=note, velocity=0)))
    msgs.sort(key=lambda m: (m[0], m[1]))
    track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=tempo, time=0)])
    now = 0
    for tick, _, m in msgs:
        track.append(m.copy(time=tick - now))
        now = tick
    path.parent.mkdir(parents=True, exist_ok=True)
    mido.MidiFile(type=0, ticks_per_beat=tpb, tracks=[track]).save(str(path))


def groove_hits(seconds: float, seed: int) -> list[tuple[float, int, int]]:
    """A plausible groove: kick/snare backbeat, 8th-note hats (some pedal/open), ride bell, toms, crash."""
    rng = np.random.default_rng(seed)
    hits: list[tuple[float, int, int]] = []
    t = 0.1
    step = 0.25
    k = 0
    while t < seconds:
        hits.append((t, [42, 44, 46, 42][k % 4], int(rng.integers(40, 110))))
        if k % 4 == 0:
            hits.append((t, 36, int(rng.integers(80, 127))))
        if k % 4 == 2:
            hits.append((t, 38, int(rng.integers(80, 127))))
        if k % 16 == 0:
            hits.append((t, [49, 53, 51, 43, 47, 50][(k // 16) % 6], 100))
        t += step
        k += 1
    return hits


def make_gmd(root: Path, files: dict[str, tuple[str, float]] | None = None) -> Path:
    """A GMD-like root: info.csv + MIDI files. ``files``: name -> (split, seconds)."""
    files = files or {"a": ("train", 12.0), "b": ("train", 8.0), "c": ("validation", 12.0), "d": ("test", 12.0)}
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (name, (split, secs)) in enumerate(files.items()):
        rel = f"drummer1/session1/{i}_{name}_120_beat_4-4.mid"
        write_midi(root / rel, groove_hits(secs, i))
        rows.append({"drummer": "drummer1", "session": "drummer1/session1", "id": f"drummer1/session1/{i}",
                     "style": "rock", "bpm": "120", "beat_type": "beat", "time_signature": "4-4",
                     "midi_filename": rel, "audio_filename": rel.replace(".mid", ".wav"),
                     "duration": f"{secs:.3f}", "split": split})  # fmt: skip
    with open(root / "info.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


def one_shot(seconds: float, freq: float, seed: int, lead: int = 0) -> np.ndarray:
    """A decaying tone + noise burst (peak ~0.8), optionally after ``lead`` silent samples."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    x = (0.6 * np.sin(2 * np.pi * freq * t) + 0.3 * rng.standard_normal(t.size)) * np.exp(-t / (seconds / 5))
    x = 0.8 * x / np.abs(x).max()
    return np.concatenate([np.zeros(lead), x]).astype(np.float32)


def write_wav(path: Path, x: np.ndarray, sr: int = SR) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x, sr, subtype="FLOAT")
    return path


HYDROGEN_XML = """<?xml version="1.0" encoding="UTF-8"?>
<drumkit_info xmlns="http://www.hydrogen-music.org/drumkit">
 <name>Tiny Kit</name>
 <author>tests</author>
 <license>CC0</license>
 <instrumentList>
  <instrument><id>0</id><name>Big Kick</name>
   <layer><filename>kick_soft.wav</filename><min>0</min><max>0.5</max><gain>1.5</gain><pitch>0</pitch></layer>
   <layer><filename>kick_hard.wav</filename><min>0.5</min><max>1</max><gain>1</gain><pitch>0</pitch></layer>
  </instrument>
  <instrument><id>1</id><name>Snare Dry</name>
   <layer><filename>snare.wav</filename><min>0</min><max>1</max><gain>1</gain><pitch>0</pitch></layer>
  </instrument>
  <instrument><id>2</id><name>Hand Clap</name>
   <layer><filename>clap.wav</filename><min>0</min><max>1</max><gain>1</gain><pitch>0</pitch></layer>
  </instrument>
  <instrument><id>3</id><name>Weird Name</name>
   <layer><filename>tom.wav</filename><min>0</min><max>1</max><gain>1</gain><pitch>0</pitch></layer>
  </instrument>
  <instrument><id>4</id><name>Hat Pedal</name>
   <filename>pedal.wav</filename>
  </instrument>
 </instrumentList>
</drumkit_info>
"""


def make_hydrogen_kit(folder: Path) -> Path:
    """A tiny Hydrogen kit: 2-layer kick, snare, an ignored clap, a tom needing an override, an old-format pedal hat."""
    folder.mkdir(parents=True, exist_ok=True)
    write_wav(folder / "kick_soft.wav", 0.3 * one_shot(0.4, 60, 1, lead=300))
    write_wav(folder / "kick_hard.wav", one_shot(0.4, 60, 2, lead=300))
    write_wav(folder / "snare.wav", one_shot(0.3, 200, 3), sr=48000)
    write_wav(folder / "clap.wav", one_shot(0.2, 900, 4))
    write_wav(folder / "tom.wav", one_shot(0.5, 120, 5))
    write_wav(folder / "pedal.wav", one_shot(0.1, 3000, 6))
    (folder / "drumkit.xml").write_text(HYDROGEN_XML)
    return folder


def make_folder_kit(folder: Path) -> Path:
    """One-shots per class: kick/ subfolder with two files, snare.wav, hihat_open.wav, hihat_closed_1.wav."""
    write_wav(folder / "kick" / "a.wav", one_shot(0.3, 55, 10))
    write_wav(folder / "kick" / "b.wav", one_shot(0.3, 65, 11))
    write_wav(folder / "snare.wav", one_shot(0.2, 220, 12))
    write_wav(folder / "hihat_open.wav", one_shot(1.0, 6000, 13))
    write_wav(folder / "hihat_closed_1.wav", one_shot(0.08, 7000, 14))
    return folder
