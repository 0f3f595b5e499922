"""Trace the streaming encoder and the synthesizer to ONNX (TorchScript exporter, dynamic time axis)."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
from idm.export.streaming import END_UNKNOWN, StreamingEncoder, SynthGraph

from idm.errors import ConfigError

__all__ = [
    "ENCODER_INPUTS",
    "ENCODER_OUTPUTS",
    "MAX_OPSET",
    "MIN_OPSET",
    "SYNTH_INPUTS",
    "SYNTH_OUTPUTS",
    "check_opset",
    "export_encoder",
    "export_synth",
]

#: Opsets the exporter is tested with (LayerNormalization needs 17).
MIN_OPSET = 17
MAX_OPSET = 20

ENCODER_INPUTS = ("logmel", "end_frame")
ENCODER_OUTPUTS = ("onset_logits", "onset_prob", "velocity", "kit_embedding", "gains")
SYNTH_INPUTS = ("kit_embedding", "noise")
SYNTH_OUTPUTS = ("one_shots", "decay_rate")


def check_opset(opset: int) -> None:
    """Raise :class:`ConfigError` for an opset outside ``MIN_OPSET..MAX_OPSET``."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise ConfigError(f"unsupported opset {opset}: supported opsets are {MIN_OPSET} to {MAX_OPSET}")


def _export(
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    path: Path,
    opset: int,
    inputs: list[str],
    outputs: list[str],
    dynamic: dict[str, dict[int, str]],
) -> None:
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            buf,  # type: ignore[arg-type]
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic,
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    path.write_bytes(buf.getvalue())


def export_encoder(enc: StreamingEncoder, path: Path, opset: int) -> None:
    """Write the streaming encoder graph; state inputs are named by :meth:`StreamingEncoder.state_specs`."""
    specs = enc.state_specs()
    state = enc.initial_state()
    logmel = torch.randn(1, enc.n_mels, 5)
    end = torch.tensor([END_UNKNOWN], dtype=torch.int64)
    inputs = [*ENCODER_INPUTS, *(s.name for s in specs)]
    outputs = [*ENCODER_OUTPUTS, *(s.name + "_out" for s in specs)]
    dynamic = {"logmel": {2: "frames"}}
    for name in ("onset_logits", "onset_prob", "velocity"):
        dynamic[name] = {2: "frames"}
    _export(enc, (logmel, end, *state), path, opset, inputs, outputs, dynamic)


def export_synth(graph: SynthGraph, path: Path, opset: int, n_samples: int, n_classes: int, n_kits: int) -> None:
    """Write the one-shot synthesizer graph (fixed bank shape ``[K, N]``)."""
    kit = torch.full((1, n_kits), 1.0 / n_kits)
    noise = torch.randn(n_classes, n_samples)
    _export(graph, (kit, noise), path, opset, list(SYNTH_INPUTS), list(SYNTH_OUTPUTS), {})
