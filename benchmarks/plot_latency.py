"""Draw the per-note latency histogram of the JACK end-to-end test and print its numbers.

Measure (a real JACK server with the dummy backend; see ../shared/docs/realtime.md)::

    IDM_JACK_LATENCIES=benchmarks/jack_latency.json pytest tests/test_live_jack.py::test_jack_end_to_end -s

then draw::

    python benchmarks/plot_latency.py benchmarks/jack_latency*.json --out docs/figures/jack-latency.png

Several records (runs of the same configuration, e.g. ``jack_latency-1.json``, ``jack_latency-2.json``) are pooled.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "records",
        nargs="*",
        type=Path,
        help="records of one configuration (pooled); default: benchmarks/jack_latency*.json",
    )
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "figures" / "jack-latency.png")
    args = ap.parse_args()
    from idm.plots import latency_histogram, latency_stats, pool_latency_records, save_png

    paths = args.records or sorted((REPO / "benchmarks").glob("jack_latency*.json"))
    record = pool_latency_records([json.loads(p.read_text(encoding="utf-8")) for p in paths])
    st = latency_stats(record["latencies_ms"])
    reported = record["reported_latency_samples"] / record["sample_rate"] * 1000
    save_png(latency_histogram(record), args.out)
    load = record.get("machine", {}).get("load_avg_1min", "?")
    # on time: within one period + 20 ms of the reported latency (the test's own window)
    window = (record["period"] + int(0.020 * record["sample_rate"])) / record["sample_rate"] * 1000
    late = sum(abs(v - reported) > window for v in record["latencies_ms"])
    print(f"{args.out}: {record['runs']} run(s), {int(st['n'])} notes, median {st['median']:.1f} ms, "
          f"p95 {st['p95']:.1f} ms, "
          f"min {st['min']:.1f}, max {st['max']:.1f} ms; idm-live reported {reported:.1f} ms; "
          f"{record.get('missed', 0)} of {record.get('expected_hits', '?')} hits without a note, "
          f"{late} further than {window:.1f} ms from it; load average {load}")  # fmt: skip


if __name__ == "__main__":
    main()
