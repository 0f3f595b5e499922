"""idm.train: losses, batched synthesis and sequencing, overfitting a batch, the CLI (resume, time limit,
run-folder protection, config errors) and the exported model, on a tiny kit + MIDI dataset made here."""

from __future__ import annotations

import csv
from pathlib import Path

import lightning.pytorch  # noqa: F401  (imported here so its log handler binds the real stderr, not CliRunner's)
import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from idm.classes import CLASSES
from idm.midi import Onset, write_midi

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny.yaml"
SR = 44100


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """The CLI's --threads and the tests set torch's global thread count: give it back afterwards."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


# --- a tiny dataset: three one-shot kit folders and a small Groove-MIDI-style root ------------------


def _one_shot(cls: int, kit: int, rng: np.random.Generator) -> np.ndarray:
    """A drum-like one-shot whose pitch and decay depend on class and kit."""
    t = np.arange(int(0.3 * SR)) / SR
    f0 = 55.0 * (1.35**cls) * (1.0 + 0.25 * kit)
    tone = np.sin(2 * np.pi * f0 * t * (1 + 0.5 * np.exp(-40 * t)))
    noise = rng.standard_normal(t.size) * (0.15 + 0.1 * cls)
    return (0.6 * (tone + noise) * np.exp(-(8.0 + 3.0 * cls) * t)).astype(np.float32)


def _write_kits(root: Path) -> list[Path]:
    rng = np.random.default_rng(7)
    out = []
    for k, name in enumerate(("kitA", "kitB", "kitV")):
        folder = root / name
        folder.mkdir(parents=True)
        for c, cls in enumerate(CLASSES):
            sf.write(str(folder / f"{cls}.wav"), _one_shot(c, k, rng), SR, subtype="PCM_16")
        out.append(folder)
    return out


def _write_gmd(root: Path) -> Path:
    """``info.csv`` + MIDI files: 3 train and 1 validation performance of 8 s, 16th-note patterns."""
    rng = np.random.default_rng(3)
    root.mkdir(parents=True)
    rows = []
    for i, split in enumerate(("train", "train", "train", "validation")):
        rel = f"drummer1/session1/{i}_rock_120_beat_4-4.mid"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        onsets = []
        for step in range(64):  # 8 s of 16th notes at 120 BPM
            t = step * 0.125 + rng.uniform(-0.005, 0.005) + 0.01
            for cls, p in (("kick", 0.3), ("snare", 0.25), ("hihat_closed", 0.6), ("tom_mid", 0.05), ("crash", 0.03)):
                if rng.random() < p:
                    onsets.append(Onset(cls, float(t), int(rng.integers(40, 127))))
        write_midi(onsets, root / rel)
        rows.append({"drummer": "drummer1", "session": "drummer1/session1", "id": f"drummer1/session1/{i}",
                     "style": "rock", "bpm": "120", "beat_type": "beat", "time_signature": "4-4",
                     "midi_filename": rel, "audio_filename": "", "duration": "8.0", "split": split})  # fmt: skip
    with open(root / "info.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("traindata")
    kit_a, kit_b, kit_v = _write_kits(root / "kits")
    gmd = _write_gmd(root / "gmd")
    overrides = [
        f"data.kits=[{kit_a}, {kit_b}]",
        f"training.val_kits=[{kit_v}]",
        "data.crop_seconds=0.5",
        "training.val_every=3",
        "training.ckpt_every=2",
    ]
    return {"gmd": gmd, "overrides": overrides}


def _cli(*args: object) -> object:
    from idm.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def _train(data: dict[str, object], out: Path, *extra: object) -> object:
    args: list[object] = ["train", TINY, "--data", data["gmd"], "--out", out, "--quiet", "--threads", 1]
    for o in data["overrides"]:  # type: ignore[attr-defined]
        args += ["--override", o]
    return _cli(*args, *extra)


# --- losses, synthesis, sequencing ------------------------------------------------------------------


def test_mrstft_zero_for_identical_positive_otherwise_and_differentiable(rng: np.random.Generator) -> None:
    from idm.train.losses import MultiResolutionSTFTLoss

    loss = MultiResolutionSTFTLoss()
    x = torch.from_numpy(rng.standard_normal((2, 8192)).astype(np.float32))
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    for other in (0.5 * x, torch.roll(x, 64, -1), x + 0.01 * torch.randn_like(x)):
        assert loss(other, x).item() > 1e-3
    terms = loss.terms(0.5 * x, x)
    assert terms.spectral_convergence.item() == pytest.approx(0.5, rel=1e-3)  # | |0.5X| - |X| | / |X|
    assert terms.log_magnitude.item() == pytest.approx(np.log(2.0), rel=1e-2)
    est = (0.3 * x).requires_grad_(True)
    loss(est, x).backward()
    assert est.grad is not None and torch.isfinite(est.grad).all() and est.grad.abs().sum() > 0
    silent = torch.zeros(1, 4096, requires_grad=True)  # silence: finite loss and gradients
    value = loss(silent, x[:1, :4096])
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(silent.grad).all()


def test_onset_and_kit_losses() -> None:
    from idm.train.losses import kit_loss, onset_loss

    logits = torch.tensor([[[-20.0, 20.0]]])
    assert onset_loss(logits, torch.tensor([[[0.0, 1.0]]])).item() < 1e-6
    assert onset_loss(logits, torch.tensor([[[1.0, 0.0]]])).item() > 10
    kl = torch.tensor([[5.0, 0.0], [0.0, 5.0]], requires_grad=True)
    assert kit_loss(kl, torch.tensor([0, -1])).item() == pytest.approx(
        torch.nn.functional.cross_entropy(kl[:1], torch.tensor([0])).item()
    )
    none = kit_loss(kl, torch.tensor([-1, -1]))
    none.backward()
    assert none.item() == 0.0 and kl.grad is not None


def test_batched_banks_equal_single_banks_and_mix_equals_stem_sum() -> None:
    from idm.model import IDMConfig, InverseDrumMachine
    from idm.model.sequencer import sequence, sequence_mix

    torch.manual_seed(0)
    model = InverseDrumMachine(IDMConfig.tiny()).eval()
    kits = torch.softmax(torch.randn(3, model.config.encoder.n_kits), -1)
    noise = torch.randn(3, 9, model.synth.n_samples)
    with torch.no_grad():
        batched, rates = model.synthesize(kits, noise)
        for i in range(3):
            single, rate = model.synthesize(kits[i], noise[i])
            torch.testing.assert_close(batched[i], single, atol=1e-6, rtol=1e-5)
            torch.testing.assert_close(rates[i], rate)
    act = (torch.rand(3, 9, 40) < 0.1).float() * torch.rand(3, 9, 40)
    gains = torch.rand(3, 9) + 0.5
    stems = sequence(act, batched, gains, 256, 9000)
    torch.testing.assert_close(sequence_mix(act, batched, gains, 256, 9000), stems.sum(-2), atol=1e-5, rtol=1e-4)


def test_step_sampler_order_depends_only_on_the_step() -> None:
    from idm.train.sampling import EpochStream, StepSampler

    full = list(StepSampler(3, 10, 0, rank=1, world=2))
    assert full[:6] == [3, 4, 5, 9, 10, 11]
    assert list(StepSampler(3, 10, 4, rank=1, world=2)) == full[4 * 3 :]
    ranks = sorted(list(StepSampler(2, 5, 0, 0, 2)) + list(StepSampler(2, 5, 0, 1, 2)))
    assert ranks == list(range(20))  # the ranks share the stream without overlap

    class Epochs:
        epoch = -1

        def set_epoch(self, e: int) -> None:
            self.epoch = e

        def __getitem__(self, i: int) -> dict[str, object]:
            return {"e": self.epoch, "i": i, "stems": 0}

    s = EpochStream(Epochs(), 4)
    assert s[9] == {"e": 2, "i": 1}


# --- training -----------------------------------------------------------------------------------------


def _tiny_module_and_batch(data: dict[str, object], b: int = 2):
    from idm.train.config import load_config
    from idm.train.data import build_datasets
    from idm.train.module import IDMTrainingModule

    cfg, _ = load_config(TINY, [*data["overrides"], "training.val_examples=0"])  # type: ignore[call-overload]
    run = build_datasets(cfg, data["gmd"])  # type: ignore[arg-type]
    from idm.data.batch_render import BatchRenderer, collate_plans

    torch.manual_seed(0)
    module = IDMTrainingModule(cfg)
    aug = run.train.config.augment
    module.renderer = BatchRenderer(run.train.table, aug.pitch_semitones if aug is not None else 0.0)
    batch = module.render(collate_plans([run.train[i] for i in range(b)]))  # plans, played as in training
    return module, batch


def test_overfits_a_fixed_batch(tiny_data: dict[str, object]) -> None:
    torch.set_num_threads(1)  # the CPU is shared: more threads only wait for each other
    module, batch = _tiny_module_and_batch(tiny_data)
    assert batch["audio"].shape == (2, 22016) and batch["onsets"].shape == (2, 9, 87)
    assert batch["onsets"].sum() > 0
    opt = module.configure_optimizers()
    noise = module._noise(2, 0)
    losses, stft, onset = [], [], []
    for _ in range(20):
        res = module.step(batch, noise, batch["kit"])
        opt.zero_grad()
        res["loss"].backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 1.0)
        opt.step()
        losses.append(res["loss"].item())
        stft.append(res["stft"].item())
        onset.append(res["onset"].item())
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.6 * losses[0], losses
    assert onset[-1] < 0.5 * onset[0], onset
    assert min(stft[-5:]) < stft[0], stft  # the resynthesis moves towards the mixture


def test_train_cli_resume_time_limit_and_export(tiny_data: dict[str, object], tmp_path: Path) -> None:
    from idm.export.bundle import export_bundle
    from idm.export.check import check_bundle
    from idm.runtime.engine.bundle import load_bundle

    from idm.checkpoint import load_model, read_checkpoint

    # uninterrupted: 6 steps
    a = tmp_path / "a"
    res = _train(tiny_data, a, "--max-steps", 6)
    assert res.exit_code == 0, res.output
    assert "step 6/6 finished" in res.output
    # chunked: a time limit stops it after the first step, --resume finishes it
    b = tmp_path / "b"
    res = _train(tiny_data, b, "--max-steps", 6, "--max-minutes", 1e-4)
    assert res.exit_code == 0, res.output
    assert "step 1/6 stopped" in res.output
    first = read_checkpoint(b / "model.ckpt")
    assert first["training"]["step"] == 1 and first["training"]["finished"] is False
    res = _train(tiny_data, b, "--max-steps", 6, "--resume")
    assert res.exit_code == 0, res.output
    assert "step 6/6 finished" in res.output
    ca, cb = read_checkpoint(a / "model.ckpt"), read_checkpoint(b / "model.ckpt")
    for key, value in ca["state_dict"].items():  # same data, noise and gains per step: the same weights
        torch.testing.assert_close(cb["state_dict"][key], value, atol=1e-6, rtol=1e-5)
    assert sorted(p.name for p in (b / "logs").iterdir()) == ["chunk-000", "chunk-001"]

    # what model.ckpt carries
    tr = ca["training"]
    assert tr["step"] == 6 and tr["finished"] is True and tr["seed"] == 0 and len(tr["config_sha256"]) == 64
    assert tr["config"]["model"]["name"] == "idm-tiny" and tr["wall_time_s"] > 0
    assert {"val/f_micro", "val/stft", "val/onset", "val/loss"} <= set(tr["val_metrics"])
    pp = ca["peak_picking"]
    assert (pp["post_max"], pp["post_avg"], pp["causal"], pp["tuned"]) == (1, 1, True, True)
    assert len(pp["delta"]) == 9 and all(0 < d < 1 for d in pp["delta"]) and pp["classes"] == list(CLASSES)
    metrics = (a / "logs" / "chunk-000" / "metrics.csv").read_text().splitlines()
    assert "train/loss" in metrics[0] and "val/f_micro" in metrics[0] and len(metrics) > 6
    wavs = sorted(p.name for p in (a / "audio" / "step_0000006").iterdir())
    assert wavs == ["00_mix.wav", "00_resynth.wav", "00_transcribed.wav"]
    mix, sr = sf.read(str(a / "audio" / "step_0000006" / "00_mix.wav"))
    assert sr == SR and mix.shape == (22016,) and np.abs(mix).max() > 0.01

    # the project checkpoint loads and exports; the bundle passes its check and carries the picker
    model = load_model(a / "model.ckpt")
    assert model.config.name == "idm-tiny" and model.config.encoder.n_kits == 2
    peaks = model.config.peaks  # the tuned causal picker is the model's own
    assert (peaks.pre_max, peaks.post_max, peaks.post_avg, peaks.wait) == (3, 1, 1, 6)
    assert list(peaks.delta) == pp["delta"]  # type: ignore[arg-type]
    assert ca["config"]["peaks"]["delta"] == pp["delta"]
    bundle = export_bundle(a / "model.ckpt", tmp_path / "bundle")
    check_bundle(bundle)
    manifest_pp = load_bundle(bundle).manifest["peak_picking"]
    assert manifest_pp["delta"] == pp["delta"] and manifest_pp["post_max"] == 1


def test_run_folder_is_protected(tiny_data: dict[str, object], tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.ckpt").write_bytes(b"mine")
    res = _train(tiny_data, out, "--max-steps", 1)
    assert res.exit_code == 1
    assert res.output.strip().startswith("error:") and "--resume" in res.output and "--force" in res.output
    assert (out / "model.ckpt").read_bytes() == b"mine"
    res = _train(tiny_data, tmp_path / "fresh", "--resume")
    assert res.exit_code == 1 and "nothing to resume" in res.output
    res = _cli("train", TINY, "--data", tmp_path / "nowhere", "--out", tmp_path / "new")
    assert res.exit_code == 1 and "--data" in res.output and not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("training.lrr=0.1", "'training.lrr'"),
        ("model.encoder.dimz=[1]", "'encoder.dimz'"),
        ("data.crop_secs=2", "'data.crop_secs'"),
        ("data.augment.reverb=1", "'data.augment.reverb'"),
        ("peak_picking.delta=high", "'peak_picking.delta' must be a number"),
        ("optimizer.lr=1", "SECTION.NAME"),
        ("model.encoder.n_kits=5", "n_kits is 5"),
        ("model.peaks.delta=0.3", "'model.peaks'"),
    ],
)
def test_bad_config_is_one_line_error(tiny_data: dict[str, object], tmp_path: Path, override: str, named: str) -> None:
    res = _train(tiny_data, tmp_path / "run", "--override", override)
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and named in lines[0], res.output
    assert not (tmp_path / "run").exists()


def test_unknown_top_level_key_in_file(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(TINY.read_text() + "\nschedule: {warmup: 10}\n")
    res = _cli("train", cfg, "--data", tmp_path, "--out", tmp_path / "run")
    assert res.exit_code == 1 and "unknown config key 'schedule'" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_resume_allows_validation_and_picker_changes_only(tmp_path: Path) -> None:
    from idm.errors import ConfigError
    from idm.train.config import load_config
    from idm.train.run import _check_resumable

    saved, _ = load_config(TINY, [])
    changed, _ = load_config(
        TINY,
        [
            "training.val_kits=[AVL Black Pearl 4]",
            "training.val_split=train",
            "training.val_every=7",
            "peak_picking.delta=0.3",
            "peak_picking.tune=false",
        ],
    )
    _check_resumable(saved.to_dict(), changed.to_dict(), tmp_path)  # accepted: these do not change the weights
    for key, value in (("training.lr", "0.001"), ("training.batch_size", "3"), ("model.synth.hidden", "5")):
        other, _ = load_config(TINY, [f"{key}={value}"])
        with pytest.raises(ConfigError, match=rf"cannot resume: config key '{key}'"):
            _check_resumable(saved.to_dict(), other.to_dict(), tmp_path)


def test_validation_defaults_to_training_sources_and_can_be_pooled(tiny_data: dict[str, object]) -> None:
    from idm.train.config import load_config
    from idm.train.data import build_datasets

    base = [o for o in tiny_data["overrides"] if not o.startswith("training.val_kits")]  # type: ignore[attr-defined]
    cfg, _ = load_config(TINY, [*base, "training.val_examples=6"])
    assert cfg.training.val_split == "train"  # the evaluation split stays out of selection and tuning by default
    run = build_datasets(cfg, tiny_data["gmd"])  # type: ignore[arg-type]
    assert run.val is not None and run.val.kit_names == run.kit_names  # no val_kits: the run's training kits
    assert run.val_kit_ids == [0, 1]
    cfg, _ = load_config(TINY, [*base, "training.val_examples=6", "training.val_kits=[pooled]"])
    run = build_datasets(cfg, tiny_data["gmd"])  # type: ignore[arg-type]
    assert run.val is not None and run.val.kit_names == tuple(f"pooled {i:03d}" for i in range(1, 7))
    assert run.val_kit_ids == [-1] * 6  # no kit-classifier target for a drawn kit
    train_names = {(i.name, c) for k in run.train.sampler.kits for c in CLASSES for i in k.main(c)}
    for kit in run.val.sampler.kits:
        assert all((kit.instruments[c][0].name, c) in train_names for c in kit.present)
    batch = run.val[0]
    assert batch["audio"].abs().max() > 0.01 and batch["onsets"].sum() > 0


def test_lr_decay_is_a_half_cosine_from_start_to_end() -> None:
    from idm.errors import ConfigError
    from idm.train.config import TrainingConfig

    tc = TrainingConfig(lr=0.01, lr_decay=(10, 20, 0.1))
    rates = [tc.lr_at(s) for s in (0, 10, 15, 20, 1000)]
    np.testing.assert_allclose(rates, [0.01, 0.01, 0.0055, 0.001, 0.001], rtol=1e-12)
    assert all(tc.lr_at(s) >= tc.lr_at(s + 1) for s in range(30))
    assert TrainingConfig(lr=0.01).lr_at(10**6) == 0.01  # no decay: the paper's constant rate
    for bad in ((10, 5, 0.1), (0, 10, 0.0), (0, 10, 1.5), (5, 10)):
        with pytest.raises(ConfigError, match=r"training\.lr_decay must be"):
            TrainingConfig(lr_decay=bad)


def test_resume_accepts_a_decay_only_from_the_resume_step_on(tmp_path: Path) -> None:
    from idm.errors import ConfigError
    from idm.train.config import load_config
    from idm.train.run import _check_resumable

    saved, _ = load_config(TINY, [])
    later, _ = load_config(TINY, ["training.lr_decay=[100, 200, 0.1]"])
    _check_resumable(saved.to_dict(), later.to_dict(), tmp_path, lambda: 101)  # the rate at step 100 is still lr
    with pytest.raises(ConfigError, match="from the step the run is resumed from on"):
        _check_resumable(saved.to_dict(), later.to_dict(), tmp_path, lambda: 102)
    moved, _ = load_config(TINY, ["training.lr_decay=[100, 300, 0.1]"])  # the end moved once the decay began
    with pytest.raises(ConfigError, match="lr_decay"):
        _check_resumable(later.to_dict(), moved.to_dict(), tmp_path, lambda: 150)
    _check_resumable(later.to_dict(), later.to_dict(), tmp_path, lambda: 150)  # unchanged: always fine


def test_lr_decay_added_on_resume_equals_the_uninterrupted_schedule(
    tiny_data: dict[str, object], tmp_path: Path
) -> None:
    from idm.checkpoint import read_checkpoint

    decay = ("--override", "training.lr_decay=[1, 4, 0.05]")
    a = tmp_path / "a"
    res = _train(tiny_data, a, "--max-steps", 6, *decay)
    assert res.exit_code == 0, res.output
    b = tmp_path / "b"  # started without a decay, stopped after step 1, resumed with the decay from step 1 on
    res = _train(tiny_data, b, "--max-steps", 6, "--max-minutes", 1e-4)
    assert res.exit_code == 0 and "step 1/6 stopped" in res.output, res.output
    res = _train(tiny_data, b, "--max-steps", 6, "--resume", *decay)
    assert res.exit_code == 0 and "step 6/6 finished" in res.output, res.output
    ca, cb = read_checkpoint(a / "model.ckpt"), read_checkpoint(b / "model.ckpt")
    for key, value in ca["state_dict"].items():
        torch.testing.assert_close(cb["state_dict"][key], value, atol=1e-6, rtol=1e-5)
    rows = list(csv.DictReader((a / "logs" / "chunk-000" / "metrics.csv").open()))
    lrs = {int(r["step"]): float(r["train/lr"]) for r in rows if r.get("train/lr")}
    tiny_lr = read_checkpoint(a / "model.ckpt")["training"]["config"]["training"]["lr"]
    assert lrs and all(abs(v - tiny_lr * lr_factor_ref(s, 1, 4, 0.05)) < 1e-9 for s, v in lrs.items()), lrs
    assert "lr_decay" in (b / "config.yaml").read_text() and "0.05" in (b / "config.yaml").read_text()
    res = _train(tiny_data, b, "--max-steps", 6, "--resume")  # the decay that began cannot be dropped now
    assert res.exit_code == 1 and "lr_decay" in res.output, res.output


def lr_factor_ref(step: int, start: int, end: int, final: float) -> float:
    t = min(max((step - start) / (end - start), 0.0), 1.0)
    return final + (1 - final) * (1 + np.cos(np.pi * t)) / 2


def test_onset_pos_weight_weighs_onset_frames() -> None:
    from idm.train.losses import onset_loss

    logits = torch.zeros(1, 2, 8)
    targets = torch.zeros(1, 2, 8)
    targets[0, :, 3] = 1.0
    plain = onset_loss(logits, targets)
    weighted = onset_loss(logits, targets, torch.tensor([1.0, 5.0]))
    # log 2 per frame; class 1's onset frame counts 5 times: (16 + 4) / 16 of the plain loss
    assert plain.item() == pytest.approx(np.log(2.0))
    assert weighted.item() == pytest.approx(np.log(2.0) * 20 / 16)


def test_init_from_fine_tunes_from_a_model(tiny_data: dict[str, object], tmp_path: Path) -> None:
    from idm.checkpoint import read_checkpoint

    base = tmp_path / "base"
    assert _train(tiny_data, base, "--max-steps", 2).exit_code == 0
    weights = " ".join(["2.0"] * len(CLASSES))
    ft = tmp_path / "ft"
    res = _train(
        tiny_data, ft, "--max-steps", 1, "--init-from", base / "model.ckpt",
        "--override", f"training.onset_pos_weight=[{weights.replace(' ', ', ')}]",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    a, b = read_checkpoint(base / "model.ckpt"), read_checkpoint(ft / "model.ckpt")
    info = b["training"]["init_from"]
    assert info["step"] == 2 and len(info["sha256"]) == 64 and info["path"].endswith("model.ckpt")
    assert b["training"]["step"] == 1 and b["training"]["config"]["training"]["onset_pos_weight"] == [2.0] * 9
    moved = [k for k, v in a["state_dict"].items() if not torch.equal(v, b["state_dict"][k])]
    close = [
        k for k, v in a["state_dict"].items()
        if v.is_floating_point() and torch.allclose(v, b["state_dict"][k], atol=0.05, rtol=0.0)
    ]  # fmt: skip
    assert moved and len(close) == sum(v.is_floating_point() for v in a["state_dict"].values())  # one step away
    # a fresh init differs from the base by far more than one step
    fresh = tmp_path / "fresh"
    assert _train(tiny_data, fresh, "--max-steps", 1, "--seed", 1).exit_code == 0
    c = read_checkpoint(fresh / "model.ckpt")
    assert any(not torch.allclose(v, c["state_dict"][k], atol=0.05, rtol=0.0) for k, v in a["state_dict"].items()
               if v.is_floating_point())  # fmt: skip
    # errors: another architecture, with --resume, a non-checkpoint
    res = _train(tiny_data, tmp_path / "x", "--init-from", base / "model.ckpt", "--override", "model.synth.hidden=6")
    assert res.exit_code == 1 and "model.synth differs" in res.output and not (tmp_path / "x").exists()
    res = _train(tiny_data, ft, "--resume", "--init-from", base / "model.ckpt")
    assert res.exit_code == 1 and "--init-from starts a new run" in res.output
    (tmp_path / "junk.ckpt").write_bytes(b"junk")
    res = _train(tiny_data, tmp_path / "y", "--init-from", tmp_path / "junk.ckpt")
    assert res.exit_code == 1 and "error:" in res.output and not (tmp_path / "y").exists()
    res = _train(tiny_data, tmp_path / "z", "--override", "training.onset_pos_weight=[1.0, 2.0]")
    assert res.exit_code == 1 and "onset_pos_weight must be one positive number or 9" in res.output


def test_tuned_deltas_respect_the_precision_floor() -> None:
    from idm.train.module import tune_deltas

    # counts [D=3 deltas, K=2 classes, (matched, n_est, n_ref)]
    grid = np.array(
        [
            [[10, 20, 10], [5, 30, 10]],  # low delta: many notes; best F for class 0 (20/30) vs class 1 (10/40)
            [[8, 12, 10], [4, 14, 10]],  # 1.2 and 1.4 notes per hit
            [[5, 5, 10], [2, 13, 10]],
        ]
    )
    assert tune_deltas(grid).tolist() == [1, 1]  # F: class 0 .667/.727/.667, class 1 .25/.333/.087
    assert tune_deltas(grid, 1.3).tolist() == [1, 2]  # class 1: only delta 2 sends <= 1.3 notes per hit
    assert tune_deltas(grid, 1.0).tolist() == [2, 2]  # class 1 meets no floor: the fewest notes


def test_shipped_configs_by_name(tmp_path: Path) -> None:
    from idm.errors import ConfigError
    from idm.train.config import load_config, resolve_config, shipped_configs

    assert set(shipped_configs()) == {"live", "paper", "tiny"}
    assert resolve_config("live") == ROOT / "configs" / "live.yaml" or resolve_config("live").name == "live.yaml"
    cfg, sha = load_config("tiny")
    assert cfg.model.name == "idm-tiny" and len(sha) == 64
    with pytest.raises(ConfigError, match="shipped config"):
        resolve_config("studio")
    assert resolve_config(tmp_path / "mine.yaml") == tmp_path / "mine.yaml"  # a path stays a path


def test_fused_norm_key_switches_the_encoder_kernel() -> None:
    """``training.fused_norm`` turns the encoder's Triton LayerNorm on (used on CUDA tensors only)."""
    from idm.model.encoder import ChannelNorm, ConvNeXtBlock
    from idm.train.config import load_config
    from idm.train.module import IDMTrainingModule
    from idm.train.run import apply_speedups

    def norms(module: IDMTrainingModule) -> list[bool]:
        return [m._fused for m in module.model.encoder.modules() if isinstance(m, ChannelNorm | ConvNeXtBlock)]

    for on in (False, True):
        cfg, _ = load_config(TINY, [f"training.fused_norm={str(on).lower()}", "training.render=workers"])
        module = IDMTrainingModule(cfg)
        apply_speedups(module, cfg.training, None)
        assert norms(module) and all(f == on for f in norms(module))
