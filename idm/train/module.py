"""The LightningModule: encode, synthesize one bank per item (batched), sequence ground-truth onsets, losses.

Training follows the paper: the sequencer is driven by the ground-truth onsets (plain 0/1) times the
predicted velocities, and the loss is the multi-resolution STFT loss between that resynthesis and the
mixture, plus weighted onset BCE and kit cross-entropy. STFTs, FFT sequencing and losses run in float32
whatever the training precision; the encoder and the synthesizer's convolutions follow the autocast.
"""

from __future__ import annotations

import time
import wave
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from idm.classes import CLASSES
from idm.model import InverseDrumMachine
from idm.model.sequencer import sequence_mix
from idm.peaks import PeakPicking, peak_pick
from idm.train.config import TrainConfig
from idm.train.losses import MultiResolutionSTFTLoss, kit_loss, onset_loss

__all__ = ["VAL_NOISE_SEED", "IDMTrainingModule", "onset_counts", "seed_for", "tune_deltas"]

#: Seed of the fixed synthesizer noise used in validation (the one inference and export use).
VAL_NOISE_SEED = 1234
#: Losses reported by validation (each also logged).
VAL_LOSSES = ("loss", "stft", "sc", "logmag", "linmag", "onset", "kit")
#: Onset match tolerance of the validation F-measure, seconds.
ONSET_WINDOW = 0.05


def seed_for(*keys: int) -> int:
    """A 63-bit seed derived from integers (run seed, step, rank, ...): independent streams per key."""
    return (
        int(np.random.SeedSequence([k & 0xFFFFFFFF for k in keys]).generate_state(2, np.uint32).view(np.uint64)[0]) >> 1
    )


def onset_counts(peaks: np.ndarray, targets: np.ndarray, frame_rate: float, window: float = ONSET_WINDOW) -> np.ndarray:
    """Per class ``[matched, n_estimated, n_reference]`` of picked onsets vs target onsets ``[K, F]`` (mir_eval)."""
    from mir_eval.util import match_events

    out = np.zeros((peaks.shape[0], 3), dtype=np.int64)
    for k in range(peaks.shape[0]):
        est = np.flatnonzero(peaks[k]) / frame_rate
        ref = np.flatnonzero(targets[k] > 0.5) / frame_rate
        matched = len(match_events(ref, est, window)) if est.size and ref.size else 0
        out[k] = (matched, est.size, ref.size)
    return out


def f_measure(counts: np.ndarray) -> np.ndarray:
    """F-measure from ``[..., 3]`` counts (``2 matched / (n_est + n_ref)``; 1 where both are empty)."""
    total = counts[..., 1] + counts[..., 2]
    return np.where(total > 0, 2.0 * counts[..., 0] / np.maximum(total, 1), 1.0)


def tune_deltas(grid: np.ndarray, max_notes_per_hit: float = 0.0) -> np.ndarray:
    """Per class, the index of the best delta of ``grid [D, K, 3]`` counts (``matched, n_est, n_ref``).

    Best = the highest F-measure among the deltas that send at most ``max_notes_per_hit`` notes per reference
    hit (all deltas when 0); when no delta meets the floor, the one with the fewest notes.
    """
    fg = f_measure(grid)  # [D, K]
    if max_notes_per_hit <= 0:
        return fg.argmax(axis=0)
    ok = grid[..., 1] <= max_notes_per_hit * grid[..., 2]
    masked = np.where(ok, fg, -1.0)
    fewest = grid[..., 1].argmin(axis=0)
    return np.where(ok.any(axis=0), masked.argmax(axis=0), fewest)


def write_wav(path: Path, audio: np.ndarray, sample_rate: int) -> None:
    """16-bit PCM mono WAV with the standard library (no libsndfile needed on training machines)."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm.tobytes())


class IDMTrainingModule(L.LightningModule):
    """Trains an :class:`InverseDrumMachine` from rendered mixtures and their onsets.

    Parameters
    ----------
    config
        The whole run configuration (model, training, peak picking).
    run_dir
        Where validation audio examples go (``audio/step_NNNNNNN/``); None writes none.
    val_kit_ids
        Training kit index of each validation kit index (-1: a kit unseen in training, no kit loss).
    """

    def __init__(self, config: TrainConfig, run_dir: str | Path | None = None, val_kit_ids: list[int] | None = None):
        super().__init__()
        self.config = config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.model = InverseDrumMachine(config.model)
        self.stft_loss = MultiResolutionSTFTLoss(config.training.fft_sizes)
        # project class index of each model output row: targets (project order) -> model order
        self.to_model = [CLASSES.index(c) for c in config.model.classes]
        self.to_project = [list(config.model.classes).index(c) for c in CLASSES]
        pw = config.training.onset_pos_weight
        weights = None  # plain BCE (the paper's) when every weight is 1
        if any(w != 1.0 for w in pw):
            weights = torch.tensor(pw * len(CLASSES) if len(pw) == 1 else pw, dtype=torch.float32)[self.to_model]
        self.onset_pos_weight: torch.Tensor | None
        self.register_buffer("onset_pos_weight", weights, persistent=False)
        self.val_kit_ids = val_kit_ids
        self.wall_time = 0.0  # seconds of training over all chunks (restored on resume)
        self._t0 = time.monotonic()
        self.tuned_delta: list[float] | None = None  # per class, project order
        self.val_metrics: dict[str, float] = {}
        self.init_from: dict[str, Any] | None = None  # the checkpoint a fine-tuning run started from
        grid = config.peak_picking.delta_grid if config.peak_picking.tune else ()
        self.delta_grid = tuple(grid)
        self.renderer: Any = None  # idm.data.batch_render.BatchRenderer: plays plan batches on the device
        self._reset_counts()

    # --- forward pieces ---------------------------------------------------------------------------

    def encode(self, audio: torch.Tensor) -> dict[str, torch.Tensor]:
        """Encoder outputs for ``[B, N]`` audio; the log-mel front end always runs in float32."""
        m = self.model
        with torch.autocast(device_type=audio.device.type, enabled=False):
            logmel = m.frontend(audio.float())
        feats = m.encoder(logmel)
        onset_logits, velocity = m.head(feats)
        kit_logits = m.kit(feats)
        gains = m.gains(feats)
        return {
            "onset_logits": onset_logits,
            "velocity": velocity,
            "kit_logits": kit_logits,
            "kit_embedding": kit_logits.float().softmax(-1),
            "gains": gains,
        }

    def resynthesize(
        self, activations: torch.Tensor, kit_embedding: torch.Tensor, gains: torch.Tensor, noise: torch.Tensor, n: int
    ) -> torch.Tensor:
        """Mix ``[B, n]`` from activations ``[B, K, F]`` (model order), one synthesized bank per item."""
        shots, _ = self.model.synthesize(kit_embedding.to(noise.dtype), noise)
        with torch.autocast(device_type=activations.device.type, enabled=False):
            return sequence_mix(activations.float(), shots.float(), gains.float(), self.model.hop, n)

    def step(self, batch: dict[str, torch.Tensor], noise: torch.Tensor, kit: torch.Tensor) -> dict[str, Any]:
        """Losses (and what validation needs) for a batch whose audio is already augmented."""
        audio = batch["audio"]
        n = audio.shape[-1]
        targets = batch["onsets"][:, self.to_model].float()
        n_frames = targets.shape[-1]
        out = self.encode(audio)
        if out["onset_logits"].shape[-1] < n_frames:
            raise ValueError(
                f"model gives {out['onset_logits'].shape[-1]} frames for {n} samples, targets have {n_frames}"
            )
        logits = out["onset_logits"][..., :n_frames]
        velocity = out["velocity"][..., :n_frames]
        mix = self.resynthesize(targets * velocity, out["kit_embedding"], out["gains"], noise, n)
        terms = self.stft_loss.terms(mix, audio)
        l_onset = onset_loss(logits, targets, self.onset_pos_weight)
        l_kit = kit_loss(out["kit_logits"], kit)
        tc = self.config.training
        loss = tc.stft_weight * terms.total + tc.onset_weight * l_onset + tc.kit_weight * l_kit
        return {
            "loss": loss,
            "stft": terms.total.detach(),
            "sc": terms.spectral_convergence.detach(),
            "logmag": terms.log_magnitude.detach(),
            "linmag": terms.linear_magnitude.detach(),
            "onset": l_onset.detach(),
            "kit": l_kit.detach(),
            "logits": logits.detach(),
            "velocity": velocity.detach(),
            "mix": mix.detach(),
            "out": out,
        }

    def _noise(self, b: int, seed: int) -> torch.Tensor:
        g = torch.Generator(device=self.device).manual_seed(seed)
        k, n = self.config.model.n_classes, self.model.synth.n_samples
        return torch.randn(b, k, n, generator=g, device=self.device)

    # --- Lightning hooks --------------------------------------------------------------------------

    def render(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """A batch with its audio: plan batches (``hit_b`` ...) are played here, on the module's device."""
        if "hit_b" not in batch:
            return batch
        if self.renderer is None:
            raise RuntimeError("a batch of render plans needs module.renderer (a BatchRenderer)")
        audio = self.renderer.to(self.device)(batch)["audio"]
        return {"audio": audio, "onsets": batch["onsets"], "velocity": batch["velocity"], "kit": batch["kit"]}

    def training_loss(self, batch: dict[str, torch.Tensor], step: int, rank: int = 0) -> dict[str, Any]:
        """Render (plan batches), random gain, :meth:`step`: the losses of training step ``step`` on ``rank``."""
        tc = self.config.training
        batch = self.render(batch)
        audio = batch["audio"]
        b = audio.shape[0]
        seed = seed_for(tc.seed, step, rank)
        g = torch.Generator(device=self.device).manual_seed(seed)
        u = torch.rand(b, generator=g, device=self.device)
        level = tc.gain_min + (tc.gain_max - tc.gain_min) * torch.rand(b, generator=g, device=self.device)
        gain = torch.where(u < tc.gain_prob, level, torch.ones_like(level))
        batch = {**batch, "audio": audio * gain[:, None]}
        return self.step(batch, self._noise(b, seed + 1), batch["kit"])

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Set the learning rate of this step (``training.lr_decay``; a function of the step alone, so a resumed
        run follows the schedule of its config, not the rate stored with the optimizer state)."""
        lr = self.config.training.lr_at(self.global_step)
        for opt in self.trainer.optimizers:
            for group in opt.param_groups:
                group["lr"] = lr

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        res = self.training_loss(batch, self.global_step, self.global_rank)
        b = res["mix"].shape[0]
        on_step = {"train/loss": res["loss"].detach(), "train/stft": res["stft"], "train/onset": res["onset"],
                   "train/kit": res["kit"], "train/lr": self.config.training.lr_at(self.global_step)}  # fmt: skip
        self.log_dict(on_step, prog_bar=False, on_step=True, on_epoch=False, batch_size=b)
        self.log("loss", res["loss"].detach(), prog_bar=True, logger=False, batch_size=b)
        return res["loss"]

    def _reset_counts(self) -> None:
        k = self.config.model.n_classes
        self._counts = np.zeros((k, 3), dtype=np.int64)
        self._grid_counts = np.zeros((len(self.delta_grid), k, 3), dtype=np.int64)
        self._vel = np.zeros(6)  # n, sums of v, v_target, v*v_target, v^2, v_target^2 at target onsets
        self._loss_sums = np.zeros(len(VAL_LOSSES) + 1)  # batch-weighted loss sums, items

    def on_validation_epoch_start(self) -> None:
        self._reset_counts()

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        audio = batch["audio"]
        b = audio.shape[0]
        kit = batch["kit"]
        if self.val_kit_ids is not None:
            kit = torch.tensor(self.val_kit_ids, device=kit.device)[kit]
        noise = self.model.noise(VAL_NOISE_SEED).to(self.device).expand(b, -1, -1)
        res = self.step(batch, noise, kit)
        logs = {f"val/{k}": res[k] for k in ("stft", "sc", "logmag", "linmag", "onset", "kit")}
        logs["val/loss"] = res["loss"].detach()
        self.log_dict(logs, on_step=False, on_epoch=True, sync_dist=True, batch_size=b)
        self._loss_sums += b * np.array([float(logs[f"val/{k}"]) for k in VAL_LOSSES] + [1.0])

        probs = torch.sigmoid(res["logits"].float())[:, self.to_project].cpu().numpy()
        vel = res["velocity"].float()[:, self.to_project].cpu().numpy()
        targets = batch["onsets"].float().cpu().numpy()
        vel_t = batch["velocity"].float().cpu().numpy()
        fr = self.config.model.frontend.sample_rate / self.model.hop
        picker = self.config.peak_picking.picker()
        picked = []
        for i in range(b):
            peaks = peak_pick(probs[i], picker)
            picked.append(peaks)
            self._counts += onset_counts(peaks, targets[i], fr)
            for j, d in enumerate(self.delta_grid):
                self._grid_counts[j] += onset_counts(
                    peak_pick(probs[i], self.config.peak_picking.picker(d)), targets[i], fr
                )
            at = targets[i] > 0.5
            v, vt = vel[i][at].astype(np.float64), vel_t[i][at].astype(np.float64)
            self._vel += (v.size, v.sum(), vt.sum(), (v * vt).sum(), (v * v).sum(), (vt * vt).sum())
        if batch_idx == 0 and self.global_rank == 0 and self.run_dir is not None:
            self._write_examples(batch, res, picked)

    def _write_examples(self, batch: dict[str, torch.Tensor], res: dict[str, Any], picked: list[np.ndarray]) -> None:
        n_ex = min(self.config.training.audio_examples, len(picked))
        if n_ex == 0 or self.run_dir is None:
            return
        audio = batch["audio"][:n_ex]
        n = audio.shape[-1]
        out = res["out"]
        peaks = torch.from_numpy(np.stack(picked[:n_ex])[:, self.to_model]).to(self.device, torch.float32)
        vel = res["velocity"][:n_ex].float()
        noise = self.model.noise(VAL_NOISE_SEED).to(self.device).expand(n_ex, -1, -1)
        with torch.no_grad():
            transcribed = self.resynthesize(peaks * vel, out["kit_embedding"][:n_ex], out["gains"][:n_ex], noise, n)
        folder = self.run_dir / "audio" / f"step_{self.global_step:07d}"
        folder.mkdir(parents=True, exist_ok=True)
        sr = self.config.model.frontend.sample_rate
        for i in range(n_ex):
            sigs = {
                "mix": audio[i].float().cpu().numpy(),
                "resynth": res["mix"][i].float().cpu().numpy(),  # ground-truth onsets x predicted velocity
                "transcribed": transcribed[i].float().cpu().numpy(),  # picked onsets x predicted velocity
            }
            scale = 1.0 / max(1.0, max(float(np.abs(s).max()) for s in sigs.values()) / 0.99)
            for name, sig in sigs.items():
                write_wav(folder / f"{i:02d}_{name}.wav", sig * scale, sr)

    def on_validation_epoch_end(self) -> None:
        counts = self._all_reduce(self._counts)
        grid = self._all_reduce(self._grid_counts)
        vel = self._all_reduce(self._vel)
        losses = self._all_reduce(self._loss_sums)
        f = f_measure(counts)
        present = counts[:, 2] > 0  # classes without reference onsets get no per-class F-measure
        metrics: dict[str, float] = {f"val/f_{c}": float(f[i]) for i, c in enumerate(CLASSES) if present[i]}
        metrics["val/f_micro"] = float(f_measure(counts.sum(axis=0)))
        metrics["val/f_macro"] = float(f[present].mean()) if present.any() else 0.0
        n, sx, sy, sxy, sxx, syy = vel
        cov, vx, vy = n * sxy - sx * sy, n * sxx - sx * sx, n * syy - sy * sy
        metrics["val/velocity_corr"] = float(cov / np.sqrt(vx * vy)) if n > 1 and vx > 0 and vy > 0 else 0.0
        metrics.update({f"val/{k}": float(losses[i] / max(losses[-1], 1.0)) for i, k in enumerate(VAL_LOSSES)})
        if self.delta_grid:
            best = tune_deltas(grid, self.config.peak_picking.max_notes_per_hit)
            base = self.config.peak_picking.delta
            deltas = [float(self.delta_grid[best[k]]) if present[k] else float(base) for k in range(len(CLASSES))]
            tuned = np.stack([grid[best[k], k] if present[k] else counts[k] for k in range(len(CLASSES))])
            self.tuned_delta = deltas
            metrics["val/f_micro_tuned"] = float(f_measure(tuned.sum(axis=0)))
        self.val_metrics = {k: round(v, 5) for k, v in metrics.items()}
        logged = {k: v for k, v in metrics.items() if k.removeprefix("val/") not in VAL_LOSSES}  # logged per step
        self.log_dict(logged, on_step=False, on_epoch=True, sync_dist=True, batch_size=1)  # equal on every rank

    def _all_reduce(self, x: np.ndarray) -> np.ndarray:
        if self.trainer.world_size <= 1:
            return x
        t = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float64)).to(self.device)
        t = self.trainer.strategy.reduce(t, reduce_op="sum")
        return t.cpu().numpy().astype(x.dtype)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        # One kernel for the whole update on CUDA (the same state: resumable either way). Lightning refuses
        # gradient clipping with a fused optimizer under mixed precision, so clipping keeps the foreach one.
        fused = self.device.type == "cuda" and not self.config.training.grad_clip
        return torch.optim.Adam(self.model.parameters(), lr=self.config.training.lr, fused=fused)

    # --- checkpoint state beyond the weights ------------------------------------------------------

    def elapsed(self) -> float:
        """Training wall time over all chunks, seconds."""
        return self.wall_time + time.monotonic() - self._t0

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["idm"] = {
            "config": self.config.to_dict(),
            "wall_time": self.elapsed(),
            "tuned_delta": self.tuned_delta,
            "val_metrics": dict(self.val_metrics),
            "init_from": self.init_from,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get("idm", {})
        self.wall_time = float(state.get("wall_time", 0.0))
        self._t0 = time.monotonic()
        self.tuned_delta = state.get("tuned_delta")
        self.val_metrics = dict(state.get("val_metrics") or {})
        self.init_from = state.get("init_from")

    def picking(self) -> dict[str, Any]:
        """The peak-picking parameters to store with the model (``delta`` per class, project order, when tuned)."""
        pp = self.config.peak_picking
        delta: float | list[float] = list(self.tuned_delta) if self.tuned_delta is not None else pp.delta
        out: dict[str, Any] = {
            "pre_max": pp.pre_max, "post_max": pp.post_max, "pre_avg": pp.pre_avg, "post_avg": pp.post_avg,
            "delta": delta, "wait": pp.wait, "threshold": pp.threshold, "classes": list(CLASSES),
            "causal": pp.causal, "tuned": self.tuned_delta is not None,
        }  # fmt: skip
        return out

    def picker(self) -> PeakPicking:
        """:meth:`picking` as the model's :class:`PeakPicking` (``IDMConfig.peaks``; deltas in project order)."""
        d = self.picking()["delta"]
        return self.config.peak_picking.picker(tuple(d) if isinstance(d, list) else d)
