"""Checkpoint formats: project round trip, config validation, official mapping completeness."""

from __future__ import annotations

import pytest
import torch

from idm.checkpoint import load_model, read_checkpoint, save_checkpoint
from idm.errors import ConfigError
from idm.model import IDMConfig, InverseDrumMachine


def test_project_roundtrip(tmp_path):
    torch.manual_seed(3)
    cfg = IDMConfig.tiny()
    cfg.encoder.causal = True
    model = InverseDrumMachine(cfg)
    save_checkpoint(model, tmp_path / "m.ckpt", step=12)
    again = load_model(tmp_path / "m.ckpt")
    assert again.config == model.config
    for (k, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert read_checkpoint(tmp_path / "m.ckpt")["step"] == 12


def test_config_dict_rejects_unknown_keys():
    d = IDMConfig.tiny().to_dict()
    assert IDMConfig.from_dict(d) == IDMConfig.tiny()
    d["encoder"]["wings"] = 2
    with pytest.raises(ConfigError, match=r"encoder\.wings"):
        IDMConfig.from_dict(d)
    with pytest.raises(ConfigError, match="permutation"):
        IDMConfig(classes=("kick",) * 9)


def test_causal_encoder_is_causal():
    torch.manual_seed(0)
    cfg = IDMConfig.tiny()
    cfg.encoder.causal = True
    model = InverseDrumMachine(cfg).eval()
    x = torch.randn(1, 128, 50)
    y = x.clone()
    y[..., 30:] = torch.randn(1, 128, 20)
    with torch.no_grad():
        a, b = model.encoder(x), model.encoder(y)
    assert a.shape[1] == 50 and model.encoder.extra_frames == 0
    assert torch.allclose(a[:, :30], b[:, :30], atol=1e-6) and not torch.allclose(a[:, 30:], b[:, 30:])


def test_official_parameter_count(official_model):
    assert sum(p.numel() for p in official_model.parameters()) == 541_938
    assert official_model.encoder.extra_frames == 12
