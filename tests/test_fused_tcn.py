"""The fused Triton TCN of the synthesizer against the eager PyTorch code, through Triton's CPU interpreter.

``TRITON_INTERPRET=1`` is set only while :mod:`idm.model.fused_tcn` is imported (Triton decides per
kernel, at definition), so other tests keep compiled Triton. Shapes are small: the interpreter runs
each program in Python. References are the eager modules in float64.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from interpreted import import_interpreted

from idm.model.config import SynthConfig
from idm.model.synth import OneShotSynth, TCNBlock

ft = import_interpreted("idm.model.fused_tcn")

ROWS = 3
COND = 5


def make_synth(hidden: int, kernel: int, dilations: list[int], n: int, seed: int = 0) -> OneShotSynth:
    """A small synthesizer (sample rate 1000 Hz, ``n`` samples) whose blocks have the given dilations."""
    torch.manual_seed(seed)
    cfg = SynthConfig(hidden=hidden, layers=len(dilations), kernel_size=kernel, duration=n / 1000)
    synth = OneShotSynth(cfg, COND, 1000)
    synth.blocks = torch.nn.ModuleList(TCNBlock(hidden, kernel, d, COND) for d in dilations)
    for blk in synth.blocks:  # FiLM scales away from 0 and a spread of shifts, as after training
        torch.nn.init.normal_(blk.film.bias, 0.5, 0.5)
    return synth


def raw_tcn(synth: OneShotSynth, noise: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
    """The eager TCN, ``in_proj`` through ``out_proj`` (``noise [R, N]``, ``cond [R, E]``)."""
    x = synth.in_proj(noise[:, None])
    for blk in synth.blocks:
        x = blk(x, cond)
    return synth.out_proj(x)[:, 0]


def grads(
    synth: OneShotSynth, noise: torch.Tensor, cond: torch.Tensor, gw: torch.Tensor, fn
) -> dict[str, torch.Tensor]:  # type: ignore[no-untyped-def]
    """Output and every gradient (parameters, noise, cond) of ``sum(fn(...) * gw)``, as float64."""
    synth.zero_grad(set_to_none=True)
    noise = noise.clone().requires_grad_(True)
    cond = cond.clone().requires_grad_(True)
    out = fn(synth, noise, cond)
    (out.double() * gw).sum().backward()
    res = {n: p.grad.double() for n, p in synth.named_parameters() if p.grad is not None}
    res.update(out=out.detach().double(), noise=noise.grad.double(), cond=cond.grad.double())
    return res


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def tcn_params(synth: OneShotSynth) -> set[str]:
    names = {n for n, _ in synth.named_parameters() if not n.startswith("decay_")}
    return names | {"out", "noise", "cond"}


@pytest.mark.parametrize(
    ("hidden", "kernel", "dilations", "n"),
    [
        (16, 15, [1, 3, 9, 27], 200),  # the live layout; 27 > N / K: most taps read the zero padding
        (48, 5, [2, 64], 300),  # 48 channels padded to 64 (masked); 64 > N / K
    ],
)
def test_fp32_matches_eager(hidden: int, kernel: int, dilations: list[int], n: int) -> None:
    """fp32 activations and exact fp32 dots: the full synthesizer (switch on, forced onto the CPU)
    equals the eager one, output and every gradient, to float32 rounding."""
    synth = make_synth(hidden, kernel, dilations, n)
    noise = torch.randn(1, ROWS, n)
    cond = torch.randn(1, ROWS, COND)
    gw = torch.randn(1, ROWS, n, dtype=torch.float64)

    def full(s: OneShotSynth, nz: torch.Tensor, cd: torch.Tensor) -> torch.Tensor:
        return s(nz, cd)[0]

    ref = grads(synth.double(), noise.double(), cond.double(), gw, full)
    eager = grads(synth.float(), noise, cond, gw, full)
    synth.use_fused(True, force=True)
    fused = grads(synth, noise, cond, gw, full)
    assert set(fused) == set(ref) and tcn_params(synth) <= set(fused)
    for k in ref:
        # float32 rounding: a few 1e-7 relative, more where a gradient is a sum that cancels (the
        # in_proj bias: instance norm removes the mean) -- there eager float32 is as far off
        e_f, e_e = rel(fused[k], ref[k]), rel(eager[k], ref[k])
        assert e_f < 2e-5 or e_f < 10 * e_e, (k, e_f, e_e)
    assert max(rel(fused[k], ref[k]) for k in ref) < 1e-2


def test_bf16_autocast_within_rounding() -> None:
    """Under bf16 autocast (the training setting) the fused TCN keeps bf16 activations, bf16 dot
    operands with fp32 accumulation and fp32 statistics; its output and gradients differ from float64
    by what bf16 rounding explains (8-bit mantissa: 2**-9 = 2e-3 relative per rounding, compounded
    over the blocks and over the sums behind the weight gradients), like eager autocast."""
    synth = make_synth(16, 5, [1, 4, 16], 256, seed=1)
    noise = torch.randn(ROWS, 256)
    cond = torch.randn(ROWS, COND)
    gw = torch.randn(ROWS, 256, dtype=torch.float64)

    def fused_bf16(s: OneShotSynth, nz: torch.Tensor, cd: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", torch.bfloat16):
            out = ft.fused_tcn(s, nz, cd, torch.bfloat16)
        assert out.dtype == torch.bfloat16
        return out

    def eager_bf16(s: OneShotSynth, nz: torch.Tensor, cd: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", torch.bfloat16):
            return raw_tcn(s, nz, cd)

    ref = grads(synth.double(), noise.double(), cond.double(), gw, raw_tcn)
    fused = grads(synth.float(), noise, cond, gw, fused_bf16)
    eager = grads(synth, noise, cond, gw, eager_bf16)
    e_f = {k: rel(fused[k], ref[k]) for k in ref}
    e_e = {k: rel(eager[k], ref[k]) for k in ref}
    # seen: output 0.6 % (eager autocast 0.8 %), gradients median 1.4 % (1.5 %), worst 8.7 % (57 %)
    assert e_f["out"] < 2 * e_e["out"] + 1e-3, (e_f, e_e)
    assert np.median(list(e_f.values())) < 2 * np.median(list(e_e.values())), (e_f, e_e)
    assert all(e_f[k] < max(0.15, 2 * e_e[k]) for k in ref), (e_f, e_e)


def test_fold_tiles_cover_rows_once() -> None:
    """The dilation-folded tiling (``_fold`` + the kernels' ``_rows``) covers each time step once."""
    for d in (1, 2, 3, 9, 27, 64, 81, 729, 2048, 2187):
        for n, bt in ((200, 128), (44100, 64), (44100, 256)):
            br, nrt, nqt = ft._fold(d, n, bt)
            tile = np.arange(nrt * nqt)[:, None]
            j = np.arange(bt)[None, :]
            rt, qt = tile // nqt, tile % nqt
            rho = rt * br + j % br
            t = (qt * (bt // br) + j // br) * d + rho
            valid = (rho < d) & (t < n)
            assert np.array_equal(np.sort(t[valid]), np.arange(n)), (d, n, bt)
            if n == 44100:  # the training length: little padding at any dilation
                assert valid.mean() > 0.6, (d, n, bt, valid.mean())


def test_switch_default_off_and_state_dict_unchanged() -> None:
    """Off by default; off (or on, with CPU tensors and no force) the eager code runs bit for bit."""
    synth = make_synth(8, 3, [1, 2], 64)
    keys = {k: v.clone() for k, v in synth.state_dict().items()}
    noise, cond = torch.randn(2, 9, 64), torch.randn(2, 9, COND)
    assert synth._fused_dtype(noise) is None
    ref = synth(noise, cond)[0]
    assert synth.use_fused(True) is synth
    assert torch.equal(synth(noise, cond)[0], ref)  # CPU tensors, not forced: eager
    state = synth.state_dict()
    assert list(state) == list(keys) and all(torch.equal(state[k], keys[k]) for k in keys)
    assert synth.use_fused(True, force=True)._fused_dtype(noise) == torch.float32
    assert synth.use_fused(False)._fused_dtype(noise) is None
