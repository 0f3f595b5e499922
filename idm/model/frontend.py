"""Log-mel front end: centred reflect-padded power STFT, HTK mel filterbank, natural log."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from idm.model.config import FrontendConfig

__all__ = ["LogMel", "hann_window", "mel_filterbank", "n_frames", "pad_to_hop"]


def hann_window(n: int) -> np.ndarray:
    """Periodic Hann window (as ``torch.hann_window``), float64."""
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(n) / n)


def mel_filterbank(cfg: FrontendConfig) -> np.ndarray:
    """HTK-scale triangular mel filterbank without area normalisation, shape ``[n_fft//2+1, n_mels]``."""
    f_max = cfg.f_max if cfg.f_max is not None else cfg.sample_rate / 2
    n_freqs = cfg.n_fft // 2 + 1
    freqs = np.linspace(0.0, cfg.sample_rate / 2, n_freqs)

    def hz_to_mel(f: np.ndarray | float) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + np.asarray(f) / 700.0)

    m = np.linspace(hz_to_mel(cfg.f_min), hz_to_mel(f_max), cfg.n_mels + 2)
    f_pts = 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    f_diff = f_pts[1:] - f_pts[:-1]
    slopes = f_pts[None, :] - freqs[:, None]
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    return np.maximum(0.0, np.minimum(down, up))


def pad_to_hop(n_samples: int, hop: int) -> int:
    """Length after zero-padding the end to a multiple of ``hop``."""
    return int(math.ceil(n_samples / hop) * hop)


def n_frames(n_samples: int, hop: int) -> int:
    """Number of log-mel frames for ``n_samples`` of audio."""
    return pad_to_hop(n_samples, hop) // hop + 1


class LogMel(nn.Module):
    """``[B, N]`` audio -> ``[B, n_mels, T]`` log-mel, ``T = ceil(N / hop) + 1``."""

    window: torch.Tensor
    mel_fb: torch.Tensor

    def __init__(self, cfg: FrontendConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.register_buffer("window", torch.tensor(hann_window(cfg.n_fft), dtype=torch.float32), persistent=False)
        self.register_buffer("mel_fb", torch.tensor(mel_filterbank(cfg), dtype=torch.float32), persistent=False)

    def pad(self, audio: torch.Tensor) -> torch.Tensor:
        """Zero-pad the end to a multiple of hop, then reflect-pad ``n_fft // 2`` on both sides."""
        hop, half = self.cfg.hop, self.cfg.n_fft // 2
        end = pad_to_hop(audio.shape[-1], hop) - audio.shape[-1]
        if end:
            audio = nn.functional.pad(audio, (0, end))
        return nn.functional.pad(audio.unsqueeze(-2), (half, half), mode="reflect").squeeze(-2)

    def from_padded(self, padded: torch.Tensor) -> torch.Tensor:
        """Log-mel of already padded audio (see :meth:`pad`): frame ``t`` starts at sample ``hop * t``."""
        spec = torch.stft(
            padded,
            n_fft=self.cfg.n_fft,
            hop_length=self.cfg.hop,
            window=self.window,
            center=False,
            return_complex=True,
        )
        power = spec.real.square() + spec.imag.square()
        mel = torch.matmul(power.transpose(-1, -2), self.mel_fb).transpose(-1, -2)
        return torch.log(mel + self.cfg.log_eps)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return self.from_padded(self.pad(audio))
