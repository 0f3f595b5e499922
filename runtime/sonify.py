"""``--sonify``: the transcription played back on a sampled drum kit, aligned with the input.

The kit renderer of ``idm data render`` (:func:`idm.data.render.render`: numpy and soxr, no PyTorch) plays
every hit at its time and velocity; the result is resampled to the input's rate and cut to its length, so it
lines up with the stems sample for sample. Kits come from the Debian drum-kit packages (``idm data kits``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from idm.errors import DataError, IDMError
from idm.midi import Onset

__all__ = ["DEFAULT_SONIFY_KIT", "Sonifier"]

#: The default kit (the demo's: a training kit from Debian's avldrums.lv2-soundfont).
DEFAULT_SONIFY_KIT = "AVL Black Pearl 4"
#: Peak level a sonification is scaled down to if it would clip (dBFS).
PEAK_DB = -1.0


class Sonifier:
    """A loaded kit that renders onsets to audio.

    Parameters
    ----------
    kit
        A registered kit name (``idm data kits``), or a Hydrogen kit folder, ``.sf2`` file or folder of
        one-shots per class.
    kits_root
        Root of the installed kits (default ``/usr/share``) or a data pack folder.

    Raises
    ------
    IDMError
        The kit is not installed or not readable (one line, naming what to install).
    """

    def __init__(self, kit: str = DEFAULT_SONIFY_KIT, kits_root: str | Path | None = None) -> None:
        from idm.data.kits import load_kit_ref

        try:
            self.kit = load_kit_ref(kit, kits_root)
        except DataError as e:
            raise IDMError(f"--sonify-kit {kit}: {e}") from None
        self.name = kit

    def render(self, onsets: list[Onset], n_samples: int, sample_rate: int) -> np.ndarray:
        """The hits on the kit: float32 ``[n_samples]`` at ``sample_rate`` (scaled down only if it would clip)."""
        from idm.classes import CLASSES
        from idm.data.gmd import Events
        from idm.data.kits import SAMPLE_RATE
        from idm.data.render import render

        n_kit = int(np.ceil(n_samples * SAMPLE_RATE / sample_rate)) + 64
        ev = Events.from_lists([max(0.0, o.time) for o in onsets], [CLASSES.index(o.cls) for o in onsets],
                               [int(min(127, max(1, o.velocity))) for o in onsets])  # fmt: skip
        mix = np.zeros(n_kit, np.float32)
        if len(ev):
            mix = render(ev, self.kit, n_kit, seed=0).mixture.astype(np.float32)
        if sample_rate != SAMPLE_RATE:
            import soxr

            mix = soxr.resample(mix, SAMPLE_RATE, sample_rate, quality="VHQ").astype(np.float32)
        out = np.zeros(n_samples, np.float32)
        n = min(n_samples, mix.shape[0])
        out[:n] = mix[:n]
        peak = float(np.abs(out).max()) if n_samples else 0.0
        limit = 10 ** (PEAK_DB / 20)
        if peak > limit:
            out *= limit / peak
        return out
