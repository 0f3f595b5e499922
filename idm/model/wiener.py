"""Alpha-Wiener masking of a mixture STFT by synthesized stems (masked stems sum to the mix)."""

from __future__ import annotations

import torch

__all__ = ["wiener_masks", "wiener_separate"]


def _stft(x: torch.Tensor, n_fft: int, hop: int, window: torch.Tensor) -> torch.Tensor:
    return torch.stft(x, n_fft, hop, window=window, center=True, pad_mode="reflect", return_complex=True)


def wiener_masks(stem_specs: torch.Tensor, alpha: float, eps: float = 1e-8) -> torch.Tensor:
    """``|S_i|^alpha / sum_j |S_j|^alpha`` over the class axis (``-3``) of ``[..., K, F, T]``."""
    mag = stem_specs.abs() ** alpha
    return mag / (mag.sum(dim=-3, keepdim=True) + eps)


def wiener_separate(
    mixture: torch.Tensor, stems: torch.Tensor, alpha: float = 1.0, n_fft: int = 1024, hop: int = 256
) -> torch.Tensor:
    """Masked stems ``[..., K, N]`` from ``mixture [..., N]`` and synthesized ``stems [..., K, N]``."""
    window = torch.hann_window(n_fft, dtype=mixture.dtype, device=mixture.device)
    n = mixture.shape[-1]
    lead = stems.shape[:-1]
    specs = _stft(stems.reshape(-1, n), n_fft, hop, window).reshape(*lead, n_fft // 2 + 1, -1)
    mix_spec = _stft(mixture.reshape(-1, n), n_fft, hop, window).reshape(*mixture.shape[:-1], 1, n_fft // 2 + 1, -1)
    masked = wiener_masks(specs, alpha) * mix_spec
    out = torch.istft(masked.reshape(-1, *masked.shape[-2:]), n_fft, hop, window=window, center=True, length=n)
    return out.reshape(*lead, n)
