"""How far the model's hits are from the true onsets, on its frame grid and after a sub-frame onset search.

The sampled demo (AVL Black Pearl 4, a training kit; its true hits known) goes through ``idm separate``'s
analysis with the default model; every detected hit within 50 ms of a true hit of its class is compared with
it: at its frame (``frame x hop``), at the strongest rise of the high-passed energy envelope of the input
within ``--half`` samples of that frame (window ``--win``; the search's constant lag is reported as its signed
median, "bias", and removed before the spread is measured), and where ``idm separate --replace KIT
--replace-align`` starts the kit's sample (:mod:`idm.runtime.engine.align`, the demo's own kit at the model's
velocities; no lag removed). Prints the error statistics in samples.

    python benchmarks/align_onsets.py [--half 256] [--win 16 32 48]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from idm.runtime.engine.align import AlignConfig, align_starts, gather_windows
from idm.runtime.engine.align import transient as onset_search
from idm.runtime.offline import OfflineConfig, OfflineSeparator
from idm.runtime.replace_kit import load_replacement
from idm.runtime.sources import FileSource

from idm.classes import CLASSES
from idm.demo import DEMO_KIT, render_kit_demo
from idm.midi import to_midi_velocity
from idm.models import resolve_bundle

RATE = 44100


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--half", type=int, default=256, help="search half-width in samples")
    ap.add_argument("--win", type=int, nargs="+", default=[16, 32, 48], help="energy window(s) in samples")
    args = ap.parse_args()
    audio, truth = render_kit_demo()
    mono = audio if audio.ndim == 1 else audio.mean(axis=1)
    true_at = {c: np.array([round(t * RATE) for t, cc, _ in truth if cc == c]) for c in CLASSES}
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "demo.wav"
        sf.write(str(wav), audio, RATE)
        sep = OfflineSeparator(resolve_bundle("live"), OfflineConfig(threads=2))
        src = FileSource(wav)
        a = sep.analyse(src)
        ks, js = sep.hits(a)
        src.close()
        hop = sep.hop
    kit = load_replacement(DEMO_KIT, RATE)
    vel = to_midi_velocity(a.velocity[ks, js])
    cfg = AlignConfig()
    frames = js.astype(np.int64) * hop
    shipped = align_starts(gather_windows([mono.astype(np.float32)], frames, cfg), frames,
                           lambda i: kit.sample(int(ks[i]), int(vel[i]))[0], cfg)  # fmt: skip
    placed = dict(zip(zip(ks.tolist(), frames.tolist(), strict=True), shipped.tolist(), strict=True))
    pairs = []  # (detected frame's sample, true onset sample) of the true positives
    pair_ks: list[int] = []
    for k, j in zip(ks, js, strict=True):
        t = true_at[CLASSES[int(k)]]
        p = int(j) * hop
        if t.size and np.min(np.abs(t - p)) <= 0.05 * RATE:
            pairs.append((p, int(t[np.argmin(np.abs(t - p))])))
            pair_ks.append(int(k))
    print(f"{len(ks)} detected hits, {len(pairs)} within 50 ms of a true hit of their class ({len(truth)} true hits)")
    print("| placement | bias (signed median) | median abs error | within 8 | within 32 | p90 |")
    print("|---|---|---|---|---|---|")
    rows = {"frame grid": np.array([p - t for p, t in pairs], dtype=float)}
    for w in args.win:
        rows[f"onset search, window {w}"] = np.array(
            [onset_search(mono, p, args.half, w) - t for p, t in pairs], dtype=float
        )
    rows["--replace-align (shipped, no lag removed)"] = np.array([placed[(int(k), p)] - t for (p, t), k in zip(
        pairs, pair_ks, strict=True)], dtype=float)  # fmt: skip
    for name, e in rows.items():
        bias = float(np.median(e)) if "shipped" not in name else 0.0
        d = np.abs(e - bias)
        print(f"| {name} | {bias:+.0f} | {np.median(d):.0f} | {np.mean(d <= 8):.2f} | {np.mean(d <= 32):.2f} | "
              f"{np.percentile(d, 90):.0f} |")  # fmt: skip


if __name__ == "__main__":
    main()
