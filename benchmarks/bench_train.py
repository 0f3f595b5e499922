"""Training throughput, end to end: clips per second per device, the original pipeline and the fast one, side by side.

Each variant builds the run as ``idm train`` does (config, data pack, loader workers, training module, Adam, the
config's precision) and times whole optimizer steps, loader included, after a warm-up. Prints numbers, asserts
nothing.

- ``before``: the original pipeline: numpy renders in the loader workers (``training.render=workers``), the
  config's batch, eager PyTorch, the original data (12 kits, no pools or realism effects).
- ``after``: plans in the workers, audio rendered on the device (``training.render=device``), the fused Triton
  synthesizer (``training.fused_synth``) on CUDA (the compiled one with ``--no-fused``), the encoder's Triton
  channel LayerNorm (``training.fused_norm``; PyTorch's with ``--no-fused-norm``), with ``--compile`` the
  compiled encoder
  (``training.compile_encoder``), a larger batch (``--after-batch``), and the config's full data (pools,
  procedural voices, realism effects): more work per clip than ``before``.

    python benchmarks/bench_train.py --data .pack --configs live paper --device cuda
    python benchmarks/bench_train.py --data .pack --configs tiny --device cpu --steps 2 --warmup 1
    python benchmarks/bench_train.py --data .pack --configs live --variants after --profile 5 --device cuda

``--profile N`` then runs N more steps under ``torch.profiler`` and prints where the device time goes (kernels
grouped by the stage that launched them, and the device's busy share of the wall time).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]


def build(name: str, variant: str, args: argparse.Namespace) -> tuple[Any, Any, Any, Any]:
    """Module, optimizer, loader iterator and config of one variant."""
    from idm.train.config import load_config
    from idm.train.data import IDMDataModule, build_datasets
    from idm.train.module import IDMTrainingModule
    from idm.train.run import apply_speedups
    from idm.train.sampling import EpochStream, StepSampler

    after = variant == "after"
    batch = args.after_batch.get(name, 32) if after else None
    overrides = [
        "training.val_examples=0",
        f"training.render={'device' if after else 'workers'}",
        f"training.fused_synth={'true' if after and args.device == 'cuda' and not args.no_fused else 'false'}",
        f"training.compile_encoder={'true' if after and args.device == 'cuda' and args.compile else 'false'}",
        f"training.fused_norm={'true' if after and args.device == 'cuda' and not args.no_fused_norm else 'false'}",
    ]
    if not after:  # the original recipe: eager, the 12 kits, one synthetic room, no pools, no realism effects
        overrides += ["training.compile_synth=false", "data.pools=[]", "data.realism=null",
                      "data.augment.room_prob=0.3", "data.augment.pool_kit_prob=0", "data.augment.pool_class_prob=0",
                      "data.augment.procedural_prob=0"]  # fmt: skip
    if batch:
        overrides.append(f"training.batch_size={batch}")
    cfg, _ = load_config(ROOT / "configs" / f"{name}.yaml", overrides)
    tc = cfg.training
    data = build_datasets(cfg, args.data)
    module = IDMTrainingModule(cfg).to(args.device)
    apply_speedups(module, tc, data)
    opt = module.configure_optimizers()
    dm = IDMDataModule(data, tc.batch_size, args.workers)
    total = args.warmup + args.steps + args.profile
    sampler = StepSampler(tc.batch_size, total, 0, 0, 1)
    loader = dm._loader(EpochStream(data.train, data.train_examples), sampler)
    return module, opt, iter(loader), cfg


def run(name: str, variant: str, args: argparse.Namespace) -> dict[str, float]:
    module, opt, it, cfg = build(name, variant, args)
    tc = cfg.training
    dev = torch.device(args.device)
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(tc.precision)
    cuda = dev.type == "cuda"
    times, waits = [], []
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    for i in range(args.warmup + args.steps):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        wait, res = one_step(module, opt, it, tc, dev, dtype, i)
        if cuda:
            torch.cuda.synchronize()
        t2 = time.perf_counter()
        if i >= args.warmup:
            times.append(t2 - t0)
            waits.append(wait)
    if args.profile:
        profile_steps(module, opt, it, tc, dev, dtype, args.profile)
    step = sum(times) / len(times)
    out = {
        "batch": float(tc.batch_size),
        "clips_s": tc.batch_size / step,
        "step_ms": 1e3 * step,
        "wait_ms": 1e3 * sum(waits) / len(waits),
        "mem_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0,
        "loss": float(res["loss"].detach()),
    }
    line = f"{name:6s} {variant:6s} batch {tc.batch_size:4d}: {out['clips_s']:8.1f} clips/s  "
    line += f"step {out['step_ms']:7.1f} ms (loader wait {out['wait_ms']:6.1f} ms)  "
    line += f"peak {out['mem_gib']:.1f} GiB  loss {out['loss']:.3f}"
    print(line, flush=True)
    return out


def one_step(module: Any, opt: Any, it: Any, tc: Any, dev: torch.device, dtype: Any, step: int) -> tuple[float, Any]:
    """One optimizer step, its stages marked for the profiler; returns the loader wait (s) and the losses."""
    from torch.profiler import record_function

    t0 = time.perf_counter()
    with record_function("stage:loader"):
        batch = next(it)
        batch = {k: v.to(dev, non_blocking=True) for k, v in batch.items()}
    wait = time.perf_counter() - t0
    with record_function("stage:render"):
        batch = module.render(batch)
    with (
        record_function("stage:forward"),
        torch.autocast(device_type=dev.type, dtype=dtype or torch.float32, enabled=dtype is not None),
    ):
        res = module.training_loss(batch, step)
    with record_function("stage:backward"):
        res["loss"].backward()
    with record_function("stage:optimizer"):
        torch.nn.utils.clip_grad_norm_(module.parameters(), tc.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return wait, res


def profile_steps(module: Any, opt: Any, it: Any, tc: Any, dev: torch.device, dtype: Any, steps: int) -> None:
    """Run ``steps`` more steps under the profiler; print the device time per stage and the top kernels."""
    from torch.profiler import ProfilerActivity, profile

    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if dev.type == "cuda" else [])
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    sync()
    t0 = time.perf_counter()
    with profile(activities=acts) as prof:
        for i in range(steps):
            one_step(module, opt, it, tc, dev, dtype, 10_000 + i)
        sync()
    wall = (time.perf_counter() - t0) / steps
    events = prof.key_averages()
    cuda = torch.autograd.DeviceType.CUDA
    kernels = [e for e in events if e.device_type == cuda and not e.is_user_annotation]
    busy = sum(e.self_device_time_total for e in kernels) / steps / 1e3
    print(f"  profiled {steps} steps: wall {1e3 * wall:.1f} ms/step (with the profiler's overhead), kernels "
          f"{busy:.1f} ms/step", flush=True)  # fmt: skip
    host = {e.key: e for e in events if e.key.startswith("stage:") and e.device_type != cuda}
    span = {e.key: e for e in events if e.key.startswith("stage:") and e.device_type == cuda}
    for key in ("stage:loader", "stage:render", "stage:forward", "stage:backward", "stage:optimizer"):
        h = host[key].cpu_time_total / steps / 1e3 if key in host else 0.0
        g = span[key].self_device_time_total / steps / 1e3 if key in span else 0.0
        print(f"    {key[6:]:10s} host {h:7.1f} ms  device span {g:7.1f} ms", flush=True)
    print("    (backward kernels run on autograd's thread: they are in the kernel list, not in a span)", flush=True)
    top = sorted(kernels, key=lambda e: -e.self_device_time_total)[:25]
    for e in top:
        ms = e.self_device_time_total / steps / 1e3
        print(f"    {ms:7.2f} ms  x{e.count // steps:<4d} {e.key[:100]}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="data pack (idm data pack) or GMD root")
    p.add_argument("--configs", nargs="+", default=["live", "paper"])
    p.add_argument("--variants", nargs="+", default=["before", "after"], choices=["before", "after"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    p.add_argument("--after-batch", nargs="*", default=["live=64", "paper=32"], help="NAME=BATCH of 'after'")
    p.add_argument("--compile", action="store_true", help="'after' with the compiled encoder")
    p.add_argument("--no-fused", action="store_true", help="'after' with the compiled synthesizer, not the fused one")
    p.add_argument("--no-fused-norm", action="store_true", help="'after' with PyTorch's LayerNorm in the encoder")
    p.add_argument("--profile", type=int, default=0, metavar="N", help="then N steps under torch.profiler")
    args = p.parse_args()
    args.after_batch = {k: int(v) for k, v in (x.split("=") for x in args.after_batch)}
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.set_float32_matmul_precision("high")
        print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}, {args.workers} loader workers", flush=True)
    results = {}
    for name in args.configs:
        for variant in args.variants:
            results[(name, variant)] = run(name, variant, args)
        if ("before" in args.variants) and ("after" in args.variants):
            b, a = results[(name, "before")], results[(name, "after")]
            print(f"{name}: after / before = {a['clips_s'] / b['clips_s']:.2f}x clips/s", flush=True)


if __name__ == "__main__":
    main()
