"""Small torch-free file helpers shared by the checkpoint loader, the exporter, separation and the runtime."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

__all__ = ["current_umask", "replace_dir", "sha256_file"]


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def current_umask() -> int:
    """The process umask (read without changing it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


def replace_dir(new: Path, target: Path) -> None:
    """Move a finished folder into place; an existing target is removed only after the move succeeds.

    The folder and its files get the usual permissions (a temporary folder is created private).
    """
    mask = current_umask()
    new.chmod(0o777 & ~mask)
    for f in new.iterdir():
        f.chmod(0o666 & ~mask)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
