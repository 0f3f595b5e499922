"""Load IDM checkpoints safely: the project's self-describing format and official ``.ckpt`` + YAML."""

from __future__ import annotations

import pickle
import re
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
import yaml

from idm.classes import CLASSES, official_to_project
from idm.errors import CheckpointError, ConfigError
from idm.files import sha256_file
from idm.model import IDMConfig, InverseDrumMachine
from idm.model.config import EncoderConfig, FrontendConfig, SynthConfig
from idm.model.official import map_official_state_dict
from idm.peaks import PeakPicking

__all__ = [
    "PROJECT_FORMAT",
    "config_from_official_yaml",
    "find_official_config",
    "load_model",
    "read_checkpoint",
    "save_checkpoint",
    "sha256_file",
]

#: Marker of the project's own checkpoint format (``format`` key of the saved dict).
PROJECT_FORMAT = "idm-checkpoint-v1"


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` with one-line errors for every way it can fail."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    with open(path, "rb") as f:
        head = f.read(2)
    if not (head.startswith(b"PK") or head[:1] == b"\x80"):  # torch.save zip, or a legacy pickle
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (neither a zip archive nor a pickle)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        if found:
            raise CheckpointError(
                f"{path}: refused, unpickling it would run code ({found[1]}); only weights-only checkpoints load"
            ) from None
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint (unsupported pickle content)") from None
    except Exception as e:  # the weights-only unpickler ran no code: any other failure is a corrupt file
        msg = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint, truncated or corrupted ({msg})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: checkpoint holds a {type(obj).__name__}, expected a dict with a state_dict")
    return obj


def save_checkpoint(model: InverseDrumMachine, path: str | Path, **extra: Any) -> None:
    """Save a self-describing project checkpoint: config, weights and any plain extra metadata."""
    torch.save(
        {"format": PROJECT_FORMAT, "config": model.config.to_dict(), "state_dict": model.state_dict(), **extra},
        path,
    )


# --- official YAML --------------------------------------------------------------------------------

_IGNORED_TOP = {
    "augmentations", "embedding_loss", "loss", "optimizer", "output_dir", "transcription_loss",
    "gt_sequencing", "smooth_targets", "use_target_embeddings", "version", "sampling_rate", "embedding_size",
    "n_drum_kits", "train_classes", "encoder", "decoder", "_target_",
}  # fmt: skip


def find_official_config(ckpt: Path) -> Path | None:
    """``model.yaml`` beside the checkpoint, or ``.hydra/config_resolved.yaml`` one level up."""
    for cand in (ckpt.parent / "model.yaml", ckpt.parent.parent / ".hydra" / "config_resolved.yaml"):
        if cand.is_file():
            return cand
    return None


class _Yaml:
    """Walks an official config, recording every key it reads, so leftovers can be reported."""

    def __init__(self, root: dict[str, Any], source: Path) -> None:
        self.root = root
        self.source = source

    def get(self, dotted: str, default: Any = ...) -> Any:
        node: Any = self.root
        for part in dotted.split("."):
            if not isinstance(node, dict) or part not in node:
                if default is ...:
                    raise ConfigError(f"{self.source}: missing model config key '{dotted}'")
                return default
            node = node[part]
        return node

    def expect(self, dotted: str, allowed: tuple[Any, ...]) -> Any:
        value = self.get(dotted, allowed[0])
        if value not in allowed:
            raise ConfigError(
                f"{self.source}: unsupported architecture: '{dotted}' is {value!r}, "
                f"supported: {', '.join(repr(a) for a in allowed)}"
            )
        return value

    def check_keys(self, dotted: str, known: set[str]) -> None:
        node = self.get(dotted)
        if not isinstance(node, dict):
            raise ConfigError(f"{self.source}: model config key '{dotted}' must be a mapping")
        for key in node:
            if key not in known:
                raise ConfigError(f"{self.source}: unknown architecture key '{dotted}.{key}'")


def config_from_official_yaml(path: str | Path, state: dict[str, torch.Tensor]) -> IDMConfig:
    """Map an official Hydra-style model config (and the weights' shapes) to an :class:`IDMConfig`.

    Unknown keys and unsupported values raise :class:`ConfigError` naming the key.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read model config ({str(e).splitlines()[0]})") from None
    if isinstance(raw, dict) and "model" in raw and isinstance(raw["model"], dict):
        raw = raw["model"]  # a full resolved training config
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: model config is not a mapping")
    y = _Yaml(raw, path)
    y.expect("_target_", ("idm.idm.InverseDrumMachine",))
    for key in raw:
        if key not in _IGNORED_TOP and key not in ("ckpt_path",):
            raise ConfigError(f"{path}: unknown architecture key '{key}'")

    y.check_keys("encoder", {"_target_", "backbone", "embedding_norm", "pooling", "sampling_rate",
                             "transcription_head", "transform"})  # fmt: skip
    y.expect("encoder.backbone._target_", ("idm.feature_extractor.convnext.ConvNeXt",))
    y.check_keys("encoder.backbone", {"_target_", "dims", "downsample", "drop_path_rate", "input_channels",
                                      "kernel_size", "depths"})  # fmt: skip
    y.expect("encoder.backbone.input_channels", (1,))
    y.expect("encoder.backbone.downsample", (False,))
    y.expect("encoder.embedding_norm._target_", ("torch.nn.Softmax",))
    y.expect("encoder.pooling._target_", ("idm.synthesis_conditioning.embedding.DrumKitClassifier",))
    th = "encoder.transcription_head"
    y.check_keys(th, {"_target_", "activation", "input_dim", "kernel_size", "n_classes", "onset_activation",
                      "sequence_model", "velocity_activation"})  # fmt: skip
    y.expect(f"{th}._target_", ("idm.synthesis_conditioning.transcription.TranscriptionHead",))
    y.expect(f"{th}.activation", ("relu",))
    y.expect(f"{th}.onset_activation", ("none", None))
    y.expect(f"{th}.velocity_activation", ("exp_sigmoid",))
    y.expect(f"{th}.sequence_model._target_", ("torch.nn.Identity",))
    tf = "encoder.transform"
    y.check_keys(tf, {"_target_", "hop_length", "log", "n_fft", "n_mels", "sample_rate", "f_min", "f_max"})
    y.expect(f"{tf}._target_", ("idm.feature_extractor.mel.MelSpectrogram",))
    y.expect(f"{tf}.log", (True,))

    dec = "decoder"
    y.check_keys(dec, {"_target_", "peak_picking", "processors", "sample_duration", "sample_synth",
                       "sampling_rate", "sequencer"})  # fmt: skip
    ss = f"{dec}.sample_synth"
    y.check_keys(ss, {"_target_", "dilation_base", "dilation_blocks", "envelope_mode", "film_batch_norm",
                      "film_conditioning", "film_embedding_size", "hidden_channels", "in_channels",
                      "interpolation_method", "kernel_size", "n_tracks", "norm", "normalize_output",
                      "num_envelope_points", "num_layers", "out_channels", "sample_rate"})  # fmt: skip
    y.expect(f"{ss}._target_", ("idm.decoder.one_shot_synth.TransientTCNWithEnvelope",))
    y.expect(f"{ss}.envelope_mode", ("exponential",))
    y.expect(f"{ss}.norm", ("instance",))
    y.expect(f"{ss}.film_conditioning", (True,))
    y.expect(f"{ss}.film_batch_norm", (False,))
    y.expect(f"{ss}.normalize_output", (True,))
    y.expect(f"{ss}.in_channels", (1,))
    y.expect(f"{ss}.out_channels", (1,))
    y.expect(f"{dec}.processors._target_", ("idm.decoder.synth.MultiTrackTimeVaryingGain",))
    y.expect(f"{dec}.processors.downsampling_factor", (-1,))
    y.expect(f"{dec}.sequencer._target_", ("idm.decoder.sequencer.FastDrumSequencerWithMixer",))

    codes = y.get("train_classes")
    try:
        classes = official_to_project(list(codes))
    except KeyError as e:
        raise ConfigError(f"{path}: 'train_classes': {e.args[0]}") from None
    n_classes = int(y.get(f"{th}.n_classes"))
    if n_classes != len(classes):
        raise ConfigError(f"{path}: '{th}.n_classes' is {n_classes} but train_classes has {len(classes)}")

    dims = tuple(int(d) for d in y.get("encoder.backbone.dims"))
    depths = []
    for s in range(len(dims)):
        blocks = {k.split(".")[4] for k in state if k.startswith(f"encoder.backbone.stages.{s}.")}
        depths.append(len(blocks))
    if 0 in depths:
        raise CheckpointError(f"{path}: weights have no blocks for some encoder stage (depths {depths})")
    sr = int(y.get(f"{tf}.sample_rate"))
    frontend = FrontendConfig(
        sample_rate=sr,
        n_fft=int(y.get(f"{tf}.n_fft")),
        hop=int(y.get(f"{tf}.hop_length")),
        n_mels=int(y.get(f"{tf}.n_mels")),
        f_min=float(y.get(f"{tf}.f_min", 0.0)),
        f_max=y.get(f"{tf}.f_max", None),
    )
    encoder = EncoderConfig(
        dims=dims,
        depths=tuple(depths),
        kernel_size=int(y.get("encoder.backbone.kernel_size")),
        head_kernel=int(y.get(f"{th}.kernel_size")),
        n_kits=int(y.get("encoder.pooling.n_drum_kits")),
        gain_hidden=int(y.get(f"{dec}.processors.hidden_size")),
    )
    n_layers = int(y.get(f"{ss}.num_layers"))
    if int(y.get(f"{ss}.dilation_blocks", n_layers)) != n_layers:
        raise ConfigError(f"{path}: unsupported architecture: '{ss}.dilation_blocks' differs from num_layers")
    synth = SynthConfig(
        hidden=int(y.get(f"{ss}.hidden_channels")),
        layers=n_layers,
        kernel_size=int(y.get(f"{ss}.kernel_size")),
        dilation_base=int(y.get(f"{ss}.dilation_base")),
        duration=float(y.get(f"{dec}.sample_duration", 1.0)),
    )
    if "decoder.sample_synth.scale" in state:
        synth.decay_scale = float(state["decoder.sample_synth.scale"])
    cfg = IDMConfig(classes=classes, frontend=frontend, encoder=encoder, synth=synth, name="idm-official")
    if cfg.embedding_size != int(y.get(f"{ss}.film_embedding_size")):
        raise ConfigError(f"{path}: '{ss}.film_embedding_size' does not match classes + kits")
    return cfg


# --- loading ----------------------------------------------------------------------------------------


def _stored_picking(path: Path, base: PeakPicking, stored: dict[str, Any]) -> PeakPicking:
    """The picker ``idm train`` stored (windows, wait, delta: one value or one per class in ``classes`` order)."""
    known = {f.name for f in fields(PeakPicking)}
    merged = {**base.__dict__, **{k: v for k, v in stored.items() if k in known}}
    delta = merged["delta"]
    try:
        if isinstance(delta, list | tuple):
            order = list(stored.get("classes", CLASSES))
            if sorted(order) != sorted(CLASSES) or len(delta) != len(order):
                raise ValueError("per-class delta does not match the class list")
            by_name = dict(zip(order, (float(d) for d in delta), strict=True))
            merged["delta"] = tuple(by_name[c] for c in CLASSES)
        return PeakPicking(**merged)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: malformed 'peak_picking' entry ({e})") from None


def load_model(path: str | Path, config: str | Path | None = None) -> InverseDrumMachine:
    """Load a project checkpoint, or an official one with its ``model.yaml`` (found beside it or given).

    Returns the model in eval mode on the CPU. Raises :class:`CheckpointError` or :class:`ConfigError`.
    """
    path = Path(path)
    obj = read_checkpoint(path)
    state = obj.get("state_dict")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: no state_dict in checkpoint (keys: {', '.join(map(str, obj))})")
    if obj.get("format") == PROJECT_FORMAT or "config" in obj:
        if not isinstance(obj.get("config"), dict):
            raise CheckpointError(f"{path}: project checkpoint without its config")
        cfg = IDMConfig.from_dict(obj["config"])
        state = {k.removeprefix("model."): v for k, v in state.items()}
        picking = obj.get("peak_picking")  # tuned by `idm train`: the model's own picker from now on
        if isinstance(picking, dict):
            cfg.peaks = _stored_picking(path, cfg.peaks, picking)
    else:
        cfg_path = Path(config) if config is not None else find_official_config(path)
        if cfg_path is None:
            looked = f"{path.parent / 'model.yaml'} or {path.parent.parent / '.hydra' / 'config_resolved.yaml'}"
            raise CheckpointError(f"{path}: official checkpoint without its config: looked for {looked}")
        if not cfg_path.is_file():
            raise CheckpointError(f"{cfg_path}: model config not found")
        cfg = config_from_official_yaml(cfg_path, state)
        state, unknown = map_official_state_dict(state)
        if unknown:
            raise CheckpointError(f"{path}: unknown weights for this architecture: {', '.join(unknown[:3])}")
    model = InverseDrumMachine(cfg)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        raise CheckpointError(
            f"{path}: weights do not fit the configured architecture: {' '.join(lines[:2])}"
        ) from None
    return model.eval()
