"""Reading frames safely: paths that stay inside a capture, images checked before decoding,
depth files in every encoding of CAPTURE_FORMAT.md.  Every failure is a :class:`FrameError`
that names the file and the problem.
"""

from __future__ import annotations

import functools
import io
import os
import stat
import struct
from pathlib import Path

import cv2
import numpy as np

from dav_builder.capture.base import FrameError

try:  # a dependency; without it (an exotic platform) PNGs decode through OpenCV, only slower
    from imagecodecs import png_decode as _png_decode
except ImportError:  # pragma: no cover - exercised only where the wheel is missing
    _png_decode = None

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
    if "\x00" in rel:
        raise FrameError(root, f"frame path {rel!r} holds a NUL character")
    try:
        os.fsencode(rel)
    except UnicodeError:
        raise FrameError(root, f"frame path {rel!r} cannot be encoded as a file name") from None
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


def file_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as a frame file (missing, not a regular file), or None.

    A FIFO, socket or device named as a frame would block or stream forever: only regular
    files (or links to them) are read."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "file is missing"
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        return f"cannot read file: {getattr(exc, 'strerror', None) or exc}"
    if not stat.S_ISREG(st.st_mode):
        return f"not a regular file ({_file_kind(st.st_mode)})"
    return None


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a plain file"


def read_bytes(path: Path, max_bytes: int = 1 << 31) -> bytes:
    """The file's bytes; FrameError when it is missing, not a regular file, unreadable or empty.

    The file is opened without blocking and checked on the open descriptor, so a FIFO put in
    place of a file (even between a check and the open) is refused instead of hanging."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FrameError(path, "file is missing") from None
    except (OSError, ValueError) as exc:
        raise FrameError(path, f"cannot read file: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FrameError(path, f"not a regular file ({_file_kind(st.st_mode)})")
        if st.st_size > max_bytes:
            raise FrameError(path, f"file of {st.st_size} bytes is larger than the limit of {max_bytes}")
        # read what fstat says (plus a byte, to see a file that grew), never the limit: a read of
        # ``max_bytes`` allocates that much first, which cost more than the read itself
        want = min((st.st_size if st.st_size > 0 else max_bytes) + 1, max_bytes + 1)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(want)
            if len(data) == want < max_bytes + 1:  # more than fstat said (growing, or a stale size)
                data += fh.read(max_bytes + 1 - len(data))
    except OSError as exc:
        raise FrameError(path, f"cannot read file: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if not data:
        raise FrameError(path, "file is empty")
    if len(data) > max_bytes:
        raise FrameError(path, f"file is larger than the limit of {max_bytes} bytes")
    return data


def image_size(data: bytes, path: str | Path) -> tuple[int, int, str]:
    """(width, height, "png" | "jpg") read from the header only, without decoding."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise FrameError(path, "truncated PNG header")
        w, h = struct.unpack(">II", data[16:24])
        return int(w), int(h), "png"
    if data[:2] == b"\xff\xd8":
        try:
            i = _jpeg_frame_header(data, strict=True)
        except ValueError as exc:
            raise FrameError(path, str(exc)) from None
        if i is None:
            raise FrameError(path, "truncated JPEG: no frame header")
        h, w = struct.unpack(">HH", data[i + 5 : i + 9])
        return int(w), int(h), "jpg"
    raise FrameError(path, "not a PNG or JPEG image")


def pixel_format(data: bytes) -> tuple[int, int]:
    """(bits per sample, channels) from a PNG or JPEG header already checked by :func:`image_size`.

    PNG colour types: 0 grey (1 channel), 2 RGB (3), 3 palette (1 index), 4 grey + alpha (2),
    6 RGBA (4).  JPEG: sample precision and component count of the frame header.
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        bits, ctype = data[24], data[25]
        return int(bits), {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(int(ctype), 0)
    i = _jpeg_frame_header(data, strict=False)
    return (0, 0) if i is None else (int(data[i + 4]), int(data[i + 9]))


def _jpeg_frame_header(data: bytes, strict: bool) -> int | None:
    """Offset of a JPEG's frame header (SOFn marker), walking the marker segments from byte 2;
    None when the data ends first.  ``strict``: a byte where a marker should start that is not
    0xFF raises ValueError (a corrupt stream); otherwise it is read as a marker all the same."""
    i = 2
    while i + 9 < len(data):
        if strict and data[i] != 0xFF:
            raise ValueError("corrupt JPEG marker stream")
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte before a marker
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        seg = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return i
        i += 2 + seg
    return None


def is_rgb8(data: bytes) -> bool:
    """True for an 8-bit, 3-channel PNG (colour type 2) or JPEG: what the dataset stores as is."""
    bits, channels = pixel_format(data)
    return bits == 8 and channels == 3


def as_rgb8(data: bytes, path: str | Path, ext: str) -> tuple[bytes, str]:
    """The image as the dataset stores it: 8-bit RGB.  Other PNG or JPEG kinds (16-bit, grey,
    palette, RGBA, CMYK) are decoded once to 8-bit RGB (alpha dropped, 16 bits scaled down) and
    stored as PNG; an 8-bit RGB image is returned untouched."""
    if is_rgb8(data):
        return data, ext
    img = _imdecode(data, path, cv2.IMREAD_COLOR)  # 8-bit BGR whatever the source
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise FrameError(path, "image cannot be converted to 8-bit RGB")
    return buf.tobytes(), "png"


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


def png_rgb(data: bytes, width: int | None = None, height: int | None = None) -> np.ndarray | None:
    """An 8-bit RGB PNG decoded by libpng through ``imagecodecs`` (uint8 HxWx3, RGB order), or None
    where that does not apply (not 8-bit RGB, a transparency chunk that makes it RGBA, data libpng
    refuses, no ``imagecodecs``): the caller then decodes with OpenCV, which reports the error.

    Why not OpenCV for these: the same libpng with a faster inflate (imagecodecs' build) decodes
    a 640x352 frame in about 3 ms against OpenCV's 4 ms here, the same pixels (PNG is lossless;
    neither applies gamma), and PNG decoding is the largest single cost of a build
    (docs/benchmarks.md).  It releases the GIL, so reading threads still decode in parallel."""
    if _png_decode is None or not is_rgb8(data):
        return None
    try:
        img = _png_decode(data)
    except Exception:  # imagecodecs' PngError and the like: OpenCV decides and names the problem
        return None
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        return None
    if width is not None and height is not None and img.shape[:2] != (height, width):
        return None
    return img


def _decode_any(data: bytes, path: str | Path, ext: str, width: int, height: int, flags: int) -> tuple[np.ndarray, bool]:
    """``(image, is_rgb)``: a PNG through :func:`png_rgb` (RGB order) where it applies, otherwise
    OpenCV's decode with ``flags`` (BGR order)."""
    if ext == "png" and flags == cv2.IMREAD_COLOR:
        img = png_rgb(data, width, height)
        if img is not None:
            return img, True
    return _imdecode(data, path, flags), False


def decode_rgb(data: bytes, path: str | Path, expect_size=None, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an 8-bit RGB image (uint8 HxWx3, RGB order)."""
    w, h, ext = image_size(data, path)
    check_image(data, path, expect_size, max_pixels)
    img, is_rgb = _decode_any(data, path, ext, w, h, cv2.IMREAD_COLOR)
    return img if is_rgb else cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


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
    and the RGB reduced to at most ``fine_side`` (both uint8 HxWx3, RGB order); either is None
    when its side is 0.

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
    img, is_rgb = _decode_any(data, path, ext, w, h, flags)
    img = _halve_towards(img, need)
    small = None
    if small_side > 0:
        small = _reduce(img, small_side)
        small = small if is_rgb else cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
    fine = None
    if fine_side > 0:
        fine = _reduce(img, fine_side)
        fine = fine if is_rgb else cv2.cvtColor(fine, cv2.COLOR_BGR2RGB)
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


def npy_from_bytes(data: bytes, path: Path) -> np.ndarray:
    """A 2-D float16/32/64 ``.npy`` file's array as float32, parsed from its bytes (read whole
    once: a file truncated or replaced later cannot fault the process, as a memory map could).
    The header is checked against the bytes before anything is allocated, so a crafted shape
    cannot make it allocate more than the file holds; nothing is unpickled.  A float32 file's
    array is a read-only view of ``data`` (no copy)."""
    fmt = np.lib.format
    buf = io.BytesIO(data)
    try:
        version = fmt.read_magic(buf)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(buf)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(buf)
        else:
            raise ValueError(f"npy format version {version[0]}.{version[1]} is not supported")
    except Exception as exc:  # ValueError, EOFError, or what a corrupt header makes numpy raise
        raise FrameError(path, f"npy cannot be read (truncated or corrupt): {exc}") from None
    if len(shape) != 2:
        raise FrameError(path, f"npy depth must be 2-D, got shape {shape}")
    if dtype not in (np.float16, np.float32, np.float64):
        raise FrameError(path, f"npy depth must be float16 or float32, got {dtype}")
    count = int(shape[0]) * int(shape[1])
    offset = buf.tell()
    if len(data) - offset < count * dtype.itemsize:
        raise FrameError(path, f"npy cannot be read (truncated or corrupt): {len(data) - offset} bytes of data "
                               f"for shape {shape} of {dtype}")
    d = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(shape, order="F" if fortran else "C")
    return d if d.dtype == np.float32 else d.astype(np.float32)


def read_depth_file(path: Path, encoding: str, height: int, width: int) -> np.ndarray:
    """Read one stored depth frame as float32 (stored values, not yet converted)."""
    path = Path(path)
    if encoding not in DEPTH_ENCODINGS:
        raise FrameError(path, f"unknown depth encoding {encoding!r}")
    problem = file_problem(path)
    if problem:
        raise FrameError(path, problem)
    if path.stat().st_size == 0:
        raise FrameError(path, "file is empty")
    if encoding == "exr":
        d = _read_exr(path, height, width)
    elif encoding == "npy":
        d = npy_from_bytes(read_bytes(path), path)
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
