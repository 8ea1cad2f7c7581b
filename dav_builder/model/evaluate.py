"""``dav-train eval``: AbsRel, delta1 and TAE of a trained model on the kept clips of a dataset."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np

from dav_builder.model.data import ClipReader, kept_clips, split_train_val
from dav_builder.model.metrics import evaluate_clip


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def evaluate(run: Path, dataset: Path, steps: int = 1, split: str = "all", max_clips: int | None = None,
             ensemble: int = 1, device: str | None = None, interpolator: Path | None = None,
             progress: bool = True, echo: Callable[[str], None] = print) -> dict:
    """Predict every selected clip whole (long clips through the long-video path) and score it."""
    from tqdm import tqdm

    from dav_builder.model.predictor import VideoDepthPredictor
    from dav_builder.model.train import run_config_from

    clips = kept_clips(Path(dataset))
    if split == "val":
        saved = run_config_from(Path(run)) or {}
        frac = float(saved.get("train", {}).get("val_fraction", 0.05))
        clips = split_train_val(clips, frac)[1]
        if not clips:
            raise ValueError(f"{dataset}: no held-out validation clips for {run}")
    elif split != "all":
        raise ValueError(f"split must be 'all' or 'val', got {split!r}")
    clips = sorted(clips, key=lambda c: c.clip_id)[: max_clips or None]
    predictor = VideoDepthPredictor.from_pretrained(run, device=device, steps=steps, interpolator_path=interpolator)
    reader = ClipReader(Path(dataset))
    rows = []
    for ref in tqdm(clips, desc="eval", unit="clip", disable=not progress):
        frames = reader.read(ref, list(range(ref.num_frames)))
        if ensemble > 1:
            pred = predictor.ensemble(frames.rgb, frames.frame_indices, seeds=ensemble)
        else:
            pred = predictor(frames.rgb, frames.frame_indices)
        K, pose = frames.meta.get("K"), frames.meta.get("cam_to_world")
        try:
            m = evaluate_clip(pred, frames.depth, np.asarray(K) if K else None, np.asarray(pose) if pose else None)
        except ValueError as exc:
            echo(f"eval: clip {ref.clip_id} skipped: {exc}")
            continue
        rows.append({"clip_id": ref.clip_id, "bucket": ref.bucket, "frames": ref.num_frames,
                     "abs_rel": m.abs_rel, "delta1": m.delta1, "tae": m.tae})
    overall = {"clips": len(rows), "abs_rel": _mean([r["abs_rel"] for r in rows]),
               "delta1": _mean([r["delta1"] for r in rows]), "tae": _mean([r["tae"] for r in rows])}
    return {"run": str(run), "dataset": str(dataset), "steps": steps, "split": split, "ensemble": ensemble,
            "overall": overall, "clips": rows}
