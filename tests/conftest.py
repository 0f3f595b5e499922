"""Shared fixtures: the official reference folder (required in CI), exported bundles, a seeded rng."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
OFFICIAL_CKPT = "checkpoint/val-epoch=518-global_step=0.ckpt"


def reference_dir() -> Path:
    """``$IDM_REFERENCE_DIR`` or ``<repo>/../shared/reference/idm-official``."""
    return Path(os.environ.get("IDM_REFERENCE_DIR", REPO.parent / "shared" / "reference" / "idm-official"))


@pytest.fixture(scope="session")
def ref_dir() -> Path:
    d = reference_dir()
    if not (d / OFFICIAL_CKPT).is_file():
        msg = f"official reference not found at {d} (set IDM_REFERENCE_DIR)"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return d


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def official_model(ref_dir: Path):
    from idm.checkpoint import load_model

    return load_model(ref_dir / OFFICIAL_CKPT)


@pytest.fixture(scope="session")
def official_bundle(ref_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from idm.export.bundle import export_bundle

    return export_bundle(ref_dir / OFFICIAL_CKPT, tmp_path_factory.mktemp("official") / "bundle")


@pytest.fixture(scope="session")
def tiny_model():
    from idm.model import IDMConfig, InverseDrumMachine

    torch.manual_seed(0)
    model = InverseDrumMachine(IDMConfig.tiny()).eval()
    with torch.no_grad():  # layer scale 1e-6 would hide the blocks: make every layer matter
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(0.5)
    return model


@pytest.fixture(scope="session")
def tiny_ckpt(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from idm.checkpoint import save_checkpoint

    path = tmp_path_factory.mktemp("tiny") / "tiny.ckpt"
    save_checkpoint(tiny_model, path)
    return path


@pytest.fixture(scope="session")
def tiny_bundle(tiny_ckpt: Path) -> Path:
    from idm.export.bundle import export_bundle

    return export_bundle(tiny_ckpt, tiny_ckpt.parent / "bundle")
