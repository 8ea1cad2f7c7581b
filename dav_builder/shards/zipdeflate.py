"""One-member deflated zip files (the ``npz`` depth codec's container), written directly.

:mod:`zipfile` compresses with the standard library's zlib, which spends 5 to 7 ms on each
640x352 float16 depth frame that hardly compresses (smooth curved surfaces: deflate finds few
repeats, see docs/benchmarks.md) and was the largest single cost of a build.  Intel's ISA-L
deflate (the ``isal`` package) writes a standard deflate stream 4x to 7x faster at the same or a
better ratio on those frames and on rendered ones, and any inflater (numpy's ``np.load``,
webdataset, ``unzip``) reads it.  :mod:`zipfile` cannot take an already compressed stream, so
the zip's three records (local header, central directory, end record) are written here: a single
member, no ZIP64 (a depth frame is far below 4 GiB), fixed metadata (1980-01-01, mode 0644, Unix)
so equal input gives equal bytes on every run.

Without ``isal`` (it is a dependency, but a wheel may be missing on some platform) the standard
zlib at level 1 is used: the same container, other bytes.
"""

from __future__ import annotations

import struct
import zlib

try:  # a dependency; the fallback keeps an exotic platform working, only slower
    from isal import isal_zlib as _isal
except ImportError:  # pragma: no cover - exercised only where the wheel is missing
    _isal = None

ISAL_LEVEL = 2
"""ISA-L level (0-3): 2 gave the best ratio per millisecond on hard and on rendered depth."""
ZLIB_LEVEL = 1
"""zlib level used when ``isal`` is missing or a zlib level is asked for."""

_DOS_DATE = (0 << 9) | (1 << 5) | 1  # 1980-01-01
_DOS_TIME = 0
_VERSION = 20  # 2.0: deflate
_MADE_BY = (3 << 8) | _VERSION  # Unix
_MODE = 0o100644 << 16


def deflate_engine() -> str:
    """``isal`` or ``zlib``: the deflate used by default here."""
    return "isal" if _isal is not None else "zlib"


def deflate_raw(data: bytes, level: int | None = None, engine: str | None = None) -> bytes:
    """A raw deflate stream (no zlib header) of ``data``.  ``engine``: ``isal`` (levels 0-3) or
    ``zlib`` (levels 0-9); None = the default engine at its default level."""
    engine = engine or deflate_engine()
    if engine == "isal":
        if _isal is None:
            raise RuntimeError("the isal package is not installed: pip install isal")
        return _isal.compress(data, ISAL_LEVEL if level is None else level, wbits=-15)
    if engine != "zlib":
        raise ValueError(f"deflate engine must be isal or zlib, got {engine!r}")
    c = zlib.compressobj(ZLIB_LEVEL if level is None else level, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def zip_one(name: str, data: bytes, level: int | None = None, engine: str | None = None) -> bytes:
    """A zip archive holding ``data`` as the single deflated member ``name`` (ASCII)."""
    packed = deflate_raw(data, level, engine)
    fname = name.encode("ascii")
    crc = (_isal.crc32(data) if _isal is not None else zlib.crc32(data)) & 0xFFFFFFFF  # the same CRC-32
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, _VERSION, 0, 8, _DOS_TIME, _DOS_DATE,
                        crc, len(packed), len(data), len(fname), 0) + fname
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, _MADE_BY, _VERSION, 0, 8, _DOS_TIME, _DOS_DATE,
                          crc, len(packed), len(data), len(fname), 0, 0, 0, 0, _MODE, 0) + fname
    offset = len(local) + len(packed)
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), offset, 0)
    return b"".join((local, packed, central, end))
