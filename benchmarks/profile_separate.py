"""Where ``idm separate`` (onnx backend) spends its time: wall and CPU seconds per stage, in one process.

Stages: imports, sessions (bundle hashes, two onnxruntime sessions), analysis (read, resample, log-mel, the
encoder over parallel segments), picking, bank (the synthesizer), render (masked stems on worker threads,
with the WAV writing shown apart). A rendered demo loop of ``--seconds`` unless a file is given.

    python benchmarks/profile_separate.py [--seconds 180 | --input FILE] [--threads 2]
"""

from __future__ import annotations

import time

T0, C0 = time.perf_counter(), time.process_time()

import argparse  # noqa: E402
import resource  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402


class Stages:
    """Wall and CPU time between marks, and the peak RSS so far."""

    def __init__(self) -> None:
        self.t, self.c = T0, C0
        self.rows: list[tuple[str, float, float, float]] = []

    def mark(self, name: str) -> None:
        t, c = time.perf_counter(), time.process_time()
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        self.rows.append((name, t - self.t, c - self.c, rss))
        self.t, self.c = t, c


def main() -> None:
    stages = Stages()
    import numpy as np  # noqa: F401 -- counted with the imports
    from idm.runtime.offline import OfflineConfig, OfflineSeparator
    from idm.runtime.sources import FileSource
    from idm.runtime.stems_writer import StemsWriter

    from idm.models import resolve_bundle

    stages.mark("imports")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=180.0)
    ap.add_argument("--input", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = args.input
        if path is None:
            import soundfile as sf

            from idm.demo import render_demo_loop

            path = Path(tmp) / "in.wav"
            sf.write(str(path), render_demo_loop(args.seconds), 44100)
        stages.t, stages.c = time.perf_counter(), time.process_time()  # the input's rendering is not counted
        sep = OfflineSeparator(resolve_bundle("live"), OfflineConfig(threads=args.threads))
        stages.mark("sessions")
        src = FileSource(path)
        a = sep.analyse(src)
        stages.mark("analysis")
        ks, js = sep.hits(a)
        sep.onsets(a, ks, js)
        stages.mark("picking")
        renderer = sep.renderer(a, ks, js)
        stages.mark("bank")
        writer = StemsWriter(tmp, 9, sep.sample_rate, src.sample_rate, 0, channels=src.channels)
        write_wall = write_cpu = 0.0
        for start, stems in renderer.blocks(src):
            t, c = time.perf_counter(), time.process_time()
            writer.write(start, stems)
            write_wall += time.perf_counter() - t
            write_cpu += time.process_time() - c
        writer.close(a.n_samples)
        stages.mark("render + write")
    seconds = a.n_samples / src.sample_rate
    print(f"{seconds:g} s input, --threads {args.threads}, {len(ks)} hits")
    print("| stage | wall | CPU | peak RSS so far |")
    print("|---|---|---|---|")
    for name, wall, cpu, rss in stages.rows:
        print(f"| {name} | {wall:.2f} s | {cpu:.2f} s | {rss:.0f} MiB |")
    print(f"| (of which WAV writing) | {write_wall:.2f} s | {write_cpu:.2f} s | |")
    total_w = sum(r[1] for r in stages.rows)
    total_c = sum(r[2] for r in stages.rows)
    print(f"| total | {total_w:.2f} s | {total_c:.2f} s | |")


if __name__ == "__main__":
    main()
