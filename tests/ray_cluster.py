"""A Ray cluster of local nodes for the tests: ``ray start --block`` per node, each with its own
temporary directory and free ports, stopped by process group id at the end (never ``ray stop``,
which would stop every Ray instance on the machine)."""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from s3_server import free_port

RAY = str(Path(sys.executable).parent / "ray")


def _ports() -> list[str]:
    args = []
    for flag in ("--node-manager-port", "--object-manager-port", "--metrics-export-port",
                 "--dashboard-agent-listen-port", "--dashboard-agent-grpc-port", "--runtime-env-agent-port"):
        args += [flag, str(free_port())]
    return args


def _wait_started(proc: subprocess.Popen, timeout: float) -> str:
    """Read the node's output until Ray says it started; return what it printed."""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    out = b""
    deadline = time.monotonic() + timeout
    while b"Ray runtime started" not in out:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"ray start did not come up:\n{out.decode(errors='replace')[-3000:]}")
        if sel.select(timeout=0.2):
            chunk = os.read(proc.stdout.fileno(), 65536)
            out += chunk
    sel.close()
    return out.decode(errors="replace")




class Node:
    def __init__(self, proc: subprocess.Popen, temp_dir: Path):
        self.proc = proc
        self.temp_dir = temp_dir

    def raylet_pid(self) -> int:
        """The pid of this node's raylet (found under this node's process group)."""
        import psutil

        for p in psutil.Process(self.proc.pid).children(recursive=True):
            try:
                if "raylet" in p.name() or any("raylet" in a and a.endswith("raylet") for a in p.cmdline()[:1]):
                    return p.pid
            except psutil.Error:
                continue
        raise RuntimeError("no raylet found")

    def stop(self) -> None:
        """Kill this node's processes: its process group, and any descendant that left it."""
        import psutil

        try:
            kids = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            kids = []
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for k in kids:
            try:
                k.kill()
            except psutil.Error:
                pass
        self.proc.wait()


def start_node(temp_dir: Path, head_address: str | None, port: int | None = None, timeout: float = 60) -> Node:
    temp_dir.mkdir(parents=True, exist_ok=True)
    cmd = [RAY, "start", "--block", "--num-cpus", "1", "--object-store-memory", str(80 << 20),
           "--temp-dir", str(temp_dir), "--disable-usage-stats"] + _ports()
    if head_address is None:
        cmd += ["--head", "--port", str(port), "--include-dashboard", "false",
                "--ray-client-server-port", str(free_port())]
    else:
        cmd += ["--address", head_address]
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    node = Node(proc, temp_dir)
    try:
        _wait_started(proc, timeout)
    except BaseException:
        node.stop()
        raise
    return node


@contextmanager
def ray_cluster(nodes: int = 2) -> Iterator[tuple[str, list[Node]]]:
    """Start a head node and ``nodes - 1`` more, 1 CPU each; yield (address, nodes); stop them.

    The nodes' temporary directories are made short, under /tmp: Ray's socket paths must fit in
    107 bytes."""
    root = Path(tempfile.mkdtemp(prefix="dav-ray-", dir="/tmp"))
    port = free_port()
    address = f"127.0.0.1:{port}"
    started: list[Node] = []
    try:
        started.append(start_node(root / "head", None, port))
        for i in range(1, nodes):
            started.append(start_node(root / f"node{i}", address))
        yield address, started
    finally:
        for node in reversed(started):
            node.stop()
        shutil.rmtree(root, ignore_errors=True)
