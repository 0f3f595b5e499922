"""Evaluation figures (``idm plot-scores``, ``idm eval``): the drawn numbers are the report's, intervals are honest."""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from idm.classes import CLASSES, GROUPS
from idm.cli import app
from idm.errors import IDMError
from idm.eval.figures import (
    CLASSES_SIZE,
    SUMMARY_SIZE,
    bootstrap_macro,
    classes_figure,
    load_scores,
    scores_from_json,
    scores_from_markdown,
    summary_figure,
)
from idm.eval.report import summarize, write_markdown

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[1]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


def _cell(rng: np.random.Generator, present: bool, f: float) -> dict[str, Any]:
    if not present:
        return {"silent": True, "n_ref_onsets": 0, "masked": None, "synth": None, "f50": None, "p50": None,
                "r50": None, "f20": None, "p20": None, "r20": None, "n_est_onsets": 0}  # fmt: skip
    sdr = float(rng.normal(3.0, 4.0))
    return {"silent": False, "n_ref_onsets": int(rng.integers(1, 20)), "masked": {"sdr": sdr, "si_sdr": sdr,
            "lsd": 10.0}, "synth": None, "f50": f, "p50": f, "r50": f, "f20": f, "p20": f, "r20": f,
            "n_est_onsets": 3}  # fmt: skip


def fake_results(rng: np.random.Generator, clips: int = 12) -> dict[str, Any]:
    """Per-clip results in ``idm eval``'s format: two systems, two sets, classes missing in some clips."""
    rows = []
    present = {c: rng.random(clips) < (0.3 if c.startswith("tom") else 0.9) for c in CLASSES}
    for c in CLASSES:
        present[c][0] = True  # every class has a clip
    for system, skill in (("good", 0.8), ("bad", 0.3)):
        for set_name in ("seen", "unseen"):
            for i in range(clips):
                classes = {c: _cell(rng, bool(present[c][i]), float(np.clip(rng.normal(skill, 0.15), 0, 1)))
                           for c in CLASSES}  # fmt: skip
                groups = {g: _cell(rng, True, float(np.clip(rng.normal(skill, 0.15), 0, 1))) for g in GROUPS}
                rows.append({"set": set_name, "index": i, "clip": {"kit": f"kit{i % 3}"}, "system": system,
                             "seconds": 0.1, "onsets_are_truth": False, "classes": classes,
                             "groups": groups})  # fmt: skip
    sets = {s: {"clips": clips, "clip_seconds": 10.0, "split": "validation", "kits": [f"k-{s}"]}
            for s in ("seen", "unseen")}  # fmt: skip
    return {"meta": {"command": "idm eval (test)"}, "sets": sets,
            "systems": [{"name": "good", "spec": "g", "kind": "checkpoint"}, {"name": "bad", "spec": "b",
                         "kind": "checkpoint"}], "clips": rows}  # fmt: skip


def test_bootstrap_point_is_the_macro_and_the_interval_covers_it(rng: np.random.Generator) -> None:
    v = rng.normal(0.5, 0.2, size=(40, 3))
    v[rng.random((40, 3)) < 0.3] = np.nan
    v[:, 2] = np.nan
    macro, cols, boot = bootstrap_macro(v, 4000, seed=1)
    assert macro.value == pytest.approx(np.mean([np.nanmean(v[:, 0]), np.nanmean(v[:, 1])]))
    assert cols[2].value is None and cols[0].value == pytest.approx(np.nanmean(v[:, 0]))
    assert macro.lo < macro.value < macro.hi
    # one column of 40 known values: the interval is about the normal one (1.96 standard errors)
    one = rng.normal(0.5, 0.2, size=(200, 1))
    m, _, _ = bootstrap_macro(one, 4000, seed=2)
    se = one.std(ddof=1) / np.sqrt(200)
    assert (m.hi - m.lo) == pytest.approx(2 * 1.96 * se, rel=0.2)
    const, _, _ = bootstrap_macro(np.full((10, 2), 0.25))
    assert const.lo == const.hi == const.value == 0.25
    assert boot.shape == (4000,)


def test_json_scores_equal_the_reports_means(rng: np.random.Generator) -> None:
    results = fake_results(rng)
    summary = summarize(results)
    data = scores_from_json(results, n_boot=500)
    assert data.has_intervals and len(data.scores) == len(summary) == 4
    for s, ref in zip(data.scores, summary, strict=True):
        assert (s.system, s.set) == (ref["system"], ref["set"])
        for key in ("f50_groups", "f50_classes", "masked_sdr_groups"):
            assert s.headline[key].value == pytest.approx(ref["macro"][key], abs=1e-12)
            assert s.headline[key].lo <= s.headline[key].value <= s.headline[key].hi
        for c in CLASSES:
            assert s.f50_class[c].value == pytest.approx(ref["classes"][c]["f50"], abs=1e-12)
    good = next(s for s in data.scores if s.system == "good" and s.set == "seen").headline["f50_groups"]
    bad = next(s for s in data.scores if s.system == "bad" and s.set == "seen").headline["f50_groups"]
    assert bad.hi < good.lo  # 0.3 vs 0.8 over 12 clips: clearly separated
    counts = data.onset_clips["seen"]
    rows = [r for r in results["clips"] if r["system"] == "good" and r["set"] == "seen"]
    assert counts == {c: sum(r["classes"][c]["n_ref_onsets"] > 0 for r in rows) for c in CLASSES}


def test_markdown_scores_are_the_tables_without_intervals(rng: np.random.Generator, tmp_path: Path) -> None:
    results = fake_results(rng)
    summary = summarize(results)
    md = tmp_path / "results.md"
    write_markdown(results, summary, md)
    data = scores_from_markdown(md.read_text(encoding="utf-8"))
    assert not data.has_intervals
    for s, ref in zip(data.scores, summary, strict=True):
        assert s.headline["f50_groups"].value == pytest.approx(ref["macro"]["f50_groups"], abs=5e-4)
        assert s.headline["masked_sdr_groups"].value == pytest.approx(ref["macro"]["masked_sdr_groups"], abs=5e-3)
        assert s.f50_class["tom_mid"].value == pytest.approx(ref["classes"]["tom_mid"]["f50"], abs=5e-4)
    assert data.onset_clips == scores_from_json(results, n_boot=100).onset_clips


def test_the_stored_reports_parse_to_their_numbers() -> None:
    data = load_scores([ROOT / "docs/eval/project-models.md", ROOT / "docs/eval/official-and-bounds.md"])
    got = {(s.system, s.set): s for s in data.scores}
    assert set(got) == {(n, s) for n in ("live", "paper", "official", "oracle", "mixture") for s in ("seen", "unseen")}
    assert got["live", "unseen"].headline["f50_groups"].value == 0.606
    assert got["official", "seen"].headline["masked_sdr_groups"].value == 2.21
    assert got["paper", "unseen"].f50_class["hihat_open"].value == 0.384
    assert got["oracle", "seen"].truth and not got["live", "seen"].truth
    assert data.onset_clips["unseen"]["tom_mid"] == 4  # 16 of 20 clips have no mid-tom onsets


def test_inputs_on_different_sets_are_refused(rng: np.random.Generator, tmp_path: Path) -> None:
    a, b = fake_results(rng), fake_results(rng, clips=8)
    b["systems"] = [{"name": "other", "spec": "o", "kind": "checkpoint"}]
    b["clips"] = [dict(r, system="other") for r in b["clips"] if r["system"] == "good"]
    (tmp_path / "a.json").write_text(json.dumps(a))
    (tmp_path / "b.json").write_text(json.dumps(b))
    with pytest.raises(IDMError, match="differs"):
        load_scores([tmp_path / "a.json", tmp_path / "b.json"], n_boot=100)
    with pytest.raises(IDMError, match="also in an earlier input"):
        load_scores([tmp_path / "a.json", tmp_path / "a.json"], n_boot=100)


def test_figures_draw_the_scores(rng: np.random.Generator) -> None:
    data = scores_from_json(fake_results(rng), n_boot=300)
    fig = summary_figure(data, "t")
    for s in data.scores:
        for key in ("f50_groups", "masked_sdr_groups"):
            bars = [p for ax in fig.axes for p in ax.patches if p.get_gid() == f"{key}/{s.set}"]
            assert len(bars) == 2  # one per system
            systems = list(dict.fromkeys(x.system for x in data.scores))
            assert bars[systems.index(s.system)].get_height() == pytest.approx(s.headline[key].value)
    assert sum(len(ax.collections) for ax in fig.axes) >= 6  # error bars on every panel and set
    fig2 = classes_figure(data, "t")
    for s in data.scores:
        bars = [p for ax in fig2.axes for p in ax.patches if p.get_gid() == f"{s.system}/{s.set}"]
        assert [b.get_height() for b in bars] == pytest.approx([s.f50_class[c].value for c in [*CLASSES, "mean"]])
    import matplotlib.pyplot as plt

    plt.close("all")


def test_plot_scores_command(rng: np.random.Generator, tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps(fake_results(rng)))
    res = runner.invoke(app, ["plot-scores", str(tmp_path / "results.json"), "--out", str(tmp_path / "f"),
                              "--resamples", "300"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "bootstrap 95 % error bars" in res.output
    assert png_size(tmp_path / "f" / "eval-summary.png") == SUMMARY_SIZE
    assert png_size(tmp_path / "f" / "eval-classes.png") == CLASSES_SIZE
    res = runner.invoke(app, ["plot-scores", str(tmp_path / "missing.json")])
    assert res.exit_code == 1 and res.output.strip().startswith("error: ") and len(res.output.strip().splitlines()) == 1


def test_mixed_inputs_say_which_systems_have_error_bars(rng: np.random.Generator, tmp_path: Path) -> None:
    from idm.eval.figures import caption

    a, b = fake_results(rng), fake_results(rng)
    for r in b["clips"]:
        r["system"] = {"good": "good2", "bad": "bad2"}[r["system"]]
    b["systems"] = [{"name": "good2", "spec": "g", "kind": "checkpoint"}, {"name": "bad2", "spec": "b",
                    "kind": "checkpoint"}]  # fmt: skip
    (tmp_path / "a.json").write_text(json.dumps(a))
    write_markdown(b, summarize(b), tmp_path / "b.md")
    data = load_scores([tmp_path / "a.json", tmp_path / "b.md"], n_boot=300)
    text = caption(data)
    assert "300 resamples) for good, bad (per-clip results.json); none for good2, bad2" in text
    res = runner.invoke(app, ["plot-scores", str(tmp_path / "a.json"), str(tmp_path / "b.md"), "--out",
                              str(tmp_path / "f"), "--resamples", "300"])  # fmt: skip
    assert res.exit_code == 0 and "error bars for 2 of 4 systems" in res.output, res.output
    only_md = load_scores([tmp_path / "b.md"])
    assert caption(only_md).startswith("No error bars")


def test_the_stored_per_clip_results_give_the_reports_numbers_with_intervals() -> None:
    per_clip = load_scores([ROOT / "docs/eval/official-and-bounds-3kits.json"], 500)
    report = load_scores([ROOT / "docs/eval/official-and-bounds-3kits.md"])
    assert per_clip.sets == report.sets and per_clip.has_intervals
    for a, b in zip(per_clip.scores, report.scores, strict=True):
        for key, v in a.headline.items():
            assert round(v.value, 2) == pytest.approx(b.headline[key].value, abs=0.006)
            assert v.lo <= v.value <= v.hi
    official = next(s for s in per_clip.scores if s.system == "official" and s.set == "seen")
    assert round(official.headline["f50_groups"].value, 3) == 0.536  # the seen set of docs/eval/official-and-bounds.md
