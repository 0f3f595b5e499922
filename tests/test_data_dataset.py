"""RenderedDataset items (shapes, dtypes, determinism, workers) and the evaluation-clip spec."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from datafixtures import make_folder_kit, make_gmd, make_hydrogen_kit

from idm.data.dataset import EvalClip, RenderedDataset, TrainDataConfig, eval_clips, render_eval_clip
from idm.data.kits import Kit, load_folder
from idm.errors import DataError


@pytest.fixture(scope="module")
def gmd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_gmd(tmp_path_factory.mktemp("gmd") / "groove")


@pytest.fixture(scope="module")
def kits(tmp_path_factory: pytest.TempPathFactory) -> list[Kit]:
    a = load_folder(make_folder_kit(tmp_path_factory.mktemp("a")), name="a")
    b = load_folder(make_folder_kit(tmp_path_factory.mktemp("b")), name="b")
    return [a, b]


def test_items(gmd_root: Path, kits: list[Kit]) -> None:
    cfg = TrainDataConfig(gmd_root, examples_per_epoch=6, crop_seconds=2.0, seed=3)
    ds = RenderedDataset(cfg, kits)
    assert len(ds) == 6 and ds.kit_names == ("a", "b")
    n = cfg.n_samples
    assert n % 256 == 0 and abs(n - 2.0 * 44100) <= 128
    it = ds[0]
    assert set(it) == {"audio", "onsets", "velocity", "kit"}
    assert it["audio"].shape == (n,) and it["audio"].dtype == torch.float32
    assert it["onsets"].shape == it["velocity"].shape == (9, n // 256 + 1)
    assert it["onsets"].dtype == it["velocity"].dtype == torch.float32
    assert it["kit"].dtype == torch.int64 and it["kit"].ndim == 0 and 0 <= int(it["kit"]) < 2
    for i in range(len(ds)):
        item = ds[i]
        assert item["onsets"].sum() > 0  # crops without hits are redrawn
        assert torch.all((item["velocity"] > 0) == (item["onsets"] > 0))
    # Deterministic in (seed, epoch, index); another epoch renders other examples.
    again = RenderedDataset(cfg, kits)[0]
    assert torch.equal(it["audio"], again["audio"]) and torch.equal(it["onsets"], again["onsets"])
    ds.set_epoch(1)
    assert not torch.equal(ds[0]["audio"], it["audio"])
    with pytest.raises(IndexError):
        ds[6]


def test_stems_and_workers(gmd_root: Path, kits: list[Kit]) -> None:
    cfg = TrainDataConfig(gmd_root, examples_per_epoch=4, crop_seconds=1.0, stems=True, augment=None)
    ds = RenderedDataset(cfg, kits)
    it = ds[1]
    assert it["stems"].shape == (9, cfg.n_samples) and it["stems"].dtype == torch.float32
    torch.testing.assert_close(it["stems"].sum(0), it["audio"], atol=1e-6, rtol=0)
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2)
    batches = list(loader)
    assert [b["audio"].shape for b in batches] == [(2, cfg.n_samples)] * 2
    assert torch.equal(batches[0]["audio"][1], it["audio"])  # workers render exactly what the main process does


def test_kits_are_loaded_by_name_lazily(gmd_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    make_hydrogen_kit(root / "hydrogen" / "data" / "drumkits" / "VariBreaks")  # a tiny kit in a registered kit's place
    cfg = TrainDataConfig(gmd_root, kits=("VariBreaks",), kits_root=root, examples_per_epoch=2, crop_seconds=1.0)
    ds = RenderedDataset(cfg)
    assert ds.sampler._kits is None  # nothing loaded until the first item (in each worker)
    it = ds[0]
    assert ds.kit_names == ("VariBreaks",) and int(it["kit"]) == 0
    assert ds.sampler.kits[0].present == ("kick", "snare", "hihat_closed")
    assert it["onsets"][3:].sum() == 0  # classes the kit lacks have no targets


def test_bad_configs(gmd_root: Path, kits: list[Kit], tmp_path: Path) -> None:
    with pytest.raises(DataError, match="split"):
        RenderedDataset(TrainDataConfig(gmd_root, split="dev"), kits)
    with pytest.raises(DataError, match="crop_seconds"):
        RenderedDataset(TrainDataConfig(gmd_root, crop_seconds=0), kits)
    with pytest.raises(DataError, match="root not found"):
        RenderedDataset(TrainDataConfig(tmp_path / "nope"), kits)
    with pytest.raises(DataError, match="unknown kit 'Nope'"):
        RenderedDataset(TrainDataConfig(gmd_root, kits=("Nope",))).prepare()


def test_eval_clips(gmd_root: Path, kits: list[Kit]) -> None:
    clips = eval_clips(gmd_root, "train", kits=["a", "b"], clip_seconds=10.0, per_file=2, seed=1)
    # Only the 12 s training file is long enough; kits take turns.
    assert len(clips) == 2 and [c.kit_name for c in clips] == ["a", "b"]
    assert clips == eval_clips(gmd_root, "train", kits=["a", "b"], clip_seconds=10.0, per_file=2, seed=1)
    c = clips[0]
    assert isinstance(c, EvalClip) and 0 <= c.offset_s <= 2.0 and c.duration_s == 10.0
    mix, stems, events = render_eval_clip(c, kits[0])
    assert mix.shape == (441_000,) and stems.shape == (9, 441_000)
    np.testing.assert_allclose(stems.sum(0), mix, atol=1e-6)
    assert len(events) > 10 and events.time.min() >= 0 and events.time.max() < 10.0
    m2, _, _ = render_eval_clip(c, kits[0])
    np.testing.assert_array_equal(mix, m2)
    with pytest.raises(DataError, match="wants kit"):
        render_eval_clip(c, kits[1])
