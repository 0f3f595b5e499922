"""Offline separation as whole processes, side by side: wall time and peak RSS of each command a user would run.

For a 10 s and a 3 min input (the demo loop), on this machine's CPU: ``idm separate`` (default: the live bundle
through onnxruntime, no PyTorch), ``idm separate --backend torch`` (the same model's checkpoint),
``idm-live --input FILE --mode masked`` (the stream processor over the file), and the official checkpoint
(``--model``) when the reference is there. Reports numbers only: the median wall time of ``--repeat`` runs (on a
shared machine other jobs' load lands in it; the CPU time, user + system, is steadier) and the largest peak RSS.
Each command runs once first, not counted (Python writes its bytecode caches then, as on a user's first run).

    python benchmarks/bench_separate.py [--threads 2] [--seconds 10 180] [--repeat 5] [--only onnx] [--bundle PATH]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
REF = Path(os.environ.get("IDM_REFERENCE_DIR", ROOT.parent / "shared" / "reference" / "idm-official"))


#: The children run as on a user's machine: Python caches compiled modules (this sandbox sets
#: PYTHONDONTWRITEBYTECODE, which makes every run compile the project's modules again, about 0.1 s).
CHILD_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def timed(cmd: list[str]) -> tuple[float, float, float]:
    """Wall seconds, CPU seconds (user + system) and peak RSS (MiB) of one process."""
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: a chatty child never blocks before wait4
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=CHILD_ENV)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        if os.waitstatus_to_exitcode(status) != 0:
            err.seek(0)
            raise SystemExit(f"failed: {' '.join(cmd)}\n{err.read().decode(errors='replace')}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seconds", type=float, nargs="+", default=[10.0, 180.0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per command; the median is reported")
    ap.add_argument("--only", nargs="+", default=None, help="run only the commands whose name contains one of these")
    ap.add_argument("--bundle", nargs="+", default=[], help="also `idm separate --bundle PATH` for each (before/after)")
    args = ap.parse_args()
    from idm.demo import render_demo_loop

    official = next((REF / "checkpoint").glob("*.ckpt"), None)
    py = sys.executable
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} CPU cores (load average {load:.1f} at start), --threads {args.threads}, median of "
          f"{args.repeat} runs")  # fmt: skip
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
            for b in args.bundle:  # runs interleaved with the default, so both see the same machine
                cmds[f"idm separate (onnx, --bundle {b})"] = [py, "-m", "idm", "separate", str(wav), "-o", out, *th,
                                                              "--bundle", b, "-q", "--force"]  # fmt: skip
            if official is not None:
                cmds["idm separate --model official"] = [py, "-m", "idm", "separate", str(wav), "-o", out, "--model",
                                                         str(official), *th, "-q", "--force"]  # fmt: skip
            for name, cmd in cmds.items():
                if args.only and not any(w in name for w in args.only):
                    continue
                timed(cmd)  # not counted: the first run writes the bytecode caches, as a user's first run does
                runs = [timed(cmd) for _ in range(args.repeat)]
                wall = statistics.median(r[0] for r in runs)
                cpu = statistics.median(r[1] for r in runs)
                rss = max(r[2] for r in runs)
                label = f"{seconds:g} s" if seconds < 60 else f"{seconds / 60:g} min"
                rows.append((label, name, wall, seconds / wall, cpu, rss))
                walls = ", ".join(f"{r[0]:.2f}" for r in runs)
                print(f"{label}  {name:40s} {wall:7.2f} s ({walls})  CPU {cpu:6.2f} s  {rss:6.0f} MiB", flush=True)
    print("\n| input | command | wall (process, median) | x real time | CPU (user + sys) | peak RSS |")
    print("|---|---|---|---|---|---|")
    for label, name, wall, speed, cpu, rss in rows:
        print(f"| {label} | `{name}` | {wall:.2f} s | {speed:.1f}x | {cpu:.2f} s | {rss:.0f} MiB |")


if __name__ == "__main__":
    main()
