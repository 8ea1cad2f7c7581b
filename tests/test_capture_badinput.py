"""Every planted defect gives a clear error naming the file, and the other frames still read."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # tests/capture_fixtures.py

import json
import os
import tracemalloc

import cv2
import numpy as np
import pytest

from capture_fixtures import (
    ENCODINGS,
    default_K,
    edit_frame,
    png_claiming_size,
    read_frame_lines,
    scene_depth,
    truncate_file,
    write_dav_capture,
    write_frame_lines,
)
from dav_builder.capture.base import CaptureError, FrameError, FrameInfo
from dav_builder.capture.dav import DavCapture
from dav_builder.capture.imageio import decode_rgb, decode_rgb_small, image_size, read_depth_file, safe_join, write_depth_file

H, W = 24, 32
K = default_K(W, H)
N = 4


def make(tmp_path, **kw):
    kw.setdefault("frames", N)
    return write_dav_capture(tmp_path / "cap", **kw)


def read_everything(cap):
    """index -> None when the frame reads completely, else the FrameError (metadata or file)."""
    out = {}
    for pos, item in enumerate(cap.frames()):
        if isinstance(item, FrameError):
            out[item.index if item.index is not None else f"line{pos + 1}"] = item
            continue
        try:
            cap.read_rgb_bytes(item)
            cap.read_rgb(item)
            z = cap.read_depth(item)
            np.testing.assert_allclose(z, scene_depth(item.index, H, W, K), rtol=1e-4)
            out[item.index] = None
        except FrameError as exc:
            out[item.index] = exc
    return out


def only_bad(cap, bad, file_part, problem):
    """Exactly frame ``bad`` fails, with a message naming ``file_part`` and ``problem``."""
    results = read_everything(cap)
    errors = {k: v for k, v in results.items() if v is not None}
    assert list(errors) == [bad], errors
    err = errors[bad]
    assert file_part in err.path and file_part in str(err), str(err)
    assert problem in err.problem, str(err)
    assert sum(v is None for v in results.values()) == N - 1
    return err


# -- RGB ----------------------------------------------------------------------------------------


def test_missing_rgb(tmp_path):
    root = make(tmp_path)
    (root / "rgb/000001.png").unlink()
    only_bad(DavCapture(root), 1, "rgb/000001.png", "missing")


@pytest.mark.parametrize("fmt, keep", [("png", 0.5), ("png", 0.98), ("jpg", 0.6), ("jpg", 0.99)])
def test_truncated_rgb(tmp_path, fmt, keep):
    root = make(tmp_path, rgb_format=fmt)
    truncate_file(root / f"rgb/000002.{fmt}", keep)
    only_bad(DavCapture(root), 2, f"rgb/000002.{fmt}", "truncated")


def test_undecodable_rgb(tmp_path):
    root = make(tmp_path)
    (root / "rgb/000000.png").write_bytes(b"GIF89a not an image at all" * 10)
    only_bad(DavCapture(root), 0, "rgb/000000.png", "not a PNG or JPEG")
    # a valid header and end but garbage in between: caught at decode time
    root2 = write_dav_capture(tmp_path / "cap2", frames=N)
    data = bytearray((root2 / "rgb/000003.png").read_bytes())
    data[40:-12] = bytes(len(data) - 52)
    (root2 / "rgb/000003.png").write_bytes(bytes(data))
    only_bad(DavCapture(root2), 3, "rgb/000003.png", "cannot be decoded")


def test_rgb_size_differs_from_capture(tmp_path):
    root = make(tmp_path)
    cv2.imwrite(str(root / "rgb/000001.png"), np.zeros((H, W + 2, 3), np.uint8))
    only_bad(DavCapture(root), 1, "rgb/000001.png", "is 34x24 but the capture is 32x24")


def test_png_header_claiming_a_huge_size_is_refused_without_allocating(tmp_path):
    data = png_claiming_size(200_000, 100_000)  # 20 gigapixels
    assert len(data) < 100
    assert image_size(data, "x.png") == (200_000, 100_000, "png")
    tracemalloc.start()
    with pytest.raises(FrameError, match=r"x\.png: image of 200000x100000 pixels exceeds the limit"):
        decode_rgb(data, "x.png")
    with pytest.raises(FrameError, match="exceeds the limit"):
        decode_rgb_small(data, "x.png", 64)
    assert tracemalloc.get_traced_memory()[1] < 1_000_000
    tracemalloc.stop()
    root = make(tmp_path)
    (root / "rgb/000002.png").write_bytes(data)
    only_bad(DavCapture(root), 2, "rgb/000002.png", "exceeds the limit")
    # a capture-level pixel limit applies to normal-sized frames too
    with pytest.raises(CaptureError, match="exceeds 100 pixels"):
        DavCapture(root, max_pixels=100)


def test_truncated_image_headers():
    with pytest.raises(FrameError, match="y.png: truncated PNG header"):
        image_size(b"\x89PNG\r\n\x1a\n\x00\x00", "y.png")
    with pytest.raises(FrameError, match="y.jpg: truncated JPEG"):
        image_size(b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "y.jpg")


# -- depth --------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_missing_depth(tmp_path, encoding):
    root = make(tmp_path, encoding=encoding, scale=0.001 if encoding == "png16" else 1.0)
    path = next((root / "depth").glob("000001.*"))
    path.unlink()
    if encoding == "png16":  # quantised to millimetres: compare the others loosely
        cap = DavCapture(root)
        got = [f for f in cap.frames()]
        with pytest.raises(FrameError, match=f"{path.name}: file is missing"):
            cap.read_depth(got[1])
        for f in (got[0], got[2], got[3]):
            np.testing.assert_allclose(cap.read_depth(f), scene_depth(f.index, H, W, K), atol=1e-3)
    else:
        only_bad(DavCapture(root), 1, path.name, "missing")


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize("keep", [0.0, 0.5, 0.97])
def test_truncated_depth(tmp_path, encoding, keep):
    root = make(tmp_path, encoding=encoding, scale=0.001 if encoding == "png16" else 1.0)
    path = next((root / "depth").glob("000002.*"))
    truncate_file(path, keep)
    cap = DavCapture(root)
    got = list(cap.frames())
    with pytest.raises(FrameError) as info:
        cap.read_depth(got[2])
    assert path.name in str(info.value)
    words = {"exr": "cannot be decoded", "npy": "truncated", "png16": "truncated", "raw": "truncated"}
    assert (words[encoding] if keep else "empty") in info.value.problem
    for f in (got[0], got[1], got[3]):
        np.testing.assert_allclose(cap.read_depth(f), scene_depth(f.index, H, W, K), atol=1e-3)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_depth_size_differs_from_rgb(tmp_path, encoding):
    root = make(tmp_path, encoding=encoding, scale=0.001 if encoding == "png16" else 1.0)
    path = next((root / "depth").glob("000003.*"))
    write_depth_file(path, np.ones((H, W + 4), np.uint16 if encoding == "png16" else np.float32), encoding)
    cap = DavCapture(root)
    got = list(cap.frames())
    problem = "bytes, expected 3072" if encoding == "raw" else "depth is 36x24 but the RGB frames are 32x24"
    with pytest.raises(FrameError, match=f"{path.name}: .*{problem}"):
        cap.read_depth(got[3])
    assert cap.read_depth(got[0]).shape == (H, W)


def test_nan_and_inf_are_invalid_pixels_not_errors(tmp_path):
    root = make(tmp_path, encoding="exr", convention="reversed")
    arr = read_depth_file(root / "depth/000001.exr", "exr", H, W).copy()
    arr[0, 0], arr[1, 1], arr[2, 2] = np.nan, np.inf, -np.inf
    write_depth_file(root / "depth/000001.exr", arr, "exr")
    cap = DavCapture(root)
    got = list(cap.frames())
    z = cap.read_depth(got[1])
    assert z[0, 0] == z[1, 1] == z[2, 2] == 0
    assert (z > 0).sum() == H * W - 3
    np.testing.assert_allclose(z[3:], scene_depth(1, H, W, K)[3:], rtol=1e-4)
    for f in (got[0], got[2], got[3]):
        np.testing.assert_allclose(cap.read_depth(f), scene_depth(f.index, H, W, K), rtol=1e-4)


@pytest.mark.parametrize(
    "convention, value, problem",
    [
        ("linear", -2.0, "negative depth in 1 pixels"),
        ("gl", 1.5, "gl depth buffer values must lie in [0, 1]"),
        ("reversed", -0.2, "reversed depth buffer values must lie in [0, 1]"),
    ],
)
def test_impossible_stored_values_are_corrupt(tmp_path, convention, value, problem):
    root = make(tmp_path, encoding="npy", convention=convention)
    arr = np.load(root / "depth/000002.npy")
    arr[5, 5] = value
    np.save(root / "depth/000002.npy", arr)
    err = only_bad(DavCapture(root), 2, "000002.npy", problem.split(" [")[0])
    assert problem in str(err)


@pytest.mark.parametrize("encoding", ["npy", "exr"])
def test_all_invalid_frame(tmp_path, encoding):
    root = make(tmp_path, encoding=encoding, convention="reversed_infinite")
    write_depth_file(next((root / "depth").glob("000000.*")), np.zeros((H, W), np.float32), encoding)
    only_bad(DavCapture(root), 0, "depth/000000", "no valid depth: 0.0% of pixels valid")
    root2 = write_dav_capture(tmp_path / "nan", frames=N, encoding=encoding)
    write_depth_file(next((root2 / "depth").glob("000001.*")), np.full((H, W), np.nan, np.float32), encoding)
    only_bad(DavCapture(root2), 1, "depth/000001", "no valid depth")


def test_min_valid_fraction(tmp_path):
    root = make(tmp_path)
    arr = np.load(root / "depth/000001.npy")
    arr[:, 4:] = np.nan  # 12.5% valid
    np.save(root / "depth/000001.npy", arr)
    cap = DavCapture(root, min_valid_fraction=0.2)
    got = list(cap.frames())
    with pytest.raises(FrameError, match="12.5% of pixels valid"):
        cap.read_depth(got[1])
    assert (DavCapture(root).read_depth(got[1]) > 0).mean() == pytest.approx(0.125)


# -- capture.json -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, problem",
    [
        ({"depth": {"near": None, "far": None}}, "needs depth.near and depth.far"),
        ({"depth": {"far": None}}, "needs depth.near and depth.far"),
        ({"depth": {"near": 5.0, "far": 5.0}}, "must be smaller than depth.far"),
        ({"depth": {"near": 50.0, "far": 5.0}}, "must be smaller than depth.far"),
        ({"depth": {"near": -1.0}}, "depth.near must be a positive"),
        ({"depth": {"convention": "zbuf"}}, "depth.convention 'zbuf' is not one of"),
        ({"depth": {"encoding": "tiff"}}, "depth.encoding 'tiff' is not one of"),
        ({"depth": {"kind": "ray"}}, "ray is only for linear"),
        ({"format": "dav-capture/2"}, "format is 'dav-capture/2'"),
        ({"fps": 0}, "fps must be a finite number"),
        ({"fps": float("nan")}, "fps must be a finite number"),
        ({"fps": float("inf")}, "fps must be a finite number"),
        ({"fps": -30}, "fps must be a finite number"),
        ({"fps": "30"}, "fps must be a number"),
        ({"fps": True}, "fps must be a number"),
        ({"width": "wide"}, "width must be an integer"),
        ({"width": 2**70}, "width must be an integer"),
        ({"height": 24.5}, "height must be an integer"),
        ({"depth": {"scale": 10**400}}, "bad depth.scale"),
        ({"depth": {"far": float("nan")}}, "depth.far must be a number"),
        ({"depth": "npy"}, "depth must be a JSON object"),
    ],
)
def test_bad_capture_json(tmp_path, overrides, problem):
    root = make(tmp_path, convention="gl", meta_overrides=overrides)
    meta = json.loads((root / "capture.json").read_text())
    if isinstance(meta["depth"], dict):  # None values written by the override mean "absent"
        meta["depth"] = {k: v for k, v in meta["depth"].items() if v is not None}
        (root / "capture.json").write_text(json.dumps(meta))
    with pytest.raises(CaptureError) as info:
        DavCapture(root)
    assert "capture.json" in str(info.value) and problem in info.value.problem, str(info.value)


@pytest.mark.parametrize("key", ["fps", "width", "height", "depth"])
def test_capture_json_missing_key(tmp_path, key):
    root = make(tmp_path)
    meta = json.loads((root / "capture.json").read_text())
    del meta[key]
    (root / "capture.json").write_text(json.dumps(meta))
    with pytest.raises(CaptureError, match=f"capture.json: missing key '{key}'"):
        DavCapture(root)


def test_malformed_or_missing_capture_json(tmp_path):
    root = make(tmp_path)
    (root / "capture.json").write_text('{"format": "dav-capture/1", "fps": 30,')
    with pytest.raises(CaptureError, match=r"capture\.json: malformed JSON"):
        DavCapture(root)
    (root / "capture.json").write_text("[1, 2]")
    with pytest.raises(CaptureError, match=r"capture\.json: must hold a JSON object"):
        DavCapture(root)
    (root / "capture.json").unlink()
    with pytest.raises(CaptureError, match=r"capture\.json: file is missing"):
        DavCapture(root)
    with pytest.raises(CaptureError, match=r"frames\.jsonl: file is missing"):
        DavCapture(tmp_path / "nowhere")


def test_planes_only_from_projection(tmp_path):
    # no near/far in capture.json: fine when the first frame has a projection ...
    root = make(tmp_path, convention="d3d", intrinsics="both", planes_in_meta=False)
    edit_frame(root, 2, projection=None)
    cap = DavCapture(root)
    # ... and a later frame without one is a FrameError of its own
    err = only_bad(cap, 2, "frames.jsonl:3", "no near plane")
    assert "capture.json has no depth.near" in str(err)
    # the first frame without projection: the capture cannot be opened
    edit_frame(root, 0, projection=None)
    with pytest.raises(CaptureError, match="needs depth.near and depth.far"):
        DavCapture(root)


# -- frames.jsonl -------------------------------------------------------------------------------


def test_malformed_frame_line(tmp_path):
    root = make(tmp_path)
    recs = read_frame_lines(root)
    write_frame_lines(root, [recs[0], '{"index": 1, "rgb": "rgb/000001.png", ', recs[2], recs[3]])
    results = read_everything(DavCapture(root))
    err = results.pop("line2")
    assert "frames.jsonl:2" in err.path and "malformed JSON" in err.problem
    assert results == {0: None, 2: None, 3: None}


def test_non_increasing_indices(tmp_path):
    root = make(tmp_path)
    recs = read_frame_lines(root)
    dup = dict(recs[1])
    write_frame_lines(root, [recs[0], recs[1], dup, recs[2], recs[3]])  # index 1 twice
    cap = DavCapture(root)
    items = list(cap.frames())
    assert [type(i).__name__ for i in items] == ["FrameInfo", "FrameInfo", "FrameError", "FrameInfo", "FrameInfo"]
    assert "frames.jsonl:3" in str(items[2]) and "frame index 1 does not increase (previous 1)" in str(items[2])
    write_frame_lines(root, [recs[0], recs[2], recs[1], recs[3]])  # 0, 2, 1, 3
    items = list(DavCapture(root).frames())
    assert isinstance(items[2], FrameError) and "frame index 1 does not increase (previous 2)" in str(items[2])
    assert [i.index for i in items if isinstance(i, FrameInfo)] == [0, 2, 3]


@pytest.mark.parametrize(
    "changes, problem",
    [
        ({"depth": None}, "missing or non-string 'depth'"),
        ({"rgb": 5}, "missing or non-string 'rgb'"),
        ({"K": [[1, 0], [0, 1]]}, "K must be 3x3"),
        ({"K": None}, "neither K nor projection"),
        ({"projection": [[1, 2, 3]]}, "projection must be 4x4"),
        ({"cam_to_world": [[1, 0, 0], [0, 1, 0], [0, 0, 1]]}, "cam_to_world must be 4x4"),
        ({"cam_to_world": "identity"}, "cam_to_world is not a numeric matrix"),
        ({"time": "noon"}, "time must be a number"),
        ({"time": float("nan")}, "time must be a finite number"),
        ({"index": -3}, "index must be an integer in 0.."),
        ({"index": 2**70}, "index must be an integer in 0.."),
        ({"index": 1.5}, "index must be an integer in 0.."),
        ({"K": np.zeros((3, 3)).tolist()}, "focal lengths must be positive"),
        ({"K": (default_K(W, H) * [[-1], [1], [1]]).tolist()}, "focal lengths must be positive"),
        ({"K": [[float("nan"), 0, 1], [0, 1, 1], [0, 0, 1]]}, "K holds non-finite values"),
        ({"K": [[1e400, 0, 1], [0, 1, 1], [0, 0, 1]]}, "K holds non-finite values"),
        ({"cam_to_world": np.zeros((4, 4)).tolist()}, "last row must be 0 0 0 1"),
        ({"cam_to_world": np.diag([0.0, 0.0, 0.0, 1.0]).tolist()}, "cam_to_world is singular"),
        ({"cam_to_world": np.diag([2.0, 1.0, 1.0, 1.0]).tolist()}, "not a rotation"),
        ({"cam_to_world": np.diag([-1.0, 1.0, 1.0, 1.0]).tolist()}, "reflection"),
        ({"cam_to_world": [[1, 0, 0, 1e300], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]}, "is beyond"),
        ({"rgb": "rgb/bad\u0000name.png"}, "NUL character"),
        ({"rgb": "rgb/\ud800.png"}, "cannot be encoded"),
    ],
)
def test_bad_frame_metadata(tmp_path, changes, problem):
    root = make(tmp_path)
    edit_frame(root, 1, **changes)
    results = read_everything(DavCapture(root))
    bad = {k: v for k, v in results.items() if v is not None}
    assert len(bad) == 1, bad
    err = next(iter(bad.values()))
    assert "frames.jsonl:2" in err.path and problem in err.problem, str(err)
    assert sum(v is None for v in results.values()) == N - 1


@pytest.mark.parametrize("which", ["rgb", "depth"])
def test_paths_leaving_the_capture(tmp_path, which):
    root = make(tmp_path)
    outside = tmp_path / "outside.npy"
    outside.write_bytes((root / "depth/000000.npy").read_bytes())
    target = {"rgb": root / "rgb/000000.png", "depth": root / "depth/000000.npy"}[which]
    edit_frame(root, 1, **{which: str(target)})  # absolute (even though it points inside)
    edit_frame(root, 2, **{which: f"../cap/{target.relative_to(root)}"})
    os.symlink(outside, root / "escape.npy")
    edit_frame(root, 3, **{which: "escape.npy"})
    items = list(DavCapture(root).frames())
    assert isinstance(items[0], FrameInfo)
    for line, item in enumerate(items[1:], start=2):
        assert isinstance(item, FrameError) and f"frames.jsonl:{line}" in item.path
    assert "absolute path" in items[1].problem and str(target) in items[1].problem
    assert "leaves the capture directory ('..')" in items[2].problem and "../cap/" in items[2].problem
    assert "resolves outside the capture directory" in items[3].problem and "escape.npy" in items[3].problem
    assert [i.index for i in items[1:]] == [1, 2, 3]


def test_safe_join_allows_links_inside(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a/x.png").write_bytes(b"x")
    os.symlink(tmp_path / "a/x.png", tmp_path / "link.png")
    assert safe_join(tmp_path, "link.png") == tmp_path / "link.png"
    assert safe_join(tmp_path, "a/./x.png") == tmp_path / "a/x.png"
    with pytest.raises(FrameError, match="not a non-empty string"):
        safe_join(tmp_path, "")


def test_declared_invalid_values_are_exempt_from_the_range_check(tmp_path):
    def with_sky(index, h, w, K):
        z = scene_depth(index, h, w, K)
        z[:2] = 0
        return z

    root = make(tmp_path, invalid=[-1.0], depth_fn=with_sky)  # linear, sky stored as -1
    cap = DavCapture(root)
    got = list(cap.frames())
    z = cap.read_depth(got[0])
    assert (z[:2] == 0).all() and (z[2:] > 0).all()
    # errors from the loaders carry the frame's index
    (root / "depth/000002.npy").unlink()
    with pytest.raises(FrameError) as info:
        cap.read_depth(got[2])
    assert info.value.index == 2
    (root / "rgb/000003.png").unlink()
    with pytest.raises(FrameError) as info:
        cap.read_rgb_bytes(got[3])
    assert info.value.index == 3


def test_jpeg_header_parsing_with_fill_bytes_and_exif():
    ok, buf = cv2.imencode(".jpg", np.zeros((7, 13, 3), np.uint8))
    data = buf.tobytes()
    assert image_size(data, "a.jpg") == (13, 7, "jpg")
    # an APP1 segment and fill bytes before the frame header change nothing
    app1 = b"\xff\xe1" + (2 + 20).to_bytes(2, "big") + b"Exif\x00\x00" + bytes(14)
    padded = data[:2] + app1 + b"\xff" + data[2:]
    assert image_size(padded, "b.jpg") == (13, 7, "jpg")
    assert decode_rgb(data + b"\x00\x00", "c.jpg").shape == (7, 13, 3)  # trailing padding is tolerated
