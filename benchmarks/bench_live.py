"""Benchmark the live runtime: per-block processing time of the StreamProcessor on one CPU core, the RSS of an
idm-live process (file input) and the time of ``import idm.runtime``. Prints a markdown table; asserts nothing.

Usage: ``python benchmarks/bench_live.py [--bundle DIR] [--seconds S] [--ref DIR] [--replace SPEC]``. Without
``--bundle`` the official checkpoint is exported to a temporary bundle first (needs the export extra). With
``--replace``, 256-sample blocks are also timed with that drum replacement on (and its kit's memory printed).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CKPT = "checkpoint/val-epoch=518-global_step=0.ckpt"
BLOCKS = (64, 128, 256, 512)


def pin_one_core() -> str:
    """Run this process (and its onnxruntime threads) on one CPU core."""
    if hasattr(os, "sched_setaffinity"):
        core = min(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {core})
        return f"core {core}"
    return "not pinned (no sched_setaffinity)"


def block_times(bundle: Path, audio: np.ndarray, block: int, mode: str, freeze: bool) -> np.ndarray:
    """Seconds per ``process`` call over the clip, after a warm-up second.

    ``freeze``: kit frozen (the audio path alone); otherwise the running kit re-synthesizes the bank in a
    background thread, which competes for the same core.
    """
    from idm.runtime.engine.processor import ProcessorConfig, StreamProcessor

    proc = StreamProcessor(bundle, ProcessorConfig(provider="cpu", threads=1, stems=mode, freeze=freeze))
    try:
        sr = proc.sample_rate
        for i in range(0, sr, block):  # warm-up
            proc.process(audio[i : i + block])
        proc.reset()
        times = []
        for i in range(0, audio.size - block + 1, block):
            x = audio[i : i + block]
            t0 = time.perf_counter()
            proc.process(x)
            times.append(time.perf_counter() - t0)
        return np.array(times)
    finally:
        proc.close()


def replace_times(bundle: Path, audio: np.ndarray, block: int, spec: str, mode: str) -> tuple[np.ndarray, str]:
    """Seconds per block of ``process`` + the drum replacement's ``Replacer.process`` (frozen kit; masked stems for
    ``swap``), and a line on the kit: load time, memory of its samples and of the voice ring."""
    from idm.runtime.engine.processor import ProcessorConfig, StreamProcessor
    from idm.runtime.engine.replace import Replacer
    from idm.runtime.replace_kit import load_replacement

    stems = "masked" if mode == "swap" else "synth"
    proc = StreamProcessor(bundle, ProcessorConfig(provider="cpu", threads=1, stems=stems, freeze=True))
    try:
        t0 = time.perf_counter()
        kit = load_replacement(spec, proc.sample_rate)
        load = time.perf_counter() - t0
        rep = Replacer(kit, mode, proc.latency, proc.max_block)
        about = (f"{load:.2f} s to load, samples {kit.nbytes / 2**20:.1f} MiB, buffers "
                 f"{(rep.nbytes - kit.nbytes) / 2**10:.0f} KiB")  # fmt: skip
        for i in range(0, proc.sample_rate, block):  # warm-up
            x = audio[i : i + block]
            b = proc.process(x)
            rep.process(b.start, b.events, b.stems, x)
        proc.reset()
        rep.reset()
        times, played = [], 0
        for i in range(0, audio.size - block + 1, block):
            x = audio[i : i + block]
            t0 = time.perf_counter()
            b = proc.process(x)
            rep.process(b.start, b.events, b.stems, x)
            times.append(time.perf_counter() - t0)
            played += len(b.events)
        return np.array(times), f"{about}; {played} hits played"
    finally:
        proc.close()


def rss_of_live(bundle: Path, wav: Path, out: Path) -> tuple[float, float]:
    """Peak RSS (MiB) and wall time of ``idm-live --input WAV --stems-out OUT`` as a child process.

    A child's peak RSS includes the size of the process it was forked from (Linux keeps it across exec), and
    this benchmark has imported torch: a small intermediate interpreter starts idm-live and reports it.
    """
    cmd = [sys.executable, "-c", "from idm.runtime.cli import main; main()", "--input", str(wav),
           "--bundle", str(bundle), "--stems-out", str(out), "--force", "--quiet"]  # fmt: skip
    probe = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        "subprocess.run(sys.argv[1:], check=True, capture_output=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, time.perf_counter() - t)"
    )
    res = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True, check=True)
    kib, wall = res.stdout.split()
    return int(kib) / 1024, float(wall)


def import_time(module: str, runs: int = 5) -> float:
    """Median seconds of ``import module`` in a fresh interpreter."""
    code = f"import time; t=time.perf_counter(); import {module}; print(time.perf_counter()-t)"
    vals = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
            for _ in range(runs)]  # fmt: skip
    return float(np.median(vals))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bundle", type=Path, default=None)
    ap.add_argument("--seconds", type=float, default=20.0, help="length of the clip timed per block size")
    ap.add_argument("--mode", default="synth", choices=["synth", "none"], help="stems computed per block")
    ap.add_argument("--ref", default=os.environ.get("IDM_REFERENCE_DIR", REPO.parent / "shared/reference/idm-official"))
    ap.add_argument("--replace", default=None, help="also time 256-sample blocks with this drum replacement on")
    ap.add_argument("--replace-mode", default="swap", choices=["swap", "add", "solo"])
    args = ap.parse_args()
    import soundfile as sf

    from idm.demo import render_demo_loop

    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.bundle
        if bundle is None:
            from idm.export.bundle import export_bundle

            bundle = export_bundle(Path(args.ref) / CKPT, Path(tmp) / "bundle")
            rows.append(("bundle", "official checkpoint, fp32 export"))
        else:
            rows.append(("bundle", str(bundle)))
        audio = render_demo_loop(args.seconds, 44100)
        wav = Path(tmp) / "loop.wav"
        sf.write(str(wav), render_demo_loop(60.0, 44100), 44100, subtype="FLOAT")
        rss, wall = rss_of_live(bundle, wav, Path(tmp) / "out")  # before pinning: a normal process
        rows.append(
            ("idm-live process, 60 s file -> 9 stems + MIDI: peak RSS / wall time", f"{rss:.0f} MiB / {wall:.1f} s")
        )
        for mod in ("idm.runtime", "idm.runtime.cli", "idm.runtime.engine.processor"):
            rows.append((f"`import {mod}` (fresh interpreter, median of 5)", f"{import_time(mod) * 1000:.0f} ms"))
        where = pin_one_core()
        rows.append(("block timing", f"one thread, {where}, {args.seconds:g} s demo loop, stems {args.mode}"))
        runs = [(b, True) for b in BLOCKS] + [(256, False)]
        for block, freeze in runs:
            t = block_times(bundle, audio, block, args.mode, freeze)
            budget = block / 44100
            kit = "frozen kit" if freeze else "running kit, bank refreshes on the same core"
            rows.append(
                (
                    f"block {block} ({budget * 1000:.2f} ms), {kit}: mean / p99 / max",
                    f"{t.mean() * 1e3:.3f} / {np.percentile(t, 99) * 1e3:.3f} / {t.max() * 1e3:.3f} ms = "
                    f"{t.mean() / budget * 100:.1f} / {np.percentile(t, 99) / budget * 100:.1f} / "
                    f"{t.max() / budget * 100:.1f} % of the block",
                )
            )
        if args.replace is not None:
            t, about = replace_times(bundle, audio, 256, args.replace, args.replace_mode)
            budget = 256 / 44100
            rows.append((f"--replace {args.replace!r} ({args.replace_mode})", about))
            rows.append(
                (
                    f"block 256 ({budget * 1000:.2f} ms), frozen kit, processor + replacement: mean / p99 / max",
                    f"{t.mean() * 1e3:.3f} / {np.percentile(t, 99) * 1e3:.3f} / {t.max() * 1e3:.3f} ms = "
                    f"{t.mean() / budget * 100:.1f} / {np.percentile(t, 99) / budget * 100:.1f} / "
                    f"{t.max() / budget * 100:.1f} % of the block",
                )
            )
    print("| measure | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")


if __name__ == "__main__":
    main()
