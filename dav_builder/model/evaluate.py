"""``dav-train eval RUN DATASET``: AbsRel, delta1 and TAE of a trained model on the kept clips of a
dav-build dataset, per clip and overall, with a protocol of :mod:`dav_builder.evaluation.protocol`
(default ``dav``: one fit per clip, each clip's own depth range, per-clip means, z-buffered TAE)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from dav_builder.evaluation.protocol import PRESETS, Protocol, aggregate, score_clip, valid_mask
from dav_builder.model.data import ClipReader, kept_clips, split_train_val


def evaluate(run: Path, dataset: Path, steps: int = 1, split: str = "all", max_clips: int | None = None,
             ensemble: int = 1, device: str | None = None, interpolator: Path | None = None,
             progress: bool = True, echo: Callable[[str], None] = print,
             protocol: Protocol = PRESETS["dav"]) -> dict:
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
    predictor = VideoDepthPredictor.from_pretrained(run, device=device, steps=steps, interpolator_path=interpolator,
                                                    ensemble=ensemble)
    reader = ClipReader(Path(dataset))
    rows, scores = [], []
    for ref in tqdm(clips, desc="eval", unit="clip", disable=not progress):
        frames = reader.read(ref, list(range(ref.num_frames)))
        pred = predictor(frames.rgb, frames.frame_indices)
        K, pose = frames.meta.get("K"), frames.meta.get("cam_to_world")
        valid = valid_mask(frames.depth, None, 1e-3, np.inf)
        try:
            s = score_clip(ref.clip_id, pred, frames.depth, valid, protocol, 1e-3, np.inf,
                           np.asarray(K, np.float64) if K else None, np.asarray(pose, np.float64) if pose else None)
        except ValueError as exc:
            echo(f"eval: clip {ref.clip_id} skipped: {exc}")
            continue
        scores.append(s)
        rows.append({"clip_id": ref.clip_id, "bucket": ref.bucket, "frames": ref.num_frames,
                     "abs_rel": s.mean("abs_rel"), "delta1": s.mean("delta1"), "tae": s.tae})
    summary = aggregate(scores, protocol.average)
    overall = {"clips": summary.clips, "abs_rel": summary.abs_rel, "delta1": summary.delta1, "tae": summary.tae}
    return {"run": str(run), "dataset": str(dataset), "steps": steps, "split": split, "ensemble": ensemble,
            "protocol": protocol.to_dict(), "overall": overall, "clips": rows}
