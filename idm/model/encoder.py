"""ConvNeXt encoder over (mel, time): log-mel -> per-frame features ``[B, T', C]``."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from idm.model.config import EncoderConfig

__all__ = ["ChannelNorm", "ConvNeXtBlock", "Encoder", "time_padding"]


def time_padding(kernel: int, symmetric_pad: int, causal: bool) -> tuple[int, int]:
    """(left, right) time padding of a convolution: symmetric as configured, or all on the left."""
    if causal:
        return (kernel - 1, 0)
    return (symmetric_pad, symmetric_pad)


class ChannelNorm(nn.Module):
    """LayerNorm over the channel axis of a ``[B, C, H, W]`` tensor."""

    _fused: bool = False  #: the Triton kernel (:meth:`Encoder.use_fused`)
    _fused_force: bool = False

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._fused and (x.is_cuda or self._fused_force):
            from idm.model.fused_norm import channel_norm

            return channel_norm(x, self.weight, self.bias, self.eps)
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, (x.shape[-1],), self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """Depthwise conv, LayerNorm, pointwise MLP (x4, GELU), layer scale, residual."""

    _fused: bool = False  #: the Triton kernel for the LayerNorm (:meth:`Encoder.use_fused`)
    _fused_force: bool = False

    def __init__(self, dim: int, kernel: int, causal: bool, layer_scale_init: float) -> None:
        super().__init__()
        self.kernel = kernel
        self.tpad = time_padding(kernel, kernel // 2, causal)
        self.dwconv = nn.Conv2d(dim, dim, kernel, padding=(kernel // 2, 0), groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pw1 = nn.Linear(dim, 4 * dim)
        self.pw2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale_init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.dwconv(F.pad(x, self.tpad))
        if self._fused and (y.is_cuda or self._fused_force):
            from idm.model.fused_norm import channel_norm

            y = channel_norm(y, self.norm.weight, self.norm.bias, self.norm.eps, channels_last_out=True)
        else:
            y = self.norm(y.permute(0, 2, 3, 1))
        y = self.pw2(F.gelu(self.pw1(y)))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class Downsample(nn.Module):
    """Channel LayerNorm then a strided (mel only) convolution; the stem is conv then norm."""

    def __init__(
        self, cin: int, cout: int, kernel: int, mel_stride: int, tpad: tuple[int, int], norm_first: bool
    ) -> None:
        super().__init__()
        self.norm_first = norm_first
        self.tpad = tpad
        self.norm = ChannelNorm(cin if norm_first else cout)
        self.conv = nn.Conv2d(cin, cout, kernel, stride=(mel_stride, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.norm_first:
            return self.conv(F.pad(self.norm(x), self.tpad))
        return self.norm(self.conv(F.pad(x, self.tpad)))


class Encoder(nn.Module):
    """``[B, n_mels, T]`` log-mel -> ``[B, T + extra_frames, dims[-1]]`` frame features.

    The official layout pads time in the downsampling convolutions by more than the kernel needs,
    so the output has ``extra_frames`` more frames than the input and output frame ``j`` is
    centred on input frame ``j - extra_frames // 2``.
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        dims = cfg.dims
        stem_pad = time_padding(cfg.stem_kernel, cfg.stem_kernel // 2, cfg.causal)
        down_pad = time_padding(cfg.down_kernel, cfg.down_time_pad, cfg.causal)
        layers = [Downsample(1, dims[0], cfg.stem_kernel, cfg.stem_mel_stride, stem_pad, norm_first=False)]
        layers += [Downsample(dims[i - 1], dims[i], cfg.down_kernel, 2, down_pad, True) for i in range(1, len(dims))]
        self.downsamples = nn.ModuleList(layers)
        self.stages = nn.ModuleList(
            nn.Sequential(*[ConvNeXtBlock(d, cfg.kernel_size, cfg.causal, cfg.layer_scale_init) for _ in range(n)])
            for d, n in zip(dims, cfg.depths, strict=True)
        )
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)

    def use_fused(self, enabled: bool = True, *, force: bool = False) -> Encoder:
        """Normalise over channels with the Triton kernel (:mod:`idm.model.fused_norm`; default off).

        The PyTorch LayerNorm is built for wide rows; the encoder's rows have 4-32 channels and there
        are millions of them. The kernel reads the convolution's channels-first output in one pass and
        writes the MLP's channels-last input (no permute copy). CUDA tensors only, unless ``force``
        (tests, through Triton's interpreter: ``TRITON_INTERPRET=1`` set before Triton is imported).
        Parameters, state dict and results (up to float32 rounding) are unchanged; the final
        LayerNorm over ``[B, T, C]`` rows stays PyTorch's. Returns the module.
        """
        for m in self.modules():
            if isinstance(m, ChannelNorm | ConvNeXtBlock):
                m._fused = enabled
                m._fused_force = force
        return self

    @property
    def extra_frames(self) -> int:
        """Frames the encoder adds to its input length (12 for the official model, 0 when causal)."""
        if self.cfg.causal:
            return 0
        return (len(self.cfg.dims) - 1) * (2 * self.cfg.down_time_pad - (self.cfg.down_kernel - 1))

    def forward(self, logmel: torch.Tensor) -> torch.Tensor:
        x = logmel.unsqueeze(1)
        for down, stage in zip(self.downsamples, self.stages, strict=True):
            x = stage(down(x))
        x = x.mean(dim=2).transpose(1, 2)
        return self.norm(x)
