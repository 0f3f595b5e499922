"""The soak benchmark in two minutes: varying blocks, bounded memory, stable notes, every note ended, equal to one
block size (``benchmarks/soak.py``; the one-hour figures are in ``benchmarks/RESULTS.md``)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _soak_module():
    spec = importlib.util.spec_from_file_location("idm_soak", ROOT / "benchmarks" / "soak.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_two_minute_soak(tmp_path: Path) -> None:
    soak = _soak_module()
    # 15 s stretches of audio: 8 in two minutes, so three variants repeat and their note counts are compared
    res = soak.soak(minutes=2.0, segment_minutes=0.5, unit_seconds=15.0, workdir=tmp_path)
    table = soak.table(res, 32.0, 1.5)
    print(table)
    assert res.seconds == 120.0 and len(res.segments) == 4
    assert res.events > 100 and res.blocks > 1000
    assert res.checks["equal to one block size"], table
    counts = (
        f"notes {res.events}, port on/off {res.port_ons}/{res.port_offs} {res.port_errors}, file on/off "
        f"{res.file_ons}/{res.file_offs} unpaired {res.file_unpaired}"
    )
    assert res.checks["note-offs (port)"], counts
    assert res.checks["note-offs (file)"], counts
    assert res.checks["notes per minute"], (table, res.notes_per_minute)
    assert res.checks["rss"], table
    # per-block time: the median does not drift (p99 is reported; on a shared machine it mostly measures the others)
    first, last = res.segments[0].p50_pct, res.segments[-1].p50_pct
    assert last <= 3 * first + 5.0, table
