"""DIODE (Vasiljevic et al. 2019), validation set (325 indoor and 446 outdoor images).

Source: https://diode-dataset.org, ``val.tar.gz`` as published:
``val/{indoors,outdoor}/scene_<id>/scan_<id>/<stem>.png`` (RGB 1024 x 768),
``<stem>_depth.npy`` (float32 metres, H x W x 1) and ``<stem>_depth_mask.npy`` (H x W, 1 where the
laser returned).

Valid depth: the mask, and (0.6, 350] m (the scanner's range, as Marigold's protocol).  No crop.
"""

from __future__ import annotations

import numpy as np

from dav_builder.evaluation.readers.base import Reader
from dav_builder.evaluation.sample import BenchmarkInfo, EvalSequence, ReaderError, read_rgb


class DIODE(Reader):
    info = BenchmarkInfo("diode", "DIODE", "image", 0.6, 350.0,
                         "val/{indoors,outdoor}/scene_*/scan_*/<stem>.png, <stem>_depth.npy, "
                         "<stem>_depth_mask.npy from diode-dataset.org")
    defaults = {"subset": "all"}

    def items(self) -> list[str]:
        subset = self.opts["subset"]
        if subset not in ("all", "indoors", "outdoor"):
            raise ValueError(f"diode: subset must be all, indoors or outdoor, got {subset!r}")
        found = sorted(self.root.rglob("*_depth.npy"))
        out = [str(p.relative_to(self.root))[: -len("_depth.npy")] for p in found]
        if subset != "all":
            out = [o for o in out if f"/{subset}/" in f"/{o}"]
        if not out:
            raise ReaderError(self.root, "no <stem>_depth.npy files (expected DIODE's val/ layout)")
        return out

    def load(self, item: str) -> EvalSequence:
        base = self.root / item
        rgb = read_rgb(base.with_name(base.name + ".png"))
        dpath, mpath = base.with_name(base.name + "_depth.npy"), base.with_name(base.name + "_depth_mask.npy")
        try:
            depth = np.load(dpath, allow_pickle=False).astype(np.float32)
            mask = np.load(mpath, allow_pickle=False) > 0
        except (OSError, ValueError) as exc:
            raise ReaderError(dpath.parent, f"cannot read {dpath.name} / {mpath.name}: {exc}") from None
        depth = depth.reshape(depth.shape[:2])
        if depth.shape != rgb.shape[:2] or mask.shape != depth.shape:
            raise ReaderError(dpath, f"depth {depth.shape}, mask {mask.shape} and image {rgb.shape[:2]} differ")
        return EvalSequence(f"diode/{item}", rgb[None], depth[None], mask[None], None, None, [0])
