"""``idm data``: list kits, render MIDI with a kit for listening, build the training pack, check sample leaks."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from idm.cliopts import number
from idm.errors import IDMError

if TYPE_CHECKING:
    from idm.data.fingerprint import FingerprintReport
    from idm.data.kits import Kit

app = typer.Typer(
    help="Training data: the registered drum kits and pools, rendering MIDI with them, the training pack, "
    "the check that no evaluation sample leaks into training.",
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
    """Table of the registered kits and pools: role, classes present, layers, license."""
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
    seed: Annotated[
        int, typer.Option(help="Seed of the velocity-layer choices (and augmentations).", min=0, max=2**32)
    ] = 0,
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
    """Build the training pack: every registered kit and pool as FLAC + metadata, GMD train/validation MIDI."""
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


@app.command()
def fingerprint(
    kits_root: KitsRoot = None,
    check: Annotated[
        str | None,
        typer.Option(help="Comma-separated kit names or paths to check (default: the unseen kits, role validation)."),
    ] = None,
    against: Annotated[
        str | None,
        typer.Option(help="Comma-separated kit names or paths they must not copy (default: training kits and pools)."),
    ] = None,
    threshold: Annotated[
        float,
        typer.Option(
            help="Similarity (cosine, 0-1) from which two samples count as the same recording.", callback=number(0, 1)
        ),
    ] = 0.9,
    top: Annotated[int, typer.Option(help="Also list this many of the most similar pairs.", min=0, max=100000)] = 5,
    reserved: Annotated[
        bool, typer.Option(help="Also compare the reserved evaluation sounds, where installed, with every kit loaded.")
    ] = True,
) -> None:
    """Check that no evaluation-kit sample copies a training kit or pool sample (onset-aligned cosine).

    By default every sample of the unseen kits (role validation) is compared with every sample of
    the training kits (roles training, augmentation) and pools, and the reserved evaluation sounds,
    when installed, with all of them. Prints per checked kit its most similar pair; exits with 1
    when a pair reaches the threshold.
    """
    from idm.data.fingerprint import Sample, compare, kit_samples, reserved_samples
    from idm.data.kitmap import load_kitmap
    from idm.data.kits import DEFAULT_KITS_ROOT

    def refs(text: str | None, roles: tuple[str, ...]) -> list[str]:
        return [k.strip() for k in text.split(",") if k.strip()] if text else load_kitmap().names(roles)

    reports = []
    try:
        checked = [_kit(k, kits_root) for k in refs(check, ("validation",))]
        others = [_kit(k, kits_root) for k in refs(against, ("training", "augmentation", "pool"))]
        other_samples = [s for k in others for s in kit_samples(k)]
        checked_samples = [s for k in checked for s in kit_samples(k)]
        rep = compare(checked_samples, other_samples, threshold, top)
        typer.echo(f"checked kits against {rep.references} samples of {len(others)} kits and pools:")
        _print_matches(rep)
        reports.append(rep)
        root = kits_root if kits_root is not None else DEFAULT_KITS_ROOT
        found: list[Sample] = reserved_samples(root) if reserved and not (root / "kits.json").is_file() else []
        if found:
            res = compare(found, other_samples + checked_samples, threshold, top)
            typer.echo(f"reserved evaluation sounds against all {res.references} samples above:")
            _print_matches(res)
            reports.append(res)
        elif reserved:
            typer.echo(f"reserved evaluation sounds: none installed under {root}, not compared")
    except IDMError as e:
        _fail(e)
    bad = [(c, a, b) for r in reports for c, a, b in r.above]
    for c, a, b in bad[:20]:
        typer.echo(f"error: {a.kit}: {a.label} ~ {b.kit}: {b.label} (similarity {c:.3f})", err=True)
    if bad:
        typer.echo(f"error: {len(bad)} sample pairs reach the threshold {threshold:g}", err=True)
        raise typer.Exit(1)


def _print_matches(rep: FingerprintReport) -> None:
    width = max((len(m.kit) for m in rep.matches), default=4)
    for m in rep.matches:
        typer.echo(f"  {m.kit:<{width}}  {m.samples:4d} samples  max {m.cosine:.3f}  "
                   f"{m.sample} ~ {m.other_kit}: {m.other_sample}")  # fmt: skip
    if rep.top:
        typer.echo("  most similar pairs:")
        for c, a, b in rep.top:
            typer.echo(f"    {c:.3f}  {a.kit}: {a.label} ~ {b.kit}: {b.label}")
