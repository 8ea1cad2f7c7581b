"""One writer per dataset: an advisory lock taken where a build (or ``dav-filter apply``) starts.

Two writers on one output would delete each other's partial shards (``recover``), pick the same
shard numbers and leave a manifest that counts clips twice.  So the writer takes an exclusive
``flock`` on a small lock file *beside* the dataset directory, ``<parent>/.<name>.lock`` (beside,
not inside: ``--overwrite`` deletes the directory, and the lock must outlive that), and writes
its holder (host, pid, start time, command) into it.

- A second writer fails at once with :class:`DatasetLocked`, whose message names the holder
  (within half a second when it arrives just as the holder locks or lets go, while the holder
  file is empty; a second writer arriving as the holder lets go takes the lock).
- A lock whose holder died (killed, crashed, machine rebooted) is free: the kernel releases a
  ``flock`` with the last descriptor of the process holding it, so there is no stale-lock
  guessing from pids and no race between two processes taking over the same stale lock; the
  holder information of the dead process is simply overwritten.
- Across machines the lock works where the file system implements ``flock`` across clients
  (Linux NFSv4 and most cluster file systems do; the lock of a host that dies is released when
  its lease expires).

Outputs that are not local paths (``s3://...``, see the object-storage sink) are not locked:
object stores have no advisory locks, and emulating one with a marker object cannot tell a dead
holder from a slow one.  :func:`lock_dataset` returns an inert lock for them and says so in
``reason``; run one writer per object-store output.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import json
import os
import socket
import sys
import time
from pathlib import Path

#: Looks again at a lock held over an empty holder file (its holder between locking and writing
#: its name, or between clearing it and unlocking), this many times, this many seconds apart.
LOCK_RETRIES = 50
LOCK_RETRY_S = 0.01


class DatasetLocked(RuntimeError):
    """Another process is writing the dataset."""


class DatasetLock:
    """An exclusive lock on one dataset output; release it with :meth:`release` or ``with``."""

    def __init__(self, path: Path | None, fd: int | None, reason: str = ""):
        self.path = path
        self._fd = fd
        self.reason = reason
        """Why nothing is locked (a non-local output), else empty."""

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is None:
            return
        import fcntl

        try:
            os.ftruncate(self._fd, 0)  # no holder any more (the file stays: deleting it would race)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "DatasetLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:  # a forgotten lock is released with the object, not leaked
        try:
            self.release()
        except Exception:
            pass


def is_local(out: str | os.PathLike) -> bool:
    """True when ``out`` is a local path (a ``file://`` URL counts as local)."""
    s = os.fspath(out)
    return "://" not in s or s.startswith("file://")


def lock_path(out: str | os.PathLike) -> Path:
    """The lock file of dataset directory ``out``: ``<parent>/.<name>.lock``."""
    s = os.fspath(out)
    if s.startswith("file://"):
        s = s[len("file://"):]
    p = Path(s).absolute()
    p = Path(os.path.normpath(p))
    if p.exists():
        p = p.resolve()  # one lock whatever path (link, relative) names the directory
    return p.parent / f".{p.name}.lock"


def holder_text(info: dict) -> str:
    if not info:
        return "another process (it has not written its name yet)"
    return (f"pid {info.get('pid')} on host {info.get('host')} (since {info.get('started')}; "
            f"{info.get('command', '?')})")


def lock_dataset(out: str | os.PathLike, what: str = "dav-build") -> DatasetLock:
    """Take the writer's lock of dataset ``out`` or raise :class:`DatasetLocked` naming its holder."""
    if not is_local(out):
        return DatasetLock(None, None, reason="not a local path: object stores have no locks (one writer per output)")
    import fcntl

    path = lock_path(out)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        raise DatasetLocked(f"{path}: cannot create the dataset's lock file ({exc.strerror or exc}); "
                            f"is {path.parent} writable?") from None
    # The holder writes its name just after locking and clears it just before unlocking: a lock
    # held over an empty file is looked at again for a moment, so that the message names the
    # holder, or the lock is taken once the holder has let go.
    try:
        for attempt in range(LOCK_RETRIES + 1):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise DatasetLocked(f"{path}: cannot lock the dataset ({exc.strerror or exc})") from None
                raw = os.pread(fd, 65536, 0)
                if raw or attempt == LOCK_RETRIES:
                    try:
                        info = json.loads(raw or b"{}")
                    except ValueError:
                        info = {}
                    raise DatasetLocked(
                        f"{out}: another writer is using this dataset: {holder_text(info)}. Wait for it to "
                        f"finish or stop it; the lock ({path}) is released as soon as that process ends"
                    ) from None
                time.sleep(LOCK_RETRY_S)
    except BaseException:  # not locked: the descriptor goes, whatever stopped us
        os.close(fd)
        raise
    info = {"pid": os.getpid(), "host": socket.gethostname(), "what": what,
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(sys.argv)[:500]}
    data = json.dumps(info).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    return DatasetLock(path, fd)


@contextlib.contextmanager
def sole_writer(out: str | os.PathLike, what: str, error: type[Exception]):
    """Run the body as the only writer of dataset ``out``: the lock is taken first (a second
    writer gets ``error`` naming the holder), and a write that runs out of space becomes one
    ``error`` line naming the path (see :func:`.robust.disk_full_message`)."""
    from dav_builder.pipeline.robust import disk_full_message

    try:
        lock = lock_dataset(out, what)
    except DatasetLocked as exc:
        raise error(str(exc)) from None
    with lock:
        try:
            yield
        except OSError as exc:
            msg = disk_full_message(exc, out)
            if msg is None:
                raise
            raise error(msg) from None
