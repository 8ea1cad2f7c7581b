"""DavCapture reads captures written as CAPTURE_FORMAT.md describes, in every convention and encoding."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # tests/capture_fixtures.py

import itertools
import json
import time
import tracemalloc

import cv2
import numpy as np
import pytest

from capture_fixtures import (
    default_K,
    pose,
    rgb_frame,
    scene_depth,
    write_dav_capture,
    write_long_frames_jsonl,
)
from dav_builder.capture import depth as dc
from dav_builder.capture.base import FrameInfo
from dav_builder.capture.dav import DavCapture, is_dav_capture

H, W = 24, 32
K = default_K(W, H)


def infos(cap):
    out = list(cap.frames())
    assert all(isinstance(f, FrameInfo) for f in out), out
    return out


@pytest.mark.parametrize(
    "convention, encoding",
    list(itertools.product(["linear", "gl", "d3d", "reversed", "reversed_infinite"], ["exr", "npy", "raw"])),
)
def test_every_convention_and_encoding_gives_planar_metres(tmp_path, convention, encoding):
    root = write_dav_capture(tmp_path / "cap", frames=2, convention=convention, encoding=encoding)
    cap = DavCapture(root)
    assert (cap.width, cap.height, cap.fps, cap.reader, cap.id) == (W, H, 30.0, "dav", "cap")
    for info in infos(cap):
        z = cap.read_depth(info)
        assert z.dtype == np.float32 and z.shape == (H, W)
        np.testing.assert_allclose(z, scene_depth(info.index, H, W, K), rtol=1e-4)


def test_png16_millimetres_and_invalid_sky(tmp_path):
    def with_sky(index, h, w, K):
        z = scene_depth(index, h, w, K)
        z[:4] = 0  # top rows: sky
        return z

    root = write_dav_capture(tmp_path / "cap", frames=2, encoding="png16", scale=0.001, invalid=[65535],
                             depth_fn=with_sky)
    assert json.loads((root / "capture.json").read_text())["depth"]["invalid"] == [65535]
    cap = DavCapture(root)
    info = infos(cap)[1]
    z = cap.read_depth(info)
    assert (z[:4] == 0).all()
    np.testing.assert_allclose(z[4:], scene_depth(1, H, W, K)[4:], atol=0.5e-3 + 1e-7)


def test_linear_ray_distance_and_float16_npy(tmp_path):
    root = write_dav_capture(tmp_path / "ray", frames=1, kind="ray", encoding="npy")
    cap = DavCapture(root)
    np.testing.assert_allclose(cap.read_depth(infos(cap)[0]), scene_depth(0, H, W, K), rtol=1e-5)
    root = write_dav_capture(tmp_path / "half", frames=1, encoding="npy", npy_dtype="float16")
    cap = DavCapture(root)
    np.testing.assert_allclose(cap.read_depth(infos(cap)[0]), scene_depth(0, H, W, K), rtol=2**-11)


@pytest.mark.parametrize("convention", ["gl", "d3d", "reversed", "reversed_infinite"])
def test_K_and_planes_from_projection(tmp_path, convention):
    root = write_dav_capture(tmp_path / "cap", frames=2, convention=convention, encoding="npy",
                             intrinsics="projection", planes_in_meta=False, near=0.3, far=250.0)
    meta = json.loads((root / "capture.json").read_text())
    assert "near" not in meta["depth"] and "K" not in json.loads((root / "frames.jsonl").read_text().split("\n")[0])
    cap = DavCapture(root)
    for info in infos(cap):
        np.testing.assert_allclose(info.K, K, atol=1e-9)
        assert info.extra["near"] == pytest.approx(0.3)
        if convention == "reversed_infinite":
            assert info.extra["far"] is None
        else:
            assert info.extra["far"] == pytest.approx(250.0)
        assert info.extra["projection"].shape == (4, 4)
        np.testing.assert_allclose(cap.read_depth(info), scene_depth(info.index, H, W, K), rtol=1e-4)


def test_explicit_K_wins_over_projection(tmp_path):
    root = write_dav_capture(tmp_path / "cap", frames=1, convention="gl", intrinsics="both")
    lines = (root / "frames.jsonl").read_text().splitlines()
    rec = json.loads(lines[0])
    rec["K"][0][0] = 99.0
    (root / "frames.jsonl").write_text(json.dumps(rec) + "\n")
    assert infos(DavCapture(root))[0].K[0, 0] == 99.0


def test_poses_times_and_gaps(tmp_path):
    root = write_dav_capture(tmp_path / "cap", frames=[0, 1, 5, 6], fps=10.0)
    got = infos(DavCapture(root))
    assert [f.index for f in got] == [0, 1, 5, 6]
    assert [f.time for f in got] == pytest.approx([0.0, 0.1, 0.5, 0.6])  # default index / fps
    for f in got:
        np.testing.assert_array_equal(f.cam_to_world, pose(f.index))
        assert f.cam_to_world.dtype == np.float64
    root = write_dav_capture(tmp_path / "timed", frames=2, fps=10.0, times=True, poses=False)
    got = infos(DavCapture(root))
    assert [f.time for f in got] == pytest.approx([0.001, 0.101])
    assert got[0].cam_to_world is None


@pytest.mark.parametrize("fmt", ["png", "jpg"])
def test_rgb_bytes_are_the_file_and_decode(tmp_path, fmt):
    root = write_dav_capture(tmp_path / "cap", frames=2, rgb_format=fmt)
    cap = DavCapture(root)
    info = infos(cap)[1]
    data, ext = cap.read_rgb_bytes(info)
    assert ext == fmt and data == (root / f"rgb/000001.{fmt}").read_bytes()
    rgb = cap.read_rgb(info)
    assert rgb.shape == (H, W, 3) and rgb.dtype == np.uint8
    if fmt == "png":
        np.testing.assert_array_equal(rgb, rgb_frame(1, H, W))  # RGB order, not BGR
    else:
        assert np.abs(rgb.astype(int) - rgb_frame(1, H, W)).mean() < 12
    frame = cap.read_frame(info, small_side=16)
    assert frame.rgb_small.shape == (12, 16, 3) and frame.rgb_ext == fmt
    np.testing.assert_allclose(frame.depth, scene_depth(1, H, W, K), rtol=1e-4)


def test_is_dav_capture(tmp_path):
    root = write_dav_capture(tmp_path / "cap", frames=1)
    assert is_dav_capture(root)
    assert not is_dav_capture(tmp_path)
    (root / "frames.jsonl").unlink()
    assert not is_dav_capture(root)


def test_frames_streams_a_long_file(tmp_path):
    n = 100_000
    root = write_long_frames_jsonl(tmp_path / "long", n)
    size = (root / "frames.jsonl").stat().st_size
    assert size > 15_000_000
    cap = DavCapture(root)
    tracemalloc.start()
    t0 = time.perf_counter()
    gen = cap.frames()
    first = [next(gen) for _ in range(10)]
    elapsed = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    gen.close()
    assert [f.index for f in first] == list(range(10))
    assert peak < 1_000_000, f"reading 10 frames allocated {peak} bytes of a {size}-byte file"
    assert elapsed < 1.0
    # the generator really goes on to the last line (checked on a slice of it, cheaply)
    last = next(itertools.islice(cap.frames(), 2000, None))
    assert isinstance(last, FrameInfo) and last.index == 2000


def test_rgb_small_from_jpeg_uses_reduced_decode(tmp_path):
    # a 256x192 JPEG reduced to 32 px must come out with the right content (mean colour kept)
    from dav_builder.capture.imageio import decode_rgb_small

    img = np.zeros((192, 256, 3), np.uint8)
    img[:, :128] = (200, 30, 30)
    img[:, 128:] = (30, 30, 200)
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    small = decode_rgb_small(buf.tobytes(), "x.jpg", 32, expect_size=(192, 256))
    assert small.shape == (24, 32, 3)
    assert np.abs(small[:, :14].astype(int) - (200, 30, 30)).max() < 12
    assert np.abs(small[:, 18:].astype(int) - (30, 30, 200)).max() < 12


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_one_decode_gives_the_reduced_rgb_at_two_sizes(ext):
    # 640x352: the reduced RGB (128 px) and the fine RGB (256 px) from one decode match a direct
    # area resize of the full image, whatever route (2x halvings, reduced JPEG decode) got there
    from dav_builder.capture.imageio import decode_levels

    rng = np.random.default_rng(0)
    img = cv2.resize(rng.integers(0, 255, (44, 80, 3), dtype=np.uint8), (640, 352), interpolation=cv2.INTER_CUBIC)
    ok, buf = cv2.imencode(ext, img, [cv2.IMWRITE_JPEG_QUALITY, 98] if ext == ".jpg" else [])
    small, fine = decode_levels(buf.tobytes(), "x" + ext, 128, 256, expect_size=(352, 640))
    assert small.shape == (70, 128, 3) and fine.shape == (141, 256, 3) and fine.dtype == np.uint8
    full = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    want_small = cv2.cvtColor(cv2.resize(full, (128, 70), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    want_fine = cv2.cvtColor(cv2.resize(full, (256, 141), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
    assert np.abs(small.astype(int) - want_small).mean() < 2.0
    assert np.abs(fine.astype(int) - want_fine).mean() < 2.0
    assert decode_levels(buf.tobytes(), "x" + ext, 128)[1] is None


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import struct
    import zlib

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def test_png_decoder_gives_opencvs_pixels_and_falls_back(monkeypatch):
    # PNGs go through libpng via imagecodecs where that applies: the same pixels, the same reduced
    # images, as OpenCV's decode; a PNG it turns into RGBA (a tRNS chunk) or cannot read goes to
    # OpenCV, which decodes it or names the problem
    import struct

    import dav_builder.capture.imageio as imageio
    from dav_builder.capture.base import FrameError
    from dav_builder.shards.tario import decode_rgb_member

    rng = np.random.default_rng(3)
    img = cv2.resize(rng.integers(0, 255, (40, 72, 3), dtype=np.uint8), (320, 176), interpolation=cv2.INTER_CUBIC)
    png = cv2.imencode(".png", img)[1].tobytes()
    head = 8 + 25  # signature and IHDR
    with_trns = png[:head] + _png_chunk(b"tRNS", struct.pack(">HHH", 1, 2, 3)) + png[head:]
    with_gamma = png[:head] + _png_chunk(b"gAMA", struct.pack(">I", 45455)) + png[head:]
    assert imageio.png_rgb(png) is not None and imageio.png_rgb(with_trns) is None
    want = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    for data in (png, with_trns, with_gamma):
        np.testing.assert_array_equal(imageio.decode_rgb(data, "x.png"), want)
        np.testing.assert_array_equal(decode_rgb_member(data), want)
    fast = imageio.decode_levels(png, "x.png", 64, 128)
    monkeypatch.setattr(imageio, "_png_decode", None)  # as on a platform without the wheel
    assert imageio.png_rgb(png) is None
    slow = imageio.decode_levels(png, "x.png", 64, 128)
    for a, b in zip(fast, slow):
        np.testing.assert_array_equal(a, b)
    monkeypatch.undo()
    broken = bytearray(png)
    broken[head + 40] ^= 0xFF  # inside the image data: the zlib check fails
    assert imageio.png_rgb(bytes(broken)) is None
    with pytest.raises(FrameError, match="cannot be decoded"):
        imageio.decode_levels(bytes(broken), "broken.png", 64, 128)


def test_conversion_uses_capture_planes_over_projection(tmp_path):
    # capture.json near/far and a projection both given: capture.json is authoritative
    root = write_dav_capture(tmp_path / "cap", frames=1, convention="d3d", intrinsics="both", near=0.5, far=100.0)
    cap = DavCapture(root)
    info = infos(cap)[0]
    assert (info.extra["near"], info.extra["far"]) == (0.5, 100.0)
    stored = np.load(root / "depth/000000.npy")
    np.testing.assert_allclose(cap.read_depth(info), dc.to_planar_metres(stored, "d3d", near=0.5, far=100.0))


@pytest.mark.parametrize("convention", ["gl", "d3d"])
def test_infinite_far_projection(tmp_path, convention):
    root = write_dav_capture(tmp_path / "cap", frames=2, convention=convention, intrinsics="projection",
                             planes_in_meta=False, near=0.2, far=np.inf)
    cap = DavCapture(root)
    for info in infos(cap):
        assert info.extra["far"] == np.inf and info.extra["near"] == pytest.approx(0.2)
        np.testing.assert_allclose(cap.read_depth(info), scene_depth(info.index, H, W, K), rtol=1e-4)


def test_read_bytes_reads_whole_files_within_the_limit(tmp_path):
    from dav_builder.capture.base import FrameError
    from dav_builder.capture.imageio import read_bytes

    data = bytes(range(256)) * 40
    f = tmp_path / "frame.bin"
    f.write_bytes(data)
    assert read_bytes(f) == data
    assert read_bytes(f, max_bytes=len(data)) == data  # exactly at the limit
    with pytest.raises(FrameError, match="larger than the limit"):
        read_bytes(f, max_bytes=len(data) - 1)
    (tmp_path / "empty.bin").write_bytes(b"")
    with pytest.raises(FrameError, match="empty"):
        read_bytes(tmp_path / "empty.bin")
    with pytest.raises(FrameError, match="missing"):
        read_bytes(tmp_path / "absent.bin")
