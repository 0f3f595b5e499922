"""Training step time per config (forward + backward + Adam step), on CPU or GPU; prints numbers, asserts nothing.

The batch is synthetic (noise bursts at random onsets: the cost does not depend on the content), so no
data is needed. Also times one one-shot bank (inference) per config on the same device.

    python benchmarks/bench_train.py --configs tiny live paper --batch 7 --threads 2
    python benchmarks/bench_train.py --device cuda --precision bf16-mixed 32-true --batch 7
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from idm.model import IDMConfig
from idm.model.sequencer import sequence_mix
from idm.train.config import TrainConfig, TrainingConfig
from idm.train.module import IDMTrainingModule

ROOT = Path(__file__).resolve().parents[1]


def model_config(name: str) -> IDMConfig:
    import yaml

    raw = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
    return IDMConfig.from_dict(raw["model"])


def synthetic_batch(b: int, seconds: float, device: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Mixtures of decaying noise bursts at random onsets (about 1 % of frames per class)."""
    g = torch.Generator().manual_seed(seed)
    n = round(seconds * 44100 / 256) * 256
    f = n // 256 + 1
    onsets = (torch.rand(b, 9, f, generator=g) < 0.01).float()
    velocity = onsets * torch.rand(b, 9, f, generator=g)
    shots = torch.randn(b, 9, 8192, generator=g) * torch.exp(-torch.arange(8192) / 1500.0)
    audio = 0.1 * sequence_mix(velocity, shots, torch.ones(b, 9), 256, n)
    batch = {"audio": audio, "onsets": onsets, "velocity": velocity, "kit": torch.zeros(b, dtype=torch.long)}
    return {k: v.to(device) for k, v in batch.items()}


def bench(name: str, args: argparse.Namespace, precision: str) -> None:
    device = args.device
    cfg = TrainConfig(model=model_config(name), training=TrainingConfig(batch_size=args.batch, precision=precision))
    module = IDMTrainingModule(cfg).to(device)
    if args.compile:
        module.model.synth.compile()
    opt = module.configure_optimizers()
    batch = synthetic_batch(args.batch, args.seconds, device)
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    noise = module._noise(args.batch, 0)
    times = []
    for i in range(args.warmup + args.steps):
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.autocast(device_type=device, dtype=dtype or torch.float32, enabled=dtype is not None):
            res = module.step(batch, noise, batch["kit"])
        opt.zero_grad(set_to_none=True)
        res["loss"].backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        if i >= args.warmup:
            times.append(time.perf_counter() - t)
    with torch.no_grad():
        kit = torch.full((cfg.model.encoder.n_kits,), 1.0 / cfg.model.encoder.n_kits, device=device)
        bank_noise = module.model.noise(1234).to(device)
        module.model.synthesize(kit, bank_noise)
        if device == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        module.model.synthesize(kit, bank_noise)
        if device == "cuda":
            torch.cuda.synchronize()
        bank = time.perf_counter() - t
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
        with profile(activities=acts) as prof:
            with torch.autocast(device_type=device, dtype=dtype or torch.float32, enabled=dtype is not None):
                res = module.step(batch, noise, batch["kit"])
            res["loss"].backward()
            if device == "cuda":
                torch.cuda.synchronize()
        key = "self_cuda_time_total" if device == "cuda" else "self_cpu_time_total"
        print(prof.key_averages().table(sort_by=key, row_limit=args.profile))
    mem = f", peak GPU memory {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device == "cuda" else ""
    times.sort()
    print(
        f"{name:6s} {precision:10s} batch {args.batch} x {args.seconds:g} s, {args.threads} thread(s) {device}: "
        f"step median {times[len(times) // 2]:.3f} s (min {times[0]:.3f}, {len(times)} steps); "
        f"one bank (inference) {bank:.3f} s{mem}",
        flush=True,
    )
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["tiny", "live", "paper"])
    p.add_argument("--batch", type=int, default=7)
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", nargs="+", default=["32-true"])
    p.add_argument("--profile", type=int, default=0, help="print the N most costly ops of one step")
    p.add_argument("--compile", action="store_true", help="torch.compile the synthesizer")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    print(f"torch {torch.__version__}, device {args.device}" + (
        f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else ""))  # fmt: skip
    for name in args.configs:
        for precision in args.precision:
            bench(name, args, precision)


if __name__ == "__main__":
    main()
