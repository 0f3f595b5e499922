"""Inverse Drum Machine: drum transcription and separation by inverting a drum machine.

Torch-free at import. ``idm.transcribe(path)`` (:mod:`idm.api`) gives hits and stems through an ONNX bundle
without PyTorch (``idm.transfer_kit`` plays them on another kit); the shipped models are listed by
:mod:`idm.models`. The torch side lives in :mod:`idm.model`, :mod:`idm.checkpoint` and :mod:`idm.separate`
(``Separator``, ``Separator.from_pretrained("live")``); :mod:`idm.export` writes ONNX bundles; :mod:`idm.runtime`
runs them with onnxruntime alone. The class vocabulary is :mod:`idm.classes`.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "transcribe", "transfer_kit"]


def __getattr__(name: str) -> Any:
    """``idm.transcribe`` and ``idm.transfer_kit``, imported on first use (``import idm`` stays free of numpy and
    onnxruntime)."""
    if name in ("transcribe", "transfer_kit"):
        import idm.api

        return getattr(idm.api, name)
    raise AttributeError(f"module 'idm' has no attribute {name!r}")
