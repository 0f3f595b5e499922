"""Benchmark the official bundle: export time, graph sizes, per-call encoder time (ORT CPU, 1 thread) vs
PyTorch eager for the same streaming step, and the log-mel front end in numpy vs inside an ONNX graph.

Usage: ``python benchmarks/bench_export.py [--ref DIR]`` (prints a markdown table).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
CKPT = "checkpoint/val-epoch=518-global_step=0.ckpt"


def timeit(fn, n: int = 200, warm: int = 20) -> float:
    for _ in range(warm):
        fn()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t0) / n * 1e3


class GraphFrontend(torch.nn.Module):
    """Log-mel of ``m`` framed windows ``[m, n_fft]`` as two matmuls (DFT) + mel matmul + log, for ONNX."""

    def __init__(self, mel_fb: np.ndarray, n_fft: int) -> None:
        super().__init__()
        n = np.arange(n_fft)
        k = np.arange(n_fft // 2 + 1)
        win = 0.5 - 0.5 * np.cos(2 * np.pi * n / n_fft)
        ang = 2 * np.pi * np.outer(n, k) / n_fft
        self.register_buffer("cos", torch.tensor(win[:, None] * np.cos(ang), dtype=torch.float32))
        self.register_buffer("sin", torch.tensor(win[:, None] * np.sin(ang), dtype=torch.float32))
        self.register_buffer("fb", torch.tensor(mel_fb, dtype=torch.float32))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        power = (frames @ self.cos) ** 2 + (frames @ self.sin) ** 2
        return torch.log(power @ self.fb + 1e-6)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ref", default=os.environ.get("IDM_REFERENCE_DIR", REPO.parent / "shared/reference/idm-official"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    from idm.export.bundle import export_bundle
    from idm.export.streaming import END_UNKNOWN, StreamingEncoder
    from idm.runtime.engine.bundle import load_bundle
    from idm.runtime.engine.encoder import make_session
    from idm.runtime.engine.frontend import FrontendParams, StreamingLogMel

    from idm.checkpoint import load_model

    ckpt = Path(args.ref) / CKPT
    rows: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        out = export_bundle(ckpt, Path(tmp) / "bundle")
        rows.append(("export time (official, fp32)", f"{time.perf_counter() - t0:.1f} s"))
        for name in ("encoder.onnx", "synth.onnx", "mel_fb.npy", "noise.npy", "parity.npz"):
            rows.append((f"size {name}", f"{(out / name).stat().st_size / 1024:.0f} KiB"))
        b = load_bundle(out)
        sess = make_session(str(b.encoder_path), threads=1)
        model = load_model(ckpt)
        enc = StreamingEncoder(model).eval()
        state_t = enc.initial_state()
        state_np = b.initial_state()
        rng = np.random.default_rng(0)
        for m in (1, 4, 16):
            x = (rng.standard_normal((1, 128, m)) - 5).astype(np.float32)
            feed = {"logmel": x, "end_frame": np.array([END_UNKNOWN]), **state_np}
            ort_ms = timeit(lambda feed=feed: sess.run(None, feed))
            xt = torch.from_numpy(x)
            end = torch.tensor([END_UNKNOWN])
            with torch.inference_mode():
                pt_ms = timeit(lambda xt=xt, end=end: enc(xt, end, *state_t))
            rows.append(
                (
                    f"encoder step, {m} frame(s): ORT CPU 1 thread / PyTorch eager 1 thread",
                    f"{ort_ms:.3f} ms / {pt_ms:.3f} ms",
                )
            )
        # front end: numpy streaming vs the same maths inside an ONNX graph (frames already cut)
        fe = b.manifest["frontend"]
        np_fe = StreamingLogMel(FrontendParams(44100, fe["n_fft"], fe["hop"], fe["n_mels"], fe["log_eps"]), b.mel_fb())
        np_fe.process(np.zeros(4096, np.float32))
        gpath = Path(tmp) / "frontend.onnx"
        torch.onnx.export(
            GraphFrontend(b.mel_fb(), fe["n_fft"]),
            (torch.zeros(4, fe["n_fft"]),),
            str(gpath),
            input_names=["frames"],
            output_names=["logmel"],
            dynamic_axes={"frames": {0: "m"}},
            opset_version=17,
            dynamo=False,
        )
        gsess = make_session(str(gpath), threads=1)
        for m in (1, 4, 16):
            audio = (rng.standard_normal(256 * m) * 0.1).astype(np.float32)
            np_ms = timeit(lambda audio=audio: np_fe.process(audio))
            frames = (rng.standard_normal((m, fe["n_fft"])) * 0.1).astype(np.float32)
            g_ms = timeit(lambda frames=frames: gsess.run(None, {"frames": frames}))
            rows.append(
                (f"log-mel, {m} frame(s): numpy streaming / in an ONNX graph", f"{np_ms:.3f} ms / {g_ms:.3f} ms")
            )
        ssess = make_session(str(b.synth_path), threads=1)
        kit = np.full((1, 6), 1 / 6, np.float32)
        noise = b.noise()
        rows.append(
            (
                "synth.onnx, one bank of 9 one-shots (1 thread)",
                f"{timeit(lambda: ssess.run(None, {'kit_embedding': kit, 'noise': noise}), n=2, warm=1):.0f} ms",
            )
        )
    print("| measure | value |\n|---|---|")
    for k, v in rows:
        print(f"| {k} | {v} |")


if __name__ == "__main__":
    main()
