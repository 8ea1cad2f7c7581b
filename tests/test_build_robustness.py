"""Faults around a build: a second writer, a full disk, a reader or a library raising anything,
and the inputs the outside reliability test found stopping or hanging a build."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from capture_fixtures import default_K, edit_frame, write_dav_capture  # noqa: E402
from dav_builder.capture.base import Capture, FrameError, FrameInfo  # noqa: E402
from dav_builder.capture.dav import DavCapture  # noqa: E402
from dav_builder.capture.discover import Layout, register  # noqa: E402
from dav_builder.pipeline.build import BuildError, build_dataset  # noqa: E402
from dav_builder.pipeline.config import load_config  # noqa: E402
from dav_builder.pipeline.lock import DatasetLocked, lock_dataset, lock_path  # noqa: E402
from dav_builder.shards.tario import iter_tar_samples  # noqa: E402

W, H = 64, 48
REPO = Path(__file__).parents[1]


def cfg(**over):
    o = {"clips": {"lengths": [8, 4]}, "run": {"executor": "local"}, "shards": {"max_clips": 2}}
    o.update(over)
    return load_config(overrides=o)


def rows(ds: Path) -> list[dict]:
    return pq.read_table(ds / "manifest.parquet").to_pylist()


def clips(ds: Path) -> dict:
    return {s.key: s.members() for p in sorted((ds / "shards").rglob("*.tar")) for s in iter_tar_samples(p)}


def env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("rob")
    for i in range(2):
        write_dav_capture(root / f"c{i}", frames=24, width=W, height=H, fps=24.0 + i)
    return root


# -- one writer per dataset ----------------------------------------------------------------------


HOLD = "import sys, time; from dav_builder.pipeline.lock import lock_dataset; l = lock_dataset(sys.argv[1]); " \
       "print('locked', flush=True); time.sleep(600)"


def test_a_second_writer_is_refused_at_once_naming_the_holder(tmp_path, captures):
    out = tmp_path / "ds"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], env=env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        t0 = time.perf_counter()
        with pytest.raises(DatasetLocked, match=rf"pid {holder.pid} on host {os.uname().nodename}"):
            lock_dataset(out)
        with pytest.raises(BuildError, match=rf"another writer .* pid {holder.pid}"):
            build_dataset([captures], out, cfg(), progress=False, say=lambda s: None)
        with pytest.raises(BuildError, match="another writer"):  # --overwrite must not delete under it
            build_dataset([captures], out, cfg(), overwrite=True, progress=False, say=lambda s: None)
        assert time.perf_counter() - t0 < 30  # refused, not waited for
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the holder died: its lock is free, the next writer takes it and names itself
    result = build_dataset([captures], out, cfg(), progress=False, say=lambda s: None)
    assert result.stats["complete"]
    with lock_dataset(out) as lock:
        assert json.loads(lock.path.read_text())["pid"] == os.getpid()


def test_a_stale_lock_file_of_a_dead_process_is_taken_over(tmp_path):
    out = tmp_path / "ds"
    path = lock_path(out)
    path.write_text(json.dumps({"pid": 999999, "host": os.uname().nodename, "started": "yesterday"}))
    with lock_dataset(out) as lock:
        assert lock.held and json.loads(path.read_text())["pid"] == os.getpid()
    assert lock_dataset("s3://bucket/ds").reason.startswith("not a local path")


def test_a_lock_held_over_an_empty_file_is_looked_at_again(tmp_path):
    """The holder writes its name just after locking and clears it just before unlocking: a second
    writer arriving in either moment names the holder, or takes the lock once it is let go."""
    import fcntl
    import threading

    out = tmp_path / "ds"
    path = lock_path(out)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held, its name not yet written

    def write_name():
        time.sleep(0.1)
        os.pwrite(fd, json.dumps({"pid": 4242, "host": "h", "started": "now"}).encode(), 0)

    threading.Thread(target=write_name).start()
    with pytest.raises(DatasetLocked, match="pid 4242"):
        lock_dataset(out)

    def let_go():
        time.sleep(0.1)
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)

    os.ftruncate(fd, 0)  # the holder has cleared its name and is about to unlock
    threading.Thread(target=let_go).start()
    with lock_dataset(out) as lock:
        assert lock.held and json.loads(path.read_text())["pid"] == os.getpid()
    os.close(fd)


def test_two_builds_on_one_output_leave_one_complete_dataset(tmp_path, captures):
    out = tmp_path / "ds"
    first = subprocess.Popen([sys.executable, "-m", "dav_builder.pipeline.cli", str(captures), "--out", str(out),
                              "--local", "-q"], env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and first.poll() is None:  # wait until the first one holds the lock
        try:
            if json.loads(lock_path(out).read_text() or "{}").get("pid") == first.pid:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    second = subprocess.run([sys.executable, "-m", "dav_builder.pipeline.cli", str(captures), "--out", str(out),
                             "--local", "-q"], env=env(), capture_output=True, text=True, timeout=300)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    if second.returncode != 0:  # it ran while the first held the lock
        assert second.returncode == 2 and "another writer" in second.stderr and str(first.pid) in second.stderr
        assert "Traceback" not in second.stderr
    ids = [r["clip_id"] for r in rows(out)]
    assert len(ids) == len(set(ids)) and sorted(ids) == sorted(clips(out)) + sorted(
        r["clip_id"] for r in rows(out) if r["shard"] is None) or len(ids) == len(set(ids))
    assert set(clips(out)) == {r["clip_id"] for r in rows(out) if r["shard"]}


# -- a full disk ----------------------------------------------------------------------------------


def test_a_full_disk_is_one_line_and_a_rerun_completes_exactly(tmp_path, captures):
    ref = tmp_path / "ref"
    build_dataset([captures], ref, cfg(), progress=False, say=lambda s: None)
    biggest = max(p.stat().st_size for p in (ref / "shards").rglob("*.tar"))
    out = tmp_path / "ds"
    cfg_file = tmp_path / "build.yaml"
    cfg_file.write_text("clips:\n  lengths: [8, 4]\nshards:\n  max_clips: 2\n")

    def limit_file_size():  # as a file system with room for less than one shard
        resource.setrlimit(resource.RLIMIT_FSIZE, (biggest // 2, resource.RLIM_INFINITY))

    cmd = [sys.executable, "-m", "dav_builder.pipeline.cli", str(captures), "--out", str(out), "--local", "-q",
           "--config", str(cfg_file)]
    full = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300, preexec_fn=limit_file_size)
    assert full.returncode == 2, full.stderr
    lines = [ln for ln in full.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error")]
    assert len(errors) == 1 and errors[0] == lines[-1] and "Traceback" not in full.stderr, full.stderr
    assert str(out) in errors[0] and "rerun" in errors[0], errors[0]
    assert not (out / "stats.json").exists()
    again = subprocess.run(cmd, env=env(), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert clips(out) == clips(ref)
    strip = lambda rs: sorted((tuple(sorted((k, str(v)) for k, v in r.items())) for r in rs))  # noqa: E731
    assert strip(rows(out)) == strip(rows(ref))


# -- inputs that stopped or hung a build ----------------------------------------------------------


def test_the_reported_inputs_become_rows_with_reasons(tmp_path, captures):
    root = tmp_path / "in"
    write_dav_capture(root / "fps_nan", frames=12, width=W, height=H, meta_overrides={"fps": float("nan")})
    write_dav_capture(root / "fps_inf", frames=12, width=W, height=H, meta_overrides={"fps": float("inf")})
    k0 = write_dav_capture(root / "k_zero_one", frames=12, width=W, height=H)
    edit_frame(k0, 5, K=np.zeros((3, 3)).tolist())
    kall = write_dav_capture(root / "k_zero_all", frames=12, width=W, height=H, K=np.zeros((3, 3)))
    kneg = write_dav_capture(root / "k_negative", frames=12, width=W, height=H)
    edit_frame(kneg, 2, K=(default_K(W, H) * [[-1], [1], [1]]).tolist())
    big = write_dav_capture(root / "index_huge", frames=12, width=W, height=H)
    edit_frame(big, 11, index=2**70)
    fifo = write_dav_capture(root / "fifo_rgb", frames=12, width=W, height=H)
    (fifo / "rgb" / "000003.png").unlink()
    os.mkfifo(fifo / "rgb" / "000003.png")
    pose = write_dav_capture(root / "pose_bad", frames=12, width=W, height=H)
    edit_frame(pose, 4, cam_to_world=np.diag([0.0, 0.0, 0.0, 1.0]).tolist())
    far_away = np.eye(4)
    far_away[0, 3] = 1e300
    edit_frame(pose, 8, cam_to_world=far_away.tolist())
    odd = write_dav_capture(root / "odd", frames=12, width=W, height=H)
    os.rename(os.fsencode(odd), os.fsencode(root / "caf") + b"\xe9")
    for kind in ("png16", "rgba", "grey"):
        cap = write_dav_capture(root / f"rgb_{kind}", frames=12, width=W, height=H)
        import cv2

        for p in sorted((cap / "rgb").iterdir()):
            img = cv2.imread(str(p))
            img = {"png16": img.astype(np.uint16) * 257, "rgba": cv2.cvtColor(img, cv2.COLOR_BGR2BGRA),
                   "grey": cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)}[kind]
            cv2.imwrite(str(p), img)
    out = tmp_path / "ds"
    result = build_dataset([root], out, cfg(), progress=False, say=lambda s: None)  # hangs on the FIFO if unfixed
    assert result.stats["complete"]
    by = {}
    for r in rows(out):
        by.setdefault(r["capture"], []).append(r)
    reasons = {c: " ".join(r["reason"] or "" for r in rs) for c, rs in by.items()}
    assert "capture.json: fps must be a finite number" in reasons["fps_nan"]
    assert "capture.json: fps must be a finite number" in reasons["fps_inf"]
    assert "frames.jsonl:6: K's focal lengths must be positive" in reasons["k_zero_one"]
    assert "K's focal lengths must be positive" in reasons["k_zero_all"]
    assert "frames.jsonl:3: K's focal lengths must be positive, got fx=-" in reasons["k_negative"]
    assert "frames.jsonl:12: index must be an integer in 0..2147483647" in reasons["index_huge"]
    assert "rgb/000003.png: not a regular file (a FIFO)" in reasons["fifo_rgb"]
    assert "cam_to_world is singular" in reasons["pose_bad"] and "is beyond" in reasons["pose_bad"]
    assert "caf\\xe9" in by, list(by)
    assert any(r["shard"] for r in by["caf\\xe9"])
    for kind in ("png16", "rgba", "grey"):  # converted to 8-bit RGB PNGs in the shards
        written = [r for r in by[f"rgb_{kind}"] if r["shard"]]
        assert written
        for tar in {r["shard"] for r in written}:
            for s in iter_tar_samples(out / tar):
                for name, data in s.members():
                    if name.startswith("rgb."):
                        assert data[24] == 8 and data[25] == 2, (kind, name, data[24], data[25])


# -- a reader or a library raising anything -------------------------------------------------------


MARKER = "faulty-reader.json"


class FaultyCapture(Capture):
    """A test reader over a dav capture that fails in the ways a buggy reader or library can."""

    reader = "faulty"

    def __init__(self, path: Path, capture_id: str, opts: dict):
        spec = json.loads((path / MARKER).read_text())
        self.inner = DavCapture(spec["data"], capture_id)
        self.root, self.id, self.mode = Path(path), capture_id, spec["mode"]
        self.fps, self.width, self.height = self.inner.fps, self.inner.width, self.inner.height

    def frames(self) -> Iterator[FrameInfo | FrameError]:
        for info in self.inner.frames():
            if self.mode == "frames_raise" and not isinstance(info, FrameError) and info.index == 14:
                raise RuntimeError("reader bug at frame 14")
            if self.mode == "bad_K" and not isinstance(info, FrameError):  # unchecked values reach scoring
                info = FrameInfo(info.index, info.time, info.rgb, info.depth, np.zeros((3, 3)), info.cam_to_world)
            yield info

    def read_rgb_bytes(self, frame):
        return self.inner.read_rgb_bytes(frame)

    def read_depth(self, frame):
        if self.mode == "depth_raise" and frame.index == 3:
            raise KeyError("decoder bug")
        return self.inner.read_depth(frame)


@pytest.fixture
def faulty_reader():
    from dav_builder.capture.discover import LAYOUTS

    register(Layout("faulty", "test reader that raises", lambda root: sorted(p.parent for p in Path(root).rglob(MARKER)),
                    lambda p, cid, opts: FaultyCapture(p, cid, opts)))
    yield
    LAYOUTS.pop("faulty", None)


def test_any_exception_of_a_reader_or_a_stage_becomes_a_row(tmp_path, faulty_reader):
    root = tmp_path / "in"
    for mode in ("frames_raise", "depth_raise", "bad_K"):
        data = write_dav_capture(tmp_path / "data" / mode, frames=24, width=W, height=H)
        (root / mode).mkdir(parents=True)
        (root / mode / MARKER).write_text(json.dumps({"mode": mode, "data": str(data)}))
    out = tmp_path / "ds"
    build_dataset([root], out, cfg(), progress=False, say=lambda s: None)
    by = {}
    for r in rows(out):
        by.setdefault((r["capture"], r["shard"] is not None), []).append(r)
    assert {c for c, _ in by} == {"frames_raise", "depth_raise", "bad_K"}
    # the reader raised after 14 frames: the clips cut before it are written, the rest is one row
    failed = [r for r in by[("frames_raise", False)] if r["reason"].startswith("capture_error")]
    assert len(failed) == 1 and "unexpected RuntimeError: reader bug at frame 14" in failed[0]["reason"]
    assert by[("frames_raise", True)]
    # one frame's depth decoder raised: that frame's row names the file, the others are written
    bad = [r for r in by[("depth_raise", False)] if "depth/000003.npy" in (r["reason"] or "")]
    assert bad and "unexpected KeyError" in bad[0]["reason"] and bad[0]["frame_indices"] == [3]
    assert by[("depth_raise", True)]
    # scoring raised on every clip of the capture: each clip is a row with the error, none is lost
    scored = by[("bad_K", False)]
    assert scored and all(r["reason"].startswith("processing_error") for r in scored if r["num_frames"] in (8, 4))
    assert not by.get(("bad_K", True))
    frames = sorted(i for r in scored for i in r["frame_indices"])
    assert frames == list(range(24))
