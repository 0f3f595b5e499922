"""synth.onnx parity, fp16 / int8 variants against fp32 (stated tolerances, onset agreement for int8)."""

from __future__ import annotations

import shutil

import numpy as np
import onnx
from idm.export.manifest import TOLERANCES
from idm.export.quantize import to_fp16, to_int8
from idm.runtime.engine.encoder import make_session

from idm.classes import class_permutation
from idm.peaks import peak_pick


def run_whole(path, logmel: np.ndarray, flush: int) -> list[np.ndarray]:
    sess = make_session(str(path))
    feed = {i.name: np.zeros(i.shape, np.int64 if "int64" in i.type else np.float32) for i in sess.get_inputs()[2:]}
    x = np.concatenate([logmel, np.zeros((logmel.shape[0], flush), np.float32)], 1)[None]
    return sess.run(None, {"logmel": x, "end_frame": np.array([logmel.shape[1]], np.int64), **feed})


def test_synth_matches_official_reference(official_bundle, ref_dir):
    ref = np.load(ref_dir / "demo_mix_full.npz")
    perm = class_permutation(
        ("crash", "ride", "hihat_closed", "hihat_open", "kick", "snare", "tom_floor", "tom_high", "tom_mid")
    )
    sess = make_session(str(official_bundle / "synth.onnx"))
    shots, rate = sess.run(None, {"kit_embedding": ref["kit_embedding"][None], "noise": ref["noise"][perm]})
    assert np.abs(shots - ref["one_shots"][perm]).max() < 1e-4
    assert np.abs(rate - ref["decay_rate"][perm]).max() < 1e-4


def test_synth_matches_pytorch_tiny(tiny_bundle):
    par = np.load(tiny_bundle / "parity.npz")
    sess = make_session(str(tiny_bundle / "synth.onnx"))
    shots, _ = sess.run(
        None, {"kit_embedding": par["kit_embedding"][None], "noise": np.load(tiny_bundle / "noise.npy")}
    )
    assert np.abs(shots - par["one_shots"]).max() < 1e-4


def _variants(official_bundle, tmp_path, ref_dir):
    logmel = np.load(ref_dir / "demo_mix_full.npz")["logmel"]
    out = {}
    for name, fn in (("fp16", to_fp16), ("int8", to_int8)):
        p = tmp_path / f"{name}.onnx"
        shutil.copy(official_bundle / "encoder.onnx", p)
        fn(p)
        onnx.checker.check_model(onnx.load(str(p)))
        out[name] = run_whole(p, logmel, 69)
    out["fp32"] = run_whole(official_bundle / "encoder.onnx", logmel, 69)
    return out


def test_fp16_and_int8_within_stated_tolerances(official_bundle, tmp_path, ref_dir):
    v = _variants(official_bundle, tmp_path, ref_dir)
    ref = v["fp32"]
    for name in ("fp16", "int8"):
        tol = TOLERANCES[name]
        for i, key in ((1, "onset_prob"), (2, "velocity"), (3, "kit_embedding"), (4, "gains")):
            err = np.abs(v[name][i] - ref[i]).max()
            assert err <= tol[key], f"{name} {key}: {err:.3g} > {tol[key]}"
    # int8 transcription agreement: the same onsets (within one frame) on the demo clip
    p32 = peak_pick(ref[1][0, :, 57:])
    p8 = peak_pick(v["int8"][1][0, :, 57:])
    n32, n8 = int(p32.sum()), int(p8.sum())
    assert n32 > 20
    hit = 0
    for k, t in zip(*np.nonzero(p32), strict=True):
        hit += bool(p8[k, max(0, t - 1) : t + 2].any())
    assert hit / n32 >= 0.95 and abs(n8 - n32) <= 0.05 * n32, (hit, n32, n8)
