"""The ``idm train`` command: a thin typer shell over :func:`idm.train.run.train`."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from idm.cliopts import number
from idm.errors import IDMError

__all__ = ["train"]


class Accelerator(str, Enum):
    auto = "auto"
    cpu = "cpu"
    gpu = "gpu"


def train(
    config: Annotated[
        Path, typer.Argument(help="Training config: a YAML file, or live, paper or tiny (the shipped ones).")
    ],
    data: Annotated[Path, typer.Option(help="Groove MIDI Dataset root, or a data pack folder from 'idm data pack'.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Run folder (checkpoints, logs, audio examples).")],
    resume: Annotated[bool, typer.Option(help="Continue the run in OUT from its last.ckpt.")] = False,
    force: Annotated[bool, typer.Option(help="Start over in an OUT that already holds a run.")] = False,
    init_from: Annotated[
        Path | None,
        typer.Option(
            help="Fine-tune: start a new run from the weights of a checkpoint (as idm separate reads it) with "
            "the same architecture (fresh optimizer, step 0); the config may change the loss, data and schedule."
        ),
    ] = None,
    max_steps: Annotated[
        int | None, typer.Option(help="Total optimizer steps (overrides training.steps).", min=1)
    ] = None,
    max_minutes: Annotated[
        float | None,
        typer.Option(
            help="Stop cleanly (checkpoint saved) after this many minutes; --resume goes on.",
            callback=number(0, None, lo_open=True),
        ),
    ] = None,
    devices: Annotated[
        int, typer.Option(help="Devices (GPUs or CPU processes); more than 1 trains with DDP.", min=1, max=1024)
    ] = 1,
    accelerator: Annotated[Accelerator, typer.Option(help="Where to train.")] = Accelerator.auto,
    precision: Annotated[
        str | None, typer.Option(help="32-true, bf16-mixed or 16-mixed (overrides training.precision).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Run seed (overrides training.seed).", min=0, max=2**32)] = None,
    workers: Annotated[
        int | None, typer.Option(help="Data loader workers per device (overrides training.workers).", min=0, max=256)
    ] = (None),
    override: Annotated[
        list[str] | None, typer.Option(help="SECTION.KEY=VALUE config override (YAML value); repeatable.")
    ] = None,
    threads: Annotated[int | None, typer.Option(help="torch CPU threads per process.", min=1, max=256)] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    debug: Annotated[bool, typer.Option(help="Show tracebacks.")] = False,
) -> None:
    """Train an IDM model (PyTorch Lightning). Resumable: --max-minutes stops cleanly, --resume continues.

    Writes OUT/model.ckpt (project checkpoint: config, weights, peak picking, training metadata; what
    idm-export and idm separate read), OUT/last.ckpt (full training state), OUT/logs/ and OUT/audio/.
    """
    try:
        if resume and force:
            raise IDMError("--resume and --force exclude each other")
        from idm.torchcheck import require, require_torch

        require_torch("idm train", extra="train")
        require("lightning", "idm train", extra="train")
        import torch

        from idm.train.run import RunOptions
        from idm.train.run import train as run_train

        if threads is not None:
            if threads < 1:
                raise IDMError(f"--threads must be at least 1, got {threads}")
            torch.set_num_threads(threads)
        opts = RunOptions(
            config=config,
            data=data,
            out=out,
            resume=resume,
            force=force,
            max_steps=max_steps,
            max_minutes=max_minutes,
            devices=devices,
            accelerator=accelerator.value,
            precision=precision,
            seed=seed,
            workers=workers,
            overrides=tuple(override or ()),
            progress=not quiet,
            init_from=init_from,
        )
        result = run_train(opts)
    except IDMError as e:
        if debug:
            raise
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from None
    if not result.is_global_zero:
        return
    state = "finished" if result.finished else "stopped (continue with --resume)"
    typer.echo(f"step {result.step}/{result.total_steps} {state}; {result.model_ckpt}")
    if result.val_metrics:
        shown = {
            k: v for k, v in result.val_metrics.items() if k in ("val/f_micro", "val/f_micro_tuned", "val/f_macro")
        }
        typer.echo("validation: " + ", ".join(f"{k} {v:.3f}" for k, v in shown.items()))
