"""Build the bundle manifest (schema ``idm-bundle`` v1) from a model and the exported files."""

from __future__ import annotations

from typing import Any

from idm.export.onnx_export import ENCODER_INPUTS, SYNTH_INPUTS
from idm.export.streaming import END_UNKNOWN, StreamingEncoder, latency_samples
from idm.runtime.engine.bundle import SCHEMA, SCHEMA_VERSION

from idm.classes import CLASSES, GM_NOTES, GROUP_OF
from idm.model import InverseDrumMachine

__all__ = ["EXPORTER_VERSION", "TOLERANCES", "build_manifest"]

EXPORTER_VERSION = "0.1.0"

#: Parity tolerances (max abs difference to the PyTorch model) per variant, checked by ``--check``.
TOLERANCES: dict[str, dict[str, float]] = {
    "fp32": {"onset_prob": 1e-4, "velocity": 1e-4, "kit_embedding": 1e-4, "gains": 1e-4, "one_shots": 1e-4},
    "fp16": {"onset_prob": 1e-2, "velocity": 5e-2, "kit_embedding": 1e-2, "gains": 1e-2, "one_shots": 1e-2},
    "int8": {"onset_prob": 0.3, "velocity": 1.0, "kit_embedding": 0.1, "gains": 0.1, "one_shots": 1e-4},
}


def build_manifest(
    model: InverseDrumMachine,
    enc: StreamingEncoder,
    *,
    opset: int,
    precision: str,
    quantize: str | None,
    source_name: str,
    source_sha256: str,
    files: dict[str, str],
    n_noise: int,
) -> dict[str, Any]:
    """The manifest dict; ``files`` maps every bundle file name (except the manifest) to its sha256.

    Peak picking comes from the model's config (``IDMConfig.peaks``; a trained checkpoint's tuned picker is
    folded into it by :func:`idm.checkpoint.load_model`).
    """
    cfg = model.config
    fe = cfg.frontend
    k = cfg.n_classes
    f_max = fe.f_max if fe.f_max is not None else fe.sample_rate / 2
    state = [
        {"name": s.name, "output": s.name + "_out", "shape": list(s.shape), "dtype": s.dtype, "init": s.init}
        for s in enc.state_specs()
    ]
    variant = "int8" if quantize == "int8" else precision
    pp = cfg.peaks
    return {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "exporter": {"name": "idm-export", "version": EXPORTER_VERSION},
        "source": {
            "checkpoint": source_name,
            "sha256": source_sha256,
            "model_name": cfg.name,
            "model_class_order": list(cfg.classes),
            "config": cfg.to_dict(),
        },
        "audio": {"sample_rate": fe.sample_rate, "channels": 1},
        "frontend": {
            "type": "log-mel",
            "n_fft": fe.n_fft,
            "win_length": fe.n_fft,
            "hop": fe.hop,
            "window": "hann-periodic",
            "center": True,
            "start_pad": "reflect",
            "end_pad": "zeros to a multiple of hop, then reflect",
            "power": 2.0,
            "n_mels": fe.n_mels,
            "f_min": fe.f_min,
            "f_max": f_max,
            "mel_scale": "htk",
            "mel_norm": None,
            "log": "natural",
            "log_eps": fe.log_eps,
            "mel_fb_file": "mel_fb.npy",
            "mel_fb_shape": [fe.n_fft // 2 + 1, fe.n_mels],
            "frame_rate": fe.sample_rate / fe.hop,
        },
        "classes": [{"name": c, "gm_note": n, "group": g} for c, n, g in zip(CLASSES, GM_NOTES, GROUP_OF, strict=True)],
        "streaming": {
            "lookahead_frames": enc.lookahead,
            "model_lookahead_frames": enc.model_lookahead,
            "extra_frames": enc.extra_frames,
            "latency_samples": latency_samples(enc.lookahead, fe.hop, fe.n_fft),
            "end_frame_unknown": END_UNKNOWN,
            "flush_frames": enc.lookahead + enc.extra_frames,
            "output_frame": "output column n of the stream is model frame n - lookahead_frames",
            "pooling": "running mean over model frames 0 .. n_logmel + extra_frames - 1",
        },
        "precision": precision,
        "quantize": quantize,
        "opset": opset,
        "graphs": {
            "encoder": {
                "file": "encoder.onnx",
                "inputs": [
                    {"name": ENCODER_INPUTS[0], "shape": [1, fe.n_mels, "frames"], "dtype": "float32"},
                    {"name": ENCODER_INPUTS[1], "shape": [1], "dtype": "int64"},
                ],
                "outputs": [
                    {"name": "onset_logits", "shape": [1, k, "frames"], "dtype": "float32"},
                    {"name": "onset_prob", "shape": [1, k, "frames"], "dtype": "float32"},
                    {"name": "velocity", "shape": [1, k, "frames"], "dtype": "float32"},
                    {"name": "kit_embedding", "shape": [1, cfg.encoder.n_kits], "dtype": "float32"},
                    {"name": "gains", "shape": [1, k], "dtype": "float32"},
                ],
                "state": state,
            },
            "synth": {
                "file": "synth.onnx",
                "inputs": [
                    {"name": SYNTH_INPUTS[0], "shape": [1, cfg.encoder.n_kits], "dtype": "float32"},
                    {"name": SYNTH_INPUTS[1], "shape": [k, n_noise], "dtype": "float32"},
                ],
                "outputs": [
                    {"name": "one_shots", "shape": [k, n_noise], "dtype": "float32"},
                    {"name": "decay_rate", "shape": [k], "dtype": "float32"},
                ],
                "noise_file": "noise.npy",
                "n_samples": n_noise,
            },
        },
        "peak_picking": {
            "on": "onset_prob",
            "pre_max": pp.pre_max,
            "post_max": pp.post_max,
            "pre_avg": pp.pre_avg,
            "post_avg": pp.post_avg,
            "delta": list(pp.delta) if isinstance(pp.delta, tuple | list) else pp.delta,
            "class_delta": dict(pp.class_delta),
            "threshold": pp.threshold,
            "wait": pp.wait,
        },
        "parity": {"file": "parity.npz", "variant": variant, "tolerance": TOLERANCES[variant]},
        "files": files,
    }
