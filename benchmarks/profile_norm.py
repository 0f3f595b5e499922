"""The encoder's channel LayerNorms on the GPU: PyTorch's (permute + layer_norm) against the Triton kernel.

Times forward + backward of every LayerNorm the `live` (or `paper`) encoder runs in one training step, at the
shapes of that step (batch 64, 6 s crops: 128 mels at 44.1 kHz / 256 hop), bf16 inputs under autocast as in
training, and checks that both give the same output and gradients. Prints numbers, asserts nothing.

    PYTHONPATH=$PWD python benchmarks/profile_norm.py --config live --batch 64
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn import functional as F

ROOT = Path(__file__).resolve().parents[1]


def shapes(config: str, batch: int, frames: int) -> list[tuple[int, int, int, int, bool]]:
    """``(B, C, H, W, channels_last_out)`` of each channel LayerNorm of one encoder forward."""
    from idm.train.config import load_config

    cfg, _ = load_config(ROOT / "configs" / f"{config}.yaml", [])
    enc = cfg.model.encoder
    mels = cfg.model.frontend.n_mels
    h = (mels - enc.stem_kernel) // enc.stem_mel_stride + 1
    out = [(batch, enc.dims[0], h, frames, False)]  # the stem's norm
    for i, (d, n) in enumerate(zip(enc.dims, enc.depths, strict=True)):
        if i:
            out.append((batch, enc.dims[i - 1], h, frames, False))  # norm before the downsampling conv
            h = (h - enc.down_kernel) // 2 + 1
        out += [(batch, d, h, frames, True)] * n  # the blocks' norms
    return out


def eager(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, last: bool) -> torch.Tensor:
    y = F.layer_norm(x.permute(0, 2, 3, 1), (x.shape[1],), w, b, 1e-6)
    return y if last else y.permute(0, 3, 1, 2)


def fwd_bwd(
    name: str, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, dy: torch.Tensor, last: bool
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """One LayerNorm forward under bf16 autocast and its gradients, PyTorch's (``eager``) or the kernel."""
    from idm.model.fused_norm import channel_norm

    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = eager(x, w, b, last) if name == "eager" else channel_norm(x, w, b, 1e-6, last)
    return y, torch.autograd.grad(y, (x, w, b), dy)


def timed(fn: Callable[[], object], reps: int) -> float:
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    fn()
    torch.cuda.synchronize()
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="live")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--reps", type=int, default=20)
    args = p.parse_args()
    frames = int(args.seconds * 44100) // 256 + 1
    dev = torch.device("cuda")
    total = {"eager": 0.0, "triton": 0.0}
    worst = 0.0
    print(f"{args.config}: batch {args.batch}, {frames} frames, bf16 inputs under autocast; fwd + bwd, ms")
    for bsz, c, h, w_, last in shapes(args.config, args.batch, frames):
        g = torch.Generator(device=dev).manual_seed(c * h)
        x = torch.randn(bsz, c, h, w_, device=dev, generator=g).bfloat16().requires_grad_(True)
        w = (1 + 0.2 * torch.randn(c, device=dev, generator=g)).requires_grad_(True)
        b = (0.1 * torch.randn(c, device=dev, generator=g)).requires_grad_(True)
        dy = torch.randn(bsz, h, w_, c, device=dev, generator=g)
        dy = dy if last else dy.permute(0, 3, 1, 2)
        res = {}
        for name in ("eager", "triton"):
            args_ = (name, x, w, b, dy, last)
            res[name] = fwd_bwd(*args_)
            ms = timed(lambda a=args_: fwd_bwd(*a), args.reps)
            total[name] += ms
            print(f"  [{bsz}, {c:2d}, {h:2d}, {w_}] {'-> NHWC' if last else '      '} {name:6s} {ms:7.3f}", flush=True)
        for a, e in zip([res["triton"][0], *res["triton"][1]], [res["eager"][0], *res["eager"][1]], strict=True):
            err = float((a.float() - e.float()).norm() / e.float().norm().clamp_min(1e-30))
            worst = max(worst, err)
    print(f"total per step: PyTorch {total['eager']:.2f} ms, Triton {total['triton']:.2f} ms "
          f"({total['eager'] / total['triton']:.1f}x); largest relative L2 difference {worst:.1e}")  # fmt: skip


if __name__ == "__main__":
    main()
