"""The ``idm`` command line: ``idm separate`` (stems + MIDI from drum recordings) and diagnostics."""

from __future__ import annotations

import signal
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer

from idm.cliopts import (
    KitFrom,
    MidiChannel,
    NoteLength,
    NoteMap,
    OneLineGroup,
    Replace,
    ReplaceAlign,
    ReplaceMode,
    StemFormat,
    number,
)
from idm.data.cli import app as data_app
from idm.errors import IDMError
from idm.runtime.sonify import DEFAULT_SONIFY_KIT
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
    note_length: NoteLength = 50.0,
    midi_channel: MidiChannel = 10,
    note_map: NoteMap = "gm",
    midi_tempo: Annotated[
        float, typer.Option(help="Tempo of the MIDI file in BPM (notes keep their seconds).", callback=number(20, 400))
    ] = 120.0,
    events: Annotated[
        str,
        typer.Option(
            help="Note events beside the MIDI file: none, csv, json or both (<name>.csv: time,class,note,velocity,"
            "probability; times equal the MIDI notes')."
        ),
    ] = "none",
    save_activations: Annotated[
        bool,
        typer.Option(help="Also write <name>_activations.npz: per-class onset probabilities, frame rate, thresholds."),
    ] = False,
    sonify: Annotated[
        bool, typer.Option(help="Also write <name>_sonified.wav: the transcription played on a sampled kit.")
    ] = False,
    sonify_kit: Annotated[
        str,
        typer.Option(
            help="Kit of --sonify: a name from `idm data kits`, a Hydrogen kit folder, .sf2 or sample folder."
        ),
    ] = DEFAULT_SONIFY_KIT,
    format: StemFormat = "float",
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Files separated at once, each in its own process.")] = 1,
    force: Annotated[bool, typer.Option(help="Replace existing output folders.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars, no result lines.")] = False,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
    plot: Annotated[
        bool,
        typer.Option(
            help="Also write OUT/<name>/<name>.png: waveform, onset probabilities per drum with the picker's "
            "thresholds, and the picked hits (needs matplotlib: the plot extra)."
        ),
    ] = False,
    replace: Replace = None,
    replace_mode: ReplaceMode = "swap",
    replace_align: ReplaceAlign = False,
    kit_from: KitFrom = None,
) -> None:
    """Separate drum recordings into stems (OUT/<name>/<class>.wav) and a MIDI transcription (<name>.mid).

    Inputs may be files or folders (a folder stands for its audio files, sorted by name). By default the shipped
    live model runs through onnxruntime (no PyTorch needed).
    """
    from idm.batch import Outcome, expand_inputs, run_batch
    from idm.progress_view import SeparateView

    try:
        spec, inputs = _separate_spec(inputs, out, model, bundle, backend, config, mode, stems, alpha, onsets,
                                      device, seed, threads, chunk_seconds, delta, note_length, midi_channel,
                                      note_map, midi_tempo, events, save_activations, sonify, sonify_kit, format,
                                      jobs, plot, replace, replace_mode, kit_from, replace_align)  # fmt: skip
        inputs = expand_inputs(inputs)
        _check_names(inputs, out, onsets)
        from idm.runners import build_runner

        runner = build_runner(spec)  # loads the model (and kit) once here: option errors surface before any work
    except IDMError as e:
        if debug:
            raise
        _fail(str(e))
        raise typer.Exit(2) from None

    finished: list[Path] = []

    def done(o: Outcome) -> None:
        finished.append(o.path)
        view.done(o.path, o.folder, o.error)

    try:
        with SeparateView(len(inputs), quiet) as view:
            outcomes = run_batch(spec, inputs, out, force, jobs, done, runner=runner if jobs <= 1 else None,
                                 progress=view.file_progress if view.live else None, debug=debug)  # fmt: skip
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: an unfinished output is removed, never half-written
        left = [p for p in inputs if p not in finished]
        more = f"; {len(left) - 1} more not started" if len(left) > 1 else ""
        _fail(f"interrupted: {left[0]} was not separated (nothing written for it{more}; the outputs listed are "
              "complete)" if left else "interrupted")  # fmt: skip
        raise typer.Exit(130) from None
    failed = sum(o.error is not None for o in outcomes)
    if failed:
        _fail(f"{failed} of {len(inputs)} inputs failed")
        raise typer.Exit(1)


def _check_names(inputs: list[Path], out: Path, onsets: Path | None) -> None:
    """One output folder per input, and --onsets with exactly one input."""
    if onsets is not None and len(inputs) != 1:
        raise IDMError("--onsets takes one input file (the onsets belong to one recording)")
    names = [p.stem for p in inputs]
    dup = {n for n in names if names.count(n) > 1}
    if dup:
        raise IDMError(f"several inputs would write the same folder {out / sorted(dup)[0]}; rename one")


def _separate_spec(
    inputs: list[Path],
    out: Path,
    model: str | None,
    bundle: str | None,
    backend: Backend,
    config: Path | None,
    mode: Mode,
    stems: int,
    alpha: float,
    onsets: Path | None,
    device: Device,
    seed: int,
    threads: int | None,
    chunk_seconds: float,
    delta: str | None,
    note_length: float,
    midi_channel: int,
    note_map: str,
    midi_tempo: float,
    events: str,
    save_activations: bool,
    sonify: bool,
    sonify_kit: str,
    format: str,
    jobs: int,
    plot: bool = False,
    replace: str | None = None,
    replace_mode: str = "swap",
    kit_from: str | None = None,
    replace_align: bool = False,
) -> tuple[Any, list[Path]]:
    """Check the options of ``idm separate`` and turn them into a :class:`~idm.runners.RunnerSpec`."""
    from idm.classes import parse_class_values
    from idm.midi import MidiStyle
    from idm.runners import RunnerSpec
    from idm.runtime.audio_format import audio_format
    from idm.runtime.events_out import parse_event_formats
    from idm.runtime.extras import ExtraOutputs

    if stems not in (5, 9):
        raise IDMError(f"--stems must be 9 or 5, got {stems}")
    if not alpha > 0:
        raise IDMError(f"--alpha must be positive, got {alpha}")
    if chunk_seconds < 1:
        raise IDMError(f"--chunk-seconds must be at least 1, got {chunk_seconds}")
    if threads is not None and threads < 1:
        raise IDMError(f"--threads must be at least 1, got {threads}")
    if jobs < 1:
        raise IDMError(f"--jobs must be at least 1, got {jobs}")
    try:
        sensitivity = parse_class_values(delta, "--delta") if delta is not None else None
    except ValueError as e:
        raise IDMError(str(e)) from None
    style = MidiStyle.of(note_length, midi_channel, note_map, midi_tempo)
    fmt = audio_format(format)
    extras = ExtraOutputs(parse_event_formats(events), save_activations, sonify_kit if sonify else None, audio=fmt)
    which = _choose_backend(backend, model, bundle, onsets)
    if which == "onnx":
        ref: str | None = bundle or model or "live"
        if threads is None and jobs > 1:
            threads = 1  # one core per job
    else:
        ckpt = model if model is not None else default_model()
        if ckpt is None:
            raise IDMError(
                "no model: pass --model PATH (a project checkpoint, or the official IDM .ckpt with its model.yaml); "
                "this installation ships no weights"
            )
        ref = str(ckpt)
    spec = RunnerSpec(backend=which, ref=ref, config=config, mode=mode.value, stems=stems, alpha=alpha,
                      device=device.value, seed=seed, threads=threads, chunk_seconds=chunk_seconds, onsets=onsets,
                      delta=sensitivity, style=style, audio=fmt, extras=extras, plot=plot, replace=replace,
                      replace_mode=replace_mode, replace_align=replace_align, kit_from=kit_from)  # fmt: skip
    if replace_align and replace is None:
        raise IDMError("--replace-align moves replacement samples: it needs --replace")
    if kit_from is not None and which != "onnx":
        raise IDMError("--kit-from runs on the onnx backend (--bundle live|paper|DIR), not on a torch checkpoint")
    if replace is not None:
        from idm.runtime.engine.replace import REPLACE_MODES

        if replace_mode not in REPLACE_MODES:
            raise IDMError(f"--replace-mode must be one of {', '.join(REPLACE_MODES)}, got {replace_mode!r}")
        if which != "onnx":
            raise IDMError("--replace runs on the onnx backend (--bundle live|paper|DIR), not on a torch checkpoint")
    if plot:
        from idm.torchcheck import require

        require("matplotlib", "--plot", "plot")
    return spec, inputs


@app.command()
def demo(
    bundle: Annotated[str, typer.Option(help="live or paper, or a bundle folder (idm-export).")] = "live",
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the demo loop and its separation.")] = Path(
        "out/demo"
    ),
    seconds: Annotated[
        float, typer.Option(help="Length of the demo loop.", callback=number(0, 600, lo_open=True))
    ] = 8.0,
    kit_from: KitFrom = None,
) -> None:
    """Render the built-in demo drum loop and separate it (stems + MIDI) with a shipped model (no PyTorch needed).

    With --kit-from, the loop's performance is also played on that kit (transferred.wav).
    """
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
             delta=None, note_length=50.0, midi_channel=10, note_map="gm", midi_tempo=120.0, events="none",
             save_activations=False, sonify=False, sonify_kit=DEFAULT_SONIFY_KIT, format="float", jobs=1,
             quiet=False, debug=False, kit_from=kit_from)  # fmt: skip


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
            from idm.runtime.engine.bundle import load_bundle

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
    for col in ("name", "latency", "size", "trained on", "unseen kits: F50 groups / classes, masked SDR", "use"):
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

from idm.eval.cli import eval_command, plot_scores_command  # noqa: E402 -- ``idm eval``, kept at the end for easy merges

app.command("eval")(eval_command)
app.command("plot-scores")(plot_scores_command)


def main() -> None:
    """Entry point of the ``idm`` script. SIGTERM stops like Ctrl-C: the output being written is removed."""

    def on_term(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        app()
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
