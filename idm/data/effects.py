"""Recording-realism effects on batches of rendered drum audio (PyTorch, vectorised over the batch).

Mic bleed, synthetic rooms, mic colouring, bus compression, soft clipping and background noise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any, TypeVar

import torch
from torch.nn import functional as F

from idm.classes import CLASSES
from idm.data.kits import SAMPLE_RATE

__all__ = [
    "EFFECTS_ORDER",
    "ROOM_TYPES",
    "BleedParams",
    "ClipParams",
    "CompressParams",
    "MicParams",
    "NoiseParams",
    "RealismConfig",
    "RealismParams",
    "RoomParams",
    "RoomType",
    "add_noise",
    "apply_params",
    "apply_realism",
    "bleed",
    "bleed_response",
    "compress",
    "draw_realism",
    "fast_len",
    "mic",
    "mic_response",
    "noise_colour",
    "room",
    "soft_clip",
]

Range = tuple[float, float]

#: ln(1000): an amplitude ``exp(-T60_K * t / T60)`` falls by 60 dB in ``T60`` seconds.
T60_K = math.log(1000.0)
#: dB per neper: a one-pole with time constant tau moves ``DB_PER_NEPER / tau`` dB per second at first.
DB_PER_NEPER = 20.0 / math.log(10.0)
#: Crossovers (Hz) of the room's three decay bands (low / mid / high).
ROOM_CROSSOVERS = (500.0, 4000.0)
#: Fade-in (s) of the room's late tail after the pre-delay (the reflections thicken into a diffuse tail).
ROOM_RISE_S = 0.010
#: Early reflections per room.
ROOM_TAPS = 6
#: Zero padding (samples) after the signal for the frequency-domain filters (bleed, mic): their responses are
#: shorter than this (delays are at most tens of ms), so nothing wraps around into the kept part.
FILTER_PAD = 4096
#: Order of the bleed low-pass (6 dB/octave per unit).
BLEED_LP_ORDER = 1.0
#: Bleed kernels: length (samples) and lead (samples of room before the delayed, low-passed impulse for the
#: zero-phase low-pass's pre-ringing); delays up to ``BLEED_MAX_DELAY_S`` fit with their ringing.
BLEED_KERNEL = 2048
BLEED_LEAD = 256
BLEED_MAX_DELAY_S = 0.03
#: Compressor envelope frame (samples, 0.73 ms) and RMS detector window (s).
COMP_HOP = 32
COMP_RMS_S = 0.005
#: The effects, in the order they are applied; each has a probability ``<name>_prob`` in :class:`RealismConfig`.
EFFECTS_ORDER: tuple[str, ...] = ("bleed", "room", "mic", "compress", "clip", "noise")
#: Noise colours: spectral exponents of the power spectrum (white 0, pink 1, brown 2); shaped above this (Hz).
NOISE_FLOOR_HZ = 20.0


@dataclass(frozen=True)
class RoomType:
    """Ranges of one kind of room; each example draws its room type uniformly, then each value in its range.

    Parameters
    ----------
    name
        Label.
    rt60
        RT60 (s) of the mid band (500 Hz - 4 kHz), log-uniform.
    low_ratio, high_ratio
        RT60 of the band below 500 Hz and above 4 kHz relative to the mid band (air and wall absorption make high
        frequencies decay faster: ratio < 1), log-uniform.
    predelay_ms
        Delay of the whole reverb (early taps and tail) after the direct sound.
    early_ms
        Delays of the :data:`ROOM_TAPS` early reflections after the pre-delay.
    early_gain
        Absolute amplitude of each early tap (random sign) relative to the unit-energy late tail.
    wet_db
        Level of the (unit-energy) wet response added to the dry signal.
    """

    name: str
    rt60: Range
    low_ratio: Range
    high_ratio: Range
    predelay_ms: Range
    early_ms: Range
    early_gain: Range
    wet_db: Range


#: Default rooms: a damped booth, a live drum room, a concert hall, and a plate (bright, dense, no distinct
#: early reflections, shorter low-frequency decay). RT60s follow typical values of such spaces (booth 0.1-0.3 s,
#: live rooms 0.4-1 s, halls 1.2-2.5 s); wet levels stay below the dry sound as on close-miked kits.
ROOM_TYPES: tuple[RoomType, ...] = (
    RoomType("booth", (0.1, 0.3), (1.0, 1.3), (0.5, 0.8), (0.0, 2.0), (5.0, 15.0), (0.15, 0.4), (-20.0, -8.0)),
    RoomType("live", (0.4, 1.0), (1.0, 1.3), (0.4, 0.7), (2.0, 10.0), (5.0, 30.0), (0.1, 0.35), (-16.0, -4.0)),
    RoomType("hall", (1.2, 2.5), (1.0, 1.3), (0.3, 0.6), (10.0, 30.0), (10.0, 50.0), (0.05, 0.25), (-14.0, -3.0)),
    RoomType("plate", (0.8, 2.5), (0.6, 0.9), (0.7, 1.0), (0.0, 20.0), (5.0, 10.0), (0.0, 0.05), (-14.0, -4.0)),
)


@dataclass(frozen=True)
class RealismConfig:
    """Probabilities (per example) and ranges of the recording-realism effects; all off at probability 0.

    Ranges are drawn uniformly, log-uniformly for frequencies, times and ratios.

    Parameters
    ----------
    bleed_prob, bleed_db, bleed_delay_ms, bleed_lowpass_hz
        Close-mic bleed: every mic also picks up every other stem at ``bleed_db`` (-40 to -20 dB: close mics
        on a kit reject the other drums by roughly 20-40 dB), delayed by ``bleed_delay_ms`` (0.5-6 ms: 17 cm to
        2 m more path at 343 m/s, a kit's mic distances) and low-passed at ``bleed_lowpass_hz`` (2-10 kHz, first
        order: off-axis pick-up and distance lose the highs). Needs the stems.
    room_prob, room_types
        Synthetic room impulse response (see :class:`RoomType` and :data:`ROOM_TYPES`).
    mic_prob, mic_highpass_hz, mic_lowpass_hz, mic_slope, mic_presence_prob, mic_presence_db, mic_presence_hz,
    mic_presence_octaves
        Mic colouring: high-pass 20-150 Hz (low-cut switches, small-diaphragm and proximity differences), low-pass
        5-18 kHz (dynamic mics roll off from ~10 kHz, cheap ones and old recordings from ~5 kHz), Butterworth-like
        order 1-2 (6-12 dB/octave, gentle like mics); with ``mic_presence_prob``, a 0-6 dB presence bump centred
        at 2-6 kHz (typical of kick, snare and vocal mics), Gaussian on log frequency of standard deviation
        ``mic_presence_octaves / 2``.
    compress_prob, compress_threshold_db, compress_ratio, compress_attack_ms, compress_release_ms, compress_knee_db,
    compress_rms_prob
        Bus compressor: threshold -30 to -10 dBFS (one-shots are normalised to -31 to -22 dB RMS, so the
        mixes' short-term RMS sits near -30 to -15 dBFS and their peaks near -15 to 0 dBFS: from barely
        touching to heavy), ratio 2-8 (glue to heavy), attack 0.5-30 ms and release 30-400 ms (the
        usual drum-bus settings), soft knee 0-6 dB; RMS detector with ``compress_rms_prob``, else peak. The
        output's RMS is matched to the input (auto make-up gain).
    clip_prob, clip_drive_db
        Soft clipping ``tanh(g x / peak)``: drive ``g`` 0-12 dB above the example's peak (0 dB: the peak is
        rounded off by 2.4 dB; 12 dB: hard, audible distortion as in overdriven preamps or loudness-mastered
        records); RMS matched to the input.
    noise_prob, noise_snr_db, noise_colors
        Background noise (hiss, room tone, rumble) at 25-60 dB SNR relative to the mix's RMS (60 dB:
        a clean studio noise floor; 25 dB: a noisy rehearsal recording), colour drawn uniformly among the
        power-spectrum exponents ``noise_colors`` (0 white, 1 pink, 2 brown).
    """

    bleed_prob: float = 0.5
    bleed_db: Range = (-40.0, -20.0)
    bleed_delay_ms: Range = (0.5, 6.0)
    bleed_lowpass_hz: Range = (2000.0, 10000.0)
    room_prob: float = 0.3
    room_types: tuple[RoomType, ...] = ROOM_TYPES
    mic_prob: float = 0.5
    mic_highpass_hz: Range = (20.0, 150.0)
    mic_lowpass_hz: Range = (5000.0, 18000.0)
    mic_slope: Range = (1.0, 2.0)
    mic_presence_prob: float = 0.5
    mic_presence_db: Range = (0.0, 6.0)
    mic_presence_hz: Range = (2000.0, 6000.0)
    mic_presence_octaves: Range = (0.5, 1.5)
    compress_prob: float = 0.3
    compress_threshold_db: Range = (-30.0, -10.0)
    compress_ratio: Range = (2.0, 8.0)
    compress_attack_ms: Range = (0.5, 30.0)
    compress_release_ms: Range = (30.0, 400.0)
    compress_knee_db: Range = (0.0, 6.0)
    compress_rms_prob: float = 0.5
    clip_prob: float = 0.2
    clip_drive_db: Range = (0.0, 12.0)
    noise_prob: float = 0.3
    noise_snr_db: Range = (25.0, 60.0)
    noise_colors: tuple[float, ...] = (0.0, 1.0, 2.0)

    @classmethod
    def disabled(cls, **overrides: Any) -> RealismConfig:
        """All effects off (probabilities 0), then ``overrides`` (e.g. ``room_prob=1.0``)."""
        off: dict[str, Any] = {f"{e}_prob": 0.0 for e in EFFECTS_ORDER}
        return replace(cls(**off), **overrides)


# ----------------------------------------------------------------------------------------------- parameters


_P = TypeVar("_P")


def _map(obj: _P, fn: Callable[[torch.Tensor], torch.Tensor]) -> _P:
    """A copy of a parameter dataclass with ``fn`` applied to every tensor field."""
    vals = {f.name: getattr(obj, f.name) for f in fields(obj)}  # type: ignore[arg-type]
    return replace(obj, **{k: fn(v) if isinstance(v, torch.Tensor) else v for k, v in vals.items()})  # type: ignore[type-var]


@dataclass(frozen=True)
class BleedParams:
    """Per example ``[B]`` mask; per mic ``m`` (row) and stem ``s`` (column) ``[B, 9, 9]``: linear gain (diagonal
    0), delay (s) and low-pass cutoff (Hz, ``inf``: none)."""

    mask: torch.Tensor
    gain: torch.Tensor
    delay: torch.Tensor
    lowpass: torch.Tensor


@dataclass(frozen=True)
class RoomParams:
    """Per example: mask ``[B]``, RT60 (s) of the low/mid/high bands ``[B, 3]``, pre-delay (s) ``[B]``, early
    taps' delays (s, after the pre-delay) and signed gains ``[B, K]``, wet level (dB) ``[B]``, the tail's source
    noise ``[B, L]`` (its length is the impulse response's) and the room type index ``[B]``."""

    mask: torch.Tensor
    rt60: torch.Tensor
    predelay: torch.Tensor
    early_delay: torch.Tensor
    early_gain: torch.Tensor
    wet_db: torch.Tensor
    noise: torch.Tensor
    kind: torch.Tensor


@dataclass(frozen=True)
class MicParams:
    """Per example ``[B]``: mask, high-pass and low-pass cutoffs (Hz), slope (order), presence bump gain (dB),
    centre (Hz) and width (octaves)."""

    mask: torch.Tensor
    highpass: torch.Tensor
    lowpass: torch.Tensor
    slope: torch.Tensor
    presence_db: torch.Tensor
    presence_hz: torch.Tensor
    presence_octaves: torch.Tensor


@dataclass(frozen=True)
class CompressParams:
    """Per example ``[B]``: mask, threshold (dBFS), ratio, attack and release (s), knee (dB), RMS detector (bool)."""

    mask: torch.Tensor
    threshold_db: torch.Tensor
    ratio: torch.Tensor
    attack: torch.Tensor
    release: torch.Tensor
    knee_db: torch.Tensor
    rms: torch.Tensor


@dataclass(frozen=True)
class ClipParams:
    """Per example ``[B]``: mask and drive (dB above the example's peak)."""

    mask: torch.Tensor
    drive_db: torch.Tensor


@dataclass(frozen=True)
class NoiseParams:
    """Per example: mask ``[B]``, SNR (dB) ``[B]``, power-spectrum exponent ``[B]`` and white source ``[B, N]``."""

    mask: torch.Tensor
    snr_db: torch.Tensor
    exponent: torch.Tensor
    white: torch.Tensor


@dataclass(frozen=True)
class RealismParams:
    """Everything drawn for one batch; an effect is None when its probability is 0 (then nothing is drawn)."""

    bleed: BleedParams | None = None
    room: RoomParams | None = None
    mic: MicParams | None = None
    compress: CompressParams | None = None
    clip: ClipParams | None = None
    noise: NoiseParams | None = None

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> RealismParams:
        return RealismParams(**{f.name: None if (v := getattr(self, f.name)) is None else _map(v, fn)
                                for f in fields(self)})  # fmt: skip

    def select(self, idx: torch.Tensor | slice | int) -> RealismParams:
        """The parameters of some examples (``idx`` along the batch; an int keeps the batch dimension)."""
        sel = slice(idx, idx + 1) if isinstance(idx, int) else idx
        return self._map(lambda v: v[sel])

    def to(self, device: torch.device | str) -> RealismParams:
        """The parameters on another device."""
        return self._map(lambda v: v.to(device))


class _Draw:
    """Draws made on the generator's device, returned on ``device``."""

    def __init__(self, generator: torch.Generator, device: torch.device) -> None:
        self.g, self.device = generator, device

    def u(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.rand(shape, generator=self.g, device=self.g.device).to(self.device)

    def uniform(self, shape: tuple[int, ...], r: Range | torch.Tensor) -> torch.Tensor:
        """Uniform in ``r`` (a pair, or a tensor ``[..., 2]`` broadcasting with ``shape``)."""
        lo, hi = (r[..., 0], r[..., 1]) if isinstance(r, torch.Tensor) else r
        return lo + self.u(shape) * (hi - lo)

    def log_uniform(self, shape: tuple[int, ...], r: Range | torch.Tensor) -> torch.Tensor:
        lr = torch.as_tensor(r, dtype=torch.float32, device=self.device).log()
        return self.uniform(shape, lr).exp()

    def bernoulli(self, shape: tuple[int, ...], p: float) -> torch.Tensor:
        return self.u(shape) < p

    def normal(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.randn(shape, generator=self.g, device=self.g.device).to(self.device)

    def index(self, shape: tuple[int, ...], n: int) -> torch.Tensor:
        return torch.randint(n, shape, generator=self.g, device=self.g.device).to(self.device)


def _room_ir_length(types: Sequence[RoomType]) -> int:
    """Impulse response length (samples) holding the longest band's 60 dB decay of any room type."""
    longest = max(
        (t.predelay_ms[1] + max(t.early_ms[1], 1000.0 * t.rt60[1] * max(1.0, t.low_ratio[1], t.high_ratio[1]))) / 1000.0
        + ROOM_RISE_S
        for t in types
    )
    return math.ceil(longest * SAMPLE_RATE)


def draw_realism(
    cfg: RealismConfig,
    batch: int,
    n_samples: int,
    generator: torch.Generator,
    device: torch.device | str | None = None,
) -> RealismParams:
    """Draw which effects apply to each of ``batch`` examples and all their parameters.

    Parameters
    ----------
    cfg
        Probabilities and ranges.
    batch, n_samples
        Batch size and clip length (the noise sources are drawn at full length).
    generator
        Source of every draw; draws run on its device (use one on the audio's device on a GPU: big noise
        tensors), results move to ``device`` (default: the generator's).

    Returns
    -------
    RealismParams
        Effects with probability 0 are None; the others hold per-example masks and parameters.
    """
    dev = torch.device(device) if device is not None else generator.device
    d = _Draw(generator, dev)
    b, n_cls = (batch,), len(CLASSES)
    out: dict[str, Any] = {}
    if cfg.bleed_prob > 0:
        mask = d.bernoulli(b, cfg.bleed_prob)
        gain = 10.0 ** (d.uniform((batch, n_cls, n_cls), cfg.bleed_db) / 20.0)
        gain = gain * (1.0 - torch.eye(n_cls, device=dev))
        delay = d.log_uniform((batch, n_cls, n_cls), cfg.bleed_delay_ms) / 1000.0
        out["bleed"] = BleedParams(mask, gain, delay, d.log_uniform((batch, n_cls, n_cls), cfg.bleed_lowpass_hz))
    if cfg.room_prob > 0:
        types = cfg.room_types
        mask = d.bernoulli(b, cfg.room_prob)
        kind = d.index(b, len(types))

        def table(name: str) -> torch.Tensor:
            return torch.tensor([getattr(t, name) for t in types], dtype=torch.float32, device=dev)[kind]  # [B, 2]

        mid = d.log_uniform(b, table("rt60"))
        low, high = d.log_uniform(b, table("low_ratio")), d.log_uniform(b, table("high_ratio"))
        rt60 = torch.stack([mid * low, mid, mid * high], -1)
        predelay = d.uniform(b, table("predelay_ms")) / 1000.0
        early = d.uniform((batch, ROOM_TAPS), table("early_ms")[:, None]) / 1000.0
        sign = torch.where(d.bernoulli((batch, ROOM_TAPS), 0.5), 1.0, -1.0)
        early_gain = sign * d.uniform((batch, ROOM_TAPS), table("early_gain")[:, None])
        wet_db = d.uniform(b, table("wet_db"))
        noise = d.normal((batch, _room_ir_length(types)))
        out["room"] = RoomParams(mask, rt60, predelay, early, early_gain, wet_db, noise, kind)
    if cfg.mic_prob > 0:
        mask = d.bernoulli(b, cfg.mic_prob)
        hp = d.log_uniform(b, cfg.mic_highpass_hz)
        lp = d.log_uniform(b, cfg.mic_lowpass_hz)
        slope = d.uniform(b, cfg.mic_slope)
        pres = d.uniform(b, cfg.mic_presence_db) * d.bernoulli(b, cfg.mic_presence_prob)
        out["mic"] = MicParams(mask, hp, lp, slope, pres, d.log_uniform(b, cfg.mic_presence_hz),
                               d.uniform(b, cfg.mic_presence_octaves))  # fmt: skip
    if cfg.compress_prob > 0:
        mask = d.bernoulli(b, cfg.compress_prob)
        out["compress"] = CompressParams(
            mask,
            d.uniform(b, cfg.compress_threshold_db),
            d.log_uniform(b, cfg.compress_ratio),
            d.log_uniform(b, cfg.compress_attack_ms) / 1000.0,
            d.log_uniform(b, cfg.compress_release_ms) / 1000.0,
            d.uniform(b, cfg.compress_knee_db),
            d.bernoulli(b, cfg.compress_rms_prob),
        )
    if cfg.clip_prob > 0:
        out["clip"] = ClipParams(d.bernoulli(b, cfg.clip_prob), d.uniform(b, cfg.clip_drive_db))
    if cfg.noise_prob > 0:
        mask = d.bernoulli(b, cfg.noise_prob)
        snr = d.uniform(b, cfg.noise_snr_db)
        colors = torch.tensor(cfg.noise_colors, dtype=torch.float32, device=dev)
        exponent = colors[d.index(b, len(cfg.noise_colors))]
        out["noise"] = NoiseParams(mask, snr, exponent, d.normal((batch, n_samples)))
    return RealismParams(**out)


# ----------------------------------------------------------------------------------------------- effects


def fast_len(n: int) -> int:
    """Smallest ``2^a 3^b 5^c >= n`` (a fast FFT size)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _freqs(n_fft: int, device: torch.device) -> torch.Tensor:
    return torch.fft.rfftfreq(n_fft, 1.0 / SAMPLE_RATE, device=device)


def _lowpass(f: torch.Tensor, fc: torch.Tensor, order: torch.Tensor | float) -> torch.Tensor:
    """Butterworth-like low-pass magnitude (zero phase); ``fc = inf`` passes everything."""
    return torch.rsqrt(1.0 + (f / fc) ** (2 * order))


def _highpass(f: torch.Tensor, fc: torch.Tensor, order: torch.Tensor | float) -> torch.Tensor:
    return torch.rsqrt(1.0 + (fc / f.clamp_min(1e-3)) ** (2 * order))


def _rms(x: torch.Tensor) -> torch.Tensor:
    return x.square().mean(-1, keepdim=True).sqrt()


def bleed_response(p: BleedParams, n_fft: int = BLEED_KERNEL) -> torch.Tensor:
    """Bleed part of each stem's response, ``H_s(f) - 1 = sum_{m != s} g e^{-2j pi f (tau + BLEED_LEAD)} LP(f)``.

    Returns ``[B, 9, n_fft // 2 + 1]`` complex on the ``n_fft`` grid, delayed by ``BLEED_LEAD`` samples so that
    the zero-phase low-pass's pre-ringing stays causal in the kernel window.
    """
    f = _freqs(n_fft, p.gain.device)
    lag = p.delay.double()[..., None] * SAMPLE_RATE + BLEED_LEAD  # samples, [B, M, S, 1]
    k = torch.arange(f.shape[0], device=f.device, dtype=torch.float64)
    cycles = torch.remainder(k * lag / n_fft, 1.0).float()  # f * tau in cycles, exact before the float32 cast
    h = torch.polar(p.gain[..., None] * _lowpass(f, p.lowpass[..., None], BLEED_LP_ORDER), -2.0 * math.pi * cycles)
    return h.sum(1)  # over mics -> [B, S, F]


def _bleed_term(stems: torch.Tensor, p: BleedParams) -> torch.Tensor:
    """``[B, N]``: what the mics pick up of the other stems (the mix with bleed is ``stems.sum(1)`` plus this).

    Each stem's bleed response is built on the short ``BLEED_KERNEL`` grid, taken to the time domain (a kernel
    of ``BLEED_KERNEL`` samples: exact while delay + low-pass ringing fit it) and transformed again at the
    signal's FFT size: one rfft of the stems ``[B, 9, n_fft]`` and one of the kernels, a product summed over stems.
    """
    n = stems.shape[-1]
    kernel = torch.fft.irfft(bleed_response(p), BLEED_KERNEL, dim=-1)  # [B, S, K]
    n_fft = fast_len(n + BLEED_KERNEL)
    spec = torch.fft.rfft(stems, n_fft, dim=-1) * torch.fft.rfft(kernel, n_fft, dim=-1)
    return torch.fft.irfft(spec.sum(1), n_fft, dim=-1)[..., BLEED_LEAD : BLEED_LEAD + n]


def bleed(stems: torch.Tensor, p: BleedParams) -> torch.Tensor:
    """The mix ``[B, N]`` of close mics: each stem ``s`` passes ``H_s(f) = 1 + sum_{m != s} g e^{-2j pi f tau} LP(f)``.

    Parameters
    ----------
    stems
        ``[B, 9, N]`` class stems.
    p
        Gains, delays and low-pass cutoffs per (mic, stem) pair; delays up to ``BLEED_MAX_DELAY_S`` (30 ms).
    """
    return stems.sum(1) + _bleed_term(stems, p)


def _room_ir(p: RoomParams) -> torch.Tensor:
    """Unit-energy wet impulse responses ``[B, L]``: early taps plus a three-band exponentially decaying tail."""
    noise = p.noise
    n = noise.shape[-1]
    dev = noise.device
    f = _freqs(n, dev)
    lo1 = _lowpass(f, torch.tensor(ROOM_CROSSOVERS[0], device=dev), 2.0).square()  # amplitude-complementary split
    lo2 = _lowpass(f, torch.tensor(ROOM_CROSSOVERS[1], device=dev), 2.0).square()
    bands = torch.stack([lo1, (1.0 - lo1) * lo2, (1.0 - lo1) * (1.0 - lo2)])  # [3, F], sums to 1
    src = torch.fft.irfft(torch.fft.rfft(noise, dim=-1)[:, None, :] * bands, n, dim=-1)  # [B, 3, L]
    t = torch.arange(n, device=dev, dtype=torch.float32) / SAMPLE_RATE
    tt = t - p.predelay[:, None]  # [B, L]
    onset = (tt / ROOM_RISE_S).clamp(0.0, 1.0)
    env = torch.exp(-T60_K * tt.clamp_min(0.0)[:, None, :] / p.rt60[:, :, None])  # [B, 3, L]
    tail = (src * env).sum(1) * onset
    tail = tail * torch.rsqrt(tail.square().sum(-1, keepdim=True) + 1e-20)
    pos = ((p.predelay[:, None] + p.early_delay) * SAMPLE_RATE).round().long().clamp(0, n - 1)
    ir = tail.scatter_add(1, pos, p.early_gain.to(tail.dtype))
    n_fade = min(n, round(0.01 * SAMPLE_RATE))
    ir[:, n - n_fade :] *= torch.linspace(1.0, 0.0, n_fade, device=dev)
    return ir * torch.rsqrt(ir.square().sum(-1, keepdim=True) + 1e-20)


def room(x: torch.Tensor, p: RoomParams) -> torch.Tensor:
    """``x + 10^(wet_db/20) * (x * ir)`` with the synthetic room response (FFT convolution, same length).

    Parameters
    ----------
    x
        ``[B, N]`` audio.
    p
        Room parameters (the mask is not used here; see :func:`apply_params`).
    """
    n = x.shape[-1]
    ir = _room_ir(p)
    n_fft = fast_len(n + ir.shape[-1])
    wet = torch.fft.irfft(torch.fft.rfft(x, n_fft, dim=-1) * torch.fft.rfft(ir, n_fft, dim=-1), n_fft, dim=-1)
    return x + (10.0 ** (p.wet_db / 20.0))[:, None] * wet[..., :n]


def mic_response(f: torch.Tensor, p: MicParams) -> torch.Tensor:
    """Magnitude ``[B, F]`` of the mic colouring at frequencies ``f`` (Hz)."""
    col = lambda v: v[:, None]  # noqa: E731
    h = _highpass(f, col(p.highpass), col(p.slope)) * _lowpass(f, col(p.lowpass), col(p.slope))
    octs = torch.log2(f.clamp_min(1.0) / col(p.presence_hz)) / (0.5 * col(p.presence_octaves))
    return h * 10.0 ** (col(p.presence_db) * torch.exp(-0.5 * octs.square()) / 20.0)


def mic(x: torch.Tensor, p: MicParams) -> torch.Tensor:
    """``x`` ``[B, N]`` through the mic colouring (zero-phase, frequency domain)."""
    n = x.shape[-1]
    n_fft = fast_len(n + FILTER_PAD)
    h = mic_response(_freqs(n_fft, x.device), p)
    return torch.fft.irfft(torch.fft.rfft(x, n_fft, dim=-1) * h, n_fft, dim=-1)[..., :n]


def _one_pole(y: torch.Tensor, tau_frames: torch.Tensor) -> torch.Tensor:
    """Causal one-pole low-pass of ``y`` ``[B, M]`` (time constants ``[B]`` in frames), by FFT convolution."""
    m = y.shape[-1]
    a = torch.exp(-1.0 / tau_frames.clamp_min(1e-3))[:, None]
    k = torch.arange(m, device=y.device, dtype=y.dtype)
    kernel = (1.0 - a) * a**k  # [B, M]
    n_fft = fast_len(2 * m)
    out = torch.fft.irfft(torch.fft.rfft(y, n_fft, dim=-1) * torch.fft.rfft(kernel, n_fft, dim=-1), n_fft, dim=-1)
    return out[..., :m]


def compress(x: torch.Tensor, p: CompressParams) -> torch.Tensor:
    """Feed-forward bus compression of ``x`` ``[B, N]``, output RMS matched to the input.

    The detector (block peak, or RMS over 5 ms) runs on 32-sample frames. The static soft-knee curve gives
    the gain reduction in dB; release is a peak hold falling at ``8.69 / release`` dB/s (the initial slope of
    a one-pole with that time constant), computed exactly as ``max_k (gr[n - k] - k r)`` by log-step doubling;
    attack is a one-pole (FFT convolution) on the result. The gain is interpolated back to samples (linearly from
    each frame's start: at most one frame, 0.73 ms, of look-ahead).
    """
    b, n = x.shape
    hop = COMP_HOP
    m = -(-n // hop)
    frames = F.pad(x, (0, m * hop - n)).view(b, m, hop)
    peak = frames.abs().amax(-1)
    w = max(1, round(COMP_RMS_S * SAMPLE_RATE / hop))
    ms = F.avg_pool1d(F.pad(frames.square().mean(-1)[:, None], (w - 1, 0)), w, stride=1)[:, 0]
    level = torch.where(p.rms[:, None], ms.clamp_min(0.0).sqrt(), peak)
    lvl_db = 20.0 * torch.log10(level.clamp_min(1e-10))
    over = lvl_db - p.threshold_db[:, None]
    knee = p.knee_db.clamp_min(1e-6)[:, None]
    slope = 1.0 - 1.0 / p.ratio[:, None]
    in_knee = slope * (over + knee / 2).square() / (2 * knee)
    gr = torch.where(2.0 * over <= -knee, 0.0, torch.where(2.0 * over >= knee, slope * over, in_knee))
    rate = (DB_PER_NEPER * hop / SAMPLE_RATE / p.release)[:, None]  # dB per frame
    s = 1
    while s < m:  # after this step gr[n] = max over k < 2s of gr0[n - k] - k * rate
        gr = torch.maximum(gr, F.pad(gr, (s, 0))[:, :m] - s * rate)
        s *= 2
    gr = _one_pole(gr, p.attack * SAMPLE_RATE / hop)
    # Frame k's value holds at the start of its block, linear to the next: a look-ahead of at most one frame,
    # so that the block's peak meets the reduction it causes.
    frac = torch.arange(hop, device=x.device, dtype=x.dtype) / hop
    nxt = torch.cat([gr[:, 1:], gr[:, -1:]], -1)
    gr_n = (gr[..., None] * (1.0 - frac) + nxt[..., None] * frac).reshape(b, m * hop)[:, :n]
    gain = 10.0 ** (-gr_n / 20.0)
    y = x * gain
    return y * (_rms(x) / _rms(y).clamp_min(1e-12))


def soft_clip(x: torch.Tensor, p: ClipParams) -> torch.Tensor:
    """``tanh(g x / peak)`` per example (``g``: the drive), RMS matched to the input.

    The output is bounded: ``|out| < rms(x) / rms(tanh(g x / peak))``.
    """
    peak = x.abs().amax(-1, keepdim=True).clamp_min(1e-12)
    y = torch.tanh((10.0 ** (p.drive_db / 20.0))[:, None] * x / peak)
    return y * (_rms(x) / _rms(y).clamp_min(1e-12))


def noise_colour(p: NoiseParams) -> torch.Tensor:
    """The unit-RMS coloured noise ``[B, N]``: the white source shaped to a power spectrum ``~ f^-exponent``."""
    n = p.white.shape[-1]
    f = _freqs(n, p.white.device)
    shape = (f.clamp_min(NOISE_FLOOR_HZ) / 1000.0) ** (-0.5 * p.exponent[:, None])
    shape[:, 0] = 0.0
    col = torch.fft.irfft(torch.fft.rfft(p.white, dim=-1) * shape, n, dim=-1)
    return col * torch.rsqrt(col.square().mean(-1, keepdim=True) + 1e-30)


def add_noise(x: torch.Tensor, p: NoiseParams) -> torch.Tensor:
    """``x`` ``[B, N]`` plus coloured noise at ``snr_db`` below the example's RMS (silence stays silent)."""
    if p.white.shape[-1] != x.shape[-1]:
        raise ValueError(f"noise source has {p.white.shape[-1]} samples, audio {x.shape[-1]}")
    return x + noise_colour(p) * _rms(x) * (10.0 ** (-p.snr_db / 20.0))[:, None]


def _where(mask: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``y`` for the examples of ``mask`` ``[B]``, else ``x``."""
    return torch.where(mask[:, None], y, x)


def apply_params(mix: torch.Tensor, stems: torch.Tensor | None, params: RealismParams) -> torch.Tensor:
    """Apply drawn effects, each only to the examples of its mask: bleed, room, mic, compress, clip, noise.

    Parameters
    ----------
    mix
        ``[B, N]``, the sum of ``stems``.
    stems
        ``[B, 9, N]`` or None (then bleed is skipped).
    params
        From :func:`draw_realism` (or built by hand).

    Returns
    -------
    torch.Tensor
        ``[B, N]`` float32.
    """
    if mix.ndim != 2:
        raise ValueError(f"mix must be [B, N], got {tuple(mix.shape)}")
    x = mix.float()
    if params.bleed is not None and stems is not None:
        if stems.shape != (x.shape[0], len(CLASSES), x.shape[1]):
            raise ValueError(f"stems must be [B, {len(CLASSES)}, N] matching the mix, got {tuple(stems.shape)}")
        x = _where(params.bleed.mask, x, x + _bleed_term(stems.float(), params.bleed))
    if params.room is not None:
        x = _where(params.room.mask, x, room(x, params.room))
    if params.mic is not None:
        x = _where(params.mic.mask, x, mic(x, params.mic))
    if params.compress is not None:
        x = _where(params.compress.mask, x, compress(x, params.compress))
    if params.clip is not None:
        x = _where(params.clip.mask, x, soft_clip(x, params.clip))
    if params.noise is not None:
        x = _where(params.noise.mask, x, add_noise(x, params.noise))
    return x


def apply_realism(
    mix: torch.Tensor,
    stems: torch.Tensor | None,
    cfg: RealismConfig,
    generator: torch.Generator,
    *,
    check_finite: bool = False,
) -> torch.Tensor:
    """Draw the effects of ``cfg`` per example and apply them to ``mix`` ``[B, N]`` (see :func:`apply_params`).

    ``check_finite`` raises ``FloatingPointError`` on NaN/inf output (a device sync; the effects are guarded
    against producing them).
    """
    params = draw_realism(cfg, mix.shape[0], mix.shape[-1], generator, mix.device)
    out = apply_params(mix, stems, params)
    if check_finite and not bool(torch.isfinite(out).all()):
        raise FloatingPointError("non-finite audio after the realism effects")
    return out
