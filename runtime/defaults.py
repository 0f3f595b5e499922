"""Where idm-live finds its model when ``--bundle`` is not given: ``$IDM_BUNDLE``, then the shipped weights."""

from __future__ import annotations

import os
from pathlib import Path

from idm.errors import BundleError

__all__ = ["ENV_VAR", "default_bundle", "shipped_bundle_dir"]

ENV_VAR = "IDM_BUNDLE"


def shipped_bundle_dir() -> Path:
    """The bundle folder inside the installed package: ``idm/weights/live/bundle``."""
    import idm

    return Path(idm.__file__).resolve().parent / "weights" / "live" / "bundle"


def default_bundle() -> Path:
    """The default bundle folder: ``$IDM_BUNDLE`` if set, else the package's shipped bundle.

    Raises
    ------
    BundleError
        ``$IDM_BUNDLE`` names no folder, or no bundle is shipped with this installation.
    """
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env).expanduser()
        if not path.is_dir():
            raise BundleError(f"${ENV_VAR}={env}: bundle folder not found")
        return path
    shipped = shipped_bundle_dir()
    if (shipped / "manifest.json").is_file():
        return shipped
    raise BundleError(
        f"no model bundle: pass --bundle DIR (made with idm-export) or set {ENV_VAR}; this installation ships none "
        f"(looked in {shipped})"
    )
