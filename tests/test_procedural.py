"""Procedural drums: shape, attack, loudness targets, class character (centroid, decay, tom pitch), determinism."""

from __future__ import annotations

import wave
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from idm.classes import CLASSES
from idm.data.kitmap import load_kitmap
from idm.data.kits import SAMPLE_RATE, loudness_db
from idm.data.procedural import RECIPES, class_loudness_db, synthesize, write_examples

SR = SAMPLE_RATE
PER_CLASS = 8
LENGTH = round(0.6 * SR)


def _idx(name: str) -> int:
    return CLASSES.index(name)


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    """Small tensors: intra-op threads only cost here (and spin on a busy machine); restored afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def voices() -> tuple[torch.Tensor, torch.Tensor]:
    cls = torch.arange(len(CLASSES)).repeat_interleave(PER_CLASS)
    return cls, synthesize(cls, torch.Generator().manual_seed(1234), LENGTH, "cpu")


def test_shape_dtype_finite(voices: tuple[torch.Tensor, torch.Tensor]) -> None:
    cls, x = voices
    assert x.shape == (cls.numel(), LENGTH) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert (x.abs().amax(-1) > 0).all() and x.abs().max() < 1.0  # audible, and no clipping at the targets


def test_voices_start_at_their_attack(voices: tuple[torch.Tensor, torch.Tensor]) -> None:
    _, x = voices
    a = x.abs()
    first = (a >= 0.01 * a.amax(-1, keepdim=True)).float().argmax(-1)  # kits.prepare_sample's attack: -40 dB
    assert first.max().item() <= SR // 2000  # within 0.5 ms of the start, like the trimmed samples
    # and the first 5 ms carry real energy (no leading near-silence)
    head = x[:, : SR // 200].square().mean(-1)
    assert (head > 1e-3 * x.square().amax(-1)).all()


def test_loudness_matches_kitmap_targets(voices: tuple[torch.Tensor, torch.Tensor]) -> None:
    cls, x = voices
    targets = load_kitmap().loudness_db
    assert class_loudness_db() == tuple(targets[c] for c in CLASSES)
    for i in range(0, cls.numel(), 5):  # the kits' own definition (numpy, 100 ms RMS)
        got = loudness_db(x[i].numpy())
        assert abs(got - targets[CLASSES[int(cls[i])]]) < 1.0


def test_short_voices_and_custom_targets() -> None:
    cls = torch.tensor([_idx("kick"), _idx("crash")])
    x = synthesize(cls, torch.Generator().manual_seed(0), 1000, "cpu", loudness_db=[-10.0] * 9)
    assert x.shape == (2, 1000) and torch.isfinite(x).all()
    rms_db = 10 * torch.log10(x.square().mean(-1))
    assert torch.allclose(rms_db, torch.tensor([-10.0, -10.0]), atol=0.01)
    # A 3 s crash truncated to 1000 samples ends faded to silence.
    assert x[:, -1].abs().max() < 1e-6
    assert synthesize(torch.zeros(0, dtype=torch.long), torch.Generator(), 100, "cpu").shape == (0, 100)


def _spectra(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    f = torch.fft.rfftfreq(x.shape[-1], 1.0 / SR)
    return f, torch.fft.rfft(x, dim=-1).abs().square()


def test_kicks_are_darker_than_hats(voices: tuple[torch.Tensor, torch.Tensor]) -> None:
    cls, x = voices
    f, p = _spectra(x)
    centroid = (p * f).sum(-1) / p.sum(-1)
    kick = centroid[cls == _idx("kick")]
    hats = centroid[(cls == _idx("hihat_closed")) | (cls == _idx("hihat_open"))]
    assert kick.max() < 1000.0 < 3000.0 < hats.min()
    assert kick.max() < hats.min()


def test_closed_hats_decay_faster_than_open(voices: tuple[torch.Tensor, torch.Tensor]) -> None:
    cls, x = voices
    late = x[:, round(0.15 * SR) :].square().sum(-1) / x.square().sum(-1)
    closed, opened = late[cls == _idx("hihat_closed")], late[cls == _idx("hihat_open")]
    assert closed.max() < 1e-3 < opened.mean()
    assert closed.max() < opened.min()


def test_tom_pitches_are_ordered(voices: tuple[torch.Tensor, torch.Tensor]) -> None:
    cls, x = voices
    f, p = _spectra(x)
    band = (f > 30.0) & (f < 500.0)
    fundamental = f[band][p[:, band].argmax(-1)]
    means = [fundamental[cls == _idx(c)].mean().item() for c in ("tom_floor", "tom_mid", "tom_high")]
    assert means[0] < means[1] < means[2]
    # and each near its recipe's range (the pitch drop only raises the start)
    for c, m in zip(("tom_floor", "tom_mid", "tom_high"), means, strict=True):
        lo, hi = RECIPES[_idx(c)].f0
        assert 0.9 * lo < m < 1.2 * hi


def test_cymbals_ring_longer_than_hats(voices: tuple[torch.Tensor, torch.Tensor]) -> None:
    cls, x = voices
    late = x[:, round(0.5 * SR) :].square().sum(-1) / x.square().sum(-1)
    for c in ("crash", "ride"):
        assert late[cls == _idx(c)].min() > late[cls == _idx("hihat_open")].max()


def test_determinism() -> None:
    cls = torch.tensor([0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 2])
    a = synthesize(cls, torch.Generator().manual_seed(7), 4000, "cpu")
    b = synthesize(cls, torch.Generator().manual_seed(7), 4000, "cpu")
    c = synthesize(cls, torch.Generator().manual_seed(8), 4000, "cpu")
    assert torch.equal(a, b)
    assert (a - c).abs().amax(-1).min() > 1e-4  # every voice differs
    assert not torch.equal(a[0], a[9])  # two kicks of one batch differ


def test_write_examples(tmp_path: Path) -> None:
    files = write_examples(tmp_path, per_class=1, seconds=0.2, seed=3, classes=("kick", "ride"))
    assert [p.name for p in files] == ["kick_0.wav", "ride_0.wav"]
    with wave.open(str(files[0]), "rb") as w:
        assert (w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes()) == (SR, 1, 2, round(0.2 * SR))
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    want = synthesize(torch.tensor([0, 8]), torch.Generator().manual_seed(3), round(0.2 * SR), "cpu")[0]
    np.testing.assert_allclose(pcm / 32767.0, want.numpy(), atol=1.0 / 32767.0)
