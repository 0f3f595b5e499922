"""Render a batch of plans in torch on the training device: hits scattered from a one-shot bank held there.

The data loader's workers only draw plans (:func:`idm.data.plan.plan_render`: hits, layers, gains, EQ,
room); the audio is made here, on the GPU, for the whole batch at once: every layer of every kit and pool
(and its pitch-shifted copies, made once) lives in one flat tensor on the device, each hit is cut into
tiles that are gathered from it and added into the stems with ``index_add_``, EQ and room are one FFT
filter per example, then procedural voices and the recording-realism effects are applied. Same plans give
the same audio as :func:`idm.data.render.play_plan` up to float32 rounding (pitch shifting excepted: an
ideal band-limited resampler here, soxr there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from idm.classes import CLASSES
from idm.data.kits import SAMPLE_RATE
from idm.data.pitch import resample_many
from idm.data.plan import CHOKE_FADE_S, PITCH_STEPS, PROCEDURAL, LayerTable, RenderPlan

__all__ = ["PROCEDURAL_SECONDS", "BatchRenderer", "collate_plans", "plan_item"]

#: Length of a procedural voice (cymbals longer than this fade out at its end).
PROCEDURAL_SECONDS = 2.0
_TILE = 2048
_CHUNK = 1 << 24  # samples gathered per index_add_ call


def plan_item(plan: RenderPlan, table: LayerTable, kit: int) -> dict[str, Any]:
    """A plan as numpy arrays for the data loader (hits of variable count; see :func:`collate_plans`)."""
    cut = np.minimum(plan.cut, np.int64(2**62))
    return {
        "hit_cls": plan.cls.astype(np.int64),
        "hit_start": plan.start.astype(np.int64),
        "hit_layer": plan.layer_ids(table),
        "hit_amp": plan.amp.astype(np.float32),
        "hit_cut": cut.astype(np.int64),
        "pitch": np.round(plan.pitch * PITCH_STEPS).astype(np.int64),
        "eq_db": (plan.eq_db if plan.eq_db is not None else np.zeros(8)).astype(np.float32),
        "use_eq": np.bool_(plan.eq_db is not None),
        "ir": (plan.ir if plan.ir is not None else np.zeros(0)).astype(np.float32),
        "nfft": np.int64(plan.nfft),
        "onsets": plan.onsets,
        "velocity": plan.velocity,
        "kit": np.int64(kit),
        "seed": np.int64(plan.seed & (2**62 - 1)),
        "n_samples": np.int64(plan.n_samples),
    }


def collate_plans(items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack plan items into one batch: hits concatenated (``hit_b`` = item index), room IRs zero-padded."""
    n = {int(it["n_samples"]) for it in items}
    if len(n) != 1:
        raise ValueError(f"plans of one batch must have one length, got {sorted(n)}")
    out: dict[str, torch.Tensor] = {}
    counts = [len(it["hit_cls"]) for it in items]
    out["hit_b"] = torch.repeat_interleave(torch.arange(len(items)), torch.tensor(counts, dtype=torch.long))
    for k in ("hit_cls", "hit_start", "hit_layer", "hit_amp", "hit_cut"):
        out[k] = torch.from_numpy(np.concatenate([it[k] for it in items]))
    for k in ("pitch", "eq_db", "use_eq", "nfft", "onsets", "velocity", "kit", "seed", "n_samples"):
        out[k] = torch.from_numpy(np.stack([np.asarray(it[k]) for it in items]))
    ir_len = [len(it["ir"]) for it in items]
    ir = np.zeros((len(items), max([1, *ir_len])), dtype=np.float32)
    for i, it in enumerate(items):
        ir[i, : ir_len[i]] = it["ir"]
    out["ir"] = torch.from_numpy(ir)
    out["ir_len"] = torch.tensor(ir_len, dtype=torch.long)
    return out


@dataclass
class _Bank:
    """All layers at every pitch step, flat: layer ``l`` at pitch step ``p`` is ``flat[off[p, l] : + len[p, l]]``."""

    flat: torch.Tensor
    off: torch.Tensor  # int64 [P, L]
    len: torch.Tensor  # int64 [P, L]
    steps: int  # pitch steps each side (grid index = step + steps)


class BatchRenderer:
    """Plays batches of plans (:func:`collate_plans`) on a device.

    Parameters
    ----------
    table
        The layers that plans refer to by id.
    max_semitones
        Largest pitch shift the plans use (copies at every 1/8 semitone up to it are made once).
    realism
        Recording-realism effects (:class:`idm.data.effects.RealismConfig`) applied after EQ/room, or None.
    device
        Where the bank lives and rendering runs.
    """

    def __init__(
        self, table: LayerTable, max_semitones: float = 0.0, realism: Any = None, device: torch.device | str = "cpu"
    ) -> None:
        self.table = table
        self.max_semitones = float(max_semitones)
        self.realism = realism
        self.device = torch.device(device)
        self._bank: _Bank | None = None
        fade_n = int(CHOKE_FADE_S * SAMPLE_RATE)
        self._fade = torch.from_numpy((np.cos(np.linspace(0.0, np.pi / 2, fade_n)) ** 2).astype(np.float32))

    def to(self, device: torch.device | str) -> BatchRenderer:
        """Move the bank (built on first use) to ``device``."""
        device = torch.device(device)
        if device != self.device:
            self.device = device
            self._bank = None
        return self

    @property
    def bank(self) -> _Bank:
        """The one-shot bank on the device (built once, on first use)."""
        if self._bank is None:
            self._bank = self._build_bank()
        return self._bank

    @property
    def bank_bytes(self) -> int:
        return int(self.bank.flat.numel() * 4)

    def _build_bank(self) -> _Bank:
        sounds = [la.audio for la in self.table.layers]
        steps = round(self.max_semitones * PITCH_STEPS)
        n_layers = max(1, len(sounds))
        pieces: list[torch.Tensor] = []
        off = torch.zeros(2 * steps + 1, n_layers, dtype=torch.long)
        lens = torch.zeros(2 * steps + 1, n_layers, dtype=torch.long)
        pos = 0
        for p in range(-steps, steps + 1):
            if p == 0:
                shifted = [torch.from_numpy(np.asarray(s, dtype=np.float32)).to(self.device) for s in sounds]
            else:
                shifted = resample_many(sounds, p / PITCH_STEPS, self.device)
            for li, t in enumerate(shifted):
                off[p + steps, li] = pos
                lens[p + steps, li] = t.numel()
                pieces.append(t)
                pos += t.numel()
        flat = torch.cat(pieces) if pieces else torch.zeros(1, device=self.device)
        return _Bank(flat, off.to(self.device), lens.to(self.device), steps)

    # --- rendering ------------------------------------------------------------------------------------

    @torch.no_grad()
    def __call__(self, batch: dict[str, torch.Tensor], stems: bool = False) -> dict[str, torch.Tensor]:
        """Audio of a batch: ``{"audio": [B, N]}`` (and ``"stems": [B, 9, N]`` with ``stems``), on the device."""
        dev = self.device
        b = int(batch["kit"].shape[0])
        n = int(batch["n_samples"][0])
        k = len(CLASSES)
        hb = batch["hit_b"].to(dev)
        hc = batch["hit_cls"].to(dev)
        start = batch["hit_start"].to(dev)
        layer = batch["hit_layer"].to(dev)
        amp = batch["hit_amp"].to(dev)
        cut = batch["hit_cut"].to(dev)
        out = torch.zeros(b * k, n, device=dev)
        rows = hb * k + hc
        sampled = layer != PROCEDURAL
        if bool(sampled.any()):
            bank = self.bank
            pidx = batch["pitch"].to(dev)[hb[sampled], hc[sampled]] + bank.steps
            if bool((pidx < 0).any()) or bool((pidx >= bank.off.shape[0]).any()):
                raise ValueError(f"a plan's pitch is outside the renderer's ±{self.max_semitones} semitones")
            lid = layer[sampled]
            self._scatter(out, bank.flat, bank.off[pidx, lid], bank.len[pidx, lid], rows[sampled],
                          start[sampled], amp[sampled], cut[sampled], n)  # fmt: skip
        if bool((~sampled).any()):
            self._procedural(out, batch, rows[~sampled], hb[~sampled], hc[~sampled], start[~sampled],
                             amp[~sampled], cut[~sampled], n)  # fmt: skip
        out = out.view(b, k, n)
        mix = out.sum(dim=1)
        mix, filtered = self._eq_room(batch, mix, out if (stems or self.realism is not None) else None)
        if filtered is not None:
            out = filtered
        if self.realism is not None:
            from idm.data.effects import apply_realism

            g = torch.Generator(device=dev).manual_seed(_batch_seed(batch["seed"]))
            mix = apply_realism(mix, out, self.realism, g)
        res = {"audio": mix}
        if stems:
            res["stems"] = out
        return res

    def _scatter(
        self,
        out: torch.Tensor,
        src: torch.Tensor,
        off: torch.Tensor,
        length: torch.Tensor,
        rows: torch.Tensor,
        start: torch.Tensor,
        amp: torch.Tensor,
        cut: torch.Tensor,
        n: int,
    ) -> None:
        """Add each hit's source samples ``src[off : off + length]`` (choked at ``cut``) into ``out[row]``."""
        fade = self._fade.to(out.device)
        fade_n = fade.numel()
        end = torch.minimum(length, n - start)
        choked = cut < end
        end = torch.where(choked, torch.minimum(end, cut + fade_n), end)
        i0 = torch.clamp(-start, min=0)
        count = torch.clamp(end - i0, min=0)
        tiles = (count + _TILE - 1) // _TILE
        total = int(tiles.sum())
        if total == 0:
            return
        hit = torch.repeat_interleave(torch.arange(tiles.numel(), device=out.device), tiles, output_size=total)
        first = torch.cumsum(tiles, 0) - tiles
        j = torch.arange(total, device=out.device) - first[hit]
        flat_out = out.view(-1)
        ar = torch.arange(_TILE, device=out.device)
        per = max(1, _CHUNK // _TILE)
        for lo in range(0, total, per):
            h = hit[lo : lo + per]
            i = i0[h, None] + j[lo : lo + per, None] * _TILE + ar  # sample index within the one-shot
            valid = i < end[h, None]
            i = torch.where(valid, i, 0)
            rel = i - cut[h, None]
            env = torch.where(rel < 0, 1.0, fade[torch.clamp(rel, 0, fade_n - 1)])
            val = src[off[h, None] + i] * (amp[h, None] * env * valid)
            dst = torch.where(valid, rows[h, None] * n + start[h, None] + i, 0)
            flat_out.index_add_(0, dst.reshape(-1), val.reshape(-1))

    def _procedural(
        self,
        out: torch.Tensor,
        batch: dict[str, torch.Tensor],
        rows: torch.Tensor,
        hb: torch.Tensor,
        hc: torch.Tensor,
        start: torch.Tensor,
        amp: torch.Tensor,
        cut: torch.Tensor,
        n: int,
    ) -> None:
        """Hits of procedural voices: one fresh voice per (example, class), synthesized here."""
        from idm.data.procedural import synthesize

        k = len(CLASSES)
        pairs, inverse = torch.unique(hb * k + hc, return_inverse=True)
        length = int(PROCEDURAL_SECONDS * SAMPLE_RATE)
        g = torch.Generator(device=self.device).manual_seed(_batch_seed(batch["seed"]) ^ 0x5EED)
        voices = synthesize(pairs % k, g, length, self.device)
        off = inverse * length
        lens = torch.full_like(off, length)
        self._scatter(out, voices.reshape(-1).float(), off, lens, rows, start, amp, cut, n)

    def _eq_room(
        self, batch: dict[str, torch.Tensor], mix: torch.Tensor, stems: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Each example's EQ and room as one FFT filter (the FFT size its plan gives)."""
        dev = mix.device
        nfft = batch["nfft"].to(dev)
        n = mix.shape[-1]
        todo = nfft > 0
        if not bool(todo.any()):
            return mix, stems
        mix = mix.clone()
        stems = stems.clone() if stems is not None else None
        eq_db = batch["eq_db"].to(dev)
        use_eq = batch["use_eq"].to(dev)
        ir = batch["ir"].to(dev)
        ir_len = batch["ir_len"].to(dev)
        centres = torch.log(torch.from_numpy(np.geomspace(60.0, 12000.0, 8)).to(dev))
        for size in torch.unique(nfft[todo]).tolist():
            sel = torch.nonzero(nfft == size).squeeze(1)
            freqs = torch.fft.rfftfreq(int(size), 1.0 / SAMPLE_RATE, device=dev, dtype=torch.float64)
            db = _interp(torch.log(torch.clamp(freqs, min=1.0)), centres, eq_db[sel].double())
            h = torch.where(use_eq[sel, None], 10.0 ** (db / 20.0), torch.ones_like(db)).to(torch.complex128)
            room = ir_len[sel] > 0
            if bool(room.any()):
                h = h * torch.where(room[:, None], 1.0 + torch.fft.rfft(ir[sel].double(), int(size)), 1.0)
            h = h.to(torch.complex64)
            mix[sel] = torch.fft.irfft(torch.fft.rfft(mix[sel], int(size)) * h, int(size))[..., :n]
            if stems is not None:
                stems[sel] = torch.fft.irfft(torch.fft.rfft(stems[sel], int(size)) * h[:, None], int(size))[..., :n]
        return mix, stems


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """``np.interp`` of ``x [F]`` on ``xp [P]`` for each row of ``fp [B, P]`` -> ``[B, F]`` (clamped at the ends)."""
    i = torch.clamp(torch.searchsorted(xp, x) - 1, 0, xp.numel() - 2)
    w = torch.clamp((x - xp[i]) / (xp[i + 1] - xp[i]), 0.0, 1.0)
    return fp[:, i] * (1.0 - w) + fp[:, i + 1] * w


def _batch_seed(seeds: torch.Tensor) -> int:
    """One 63-bit seed from the batch's plan seeds (so the effects depend only on which examples are batched)."""
    state = np.random.SeedSequence([int(s) & 0xFFFFFFFF for s in seeds.tolist()]).generate_state(2, np.uint32)
    return int(state.view(np.uint64)[0] >> np.uint64(1))
