"""Stops what a local Ray instance leaves behind when its driver is killed (``kill -9``).

``ray.init()`` without an address starts a private cluster as children of the driver (GCS,
raylet, monitors) and the raylet starts its own agents (``ray::DashboardAgent``,
``ray::RuntimeEnvAgent``; they run even with ``include_dashboard=False``).  On a normal exit,
or SIGINT/SIGTERM, Ray shuts them all down.  After ``kill -9`` of the driver Ray's own reaper
stops the GCS and the raylet, but the two agents were measured still running minutes later,
re-parented to init.

:func:`start` runs this module as a small watcher process in a session of its own: while the
driver lives it records the driver's descendants that are Ray processes (pid and start time,
``ray`` in the command line) every second; when the
driver's end of a pipe closes (the driver exited, however it died) it sends SIGTERM to every
recorded process still running with the same start time, and SIGKILL to those left after a
grace period.  Processes are matched by pid *and* start time, so a pid reused by an unrelated
process is never signalled.  Linux only (it reads ``/proc``); elsewhere :func:`start` does nothing.
A driver that joins an existing cluster (``--ray-address``) starts nothing, so nothing is watched.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 0.2
GRACE_S = 3.0


def _proc_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, start time in clock ticks) of every running process visible in /proc
    (zombies, which have ended and wait for their parent to collect them, are left out)."""
    out = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            raw = Path(entry.path, "stat").read_bytes()
        except OSError:
            continue
        fields = raw[raw.rfind(b")") + 2:].split()  # after "pid (comm) ": state, ppid, ...
        if fields[0] in (b"Z", b"X"):
            continue
        out[int(entry.name)] = (int(fields[1]), int(fields[19]))
    return out


def descendants(root: int, table: dict[int, tuple[int, int]] | None = None) -> dict[int, int]:
    """pid -> start time of every process below ``root``."""
    table = _proc_table() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, todo = {}, list(children.get(root, []))
    while todo:
        pid = todo.pop()
        out[pid] = table[pid][1]
        todo += children.get(pid, [])
    return out


def _is_ray(pid: int) -> bool:
    try:
        return b"ray" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _alive(seen: dict[int, int]) -> list[int]:
    table = _proc_table()
    return [pid for pid, start in seen.items() if table.get(pid, (0, None))[1] == start]


def watch(driver: int, fd: int) -> None:
    """Record ``driver``'s descendants until ``fd`` reaches end of file, then stop the survivors."""
    me = os.getpid()
    seen: dict[int, int] = {}
    while True:
        seen.update({p: s for p, s in descendants(driver).items() if p != me and p not in seen and _is_ray(p)})
        ready, _, _ = select.select([fd], [], [], POLL_S)
        if ready and not os.read(fd, 4096):
            break
    time.sleep(POLL_S)  # let Ray's own shutdown or reaper go first
    for sig in (signal.SIGTERM, signal.SIGKILL):
        left = _alive(seen)
        for pid in left:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        if not left:
            return
        deadline = time.time() + GRACE_S
        while time.time() < deadline and _alive(seen):
            time.sleep(0.1)


def start() -> subprocess.Popen | None:
    """Start the watcher for this process (call just before a local ``ray.init``: it records
    the processes Ray starts within ``POLL_S`` of their start)."""
    if not sys.platform.startswith("linux") or not os.path.isdir("/proc"):
        return None
    read_end, write_end = os.pipe()
    proc = subprocess.Popen([sys.executable, "-m", "dav_builder.pipeline.ray_reaper", str(os.getpid()),
                             str(read_end)], pass_fds=(read_end,), start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(read_end)
    os.set_inheritable(write_end, False)  # only this process holds it: its exit closes the pipe
    start._keep = write_end  # type: ignore[attr-defined]  # held open for the process's life
    return proc


if __name__ == "__main__":  # pragma: no cover - run by start()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C of the build is the driver's to handle
    watch(int(sys.argv[1]), int(sys.argv[2]))
