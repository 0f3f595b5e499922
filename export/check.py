"""Re-validate a bundle: manifest schema, hashes, onnx.checker, graph signatures and a streamed parity run.

Torch-free; without the ``onnx`` package the graphs' signatures are read from onnxruntime sessions and
``onnx.checker`` is skipped (the report says so).
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from idm.runtime.engine.bundle import MAX_ARRAY_BYTES, Bundle, load_bundle
from idm.runtime.engine.encoder import StreamingEncoder, make_session

from idm.errors import BundleError

__all__ = ["CheckReport", "check_bundle", "load_parity", "run_parity"]


@dataclass
class CheckReport:
    """Max abs errors of the parity run, per output, and the tolerances they were held to."""

    errors: dict[str, float] = field(default_factory=dict)
    tolerance: dict[str, float] = field(default_factory=dict)
    checker: bool = True  #: whether onnx.checker ran (it needs the onnx package)


def _graph_io(path: Path) -> tuple[dict[str, list[int | None]], set[str], bool]:
    """Input shapes (None: dynamic), output names, and whether onnx.checker ran, for one graph file."""
    try:
        import onnx
    except ImportError:
        sess: Any = make_session(str(path))
        ins = {i.name: [d if isinstance(d, int) else None for d in i.shape] for i in sess.get_inputs()}
        return ins, {o.name for o in sess.get_outputs()}, False
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise BundleError(f"{path.name}: onnx.checker failed: {str(e).splitlines()[0]}") from None
    except Exception as e:  # protobuf decode errors have no common public base class
        raise BundleError(f"{path.name}: not a readable ONNX graph ({type(e).__name__})") from None
    ins = {
        i.name: [d.dim_value if d.HasField("dim_value") else None for d in i.type.tensor_type.shape.dim]
        for i in model.graph.input
    }
    return ins, {o.name for o in model.graph.output}, True


def _check_signature(bundle: Bundle, name: str) -> bool:
    g = bundle.manifest["graphs"][name]
    graph_in, graph_out, checked = _graph_io(bundle.path(g["file"]))
    want_in = [i["name"] for i in g["inputs"]]
    want_out = [o["name"] for o in g["outputs"]]
    if name == "encoder":
        want_in += [s["name"] for s in g["state"]]
        want_out += [s["output"] for s in g["state"]]
        for s in g["state"]:
            if s["name"] not in graph_in:
                continue
            dims = graph_in[s["name"]]
            if dims != list(s["shape"]):
                raise BundleError(
                    f"{g['file']}: state {s['name']!r} has shape {dims} in the graph, manifest {s['shape']}"
                )
    missing = [n for n in want_in if n not in graph_in] + [n for n in want_out if n not in graph_out]
    if missing:
        raise BundleError(f"{g['file']}: graph lacks the manifest's tensors {', '.join(missing[:4])}")
    return checked


#: Arrays ``parity.npz`` must hold.
PARITY_ARRAYS = ("audio", "onset_prob", "velocity", "kit_embedding", "gains", "one_shots")


def load_parity(bundle: Bundle) -> dict[str, np.ndarray]:
    """The parity arrays, after checking the archive's sizes (no zip bomb), names, dtypes and shapes.

    Raises
    ------
    BundleError
        One line naming ``parity.npz`` and the problem.
    """
    path = bundle.path(bundle.manifest["parity"]["file"])
    name = path.name
    try:
        with zipfile.ZipFile(path) as z:
            total = sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as e:
        raise BundleError(f"{name}: not a readable .npz archive ({e})") from None
    if total > MAX_ARRAY_BYTES:
        raise BundleError(f"{name}: {total} bytes uncompressed, more than {MAX_ARRAY_BYTES // 2**20} MiB")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in PARITY_ARRAYS if k not in npz.files]
            if missing:
                raise BundleError(f"{name}: lacks the arrays {', '.join(missing)}")
            par = {k: np.asarray(npz[k]) for k in PARITY_ARRAYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as e:
        raise BundleError(f"{name}: not a readable .npz archive ({str(e).splitlines()[0] if str(e) else e})") from None
    m = bundle.manifest
    k, n_kits = len(m["classes"]), int(m["graphs"]["synth"]["inputs"][0]["shape"][-1])
    sr = int(m["audio"]["sample_rate"])
    audio = par["audio"]
    if audio.ndim != 1 or audio.dtype.kind != "f" or not 0 < audio.size <= 60 * sr:
        got = f"{audio.dtype} {list(audio.shape)}"
        raise BundleError(f"{name}: 'audio' must be mono float audio of at most 60 s, got {got}")
    frames = par["onset_prob"].shape[-1] if par["onset_prob"].ndim == 2 else -1
    want = {
        "onset_prob": (k, frames),
        "velocity": (k, frames),
        "kit_embedding": (n_kits,),
        "gains": (k,),
        "one_shots": (k, int(m["graphs"]["synth"]["n_samples"])),
    }
    for key, shape in want.items():
        a = par[key]
        if a.dtype.kind != "f" or tuple(a.shape) != shape or frames < 0:
            got = f"{a.dtype} {list(a.shape)}"
            raise BundleError(f"{name}: {key!r} must be a float array of shape {list(shape)}, got {got}")
        if not np.isfinite(a).all():
            raise BundleError(f"{name}: {key!r} has NaN or infinite values")
    return {key: np.asarray(a, dtype=np.float32) for key, a in par.items()}


def run_parity(bundle: Bundle, seed: int = 0, max_block: int = 6000) -> dict[str, float]:
    """Stream the parity clip through the runtime in random blocks; max abs error per output."""
    par = load_parity(bundle)
    enc = StreamingEncoder(bundle)
    audio = par["audio"]
    rng = np.random.default_rng(seed)
    probs, vels = [], []
    t = 0
    while t < audio.size:
        n = int(rng.integers(1, max_block))
        f = enc.process_audio(audio[t : t + n])
        probs.append(f.onset_prob)
        vels.append(f.velocity)
        t += n
    f = enc.flush()
    probs.append(f.onset_prob)
    vels.append(f.velocity)
    prob, vel = np.concatenate(probs, 1), np.concatenate(vels, 1)
    if prob.shape != par["onset_prob"].shape:
        raise BundleError(f"parity run: streamed {prob.shape[1]} frames, offline has {par['onset_prob'].shape[1]}")
    synth = make_session(str(bundle.synth_path))
    one_shots, _ = synth.run(None, {"kit_embedding": par["kit_embedding"][None], "noise": bundle.noise()})
    return {
        "onset_prob": float(np.abs(prob - par["onset_prob"]).max()),
        "velocity": float(np.abs(vel - par["velocity"]).max()),
        "kit_embedding": float(np.abs(enc.kit_embedding - par["kit_embedding"]).max()),
        "gains": float(np.abs(enc.gains - par["gains"]).max()),
        "one_shots": float(np.abs(one_shots - par["one_shots"]).max()),
    }


def check_bundle(root: str | Path) -> CheckReport:
    """Full validation of a bundle folder; raises :class:`BundleError` on the first problem found."""
    bundle = load_bundle(root)
    checked = all([_check_signature(bundle, name) for name in ("encoder", "synth")])
    bundle.mel_fb()  # shape and values (state shapes and every other field: the schema, in load_bundle)
    bundle.noise()
    tol = bundle.manifest["parity"]["tolerance"]
    errors = run_parity(bundle)
    for key, err in errors.items():
        if not err <= tol[key]:
            raise BundleError(f"parity run: {key} differs from PyTorch by {err:.3g} (tolerance {tol[key]:g})")
    return CheckReport(errors, dict(tol), checked)
