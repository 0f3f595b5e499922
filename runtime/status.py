"""The live status panel (rich): hits per class, input level, load, latency, xruns, overruns, notes sent."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from idm.classes import CLASSES

__all__ = ["render_status", "summary", "undelivered"]

FLASH_SECONDS = 0.15


def _xruns(session: Any) -> int:
    st = session.stream
    if st is None:
        return 0
    n = st.xruns + st.underruns
    if st.input_ring is not None:
        n += st.input_ring.drops
    return int(n)


def undelivered(session: Any) -> int | None:
    """Notes sent after the MIDI port went away, or None while it is there."""
    port = getattr(session.scheduler, "port", None)
    if port is None or not getattr(port, "lost", False):
        return None
    return int(port.undelivered)


def _meter(db: float, width: int = 24) -> Text:
    frac = min(1.0, max(0.0, (db + 60.0) / 60.0))
    n = round(frac * width)
    style = "green" if db < -12 else ("yellow" if db < -3 else "red")
    return Text("#" * n, style=style) + Text("." * (width - n), style="dim") + Text(f" {db:6.1f} dBFS")


def render_status(session: Any, title: str = "idm-live") -> Panel:
    """A panel for :class:`rich.live.Live`; reads the session's counters (never blocks the worker)."""
    s = session.stats
    now = time.monotonic()
    hits = Table.grid(padding=(0, 1))
    lit = [now - s.last_hit[k] < FLASH_SECONDS for k in range(len(CLASSES))]
    for _ in CLASSES:
        hits.add_column(justify="center")
    on_style = "bold black on bright_green"
    hits.add_row(*[Text(f" {n} ", style=on_style if on else "dim") for n, on in zip(CLASSES, lit, strict=True)])
    hits.add_row(*[Text(str(c), style="bold" if on else "") for c, on in zip(s.hits, lit, strict=True)])
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="cyan", justify="right")
    grid.add_column()
    grid.add_row("input", _meter(s.level_db))
    grid.add_row("load", Text(f"{s.load_pct:5.1f} % of the block budget (max {s.load_max_pct:5.1f} % over 2 s)"))
    grid.add_row("latency", Text(f"{session.latency_samples / session.model_rate * 1000:.1f} ms"))
    sched = session.scheduler
    notes = f"{s.events} found"
    if sched is not None:
        notes += f", {sched.stats.sent} sent"
        lost = undelivered(session)
        if lost is not None:
            notes += f", {lost} not delivered (MIDI port gone)"
        if sched.stats.late:
            notes += f", {sched.stats.late} late (max {sched.stats.max_late_ms:.1f} ms)"
    grid.add_row("notes", Text(notes))
    grid.add_row("xruns", Text(str(_xruns(session)), style="red" if _xruns(session) else ""))
    if getattr(session, "realtime", False):
        over = s.overruns
        grid.add_row("overruns", Text(f"{over} blocks over their time budget (worst {s.worst_pct:.0f} %)",
                                      style="red" if over else ""))  # fmt: skip
    pos = session.seconds_processed
    total = session.source.frames
    where = f"{pos:7.1f} s"
    if total:
        where += f" of {total / session.source.sample_rate:.1f} s"
    banks = getattr(session.processor, "bank_updates", None)
    if banks is not None:
        where += f"   kit updates {banks}"
    grid.add_row("time", Text(where))
    return Panel(Group(hits, grid), title=title, subtitle="Ctrl-C stops and saves", expand=False)


def summary(session: Any) -> str:
    """One line for the end of a session."""
    s = session.stats
    parts = [f"{session.seconds_processed:.1f} s processed", f"{s.events} notes"]
    if session.scheduler is not None:
        parts.append(f"{session.scheduler.stats.sent} sent")
        lost = undelivered(session)
        if lost is not None:
            parts.append(f"{lost} not delivered (MIDI port gone)")
        if session.scheduler.stats.late:
            st = session.scheduler.stats
            parts.append(f"{st.late} late (max {st.max_late_ms:.1f} ms)")
    parts.append(f"{_xruns(session)} xruns")
    if getattr(session, "realtime", False):
        parts.append(f"{s.overruns} overruns (worst block {s.worst_pct:.0f} % of its time)")
    parts.append(f"load mean {s.load_pct:.1f} %")
    return ", ".join(parts)
