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
onnxruntime once per encoder frame. In steady state it allocates no array memory (preallocated buffers,
``tests/test_engine_api.py`` proves it with :mod:`tracemalloc`); the returned stems are a view that is valid
until the next call. Parts, one module each: ``bundle`` (load and verify), ``frontend`` (log-mel),
``encoder`` (onnxruntime session and state), ``peaks`` (picker), ``bank`` (one-shot bank, refreshed in the
background), ``voices`` (overlap-add of one-shots), ``wiener`` (masked stems), ``providers`` (CPU/CUDA).
"""

from idm.runtime.engine.bundle import Bundle, load_bundle
from idm.runtime.engine.processor import NoteEvent, ProcessedBlock, ProcessorConfig, StreamProcessor

Engine = StreamProcessor
EngineConfig = ProcessorConfig

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
