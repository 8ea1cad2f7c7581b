"""Stream one capture into clips: read each frame once, find scene breaks, cut clips as they close.

The splitter walks the capture in time order, keeping only the frames of the scene that is still
open (at most the longest clip length plus the detector's look-behind), so memory is bounded by
the clip length, not the capture length.  A scene breaks where

- PySceneDetect's detector (on the reduced RGB) reports a cut,
- the camera pose jumps (teleport) or the frame index jumps (dropped frames),
- a frame is unusable: unreadable or invalid files (:class:`FrameError`), no valid depth (a menu
  screen: :class:`NoDepthError`, reported as ``no_depth``), black, fading, or its
  depth is frozen (bit-identical to the previous frame while the RGB moves).

Unusable frames are reported as *unwritable clips* (``shard = null``, ``reason`` set), one per
run of frames with the same reason, and scene remainders shorter than the shortest clip length as
``too_short``: every frame of the capture ends in exactly one manifest row.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from dav_builder.capture.base import Capture, FrameData, FrameError, FrameInfo, NoDepthError
from dav_builder.clip import Clip, make_clip_id
from dav_builder.pipeline import spans
from dav_builder.pipeline.buckets import bucket_may_resize
from dav_builder.pipeline.config import BuildConfig, SplitConfig
from dav_builder.shards.tario import DEFAULT_DEPTH_CODEC, encode_depth


@dataclass
class CaptureSummary:
    """What one capture produced; the driver completes a capture when all ``clip_ids`` are stored."""

    capture: str
    reader: str = ""
    frames_read: int = 0
    frames_in_clips: int = 0
    frames_dropped: dict[str, int] = field(default_factory=dict)
    """Frames in no written clip, by reason."""
    clip_ids: list[str] = field(default_factory=list)
    """Every clip id the capture produced, written or not, in order."""
    seconds: dict[str, float] = field(default_factory=dict)
    error: str | None = None


def make_detector(cfg: SplitConfig):
    """The configured PySceneDetect detector, or None."""
    if cfg.detector == "none":
        return None
    from scenedetect import AdaptiveDetector, ContentDetector, HashDetector

    if cfg.detector == "content":
        kw = {} if cfg.threshold is None else {"threshold": cfg.threshold}
        return ContentDetector(min_scene_len=cfg.min_scene_len, **kw)
    if cfg.detector == "adaptive":
        kw = {} if cfg.threshold is None else {"adaptive_threshold": cfg.threshold}
        return AdaptiveDetector(min_scene_len=cfg.min_scene_len, **kw)
    kw = {} if cfg.threshold is None else {"threshold": cfg.threshold}
    return HashDetector(min_scene_len=cfg.min_scene_len, **kw)


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def read_threads(configured: int, cap: Capture) -> int:
    """How many threads read ``cap``'s frames ahead (see ``split.read_threads``)."""
    if not getattr(cap, "concurrent_reads", True):
        return 1
    if configured > 0:
        return configured
    return max(1, min(4, usable_cpus()))


@dataclass(frozen=True)
class ReadPlan:
    """What each frame's reading produces besides its bytes and planar depth."""

    small_side: int = 128
    """Longer side of the reduced RGB (scene detection, cheap checks)."""
    fine_side: int = 0
    """Longer side of the RGB image kept for the finer checks (0: none)."""
    encode_depth: bool = False
    """Encode depth as its shard member in the reading thread (when nothing will resize it)."""
    depth_codec: str = DEFAULT_DEPTH_CODEC
    """The shard member's codec (``shards.depth_codec``)."""


def _read(cap: Capture, info: FrameInfo, plan: ReadPlan) -> FrameData | FrameError:
    try:
        frame = cap.read_frame(info, small_side=plan.small_side, fine_side=plan.fine_side)
    except FrameError as exc:
        return exc
    if plan.encode_depth:
        frame.depth_npy = encode_depth(frame.depth, plan.depth_codec)
    return frame


def frames_ahead(height: int, width: int, threads: int, budget_mb: int) -> int:
    """How many frames to decode ahead: what ``budget_mb`` holds at about 10 bytes per pixel
    (float32 depth, its float16 encoding, the image bytes), 2 to 16 per thread."""
    per_frame = max(1, height * width) * 10
    return int(np.clip((budget_mb << 20) // per_frame, 2 * threads, 16 * threads))


def read_ahead(cap: Capture, plan: ReadPlan, threads: int, ahead: int | None = None
               ) -> Iterator[tuple[FrameInfo | FrameError, FrameData | FrameError | None]]:
    """``(frame info, decoded frame or its error)`` in capture order, decoded up to ``ahead``
    frames ahead (default ``4 * threads``) by a thread pool (memory stays bounded; one thread
    reads in line).  Everything per frame (decoding, depth conversion and encoding) happens in
    the pool, in parallel."""
    ahead = 4 * threads if ahead is None else max(1, ahead)
    it = cap.frames()
    failure: list[Exception] = []  # a reader that fails outright: the frames it gave are used first

    def next_info() -> FrameInfo | FrameError | None:
        if failure:
            return None
        try:
            return next(it)
        except StopIteration:
            return None
        except FrameError as exc:  # a reader that raises instead of yielding
            return exc
        except Exception as exc:
            failure.append(exc)
            return None

    if threads <= 1:
        while (info := next_info()) is not None:
            yield info, (None if isinstance(info, FrameError) else _read(cap, info, plan))
        if failure:
            raise failure[0]
        return
    pending: deque = deque()
    with ThreadPoolExecutor(threads, thread_name_prefix="dav-read") as pool:
        done = False
        while True:
            while not done and len(pending) < ahead:
                info = next_info()
                if info is None:
                    done = True
                    break
                pending.append((info, None if isinstance(info, FrameError) else pool.submit(_read, cap, info, plan)))
            if not pending:
                if failure:
                    raise failure[0]
                return
            info, fut = pending.popleft()
            yield info, (None if fut is None else fut.result())


def read_plan(cfg: BuildConfig) -> ReadPlan:
    """What to make of each frame while reading it, from the build's configuration."""
    sc = cfg.scoring
    return ReadPlan(small_side=cfg.split.small_side, fine_side=sc.pair_side if sc.uses_fine_frames() else 0,
                    encode_depth=not bucket_may_resize(cfg.buckets.mode), depth_codec=cfg.shards.depth_codec)


class _Detector:
    """A PySceneDetect detector fed frame by frame; frame numbers restart with each scene."""

    def __init__(self, cfg: SplitConfig, fps: float):
        self.cfg = cfg
        self.fps = fps
        self.reset()

    def reset(self) -> None:
        self.det = make_detector(self.cfg)
        self.n = 0
        self.cut_at_last = False  # the last frame fed was itself reported as a cut (pipeline/ranges.py)

    @property
    def lag(self) -> int:
        return 0 if self.det is None else int(getattr(self.det, "event_buffer_length", 0))

    def feed(self, rgb_small: np.ndarray) -> list[int]:
        """Feed one frame; return cut positions (frame numbers since the last reset)."""
        if self.det is None:
            self.n += 1
            return []
        from scenedetect import FrameTimecode

        bgr = np.ascontiguousarray(rgb_small[..., ::-1])
        cuts = [c.frame_num for c in self.det.process_frame(FrameTimecode(self.n, self.fps), bgr)]
        self.cut_at_last = self.n in cuts
        self.n += 1
        return cuts


@dataclass
class _BadFrame:
    index: int | None
    reason: str
    path: str = ""
    problem: str = ""


class CaptureSplitter:
    """Turns one opened capture into a stream of clips, then one :class:`CaptureSummary`."""

    def __init__(self, capture: Capture, cfg: BuildConfig, skip_ids: frozenset[str] = frozenset()):
        self.cap = capture
        self.cfg = cfg
        self.split: SplitConfig = cfg.split
        self.lengths = tuple(cfg.clips.lengths)
        self.skip = skip_ids
        self.summary = CaptureSummary(capture=capture.id, reader=capture.reader)
        self.detector = _Detector(cfg.split, capture.fps or 30.0)
        self.scene: list[FrameData] = []
        self.scene_pos0 = 0  # detector frame number of scene[0]
        self.bad: list[_BadFrame] = []  # the current run of unusable frames
        self.prev: FrameData | None = None  # the last frame read (for frozen-depth tests)
        self.prev_index: int | None = None
        self.lumas: deque[float] = deque(maxlen=max(2, cfg.split.fade_window))
        self.steps: deque[float] = deque(maxlen=16)
        self.seconds: Counter[str] = Counter()

    # -- emitting -------------------------------------------------------------------------

    def _clip(self, frames: list[FrameData]) -> Clip | None:
        indices = [f.info.index for f in frames]
        cid = make_clip_id(self.cap.id, indices[0], len(indices))
        self.summary.clip_ids.append(cid)
        self.summary.frames_in_clips += len(frames)
        if cid in self.skip:
            return None
        t0 = time.perf_counter()
        rgb = [f.rgb_bytes for f in frames]
        ext = frames[0].rgb_ext
        if len({f.rgb_ext for f in frames}) > 1:  # mixed PNG/JPEG inside one clip: store all as PNG
            from dav_builder.capture.imageio import encode_png

            rgb = [f.rgb_bytes if f.rgb_ext == "png" else encode_png(self.cap.read_rgb(f.info)) for f in frames]
            ext = "png"
        poses = [f.info.cam_to_world for f in frames]
        clip = Clip(
            clip_id=cid,
            capture=self.cap.id,
            frame_indices=indices,
            fps=float(self.cap.fps),
            height=int(frames[0].depth.shape[0]),
            width=int(frames[0].depth.shape[1]),
            rgb=rgb,
            rgb_ext=ext,
            depth=np.stack([f.depth for f in frames]).astype(np.float32, copy=False),
            K=np.stack([np.asarray(f.info.K, dtype=np.float64) for f in frames]),
            cam_to_world=None if any(p is None for p in poses) else np.stack(poses).astype(np.float64),
            rgb_small=np.stack([f.rgb_small for f in frames]),
            rgb_fine=np.stack([f.rgb_fine for f in frames]) if all(f.rgb_fine is not None for f in frames) else None,
            depth_npy=[f.depth_npy for f in frames] if all(f.depth_npy is not None for f in frames) else None,
        )
        self.seconds["assemble"] += time.perf_counter() - t0
        return clip

    def _unwritable(self, indices: list[int], reason: str, errors: dict[str, str]) -> Clip | None:
        cid = make_clip_id(self.cap.id, indices[0] if indices else -1, len(indices))
        self.summary.clip_ids.append(cid)
        key = reason.split(":", 1)[0]
        self.summary.frames_dropped[key] = self.summary.frames_dropped.get(key, 0) + max(1, len(indices))
        if cid in self.skip:
            return None
        return Clip(
            clip_id=cid,
            capture=self.cap.id,
            frame_indices=indices,
            fps=float(self.cap.fps or 0.0),
            height=int(self.cap.height),
            width=int(self.cap.width),
            keep=False,
            reason=reason,
            errors=errors,
        )

    def _flush_bad(self) -> Iterator[Clip]:
        """Emit the current run of unusable frames as one unwritable clip."""
        if not self.bad:
            return
        run, self.bad = self.bad, []
        errors = {b.path: b.problem for b in run if b.path}
        reason = run[0].reason
        first = next((b for b in run if b.path), None)
        if first is not None:  # name the first file and its problem in the reason itself
            reason = f"{reason}: {first.path}: {first.problem}"
        if len(errors) > 20:  # keep the manifest readable for long broken runs
            errors = dict(list(errors.items())[:20]) | {"...": f"{len(run) - 20} more frames"}
        indices = [b.index for b in run if b.index is not None]
        c = self._unwritable(indices, reason, errors)
        if c is not None:
            yield c

    def _emit_prefix(self, n: int) -> Iterator[Clip]:
        """Emit one clip of the first ``n`` frames of the open scene."""
        frames, self.scene = self.scene[:n], self.scene[n:]
        self.scene_pos0 += n
        c = self._clip(frames)
        if c is not None:
            yield c

    def _close_scene(self, reset_detector: bool = True) -> Iterator[Clip]:
        """The scene ended: cut what is left greedily, report the remainder as too short."""
        for length in spans.clip_lengths_for_remainder(len(self.scene), self.lengths):
            yield from self._emit_prefix(length)
        if self.scene:
            rest, self.scene = self.scene, []
            self.scene_pos0 += len(rest)
            c = self._unwritable([f.info.index for f in rest], "too_short", {})
            if c is not None:
                yield c
        if reset_detector:
            self.detector.reset()
            self.scene_pos0 = 0

    def _bad(self, index: int | None, reason: str, path: str = "", problem: str = "") -> Iterator[Clip]:
        """Frame ``index`` is unusable: end the open scene and add it to the run of bad frames."""
        yield from self._close_scene()
        if self.bad and self.bad[-1].reason != reason:
            yield from self._flush_bad()
        self.bad.append(_BadFrame(index, reason, path, problem))
        if index is not None:
            self.prev_index = index

    # -- the walk -------------------------------------------------------------------------

    def run(self) -> Iterator[Clip | CaptureSummary]:
        """Yield clips as they close, and finally the capture's summary.

        Work is timed per stage *before* anything is yielded, so the time a consumer spends on
        a clip (scoring, writing) is not counted here.
        """
        threads = read_threads(self.split.read_threads, self.cap)
        ahead = frames_ahead(int(self.cap.height or 0), int(self.cap.width or 0), threads, self.split.read_ahead_mb)
        frames = read_ahead(self.cap, read_plan(self.cfg), threads, ahead)
        while True:
            t0 = time.perf_counter()
            try:
                item, data = next(frames)
            except StopIteration:
                break
            t1 = time.perf_counter()
            self.seconds["read"] += t1 - t0
            out = self.step(item, data)
            failed = isinstance(item, FrameError) or isinstance(data, FrameError)
            self.seconds["read" if failed else "split"] += time.perf_counter() - t1
            yield from out
        out = list(self._close_scene()) + list(self._flush_bad())
        self.summary.seconds = dict(self.seconds)
        yield from out
        yield self.summary

    def step(self, item: FrameInfo | FrameError, data: FrameData | FrameError | None) -> list[Clip]:
        """One frame of the walk (its metadata or error, its decoded data or error): the clips
        that closed.  :meth:`run` calls it per frame; ``pipeline/ranges.py`` too."""
        self.summary.frames_read += 1
        error = item if isinstance(item, FrameError) else data if isinstance(data, FrameError) else None
        if error is not None:
            self.prev = None
            reason = "bad_metadata" if error is item else "no_depth" if isinstance(error, NoDepthError) else "unreadable"
            return list(self._bad(error.index if error is item else item.index, reason, error.path, error.problem))
        assert isinstance(data, FrameData)
        return list(self._frame(data))

    def _unusable_reason(self, f: FrameData) -> str | None:
        """Why a decoded frame cannot be in a clip (black, fade, frozen depth), or None."""
        cfg = self.split
        y = spans.luma(f.rgb_small)
        fading = len(self.lumas) >= 2 and y < cfg.fade_ratio * float(np.median(self.lumas))
        self.lumas.append(y)
        if y < cfg.black_luma:
            return "black"
        if fading:
            return "fade"
        if (
            cfg.drop_frozen_depth
            and self.prev is not None
            and spans.depth_frozen(self.prev.depth, f.depth)
            and spans.rgb_changed(self.prev.rgb_small, f.rgb_small)
        ):
            return "frozen_depth"
        return None

    def _breaks_before(self, f: FrameData) -> bool:
        """True when ``f`` cannot continue the open scene (dropped frames or a camera jump)."""
        if self.prev_index is not None and f.info.index - self.prev_index > self.cfg.clips.max_gap:
            return True
        if not self.scene or f.info.cam_to_world is None or self.scene[-1].info.cam_to_world is None:
            return False
        step_m, step_deg = spans.pose_step(self.scene[-1].info.cam_to_world, f.info.cam_to_world)
        s = self.split
        if spans.is_pose_jump(step_m, step_deg, list(self.steps), s.pose_jump_m, s.pose_jump_factor, s.pose_jump_deg):
            self.steps.clear()
            return True
        self.steps.append(step_m)
        return False

    def _frame(self, f: FrameData) -> Iterator[Clip]:
        reason = self._unusable_reason(f)
        self.prev = f
        if reason is not None:
            yield from self._bad(f.info.index, reason)
            return
        yield from self._flush_bad()
        if self._breaks_before(f):
            yield from self._close_scene()
        self.prev_index = f.info.index
        self.scene.append(f)
        for pos in self.detector.feed(f.rgb_small):
            k = pos - self.scene_pos0
            if 0 < k < len(self.scene):  # a colour cut inside the open scene: close the part before it
                tail, self.scene = self.scene[k:], self.scene[:k]
                yield from self._close_scene(reset_detector=False)
                self.scene = tail
        longest = self.lengths[0]
        while len(self.scene) >= longest + self.detector.lag:
            yield from self._emit_prefix(longest)
