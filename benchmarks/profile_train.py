"""Where one training step's time goes: CUDA events around each stage of the forward pass, backward and optimizer.

Synthetic batch (see ``bench_train.synthetic_batch``); prints a table per config and batch size, asserts nothing.

    python benchmarks/profile_train.py --configs live paper --batch 7 28 --device cuda
"""

from __future__ import annotations

import argparse
import itertools
import time
from collections import defaultdict
from pathlib import Path

import torch

from idm.model.sequencer import sequence_mix
from idm.train.config import TrainConfig, TrainingConfig
from idm.train.losses import kit_loss, onset_loss
from idm.train.module import IDMTrainingModule

ROOT = Path(__file__).resolve().parents[1]

STAGES = ("frontend", "encoder+heads", "synth", "sequencer", "stft loss", "onset+kit loss", "backward", "optimizer")


def model_config(name: str):  # type: ignore[no-untyped-def]
    import yaml

    from idm.model import IDMConfig

    raw = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
    return IDMConfig.from_dict(raw["model"])


def synthetic_batch(b: int, seconds: float, device: str, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    n = round(seconds * 44100 / 256) * 256
    f = n // 256 + 1
    onsets = (torch.rand(b, 9, f, generator=g) < 0.01).float()
    velocity = onsets * torch.rand(b, 9, f, generator=g)
    shots = torch.randn(b, 9, 8192, generator=g) * torch.exp(-torch.arange(8192) / 1500.0)
    audio = 0.1 * sequence_mix(velocity, shots, torch.ones(b, 9), 256, n)
    batch = {"audio": audio, "onsets": onsets, "velocity": velocity, "kit": torch.zeros(b, dtype=torch.long)}
    return {k: v.to(device) for k, v in batch.items()}


def staged_step(module: IDMTrainingModule, batch: dict, noise: torch.Tensor, mark) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """IDMTrainingModule.step, cut into stages; ``mark(name)`` is called after each."""
    m = module.model
    audio = batch["audio"]
    n = audio.shape[-1]
    targets = batch["onsets"][:, module.to_model].float()
    nf = targets.shape[-1]
    with torch.autocast(device_type=audio.device.type, enabled=False):
        logmel = m.frontend(audio.float())
    mark("frontend")
    feats = m.encoder(logmel)
    onset_logits, velocity = m.head(feats)
    kit_logits = m.kit(feats)
    gains = m.gains(feats)
    emb = kit_logits.float().softmax(-1)
    mark("encoder+heads")
    shots, _ = m.synthesize(emb.to(noise.dtype), noise)
    mark("synth")
    with torch.autocast(device_type=audio.device.type, enabled=False):
        mix = sequence_mix((targets * velocity[..., :nf]).float(), shots.float(), gains.float(), m.hop, n)
    mark("sequencer")
    terms = module.stft_loss.terms(mix, audio)
    mark("stft loss")
    l_on = onset_loss(onset_logits[..., :nf], targets, module.onset_pos_weight)
    l_kit = kit_loss(kit_logits, batch["kit"])
    loss = terms.total + 10.0 * l_on + l_kit
    mark("onset+kit loss")
    return loss


def run(name: str, b: int, args: argparse.Namespace) -> None:
    device = args.device
    cfg = TrainConfig(model=model_config(name), training=TrainingConfig(batch_size=b))
    module = IDMTrainingModule(cfg).to(device)
    if args.compile == "synth":
        module.model.synth.compile()
    opt = torch.optim.Adam(module.parameters(), lr=1e-3, fused=device == "cuda")
    batch = synthetic_batch(b, args.seconds, device)
    noise = module._noise(b, 0)
    sums: dict[str, float] = defaultdict(float)
    walls = []
    torch.cuda.reset_peak_memory_stats() if device == "cuda" else None
    for i in range(args.warmup + args.steps):
        events: list[tuple[str, torch.cuda.Event]] = []

        def mark(stage: str, events=events) -> None:  # type: ignore[no-untyped-def]
            if device == "cuda":
                e = torch.cuda.Event(enable_timing=True)
                e.record()
                events.append((stage, e))

        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        mark("start")
        with torch.autocast(device_type=device, dtype=torch.bfloat16):
            loss = staged_step(module, batch, noise, mark)
        loss.backward()
        mark("backward")
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        mark("optimizer")
        if device == "cuda":
            torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        if i >= args.warmup:
            walls.append(wall)
            for (_, a), (s, e) in itertools.pairwise(events):
                sums[s] += a.elapsed_time(e) / args.steps
    walls.sort()
    med = walls[len(walls) // 2]
    mem = torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else 0.0
    gpu_total = sum(sums.values())
    parts = "  ".join(f"{s} {sums[s]:.1f}" for s in STAGES)
    print(
        f"{name:5s} b={b:4d} compile={args.compile:5s}: step {med * 1e3:7.1f} ms wall, {gpu_total:7.1f} ms GPU "
        f"-> {b / med:7.1f} clips/s; peak {mem:.1f} GiB | {parts}",
        flush=True,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="+", default=["live", "paper"])
    p.add_argument("--batch", nargs="+", type=int, default=[7, 28])
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="cuda")
    p.add_argument("--compile", default="none", choices=["none", "synth"])
    args = p.parse_args()
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        print(f"torch {torch.__version__} on {torch.cuda.get_device_name()}", flush=True)
    for name in args.configs:
        for b in args.batch:
            run(name, b, args)


if __name__ == "__main__":
    main()
