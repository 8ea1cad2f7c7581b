"""ScanNet++ (Yeshwanth et al. 2023), iPhone videos with LiDAR depth and ARKit poses.

Source: https://kaldir.vc.in.tum.de/scannetpp, after the toolkit's ``iphone/prepare_iphone_data``
has extracted the frames: ``data/<scene>/iphone/rgb/frame_<000000>.jpg`` (1920 x 1440),
``iphone/depth/frame_<000000>.png`` (256 x 192, uint16 millimetres, 0 = none) and
``iphone/pose_intrinsic_imu.json`` (per frame: ``intrinsic`` 3 x 3 for the RGB resolution,
``aligned_pose`` 4 x 4 camera-to-world in the scan's aligned frame, OpenCV axes, and the raw ARKit
``pose``).  The scenes may also sit directly in the root.  Rendered depth from the laser mesh
(``iphone/render_depth/``, same encoding, written by the toolkit's ``common/render``) is used
instead with ``depth=render``.

Valid depth: (1e-3, 10] m.  No crop.  Clips: ``frames=90`` every ``stride=3`` frames, first clip of
every scene, by default; pick scenes with ``scenes=`` (e.g. the toolkit's ``nvs_sem_val.txt``).
The intrinsics are scaled from the RGB to the depth resolution for TAE.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from dav_builder.evaluation.readers.video import CLIP_OPTIONS, VideoReader
from dav_builder.evaluation.sample import BenchmarkInfo, EvalSequence, ReaderError, read_png16, read_rgb

META = "pose_intrinsic_imu.json"


class ScanNetPP(VideoReader):
    info = BenchmarkInfo("scannetpp", "ScanNet++", "video", 1e-3, 10.0,
                         "data/<scene>/iphone/{rgb,depth}/frame_*.{jpg,png} and pose_intrinsic_imu.json "
                         "(ScanNet++ toolkit's prepare_iphone_data)")
    defaults = {**CLIP_OPTIONS, "frames": 90, "stride": 3, "depth": "depth"}

    def _iphone_dirs(self) -> dict[str, Path]:
        out = {}
        for base in (self.root / "data", self.root):
            for d in sorted(base.glob("*/iphone")):
                if (d / "rgb").is_dir() and (d / self.opts["depth"]).is_dir():
                    out.setdefault(d.parent.name, d)
        if not out:
            raise ReaderError(self.root, f"no scenes (expected data/<scene>/iphone/rgb/ and "
                                         f"iphone/{self.opts['depth']}/)")
        return out

    def scenes(self) -> list[str]:
        return sorted(self._iphone_dirs())

    def _frames(self, scene: str) -> tuple[Path, list[str]]:
        d = self._iphone_dirs()[scene]
        names = sorted(p.stem for p in (d / self.opts["depth"]).glob("frame_*.png") if (d / "rgb" / f"{p.stem}.jpg").is_file())
        return d, names

    def frame_count(self, scene: str) -> int:
        return len(self._frames(scene)[1])

    def load_frames(self, scene: str, idx: list[int]) -> EvalSequence:
        d, names = self._frames(scene)
        sel = [names[i] for i in idx]
        rgb = np.stack([read_rgb(d / "rgb" / f"{n}.jpg") for n in sel])
        depth = np.stack([read_png16(d / self.opts["depth"] / f"{n}.png").astype(np.float32) / 1000.0 for n in sel])
        K = T = None
        meta_path = d / META
        if meta_path.is_file():
            try:
                meta = json.loads(meta_path.read_text())
            except json.JSONDecodeError as exc:
                raise ReaderError(meta_path, f"not JSON: {exc}") from None
            if all(n in meta for n in sel):
                sx, sy = depth.shape[2] / rgb.shape[2], depth.shape[1] / rgb.shape[1]
                Ks, Ts = [], []
                for n in sel:
                    k = np.asarray(meta[n]["intrinsic"], np.float64).reshape(3, 3).copy()
                    k[0] *= sx
                    k[1] *= sy
                    Ks.append(k)
                    Ts.append(np.asarray(meta[n].get("aligned_pose", meta[n].get("pose")), np.float64).reshape(4, 4))
                K, T = np.stack(Ks), np.stack(Ts)
        return EvalSequence(f"scannetpp/{scene}@{sel[0]}", rgb, depth, np.ones(depth.shape, bool), K, T,
                            [int(n.split("_")[-1]) for n in sel])
