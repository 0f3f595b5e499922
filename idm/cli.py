"""The ``idm`` command line: ``idm separate`` (stems + MIDI from drum recordings) and diagnostics.

:func:`main` runs ``idm separate`` straight from :mod:`idm.separate_cli` (argparse: no typer, rich or pydantic to
import, so a short file separates in about a second); every other command, and ``app`` for tests and embedding,
come from the typer app in :mod:`idm.cli_app`, imported on first use. The backend helpers below are shared.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from idm.errors import IDMError

__all__ = ["default_model", "main", "usable_cores"]  # and ``app``, the typer app (module __getattr__)

_TORCH_HINT = "pip install 'inverse-drum-machine[torch]'"


def default_model() -> Path | None:
    """The checkpoint of the torch backend when ``--model`` is not given: the shipped live model (if installed)."""
    from idm.models import shipped_model

    try:
        return shipped_model("live").checkpoint
    except IDMError:
        return None


def _choose_backend(backend: str, model: str | None, bundle: str | None, onsets: Path | None) -> str:
    """onnx or torch: explicit, else torch only for what needs it (a checkpoint path, --onsets), else onnx."""
    from idm.models import SHIPPED

    if backend != "auto":
        chosen = backend
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


def _onnx_runner(
    ref: str,
    mode: str,
    stems: int,
    alpha: float,
    device: str,
    threads: int | None,
    delta: float | dict[str, float] | None,
    style: Any,
) -> Any:
    from idm.models import resolve_bundle
    from idm.runtime.offline import OfflineConfig, OfflineSeparator

    cfg = OfflineConfig(mode=mode, stems=stems, alpha=alpha, provider=device, threads=threads or usable_cores(),
                        delta=delta, midi=style)  # fmt: skip
    sep = OfflineSeparator(resolve_bundle(ref), cfg)
    return lambda path, out, force: sep.separate_file(path, out, force=force).folder


def _torch_runner(
    model: str | None,
    config: Path | None,
    mode: str,
    stems: int,
    alpha: float,
    device: str,
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

    if device == "cuda" and not torch.cuda.is_available():
        raise IDMError("--device cuda: no CUDA device is available to torch")
    if threads is not None:
        torch.set_num_threads(threads)
    cfg = SeparatorConfig(
        mode=mode, alpha=alpha, seed=seed, device=device, chunk_seconds=chunk_seconds, stems=stems,
        midi=style,
    )  # fmt: skip
    sep = Separator.from_checkpoint(ckpt, cfg, config)
    if delta is not None:
        own = sep.model.config.peaks
        sep.config.peaks = replace(own, delta=delta) if isinstance(delta, float) else (
            replace(own, class_delta={**own.class_delta, **delta}))  # fmt: skip
    return lambda path, out, force: sep.separate_file(path, out, onsets=onsets, force=force)


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the platform has one)."""
    import os

    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def main() -> None:
    """Entry point of the ``idm`` script."""
    args = sys.argv[1:]
    try:
        if args[:1] == ["separate"]:
            from idm.separate_cli import run

            sys.exit(run(args[1:]))
        from idm.cli_app import app as typer_app

        typer_app()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


def __getattr__(name: str) -> Any:
    """``idm.cli.app``: the typer app, imported on first use."""
    if name == "app":
        from idm.cli_app import app as typer_app

        return typer_app
    raise AttributeError(f"module 'idm.cli' has no attribute {name!r}")
