"""Kit transfer, seen: spectrograms of the sampled demo and of its performance moved to two other kits.

The sampled demo (8 bars rendered with AVL Black Pearl 4, ``idm.demo.render_kit_demo``) is transcribed by the
shipped ``live`` model and re-played (``idm.transfer_kit``) with (1) the one-shots the model infers from another
recording, the synthetic demo loop, and (2) the sample kit AVL Red Zeppelin 4. Writes the PNG and the three WAV
files beside it (``--wav-dir``), and prints what it drew.

    python benchmarks/figure_kit_transfer.py --out docs/figures/kit-transfer.png [--wav-dir out/kit-transfer]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

SR = 44100


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("docs/figures/kit-transfer.png"))
    ap.add_argument("--wav-dir", type=Path, default=None)
    ap.add_argument("--seconds", type=float, default=6.0, help="length of the excerpt drawn")
    args = ap.parse_args()
    from idm import transfer_kit
    from idm.demo import render_demo_loop, render_kit_demo
    from idm.plots import save_png, spectrogram_figure

    mix, _hits = render_kit_demo()
    with tempfile.TemporaryDirectory() as tmp:
        other = Path(tmp) / "demo_loop.wav"
        sf.write(str(other), render_demo_loop(10.0), SR, subtype="FLOAT")
        from_recording = transfer_kit(mix, other, SR)
        to_kit = transfer_kit(mix, "AVL Red Zeppelin 4", SR)
    n = int(args.seconds * SR)
    items = [
        ("original: the sampled demo (AVL Black Pearl 4)", mix[:n]),
        ("--kit-from demo_loop.wav: the kit the model hears in another recording (its one-shot synthesizer)",
         from_recording.mix[:n]),
        ("--kit-from 'AVL Red Zeppelin 4': a sample kit", to_kit.mix[:n]),
    ]  # fmt: skip
    fig = spectrogram_figure(items, SR, f"Kit transfer: one performance ({len(to_kit.hits)} hits found by the "
                             "shipped live model), three kits")  # fmt: skip
    save_png(fig, args.out)
    print(f"{args.out}: {len(items)} spectrograms of {args.seconds:g} s; {len(to_kit.hits)} hits")
    if args.wav_dir is not None:
        args.wav_dir.mkdir(parents=True, exist_ok=True)
        for name, x in (("original", mix), ("from_recording", from_recording.mix), ("to_red_zeppelin", to_kit.mix)):
            peak = float(np.abs(x).max())
            sf.write(str(args.wav_dir / f"{name}.wav"), x / peak * 0.7 if peak > 0 else x, SR, subtype="FLOAT")
        print(f"{args.wav_dir}: original.wav, from_recording.wav, to_red_zeppelin.wav")


if __name__ == "__main__":
    main()
