"""Streaming equals offline: encoder.onnx in onnxruntime, random block sizes, against the PyTorch model."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from idm.runtime.engine.bundle import load_bundle
from idm.runtime.engine.encoder import StreamingEncoder, make_session

from idm.classes import class_permutation

TOL = 1e-4


def offline(model, logmel: np.ndarray) -> dict[str, np.ndarray]:
    """PyTorch encoder outputs for ``[n_mels, T]`` log-mel, project class order."""
    perm = class_permutation(model.config.classes)
    with torch.no_grad():
        feats = model.encoder(torch.from_numpy(logmel)[None])
        logits, vel = model.head(feats)
        kit = model.kit(feats).softmax(-1)
        gains = model.gains(feats)
    return {
        "onset_logits": logits[0, perm].numpy(),
        "onset_prob": torch.sigmoid(logits[0, perm]).numpy(),
        "velocity": vel[0, perm].numpy(),
        "kit_embedding": kit[0].numpy(),
        "gains": gains[0, perm].numpy(),
    }


def stream_graph(bundle_dir, logmel: np.ndarray, rng: np.random.Generator, max_block: int = 200) -> dict:
    """Raw graph calls, as a host in another language would make them (no runtime helper)."""
    b = load_bundle(bundle_dir)
    sess = make_session(str(b.encoder_path))
    specs = b.manifest["graphs"]["encoder"]["state"]
    st = b.manifest["streaming"]
    state = b.initial_state()
    n = logmel.shape[1]
    x = np.concatenate([logmel, np.zeros((logmel.shape[0], st["flush_frames"]), np.float32)], 1)[None]
    names = ["onset_logits", "onset_prob", "velocity", "kit_embedding", "gains"]
    outs: dict[str, list] = {k: [] for k in names[:3]}
    t, blocks = 0, 0
    while t < x.shape[-1]:
        m = min(int(rng.integers(1, max_block + 1)), x.shape[-1] - t)
        end = n if t + m > n else st["end_frame_unknown"]  # the host learns the end when it reaches it
        r = sess.run(None, {"logmel": x[..., t : t + m], "end_frame": np.array([end], np.int64), **state})
        for i, k in enumerate(names[:3]):
            outs[k].append(r[i][0])
        state = {s["name"]: v for s, v in zip(specs, r[5:], strict=True)}
        t += m
        blocks += 1
    res = {k: np.concatenate(v, 1)[:, st["lookahead_frames"] :] for k, v in outs.items()}
    res["kit_embedding"], res["gains"] = r[3][0], r[4][0]
    res["blocks"] = blocks
    return res


def assert_equal_streams(got: dict, want: dict) -> None:
    assert got["onset_prob"].shape == want["onset_prob"].shape
    # logits reach several hundred: compare them relative to their magnitude, probabilities absolutely
    np.testing.assert_allclose(got["onset_logits"], want["onset_logits"], rtol=1e-5, atol=TOL)
    for k in ("onset_prob", "velocity", "kit_embedding", "gains"):
        err = np.abs(got[k] - want[k]).max()
        assert err <= TOL, f"{k}: max abs error {err:.3g}"


@pytest.mark.parametrize("seed", [0, 1])
def test_official_streaming_equals_offline(official_model, official_bundle, ref_dir, seed):
    ref = np.load(ref_dir / "demo_mix_full.npz")
    logmel = ref["logmel"][:, :900] if seed else ref["logmel"]
    got = stream_graph(official_bundle, logmel, np.random.default_rng(seed))
    assert got["blocks"] > 5
    assert_equal_streams(got, offline(official_model, logmel))


def test_official_odd_length_clip_matches_reference(official_bundle, ref_dir, rng):
    ref = np.load(ref_dir / "demo_mix_excerpt_odd_length.npz")
    got = stream_graph(official_bundle, ref["logmel"], rng)
    perm = class_permutation(
        ("crash", "ride", "hihat_closed", "hihat_open", "kick", "snare", "tom_floor", "tom_high", "tom_mid")
    )
    np.testing.assert_allclose(got["onset_logits"], ref["onset_logits"][perm], rtol=1e-4, atol=1e-3)
    assert np.abs(got["velocity"] - ref["velocity"][perm]).max() < 1e-3
    assert np.abs(got["kit_embedding"] - ref["kit_embedding"]).max() < 1e-4


def test_single_frame_blocks(official_model, official_bundle, ref_dir):
    logmel = np.load(ref_dir / "demo_mix_full.npz")["logmel"][:, :150]
    got = stream_graph(official_bundle, logmel, np.random.default_rng(0), max_block=1)
    assert_equal_streams(got, offline(official_model, logmel))


def test_tiny_streaming_equals_offline(tiny_model, tiny_bundle, rng):
    logmel = rng.standard_normal((tiny_model.config.frontend.n_mels, 333)).astype(np.float32) * 3 - 5
    got = stream_graph(tiny_bundle, logmel, rng, max_block=40)
    assert_equal_streams(got, offline(tiny_model, logmel))


def test_running_pool_before_the_end_is_prefix_mean(tiny_model, tiny_bundle, rng):
    """Mid-stream the running pool is the mean over the frames emitted so far."""
    logmel = rng.standard_normal((128, 200)).astype(np.float32)
    b = load_bundle(tiny_bundle)
    enc = StreamingEncoder(b)
    f = enc.process_logmel(logmel.T)
    with torch.no_grad():
        feats = tiny_model.encoder(torch.from_numpy(logmel)[None])  # frames up to the emitted ones are final
        n_valid = f.first_frame + f.n_frames + 3  # pooled features lead the head outputs by its right context
        kit = tiny_model.kit(feats[:, :n_valid]).softmax(-1)[0].numpy()
    assert np.abs(enc.kit_embedding - kit).max() < TOL


def test_audio_path_equals_offline(tiny_model, tiny_bundle, rng):
    """Audio in random blocks through the numpy front end and the graph equals model.encode on the clip."""
    audio = (rng.standard_normal(30_000) * 0.2).astype(np.float32)
    enc = StreamingEncoder(load_bundle(tiny_bundle))
    frames, t = [], 0
    while t < audio.size:
        n = int(rng.integers(1, 4000))
        frames.append(enc.process_audio(audio[t : t + n]))
        t += n
    frames.append(enc.flush())
    assert frames[0].first_frame == 0
    prob = np.concatenate([f.onset_prob for f in frames], 1)
    perm = class_permutation(tiny_model.config.classes)
    with torch.no_grad():
        o = tiny_model.encode(torch.from_numpy(audio)[None])
    want = torch.sigmoid(o.onset_logits[0, perm]).numpy()
    assert prob.shape == want.shape
    assert np.abs(prob - want).max() < 1e-3  # numpy float64 STFT vs torch float32 STFT
    assert np.abs(enc.gains - o.gains[0, perm].numpy()).max() < 1e-3


def test_extra_lookahead_delays_exactly(tiny_model, tmp_path, rng):
    from idm.export.bundle import ExportOptions, export_model

    out = export_model(tiny_model, tmp_path / "b", ExportOptions(lookahead=20))
    b = load_bundle(out)
    assert b.manifest["streaming"]["lookahead_frames"] == 20
    logmel = rng.standard_normal((128, 120)).astype(np.float32)
    got = stream_graph(out, logmel, rng, max_block=30)
    assert_equal_streams(got, offline(tiny_model, logmel))


def test_graphs_pass_onnx_checker(official_bundle):
    for name in ("encoder.onnx", "synth.onnx"):
        onnx.checker.check_model(onnx.load(str(official_bundle / name)), full_check=True)
