"""One exception tree for the project; every message is a single line meant for the user."""

from __future__ import annotations

__all__ = [
    "AudioInputError",
    "BundleError",
    "CheckpointError",
    "ConfigError",
    "DataError",
    "DeviceError",
    "IDMError",
    "OutputError",
]


class IDMError(Exception):
    """Base class of every error the project raises on purpose."""


class AudioInputError(IDMError):
    """An input audio file or array cannot be used."""


class CheckpointError(IDMError):
    """A checkpoint is missing, unreadable, unsafe or of an unknown architecture."""


class ConfigError(IDMError):
    """A model configuration has an unknown or invalid key."""


class BundleError(IDMError):
    """An exported bundle is missing a file, has a bad manifest or a hash mismatch."""


class OutputError(IDMError):
    """An output location cannot be written, or would overwrite the user's files."""


class DataError(IDMError):
    """Training data (Groove MIDI Dataset, drum kits, data packs) is missing or malformed."""


class DeviceError(IDMError):
    """An audio device or MIDI port cannot be found or opened (live I/O)."""
