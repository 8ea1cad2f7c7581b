"""ETH3D high-resolution multi-view training set (Schöps et al. 2017), 454 DSLR images.

Source: https://www.eth3d.net/datasets, per scene ``<scene>_dslr_jpg.7z`` and
``<scene>_dslr_depth.7z`` extracted side by side: ``<scene>/images/dslr_images/DSC_<n>.JPG``
(6048 x 4032, distorted) and ``<scene>/ground_truth_depth/dslr_images/DSC_<n>.JPG``, which despite
its name is raw little-endian float32 depth (metres, row-major, the image's size) rendered from the
laser scan for the distorted image; infinity where there is no ground truth.

Valid depth: finite and > 1e-3 m; no upper cap (as Marigold's protocol).  No crop.
"""

from __future__ import annotations

import math

import numpy as np

from dav_builder.evaluation.readers.base import Reader
from dav_builder.evaluation.sample import BenchmarkInfo, EvalSequence, ReaderError, read_rgb


class ETH3D(Reader):
    info = BenchmarkInfo("eth3d", "ETH3D", "image", 1e-3, math.inf,
                         "<scene>/images/dslr_images/*.JPG and <scene>/ground_truth_depth/dslr_images/*.JPG "
                         "(raw float32) from eth3d.net")

    def items(self) -> list[str]:
        out = []
        for depth in sorted(self.root.glob("*/ground_truth_depth/dslr_images/*")):
            scene = depth.parents[2]
            if (scene / "images" / "dslr_images" / depth.name).is_file():
                out.append(f"{scene.name}/{depth.name}")
        if not out:
            raise ReaderError(self.root, "no <scene>/ground_truth_depth/dslr_images/* with a matching "
                                         "<scene>/images/dslr_images/* (expected ETH3D's DSLR layout)")
        return out

    def load(self, item: str) -> EvalSequence:
        scene, name = item.split("/")
        rgb = read_rgb(self.root / scene / "images" / "dslr_images" / name)
        path = self.root / scene / "ground_truth_depth" / "dslr_images" / name
        raw = path.read_bytes()
        h, w = rgb.shape[:2]
        if len(raw) != 4 * h * w:
            raise ReaderError(path, f"{len(raw)} bytes; expected {h}x{w} float32 for the {w}x{h} image")
        depth = np.frombuffer(raw, "<f4").reshape(h, w).copy()
        return EvalSequence(f"eth3d/{item}", rgb[None], depth[None], np.isfinite(depth)[None], None, None, [0])
