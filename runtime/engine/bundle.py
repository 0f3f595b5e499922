"""Load an exported bundle: validate the manifest schema and every file hash before any session exists."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from idm.errors import BundleError
from idm.files import sha256_file

__all__ = ["MANIFEST", "SCHEMA", "SCHEMA_VERSION", "Bundle", "load_bundle", "sha256_file", "validate_manifest"]

MANIFEST = "manifest.json"
SCHEMA = "idm-bundle"
SCHEMA_VERSION = 1

# key -> expected type, for the top level and the sections a host needs
_TOP: dict[str, type | tuple[type, ...]] = {
    "schema": str,
    "schema_version": int,
    "exporter": dict,
    "source": dict,
    "audio": dict,
    "frontend": dict,
    "classes": list,
    "streaming": dict,
    "precision": str,
    "opset": int,
    "graphs": dict,
    "files": dict,
    "peak_picking": dict,
    "parity": dict,
}
_SECTIONS: dict[str, dict[str, type | tuple[type, ...]]] = {
    "audio": {"sample_rate": int, "channels": int},
    "frontend": {"n_fft": int, "hop": int, "n_mels": int, "log_eps": float, "mel_fb_file": str, "frame_rate": float},
    "streaming": {
        "lookahead_frames": int,
        "extra_frames": int,
        "latency_samples": int,
        "end_frame_unknown": int,
        "flush_frames": int,
    },
    "source": {"sha256": str},
}


def validate_manifest(m: Any) -> None:
    """Raise :class:`BundleError` naming the first missing or mistyped key of a manifest."""
    if not isinstance(m, dict):
        raise BundleError("manifest.json: top level is not an object")
    if m.get("schema") != SCHEMA:
        raise BundleError(f"manifest.json: 'schema' is {m.get('schema')!r}, expected {SCHEMA!r}")
    if m.get("schema_version") != SCHEMA_VERSION:
        raise BundleError(
            f"manifest.json: schema_version {m.get('schema_version')!r} is not supported (this runtime reads "
            f"{SCHEMA_VERSION})"
        )

    def check(d: dict[str, Any], spec: dict[str, type | tuple[type, ...]], where: str) -> None:
        for key, typ in spec.items():
            if key not in d:
                raise BundleError(f"manifest.json: missing key '{where}{key}'")
            ok = isinstance(d[key], typ) and not (typ is int and isinstance(d[key], bool))
            if typ is float:
                ok = isinstance(d[key], int | float)
            if not ok:
                raise BundleError(f"manifest.json: '{where}{key}' has type {type(d[key]).__name__}")

    check(m, _TOP, "")
    for sec, spec in _SECTIONS.items():
        check(m[sec], spec, sec + ".")
    for g in ("encoder", "synth"):
        if g not in m["graphs"]:
            raise BundleError(f"manifest.json: missing graph 'graphs.{g}'")
        check(m["graphs"][g], {"file": str, "inputs": list, "outputs": list}, f"graphs.{g}.")
    check(m["graphs"]["encoder"], {"state": list}, "graphs.encoder.")
    for i, s in enumerate(m["graphs"]["encoder"]["state"]):
        if not isinstance(s, dict):
            raise BundleError(f"manifest.json: graphs.encoder.state[{i}] is not an object")
        check(s, {"name": str, "output": str, "shape": list, "dtype": str, "init": (int, float)}, f"state[{i}].")
        if s["dtype"] not in ("float32", "int64"):
            raise BundleError(f"manifest.json: state {s['name']!r} has unsupported dtype {s['dtype']!r}")
    names = [c.get("name") if isinstance(c, dict) else None for c in m["classes"]]
    if None in names:
        raise BundleError("manifest.json: every entry of 'classes' needs a name and a gm_note")


@dataclass
class Bundle:
    """A validated bundle folder: its manifest and paths (no onnxruntime session is created here)."""

    root: Path
    manifest: dict[str, Any]

    def path(self, name: str) -> Path:
        """Path of a bundle file by its manifest name."""
        return self.root / name

    @property
    def encoder_path(self) -> Path:
        return self.path(self.manifest["graphs"]["encoder"]["file"])

    @property
    def synth_path(self) -> Path:
        return self.path(self.manifest["graphs"]["synth"]["file"])

    @property
    def class_names(self) -> list[str]:
        return [c["name"] for c in self.manifest["classes"]]

    @property
    def gm_notes(self) -> list[int]:
        return [int(c["gm_note"]) for c in self.manifest["classes"]]

    @property
    def lookahead(self) -> int:
        return int(self.manifest["streaming"]["lookahead_frames"])

    @property
    def latency_samples(self) -> int:
        return int(self.manifest["streaming"]["latency_samples"])

    def mel_fb(self) -> np.ndarray:
        """The mel filterbank ``[n_fft // 2 + 1, n_mels]``."""
        return np.load(self.path(self.manifest["frontend"]["mel_fb_file"]), allow_pickle=False)

    def noise(self) -> np.ndarray:
        """The stored synthesizer noise ``[K, N]``."""
        return np.load(self.path(self.manifest["graphs"]["synth"]["noise_file"]), allow_pickle=False)

    def initial_state(self) -> dict[str, np.ndarray]:
        """Fresh encoder state arrays, keyed by input name."""
        return {
            s["name"]: np.full(s["shape"], s["init"], dtype=np.dtype(s["dtype"]))
            for s in self.manifest["graphs"]["encoder"]["state"]
        }


def load_bundle(root: str | Path, verify_hashes: bool = True) -> Bundle:
    """Read and validate ``root/manifest.json`` and check every listed file's sha256.

    Raises
    ------
    BundleError
        With a one-line message naming the file or key that is wrong.
    """
    root = Path(root)
    if not root.is_dir():
        raise BundleError(f"{root}: bundle folder not found")
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"{root}: no {MANIFEST} (not an IDM bundle)")
    try:
        manifest = json.loads(mpath.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{mpath}: not valid JSON ({e})") from None
    validate_manifest(manifest)
    if verify_hashes:
        for name, digest in manifest["files"].items():
            p = root / name
            if Path(name).is_absolute() or ".." in Path(name).parts:
                raise BundleError(f"{mpath}: file name {name!r} points outside the bundle")
            if not p.is_file():
                raise BundleError(f"{p}: listed in the manifest but missing")
            actual = sha256_file(p)
            if actual != digest:
                raise BundleError(f"{p}: sha256 mismatch (manifest {digest[:12]}..., file {actual[:12]}...)")
    for g in ("encoder", "synth"):
        f = manifest["graphs"][g]["file"]
        if f not in manifest["files"]:
            raise BundleError(f"{mpath}: graph file {f!r} is not hashed in 'files'")
    return Bundle(root, manifest)
