"""Per-frame transcription heads and clip-level pooling (kit embedding, track gains)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["KitClassifier", "TrackGains", "TranscriptionHead", "exp_sigmoid"]


def exp_sigmoid(x: torch.Tensor, max_value: float = 2.0, exponent: float = math.log(10.0)) -> torch.Tensor:
    """``max_value * sigmoid(x) ** ln(10) + 1e-7``: a positive, smooth, bounded activation."""
    return max_value * torch.sigmoid(x) ** exponent + 1e-7


class TranscriptionHead(nn.Module):
    """Frame features ``[B, T, C]`` -> onset logits and velocities ``[B, K, T]``."""

    def __init__(self, dim: int, n_classes: int, kernel: int, causal: bool) -> None:
        super().__init__()
        self.tpad = (kernel - 1, 0) if causal else (kernel // 2, kernel // 2)
        self.conv = nn.Conv1d(dim, dim, kernel)
        self.onset = nn.Linear(dim, n_classes)
        self.velocity = nn.Linear(dim, n_classes)

    def forward(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = F.relu(self.conv(F.pad(feats.transpose(1, 2), self.tpad))).transpose(1, 2)
        return self.onset(h).transpose(1, 2), exp_sigmoid(self.velocity(h)).transpose(1, 2)


class KitClassifier(nn.Module):
    """LayerNorm then mean over frames, MLP to kit logits; softmax gives the kit embedding."""

    def __init__(self, dim: int, n_kits: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, dim)
        self.fc2 = nn.Linear(dim, n_kits)

    def pool(self, feats: torch.Tensor) -> torch.Tensor:
        """``[B, T, C]`` -> the statistic that is averaged: per-frame normalised features."""
        return self.norm(feats)

    def from_mean(self, mean: torch.Tensor) -> torch.Tensor:
        """Kit logits ``[B, n_kits]`` from the mean of :meth:`pool` over frames."""
        return self.fc2(F.relu(self.fc1(mean)))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.from_mean(self.pool(feats).mean(dim=1))


class TrackGains(nn.Module):
    """Mean frame feature -> one positive gain per class (an MLP per class, LeakyReLU)."""

    def __init__(self, dim: int, n_classes: int, hidden: int) -> None:
        super().__init__()
        self.mlps = nn.ModuleList(
            nn.Sequential(
                nn.Linear(dim, hidden), nn.LeakyReLU(), nn.Linear(hidden, hidden), nn.LeakyReLU(), nn.Linear(hidden, 1)
            )
            for _ in range(n_classes)
        )

    def from_mean(self, mean: torch.Tensor) -> torch.Tensor:
        """``[B, C]`` mean feature -> ``[B, K]`` gains."""
        return exp_sigmoid(torch.cat([mlp(mean) for mlp in self.mlps], dim=-1))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.from_mean(feats.mean(dim=1))
