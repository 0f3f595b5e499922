"""Fused Triton kernels (channels-last implicit-GEMM dilated conv, norm, FiLM, GELU, residual) for the synth's TCN.

Imported lazily by :meth:`idm.model.synth.OneShotSynth.use_fused`, forward and backward; it imports Triton.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import torch
import triton
import triton.language as tl
from torch.nn import functional as F

if TYPE_CHECKING:
    from idm.model.synth import OneShotSynth, TCNBlock

__all__ = ["TileConfig", "fused_tcn", "interpreting", "tile_config"]

_EPS = 1e-5
_SQRT1_2 = tl.constexpr(0.7071067811865476)  # 1/sqrt(2)
_INV_SQRT_2PI = tl.constexpr(0.3989422804014327)  # 1/sqrt(2 pi)


def interpreting() -> bool:
    """Whether this module's kernels run through Triton's CPU interpreter.

    Triton decides when a kernel is defined: ``TRITON_INTERPRET=1`` must be set when this module is
    first imported (tests); the kernels then run on CPU tensors too.
    """
    return type(_mm).__name__ == "InterpretedFunction"


# ---------------------------------------------------------------------------------------------- tiles
@dataclass(frozen=True)
class TileConfig:
    """Tile sizes and launch parameters of the kernels for one padded channel count.

    ``*_bt``: output rows (time steps) per program; ``*_warps``: warps per program; ``ck``: input
    channels per ``tl.dot`` of the convolutions (16 keeps 48 channels unpadded as 3 x 16, the padded
    channel count means one dot per tap); ``stages``: software-pipelining depth of the conv loops
    (1: plain loads, cached in L1; more: 16-byte cp.async, which Triton routes through L2 only);
    ``w_split``: programs per tap group of the weight-gradient kernel (0: about four a multiprocessor).
    """

    fwd_bt: int
    fwd_warps: int
    dgrad_bt: int
    dgrad_warps: int
    ew_bt: int
    ew_warps: int
    w_bt: int
    w_warps: int
    ck: int = 16
    stages: int = 3
    w_stages: int = 3
    w_split: int = 0


#: Fixed configs (no autotuning), keyed by the padded channel count, picked from sweeps on an H200
#: (28 banks = 252 rows of 44100, bf16, 12 blocks of 48 channels / 8 of 16). 48 channels: one
#: [64, 64] dot per tap (``ck=64``, the padded input channels masked) beat three [., 16] dots (forward
#: 83 vs 121 ms), 64-step forward tiles of 4 warps beat 128 of 8 (66 vs 83 ms), 3 pipeline stages
#: beat 1, 2 and 4. 16 channels: 256-step tiles. ptxas: at most ~200 registers a thread, no spills.
TILE_CONFIGS: dict[int, TileConfig] = {
    16: TileConfig(fwd_bt=256, fwd_warps=4, dgrad_bt=256, dgrad_warps=4, ew_bt=256, ew_warps=4, w_bt=128, w_warps=4),
    32: TileConfig(fwd_bt=128, fwd_warps=4, dgrad_bt=128, dgrad_warps=4, ew_bt=128, ew_warps=4, w_bt=128, w_warps=4),
    64: TileConfig(
        fwd_bt=64, fwd_warps=4, dgrad_bt=128, dgrad_warps=8, ew_bt=64, ew_warps=4, w_bt=64, w_warps=4, ck=64
    ),
    128: TileConfig(
        fwd_bt=64, fwd_warps=4, dgrad_bt=64, dgrad_warps=4, ew_bt=32, ew_warps=4, w_bt=64, w_warps=4, ck=64
    ),
}
#: For the interpreter (tests), whose cost is per program and op: few programs, one tile each in the
#: weight gradient (``w_split`` as many as tiles), one dot per tap.
_INTERP_CONFIG = TileConfig(
    fwd_bt=128, fwd_warps=1, dgrad_bt=128, dgrad_warps=1, ew_bt=256, ew_warps=1, w_bt=128, w_warps=1,
    ck=64, w_split=1 << 30,
)  # fmt: skip


def tile_config(cp: int) -> TileConfig:
    """The tile config for ``cp`` padded channels (the interpreter's own when interpreting)."""
    if interpreting():
        return _INTERP_CONFIG
    if cp not in TILE_CONFIGS:
        raise ValueError(f"fused TCN: no tile config for {cp} (padded) channels")
    return TILE_CONFIGS[cp]


def _padded(c: int) -> int:
    return max(16, 1 << (c - 1).bit_length())


def _fold(dilation: int, n: int, bt: int) -> tuple[int, int, int]:
    """Tiling of one row for dilation ``d``: ``(BR, row tiles, q tiles)`` (see :func:`_rows`).

    A tile holds ``BT / BR`` consecutive multiples of ``d`` times ``BR`` consecutive residues, so the
    taps of one tile read overlapping windows whatever the dilation; ``BR`` (a power of two, at most
    ``BT / 16``) is the one with the fewest tiles (the least padding), the smallest on ties.
    """
    nq = triton.cdiv(n, dilation)
    best: tuple[int, int, int, int] | None = None
    br = 1
    while bt // br >= min(16, bt):
        nrt, nqt = triton.cdiv(dilation, br), triton.cdiv(nq, bt // br)
        if best is None or nrt * nqt < best[0]:
            best = (nrt * nqt, br, nrt, nqt)
        br *= 2
    assert best is not None
    return best[1], best[2], best[3]


# -------------------------------------------------------------------------------------------- kernels
@triton.jit
def _mm(a, b, acc, UPCAST: tl.constexpr, IEEE: tl.constexpr):
    """``acc + a @ b``: fp32 accumulation; ``UPCAST`` (the interpreter, whose bf16 dot is wrong) in fp32."""
    if UPCAST:
        a = a.to(tl.float32)
        b = b.to(tl.float32)
    if IEEE:  # noqa: SIM108 (a constexpr branch)
        out = tl.dot(a, b, acc, input_precision="ieee")
    else:
        out = tl.dot(a, b, acc)
    return out


@triton.jit
def _rows(tile, N, DIL, NQT, BT: tl.constexpr, BR: tl.constexpr):
    """Rows of a conv tile: ``t = (q0 + j // BR) * DIL + r0 + j % BR``; returns ``q``, ``t``, validity."""
    rt = tile // NQT
    qt = tile - rt * NQT
    j = tl.arange(0, BT)
    rho = rt * BR + j % BR
    q = qt * (BT // BR) + j // BR
    t = q * DIL + rho
    return q, t, (rho < DIL) & (t < N)


@triton.jit
def _normalize_kernel(
    x_ptr,  # [R, N, C] block input
    mean_ptr,  # [R, CP] fp32
    rstd_ptr,  # [R, CP] fp32 (0 on padding)
    y_ptr,  # [R, N, C] out: (x - mean) * rstd
    N,
    C: tl.constexpr,
    CP: tl.constexpr,
    BT: tl.constexpr,
):
    pid_t = tl.program_id(0)
    row = tl.program_id(1)
    t = pid_t * BT + tl.arange(0, BT)
    cp = tl.arange(0, CP)
    mask = (t < N)[:, None] & (cp < C)[None, :]
    offs = row.to(tl.int64) * N * C + t[:, None] * C + cp[None, :]
    xv = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    mu = tl.load(mean_ptr + row * CP + cp)[None, :]
    rs = tl.load(rstd_ptr + row * CP + cp)[None, :]
    tl.store(y_ptr + offs, ((xv - mu) * rs).to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _fwd_kernel(
    y_ptr,  # [R, N, C] normalised block input
    x_ptr,  # [R, N, C] block input (residual path)
    w_ptr,  # [KS, CP, CP] conv weight [tap, c_in, c_out], zero padded
    b_ptr,  # [CP] fp32 conv bias
    wr_ptr,  # [CP, CP] residual 1x1 weight [c_in, c_out]
    br_ptr,  # [CP] fp32 residual bias
    ss_ptr,  # [R, 2, CP] fp32 FiLM scale, shift
    out_ptr,  # [R, N, C] out: block output
    z_ptr,  # [R, N, C] out: conv output (saved for the backward)
    part_ptr,  # [R, T, 3, CP] fp32 out: per-tile sum, centred sum of squares and count of the output
    N,
    T,
    DIL,
    NQT,
    C: tl.constexpr,
    CP: tl.constexpr,
    CK: tl.constexpr,
    KS: tl.constexpr,
    BT: tl.constexpr,
    BR: tl.constexpr,
    STATS: tl.constexpr,
    UPCAST: tl.constexpr,
    IEEE: tl.constexpr,
):
    tile = tl.program_id(0)
    row = tl.program_id(1)
    q, t, valid = _rows(tile, N, DIL, NQT, BT, BR)
    rbase = row.to(tl.int64) * N * C
    ck = tl.arange(0, CK)
    cp = tl.arange(0, CP)
    cmask = cp < C
    acc = tl.zeros([BT, CP], dtype=tl.float32)
    # implicit GEMM: z[t] = sum_k y[t - (KS-1-k)*DIL] @ W_k, zero before t = 0 (the causal padding)
    for cc in tl.static_range(0, C, CK):
        ch = cc + ck
        chm = ch < C
        for k in range(KS):
            sh = KS - 1 - k
            m = (valid & (q >= sh))[:, None] & chm[None, :]
            a = tl.load(y_ptr + rbase + (t - sh * DIL)[:, None] * C + ch[None, :], mask=m, other=0.0)
            w = tl.load(w_ptr + (k * CP + ch[:, None]) * CP + cp[None, :])
            acc = _mm(a, w, acc, UPCAST, IEEE)
    racc = tl.zeros([BT, CP], dtype=tl.float32)
    for cc in tl.static_range(0, C, CK):
        ch = cc + ck
        xv = tl.load(x_ptr + rbase + t[:, None] * C + ch[None, :], mask=valid[:, None] & (ch < C)[None, :], other=0.0)
        wr = tl.load(wr_ptr + ch[:, None] * CP + cp[None, :])
        racc = _mm(xv, wr, racc, UPCAST, IEEE)
    z = acc + tl.load(b_ptr + cp)[None, :]
    scale = tl.load(ss_ptr + row * 2 * CP + cp)
    shift = tl.load(ss_ptr + row * 2 * CP + CP + cp)
    a = z * scale[None, :] + shift[None, :]
    out = 0.5 * a * (1.0 + tl.math.erf(a * _SQRT1_2)) + racc + tl.load(br_ptr + cp)[None, :]
    omask = valid[:, None] & cmask[None, :]
    offs = rbase + t[:, None] * C + cp[None, :]
    outq = out.to(out_ptr.dtype.element_ty)
    tl.store(out_ptr + offs, outq, mask=omask)
    tl.store(z_ptr + offs, z.to(z_ptr.dtype.element_ty), mask=omask)
    if STATS:
        # per-tile sum and sum of squares about the tile mean (combined with Chan's formula on the host)
        ov = tl.where(omask, outq.to(tl.float32), 0.0)
        cnt = tl.sum(valid.to(tl.float32), axis=0)
        s = tl.sum(ov, axis=0)
        dev = tl.where(omask, ov - (s / tl.maximum(cnt, 1.0))[None, :], 0.0)
        m2 = tl.sum(dev * dev, axis=0)
        pbase = part_ptr + (row * T + tile) * 3 * CP
        tl.store(pbase + cp, s)
        tl.store(pbase + CP + cp, m2)
        tl.store(pbase + 2 * CP + cp, tl.zeros([CP], dtype=tl.float32) + cnt)


@triton.jit
def _bwd_act_kernel(
    g_ptr,  # [R, N, C] gradient of the block output
    z_ptr,  # [R, N, C] saved conv output
    ss_ptr,  # [R, 2, CP] fp32 FiLM scale, shift
    gz_ptr,  # [R, N, C] out: gradient of the conv output
    part_ptr,  # [R, T, 3, CP] fp32 out: per-tile sums of g_a * z, g_a, g
    N,
    T,
    C: tl.constexpr,
    CP: tl.constexpr,
    BT: tl.constexpr,
):
    pid_t = tl.program_id(0)
    row = tl.program_id(1)
    t = pid_t * BT + tl.arange(0, BT)
    cp = tl.arange(0, CP)
    mask = (t < N)[:, None] & (cp < C)[None, :]
    offs = row.to(tl.int64) * N * C + t[:, None] * C + cp[None, :]
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    z = tl.load(z_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    scale = tl.load(ss_ptr + row * 2 * CP + cp)[None, :]
    shift = tl.load(ss_ptr + row * 2 * CP + CP + cp)[None, :]
    a = z * scale + shift
    dgelu = 0.5 * (1.0 + tl.math.erf(a * _SQRT1_2)) + a * tl.exp(-0.5 * a * a) * _INV_SQRT_2PI
    ga = g * dgelu
    tl.store(gz_ptr + offs, (ga * scale).to(gz_ptr.dtype.element_ty), mask=mask)
    pbase = part_ptr + (row * T + pid_t) * 3 * CP
    tl.store(pbase + cp, tl.sum(ga * z, axis=0))
    tl.store(pbase + CP + cp, tl.sum(ga, axis=0))
    tl.store(pbase + 2 * CP + cp, tl.sum(g, axis=0))


@triton.jit
def _bwd_dgrad_kernel(
    gz_ptr,  # [R, N, C] gradient of the conv output
    g_ptr,  # [R, N, C] gradient of the block output (residual path)
    y_ptr,  # [R, N, C] normalised block input
    rstd_ptr,  # [R, CP] fp32
    wt_ptr,  # [KS, CP, CP] conv weight [tap, c_out, c_in]
    wrt_ptr,  # [CP, CP] residual weight [c_out, c_in]
    p_ptr,  # [R, N, C] fp32 out: rstd * g_y + g @ Wr^T (the input gradient before the norm's mean terms)
    part_ptr,  # [R, T, 2, CP] fp32 out: per-tile sums of g_y and g_y * y
    N,
    T,
    DIL,
    NQT,
    C: tl.constexpr,
    CP: tl.constexpr,
    CK: tl.constexpr,
    KS: tl.constexpr,
    BT: tl.constexpr,
    BR: tl.constexpr,
    UPCAST: tl.constexpr,
    IEEE: tl.constexpr,
):
    tile = tl.program_id(0)
    row = tl.program_id(1)
    _q, t, valid = _rows(tile, N, DIL, NQT, BT, BR)
    rbase = row.to(tl.int64) * N * C
    ck = tl.arange(0, CK)
    cp = tl.arange(0, CP)
    cmask = cp < C
    acc = tl.zeros([BT, CP], dtype=tl.float32)
    # anti-causal: g_y[t] = sum_k g_z[t + (KS-1-k)*DIL] @ W_k^T (zero past the end)
    for cc in tl.static_range(0, C, CK):
        ch = cc + ck
        chm = ch < C
        for k in range(KS):
            src = t + (KS - 1 - k) * DIL
            m = (valid & (src < N))[:, None] & chm[None, :]
            gv = tl.load(gz_ptr + rbase + src[:, None] * C + ch[None, :], mask=m, other=0.0)
            w = tl.load(wt_ptr + (k * CP + ch[:, None]) * CP + cp[None, :])
            acc = _mm(gv, w, acc, UPCAST, IEEE)
    racc = tl.zeros([BT, CP], dtype=tl.float32)
    for cc in tl.static_range(0, C, CK):
        ch = cc + ck
        gv = tl.load(g_ptr + rbase + t[:, None] * C + ch[None, :], mask=valid[:, None] & (ch < C)[None, :], other=0.0)
        wr = tl.load(wrt_ptr + ch[:, None] * CP + cp[None, :])
        racc = _mm(gv, wr, racc, UPCAST, IEEE)
    mask = valid[:, None] & cmask[None, :]
    offs = rbase + t[:, None] * C + cp[None, :]
    rs = tl.load(rstd_ptr + row * CP + cp)[None, :]
    yv = tl.load(y_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    tl.store(p_ptr + offs, (acc * rs + racc).to(p_ptr.dtype.element_ty), mask=mask)
    pbase = part_ptr + (row * T + tile) * 2 * CP
    tl.store(pbase + cp, tl.sum(acc, axis=0))  # rows past the end or off the tile are zero (masked loads)
    tl.store(pbase + CP + cp, tl.sum(acc * yv, axis=0))


@triton.jit
def _bwd_norm_kernel(
    p_ptr,  # [R, N, C] fp32
    y_ptr,  # [R, N, C] normalised block input
    ab_ptr,  # [R, 2, CP] fp32 alpha, beta
    gx_ptr,  # [R, N, C] out: p + alpha + beta * y
    N,
    C: tl.constexpr,
    CP: tl.constexpr,
    BT: tl.constexpr,
):
    pid_t = tl.program_id(0)
    row = tl.program_id(1)
    t = pid_t * BT + tl.arange(0, BT)
    cp = tl.arange(0, CP)
    mask = (t < N)[:, None] & (cp < C)[None, :]
    offs = row.to(tl.int64) * N * C + t[:, None] * C + cp[None, :]
    p = tl.load(p_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    yv = tl.load(y_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    al = tl.load(ab_ptr + row * 2 * CP + cp)[None, :]
    be = tl.load(ab_ptr + row * 2 * CP + CP + cp)[None, :]
    tl.store(gx_ptr + offs, (p + al + be * yv).to(gx_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _bwd_wgrad_kernel(
    a_ptr,  # [R, N, C] normalised block input y (conv) or block input x (residual)
    g_ptr,  # [R, N, C] g_z (conv) or g (residual)
    part_ptr,  # [SPLIT, 3 * groups, CP, CP] fp32 out: per-program sums of a_shifted^T @ g, per tap
    R,
    N,
    T,
    DIL,
    NQT,
    C: tl.constexpr,
    CP: tl.constexpr,
    KS: tl.constexpr,
    BT: tl.constexpr,
    BR: tl.constexpr,
    PER: tl.constexpr,  # tiles per program: a power of two (few compiled variants; constexpr trip count)
    RESIDUAL: tl.constexpr,
    UPCAST: tl.constexpr,
    IEEE: tl.constexpr,
):
    # program (group, p): taps 3*group .. 3*group+2, tiles p*PER .. p*PER+PER-1 of all rows; sums
    # y[t - (KS-1-k)*DIL]^T @ g_z[t] (RESIDUAL: x[t]^T @ g[t], one tap) into [CP, CP] fp32 accumulators
    grp = tl.program_id(0)
    p = tl.program_id(1)
    ntap = 3 * tl.num_programs(0)
    cp = tl.arange(0, CP)
    cmask = cp < C
    sh0 = KS - 1 - 3 * grp
    acc0 = tl.zeros([CP, CP], dtype=tl.float32)
    acc1 = tl.zeros([CP, CP], dtype=tl.float32)
    acc2 = tl.zeros([CP, CP], dtype=tl.float32)
    for i in range(PER):
        qi = p * PER + i
        row = qi // T
        tile = qi - row * T
        q, t, valid = _rows(tile, N, DIL, NQT, BT, BR)
        valid = valid & (row < R)  # the last program's tail past R * T tiles is masked out
        rbase = row.to(tl.int64) * N * C
        gv = tl.load(g_ptr + rbase + t[:, None] * C + cp[None, :], mask=valid[:, None] & cmask[None, :], other=0.0)
        if RESIDUAL:
            a0 = tl.load(a_ptr + rbase + t[:, None] * C + cp[None, :], mask=valid[:, None] & cmask[None, :], other=0.0)
            acc0 = _mm(tl.trans(a0), gv, acc0, UPCAST, IEEE)
        else:
            m0 = (valid & (q >= sh0))[:, None] & cmask[None, :]
            a0 = tl.load(a_ptr + rbase + (t - sh0 * DIL)[:, None] * C + cp[None, :], mask=m0, other=0.0)
            acc0 = _mm(tl.trans(a0), gv, acc0, UPCAST, IEEE)
            m1 = (valid & (q >= sh0 - 1) & (sh0 >= 1))[:, None] & cmask[None, :]
            a1 = tl.load(a_ptr + rbase + (t - (sh0 - 1) * DIL)[:, None] * C + cp[None, :], mask=m1, other=0.0)
            acc1 = _mm(tl.trans(a1), gv, acc1, UPCAST, IEEE)
            m2 = (valid & (q >= sh0 - 2) & (sh0 >= 2))[:, None] & cmask[None, :]
            a2 = tl.load(a_ptr + rbase + (t - (sh0 - 2) * DIL)[:, None] * C + cp[None, :], mask=m2, other=0.0)
            acc2 = _mm(tl.trans(a2), gv, acc2, UPCAST, IEEE)
    out = part_ptr + ((p * ntap + 3 * grp) * CP + cp[:, None]) * CP + cp[None, :]
    tl.store(out, acc0)
    if not RESIDUAL:
        tl.store(out + CP * CP, acc1)
        tl.store(out + 2 * CP * CP, acc2)


# --------------------------------------------------------------------------------------------- host
def _pad_to(t: torch.Tensor, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    out = torch.zeros(shape, dtype=dtype, device=t.device)
    out[tuple(slice(0, s) for s in t.shape)] = t.to(dtype)
    return out


def _stages(stages: int, dtype: torch.dtype) -> int:
    """Pipelining depth: 1 for fp32 operands (a test mode), whose doubled tiles need not fit in shared memory."""
    return stages if dtype != torch.float32 else 1


def _flags(dtype: torch.dtype) -> dict[str, bool]:
    """``UPCAST``/``IEEE`` kernel flags: fp32 storage means exact fp32 dots; the interpreter upcasts bf16."""
    interp = interpreting()
    return {"UPCAST": interp and dtype != torch.float32, "IEEE": interp or dtype == torch.float32}


def _stats_from_parts(part: torch.Tensor, n: int, c: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and 1/sqrt(var + eps) ``[R, CP]`` from per-tile sums, centred squares and counts (Chan)."""
    s, m2, cnt = part[:, :, 0], part[:, :, 1], part[:, :, 2].clamp(min=1.0)  # [R, T, CP]
    mean = s.sum(1) / n
    var = (m2.sum(1) + (cnt * (s / cnt - mean[:, None]) ** 2).sum(1)) / n
    rstd = torch.rsqrt(var + _EPS)
    rstd[:, c:] = 0
    return mean.contiguous(), rstd.contiguous()


def _ss(film: torch.Tensor, c: int, cp: int) -> torch.Tensor:
    """FiLM output ``[R, 2C]`` -> fp32 ``[R, 2, CP]`` (scale, shift), zero padded."""
    r = film.shape[0]
    return _pad_to(film.detach().reshape(r, 2, c), (r, 2, cp), torch.float32)


def _split(tiles: int, programs: int) -> tuple[int, int]:
    """Tiles per program (a power of two) and program count to cover ``tiles`` with about ``programs``."""
    per = 1 << max(0, (triton.cdiv(tiles, max(1, programs)) - 1).bit_length())
    return per, triton.cdiv(tiles, per)


_SM_COUNT: dict[int, int] = {}


def _sm_count(dev: torch.device) -> int:
    if dev.type != "cuda":
        return 4
    idx = dev.index if dev.index is not None else torch.cuda.current_device()
    if idx not in _SM_COUNT:
        _SM_COUNT[idx] = torch.cuda.get_device_properties(idx).multi_processor_count
    return _SM_COUNT[idx]


class _TCNBlockFn(torch.autograd.Function):
    """One TCN block on channels-last ``x [R, N, C]``; also returns the output's instance-norm stats.

    Saves ``x``, its normalisation ``y`` and the conv output ``z`` (activation dtype) for the backward.
    """

    @staticmethod
    def forward(
        ctx: Any,
        x: torch.Tensor,
        mean: torch.Tensor,
        rstd: torch.Tensor,
        film: torch.Tensor,
        w: torch.Tensor,
        b: torch.Tensor,
        wr: torch.Tensor,
        br: torch.Tensor,
        dilation: int,
        stats: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        r, n, c = x.shape
        ks = w.shape[-1]
        cp = _padded(c)
        cfg = tile_config(cp)
        dt = x.dtype
        dev = x.device
        with torch.autocast(dev.type, enabled=False):
            wk = _pad_to(w.detach().permute(2, 1, 0), (ks, cp, cp), dt)  # [tap, c_in, c_out]
            wrk = _pad_to(wr.detach()[:, :, 0].t(), (cp, cp), dt)
            bp = _pad_to(b.detach(), (cp,), torch.float32)
            brp = _pad_to(br.detach(), (cp,), torch.float32)
            ss = _ss(film, c, cp)
            y = torch.empty_like(x)
            _normalize_kernel[(triton.cdiv(n, cfg.ew_bt), r)](
                x, mean, rstd, y, n, C=c, CP=cp, BT=cfg.ew_bt, num_warps=cfg.ew_warps
            )
            out = torch.empty_like(x)
            z = torch.empty_like(x)
            fold, nrt, nqt = _fold(dilation, n, cfg.fwd_bt)
            part = torch.empty((r, nrt * nqt, 3, cp) if stats else (1,), dtype=torch.float32, device=dev)
            _fwd_kernel[(nrt * nqt, r)](
                y, x, wk, bp, wrk, brp, ss, out, z, part, n, nrt * nqt, dilation, nqt,
                C=c, CP=cp, CK=min(cfg.ck, cp), KS=ks, BT=cfg.fwd_bt, BR=fold, STATS=stats,
                num_warps=cfg.fwd_warps, num_stages=_stages(cfg.stages, dt), **_flags(dt),
            )  # fmt: skip
            if stats:
                mean_o, rstd_o = _stats_from_parts(part, n, c)
            else:
                mean_o = rstd_o = torch.empty(0, device=dev)
        ctx.save_for_backward(x, y, rstd, z, ss, w, wr)
        ctx.dilation = dilation
        ctx.film_dtype = film.dtype
        ctx.mark_non_differentiable(mean_o, rstd_o)
        return out, mean_o, rstd_o

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        x, y, rstd, z, ss, w, wr = ctx.saved_tensors
        r, n, c = x.shape
        ks = w.shape[-1]
        cp = _padded(c)
        cfg = tile_config(cp)
        dt = x.dtype
        dev = x.device
        dil = ctx.dilation
        flags = _flags(dt)
        g_out = grads[0]
        with torch.autocast(dev.type, enabled=False):
            g = (torch.zeros_like(x) if g_out is None else g_out).to(dt).contiguous()
            wt = _pad_to(w.detach().permute(2, 0, 1), (ks, cp, cp), dt)  # [tap, c_out, c_in]
            wrt = _pad_to(wr.detach()[:, :, 0], (cp, cp), dt)
            # g_a = g * gelu'(a), g_z = g_a * scale; per-tile sums for the FiLM and bias gradients
            gz = torch.empty_like(x)
            nt = triton.cdiv(n, cfg.ew_bt)
            part1 = torch.empty((r, nt, 3, cp), dtype=torch.float32, device=dev)
            _bwd_act_kernel[(nt, r)](g, z, ss, gz, part1, n, nt, C=c, CP=cp, BT=cfg.ew_bt, num_warps=cfg.ew_warps)
            sums1 = part1.sum(1)  # [R, 3, CP]
            d_scale, d_shift, g_sum = sums1[:, 0], sums1[:, 1], sums1[:, 2]
            # conv dgrad + residual dgrad, and the instance norm's per-row sums
            # p in fp32: the norm's mean terms are subtracted from it next; rounding it to bf16 first left the
            # rounding in every gradient behind it, growing with the row length (bf16 check at 44,100 samples:
            # median gradient error 3x eager bf16's before, benchmarks/RESULTS.md)
            p = torch.empty_like(x, dtype=torch.float32)
            fold, nrt, nqt = _fold(dil, n, cfg.dgrad_bt)
            part2 = torch.empty((r, nrt * nqt, 2, cp), dtype=torch.float32, device=dev)
            _bwd_dgrad_kernel[(nrt * nqt, r)](
                gz, g, y, rstd, wt, wrt, p, part2, n, nrt * nqt, dil, nqt,
                C=c, CP=cp, CK=min(cfg.ck, cp), KS=ks, BT=cfg.dgrad_bt, BR=fold,
                num_warps=cfg.dgrad_warps, num_stages=_stages(cfg.stages, dt), **flags,
            )  # fmt: skip
            sums2 = part2.sum(1)
            # g_x = rstd * (g_y - mean(g_y) - y * mean(g_y * y)) + g @ Wr^T = p + alpha + beta * y
            ab = (-rstd[:, None] * sums2 / n).contiguous()
            gx = torch.empty_like(x)
            _bwd_norm_kernel[(nt, r)](p, y, ab, gx, n, C=c, CP=cp, BT=cfg.ew_bt, num_warps=cfg.ew_warps)
            # weight gradients: conv (program columns of 3 taps) and residual
            fold, nrt, nqt = _fold(dil, n, cfg.w_bt)
            groups = triton.cdiv(ks, 3)
            per, split = _split(r * nrt * nqt, cfg.w_split or max(1, 4 * _sm_count(dev) // groups))
            pw = torch.empty((split, 3 * groups, cp, cp), dtype=torch.float32, device=dev)
            _bwd_wgrad_kernel[(groups, split)](
                y, gz, pw, r, n, nrt * nqt, dil, nqt,
                C=c, CP=cp, KS=ks, BT=cfg.w_bt, BR=fold, PER=per, RESIDUAL=False,
                num_warps=cfg.w_warps, num_stages=_stages(cfg.w_stages, dt), **flags,
            )  # fmt: skip
            nt = triton.cdiv(n, cfg.w_bt)
            per, split = _split(r * nt, cfg.w_split or 4 * _sm_count(dev))
            pr = torch.empty((split, 3, cp, cp), dtype=torch.float32, device=dev)
            _bwd_wgrad_kernel[(1, split)](
                x, g, pr, r, n, nt, 1, nt,
                C=c, CP=cp, KS=ks, BT=cfg.w_bt, BR=1, PER=per, RESIDUAL=True,
                num_warps=cfg.w_warps, num_stages=_stages(cfg.w_stages, dt), **flags,
            )  # fmt: skip
            # [tap, c_in, c_out] -> [c_out, c_in, tap]
            g_w = pw.sum(0)[:ks, :c, :c].permute(2, 1, 0).to(w.dtype)
            g_wr = pr[:, 0].sum(0)[:c, :c].t().unsqueeze(-1).to(wr.dtype)
            g_b = (ss[:, 0] * d_shift).sum(0)[:c].to(w.dtype)
            g_br = g_sum.sum(0)[:c].to(wr.dtype)
            g_film = torch.cat((d_scale[:, :c], d_shift[:, :c]), dim=1).to(ctx.film_dtype)
        return gx, None, None, g_film, g_w, g_b, g_wr, g_br, None, None


def compute_dtype(device: torch.device, dtype: torch.dtype) -> torch.dtype | None:
    """Activation dtype of the fused path: bf16 under bf16 autocast or for bf16 inputs, fp32 for fp32
    inputs without autocast; ``None`` (use the eager code) otherwise, e.g. under fp16 autocast."""
    if torch.is_autocast_enabled(device.type):
        return torch.bfloat16 if torch.get_autocast_dtype(device.type) == torch.bfloat16 else None
    return dtype if dtype in (torch.bfloat16, torch.float32) else None


@torch.compiler.disable
def fused_tcn(synth: OneShotSynth, noise: torch.Tensor, cond: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The synthesizer's TCN, ``in_proj`` through ``out_proj``, with the fused kernels.

    Parameters
    ----------
    synth
        An :class:`~idm.model.synth.OneShotSynth` (its ``in_proj``, ``blocks`` and ``out_proj``).
    noise
        ``[R, N]`` noise, one row per one-shot.
    cond
        ``[R, E]`` FiLM conditioning, one row per one-shot.
    dtype
        Activation dtype (:func:`compute_dtype`): ``torch.bfloat16`` (bf16 ``tl.dot`` operands, fp32
        accumulation and statistics) or ``torch.float32`` (exact fp32 dots: for tests).

    Returns
    -------
    torch.Tensor
        ``[R, N]`` raw TCN output (before the bank normalisation), in ``dtype``.
    """
    if not noise.is_cuda and not interpreting():
        raise RuntimeError("fused TCN on CPU tensors needs TRITON_INTERPRET=1 before idm.model.fused_tcn is imported")
    r, n = noise.shape
    w_in, b_in, b_out = synth.in_proj.weight.reshape(-1), synth.in_proj.bias, synth.out_proj.bias
    assert b_in is not None and b_out is not None
    c = w_in.shape[0]
    cp = _padded(c)
    x = (noise.unsqueeze(-1) * w_in.to(noise.dtype) + b_in.to(noise.dtype)).to(dtype)
    with torch.no_grad(), torch.autocast(noise.device.type, enabled=False):
        # instance-norm stats of in_proj(noise) in closed form: mean w*m + b, variance w^2 * v
        nv, nm = torch.var_mean(noise.detach().double(), dim=-1, unbiased=False)
        mean = nm[:, None] * w_in.detach().double() + b_in.detach().double()
        rstd = torch.rsqrt(nv[:, None] * w_in.detach().double() ** 2 + _EPS)
        mean = _pad_to(mean, (r, cp), torch.float32)
        rstd = _pad_to(rstd, (r, cp), torch.float32)
    blocks = cast("list[TCNBlock]", list(synth.blocks))
    for i, blk in enumerate(blocks):
        film = blk.film(cond)
        x, mean, rstd = _TCNBlockFn.apply(
            x,
            mean,
            rstd,
            film,
            blk.conv.weight,
            blk.conv.bias,
            blk.residual.weight,
            blk.residual.bias,
            int(blk.conv.dilation[0]),
            i + 1 < len(blocks),
        )
    w_out = synth.out_proj.weight.reshape(1, c)
    if dtype == torch.float32 and not torch.is_autocast_enabled(noise.device.type):
        y = F.linear(x, w_out, b_out)
    else:
        y = F.linear(x, w_out.to(dtype), b_out.to(dtype))
    return y.reshape(r, n)


def tcn_flops(cfg: Any, rows: int, n: int) -> float:
    """Useful (unpadded) FLOPs of the TCN's forward + backward GEMMs, for throughput reports."""
    c, ks = cfg.hidden, cfg.kernel_size
    per_block = 2 * rows * n * c * c * (ks + 1)
    return 3.0 * per_block * cfg.layers
