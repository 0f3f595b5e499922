"""Triton LayerNorm over the channel axis of ``[B, C, H, W]`` tensors with few channels (the encoder's 4-32).

One pass each way, any input strides, output channels-first or channels-last; imported lazily by
:meth:`idm.model.encoder.Encoder.use_fused` (it imports Triton).
"""

from __future__ import annotations

from typing import Any

import torch
import triton
import triton.language as tl

__all__ = ["channel_norm", "interpreting"]

#: Elements (positions x padded channels) per program: 4096 is 32 fp32 values a thread at 4 warps (no spills).
_TILE_ELEMENTS = 4096


def interpreting() -> bool:
    """Whether the kernels run through Triton's CPU interpreter (``TRITON_INTERPRET=1`` at import)."""
    return type(_fwd_kernel).__name__ == "InterpretedFunction"


@triton.jit
def _tile(S, C, BS: tl.constexpr, BC: tl.constexpr):
    """Positions and channels of this program's tile (``program_id(0)``), their masks and the tile's mask."""
    s = tl.program_id(0) * BS + tl.arange(0, BS)
    c = tl.arange(0, BC)
    ms = s < S
    mc = c < C
    return s, c, ms, mc, ms[:, None] & mc[None, :]


@triton.jit
def _fwd_kernel(
    x_ptr, w_ptr, b_ptr, y_ptr, mean_ptr, rstd_ptr,
    S, C, sxb, sxc, sxs, syb, syc, sys_, eps,
    BS: tl.constexpr, BC: tl.constexpr,
):  # fmt: skip
    """One tile of ``BS`` positions of example ``program_id(1)``: statistics over the channels, then the affine."""
    b = tl.program_id(1).to(tl.int64)
    s, c, ms, mc, m = _tile(S, C, BS, BC)
    x = tl.load(x_ptr + b * sxb + s[:, None] * sxs + c[None, :] * sxc, mask=m, other=0.0).to(tl.float32)
    mean = tl.sum(x, axis=1) / C
    d = tl.where(m, x - mean[:, None], 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(d * d, axis=1) / C + eps)
    w = tl.load(w_ptr + c, mask=mc, other=0.0).to(tl.float32)
    bias = tl.load(b_ptr + c, mask=mc, other=0.0).to(tl.float32)
    y = d * rstd[:, None] * w[None, :] + bias[None, :]
    tl.store(y_ptr + b * syb + s[:, None] * sys_ + c[None, :] * syc, y.to(y_ptr.dtype.element_ty), mask=m)
    tl.store(mean_ptr + b * S + s, mean, mask=ms)
    tl.store(rstd_ptr + b * S + s, rstd, mask=ms)


@triton.jit
def _bwd_kernel(
    x_ptr, w_ptr, dy_ptr, dx_ptr, mean_ptr, rstd_ptr, dw_ptr, db_ptr,
    S, C, sxb, sxc, sxs, sdb, sdc, sds, sgb, sgc, sgs,
    BS: tl.constexpr, BC: tl.constexpr,
):  # fmt: skip
    """Input gradient of one tile, and its partial sums of the weight and bias gradients (row ``tile`` of dw, db)."""
    b = tl.program_id(1).to(tl.int64)
    tile = tl.program_id(1) * tl.num_programs(0) + tl.program_id(0)
    s, c, ms, mc, m = _tile(S, C, BS, BC)
    x = tl.load(x_ptr + b * sxb + s[:, None] * sxs + c[None, :] * sxc, mask=m, other=0.0).to(tl.float32)
    dy = tl.load(dy_ptr + b * sdb + s[:, None] * sds + c[None, :] * sdc, mask=m, other=0.0).to(tl.float32)
    mean = tl.load(mean_ptr + b * S + s, mask=ms, other=0.0)
    rstd = tl.load(rstd_ptr + b * S + s, mask=ms, other=0.0)
    w = tl.load(w_ptr + c, mask=mc, other=0.0).to(tl.float32)
    xhat = tl.where(m, (x - mean[:, None]) * rstd[:, None], 0.0)
    g = dy * w[None, :]
    c1 = tl.sum(g * xhat, axis=1) / C
    c2 = tl.sum(g, axis=1) / C
    dx = (g - xhat * c1[:, None] - c2[:, None]) * rstd[:, None]
    tl.store(dx_ptr + b * sgb + s[:, None] * sgs + c[None, :] * sgc, dx.to(dx_ptr.dtype.element_ty), mask=m)
    tl.store(dw_ptr + tile * BC + c, tl.sum(dy * xhat, axis=0))
    tl.store(db_ptr + tile * BC + c, tl.sum(dy, axis=0))


def _bcs(t: torch.Tensor, channels_last: bool) -> tuple[torch.Tensor, tuple[int, int, int]]:
    """``t`` (made mergeable if needed) and its (batch, channel, position) strides, ``[B, C, H, W]`` or
    ``[B, H, W, C]`` with ``channels_last``."""
    ch, h, w = (3, 1, 2) if channels_last else (1, 2, 3)
    if t.shape[w] > 1 and t.shape[h] > 1 and t.stride(h) != t.shape[w] * t.stride(w):
        t = t.contiguous()
    return t, (t.stride(0), t.stride(ch), t.stride(w) if t.shape[w] > 1 else t.stride(h))


def _tiles(s: int, c: int) -> tuple[int, int, int]:
    bc = triton.next_power_of_2(c)
    bs = max(16, min(triton.next_power_of_2(s), _TILE_ELEMENTS // bc))
    return bc, bs, triton.cdiv(s, bs)


class _ChannelNormFn(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor,
        eps: float,
        channels_last_out: bool,
        out_dtype: torch.dtype,
    ) -> torch.Tensor:
        bsz, c, h, w = x.shape
        s = h * w
        x, sx = _bcs(x, False)
        y = torch.empty((bsz, h, w, c) if channels_last_out else (bsz, c, h, w), dtype=out_dtype, device=x.device)
        _, sy = _bcs(y, channels_last_out)
        mean = torch.empty((bsz, s), dtype=torch.float32, device=x.device)
        rstd = torch.empty_like(mean)
        bc, bs, nt = _tiles(s, c)
        _fwd_kernel[(nt, bsz)](x, weight, bias, y, mean, rstd, s, c, *sx, *sy, eps, BS=bs, BC=bc, num_warps=4)
        ctx.save_for_backward(x, weight, mean, rstd)
        ctx.channels_last_out = channels_last_out
        return y

    @staticmethod
    def backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, ...]:
        x, weight, mean, rstd = ctx.saved_tensors
        bsz, c, h, w = x.shape
        s = h * w
        dy, sd = _bcs(dy, ctx.channels_last_out)
        dx = torch.empty_like(x)
        _, sg = _bcs(dx, False)
        bc, bs, nt = _tiles(s, c)
        dw = torch.empty((nt * bsz, bc), dtype=torch.float32, device=x.device)
        db = torch.empty_like(dw)
        _bwd_kernel[(nt, bsz)](x, weight, dy, dx, mean, rstd, dw, db, s, c, *_bcs(x, False)[1], *sd, *sg,
                               BS=bs, BC=bc, num_warps=4)  # fmt: skip
        return dx, dw.sum(0)[:c].to(weight.dtype), db.sum(0)[:c].to(weight.dtype), None, None, None


@torch.compiler.disable
def channel_norm(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float, channels_last_out: bool = False
) -> torch.Tensor:
    """LayerNorm of ``x`` ``[B, C, H, W]`` over ``C``, as ``F.layer_norm`` of ``x.permute(0, 2, 3, 1)``.

    Parameters
    ----------
    x
        ``[B, C, H, W]``, any strides (``H`` and ``W`` mergeable, else it is copied).
    weight, bias
        ``[C]``.
    eps
        Added to the variance.
    channels_last_out
        Return ``[B, H, W, C]`` (what ``F.layer_norm`` of the permuted tensor returns, contiguous), else
        ``[B, C, H, W]``.

    Returns
    -------
    torch.Tensor
        float32 under autocast (CUDA autocast runs ``layer_norm`` in fp32), else ``x``'s dtype. Statistics are fp32.
    """
    if not x.is_cuda and not interpreting():
        raise RuntimeError("channel_norm on CPU tensors needs TRITON_INTERPRET=1 before Triton is imported")
    if x.ndim != 4 or weight.shape != (x.shape[1],) or bias.shape != (x.shape[1],):
        raise ValueError(f"channel_norm: x [B, C, H, W] with weight and bias [C], got {tuple(x.shape)}")
    out_dtype = torch.float32 if torch.is_autocast_enabled(x.device.type) else x.dtype
    return _ChannelNormFn.apply(x, weight, bias, float(eps), channels_last_out, out_dtype)
