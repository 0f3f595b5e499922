"""The ``idm`` commands as a typer app: ``idm separate`` (parsed by :mod:`idm.separate_cli`), demo, info, models,
data, train and eval. :func:`idm.cli.main` runs ``idm separate`` without importing this module (or typer)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from idm.data.cli import app as data_app
from idm.errors import IDMError
from idm.version import print_version

app = typer.Typer(
    help="Inverse Drum Machine: drum transcription and separation (stems + MIDI) from drum mixes.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=print_version, help="Print versions and exit.")
    ] = False,
) -> None:
    """Inverse Drum Machine: drum transcription and separation (stems + MIDI) from drum mixes."""


def _fail(msg: str) -> None:
    typer.echo(f"error: {msg}", err=True)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def separate(ctx: typer.Context) -> None:
    """Separate drum recordings into stems (OUT/<name>/<class>.wav) and a MIDI transcription (<name>.mid).

    By default the shipped live model runs through onnxruntime (no PyTorch needed). Options: idm separate --help.
    """
    from idm.separate_cli import run

    code = run(list(ctx.args))
    if code:
        raise typer.Exit(code)


@app.command()
def demo(
    bundle: Annotated[str, typer.Option(help="live or paper, or a bundle folder (idm-export).")] = "live",
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the demo loop and its separation.")] = Path(
        "out/demo"
    ),
    seconds: Annotated[float, typer.Option(help="Length of the demo loop.")] = 8.0,
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
    from idm.separate_cli import run

    code = run([str(wav), "--out", str(out), "--bundle", bundle, "--backend", "onnx", "--force"])
    if code:
        raise typer.Exit(code)


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
