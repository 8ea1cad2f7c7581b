"""What the video readers share: scenes cut into clips by the options frames / stride / start / clips."""

from __future__ import annotations

from dav_builder.evaluation.readers.base import Reader
from dav_builder.evaluation.sample import EvalSequence, windows

CLIP_OPTIONS = {"frames": 0, "stride": 1, "start": 0, "clips": 1, "scenes": ""}
"""frames per clip (0 = the whole scene), every stride-th frame, from frame start, at most clips
clips per scene (0 = all), scenes = comma-separated scene names or a text file listing them
(empty = every scene found)."""


class VideoReader(Reader):
    def scenes(self) -> list[str]:
        raise NotImplementedError

    def frame_count(self, scene: str) -> int:
        raise NotImplementedError

    def load_frames(self, scene: str, idx: list[int]) -> EvalSequence:
        raise NotImplementedError

    def _selected(self, found: list[str]) -> list[str]:
        want = self.opts["scenes"]
        if not want:
            return found
        from pathlib import Path

        names = Path(want).read_text().split() if Path(want).is_file() else [s for s in want.split(",") if s]
        missing = sorted(set(names) - set(found))
        if missing:
            raise ValueError(f"{self.info.name}: scene(s) {missing[:5]} not found under {self.root}")
        return [s for s in found if s in set(names)]

    def items(self) -> list[str]:
        out = []
        for scene in self._selected(self.scenes()):
            for k, idx in enumerate(windows(self.frame_count(scene), self.opts["frames"], self.opts["stride"],
                                            self.opts["start"], self.opts["clips"])):
                out.append(f"{scene}#{k}")
        return out

    def load(self, item: str) -> EvalSequence:
        scene, _, k = item.rpartition("#")
        idx = windows(self.frame_count(scene), self.opts["frames"], self.opts["stride"], self.opts["start"],
                      self.opts["clips"])[int(k)]
        return self.load_frames(scene, idx)
