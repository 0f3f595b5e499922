"""Recording-realism effects: on/off per probability, room decay, exact bleed, mic colouring, compressor,
soft clip, noise SNR, batch independence, determinism and finite outputs."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import replace

import pytest
import torch

from idm.classes import CLASSES
from idm.data.effects import (
    EFFECTS_ORDER,
    ROOM_TYPES,
    BleedParams,
    ClipParams,
    CompressParams,
    MicParams,
    RealismConfig,
    RealismParams,
    RoomParams,
    RoomType,
    add_noise,
    apply_params,
    apply_realism,
    bleed,
    compress,
    draw_realism,
    fast_len,
    mic,
    noise_colour,
    room,
    soft_clip,
)
from idm.data.kits import SAMPLE_RATE

SR = SAMPLE_RATE
N = SR // 2  # 0.5 s keeps the tests fast
C = len(CLASSES)
EFFECTS = EFFECTS_ORDER
#: Everything on, with short rooms (a short impulse response keeps the tests fast).
SHORT_ROOMS = tuple(replace(t, rt60=(0.1, 0.3), predelay_ms=(0.0, 5.0)) for t in ROOM_TYPES)
ALL_ON = RealismConfig.disabled(room_types=SHORT_ROOMS, **{f"{e}_prob": 1.0 for e in EFFECTS})


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Small tensors: intra-op threads only cost here (and spin on a busy machine); restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _drums(b: int, n: int = N, seed: int = 0, amp: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Stems ``[b, 9, n]`` of decaying noise bursts (a few hits per class), and their sum."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / SR
    stems = torch.zeros(b, C, n)
    for k in range(4):
        start = torch.randint(0, n // 2, (b, C, 1), generator=g)
        tau = 0.01 + 0.1 * torch.rand(b, C, 1, generator=g)
        tt = t - start / SR
        hit = torch.randn(b, C, n, generator=g) * torch.exp(-tt.clamp_min(0) / tau) * (tt >= 0)
        stems += (0.3 + 0.7 * torch.rand(b, C, 1, generator=g)) * hit / (k + 1)
    stems = amp * stems / stems.sum(1).abs().amax(-1)[:, None, None]
    return stems, stems.sum(1)


def _crest_db(x: torch.Tensor) -> torch.Tensor:
    return 20 * torch.log10(x.abs().amax(-1) / x.square().mean(-1).sqrt())


def _ones(b: int) -> torch.Tensor:
    return torch.ones(b, dtype=torch.bool)


def test_fast_len() -> None:
    assert [fast_len(n) for n in (1, 2, 7, 17, 1000, 1025)] == [1, 2, 8, 18, 1000, 1080]
    for n in (264600 + 4096, 409300):
        m = fast_len(n)
        assert m >= n and m < 1.05 * n
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        assert r == 1


@pytest.mark.parametrize("effect", EFFECTS)
def test_each_effect_alone_on_and_off(effect: str) -> None:
    stems, mix = _drums(3)
    g = lambda: torch.Generator().manual_seed(5)  # noqa: E731
    off = apply_realism(mix, stems, RealismConfig.disabled(), g())
    assert torch.equal(off, mix)
    # (a threshold under the quietest mixes' RMS, so that both detectors compress every example)
    quick = {"room_types": SHORT_ROOMS, "compress_threshold_db": (-45.0, -40.0)}
    cfg = RealismConfig.disabled(**quick, **{f"{effect}_prob": 1.0})
    on = apply_realism(mix, stems, cfg, g(), check_finite=True)
    assert on.shape == mix.shape
    changed = (on - mix).abs().amax(-1) / mix.abs().amax(-1)
    assert (changed > 1e-4).all(), changed
    params = draw_realism(cfg, 3, N, g())
    assert [f for f in EFFECTS if getattr(params, f) is not None] == [effect]


def test_masks_mix_effected_and_clean_examples() -> None:
    stems, mix = _drums(16)
    cfg = RealismConfig.disabled(room_prob=0.5, room_types=SHORT_ROOMS)
    params = draw_realism(cfg, 16, N, torch.Generator().manual_seed(3))
    assert params.room is not None
    out = apply_params(mix, stems, params)
    same = (out == mix).all(-1)
    assert torch.equal(same, ~params.room.mask)
    assert 0 < int(params.room.mask.sum()) < 16


def _edc_rt60(y: torch.Tensor, start: int) -> float:
    """RT60 from the Schroeder decay curve's -5 to -25 dB slope (T20 x 3)."""
    e = y[start:].square().flip(0).cumsum(0).flip(0)
    edc = 10 * torch.log10(e / e[0])
    i5, i25 = int((edc <= -5).float().argmax()), int((edc <= -25).float().argmax())
    return 3.0 * (i25 - i5) / SR


def test_room_decay_matches_drawn_rt60() -> None:
    flat = RoomType("flat", (0.2, 0.8), (1.0, 1.0), (1.0, 1.0), (0.0, 20.0), (5.0, 40.0), (0.1, 0.3), (0.0, 0.0))
    n = SR
    params = draw_realism(
        RealismConfig.disabled(room_prob=1.0, room_types=(flat,)), 4, n, torch.Generator().manual_seed(2)
    )
    p = params.room
    assert p is not None and p.noise.shape[-1] >= 0.8 * SR
    x = torch.zeros(4, n)
    x[:, 0] = 1.0  # an impulse: the dry signal ends after sample 0
    y = apply_params(x, None, params)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert torch.allclose(y[:, 0], torch.ones(4), atol=0.05)  # the dry impulse (early taps come after >= 5 ms)
    for b in range(4):
        start = 1 + round((float(p.predelay[b]) + 0.05) * SR)  # past the pre-delay and the early reflections
        want = float(p.rt60[b, 1])
        assert abs(_edc_rt60(y[b, 1:], start) - want) < 0.1 * want


def test_room_highs_decay_faster() -> None:
    n = SR
    noise = torch.randn(1, n, generator=torch.Generator().manual_seed(0))
    p = RoomParams(_ones(1), torch.tensor([[0.8, 0.8, 0.25]]), torch.zeros(1), torch.zeros(1, 6), torch.zeros(1, 6),
                   torch.zeros(1), noise, torch.zeros(1, dtype=torch.long))  # fmt: skip
    x = torch.zeros(1, n)
    x[0, 0] = 1.0
    y = room(x, p)[0, 1:]
    f = torch.fft.rfftfreq(n - 1, 1.0 / SR)
    spec = torch.fft.rfft(y)
    low = torch.fft.irfft(spec * (f < 300), n - 1)
    high = torch.fft.irfft(spec * (f > 10000), n - 1)
    start = round(0.02 * SR)
    assert abs(_edc_rt60(low, start) - 0.8) < 0.1
    assert abs(_edc_rt60(high, start) - 0.25) < 0.04


def _bleed_params(b: int, gain: torch.Tensor, delay: torch.Tensor, lowpass: float = math.inf) -> BleedParams:
    return BleedParams(_ones(b), gain, delay, torch.full((b, C, C), lowpass))


def test_bleed_zero_gain_is_the_plain_sum() -> None:
    stems, mix = _drums(2)
    p = _bleed_params(2, torch.zeros(2, C, C), torch.full((2, C, C), 0.003), 5000.0)
    assert torch.equal(bleed(stems, p), stems.sum(1))
    assert torch.equal(apply_params(mix, stems, RealismParams(bleed=p)), mix)


def test_bleed_pure_delay_and_gain_matches_time_domain() -> None:
    b, n = 2, 3000
    stems = torch.randn(b, C, n, generator=torch.Generator().manual_seed(1))
    g = torch.Generator().manual_seed(2)
    gain = 0.1 * torch.rand(b, C, C, generator=g) * (1 - torch.eye(C))
    lag = torch.randint(1, 265, (b, C, C), generator=g)  # whole samples, up to 6 ms
    got = bleed(stems, _bleed_params(b, gain, lag / SR))
    want = stems.sum(1).clone()
    for i in range(b):
        for m in range(C):
            for s in range(C):
                d = int(lag[i, m, s])
                want[i, d:] += gain[i, m, s] * stems[i, s, : n - d]
    torch.testing.assert_close(got, want, atol=2e-5, rtol=0)
    # and a low-passed bleed loses highs relative to the unfiltered one
    lp = bleed(stems, _bleed_params(b, gain, lag / SR, 2000.0)) - stems.sum(1)
    f = torch.fft.rfftfreq(n, 1.0 / SR)
    hi = f > 10000
    ratio = (
        torch.fft.rfft(lp)[..., hi].abs().square().sum()
        / torch.fft.rfft(want - stems.sum(1))[..., hi].abs().square().sum()
    )
    assert ratio < 0.1  # fmt: skip


def _mic(hp: float, lp: float = 18000.0, slope: float = 2.0, presence_db: float = 0.0) -> MicParams:
    t = lambda v: torch.tensor([v])  # noqa: E731
    return MicParams(_ones(1), t(hp), t(lp), t(slope), t(presence_db), t(3000.0), t(1.0))


def test_mic_highpass_removes_rumble_not_mids() -> None:
    t = torch.arange(N) / SR
    gains = []
    for f0 in (30.0, 1000.0):
        x = torch.sin(2 * math.pi * f0 * t)[None]
        y = mic(x, _mic(150.0))
        sl = slice(SR // 10, -SR // 10)  # away from the edges
        gains.append(float(y[0, sl].square().mean() / x[0, sl].square().mean()))
    assert gains[0] < 0.05 and gains[1] > 0.95  # 30 Hz at 150 Hz HP order 2: -28 dB
    # the presence bump boosts 3 kHz by its gain
    x = torch.sin(2 * math.pi * 3000.0 * t)[None]
    y = mic(x, _mic(20.0, 18000.0, 1.0, 6.0))
    db = 10 * math.log10(float(y[0, SR // 10 : -SR // 10].square().mean() / x[0, SR // 10 : -SR // 10].square().mean()))
    assert abs(db - 6.0) < 0.3


def _comp(b: int, threshold: float, ratio: float, attack: float, rms: bool = False) -> CompressParams:
    full = lambda v: torch.full((b,), v)  # noqa: E731
    return CompressParams(_ones(b), full(threshold), full(ratio), full(attack), full(0.1), full(3.0),
                          torch.full((b,), rms))  # fmt: skip


def _hits(b: int, amp: float, seed: int = 0) -> torch.Tensor:
    """``[b, N]`` drum-like hits every 50 ms: damped 60-400 Hz tones with a noise click, peak ``amp``."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(N) / SR
    x = torch.zeros(b, N)
    for k in range(10):
        tt = t - 0.05 * k
        on = (tt >= 0) * torch.exp(-tt.clamp_min(0) / 0.04)
        f0 = 60.0 * 6.0 ** torch.rand(b, 1, generator=g)
        hit = torch.sin(2 * math.pi * f0 * tt) + 0.3 * torch.randn(b, N, generator=g) * on**8
        x += 10.0 ** (-1.5 * torch.rand(b, 1, generator=g)) * hit * on  # levels over 30 dB
    return amp * x / x.abs().amax(-1, keepdim=True)


def test_compressor_reduces_crest_of_loud_drums_and_leaves_quiet_ones() -> None:
    loud = _hits(3, 0.9, seed=4)
    out = compress(loud, _comp(3, -25.0, 6.0, 0.0005))
    assert (_crest_db(out) < _crest_db(loud) - 2.5).all(), (_crest_db(loud), _crest_db(out))
    slow = compress(loud, _comp(3, -25.0, 6.0, 0.02))  # a slow attack lets the transients through
    assert (_crest_db(slow) > _crest_db(out) + 3.0).all()
    torch.testing.assert_close(out.square().mean(-1), loud.square().mean(-1), rtol=1e-3, atol=0)  # make-up gain
    quiet = loud * 0.01  # peaks at -41 dBFS, under a -25 dB threshold
    for rms in (False, True):
        torch.testing.assert_close(compress(quiet, _comp(3, -25.0, 6.0, 0.0005, rms)), quiet, rtol=1e-4, atol=1e-7)


def test_compressor_release_lets_gain_recover() -> None:
    n = SR
    x = torch.zeros(1, n)
    x[0, : SR // 10] = 0.9  # a loud block, then a quiet tone
    x[0, SR // 10 :] = 0.01 * torch.sin(2 * math.pi * 500 * torch.arange(n - SR // 10) / SR)
    p = CompressParams(_ones(1), torch.tensor([-20.0]), torch.tensor([4.0]), torch.tensor([0.001]),
                       torch.tensor([0.05]), torch.tensor([0.0]), torch.tensor([False]))  # fmt: skip
    y = compress(x, p)
    gain = lambda a, b: float(y[0, a:b].abs().max() / x[0, a:b].abs().max())  # noqa: E731
    loud = gain(SR // 20, SR // 20 + 100)  # settled: the static curve's reduction
    just_after, late = gain(SR // 10 + 200, SR // 10 + 1000), gain(n - 5000, n)
    static_db = (20 * math.log10(0.9) + 20.0) * (1 - 1 / 4)  # 14.3 dB over a -20 dB threshold at 4:1
    assert 20 * math.log10(late / loud) == pytest.approx(static_db, abs=0.3)  # recovered fully (tone < threshold)
    assert 20 * math.log10(late / just_after) > 6.0  # but not within 23 ms at 8.7 dB / 50 ms


def test_soft_clip_bounds_the_peak() -> None:
    _, x = _drums(2, amp=0.8, seed=6)
    p = ClipParams(_ones(2), torch.tensor([0.0, 12.0]))
    y = soft_clip(x, p)
    peak = x.abs().amax(-1, keepdim=True)
    drive = torch.tensor([[1.0], [10 ** (12 / 20)]])
    bound = (
        x.square().mean(-1, keepdim=True).sqrt() / torch.tanh(drive * x / peak).square().mean(-1, keepdim=True).sqrt()
    )
    assert (y.abs().amax(-1, keepdim=True) <= bound).all()  # fmt: skip
    torch.testing.assert_close(y.square().mean(-1), x.square().mean(-1), rtol=1e-4, atol=0)
    crest_in, crest_out = _crest_db(x), _crest_db(y)
    assert crest_out[0] < crest_in[0] and crest_out[1] < crest_in[1] - 6.0


def test_noise_snr_matches_drawn_value() -> None:
    _, mix = _drums(6)
    params = draw_realism(RealismConfig.disabled(noise_prob=1.0), 6, N, torch.Generator().manual_seed(9))
    p = params.noise
    assert p is not None and set(p.exponent.tolist()) <= {0.0, 1.0, 2.0}
    y = add_noise(mix, p)
    snr = 10 * torch.log10(mix.square().mean(-1) / (y - mix).square().mean(-1))
    assert ((snr - p.snr_db).abs() < 1.0).all()
    assert ((p.snr_db >= 25.0) & (p.snr_db <= 60.0)).all()
    # pink and brown are darker than white: low/high band energy ratio grows with the exponent
    col = noise_colour(replace(p, exponent=torch.tensor([0.0, 1.0, 2.0, 0.0, 1.0, 2.0])))
    f = torch.fft.rfftfreq(N, 1.0 / SR)
    s = torch.fft.rfft(col).abs().square()
    tilt = s[:, (f > 50) & (f < 200)].mean(-1) / s[:, (f > 5000) & (f < 10000)].mean(-1)
    assert tilt[0] < 3 and 10 < tilt[1] < tilt[2]


def test_silence_stays_silent_and_finite() -> None:
    x = torch.zeros(2, N)
    stems = torch.zeros(2, C, N)
    out = apply_realism(x, stems, ALL_ON, torch.Generator().manual_seed(0), check_finite=True)
    assert torch.equal(out, x)


def test_extreme_inputs_stay_finite() -> None:
    stems, mix = _drums(3, amp=0.5)
    scale = torch.tensor([1e-6, 1.0, 100.0])
    out = apply_realism(mix * scale[:, None], stems * scale[:, None, None], ALL_ON, torch.Generator().manual_seed(1),
                        check_finite=True)  # fmt: skip
    assert out.shape == mix.shape and torch.isfinite(out).all()
    dc = torch.ones(1, 5001)  # odd length, DC
    out = apply_realism(dc, dc[:, None].expand(1, C, 5001) / C, ALL_ON, torch.Generator().manual_seed(2))
    assert out.shape == dc.shape and torch.isfinite(out).all()
    with pytest.raises(FloatingPointError):
        apply_realism(mix * math.nan, None, ALL_ON, torch.Generator(), check_finite=True)


def test_batch_independence() -> None:
    stems, mix = _drums(3, seed=11)
    params = draw_realism(ALL_ON, 3, N, torch.Generator().manual_seed(4))
    batch = apply_params(mix, stems, params)
    for i in range(3):
        alone = apply_params(mix[i : i + 1], stems[i : i + 1], params.select(i))
        torch.testing.assert_close(alone, batch[i : i + 1], atol=1e-5, rtol=1e-4)
    # a neighbour's content does not leak in
    other = mix.clone()
    other[1:] = torch.randn(2, N)
    stems2 = stems.clone()
    stems2[1:] = torch.randn(2, C, N)
    torch.testing.assert_close(apply_params(other, stems2, params)[0], batch[0], atol=1e-5, rtol=1e-4)


def test_determinism_and_bleed_needs_stems() -> None:
    stems, mix = _drums(4)
    a = apply_realism(mix, stems, ALL_ON, torch.Generator().manual_seed(3))
    b = apply_realism(mix, stems, ALL_ON, torch.Generator().manual_seed(3))
    c = apply_realism(mix, stems, ALL_ON, torch.Generator().manual_seed(4))
    assert torch.equal(a, b)
    assert (a - c).abs().amax(-1).min() > 1e-4
    only_bleed = RealismConfig.disabled(bleed_prob=1.0)
    assert torch.equal(apply_realism(mix, None, only_bleed, torch.Generator()), mix)  # skipped without stems
    with pytest.raises(ValueError, match="stems"):
        apply_realism(mix, stems[:, :5], only_bleed, torch.Generator())


def test_drawn_parameters_stay_in_their_ranges() -> None:
    cfg = RealismConfig(bleed_prob=1.0, room_prob=1.0, mic_prob=1.0, compress_prob=1.0, clip_prob=1.0, noise_prob=1.0)
    p = draw_realism(cfg, 64, 100, torch.Generator().manual_seed(0))
    assert p.bleed is not None and p.room is not None and p.mic is not None and p.compress is not None
    off_diag = ~torch.eye(C, dtype=torch.bool).expand(64, C, C)
    db = 20 * torch.log10(p.bleed.gain[off_diag])
    assert db.min() >= -40.0 - 1e-4 and db.max() <= -20.0 + 1e-4 and (p.bleed.gain[~off_diag] == 0).all()
    assert p.bleed.delay.min() >= 0.5e-3 - 1e-9 and p.bleed.delay.max() <= 6e-3 + 1e-9
    assert (p.room.rt60[:, 2] < p.room.rt60[:, 1] + 1e-6).all()  # highs never outlast the mids
    assert set(p.room.kind.tolist()) == {0, 1, 2, 3}
    assert p.mic.highpass.min() >= 20.0 - 1e-3 and p.mic.highpass.max() <= 150.0 + 1e-3
    assert ((p.compress.ratio >= 2.0 - 1e-5) & (p.compress.ratio <= 8.0 + 1e-5)).all()
    assert 0 < int(p.compress.rms.sum()) < 64
