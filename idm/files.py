"""Small torch-free file helpers shared by the checkpoint loader, the exporter, separation and the runtime."""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path

__all__ = ["current_umask", "process_alive", "process_start", "replace_dir", "sha256_file"]


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


def process_start(pid: int) -> str:
    """An id of process ``pid``'s start (its start time in clock ticks, from /proc), or "" where unknown.

    With the pid it names one process even after the pid is reused.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def process_alive(pid: int, start: str = "") -> bool:
    """Whether process ``pid`` runs (and, when ``start`` is given and known here, is the one that started then)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    except OSError:
        return False
    now = process_start(pid)
    return not (start and now and now != start)


def replace_dir(new: Path, target: Path, replace: bool = True) -> None:
    """Move a finished folder into place; an existing target is removed only after the move succeeds.

    The folder and its files get the usual permissions (a temporary folder is created private). With
    ``replace=False`` an existing target is never replaced: the rename itself refuses (``os.rename`` onto a
    non-empty folder or a file fails; an empty folder holds nothing to lose) and :class:`FileExistsError`
    is raised with ``new`` left in place, so that a target written meanwhile by another process survives.
    """
    mask = current_umask()
    new.chmod(0o777 & ~mask)
    for f in new.iterdir():
        f.chmod(0o666 & ~mask)
    if not replace:
        try:
            os.rename(new, target)
        except OSError:
            if target.exists() or target.is_symlink():
                raise FileExistsError(errno.EEXIST, "exists", str(target)) from None
            raise
        return
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
