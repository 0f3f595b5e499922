"""Stateful streaming wrappers of a trained IDM: every temporal convolution gets an explicit cache.

The streaming encoder consumes ``m >= 1`` new log-mel frames per call and emits ``m`` output frames. Output
``n`` (counted from the start of the stream) is model frame ``n - lookahead``; the first ``lookahead``
outputs are warm-up and are discarded by the host. Zero padding of the offline model is reproduced exactly
by masking, with a frame counter and the clip's end (``end_frame``, known only at flush time).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import torch
from torch import nn
from torch.nn import functional as F

from idm.classes import class_permutation
from idm.model import InverseDrumMachine
from idm.model.encoder import ChannelNorm, ConvNeXtBlock, Downsample
from idm.model.heads import exp_sigmoid

__all__ = ["END_UNKNOWN", "StateSpec", "StreamingEncoder", "SynthGraph"]

#: ``end_frame`` value meaning "the clip has not ended" (a large int64, safe to add small offsets to).
END_UNKNOWN = 1 << 62


@dataclass(frozen=True)
class StateSpec:
    """One state tensor passed from an encoder call to the next (input ``name``, output ``name + '_out'``)."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # "float32" or "int64"
    init: float  # every element starts at this value


@dataclass
class _TimeConv:
    """Bookkeeping of one temporal convolution: cache length and how its input stream maps to offline."""

    name: str
    kernel: int
    shift_in: int  # streaming input n is offline input frame n - shift_in
    extra_in: int  # offline input length is n_logmel_frames + extra_in
    pad: tuple[int, int]

    @property
    def shift_out(self) -> int:
        return self.shift_in + (self.kernel - 1 - self.pad[0])

    @property
    def extra_out(self) -> int:
        return self.extra_in + self.pad[0] + self.pad[1] - (self.kernel - 1)


class StreamingEncoder(nn.Module):
    """The encoder, heads and running clip pooling of a trained IDM as one stateful step.

    ``forward(logmel [1, n_mels, m], end_frame [1], *states) -> (onset_logits, onset_prob, velocity
    [1, K, m], kit_embedding [1, n_kits], gains [1, K], *new_states)``; classes in project order.
    """

    perm: torch.Tensor

    def __init__(self, model: InverseDrumMachine, extra_delay: int = 0) -> None:
        super().__init__()
        self.extra_delay = int(extra_delay)
        cfg = model.config
        ec = cfg.encoder
        self.enc = model.encoder
        self._layers: list[tuple[Downsample, list[ConvNeXtBlock]]] = [
            (cast(Downsample, d), [cast(ConvNeXtBlock, b) for b in cast(nn.Sequential, st)])
            for d, st in zip(self.enc.downsamples, self.enc.stages, strict=True)
        ]
        self.head = model.head
        self.kit = model.kit
        self.gain_net = model.gains
        self.n_mels = cfg.frontend.n_mels
        self.register_buffer("perm", torch.tensor(class_permutation(cfg.classes), dtype=torch.long), persistent=False)
        convs: list[_TimeConv] = []
        shift, extra = 0, 0
        self._down_conv: list[int] = []
        self._block_conv: list[list[int]] = []
        for s, (down, stage) in enumerate(self._layers):
            k = down.conv.kernel_size[1]
            c = _TimeConv(f"cache_down{s}" if s else "cache_stem", k, shift, extra, down.tpad)
            self._down_conv.append(len(convs))
            convs.append(c)
            shift, extra = c.shift_out, c.extra_out
            ids = []
            for b, block in enumerate(stage):
                c = _TimeConv(f"cache_s{s}b{b}", block.kernel, shift, extra, block.tpad)
                ids.append(len(convs))
                convs.append(c)
                shift, extra = c.shift_out, c.extra_out
            self._block_conv.append(ids)
        self.feat_shift, self.feat_extra = shift, extra
        hk = self.head.conv.kernel_size[0]
        c = _TimeConv("cache_head", hk, shift, extra, self.head.tpad)
        self._head_conv = len(convs)
        convs.append(c)
        self.convs = convs
        self.model_lookahead = c.shift_out
        self.lookahead = c.shift_out + self.extra_delay
        self.extra_frames = c.extra_out
        assert self.extra_frames == self.enc.extra_frames
        self.n_classes = cfg.n_classes
        self.n_kits = ec.n_kits
        self.dim = ec.dims[-1]
        self._cache_shapes = self._infer_cache_shapes()

    # --- state ------------------------------------------------------------------------------------

    def _infer_cache_shapes(self) -> list[tuple[int, ...]]:
        shapes: list[tuple[int, ...]] = []
        x = torch.zeros(1, 1, self.n_mels, 8)
        with torch.no_grad():
            for down, stage in self._layers:
                xin = down.norm(x) if down.norm_first else x
                shapes.append((1, xin.shape[1], xin.shape[2], down.conv.kernel_size[1] - 1))
                x = down(x)
                for block in stage:
                    shapes.append((1, x.shape[1], x.shape[2], block.kernel - 1))
                    x = block(x)
        shapes.append((1, self.dim, self.head.conv.kernel_size[0] - 1))
        return shapes

    def state_specs(self) -> list[StateSpec]:
        """Every state tensor, in the order :meth:`forward` takes and returns them."""
        specs = [StateSpec("frames_seen", (1,), "int64", 0)]
        specs += [
            StateSpec(c.name, shape, "float32", 0.0) for c, shape in zip(self.convs, self._cache_shapes, strict=True)
        ]
        specs += [
            StateSpec("pool_feat_sum", (1, self.dim), "float32", 0.0),
            StateSpec("pool_norm_sum", (1, self.dim), "float32", 0.0),
            StateSpec("pool_count", (1,), "float32", 0.0),
        ]
        if self.extra_delay:
            specs.append(StateSpec("delay_line", (1, 3 * self.n_classes, self.extra_delay), "float32", 0.0))
        return specs

    def initial_state(self) -> list[torch.Tensor]:
        """Initial values of :meth:`state_specs` as tensors."""
        out = []
        for s in self.state_specs():
            dtype = torch.int64 if s.dtype == "int64" else torch.float32
            out.append(torch.full(s.shape, s.init, dtype=dtype))
        return out

    # --- step -------------------------------------------------------------------------------------

    def _mask(
        self,
        frames_seen: torch.Tensor,
        end_frame: torch.Tensor,
        m: int | torch.Tensor,
        c_shift: int,
        c_extra: int,
        like: torch.Tensor,
    ) -> torch.Tensor:
        idx = frames_seen + torch.arange(m, dtype=torch.int64) - c_shift  # type: ignore[arg-type]
        valid = (idx >= 0) & (idx < end_frame + c_extra)
        return valid.to(like.dtype)

    def _cached(self, x: torch.Tensor, cache: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        full = torch.cat([cache, x * mask], dim=-1)
        k1 = cache.shape[-1]
        return full, full[..., full.shape[-1] - k1 :]

    def forward(self, logmel: torch.Tensor, end_frame: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        frames_seen = state[0]
        caches = list(state[1 : 1 + len(self.convs)])
        feat_sum, norm_sum, count = state[1 + len(self.convs) : 4 + len(self.convs)]
        m = logmel.shape[-1]
        new_caches: list[torch.Tensor] = [cache for cache in caches]

        def conv_in(i: int, x: torch.Tensor) -> torch.Tensor:
            c = self.convs[i]
            mask = self._mask(frames_seen, end_frame, m, c.shift_in, c.extra_in, x)
            full, new_caches[i] = self._cached(x, caches[i], mask)
            return full

        x = logmel.unsqueeze(1)
        for s, (down, stage) in enumerate(self._layers):
            i = self._down_conv[s]
            if down.norm_first:
                x = down.conv(conv_in(i, _channel_norm(down.norm, x)))
            else:
                x = _channel_norm(down.norm, down.conv(conv_in(i, x)))
            for b, block in enumerate(stage):
                full = conv_in(self._block_conv[s][b], x)
                y = block.dwconv(full)
                y = y.permute(0, 2, 3, 1)
                y = block.pw2(F.gelu(block.pw1(block.norm(y))))
                # the residual is delayed like the convolution: the input frame at the window centre
                left = block.tpad[0]
                residual = full[..., left : left + m]
                x = residual + (block.gamma * y).permute(0, 3, 1, 2)
        feats = self.enc.norm(x.mean(dim=2).transpose(1, 2))  # [1, m, C]

        # running clip pooling over the valid feature frames
        fmask = self._mask(frames_seen, end_frame, m, self.feat_shift, self.feat_extra, feats).reshape(1, -1, 1)
        feat_sum = feat_sum + (feats * fmask).sum(dim=1)
        norm_sum = norm_sum + (self.kit.pool(feats) * fmask).sum(dim=1)
        count = count + fmask.sum().reshape(1)
        denom = torch.clamp(count, min=1.0)
        kit_embedding = self.kit.from_mean(norm_sum / denom).softmax(-1)
        gains = self.gain_net.from_mean(feat_sum / denom).index_select(1, self.perm)

        # transcription head
        h = self.head.conv(conv_in(self._head_conv, feats.transpose(1, 2)))
        h = F.relu(h).transpose(1, 2)
        logits = self.head.onset(h).transpose(1, 2).index_select(1, self.perm)
        velocity = exp_sigmoid(self.head.velocity(h)).transpose(1, 2).index_select(1, self.perm)
        prob = torch.sigmoid(logits)
        frames_seen = frames_seen + m
        extra: list[torch.Tensor] = []
        if self.extra_delay:  # pure delay line: a larger declared look-ahead than the model needs
            k = self.n_classes
            full = torch.cat([state[-1], torch.cat([logits, prob, velocity], dim=1)], dim=-1)
            extra = [full[..., full.shape[-1] - self.extra_delay :]]
            logits, prob, velocity = full[:, :k, :m], full[:, k : 2 * k, :m], full[:, 2 * k :, :m]
        return (
            logits,
            prob,
            velocity,
            kit_embedding,
            gains,
            frames_seen,
            *new_caches,
            feat_sum,
            norm_sum,
            count,
            *extra,
        )


class SynthGraph(nn.Module):
    """``kit_embedding [1, n_kits]``, ``noise [K, N]`` -> ``one_shots [K, N]``, ``decay_rate [K]``, project order.

    The FiLM conditioning (one-hot class in model order + kit embedding) is built inside the graph, so row
    ``i`` of every tensor is project class ``i``; the bank-wide normalisation is order independent.
    """

    onehot: torch.Tensor

    def __init__(self, model: InverseDrumMachine) -> None:
        super().__init__()
        self.synth = model.synth
        k = model.config.n_classes
        perm = class_permutation(model.config.classes)
        onehot = torch.eye(k)[perm]  # row i: one-hot of model index of project class i
        self.register_buffer("onehot", onehot, persistent=False)

    def forward(self, kit_embedding: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.onehot.shape[0]
        cond = torch.cat([self.onehot, kit_embedding.expand(k, -1)], dim=-1)
        return self.synth(noise, cond)


def _channel_norm(norm: ChannelNorm, x: torch.Tensor) -> torch.Tensor:
    """:class:`ChannelNorm` with a static normalised shape (traceable with a dynamic time axis)."""
    c = int(norm.weight.shape[0])
    y = F.layer_norm(x.permute(0, 2, 3, 1), (c,), norm.weight, norm.bias, norm.eps)
    return y.permute(0, 3, 1, 2)


def latency_samples(lookahead: int, hop: int, n_fft: int) -> int:
    """Samples between an input sample at model frame ``t`` and the call that emits frame ``t``."""
    return lookahead * hop + n_fft // 2
