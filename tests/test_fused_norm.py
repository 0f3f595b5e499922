"""The encoder's Triton channel LayerNorm against PyTorch's, through Triton's CPU interpreter.

``TRITON_INTERPRET=1`` is set only while :mod:`idm.model.fused_norm` is imported (as in
``test_fused_tcn.py``). References are ``F.layer_norm`` of the permuted tensor in float64.
"""

from __future__ import annotations

import pytest
import torch
from interpreted import import_interpreted
from torch.nn import functional as F

from idm.model.config import EncoderConfig
from idm.model.encoder import Encoder

fn = import_interpreted("idm.model.fused_norm")


def reference(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor, eps: float) -> torch.Tensor:
    """``[B, C, H, W]`` -> ``[B, H, W, C]``, float64."""
    return F.layer_norm(x.double().permute(0, 2, 3, 1), (x.shape[1],), w.double(), b.double(), eps)


@pytest.mark.parametrize("channels_last_out", [False, True])
@pytest.mark.parametrize(("shape", "layout"), [((2, 4, 9, 37), "nchw"), ((3, 5, 3, 11), "nchw"),
                                               ((2, 32, 4, 13), "nchw"), ((2, 8, 6, 7), "channels_last"),
                                               ((2, 16, 5, 40), "sliced")])  # fmt: skip
def test_matches_layer_norm(shape: tuple[int, int, int, int], layout: str, channels_last_out: bool) -> None:
    """Output and the gradients of input, weight and bias, fp32, any input strides, both output layouts."""
    g = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=g) * 3 + torch.randn(shape[1], 1, 1, generator=g)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    elif layout == "sliced":  # H and W not mergeable: a time crop of a wider tensor
        x = torch.randn(*shape[:3], shape[3] + 6, generator=g)[..., 3:-3]
    x.requires_grad_(True)
    w = (1 + 0.3 * torch.randn(shape[1], generator=g)).requires_grad_(True)
    b = (0.2 * torch.randn(shape[1], generator=g)).requires_grad_(True)
    y = fn.channel_norm(x, w, b, 1e-6, channels_last_out)
    ref = reference(x, w, b, 1e-6)
    y_nhwc = y if channels_last_out else y.permute(0, 2, 3, 1)
    assert y.dtype == torch.float32
    assert y.shape == ((shape[0], *shape[2:], shape[1]) if channels_last_out else shape)
    torch.testing.assert_close(y_nhwc.double(), ref, rtol=1e-5, atol=1e-5)

    dy = torch.randn(ref.shape, generator=g, dtype=torch.float64)
    grads = torch.autograd.grad(y_nhwc, (x, w, b), dy.float())
    ref_grads = torch.autograd.grad(ref, (x, w, b), dy)
    for got, want, name in zip(grads, ref_grads, ("x", "weight", "bias"), strict=True):
        assert got.shape == want.shape, name
        torch.testing.assert_close(got.double(), want.double(), rtol=1e-4, atol=1e-4, msg=lambda m, n=name: f"{n}: {m}")


def test_bf16_input_computes_in_fp32() -> None:
    """A bf16 input (the convolution's output under autocast) is read exactly; the output is fp32 under autocast."""
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(2, 8, 4, 33, generator=g) * 2).bfloat16()
    w, b = 1 + 0.2 * torch.randn(8, generator=g), 0.1 * torch.randn(8, generator=g)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = fn.channel_norm(x, w, b, 1e-6, True)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y.double(), reference(x.float(), w, b, 1e-6), rtol=1e-5, atol=1e-5)
    assert fn.channel_norm(x, w, b, 1e-6).dtype == torch.bfloat16  # no autocast: the input's dtype


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        fn.channel_norm(torch.zeros(2, 4, 5), torch.ones(4), torch.zeros(4), 1e-6)
    with pytest.raises(ValueError, match="weight and bias"):
        fn.channel_norm(torch.zeros(2, 4, 5, 6), torch.ones(3), torch.zeros(3), 1e-6)


def test_encoder_fused_equals_eager() -> None:
    """The live encoder's layout (causal, 4 stages): same features and parameter gradients with the kernel."""
    torch.manual_seed(0)
    cfg = EncoderConfig(dims=[4, 8, 16, 32], depths=[1, 1, 2, 1], causal=True, n_kits=3)
    enc = Encoder(cfg)
    for p in enc.parameters():  # away from the initial values (ones, zeros, 1e-6 layer scale)
        p.data.add_(0.3 * torch.randn_like(p))
    logmel = torch.randn(2, 128, 21)
    want = enc(logmel)
    want_grads = torch.autograd.grad(want.square().sum(), list(enc.parameters()))
    enc.use_fused(True, force=True)
    got = enc(logmel)
    got_grads = torch.autograd.grad(got.square().sum(), list(enc.parameters()))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    names = [n for n, _ in enc.named_parameters()]
    for name, a, b in zip(names, got_grads, want_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4, msg=lambda m, n=name: f"{n}: {m}")
    assert enc.use_fused(False) is enc
    torch.testing.assert_close(enc(logmel), want, rtol=0, atol=0)
