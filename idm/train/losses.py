"""Training losses: multi-resolution STFT reconstruction loss, onset BCE and kit cross-entropy."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["MultiResolutionSTFTLoss", "STFTLossTerms", "kit_loss", "onset_loss"]


@dataclass
class STFTLossTerms:
    """The three terms of the multi-resolution STFT loss, each averaged over resolutions."""

    spectral_convergence: torch.Tensor
    log_magnitude: torch.Tensor
    linear_magnitude: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        return self.spectral_convergence + self.log_magnitude + self.linear_magnitude


class MultiResolutionSTFTLoss(nn.Module):
    """Spectral convergence + L1 log magnitude + L1 linear magnitude, averaged over FFT sizes.

    Each resolution uses a periodic Hann window of the FFT size and a hop of a quarter of it.
    Always computed in float32 (autocast is disabled inside), whatever the caller's precision.

    Parameters
    ----------
    fft_sizes
        FFT (and window) sizes; the paper uses 2048, 1024, 512 and 256.
    eps
        Floor of the squared magnitude before the square root and the log (keeps gradients finite).
    """

    def __init__(self, fft_sizes: tuple[int, ...] = (2048, 1024, 512, 256), eps: float = 1e-7) -> None:
        super().__init__()
        self.fft_sizes = tuple(fft_sizes)
        self.eps = eps
        for n in self.fft_sizes:
            self.register_buffer(f"window_{n}", torch.hann_window(n), persistent=False)

    def _magnitude(self, x: torch.Tensor, n_fft: int) -> torch.Tensor:
        window = getattr(self, f"window_{n_fft}")
        spec = torch.stft(x, n_fft, n_fft // 4, window=window, center=True, pad_mode="reflect", return_complex=True)
        return torch.sqrt(torch.clamp(spec.real.square() + spec.imag.square(), min=self.eps))

    def terms(self, estimate: torch.Tensor, target: torch.Tensor) -> STFTLossTerms:
        """Loss terms between ``estimate`` and ``target`` audio ``[B, N]`` (means over the batch)."""
        if estimate.shape != target.shape:
            raise ValueError(f"estimate {list(estimate.shape)} and target {list(target.shape)} differ in shape")
        with torch.autocast(device_type=estimate.device.type, enabled=False):
            est = estimate.float().reshape(-1, estimate.shape[-1])
            tgt = target.float().reshape(-1, target.shape[-1])
            sc, logm, linm = [], [], []
            for n in self.fft_sizes:
                e, t = self._magnitude(est, n), self._magnitude(tgt, n)
                diff = (t - e).flatten(1)
                sc.append((diff.norm(dim=1) / t.flatten(1).norm(dim=1).clamp(min=self.eps)).mean())
                logm.append(F.l1_loss(torch.log(e), torch.log(t)))
                linm.append(F.l1_loss(e, t))
            k = len(self.fft_sizes)
            return STFTLossTerms(sum(sc) / k, sum(logm) / k, sum(linm) / k)  # type: ignore[arg-type]

    def forward(self, estimate: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.terms(estimate, target).total


def onset_loss(logits: torch.Tensor, targets: torch.Tensor, pos_weight: torch.Tensor | None = None) -> torch.Tensor:
    """Binary cross-entropy with logits ``[B, K, T]``, mean over batch, classes and frames (in float32).

    ``pos_weight`` (``[K]``, optional) weighs the positive (onset) frames of each class.
    """
    with torch.autocast(device_type=logits.device.type, enabled=False):
        pw = None if pos_weight is None else pos_weight.float().reshape(-1, 1)
        return F.binary_cross_entropy_with_logits(logits.float(), targets.float(), pos_weight=pw)


def kit_loss(kit_logits: torch.Tensor, kit: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of kit logits ``[B, n_kits]`` vs kit ids ``[B]``; ids < 0 (unknown kit) are ignored.

    Returns 0 (with a gradient path) when no item has a known kit.
    """
    with torch.autocast(device_type=kit_logits.device.type, enabled=False):
        known = (kit >= 0).float()
        ce = F.cross_entropy(kit_logits.float(), kit.clamp(min=0), reduction="none")
        return (ce * known).sum() / known.sum().clamp(min=1.0)
