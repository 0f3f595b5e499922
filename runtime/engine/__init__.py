"""The embeddable IDM engine: a bundle in, audio blocks in, drum events and stems out (numpy + onnxruntime only).

This package is what a plugin or host embeds; the ``idm-live`` application (devices, ports, files, the
status panel) is built on it and lives one level up in :mod:`idm.runtime`.

Life cycle
----------
>>> from idm.runtime.engine import Engine, EngineConfig, load_bundle
>>> engine = Engine(load_bundle("path/to/bundle"), EngineConfig(stems="synth", provider="cpu"))
>>> engine.prepare(max_block=512)          # buffers for blocks of up to 512 samples; resets the stream
>>> engine.latency                         # samples from an input sample to its output (constant)
>>> out = engine.process(block)            # mono float32 at engine.sample_rate, any length <= max_block
>>> out.events, out.stems                  # notes due on the output timeline; stems [K, len(block)] (a view)
>>> engine.reset()                         # a new stream (transport jump), keeps the loaded models
>>> engine.close()                         # stops the background one-shot bank thread

``process`` runs in the host's processing thread, not in a real-time audio callback: it calls
onnxruntime once per call that completes encoder frames. The returned stems are a view that is valid until
the next call.

Allocation guarantee: after ``prepare(max_block)`` and the stream's first ``n_fft`` samples (and onnxruntime's
first runs), ``process`` allocates no numpy array memory, for every stems mode (``none``, ``synth``,
``masked``) and any block of float32 mono samples of at most ``max_block`` (empty blocks included), on the CPU
provider with numpy >= 2.0: work buffers are sized in ``prepare``, numpy works in place (``out=``), and the
encoder runs through an onnxruntime IOBinding onto preallocated inputs, outputs and state. What a call still
creates is Python objects: the :class:`ProcessedBlock`, its list of :class:`NoteEvent` (one per due hit) and
array views (a few KB in all, freed when dropped). ``tests/test_engine_api.py`` proves it over thousands of
blocks per mode with :mod:`tracemalloc` and an exact count of numpy's allocations. Not covered: blocks above
``max_block`` (cut in pieces; the stems are concatenated into a new array), input that is not float32 (one
conversion), other providers (CUDA: ``session.run`` returns new arrays), :meth:`flush`, :meth:`reset` and
:meth:`prepare`, and the bank refresher's thread (a new bank is a new array, made off the processing thread;
the swap is one reference assignment; the call that posts a moved kit embedding to it copies those 12 floats).
onnxruntime's own work memory lives in its arena, outside numpy.

Parts, one module each: ``bundle`` (load and verify), ``frontend`` (log-mel),
``encoder`` (onnxruntime session and state), ``peaks`` (picker), ``bank`` (one-shot bank, refreshed in the
background), ``voices`` (overlap-add of one-shots), ``wiener`` (masked stems), ``providers`` (CPU/CUDA),
``delay`` (a preallocated delay line), ``replace`` (drum replacement: samples played at the events), ``align``
(offline: replacement samples moved from their frames to the transients of the input).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from idm.runtime.engine.bundle import Bundle, load_bundle

if TYPE_CHECKING:
    from idm.runtime.engine.processor import NoteEvent, ProcessedBlock, ProcessorConfig, StreamProcessor

    Engine = StreamProcessor
    EngineConfig = ProcessorConfig

#: Names imported on first use (PEP 562): a program that only loads bundles (``idm separate``) skips the
#: stream processor's modules.
_LAZY = {
    "Engine": "StreamProcessor",
    "EngineConfig": "ProcessorConfig",
    "NoteEvent": "NoteEvent",
    "ProcessedBlock": "ProcessedBlock",
    "ProcessorConfig": "ProcessorConfig",
    "StreamProcessor": "StreamProcessor",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from idm.runtime.engine import processor

        return getattr(processor, _LAZY[name])
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Bundle",
    "Engine",
    "EngineConfig",
    "NoteEvent",
    "ProcessedBlock",
    "ProcessorConfig",
    "StreamProcessor",
    "load_bundle",
]
