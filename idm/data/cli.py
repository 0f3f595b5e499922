"""``idm data``: list kits, render MIDI with a kit for listening, build the training pack."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from idm.errors import IDMError

if TYPE_CHECKING:
    from idm.data.kits import Kit

app = typer.Typer(
    help="Training data: the registered drum kits, rendering MIDI with them, the training pack.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

KitsRoot = Annotated[
    Path | None,
    typer.Option(help="Kits root: the Debian root (default /usr/share) or a data pack folder."),
]


def _fail(e: Exception) -> NoReturn:
    typer.echo(f"error: {e}", err=True)
    raise typer.Exit(1)


def _kit(name: str, root: Path | None) -> Kit:
    """A registered kit name, or a path: Hydrogen kit folder, .sf2 file, or folder of one-shots."""
    from idm.data.kits import load_kit_ref

    return load_kit_ref(name, root)


@app.command()
def kits(kits_root: KitsRoot = None) -> None:
    """Table of the registered kits: role, classes present, layers, license."""
    from rich.console import Console
    from rich.table import Table

    from idm.classes import CLASSES
    from idm.data.kitmap import load_kitmap
    from idm.data.kits import load_kit

    table = Table("kit", "role", "classes", "layers", "license")
    try:
        for name in load_kitmap().names():
            kit = load_kit(name, kits_root)
            lacks = [c for c in CLASSES if not kit.has(c)]
            classes = f"{len(CLASSES) - len(lacks)}/{len(CLASSES)}" + (f" (no {', '.join(lacks)})" if lacks else "")
            table.add_row(kit.name, kit.role, classes, str(kit.n_layers), kit.license)
    except IDMError as e:
        _fail(e)
    Console(width=max(Console().width, 140)).print(table)


@app.command()
def render(
    midi: Annotated[Path, typer.Argument(help="MIDI file (GM / Groove MIDI drum notes).")],
    kit: Annotated[str, typer.Option(help="Registered kit name, or a Hydrogen kit folder, .sf2 or one-shot folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Mixture WAV to write.")],
    stems: Annotated[bool, typer.Option(help="Also write OUT_stems/<class>.wav.")] = False,
    seed: Annotated[int, typer.Option(help="Seed of the velocity-layer choices (and augmentations).")] = 0,
    augment: Annotated[bool, typer.Option(help="Apply the training augmentations.")] = False,
    kits_root: KitsRoot = None,
    force: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
) -> None:
    """Render a MIDI file with a kit (to listen to what the model trains on)."""
    import numpy as np
    import soundfile as sf

    from idm.classes import CLASSES
    from idm.data.gmd import read_events
    from idm.data.kits import SAMPLE_RATE
    from idm.data.render import RenderAugment
    from idm.data.render import render as render_events

    stem_dir = out.with_name(out.stem + "_stems")
    try:
        if out.exists() and not force:
            raise IDMError(f"{out} exists; pass --force to replace it")
        if stems and stem_dir.exists() and not force:
            raise IDMError(f"{stem_dir} exists; pass --force to replace it")
        events = read_events(midi)
        if not len(events):
            raise IDMError(f"{midi}: no drum notes")
        k = _kit(kit, kits_root)
        tail = max((la.audio.size for ins in k.instruments.values() for i in ins for la in i.layers), default=0)
        n = int(np.ceil(events.time[-1] * SAMPLE_RATE)) + tail
        res = render_events(events, k, n, seed, RenderAugment() if augment else None, stems)
        out.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(out), res.mixture, SAMPLE_RATE, subtype="FLOAT")
        if stems and res.stems is not None:
            stem_dir.mkdir(parents=True, exist_ok=True)
            for c, name in enumerate(CLASSES):
                sf.write(str(stem_dir / f"{name}.wav"), res.stems[c], SAMPLE_RATE, subtype="FLOAT")
    except (IDMError, OSError) as e:
        _fail(e)
    played = len(res.events)
    typer.echo(f"{out}: {n / SAMPLE_RATE:.1f} s, {played} of {len(events)} hits played by {k.name}")


@app.command()
def pack(
    gmd: Annotated[Path, typer.Option(help="Groove MIDI Dataset root (the folder with info.csv).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Pack folder to write.")],
    kits_root: KitsRoot = None,
    force: Annotated[bool, typer.Option(help="Replace an existing pack folder.")] = False,
) -> None:
    """Build the training pack: every registered kit as FLAC + metadata, GMD train/validation MIDI."""
    from rich.console import Console

    from idm.data.pack import write_pack

    console = Console(stderr=True)
    try:
        with console.status("packing") as status:
            rep = write_pack(gmd, out, kits_root, force, progress=lambda m: status.update(f"packing {m}"))
    except IDMError as e:
        _fail(e)
    typer.echo(
        f"{rep.path}: {rep.bytes / 2**20:.1f} MiB, {rep.kits} kits ({rep.layers} layers), "
        f"{rep.performances} GMD performances"
    )
