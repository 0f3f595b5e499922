"""Onset F (±50 ms, mir_eval) per class of a MIDI file recorded from the demo loop, against the loop's hits.

Usage: ``idm-live --input demo --seconds 21 --no-midi --stems-out out/demo --force`` (``make demo``), then
``python benchmarks/demo_onset_f.py out/demo/demo_loop/demo_loop.mid`` (prints a markdown table).
The MIDI files idm-live writes have its latency removed, so they line up with the loop sample for sample.
"""

from __future__ import annotations

import argparse

import mido
import mir_eval
import numpy as np

from idm.classes import CLASSES, GM_TO_CLASS
from idm.demo import demo_events


def note_times(path: str) -> dict[str, list[float]]:
    """Note-on times (seconds) per project class of a GM drum MIDI file."""
    out: dict[str, list[float]] = {c: [] for c in CLASSES}
    t = 0.0
    for msg in mido.MidiFile(path):
        t += msg.time
        if msg.type == "note_on" and msg.velocity > 0 and msg.note in GM_TO_CLASS:
            out[GM_TO_CLASS[msg.note]].append(t)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("midi", help="MIDI file written by idm-live for the demo loop")
    args = ap.parse_args()
    hits = demo_events()
    est = note_times(args.midi)
    print(f"{sum(len(v) for v in est.values())} notes for {len(hits)} hits\n")
    print("| class | hits | notes | F50 |\n|---|---|---|---|")
    fs = []
    for c in CLASSES:
        ref = np.array([h[0] for h in hits if h[1] == c])
        e = np.array(est[c])
        if len(ref) == 0:
            print(f"| {c} | 0 | {len(e)} | n/a |")
            continue
        f = mir_eval.onset.f_measure(ref, e, window=0.05)[0] if len(e) else 0.0
        fs.append(f)
        print(f"| {c} | {len(ref)} | {len(e)} | {f:.2f} |")
    print(f"\nmacro F50 over the classes played: {np.mean(fs):.3f}")


if __name__ == "__main__":
    main()
