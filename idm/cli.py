"""The ``idm`` command line: ``idm separate`` (stems + MIDI from drum recordings) and diagnostics."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from idm.cliopts import OneLineGroup, number
from idm.data.cli import app as data_app
from idm.errors import IDMError
from idm.version import print_version

app = typer.Typer(
    help="Inverse Drum Machine: drum transcription and separation (stems + MIDI) from drum mixes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=OneLineGroup,
)
app.add_typer(data_app, name="data")


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=print_version, help="Print versions and exit.")
    ] = False,
) -> None:
    """Inverse Drum Machine: drum transcription and separation (stems + MIDI) from drum mixes."""


class Mode(str, Enum):
    masked = "masked"
    synth = "synth"


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)


class Backend(str, Enum):
    auto = "auto"
    onnx = "onnx"
    torch = "torch"


_TORCH_HINT = "pip install 'inverse-drum-machine[torch]'"


def default_model() -> Path | None:
    """The checkpoint of the torch backend when ``--model`` is not given: the shipped live model (if installed)."""
    from idm.models import shipped_model

    try:
        return shipped_model("live").checkpoint
    except IDMError:
        return None


def _choose_backend(backend: Backend, model: str | None, bundle: str | None, onsets: Path | None) -> str:
    """onnx or torch: explicit, else torch only for what needs it (a checkpoint path, --onsets), else onnx."""
    from idm.models import SHIPPED

    if backend != Backend.auto:
        chosen = backend.value
    elif bundle is not None:
        chosen = "onnx"
    elif onsets is not None or (model is not None and model not in SHIPPED):
        chosen = "torch"
    else:
        chosen = "onnx"
    if chosen == "onnx" and onsets is not None:
        raise IDMError("--onsets needs the torch backend (--backend torch)")
    if chosen == "onnx" and model is not None and model not in SHIPPED:
        raise IDMError(f"--model {model} is a checkpoint, run by the torch backend; the onnx backend takes --bundle "
                       "(a shipped name or a folder made by idm-export)")  # fmt: skip
    if chosen == "torch" and bundle is not None:
        raise IDMError("--bundle runs on the onnx backend; the torch backend takes --model")
    return chosen


@app.command()
def separate(
    inputs: Annotated[list[Path], typer.Argument(help="Drum recordings (WAV, FLAC, OGG, AIFF...; any rate).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder; each input gets OUT/<name>/.")] = Path(
        "separated"
    ),
    model: Annotated[
        str | None,
        typer.Option(
            help="live or paper (the shipped models), or a checkpoint: a project .ckpt, or an official .ckpt with "
            "model.yaml beside it (torch backend). Default: live."
        ),
    ] = None,
    bundle: Annotated[
        str | None, typer.Option(help="live or paper, or a bundle folder made by idm-export (onnx backend).")
    ] = None,
    backend: Annotated[
        Backend,
        typer.Option(
            help="onnx: the exported bundle through onnxruntime, no PyTorch needed (fast); torch: the checkpoint "
            "through PyTorch (needed for --onsets and official checkpoints); auto: onnx unless torch is needed."
        ),
    ] = Backend.auto,
    config: Annotated[Path | None, typer.Option(help="model.yaml of an official checkpoint, if not beside it.")] = None,
    mode: Annotated[Mode, typer.Option(help="masked: Wiener-masked mix (sums to the input); synth: one-shots.")] = (
        Mode.masked
    ),
    stems: Annotated[int, typer.Option(help="9 classes, or 5 groups: kick/snare/toms/hihat/cymbals.")] = 9,
    alpha: Annotated[
        float, typer.Option(help="Exponent of the alpha-Wiener masks (> 0).", callback=number(0, 100, lo_open=True))
    ] = 1.0,
    onsets: Annotated[
        Path | None, typer.Option(help="MIDI file of the hits to use instead of the model's transcription (torch).")
    ] = None,
    device: Annotated[Device, typer.Option(help="cpu, or cuda (torch device / onnxruntime CUDA provider).")] = (
        Device.cpu
    ),
    seed: Annotated[
        int,
        typer.Option(help="Seed of the one-shot synthesizer's noise (torch; bundles fix it).", min=0, max=2**32 - 1),
    ] = 1234,
    threads: Annotated[
        int | None, typer.Option(help="CPU threads (default: torch's choice; onnx: 2).", min=1, max=256)
    ] = None,
    chunk_seconds: Annotated[
        float, typer.Option(help="Chunk length (torch); bounds memory on long files.", callback=number(1, 3600))
    ] = 30.0,
    delta: Annotated[
        str | None,
        typer.Option(
            help="Sensitivity: the peak picker's threshold over the local mean, one value for all drums or per "
            "drum, e.g. 'crash=0.6,hihat_open=0.7' (higher: fewer notes). Default: the model's tuned values."
        ),
    ] = None,
    note_length: Annotated[
        float,
        typer.Option(
            help="MIDI note length in ms (a note also ends at the next hit of its drum).", callback=number(1, 10000)
        ),
    ] = 50.0,
    midi_channel: Annotated[int, typer.Option(help="MIDI channel of the notes, 1-16 (10: General MIDI drums).")] = 10,
    note_map: Annotated[
        str, typer.Option(help="Notes per drum: gm, td (Roland V-Drums toms 48/45/43), or a YAML file 'tom_mid: 45'.")
    ] = "gm",
    midi_tempo: Annotated[
        float, typer.Option(help="Tempo of the MIDI file in BPM (notes keep their seconds).", callback=number(20, 400))
    ] = 120.0,
    force: Annotated[bool, typer.Option(help="Replace existing output folders.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
) -> None:
    """Separate drum recordings into stems (OUT/<name>/<class>.wav) and a MIDI transcription (<name>.mid).

    By default the shipped live model runs through onnxruntime (no PyTorch needed).
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    try:
        if stems not in (5, 9):
            raise IDMError(f"--stems must be 9 or 5, got {stems}")
        if not alpha > 0:
            raise IDMError(f"--alpha must be positive, got {alpha}")
        if chunk_seconds < 1:
            raise IDMError(f"--chunk-seconds must be at least 1, got {chunk_seconds}")
        if threads is not None and threads < 1:
            raise IDMError(f"--threads must be at least 1, got {threads}")
        if onsets is not None and len(inputs) != 1:
            raise IDMError("--onsets takes one input file (the onsets belong to one recording)")
        names = [p.stem for p in inputs]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise IDMError(f"several inputs would write the same folder {out / sorted(dup)[0]}; rename one")
        from idm.classes import parse_class_values
        from idm.midi import MidiStyle

        try:
            sensitivity = parse_class_values(delta, "--delta") if delta is not None else None
        except ValueError as e:
            raise IDMError(str(e)) from None
        style = MidiStyle.of(note_length, midi_channel, note_map, midi_tempo)
        which = _choose_backend(backend, model, bundle, onsets)
        if which == "onnx":
            run_one = _onnx_runner(bundle or model or "live", mode, stems, alpha, device, threads, sensitivity, style)
        else:
            run_one = _torch_runner(model, config, mode, stems, alpha, device, seed, threads, chunk_seconds, onsets,
                                    sensitivity, style)  # fmt: skip
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
                folder = run_one(path, out, force)
                progress.console.print(f"{path} -> {folder}/", highlight=False) if not quiet else None
            except IDMError as e:
                if debug:
                    raise
                failed += 1
                _fail(str(e))
            progress.advance(task)
    if failed:
        _fail(f"{failed} of {len(inputs)} inputs failed")
        raise typer.Exit(1)


def _onnx_runner(
    ref: str,
    mode: Mode,
    stems: int,
    alpha: float,
    device: Device,
    threads: int | None,
    delta: float | dict[str, float] | None,
    style: Any,
) -> Any:
    from idm.models import resolve_bundle
    from idm.runtime.offline import OfflineConfig, OfflineSeparator

    cfg = OfflineConfig(mode=mode.value, stems=stems, alpha=alpha, provider=device.value, threads=threads or 2,
                        delta=delta, midi=style)  # fmt: skip
    sep = OfflineSeparator(resolve_bundle(ref), cfg)
    return lambda path, out, force: sep.separate_file(path, out, force=force).folder


def _torch_runner(
    model: str | None,
    config: Path | None,
    mode: Mode,
    stems: int,
    alpha: float,
    device: Device,
    seed: int,
    threads: int | None,
    chunk_seconds: float,
    onsets: Path | None,
    delta: float | dict[str, float] | None,
    style: Any,
) -> Any:
    from dataclasses import replace

    from idm.models import resolve_checkpoint
    from idm.torchcheck import require_torch

    ckpt = resolve_checkpoint(model) if model is not None else default_model()
    if ckpt is None:
        raise IDMError(
            "no model: pass --model PATH (a project checkpoint, or the official IDM .ckpt with its model.yaml); "
            "this installation ships no weights"
        )
    require_torch(f"the torch backend (--model {model or 'live'})")
    import torch

    from idm.separate import Separator, SeparatorConfig

    if device == Device.cuda and not torch.cuda.is_available():
        raise IDMError("--device cuda: no CUDA device is available to torch")
    if threads is not None:
        torch.set_num_threads(threads)
    cfg = SeparatorConfig(
        mode=mode.value, alpha=alpha, seed=seed, device=device.value, chunk_seconds=chunk_seconds, stems=stems,
        midi=style,
    )  # fmt: skip
    sep = Separator.from_checkpoint(ckpt, cfg, config)
    if delta is not None:
        own = sep.model.config.peaks
        sep.config.peaks = replace(own, delta=delta) if isinstance(delta, float) else (
            replace(own, class_delta={**own.class_delta, **delta}))  # fmt: skip
    return lambda path, out, force: sep.separate_file(path, out, onsets=onsets, force=force)


@app.command()
def demo(
    bundle: Annotated[str, typer.Option(help="live or paper, or a bundle folder (idm-export).")] = "live",
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the demo loop and its separation.")] = Path(
        "out/demo"
    ),
    seconds: Annotated[
        float, typer.Option(help="Length of the demo loop.", callback=number(0, 600, lo_open=True))
    ] = 8.0,
) -> None:
    """Render the built-in demo drum loop and separate it (stems + MIDI) with a shipped model (no PyTorch needed)."""
    import soundfile as sf

    from idm.demo import render_demo_loop

    if not seconds > 0:
        _fail(f"--seconds must be positive, got {seconds}")
        raise typer.Exit(2)
    out.mkdir(parents=True, exist_ok=True)
    wav = out / "demo_loop.wav"
    sf.write(str(wav), render_demo_loop(seconds), 44100, subtype="FLOAT")
    typer.echo(f"demo loop: {wav} ({seconds:g} s, synthesized by idm.demo)")
    separate([wav], out, model=None, bundle=bundle, backend=Backend.onnx, force=True, config=None, mode=Mode.masked,
             stems=9, alpha=1.0, onsets=None, device=Device.cpu, seed=1234, threads=None, chunk_seconds=30.0,
             delta=None, note_length=50.0, midi_channel=10, note_map="gm", midi_tempo=120.0, quiet=False,
             debug=False)  # fmt: skip


@app.command()
def info(
    model: Annotated[str, typer.Argument(help="live or paper, a bundle folder, or a checkpoint.")],
    config: Annotated[Path | None, typer.Option(help="model.yaml of an official checkpoint.")] = None,
) -> None:
    """Describe a model: a bundle's manifest (no PyTorch needed) or a checkpoint's architecture."""
    from idm.files import sha256_file
    from idm.models import SHIPPED, resolve_bundle, resolve_checkpoint, stream_latency

    try:
        path = Path(model)
        if model in SHIPPED:  # an exact shipped name; a local folder of that name is ./live
            path = resolve_bundle(model)
        if (path / "manifest.json").is_file():
            from idm.runtime.bundle import load_bundle

            b = load_bundle(path)
            m = b.manifest
            sr = int(m["audio"]["sample_rate"])
            lat = stream_latency(m)
            name = m.get("source", {}).get("model_name", "?")
            typer.echo(f"{path}: bundle ({m['schema']} v{m['schema_version']}) of {name}, {m['precision']}, "
                       f"opset {m['opset']}")  # fmt: skip
            typer.echo(f"latency: {lat} samples = {1000 * lat / sr:.1f} ms at {sr} Hz for MIDI and synthesized stems "
                       f"(masked stems: +{m['frontend']['n_fft']}); look-ahead "
                       f"{m['streaming']['lookahead_frames']} frames")  # fmt: skip
            typer.echo(f"classes: {', '.join(b.class_names)}")
            for name, f in sorted(m["files"].items()):
                typer.echo(f"  {name}: {(path / name).stat().st_size / 1024:.0f} KiB, sha256 {str(f)[:16]}")
            return
        from idm.torchcheck import require_torch

        require_torch("describing a checkpoint (idm info CKPT; a bundle folder needs no PyTorch)")
        from idm.checkpoint import load_model

        ckpt = resolve_checkpoint(model)
        mdl = load_model(ckpt, config)
    except IDMError as e:
        _fail(str(e))
        raise typer.Exit(2) from None
    n = sum(p.numel() for p in mdl.parameters())
    typer.echo(f"{ckpt}: {mdl.config.name}, {n:,} parameters, sha256 {sha256_file(ckpt)[:16]}")
    typer.echo(f"classes (model order): {', '.join(mdl.config.classes)}")
    enc = mdl.config.encoder
    typer.echo(f"encoder: dims {list(enc.dims)}, depths {list(enc.depths)}, causal {enc.causal}")


@app.command()
def models() -> None:
    """The shipped models: latency, size, training, headline scores, and when to use which."""
    from rich.console import Console
    from rich.table import Table

    from idm.models import shipped_models

    table = Table(title="shipped models (use by name: --model/--bundle NAME)")
    for col in ("name", "latency", "size", "trained on", "unseen kit: F50 groups / classes, masked SDR", "use"):
        table.add_column(col)
    for m in shipped_models():
        lat = m.latency_ms
        clips, recipe = m.clips_seen, m.scores.get("training", {}).get("recipe_clips")
        trained = "-"
        if clips:
            trained = f"{clips / 1e6:.2f}M clips" + (f" ({100 * clips / recipe:.0f} % of the recipe)" if recipe else "")
        ev = m.scores.get("eval", {}).get("unseen", {})
        score = f"{ev['f50_groups']:.3f} / {ev['f50_classes']:.3f}, {ev['masked_sdr_db']:.2f} dB" if ev else "-"
        table.add_row(m.name, f"{lat:.1f} ms" if lat is not None else "-", f"{m.size_bytes() / 2**20:.1f} MiB",
                      trained, score, m.use)  # fmt: skip
    Console().print(table)
    typer.echo("scores: idm/weights/NAME/scores.json (the command that measured them is in it)")


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
