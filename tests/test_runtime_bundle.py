"""Torch-free runtime: import hygiene, bundle validation errors, numpy front end equal to the offline one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from idm.runtime.engine.bundle import load_bundle

from idm.errors import AudioInputError, BundleError


def test_runtime_import_does_not_import_torch():
    code = (
        "import sys, idm.runtime, idm.runtime.engine.bundle, idm.runtime.engine.encoder, idm.runtime.engine.frontend; "
        "sys.exit(1 if 'torch' in sys.modules else 0)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_load_bundle_errors(tiny_bundle, tmp_path):
    with pytest.raises(BundleError, match="not found"):
        load_bundle(tmp_path / "missing")
    with pytest.raises(BundleError, match=r"no manifest\.json"):
        load_bundle(tmp_path)
    b = tmp_path / "b"
    shutil.copytree(tiny_bundle, b)
    (b / "noise.npy").unlink()
    with pytest.raises(BundleError, match=r"noise\.npy: listed in the manifest but missing"):
        load_bundle(b)
    m = json.loads((b / "manifest.json").read_text())
    m["schema_version"] = 99
    (b / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="schema_version 99"):
        load_bundle(b)
    (b / "manifest.json").write_text("{nope")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(b)


def test_manifest_contents(tiny_bundle):
    from idm.classes import CLASSES, GM_NOTES

    m = load_bundle(tiny_bundle).manifest
    assert [c["name"] for c in m["classes"]] == list(CLASSES)
    assert [c["gm_note"] for c in m["classes"]] == list(GM_NOTES)
    st = m["streaming"]
    assert st["latency_samples"] == st["lookahead_frames"] * m["frontend"]["hop"] + m["frontend"]["n_fft"] // 2
    assert set(m["files"]) == {"encoder.onnx", "synth.onnx", "mel_fb.npy", "noise.npy", "parity.npz"}
    assert m["precision"] == "fp32" and m["opset"] == 17


def test_official_lookahead_is_57(official_bundle):
    st = load_bundle(official_bundle).manifest["streaming"]
    assert st["lookahead_frames"] == 57 and st["extra_frames"] == 12 and st["latency_samples"] == 57 * 256 + 512


@pytest.mark.parametrize("n", [513, 700, 44100, 145537])
def test_frontend_equals_offline(n, rng):
    from idm.runtime.engine.frontend import FrontendParams, StreamingLogMel

    from idm.model.config import FrontendConfig
    from idm.model.frontend import LogMel, mel_filterbank

    cfg = FrontendConfig()
    audio = (rng.standard_normal(n) * 0.1).astype(np.float32)
    want = LogMel(cfg)(torch.from_numpy(audio)[None])[0].numpy().T
    fe = StreamingLogMel(
        FrontendParams(cfg.sample_rate, cfg.n_fft, cfg.hop, cfg.n_mels, cfg.log_eps), mel_filterbank(cfg)
    )
    out, t = [], 0
    while t < n:
        b = int(rng.integers(1, 3000))
        out.append(fe.process(audio[t : t + b]))
        t += b
    out.append(fe.flush())
    got = np.concatenate(out)
    assert got.shape == want.shape
    assert np.abs(got - want).max() < 1e-3


def test_frontend_rejects_too_short_clip():
    from idm.runtime.engine.frontend import FrontendParams, StreamingLogMel

    from idm.model.config import FrontendConfig
    from idm.model.frontend import mel_filterbank

    fe = StreamingLogMel(FrontendParams(44100, 1024, 256, 128, 1e-6), mel_filterbank(FrontendConfig()))
    fe.process(np.zeros(100, np.float32))
    with pytest.raises(AudioInputError, match="too short"):
        fe.flush()


def test_encoder_reset_repeats(tiny_bundle, rng):
    from idm.runtime.engine.encoder import StreamingEncoder

    enc = StreamingEncoder(load_bundle(tiny_bundle))
    audio = (rng.standard_normal(8000) * 0.1).astype(np.float32)
    a = enc.process_audio(audio).onset_prob.copy()
    enc.reset()
    b = enc.process_audio(audio).onset_prob
    np.testing.assert_array_equal(a, b)
