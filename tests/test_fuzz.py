"""Fuzz the input gates with hypothesis: audio headers and payloads, onset MIDI files, bundle manifests, checkpoints.

The property everywhere: a loader either succeeds or raises the project's own :class:`~idm.errors.IDMError`
subclass with a one-line message; never another exception, a hang, or an allocation out of proportion with
the input (tracked with :mod:`tracemalloc`, which sees numpy's buffers). Calls are in-process for speed; the
real CLIs are exercised on crafted files in ``test_hostile_input.py``.

Examples are derandomized (the same cases on every run, so CI does not flake); set ``IDM_FUZZ_EXAMPLES`` to a
larger count and ``IDM_FUZZ_RANDOM=1`` to search further locally.
"""

from __future__ import annotations

import copy
import io
import json
import os
import struct
import tempfile
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mido
import numpy as np
import pytest
import soundfile as sf
from conftest import drum_loop
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from idm.runtime.engine.bundle import load_bundle, validate_manifest
from idm.runtime.engine.peaks import PickerParams
from idm.runtime.engine.schema import Manifest

from idm.audio import MAX_ABS_SAMPLE, read_audio
from idm.errors import BundleError, IDMError
from idm.midi import read_onsets
from idm.models import resolve_bundle, stream_latency

N = int(os.environ.get("IDM_FUZZ_EXAMPLES", "0"))


def fuzz(examples: int) -> Callable:
    return settings(
        max_examples=N or examples,
        deadline=None,
        derandomize=not os.environ.get("IDM_FUZZ_RANDOM"),
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


_TMP = Path(tempfile.mkdtemp(prefix="idm-fuzz-"))


def scratch(name: str, data: bytes) -> Path:
    path = _TMP / name
    path.write_bytes(data)
    return path


def bounded(limit: int) -> Callable[[Callable[[], Any]], Any]:
    """Run ``fn`` and fail if its peak traced allocation exceeds ``limit`` bytes."""

    def run(fn: Callable[[], Any]) -> Any:
        tracemalloc.start()
        try:
            return fn()
        finally:
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            assert peak <= limit, f"allocated {peak / 2**20:.1f} MiB for a small input"

    return run


def one_line(e: BaseException) -> None:
    assert isinstance(e, IDMError), repr(e)
    assert str(e) and "\n" not in str(e), repr(str(e))


# ---- audio headers and payloads ----------------------------------------------------------------------------


def _wav(subtype: str, channels: int) -> bytes:
    buf = io.BytesIO()
    x = drum_loop(0.2)[:, None].repeat(channels, 1)
    sf.write(buf, x, 44100, subtype=subtype, format="WAV")
    return buf.getvalue()


WAVS = {(s, c): _wav(s, c) for s in ("PCM_16", "FLOAT") for c in (1, 2)}
#: (offset from the start of the fmt chunk body, struct format) of every fmt field and of the data size
FIELDS = [(0, "<H"), (2, "<H"), (4, "<I"), (8, "<I"), (12, "<H"), (14, "<H"), (-1, "<I")]


@st.composite
def broken_wavs(draw: st.DrawFn) -> bytes:
    raw = bytearray(WAVS[draw(st.sampled_from(sorted(WAVS)))])
    fmt, data = raw.index(b"fmt ") + 8, raw.index(b"data") + 4
    for _ in range(draw(st.integers(1, 4))):
        how = draw(st.sampled_from(["field", "byte", "truncate", "extend"]))
        if how == "field":
            off, code = draw(st.sampled_from(FIELDS))
            at = data if off < 0 else fmt + off
            top = 2 ** (8 * struct.calcsize(code)) - 1
            special = [v for v in (0, 1, 2, 3, 7999, 8000, 384001, top) if v <= top]
            value = draw(st.one_of(st.sampled_from(special), st.integers(0, top)))
            if at + struct.calcsize(code) <= len(raw):
                struct.pack_into(code, raw, at, value)
        elif how == "byte" and raw:
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
        elif how == "truncate":
            del raw[draw(st.integers(0, len(raw))) :]
        else:
            raw += draw(st.binary(max_size=64))
    return bytes(raw)


@fuzz(120)
@given(broken_wavs())
def test_wav_headers(data):
    path = scratch("h.wav", data)
    limit = 200 * len(data) + 16 * 2**20  # float32 samples of a compressed payload, copies, resampling to 44.1 kHz
    try:
        clip = bounded(limit)(lambda: read_audio(path, 44100))
    except IDMError as e:
        one_line(e)
        return
    assert np.isfinite(clip.samples).all() and np.abs(clip.samples).max() <= 1e4
    from idm.runtime.sources import FileSource

    src = bounded(limit)(lambda: FileSource(path))  # the streaming reader accepts what read_audio accepts
    try:
        assert 8000 <= src.sample_rate <= 384000 and src.channels <= 2
    finally:
        src.close()


finite_or_not = st.floats(width=32, allow_nan=True, allow_infinity=True)


@fuzz(60)
@given(st.lists(finite_or_not, min_size=0, max_size=4000), st.sampled_from([8000, 44100, 384000]))
def test_audio_payloads(values, rate):
    x = np.asarray(values, dtype=np.float32)
    buf = io.BytesIO()
    sf.write(buf, x, rate, subtype="FLOAT", format="WAV")
    path = scratch("p.wav", buf.getvalue())
    try:
        clip = read_audio(path, 44100)
    except IDMError as e:
        one_line(e)
        bad = ~np.isfinite(x) | (np.abs(np.nan_to_num(x, nan=0.0, posinf=np.inf)) > MAX_ABS_SAMPLE)
        assert bad.any() or x.size < 0.05 * rate or not np.any(x), str(e)
        return
    assert np.isfinite(x).all() and np.abs(x).max() <= MAX_ABS_SAMPLE
    assert np.isfinite(clip.samples).all()


# ---- MIDI files for --onsets ------------------------------------------------------------------------------------


def _midi(kind: int) -> bytes:
    mid = mido.MidiFile(type=kind)
    for t in range(1 if kind == 0 else 2):
        track = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=400000 + t, time=0)])
        for i, note in enumerate((36, 38, 42, 49)):
            track.append(mido.Message("note_on", note=note, velocity=90, time=10 * i, channel=9))
            track.append(mido.Message("note_off", note=note, velocity=0, time=5, channel=9))
        mid.tracks.append(track)
    buf = io.BytesIO()
    mid.save(file=buf)
    return buf.getvalue()


MIDIS = [_midi(k) for k in (0, 1, 2)]


@st.composite
def broken_midis(draw: st.DrawFn) -> bytes:
    if draw(st.booleans()):
        return draw(st.binary(max_size=200))
    raw = bytearray(draw(st.sampled_from(MIDIS[:2])))  # type 0 and 1; type 2 has its own test
    for _ in range(draw(st.integers(1, 6))):
        how = draw(st.sampled_from(["byte", "size", "truncate", "insert"]))
        if how == "byte":
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
        elif how == "size":  # a chunk length (header or track) claiming anything up to 4 GiB
            at = draw(st.sampled_from([m.start() + 4 for m in __import__("re").finditer(b"MT", raw)] or [4]))
            if at + 4 <= len(raw):
                struct.pack_into(">I", raw, at, draw(st.integers(0, 2**32 - 1)))
        elif how == "truncate":
            del raw[draw(st.integers(0, len(raw))) :]
        else:
            at = draw(st.integers(0, len(raw)))
            raw[at:at] = draw(st.binary(min_size=1, max_size=16))
        if not raw:
            break
    return bytes(raw)


SMPTE = (  # found by this test: an SMPTE time division gave negative note times
    b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x80\xe0MTrk\x00\x00\x00+\x00\xffQ\x03\x06\x1a\x80\x00\x99$Z\x05"
    b"\x89$\x00\n\x99&Z\x05\x89&\x00\x14\x99*Z\x05\x89*\x00\x1e\x991Z\x05\x891\x00\x00\xff/\x00"
)


@fuzz(150)
@given(broken_midis())
@example(SMPTE)
def test_onset_midi_files(data):
    path = scratch("o.mid", data)
    try:
        onsets = bounded(16 * 2**20)(lambda: read_onsets(path))
    except IDMError as e:
        one_line(e)
        return
    for o in onsets:
        assert np.isfinite(o.time) and o.time >= 0 and 1 <= o.velocity <= 127


def test_valid_midi_types_0_and_1_are_read():
    for data in MIDIS[:2]:
        assert len(read_onsets(scratch("v.mid", data))) >= 4


# ---- bundle manifests -------------------------------------------------------------------------------------------

MANIFEST: dict[str, Any] = json.loads((resolve_bundle("live") / "manifest.json").read_text())


def _paths(d: Any, prefix: tuple = ()) -> Iterator[tuple]:
    if isinstance(d, dict):
        for k, v in d.items():
            if prefix == ("source",) and k == "config":
                yield (*prefix, k)
                continue
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(d, list):
        for i, v in enumerate(d[:3]):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


PATHS = sorted(_paths(MANIFEST), key=repr)

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, -5, 1, 2**31, 2**63, 10**12]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(["../../../x.npy", "/etc/passwd", "..", ".", "a/b", "manifest.json", "README.md", "C:\\x"]),
)
json_values = st.recursive(
    json_scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=8,
)  # fmt: skip


@st.composite
def mutated_manifests(draw: st.DrawFn) -> dict:
    m = copy.deepcopy(MANIFEST)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        parent: Any = m
        try:
            for k in path[:-1]:
                parent = parent[k]
            key = path[-1]
            if draw(st.integers(0, 4)) == 0 and isinstance(parent, dict):
                parent.pop(key, None)
            elif isinstance(parent, dict | list):
                parent[key] = draw(json_values)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier mutation replaced a parent
    return m


def _use(man: Manifest, m: dict) -> None:
    """What the runtime derives from an accepted manifest must work (or fail with an IDMError)."""
    names = [c["name"] for c in m["classes"]]
    PickerParams.from_manifest(m["peak_picking"], names)
    stream_latency(m)
    for s in m["graphs"]["encoder"]["state"]:
        assert int(np.prod(s["shape"])) <= 2**24
    for name in man.used_files().values():
        assert name in m["files"] and "/" not in name and name not in ("..", ".")


@fuzz(250)
@given(mutated_manifests())
def test_manifests(m):
    try:
        man = validate_manifest(json.loads(json.dumps(m)))
    except BundleError as e:
        one_line(e)
        assert str(e).startswith("manifest.json: ")
        return
    try:
        _use(man, m)
    except IDMError as e:
        one_line(e)


@pytest.fixture(scope="module")
def live_copy(tmp_path_factory) -> Path:
    import shutil

    dst = tmp_path_factory.mktemp("fuzzb") / "b"
    shutil.copytree(resolve_bundle("live"), dst)
    return dst


@fuzz(40)
@given(m=mutated_manifests())
def test_manifests_through_the_loader(live_copy, m):
    """The whole loader (JSON, schema, paths, hashes) on real files; the arrays it accepts load."""
    (live_copy / "manifest.json").write_text(json.dumps(m))
    try:
        b = load_bundle(live_copy)
        b.mel_fb()
        b.noise()
        b.initial_state()
    except IDMError as e:
        one_line(e)


@fuzz(60)
@given(data=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_manifest_bytes(data, live_copy):
    (live_copy / "manifest.json").write_bytes(data)
    with pytest.raises(BundleError) as info:
        load_bundle(live_copy)
    one_line(info.value)


def test_deeply_nested_manifest(live_copy):
    (live_copy / "manifest.json").write_text("[" * 100000 + "]" * 100000)
    with pytest.raises(BundleError, match=r"not valid JSON|top level"):
        load_bundle(live_copy)


# ---- checkpoints ------------------------------------------------------------------------------------------------


class Blob(bytes):
    """Bytes with a short repr (a failing checkpoint case is 200 kB): its length and sha256."""

    def __repr__(self) -> str:
        import hashlib

        return f"Blob({len(self)} bytes, sha256 {hashlib.sha256(self).hexdigest()[:16]})"


@st.composite
def broken_checkpoints(draw: st.DrawFn, good: bytes) -> Blob:
    raw = bytearray(good)
    how = draw(st.sampled_from(["truncate", "bytes", "garbage"]))
    if how == "truncate":
        return Blob(raw[: draw(st.integers(0, len(raw) - 1))])
    if how == "garbage":
        return Blob(draw(st.binary(max_size=2000)))
    for _ in range(draw(st.integers(1, 8))):
        raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    return Blob(raw)


def test_checkpoints(tiny_ckpt):
    pytest.importorskip("torch")
    from idm.checkpoint import load_model

    good = tiny_ckpt.read_bytes()

    @fuzz(25)
    @given(broken_checkpoints(good))
    def run(data):
        path = scratch("c.ckpt", data)
        try:
            load_model(path)
        except IDMError as e:
            one_line(e)

    run()


def test_checkpoint_configs(tiny_ckpt):
    """A well-formed checkpoint whose config (untrusted, like all of it) holds anything: never a model of
    terabytes (a 1e9 s synthesizer, a million channels), never a TypeError."""
    torch = pytest.importorskip("torch")
    from idm.checkpoint import load_model

    base = torch.load(tiny_ckpt, weights_only=True)
    keys = [(s, k) for s, sub in base["config"].items() if isinstance(sub, dict) for k in sub]
    keys += [(k, None) for k in base["config"]]
    values = st.one_of(json_scalars, st.lists(st.integers(-(2**40), 2**40), max_size=5),
                       st.sampled_from([10**6, 10**9, 1e9, 2**40, -1, 0]))  # fmt: skip

    @fuzz(40)
    @given(st.lists(st.tuples(st.sampled_from(keys), values), min_size=1, max_size=3))
    def run(changes):
        obj = copy.deepcopy(base)
        for (section, key), value in changes:
            if key is None:
                obj["config"][section] = value
            elif isinstance(obj["config"].get(section), dict):  # unless an earlier change replaced the section
                obj["config"][section][key] = value
        path = _TMP / "cfg.ckpt"
        torch.save(obj, path)
        try:
            load_model(path)
        except IDMError as e:
            one_line(e)

    run()
