"""``idm-export``: a checkpoint to a streaming ONNX bundle, or ``--check`` an existing bundle."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from idm.cliopts import OneLineCommand
from idm.errors import IDMError
from idm.version import print_version

__all__ = ["app", "main"]

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command(
    cls=OneLineCommand,
    help=(
        "Export an IDM checkpoint (the project's own, or an official .ckpt with its model.yaml) to a bundle "
        "folder that any host can run with onnxruntime alone: encoder.onnx (streaming, explicit state), "
        "synth.onnx, mel_fb.npy, noise.npy, parity.npz, manifest.json, README.md. "
        "With --check DIR, re-validate an existing bundle instead (hashes, graphs, a streamed parity run)."
    ),
)
def export(
    ckpt: Annotated[Path | None, typer.Argument(help="Checkpoint (.ckpt/.pt) to export.", show_default=False)] = None,
    out: Annotated[
        Path | None, typer.Option("-o", "--out", help="Bundle folder [default: ./CKPT-stem.idm-bundle].")
    ] = None,
    config: Annotated[
        Path | None, typer.Option("--config", help="model.yaml of an official checkpoint [default: found beside it].")
    ] = None,
    opset: Annotated[int, typer.Option("--opset", help="ONNX opset (17 to 20).")] = 17,
    precision: Annotated[
        str, typer.Option("--precision", help="fp32, or fp16 (weights stored in fp16, float32 compute).")
    ] = "fp32",
    quantize: Annotated[
        str | None, typer.Option("--quantize", help="int8: dynamic int8 quantization of the encoder's matrix products.")
    ] = None,
    lookahead: Annotated[
        int | None,
        typer.Option(
            "--lookahead",
            help="Declared look-ahead in frames: at least the model's own (57 official); more adds a delay.",
            min=0,
            max=4096,
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace a non-empty output folder.")] = False,
    check: Annotated[
        Path | None,
        typer.Option("--check", help="Validate this bundle folder (or shipped name: live, paper) and exit."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No spinner while checking or exporting.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[
        bool, typer.Option("--version", is_eager=True, callback=print_version, help="Print versions and exit.")
    ] = False,
) -> None:
    from rich.console import Console

    err = Console(stderr=True, quiet=quiet)  # the spinner: stderr, only on a terminal (rich), never with -q
    try:
        if check is not None:
            from idm.export.check import check_bundle

            from idm.models import resolve_bundle

            check = resolve_bundle(str(check))
            with err.status(f"checking {check}"):
                rep = check_bundle(check)
            errs = ", ".join(f"{k} {v:.2g} (tol {rep.tolerance[k]:g})" for k, v in rep.errors.items())
            graphs = "graphs" if rep.checker else "graph signatures (onnx.checker skipped: the onnx package is absent)"
            print(f"ok: {check}: hashes, {graphs} and parity run pass; max errors: {errs}")
            return
        if ckpt is None:
            raise typer.BadParameter("give a checkpoint to export, or --check DIR")
        from idm.torchcheck import require, require_torch

        require_torch("idm-export (exporting a checkpoint)", extra="export")
        require("onnx", "idm-export (exporting a checkpoint)", extra="export")
        from idm.export.bundle import ExportOptions, export_bundle

        t0 = time.perf_counter()
        opts = ExportOptions(opset=opset, precision=precision, quantize=quantize, lookahead=lookahead, force=force)
        with err.status("exporting") as status:
            path = export_bundle(ckpt, out, opts, config=config, progress=lambda m: status.update(f"exporting: {m}"))
        print(f"wrote {path} in {time.perf_counter() - t0:.1f} s")
    except IDMError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        raise typer.Exit(1) from None


def main() -> None:
    """Console entry point of ``idm-export``."""
    app()


if __name__ == "__main__":
    main()
