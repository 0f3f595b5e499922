"""Minimal SoundFont 2 reader: the zones a drum preset plays for one key (sample, velocity range, tuning)."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from idm.errors import DataError

__all__ = ["SF2File", "SF2Zone", "read_sf2"]

# Generator numbers (SoundFont 2.04, section 8.1.2).
_START_OFS, _END_OFS, _START_COARSE, _END_COARSE = 0, 1, 4, 12
_INSTRUMENT, _KEY_RANGE, _VEL_RANGE, _ATTENUATION = 41, 43, 44, 48
_COARSE_TUNE, _FINE_TUNE, _SAMPLE_ID, _SCALE_TUNING, _EXCLUSIVE, _ROOT_KEY = 51, 52, 53, 56, 57, 58
_RANGES = (_KEY_RANGE, _VEL_RANGE)

_PHDR = np.dtype([("name", "S20"), ("preset", "<u2"), ("bank", "<u2"), ("bag", "<u2"), ("x", "<u4", 3)])
_BAG = np.dtype([("gen", "<u2"), ("mod", "<u2")])
_GEN = np.dtype([("oper", "<u2"), ("amount", "<u2")])
_INST = np.dtype([("name", "S20"), ("bag", "<u2")])
_SHDR = np.dtype(
    [
        ("name", "S20"),
        ("start", "<u4"),
        ("end", "<u4"),
        ("loop_start", "<u4"),
        ("loop_end", "<u4"),
        ("rate", "<u4"),
        ("pitch", "u1"),
        ("correction", "i1"),
        ("link", "<u2"),
        ("type", "<u2"),
    ]
)


@dataclass(frozen=True)
class SF2Zone:
    """What one key plays in one velocity range: a mono sample and how to play it.

    ``semitones`` is the pitch shift relative to the recorded sample (key vs root key, tuning
    generators, the sample's pitch correction); ``attenuation_db`` the zone's initial attenuation.
    """

    key: int
    vel_lo: int
    vel_hi: int
    sample_name: str
    sample: np.ndarray  # float32 [L], native rate
    sample_rate: int
    semitones: float
    attenuation_db: float
    exclusive_class: int


def _chunks(data: bytes, start: int, end: int, name: str) -> dict[str, tuple[int, int]]:
    """RIFF sub-chunks of ``data[start:end]`` -> {id (LIST type for LISTs): (offset, size)}."""
    out: dict[str, tuple[int, int]] = {}
    pos = start
    while pos + 8 <= end:
        cid = data[pos : pos + 4].decode("latin-1")
        (size,) = struct.unpack_from("<I", data, pos + 4)
        if pos + 8 + size > end:
            raise DataError(f"{name}: truncated SoundFont (chunk {cid!r} runs past the end of the file)")
        if cid == "LIST":
            out[data[pos + 8 : pos + 12].decode("latin-1")] = (pos + 12, size - 4)
        else:
            out[cid] = (pos + 8, size)
        pos += 8 + size + (size & 1)
    return out


def _gens(gens: np.ndarray, lo: int, hi: int) -> dict[int, int]:
    return {int(g["oper"]): int(g["amount"]) for g in gens[lo:hi]}


def _signed(v: int) -> int:
    return v - 65536 if v >= 32768 else v


def _range(v: int | None) -> tuple[int, int]:
    return (0, 127) if v is None else (v & 0xFF, v >> 8)


class SF2File:
    """A parsed SoundFont: the first preset's key -> zones mapping and the sample pool.

    Parameters
    ----------
    path
        A ``.sf2`` file (16-bit samples; a 24-bit ``sm24`` chunk, if any, is ignored).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise DataError(f"{self.path}: SoundFont file not found")
        data = self.path.read_bytes()
        if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"sfbk":
            raise DataError(f"{self.path}: not a SoundFont 2 file (no RIFF 'sfbk' header)")
        top = _chunks(data, 12, len(data), str(self.path))
        for need in ("INFO", "sdta", "pdta"):
            if need not in top:
                raise DataError(f"{self.path}: SoundFont lacks its {need!r} list")
        info = _chunks(data, *_span(top["INFO"]), str(self.path))
        self.info = {k: data[o : o + s].split(b"\0")[0].decode("latin-1") for k, (o, s) in info.items()}
        sdta = _chunks(data, *_span(top["sdta"]), str(self.path))
        pdta = _chunks(data, *_span(top["pdta"]), str(self.path))
        if "smpl" not in sdta:
            raise DataError(f"{self.path}: SoundFont has no sample data ('smpl' chunk)")
        o, s = sdta["smpl"]
        self._pcm = np.frombuffer(data, dtype="<i2", count=s // 2, offset=o)

        def table(cid: str, dt: np.dtype) -> np.ndarray:
            if cid not in pdta:
                raise DataError(f"{self.path}: SoundFont lacks the {cid!r} table")
            o, s = pdta[cid]
            return np.frombuffer(data, dtype=dt, count=s // dt.itemsize, offset=o)

        self._phdr, self._pbag, self._pgen = table("phdr", _PHDR), table("pbag", _BAG), table("pgen", _GEN)
        self._inst, self._ibag, self._igen = table("inst", _INST), table("ibag", _BAG), table("igen", _GEN)
        self._shdr = table("shdr", _SHDR)
        if len(self._phdr) < 2 or len(self._inst) < 2 or len(self._shdr) < 2:
            raise DataError(f"{self.path}: SoundFont has no presets, instruments or samples")

    @property
    def preset_names(self) -> list[str]:
        """Names of the presets (without the terminal 'EOP' record)."""
        return [bytes(n).decode("latin-1").rstrip("\0") for n in self._phdr["name"][:-1]]

    def _zones(self, bags: np.ndarray, gens: np.ndarray, b0: int, b1: int, terminal: int) -> list[dict[int, int]]:
        """Generator dicts of bags ``b0:b1``, the global zone merged into each local one."""
        zones = [_gens(gens, int(bags[b]["gen"]), int(bags[b + 1]["gen"])) for b in range(b0, b1)]
        glob: dict[int, int] = {}
        if zones and terminal not in zones[0]:
            glob = zones.pop(0)
        return [{**glob, **z} for z in zones if terminal in z]

    def key_zones(self, key: int, preset: int = 0) -> list[SF2Zone]:
        """Every zone the given preset (index) plays for MIDI key ``key``, one per velocity range."""
        ph = self._phdr
        if not 0 <= preset < len(ph) - 1:
            raise DataError(f"{self.path}: no preset number {preset} (it has {len(ph) - 1})")
        out: list[SF2Zone] = []
        for pz in self._zones(self._pbag, self._pgen, int(ph[preset]["bag"]), int(ph[preset + 1]["bag"]), _INSTRUMENT):
            pk, pv = _range(pz.get(_KEY_RANGE)), _range(pz.get(_VEL_RANGE))
            if not pk[0] <= key <= pk[1]:
                continue
            inst = pz[_INSTRUMENT]
            if inst >= len(self._inst) - 1:
                raise DataError(f"{self.path}: preset zone points at missing instrument {inst}")
            b0, b1 = int(self._inst[inst]["bag"]), int(self._inst[inst + 1]["bag"])
            for iz in self._zones(self._ibag, self._igen, b0, b1, _SAMPLE_ID):
                ik, iv = _range(iz.get(_KEY_RANGE)), _range(iz.get(_VEL_RANGE))
                if not ik[0] <= key <= ik[1]:
                    continue
                vlo, vhi = max(pv[0], iv[0]), min(pv[1], iv[1])
                if vlo > vhi:
                    continue
                out.append(self._zone(key, vlo, vhi, pz, iz))
        return out

    def _zone(self, key: int, vlo: int, vhi: int, pz: dict[int, int], iz: dict[int, int]) -> SF2Zone:
        sid = iz[_SAMPLE_ID]
        if sid >= len(self._shdr) - 1:
            raise DataError(f"{self.path}: zone points at missing sample {sid}")
        sh = self._shdr[sid]

        def add(g: int) -> int:  # instrument value plus the preset's offset (signed generators)
            return _signed(iz.get(g, 0)) + (_signed(pz.get(g, 0)) if g not in _RANGES else 0)

        start = int(sh["start"]) + add(_START_OFS) + 32768 * add(_START_COARSE)
        end = int(sh["end"]) + add(_END_OFS) + 32768 * add(_END_COARSE)
        if not 0 <= start < end <= len(self._pcm):
            raise DataError(f"{self.path}: sample {sid} lies outside the sample data")
        root = iz.get(_ROOT_KEY, int(sh["pitch"]))
        root = int(sh["pitch"]) if root > 127 else root
        scale = _signed(iz.get(_SCALE_TUNING, 100)) / 100.0
        semis = (key - root) * scale + add(_COARSE_TUNE) + add(_FINE_TUNE) / 100.0 + int(sh["correction"]) / 100.0
        return SF2Zone(
            key=key,
            vel_lo=vlo,
            vel_hi=vhi,
            sample_name=bytes(sh["name"]).decode("latin-1").rstrip("\0"),
            sample=self._pcm[start:end].astype(np.float32) / 32768.0,
            sample_rate=int(sh["rate"]),
            semitones=float(semis),
            attenuation_db=add(_ATTENUATION) / 10.0,
            exclusive_class=iz.get(_EXCLUSIVE, pz.get(_EXCLUSIVE, 0)),
        )

    def keys(self, preset: int = 0) -> list[int]:
        """MIDI keys that play at least one zone."""
        return [k for k in range(128) if self.key_zones(k, preset)]


def _span(t: tuple[int, int]) -> tuple[int, int]:
    return t[0], t[0] + t[1]


def read_sf2(path: str | Path) -> SF2File:
    """Parse a SoundFont 2 file (raises :class:`~idm.errors.DataError` if it is not one)."""
    return SF2File(path)
