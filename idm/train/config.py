"""Training configuration: model, data, training and peak-picking sections, loaded from YAML with strict keys."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from idm.classes import CLASSES
from idm.errors import ConfigError
from idm.model import IDMConfig
from idm.peaks import PeakPicking

__all__ = ["PeakPickingConfig", "TrainConfig", "TrainingConfig", "apply_override", "data_config", "load_config"]

SECTIONS = ("model", "data", "training", "peak_picking")


def lr_factor(decay: tuple[float, ...] | list[float], step: int) -> float:
    """The factor on the base learning rate at step ``step`` of a ``[start, end, final]`` half-cosine decay."""
    if not decay:
        return 1.0
    start, end, final = decay
    t = min(max((step - start) / (end - start), 0.0), 1.0)
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * t))


@dataclass
class TrainingConfig:
    """Optimisation, schedule and augmentation; defaults are the paper's recipe."""

    lr: float = 5e-3  #: Adam learning rate
    #: learning-rate decay ``[start, end, final]``: ``lr`` until step ``start``, then a half cosine down to
    #: ``final * lr`` at step ``end``, held after it (empty: constant ``lr``, the paper's recipe). It may be added
    #: or changed on ``--resume`` where it leaves the rate of every step already taken unchanged.
    lr_decay: tuple[float, ...] = field(default=(), metadata={"item": 0.0})
    batch_size: int = 7  #: clips per optimizer step and device
    steps: int = 400_000  #: total optimizer steps
    precision: str = "bf16-mixed"  #: Lightning precision: 32-true, bf16-mixed, 16-mixed
    seed: int = 0  #: seeds the model init, the data order and the synthesizer noise
    grad_clip: float = 1.0  #: gradient norm clip
    stft_weight: float = 1.0  #: weight of the multi-resolution STFT loss
    onset_weight: float = 10.0  #: weight of the onset BCE
    #: BCE weight of the onset frames (positives), per class in project order, or one value for all; 1.0 is the
    #: paper's plain BCE. Larger values for rare classes (toms, crash, open hat) keep them from being ignored.
    onset_pos_weight: tuple[float, ...] = (1.0,)
    kit_weight: float = 1.0  #: weight of the kit cross-entropy
    fft_sizes: tuple[int, ...] = (2048, 1024, 512, 256)  #: STFT loss resolutions (hop = fft / 4)
    gain_prob: float = 0.8  #: probability of a random gain on a training mixture
    gain_min: float = 0.3  #: random gain range
    gain_max: float = 1.0
    val_every: int = 2000  #: validation every this many steps
    val_examples: int = 64  #: fixed validation clips (rendered once per validation, same every time)
    #: kits of the validation set: names or paths (empty: the run's training kits), or ``[pooled]``: each clip
    #: with a kit drawn class by class from the training kits and pools (``idm.data.pools.pooled_kits``)
    val_kits: tuple[str, ...] = ()
    #: GMD split of the validation set: ``train`` keeps the evaluation split (``validation``) out of checkpoint
    #: selection and threshold tuning
    val_split: str = "train"
    ckpt_every: int = 500  #: write last.ckpt and model.ckpt every this many steps
    log_every: int = 25  #: log training losses every this many steps
    audio_examples: int = 2  #: clips written as WAV (mixture, resynthesis) at each validation
    workers: int = 4  #: data loader worker processes per device
    compile_synth: bool = False  #: torch.compile the synthesizer (GPU: about 25 % faster steps, a minute to compile)
    #: where training audio is rendered: "device" (plans drawn by the loader workers, audio made on the training
    #: device by idm.data.batch_render) or "workers" (numpy renders in the loader workers, the original way)
    render: str = "device"
    fused_synth: bool = False  #: the synthesizer's Triton kernels (CUDA only; idm.model.fused_tcn)
    compile_encoder: bool = False  #: torch.compile the encoder and the transcription head
    fused_norm: bool = False  #: the encoder's channel LayerNorms as one Triton kernel (CUDA only; idm.model.fused_norm)

    def lr_at(self, step: int) -> float:
        """The learning rate of optimizer step ``step`` (0-based) under :attr:`lr_decay`."""
        return self.lr * lr_factor(self.lr_decay, step)

    def __post_init__(self) -> None:
        checks = [
            (self.lr > 0, "training.lr must be positive"),
            (not self.lr_decay or (len(self.lr_decay) == 3 and 0 <= self.lr_decay[0] < self.lr_decay[1]
                                   and 0 < self.lr_decay[2] <= 1),
             "training.lr_decay must be [] or [start, end, final] with 0 <= start < end and 0 < final <= 1"),
            (self.batch_size >= 1, "training.batch_size must be at least 1"),
            (self.steps >= 1, "training.steps must be at least 1"),
            (self.precision in ("32-true", "32", "bf16-mixed", "16-mixed"), "training.precision must be one of "
             "32-true, bf16-mixed, 16-mixed"),
            (self.grad_clip > 0, "training.grad_clip must be positive"),
            (0.0 <= self.gain_prob <= 1.0, "training.gain_prob must be in [0, 1]"),
            (0.0 < self.gain_min <= self.gain_max, "training.gain_min/gain_max must satisfy 0 < min <= max"),
            (self.val_every >= 1 and self.ckpt_every >= 1 and self.log_every >= 1, "training.val_every, ckpt_every "
             "and log_every must be at least 1"),
            (self.val_examples >= 0 and self.audio_examples >= 0, "training.val_examples and audio_examples must "
             "not be negative"),
            (self.workers >= 0, "training.workers must not be negative"),
            (self.render in ("device", "workers"), "training.render must be device or workers"),
            (len(self.onset_pos_weight) in (1, len(CLASSES)) and all(w > 0 for w in self.onset_pos_weight),
             f"training.onset_pos_weight must be one positive number or {len(CLASSES)} (one per class: "
             f"{', '.join(CLASSES)})"),
            (len(self.fft_sizes) > 0 and all(n >= 16 for n in self.fft_sizes), "training.fft_sizes must list FFT "
             "sizes of at least 16"),
        ]  # fmt: skip
        for ok, msg in checks:
            if not ok:
                raise ConfigError(msg)


def _default_grid() -> tuple[float, ...]:
    return tuple(round(0.02 * i, 2) for i in range(1, 41))


@dataclass
class PeakPickingConfig:
    """The picker stored with the model (frames; see :class:`idm.peaks.PeakPicking`).

    ``post_max = post_avg = 1`` makes it causal (no look-ahead). With ``tune``, one ``delta`` per class
    is chosen from ``delta_grid`` at each validation to maximise that class's onset F-measure among the deltas
    that send at most ``max_notes_per_hit`` notes per true hit on the validation clips (a precision floor; the
    largest-delta-that-meets-it, else the delta with the fewest notes, when none of the best does).
    """

    pre_max: int = 8
    post_max: int = 8
    pre_avg: int = 17
    post_avg: int = 17
    delta: float = 0.2
    wait: int = 10
    threshold: float = 0.0
    tune: bool = False
    delta_grid: tuple[float, ...] = field(default_factory=_default_grid)
    max_notes_per_hit: float = 0.0  #: precision floor of the tuning (0: none; 1.3 = at most 1.3 notes per hit)

    def __post_init__(self) -> None:
        if min(self.pre_max, self.pre_avg, self.wait) < 0 or min(self.post_max, self.post_avg) < 1:
            raise ConfigError("peak_picking: pre_max, pre_avg, wait must be >= 0 and post_max, post_avg >= 1")
        if not self.delta_grid:
            raise ConfigError("peak_picking.delta_grid must not be empty")
        if self.max_notes_per_hit < 0 or (0 < self.max_notes_per_hit < 1):
            raise ConfigError("peak_picking.max_notes_per_hit must be 0 (off) or at least 1")

    def picker(self, delta: float | tuple[float, ...] | None = None) -> PeakPicking:
        """The :class:`PeakPicking` parameters (optionally with another delta, scalar or per class)."""
        return PeakPicking(
            pre_max=self.pre_max,
            post_max=self.post_max,
            pre_avg=self.pre_avg,
            post_avg=self.post_avg,
            delta=self.delta if delta is None else delta,
            wait=self.wait,
            threshold=self.threshold,
        )

    @property
    def causal(self) -> bool:
        return self.post_max == 1 and self.post_avg == 1


@dataclass
class TrainConfig:
    """A whole training run: ``model`` (:class:`IDMConfig`), ``data`` (``TrainDataConfig`` fields of the training
    set, without ``gmd_root``, which comes from the command line), ``training`` and ``peak_picking``."""

    model: IDMConfig = field(default_factory=IDMConfig)
    data: dict[str, Any] = field(default_factory=dict)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    peak_picking: PeakPickingConfig = field(default_factory=PeakPickingConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-safe dict; :func:`from_dict` inverts it."""
        tr = asdict(self.training)
        pp = asdict(self.peak_picking)
        return {
            "model": self.model.to_dict(),
            "data": _plain(self.data),
            "training": _plain(tr),
            "peak_picking": _plain(pp),
        }

    @classmethod
    def from_dict(cls, raw: Any, source: str = "config") -> TrainConfig:
        """Build from a mapping; unknown or mistyped keys raise :class:`ConfigError` naming the dotted key."""
        if not isinstance(raw, dict):
            raise ConfigError(f"{source}: top level must be a mapping with sections {', '.join(SECTIONS)}")
        for key in raw:
            if key not in SECTIONS:
                raise ConfigError(f"{source}: unknown config key '{key}' (sections: {', '.join(SECTIONS)})")
        for key in SECTIONS:
            if raw.get(key) is not None and not isinstance(raw[key], dict):
                raise ConfigError(f"{source}: config key '{key}' must be a mapping")
        if "peaks" in (raw.get("model") or {}):
            raise ConfigError(
                f"{source}: config key 'model.peaks' is not set here: the 'peak_picking' section is the run's "
                "picker (stored in model.ckpt as the model's peaks, tuned when peak_picking.tune)"
            )
        try:
            model = IDMConfig.from_dict(raw.get("model") or {})
        except (ConfigError, TypeError) as e:
            raise ConfigError(f"{source}: model: {e}") from None
        data = dict(raw.get("data") or {})
        kits = data_config(data, source, gmd_root="").kits  # checks the keys now, not when the run starts
        try:
            training = _build(TrainingConfig, raw.get("training") or {}, "training", source)
            picking = _build(PeakPickingConfig, raw.get("peak_picking") or {}, "peak_picking", source)
        except ConfigError as e:
            msg = str(e)
            raise ConfigError(msg if msg.startswith(source) else f"{source}: {msg}") from None
        if model.encoder.n_kits != len(kits):
            raise ConfigError(
                f"{source}: model.encoder.n_kits is {model.encoder.n_kits} but data.kits lists {len(kits)} "
                f"training kits; the kit classifier needs one output per training kit"
            )
        return cls(model=model, data=data, training=training, peak_picking=picking)

    def digest(self) -> str:
        """sha256 of the canonical JSON form (identifies the resolved configuration)."""
        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    return x


def _coerce(value: Any, default: Any, dotted: str, source: str, item: Any = "") -> Any:
    """Check ``value`` against the type of the field's default (``item``: of an empty tuple's items); ints are
    accepted for floats."""

    def bad(what: str) -> ConfigError:
        return ConfigError(f"{source}: config key '{dotted}' must be {what}, got {value!r}")

    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
        return value
    if isinstance(default, float):
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise bad("a number")
        return float(value)
    if isinstance(default, str):
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if isinstance(default, tuple):
        if not isinstance(value, list | tuple):
            raise bad("a list")
        sample = default[0] if default else item
        return tuple(_coerce(v, sample, f"{dotted}[{i}]", source) for i, v in enumerate(value))
    return value


def _build(cls: Any, raw: dict[str, Any], section: str, source: str) -> Any:
    defaults = cls()
    items = {f.name: f.metadata.get("item", "") for f in fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        if key not in items:
            raise ConfigError(f"{source}: unknown config key '{section}.{key}'")
        kwargs[key] = _coerce(value, getattr(defaults, key), f"{section}.{key}", source, items[key])
    return cls(**kwargs)


def data_config(raw: dict[str, Any], source: str = "config", **fixed: Any) -> Any:
    """``idm.data.dataset.TrainDataConfig`` from the ``data`` section plus ``fixed`` fields (``gmd_root``, ``split``).

    Keys are checked against the dataclass (``augment`` against ``RenderAugment``, or null for none);
    an unknown or mistyped key raises :class:`ConfigError` naming it.
    """
    from idm.data.dataset import TrainDataConfig
    from idm.data.render import RenderAugment

    defaults = TrainDataConfig(gmd_root="")
    names = {f.name for f in fields(TrainDataConfig)}
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key not in names:
            raise ConfigError(f"{source}: unknown config key 'data.{key}'")
        if key in ("gmd_root", "split"):
            raise ConfigError(
                f"{source}: config key 'data.{key}' is set by the command line (--data) and the run "
                "(train/validation split), not by the config file"
            )
        if key == "augment":
            if value is None:
                kwargs[key] = None
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: config key 'data.augment' must be a mapping or null")
            kwargs[key] = _build(RenderAugment, value, "data.augment", source)
            continue
        if key == "realism":
            if value is None:
                kwargs[key] = None
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: config key 'data.realism' must be a mapping or null")
            from idm.data.effects import RealismConfig

            kwargs[key] = _build(RealismConfig, value, "data.realism", source)
            continue
        default = getattr(defaults, key)
        if default is None:
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{source}: config key 'data.{key}' must be a string or null, got {value!r}")
            kwargs[key] = value
        else:
            kwargs[key] = _coerce(value, default, f"data.{key}", source)
    kwargs.update(fixed)
    return TrainDataConfig(**kwargs)


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Apply ``section.key=value`` (value parsed as YAML) to a raw config mapping, in place."""
    if "=" not in override:
        raise ConfigError(f"--override {override!r}: expected KEY=VALUE, e.g. training.lr=0.001")
    key, _, text = override.partition("=")
    parts = key.strip().split(".")
    if len(parts) < 2 or parts[0] not in SECTIONS or not all(parts):
        raise ConfigError(f"--override {override!r}: key must be SECTION.NAME with SECTION in {', '.join(SECTIONS)}")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(f"--override {override!r}: value is not valid YAML") from None
    node = raw
    for p in parts[:-1]:
        child = node.get(p)
        if child is None:
            child = node[p] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"--override {override!r}: '{p}' is not a section")
        node = child
    node[parts[-1]] = value


def shipped_configs() -> dict[str, Path]:
    """The configs shipped with the package (``live``, ``paper``, ``tiny``): name -> file."""
    from importlib.resources import files

    folder = files("idm.configs")
    return {p.name[:-5]: Path(str(p)) for p in folder.iterdir() if p.name.endswith(".yaml")}


def resolve_config(ref: str | Path) -> Path:
    """A config argument: an existing file, or the name of a shipped config (``idm train live``)."""
    path = Path(ref)
    if path.exists() or path.suffix:
        return path
    shipped = shipped_configs()
    if str(ref) in shipped:
        return shipped[str(ref)]
    raise ConfigError(f"{ref}: no such config file, nor a shipped config ({', '.join(sorted(shipped))})")


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> tuple[TrainConfig, str]:
    """Read a YAML training config (a file or a shipped name), apply ``--override`` strings; returns the config
    and the file's sha256."""
    path = resolve_config(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    data = path.read_bytes()
    try:
        raw = yaml.safe_load(data)
    except yaml.YAMLError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "syntax error"
        raise ConfigError(f"{path}: not valid YAML ({first})") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping with sections {', '.join(SECTIONS)}")
    for o in overrides:
        apply_override(raw, o)
    return TrainConfig.from_dict(raw, str(path)), hashlib.sha256(data).hexdigest()
