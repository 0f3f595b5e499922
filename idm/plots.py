"""Figures: a separation's piano roll (waveform, onset probabilities with the picker's thresholds, hits), the
histogram of per-note latencies measured through JACK, and spectrograms before and after a kit transfer.

Torch-free. matplotlib is optional (``pip install 'inverse-drum-machine[plot]'``) and imported only when a
figure is drawn, never when this module is imported. Data and drawing are separate steps:
:func:`piano_roll_data` computes every number the figure shows (a :class:`PianoRoll`, testable without
matplotlib), :func:`piano_roll_figure` draws it and :func:`save_png` writes it at an exact pixel size.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from idm.classes import CLASSES
from idm.errors import AudioInputError, OutputError
from idm.peaks import local_mean

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "PianoRoll",
    "checkpoint_piano_roll",
    "latency_histogram",
    "latency_stats",
    "load_matplotlib",
    "log_spectrogram",
    "model_label",
    "offline_piano_roll",
    "onsets_piano_roll",
    "piano_roll_data",
    "piano_roll_figure",
    "pool_latency_records",
    "save_png",
    "spectrogram_figure",
    "waveform_envelope",
    "write_piano_roll",
]

#: Pixel size of a piano roll PNG (width, height) at :data:`DPI`.
ROLL_SIZE = (1600, 1200)
DPI = 100


def load_matplotlib(what: str = "plotting") -> Any:
    """``matplotlib.pyplot`` on the Agg backend; a one-line :class:`~idm.errors.IDMError` if matplotlib is missing."""
    from idm.torchcheck import require

    require("matplotlib", what, "plot")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass
class PianoRoll:
    """Everything a piano roll draws; class axes in ``classes`` order, times in seconds from the input's start."""

    title: str
    wave_time: np.ndarray  #: ``[B]`` centre of each waveform bin
    wave_min: np.ndarray  #: ``[B]`` smallest sample of the (mono) input in the bin
    wave_max: np.ndarray  #: ``[B]`` largest sample
    frame_time: np.ndarray  #: ``[F]`` time of each model frame
    onset_probs: np.ndarray  #: ``[K, F]`` the onset probabilities the separation computed
    thresholds: np.ndarray  #: ``[K, F]`` the level a peak must reach: max(local mean + delta, threshold)
    hit_class: np.ndarray  #: ``[H]`` class index of each picked hit
    hit_time: np.ndarray  #: ``[H]`` its time
    hit_prob: np.ndarray  #: ``[H]`` its onset probability
    classes: tuple[str, ...] = CLASSES


def waveform_envelope(path: str | Path, bins: int = 2000, block: int = 1 << 16) -> tuple[np.ndarray, ...]:
    """Min and max of the file's mono downmix in ``bins`` equal spans: ``(centres s, min, max)``, bounded memory."""
    import soundfile as sf

    try:
        f = sf.SoundFile(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioInputError(f"{path}: not a readable audio file ({str(e).splitlines()[0]})") from None
    with f:
        n, sr = f.frames, f.samplerate
        if n <= 0:
            raise AudioInputError(f"{path}: empty audio (0 samples)")
        span = max(1, -(-n // bins))
        nb = -(-n // span)
        lo, hi = np.zeros(nb, np.float32), np.zeros(nb, np.float32)
        step = max(span, block // span * span)  # whole spans per read
        pos = 0
        while pos < n:
            x = f.read(min(step, n - pos), dtype="float32", always_2d=True).mean(axis=1)
            if x.size == 0:
                break
            m = -(-x.size // span)
            padded = np.pad(x, (0, m * span - x.size), mode="edge").reshape(m, span)
            b0 = pos // span
            lo[b0 : b0 + m], hi[b0 : b0 + m] = padded.min(axis=1), padded.max(axis=1)
            pos += x.size
    centres = (np.arange(nb) * span + np.minimum(span, n - np.arange(nb) * span) / 2) / sr
    return centres, lo, hi


def piano_roll_data(
    title: str,
    wave: tuple[np.ndarray, ...],
    onset_probs: np.ndarray,
    frame_rate: float,
    hit_class: np.ndarray,
    hit_frame: np.ndarray,
    delta: np.ndarray,
    threshold: np.ndarray,
    pre_avg: int,
    post_avg: int,
    classes: tuple[str, ...] = CLASSES,
) -> PianoRoll:
    """The numbers of a piano roll, from what a separation computed (nothing is run again).

    ``wave`` is :func:`waveform_envelope`'s result; ``onset_probs`` ``[K, F]``; hits as class index and frame;
    ``delta``/``threshold`` ``[K]`` and the averaging window ``pre_avg``/``post_avg`` (frames) are the peak
    picker's, so a hit is drawn where its probability reached the drawn threshold at a local maximum.
    """
    p = np.asarray(onset_probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] != len(classes):
        raise ValueError(f"onset_probs must be [{len(classes)}, F], got {p.shape}")
    hk = np.asarray(hit_class, dtype=np.int64)
    hj = np.asarray(hit_frame, dtype=np.int64)
    thr = np.maximum(local_mean(p, pre_avg, post_avg) + np.asarray(delta, np.float64)[:, None],
                     np.asarray(threshold, np.float64)[:, None])  # fmt: skip
    t, lo, hi = wave
    return PianoRoll(
        title=title,
        wave_time=np.asarray(t, np.float64),
        wave_min=np.asarray(lo, np.float32),
        wave_max=np.asarray(hi, np.float32),
        frame_time=np.arange(p.shape[1]) / float(frame_rate),
        onset_probs=p.astype(np.float32),
        thresholds=thr.astype(np.float32),
        hit_class=hk,
        hit_time=hj / float(frame_rate),
        hit_prob=p[hk, hj].astype(np.float32) if hk.size else np.zeros(0, np.float32),
        classes=tuple(classes),
    )


def piano_roll_figure(roll: PianoRoll, size: tuple[int, int] = ROLL_SIZE) -> Figure:
    """Waveform on top, one row per class: probability (filled), threshold (dashed), hits (triangles).

    Artists carry labels (``waveform``, ``probability``, ``threshold``, ``hits``) so tests can read the drawn data.
    """
    plt = load_matplotlib("a piano roll (--plot)")
    k = len(roll.classes)
    fig, axes = plt.subplots(k + 1, 1, figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, sharex=True,
                             gridspec_kw={"height_ratios": [2.5] + [1] * k})  # fmt: skip
    end = float(max(roll.wave_time[-1] if roll.wave_time.size else 0.0,
                    roll.frame_time[-1] if roll.frame_time.size else 0.0))  # fmt: skip
    ax = axes[0]
    ax.fill_between(roll.wave_time, roll.wave_min, roll.wave_max, color="0.35", linewidth=0, label="waveform")
    peak = float(max(np.abs(roll.wave_min).max(initial=0), np.abs(roll.wave_max).max(initial=0), 1e-6))
    ax.set_ylim(-1.05 * peak, 1.05 * peak)
    ax.set_ylabel("input", rotation=0, ha="right", va="center")
    ax.set_title(roll.title, fontsize=11)
    for i, name in enumerate(roll.classes):
        ax = axes[i + 1]
        mine = roll.hit_class == i
        ax.fill_between(roll.frame_time, 0, roll.onset_probs[i], color=f"C{i}", alpha=0.35, linewidth=0)
        ax.plot(roll.frame_time, roll.onset_probs[i], color=f"C{i}", linewidth=0.8, label="probability")
        ax.plot(roll.frame_time, roll.thresholds[i], color="black", linewidth=0.7, linestyle="--", label="threshold")
        ax.plot(roll.hit_time[mine], roll.hit_prob[mine], linestyle="none", marker="v", markersize=5,
                color="crimson", label="hits")  # fmt: skip
        ax.set_ylim(0, 1.05)
        ax.set_yticks([0, 1])
        ax.set_ylabel(f"{name}\n{int(mine.sum())} hits", rotation=0, ha="right", va="center", fontsize=9)
        ax.grid(axis="x", alpha=0.3)
    axes[-1].set_xlim(0, end if end > 0 else 1.0)
    axes[-1].set_xlabel("time (s)")
    handles = [axes[1].get_lines()[i] for i in range(3)]
    axes[0].legend(handles, ["onset probability", "picker threshold (local mean + delta)", "picked hit"],
                   loc="upper right", fontsize=8, ncol=3)  # fmt: skip
    fig.subplots_adjust(left=0.1, right=0.98, top=0.95, bottom=0.05, hspace=0.15)
    return fig


def save_png(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` as a PNG at its own pixel size (figure inches x :data:`DPI`, no tight cropping) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(str(path), dpi=DPI, format="png")
    except OSError as e:
        raise OutputError(f"{path}: cannot write the figure ({e.strerror or e})") from None
    finally:
        plt.close(fig)
    return path


def write_piano_roll(roll: PianoRoll, path: str | Path, size: tuple[int, int] = ROLL_SIZE) -> Path:
    """Draw ``roll`` and write it to ``path`` (PNG, ``size`` pixels)."""
    return save_png(piano_roll_figure(roll, size), path)


def model_label(ref: str, manifest: dict[str, Any] | None) -> str:
    """How a figure names a bundle: the reference given and, when it differs, the model's name in its manifest."""
    name = (manifest or {}).get("source", {}).get("model_name")
    return f"{ref} ({name})" if name and name != ref else ref


def onsets_piano_roll(title: str, input_path: str | Path, onset_prob: np.ndarray, onsets: list[Any], frame_rate: float,
                      picker: Any, class_names: tuple[str, ...]) -> PianoRoll:  # fmt: skip
    """The piano roll of onsets found on a frame grid (``idm.midi.Onset``: class name, time) with the picker
    (``PickerParams``) that found them."""
    ks = np.array([class_names.index(o.cls) for o in onsets], dtype=np.int64)
    js = np.array([round(o.time * frame_rate) for o in onsets], dtype=np.int64)  # onsets are at frame / frame rate
    return piano_roll_data(title, waveform_envelope(input_path), onset_prob, frame_rate, ks, js, picker.delta,
                           picker.threshold, picker.pre_avg, picker.post_avg, class_names)  # fmt: skip


def offline_piano_roll(sep: Any, input_path: str | Path, result: Any, model: str) -> PianoRoll:
    """The piano roll of an :class:`~idm.runtime.offline.OfflineSeparator` run (its ``OfflineResult``)."""
    a = result.analysis
    if a.onset_prob is None:
        raise ValueError("the separation kept no onset probabilities")
    path = Path(input_path)
    title = f"{path.name}: model {model_label(model, sep.bundle.manifest)}, {len(result.onsets)} hits"
    return onsets_piano_roll(title, path, a.onset_prob, result.onsets, sep.sample_rate / sep.hop, sep.picker_params,
                             tuple(sep.class_names))  # fmt: skip


def checkpoint_piano_roll(
    sep: Any, input_path: str | Path, analysis: Any, peaks: np.ndarray, model: str, hits_from: str | None = None
) -> PianoRoll:
    """The piano roll of a torch :class:`~idm.separate.Separator` run: its ``Analysis`` and boolean peaks ``[K, F]``.

    ``hits_from`` names a MIDI file whose hits replaced the picker's (``--onsets``); the title says so.
    """
    pk = sep.config.peaks or sep.model.config.peaks
    ks, js = np.nonzero(peaks)
    order = np.lexsort((ks, js))
    path = Path(input_path)
    title = f"{path.name}: model {model} ({sep.model.config.name}), {ks.size} hits"
    if hits_from is not None:
        title += f" from {Path(hits_from).name} (given, not picked)"
    return piano_roll_data(title, waveform_envelope(path), analysis.onset_probs, analysis.frame_rate, ks[order],
                           js[order], pk.deltas(CLASSES), np.full(len(CLASSES), pk.threshold), pk.pre_avg,
                           pk.post_avg)  # fmt: skip


# ---- latency histogram (the JACK end-to-end test's per-note latencies) --------------------------------------------

LATENCY_SIZE = (1200, 650)


def latency_stats(latencies_ms: list[float] | np.ndarray) -> dict[str, float]:
    """Count, median, 95th percentile (linear interpolation), min and max of per-note latencies in ms."""
    x = np.asarray(latencies_ms, dtype=np.float64)
    if x.size == 0:
        raise ValueError("no latencies")
    return {"n": float(x.size), "median": float(np.median(x)), "p95": float(np.percentile(x, 95)),
            "min": float(x.min()), "max": float(x.max())}  # fmt: skip


def pool_latency_records(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Several runs' records of one configuration as one: latencies pooled, hit counts summed, loads listed."""
    if not records:
        raise ValueError("no latency records")
    first = records[0]
    for r in records[1:]:
        for key in ("model", "sample_rate", "period", "reported_latency_samples"):
            if r[key] != first[key]:
                raise ValueError(f"latency records differ in {key}: {first[key]!r} vs {r[key]!r}")
    out = dict(first)
    out["runs"] = len(records)
    out["latencies_ms"] = [v for r in records for v in r["latencies_ms"]]
    for key in ("expected_hits", "notes_received", "missed", "late"):
        out[key] = sum(int(r[key]) for r in records) if all(key in r for r in records) else None
    out["date_utc"] = ", ".join(dict.fromkeys(str(r.get("date_utc", ""))[:10] for r in records))
    loads = [r.get("machine", {}).get("load_avg_1min") for r in records]
    out["machine"] = dict(first.get("machine", {}), load_avg_1min=", ".join(f"{v:g}" for v in loads if v is not None))
    return out


def latency_histogram(record: dict[str, Any], size: tuple[int, int] = LATENCY_SIZE) -> Figure:
    """Histogram (1 ms bins) of a JACK latency record (``tests/test_live_jack.py``, ``IDM_JACK_LATENCIES``).

    Vertical lines: the latency idm-live reported, the measured median and p95. The histogram's bars carry
    ``gid`` ``latency`` so tests can read the counts.
    """
    plt = load_matplotlib("the latency histogram")
    lat = np.asarray(record["latencies_ms"], dtype=np.float64)
    st = latency_stats(lat)
    rate = float(record["sample_rate"])
    reported = record["reported_latency_samples"] / rate * 1000
    fig, ax = plt.subplots(figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI)
    lo, hi = np.floor(min(lat.min(), reported)) - 1, np.ceil(max(lat.max(), reported)) + 2
    _counts, _edges, patches = ax.hist(lat, bins=np.arange(lo, hi + 1.0, 1.0), color="C0", edgecolor="white")
    for p in patches:
        p.set_gid("latency")
    for x, style, label in ((reported, "-", f"reported by idm-live {reported:.1f} ms"),
                            (st["median"], "--", f"median {st['median']:.1f} ms"),
                            (st["p95"], ":", f"p95 {st['p95']:.1f} ms")):  # fmt: skip
        ax.axvline(x, color="black" if style == "-" else "crimson", linestyle=style, linewidth=1.2, label=label)
    ax.set_xlabel("latency: hit leaves the player's JACK port -> its MIDI note arrives (ms)")
    ax.set_ylabel("notes")
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    m = record.get("machine", {})
    runs = int(record.get("runs", 1))
    ax.set_title(f"idm-live through JACK: {int(st['n'])} notes in {runs} run{'s' if runs > 1 else ''}, "
                 f"{record['model']}\n"
                 f"period {record['period']} frames at {rate / 1000:g} kHz; {record.get('missed', 0)} of "
                 f"{record.get('expected_hits', '?')} hits without a note; {m.get('cpus', '?')} CPUs, load average "
                 f"{m.get('load_avg_1min', '?')}; {record.get('date_utc', '')}", fontsize=10)  # fmt: skip
    ax.legend(fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    fig.subplots_adjust(left=0.07, right=0.98, top=0.86, bottom=0.1)
    return fig


# ---- spectrograms (kit transfer, drum replacement: before and after) -----------------------------------------------

SPECTRO_SIZE = (1400, 1000)


def log_spectrogram(x: np.ndarray, sr: int, n_fft: int = 2048, hop: int = 512) -> tuple[np.ndarray, ...]:
    """dB magnitude ``[F, T]`` (Hann window, 0 dB = the largest bin), frame times (s) and bin frequencies (Hz)."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    x = np.pad(x, (n_fft // 2, n_fft // 2))
    n = 1 + max(0, (x.size - n_fft) // hop)
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop][:n]
    mag = np.abs(np.fft.rfft(frames * np.hanning(n_fft), axis=1)).T
    db = 20 * np.log10(mag / max(float(mag.max()), 1e-12) + 1e-12)
    return db, np.arange(n) * hop / sr, np.fft.rfftfreq(n_fft, 1.0 / sr)


def spectrogram_figure(items: list[tuple[str, np.ndarray]], sr: int, title: str,
                       size: tuple[int, int] = SPECTRO_SIZE, floor_db: float = -80.0) -> Figure:  # fmt: skip
    """One spectrogram per ``(label, audio)``, stacked on a shared time axis (log frequency, dB, common scale).

    Each image carries ``gid`` ``spectrogram`` (tests read the drawn arrays).
    """
    plt = load_matplotlib("spectrograms")
    fig, axes = plt.subplots(len(items), 1, figsize=(size[0] / DPI, size[1] / DPI), dpi=DPI, sharex=True,
                             squeeze=False)  # fmt: skip
    image = None
    for ax, (label, x) in zip(axes[:, 0], items, strict=True):
        db, t, f = log_spectrogram(x, sr)
        keep = f >= 30.0
        image = ax.pcolormesh(t, f[keep], db[keep], shading="auto", vmin=floor_db, vmax=0.0, cmap="magma")
        image.set_gid("spectrogram")
        ax.set_yscale("log")
        ax.set_ylabel("Hz")
        ax.set_title(label, fontsize=10, loc="left")
    axes[-1, 0].set_xlabel("time (s)")
    fig.suptitle(title, fontsize=11)
    fig.subplots_adjust(left=0.07, right=0.9, top=0.92, bottom=0.06, hspace=0.3)
    if image is not None:
        cax = fig.add_axes((0.92, 0.06, 0.015, 0.86))
        fig.colorbar(image, cax=cax, label="dB")
    return fig
