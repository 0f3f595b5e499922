"""The bundle manifest schema (``idm-bundle`` v1): typed dataclasses with ranges, one validator at the door.

Every field a host or this runtime reads is declared here with its type and its legal range; cross-field
rules (consistent latency, class order, every file hashed) follow. :func:`parse_manifest` turns a decoded
``manifest.json`` into a :class:`Manifest` or raises :class:`~idm.errors.BundleError` with one line naming the
field, e.g. ``manifest.json: audio.sample_rate is 0, must be within 8000..384000``. The runtime loader
(:func:`idm.runtime.engine.bundle.load_bundle`) and ``idm-export --check`` both go through it, so they always agree.

Unknown keys are ignored (a newer exporter may add informative ones); a missing required key, a wrong type
(``true`` is not a number, ``1.5`` is not an integer), a value out of range, a non-finite number or a file
name that is not a plain name inside the bundle folder is an error. Torch-free.
"""

# ruff: noqa: RUF009 -- spec() returns dataclasses.field(...) with the field's Rule in its metadata
from __future__ import annotations

import math
import re
import types
import typing
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from typing import Any, Union

from idm.classes import CLASSES, GROUPS
from idm.errors import BundleError

__all__ = [
    "MAX_MANIFEST_BYTES",
    "SCHEMA",
    "SCHEMA_VERSION",
    "ClassEntry",
    "Manifest",
    "Rule",
    "parse_manifest",
    "plain_file_name",
]

SCHEMA = "idm-bundle"
SCHEMA_VERSION = 1
#: A manifest larger than this is refused before it is parsed.
MAX_MANIFEST_BYTES = 16 * 2**20
#: Most elements of one encoder state tensor (the official model's largest is a few thousand).
MAX_STATE_ELEMENTS = 2**24
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_STR = 4096
_MAX_ITEMS = 4096
_MAX_DEPTH = 64


@dataclass(frozen=True)
class Rule:
    """Legal values of one field: a closed range (numbers), allowed values, a regex, a length range."""

    lo: float | None = None
    hi: float | None = None
    choices: tuple[Any, ...] | None = None
    pattern: re.Pattern[str] | None = None
    min_len: int = 0
    max_len: int = _MAX_ITEMS
    file: bool = False  #: a file name of the bundle (a plain name, no folder part)


def spec(rule: Rule | None = None, default: Any = MISSING, default_factory: Any = MISSING) -> Any:
    """A dataclass field carrying its :class:`Rule` in the metadata."""
    meta = {"rule": rule or Rule()}
    if default_factory is not MISSING:
        return field(default_factory=default_factory, metadata=meta)
    return field(default=default, metadata=meta)


def plain_file_name(name: str) -> bool:
    """True for a bare file name (``mel_fb.npy``): no folder part, not ``.``/``..``, no control characters."""
    return (
        0 < len(name) <= 255
        and name not in (".", "..")
        and "/" not in name
        and "\\" not in name
        and not any(ord(c) < 32 for c in name)
        and ":" not in name
    )


FILE = Rule(file=True)
NAME = Rule(min_len=1, max_len=256)
TEXT = Rule(max_len=_MAX_STR)
FRAMES = Rule(0, 4096)


@dataclass(frozen=True, kw_only=True)
class Exporter:
    name: str = spec(NAME)
    version: str = spec(NAME)


@dataclass(frozen=True, kw_only=True)
class Source:
    sha256: str = spec(Rule(pattern=_HEX64))
    checkpoint: str = spec(TEXT, "")
    model_name: str = spec(TEXT, "")
    model_class_order: list[str] = spec(Rule(max_len=64), default_factory=list)
    config: dict[str, Any] = spec(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Audio:
    sample_rate: int = spec(Rule(8000, 384000))
    channels: int = spec(Rule(choices=(1,)))


@dataclass(frozen=True, kw_only=True)
class Frontend:
    n_fft: int = spec(Rule(16, 16384))
    hop: int = spec(Rule(1, 16384))
    n_mels: int = spec(Rule(1, 1024))
    log_eps: float = spec(Rule(1e-30, 1.0))
    mel_fb_file: str = spec(FILE)
    frame_rate: float = spec(Rule(1e-3, 384000.0))
    type: str = spec(Rule(choices=("log-mel",)), "log-mel")
    win_length: int | None = spec(Rule(1, 16384), None)
    window: str = spec(Rule(choices=("hann-periodic",)), "hann-periodic")
    center: bool = spec(Rule(choices=(True,)), True)
    start_pad: str = spec(TEXT, "reflect")
    end_pad: str = spec(TEXT, "")
    power: float = spec(Rule(choices=(2, 2.0)), 2.0)
    f_min: float = spec(Rule(0.0, 192000.0), 0.0)
    f_max: float | None = spec(Rule(0.0, 192000.0), None)
    mel_scale: str = spec(TEXT, "htk")
    mel_norm: str | None = spec(TEXT, None)
    log: str = spec(Rule(choices=("natural",)), "natural")
    mel_fb_shape: list[int] | None = spec(Rule(1, 16384, min_len=2, max_len=2), None)


@dataclass(frozen=True, kw_only=True)
class ClassEntry:
    name: str = spec(Rule(choices=CLASSES))
    gm_note: int = spec(Rule(0, 127))
    group: str | None = spec(Rule(choices=GROUPS), None)


@dataclass(frozen=True, kw_only=True)
class Streaming:
    lookahead_frames: int = spec(FRAMES)
    extra_frames: int = spec(FRAMES)
    latency_samples: int = spec(Rule(0, 2**31))
    end_frame_unknown: int = spec(Rule(2**20, 2**62))
    flush_frames: int = spec(Rule(0, 8192))
    model_lookahead_frames: int | None = spec(FRAMES, None)
    output_frame: str = spec(TEXT, "")
    pooling: str = spec(TEXT, "")


@dataclass(frozen=True, kw_only=True)
class Tensor:
    name: str = spec(NAME)
    shape: list[int | str] = spec(Rule(0, 2**31, max_len=8))
    dtype: str = spec(Rule(choices=("float32", "float16", "int64")))


@dataclass(frozen=True, kw_only=True)
class State:
    name: str = spec(NAME)
    output: str = spec(NAME)
    shape: list[int] = spec(Rule(1, 2**24, min_len=1, max_len=8))
    dtype: str = spec(Rule(choices=("float32", "int64")))
    init: float = spec(Rule(-1e30, 1e30))


@dataclass(frozen=True, kw_only=True)
class EncoderGraph:
    file: str = spec(FILE)
    inputs: list[Tensor] = spec(Rule(min_len=1, max_len=64))
    outputs: list[Tensor] = spec(Rule(min_len=1, max_len=64))
    state: list[State] = spec(Rule(max_len=1024))


@dataclass(frozen=True, kw_only=True)
class SynthGraph:
    file: str = spec(FILE)
    inputs: list[Tensor] = spec(Rule(min_len=1, max_len=64))
    outputs: list[Tensor] = spec(Rule(min_len=1, max_len=64))
    noise_file: str = spec(FILE)
    n_samples: int = spec(Rule(1, 10 * 384000))


@dataclass(frozen=True, kw_only=True)
class Graphs:
    encoder: EncoderGraph = spec()
    synth: SynthGraph = spec()


@dataclass(frozen=True, kw_only=True)
class PeakPicking:
    pre_max: int = spec(Rule(0, 1000))
    post_max: int = spec(Rule(1, 1000))
    pre_avg: int = spec(Rule(0, 1000))
    post_avg: int = spec(Rule(1, 1000))
    delta: float | list[float] = spec(Rule(0.0, 1.0, max_len=64))
    wait: int = spec(Rule(0, 100000))
    threshold: float = spec(Rule(0.0, 1.0), 0.0)
    class_delta: dict[str, float] = spec(Rule(0.0, 1.0), default_factory=dict)
    on: str = spec(Rule(choices=("onset_prob",)), "onset_prob")


#: The outputs a parity run compares; ``parity.tolerance`` must give each.
PARITY_KEYS = ("onset_prob", "velocity", "kit_embedding", "gains", "one_shots")


@dataclass(frozen=True, kw_only=True)
class Parity:
    file: str = spec(FILE)
    variant: str = spec(Rule(choices=("fp32", "fp16", "int8")))
    tolerance: dict[str, float] = spec(Rule(0.0, 1e6))


@dataclass(frozen=True, kw_only=True)
class Manifest:
    """A validated ``manifest.json`` (see ``docs/bundle.md``)."""

    schema: str = spec(Rule(choices=(SCHEMA,)))
    schema_version: int = spec(Rule(choices=(SCHEMA_VERSION,)))
    exporter: Exporter = spec()
    source: Source = spec()
    audio: Audio = spec()
    frontend: Frontend = spec()
    classes: list[ClassEntry] = spec(Rule(min_len=len(CLASSES), max_len=len(CLASSES)))
    streaming: Streaming = spec()
    precision: str = spec(Rule(choices=("fp32", "fp16")))
    opset: int = spec(Rule(7, 30))
    graphs: Graphs = spec()
    files: dict[str, str] = spec(Rule(pattern=_HEX64, min_len=1, max_len=256))
    peak_picking: PeakPicking = spec()
    parity: Parity = spec()
    quantize: str | None = spec(Rule(choices=("int8",)), None)

    def used_files(self) -> dict[str, str]:
        """Every file the runtime or ``--check`` opens, by the manifest field that names it."""
        return {
            "graphs.encoder.file": self.graphs.encoder.file,
            "graphs.synth.file": self.graphs.synth.file,
            "frontend.mel_fb_file": self.frontend.mel_fb_file,
            "graphs.synth.noise_file": self.graphs.synth.noise_file,
            "parity.file": self.parity.file,
        }


# ---- the generic validator ------------------------------------------------------------------------------


def _fail(where: str, what: str) -> BundleError:
    return BundleError(f"manifest.json: {where} {what}")


def _show(v: Any) -> str:
    text = repr(v)
    return text if len(text) <= 40 else text[:37] + "..."


def _kind(v: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(v), "a number" if isinstance(v, int | float) else type(v).__name__
    )


def _check_range(v: float, rule: Rule, where: str) -> None:
    if not math.isfinite(v):
        raise _fail(where, f"is {_show(v)}, must be a finite number")
    lo = -math.inf if rule.lo is None else rule.lo
    hi = math.inf if rule.hi is None else rule.hi
    if not lo <= v <= hi:
        raise _fail(where, f"is {_show(v)}, must be within {rule.lo:g}..{rule.hi:g}")


def _parse(v: Any, typ: Any, rule: Rule, where: str, depth: int = 0) -> Any:
    if depth > _MAX_DEPTH:
        raise _fail(where, "is nested too deeply")
    origin = typing.get_origin(typ)
    if origin in (Union, types.UnionType):
        options = typing.get_args(typ)
        if v is None and type(None) in options:
            return None
        errors = []
        for opt in options:
            if opt is type(None):
                continue
            try:
                return _parse(v, opt, rule, where, depth + 1)
            except BundleError as e:
                errors.append(e)
        for opt, err in zip([o for o in options if o is not type(None)], errors, strict=True):
            if _same_kind(v, opt):
                raise err  # the option of the value's own kind says best what is wrong with it
        raise errors[0] if len(errors) == 1 else _fail(where, f"is {_kind(v)} ({_show(v)}), not a valid value")
    if typ is Any:
        return v
    if rule.choices is not None and typ is not list and origin is not list and origin is not dict:
        ok = any(v == c and type(v) is type(c) for c in rule.choices) or (
            typ is float and isinstance(v, int | float) and not isinstance(v, bool) and v in rule.choices
        )
        if not ok:
            allowed = ", ".join(_show(c) for c in rule.choices)
            raise _fail(where, f"is {_show(v)}, must be {'one of ' if len(rule.choices) > 1 else ''}{allowed}")
        return v
    if typ is bool:
        if not isinstance(v, bool):
            raise _fail(where, f"is {_kind(v)}, must be true or false")
        return v
    if typ is int:
        if isinstance(v, bool) or not isinstance(v, int):
            raise _fail(where, f"is {_kind(v)} ({_show(v)}), must be an integer")
        _check_range(v, rule, where)
        return v
    if typ is float:
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise _fail(where, f"is {_kind(v)} ({_show(v)}), must be a number")
        _check_range(float(v), rule, where)
        return float(v)
    if typ is str:
        if not isinstance(v, str):
            raise _fail(where, f"is {_kind(v)}, must be a string")
        if rule.file:
            if not plain_file_name(v):
                raise _fail(where, f"is {_show(v)}: a bundle file must be a plain name inside the bundle folder")
        elif not rule.min_len <= len(v) <= min(rule.max_len, _MAX_STR):
            raise _fail(where, f"has {len(v)} characters, must have {rule.min_len}..{min(rule.max_len, _MAX_STR)}")
        if rule.pattern is not None and not rule.pattern.fullmatch(v):
            raise _fail(where, f"is {_show(v)}, not a lowercase hex sha256")
        return v
    if origin is list:
        (item,) = typing.get_args(typ)
        if not isinstance(v, list):
            raise _fail(where, f"is {_kind(v)}, must be a list")
        if not rule.min_len <= len(v) <= rule.max_len:
            raise _fail(where, f"has {len(v)} entries, must have {rule.min_len}..{rule.max_len}")
        inner = Rule(rule.lo, rule.hi, rule.choices, rule.pattern, file=rule.file) if not is_dataclass(item) else Rule()
        return [_parse(x, item, inner, f"{where}[{i}]", depth + 1) for i, x in enumerate(v)]
    if origin is dict:
        _, item = typing.get_args(typ)
        if not isinstance(v, dict):
            raise _fail(where, f"is {_kind(v)}, must be an object")
        if not rule.min_len <= len(v) <= rule.max_len:
            raise _fail(where, f"has {len(v)} entries, must have {rule.min_len}..{rule.max_len}")
        if item is Any:
            _check_depth(v, where, depth)
            return dict(v)
        inner = Rule(rule.lo, rule.hi, rule.choices, rule.pattern)
        return {k: _parse(x, item, inner, f"{where}[{k!r}]", depth + 1) for k, x in v.items()}
    if isinstance(typ, type) and is_dataclass(typ):
        return _parse_object(v, typ, where, depth + 1)
    raise AssertionError(f"schema type {typ!r} is not handled")  # an error in this module, not in the input


def _same_kind(v: Any, typ: Any) -> bool:
    """Whether ``v`` is of the JSON kind that schema type ``typ`` takes (a list for ``list[...]``, ...)."""
    origin = typing.get_origin(typ) or typ
    if isinstance(v, bool):
        return origin is bool
    if isinstance(v, int | float):
        return origin in (int, float)
    if isinstance(v, dict):
        return origin is dict or is_dataclass(origin)
    return isinstance(origin, type) and isinstance(v, origin)


def _check_depth(v: Any, where: str, depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise _fail(where, "is nested too deeply")
    if isinstance(v, dict):
        for x in v.values():
            _check_depth(x, where, depth + 1)
    elif isinstance(v, list):
        for x in v:
            _check_depth(x, where, depth + 1)


_HINTS: dict[type, dict[str, Any]] = {}


def _parse_object(v: Any, cls: type, where: str, depth: int) -> Any:
    if not isinstance(v, dict):
        raise _fail(where or "top level", f"is {_kind(v)}, must be an object")
    hints = _HINTS.get(cls)
    if hints is None:
        hints = _HINTS.setdefault(cls, typing.get_type_hints(cls))
    values: dict[str, Any] = {}
    prefix = f"{where}." if where else ""
    for f in fields(cls):
        key = prefix + f.name
        if f.name not in v:
            if f.default is MISSING and f.default_factory is MISSING:
                raise BundleError(f"manifest.json: missing key '{key}'")
            continue
        values[f.name] = _parse(v[f.name], hints[f.name], f.metadata.get("rule", Rule()), key, depth)
    return cls(**values)


def parse_manifest(m: Any) -> Manifest:
    """Validate a decoded ``manifest.json`` against the schema and the cross-field rules.

    Raises
    ------
    BundleError
        One line naming the first wrong field and what is wrong with it.
    """
    if not isinstance(m, dict):
        raise BundleError("manifest.json: top level is not an object")
    if m.get("schema") != SCHEMA:
        raise BundleError(f"manifest.json: 'schema' is {_show(m.get('schema'))}, expected {SCHEMA!r}")
    if m.get("schema_version") != SCHEMA_VERSION or isinstance(m.get("schema_version"), bool):
        raise BundleError(
            f"manifest.json: schema_version {_show(m.get('schema_version'))} is not supported (this runtime reads "
            f"{SCHEMA_VERSION})"
        )
    man: Manifest = _parse_object(m, Manifest, "", 0)
    _cross_checks(man)
    return man


def _cross_checks(m: Manifest) -> None:
    fe, st, pp = m.frontend, m.streaming, m.peak_picking
    if fe.hop > fe.n_fft:
        raise _fail("frontend.hop", f"is {fe.hop}, larger than frontend.n_fft {fe.n_fft}")
    if fe.n_fft % 2:
        raise _fail("frontend.n_fft", f"is {fe.n_fft}, must be even")
    if abs(fe.frame_rate - m.audio.sample_rate / fe.hop) > 1e-6 * fe.frame_rate:
        raise _fail("frontend.frame_rate", f"is {fe.frame_rate:g}, must be audio.sample_rate / frontend.hop")
    if fe.mel_fb_shape is not None and fe.mel_fb_shape != [fe.n_fft // 2 + 1, fe.n_mels]:
        raise _fail("frontend.mel_fb_shape", f"is {fe.mel_fb_shape}, must be [n_fft // 2 + 1, n_mels]")
    names = [c.name for c in m.classes]
    if names != list(CLASSES):
        raise _fail("classes", f"are {', '.join(names)}; expected {', '.join(CLASSES)} in that order")
    want = st.lookahead_frames * fe.hop + fe.n_fft // 2
    if st.latency_samples != want:
        rule = f"must be lookahead_frames * hop + n_fft // 2 = {want}"
        raise _fail("streaming.latency_samples", f"is {st.latency_samples}, {rule}")
    if st.flush_frames != st.lookahead_frames + st.extra_frames:
        raise _fail("streaming.flush_frames", "must be lookahead_frames + extra_frames")
    for i, s in enumerate(m.graphs.encoder.state):
        if math.prod(s.shape) > MAX_STATE_ELEMENTS:
            raise _fail(f"graphs.encoder.state[{i}].shape", f"{s.shape} has more than {MAX_STATE_ELEMENTS} elements")
    kit = m.graphs.synth.inputs[0]
    if kit.name != "kit_embedding" or len(kit.shape) != 2 or not isinstance(kit.shape[-1], int) or kit.shape[-1] < 1:
        raise _fail("graphs.synth.inputs[0]", "must be kit_embedding of shape [1, n_kits]")
    if kit.shape[-1] > 1024:
        raise _fail("graphs.synth.inputs[0].shape", f"has {kit.shape[-1]} kits, at most 1024")
    if isinstance(pp.delta, list) and len(pp.delta) != len(CLASSES):
        raise _fail("peak_picking.delta", f"has {len(pp.delta)} values for {len(CLASSES)} classes")
    for k in pp.class_delta:
        if k not in CLASSES:
            raise _fail("peak_picking.class_delta", f"names an unknown class {_show(k)}")
    missing = [k for k in PARITY_KEYS if k not in m.parity.tolerance]
    if missing:
        raise _fail("parity.tolerance", f"lacks {', '.join(missing)}")
    for name in m.files:
        if not plain_file_name(name) or name == "manifest.json":
            raise _fail("files", f"names {_show(name)}: a bundle file must be a plain name inside the bundle folder")
    for where, name in m.used_files().items():
        if name not in m.files:
            raise _fail(where, f"{_show(name)} is not hashed in 'files'")
