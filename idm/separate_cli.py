"""``idm separate``: options (argparse, so no typer, rich or pydantic to import) and the loop over input files.

Exit status: 0 when every input was separated, 1 when some failed (each with a one-line ``error:``), 2 for
bad options (one line). ``--debug`` shows tracebacks instead.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

from idm.errors import IDMError

__all__ = ["build_parser", "run"]


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line ``error:`` and exit status 2, like the other commands."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {message} (idm separate --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The options of ``idm separate``."""
    p = _Parser(
        prog="idm separate",
        description="Separate drum recordings into stems (OUT/<name>/<class>.wav) and a MIDI transcription "
        "(<name>.mid). By default the shipped live model runs through onnxruntime (no PyTorch needed).",
    )
    p.add_argument("inputs", nargs="+", type=Path, help="Drum recordings (WAV, FLAC, OGG, AIFF...; any rate).")
    p.add_argument(
        "--out",
        "-o",
        type=Path,
        default=Path("separated"),
        help="Output folder; each input gets OUT/<name>/ (default: separated).",
    )
    p.add_argument(
        "--model",
        help="live or paper (the shipped models), or a checkpoint: a project .ckpt, or an "
        "official .ckpt with model.yaml beside it (torch backend). Default: live.",
    )
    p.add_argument("--bundle", help="live or paper, or a bundle folder made by idm-export (onnx backend).")
    p.add_argument(
        "--backend",
        choices=("auto", "onnx", "torch"),
        default="auto",
        help="onnx: the exported bundle through onnxruntime, no PyTorch needed (fast); torch: the "
        "checkpoint through PyTorch (needed for --onsets and official checkpoints); auto: onnx unless "
        "torch is needed.",
    )
    p.add_argument("--config", type=Path, help="model.yaml of an official checkpoint, if not beside it.")
    p.add_argument(
        "--mode",
        choices=("masked", "synth"),
        default="masked",
        help="masked: Wiener-masked mix (sums to the input; stereo input gives stereo stems); synth: "
        "the model's one-shots (mono).",
    )
    p.add_argument("--stems", type=int, default=9, help="9 classes, or 5 groups: kick/snare/toms/hihat/cymbals.")
    p.add_argument("--alpha", type=float, default=1.0, help="Exponent of the alpha-Wiener masks.")
    p.add_argument(
        "--onsets", type=Path, help="MIDI file of the hits to use instead of the model's transcription (torch)."
    )
    p.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="cpu, or cuda (torch device / onnxruntime CUDA provider).",
    )
    p.add_argument(
        "--seed", type=int, default=1234, help="Seed of the one-shot synthesizer's noise (torch; bundles fix it)."
    )
    p.add_argument(
        "--threads", type=int, help="CPU threads (default: torch's choice; onnx: the cores this process may use)."
    )
    p.add_argument(
        "--chunk-seconds", type=float, default=30.0, help="Chunk length (torch); bounds memory on long files."
    )
    p.add_argument(
        "--delta",
        help="Sensitivity: the peak picker's threshold over the local mean, one value for all "
        "drums or per drum, e.g. 'crash=0.6,hihat_open=0.7' (higher: fewer notes). Default: the model's "
        "tuned values.",
    )
    p.add_argument(
        "--note-length",
        type=float,
        default=50.0,
        help="MIDI note length in ms (a note also ends at the next hit of its drum).",
    )
    p.add_argument(
        "--midi-channel", type=int, default=10, help="MIDI channel of the notes, 1-16 (10: General MIDI drums)."
    )
    p.add_argument(
        "--note-map",
        default="gm",
        help="Notes per drum: gm, td (Roland V-Drums toms 48/45/43), or a YAML file 'tom_mid: 45'.",
    )
    p.add_argument(
        "--midi-tempo", type=float, default=120.0, help="Tempo of the MIDI file in BPM (notes keep their seconds)."
    )
    p.add_argument(
        "--force", action=argparse.BooleanOptionalAction, default=False, help="Replace existing output folders."
    )
    p.add_argument("--quiet", "-q", action="store_true", help="No progress lines.")
    p.add_argument("--debug", action=argparse.BooleanOptionalAction, default=False, help="Show tracebacks.")
    return p  # fmt: skip


def _fail(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


def _runner(a: argparse.Namespace) -> Callable[[Path, Path, bool], Path]:
    """Check the options and build the per-file separation function (raises :class:`IDMError`)."""
    from idm import cli

    if a.stems not in (5, 9):
        raise IDMError(f"--stems must be 9 or 5, got {a.stems}")
    if not a.alpha > 0:
        raise IDMError(f"--alpha must be positive, got {a.alpha}")
    if a.chunk_seconds < 1:
        raise IDMError(f"--chunk-seconds must be at least 1, got {a.chunk_seconds}")
    if a.threads is not None and a.threads < 1:
        raise IDMError(f"--threads must be at least 1, got {a.threads}")
    if a.onsets is not None and len(a.inputs) != 1:
        raise IDMError("--onsets takes one input file (the onsets belong to one recording)")
    names = [p.stem for p in a.inputs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise IDMError(f"several inputs would write the same folder {a.out / sorted(dup)[0]}; rename one")
    from idm.classes import parse_class_values
    from idm.midi import MidiStyle

    try:
        sensitivity = parse_class_values(a.delta, "--delta") if a.delta is not None else None
    except ValueError as e:
        raise IDMError(str(e)) from None
    style = MidiStyle.of(a.note_length, a.midi_channel, a.note_map, a.midi_tempo)
    which = cli._choose_backend(a.backend, a.model, a.bundle, a.onsets)
    if which == "onnx":
        return cli._onnx_runner(a.bundle or a.model or "live", a.mode, a.stems, a.alpha, a.device, a.threads,
                                sensitivity, style)  # fmt: skip
    return cli._torch_runner(a.model, a.config, a.mode, a.stems, a.alpha, a.device, a.seed, a.threads,
                             a.chunk_seconds, a.onsets, sensitivity, style)  # fmt: skip


def run(argv: list[str]) -> int:
    """Run ``idm separate`` with arguments ``argv``; returns the exit status."""
    a = build_parser().parse_args(argv)
    try:
        run_one = _runner(a)
    except IDMError as e:
        if a.debug:
            raise
        _fail(str(e))
        return 2
    failed = 0
    for i, path in enumerate(a.inputs):
        t0 = time.perf_counter()
        try:
            folder = run_one(path, a.out, a.force)
        except IDMError as e:
            if a.debug:
                raise
            failed += 1
            _fail(str(e))
            continue
        if not a.quiet:
            took = time.perf_counter() - t0
            print(f"[{i + 1}/{len(a.inputs)}] {path} -> {folder}/ ({took:.1f} s)", flush=True)
    if failed:
        _fail(f"{failed} of {len(a.inputs)} inputs failed")
        return 1
    return 0
