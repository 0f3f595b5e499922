"""Synthesizer forward+backward time for implementation variants of the same TCN (same weights, same result).

    python benchmarks/profile_synth.py --banks 28
    python benchmarks/profile_synth.py --banks 28 --check --variants "eager bf16" compiled "fused triton"

"fused triton" is ``OneShotSynth.use_fused(True)`` (idm/model/fused_tcn.py) under bf16 autocast;
``--check`` first prints its errors (and eager bf16's) against eager fp32, gradients included.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F

from idm.model.config import SynthConfig
from idm.model.synth import OneShotSynth


def folded_forward(synth: OneShotSynth, noise: torch.Tensor, cond: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """The TCN with each dilated conv run as an undilated conv over ``dilation`` interleaved sub-sequences."""
    lead, n = noise.shape[:-1], noise.shape[-1]
    x = synth.in_proj(noise.reshape(-1, 1, n))
    fc = cond.reshape(-1, cond.shape[-1])
    for blk in synth.blocks:
        d = blk.conv.dilation[0]
        k = blk.conv.kernel_size[0]
        xf = x.float()
        mu = xf.mean(-1, keepdim=True)
        var = xf.var(-1, keepdim=True, unbiased=False)
        y = ((xf - mu) * torch.rsqrt(var + 1e-5)).to(x.dtype if x.dtype != torch.float32 else torch.bfloat16)
        y = F.pad(y, ((k - 1) * d, 0))
        m = y.shape[-1]
        pad_m = -m % d
        if pad_m:
            y = F.pad(y, (0, pad_m))
        bc, c, mm = y.shape
        yf = y.view(bc, c, mm // d, d).permute(0, 3, 1, 2).reshape(bc * d, c, mm // d)
        if channels_last:
            z = F.conv2d(
                yf.unsqueeze(2).contiguous(memory_format=torch.channels_last),
                blk.conv.weight.to(y.dtype).unsqueeze(2),
                blk.conv.bias.to(y.dtype),
            ).squeeze(2)
        else:
            z = F.conv1d(yf, blk.conv.weight.to(y.dtype), blk.conv.bias.to(y.dtype))
        t_out = z.shape[-1]
        z = z.reshape(bc, d, c, t_out).permute(0, 2, 3, 1).reshape(bc, c, t_out * d)[..., :n]
        scale, shift = blk.film(fc).unsqueeze(-1).chunk(2, dim=1)
        x = F.gelu(z * scale + shift) + blk.residual(x)
    x = synth.out_proj(x).reshape(*lead, n)
    return x


def bench(fn, args_, steps: int = 5) -> float:  # type: ignore[no-untyped-def]
    for _ in range(2):
        fn(*args_).float().square().mean().backward()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        fn(*args_).float().square().mean().backward()
    torch.cuda.synchronize()
    return (time.perf_counter() - t) / steps


def check_grads(synth: OneShotSynth, banks: int = 2) -> None:
    """Relative errors (L2) of the raw TCN output and every gradient, eager bf16 and fused bf16 against
    eager fp32 without TF32. The bank max normalisation is left out: rounding can move its argmax, and
    with it a spike of gradient, which would swamp the comparison (seen: 40 % on every gradient)."""
    from idm.model.fused_tcn import fused_tcn

    torch.manual_seed(0)
    rows = banks * 9
    noise = torch.randn(rows, 44100, device="cuda")
    cond = torch.randn(rows, 21, device="cuda")
    gw = torch.randn(rows, 44100, device="cuda")

    def tcn(nz: torch.Tensor, cd: torch.Tensor) -> torch.Tensor:
        x = synth.in_proj(nz[:, None])
        for blk in synth.blocks:
            x = blk(x, cd)
        return synth.out_proj(x)[:, 0]

    def grads(fn, autocast: bool) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
        synth.zero_grad(set_to_none=True)
        nz, cd = noise.clone().requires_grad_(True), cond.clone().requires_grad_(True)
        with torch.autocast("cuda", torch.bfloat16, enabled=autocast):
            out = fn(nz, cd)
        (out.float() * gw).sum().backward()
        g = {n: p.grad.double() for n, p in synth.named_parameters() if p.grad is not None}
        g.update(out=out.detach().double(), noise=nz.grad.double(), cond=cd.grad.double())
        return g

    tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    ref = grads(tcn, False)
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = tf32
    for vname, fn in [("eager bf16", tcn), ("fused triton", lambda nz, cd: fused_tcn(synth, nz, cd, torch.bfloat16))]:
        g = grads(fn, True)
        errs = sorted(((float((g[k] - ref[k]).norm() / ref[k].norm()), k) for k in ref), reverse=True)
        med = sorted(e for e, _ in errs)[len(errs) // 2]
        print(f"  check {vname:12s}: out {dict((k, e) for e, k in errs)['out']:.2e}, gradients median {med:.2e}, "
              f"worst " + ", ".join(f"{k} {e:.2e}" for e, k in errs[:3]), flush=True)  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--banks", type=int, nargs="+", default=[28])
    p.add_argument("--variants", nargs="+", default=None, help="names of the variants to time (default: all)")
    p.add_argument("--check", action="store_true", help="first compare eager and fused bf16 gradients with fp32")
    args = p.parse_args()
    torch.backends.cudnn.benchmark = True
    dev = "cuda"
    for name, cfg in {
        "live": SynthConfig(hidden=16, layers=8, kernel_size=15, dilation_base=3),
        "paper": SynthConfig(hidden=48, layers=12, kernel_size=15, dilation_base=2),
    }.items():
        synth = OneShotSynth(cfg, 9 + 12, 44100).to(dev)
        if args.check:
            print(f"{name}: errors against eager fp32 (raw TCN output, 2 banks)", flush=True)
            check_grads(synth)
        for b in args.banks:
            noise = torch.randn(b, 9, 44100, device=dev)
            cond = torch.randn(b, 9, 21, device=dev)

            def eager(nz, cd, synth=synth):  # type: ignore[no-untyped-def]
                with torch.autocast("cuda", torch.bfloat16):
                    return synth(nz, cd)[0]

            def eager32(nz, cd, synth=synth):  # type: ignore[no-untyped-def]
                return synth(nz, cd)[0]

            compiled = torch.compile(synth)

            def comp(nz, cd, compiled=compiled):  # type: ignore[no-untyped-def]
                with torch.autocast("cuda", torch.bfloat16):
                    return compiled(nz, cd)[0]

            def fold(nz, cd, synth=synth):  # type: ignore[no-untyped-def]
                with torch.autocast("cuda", torch.bfloat16):
                    return folded_forward(synth, nz, cd, False)

            def fold_cl(nz, cd, synth=synth):  # type: ignore[no-untyped-def]
                with torch.autocast("cuda", torch.bfloat16):
                    return folded_forward(synth, nz, cd, True)

            cfold = torch.compile(lambda nz, cd, synth=synth: folded_forward(synth, nz, cd, False))

            def fold_comp(nz, cd, cfold=cfold):  # type: ignore[no-untyped-def]
                with torch.autocast("cuda", torch.bfloat16):
                    return cfold(nz, cd)

            def fused(nz, cd, synth=synth):  # type: ignore[no-untyped-def]
                synth.use_fused(True)
                try:
                    with torch.autocast("cuda", torch.bfloat16):
                        return synth(nz, cd)[0]
                finally:
                    synth.use_fused(False)

            with torch.no_grad():
                with torch.autocast("cuda", torch.bfloat16):
                    a = synth(noise, cond)[0]
                    f = fused(noise, cond)
                ref = synth(noise, cond)[0]  # fp32 (tf32 where enabled)
                print(f"{name}: vs fp32 eager, max diff: eager bf16 {float((a.float() - ref).abs().max()):.3g}, "
                      f"fused triton {float((f.float() - ref).abs().max()):.3g}", flush=True)  # fmt: skip
                with torch.autocast("cuda", torch.bfloat16):
                    raw = folded_forward(synth, noise, cond, False)
                    raw = raw / (raw.abs().amax(dim=(-2, -1), keepdim=True) + 1e-6) * cfg.out_scale
                    rate = synth.decay_rate(cond)
                    raw = raw * torch.exp(-rate.unsqueeze(-1) * synth.time)
                print(
                    f"{name}: folded vs eager max diff {float((a.float() - raw.float()).abs().max()):.3g}", flush=True
                )
            for vname, fn in [("eager bf16", eager), ("eager fp32/tf32", eager32), ("compiled", comp),
                              ("folded", fold), ("folded channels-last", fold_cl), ("folded compiled", fold_comp),
                              ("fused triton", fused)]:  # fmt: skip
                if args.variants is not None and vname not in args.variants:
                    continue
                try:
                    torch.cuda.reset_peak_memory_stats()
                    t = bench(fn, (noise, cond))
                    mem = torch.cuda.max_memory_allocated() / 2**30
                    print(f"{name:5s} banks={b:4d} {vname:22s}: fwd+bwd {t * 1e3:8.1f} ms = {b / t:8.1f} banks/s, "
                          f"peak {mem:.1f} GiB", flush=True)  # fmt: skip
                except Exception as e:
                    print(f"{name} {vname}: failed {type(e).__name__}: {str(e)[:200]}", flush=True)


if __name__ == "__main__":
    main()
