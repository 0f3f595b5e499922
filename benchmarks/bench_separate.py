"""Offline separation as whole processes, side by side: wall time and peak RSS of each command a user would run.

For a 10 s and a 3 min input (the demo loop), on this machine's CPU: ``idm separate`` (default: the live bundle
through onnxruntime, no PyTorch), ``idm separate --backend torch`` (the same model's checkpoint),
``idm-live --input FILE --mode masked`` (the stream processor over the file), and the official checkpoint
(``--model``) when the reference is there. Reports numbers only.

    python benchmarks/bench_separate.py [--threads 2] [--seconds 10 180]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
REF = Path(os.environ.get("IDM_REFERENCE_DIR", ROOT.parent / "shared" / "reference" / "idm-official"))


def timed(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read().decode() if proc.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{err}")
    return wall, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, nargs="+", default=[10.0, 180.0])
    ap.add_argument("--repeat", type=int, default=2, help="runs per command; the fastest is reported")
    args = ap.parse_args()
    from idm.demo import render_demo_loop

    official = next((REF / "checkpoint").glob("*.ckpt"), None)
    py = sys.executable
    print(f"{os.cpu_count()} CPU cores, --threads {args.threads}, best of {args.repeat} runs")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "o")
        for seconds in args.seconds:
            wav = Path(tmp) / f"in_{int(seconds)}.wav"
            sf.write(str(wav), render_demo_loop(seconds), 44100)
            th = ["--threads", str(args.threads)]
            cmds = {
                "idm separate (onnx, live bundle)": [py, "-m", "idm", "separate", str(wav), "-o", out, *th, "-q",
                                                     "--force"],
                "idm separate --backend torch (live)": [py, "-m", "idm", "separate", str(wav), "-o", out, *th,
                                                        "--backend", "torch", "-q", "--force"],
                "idm-live --input FILE --mode masked": [py, "-c", "from idm.runtime.cli import main; main()",
                                                        "--input", str(wav), "--mode", "masked", "--stems-out", out,
                                                        "--no-midi", *th, "--quiet", "--force"],
            }  # fmt: skip
            if official is not None:
                cmds["idm separate --model official"] = [py, "-m", "idm", "separate", str(wav), "-o", out, "--model",
                                                         str(official), *th, "-q", "--force"]  # fmt: skip
            for name, cmd in cmds.items():
                runs = [timed(cmd) for _ in range(args.repeat)]
                wall = min(r[0] for r in runs)
                rss = max(r[1] for r in runs)
                rows.append((f"{seconds:g} s", name, wall, seconds / wall, rss))
                print(f"{seconds:g} s  {name:40s} {wall:7.2f} s  {seconds / wall:6.1f}x real time  {rss:6.0f} MiB",
                      flush=True)  # fmt: skip
    print("\n| input | command | wall (process) | x real time | peak RSS |")
    print("|---|---|---|---|---|")
    for label, name, wall, speed, rss in rows:
        print(f"| {label} | `{name}` | {wall:.2f} s | {speed:.1f}x | {rss:.0f} MiB |")


if __name__ == "__main__":
    main()
