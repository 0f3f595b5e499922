"""``--version`` for every command line: the package version, and the versions of what it runs on."""

from __future__ import annotations

import contextlib

import typer

__all__ = ["print_version"]


def print_version(value: bool) -> None:
    """Typer callback of an eager ``--version`` flag: print and exit."""
    if not value:
        return
    import importlib.metadata as md
    import sys

    import idm

    parts = [f"inverse-drum-machine {idm.__version__}", f"python {sys.version.split()[0]}"]
    for dist in ("onnxruntime", "onnxruntime-gpu", "numpy", "torch"):
        with contextlib.suppress(md.PackageNotFoundError):
            parts.append(f"{dist} {md.version(dist)}")
    typer.echo(", ".join(parts))
    raise typer.Exit()
