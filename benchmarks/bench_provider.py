"""Per-block StreamProcessor time on the CUDA and CPU providers (run on the GPU machine with onnxruntime-gpu).

python benchmarks/bench_provider.py BUNDLE [BUNDLE...]
"""

from __future__ import annotations

import sys
import time

import numpy as np
from idm.runtime.engine.processor import ProcessorConfig, StreamProcessor

from idm.errors import ConfigError


def main(bundles: list[str]) -> None:
    x = (np.random.default_rng(0).standard_normal(44100 * 8) * 0.1).astype("float32")
    for b in bundles:
        for prov in ("cuda", "cpu"):
            try:
                p = StreamProcessor(b, ProcessorConfig(provider=prov, freeze=True, threads=1))
            except ConfigError as e:
                print(f"{b} {prov}: {e}")
                continue
            for bs in (64, 128, 256, 512):
                p.reset()
                t = []
                for i in range(0, len(x) - bs, bs):
                    t0 = time.perf_counter()
                    p.process(x[i : i + bs])
                    t.append(time.perf_counter() - t0)
                ms = np.array(t[200:]) * 1e3
                budget = bs / 44.1
                p99 = np.percentile(ms, 99)
                print(
                    f"{b} {p.provider} block {bs}: mean {ms.mean():.3f} ms p99 {p99:.3f} max {ms.max():.3f} "
                    f"= {100 * ms.mean() / budget:.1f} % / {100 * p99 / budget:.1f} % of {budget:.2f} ms"
                )
            p.close()


if __name__ == "__main__":
    main(sys.argv[1:] or ["idm/weights/live/bundle"])
