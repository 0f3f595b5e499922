"""Procedural drums: an endless pool of synthesized one-shots of the 9 classes, batched in PyTorch.

Each voice mixes a swept, damped tone (up to 3 partials, optional saturation) and filtered noise / 808-style metal.
"""

from __future__ import annotations

import array
import math
import sys
import wave
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path

import torch

from idm.classes import CLASSES
from idm.data.kits import SAMPLE_RATE

__all__ = ["RECIPES", "Recipe", "class_loudness_db", "synthesize", "write_examples"]

Range = tuple[float, float]

#: ln(1000): an envelope ``exp(-T60_K * t / T60)`` falls by 60 dB in ``T60`` seconds.
T60_K = math.log(1000.0)
#: The TR-808 hi-hat / cymbal oscillator frequencies (Hz): six detuned square waves.
METAL_HZ = (205.3, 304.4, 369.6, 522.7, 540.0, 800.0)
#: Length (s) of the raised-cosine fade that ends every voice (a cymbal longer than the voice is truncated).
END_FADE_S = 0.005
#: The loudness window of :func:`idm.data.kits.loudness_db` (s).
LOUDNESS_S = 0.1


@dataclass(frozen=True)
class Recipe:
    """Parameter ranges of one class; every voice draws each parameter uniformly in its range.

    Frequencies, times, ratios and the metal scale are drawn log-uniformly, the rest uniformly. Decays are
    T60s (time to fall by 60 dB). The voice is ``tone_level * tone + noise_level * noise``, before
    peak and loudness normalisation.

    Parameters
    ----------
    f0
        Final (resting) frequency of the tone's first partial, Hz.
    sweep, sweep_tau
        The pitch starts at ``sweep * f0`` and falls exponentially to ``f0`` with time constant ``sweep_tau`` (s).
    tone_decay
        T60 of the first partial; partial ``k`` decays in ``tone_decay / ratio_k``.
    ratio2, amp2, ratio3, amp3
        Frequency ratio and amplitude (first partial = 1) of the 2nd and 3rd partials.
    drive
        Saturation of the tone: ``tanh(drive * x) / tanh(drive)`` (0: linear).
    tone_level, noise_level
        Mix of the two components (the noise has unit RMS before its envelope).
    metal, metal_scale
        Fraction of the noise source that is the 808 metal (six square waves at ``METAL_HZ * metal_scale``)
        instead of white noise.
    noise_hp, noise_lp, slope
        Butterworth-like band-pass of the noise source: cutoffs (Hz) and order (6 dB/oct per unit).
    noise_decay, noise_attack
        T60 of the noise envelope and its attack time constant (s).
    """

    f0: Range = (100.0, 100.0)
    sweep: Range = (1.0, 1.0)
    sweep_tau: Range = (0.02, 0.02)
    tone_decay: Range = (0.3, 0.3)
    ratio2: Range = (2.0, 2.0)
    amp2: Range = (0.0, 0.0)
    ratio3: Range = (3.0, 3.0)
    amp3: Range = (0.0, 0.0)
    drive: Range = (0.0, 0.0)
    tone_level: Range = (1.0, 1.0)
    noise_level: Range = (0.0, 0.0)
    metal: Range = (0.0, 0.0)
    metal_scale: Range = (1.0, 1.0)
    noise_hp: Range = (20.0, 20.0)
    noise_lp: Range = (20000.0, 20000.0)
    slope: Range = (2.0, 2.0)
    noise_decay: Range = (0.1, 0.1)
    noise_attack: Range = (1e-5, 1e-5)


#: Parameters drawn log-uniformly (the others uniformly).
_LOG = frozenset(
    {"f0", "sweep", "sweep_tau", "tone_decay", "ratio2", "ratio3", "metal_scale", "noise_hp", "noise_lp"}
    | {"noise_decay", "noise_attack"}
)
_NAMES: tuple[str, ...] = tuple(f.name for f in fields(Recipe))

_TOM = Recipe(sweep=(1.03, 1.4), sweep_tau=(0.02, 0.12), ratio2=(1.45, 1.7), amp2=(0.0, 0.35),
              ratio3=(2.1, 2.6), amp3=(0.0, 0.2), drive=(0.0, 1.0), noise_level=(0.03, 0.25),
              noise_hp=(200.0, 1000.0), noise_lp=(3000.0, 9000.0), slope=(1.0, 2.0),
              noise_decay=(0.02, 0.12))  # fmt: skip

#: The recipes of the classes, project order (:data:`idm.classes.CLASSES`). The ranges span acoustic drums
#: (beater/stick noise, short decays, small pitch drops) and drum machines (808/909: long swept sine kicks,
#: tone + noise snares, square-wave metal hats and cymbals).
RECIPES: tuple[Recipe, ...] = (
    # kick: sine 40-70 Hz swept down from ~2-5x (80-350 Hz), decay 0.1-0.8 s, 2nd harmonic, saturation,
    # a 3-20 ms high-passed noise click.
    Recipe(f0=(40.0, 70.0), sweep=(1.8, 5.0), sweep_tau=(0.005, 0.05), tone_decay=(0.1, 0.8),
           ratio2=(2.0, 2.0), amp2=(0.0, 0.3), drive=(0.0, 3.0), tone_level=(1.0, 1.0),
           noise_level=(0.02, 0.4), noise_hp=(1000.0, 5000.0), noise_lp=(8000.0, 16000.0), slope=(1.0, 2.0),
           noise_decay=(0.003, 0.02)),
    # snare: one or two damped tones 150-300 Hz (2nd mode at 1.4-1.9x) + band-passed noise (the snares).
    Recipe(f0=(150.0, 300.0), sweep=(1.0, 1.2), sweep_tau=(0.005, 0.03), tone_decay=(0.08, 0.35),
           ratio2=(1.4, 1.9), amp2=(0.0, 1.0), drive=(0.0, 1.5), tone_level=(0.2, 1.0),
           noise_level=(0.3, 1.0), noise_hp=(150.0, 2000.0), noise_lp=(4000.0, 14000.0), slope=(1.0, 2.0),
           noise_decay=(0.1, 0.6)),
    # hihat_closed: high-passed noise and/or 808 metal, decay 20-120 ms.
    Recipe(tone_level=(0.0, 0.0), noise_level=(1.0, 1.0), metal=(0.0, 1.0), metal_scale=(0.8, 1.6),
           noise_hp=(5000.0, 10000.0), noise_lp=(12000.0, 20000.0), slope=(1.5, 4.0),
           noise_decay=(0.02, 0.12)),
    # hihat_open: the same sources, decay 200-800 ms.
    Recipe(tone_level=(0.0, 0.0), noise_level=(1.0, 1.0), metal=(0.0, 1.0), metal_scale=(0.8, 1.6),
           noise_hp=(4000.0, 9000.0), noise_lp=(12000.0, 20000.0), slope=(1.5, 4.0),
           noise_decay=(0.2, 0.8), noise_attack=(1e-5, 1e-3)),
    # tom_floor < tom_mid < tom_high: damped sines with a small pitch drop, overlapping pitch ranges.
    replace(_TOM, f0=(60.0, 110.0), tone_decay=(0.4, 1.4)),
    replace(_TOM, f0=(95.0, 165.0), tone_decay=(0.3, 1.1)),
    replace(_TOM, f0=(145.0, 260.0), tone_decay=(0.25, 0.9)),
    # crash: bright metallic noise, decay 1-3 s.
    Recipe(tone_level=(0.0, 0.0), noise_level=(1.0, 1.0), metal=(0.0, 0.5), metal_scale=(1.2, 3.0),
           noise_hp=(800.0, 3000.0), noise_lp=(9000.0, 18000.0), slope=(1.0, 2.0),
           noise_decay=(1.0, 3.0), noise_attack=(1e-5, 2e-3)),
    # ride: a pinged inharmonic partial set (2-5 kHz) over a metallic wash with a slower (quieter) attack.
    Recipe(f0=(2000.0, 5000.0), tone_decay=(0.3, 1.5), ratio2=(1.3, 1.6), amp2=(0.2, 0.7),
           ratio3=(2.1, 2.8), amp3=(0.1, 0.5), tone_level=(0.3, 0.8), noise_level=(0.5, 1.0),
           metal=(0.2, 0.9), metal_scale=(1.5, 3.5), noise_hp=(1500.0, 5000.0), noise_lp=(10000.0, 18000.0),
           slope=(1.0, 3.0), noise_decay=(0.8, 2.5), noise_attack=(0.003, 0.015)),
)  # fmt: skip


def class_loudness_db() -> tuple[float, ...]:
    """The kit map's per-class loudness targets (dB RMS over the first 100 ms), project order."""
    from idm.data.kitmap import load_kitmap

    loud = load_kitmap().loudness_db
    return tuple(loud[c] for c in CLASSES)


def _rand(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) draws made on the generator's device, then moved to ``device``."""
    return torch.rand(shape, generator=generator, device=generator.device).to(device)


def _table(recipes: Sequence[Recipe], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class lower bounds and widths ``[n_classes, P]`` (in log space for the log-uniform parameters)."""
    lo = [[getattr(r, n)[0] for n in _NAMES] for r in recipes]
    hi = [[getattr(r, n)[1] for n in _NAMES] for r in recipes]
    lo_t = torch.tensor(lo, dtype=torch.float64, device=device)
    hi_t = torch.tensor(hi, dtype=torch.float64, device=device)
    is_log = torch.tensor([n in _LOG for n in _NAMES], device=device)
    lo_t = torch.where(is_log, lo_t.clamp_min(1e-12).log(), lo_t)
    hi_t = torch.where(is_log, hi_t.clamp_min(1e-12).log(), hi_t)
    return lo_t, hi_t - lo_t


def _butter(f: torch.Tensor, hp: torch.Tensor, lp: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """Magnitude of a Butterworth-like band-pass (zero phase), any real order; broadcasts."""
    fs = f.clamp_min(1e-3)
    return torch.rsqrt(1.0 + (hp / fs) ** (2 * order)) * torch.rsqrt(1.0 + (fs / lp) ** (2 * order))


def synthesize(
    classes: torch.Tensor,
    generator: torch.Generator,
    length: int,
    device: torch.device | str | None = None,
    *,
    recipes: Sequence[Recipe] = RECIPES,
    loudness_db: Sequence[float] | None = None,
) -> torch.Tensor:
    """Synthesize one random one-shot per entry of ``classes``.

    Parameters
    ----------
    classes
        ``[V]`` class indices (0-8, project order).
    generator
        Source of every random draw (drawn on its own device, then moved): the same seed gives the same voices.
    length
        Samples per voice at 44.1 kHz; voices still ringing at the end are faded out over 5 ms.
    device
        Where to compute (default: ``classes``'s device).
    recipes
        Parameter ranges per class (default :data:`RECIPES`).
    loudness_db
        Per-class target, dB RMS of the first 100 ms (default: the kit map's ``loudness_db``).

    Returns
    -------
    torch.Tensor
        ``[V, length]`` float32: each voice starts at its attack, at its class's loudness target.
    """
    dev = torch.device(device) if device is not None else classes.device
    cls = classes.to(dev, torch.long)
    v = int(cls.shape[0])
    if v == 0 or length <= 0:
        return torch.zeros(v, max(length, 0), device=dev)
    target = torch.tensor(loudness_db if loudness_db is not None else class_loudness_db(), device=dev)

    # Per-voice parameters, in the order of Recipe's fields.
    lo, width = _table(recipes, dev)
    u = _rand((v, len(_NAMES)), generator, dev).double()
    raw = lo[cls] + u * width[cls]
    is_log = torch.tensor([n in _LOG for n in _NAMES], device=dev)
    prm = torch.where(is_log, raw.exp(), raw).float()
    p = {n: prm[:, i : i + 1] for i, n in enumerate(_NAMES)}  # each [V, 1]
    noise = torch.randn((v, length), generator=generator, device=generator.device).to(dev)
    metal_phase = _rand((v, len(METAL_HZ)), generator, dev)
    metal_detune = 1.0 + 0.04 * (_rand((v, len(METAL_HZ)), generator, dev) - 0.5)

    t = torch.arange(length, device=dev, dtype=torch.float32) / SAMPLE_RATE  # [L]
    t64 = t.double()

    # Tone: partials on an exponentially swept pitch, cycles = int f dt (float64, kept in [0, 1)).
    f0, tau = p["f0"].double(), p["sweep_tau"].double()
    cycles = f0 * t64 + (p["sweep"].double() - 1.0) * f0 * tau * (1.0 - torch.exp(-t64 / tau))
    tone = torch.zeros(v, length, device=dev)
    for ratio, amp in ((None, None), ("ratio2", "amp2"), ("ratio3", "amp3")):
        r = p[ratio] if ratio is not None else torch.ones_like(p["f0"])
        a = p[amp] if amp is not None else torch.ones_like(p["f0"])
        phase = torch.remainder(cycles * r.double(), 1.0).float()
        tone += a * torch.sin(2.0 * math.pi * phase) * torch.exp(-T60_K * r * t / p["tone_decay"])
    drive = p["drive"].clamp_min(1e-3)
    tone = torch.tanh(drive * tone) / torch.tanh(drive)

    # Noise source: white noise and/or six square waves (808 metal), band-passed in the frequency domain.
    metal = torch.zeros(v, length, device=dev)
    base = torch.tensor(METAL_HZ, device=dev) * metal_detune * p["metal_scale"]  # [V, 6]
    for k in range(len(METAL_HZ)):  # float32 phase: edge jitter < 1e-3 period over 6 s, well under a sample
        ph = torch.remainder(base[:, k : k + 1] * t + metal_phase[:, k : k + 1], 1.0)
        metal += torch.where(ph < 0.5, 1.0, -1.0)
    src = (1.0 - p["metal"]) * noise + p["metal"] * metal / math.sqrt(len(METAL_HZ))
    freqs = torch.fft.rfftfreq(length, 1.0 / SAMPLE_RATE, device=dev)
    spec = torch.fft.rfft(src, dim=-1) * _butter(freqs, p["noise_hp"], p["noise_lp"], p["slope"])
    filt = torch.fft.irfft(spec, n=length, dim=-1)
    filt = filt * torch.rsqrt(filt.square().mean(-1, keepdim=True) + 1e-20)
    attack = 1.0 - torch.exp(-t / p["noise_attack"])
    env = torch.exp(-T60_K * t / p["noise_decay"]) * attack

    x = p["tone_level"] * tone + p["noise_level"] * filt * env
    n_fade = min(length, max(1, round(END_FADE_S * SAMPLE_RATE)))
    fade = 0.5 + 0.5 * torch.cos(torch.linspace(0.0, math.pi, n_fade, device=dev))
    x[:, length - n_fade :] *= fade

    # Peak-normalise, then scale the first 100 ms to the class's loudness target.
    x = x / x.abs().amax(-1, keepdim=True).clamp_min(1e-12)
    head = x[:, : max(1, int(LOUDNESS_S * SAMPLE_RATE))]
    rms = head.square().mean(-1, keepdim=True).sqrt().clamp_min(1e-12)
    return (x * (10.0 ** (target[cls] / 20.0))[:, None] / rms).float()


def write_examples(
    folder: str | Path,
    per_class: int = 3,
    seconds: float = 1.5,
    seed: int = 0,
    classes: Sequence[str] = CLASSES,
) -> list[Path]:
    """Render ``per_class`` voices of each class and write them as 16-bit WAVs (``<class>_<i>.wav``) to listen to.

    Returns
    -------
    list[Path]
        The files written.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    idx = torch.tensor([CLASSES.index(c) for c in classes for _ in range(per_class)], dtype=torch.long)
    gen = torch.Generator().manual_seed(seed)
    audio = synthesize(idx, gen, round(seconds * SAMPLE_RATE), "cpu")
    pcm = (audio.clamp(-1.0, 1.0) * 32767.0).round().to(torch.int16)
    out = []
    for i, c in enumerate(idx.tolist()):
        path = folder / f"{CLASSES[c]}_{i % per_class}.wav"
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(SAMPLE_RATE)
            frames = array.array("h", pcm[i].tolist())
            if sys.byteorder == "big":
                frames.byteswap()  # WAV is little-endian
            w.writeframes(frames.tobytes())
        out.append(path)
    return out
