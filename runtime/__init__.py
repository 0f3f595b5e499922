"""Torch-free streaming runtime: runs exported IDM bundles with onnxruntime and numpy.

Model side: the embeddable engine, :mod:`idm.runtime.engine` (``Engine``: a verified bundle, audio blocks in,
MIDI events and stems out at one constant latency; prepare / process / reset), built from ``frontend``,
``encoder``, ``peaks``, ``bank``, ``voices``, ``wiener`` and ``providers``. Everything else here uses it.

Whole files (``idm separate``'s onnx backend): :mod:`idm.runtime.offline` (``OfflineSeparator``), built from
``offline_analysis`` (read, log-mel, ``segment_encoder``: the encoder graph over parallel segments) and
``offline_render`` (independent blocks on threads: ``sequencer`` for synthesized stems, ``block_wiener`` with
``stem_spectra`` for masked ones).

Live I/O, the ``idm-live`` command (:mod:`idm.runtime.cli`): :mod:`idm.runtime.builder` turns options into a
:class:`idm.runtime.live.LiveSession` (source -> worker thread -> processor -> sinks). Parts: ``sources``
(file, demo loop, device input), ``ring`` (lock-free buffers for the audio callbacks), ``audio_io``
(PortAudio through sounddevice, imported lazily), ``midi_out`` (python-rtmidi, lazily), ``scheduler``
(notes at their sample's time), ``stems_writer`` and ``outputs`` (files), ``monitor``, ``status``,
``prepass`` (a file's clip-level kit) and ``defaults`` (where the default bundle is).
"""
