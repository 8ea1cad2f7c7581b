import numpy as np
import pytest

from dav_builder.pipeline import spans
from dav_builder.pipeline.buckets import apply_bucket, nearest_target, plan_geometry, transform_intrinsics


@pytest.mark.parametrize(
    "n, lengths, expected",
    [(45, (32, 16, 8), [32, 8]), (15, (16,), []), (64, (32, 16), [32, 32]), (48, (32, 16), [32, 16]), (7, (4, 2, 1), [4, 2, 1])],
)
def test_greedy_lengths(n, lengths, expected):
    assert spans.clip_lengths_for_remainder(n, lengths) == expected


def test_plan_scene_offsets_cover_prefix():
    assert spans.plan_scene(45, (32, 16, 8)) == [(0, 32), (32, 8)]


def test_pose_step_and_jump():
    a = np.eye(4)
    b = np.eye(4)
    b[:3, 3] = [3.0, 4.0, 0.0]
    t, r = spans.pose_step(a, b)
    assert t == pytest.approx(5.0) and r == pytest.approx(0.0, abs=1e-6)
    c = np.eye(4)
    c[:3, :3] = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]  # 90 degrees about z
    assert spans.pose_step(a, c)[1] == pytest.approx(90.0)
    # a car doing 1 m/frame: 1.5 m is no jump, 20 m is
    assert not spans.is_pose_jump(1.5, 1.0, [1.0] * 8, 2.0, 8.0, 30.0)
    assert spans.is_pose_jump(20.0, 1.0, [1.0] * 8, 2.0, 8.0, 30.0)
    assert spans.is_pose_jump(0.0, 45.0, [], 2.0, 8.0, 30.0)
    # a walker at 5 cm/frame: a 3 m step is a jump (above the floor and the typical step)
    assert spans.is_pose_jump(3.0, 0.0, [0.05] * 8, 2.0, 8.0, 30.0)


def test_frozen_and_luma():
    d = np.ones((4, 4), np.float32)
    assert spans.depth_frozen(d, d.copy())
    assert not spans.depth_frozen(d, d + 1e-3)
    assert not spans.depth_frozen(None, d)
    assert spans.luma(np.full((2, 2, 3), 255, np.uint8)) == pytest.approx(255.0, rel=1e-5)


def test_nearest_target_by_aspect():
    targets = [(352, 640), (480, 640), (512, 512)]
    assert nearest_target(720, 1280, targets) == (352, 640)
    assert nearest_target(480, 640, targets) == (480, 640)
    assert nearest_target(1000, 990, targets) == (512, 512)


def test_geometry_crop_and_intrinsics():
    g = plan_geometry(480, 640, "crop", [(352, 640)])
    # 16:9-ish crop of a 4:3 frame keeps the full width
    assert (g.crop_w, g.out_w, g.out_h) == (640, 640, 352) and g.x0 == 0 and g.y0 == (480 - g.crop_h) // 2
    K = np.array([[500.0, 0, 319.5], [0, 500.0, 239.5], [0, 0, 1]])
    K2 = transform_intrinsics(K, g)
    # the principal point stays at the image centre after a centred crop
    assert K2[1, 2] == pytest.approx((352 - 1) / 2, abs=0.6)
    g2 = plan_geometry(480, 640, "resize", [(240, 320)])
    K3 = transform_intrinsics(K, g2)
    assert K3[0, 0] == pytest.approx(250.0) and K3[0, 2] == pytest.approx(159.5)


def test_apply_bucket_resizes_everything_consistently():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from synthetic_dataset import analytic_clip

    clip = analytic_clip("c", 0, 3, 48, 64, seed=1)
    apply_bucket(clip, "resize", [(24, 32)])
    assert clip.bucket == "24x32-3f"
    assert clip.depth.shape == (3, 24, 32)
    import cv2

    img = cv2.imdecode(np.frombuffer(clip.rgb[0], np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (24, 32, 3)
    assert clip.K[0, 0, 0] == pytest.approx(0.8 * 64 / 2)
    # nearest-neighbour depth: every output value exists in the input
    orig = analytic_clip("c", 0, 3, 48, 64, seed=1)
    assert np.isin(clip.depth[0], orig.depth[0]).all()
