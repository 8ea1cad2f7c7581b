"""After kill -9 of a Ray build, no process of its private Ray instance stays behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from capture_fixtures import write_dav_capture  # noqa: E402
from dav_builder.pipeline.ray_reaper import _alive, _proc_table, descendants  # noqa: E402

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the watcher reads /proc")


def _ray_descendants(pid: int) -> dict[int, int]:
    table = _proc_table()
    out = {}
    for p, start in descendants(pid, table).items():
        try:
            if b"ray" in Path(f"/proc/{p}/cmdline").read_bytes():
                out[p] = start
        except OSError:
            pass
    return out


def test_kill_9_of_a_ray_build_leaves_no_ray_process(tmp_path):
    for i in range(4):
        write_dav_capture(tmp_path / "in" / f"c{i}", frames=48, width=64, height=48)
    (tmp_path / "build.yaml").write_text("run:\n  num_cpus: 2\n  object_store_mb: 200\nclips:\n  lengths: [8, 4]\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]))
    driver = subprocess.Popen([sys.executable, "-m", "dav_builder.pipeline.cli", str(tmp_path / "in"), "--out",
                               str(tmp_path / "ds"), "--config", str(tmp_path / "build.yaml"), "-q"],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen: dict[int, int] = {}
    deadline = time.time() + 120
    try:
        while time.time() < deadline and driver.poll() is None:
            seen.update(_ray_descendants(driver.pid))
            names = {Path(f"/proc/{p}/cmdline").read_bytes() for p in _alive(seen)} if seen else set()
            if any(b"DashboardAgent" in n or b"RuntimeEnvAgent" in n for n in names):
                break
            time.sleep(0.05)
        assert seen, "the build started no Ray process"
        time.sleep(1.0)  # the watcher records a new process within 0.2 s
        seen.update(_ray_descendants(driver.pid))
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    deadline = time.time() + 60
    while time.time() < deadline and _alive(seen):
        time.sleep(0.2)
    left = _alive(seen)
    names = []
    for p in left:
        try:
            names.append(Path(f"/proc/{p}/cmdline").read_bytes()[:80])
        except OSError:
            pass
    for p in left:  # leave nothing behind whatever the outcome
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    assert not left, names
