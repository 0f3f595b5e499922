"""Load an exported bundle: validate the manifest schema and every file hash before any session exists."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from idm.runtime.engine.schema import (
    MAX_MANIFEST_BYTES,
    SCHEMA,
    SCHEMA_VERSION,
    Manifest,
    parse_manifest,
    plain_file_name,
)

from idm.errors import BundleError
from idm.files import sha256_file

__all__ = ["MANIFEST", "SCHEMA", "SCHEMA_VERSION", "Bundle", "load_bundle", "sha256_file", "validate_manifest"]

MANIFEST = "manifest.json"
#: Largest array file (``mel_fb.npy``, ``noise.npy``) and uncompressed ``parity.npz`` the runtime reads.
MAX_ARRAY_BYTES = 512 * 2**20


def validate_manifest(m: Any) -> Manifest:
    """Validate a decoded manifest against :mod:`idm.runtime.engine.schema`; raise :class:`BundleError` (one line)."""
    return parse_manifest(m)


def load_array(path: Path, shape: tuple[int, ...], what: str) -> np.ndarray:
    """A float ``.npy`` of exactly ``shape``, finite, as float32; the header is checked before the data is read.

    Raises
    ------
    BundleError
        If it is not a plain ``.npy`` file of that shape and a float dtype, or holds NaN/inf.
    """
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise BundleError(
            f"{path.name}: not a readable .npy array ({str(e).splitlines()[0] if str(e) else e})"
        ) from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind != "f" or tuple(arr.shape) != shape:
        got = f"{arr.dtype} {list(arr.shape)}" if isinstance(arr, np.ndarray) else type(arr).__name__
        raise BundleError(f"{path.name}: {what} must be a float array of shape {list(shape)}, got {got}")
    out = np.array(arr, dtype=np.float32)
    del arr
    if not np.isfinite(out).all():
        raise BundleError(f"{path.name}: {what} has NaN or infinite values")
    return out


@dataclass
class Bundle:
    """A validated bundle folder: its manifest and paths (no onnxruntime session is created here)."""

    root: Path
    manifest: dict[str, Any]
    spec: Manifest | None = None  #: the typed, validated manifest (None only for hand-made bundles)

    def path(self, name: str) -> Path:
        """Path of a bundle file by its manifest name: a plain name, hashed in ``files``, inside the folder.

        Raises
        ------
        BundleError
            If the name points outside the bundle (``../x``, an absolute path, a symlink out) or is not hashed.
        """
        if not plain_file_name(name) or name not in self.manifest.get("files", {}):
            raise BundleError(f"{self.root / MANIFEST}: file {name!r} is not a hashed file of the bundle")
        p = self.root / name
        real = p.resolve()
        if not real.is_relative_to(self.root.resolve()):
            raise BundleError(f"{p}: a symlink out of the bundle folder (to {real})")
        return p

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
        """The mel filterbank ``[n_fft // 2 + 1, n_mels]`` float32 (shape and values checked)."""
        fe = self.manifest["frontend"]
        shape = (int(fe["n_fft"]) // 2 + 1, int(fe["n_mels"]))
        return load_array(self.path(fe["mel_fb_file"]), shape, "the mel filterbank")

    def noise(self) -> np.ndarray:
        """The stored synthesizer noise ``[K, N]`` float32 (shape and values checked)."""
        syn = self.manifest["graphs"]["synth"]
        shape = (len(self.manifest["classes"]), int(syn["n_samples"]))
        return load_array(self.path(syn["noise_file"]), shape, "the synthesizer noise")

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
    if not mpath.resolve().is_relative_to(root.resolve()):
        raise BundleError(f"{mpath}: a symlink out of the bundle folder")
    try:
        size = mpath.stat().st_size
        if size > MAX_MANIFEST_BYTES:
            raise BundleError(f"{mpath}: {size} bytes; a manifest is at most {MAX_MANIFEST_BYTES // 2**20} MiB")
        manifest = json.loads(mpath.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{mpath}: not valid JSON ({e})") from None
    except RecursionError:
        raise BundleError(f"{mpath}: not valid JSON (nested too deeply)") from None
    except OSError as e:
        raise BundleError(f"{mpath}: cannot read ({e.strerror or e})") from None
    spec = validate_manifest(manifest)
    real_root = root.resolve()
    for name in manifest["files"]:
        p = root / name
        if not p.resolve().is_relative_to(real_root):
            raise BundleError(f"{p}: a symlink out of the bundle folder (to {p.resolve()})")
        if not p.is_file():
            raise BundleError(f"{p}: listed in the manifest but missing")
    if verify_hashes:
        for name, digest in manifest["files"].items():
            p = root / name
            try:
                actual = sha256_file(p)
            except OSError as e:
                raise BundleError(f"{p}: cannot read ({e.strerror or e})") from None
            if actual != digest:
                raise BundleError(f"{p}: sha256 mismatch (manifest {digest[:12]}..., file {actual[:12]}...)")
    return Bundle(root, manifest, spec)
