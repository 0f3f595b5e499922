"""Peak RSS of ``idm separate`` (default: onnx, live bundle, masked stems) against input length.

The inputs are the demo loop tiled to each length and written block by block into a temporary folder (16-bit
PCM, so a 2-hour input is 635 MB and is never in memory here either); each separation is one whole process,
measured with ``os.wait4``. Outputs are float32 stems (9 x 1.27 GB for 2 hours): mind the disk.

    python benchmarks/bench_memory.py [--minutes 0.1667 10 120] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf
from bench_separate import timed  # one process measurement for both benchmarks


def tile_loop(path: Path, seconds: float, rate: int = 44100, loop_seconds: float = 8.0) -> None:
    """Write the demo loop repeated to ``seconds`` as 16-bit PCM, one loop at a time."""
    from idm.demo import render_demo_loop

    loop = render_demo_loop(loop_seconds, rate)
    total = int(seconds * rate)
    with sf.SoundFile(str(path), "w", rate, 1, subtype="PCM_16") as f:
        done = 0
        while done < total:
            n = min(loop.shape[0], total - done)
            f.write(np.ascontiguousarray(loop[:n]))
            done += n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, nargs="+", default=[10 / 60, 10.0, 120.0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tmp", type=Path, default=None, help="folder for the inputs and outputs (default: system temp)")
    args = ap.parse_args()
    print(f"{os.cpu_count()} CPU cores, --threads {args.threads}")
    rows = []
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for minutes in args.minutes:
            wav = Path(tmp) / f"tiled_{minutes:g}min.wav"
            tile_loop(wav, minutes * 60)
            cmd = [sys.executable, "-m", "idm", "separate", str(wav), "-o", str(Path(tmp) / "out"), "--threads",
                   str(args.threads), "-q", "--force"]  # fmt: skip
            wall, cpu, rss = timed(cmd)
            rows.append((minutes, wall, cpu, rss))
            print(f"{minutes:g} min: wall {wall:.1f} s, CPU {cpu:.1f} s, peak RSS {rss:.0f} MiB", flush=True)
            wav.unlink()
            for stem in (Path(tmp) / "out").glob("*/*"):
                stem.unlink()
    print("\n| input | wall (process) | CPU (user + sys) | peak RSS |")
    print("|---|---|---|---|")
    for minutes, wall, cpu, rss in rows:
        label = f"{minutes:g} min" if minutes < 60 else f"{minutes / 60:g} h"
        label = f"{minutes * 60:.0f} s" if minutes < 1 else label
        print(f"| {label} | {wall:.1f} s | {cpu:.1f} s | {rss:.0f} MiB |")


if __name__ == "__main__":
    main()
