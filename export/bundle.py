"""The export pipeline: checkpoint -> temporary folder (graphs, arrays, parity data, manifest) -> rename."""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from idm.export.manifest import build_manifest
from idm.export.onnx_export import check_opset, export_encoder, export_synth
from idm.export.optimize import optimize_graph
from idm.export.quantize import to_fp16, to_int8
from idm.export.streaming import StreamingEncoder, SynthGraph
from idm.runtime.engine.bundle import MANIFEST

from idm.checkpoint import load_model, sha256_file
from idm.classes import class_permutation
from idm.errors import ConfigError, OutputError
from idm.model import InverseDrumMachine
from idm.model.frontend import mel_filterbank

__all__ = ["ExportOptions", "export_bundle", "export_model", "parity_clip"]

#: Seed of the stored synthesizer noise and of the parity clip.
NOISE_SEED = 1234


@dataclass
class ExportOptions:
    """What ``idm-export`` writes; ``lookahead`` None means the model's own look-ahead."""

    opset: int = 17
    precision: str = "fp32"
    quantize: str | None = None
    lookahead: int | None = None
    force: bool = False


def parity_clip(sample_rate: int, seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """A deterministic drum-like test clip: decaying noise bursts and pitched thumps, float32 mono."""
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    out = np.zeros(n, dtype=np.float64)
    t = np.arange(int(0.3 * sample_rate)) / sample_rate
    for start in rng.integers(0, n - t.size, size=int(6 * seconds)):
        kind = rng.integers(3)
        if kind == 0:
            hit = np.sin(2 * np.pi * (60 + 80 * np.exp(-30 * t)) * t) * np.exp(-12 * t)
        elif kind == 1:
            hit = rng.standard_normal(t.size) * np.exp(-25 * t) * 0.6
        else:
            hit = rng.standard_normal(t.size) * np.exp(-60 * t) * 0.3
        out[start : start + t.size] += hit * rng.uniform(0.3, 1.0)
    return (0.5 * out / max(1e-9, np.abs(out).max())).astype(np.float32)


def _check_options(opts: ExportOptions, enc_lookahead: int) -> None:
    check_opset(opts.opset)
    if opts.precision not in ("fp32", "fp16"):
        raise ConfigError(f"unsupported precision {opts.precision!r}: use fp32 or fp16")
    if opts.quantize not in (None, "int8"):
        raise ConfigError(f"unsupported quantization {opts.quantize!r}: only int8")
    if opts.quantize and opts.precision != "fp32":
        raise ConfigError("--quantize int8 needs --precision fp32")
    if opts.lookahead is not None and opts.lookahead < enc_lookahead:
        raise ConfigError(
            f"--lookahead {opts.lookahead} is below the model's look-ahead of {enc_lookahead} frames; "
            "exact streaming needs at least that"
        )


def _prepare_out(out: Path, force: bool) -> None:
    """Refuse an output that is a file, a symlink, or a non-empty folder that is not a bundle (even with force).

    ``--force`` replaces only a folder holding a ``manifest.json``: it never deletes a folder of other files.
    """
    for parent in out.parents:
        if parent.exists() and not parent.is_dir():
            raise OutputError(f"{out}: cannot create the bundle folder: {parent} is a file")
    if out.is_symlink():
        raise OutputError(f"{out}: is a symlink; give the real folder")
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder")
    try:
        non_empty = out.is_dir() and any(out.iterdir())
    except OSError as e:
        raise OutputError(f"{out}: cannot read the folder ({e.strerror or e})") from None
    if non_empty and not force:
        raise OutputError(f"{out}: folder exists and is not empty (use --force to replace it)")
    if non_empty and not (out / MANIFEST).is_file():
        raise OutputError(
            f"{out}: not a bundle folder (no {MANIFEST}); --force replaces only an earlier bundle, so choose a new "
            "or empty folder"
        )


def weights_sha256(model: InverseDrumMachine) -> str:
    """sha256 over the model's parameters and buffers (names, shapes, dtypes, bytes; in name order)."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        a = t.detach().cpu().contiguous()
        h.update(f"{name}:{tuple(a.shape)}:{a.dtype};".encode())
        h.update(a.view(-1).view(torch.uint8).numpy().tobytes() if a.numel() else b"")
    return h.hexdigest()


def export_model(
    model: InverseDrumMachine,
    out: str | Path,
    opts: ExportOptions | None = None,
    *,
    source_name: str = "",
    source_sha256: str = "",
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Export a loaded model to a bundle folder ``out``; returns its path.

    Everything is written to a temporary sibling folder first and renamed at the end, so a failure never
    leaves a half-written bundle. Without ``source_sha256`` (a model that was not loaded from a file) the
    manifest records the sha256 of the model's weights instead.
    """
    opts = opts or ExportOptions()
    if not source_sha256:
        source_sha256 = weights_sha256(model)
    out = Path(out)
    say = progress or (lambda _msg: None)
    model = model.eval()
    base = StreamingEncoder(model).eval()
    _check_options(opts, base.lookahead)
    _prepare_out(out, opts.force)
    extra = 0 if opts.lookahead is None else opts.lookahead - base.lookahead
    enc = StreamingEncoder(model, extra_delay=extra).eval() if extra else base
    cfg = model.config
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
        tmp.chmod(0o755)
    except OSError as e:
        raise OutputError(f"{out}: cannot create the bundle folder ({e.strerror or e})") from None
    try:
        say("encoder.onnx")
        export_encoder(enc, tmp / "encoder.onnx", opts.opset)
        say("synth.onnx")
        export_synth(
            SynthGraph(model), tmp / "synth.onnx", opts.opset, model.synth.n_samples, cfg.n_classes, cfg.encoder.n_kits
        )
        say("graph rewrites")
        for graph in ("encoder.onnx", "synth.onnx"):
            optimize_graph(tmp / graph)
        if opts.precision == "fp16":
            say("fp16")
            to_fp16(tmp / "encoder.onnx")
            to_fp16(tmp / "synth.onnx")
        if opts.quantize == "int8":
            say("int8")
            to_int8(tmp / "encoder.onnx")
        say("arrays and parity data")
        np.save(tmp / "mel_fb.npy", mel_filterbank(cfg.frontend).astype(np.float32))
        perm = class_permutation(cfg.classes)
        noise = model.noise(NOISE_SEED)[perm].numpy().astype(np.float32)  # project order
        np.save(tmp / "noise.npy", noise)
        _write_parity(model, tmp / "parity.npz", noise)
        files = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
        manifest = build_manifest(
            model,
            enc,
            opset=opts.opset,
            precision=opts.precision,
            quantize=opts.quantize,
            source_name=source_name,
            source_sha256=source_sha256,
            files=files,
            n_noise=noise.shape[1],
        )
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        (tmp / "README.md").write_text(_readme(manifest))
        _replace(tmp, out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(f"{out}: cannot write the bundle ({e.strerror or e})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _replace(tmp: Path, out: Path) -> None:
    """Move the finished ``tmp`` folder to ``out``; an earlier bundle there (checked by ``_prepare_out``) is
    moved aside first and deleted only once the new one is in place."""
    if not out.exists():
        tmp.rename(out)
        return
    if not (out / MANIFEST).is_file() and any(out.iterdir()):  # changed since _prepare_out: never delete it
        raise OutputError(f"{out}: is no longer an empty folder or a bundle; nothing was replaced")
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    out.rename(old / out.name)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _write_parity(model: InverseDrumMachine, path: Path, noise: np.ndarray) -> None:
    """Offline PyTorch outputs on the parity clip, project order, for ``--check`` and other hosts' tests."""
    cfg = model.config
    perm = class_permutation(cfg.classes)
    audio = parity_clip(cfg.frontend.sample_rate)
    with torch.no_grad():
        o = model.encode(torch.from_numpy(audio)[None])
        one_shots, decay = model.synthesize(
            o.kit_embedding[0],
            torch.from_numpy(noise).index_select(0, torch.tensor([perm.index(i) for i in range(len(perm))])),
        )
    np.savez(
        path,
        audio=audio,
        logmel=o.logmel[0].numpy(),
        onset_logits=o.onset_logits[0, perm].numpy(),
        onset_prob=torch.sigmoid(o.onset_logits[0, perm]).numpy(),
        velocity=o.velocity[0, perm].numpy(),
        kit_embedding=o.kit_embedding[0].numpy(),
        gains=o.gains[0, perm].numpy(),
        one_shots=one_shots[perm].numpy(),
        decay_rate=decay[perm].numpy(),
    )


def export_bundle(
    ckpt: str | Path,
    out: str | Path | None = None,
    opts: ExportOptions | None = None,
    *,
    config: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """Load ``ckpt`` (project format, or official with ``model.yaml``) and export it; default ``out`` is
    ``<ckpt stem>.idm-bundle`` in the current folder."""
    ckpt = Path(ckpt)
    say = progress or (lambda _msg: None)
    say("loading checkpoint")
    model = load_model(ckpt, config)
    target = Path(out) if out is not None else Path.cwd() / (ckpt.stem + ".idm-bundle")
    opts = opts or ExportOptions()
    _prepare_out(target, opts.force)
    return export_model(model, target, opts, source_name=ckpt.name, source_sha256=sha256_file(ckpt), progress=say)


def _readme(m: dict) -> str:
    k = ", ".join(f"{c['name']} ({c['gm_note']})" for c in m["classes"])
    st = m["streaming"]
    la, flush = int(st["lookahead_frames"]), int(st["flush_frames"])
    quant = " with int8 dynamic quantization" if m["quantize"] else ""
    if la:
        timing = (
            f"Output column n of the stream is model frame n - {la} (the first {la} outputs are warm-up). "
            f"At the end of a clip set `end_frame` to the number of log-mel frames fed and feed {flush} more "
            "zero frames; before that, keep `end_frame` at the manifest's `streaming.end_frame_unknown`."
        )
    else:
        timing = ("The encoder is causal: output column n is model frame n, final as soon as it is fed. At the end "
                  "of a clip set `end_frame` to the number of log-mel frames fed (before that, keep it at the "
                  "manifest's `streaming.end_frame_unknown`).")  # fmt: skip
    return f"""# IDM streaming bundle

Exported by idm-export {m["exporter"]["version"]} from `{m["source"]["checkpoint"]}`
(sha256 {m["source"]["sha256"][:16]}...), model `{m["source"]["model_name"]}`, precision {m["precision"]}{quant},
ONNX opset {m["opset"]}.

- `encoder.onnx`: streaming encoder. Feed log-mel frames `logmel [1, {m["frontend"]["n_mels"]}, m]` (any m >= 1)
  plus every state tensor listed in `manifest.json` (`graphs.encoder.state`, initial values there); pass each
  `<name>_out` back as `<name>` on the next call. Outputs `onset_prob`, `velocity` `[1, K, m]`,
  running `kit_embedding` and `gains`. {timing}
- `synth.onnx`: `kit_embedding [1, n_kits]`, `noise [K, N]` (use `noise.npy`) -> `one_shots [K, N]`,
  `decay_rate [K]`.
- `mel_fb.npy`: mel filterbank `[n_fft/2+1, n_mels]`; log-mel = ln(|STFT|^2 @ mel_fb + {m["frontend"]["log_eps"]}),
  STFT n_fft {m["frontend"]["n_fft"]}, hop {m["frontend"]["hop"]}, periodic Hann, centred, reflect padding.
- `parity.npz`: a test clip and the PyTorch outputs for it; a host can test itself against them.
- Classes (project order, GM note): {k}.
- Encoder latency: {st["latency_samples"]} samples at {m["audio"]["sample_rate"]} Hz (look-ahead and half a
  window); the peak picker in `manifest.json` (`peak_picking`) adds its post-window, as the runtime reports.

Python: `from idm.runtime.engine.bundle import load_bundle; from idm.runtime.engine.encoder import StreamingEncoder`.
Validate: `idm-export --check <this folder>`. Full format: `docs/bundle.md` of the IDM toolkit.
"""
