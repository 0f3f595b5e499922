"""The ``idm eval`` command: parses options and calls :func:`idm.eval.runner.run_eval`."""

from __future__ import annotations

import shlex
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from idm.cliopts import number
from idm.errors import IDMError

__all__ = ["eval_command", "plot_scores_command"]


class SetChoice(str, Enum):
    seen = "seen"
    unseen = "unseen"
    both = "both"
    pooled = "pooled"


class Split(str, Enum):
    validation = "validation"
    train = "train"


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


class Pace(str, Enum):
    live = "live"
    fast = "fast"


def _systems(specs: list[str]) -> list[tuple[str, str]]:
    out = []
    for s in specs:
        name, sep, spec = s.partition("=")
        if not sep or not name or not spec:
            raise IDMError(f"--system {s!r}: expected NAME=SPEC, e.g. official=path/to/model.ckpt or floor=mixture")
        out.append((name, spec))
    return out


def _kits(text: str | None) -> list[str] | None:
    return [k.strip() for k in text.split(",") if k.strip()] if text else None


def eval_command(
    gmd: Annotated[Path, typer.Option(help="Groove MIDI Dataset root (the folder with info.csv).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for results.json, results.md and summary.png.")],
    system: Annotated[
        list[str],
        typer.Option(
            help="NAME=SPEC, repeatable. SPEC: a checkpoint (project, or official with model.yaml beside it), "
            "stream:PATH (a bundle folder, or a checkpoint exported on the fly) run through the stream processor, "
            "oracle (Wiener masks from the true stems, true onsets) or mixture (every stem = the mix).",
        ),
    ],
    set_: Annotated[
        SetChoice,
        typer.Option(
            "--set",
            help="seen: training kits; unseen: the held-out kits; both; pooled: each clip with a kit of its own drawn "
            "class by class from the training kits and pools (with --split train: a validation set of the training "
            "sources alone, for choosing among models).",
        ),
    ] = SetChoice.both,
    split: Annotated[
        Split,
        typer.Option(
            help="GMD split of the clips: validation (evaluation) or train (the performances the models train on: "
            "validation for model selection, never an evaluation)."
        ),
    ] = Split.validation,
    max_clips: Annotated[
        int | None,
        typer.Option(
            help="MIDI windows per set, spread evenly over the split (default: all); 'seen' plays each with one "
            "training kit (they take turns), 'unseen' with every held-out kit (so clips = windows x kits)."
        ),
    ] = None,
    kits_root: Annotated[
        Path | None, typer.Option(help="Root of the registered kits (default /usr/share) or a data pack.")
    ] = None,
    seen_kits: Annotated[
        str | None, typer.Option(help="Comma-separated kit names or paths for 'seen' (default: the training kits).")
    ] = None,
    unseen_kits: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated kit names or paths for 'unseen' (default: every kit of role validation: "
            "ColomboAcousticDrumkit, Sonic Pi Acoustic, LMMS Acoustic)."
        ),
    ] = None,
    pooled_from: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated kit names or paths the 'pooled' kits draw from (default: the training and "
            "augmentation kits and the pools)."
        ),
    ] = None,
    per_file: Annotated[int, typer.Option(help="Clips per GMD performance.", min=1, max=1000)] = 1,
    clip_seconds: Annotated[float, typer.Option(help="Clip length in seconds.", callback=number(1, 600))] = 10.0,
    seed: Annotated[int, typer.Option(help="Seed of the clip offsets and renders.", min=0, max=2**32)] = 0,
    threads: Annotated[int, typer.Option(help="CPU threads for torch and onnxruntime.", min=1, max=256)] = 1,
    device: Annotated[Device, typer.Option(help="Device of checkpoints (torch) and streams (onnxruntime).")] = (
        Device.cpu
    ),
    alpha: Annotated[
        float,
        typer.Option(help="Exponent of the alpha-Wiener masks (all systems).", callback=number(0, 100, lo_open=True)),
    ] = 1.0,
    pace: Annotated[
        Pace,
        typer.Option(
            help="Streams: live = real-time rate while a one-shot bank is re-synthesized (banks land as they would "
            "for a live user of this machine); fast = never wait (banks land later)."
        ),
    ] = Pace.live,
    force: Annotated[bool, typer.Option(help="Replace existing results in --out.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
) -> None:
    """Score systems on rendered GMD validation clips: SDR, SI-SDR, LSD per stem and onset F per class and group."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from idm.eval.runner import EvalConfig, run_eval

    try:
        if threads < 1:
            raise IDMError(f"--threads must be at least 1, got {threads}")
        sets = ("seen", "unseen") if set_ == SetChoice.both else (set_.value,)
        cfg = EvalConfig(gmd_root=gmd, out=out, systems=_systems(system), sets=sets, kits_root=kits_root,
                         seen_kits=_kits(seen_kits), unseen_kits=_kits(unseen_kits),
                         pooled_from=_kits(pooled_from), split=split.value, max_clips=max_clips,
                         per_file=per_file, clip_seconds=clip_seconds, seed=seed, threads=threads,
                         device=device.value, alpha=alpha, pace=pace.value, force=force,
                         command=shlex.join(["idm", *sys.argv[1:]]))  # fmt: skip
        from idm.torchcheck import require_torch

        require_torch("idm eval", extra="eval")
        import torch

        torch.set_num_threads(threads)
        if device == Device.cuda and not torch.cuda.is_available():
            raise IDMError("--device cuda: no CUDA device is available to torch")
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      disable=quiet) as progress:  # fmt: skip
            results = run_eval(cfg, progress)
    except IDMError as e:
        if debug:
            raise
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    for s in results["summary"]:
        m = s["macro"]
        f50 = "n/a" if m["f50_groups"] is None else f"{m['f50_groups']:.3f}"
        sdr = "n/a" if m["masked_sdr_groups"] is None else f"{m['masked_sdr_groups']:.2f} dB"
        typer.echo(f"{s['system']:>12} {s['set']:>6}: F50 (groups) {f50}, masked SDR (groups) {sdr}, "
                   f"{s['seconds_per_clip']:.2f} s/clip")  # fmt: skip
    typer.echo(f"results: {out / 'results.md'}, {out / 'results.json'}, {out / 'summary.png'}")


def plot_scores_command(
    results: Annotated[
        list[Path],
        typer.Argument(
            help="results.json (per-clip scores: the figures get bootstrap 95 % error bars) or results.md files "
            "written by idm eval; several are merged when they were measured on the same sets."
        ),
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the figures.")] = Path("."),
    prefix: Annotated[str, typer.Option(help="File names: PREFIXsummary.png and PREFIXclasses.png.")] = "eval-",
    title: Annotated[str | None, typer.Option(help="Figure title (default: the sets' clip counts).")] = None,
    resamples: Annotated[int, typer.Option(help="Bootstrap resamples of the clips (results.json inputs).")] = 2000,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
) -> None:
    """Draw idm eval results: every system in one figure (with error bars from per-clip scores) and F per class."""
    from idm.eval.figures import load_scores, write_figures

    try:
        if resamples < 100:
            raise IDMError(f"--resamples must be at least 100, got {resamples}")
        data = load_scores(results, resamples, seed)
        clips = ", ".join(f"{d.split(' ')[0]} {name}" for name, d in data.sets.items())
        paths = write_figures(data, out, title or f"idm eval: {clips} clips", prefix)
    except IDMError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    with_ci = {x.system for x in data.scores if any(s.lo is not None for s in x.headline.values())}
    n = len({x.system for x in data.scores})
    if not with_ci:
        bars = "no error bars (no per-clip scores in the inputs)"
    else:
        bars = "bootstrap 95 % error bars" + (f" for {len(with_ci)} of {n} systems" if len(with_ci) < n else "")
    typer.echo(f"wrote {paths[0]} and {paths[1]} ({len(data.scores)} system x set scores, {bars})")
