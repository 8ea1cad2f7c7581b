"""Depth conventions, ray/planar conversion, projection matrices and depth-file I/O (pure, fast)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # tests/capture_fixtures.py

import numpy as np
import pytest

from capture_fixtures import default_K, encode_depth, scene_depth
from dav_builder.capture import depth as dc
from dav_builder.capture.base import FrameError
from dav_builder.capture.imageio import read_depth_file, write_depth_file

H, W = 24, 32
K = default_K(W, H)
NEAR, FAR = 0.5, 100.0


def planes(convention):
    return {"near": NEAR, "far": None if convention == "reversed_infinite" else FAR}


def test_analytic_scene_has_both_planes():
    z = scene_depth(0, H, W, K)
    assert z[:, -1].min() == pytest.approx(8.0)  # the wall
    left = z[:, 0]
    assert 2.5 < left.min() < 3.5  # the tilted plane, closer at the left edge
    # the tilted plane is planar in camera space: X/Z is linear in the column, Z = 4 + 0.6 X
    X = (np.arange(W // 2) - K[0, 2]) / K[0, 0] * z[0, : W // 2]
    np.testing.assert_allclose(z[0, : W // 2], 4 + 0.6 * X, rtol=1e-12)


@pytest.mark.parametrize("convention", ["gl", "d3d", "reversed", "reversed_infinite"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_every_convention_gives_the_same_metres(convention, dtype):
    z = scene_depth(3, H, W, K)
    d = dc.from_planar_metres(z, convention, **planes(convention)).astype(dtype)
    assert d.min() >= 0 and d.max() <= 1
    out = dc.to_planar_metres(d, convention, **planes(convention))
    assert out.dtype == np.float32 and out.shape == (H, W)
    np.testing.assert_allclose(out, z, rtol=1e-4)


@pytest.mark.parametrize("convention", ["gl", "d3d", "reversed"])
def test_infinite_far_plane_is_the_limit(convention):
    z = scene_depth(1, H, W, K)
    d = dc.from_planar_metres(z, convention, near=NEAR, far=np.inf)
    np.testing.assert_allclose(dc.to_planar_metres(d, convention, near=NEAR, far=np.inf), z, rtol=1e-5)
    # the limit agrees with a very distant finite far plane
    d_far = dc.from_planar_metres(z, convention, near=NEAR, far=1e9)
    np.testing.assert_allclose(d, d_far, atol=1e-8)


def test_formulas_match_the_format_table_at_known_points():
    n, f = NEAR, FAR

    def conv(values, convention, **kw):
        return dc.to_planar_metres(np.array([values]), convention, **kw)[0].tolist()

    # near plane and far plane of each convention
    assert conv([0.0, 1.0], "gl", near=n, far=f) == pytest.approx([n, f])
    assert conv([0.0, 1.0], "d3d", near=n, far=f) == pytest.approx([n, f])
    assert conv([1.0, 0.0], "reversed", near=n, far=f) == pytest.approx([n, f])
    assert conv([1.0, 0.25], "reversed_infinite", near=n) == pytest.approx([n, 4 * n])
    # mid-buffer gl: z = 2fn / ((f + n) - 0)
    assert conv([0.5], "gl", near=n, far=f) == pytest.approx([2 * f * n / (f + n)], rel=1e-6)


def test_linear_scale_and_ray_distance():
    z = scene_depth(1, H, W, K)
    mm = np.round(z * 1000)
    np.testing.assert_allclose(dc.to_planar_metres(mm, "linear", scale=0.001), mm / 1000, rtol=1e-6)
    r = dc.planar_to_ray(z, K)
    assert (r >= z * (1 - 1e-6)).all() and r[0, 0] > z[0, 0] * 1.1  # corners are much longer rays
    # at the principal point the ray is the axis: r == z
    cx, cy = K[0, 2], K[1, 2]
    assert dc.pixel_rays(K, H, W)[int(round(cy)), int(round(cx))] == pytest.approx(
        np.sqrt(1 + ((round(cx) - cx) / K[0, 0]) ** 2 + ((round(cy) - cy) / K[1, 1]) ** 2)
    )
    np.testing.assert_allclose(dc.ray_to_planar(r, K), z, rtol=1e-6)
    out = dc.to_planar_metres(r, "linear", kind="ray", K=K)
    np.testing.assert_allclose(out, z, rtol=1e-5)


def test_ray_uses_pixel_centres_at_integers():
    K1 = np.array([[10.0, 0, 2.0], [0, 10.0, 1.0], [0, 0, 1]])
    r = dc.planar_to_ray(np.ones((3, 5)), K1)
    assert r[1, 2] == pytest.approx(1.0)  # pixel (x=2, y=1) is the principal point
    assert r[1, 3] == pytest.approx(np.sqrt(1 + 0.1**2))
    assert r[2, 2] == pytest.approx(np.sqrt(1 + 0.1**2))


def test_float16_and_png16_quantisation():
    z = scene_depth(0, H, W, K)
    half = dc.from_planar_metres(z, "linear").astype(np.float16)
    np.testing.assert_allclose(dc.to_planar_metres(half, "linear"), z, rtol=2**-11)  # half has 11 bits
    # png16 in millimetres: 0.5 mm absolute
    stored = encode_depth(z, "linear", scale=0.001, encoding="png16")
    assert stored.dtype == np.uint16
    np.testing.assert_allclose(dc.to_planar_metres(stored, "linear", scale=0.001), z, atol=0.5e-3 + 1e-9)


def test_invalid_values_become_zero():
    d = np.array([[np.nan, np.inf, -np.inf, 65535.0, 1000.0, 0.0, -5.0]])
    out = dc.to_planar_metres(d, "linear", scale=0.001, invalid=[65535])
    np.testing.assert_array_equal(out, [[0, 0, 0, 0, 1.0, 0, 0]])
    # reversed_infinite: d == 0 is sky
    assert dc.to_planar_metres(np.array([[0.0, 0.5]]), "reversed_infinite", near=1.0).tolist() == [[0.0, 2.0]]
    # values mapping outside [near, far]
    out = dc.to_planar_metres(np.array([[-0.1, 1.1, 0.5]]), "d3d", near=1.0, far=10.0)
    assert out[0, 0] == 0 and out[0, 1] == 0 and out[0, 2] > 0
    out = dc.to_planar_metres(np.array([[1.5, -0.5]]), "reversed", near=1.0, far=10.0)
    assert out.tolist() == [[0.0, 0.0]]


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_nonfinite_mask_matches_isfinite(dtype):
    """The one-reduction shortcut: None exactly when every value is finite, whatever the sum does."""
    big = np.finfo(dtype).max
    cases = {
        "finite": np.array([[0.5, 0.25], [1.0, 0.0]]),
        "nan": np.array([[0.5, np.nan], [1.0, 0.0]]),
        "inf": np.array([[np.inf, 0.5], [1.0, 0.0]]),
        "both infinities (sum NaN)": np.array([[np.inf, -np.inf], [1.0, 0.0]]),
        "finite, sum overflows": np.array([[big, big], [big, 1.0]]),
        "finite, sum overflows, one NaN": np.array([[big, big], [np.nan, 1.0]]),
    }
    for name, values in cases.items():
        d = values.astype(dtype)
        expected = ~np.isfinite(d)
        got = dc.nonfinite(d)
        if expected.any():
            np.testing.assert_array_equal(got, expected, err_msg=name)
        else:
            assert got is None, name
    assert dc.nonfinite(np.array([[1, 2]], np.uint16)) is None
    # the conversion masks the same pixels either way
    d = np.array([[np.nan, 0.5, 2.0], [np.inf, 0.9, -np.inf]], dtype)
    out = dc.to_planar_metres(d, "gl", near=0.1, far=100.0)
    assert (out > 0).tolist() == [[False, True, False], [False, True, False]]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"convention": "gl"}, "needs depth.near"),
        ({"convention": "gl", "near": 1.0}, "needs depth.far"),
        ({"convention": "d3d", "near": 5.0, "far": 5.0}, "smaller than depth.far"),
        ({"convention": "reversed", "near": 0.0, "far": 5.0}, "positive"),
        ({"convention": "zbuffer"}, "unknown depth convention"),
        ({"convention": "linear", "kind": "ray"}, "needs intrinsics K"),
        ({"convention": "linear", "kind": "euclid"}, "'z' or 'ray'"),
    ],
)
def test_bad_parameters_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        dc.to_planar_metres(np.ones((2, 2)), **kwargs)


# -- projection matrices ----------------------------------------------------------------------

CASES = [
    ("gl", "right", 0.1, 500.0),
    ("d3d", "right", 0.1, 500.0),
    ("d3d", "left", 0.25, 80.0),
    ("gl", "left", 0.25, 80.0),
    ("reversed", "right", 0.3, 1000.0),
    ("reversed", "left", 0.3, 1000.0),
    ("reversed_infinite", "right", 0.05, np.inf),
    ("reversed_infinite", "left", 0.05, np.inf),
    ("gl", "right", 0.1, np.inf),
    ("d3d", "left", 0.1, np.inf),
]


@pytest.mark.parametrize("convention, handedness, near, far", CASES)
def test_projection_round_trip(convention, handedness, near, far):
    Kt = np.array([[612.5, 0.0, 655.25], [0.0, 600.0, 350.75], [0.0, 0.0, 1.0]])
    P = dc.perspective_projection(Kt, 1280, 720, near, far, convention, handedness=handedness)
    K2, n2, f2 = dc.intrinsics_from_projection(P, 1280, 720, convention_hint=convention)
    np.testing.assert_allclose(K2, Kt, atol=1e-9)
    assert n2 == pytest.approx(near, rel=1e-9)
    assert f2 == pytest.approx(far, rel=1e-9) if np.isfinite(far) else f2 == np.inf


def test_projection_hint_free_detection_and_transposed_and_vulkan():
    Kt = np.array([[100.0, 0.0, 63.5], [0.0, 100.0, 47.5], [0.0, 0.0, 1.0]])
    # reversed-Z is recognised without a hint; a standard matrix is read as OpenGL
    P = dc.perspective_projection(Kt, 128, 96, 0.5, 50.0, "reversed")
    assert dc.intrinsics_from_projection(P, 128, 96)[1:] == pytest.approx((0.5, 50.0))
    P = dc.perspective_projection(Kt, 128, 96, 0.5, 50.0, "gl")
    assert dc.intrinsics_from_projection(P, 128, 96)[1:] == pytest.approx((0.5, 50.0))
    # a Direct3D row-vector matrix stored row-major is the transpose
    P = dc.perspective_projection(Kt, 128, 96, 0.5, 50.0, "d3d", handedness="left")
    K2, n2, f2 = dc.intrinsics_from_projection(P.T, 128, 96, convention_hint="d3d")
    np.testing.assert_allclose(K2, Kt, atol=1e-9)
    assert (n2, f2) == pytest.approx((0.5, 50.0))
    # y-down NDC (Vulkan)
    P = dc.perspective_projection(Kt + [[0, 0, 3], [0, 0, -2], [0, 0, 0]], 128, 96, 1, 9, "d3d", y_down_ndc=True)
    K2, _, _ = dc.intrinsics_from_projection(P, 128, 96, convention_hint="d3d")
    np.testing.assert_allclose(K2, Kt + [[0, 0, 3], [0, 0, -2], [0, 0, 0]], atol=1e-9)


def test_projection_matches_an_opengl_textbook_matrix():
    # glFrustum-style symmetric perspective: fovy 90 deg, aspect 2, n = 1, f = 10
    n, f, W2, H2 = 1.0, 10.0, 200, 100
    P = np.array(
        [[0.5, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, -(f + n) / (f - n), -2 * f * n / (f - n)], [0, 0, -1, 0]]
    )
    K2, n2, f2 = dc.intrinsics_from_projection(P, W2, H2, convention_hint="gl")
    np.testing.assert_allclose(K2, [[50, 0, 99.5], [0, 50, 49.5], [0, 0, 1]])
    assert (n2, f2) == pytest.approx((1.0, 10.0))
    # a point on the optical axis 4 m ahead, projected by P to window depth, reads back as 4 m
    clip = P @ [0, 0, -4, 1]
    d = (clip[2] / clip[3] + 1) / 2
    assert dc.to_planar_metres(np.array([[d]]), "gl", near=n2, far=f2)[0, 0] == pytest.approx(4.0, rel=1e-6)


def _mirrored():
    P = dc.perspective_projection(K, W, H, 0.5, 50.0, "gl")
    P[0, 0] *= -1  # a mirrored x axis: negative fx
    return P


def _no_depth_term():
    P = dc.perspective_projection(K, W, H, 0.5, 50.0, "gl")
    P[2, 3] = 0
    return P


@pytest.mark.parametrize(
    "P, message",
    [
        (np.eye(4), "not a perspective"),
        (np.zeros((3, 4)), "4x4"),
        (np.full((4, 4), np.nan), "4x4"),
        (_mirrored(), "non-positive focal"),
        (_no_depth_term(), "no depth term"),
    ],
)
def test_projection_errors(P, message):
    with pytest.raises(ValueError, match=message):
        dc.intrinsics_from_projection(P, W, H)


def test_projection_contradicting_convention():
    P = dc.perspective_projection(K, W, H, 0.5, 50.0, "reversed")
    with pytest.raises(ValueError, match="reversed-Z but the depth convention is 'gl'"):
        dc.intrinsics_from_projection(P, W, H, convention_hint="gl")


# -- depth files ------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["exr", "npy", "raw", "png16"])
def test_depth_file_round_trip(tmp_path, encoding):
    z = scene_depth(2, H, W, K)
    arr = np.round(z * 1000).astype(np.uint16) if encoding == "png16" else z.astype(np.float32)
    arr[0, :3] = 0 if encoding == "png16" else np.nan
    path = tmp_path / f"d.{encoding}"
    write_depth_file(path, arr, encoding)
    out = read_depth_file(path, encoding, H, W)
    assert out.dtype == np.float32 and out.shape == (H, W)
    np.testing.assert_array_equal(out, arr.astype(np.float32))


def test_npy_float16_and_wrong_dtype(tmp_path):
    np.save(tmp_path / "h.npy", np.full((H, W), 2.5, np.float16))
    assert read_depth_file(tmp_path / "h.npy", "npy", H, W).dtype == np.float32
    np.save(tmp_path / "i.npy", np.ones((H, W), np.int32))
    with pytest.raises(FrameError, match=r"i\.npy: npy depth must be float16 or float32"):
        read_depth_file(tmp_path / "i.npy", "npy", H, W)
    np.save(tmp_path / "c.npy", np.ones((H, W, 3), np.float32))
    with pytest.raises(FrameError, match="must be 2-D"):
        read_depth_file(tmp_path / "c.npy", "npy", H, W)


def test_npy_truncated_crafted_or_fortran_order(tmp_path):
    z = np.arange(H * W, dtype=np.float32).reshape(H, W) / 7
    np.save(tmp_path / "f.npy", np.asfortranarray(z))
    np.testing.assert_array_equal(read_depth_file(tmp_path / "f.npy", "npy", H, W), z)
    np.save(tmp_path / "b.npy", z.astype(">f8"))  # big-endian float64: refused like any other dtype
    with pytest.raises(FrameError, match="must be float16 or float32"):
        read_depth_file(tmp_path / "b.npy", "npy", H, W)
    data = (tmp_path / "f.npy").read_bytes()
    (tmp_path / "t.npy").write_bytes(data[: len(data) - 10])
    with pytest.raises(FrameError, match=r"t\.npy: npy cannot be read \(truncated or corrupt\)"):
        read_depth_file(tmp_path / "t.npy", "npy", H, W)
    # a header claiming a huge array over a few bytes: refused before anything is allocated
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**6, 10**6)})
    (tmp_path / "g.npy").write_bytes(buf.getvalue() + bytes(16))
    with pytest.raises(FrameError, match=r"g\.npy: npy cannot be read \(truncated or corrupt\): 16 bytes"):
        read_depth_file(tmp_path / "g.npy", "npy", H, W)
    (tmp_path / "x.npy").write_bytes(b"\x93NUMPY\x09\x00garbage")
    with pytest.raises(FrameError, match="truncated or corrupt"):
        read_depth_file(tmp_path / "x.npy", "npy", H, W)


def test_exr_without_Z_channel_reads_the_first_channel(tmp_path):
    import OpenEXR

    z = scene_depth(0, H, W, K).astype(np.float32)
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    with OpenEXR.File(header, {"B": z, "G": z * 2, "R": z * 3}) as f:
        f.write(str(tmp_path / "rgb.exr"))
    np.testing.assert_array_equal(read_depth_file(tmp_path / "rgb.exr", "exr", H, W), z)  # "B" sorts first
    with pytest.raises(FrameError, match=r"rgb\.exr: depth is 32x24 but the RGB frames are 32x20"):
        read_depth_file(tmp_path / "rgb.exr", "exr", 20, W)
