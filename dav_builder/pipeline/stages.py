"""The build's stages as plain Python: no Ray here (``executors.py`` wires them).

1. :func:`capture_items` opens one capture and streams its clips and summary (read, split, cut).
2. :class:`ClipProcessor` scores a batch of clips (``ScoringStage``: models loaded once, in
   :meth:`ClipProcessor.setup`) and fits each to its bucket size.
3. The driver's :class:`~dav_builder.pipeline.sink.DatasetSink` writes shards and the manifest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Iterator

from dav_builder.capture.base import CaptureError
from dav_builder.capture.discover import CaptureRef, open_capture
from dav_builder.clip import Clip, make_clip_id
from dav_builder.filters.stage import ScoringStage
from dav_builder.pipeline.buckets import apply_bucket
from dav_builder.pipeline.config import BuildConfig
from dav_builder.pipeline.splitter import CaptureSplitter, CaptureSummary
from dav_builder.shards.tario import pack_depth


@dataclass
class Item:
    """What flows between stages: a clip or a capture's summary, plus the seconds spent on it."""

    clip: Clip | None = None
    summary: CaptureSummary | None = None
    seconds: dict[str, float] = field(default_factory=dict)


def capture_items(ref: CaptureRef, cfg: BuildConfig, skip_ids: frozenset[str] = frozenset()) -> Iterator[Item]:
    """Open ``ref`` and stream its clips, then its summary; a capture that cannot be opened
    becomes one unwritable clip whose reason names the file and the problem."""
    t0 = time.perf_counter()
    try:
        capture = open_capture(ref)
    except CaptureError as exc:
        cid = make_clip_id(ref.capture_id, -1, 0)
        clip = Clip(cid, ref.capture_id, [], 0.0, 0, 0, keep=False, reason=f"capture_error: {exc}",
                    errors={exc.path: exc.problem})
        if cid not in skip_ids:
            yield Item(clip=clip)
        summary = CaptureSummary(capture=ref.capture_id, reader=ref.reader, clip_ids=[cid],
                                 frames_dropped={"capture_error": 0}, error=str(exc),
                                 seconds={"read": time.perf_counter() - t0})
        yield Item(summary=summary)
        return
    for out in CaptureSplitter(capture, cfg, skip_ids).run():
        if isinstance(out, CaptureSummary):
            out.seconds["read"] = out.seconds.get("read", 0.0) + time.perf_counter() - t0 - sum(out.seconds.values())
            yield Item(summary=out)
        else:
            yield Item(clip=out)


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
            self.scoring(clips)
            dt = (time.perf_counter() - t0) / len(clips)
            sizes = [tuple(hw) for hw in self.cfg.buckets.sizes]
            for it in items:
                if it.clip is not None and it.clip.loaded:
                    it.seconds["score"] = it.seconds.get("score", 0.0) + dt
                    t1 = time.perf_counter()
                    apply_bucket(it.clip, self.cfg.buckets.mode, sizes)
                    it.clip.rgb_small = it.clip.grey_fine = None  # only the scoring needs them: not shipped to the writer
                    pack_depth(it.clip, self.cfg.shards.depth_codec)  # encode depth here, in parallel workers, not in the writer
                    it.seconds["bucket"] = it.seconds.get("bucket", 0.0) + time.perf_counter() - t1
        return items
