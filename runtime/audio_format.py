"""Sample formats of written audio (``--format``): WAV 16-bit, WAV 24-bit, WAV 32-bit float, FLAC 24-bit."""

from __future__ import annotations

from dataclasses import dataclass

from idm.errors import ConfigError

__all__ = ["DEFAULT_FORMAT", "FORMATS", "AudioFormat", "audio_format"]


@dataclass(frozen=True)
class AudioFormat:
    """A file type and sample format: ``extension`` (``wav`` or ``flac``) and libsndfile ``subtype``."""

    name: str
    extension: str
    subtype: str

    def filename(self, stem: str) -> str:
        """``stem`` with this format's extension."""
        return f"{stem}.{self.extension}"


#: ``--format`` names. ``float`` (32-bit float WAV) never clips and is the default; ``wav16``, ``wav24`` and
#: ``flac`` (24-bit, lossless, about half the size) are integer formats that clip above full scale.
FORMATS: dict[str, AudioFormat] = {
    "wav16": AudioFormat("wav16", "wav", "PCM_16"),
    "wav24": AudioFormat("wav24", "wav", "PCM_24"),
    "float": AudioFormat("float", "wav", "FLOAT"),
    "flac": AudioFormat("flac", "flac", "PCM_24"),
}
DEFAULT_FORMAT = FORMATS["float"]


def audio_format(name: str) -> AudioFormat:
    """The format called ``name`` (see :data:`FORMATS`); :class:`ConfigError` names the choices otherwise."""
    try:
        return FORMATS[name]
    except KeyError:
        raise ConfigError(f"--format {name}: expected {', '.join(FORMATS)}") from None
