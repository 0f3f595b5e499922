"""Render speed of the training data (one process, one core): x real time for plain, augmented and stem renders.

Usage: ``python benchmarks/bench_render.py [--gmd ROOT] [--kits-root /usr/share|PACK] [--n 200]``.
Reports numbers only.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--gmd", type=Path, default=ROOT.parent / "shared" / "data" / "gmd" / "groove")
    ap.add_argument("--kits-root", type=Path, default=None)
    ap.add_argument("--n", type=int, default=200, help="examples per setting")
    args = ap.parse_args()

    from idm.data.examples import ExampleSampler, TrainDataConfig
    from idm.data.render import RenderAugment

    t0 = time.perf_counter()
    base = ExampleSampler(TrainDataConfig(args.gmd, kits_root=args.kits_root))
    base.prepare()
    print(f"kits {len(base.kits)} + {len(base.performances)} train performances loaded in "
          f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
    settings = {
        "plain": dict(augment=None),
        "augmented (training default)": dict(augment=RenderAugment()),
        "plain + stems (evaluation)": dict(augment=None, stems=True),
    }
    for label, kw in settings.items():
        cfg = TrainDataConfig(args.gmd, kits_root=args.kits_root, **kw)  # type: ignore[arg-type]
        s = ExampleSampler(cfg, base.kits)
        s.gmd = base.gmd
        s.performances = base.performances
        t = time.perf_counter()
        hits = 0
        for i in range(args.n):
            hits += int(s.example(0, i).render.onsets.sum())
        dt = time.perf_counter() - t
        audio = args.n * cfg.n_samples / 44100
        print(f"{label:30s} {audio / dt:7.0f} x real time  ({dt / args.n * 1000:.1f} ms per {cfg.crop_seconds:g} s "
              f"example, {hits / args.n:.0f} hits)")  # fmt: skip


if __name__ == "__main__":
    main()
