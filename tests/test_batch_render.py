"""Render plans and the batch renderer: plans replay render() exactly, the torch renderer plays them as numpy does."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from datafixtures import SR, make_folder_kit, make_gmd, make_hydrogen_kit, one_shot

from idm.classes import CLASSES
from idm.data.batch_render import BatchRenderer, collate_plans, plan_item
from idm.data.dataset import PlanDataset, RenderedDataset, TrainDataConfig
from idm.data.examples import kit_target
from idm.data.gmd import Events
from idm.data.kits import Instrument, Kit, Layer, load_folder, load_hydrogen
from idm.data.pitch import pitched_length, resample_many
from idm.data.plan import LayerTable, RenderAugment, plan_render
from idm.data.render import _pitched, play_plan, render

CH, OH = CLASSES.index("hihat_closed"), CLASSES.index("hihat_open")
NO_PITCH = RenderAugment(pitch_prob=0.0, mix_kits_prob=0.5, mix_class_prob=0.5, eq_prob=0.5, room_prob=0.5)


@pytest.fixture(scope="module")
def kits(tmp_path_factory: pytest.TempPathFactory) -> list[Kit]:
    a = load_folder(make_folder_kit(tmp_path_factory.mktemp("a")), name="a")
    h = load_hydrogen(make_hydrogen_kit(tmp_path_factory.mktemp("h")))
    return [a, h]


@pytest.fixture(scope="module")
def gmd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_gmd(tmp_path_factory.mktemp("gmd") / "groove")


def _events(seed: int, seconds: float = 3.0) -> Events:
    """Random hits of every class, some before the clip (their tails ring into it), open hats among hats."""
    rng = np.random.default_rng(seed)
    m = 40
    t = np.sort(rng.uniform(-0.5, seconds, m))
    cls = rng.integers(0, len(CLASSES), m)
    cls[::3] = np.where(rng.random(cls[::3].size) < 0.5, CH, OH)  # plenty of hats: chokes
    return Events.from_lists(t.tolist(), cls.tolist(), rng.integers(1, 128, m).tolist())


def test_plan_replays_render_bit_for_bit(kits: list[Kit]) -> None:
    n = 2 * 44032
    for seed in range(6):
        ev = _events(seed)
        for aug in (None, NO_PITCH):
            ref = render(ev, kits[seed % 2], n, seed, aug, stems=True, mix_kits=kits)
            plan = plan_render(ev, kits[seed % 2], n, seed, aug, mix_kits=kits)
            mix, stems = play_plan(plan, stems=True)
            np.testing.assert_array_equal(mix, ref.mixture)
            assert stems is not None and ref.stems is not None
            np.testing.assert_array_equal(stems, ref.stems)
            np.testing.assert_array_equal(plan.onsets, ref.onsets)


def test_batch_renderer_plays_plans_as_numpy_does(kits: list[Kit]) -> None:
    n = 2 * 44032
    table = LayerTable(kits)
    plans = [plan_render(_events(s), kits[s % 2], n, 100 + s, NO_PITCH, mix_kits=kits) for s in range(8)]
    assert any(p.ir is not None for p in plans) and any(p.eq_db is not None for p in plans)
    assert any((p.cut < 10**12).any() for p in plans), "no choked open hat in the test plans"
    batch = collate_plans([plan_item(p, table, 0) for p in plans])
    out = BatchRenderer(table, 0.0)(batch, stems=True)
    for i, p in enumerate(plans):
        mix, stems = play_plan(p, stems=True)
        assert stems is not None
        scale = max(1e-3, float(np.abs(mix).max()))
        assert np.abs(out["audio"][i].numpy() - mix).max() < 1e-5 * scale
        assert np.abs(out["stems"][i].numpy() - stems).max() < 1e-5 * scale
    assert float(out["audio"].abs().max()) > 0.01


def test_choked_open_hat_matches(kits: list[Kit]) -> None:
    x = one_shot(1.0, 5000, 3)
    kit = Kit("hats", "CC0", {c: () for c in CLASSES})
    kit.instruments["hihat_open"] = (Instrument("oh", (Layer(x, 0.0, 1.0, 1.0),)),)
    kit.instruments["hihat_closed"] = (Instrument("ch", (Layer(x[:2000], 0.0, 1.0, 1.0),)),)
    ev = Events.from_lists([0.01, 0.2, 0.5], [OH, CH, OH], [100, 100, 100])
    plan = plan_render(ev, kit, 44032, 0, None)
    table = LayerTable([kit])
    out = BatchRenderer(table)(collate_plans([plan_item(plan, table, 0)]), stems=True)["stems"][0].numpy()
    _, stems = play_plan(plan, stems=True)
    assert stems is not None
    np.testing.assert_allclose(out, stems, atol=1e-6)
    # the first open hat rings until the closed hat at 0.2 s, then fades out within 10 ms; silent until 0.5 s
    closed_at = round(0.2 * SR)
    assert np.abs(stems[OH, closed_at - 500 : closed_at]).max() > 1e-3
    assert np.abs(stems[OH, closed_at + 441 : round(0.5 * SR)]).max() == 0.0


def test_pitched_copies_are_band_limited_resamples() -> None:
    t = np.arange(20000) / SR
    x = (np.sin(2 * np.pi * 180 * t * (1 + np.exp(-30 * t))) * np.exp(-6 * t)).astype(np.float32)
    x[:20] *= np.linspace(0.0, 1.0, 20, dtype=np.float32)
    for st in (-1.0, -0.375, 0.125, 1.0):
        y = resample_many([x], st)[0].numpy().astype(np.float64)
        assert y.size == pitched_length(x.size, st)
        z = _pitched(x, st, 10**9).astype(np.float64)  # soxr HQ, the numpy renderer's resampler
        m = min(y.size, z.size) - 64
        snr = 10 * np.log10(np.sum(z[:m] ** 2) / np.sum((y[:m] - z[:m]) ** 2))
        assert snr > 45.0, (st, snr)


def test_pitched_hits_use_the_pitched_copy(kits: list[Kit]) -> None:
    table = LayerTable(kits)
    aug = RenderAugment(pitch_prob=1.0, pitch_semitones=1.0, eq_prob=0.0, room_prob=0.0, gain_db=0.0, level_db=0.0,
                        mix_kits_prob=0.0, velocity_gamma=(1.0, 1.0))  # fmt: skip
    ev = Events.from_lists([0.1], [CLASSES.index("snare")], [127])
    plan = plan_render(ev, kits[0], 44032, 5, aug)
    st = float(plan.pitch[CLASSES.index("snare")])
    assert st != 0.0 and abs(st * 8 - round(st * 8)) < 1e-9  # on the 1/8-semitone grid
    out = BatchRenderer(table, 1.0)(collate_plans([plan_item(plan, table, 0)]))["audio"][0]
    layer = plan.layers[0]
    assert layer is not None
    want = resample_many([layer.audio], st)[0] * float(plan.amp[0])
    s = round(0.1 * SR)
    torch.testing.assert_close(out[s : s + want.numel()], want, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match="semitones"):
        BatchRenderer(table, 0.0)(collate_plans([plan_item(plan, table, 0)]))


def test_plan_dataset_matches_rendered_dataset(gmd_root: Path, kits: list[Kit]) -> None:
    cfg = TrainDataConfig(gmd_root, examples_per_epoch=6, crop_seconds=2.0, seed=3, augment=NO_PITCH)
    plans = PlanDataset(cfg, kits).prepare()
    rendered = RenderedDataset(cfg, kits).prepare()
    batch = collate_plans([plans[i] for i in range(6)])
    audio = BatchRenderer(plans.table)(batch)["audio"]
    for i in range(6):
        ref = rendered[i]
        np.testing.assert_array_equal(batch["onsets"][i].numpy(), ref["onsets"].numpy())
        assert np.abs(audio[i].numpy() - ref["audio"].numpy()).max() < 1e-5 * max(1e-3, float(ref["audio"].abs().max()))
        assert int(batch["kit"][i]) in (int(ref["kit"]), -1)


def test_kit_target_is_the_majority_kit() -> None:
    present = np.ones(9, dtype=bool)
    assert kit_target(np.array([2] * 9), present) == 2
    assert kit_target(np.array([2] * 5 + [-1] * 4), present) == 2  # 5 of 9
    assert kit_target(np.array([2] * 4 + [-1] * 5), present) == -1  # pools play most
    assert kit_target(np.array([2] * 4 + [3] * 3 + [-1] * 2), present) == -1  # no kit plays half
    only = np.zeros(9, dtype=bool)
    only[:2] = True
    assert kit_target(np.array([1, 1] + [-1] * 7), only) == 1  # absent classes do not count
