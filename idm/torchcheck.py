"""One-line errors for commands that need PyTorch (or another optional package) when it is not installed."""

from __future__ import annotations

import importlib.util

from idm.errors import IDMError

__all__ = ["require", "require_torch"]


def require(module: str, what: str, extra: str) -> None:
    """Raise :class:`IDMError` naming the install command if ``module`` cannot be imported."""
    if importlib.util.find_spec(module) is None:
        raise IDMError(f"{what} needs {module}, which is not installed: pip install 'inverse-drum-machine[{extra}]'")


def require_torch(what: str, extra: str = "torch") -> None:
    """Raise :class:`IDMError` with the install command if PyTorch is not installed."""
    require("torch", what, extra)
