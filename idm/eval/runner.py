"""``idm eval`` end to end: build the sets, run every system on every clip, score, write JSON, markdown and a plot."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from idm.errors import IDMError, OutputError
from idm.eval.report import summarize, write_markdown
from idm.eval.score import score_clip
from idm.eval.sets import SETS, build_sets, render_clip
from idm.eval.systems import PACES, System, make_system

__all__ = ["OUTPUTS", "EvalConfig", "run_eval"]

#: Files ``idm eval`` writes into its output folder.
OUTPUTS: tuple[str, ...] = ("results.json", "results.md", "summary.png", "classes.png")


@dataclass
class EvalConfig:
    """What ``idm eval`` runs; ``systems`` are ``(name, spec)`` pairs (see :func:`idm.eval.systems.make_system`)."""

    gmd_root: Path
    out: Path
    systems: list[tuple[str, str]]
    sets: tuple[str, ...] = SETS
    kits_root: Path | None = None
    seen_kits: list[str] | None = None
    unseen_kits: list[str] | None = None
    pooled_from: list[str] | None = None
    max_clips: int | None = None
    per_file: int = 1
    clip_seconds: float = 10.0
    seed: int = 0
    threads: int = 1
    device: str = "cpu"
    alpha: float = 1.0
    pace: str = "live"
    force: bool = False
    command: str = "idm eval"
    split: str = "validation"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.systems:
            raise IDMError("no systems to evaluate: pass --system NAME=SPEC (checkpoint, stream:PATH, oracle, mixture)")
        names = [n for n, _ in self.systems]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise IDMError(f"system name {dup[0]!r} is given twice")
        if not self.clip_seconds > 0:
            raise IDMError(f"--clip-seconds must be positive, got {self.clip_seconds}")
        if self.per_file < 1:
            raise IDMError(f"--per-file must be at least 1, got {self.per_file}")
        if self.threads < 1:
            raise IDMError(f"--threads must be at least 1, got {self.threads}")
        if not self.alpha > 0:
            raise IDMError(f"--alpha must be positive, got {self.alpha}")
        if self.pace not in PACES:
            raise IDMError(f"--pace must be one of {', '.join(PACES)}, got {self.pace!r}")


def _finite(x: Any) -> Any:
    """JSON-safe copy: numpy scalars become Python ones, non-finite floats None."""
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


def _check_out(out: Path, force: bool) -> None:
    existing = [n for n in OUTPUTS if (out / n).exists()]
    if existing and not force:
        raise OutputError(f"{out / existing[0]} exists (use --force to replace the results in {out})")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputError(f"{out}: cannot create the output folder ({e.strerror or e})") from None


def run_eval(cfg: EvalConfig, progress: Any = None) -> dict[str, Any]:
    """Run the evaluation and write ``OUTPUTS`` into ``cfg.out``; returns the results (as in results.json).

    ``progress`` is a ``rich.progress.Progress`` (or None) that gets one task over all clips.
    """
    _check_out(cfg.out, cfg.force)
    sets = build_sets(cfg.gmd_root, cfg.sets, kits_root=cfg.kits_root, seen_kits=cfg.seen_kits,
                      unseen_kits=cfg.unseen_kits, pooled_from=cfg.pooled_from, max_clips=cfg.max_clips,
                      per_file=cfg.per_file, clip_seconds=cfg.clip_seconds, seed=cfg.seed,
                      split=cfg.split)  # fmt: skip
    systems: list[System] = []
    rows: list[dict[str, Any]] = []
    try:
        for name, spec in cfg.systems:
            systems.append(make_system(name, spec, alpha=cfg.alpha, threads=cfg.threads, device=cfg.device,
                                       pace=cfg.pace))  # fmt: skip
        total = sum(len(s.clips) for s in sets)
        task = progress.add_task("evaluating", total=total) if progress is not None else None
        for es in sets:
            for i, clip in enumerate(es.clips):
                if progress is not None:
                    progress.update(task, description=f"{es.name} {i + 1}/{len(es.clips)} ({clip.kit_name})")
                rendered = render_clip(clip, es.kits)
                for system in systems:
                    t0 = time.perf_counter()
                    est = system.estimate(rendered)
                    seconds = time.perf_counter() - t0
                    row: dict[str, Any] = {
                        "set": es.name,
                        "index": i,
                        "clip": {
                            "midi": clip.midi_path,
                            "offset_s": clip.offset_s,
                            "kit": clip.kit_name,
                            "seed": clip.seed,
                            "seconds": clip.duration_s,
                        },
                        "system": system.name,
                        "seconds": seconds,
                        "onsets_are_truth": est.onsets_are_truth,
                    }
                    row.update(score_clip(rendered, est))
                    if hasattr(system, "bank_updates"):
                        row["bank_updates"] = list(system.bank_updates)
                    rows.append(row)
                if progress is not None:
                    progress.advance(task)
    finally:
        for system in systems:
            system.close()

    results: dict[str, Any] = {
        "meta": {
            "command": cfg.command,
            "gmd_root": str(cfg.gmd_root),
            "seed": cfg.seed,
            "threads": cfg.threads,
            "device": cfg.device,
            "alpha": cfg.alpha,
            "pace": cfg.pace,
            **cfg.extra,
        },
        "sets": {
            es.name: {
                "clips": len(es.clips),
                "clip_seconds": cfg.clip_seconds,
                "split": cfg.split,
                "kits": list(es.kits),
                **({"pooled_from": es.drawn_from} if es.drawn_from else {}),
            }
            for es in sets
        },
        "systems": [{"name": s.name, "spec": s.spec, "kind": s.kind} for s in systems],
        "clips": rows,
    }
    results = _finite(results)
    summary = _finite(summarize(results))
    results["summary"] = summary
    try:
        with open(cfg.out / "results.json", "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1, allow_nan=False)
        write_markdown(results, summary, cfg.out / "results.md")
        from idm.eval.figures import scores_from_json, write_figures

        label = ", ".join(f"{v['clips']} {k}" for k, v in results["sets"].items())
        write_figures(scores_from_json(results), cfg.out, f"idm eval: {label} clips of {cfg.clip_seconds:g} s")
    except OSError as e:
        raise OutputError(f"{cfg.out}: cannot write the results ({e.strerror or e})") from None
    return results
