"""``idm eval``: metrics with known answers, silent/empty exclusions, and a tiny end-to-end run of the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import mido
import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from idm.classes import CLASSES, GROUPS
from idm.cli import app
from idm.data.evalset import EvalClip
from idm.data.kitmap import load_kitmap
from idm.eval.groups import group_onsets, group_stems, merge_onsets
from idm.eval.metrics import is_silent, lsd, onset_f, sdr, si_sdr
from idm.eval.report import summarize
from idm.eval.score import score_clip
from idm.eval.sets import RenderedClip
from idm.eval.systems import Estimate

runner = CliRunner()
SR = 44100


# ---- metrics ---------------------------------------------------------------------------------------------


def _zero_mean(x: np.ndarray) -> np.ndarray:
    return x - x.mean()


@pytest.mark.parametrize("target_db", [-5.0, 0.0, 12.5, 30.0])
def test_sdr_of_scaled_noise_is_the_snr(rng: np.random.Generator, target_db: float) -> None:
    ref = _zero_mean(rng.standard_normal(20000))
    noise = _zero_mean(rng.standard_normal(20000))
    noise *= np.sqrt(np.sum(ref**2) / np.sum(noise**2) / 10 ** (target_db / 10))
    assert sdr(ref, ref + noise) == pytest.approx(target_db, abs=1e-9)


def test_sdr_removes_each_signals_mean(rng: np.random.Generator) -> None:
    ref = rng.standard_normal(5000)
    est = ref + 0.3 * rng.standard_normal(5000)
    base = sdr(ref, est)
    assert sdr(ref + 4.0, est) == pytest.approx(base, abs=1e-9)
    assert sdr(ref, est - 2.0) == pytest.approx(base, abs=1e-9)
    assert sdr(ref, est) < sdr(ref, ref + 0.1 * rng.standard_normal(5000))  # less noise scores higher
    assert sdr(ref, ref) == pytest.approx(100.0)  # capped, not inf


def test_si_sdr_is_scale_invariant_and_sdr_is_not(rng: np.random.Generator) -> None:
    ref = _zero_mean(rng.standard_normal(8000))
    noise = _zero_mean(rng.standard_normal(8000))
    noise -= (noise @ ref) / (ref @ ref) * ref  # orthogonal to the reference: SI-SDR = |ref|^2 / |noise|^2
    noise *= np.sqrt((ref @ ref) / (noise @ noise) / 10.0)  # 10 dB
    est = ref + noise
    assert si_sdr(ref, est) == pytest.approx(10.0, abs=1e-9)
    for scale in (0.1, 3.0, 50.0):
        assert si_sdr(ref, scale * est) == pytest.approx(10.0, abs=1e-9)
    assert sdr(ref, 3.0 * est) < sdr(ref, est) - 5.0


def test_lsd_known_answers(rng: np.random.Generator) -> None:
    x = rng.standard_normal(SR).astype(np.float32)
    assert lsd(x, x) == pytest.approx(0.0, abs=1e-9)
    assert lsd(x, 2.0 * x) == pytest.approx(20 * np.log10(2.0), abs=1e-3)  # every bin 6.02 dB off (but floored ones)
    y = x.copy()
    y[SR // 2 :] = 0.0  # half the frames silent in the estimate: large distance, still finite
    assert 20.0 < lsd(x, y) < 90.0


def test_silent_reference_detection(rng: np.random.Generator) -> None:
    mix = rng.standard_normal(4000)
    assert is_silent(np.zeros(4000), mix)
    assert is_silent(np.full(4000, 0.5), mix)  # a constant is zero once its mean is removed
    assert is_silent(1e-4 * mix, mix)  # -80 dB under the mix
    assert not is_silent(1e-2 * mix, mix)  # -40 dB
    assert np.isnan(sdr(np.zeros(10), np.ones(10)))


@pytest.mark.parametrize(
    ("shift", "f50", "f20"), [(0.0, 1.0, 1.0), (0.010, 1.0, 1.0), (0.030, 1.0, 0.0), (-0.045, 1.0, 0.0),
                              (0.060, 0.0, 0.0)]
)  # fmt: skip
def test_onset_f_inside_and_outside_the_windows(shift: float, f50: float, f20: float) -> None:
    ref = np.array([0.5, 1.0, 1.5, 2.0])
    assert onset_f(ref, ref + shift, 0.05).f == pytest.approx(f50)
    assert onset_f(ref, ref + shift, 0.02).f == pytest.approx(f20)


def test_onset_f_empty_reference_is_excluded_and_empty_estimate_scores_zero() -> None:
    none = onset_f(np.zeros(0), np.array([1.0, 2.0]), 0.05)
    assert none.excluded and none.f is None and none.n_est == 2
    zero = onset_f(np.array([1.0, 2.0]), np.zeros(0), 0.05)
    assert zero.f == 0.0 and zero.recall == 0.0 and not zero.excluded
    half = onset_f(np.array([1.0, 2.0]), np.array([1.0, 3.0]), 0.05)
    assert half.f == pytest.approx(0.5) and half.precision == pytest.approx(0.5)


def test_groups_sum_stems_and_merge_onsets() -> None:
    stems = np.arange(9, dtype=np.float64)[:, None] * np.ones((9, 3))
    g = group_stems(stems)
    assert g.shape == (5, 3)
    assert g[GROUPS.index("toms"), 0] == 4 + 5 + 6 and g[GROUPS.index("hihat"), 0] == 2 + 3
    onsets = [np.zeros(0) for _ in CLASSES]
    onsets[CLASSES.index("tom_floor")] = np.array([1.0, 2.0])
    onsets[CLASSES.index("tom_high")] = np.array([1.003, 3.0])  # 3 ms after a floor tom hit: one hit
    toms = group_onsets(onsets)[GROUPS.index("toms")]
    np.testing.assert_allclose(toms, [1.0, 2.0, 3.0])
    np.testing.assert_allclose(merge_onsets(np.array([0.2, 0.1, 0.104, 0.3])), [0.1, 0.2, 0.3])


def test_score_clip_excludes_and_counts_silent_stems_and_missing_onsets(rng: np.random.Generator) -> None:
    n = SR
    stems = np.zeros((9, n), dtype=np.float32)
    kick, snare = CLASSES.index("kick"), CLASSES.index("snare")
    stems[kick] = rng.standard_normal(n)
    stems[snare] = 0.5 * rng.standard_normal(n)
    onsets = [np.zeros(0) for _ in CLASSES]
    onsets[kick], onsets[snare] = np.array([0.1, 0.6]), np.array([0.35])
    clip = RenderedClip(EvalClip("x.mid", 0.0, "k", 0, 1.0), stems.sum(0), stems, onsets)
    est_onsets = [o + 0.03 for o in onsets]
    est_onsets[CLASSES.index("ride")] = np.array([0.5])  # a false hit where no ride plays: not scored
    est = Estimate(masked=stems + 0.01 * rng.standard_normal((9, n)), synth=None, onsets=est_onsets)
    row = score_clip(clip, est)
    c = row["classes"]
    assert not c["kick"]["silent"] and c["kick"]["masked"]["sdr"] > 20.0
    assert c["ride"]["silent"] and c["ride"]["masked"] is None and c["ride"]["f50"] is None
    assert c["ride"]["n_est_onsets"] == 1
    assert c["kick"]["f50"] == 1.0 and c["kick"]["f20"] == 0.0 and c["kick"]["synth"] is None
    summ = summarize(
        {
            "systems": [{"name": "s", "kind": "x"}],
            "sets": {"seen": {}},
            "clips": [{"system": "s", "set": "seen", "seconds": 1.0, "onsets_are_truth": False, **row}],
        }
    )
    s = summ[0]
    assert s["classes"]["ride"]["silent"] == 1 and s["classes"]["ride"]["no_onsets"] == 1
    assert s["groups"]["toms"]["silent"] == 1 and s["groups"]["kick"]["silent"] == 0
    assert s["macro"]["f50_classes"] == pytest.approx(1.0)  # only kick and snare count
    assert s["macro"]["f20_groups"] == pytest.approx(0.0)


# ---- end to end ------------------------------------------------------------------------------------------


def _one_shot(cls: str, variant: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(int(0.4 * SR)) / SR
    pitch = {"kick": 55, "snare": 190, "tom_floor": 90, "tom_mid": 130, "tom_high": 170}.get(cls)
    if pitch is not None:
        f = pitch * (1.0 + 0.1 * variant)
        x = np.sin(2 * np.pi * f * t * (1 + 0.5 * np.exp(-40 * t))) * np.exp(-10 * t)
        if cls == "snare":
            x += 0.6 * rng.standard_normal(t.size) * np.exp(-20 * t)
    else:
        decay = {"hihat_closed": 60, "hihat_open": 8, "crash": 4, "ride": 6}[cls] * (1.0 + 0.2 * variant)
        noise = np.diff(rng.standard_normal(t.size + 1))  # bright noise
        ring = np.sin(2 * np.pi * (3000 + 900 * CLASSES.index(cls)) * t) if cls == "ride" else 0.0
        x = (noise + ring) * np.exp(-decay * t)
    return (0.5 * x / np.abs(x).max()).astype(np.float32)


def _kit(folder: Path, variant: int) -> Path:
    rng = np.random.default_rng(variant)
    folder.mkdir(parents=True)
    for cls in CLASSES:
        sf.write(str(folder / f"{cls}.wav"), _one_shot(cls, variant, rng), SR)
    return folder


def _groove(path: Path, seconds: float, seed: int) -> None:
    """A 120 bpm groove with every class: kick/snare backbeat, hats, toms fill, crash and ride."""
    rng = np.random.default_rng(seed)
    hits: list[tuple[float, int]] = []
    for i in range(int(seconds / 0.25)):
        t = i * 0.25 + 0.003 * rng.standard_normal()
        t = max(0.0, t)
        hits.append((t, 42 if i % 8 != 6 else 46))
        if i % 4 == 0:
            hits.append((t, 36))
        if i % 4 == 2:
            hits.append((t, 38))
        if i % 16 == 0:
            hits.append((t, 49))
        if i % 8 == 3:
            hits.append((t + 0.12, 51))
        if i % 16 in (13, 14, 15):
            hits.append((t + 0.06, (50, 47, 43)[i % 16 - 13]))
    mid = mido.MidiFile(ticks_per_beat=480)
    tr = mido.MidiTrack()
    mid.tracks.append(tr)
    tr.append(mido.MetaMessage("set_tempo", tempo=500000))
    msgs = sorted([(t, "note_on", n) for t, n in hits] + [(t + 0.05, "note_off", n) for t, n in hits])
    now = 0
    for t, kind, note in msgs:
        tick = round(t * 960)
        vel = int(rng.integers(60, 120)) if kind == "note_on" else 0
        tr.append(mido.Message(kind, note=note, velocity=vel, channel=9, time=tick - now))
        now = tick
    mid.save(str(path))


@pytest.fixture(scope="module")
def eval_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("evaldata")
    gmd = root / "gmd"
    (gmd / "drummer1" / "session1").mkdir(parents=True)
    rows = ["drummer,session,id,style,bpm,beat_type,time_signature,midi_filename,audio_filename,duration,split"]
    for i, (split, secs) in enumerate([("validation", 4.0), ("validation", 4.0), ("train", 4.0),
                                       ("validation", 1.0)]):  # fmt: skip
        rel = f"drummer1/session1/{i}_rock_120_beat_4-4.mid"
        _groove(gmd / rel, secs, i)
        rows.append(f"drummer1,drummer1/session1,drummer1/session1/{i},rock,120,beat,4-4,{rel},,{secs},{split}")
    (gmd / "info.csv").write_text("\n".join(rows) + "\n")
    return {"gmd": gmd, "kit_a": _kit(root / "kitA", 0), "kit_b": _kit(root / "kitB", 1),
            "kit_u": _kit(root / "kitU", 2), "kit_v": _kit(root / "kitV", 3)}  # fmt: skip


def _eval_args(d: dict[str, Path], out: Path, *systems: str, clip_seconds: float = 2.0) -> list[str]:
    args = ["eval", "--gmd", str(d["gmd"]), "--out", str(out), "--clip-seconds", str(clip_seconds), "--quiet",
            "--seen-kits", f"{d['kit_a']},{d['kit_b']}", "--unseen-kits", str(d["kit_u"])]  # fmt: skip
    for s in systems:
        args += ["--system", s]
    return args


def test_eval_end_to_end(eval_data: dict[str, Path], tiny_ckpt: Path, tmp_path: Path) -> None:
    from idm.export.bundle import export_bundle

    bundle = export_bundle(tiny_ckpt, tmp_path / "tiny-bundle")
    out = tmp_path / "run"
    args = _eval_args(eval_data, out, "floor=mixture", "ceiling=oracle", f"tiny={tiny_ckpt}",
                      f"tiny-stream=stream:{bundle}", f"tiny-export=stream:{tiny_ckpt}")  # fmt: skip
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    for name in ("results.json", "results.md", "summary.png", "classes.png"):
        assert (out / name).stat().st_size > 0
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (out / "classes.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    r = json.loads((out / "results.json").read_text())
    assert r["sets"]["seen"]["clips"] == 2 and r["sets"]["unseen"]["clips"] == 2  # the 1 s and train files are out
    assert r["sets"]["seen"]["kits"] == ["kitA", "kitB"] and r["sets"]["unseen"]["kits"] == ["kitU"]
    assert [c["clip"]["kit"] for c in r["clips"] if c["system"] == "floor"] == ["kitA", "kitB", "kitU", "kitU"]
    assert len(r["clips"]) == 4 * 5

    def clip(system: str, set_name: str, i: int) -> dict:
        return next(c for c in r["clips"] if c["system"] == system and c["set"] == set_name and c["index"] == i)

    for set_name in ("seen", "unseen"):
        for i in range(2):
            floor, ceil = clip("floor", set_name, i), clip("ceiling", set_name, i)
            scored = [k for k in CLASSES if not floor["classes"][k]["silent"]]
            assert len(scored) >= 5  # a clip with several classes
            for k in scored:
                assert ceil["classes"][k]["masked"]["sdr"] > floor["classes"][k]["masked"]["sdr"] + 3.0, k
            assert ceil["classes"]["kick"]["f50"] == 1.0 and floor["classes"]["kick"]["f50"] == 0.0
            # the stream's transcription does not depend on the kit, so it equals the offline one
            off, on = clip("tiny", set_name, i), clip("tiny-stream", set_name, i)
            exp = clip("tiny-export", set_name, i)
            assert sum(off["classes"][k]["n_est_onsets"] for k in CLASSES) > 10  # the tiny model does fire
            for k in CLASSES:
                assert on["classes"][k]["n_est_onsets"] == off["classes"][k]["n_est_onsets"], k
                assert on["classes"][k]["f20"] == pytest.approx(off["classes"][k]["f20"]), k
                assert exp["classes"][k]["f50"] == on["classes"][k]["f50"], k
            assert off["classes"]["kick"]["synth"]["sdr"] is not None
            assert on["classes"]["kick"]["masked"]["lsd"] is not None
            assert on["seconds"] > 0 and len(on["bank_updates"]) == 2

    md = (out / "results.md").read_text()
    for system in ("floor", "ceiling", "tiny", "tiny-stream", "tiny-export"):
        for set_name in ("seen", "unseen"):
            assert f"| {system} | {set_name} | 2 |" in md
    assert "| ceiling | seen | 2 | 1.000† | 1.000† |" in md
    assert "## Onset F (50 ms) per class" in md and "## Masked SDR per group (dB)" in md

    # the figures' numbers (from the per-clip results.json, with intervals) are the report's
    from idm.eval.figures import load_scores

    fig_json, fig_md = load_scores([out / "results.json"], 200), load_scores([out / "results.md"])
    assert fig_json.has_intervals and not fig_md.has_intervals
    for a, b in zip(fig_json.scores, fig_md.scores, strict=True):
        assert (a.system, a.set) == (b.system, b.set)
        for key, v in a.headline.items():
            assert (v.value is None) == (b.headline[key].value is None)
            assert v.value is None or v.value == pytest.approx(b.headline[key].value, abs=5e-3)

    again = runner.invoke(app, args)  # never overwrites without --force
    assert again.exit_code == 1 and "--force" in again.output


def test_unseen_set_plays_every_clip_with_every_kit(eval_data: dict[str, Path], tmp_path: Path) -> None:
    from idm.eval.sets import build_sets, default_kits

    # By default the unseen set is every registered held-out kit; the seen set the acoustic training kits (no pools).
    assert default_kits("unseen") == load_kitmap().names(("validation",)) and len(default_kits("unseen")) >= 3
    assert "LMMS Pool" not in default_kits("seen") and "The Black Pearl 1.0" in default_kits("seen")
    d = eval_data
    seen, unseen = build_sets(d["gmd"], ("seen", "unseen"), seen_kits=[str(d["kit_a"]), str(d["kit_b"])],
                              unseen_kits=[str(d["kit_u"]), str(d["kit_v"])], clip_seconds=2.0)  # fmt: skip
    assert [c.kit_name for c in seen.clips] == ["kitA", "kitB"] and not seen.every_kit
    assert [c.kit_name for c in unseen.clips] == ["kitU", "kitU", "kitV", "kitV"] and unseen.every_kit
    assert unseen.clips_per_kit() == {"kitU": 2, "kitV": 2}
    # The same MIDI windows and seeds for every kit, and the same as the seen set's.
    windows = [(c.midi_path, c.offset_s, c.seed) for c in seen.clips]
    assert [(c.midi_path, c.offset_s, c.seed) for c in unseen.clips] == windows * 2
    again = build_sets(d["gmd"], ("unseen",), unseen_kits=[str(d["kit_u"]), str(d["kit_v"])], clip_seconds=2.0)
    assert again[0].clips == unseen.clips  # deterministic

    out = tmp_path / "perkit"
    args = [*_eval_args(d, out, "m=mixture", "ceiling=oracle"), "--set", "unseen", "--max-clips", "1"]
    args[args.index("--unseen-kits") + 1] = f"{d['kit_u']},{d['kit_v']}"
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    r = json.loads((out / "results.json").read_text())
    assert r["sets"]["unseen"]["clips"] == 2 and r["sets"]["unseen"]["kits"] == ["kitU", "kitV"]
    assert [c["clip"]["kit"] for c in r["clips"] if c["system"] == "m"] == ["kitU", "kitV"]
    summ = {s["system"]: s for s in r["summary"]}
    assert list(summ["m"]["kits"]) == ["kitU", "kitV"] and summ["m"]["kits"]["kitU"]["clips"] == 1
    assert summ["ceiling"]["kits"]["kitV"]["macro"]["f50_groups"] == pytest.approx(1.0)
    pooled = summ["m"]["macro"]["masked_sdr_groups"]
    per = [k["macro"]["masked_sdr_groups"] for k in summ["m"]["kits"].values()]
    assert pooled == pytest.approx(np.mean(per), abs=1.5)  # pooled over clips; per kit over each kit's clip
    md = (out / "results.md").read_text()
    assert "## Per kit" in md and "| m | unseen | kitU | 1 |" in md and "| ceiling | unseen | kitV | 1 | 1.000† |" in md


def test_pooled_set_gives_each_clip_a_kit_drawn_from_the_sources(eval_data: dict[str, Path], tmp_path: Path) -> None:
    from idm.eval.sets import build_sets, default_kits, load_kit_spec

    # By default the pooled kits draw from everything the shipped models train on, and nothing held out.
    assert set(default_kits("pooled")) >= {"The Black Pearl 1.0", "HardElectro1", "LMMS Pool", "Sonic Pi Pool"}
    assert not set(default_kits("pooled")) & set(default_kits("unseen"))
    d = eval_data
    srcs = [str(d["kit_a"]), str(d["kit_b"])]
    (pooled,) = build_sets(d["gmd"], ("pooled",), pooled_from=srcs, clip_seconds=2.0, split="validation")
    assert [c.kit_name for c in pooled.clips] == ["pooled 001", "pooled 002"] and not pooled.every_kit
    sources = [load_kit_spec(s) for s in srcs]

    def origin(ins: object, cls: str) -> int:  # which source kit an instrument of class cls comes from
        sig = (ins.name, ins.layers[0].audio.tobytes())  # type: ignore[attr-defined]
        found = [j for j, k in enumerate(sources) for i in k.main(cls) if (i.name, i.layers[0].audio.tobytes()) == sig]
        assert len(found) == 1, (cls, found)
        return found[0]

    for kit in pooled.kits.values():
        assert all(len(kit.instruments[cls]) == 1 for cls in CLASSES)  # one instrument per class
    many = build_sets(d["gmd"], ("pooled",), pooled_from=srcs, clip_seconds=1.0, per_file=40, split="validation")[0]
    picks = {tuple(origin(kit.instruments[c][0], c) for c in CLASSES) for kit in many.kits.values()}
    assert len(picks) > 10  # classes drawn independently: many combinations of the two kits
    again = build_sets(d["gmd"], ("pooled",), pooled_from=srcs, clip_seconds=2.0, split="validation")[0]
    assert again.clips == pooled.clips
    for a, b in zip(again.kits.values(), pooled.kits.values(), strict=True):  # the same draws every time
        assert [origin(a.instruments[c][0], c) for c in CLASSES] == [origin(b.instruments[c][0], c) for c in CLASSES]

    out = tmp_path / "pooled"
    args = [*_eval_args(d, out, "m=mixture"), "--set", "pooled", "--split", "train", "--pooled-from", ",".join(srcs)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    r = json.loads((out / "results.json").read_text())
    assert r["sets"]["pooled"]["split"] == "train" and r["sets"]["pooled"]["clips"] == 1  # the one train file
    assert r["sets"]["pooled"]["pooled_from"] == ["kitA", "kitB"]
    assert r["clips"][0]["clip"]["midi"].endswith("2_rock_120_beat_4-4.mid")
    md = (out / "results.md").read_text()
    assert "drawn class by class from kitA, kitB" in md and "## Per kit" not in md


def test_eval_single_set_and_max_clips(eval_data: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "one"
    res = runner.invoke(app, [*_eval_args(eval_data, out, "m=mixture"), "--set", "unseen", "--max-clips", "1"])
    assert res.exit_code == 0, res.output
    r = json.loads((out / "results.json").read_text())
    assert list(r["sets"]) == ["unseen"] and len(r["clips"]) == 1


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--system", "nonsense"], "NAME=SPEC"),
        (["--system", "a=mixture", "--system", "a=oracle"], "given twice"),
        (["--system", "a=/no/such.ckpt"], "not a checkpoint file"),
        (["--system", "a=stream:/no/such"], "not found"),
        (["--system", "a=mixture", "--unseen-kits", "NoSuchKit"], "unknown kit"),
        (["--system", "a=mixture", "--per-file", "0"], "--per-file"),
    ],
)
def test_eval_bad_inputs(eval_data: dict[str, Path], tmp_path: Path, extra: list[str], message: str) -> None:
    res = runner.invoke(app, _eval_args(eval_data, tmp_path / "bad") + extra)
    usage = message.startswith("--")  # option ranges are checked at parse time: a usage error
    assert res.exit_code == (2 if usage else 1), res.output
    assert "error:" in res.output and message in res.output
    assert not (tmp_path / "bad" / "results.json").exists()


def test_eval_clips_longer_than_every_file(eval_data: dict[str, Path], tmp_path: Path) -> None:
    res = runner.invoke(app, _eval_args(eval_data, tmp_path / "long", "m=mixture", clip_seconds=60))
    assert res.exit_code == 1 and "at least 60 s long" in res.output
