"""FFT sequencer: frame activations x one-shots -> per-class stems (overlap-add by convolution)."""

from __future__ import annotations

import torch

__all__ = ["fft_convolve", "impulses", "sequence", "sequence_mix"]


def impulses(activations: torch.Tensor, hop: int, n_samples: int) -> torch.Tensor:
    """``[..., K, T]`` frame activations -> ``[..., K, n_samples]`` impulse trains.

    Frame ``j`` lands on sample ``hop * j``; frames past ``n_samples`` are dropped.
    """
    t = activations.shape[-1]
    out = activations.new_zeros(*activations.shape[:-1], n_samples)
    keep = min(t, (n_samples - 1) // hop + 1)
    out[..., : keep * hop : hop] = activations[..., :keep]
    return out


def fft_convolve(signal: torch.Tensor, kernel: torch.Tensor, n_out: int) -> torch.Tensor:
    """Linear convolution of ``signal [..., N]`` with ``kernel [..., L]``, first ``n_out`` samples."""
    n = signal.shape[-1] + kernel.shape[-1] - 1
    n_fft = 1 << (n - 1).bit_length()
    spec = torch.fft.rfft(signal, n_fft) * torch.fft.rfft(kernel, n_fft)
    return torch.fft.irfft(spec, n_fft)[..., :n_out]


def sequence(
    activations: torch.Tensor,
    one_shots: torch.Tensor,
    gains: torch.Tensor,
    hop: int,
    n_samples: int,
) -> torch.Tensor:
    """Synthesized stems ``[..., K, n_samples]`` = gains x (impulses(activations) * one_shots)."""
    imp = impulses(activations, hop, n_samples)
    return fft_convolve(imp, one_shots, n_samples) * gains.unsqueeze(-1)


def sequence_mix(
    activations: torch.Tensor,
    one_shots: torch.Tensor,
    gains: torch.Tensor,
    hop: int,
    n_samples: int,
) -> torch.Tensor:
    """The mix ``[..., n_samples]`` of :func:`sequence`'s stems, summed over classes in the frequency domain.

    One inverse FFT per mix instead of one per class: what training needs, since its loss sees only the mix.
    """
    imp = impulses(activations, hop, n_samples)
    n = n_samples + one_shots.shape[-1] - 1
    n_fft = 1 << (n - 1).bit_length()
    spec = torch.fft.rfft(imp, n_fft) * torch.fft.rfft(one_shots, n_fft) * gains.unsqueeze(-1)
    return torch.fft.irfft(spec.sum(dim=-2), n_fft)[..., :n_samples]
