"""TCN one-shot synthesizer: noise + FiLM conditioning -> a bank of decaying one-shots."""

from __future__ import annotations

import os

import torch
from torch import nn
from torch.nn import functional as F

from idm.model.config import SynthConfig
from idm.model.heads import exp_sigmoid

__all__ = ["OneShotSynth", "TCNBlock"]


class TCNBlock(nn.Module):
    """InstanceNorm, causal dilated conv, FiLM, GELU, plus a 1x1 residual projection."""

    def __init__(self, channels: int, kernel: int, dilation: int, cond_size: int) -> None:
        super().__init__()
        self.left_pad = (kernel - 1) * dilation
        self.conv = nn.Conv1d(channels, channels, kernel, dilation=dilation)
        self.film = nn.Linear(cond_size, 2 * channels)
        self.residual = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        y = F.instance_norm(x, eps=1e-5)
        y = self.conv(F.pad(y, (self.left_pad, 0)))
        scale, shift = self.film(cond).unsqueeze(-1).chunk(2, dim=1)
        y = F.gelu(y * scale + shift)
        return y + self.residual(x)


class OneShotSynth(nn.Module):
    """``noise [..., K, N]``, ``cond [..., K, E]`` -> one-shots ``[..., K, N]`` and decay rates ``[..., K]`` (1/s).

    The raw TCN output is divided by its maximum magnitude over the whole bank, so one-shots are
    only defined per bank: always synthesize all classes of a kit together. Leading axes hold a
    batch of banks (training), each normalised on its own; a single bank is ``[K, N]``.
    """

    def __init__(self, cfg: SynthConfig, cond_size: int, sample_rate: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.sample_rate = sample_rate
        self.n_samples = round(cfg.duration * sample_rate)
        self.in_proj = nn.Conv1d(1, cfg.hidden, 1)
        self.blocks = nn.ModuleList(
            TCNBlock(cfg.hidden, cfg.kernel_size, cfg.dilation_base**i, cond_size) for i in range(cfg.layers)
        )
        self.out_proj = nn.Conv1d(cfg.hidden, 1, 1)
        self.decay_fc1 = nn.Linear(cond_size, cond_size)
        self.decay_fc2 = nn.Linear(cond_size, 1)
        self.register_buffer("decay_scale", torch.tensor(float(cfg.decay_scale)))
        t = torch.arange(self.n_samples, dtype=torch.float32) / sample_rate
        self.register_buffer("time", t, persistent=False)

    decay_scale: torch.Tensor
    time: torch.Tensor
    _fused: bool = False
    _fused_force: bool = False

    def use_fused(self, enabled: bool = True, *, force: bool = False) -> OneShotSynth:
        """Run the TCN (``in_proj`` through ``out_proj``) with the fused Triton kernels (default off).

        The kernels (:mod:`idm.model.fused_tcn`, which imports Triton) run on CUDA tensors under
        bf16 autocast (the fast path) or with bf16 inputs; fp32 inputs without autocast get exact fp32
        dots (a check mode, slow); anything else keeps the PyTorch code. ``force`` (or
        ``IDM_FUSED_TCN_FORCE=1``) also runs them on CPU tensors, through Triton's interpreter
        (``TRITON_INTERPRET=1`` set before Triton is imported): tests only. Parameters, state dict
        and results (up to bf16 rounding) are unchanged. Returns the module.
        """
        self._fused = enabled
        self._fused_force = force
        return self

    def _fused_dtype(self, noise: torch.Tensor) -> torch.dtype | None:
        """Activation dtype of the fused TCN for this input, or ``None`` for the PyTorch code."""
        if not self._fused:
            return None
        if not (noise.is_cuda or self._fused_force or os.environ.get("IDM_FUSED_TCN_FORCE", "0") not in ("", "0")):
            return None
        from idm.model.fused_tcn import compute_dtype

        return compute_dtype(noise.device, noise.dtype)

    def decay_rate(self, cond: torch.Tensor) -> torch.Tensor:
        """Envelope rate per one-shot in 1/s: ``scale * exp_sigmoid(MLP(cond))``."""
        return self.decay_scale * exp_sigmoid(self.decay_fc2(F.relu(self.decay_fc1(cond)))).squeeze(-1)

    def forward(self, noise: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lead, n = noise.shape[:-1], noise.shape[-1]
        flat_cond = cond.reshape(-1, cond.shape[-1])
        fused = self._fused_dtype(noise)
        if fused is not None:
            from idm.model.fused_tcn import fused_tcn

            x = fused_tcn(self, noise.reshape(-1, n), flat_cond, fused).reshape(*lead, n)
        else:
            x = self.in_proj(noise.reshape(-1, 1, n))
            for block in self.blocks:
                x = block(x, flat_cond)
            x = self.out_proj(x).reshape(*lead, n)
        x = x / (x.abs().amax(dim=(-2, -1), keepdim=True) + 1e-6) * self.cfg.out_scale
        rate = self.decay_rate(cond)
        env = torch.exp(-rate.unsqueeze(-1) * self.time[: x.shape[-1]])
        return x * env, rate
