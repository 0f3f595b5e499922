"""Run driver: run folder, datasets, Lightning Trainer and callbacks, resumable chunks, ``model.ckpt`` export.

A run folder holds ``config.yaml`` (the resolved config; after a resume, the one it continues with),
``last.ckpt`` (Lightning's full training state, for ``--resume``), ``model.ckpt`` (the project checkpoint:
config, weights, peak picking, training metadata), ``run.json`` (the same metadata, readable),
``logs/chunk-NNN/metrics.csv`` (one CSV log per chunk) and ``audio/step_NNNNNNN/`` (validation examples).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import yaml

from idm.errors import ConfigError, IDMError, OutputError

__all__ = ["RUN_FILES", "RunOptions", "RunResult", "train"]

#: What a run folder holds (all that ``--force`` removes).
RUN_FILES = ("config.yaml", "last.ckpt", "model.ckpt", "run.json", "logs", "audio")
#: Training keys that may change when a run is resumed: they do not change what is learnt from which data
#: (validation only measures, and tunes the picker's per-class thresholds stored with the model). The
#: ``peak_picking`` section may change too: it only shapes the picker stored with the model.
RESUMABLE_KEYS = frozenset(
    {
        "steps",
        "val_every",
        "val_examples",
        "val_kits",
        "val_split",
        "ckpt_every",
        "log_every",
        "workers",
        "audio_examples",
        "precision",
        "compile_synth",
        "render",
        "fused_synth",
        "compile_encoder",
        "fused_norm",
    }
)

#: Warnings that do not apply here: the data order is resumed by the step-indexed sampler, not by Lightning;
#: DDP's stride notice concerns size-1 axes of depthwise convolution weights.
FALSE_ALARMS = (
    r"You're resuming from a checkpoint that ended before the epoch ended",
    r"Grad strides do not match bucket view strides",
)


@dataclass
class RunOptions:
    """What ``idm train`` was asked to do (command-line options over the config file)."""

    config: Path
    data: Path
    out: Path
    resume: bool = False
    force: bool = False
    max_steps: int | None = None
    max_minutes: float | None = None
    devices: int = 1
    accelerator: str = "auto"
    precision: str | None = None
    seed: int | None = None
    workers: int | None = None
    overrides: tuple[str, ...] = ()
    progress: bool = True
    init_from: Path | None = None


@dataclass
class RunResult:
    """Where a chunk of training ended."""

    step: int
    total_steps: int
    finished: bool
    model_ckpt: Path
    wall_time: float
    val_metrics: dict[str, float] = field(default_factory=dict)
    is_global_zero: bool = True


def _is_child() -> bool:
    """True in the processes Lightning's DDP launcher starts for ranks > 0 (they re-run the command)."""
    return int(os.environ.get("LOCAL_RANK", "0")) > 0 or int(os.environ.get("NODE_RANK", "0")) > 0


def _resolve_config(opts: RunOptions) -> tuple[Any, str]:
    from idm.train.config import load_config

    overrides = list(opts.overrides)
    cfg, file_sha = load_config(opts.config, overrides)
    tr = cfg.training
    changes: dict[str, Any] = {}
    if opts.max_steps is not None:
        changes["steps"] = opts.max_steps
    if opts.seed is not None:
        changes["seed"] = opts.seed
    if opts.precision is not None:
        changes["precision"] = opts.precision
    if opts.workers is not None:
        changes["workers"] = opts.workers
    if changes:
        cfg.training = replace(tr, **changes)
    return cfg, file_sha


def _check_run_dir(opts: RunOptions, cfg: Any) -> list[str]:
    """Check the run folder against --resume/--force (writes nothing); returns the run files a --force removes."""
    out = opts.out
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder")
    if opts.resume:
        if not (out / "last.ckpt").is_file():
            raise OutputError(f"{out}: nothing to resume (no last.ckpt); start the run without --resume")
        saved_path = out / "config.yaml"
        if saved_path.is_file():
            saved = yaml.safe_load(saved_path.read_text())
            _check_resumable(saved, cfg.to_dict(), saved_path, lambda: _saved_step(out / "last.ckpt"))
        return []
    existing = [p for p in RUN_FILES if (out / p).exists()] if out.is_dir() else []
    if existing and not opts.force:
        raise OutputError(
            f"{out}: already holds a training run ({', '.join(existing)}); use --resume to continue it "
            "or --force to start over"
        )
    return existing


def _init_run_dir(opts: RunOptions, cfg: Any, existing: list[str]) -> None:
    """A fresh start: remove the old run's files (--force), write config.yaml."""
    for name in existing:
        p = opts.out / name
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))


def _may_change(key: str) -> bool:
    """Whether config key ``key`` (dotted) may differ from the run's when it is resumed."""
    section, _, name = key.partition(".")
    return section == "peak_picking" or (section == "training" and name in RESUMABLE_KEYS)


def _saved_step(path: Path) -> int:
    """The optimizer steps a Lightning checkpoint was saved after."""
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def _check_resumable(
    saved: dict[str, Any], new: dict[str, Any], where: Path, step: Callable[[], int] | None = None
) -> None:
    """Refuse config changes that would change what the run learnt; ``step`` gives the resume step (read only when
    ``training.lr_decay`` changes: a new decay must give the same rate as the old one at every step before it)."""
    from idm.train.config import TrainingConfig, _plain, lr_factor

    def same_rates(a: Any, b: Any) -> bool:
        n = step() if step is not None else None
        return n is not None and all(lr_factor(a or (), s) == lr_factor(b or (), s) for s in range(n))

    # training keys added since the run started are fine at their default (what the run did without them)
    added = {f"training.{k}": v for k, v in _plain(asdict(TrainingConfig())).items()}

    def walk(a: Any, b: Any, key: str) -> None:
        if a is None and key in added and b == added[key]:
            return
        if isinstance(a, dict) and isinstance(b, dict):
            for k in sorted(set(a) | set(b)):
                walk(a.get(k), b.get(k), f"{key}.{k}" if key else k)
        elif key == "training.lr_decay" and a != b and not same_rates(a, b):
            raise ConfigError(
                f"cannot resume: config key '{key}' is {b!r} but the run has {a!r} ({where}); a "
                "learning-rate decay may only be added or changed from the step the run is resumed from on"
            )
        elif a != b and key != "training.lr_decay" and not _may_change(key):
            raise ConfigError(
                f"cannot resume: config key '{key}' is {b!r} but the run has {a!r} ({where}); "
                f"only training.{{{', '.join(sorted(RESUMABLE_KEYS))}}} and peak_picking may change"
            )

    walk(saved, new, "")


def _init_weights(path: Path, cfg: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Weights of a checkpoint (as :func:`idm.checkpoint.load_model` reads it) to start a new run from.

    Its architecture must equal ``cfg.model`` (name and peak picking may differ). Returns the state dict and
    what the run records about it (path, sha256, the step it was trained to when it says).
    """
    from idm.checkpoint import load_model, read_checkpoint
    from idm.files import sha256_file

    model = load_model(path)
    theirs, mine = model.config.to_dict(), cfg.model.to_dict()
    for key in sorted((set(theirs) | set(mine)) - {"name", "peaks"}):
        if theirs.get(key) != mine.get(key):
            raise ConfigError(
                f"--init-from {path}: its model.{key} differs from the config's; the architectures must be equal"
            )
    meta = read_checkpoint(path).get("training")
    step = meta.get("step") if isinstance(meta, dict) else None
    return model.state_dict(), {"path": str(path), "sha256": sha256_file(path), "step": step}


def _chunk_index(out: Path) -> int:
    logs = out / "logs"
    return len([p for p in logs.iterdir() if p.name.startswith("chunk-")]) if logs.is_dir() else 0


def _metadata(module: Any, trainer: Any, opts: RunOptions, file_sha: str, finished: bool) -> dict[str, Any]:
    import lightning

    cfg = module.config
    return {
        "step": int(trainer.global_step),
        "steps": int(cfg.training.steps),
        "finished": finished,
        "seed": int(cfg.training.seed),
        "config_file": str(opts.config),
        "config_sha256": file_sha,
        "config_digest": cfg.digest(),
        "config": cfg.to_dict(),
        "data": str(opts.data),
        "wall_time_s": round(module.elapsed(), 1),
        "devices": int(trainer.world_size),
        "accelerator": type(trainer.accelerator).__name__,
        "precision": str(trainer.precision),
        "val_metrics": dict(module.val_metrics),
        "init_from": module.init_from,
        "versions": {
            "torch": str(torch.__version__),
            "lightning": str(lightning.__version__),
            "python": platform.python_version(),
        },
    }


def save_model(module: Any, trainer: Any, opts: RunOptions, file_sha: str, finished: bool) -> Path:
    """Write ``model.ckpt`` (project format) and ``run.json`` atomically; rank 0 only."""
    from idm.checkpoint import save_checkpoint
    from idm.model import InverseDrumMachine

    path = opts.out / "model.ckpt"
    if not trainer.is_global_zero:
        return path
    meta = _metadata(module, trainer, opts, file_sha, finished)
    model = InverseDrumMachine(replace(module.config.model, peaks=module.picker()))  # the model's own picker
    model.load_state_dict({k: v.detach().float().cpu() for k, v in module.model.state_dict().items()})
    tmp = path.with_name(".model.ckpt.tmp")
    save_checkpoint(model, tmp, peak_picking=module.picking(), training=meta)
    os.replace(tmp, path)
    tmp_json = opts.out / ".run.json.tmp"
    tmp_json.write_text(json.dumps({**meta, "peak_picking": module.picking()}, indent=1) + "\n")
    os.replace(tmp_json, opts.out / "run.json")
    return path


def save_last(trainer: Any, out: Path) -> None:
    """Lightning's full training state to ``last.ckpt`` (written beside, then renamed); all ranks call it."""
    tmp = out / ".last.ckpt.tmp"
    trainer.save_checkpoint(tmp, weights_only=False)
    trainer.strategy.barrier("idm-save-last")
    if trainer.is_global_zero:
        os.replace(tmp, out / "last.ckpt")
    trainer.strategy.barrier("idm-saved-last")


def apply_speedups(module: Any, tc: Any, data: Any) -> None:
    """What ``training`` asks of the step's speed: the device renderer, the fused or compiled synthesizer, the
    compiled encoder. None of them changes parameter names, checkpoints or what is learnt."""
    if tc.render == "device":
        from idm.data.batch_render import BatchRenderer

        aug = data.train.config.augment
        module.renderer = BatchRenderer(
            data.train.table, aug.pitch_semitones if aug is not None else 0.0, realism=data.train.config.realism
        )
    if tc.fused_synth:
        module.model.synth.use_fused(True)  # Triton kernels on CUDA tensors; the PyTorch path elsewhere
    elif tc.compile_synth:
        module.model.synth.compile()  # in place: parameter names (and checkpoints) are unchanged
    if tc.fused_norm:
        module.model.encoder.use_fused(True)  # Triton on CUDA tensors; the PyTorch LayerNorm elsewhere
    if tc.compile_encoder:
        module.model.encoder.compile()
        module.model.head.compile()


def _callbacks(opts: RunOptions, file_sha: str, t_start: float) -> list[Any]:
    import lightning as L

    class Checkpointing(L.Callback):
        """last.ckpt and model.ckpt every ``ckpt_every`` steps; stop cleanly after ``--max-minutes``."""

        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            step = trainer.global_step
            if step % module.config.training.ckpt_every == 0 and step < trainer.max_steps:
                save_last(trainer, opts.out)
                save_model(module, trainer, opts, file_sha, finished=False)
            if opts.max_minutes is not None:
                late = time.monotonic() - t_start > 60.0 * opts.max_minutes
                if trainer.strategy.reduce_boolean_decision(late, all=False):
                    trainer.should_stop = True

    cbs: list[Any] = [Checkpointing()]
    if opts.progress:
        cbs.append(L.pytorch.callbacks.RichProgressBar(leave=True))
    return cbs


def train(opts: RunOptions) -> RunResult:
    """Run (or continue) training in ``opts.out`` until the configured steps or ``--max-minutes``."""
    t_start = time.monotonic()
    from idm.train.config import resolve_config

    opts = replace(opts, config=resolve_config(opts.config))  # a shipped name -> its file (recorded in run.json)
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from idm.train.data import IDMDataModule, build_datasets
    from idm.train.module import IDMTrainingModule

    if opts.devices < 1:
        raise IDMError(f"--devices must be at least 1, got {opts.devices}")
    if opts.max_minutes is not None and opts.max_minutes <= 0:
        raise IDMError(f"--max-minutes must be positive, got {opts.max_minutes}")
    if opts.accelerator not in ("auto", "cpu", "gpu", "cuda"):
        raise IDMError(f"--accelerator must be auto, cpu or gpu, got {opts.accelerator!r}")
    if opts.accelerator in ("gpu", "cuda") and torch.cuda.device_count() < opts.devices:
        raise IDMError(
            f"--accelerator gpu --devices {opts.devices}: torch sees {torch.cuda.device_count()} CUDA device(s)"
        )
    cfg, file_sha = _resolve_config(opts)
    if 0 < cfg.training.val_examples < opts.devices:
        raise ConfigError(
            f"training.val_examples is {cfg.training.val_examples}: every one of the {opts.devices} devices "
            "needs at least one validation clip"
        )
    if opts.init_from is not None and opts.resume:
        raise IDMError("--init-from starts a new run from a model's weights; a --resume run continues its own")
    init = _init_weights(opts.init_from, cfg) if opts.init_from is not None else None
    existing = _check_run_dir(opts, cfg) if not _is_child() else []
    data = build_datasets(cfg, opts.data)  # before the run folder is touched: bad data leaves nothing behind
    if not _is_child() and not opts.resume:
        _init_run_dir(opts, cfg, existing)
    elif not _is_child():  # the config the run continues with (its resumable keys may have changed)
        (opts.out / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    tc = cfg.training

    L.seed_everything(tc.seed, workers=True, verbose=False)
    module = IDMTrainingModule(cfg, run_dir=opts.out, val_kit_ids=data.val_kit_ids)
    if init is not None:
        module.model.load_state_dict(init[0], strict=True)
        module.init_from = init[1]
    apply_speedups(module, tc, data)
    dm = IDMDataModule(data, tc.batch_size, tc.workers)
    on_gpu = opts.accelerator in ("gpu", "cuda") or (opts.accelerator == "auto" and torch.cuda.is_available())
    if on_gpu:
        torch.set_float32_matmul_precision("high")
    trainer = L.Trainer(
        accelerator="gpu" if opts.accelerator == "cuda" else opts.accelerator,
        devices=opts.devices,
        strategy="ddp" if opts.devices > 1 else "auto",
        precision=tc.precision,
        max_steps=tc.steps,
        max_epochs=-1,
        gradient_clip_val=tc.grad_clip,
        gradient_clip_algorithm="norm",
        val_check_interval=tc.val_every,
        check_val_every_n_epoch=None,
        limit_val_batches=1.0 if data.val is not None else 0,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        logger=CSVLogger(opts.out, name="logs", version=f"chunk-{_chunk_index(opts.out):03d}"),
        log_every_n_steps=tc.log_every,
        enable_checkpointing=False,
        callbacks=_callbacks(opts, file_sha, t_start),
        enable_progress_bar=opts.progress,
        enable_model_summary=False,
        default_root_dir=opts.out,
        benchmark=on_gpu,
    )
    ckpt = opts.out / "last.ckpt" if opts.resume else None
    with warnings.catch_warnings():
        for message in FALSE_ALARMS:
            warnings.filterwarnings("ignore", message=message)
        trainer.fit(module, datamodule=dm, ckpt_path=ckpt, weights_only=True)
        finished = trainer.global_step >= tc.steps
        if finished and data.val is not None and trainer.global_step % tc.val_every != 0:
            trainer.validate(module, datamodule=dm, verbose=False)  # final metrics and tuned thresholds
    save_last(trainer, opts.out)
    path = save_model(module, trainer, opts, file_sha, finished)
    return RunResult(
        int(trainer.global_step), tc.steps, finished, path, module.elapsed(), dict(module.val_metrics),
        trainer.is_global_zero,
    )  # fmt: skip
