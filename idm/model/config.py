"""Dataclass configuration of the IDM model: the official architecture and project variants."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from idm.classes import CLASSES
from idm.errors import ConfigError
from idm.peaks import PeakPicking

__all__ = ["EncoderConfig", "FrontendConfig", "IDMConfig", "SynthConfig"]


@dataclass
class FrontendConfig:
    """Log-mel front end (power mel, HTK scale, no filter normalisation, ``ln(mel + eps)``)."""

    sample_rate: int = 44100
    n_fft: int = 1024
    hop: int = 256
    n_mels: int = 128
    f_min: float = 0.0
    f_max: float | None = None
    log_eps: float = 1e-6


@dataclass
class EncoderConfig:
    """2-D ConvNeXt over (mel, time) plus the per-frame heads and clip-level pooling.

    ``causal`` replaces every symmetric time padding by left padding (at most ``lookahead`` frames
    of right context in the whole encoder); the official encoder is not causal.
    """

    dims: tuple[int, ...] = (4, 8, 16, 32)
    depths: tuple[int, ...] = (3, 3, 9, 3)
    kernel_size: int = 7
    stem_kernel: int = 7
    stem_mel_stride: int = 4
    down_kernel: int = 3
    down_time_pad: int = 3
    head_kernel: int = 7
    n_kits: int = 6
    gain_hidden: int = 8
    causal: bool = False
    layer_scale_init: float = 1e-6


@dataclass
class SynthConfig:
    """TCN one-shot synthesizer with FiLM conditioning and an exponential envelope."""

    hidden: int = 48
    layers: int = 12
    kernel_size: int = 15
    dilation_base: int = 2
    duration: float = 1.0
    decay_scale: float = 20.0
    out_scale: float = 0.95


@dataclass
class IDMConfig:
    """Full model configuration; ``classes`` lists project class names in the model's own order."""

    classes: tuple[str, ...] = CLASSES
    frontend: FrontendConfig = field(default_factory=FrontendConfig)
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    synth: SynthConfig = field(default_factory=SynthConfig)
    name: str = "idm"
    #: how onsets are picked from this model's probabilities (offline and in the runtime)
    peaks: PeakPicking = field(default_factory=PeakPicking)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @property
    def embedding_size(self) -> int:
        """Size of the FiLM conditioning: one-hot class plus kit embedding."""
        return self.n_classes + self.encoder.n_kits

    def __post_init__(self) -> None:
        unknown = [c for c in self.classes if c not in CLASSES]
        if unknown:
            raise ConfigError(f"unknown class names in model config: {', '.join(unknown)}")
        if sorted(self.classes) != sorted(CLASSES):
            raise ConfigError(f"model classes must be a permutation of {', '.join(CLASSES)}")
        self.classes = tuple(self.classes)
        self.encoder.dims = tuple(self.encoder.dims)
        self.encoder.depths = tuple(self.encoder.depths)
        if len(self.encoder.dims) != len(self.encoder.depths):
            raise ConfigError("encoder.dims and encoder.depths must have the same length")
        bad = [c for c in self.peaks.class_delta if c not in CLASSES]
        if bad:
            raise ConfigError(f"peaks.class_delta: unknown class names {', '.join(bad)}")

    def to_dict(self) -> dict[str, Any]:
        """Plain dict (JSON/YAML-safe) of the whole configuration."""
        d = asdict(self)
        d["classes"] = list(self.classes)
        d["encoder"]["dims"] = list(self.encoder.dims)
        d["encoder"]["depths"] = list(self.encoder.depths)
        if isinstance(self.peaks.delta, tuple | list):  # per-class deltas (tuned): a list, like the others
            d["peaks"]["delta"] = [float(x) for x in self.peaks.delta]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> IDMConfig:
        """Inverse of :meth:`to_dict`; an unknown key raises :class:`ConfigError` naming it."""
        d = dict(d)
        subs: dict[str, Any] = {
            "frontend": FrontendConfig,
            "encoder": EncoderConfig,
            "synth": SynthConfig,
            "peaks": PeakPicking,
        }
        kwargs: dict[str, Any] = {}
        top = {f.name for f in fields(cls)}
        for key, value in d.items():
            if key not in top:
                raise ConfigError(f"unknown model config key {key!r}")
            if key in subs:
                names = {f.name for f in fields(subs[key])}
                for k in value:
                    if k not in names:
                        raise ConfigError(f"unknown model config key '{key}.{k}'")
                sub = dict(value)
                for tk in ("dims", "depths"):
                    if tk in sub:
                        sub[tk] = tuple(sub[tk])
                if key == "peaks" and isinstance(sub.get("delta"), list):
                    sub["delta"] = tuple(sub["delta"])
                kwargs[key] = subs[key](**sub)
            elif key == "classes":
                kwargs[key] = tuple(value)
            else:
                kwargs[key] = value
        return cls(**kwargs)

    @classmethod
    def official(cls) -> IDMConfig:
        """The published IDM architecture, classes in the official (alphabetical code) order."""
        return cls(
            classes=(
                "crash",
                "ride",
                "hihat_closed",
                "hihat_open",
                "kick",
                "snare",
                "tom_floor",
                "tom_high",
                "tom_mid",
            ),
            name="idm-official",
        )

    @classmethod
    def tiny(cls) -> IDMConfig:
        """A very small random model for tests and CI: same structure, few channels."""
        return cls(
            encoder=EncoderConfig(dims=(2, 4, 4, 8), depths=(1, 1, 1, 1), n_kits=3, gain_hidden=4),
            synth=SynthConfig(hidden=8, layers=4, duration=0.25),
            name="idm-tiny",
        )
