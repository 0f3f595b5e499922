"""Key mapping from the official IDM checkpoint layout to this implementation's module names."""

from __future__ import annotations

import re

import torch

__all__ = ["IGNORED_KEYS", "map_official_state_dict"]

_RULES: tuple[tuple[str, str], ...] = (
    (r"^encoder\.backbone\.downsample_layers\.0\.0\.", "encoder.downsamples.0.conv."),
    (r"^encoder\.backbone\.downsample_layers\.0\.1\.", "encoder.downsamples.0.norm."),
    (r"^encoder\.backbone\.downsample_layers\.(\d+)\.0\.", r"encoder.downsamples.\1.norm."),
    (r"^encoder\.backbone\.downsample_layers\.(\d+)\.1\.", r"encoder.downsamples.\1.conv."),
    (r"^encoder\.backbone\.stages\.(\d+)\.(\d+)\.pwconv1\.", r"encoder.stages.\1.\2.pw1."),
    (r"^encoder\.backbone\.stages\.(\d+)\.(\d+)\.pwconv2\.", r"encoder.stages.\1.\2.pw2."),
    (r"^encoder\.backbone\.stages\.", "encoder.stages."),
    (r"^encoder\.backbone\.norm\.", "encoder.norm."),
    (r"^encoder\.pooling\.norm\.", "kit.norm."),
    (r"^encoder\.pooling\.classifier\.0\.", "kit.fc1."),
    (r"^encoder\.pooling\.classifier\.2\.", "kit.fc2."),
    (r"^encoder\.transcription_head\.conv\.", "head.conv."),
    (r"^encoder\.transcription_head\.onset_mlp\.", "head.onset."),
    (r"^encoder\.transcription_head\.velocity_mlp\.", "head.velocity."),
    (r"^decoder\.sample_synth\.scale$", "synth.decay_scale"),
    (r"^decoder\.sample_synth\.tcn\.in_projection\.", "synth.in_proj."),
    (r"^decoder\.sample_synth\.tcn\.out_projection\.", "synth.out_proj."),
    (r"^decoder\.sample_synth\.tcn\.net\.(\d+)\.net\.2\.", r"synth.blocks.\1.conv."),
    (r"^decoder\.sample_synth\.tcn\.net\.(\d+)\.film\.net\.", r"synth.blocks.\1.film."),
    (r"^decoder\.sample_synth\.tcn\.net\.(\d+)\.residual\.", r"synth.blocks.\1.residual."),
    (r"^decoder\.sample_synth\.emb_to_gain_latent\.0\.", "synth.decay_fc1."),
    (r"^decoder\.sample_synth\.emb_to_gain_latent\.2\.", "synth.decay_fc2."),
)

#: Official buffers with no counterpart here (recomputed, or unused at inference).
IGNORED_KEYS: tuple[str, ...] = (
    "conditioning_vector",
    "encoder.transform.mel_transform.spectrogram.window",
    "encoder.transform.mel_transform.mel_scale.fb",
)

_GAIN = re.compile(r"^decoder\.processors\.latent_to_params\.latent_mlps\.gain\.(\d+)\.(\d+)\.0\.(weight|bias)$")


def map_official_state_dict(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename official keys; returns the mapped dict and the keys that matched no rule."""
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, value in state.items():
        if key in IGNORED_KEYS:
            continue
        m = _GAIN.match(key)
        if m:
            out[f"gains.mlps.{m[1]}.{2 * int(m[2])}.{m[3]}"] = value
            continue
        for pattern, repl in _RULES:
            new, n = re.subn(pattern, repl, key)
            if n:
                out[new] = value
                break
        else:
            unknown.append(key)
    return out, unknown
