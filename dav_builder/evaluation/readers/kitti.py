"""KITTI (Geiger et al. 2012), Eigen test split, with sparse LiDAR ground truth.

Source: the KITTI raw data (https://www.cvlibs.net/datasets/kitti/raw_data.php) as published:
``<date>/<date>_drive_<n>_sync/image_02/data/<frame:010d>.png``,
``<date>/<date>_drive_<n>_sync/velodyne_points/data/<frame:010d>.bin`` (float32 x, y, z,
reflectance) and ``<date>/calib_cam_to_cam.txt``, ``<date>/calib_velo_to_cam.txt``; optionally the
annotated depth maps of the depth benchmark (``data_depth_annotated.zip``:
``{train,val}/<drive>_sync/proj_depth/groundtruth/image_02/<frame>.png``, uint16, metres x 256,
0 = no point), extracted under the root or under ``data_depth_annotated/``.

The split is a list file in the root (or given with ``split=PATH``), in either common form:
``eigen_test_files_with_gt.txt`` (``<rgb path> <annotated depth path or None> <focal>``, the
652-with-ground-truth list Marigold and Depth Any Video use) or ``eigen_test_files.txt``
(``<date>/<drive>_sync <frame> l``, 697 images).

Ground truth (``gt=``): ``annotated`` (the accumulated, cleaned LiDAR maps), ``velodyne`` (the
single scan, projected here: points with x > 0 in the Velodyne frame, through
``R_rect_00 [R|T]`` and ``P_rect_02``, to the nearest pixel (OpenCV centres); where several points
meet, the nearest is kept; the depth is z in the rectified camera.  Tools derived from the
original MATLAB code subtract one pixel and use the Velodyne x instead), or ``auto`` (annotated
when the split lists it).

Valid depth: (1e-3, 80] m.  Crop: the KITTI benchmark crop (``kb_crop``, bottom-centre 352 x 1216,
as Marigold), then the evaluation crop ``crop=eigen`` (rows 0.3324-0.9135, columns 0.0359-0.9641
of the height and width; the default, as Marigold), ``garg`` (rows 0.4081-0.9919, same columns) or
``none``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dav_builder.evaluation.readers.base import Reader
from dav_builder.evaluation.sample import BenchmarkInfo, EvalSequence, ReaderError, crop_mask, read_png16, read_rgb

CROPS = {"eigen": (0.3324324, 0.91351351, 0.0359477, 0.96405229),
         "garg": (0.40810811, 0.99189189, 0.03594771, 0.96405229)}
SPLITS = ("eigen_test_files_with_gt.txt", "eigen_test_files.txt")


def read_calib(path: Path) -> dict[str, np.ndarray]:
    """``key: numbers`` lines of a KITTI calibration file (non-numeric values are skipped)."""
    if not path.is_file():
        raise ReaderError(path, "missing KITTI calibration file")
    out = {}
    for line in path.read_text().splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        try:
            out[key.strip()] = np.array([float(x) for x in value.split()])
        except ValueError:
            continue
    return out


def project_velodyne(points: np.ndarray, cam2cam: dict, velo2cam: dict, shape: tuple[int, int],
                     cam: int = 2) -> np.ndarray:
    """Sparse depth (H, W) of Velodyne points in camera ``cam``'s rectified image (0 = no point)."""
    try:
        R, T = velo2cam["R"].reshape(3, 3), velo2cam["T"].reshape(3, 1)
        R_rect = cam2cam["R_rect_00"].reshape(3, 3)
        P = cam2cam[f"P_rect_0{cam}"].reshape(3, 4)
    except KeyError as exc:
        raise ValueError(f"calibration lacks {exc}") from None
    p = points[points[:, 0] > 0, :3].T.astype(np.float64)
    rect = R_rect @ (R @ p + T)
    img = P @ np.vstack([rect, np.ones((1, rect.shape[1]))])
    z = img[2]
    front = z > 0
    u = np.floor(img[0, front] / z[front] + 0.5).astype(np.int64)
    v = np.floor(img[1, front] / z[front] + 0.5).astype(np.int64)
    z = z[front]
    h, w = shape
    ok = (u >= 0) & (u < w) & (v >= 0) & (v < h)
    depth = np.full(h * w, np.inf)
    np.minimum.at(depth, v[ok] * w + u[ok], z[ok])
    depth[np.isinf(depth)] = 0
    return depth.reshape(h, w).astype(np.float32)


class KITTI(Reader):
    info = BenchmarkInfo("kitti", "KITTI", "image", 1e-3, 80.0,
                         "KITTI raw data (image_02, velodyne_points, calib) with an Eigen test split list; "
                         "optionally the annotated depth maps",
                         "KITTI benchmark crop 352x1216, then the Eigen crop (or Garg's)")
    defaults = {"split": "", "gt": "auto", "crop": "eigen", "kb_crop": True}

    def __init__(self, root, **options):
        super().__init__(root, **options)
        if self.opts["crop"] not in (*CROPS, "none"):
            raise ValueError(f"kitti: crop must be eigen, garg or none, got {self.opts['crop']!r}")
        if self.opts["gt"] not in ("auto", "annotated", "velodyne"):
            raise ValueError(f"kitti: gt must be auto, annotated or velodyne, got {self.opts['gt']!r}")
        self.entries = self._read_split()

    def _read_split(self) -> list[tuple[str, str, str | None]]:
        """(drive dir relative to root, frame as 10 digits, annotated depth path or None)."""
        path = Path(self.opts["split"]) if self.opts["split"] else next(
            (self.root / s for s in SPLITS if (self.root / s).is_file()), None)
        if path is None or not path.is_file():
            raise ReaderError(path or self.root / SPLITS[0], "no Eigen split list (put eigen_test_files_with_gt.txt "
                                                              "or eigen_test_files.txt in the root, or pass split=PATH)")
        out = []
        for n, line in enumerate(path.read_text().splitlines(), 1):
            parts = line.split()
            if not parts:
                continue
            if parts[0].endswith(".png"):                  # <date>/<drive>/image_02/data/<frame>.png <gt|None> <f>
                rgb = Path(parts[0])
                if len(rgb.parts) < 5:
                    raise ReaderError(path, f"line {n}: unexpected image path {parts[0]!r}")
                gt = parts[1] if len(parts) > 1 and parts[1] != "None" else None
                out.append((str(Path(*rgb.parts[:2])), rgb.stem, gt))
            elif len(parts) >= 2 and parts[1].isdigit():   # <date>/<drive> <frame> l
                out.append((parts[0], f"{int(parts[1]):010d}", None))
            else:
                raise ReaderError(path, f"line {n}: not an Eigen split line: {line!r}")
        if not out:
            raise ReaderError(path, "empty split list")
        return out

    @property
    def gt_mode(self) -> str:
        """``auto``: annotated when the split lists annotated maps (its lines without one are skipped)."""
        mode = self.opts["gt"]
        if mode == "auto":
            return "annotated" if any(gt for _, _, gt in self.entries) else "velodyne"
        return mode

    def items(self) -> list[str]:
        annotated = self.gt_mode == "annotated"
        return [str(i) for i, (_, _, gt) in enumerate(self.entries) if gt or not annotated or self.opts["gt"] != "auto"]

    def _annotated(self, drive: str, frame: str, gt: str | None) -> Path:
        rel = Path(gt) if gt else Path(Path(drive).name) / "proj_depth" / "groundtruth" / "image_02" / f"{frame}.png"
        for base in (self.root, self.root / "data_depth_annotated", self.root / "data_depth_annotated" / "val",
                     self.root / "data_depth_annotated" / "train", self.root / "val", self.root / "train"):
            if (base / rel).is_file():
                return base / rel
        raise ReaderError(self.root / rel, "annotated depth map missing (looked under the root and "
                                           "data_depth_annotated/{train,val})")

    def load(self, item: str) -> EvalSequence:
        drive, frame, gt = self.entries[int(item)]
        rgb = read_rgb(self.root / drive / "image_02" / "data" / f"{frame}.png")
        h, w = rgb.shape[:2]
        date = self.root / Path(drive).parts[0]
        cam2cam = read_calib(date / "calib_cam_to_cam.txt")
        if self.gt_mode == "annotated":
            path = self._annotated(drive, frame, gt)
            depth = read_png16(path).astype(np.float32) / 256.0
            if depth.shape != (h, w):
                raise ReaderError(path, f"size {depth.shape} differs from the image's {(h, w)}")
        else:
            path = self.root / drive / "velodyne_points" / "data" / f"{frame}.bin"
            try:
                pts = np.fromfile(path, dtype="<f4").reshape(-1, 4)
            except (OSError, ValueError) as exc:
                raise ReaderError(path, f"not a Velodyne scan (float32 x 4): {exc}") from None
            try:
                depth = project_velodyne(pts, cam2cam, read_calib(date / "calib_velo_to_cam.txt"), (h, w))
            except ValueError as exc:
                raise ReaderError(date, str(exc)) from None
        K = cam2cam["P_rect_02"].reshape(3, 4)[:, :3].copy() if "P_rect_02" in cam2cam else None
        if self.opts["kb_crop"]:
            top, left = max(0, h - 352), max(0, (w - 1216) // 2)
            rgb, depth = rgb[top:top + 352, left:left + 1216], depth[top:top + 352, left:left + 1216]
            if K is not None:
                K[0, 2] -= left
                K[1, 2] -= top
        mask = np.ones(depth.shape, bool) if self.opts["crop"] == "none" else crop_mask(depth.shape, *CROPS[self.opts["crop"]])
        return EvalSequence(f"kitti/{Path(drive).name}/{frame}", np.ascontiguousarray(rgb)[None], depth[None],
                            mask[None], None if K is None else K[None], None, [int(frame)])
