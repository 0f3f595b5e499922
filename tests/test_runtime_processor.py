"""The stream processor: online peak picking, streaming Wiener, and streamed == offline separation."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from idm.runtime.engine.peaks import PickerParams, StreamingPeakPicker
from idm.runtime.engine.processor import ProcessorConfig, StreamProcessor
from idm.runtime.engine.voices import VoiceEngine
from idm.runtime.engine.wiener import StreamingWiener

from idm.errors import AudioInputError, ConfigError
from idm.model.wiener import wiener_separate
from idm.peaks import PeakPicking, peak_pick
from idm.separate import Separator, SeparatorConfig


def _blocks(rng: np.random.Generator, n: int, hi: int = 3000) -> list[tuple[int, int]]:
    """Random block boundaries covering ``[0, n)``, empty blocks included."""
    out, i = [], 0
    while i < n:
        m = int(rng.integers(0, hi))
        out.append((i, min(n, i + m)))
        i += m
    return out


@pytest.mark.parametrize("trial", range(40))
def test_streaming_picker_equals_offline(trial: int, rng: np.random.Generator) -> None:
    r = np.random.default_rng(trial)
    k, t = 3, int(r.integers(1, 400))
    x = (r.random((k, t)) ** 3).astype(np.float32)
    if trial % 4 == 0:
        pp = PeakPicking()
    else:
        pre_max, post_max, pre_avg, post_avg = (int(v) for v in r.integers(1, 20, 4))
        pp = PeakPicking(pre_max, post_max, pre_avg, post_avg, float(r.random() * 0.3), int(r.integers(0, 12)))
    classes = ("kick", "snare", "ride")
    pp = PeakPicking(**{**pp.__dict__, "class_delta": {"snare": 0.05}, "threshold": 0.1 * (trial % 2)})
    ref = peak_pick(x, pp, classes)
    section = {**pp.__dict__}
    picker = StreamingPeakPicker(PickerParams.from_manifest(section, list(classes)), k)
    got = np.zeros_like(ref)
    for a, b in _blocks(r, t, 30):
        ks, js = picker.process(x[:, a:b])
        got[ks, js] = True
    ks, js = picker.flush()
    got[ks, js] = True
    assert ref.sum() > 0
    np.testing.assert_array_equal(got, ref)


def test_causal_picker_has_no_delay() -> None:
    params = PickerParams(3, 1, 5, 1, np.full(1, 0.1), np.zeros(1), 2)
    assert params.delay == 0
    picker = StreamingPeakPicker(params, 1)
    x = np.zeros((1, 30), np.float32)
    x[0, 10] = 0.9
    hits = [picker.process(x[:, i : i + 1])[1].tolist() for i in range(30)]
    assert hits[10] == [10]  # decided on the frame itself
    assert sum(len(h) for h in hits) == 1


def test_streaming_wiener_equals_offline(rng: np.random.Generator) -> None:
    n = 20000
    mix = rng.standard_normal(n).astype(np.float32)
    stems = (rng.standard_normal((3, n)) * rng.random((3, 1))).astype(np.float32)
    stems[:, 5000:9000] = 0
    for alpha in (1.0, 2.0):
        ref = wiener_separate(torch.from_numpy(mix), torch.from_numpy(stems), alpha, 1024, 256).numpy()
        w = StreamingWiener(3, 1024, 256, alpha)
        outs = [w.process(mix[a:b], stems[:, a:b]) for a, b in _blocks(rng, n)]
        got = np.concatenate([*outs, w.flush()], -1)
        assert got.shape == (3, n + 1024)
        assert np.abs(got[:, :1024]).max() == 0.0
        np.testing.assert_allclose(got[:, 1024:], ref, atol=2e-6)


def test_voice_engine_is_sample_exact(rng: np.random.Generator) -> None:
    eng = VoiceEngine(2, 100, 64)
    shot = rng.standard_normal(100).astype(np.float32)
    hits = [(0, 5), (1, 70), (0, 90), (0, 500)]
    expected = np.zeros((2, 832), np.float32)
    out, pos = [], 0
    for k, s in hits:
        expected[k, s : s + 100] += np.float32(0.5) * shot
    pending = list(hits)
    while pos < 832:
        while pending and pending[0][1] < pos + 64:
            k, s = pending.pop(0)
            eng.trigger(k, s, shot, 0.5)
        out.append(eng.read(64).copy())
        pos += 64
    np.testing.assert_array_equal(np.concatenate(out, -1), expected)
    with pytest.raises(ValueError):
        eng.trigger(0, pos - 1, shot, 1.0)


@pytest.fixture(scope="module")
def offline_official(official_model, ref_dir: Path):
    """The official model's offline separation (both modes) of 5 s of the reference demo mix."""
    x, sr = sf.read(ref_dir / "demo_mix.wav", dtype="float32")
    x = (x.mean(1) if x.ndim > 1 else x)[: 5 * sr]
    sep = Separator(official_model, SeparatorConfig(mode="synth"))
    synth = sep.separate(x, sr)
    sep.config.mode = "masked"
    masked = sep.separate(x, sr)  # same bank (cached per kit embedding)
    return x, synth, masked


@pytest.mark.parametrize("mode", ["synth", "masked"])
def test_stream_equals_offline(mode: str, offline_official, official_bundle: Path, rng: np.random.Generator) -> None:
    """A file streamed in random block sizes == offline separation with the same model and bank."""
    x, synth, masked = offline_official
    res = synth if mode == "synth" else masked
    a = res.analysis
    cfg = ProcessorConfig(provider="cpu", stems=mode, freeze=True, kit_embedding=a.kit_embedding, gains=a.gains)
    with StreamProcessor(official_bundle, cfg) as proc:
        assert np.abs(proc.bank - res.one_shots).max() < 1e-5
        assert proc.latency == (57 + 16) * 256 + 512 + (1024 if mode == "masked" else 0)
        outs, events = [], []
        for lo, hi in _blocks(rng, x.shape[0]):
            b = proc.process(x[lo:hi])
            assert b.stems is not None and b.stems.shape == (9, hi - lo)
            assert all(b.start <= e.sample < b.start + hi - lo for e in b.events)
            outs.append(b.stems.copy())
            events += b.events
        last = proc.flush()
        assert last.stems is not None
        outs.append(last.stems)
        events += last.events
    y = np.concatenate(outs, -1)
    assert y.shape == (9, x.shape[0] + proc.latency)
    assert np.abs(y[:, : proc.latency]).max() == 0.0  # silence until the first valid output
    np.testing.assert_allclose(y[:, proc.latency :], res.stems, atol=1e-4)
    offline = sorted((o.cls, round(o.time * 44100 / 256), o.velocity) for o in res.onsets)
    streamed = [(proc.class_names[e.cls], (e.sample - proc.latency) / 256, e.velocity) for e in events]
    assert all(float(j).is_integer() for _, j, _ in streamed)  # every event exactly at frame time + latency
    assert sorted((c, int(j), v) for c, j, v in streamed) == offline
    assert len(offline) > 20


def test_block_size_does_not_change_output(tiny_bundle: Path, rng: np.random.Generator) -> None:
    from conftest import drum_loop

    x = drum_loop(2.0)
    runs = []
    for sizes in ([64], [256], [1, 4000, 17], [50000]):
        with StreamProcessor(
            tiny_bundle, ProcessorConfig(provider="cpu", freeze=True, max_block=4096, delta=0.005)
        ) as proc:
            outs, ev, i, j = [], [], 0, 0
            while i < x.shape[0]:
                m = sizes[j % len(sizes)]
                b = proc.process(x[i : i + m])
                outs.append(np.array(b.stems))
                ev += b.events
                i, j = i + m, j + 1
            f = proc.flush()
            runs.append((np.concatenate([*outs, f.stems], -1), ev + f.events))
    assert len(runs[0][1]) > 0
    for stems, ev in runs[1:]:
        assert [(e.cls, e.sample) for e in ev] == [(e.cls, e.sample) for e in runs[0][1]]
        np.testing.assert_allclose(stems, runs[0][0], atol=1e-5)


def test_bank_refresh_never_blocks(official_bundle: Path, offline_official) -> None:
    """The bank is re-synthesized in the background when the kit moves; blocks keep flowing meanwhile."""
    x = offline_official[0]
    with StreamProcessor(official_bundle, ProcessorConfig(provider="cpu", kit_tolerance=0.0)) as proc:
        ref = proc._refresher
        assert ref is not None
        start = proc.bank.copy()
        blocks_while_busy = 0
        deadline = time.monotonic() + 60
        i = 0
        while proc.bank_updates == 0 and time.monotonic() < deadline:
            proc.process(x[i % x.shape[0] : i % x.shape[0] + 512])
            blocks_while_busy += int(ref.busy)
            i += 512
            time.sleep(0.002)
        assert proc.bank_updates >= 1
        assert blocks_while_busy > 10  # the audio path ran while the new bank was being synthesized
        assert not np.array_equal(proc.bank, start)


def test_processor_bad_input(tiny_bundle: Path) -> None:
    with pytest.raises(ConfigError, match="provider"):
        StreamProcessor(tiny_bundle, ProcessorConfig(provider="tpu"))
    with pytest.raises(ConfigError, match="unknown class"):
        StreamProcessor(tiny_bundle, ProcessorConfig(provider="cpu", delta={"cowbell": 0.1}))
    with pytest.raises(ConfigError, match="stems"):
        ProcessorConfig(stems="all")
    with StreamProcessor(tiny_bundle, ProcessorConfig(provider="cpu")) as proc:
        with pytest.raises(AudioInputError, match="no audio"):
            proc.flush()
        x = np.zeros(1000, np.float32)
        x[500] = np.nan
        with pytest.raises(AudioInputError, match="sample 500"):
            proc.process(x)


def test_cuda_provider_without_gpu_is_a_clear_error(tiny_bundle: Path) -> None:
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("onnxruntime-gpu installed: covered by the GPU benchmark")
    with pytest.raises(ConfigError, match="onnxruntime-gpu"):
        StreamProcessor(tiny_bundle, ProcessorConfig(provider="cuda"))
    with StreamProcessor(tiny_bundle, ProcessorConfig(provider="auto")) as proc:
        assert proc.provider == "CPUExecutionProvider"
