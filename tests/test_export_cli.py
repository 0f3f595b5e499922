"""idm-export end to end: export + --check, and every bad input gives one line, exit 1, nothing left behind."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from idm.export.cli import app
from typer.testing import CliRunner

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def one_line_error(res, *needles: str) -> None:
    assert res.exit_code == 1, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    for n in needles:
        assert n in lines[0], lines[0]


def test_export_and_check_tiny(tiny_stream_ckpt, tmp_path):
    out = tmp_path / "b"
    res = run(tiny_stream_ckpt, "-o", out)
    assert res.exit_code == 0, res.output
    assert {p.name for p in out.iterdir()} >= {
        "encoder.onnx",
        "synth.onnx",
        "manifest.json",
        "README.md",
        "mel_fb.npy",
        "noise.npy",
        "parity.npz",
    }
    res = run("--check", out)
    assert res.exit_code == 0 and "ok:" in res.output, res.output
    # existing non-empty folder without --force
    one_line_error(run(tiny_stream_ckpt, "-o", out), "not empty", "--force")
    assert run(tiny_stream_ckpt, "-o", out, "--force").exit_code == 0


def test_check_official(official_bundle):
    res = run("--check", official_bundle)
    assert res.exit_code == 0, res.output


@pytest.fixture
def tampered(tiny_bundle, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(tiny_bundle, dst)
    return dst


def test_check_detects_hash_mismatch(tampered):
    with open(tampered / "encoder.onnx", "ab") as f:
        f.write(b"\0")
    one_line_error(run("--check", tampered), "encoder.onnx", "sha256 mismatch")


def test_check_detects_bad_manifest(tampered):
    m = json.loads((tampered / "manifest.json").read_text())
    del m["streaming"]["lookahead_frames"]
    (tampered / "manifest.json").write_text(json.dumps(m))
    one_line_error(run("--check", tampered), "streaming.lookahead_frames")


def test_check_detects_wrong_parity(tampered):
    import numpy as np
    from idm.runtime.engine.bundle import sha256_file

    par = dict(np.load(tampered / "parity.npz"))
    par["onset_prob"] = par["onset_prob"] + 0.01
    np.savez(tampered / "parity.npz", **par)
    m = json.loads((tampered / "manifest.json").read_text())
    m["files"]["parity.npz"] = sha256_file(tampered / "parity.npz")
    (tampered / "manifest.json").write_text(json.dumps(m))
    one_line_error(run("--check", tampered), "parity run", "onset_prob")


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


def test_bad_inputs(tmp_path, tiny_stream_ckpt, ref_dir):
    out = tmp_path / "out"
    text = tmp_path / "notes.ckpt"
    text.write_text("hello")
    one_line_error(run(text, "-o", out), "not a readable PyTorch checkpoint")
    trunc = tmp_path / "trunc.ckpt"
    trunc.write_bytes(tiny_stream_ckpt.read_bytes()[:5000])
    one_line_error(run(trunc, "-o", out), "trunc.ckpt")
    evil = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "x": Evil()}, evil)
    one_line_error(run(evil, "-o", out), "refused")
    lone = tmp_path / "lone" / "official.ckpt"
    lone.parent.mkdir()
    shutil.copy(ref_dir / "checkpoint" / "val-epoch=518-global_step=0.ckpt", lone)
    one_line_error(run(lone, "-o", out), "model.yaml")
    obj = torch.load(tiny_stream_ckpt, weights_only=True)
    obj["config"]["encoder"]["wings"] = 2
    weird = tmp_path / "weird.ckpt"
    torch.save(obj, weird)
    one_line_error(run(weird, "-o", out), "encoder.wings")
    one_line_error(run(tiny_stream_ckpt, "-o", out, "--opset", "11"), "opset 11")
    one_line_error(run(tiny_stream_ckpt, "-o", out, "--precision", "bf16"), "precision")
    one_line_error(run(tiny_stream_ckpt, "-o", out, "--lookahead", "1"), "look-ahead")
    one_line_error(run("--check", tmp_path / "nothing"), "not found")
    # nothing half-written anywhere
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_failure_mid_export_leaves_nothing(tiny_model, tmp_path, monkeypatch):
    from idm.export import bundle as bmod

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(bmod, "_write_parity", boom)
    with pytest.raises(RuntimeError):
        bmod.export_model(tiny_model, tmp_path / "b")
    assert list(tmp_path.iterdir()) == []


def test_spinner_on_a_terminal_and_quiet(tiny_stream_ckpt, tmp_path, monkeypatch):
    """The export spinner is drawn on stderr of a terminal with its progress messages; -q hides it."""
    from rich.console import Console

    shown: list[str] = []
    real_status = Console.status

    def status(self, text, *a, **k):
        shown.append(str(text))
        return real_status(self, text, *a, **k)

    monkeypatch.setattr(Console, "is_terminal", property(lambda self: True))
    monkeypatch.setattr(Console, "status", status)
    res = run(tiny_stream_ckpt, "-o", tmp_path / "a")
    assert res.exit_code == 0 and shown == ["exporting"], res.output
    res = run(tiny_stream_ckpt, "-o", tmp_path / "b", "-q")
    assert res.exit_code == 0 and (tmp_path / "b" / "manifest.json").is_file(), res.output
    assert "⠋" not in res.output and "exporting" not in res.output
