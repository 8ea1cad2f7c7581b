"""MPI Sintel (Butler et al. 2012), training set, 23 scenes of 20-50 frames, as videos.

Source: http://sintel.is.tue.mpg.de, ``MPI-Sintel-complete`` and the depth/camera-motion
archive, as published: ``training/{final,clean}/<scene>/frame_<0001>.png``,
``training/depth/<scene>/frame_<0001>.dpt`` (planar depth, float32 after a tag and the size),
``training/camdata_left/<scene>/frame_<0001>.cam`` (3 x 3 intrinsics and 3 x 4 world-to-camera,
OpenCV axes).  The files are parsed by the capture reader of the same data set.

Valid depth: (1e-3, 70] m (the far background and sky are thousands of units away).  No crop.
Clips: the whole scene (``frames=0``), ``pass=final``.
"""

from __future__ import annotations

import numpy as np

from dav_builder.capture.base import CaptureError, FrameError
from dav_builder.capture.datasets.sintel import read_cam, read_dpt
from dav_builder.evaluation.readers.video import CLIP_OPTIONS, VideoReader
from dav_builder.evaluation.sample import BenchmarkInfo, EvalSequence, ReaderError, read_rgb


class Sintel(VideoReader):
    info = BenchmarkInfo("sintel", "Sintel", "video", 1e-3, 70.0,
                         "training/{final,clean}/<scene>/frame_*.png, training/depth/<scene>/*.dpt, "
                         "training/camdata_left/<scene>/*.cam (MPI Sintel)")
    defaults = {**CLIP_OPTIONS, "pass": "final"}

    def _training(self):
        t = self.root / "training" if (self.root / "training").is_dir() else self.root
        if not (t / self.opts["pass"]).is_dir() or not (t / "depth").is_dir():
            raise ReaderError(t, f"expected {self.opts['pass']}/ and depth/ (MPI Sintel training layout)")
        return t

    def scenes(self) -> list[str]:
        t = self._training()
        return sorted(s.name for s in (t / self.opts["pass"]).iterdir() if (t / "depth" / s.name).is_dir())

    def frame_count(self, scene: str) -> int:
        return len(list((self._training() / self.opts["pass"] / scene).glob("frame_*.png")))

    def load_frames(self, scene: str, idx: list[int]) -> EvalSequence:
        t = self._training()
        names = sorted(p.stem for p in (t / self.opts["pass"] / scene).glob("frame_*.png"))
        rgb, depth, Ks, poses = [], [], [], []
        for i in idx:
            n = names[i]
            rgb.append(read_rgb(t / self.opts["pass"] / scene / f"{n}.png"))
            try:
                depth.append(read_dpt(t / "depth" / scene / f"{n}.dpt"))
                cam = t / "camdata_left" / scene / f"{n}.cam"
                if cam.is_file():
                    K, ext = read_cam(cam)
                    Ks.append(K)
                    poses.append(np.linalg.inv(ext))
            except (CaptureError, FrameError) as exc:
                raise ReaderError(t / "depth" / scene / f"{n}.dpt", str(exc)) from None
        d = np.stack(depth).astype(np.float32)
        full = len(Ks) == len(idx)
        return EvalSequence(f"sintel/{scene}", np.stack(rgb), d, np.ones(d.shape, bool),
                            np.stack(Ks) if full else None, np.stack(poses) if full else None,
                            [int(names[i].split("_")[-1]) for i in idx])
