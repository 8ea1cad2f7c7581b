"""A long capture split into frame ranges processed in parallel, with exactly the one-pass clips.

The splitter is a walk with memory (the open scene, the detector, the recent lumas and camera
steps, the run of bad frames), so a worker that starts at frame ``b`` with a fresh splitter does
not in general cut what a walk from frame 0 cuts.  But its state stops depending on the frames
before ``b`` at some point: after a scene break that the one-pass walk makes at the same frame for
sure (an unreadable or black frame, a frame-number gap), once the fade window and the camera-step
window hold only frames after ``b``, and with no run of bad frames open.  From that frame ``Q``
on, the fresh walk and the one-pass walk are in the same state, so they cut the same clips.

:class:`_Tracked` follows a fresh walk and tells, frame by frame, whether every decision it made
is one the one-pass walk makes too ("certain"), and when its state no longer depends on the past
(``synced``).  With that, ownership is decided without any communication between workers:

- the worker of range ``k`` (frames ``b_k..e_k``) walks fresh from ``b_k``; the clips it emits up
  to ``Q_k`` (its sync frame, searched inside its range) are not its own; after ``Q_k`` its walk
  *is* the one-pass walk, and it goes on past ``e_k`` until the next range's sync frame, which it
  finds by running that range's fresh walk alongside (the same computation the next worker does);
- a range whose fresh walk never syncs inside it owns nothing: the previous owner walks through it.

So every clip is emitted by exactly one worker, exactly as in one pass (the tests compare the
manifests of one pass and of many ranges).  The cost is the overlap: frames from ``b_k`` to
``Q_k`` are read twice (usually up to the first scene break after the border).

A colour cut found by the scene detector is such a break too, for PySceneDetect's
``ContentDetector`` with its flash filter in merge mode and a minimum scene length of ``L``
frames (the default detector), under conditions the fresh walk checks by itself
(:class:`_ColourSync`): the cut at frame ``c`` is reported at ``c`` itself (no frame in the ``L``
before it scored above the threshold), no frame in the ``L`` after it does, and every decision
from ``c - L - 1`` to ``c + L`` is certain, so both walks fed the detector the same frames there.
Then the one-pass walk cuts at ``c`` too: at once, or, if its filter was still merging earlier
flashes, ``L`` frames later at the same position (the splitter holds ``L`` frames back for that),
and from ``c + L`` on both filters hold the same state (last frame above the threshold ``c``,
not merging) and both scenes start at ``c``.  Any other detector keeps the hard breaks only.
A camera-jump decision is certain when both walks appended the frame before to their open scene
(its usability was decided for certain: the same two frames are compared) and the step is
clearly a jump or clearly not one, whatever the recent steps were.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterator

from dav_builder.capture.base import Capture, CaptureError, FrameData, FrameError, FrameInfo
from dav_builder.capture.discover import open_capture
from dav_builder.clip import Clip
from dav_builder.pipeline import spans
from dav_builder.pipeline.config import BuildConfig
from dav_builder.pipeline.splitter import CaptureSplitter, CaptureSummary, frames_ahead, read_ahead, read_plan, read_threads
from dav_builder.pipeline.stages import Item, capture_items


def plan_ranges(frames: int, range_frames: int) -> list[tuple[int, int]]:
    """``[(start, stop)]`` positions of the ranges of a capture of ``frames`` frames (one range when
    ``range_frames`` is 0 or the capture is not longer)."""
    if range_frames <= 0 or frames <= range_frames:
        return [(0, frames)]
    return [(s, min(frames, s + range_frames)) for s in range(0, frames, range_frames)]


def count_frames(cap: Capture) -> int:
    """Frames (metadata entries, broken ones included) of a capture; reads no image."""
    return sum(1 for _ in cap.frames())


def merge_filter_length(det) -> int | None:
    """``L`` when ``det`` is PySceneDetect's ``ContentDetector`` whose flash filter merges cuts
    closer than ``L`` frames (the state machine the colour-cut rule above was worked out for);
    None for any other detector, or a version whose filter looks otherwise."""
    try:
        from scenedetect import ContentDetector
        from scenedetect.detector import FlashFilter
    except ImportError:  # pragma: no cover - scenedetect is a dependency
        return None
    ff = getattr(det, "_flash_filter", None)
    if type(det) is not ContentDetector or type(ff) is not FlashFilter:
        return None
    length = getattr(ff, "_filter_length", None)
    if getattr(ff, "_mode", None) != FlashFilter.Mode.MERGE or getattr(ff, "_filter_secs", 0.0) is not None \
            or not isinstance(length, int) or length <= 0 or getattr(det, "event_buffer_length", None) != length \
            or not hasattr(det, "_frame_score") or not hasattr(det, "_threshold"):
        return None
    return length


@dataclass
class _Fed:
    """One step of a fresh walk as the colour-cut rule sees it."""

    certain: bool
    continuous: bool
    """The detector was fed this frame, right after the previous one, with no reset between."""
    above: bool
    """The frame's detector score was at or above the threshold."""
    cut_here: bool
    """The detector reported a cut at this very frame."""


class _ColourSync:
    """Follows a fresh walk's steps and says when a colour cut makes its state the one-pass walk's
    (see the module's docs): an immediate cut with ``L + 1`` certain, continuously fed, quiet steps
    before it, then ``L`` certain, continuously fed steps below the threshold."""

    def __init__(self, length: int):
        self.length = length
        self.before: list[_Fed] = []
        self.after: int | None = None  # quiet steps seen since a qualifying cut

    def step(self, fed: _Fed) -> bool:
        """Record one step; True when the walk has just become the one-pass walk's."""
        L = self.length
        ok = fed.certain and fed.continuous
        if self.after is not None:
            self.after = self.after + 1 if ok and not fed.above and not fed.cut_here else None
        elif fed.cut_here and ok and len(self.before) == L + 1 and \
                all(f.certain and f.continuous and not f.above for f in self.before[1:]) and \
                self.before[0].certain and self.before[0].continuous:
            self.after = 0
        self.before = (self.before + [fed])[-(L + 1):]
        if self.after == L:
            self.after = None
            return True
        return False


class _Tracked(CaptureSplitter):
    """A splitter that knows whether its state can differ from the one-pass walk's.

    ``fresh`` marks a walk that starts inside the capture (an unknown past); a walk from frame 0
    is the one-pass walk itself.
    """

    def __init__(self, capture: Capture, cfg: BuildConfig, skip_ids: frozenset[str], fresh: bool,
                 poses_before: bool):
        super().__init__(capture, cfg, skip_ids)
        self.fresh = fresh
        self.frames_seen = 0
        self.lumas_seen = 0
        self.scene_clean = not fresh
        self.steps_appends = 0
        self.poses_seen = poses_before
        self.steps_clean = not fresh or not poses_before
        self.certain = True
        self.reset_certain = False
        self.went_bad = False
        self.tail_shared = False  # both walks appended the last frame to their open scene
        self.usable_certain = True
        length = merge_filter_length(self.detector.det) if fresh else None
        self.colour = _ColourSync(length) if length and self.detector.lag == length else None

    # -- the decisions, watched ----------------------------------------------------------

    def _uncertain(self) -> None:
        self.certain = False

    def _unusable_reason(self, f: FrameData) -> str | None:
        lumas_known = self.lumas_seen >= (self.lumas.maxlen or 0)
        reason = super()._unusable_reason(f)
        self.lumas_seen += 1
        if reason != "black":  # black needs no history; fade needs the lumas; frozen the previous frame
            if not lumas_known or self.frames_seen == 0:
                self._uncertain()
                self.usable_certain = False
        return reason

    def _breaks_before(self, f: FrameData) -> bool:
        s = self.split
        gap = self.prev_index is not None and f.info.index - self.prev_index > self.cfg.clips.max_gap
        if self.prev_index is None:
            self._uncertain()
        pose = f.info.cam_to_world
        if pose is not None:
            self.poses_seen = True
        jump_tested = False
        if not gap and pose is not None:
            if not (self.scene_clean or self.tail_shared):
                self._uncertain()  # whether the scene is open, and its last pose, may differ
            elif self.scene and self.scene[-1].info.cam_to_world is not None:
                jump_tested = True
                step_m, step_deg = spans.pose_step(self.scene[-1].info.cam_to_world, pose)
                clear_cut = step_deg > s.pose_jump_deg or step_m <= s.pose_jump_m
                if not (self.steps_clean or clear_cut):
                    self._uncertain()
        out = super()._breaks_before(f)
        if gap and out:
            self.reset_certain = True
        elif out:  # a camera jump: certain only in a clean scene; both walks clear the steps
            if jump_tested and self.certain:
                self.steps_clean = True
                self.steps_appends = 0
        elif jump_tested:  # no jump: both walks appended this step
            self.steps_appends += 1
            if self.scene_clean and self.steps_appends >= (self.steps.maxlen or 0):
                self.steps_clean = True
        return out

    def _bad(self, index, reason, path="", problem=""):
        self.went_bad = True
        return super()._bad(index, reason, path, problem)

    # -- one frame -----------------------------------------------------------------------

    def step(self, info: FrameInfo | FrameError, data: FrameData | FrameError | None) -> list[Clip]:
        """Process one frame as the one-pass walk does; return what it emitted, and follow whether
        every decision it took was one the one-pass walk takes too."""
        self.certain = True
        self.usable_certain = True
        self.reset_certain = False
        self.went_bad = False
        det, n = self.detector.det, self.detector.n
        out = super().step(info, data)
        if self.went_bad:  # an unreadable or unusable frame closed the scene (a clean reset if certain)
            self.reset_certain = True
        self.frames_seen += 1
        fed = self.detector.det is det and self.detector.n == n + 1
        # both walks appended this frame to their open scene (whether it also broke the scene or
        # not): the next frame's camera-jump test compares the same two frames.  With lag >= 1 no
        # clip emission empties the scene.
        self.tail_shared = (self.usable_certain and not self.went_bad and isinstance(data, FrameData)
                            and self.detector.lag >= 1)
        if not self.fresh:
            return out
        if self.colour is not None:  # every step goes into its window, so that the window has no holes
            score = getattr(self.detector.det, "_frame_score", None)
            above = score is not None and score >= self.detector.det._threshold  # type: ignore[union-attr]
            synced = self.colour.step(_Fed(self.certain, fed, above, fed and self.detector.cut_at_last))
            if synced and self.certain and not self.scene_clean:
                self.reset_certain = True  # a colour cut both walks make: the scenes are the same from here
        if not self.certain:
            self.scene_clean = False
            self.steps_clean = not self.poses_seen
            self.steps_appends = 0
        elif self.reset_certain:
            if not self.scene_clean:
                self.steps_appends = 0
            self.scene_clean = True
        return out

    def finish(self) -> list[Clip | None]:
        return list(self._close_scene()) + list(self._flush_bad())

    @property
    def synced(self) -> bool:
        """The state no longer depends on the frames before this walk's start."""
        return (self.certain and self.scene_clean and self.steps_clean and not self.bad
                and self.prev_index is not None and self.lumas_seen >= (self.lumas.maxlen or 0))


class _Positions:
    """A capture seen from frame position ``start`` on (the reading threads use it as the capture)."""

    def __init__(self, cap: Capture, start: int):
        self._cap = cap
        self._start = start
        self.poses_before = False

    def frames(self) -> Iterator[FrameInfo | FrameError]:
        for pos, info in enumerate(self._cap.frames()):
            if pos < self._start:
                if isinstance(info, FrameInfo) and info.cam_to_world is not None:
                    self.poses_before = True
                continue
            yield info

    def __getattr__(self, name):
        return getattr(self._cap, name)


@dataclass
class _Owned:
    """What the clips owned by a range add to its summary."""

    clip_ids: list[str] = field(default_factory=list)
    frames_in_clips: int = 0
    frames_dropped: Counter = field(default_factory=Counter)

    def take(self, sp: CaptureSplitter, mark: tuple[int, int, dict]) -> None:
        n_ids, in_clips, dropped = mark
        self.clip_ids += sp.summary.clip_ids[n_ids:]
        self.frames_in_clips += sp.summary.frames_in_clips - in_clips
        self.frames_dropped.update(Counter(sp.summary.frames_dropped) - Counter(dropped))


def _mark(sp: CaptureSplitter) -> tuple[int, int, dict]:
    return len(sp.summary.clip_ids), sp.summary.frames_in_clips, dict(sp.summary.frames_dropped)


def range_clips(cap: Capture, cfg: BuildConfig, starts: list[int], part: int, total: int,
                skip_ids: frozenset[str] = frozenset()) -> Iterator[Clip | CaptureSummary]:
    """The clips range ``part`` owns (range ``i`` starts at frame position ``starts[i]``; the
    capture has ``total`` frame positions), then its summary (``frames_read`` counts the range's
    own frames).

    A range's fresh walk looks for its sync frame only in its first ``split.range_sync_frames``
    frames (the same window whichever worker runs it), which bounds the work a range without a
    hard break wastes."""
    t0 = time.perf_counter()
    window = max(1, cfg.split.range_sync_frames)
    start = starts[part]
    stop = starts[part + 1] if part + 1 < len(starts) else None
    view = _Positions(cap, start)
    threads = read_threads(cfg.split.read_threads, cap)
    ahead = frames_ahead(int(cap.height or 0), int(cap.width or 0), threads, cfg.split.read_ahead_mb)
    frames = read_ahead(view, read_plan(cfg), threads, ahead)  # type: ignore[arg-type]
    owned = _Owned()
    own_frames = (stop if stop is not None else total) - start
    walk: _Tracked | None = None
    owner = part == 0  # range 0 walks from the capture's start: the one-pass walk from the first frame
    shadow: _Tracked | None = None  # the fresh walk of a later range, to find where ownership passes on
    shadow_start = 0
    nxt = part + 1
    pos = start

    def emit(out: list) -> Iterator[Clip]:
        for clip in out:
            if clip is not None:
                yield clip

    try:
        for info, data in frames:
            if walk is None:  # (the positions before ``start`` have been skipped by now)
                walk = _Tracked(cap, cfg, skip_ids, fresh=part > 0, poses_before=view.poses_before)
            if not owner and pos >= start + window:
                break  # the walk did not sync early in its range: the range owns nothing
            if shadow is not None and pos >= shadow_start + window:
                shadow = None  # that range's walk did not sync: this walk goes on through it
            if nxt < len(starts) and pos == starts[nxt]:
                if not owner:
                    break  # the walk never synced inside its own range: the range owns nothing
                shadow = _Tracked(cap, cfg, skip_ids, fresh=True, poses_before=walk.poses_seen)
                shadow_start = pos
                nxt += 1
            mark = _mark(walk)
            out = walk.step(info, data)
            if owner:
                owned.take(walk, mark)
                yield from emit(out)
            elif walk.synced:
                owner = True  # from the next frame on, this walk is the one-pass walk
            if shadow is not None:
                shadow.step(info, data)
                if shadow.synced:  # the next range's worker owns what comes after this frame
                    break
            pos += 1
        else:  # the capture ended while this walk was the one-pass walk: the last scene's end is ours
            if owner and walk is not None:
                mark = _mark(walk)
                out = walk.finish()
                owned.take(walk, mark)
                yield from emit(out)
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()
    yield CaptureSummary(capture=cap.id, reader=cap.reader, frames_read=own_frames,
                         frames_in_clips=owned.frames_in_clips, frames_dropped=dict(owned.frames_dropped),
                         clip_ids=owned.clip_ids, seconds={"split": time.perf_counter() - t0})


def range_items(unit, cfg: BuildConfig, wrap: Callable[[Capture], Capture]) -> Iterator[Item]:
    """:func:`~dav_builder.pipeline.stages.capture_items` for one range of a capture (opened
    through ``wrap``: a capture on an object store is fetched as it is read)."""
    if unit.part == 0 and unit.parts == 1:
        yield from capture_items(unit.ref, cfg, unit.skip_ids)
        return
    try:
        cap = wrap(open_capture(unit.ref))
    except CaptureError:
        # the capture cannot be opened: its first range reports it, as a one-pass build would
        if unit.part == 0:
            yield from capture_items(unit.ref, cfg, unit.skip_ids)
        else:
            yield Item(summary=CaptureSummary(capture=unit.ref.capture_id, reader=unit.ref.reader))
        return
    for out in range_clips(cap, cfg, list(unit.starts), unit.part, unit.total, unit.skip_ids):
        if isinstance(out, CaptureSummary):
            yield Item(summary=out)
        else:
            yield Item(clip=out)
