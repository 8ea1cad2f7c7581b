"""Run a depth predictor over benchmarks and score it with a protocol (``dav-train eval --benchmark``)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol as TypingProtocol

import cv2
import numpy as np

from dav_builder.evaluation.protocol import ClipScores, Protocol, aggregate, score_clip, valid_mask
from dav_builder.evaluation.readers import READERS, open_benchmark
from dav_builder.evaluation.sample import EvalSequence, ReaderError


class Predictor(TypingProtocol):
    def __call__(self, rgb: np.ndarray, frame_indices: list[int] | None = None) -> np.ndarray: ...


@dataclass
class BenchmarkSpec:
    name: str
    root: Path
    options: dict = field(default_factory=dict)


def parse_benchmarks(items: list[str], settings: list[str] = ()) -> list[BenchmarkSpec]:
    """``NAME=PATH`` items and ``NAME.KEY=VALUE`` reader options into specs (clear errors otherwise)."""
    specs: dict[str, BenchmarkSpec] = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--benchmark {item!r}: expected NAME=PATH, e.g. kitti=/data/kitti")
        if name not in READERS:
            raise ValueError(f"--benchmark {item!r}: unknown data set {name!r}; known: {', '.join(READERS)}")
        specs[name] = BenchmarkSpec(name, Path(path))
    for s in settings:
        key, sep, value = s.partition("=")
        name, dot, opt = key.partition(".")
        if not sep or not dot or not opt:
            raise ValueError(f"--set {s!r}: expected NAME.OPTION=VALUE, e.g. kitti.crop=garg")
        if name not in specs:
            raise ValueError(f"--set {s!r}: no --benchmark {name}=PATH given")
        specs[name].options[opt] = value
    return list(specs.values())


def fit_size(h: int, w: int, max_res: int) -> tuple[int, int]:
    """(h, w) scaled down so the longer side is at most ``max_res`` (0 = unchanged)."""
    if max_res <= 0 or max(h, w) <= max_res:
        return h, w
    s = max_res / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def predict_sequence(predictor: Predictor, seq: EvalSequence, max_res: int) -> np.ndarray:
    """Disparity at the ground truth's resolution: predicted on RGB resized to ``max_res``, then
    resized bilinearly to the depth maps' size."""
    t, h, w = seq.rgb.shape[:3]
    ph, pw = fit_size(h, w, max_res)
    rgb = seq.rgb if (ph, pw) == (h, w) else np.stack([cv2.resize(f, (pw, ph), interpolation=cv2.INTER_AREA)
                                                       for f in seq.rgb])
    disp = np.asarray(predictor(rgb, seq.frame_indices), np.float32)
    gh, gw = seq.depth.shape[1:]
    if disp.shape[1:] != (gh, gw):
        disp = np.stack([cv2.resize(d, (gw, gh), interpolation=cv2.INTER_LINEAR) for d in disp])
    return disp


def evaluate_benchmarks(predictor: Predictor, specs: list[BenchmarkSpec], protocol: Protocol, max_res: int = 960,
                        max_clips: int | None = None, progress: bool = True,
                        echo: Callable[[str], None] = print) -> dict:
    """Scores per data set (and per clip) as a JSON-ready dict."""
    from tqdm import tqdm

    readers = [(spec, open_benchmark(spec.name, spec.root, **spec.options)) for spec in specs]
    plan = [(spec, reader, reader.items()[: max_clips or None]) for spec, reader in readers]
    total = sum(len(items) for _, _, items in plan)
    bar = tqdm(total=total, desc="eval", unit="clip", disable=not progress, dynamic_ncols=True)
    results = {}
    try:
        for spec, reader, items in plan:
            info = reader.info
            scores: list[ClipScores] = []
            seconds, frames = 0.0, 0
            bar.set_postfix(benchmark=info.name)
            skipped = []
            for item in items:
                try:
                    seq = reader.load(item)
                except ReaderError as exc:          # one unreadable clip is reported, not fatal
                    echo(f"eval: {info.name}: {exc}; clip skipped")
                    skipped.append({"item": item, "error": str(exc)})
                    bar.update(1)
                    continue
                t0 = time.perf_counter()
                disp = predict_sequence(predictor, seq, max_res)
                v = valid_mask(seq.depth, seq.valid, info.min_depth, info.max_depth)
                try:
                    scores.append(score_clip(seq.name, disp, seq.depth, v, protocol, info.min_depth,
                                             info.max_depth, seq.K, seq.cam_to_world))
                except ValueError as exc:
                    echo(f"eval: {info.name}: {exc}; clip skipped")
                    skipped.append({"item": item, "error": str(exc)})
                seconds += time.perf_counter() - t0
                frames += len(seq.rgb)
                bar.update(1)
            summary = aggregate(scores, protocol.average).to_dict()
            summary.update({"title": info.title, "kind": info.kind, "root": str(spec.root), "options": spec.options,
                            "depth_range": [info.min_depth, info.max_depth],
                            "skipped": skipped, "seconds": round(seconds, 3), "seconds_per_frame": round(seconds / max(frames, 1), 4),
                            "per_clip": [{"name": c.name, "frames": c.frames, "abs_rel": c.mean("abs_rel"),
                                          "delta1": c.mean("delta1"), "tae": c.tae} for c in scores]})
            results[info.name] = summary
    finally:
        bar.close()
    return {"protocol": protocol.to_dict(), "max_res": max_res, "benchmarks": results}
