"""The models shipped with the package, by name (``live``, ``paper``): checkpoint, ONNX bundle, training, scores.

Torch-free: names resolve to files, and ``idm models`` describes them from their manifests and ``run.json``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from idm.errors import IDMError

__all__ = [
    "SHIPPED",
    "ShippedModel",
    "resolve_bundle",
    "resolve_checkpoint",
    "shipped_model",
    "shipped_models",
    "stream_latency",
]

#: Shipped model names, the default first.
SHIPPED = ("live", "paper")
_USE = {
    "live": "the default: live playing (idm-live, 11.6 ms) and files; causal, the better shipped model on unseen kits",
    "paper": "offline files only (435 ms look-ahead); the paper's architecture trained by this project",
}


def weights_dir() -> Path:
    """``idm/weights`` inside the installed package."""
    return Path(__file__).resolve().parent / "weights"


@dataclass
class ShippedModel:
    """One shipped model: its folder ``idm/weights/NAME`` and what is known about it."""

    name: str
    folder: Path
    use: str = ""
    run: dict[str, Any] = field(default_factory=dict)  # run.json (training metadata)
    scores: dict[str, Any] = field(default_factory=dict)  # scores.json (evaluation headline figures)

    @property
    def checkpoint(self) -> Path | None:
        p = self.folder / "model.ckpt"
        return p if p.is_file() else None

    @property
    def bundle(self) -> Path | None:
        p = self.folder / "bundle"
        return p if (p / "manifest.json").is_file() else None

    def manifest(self) -> dict[str, Any]:
        """The bundle's manifest (empty when no bundle is shipped)."""
        b = self.bundle
        return json.loads((b / "manifest.json").read_text()) if b is not None else {}

    @property
    def latency_ms(self) -> float | None:
        """Latency of MIDI and synthesized stems when streamed (:func:`stream_latency`), milliseconds."""
        m = self.manifest()
        if not m:
            return None
        return 1000.0 * stream_latency(m) / float(m["audio"]["sample_rate"])

    @property
    def clips_seen(self) -> int | None:
        """Training clips seen (all chunks and fine-tuning), from ``scores.json``."""
        clips = self.scores.get("training", {}).get("clips")
        return int(clips) if clips is not None else None

    def size_bytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.rglob("*") if p.is_file())


def stream_latency(manifest: dict[str, Any]) -> int:
    """Samples from a hit to its MIDI note and synthesized stem when a bundle streams: look-ahead and picker
    delay in frames, plus half an FFT window (masked stems add one window). As ``StreamProcessor.latency``."""
    from idm.runtime.engine.peaks import PickerParams

    m = manifest
    delay = PickerParams.from_manifest(m["peak_picking"], [c["name"] for c in m["classes"]]).delay
    hop, n_fft = int(m["frontend"]["hop"]), int(m["frontend"]["n_fft"])
    return (int(m["streaming"]["lookahead_frames"]) + delay) * hop + n_fft // 2


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def shipped_model(name: str) -> ShippedModel:
    """The shipped model ``name``; :class:`IDMError` naming the choices if there is none."""
    folder = weights_dir() / name
    if name not in SHIPPED or not folder.is_dir():
        have = ", ".join(m.name for m in shipped_models()) or "none"
        raise IDMError(f"no shipped model {name!r} (shipped: {have}); or give a path")
    return ShippedModel(name, folder, _USE.get(name, ""), _read_json(folder / "run.json"),
                        _read_json(folder / "scores.json"))  # fmt: skip


def shipped_models() -> list[ShippedModel]:
    """Every shipped model that this installation has, default first."""
    return [shipped_model(n) for n in SHIPPED if (weights_dir() / n).is_dir()]


def _looks_like_name(ref: str) -> bool:
    return ref in SHIPPED or ("/" not in ref and "." not in ref and not Path(ref).exists())


def resolve_checkpoint(ref: str | Path) -> Path:
    """A ``--model`` value: a shipped name (its ``model.ckpt``) or a checkpoint path, returned as is."""
    if isinstance(ref, str) and _looks_like_name(ref):
        ckpt = shipped_model(ref).checkpoint
        if ckpt is None:
            raise IDMError(f"shipped model {ref!r} has no checkpoint in this installation")
        return ckpt
    return Path(ref)


def resolve_bundle(ref: str | Path) -> Path:
    """A ``--bundle`` value: a shipped name (its ``bundle/``) or a bundle folder path, returned as is."""
    if isinstance(ref, str) and _looks_like_name(ref):
        b = shipped_model(ref).bundle
        if b is None:
            raise IDMError(f"shipped model {ref!r} has no ONNX bundle in this installation")
        return b
    return Path(ref)
