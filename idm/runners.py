"""What ``idm separate`` runs per file: a picklable :class:`RunnerSpec` and the separator it builds.

A spec is built once from the command line; :func:`build_runner` turns it into a function
``run(path, out_dir, force, progress) -> folder`` in the process that will use it (the main process, or each
worker of ``--jobs``), on the onnx backend (no PyTorch) or the torch backend.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from idm.errors import IDMError
from idm.midi import MidiStyle
from idm.runtime.audio_format import DEFAULT_FORMAT, AudioFormat
from idm.runtime.extras import ExtraOutputs

__all__ = ["Progress", "RunFile", "RunnerSpec", "build_runner"]

#: ``progress(stage, done, total)`` while one file is separated.
Progress = Callable[[str, int, int], None]
#: ``run(path, out_dir, force, progress)`` -> the output folder written.
RunFile = Callable[[Path, Path, bool, "Progress | None"], Path]


@dataclass(frozen=True)
class RunnerSpec:
    """Everything needed to build a separator for ``idm separate`` (see its ``--help``)."""

    backend: str  #: "onnx" or "torch"
    ref: str | None  #: onnx: bundle name or folder (None: live); torch: checkpoint name or path
    config: Path | None = None  #: torch: model.yaml of an official checkpoint
    mode: str = "masked"
    stems: int = 9
    alpha: float = 1.0
    device: str = "cpu"
    seed: int = 1234
    threads: int | None = None
    chunk_seconds: float = 30.0
    onsets: Path | None = None
    delta: float | dict[str, float] | None = None
    style: MidiStyle = field(default_factory=MidiStyle)
    audio: AudioFormat = DEFAULT_FORMAT
    extras: ExtraOutputs = field(default_factory=ExtraOutputs)
    plot: bool = False  #: also write a piano roll ``<name>.png`` into each output folder
    replace: str | None = None  #: ``--replace`` spec (onnx backend): samples played at the hits, replaced.wav
    replace_mode: str = "swap"
    replace_align: bool = False  #: ``--replace-align``: samples at the input's transients, not on the frames
    kit_from: str | None = None  #: ``--kit-from``: a recording or a sample kit; writes transferred.wav


def build_runner(spec: RunnerSpec) -> RunFile:
    """Load the model (and a sonification kit) for ``spec``; raises :class:`IDMError` one-liners."""
    return _onnx(spec) if spec.backend == "onnx" else _torch(spec)


def _onnx(spec: RunnerSpec) -> RunFile:
    from idm.models import resolve_bundle
    from idm.runtime.engine.bundle import load_bundle
    from idm.runtime.offline import OfflineConfig, OfflineSeparator

    bundle = load_bundle(resolve_bundle(spec.ref or "live"))
    kit = None
    if spec.replace is not None:
        from idm.runtime.replace_kit import load_replacement

        kit = load_replacement(spec.replace, int(bundle.manifest["audio"]["sample_rate"]))
    cfg = OfflineConfig(mode=spec.mode, stems=spec.stems, alpha=spec.alpha, provider=spec.device,
                        threads=spec.threads or 2, delta=spec.delta, midi=spec.style, subtype=spec.audio.subtype,
                        extension=spec.audio.extension, extras=spec.extras, replace=kit,
                        replace_mode=spec.replace_mode, replace_align=spec.replace_align,
                        kit_from=spec.kit_from)  # fmt: skip
    sep = OfflineSeparator(bundle, cfg)

    label = spec.ref or "live"

    def run(path: Path, out: Path, force: bool, progress: Progress | None) -> Path:
        result = sep.separate_file(path, out, force=force, progress=progress)
        if spec.plot:
            from idm.plots import offline_piano_roll, write_piano_roll

            write_piano_roll(offline_piano_roll(sep, path, result, label), result.folder / f"{path.stem}.png")
        return result.folder

    return run


def _torch(spec: RunnerSpec) -> RunFile:
    from idm.models import resolve_checkpoint
    from idm.torchcheck import require_torch

    if spec.ref is None:
        raise IDMError("the torch backend needs a checkpoint (--model)")
    ckpt = resolve_checkpoint(spec.ref)
    require_torch(f"the torch backend (--model {spec.ref})")
    import torch

    from idm.separate import Separator, SeparatorConfig

    if spec.device == "cuda" and not torch.cuda.is_available():
        raise IDMError("--device cuda: no CUDA device is available to torch")
    if spec.threads is not None:
        torch.set_num_threads(spec.threads)
    cfg = SeparatorConfig(
        mode=spec.mode, alpha=spec.alpha, seed=spec.seed, device=spec.device, chunk_seconds=spec.chunk_seconds,
        stems=spec.stems, midi=spec.style, wav_subtype=spec.audio.subtype, extension=spec.audio.extension,
        extras=spec.extras,
    )  # fmt: skip
    sep = Separator.from_checkpoint(ckpt, cfg, spec.config)
    delta = spec.delta
    if delta is not None:
        own = sep.model.config.peaks
        sep.config.peaks = replace(own, delta=delta) if isinstance(delta, float) else (
            replace(own, class_delta={**own.class_delta, **delta}))  # fmt: skip
    onsets = spec.onsets

    def draw(analysis: Any, peaks: Any, folder: Path, path: Path) -> None:
        from idm.plots import checkpoint_piano_roll, write_piano_roll

        roll = checkpoint_piano_roll(sep, path, analysis, peaks, str(spec.ref), None if onsets is None else str(onsets))
        write_piano_roll(roll, folder / f"{path.stem}.png")

    def run(path: Path, out: Path, force: bool, progress: Progress | None) -> Path:
        extra = None if not spec.plot else (lambda a, p, f: draw(a, p, f, path))
        return sep.separate_file(path, out, onsets=onsets, force=force, progress=progress, extra=extra)

    return run
