"""The embeddable engine's public API: the life cycle, and ``process`` allocating no array memory.

The allocation tests run the shipped live bundle over thousands of blocks of the host sizes (64 to 1024 samples,
and varying sizes up to ``max_block``) after a warm-up, for every stems mode, and check, per ``process`` call:

* with :mod:`tracemalloc`, that the peak of traced memory above the call's start stays below what the call's
  few Python objects take (a block-sized temporary, or a buffer numpy's iterator allocates for a broadcast
  loop, is larger), and over the whole run that nothing stays allocated in numpy's domain and the total
  traced memory does not grow with the number of blocks;
* with a counting numpy memory handler (:mod:`numpy_alloc`), that numpy allocates no data buffer at all,
  however small (tracemalloc only sees buffers alive at a snapshot).

The bank refresher is off in these runs: its thread synthesizes a new bank (an allocation, by design off the
processing thread) and tracemalloc cannot tell threads apart.
"""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np
import pytest
from conftest import drum_loop
from idm.runtime.engine import Engine, EngineConfig, ProcessedBlock
from numpy_alloc import count_numpy_allocations

from idm.models import resolve_bundle

SR = 44100
HOST_BLOCKS = (64, 256, 512, 1024)
#: bytes of Python objects one call may hold at once (results, views, events); an array of a block is larger
PYTHON_OBJECTS = 6000
#: growth of traced memory allowed over a whole run: Python objects that settle after warm-up (onnxruntime's
#: binding caches a few hundred bytes, the pending-event deque may hold one more block); a leak of even one
#: small object per call (>= 16 B) would exceed it
SETTLED = 16000


@pytest.fixture(scope="module")
def live_bundle():
    return resolve_bundle("live")


@pytest.fixture(scope="module")
def loop() -> np.ndarray:
    """24 s of a drum loop (hits in every class the demo plays), mono float32."""
    return np.tile(drum_loop(3.0, SR, seed=3), 8).astype(np.float32)


def _run(engine: Engine, x: np.ndarray, sizes: list[int]) -> tuple[np.ndarray | None, list[tuple[int, ...]]]:
    """Stream ``x`` in blocks of the given sizes (cycled), then flush; stems and events."""
    stems, events, i, c = [], [], 0, 0
    while i < x.shape[0]:
        n = sizes[c % len(sizes)]
        out = engine.process(x[i : i + n])
        assert isinstance(out, ProcessedBlock) and out.start == i
        if out.stems is not None:
            assert out.stems.shape == (len(engine.class_names), min(n, x.shape[0] - i))
            stems.append(out.stems.copy())
        events += [(e.cls, e.note, e.velocity, e.sample) for e in out.events]
        i, c = i + n, c + 1
    last = engine.flush()
    if last.stems is not None:
        stems.append(last.stems)
    events += [(e.cls, e.note, e.velocity, e.sample) for e in last.events]
    return (np.concatenate(stems, axis=1) if stems else None), events


def _same(a: tuple[np.ndarray | None, list[tuple[int, ...]]], b: tuple[np.ndarray | None, list[tuple[int, ...]]]):
    """Same hits (class, note, due sample) and stems (the encoder's frames grouped differently: float rounding)."""
    assert [e[:2] + e[3:] for e in a[1]] == [e[:2] + e[3:] for e in b[1]]
    assert a[0] is not None and b[0] is not None
    np.testing.assert_allclose(a[0], b[0], atol=1e-5)


def test_life_cycle(live_bundle, loop: np.ndarray) -> None:
    x = loop[: 2 * SR]
    cfg = EngineConfig(provider="cpu", stems="synth", max_block=256, freeze=True)
    with Engine(live_bundle, cfg) as engine:
        assert engine.max_block == 256
        assert engine.latency == 512  # the live model: causal encoder and picker, half a window of the front end
        ref = _run(engine, x, [256])
        assert ref[0] is not None and ref[0].shape == (9, x.shape[0] + engine.latency)
        assert np.abs(ref[0][:, : engine.latency]).max() == 0.0  # silence until the first valid output
        assert len(ref[1]) > 10
        assert all(s >= engine.latency for *_, s in ref[1])
        with pytest.raises(RuntimeError):
            engine.process(x[:64])  # after flush
        engine.reset()  # a new stream: the same input gives the same output, bit for bit
        again = _run(engine, x, [256])
        assert again[1] == ref[1]
        np.testing.assert_array_equal(again[0], ref[0])
        engine.reset()  # any block sizes up to max_block, empty blocks included
        _same(_run(engine, x, [64, 256, 100, 0, 7]), ref)
        engine.reset()  # blocks above max_block are processed in pieces
        _same(_run(engine, x, [1000, 3000]), ref)
        engine.prepare(4096)  # a bigger host block: new buffers, a new stream
        assert engine.max_block == 4096 and engine.latency == 512
        assert engine.samples_in == 0 and engine.samples_out == 0
        _same(_run(engine, x, [4096, 1024]), ref)
    masked = Engine(live_bundle, EngineConfig(provider="cpu", stems="masked", refresh_bank=False))
    assert masked.latency == 512 + 1024  # masked stems add one STFT window
    masked.close()


def _block_sizes(rng: np.random.Generator, max_block: int, n: int) -> list[int]:
    """``n`` block sizes: the host sizes, then varying sizes up to ``max_block`` (empty blocks included)."""
    fixed = [b for b in HOST_BLOCKS for _ in range(n // 8)]
    return fixed + [int(v) for v in rng.integers(0, max_block + 1, n - len(fixed))]


@pytest.mark.parametrize("stems", ["none", "synth", "masked"])
def test_process_allocates_no_array_memory(stems: str, live_bundle, loop: np.ndarray) -> None:
    max_block = 1024
    sizes = _block_sizes(np.random.default_rng(12), max_block, 2400)
    assert len(sizes) >= 2000
    x = np.tile(loop, 1 + sum(sizes) // loop.shape[0] + 1)
    cfg = EngineConfig(provider="cpu", stems=stems, max_block=max_block, refresh_bank=False)
    with Engine(live_bundle, cfg) as engine:
        i = 0
        for n in [256] * 200 + [1024] * 20:  # warm-up: the start of the stream and onnxruntime's first runs
            engine.process(x[i : i + n])
            i += n
        blocks = []
        for n in sizes:  # the blocks are cut before measuring (a slice is a Python object, not array memory)
            blocks.append(x[i : i + n])
            i += n
        domain = tracemalloc.DomainFilter(True, np.lib.tracemalloc_domain)
        peaks = np.zeros(len(blocks), dtype=np.int64)
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot().filter_traces([domain])
            start = tracemalloc.get_traced_memory()[0]
            hits = 0
            for b, block in enumerate(blocks):
                tracemalloc.reset_peak()
                now = tracemalloc.get_traced_memory()[0]
                out = engine.process(block)
                peaks[b] = tracemalloc.get_traced_memory()[1] - now
                hits += len(out.events)
                del out
            gc.collect()
            after = tracemalloc.take_snapshot().filter_traces([domain])
            growth = tracemalloc.get_traced_memory()[0] - start
        finally:
            tracemalloc.stop()
        kept = sum(s.size_diff for s in after.compare_to(before, "traceback"))
        assert hits > 50  # the voices and the picker's hit path ran, not only silence
        worst = int(np.argmax(peaks))
        assert peaks[worst] < PYTHON_OBJECTS, f"block {worst} ({sizes[worst]} samples): peak {peaks[worst]} B"
        assert kept == 0, f"numpy memory kept over the run: {kept} B"
        assert growth < SETTLED, f"traced memory grew by {growth} B over {len(blocks)} blocks"

        bad = []
        for block in blocks[:600] + blocks[-600:]:  # the host sizes, then varying sizes
            with count_numpy_allocations() as allocs:
                engine.process(block)
            if allocs:
                bad.append((block.shape[0], list(allocs)))
        assert not bad, f"numpy allocated in process (block size, allocations): {bad[:5]}"


def test_counting_handler_sees_temporaries() -> None:
    """The allocation counter itself: a temporary is seen, in-place work is not."""
    x = np.zeros(256, np.float32)
    with count_numpy_allocations() as allocs:
        np.multiply(x, x, out=x)
    assert allocs == []
    with count_numpy_allocations() as allocs:
        y = x * 2.0
    assert ("malloc", 1024) in allocs
    del y
