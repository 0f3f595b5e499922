"""The Inverse Drum Machine: encoder, heads, kit pooling, one-shot synth and sequencer in one module."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from idm.model.config import IDMConfig
from idm.model.encoder import Encoder
from idm.model.frontend import LogMel
from idm.model.heads import KitClassifier, TrackGains, TranscriptionHead
from idm.model.sequencer import sequence
from idm.model.synth import OneShotSynth

__all__ = ["EncoderOutput", "InverseDrumMachine"]


@dataclass
class EncoderOutput:
    """Everything the analysis half of the model computes for a batch of clips.

    Class axes are in the model's own order (``config.classes``).
    """

    logmel: torch.Tensor  # [B, n_mels, T]
    features: torch.Tensor  # [B, T + extra, C]
    onset_logits: torch.Tensor  # [B, K, T + extra]
    velocity: torch.Tensor  # [B, K, T + extra]
    kit_logits: torch.Tensor  # [B, n_kits]
    kit_embedding: torch.Tensor  # [B, n_kits]
    gains: torch.Tensor  # [B, K]


class InverseDrumMachine(nn.Module):
    """IDM model; build with an :class:`IDMConfig`, load weights with :mod:`idm.checkpoint`."""

    def __init__(self, config: IDMConfig) -> None:
        super().__init__()
        self.config = config
        dim = config.encoder.dims[-1]
        k = config.n_classes
        self.frontend = LogMel(config.frontend)
        self.encoder = Encoder(config.encoder)
        self.head = TranscriptionHead(dim, k, config.encoder.head_kernel, config.encoder.causal)
        self.kit = KitClassifier(dim, config.encoder.n_kits)
        self.gains = TrackGains(dim, k, config.encoder.gain_hidden)
        self.synth = OneShotSynth(config.synth, config.embedding_size, config.frontend.sample_rate)

    @property
    def hop(self) -> int:
        return self.config.frontend.hop

    def encode(self, audio: torch.Tensor) -> EncoderOutput:
        """``[B, N]`` mono audio at the model's sample rate -> :class:`EncoderOutput`."""
        logmel = self.frontend(audio)
        feats = self.encoder(logmel)
        onset_logits, velocity = self.head(feats)
        kit_logits = self.kit(feats)
        gains = self.gains(feats)
        return EncoderOutput(logmel, feats, onset_logits, velocity, kit_logits, kit_logits.softmax(-1), gains)

    def conditioning(self, kit_embedding: torch.Tensor) -> torch.Tensor:
        """``[..., n_kits]`` kit embedding(s) -> ``[..., K, K + n_kits]`` FiLM conditioning (one-hot class, kit)."""
        k = self.config.n_classes
        lead = kit_embedding.shape[:-1]
        eye = torch.eye(k, dtype=kit_embedding.dtype, device=kit_embedding.device).expand(*lead, k, k)
        return torch.cat([eye, kit_embedding.unsqueeze(-2).expand(*lead, k, -1)], dim=-1)

    def noise(self, seed: int) -> torch.Tensor:
        """The synthesizer's ``[K, N]`` standard-normal noise for a seed (CPU generator, reproducible)."""
        g = torch.Generator().manual_seed(seed)
        return torch.randn(self.config.n_classes, self.synth.n_samples, generator=g)

    def synthesize(self, kit_embedding: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One bank of one-shots ``[K, N]`` and decay rates ``[K]`` per kit embedding (leading axes batch banks)."""
        return self.synth(noise, self.conditioning(kit_embedding))

    def sequence(
        self, activations: torch.Tensor, one_shots: torch.Tensor, gains: torch.Tensor, n_samples: int
    ) -> torch.Tensor:
        """Synthesized stems ``[..., K, n_samples]`` from frame activations (onset x velocity).

        Onset frame ``j`` is time ``j * hop / sample_rate``: the model is trained with its targets on
        that grid, so the extra frames of the official encoder are beyond the end of the clip.
        """
        return sequence(activations, one_shots, gains, self.hop, n_samples)
