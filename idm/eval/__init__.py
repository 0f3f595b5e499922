"""Evaluation of separation and transcription on rendered GMD clips (``idm eval``).

- :mod:`idm.eval.metrics`: SDR, SI-SDR, log-spectral distance, silent references, onset F-measure.
- :mod:`idm.eval.groups`: class stems and onsets reduced to the 5 groups.
- :mod:`idm.eval.sets`: the seen / unseen sets (clip specs) and their rendering.
- :mod:`idm.eval.systems`: checkpoint, stream, oracle and mixture systems.
- :mod:`idm.eval.score`, :mod:`idm.eval.report`, :mod:`idm.eval.runner`: scoring, tables, the run.
- :mod:`idm.eval.figures`: every system in one figure (bootstrap intervals from per-clip scores), F per class.
"""
