"""Shared pieces of the three CLIs (``idm``, ``idm-live``, ``idm-export``): one-line usage errors, option ranges.

- :class:`OneLineGroup` / :class:`OneLineCommand`: typer command classes whose usage errors (unknown option,
  bad value, value out of range) print one line, ``error: Invalid value for '--threads': 0 is not in the
  range 1<=x<=256. (see 'idm separate --help')``, exit 2, instead of a usage block and a framed panel.
- :func:`number`: a typer callback for float options: finite and within a range (click's ``FloatRange``
  lets NaN through, since every comparison with NaN is false).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from typing import Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

__all__ = ["OneLineCommand", "OneLineGroup", "number"]


def _one_line_main(main: Callable[..., Any], *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
    """Run a click ``main`` non-standalone and print its usage errors as one line (then exit like click)."""
    if not standalone_mode:
        return main(*args, standalone_mode=False, **kwargs)
    try:
        rv = main(*args, standalone_mode=False, **kwargs)
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        sys.exit(1)
    except typer.TyperException as e:  # click's ClickException, UsageError, BadParameter, ...
        show = getattr(e, "show", None)
        if type(e).__name__ == "NoArgsIsHelpError" or not hasattr(e, "format_message"):
            if show is not None:
                show()
            sys.exit(getattr(e, "exit_code", 2))
        msg = " ".join(str(e.format_message()).split())
        ctx = getattr(e, "ctx", None)
        hint = f" (see '{ctx.command_path} --help')" if ctx is not None and getattr(e, "exit_code", 1) == 2 else ""
        typer.echo(f"error: {msg}{hint}", err=True)
        sys.exit(getattr(e, "exit_code", 2))
    sys.exit(rv if isinstance(rv, int) and not isinstance(rv, bool) else 0)


class OneLineGroup(TyperGroup):
    """A typer group (``typer.Typer(cls=OneLineGroup)``) whose usage errors are one line."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        return _one_line_main(super().main, *args, standalone_mode=standalone_mode, **kwargs)


class OneLineCommand(TyperCommand):
    """A typer command (``@app.command(cls=OneLineCommand)``) whose usage errors are one line."""

    def main(self, *args: Any, standalone_mode: bool = True, **kwargs: Any) -> Any:
        return _one_line_main(super().main, *args, standalone_mode=standalone_mode, **kwargs)


def number(
    lo: float | None = None, hi: float | None = None, *, lo_open: bool = False
) -> Callable[[float | None], float | None]:
    """A typer option callback: the value must be finite and within ``lo..hi`` (``lo`` excluded if ``lo_open``).

    Parameters
    ----------
    lo, hi
        Bounds (None: unbounded on that side).
    lo_open
        Exclude ``lo`` itself (``--alpha`` must be > 0).

    Returns
    -------
    Callable
        The callback; ``None`` (an option not given) passes through.
    """
    low = "" if lo is None else (f"> {lo:g}" if lo_open else f">= {lo:g}")
    high = "" if hi is None else f"<= {hi:g}"
    rule = " and ".join(t for t in (low, high) if t) or "finite"

    def check(value: float | None) -> float | None:
        if value is None:
            return None
        bad = not math.isfinite(value)
        bad = bad or (lo is not None and (value <= lo if lo_open else value < lo))
        bad = bad or (hi is not None and value > hi)
        if bad:
            raise typer.BadParameter(f"{value:g} is not a number {rule}")
        return value

    return check


# ---- options shared by `idm separate` and `idm-live` (one declaration, the same help and ranges) ---------------

NoteLength = Annotated[
    float,
    typer.Option(
        help="MIDI note length in ms (a note also ends at the next hit of its drum).", callback=number(1, 10000)
    ),
]
MidiChannel = Annotated[int, typer.Option(help="MIDI channel of the notes, 1-16 (10: General MIDI drums).")]
NoteMap = Annotated[
    str, typer.Option(help="Notes per drum: gm, td (Roland V-Drums toms 48/45/43), or a YAML file 'tom_mid: 45'.")
]
StemFormat = Annotated[
    str, typer.Option("--format", help="Stems (and sonification): float (32-bit WAV), wav16, wav24 or flac.")
]
Replace = Annotated[
    str | None,
    typer.Option(
        help="Drum replacement: play your samples at the detected hits. A kit (name from `idm data kits`, "
        "Hydrogen kit folder, .sf2, folder of one-shots per drum) replaces every drum it has; or DRUM=SOURCE items, "
        "e.g. 'kick=kick.wav,snare=snares/' (a sample, a folder of velocity layers, or a kit). Writes replaced.wav.",
    ),
]
ReplaceMode = Annotated[
    str,
    typer.Option(
        help="swap: the named drums are taken out of the mix (their masked stems) and the samples put in, everything "
        "else stays; add: the samples on top of the original mix; solo: the samples alone."
    ),
]
ReplaceAlign = Annotated[
    bool,
    typer.Option(
        help="With --replace: start each sample at its hit's transient in the input, found by an onset search and "
        "a cross-correlation with the sample's attack (sample-accurate for most hits; the model's frames are 5.8 ms "
        "apart). Off: the samples sit on the frames, exactly as idm-live plays them.",
    ),
]
KitFrom = Annotated[
    str | None,
    typer.Option(
        help="Kit transfer: also write transferred.wav (and transferred_<drum>.wav), this recording's performance "
        "played on another kit: the one-shots the model infers from another recording (an audio file), or a sample "
        "kit (name from `idm data kits`, Hydrogen kit folder, .sf2, folder of one-shots per drum).",
    ),
]
