"""Time ``idm separate`` on 10 s and 3 min inputs on CPU: end to end (the CLI) and by stage.

Usage: ``python benchmarks/bench_separate.py [--model CKPT] [--threads 2]``. Reports numbers only.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
REF = Path(os.environ.get("IDM_REFERENCE_DIR", ROOT.parent / "shared" / "reference" / "idm-official"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", type=Path, default=next((REF / "checkpoint").glob("*.ckpt"), None))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    if args.model is None:
        sys.exit("error: no model; pass --model")
    import torch

    from idm.demo import render_demo_loop
    from idm.peaks import peak_pick
    from idm.separate import Separator

    torch.set_num_threads(args.threads)
    print(f"model {args.model.name}, torch {torch.__version__}, {args.threads} threads, CPU: {os.cpu_count()} cores")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, seconds in (("10 s", 10.0), ("3 min", 180.0)):
            x = render_demo_loop(seconds)
            wav = Path(tmp) / f"in_{int(seconds)}.wav"
            sf.write(str(wav), x, 44100)
            # end to end: a fresh `idm separate` process, as a user runs it
            t0 = time.perf_counter()
            cmd = [sys.executable, "-m", "idm", "separate", str(wav), "-o", str(Path(tmp) / "o"), "--model",
                   str(args.model), "--threads", str(args.threads), "--quiet", "--force"]  # fmt: skip
            subprocess.run(cmd, check=True)
            cli = time.perf_counter() - t0
            # stages, in process
            sep = Separator.from_checkpoint(args.model)
            t = time.perf_counter()
            an = sep.analyze(x)
            t_an = time.perf_counter() - t
            t = time.perf_counter()
            peaks = peak_pick(an.onset_probs)
            t_pk = time.perf_counter() - t
            t = time.perf_counter()
            shots = sep.one_shots(an.kit_embedding)
            t_bank = time.perf_counter() - t
            t = time.perf_counter()
            for _ in sep.render(x, an, an.activations(peaks), shots):
                pass
            t_render = time.perf_counter() - t
            rows.append((label, cli, t_an, t_pk, t_bank, t_render, int(peaks.sum()), seconds))
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    head = (
        "| input | `idm separate` (process) | x real time | analysis | peak picking | one-shot bank | masked render |"
    )
    print("\n" + head + " onsets |")
    print("|---|---|---|---|---|---|---|---|")
    for label, cli, a, p, b, r, n, sec in rows:
        row = f"| {label} | {cli:.2f} s | {sec / cli:.1f}x | {a:.2f} s | {p * 1000:.0f} ms | {b:.2f} s | {r:.2f} s |"
        print(row + f" {n} |")
    print(f"\npeak RSS of the `idm separate` processes: {rss:.0f} MiB")


if __name__ == "__main__":
    main()
