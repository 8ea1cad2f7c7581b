"""The build's stages as plain Python: no Ray here (``executors.py`` wires them).

1. :func:`capture_items` opens one capture and streams its clips and summary (read, split, cut).
2. :class:`ClipProcessor` scores a batch of clips (``ScoringStage``: models loaded once, in
   :meth:`ClipProcessor.setup`) and fits each to its bucket size.
3. :class:`~dav_builder.pipeline.sink.UnitWriter` writes the shards in the worker; the driver's
   :class:`~dav_builder.pipeline.sink.DatasetSink` writes the manifest.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Iterator

from dav_builder.capture.base import CaptureError, FrameError, safe_text
from dav_builder.capture.discover import CaptureRef, open_capture
from dav_builder.clip import Clip, make_clip_id
from dav_builder.filters.stage import ScoringStage
from dav_builder.pipeline.buckets import apply_bucket
from dav_builder.pipeline.config import BuildConfig
from dav_builder.pipeline.splitter import CaptureSplitter, CaptureSummary
from dav_builder.shards.tario import pack_depth

log = logging.getLogger(__name__)


@dataclass
class Item:
    """What flows between stages: a clip or a capture's summary, plus the seconds spent on it."""

    clip: Clip | None = None
    summary: CaptureSummary | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def failure_text(exc: BaseException, where: str) -> str:
    """``"<file>: <problem>"`` for any exception: the file it names (a CaptureError's or
    FrameError's path, an OSError's file name), else ``where`` (the capture)."""
    if isinstance(exc, (CaptureError, FrameError)):
        return f"{exc.path}: {exc.problem}"
    path = getattr(exc, "filename", None) or where
    return safe_text(f"{path}: unexpected {type(exc).__name__}: {exc}")


def _failed_capture_clip(ref: CaptureRef, text: str, path: str, problem: str) -> Clip:
    """The one unwritable row of a capture that failed as a whole (stable id: a rerun that fails
    the same way writes the same row)."""
    cid = make_clip_id(ref.capture_id, -1, 0)
    return Clip(cid, ref.capture_id, [], 0.0, 0, 0, keep=False, reason=f"capture_error: {text}",
                errors={path: problem})


def capture_items(ref: CaptureRef, cfg: BuildConfig, skip_ids: frozenset[str] = frozenset()) -> Iterator[Item]:
    """Open ``ref`` and stream its clips, then its summary.

    Nothing a capture holds stops the build: a capture that cannot be opened becomes one
    unwritable clip whose reason names the file and the problem, and so does any exception
    raised while it is split (a reader's or a library's own error, not only
    :class:`CaptureError`): the clips already cut are kept, the rest of the capture is that
    one row, and the build goes on with the next capture.
    """
    t0 = time.perf_counter()
    try:
        capture = open_capture(ref)
    except Exception as exc:  # CaptureError, or anything a reader raises on odd input
        text = failure_text(exc, ref.path)
        if not isinstance(exc, CaptureError):
            log.warning("capture %s cannot be opened: %s", ref.capture_id, text, exc_info=exc)
        path, _, problem = text.partition(": ")
        clip = _failed_capture_clip(ref, text, path, problem)
        if clip.clip_id not in skip_ids:
            yield Item(clip=clip)
        summary = CaptureSummary(capture=ref.capture_id, reader=ref.reader, clip_ids=[clip.clip_id],
                                 frames_dropped={"capture_error": 0}, error=text,
                                 seconds={"read": time.perf_counter() - t0})
        yield Item(summary=summary)
        return
    splitter = CaptureSplitter(capture, cfg, skip_ids)
    sent: list[str] = []
    try:
        for out in splitter.run():
            if isinstance(out, CaptureSummary):
                out.seconds["read"] = out.seconds.get("read", 0.0) + time.perf_counter() - t0 - sum(out.seconds.values())
                if not out.clip_ids:  # a capture without a single frame still gets its row
                    text = f"{capture.root}: the capture lists no frames"
                    clip = _failed_capture_clip(ref, text, str(capture.root), "the capture lists no frames")
                    out.clip_ids.append(clip.clip_id)
                    out.frames_dropped["capture_error"] = 0
                    out.error = text
                    if clip.clip_id not in skip_ids:
                        yield Item(clip=clip)
                yield Item(summary=out)
            else:
                sent.append(out.clip_id)
                yield Item(clip=out)
    except Exception as exc:  # the rest of the capture becomes one row; the clips sent stand
        text = failure_text(exc, ref.path)
        log.warning("capture %s failed after %d clip(s): %s", ref.capture_id, len(sent), text, exc_info=exc)
        path, _, problem = text.partition(": ")
        clip = _failed_capture_clip(ref, text, path, problem)
        summary = splitter.summary
        kept = set(sent) | (set(summary.clip_ids) & skip_ids)  # ids cut but never sent are forgotten
        summary.clip_ids = [c for c in summary.clip_ids if c in kept] + [clip.clip_id]
        summary.frames_dropped["capture_error"] = summary.frames_dropped.get("capture_error", 0)
        summary.error = text
        summary.seconds = dict(splitter.seconds)
        summary.seconds["read"] = summary.seconds.get("read", 0.0) + time.perf_counter() - t0 - sum(summary.seconds.values())
        if clip.clip_id not in skip_ids:
            yield Item(clip=clip)
        yield Item(summary=summary)


def unwritable(clip: Clip, text: str) -> None:
    """Turn a loaded clip into an unwritable row (its data dropped) with ``reason``."""
    clip.rgb = []
    clip.depth = clip.depth_npy = clip.rgb_small = clip.rgb_fine = None
    clip.keep = False
    clip.reason = f"processing_error: {text}"
    clip.errors = dict(clip.errors, **{text.partition(": ")[0]: text.partition(": ")[2]})
    clip.bucket = None


class ClipProcessor:
    """Scores clips and fits them to their bucket; holds the models of one worker."""

    def __init__(self, cfg: BuildConfig):
        self.cfg = cfg
        self.scoring = ScoringStage(cfg.scoring)
        self._ready = False

    def setup(self) -> None:
        """Load the scoring models (once per worker)."""
        if not self._ready:
            self.scoring.setup()
            self._ready = True

    def __call__(self, items: list[Item]) -> list[Item]:
        self.setup()
        clips = [it.clip for it in items if it.clip is not None and it.clip.loaded]
        if clips:
            t0 = time.perf_counter()
            self._score(clips)
            dt = (time.perf_counter() - t0) / len(clips)
            sizes = [tuple(hw) for hw in self.cfg.buckets.sizes]
            for it in items:
                if it.clip is not None and it.clip.loaded:
                    it.seconds["score"] = it.seconds.get("score", 0.0) + dt
                    t1 = time.perf_counter()
                    try:
                        apply_bucket(it.clip, self.cfg.buckets.mode, sizes)
                        it.clip.rgb_small = it.clip.rgb_fine = None  # only the scoring needs them: not shipped to the writer
                        pack_depth(it.clip, self.cfg.shards.depth_codec)  # encode depth here, in parallel workers
                    except Exception as exc:
                        self._failed(it.clip, exc, "bucketing")
                    it.seconds["bucket"] = it.seconds.get("bucket", 0.0) + time.perf_counter() - t1
        return items

    def _score(self, clips: list[Clip]) -> None:
        """Score the batch; when that raises, score each clip alone so that only the clip that
        cannot be scored becomes an unwritable row (with the exception as its reason)."""
        try:
            self.scoring(clips)
            return
        except Exception:
            for c in clips:  # a partly scored batch starts again clip by clip (scoring is deterministic)
                c.scores.clear()
                c.keep, c.reason = True, None
        for c in clips:
            try:
                self.scoring([c])
            except Exception as exc:
                self._failed(c, exc, "scoring")

    @staticmethod
    def _failed(clip: Clip, exc: Exception, stage: str) -> None:
        text = failure_text(exc, f"{clip.capture} frames {clip.first_frame}..")
        log.warning("clip %s of %s failed in %s: %s", clip.clip_id, clip.capture, stage, text, exc_info=exc)
        unwritable(clip, text)
