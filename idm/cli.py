"""The ``idm`` command line: ``idm separate`` (stems + MIDI from drum recordings) and diagnostics."""

from __future__ import annotations

import os
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from idm.data.cli import app as data_app
from idm.errors import IDMError

app = typer.Typer(
    help="Inverse Drum Machine: drum transcription and separation (stems + MIDI) from drum mixes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")


class Mode(str, Enum):
    masked = "masked"
    synth = "synth"


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)


def default_model() -> Path | None:
    """The model used when ``--model`` is not given: ``$IDM_MODEL``, else none (no shipped weights yet)."""
    env = os.environ.get("IDM_MODEL")
    return Path(env) if env else None


@app.command()
def separate(
    inputs: Annotated[list[Path], typer.Argument(help="Drum recordings (WAV, FLAC, OGG, AIFF...; any rate).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder; each input gets OUT/<name>/.")],
    model: Annotated[
        Path | None, typer.Option(help="Checkpoint: a project .ckpt, or an official .ckpt with model.yaml beside it.")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="model.yaml of an official checkpoint, if not beside it.")] = None,
    mode: Annotated[Mode, typer.Option(help="masked: Wiener-masked mix (sums to the input); synth: one-shots.")] = (
        Mode.masked
    ),
    stems: Annotated[int, typer.Option(help="9 classes, or 5 groups: kick/snare/toms/hihat/cymbals.")] = 9,
    alpha: Annotated[float, typer.Option(help="Exponent of the alpha-Wiener masks.")] = 1.0,
    onsets: Annotated[
        Path | None, typer.Option(help="MIDI file of the hits to use instead of the model's transcription.")
    ] = None,
    device: Annotated[Device, typer.Option(help="Torch device.")] = Device.cpu,
    seed: Annotated[int, typer.Option(help="Seed of the one-shot synthesizer's noise.")] = 1234,
    threads: Annotated[int | None, typer.Option(help="CPU threads for torch (default: torch's choice).")] = None,
    chunk_seconds: Annotated[float, typer.Option(help="Chunk length; bounds memory on long files.")] = 30.0,
    force: Annotated[bool, typer.Option(help="Replace existing output folders.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
) -> None:
    """Separate drum recordings into stems (OUT/<name>/<class>.wav) and a MIDI transcription (<name>.mid)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    try:
        if stems not in (5, 9):
            raise IDMError(f"--stems must be 9 or 5, got {stems}")
        if not alpha > 0:
            raise IDMError(f"--alpha must be positive, got {alpha}")
        if chunk_seconds < 1:
            raise IDMError(f"--chunk-seconds must be at least 1, got {chunk_seconds}")
        if onsets is not None and len(inputs) != 1:
            raise IDMError("--onsets takes one input file (the onsets belong to one recording)")
        names = [p.stem for p in inputs]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise IDMError(f"several inputs would write the same folder {out / sorted(dup)[0]}; rename one")
        ckpt = model or default_model()
        if ckpt is None:
            raise IDMError(
                "no model: pass --model PATH (a project checkpoint, or the official IDM .ckpt with its "
                "model.yaml) or set IDM_MODEL; the project's own trained weights are not shipped yet"
            )
        import torch

        from idm.separate import Separator, SeparatorConfig

        if device == Device.cuda and not torch.cuda.is_available():
            raise IDMError("--device cuda: no CUDA device is available to torch")
        if threads is not None:
            torch.set_num_threads(threads)
        cfg = SeparatorConfig(
            mode=mode.value, alpha=alpha, seed=seed, device=device.value, chunk_seconds=chunk_seconds, stems=stems
        )
        sep = Separator.from_checkpoint(ckpt, cfg, config)
    except IDMError as e:
        if debug:
            raise
        _fail(str(e))
        raise typer.Exit(2) from None

    failed = 0
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=quiet,
        transient=False,
    ) as progress:
        task = progress.add_task("separating", total=len(inputs))
        for path in inputs:
            progress.update(task, description=f"separating {path.name}")
            try:
                folder = sep.separate_file(path, out, onsets=onsets, force=force)
                progress.console.print(f"{path} -> {folder}/", highlight=False) if not quiet else None
            except IDMError as e:
                if debug:
                    raise
                failed += 1
                progress.console.print(f"[red]error:[/] {e}", highlight=False, soft_wrap=True)
            progress.advance(task)
    if failed:
        _fail(f"{failed} of {len(inputs)} inputs failed")
        raise typer.Exit(1)


@app.command()
def demo(
    model: Annotated[Path | None, typer.Option(help="Checkpoint to run (default: $IDM_MODEL).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the demo loop and its separation.")] = Path(
        "out/demo"
    ),
    seconds: Annotated[float, typer.Option(help="Length of the demo loop.")] = 8.0,
) -> None:
    """Render the built-in demo drum loop and separate it (stems + MIDI) with the given model."""
    import soundfile as sf

    from idm.demo import render_demo_loop

    ckpt = model or default_model()
    if ckpt is None or not Path(ckpt).is_file():
        what = f"{ckpt} does not exist" if ckpt else "no model was given"
        _fail(
            f"{what}: the project's own weights are not shipped yet; pass --model PATH, e.g. the official "
            "checkpoint (../shared/reference/idm-official/checkpoint/*.ckpt with its model.yaml)"
        )
        raise typer.Exit(2)
    out.mkdir(parents=True, exist_ok=True)
    wav = out / "demo_loop.wav"
    sf.write(str(wav), render_demo_loop(seconds), 44100, subtype="FLOAT")
    typer.echo(f"demo loop: {wav} ({seconds:g} s, synthesized by idm.demo)")
    separate([wav], out, model=ckpt, force=True, config=None, mode=Mode.masked, stems=9, alpha=1.0, onsets=None,
             device=Device.cpu, seed=1234, threads=None, chunk_seconds=30.0, quiet=False, debug=False)  # fmt: skip


@app.command()
def info(
    model: Annotated[Path, typer.Argument(help="Checkpoint to describe.")],
    config: Annotated[Path | None, typer.Option(help="model.yaml of an official checkpoint.")] = None,
) -> None:
    """Print a checkpoint's architecture, classes and parameter count."""
    from idm.checkpoint import load_model, sha256_file

    try:
        m = load_model(model, config)
    except IDMError as e:
        _fail(str(e))
        raise typer.Exit(2) from None
    n = sum(p.numel() for p in m.parameters())
    typer.echo(f"{model}: {m.config.name}, {n:,} parameters, sha256 {sha256_file(model)[:16]}")
    typer.echo(f"classes (model order): {', '.join(m.config.classes)}")
    enc = m.config.encoder
    typer.echo(f"encoder: dims {list(enc.dims)}, depths {list(enc.depths)}, causal {enc.causal}")


# idm train (training is in idm.train; its heavy imports happen only when the command runs)
from idm.train.cli import train as _train_command  # noqa: E402

app.command(name="train")(_train_command)

from idm.eval.cli import eval_command  # noqa: E402 -- ``idm eval``, kept at the end for easy merges

app.command("eval")(eval_command)


def main() -> None:
    """Entry point of the ``idm`` script."""
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
