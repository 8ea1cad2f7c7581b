"""edge_parallax: depth from a camera beside the RGB camera, on frames made here."""

from __future__ import annotations

import cv2
import numpy as np

from dav_builder.clip import Clip
from dav_builder.filters import parallax
from dav_builder.filters.config import ScoringConfig
from dav_builder.filters.stage import ScoringStage

F = 120.0  # focal length, pixels
H, W = 96, 200
#: Boxes: (left, right) in metres across the view, depth in metres, grey level.
BOXES = [(-4.2, -2.6, 10.0, 200.0), (-1.4, -0.4, 6.0, 40.0), (0.3, 1.0, 4.5, 230.0), (2.0, 4.6, 12.0, 150.0)]


def view(camera_x: float = 0.0, trim: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Grey frame and planar depth of boxes before a wall 40 m away, from a camera at
    ``camera_x`` metres (sideways); with ``trim``, each box has a band 3 pixels inside its outline
    whose colour step is stronger than the outline's (a box's painted frame)."""
    grey = np.full((H, W), 120.0, np.float32)
    depth = np.full((H, W), 40.0, np.float32)
    for left, right, z, level in sorted(BOXES, key=lambda b: -b[2]):  # far first
        a = int(round(W / 2 + F * (left - camera_x) / z))
        b = int(round(W / 2 + F * (right - camera_x) / z))
        depth[10:86, a:b] = z
        grey[10:86, a:b] = level
        if trim:
            grey[10:86, a : a + 3] = 135.0
            grey[10:86, b - 3 : b] = 135.0
    return grey, depth


def frames(depth_camera_x: float, trim: bool = False, n: int = 3) -> tuple[np.ndarray, np.ndarray]:
    grey = np.stack([view(0.0, trim)[0]] * n)
    depth = np.stack([view(depth_camera_x, trim)[1]] * n)
    return grey, depth


def test_boundary_offsets_find_the_colour_step_beside_each_depth_boundary():
    grey, _ = view(0.0)
    _, depth = view(0.1)  # the depth camera 10 cm to the right: boundaries move left by F * 0.1 / z
    b = parallax.boundary_offsets(grey, depth)
    assert b.offset.size > 0
    # every boundary's colour step lies F * 0.1 / z pixels to its right (within the rounding of both)
    np.testing.assert_allclose(b.offset, F * 0.1 * b.inverse_depth, atol=1.01)
    assert b.near_left.any() and (~b.near_left).any()


def test_edge_parallax_sees_depth_from_a_camera_a_few_centimetres_aside():
    threshold = ScoringConfig().edge_parallax.threshold
    assert parallax.edge_parallax(*frames(0.0)) == 0.0
    for offset in (0.08, -0.08, 0.12):  # either eye of a stereo pair
        assert parallax.edge_parallax(*frames(offset)) > threshold


def test_a_trim_inside_the_outline_is_not_parallax():
    """The colour step of a box's painted frame sits inside its outline, to the right on its left
    side and to the left on its right side: the two sides disagree, so no parallax."""
    grey, depth = frames(0.0, trim=True)
    b = parallax.boundary_offsets(grey[0], depth[0])
    assert np.abs(b.offset).max() >= 2  # the trim's step is what was found at some boundaries
    assert parallax.edge_parallax(grey, depth) == 0.0


def test_boundaries_without_a_single_clear_colour_step_or_at_arm_s_length_are_left_out():
    grey, depth = view(0.0)
    flat = np.full_like(grey, 120.0)  # no colour step anywhere
    assert parallax.boundary_offsets(flat, depth).offset.size == 0
    near = np.where(depth < 40.0, depth / 10.0, depth).astype(np.float32)  # boxes 0.45-1.2 m away
    assert parallax.boundary_offsets(grey, near).offset.size == 0


def test_one_offset_frame_in_a_clip_is_enough():
    grey, depth = frames(0.0, n=8)
    depth[5] = view(0.1)[1]
    assert parallax.edge_parallax(grey, depth) > ScoringConfig().edge_parallax.threshold


def test_the_stage_scores_edge_parallax_on_its_pair_frames():
    def clip(depth_camera_x: float) -> Clip:
        grey, depth = frames(depth_camera_x, n=6)
        rgb = [cv2.imencode(".png", np.repeat(g[..., None], 3, 2).astype(np.uint8))[1].tobytes() for g in grey]
        return Clip(clip_id="c", capture="cap", frame_indices=list(range(6)), fps=30.0, height=H, width=W, rgb=rgb,
                    depth=depth, K=np.stack([np.array([[F, 0, W / 2], [0, F, H / 2], [0, 0, 1]])] * 6))

    cfg = ScoringConfig()
    stage = ScoringStage(cfg)
    assert stage._checks(clip(0.0))["edge_parallax"] <= cfg.edge_parallax.threshold
    assert stage._checks(clip(0.1))["edge_parallax"] > cfg.edge_parallax.threshold
    off = ScoringStage(ScoringConfig.from_dict({"edge_parallax": {"enabled": False}}))
    assert "edge_parallax" not in off._checks(clip(0.1))
