"""The parts of the fast offline path against the streaming ones they replace: segment-parallel encoder, block
Wiener masking from shifted one-shot spectra, the hit sequencer, the sparse mel front end, stereo stems."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import drum_loop

from idm.classes import CLASSES


def _hits(rng: np.random.Generator, n: int, hop: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    count = max(8, n // 6000)
    ks = rng.choice([0, 1, 2, 3, 7], count)
    js = rng.integers(0, n // hop + 1, count)
    ks, js = np.r_[ks, 0, 2], np.r_[js, 0, n // hop]  # a hit on the first and on the last frame
    return ks, js * hop, rng.uniform(0.1, 1.0, ks.size).astype(np.float32)


@pytest.mark.parametrize(("n", "block", "channels"), [(60_001, 16_384, 1), (5_000, 1_024, 2), (131_072, 65_536, 2)])
def test_block_wiener_equals_streaming_wiener(n: int, block: int, channels: int, rng: np.random.Generator) -> None:
    from idm.runtime.block_wiener import BlockWiener, reflect_indices
    from idm.runtime.engine.voices import VoiceEngine
    from idm.runtime.engine.wiener import StreamingWiener
    from idm.runtime.sequencer import HitSequencer
    from idm.runtime.stem_spectra import StemSpectra

    k, length, hop, n_fft = 9, 3000, 256, 1024
    bank = (rng.standard_normal((k, length)) * np.exp(-np.arange(length) / 500)).astype(np.float32)
    ks, starts, amps = _hits(rng, n, hop, k)
    seq = HitSequencer(bank, ks, starts, amps)
    voices = VoiceEngine(k, length, n)  # the stream path's sequencer: same adds, same order
    for i in np.argsort(starts, kind="stable"):
        voices.trigger(int(ks[i]), int(starts[i]), bank[ks[i]], float(amps[i]))
    stems = voices.read(n).copy()
    np.testing.assert_array_equal(seq.render(0, n), stems)
    np.testing.assert_array_equal(seq.render(777, 4321), stems[:, 777:4321])

    mix = rng.standard_normal((channels, n)).astype(np.float32)
    bw = BlockWiener(n, n_fft, hop, 1.0)
    spectra = StemSpectra(seq, n, n_fft, hop)
    got = np.zeros((k, channels, n), np.float32)
    for s0 in range(0, n, block):
        s1 = min(n, s0 + block)
        idx = reflect_indices(*bw.span(s0, s1), n)
        got[..., s0:s1] = bw.process(s0, s1, mix[:, idx], spectra, k)
    for c in range(channels):  # the streaming masking, one channel at a time
        sw = StreamingWiener(k, n_fft, hop, 1.0)
        parts = [sw.process(mix[c, a : a + 3000], stems[:, a : a + 3000]) for a in range(0, n, 3000)]
        ref = np.concatenate([*parts, sw.flush()], axis=1)[:, n_fft : n_fft + n]
        err = float(np.abs(got[:, c] - ref).max())
        assert err < 1e-5, err
    assert not got[[4, 5, 6, 8]].any()  # classes without hits are exactly silent


@pytest.mark.parametrize("model", ["live", "paper"])
def test_segment_encoder_equals_one_stream(model: str, rng: np.random.Generator) -> None:
    from idm.runtime.engine.bundle import load_bundle
    from idm.runtime.engine.encoder import StreamingEncoder
    from idm.runtime.engine.providers import make_session
    from idm.runtime.segment_encoder import SegmentEncoder

    from idm.models import resolve_bundle

    bundle = load_bundle(resolve_bundle(model))
    n = 1500
    logmel = np.log(rng.random((n, 128)).astype(np.float32) + 1e-3)
    ref_enc = StreamingEncoder(bundle)
    a = ref_enc.process_logmel(logmel)
    b = ref_enc.flush_logmel(n)
    ref_prob = np.concatenate([a.onset_prob, b.onset_prob], axis=1)
    ref_vel = np.concatenate([a.velocity, b.velocity], axis=1)

    enc = SegmentEncoder(bundle, make_session(str(bundle.encoder_path)), workers=2)
    assert enc.warmup >= 100  # the caches' total width: the receptive field
    seg = 400
    segments = [
        (s, logmel[max(0, s - enc.warmup) : s], logmel[s : s + seg], n if s + seg >= n else None)
        for s in range(0, n, seg)
    ]
    outs = list(enc.run(segments))
    prob = np.concatenate([o.onset_prob for o in outs], axis=1)
    vel = np.concatenate([o.velocity for o in outs], axis=1)
    assert [o.first_frame for o in outs] == [0, *np.cumsum([o.onset_prob.shape[1] for o in outs])[:-1]]
    assert prob.shape == ref_prob.shape
    np.testing.assert_allclose(prob, ref_prob, atol=1e-5)
    np.testing.assert_allclose(vel, ref_vel, atol=1e-5)
    pools: dict[str, np.ndarray] = {}
    for o in outs:
        for name, v in o.pools.items():
            pools[name] = pools.get(name, 0) + v
    kit, gains = enc.pooled(pools, n)
    np.testing.assert_allclose(kit, ref_enc.kit_embedding, atol=1e-5)
    np.testing.assert_allclose(gains, ref_enc.gains, atol=1e-5)


def test_sparse_mel_equals_dense(rng: np.random.Generator) -> None:
    from idm.runtime.engine.bundle import load_bundle
    from idm.runtime.engine.frontend import FrontendParams, StreamingLogMel

    from idm.models import resolve_bundle

    bundle = load_bundle(resolve_bundle("live"))
    fb = bundle.mel_fb().astype(np.float64)
    x = rng.standard_normal(20_000).astype(np.float32)
    fe = StreamingLogMel(FrontendParams(44100, 1024, 256, 128, 1e-6), bundle.mel_fb())
    got = np.concatenate([fe.process(x[:7000]), fe.process(x[7000:]), fe.flush()])
    padded = np.pad(np.pad(x.astype(np.float64), (0, -x.size % 256)), 512, mode="reflect")
    frames = np.lib.stride_tricks.sliding_window_view(padded, 1024)[::256]
    spec = np.fft.rfft(frames * (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(1024) / 1024)), axis=-1)
    ref = np.log((spec.real**2 + spec.imag**2) @ fb + 1e-6).astype(np.float32)
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_stereo_input_keeps_stereo_masked_stems(tmp_path: Path) -> None:
    """A real stereo WAV with different channels: 2-channel masked stems, each channel summing back to its own
    input channel; their channel mean is the mono downmix's separation; synth stems stay mono."""
    from idm.runtime.offline import OfflineConfig, OfflineSeparator

    from idm.models import resolve_bundle

    left, other = drum_loop(4.0), drum_loop(4.0, seed=5)
    stereo = np.stack([left, 0.4 * left + 0.6 * other], axis=1).astype(np.float32)
    sf.write(str(tmp_path / "st.wav"), stereo, 44100, subtype="FLOAT")
    sf.write(str(tmp_path / "mono.wav"), stereo.mean(axis=1, dtype=np.float32), 44100, subtype="FLOAT")
    bundle = resolve_bundle("live")
    sep = OfflineSeparator(bundle, OfflineConfig(threads=2))
    res = sep.separate_file(tmp_path / "st.wav", tmp_path / "o")
    mono = sep.separate_file(tmp_path / "mono.wav", tmp_path / "o").folder
    stems = np.stack([sf.read(str(res.folder / f"{c}.wav"), dtype="float32", always_2d=True)[0] for c in CLASSES])
    assert stems.shape == (9, stereo.shape[0], 2)
    first = round(min(o.time for o in res.onsets) * 44100) + 1024
    for ch in range(2):
        resid = stems[:, first:, ch].sum(0) - stereo[first:, ch]
        assert np.sqrt(np.mean(resid**2)) < 1e-3 * np.sqrt(np.mean(stereo[first:, ch] ** 2)), ch
    assert np.abs(stems[:, :, 0] - stems[:, :, 1]).max() > 0.05  # the channels really differ
    down = np.stack([sf.read(str(mono / f"{c}.wav"), dtype="float32")[0] for c in CLASSES])
    assert float(np.abs(stems.mean(axis=2) - down).max()) < 1e-4
    synth = OfflineSeparator(bundle, OfflineConfig(mode="synth")).separate_file(tmp_path / "st.wav", tmp_path / "s")
    assert sf.info(str(synth.folder / "kick.wav")).channels == 1


def test_idm_separate_imports_nothing_heavy(tmp_path: Path) -> None:
    """`idm separate` starts without torch, scipy, lightning or matplotlib (import time is much of a short file's)."""
    import subprocess
    import sys

    sf.write(str(tmp_path / "loop.wav"), drum_loop(1.0), 44100, subtype="FLOAT")
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "idm", "separate", str(tmp_path / "loop.wav"),
                          "-o", str(tmp_path / "o"), "-q"], capture_output=True, text=True, timeout=300,
                         check=False)  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert (tmp_path / "o" / "loop" / "kick.wav").is_file()
    imported = {ln.rsplit("|", 1)[-1].strip().split(".")[0] for ln in res.stderr.splitlines() if "|" in ln}
    assert "onnxruntime" in imported
    heavy = {"scipy", "torch", "matplotlib", "lightning"}  # (pydantic comes with typer 0.29)
    assert not imported & heavy, imported & heavy


def test_pending_session_delegates_and_reraises_at_first_use(tiny_bundle: Path, tmp_path: Path) -> None:
    """Sessions created on a background thread: attributes reach the real session; a load error surfaces on use."""
    from idm.runtime.engine.providers import PendingSession

    from idm.errors import BundleError

    s = PendingSession(str(tiny_bundle / "synth.onnx"), 1)
    assert [i.name for i in s.get_inputs()] == ["kit_embedding", "noise"]
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a graph")
    pending = PendingSession(str(bad), 1)  # no error yet: the caller goes on
    with pytest.raises(BundleError, match="cannot load the graph"):
        pending.run(None, {})
    with pytest.raises(BundleError):  # and every later use says the same
        pending.get_inputs()


def test_process_exiting_while_a_session_loads_exits_cleanly() -> None:
    """An error right after the sessions started (a bad option, say) ends the process with its own code, not an abort
    from onnxruntime torn down under a loading thread (daemon threads did that: exit -6, most runs)."""
    import subprocess
    import sys

    from idm.models import resolve_bundle

    live = resolve_bundle("live")
    graphs = [str(live / "encoder.onnx"), str(live / "synth.onnx")] * 2
    code = f"import sys, onnxruntime; from idm.runtime.engine.providers import PendingSession; s = [PendingSession(p, 1) for p in {graphs!r}]; sys.exit(3)"  # noqa: E501
    for _ in range(3):
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert res.returncode == 3, res.stderr
