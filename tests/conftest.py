"""Shared fixtures: the official reference (configurable path, required in CI), models, bundles, a seeded rng."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def reference_dir() -> Path:
    """``$IDM_REFERENCE_DIR`` or ``<repo>/../shared/reference/idm-official``."""
    return Path(os.environ.get("IDM_REFERENCE_DIR", ROOT.parent / "shared" / "reference" / "idm-official"))


def _need(path: Path) -> Path:
    if not path.exists():
        msg = f"official IDM reference not found at {path} (set IDM_REFERENCE_DIR)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def ref_dir() -> Path:
    return _need(reference_dir())


@pytest.fixture(scope="session")
def official_ckpt(ref_dir: Path) -> Path:
    return _need(ref_dir / "checkpoint" / "val-epoch=518-global_step=0.ckpt")


@pytest.fixture(scope="session")
def ref_full(ref_dir: Path) -> dict[str, np.ndarray]:
    with np.load(_need(ref_dir / "demo_mix_full.npz")) as d:
        return {k: d[k] for k in d.files}


@pytest.fixture(scope="session")
def ref_excerpt(ref_dir: Path) -> dict[str, np.ndarray]:
    with np.load(_need(ref_dir / "demo_mix_excerpt_odd_length.npz")) as d:
        return {k: d[k] for k in d.files}


@pytest.fixture(scope="session")
def official_model(official_ckpt: Path):
    from idm.checkpoint import load_model

    return load_model(official_ckpt)


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random project checkpoint (seeded), saved in the project's format."""
    import torch

    from idm.checkpoint import save_checkpoint
    from idm.model import IDMConfig, InverseDrumMachine

    torch.manual_seed(1)
    model = InverseDrumMachine(IDMConfig.tiny())
    with torch.no_grad():  # a random model is flat; sharper onset weights make it fire on transients
        model.head.onset.weight.mul_(10.0)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.ckpt"
    save_checkpoint(model, path)
    return path


@pytest.fixture(scope="session")
def official_bundle(official_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from idm.export.bundle import export_bundle

    return export_bundle(official_ckpt, tmp_path_factory.mktemp("official") / "bundle")


@pytest.fixture(scope="session")
def tiny_model():
    """A tiny random model whose every layer matters (layer scale 0.5 instead of 1e-6)."""
    import torch

    from idm.model import IDMConfig, InverseDrumMachine

    torch.manual_seed(0)
    model = InverseDrumMachine(IDMConfig.tiny()).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.5)
    return model


@pytest.fixture(scope="session")
def tiny_stream_ckpt(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from idm.checkpoint import save_checkpoint

    path = tmp_path_factory.mktemp("tiny") / "tiny.ckpt"
    save_checkpoint(tiny_model, path)
    return path


@pytest.fixture(scope="session")
def tiny_bundle(tiny_stream_ckpt: Path) -> Path:
    from idm.export.bundle import export_bundle

    return export_bundle(tiny_stream_ckpt, tiny_stream_ckpt.parent / "bundle")


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261121)


def drum_loop(seconds: float = 3.0, sr: int = 44100, seed: int = 0) -> np.ndarray:
    """A small synthetic drum loop (kick, snare, hats) for tests that need audio but no reference."""
    from idm.demo import render_demo_loop

    return render_demo_loop(seconds, sr, seed)
