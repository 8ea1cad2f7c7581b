"""Logging of the commands: ``--log-level``, lines that do not break progress bars, and quiet
third-party libraries.

Our messages go to standard error through ``tqdm.write`` (a bar in progress is redrawn below the
line instead of being cut); info lines are the message alone, warnings and errors carry their
level.  Libraries that print banners of no use to a user are set to ERROR unless the level is
``debug``: Ray's note that token authentication is on for the local cluster it starts (the
authentication stays as Ray chose; only the note goes), and Ray Data's execution chatter.
pybullet's "build time" line is printed by its C code on import; :func:`quiet_fds` hides it
(see :mod:`dav_builder.render.backend`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from typing import Iterator

LOG_LEVELS = ("debug", "info", "warning", "error")
QUIET_LOGGERS = ("ray._private.authentication", "ray.data", "ray._private.worker", "ray.util.spark")


class TqdmHandler(logging.Handler):
    """Write records with ``tqdm.write`` to standard error."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        return msg if record.levelno == logging.INFO else f"{record.levelname.lower()}: {msg}"


def setup_logging(level: str = "info") -> None:
    """Send the ``dav_builder`` loggers to standard error at ``level``; quiet the noisy libraries."""
    lvl = getattr(logging, level.upper())
    logger = logging.getLogger("dav_builder")
    for h in list(logger.handlers):
        if isinstance(h, TqdmHandler):
            logger.removeHandler(h)
    handler = TqdmHandler()
    handler.setFormatter(_Format())
    logger.addHandler(handler)
    logger.setLevel(lvl)
    logger.propagate = False
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if lvl <= logging.DEBUG else logging.ERROR)


@contextlib.contextmanager
def quiet_fds() -> Iterator[None]:
    """Send this process's file descriptors 1 and 2 to /dev/null for the block (for C libraries
    that print on import); Python's own streams are flushed first and restored after."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    saved = []
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:  # pragma: no cover
        yield
        return
    try:
        for fd in (1, 2):
            try:
                saved.append((fd, os.dup(fd)))
                os.dup2(devnull, fd)
            except OSError:
                pass
        yield
    finally:
        for fd, copy in saved:
            os.dup2(copy, fd)
            os.close(copy)
        os.close(devnull)
