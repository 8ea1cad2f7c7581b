"""Reading frames safely: paths that stay inside a capture, images checked before decoding,
depth files in every encoding of CAPTURE_FORMAT.md.  Every failure is a :class:`FrameError`
that names the file and the problem.
"""

from __future__ import annotations

import functools
import os
import struct
from pathlib import Path

import cv2
import numpy as np

from dav_builder.capture.base import FrameError

#: Decompression-bomb limit: an image whose header claims more pixels is refused before decoding.
MAX_PIXELS = 100_000_000
DEPTH_ENCODINGS = ("exr", "npy", "png16", "raw")
#: RGB -> grey (Rec. 601 luma, as OpenCV's RGB2GRAY), for grey levels from RGB arrays.
GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)
#: How far from the end of an image file its end marker may be (trailing padding).
_END_SLACK = 64


@functools.lru_cache(maxsize=4096)
def _real_dir(directory: str) -> str:
    """``realpath`` of a directory, cached: frames of a capture share a few directories, and
    resolving every component of every frame path costs one ``lstat`` per component."""
    return os.path.realpath(directory)


def safe_join(root: str | Path, rel: str) -> Path:
    """``root / rel`` as a Path; see :func:`safe_path`."""
    return Path(safe_path(root, rel))


def safe_path(root: str | Path, rel: str) -> str:
    """``root / rel`` as a string, refusing paths that leave ``root`` (absolute, ``..``, or a link out).

    Links anywhere in the path are followed: a directory link is resolved once and cached for
    the process (captures are not expected to re-point their links while being read); the file
    itself is checked on every call.
    """
    if not isinstance(rel, str) or not rel:
        raise FrameError(root, f"frame path {rel!r} is not a non-empty string")
    if os.path.isabs(rel) or rel.startswith(("/", "\\")):
        raise FrameError(rel, "absolute path: frame files must be relative to the capture directory")
    if ".." in rel.replace("\\", "/").split("/"):
        raise FrameError(rel, "path leaves the capture directory ('..')")
    root_s = os.fspath(root)
    base = _real_dir(root_s)
    joined = os.path.join(root_s, rel)
    head, tail = os.path.split(joined)
    full = os.path.join(_real_dir(head), tail)
    real = os.path.realpath(full) if tail and os.path.islink(full) else os.path.normpath(full)
    if real != base and not real.startswith(base.rstrip(os.sep) + os.sep):
        raise FrameError(joined, f"path resolves outside the capture directory (to {real})")
    return joined


def read_bytes(path: Path) -> bytes:
    """The file's bytes; FrameError when it is missing, unreadable or empty."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise FrameError(path, "file is missing") from None
    except OSError as exc:
        raise FrameError(path, f"cannot read file: {exc.strerror or exc}") from None
    if not data:
        raise FrameError(path, "file is empty")
    return data


def image_size(data: bytes, path: str | Path) -> tuple[int, int, str]:
    """(width, height, "png" | "jpg") read from the header only, without decoding."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise FrameError(path, "truncated PNG header")
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h), "png"
    if data[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(data):
            if data[i] != 0xFF:
                raise FrameError(path, "corrupt JPEG marker stream")
            marker = data[i + 1]
            if marker == 0xFF:  # fill byte before a marker
                i += 1
                continue
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
                i += 2
                continue
            seg = struct.unpack(">H", data[i + 2 : i + 4])[0]
            if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
                h, w = struct.unpack(">HH", data[i + 5 : i + 9])
                return int(w), int(h), "jpg"
            i += 2 + seg
        raise FrameError(path, "truncated JPEG: no frame header")
    raise FrameError(path, "not a PNG or JPEG image")


def check_image(data: bytes, path: str | Path, expect_size=None, max_pixels: int = MAX_PIXELS) -> str:
    """Validate an encoded image cheaply (header, pixel limit, size, complete data); return its ext."""
    w, h, ext = image_size(data, path)
    if w * h > max_pixels:
        raise FrameError(path, f"image of {w}x{h} pixels exceeds the limit of {max_pixels} (decompression bomb?)")
    if w == 0 or h == 0:
        raise FrameError(path, f"image has an empty size {w}x{h}")
    if expect_size is not None and (h, w) != tuple(expect_size):
        raise FrameError(path, f"image is {w}x{h} but the capture is {expect_size[1]}x{expect_size[0]}")
    # the end of the data, tolerating a little padding some writers append after the last marker
    if ext == "png" and b"IEND" not in data[-_END_SLACK:]:  # the last chunk: length, "IEND", CRC
        raise FrameError(path, "truncated PNG (no IEND chunk)")
    if ext == "jpg" and not data[-_END_SLACK:].rstrip(b"\x00\r\n ").endswith(b"\xff\xd9"):
        raise FrameError(path, "truncated JPEG (no end-of-image marker)")
    return ext


def _imdecode(data: bytes, path: str | Path, flags: int) -> np.ndarray:
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if img is None:
        raise FrameError(path, "image cannot be decoded")
    return img


def decode_rgb(data: bytes, path: str | Path, expect_size=None, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an 8-bit RGB image (uint8 HxWx3, RGB order)."""
    check_image(data, path, expect_size, max_pixels)
    return cv2.cvtColor(_imdecode(data, path, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _reduce(img: np.ndarray, side: int) -> np.ndarray:
    """Area-average ``img`` so that its longer side is at most ``side`` (unchanged when it is)."""
    long_side = max(img.shape[:2])
    if long_side <= side:
        return img
    scale = side / long_side
    size = (max(1, round(img.shape[1] * scale)), max(1, round(img.shape[0] * scale)))
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA)


def _halve_towards(img: np.ndarray, side: int) -> np.ndarray:
    """Halve ``img`` (2x2 area averages) while its longer side stays at least ``side``.

    Area averaging by an exact factor of two is several times faster than by an arbitrary
    factor, so the final :func:`_reduce` then works on a much smaller image.
    """
    while side > 0 and max(img.shape[:2]) // 2 >= side and min(img.shape[:2]) >= 2:
        img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
    return img


def decode_levels(
    data: bytes, path: str | Path, small_side: int, fine_side: int = 0, expect_size=None,
    max_pixels: int = MAX_PIXELS,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Decode once; return the RGB reduced so that its longer side is at most ``small_side``
    (uint8, RGB order) and the grey image reduced to at most ``fine_side`` (uint8); either is
    None when its side is 0.

    JPEGs decode at 1/2, 1/4 or 1/8 scale directly when that is still large enough (libjpeg's
    DCT scaling, several times faster than a full decode); PNGs must be decoded whole, then are
    area-averaged down.
    """
    w, h, ext = image_size(data, path)
    check_image(data, path, expect_size, max_pixels)
    need = max(small_side, fine_side)
    flags = cv2.IMREAD_COLOR
    if ext == "jpg":
        for factor, flag in ((8, cv2.IMREAD_REDUCED_COLOR_8), (4, cv2.IMREAD_REDUCED_COLOR_4),
                             (2, cv2.IMREAD_REDUCED_COLOR_2)):
            if max(w, h) // factor >= need:
                flags = flag
                break
    img = _halve_towards(_imdecode(data, path, flags), need)
    small = cv2.cvtColor(_reduce(img, small_side), cv2.COLOR_BGR2RGB) if small_side > 0 else None
    fine = _reduce(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), fine_side) if fine_side > 0 else None
    return small, fine


def decode_rgb_small(
    data: bytes, path: str | Path, small_side: int, expect_size=None, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """Decode reduced so that the longer side is at most ``small_side`` (uint8 RGB); see
    :func:`decode_levels`."""
    small, _ = decode_levels(data, path, small_side, 0, expect_size, max_pixels)
    assert small is not None
    return small


def encode_png(rgb: np.ndarray) -> bytes:
    """PNG bytes of an RGB uint8 image."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


# -- depth files ----------------------------------------------------------------------------


def _read_exr(path: Path, height: int, width: int) -> np.ndarray:
    """Channel ``Z`` (else the first channel) of an EXR file; the size is checked from the header
    before any pixel is read, so a corrupt header cannot make us allocate a huge buffer."""
    import OpenEXR

    try:
        with OpenEXR.File(str(path), header_only=True, num_threads=1) as f:
            lo, hi = f.header()["dataWindow"]
        w, h = int(hi[0] - lo[0] + 1), int(hi[1] - lo[1] + 1)
        if (h, w) != (height, width):
            raise FrameError(path, f"depth is {w}x{h} but the RGB frames are {width}x{height}")
        with OpenEXR.File(str(path), separate_channels=True, num_threads=1) as f:
            channels = f.channels()
            if not channels:
                raise FrameError(path, "EXR file has no channels")
            # channel Z, else the first channel (EXR files list channels in name order)
            name = "Z" if "Z" in channels else sorted(channels)[0]
            return np.array(channels[name].pixels, dtype=np.float32)
    except FrameError:
        raise
    except Exception as exc:  # OpenEXR raises plain exceptions for truncated or corrupt files
        raise FrameError(path, f"EXR cannot be decoded: {exc}") from None


def read_depth_file(path: Path, encoding: str, height: int, width: int) -> np.ndarray:
    """Read one stored depth frame as float32 (stored values, not yet converted)."""
    path = Path(path)
    if encoding not in DEPTH_ENCODINGS:
        raise FrameError(path, f"unknown depth encoding {encoding!r}")
    if not path.is_file():
        raise FrameError(path, "file is missing")
    if path.stat().st_size == 0:
        raise FrameError(path, "file is empty")
    if encoding == "exr":
        d = _read_exr(path, height, width)
    elif encoding == "npy":
        try:
            d = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise FrameError(path, f"npy cannot be read (truncated or corrupt): {exc}") from None
        if d.ndim != 2:
            raise FrameError(path, f"npy depth must be 2-D, got shape {d.shape}")
        if d.dtype not in (np.float16, np.float32, np.float64):
            raise FrameError(path, f"npy depth must be float16 or float32, got {d.dtype}")
        # copy out of the memory map: a file truncated later must not fault the process (SIGBUS)
        d = np.array(d, dtype=np.float32)
    elif encoding == "png16":
        data = read_bytes(path)
        w, h, ext = image_size(data, path)
        if ext != "png":
            raise FrameError(path, "png16 depth must be a PNG")
        check_image(data, path, None)
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
        if img is None:
            raise FrameError(path, "PNG cannot be decoded")
        if img.dtype != np.uint16 or img.ndim != 2:
            raise FrameError(path, f"png16 depth must be 16-bit greyscale, got {img.dtype} with shape {img.shape}")
        d = img.astype(np.float32)
    else:  # raw
        size = path.stat().st_size
        if size != height * width * 4:
            expected = height * width * 4
            raise FrameError(
                path, f"raw depth has {size} bytes, expected {expected} ({width}x{height} float32): truncated or wrong size"
            )
        d = np.fromfile(path, dtype="<f4").reshape(height, width)
    if d.shape != (height, width):
        raise FrameError(path, f"depth is {d.shape[1]}x{d.shape[0]} but the RGB frames are {width}x{height}")
    return d


def write_depth_file(path: Path, array: np.ndarray, encoding: str) -> None:
    """Write a depth frame in ``encoding`` (for the engine and tests)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if encoding == "npy":
        with open(path, "wb") as fh:  # a file object: np.save would append ".npy" to other names
            np.save(fh, np.asarray(array), allow_pickle=False)
    elif encoding == "raw":
        np.asarray(array, dtype="<f4").tofile(path)
    elif encoding == "png16":
        ok, buf = cv2.imencode(".png", np.asarray(array, dtype=np.uint16))
        if not ok:
            raise OSError(f"{path}: cannot encode a 16-bit PNG")
        path.write_bytes(buf.tobytes())
    elif encoding == "exr":
        import OpenEXR

        header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
        with OpenEXR.File(header, {"Z": np.ascontiguousarray(array, dtype=np.float32)}) as f:
            f.write(str(path))
    else:
        raise ValueError(f"unknown depth encoding {encoding!r}")
