"""NYU Depth v2, labelled subset (Silberman et al. 2012), test split of 654 images.

Source: https://cs.nyu.edu/~fergus/datasets/nyu_depth_v2.html, as published:
``nyu_depth_v2_labeled.mat`` (MATLAB v7.3, i.e. HDF5: ``images`` uint8 and ``depths`` float32
metres, stored column-major, so HDF5 sees (N, 3, 640, 480) and (N, 640, 480)) and ``splits.mat``
(MATLAB v5: ``testNdxs``, 1-based indices of the 654 test images).  The labelled depths are the
toolbox's in-painted maps, which is what the standard protocol scores.

Valid depth: (1e-3, 10] m.  Crop: the Eigen border, rows 45:471 and columns 41:601 of the
480 x 640 image (scaled proportionally for another size).  Intrinsics: the data set's published
Kinect colour calibration.
"""

from __future__ import annotations

import numpy as np

from dav_builder.evaluation.readers.base import Reader
from dav_builder.evaluation.sample import BenchmarkInfo, EvalSequence, ReaderError, crop_mask

LABELED, SPLITS = "nyu_depth_v2_labeled.mat", "splits.mat"
K = np.array([[518.8579, 0.0, 325.5824], [0.0, 519.4696, 253.7362], [0.0, 0.0, 1.0]])


class NYUv2(Reader):
    info = BenchmarkInfo("nyuv2", "NYUv2", "image", 1e-3, 10.0,
                         f"{LABELED} and {SPLITS} from the NYU Depth v2 site (labelled data set)",
                         "Eigen border: rows 45:471, columns 41:601 of 480x640")
    defaults = {"split": "test"}

    def __init__(self, root, **options):
        super().__init__(root, **options)
        self.mat = self.root / LABELED
        if not self.mat.is_file():
            raise ReaderError(self.mat, "missing (download nyu_depth_v2_labeled.mat from the NYU Depth v2 site)")
        self._h5 = None

    def _file(self):
        import h5py

        if self._h5 is None:
            try:
                self._h5 = h5py.File(self.mat, "r")
            except OSError as exc:
                raise ReaderError(self.mat, f"not a MATLAB v7.3 (HDF5) file: {exc}") from None
            for key in ("images", "depths"):
                if key not in self._h5:
                    raise ReaderError(self.mat, f"no '{key}' array in it")
        return self._h5

    def items(self) -> list[str]:
        n = self._file()["images"].shape[0]
        if self.opts["split"] == "all":
            return [str(i) for i in range(n)]
        if self.opts["split"] != "test":
            raise ValueError(f"nyuv2: split must be 'test' or 'all', got {self.opts['split']!r}")
        path = self.root / SPLITS
        if not path.is_file():
            raise ReaderError(path, "missing: the test split needs splits.mat from the NYU Depth v2 site "
                                    "(or use the option split=all)")
        from scipy.io import loadmat

        try:
            idx = np.asarray(loadmat(path)["testNdxs"]).ravel().astype(int) - 1
        except (KeyError, ValueError, OSError) as exc:
            raise ReaderError(path, f"no readable testNdxs: {exc}") from None
        if idx.min() < 0 or idx.max() >= n:
            raise ReaderError(path, f"testNdxs out of range for {n} images")
        return [str(i) for i in idx]

    def load(self, item: str) -> EvalSequence:
        f, i = self._file(), int(item)
        rgb = np.asarray(f["images"][i]).transpose(2, 1, 0)
        depth = np.asarray(f["depths"][i], np.float32).T
        h, w = depth.shape
        mask = crop_mask((h, w), 45 / 480, 471 / 480, 41 / 640, 601 / 640)
        k = K.copy()
        k[0] *= w / 640
        k[1] *= h / 480
        return EvalSequence(f"nyuv2/{i:04d}", np.ascontiguousarray(rgb)[None], depth[None], mask[None], k[None],
                            None, [0])
