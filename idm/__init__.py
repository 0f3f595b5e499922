"""Inverse Drum Machine: drum transcription and separation by inverting a drum machine.

Torch-free at import. The torch side lives in :mod:`idm.model`, :mod:`idm.checkpoint` and
:mod:`idm.separate` (``Separator``); :mod:`idm.export` writes ONNX bundles; :mod:`idm.runtime`
runs them with onnxruntime alone. The class vocabulary is :mod:`idm.classes`.
"""

__version__ = "0.1.0"
