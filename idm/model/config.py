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


#: Legal values of every numeric config field: (type, low, high). A checkpoint's config is untrusted input:
#: these bounds keep a corrupt or hostile one from building a model of terabytes (generous for research).
_RANGES: dict[str, dict[str, tuple[type, float, float]]] = {
    "frontend": {"sample_rate": (int, 8000, 384000), "n_fft": (int, 16, 16384), "hop": (int, 1, 16384),
                 "n_mels": (int, 1, 1024), "f_min": (float, 0.0, 192000.0), "f_max": (float, 1.0, 192000.0),
                 "log_eps": (float, 1e-30, 1.0)},
    "encoder": {"dims": (int, 1, 4096), "depths": (int, 0, 100), "kernel_size": (int, 1, 63),
                "stem_kernel": (int, 1, 63), "stem_mel_stride": (int, 1, 64), "down_kernel": (int, 1, 63),
                "down_time_pad": (int, 0, 63), "head_kernel": (int, 1, 63), "n_kits": (int, 1, 4096),
                "gain_hidden": (int, 1, 4096), "causal": (bool, 0, 1), "layer_scale_init": (float, -1e6, 1e6)},
    "synth": {"hidden": (int, 1, 4096), "layers": (int, 1, 64), "kernel_size": (int, 1, 255),
              "dilation_base": (int, 1, 8), "duration": (float, 1e-3, 60.0), "decay_scale": (float, 0.0, 1e6),
              "out_scale": (float, -1e6, 1e6)},
    "peaks": {"pre_max": (int, 0, 1000), "post_max": (int, 1, 1000), "pre_avg": (int, 0, 1000),
              "post_avg": (int, 1, 1000), "wait": (int, 0, 100000), "threshold": (float, 0.0, 1.0),
              "delta": (float, 0.0, 1.0)},
}  # fmt: skip
#: Largest synthesizer receptive field, in samples (dilation_base ** (layers - 1) * (kernel_size - 1)).
_MAX_RECEPTIVE = 2**24
#: Most weights a config may describe (the official model has about 0.5 M).
_MAX_WEIGHTS = 2**27


def _check_value(where: str, v: Any, typ: type, lo: float, hi: float) -> None:
    import math

    if typ is bool:
        ok = isinstance(v, bool)
    elif typ is int:
        ok = isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi
    else:
        ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and lo <= v <= hi
    if not ok:
        kind = {bool: "true or false", int: "an integer", float: "a number"}[typ]
        within = f" within {lo:g}..{hi:g}" if typ is not bool else ""
        raise ConfigError(f"model config {where} is {v!r:.40}, must be {kind}{within}")


def _check_ranges(cfg: IDMConfig) -> None:
    """Raise :class:`ConfigError` naming the first config field of a wrong type or out of its range."""
    if not isinstance(cfg.name, str):
        raise ConfigError(f"model config name is {cfg.name!r:.40}, must be a string")
    for section, spec in _RANGES.items():
        obj = getattr(cfg, section)
        for key, (typ, lo, hi) in spec.items():
            v = getattr(obj, key)
            if v is None and key == "f_max":
                continue
            if isinstance(v, tuple | list) and key in ("dims", "depths", "delta"):
                if not 1 <= len(v) <= 16 and key != "delta":
                    raise ConfigError(f"model config {section}.{key} has {len(v)} entries, must have 1..16")
                for i, x in enumerate(v):
                    _check_value(f"{section}.{key}[{i}]", x, typ, lo, hi)
                continue
            _check_value(f"{section}.{key}", v, typ, lo, hi)
    for k, v in cfg.peaks.class_delta.items():
        _check_value(f"peaks.class_delta.{k}", v, float, 0.0, 1.0)
    fe, syn = cfg.frontend, cfg.synth
    if fe.hop > fe.n_fft:
        raise ConfigError(f"model config frontend.hop {fe.hop} is larger than frontend.n_fft {fe.n_fft}")
    if syn.dilation_base ** (syn.layers - 1) * (syn.kernel_size - 1) > _MAX_RECEPTIVE:
        raise ConfigError("model config synth: dilation_base ** (layers - 1) * (kernel_size - 1) is too large")
    enc = cfg.encoder
    weights = sum(n * (8 * d * d + enc.kernel_size**2 * d) for d, n in zip(enc.dims, enc.depths, strict=False))
    weights += syn.layers * syn.hidden * syn.hidden * (syn.kernel_size + 2)
    if weights > _MAX_WEIGHTS:
        raise ConfigError(f"model config: about {weights:.3g} weights, more than {_MAX_WEIGHTS:.3g} (corrupt?)")


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
        if not isinstance(self.classes, tuple | list) or not all(isinstance(c, str) for c in self.classes):
            raise ConfigError(f"model config classes is {self.classes!r:.40}, must be a list of class names")
        parts = {"frontend": FrontendConfig, "encoder": EncoderConfig, "synth": SynthConfig, "peaks": PeakPicking}
        for name, typ in parts.items():
            if not isinstance(getattr(self, name), typ):
                raise ConfigError(f"model config {name} must be a mapping, got {type(getattr(self, name)).__name__}")
        for key in ("dims", "depths"):
            if not isinstance(getattr(self.encoder, key), tuple | list):
                raise ConfigError(f"model config encoder.{key} is {getattr(self.encoder, key)!r:.40}, must be a list")
        if not isinstance(self.peaks.class_delta, dict):
            raise ConfigError("model config peaks.class_delta must be a mapping of class name to value")
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
        _check_ranges(self)

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
        if not isinstance(d, dict):
            raise ConfigError(f"model config must be a mapping, got {type(d).__name__}")
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
                if not isinstance(value, dict):
                    raise ConfigError(f"model config '{key}' must be a mapping, got {type(value).__name__}")
                names = {f.name for f in fields(subs[key])}
                for k in value:
                    if k not in names:
                        raise ConfigError(f"unknown model config key '{key}.{k}'")
                sub = dict(value)
                for tk in ("dims", "depths"):
                    if isinstance(sub.get(tk), list | tuple):
                        sub[tk] = tuple(sub[tk])
                if key == "peaks" and isinstance(sub.get("delta"), list):
                    sub["delta"] = tuple(sub["delta"])
                kwargs[key] = subs[key](**sub)
            elif key == "classes":
                kwargs[key] = tuple(value) if isinstance(value, list | tuple) else value
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
