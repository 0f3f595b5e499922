"""Renderer: sample-exact placement, velocity layers and curve, choke, determinism, targets on the frame grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from datafixtures import SR, make_folder_kit, one_shot

from idm.classes import CLASSES
from idm.data.gmd import Events
from idm.data.kits import Instrument, Kit, Layer, load_folder
from idm.data.render import CHOKE_FADE_S, RenderAugment, render
from idm.data.targets import frame_of, n_frames, onset_targets

KICK, SNARE, CH, OH = (CLASSES.index(c) for c in ("kick", "snare", "hihat_closed", "hihat_open"))


def _kit(**classes: tuple[Instrument, ...]) -> Kit:
    return Kit("test", "CC0", {c: classes.get(c, ()) for c in CLASSES})


def _single(x: np.ndarray, gain: float = 1.0) -> tuple[Instrument, ...]:
    return (Instrument("x", (Layer(x, 0.0, 1.0, gain),)),)


@pytest.fixture(scope="module")
def folder_kit(tmp_path_factory: pytest.TempPathFactory) -> Kit:
    return load_folder(make_folder_kit(tmp_path_factory.mktemp("kit")))


def test_single_hit_is_the_one_shot_at_the_exact_sample(folder_kit: Kit) -> None:
    layer = folder_kit.layers("snare")[0]
    s = 12_345
    n = 32 * 1024
    res = render(Events.from_lists([s / SR], [SNARE], [127]), folder_kit, n, seed=0)
    x = layer.audio[: n - s]
    assert np.all(res.mixture[:s] == 0.0)
    np.testing.assert_array_equal(res.mixture[s : s + x.size], np.float32(layer.gain) * x)
    assert np.all(res.mixture[s + x.size :] == 0.0)
    assert res.onsets[SNARE].nonzero()[0].tolist() == [round(s / 256)]
    assert res.velocity[SNARE, round(s / 256)] == 1.0


def test_velocity_curve_and_hits_before_the_clip() -> None:
    x = one_shot(0.5, 100, 0)
    kit = _kit(kick=_single(x, gain=0.5))
    n = 8192
    res = render(Events.from_lists([-0.01, 0.1], [KICK, KICK], [64, 127]), kit, n, seed=0)
    pre = round(0.01 * SR)
    # The hit 10 ms before the clip rings into it at (64/127) * gain; only the hit inside has a target.
    np.testing.assert_allclose(res.mixture[:100], np.float32(0.5 * 64 / 127) * x[pre : pre + 100], rtol=1e-6)
    assert res.onsets.sum() == 1.0 and res.onsets[KICK, round(0.1 * SR / 256)] == 1.0


def test_velocity_layers_split_and_overlap() -> None:
    soft, hard = np.full(64, 0.1, np.float32), np.full(64, 0.9, np.float32)
    kit = _kit(kick=(Instrument("k", (Layer(soft, 0.0, 0.5, 1.0), Layer(hard, 0.5, 1.0, 1.0))),))
    for v, want in ((20, 0.1), (120, 0.9)):
        got = render(Events.from_lists([0.0], [KICK], [v]), kit, 256, seed=1).mixture[0]
        assert got == pytest.approx(want * v / 127)
    # Overlapping layers: drawn at random, both appear over seeds.
    kit = _kit(kick=(Instrument("k", (Layer(soft, 0.0, 1.0, 1.0), Layer(hard, 0.0, 1.0, 1.0))),))
    seen = {round(float(render(Events.from_lists([0.0], [KICK], [127]), kit, 256, seed=s).mixture[0]), 3)
            for s in range(12)}  # fmt: skip
    assert seen == {0.1, 0.9}


def test_open_hat_is_choked_by_the_next_hat() -> None:
    ring = np.ones(SR, np.float32)
    kit = _kit(hihat_closed=_single(np.ones(100, np.float32)), hihat_open=_single(ring))
    n = SR
    t_close = 0.2
    cut = round(t_close * SR)
    fade = int(CHOKE_FADE_S * SR)
    res = render(Events.from_lists([0.0, t_close], [OH, CH], [127, 127]), kit, n, seed=0, stems=True)
    assert res.stems is not None
    oh = res.stems[OH]
    assert np.all(oh[:cut] == 1.0)
    assert np.all(np.diff(oh[cut : cut + fade]) <= 0) and oh[cut + fade - 1] < 1e-3
    assert np.all(oh[cut + fade :] == 0.0)
    # Without a later hat it rings on; a closed hat before it does not choke it; a second open hat does.
    alone = render(Events.from_lists([-0.1, 0.0], [CH, OH], [127, 127]), kit, n, seed=0, stems=True)
    assert alone.stems is not None and np.all(alone.stems[OH] == 1.0)
    twice = render(Events.from_lists([0.0, 0.5], [OH, OH], [127, 127]), kit, n, seed=0, stems=True)
    assert twice.stems is not None
    c2 = round(0.5 * SR)
    assert twice.stems[OH, c2] == pytest.approx(2.0) and np.all(twice.stems[OH, c2 + fade :] == 1.0)


def test_classes_the_kit_lacks_are_dropped(folder_kit: Kit) -> None:
    ev = Events.from_lists([0.1, 0.2, 0.3], [KICK, CLASSES.index("ride"), CLASSES.index("tom_mid")], [100] * 3)
    res = render(ev, folder_kit, SR, seed=0)
    assert len(res.events) == 1 and res.onsets.sum() == 1.0 and res.onsets[KICK].sum() == 1.0


def test_articulations_play_their_notes() -> None:
    closed, pedal = np.full(32, 0.25, np.float32), np.full(32, 0.75, np.float32)
    kit = _kit(hihat_closed=(Instrument("c", (Layer(closed, 0.0, 1.0, 1.0),)),
                             Instrument("p", (Layer(pedal, 0.0, 1.0, 1.0),), notes=(44,))))  # fmt: skip
    ev = Events.from_lists([0.0, 0.01], [CH, CH], [127, 127], note=[42, 44])
    res = render(ev, kit, 1024, seed=0)
    assert res.mixture[0] == pytest.approx(0.25) and res.mixture[441] == pytest.approx(0.75)
    assert res.onsets[CH].sum() == 2.0


def _groove(seconds: float = 6.0) -> Events:
    rng = np.random.default_rng(0)
    t = np.arange(0.0, seconds, 0.125)
    cls = rng.choice([KICK, SNARE, CH, OH], size=t.size)
    return Events.from_lists(t.tolist(), cls.tolist(), rng.integers(20, 127, t.size).tolist())


def test_determinism_and_stems(folder_kit: Kit) -> None:
    other = Kit("other", "CC0", {c: folder_kit.instruments[c][::-1] for c in CLASSES})
    n = 256 * 400
    aug = RenderAugment(pitch_prob=1.0, eq_prob=1.0, room_prob=1.0, mix_kits_prob=1.0)
    a = render(_groove(), folder_kit, n, seed=7, augment=aug, mix_kits=[folder_kit, other])
    b = render(_groove(), folder_kit, n, seed=7, augment=aug, mix_kits=[folder_kit, other], stems=True)
    c = render(_groove(), folder_kit, n, seed=8, augment=aug, mix_kits=[folder_kit, other])
    assert a.mixture.dtype == np.float32 and a.mixture.shape == (n,)
    np.testing.assert_array_equal(a.mixture, b.mixture)  # bit-identical, with or without stems
    assert not np.array_equal(a.mixture, c.mixture)
    assert b.stems is not None and b.stems.shape == (9, n) and b.stems.dtype == np.float32
    np.testing.assert_allclose(b.stems.sum(axis=0), b.mixture, atol=1e-5)
    np.testing.assert_array_equal(a.onsets, c.onsets)  # augmentation never moves targets
    plain = render(_groove(), folder_kit, n, seed=7, stems=True)
    assert plain.stems is not None
    np.testing.assert_array_equal(plain.stems.sum(axis=0, dtype=np.float32), plain.mixture)


def test_target_grid_matches_the_front_end() -> None:
    from idm.model.frontend import n_frames as model_n_frames

    for n in (256, 256 * 1034, 441_000, 1000):
        assert n_frames(n) == model_n_frames(n, 256)
    n = 256 * 100
    assert n_frames(n) == n // 256 + 1
    s = np.array([0, 127, 128, 300, 25_471, 25_599, n, -5])
    assert frame_of(s[:6]).tolist() == [0, 0, 1, 1, 99, 100]
    on, vel = onset_targets(s, np.full(8, SNARE), np.array([10, 20, 30, 127, 64, 1, 99, 99]), n)
    assert on.shape == vel.shape == (9, 101) and on.dtype == vel.dtype == np.float32
    assert on[SNARE].nonzero()[0].tolist() == [0, 1, 99, 100] and on.sum() == 4
    # Two hits in one frame: the louder velocity.
    assert vel[SNARE, 0] == pytest.approx(20 / 127) and vel[SNARE, 1] == pytest.approx(127 / 127)
    assert vel[SNARE, 100] == pytest.approx(1 / 127)


def test_render_onsets_on_the_grid(folder_kit: Kit) -> None:
    ev = _groove(2.0)
    res = render(ev, folder_kit, 256 * 400, seed=3, augment=RenderAugment())
    s = np.floor(res.events.time * SR + 0.5).astype(np.int64)
    want = np.zeros_like(res.onsets)
    want[res.events.cls, frame_of(s)] = 1.0
    np.testing.assert_array_equal(res.onsets, want)
    assert res.onsets.shape == (9, 401)


def test_bad_events() -> None:
    from idm.errors import DataError

    with pytest.raises(DataError, match="class index"):
        Events.from_lists([0.0], [9], [100])
    with pytest.raises(DataError, match="differ in length"):
        Events.from_lists([0.0, 1.0], [0], [100])


def test_kit_path_fixture_exists(tmp_path: Path) -> None:
    # The folder kit fixture writes real files: the loader reads them back with their own names.
    kit = load_folder(make_folder_kit(tmp_path / "k"))
    assert kit.source == str(tmp_path / "k")
