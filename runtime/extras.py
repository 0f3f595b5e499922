"""The optional files written beside a separation's MIDI file: note events, activations, sonification, piano roll.

For a MIDI file ``base.mid``: ``base.csv`` / ``base.json`` (``--events``), ``base_activations.npz``
(``--save-activations``), ``base_sonified.wav`` (``--sonify``; ``.flac`` with ``--format flac``) and ``base.png``
(``idm-live --plot``; ``idm separate --plot`` draws its own). Shared by ``idm separate`` (both backends) and
``idm-live --input FILE``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import soundfile as sf
from idm.runtime.activations_out import Activations, write_activations
from idm.runtime.audio_format import DEFAULT_FORMAT, AudioFormat
from idm.runtime.events_out import write_events
from idm.runtime.sonify import Sonifier

from idm.errors import OutputError
from idm.midi import MidiStyle, Onset

if TYPE_CHECKING:
    from idm.plots import PianoRoll

__all__ = ["ExtraOutputs", "ExtrasWriter"]


@dataclass(frozen=True)
class ExtraOutputs:
    """Which optional files to write (all off by default: the output layout is stems + MIDI)."""

    events: tuple[str, ...] = ()  #: "csv" and/or "json"
    activations: bool = False  #: ``<name>_activations.npz``
    sonify_kit: str | None = None  #: kit of ``<name>_sonified.wav``; None: no sonification
    kits_root: str | None = None  #: where kits are installed (default /usr/share)
    audio: AudioFormat = field(default=DEFAULT_FORMAT)  #: format of the sonification
    plot: bool = False  #: ``<name>.png``: the piano roll (waveform, onset probabilities, thresholds, hits)

    @property
    def any(self) -> bool:
        return bool(self.events) or self.activations or self.sonify_kit is not None or self.plot

    def paths(self, base: str | Path) -> list[Path]:
        """The files written for MIDI file ``base.mid`` (``base`` without suffix)."""
        base = Path(base)
        out = [base.with_name(f"{base.name}.{fmt}") for fmt in self.events]
        if self.activations:
            out.append(base.with_name(f"{base.name}_activations.npz"))
        if self.sonify_kit is not None:
            out.append(base.with_name(self.audio.filename(f"{base.name}_sonified")))
        if self.plot:
            out.append(base.with_name(f"{base.name}.png"))
        return out


class ExtrasWriter:
    """Writes :class:`ExtraOutputs` for one input after another; the sonification kit is loaded once, here.

    Raises
    ------
    IDMError
        The sonification kit is missing (at construction, before any work).
    """

    def __init__(self, config: ExtraOutputs) -> None:
        self.config = config
        self.sonifier = Sonifier(config.sonify_kit, config.kits_root) if config.sonify_kit is not None else None

    def write(
        self,
        base: str | Path,
        onsets: list[Onset],
        style: MidiStyle,
        n_samples: int,
        sample_rate: int,
        activations: Callable[[], Activations | None] | None = None,
        source: str | None = None,
        piano_roll: Callable[[list[Onset]], PianoRoll | None] | None = None,
    ) -> list[Path]:
        """Write the files beside ``base.mid``; returns them.

        Parameters
        ----------
        base
            The MIDI file's path without suffix.
        onsets
            The hits of the MIDI file.
        style
            The MIDI file's style (note map, tick grid).
        n_samples, sample_rate
            Length and rate of the input (the sonification's).
        activations
            Returns the onset probabilities (called only with ``activations`` on).
        source
            The input's name, recorded in the JSON events.
        piano_roll
            Returns the piano roll of these onsets (called only with ``plot`` on).
        """
        cfg = self.config
        base = Path(base)
        written = write_events(onsets, base, cfg.events, style, source)
        if cfg.activations:
            act = activations() if activations is not None else None
            if act is None:
                raise OutputError(f"{base}: no onset probabilities to save (--save-activations)")
            written.append(write_activations(act, base.with_name(f"{base.name}_activations.npz")))
        if self.sonifier is not None:
            path = base.with_name(cfg.audio.filename(f"{base.name}_sonified"))
            audio = self.sonifier.render(onsets, n_samples, sample_rate)
            tmp = path.with_name(f".{path.name}.partial")
            try:  # written under a temporary name, then renamed: never a half file under the real name
                sf.write(str(tmp), audio, sample_rate, subtype=cfg.audio.subtype, format=cfg.audio.extension.upper())
                os.replace(tmp, path)
            except (OSError, sf.LibsndfileError) as e:
                raise OutputError(f"{path}: cannot write the sonification ({e})") from None
            finally:
                if tmp.exists():
                    tmp.unlink()
            written.append(path)
        if cfg.plot:
            roll = piano_roll(onsets) if piano_roll is not None else None
            if roll is None:
                raise OutputError(f"{base}: no onset probabilities to draw (--plot)")
            from idm.plots import write_piano_roll

            written.append(write_piano_roll(roll, base.with_name(f"{base.name}.png")))
        return written
