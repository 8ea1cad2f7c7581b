"""``dav-build --dry-run``: what a build would do, from the captures' metadata, writing nothing.

For each capture: its layout, size, frames (from its frame list; no image is decoded), and the
clips the configured lengths cut from its runs of consecutive frames (a run breaks where a frame
index gap exceeds ``clips.max_gap``).  Scene cuts, black frames and unreadable files are only
found by reading the frames, so the planned clips are an upper bound.  The output size is
estimated from the RGB files' sizes on disk and a few depth frames encoded with the configured
codec (one per capture, at most ``depth_samples`` in all).
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from dav_builder.capture.base import CaptureError, FrameError
from dav_builder.capture.discover import CaptureRef, find_captures, open_capture
from dav_builder.clip import bucket_name
from dav_builder.pipeline.buckets import plan_geometry
from dav_builder.pipeline.config import BuildConfig
from dav_builder.pipeline.spans import clip_lengths_for_remainder


def runs_of_frames(indices: list[int], max_gap: int) -> list[int]:
    """Lengths of the runs of ``indices`` whose steps are at most ``max_gap``.

    >>> runs_of_frames([0, 1, 2, 5, 6], 1)
    [3, 2]
    """
    runs: list[int] = []
    prev = None
    for i in indices:
        if prev is None or i - prev > max_gap:
            runs.append(0)
        runs[-1] += 1
        prev = i
    return runs


@dataclass
class CapturePlan:
    capture_id: str
    reader: str
    frames: int = 0
    height: int = 0
    width: int = 0
    clips: Counter = field(default_factory=Counter)
    """Planned clips per bucket."""
    frames_in_clips: int = 0
    rgb_bytes_per_frame: float = 0.0
    error: str | None = None


@dataclass
class BuildPlan:
    captures: list[CapturePlan]
    depth_bytes_per_pixel: float
    """Mean size of an encoded depth frame per pixel, from the sampled frames (0 when none)."""
    depth_codec: str

    @property
    def layouts(self) -> Counter:
        return Counter(c.reader for c in self.captures)

    @property
    def buckets(self) -> Counter:
        out: Counter = Counter()
        for c in self.captures:
            out.update(c.clips)
        return out

    def estimated_bytes(self) -> int:
        total = 0.0
        for c in self.captures:
            for bucket, n in c.clips.items():
                hw, frames = bucket.split("-")
                h, w = (int(x) for x in hw.split("x"))
                scale = (h * w) / max(1, c.height * c.width)  # RGB re-encoded at the bucket size
                total += n * int(frames[:-1]) * (c.rgb_bytes_per_frame * scale + self.depth_bytes_per_pixel * h * w)
        return int(total)

    def lines(self) -> list[str]:
        frames = sum(c.frames for c in self.captures)
        in_clips = sum(c.frames_in_clips for c in self.captures)
        out = [f"captures: {len(self.captures)} (" + ", ".join(f"{k} {v}" for k, v in sorted(self.layouts.items()))
               + f"), frames: {frames}"]
        for c in self.captures:
            if c.error:
                out.append(f"  {c.capture_id} [{c.reader}]: cannot be opened: {c.error}")
            else:
                out.append(f"  {c.capture_id} [{c.reader}]: {c.frames} frames {c.height}x{c.width}, "
                           f"{sum(c.clips.values())} clips")
        out.append(f"planned clips (at most; scene cuts and bad frames are found when reading): "
                   f"{sum(self.buckets.values())}, {in_clips} frames")
        for bucket, n in sorted(self.buckets.items()):
            out.append(f"  {bucket}: {n}")
        out.append(f"estimated output: {self.estimated_bytes() / 2**20:.1f} MiB "
                   f"(RGB as stored, depth as {self.depth_codec} from sampled frames)")
        out.append("dry run: nothing was written")
        return out


def plan_capture(ref: CaptureRef, cfg: BuildConfig) -> tuple[CapturePlan, object, object]:
    """The plan of one capture, its opened reader and one frame to sample depth from."""
    plan = CapturePlan(ref.capture_id, ref.reader)
    try:
        cap = open_capture(ref)
    except CaptureError as exc:
        plan.error = str(exc)
        return plan, None, None
    plan.height, plan.width = int(cap.height), int(cap.width)
    infos = [f for f in cap.frames() if not isinstance(f, FrameError)]
    plan.frames = len(infos)
    g = plan_geometry(plan.height, plan.width, cfg.buckets.mode, [tuple(hw) for hw in cfg.buckets.sizes])
    lengths = tuple(cfg.clips.lengths)
    for run in runs_of_frames([f.index for f in infos], cfg.clips.max_gap):
        for n in clip_lengths_for_remainder(run, lengths):
            plan.clips[bucket_name(g.out_h, g.out_w, n)] += 1
            plan.frames_in_clips += n
    sizes = []
    for f in infos[:: max(1, len(infos) // 8)][:8]:  # a few RGB files' sizes on disk
        try:
            sizes.append(os.path.getsize(Path(cap.root) / f.rgb))
        except OSError:
            pass
    plan.rgb_bytes_per_frame = sum(sizes) / len(sizes) if sizes else 3.0 * plan.height * plan.width / 2
    return plan, cap, (infos[len(infos) // 2] if infos else None)


def plan_build(inputs: list[Path], cfg: BuildConfig, depth_samples: int = 16) -> BuildPlan:
    """Plan a build of ``inputs`` with ``cfg``; reads metadata and a few depth frames, writes nothing."""
    from dav_builder.shards.tario import encode_depth

    captures, depth_bytes, depth_pixels = [], 0, 0
    for ref in find_captures(inputs):
        plan, cap, sample = plan_capture(ref, cfg)
        captures.append(plan)
        if cap is not None and sample is not None and depth_samples > 0:
            depth_samples -= 1
            try:
                d = cap.read_depth(sample)
            except (FrameError, CaptureError, OSError, ValueError):
                continue
            depth_bytes += len(encode_depth(d, cfg.shards.depth_codec))
            depth_pixels += d.size
    per_px = depth_bytes / depth_pixels if depth_pixels else (2.0 if cfg.shards.depth_codec == "npy" else 1.0)
    return BuildPlan(captures, per_px, cfg.shards.depth_codec)
