"""Turning environmental failures into one clear line (shared by the build and ``dav-filter``)."""

from __future__ import annotations

import errno
import os

#: errnos that mean "no room to write": full disk, quota, file size limit.
NO_SPACE = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _no_space_error(exc: BaseException | None) -> OSError | None:
    """The first OSError meaning "no room" in ``exc``'s chain (a failure while cleaning up after
    a full disk is itself a full-disk error, whose context is the first one)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in NO_SPACE:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def disk_full_message(exc: BaseException, out: str | os.PathLike) -> str | None:
    """One line for a write that ran out of space (naming the file, else the output), or None
    when ``exc`` is something else."""
    err = _no_space_error(exc)
    if err is None:
        return None
    where = err.filename or getattr(err, "filename2", None) or os.fspath(out)
    what = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded",
            errno.EFBIG: "file too large for this file system or the process's file size limit"}[err.errno]
    return (f"{where}: {what} while writing {os.fspath(out)}; free space and rerun the same command: "
            "it resumes where this run stopped")
