"""dav-build end to end on engine captures, with bad captures planted beside them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import webdataset as wds

from dav_builder.pipeline.build import BuildError, build_dataset
from dav_builder.pipeline.config import load_config
from dav_builder.render.engine import RenderConfig, render_captures
from dav_builder.shards.tario import npy_to_depth

LENGTHS = [16, 8]


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("captures")
    render_captures(root / "engine", RenderConfig(scenes=2, frames=48, width=64, height=48, seed=5), progress=False)
    # a capture whose capture.json is malformed
    bad = root / "broken"
    bad.mkdir()
    (bad / "capture.json").write_text("{ not json")
    (bad / "frames.jsonl").write_text("")
    # a capture with one missing RGB frame and one corrupt depth frame
    holes = root / "holes"
    shutil.copytree(root / "engine" / "capture000", holes)
    (holes / "rgb" / "000010.png").unlink()
    (holes / "depth" / "000030.npy").write_bytes(b"garbage")
    return root


def cfg(executor="local", **over):
    o = {"clips": {"lengths": LENGTHS}, "run": {"executor": executor}, "shards": {"max_clips": 2}}
    o.update(over)
    return load_config(overrides=o)


def manifest(ds: Path) -> list[dict]:
    return pq.read_table(ds / "manifest.parquet").to_pylist()


def test_build_writes_the_format(captures, tmp_path):
    out = tmp_path / "ds"
    result = build_dataset([captures], out, cfg(), progress=False, say=lambda s: None)
    rows = manifest(out)
    ids = [r["clip_id"] for r in rows]
    assert len(ids) == len(set(ids))
    # every frame of every readable capture is in exactly one row
    for cap in ("engine/capture000", "engine/capture001", "holes"):
        frames = sorted(i for r in rows if r["capture"] == cap for i in r["frame_indices"])
        assert frames == list(range(48)), cap
    # the bad capture is a row with a reason naming the file, not a failed build
    broken = [r for r in rows if r["capture"] == "broken"]
    assert len(broken) == 1 and broken[0]["shard"] is None and "capture.json" in broken[0]["reason"]
    assert "malformed JSON" in broken[0]["reason"]
    # the missing and corrupt frames are named
    reasons = " ".join(r["reason"] or "" for r in rows if r["capture"] == "holes")
    assert "000010.png" in reasons and "000030.npy" in reasons
    written = [r for r in rows if r["shard"]]
    assert written, "no clip was written"
    for r in written:
        assert r["bucket"] == f"{r['height']}x{r['width']}-{r['num_frames']}f"
        assert r["num_frames"] in LENGTHS
    stats = json.loads((out / "stats.json").read_text())
    assert stats["clips_cut"] == len(rows) and stats["clips_written"] == len(written)
    assert stats["captures"] == 4 and stats["captures_failed"] == 1
    assert result.stats["complete"] is True
    # the dataset card and the kept lists follow the manifest
    assert "configs:" in (out / "README.md").read_text()
    for bucket in {r["bucket"] for r in written}:
        kept = json.loads((out / "kept" / f"{bucket}.json").read_text())
        assert sorted(kept["keys"]) == sorted(r["clip_id"] for r in written if r["bucket"] == bucket and r["keep"])

    # plain webdataset, with no code from this project, reads every written clip
    seen = {}
    for r in written:
        for sample in wds.WebDataset(str(out / r["shard"]), shardshuffle=False):
            seen[sample["__key__"]] = sample
    assert set(seen) == {r["clip_id"] for r in written}
    r = written[0]
    s = seen[r["clip_id"]]
    meta = json.loads(s["json"])
    assert meta["frame_indices"] == r["frame_indices"] and len(meta["K"]) == r["num_frames"]
    # depth is the default lossless codec, which webdataset's own decoder reads (an .npz)
    assert meta["depth_codec"] == "npz" and stats["depth_codec"] == "npz"
    assert "depth.0000.npy" not in s
    d = wds.autodecode.npz_loads(s["depth.0000.npz"])["depth"]
    assert d.dtype == np.float16 and d.shape == (48, 64)
    np.testing.assert_array_equal(npy_to_depth(s["depth.0000.npz"]), d)
    # depth encoded in the reading threads is the capture's planar metres, as float16
    from dav_builder.capture.dav import DavCapture

    cap = DavCapture(captures / r["capture"])
    info = next(f for f in cap.frames() if f.index == r["first_frame"])
    np.testing.assert_array_equal(d, cap.read_depth(info).astype(np.float16))
    assert s["rgb.0000.png"][:8] == b"\x89PNG\r\n\x1a\n"
    # rgb bytes are the capture's own files, copied untouched
    src = captures / r["capture"] / "rgb" / f"{r['first_frame']:06d}.png"
    assert s["rgb.0000.png"] == src.read_bytes()


def test_rerun_of_finished_build_does_nothing(captures, tmp_path):
    out = tmp_path / "ds"
    build_dataset([captures / "engine"], out, cfg(), progress=False, say=lambda s: None)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = build_dataset([captures / "engine"], out, cfg(), progress=False, say=lambda s: None)
    assert again.skipped
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
    with pytest.raises(BuildError, match="other inputs or settings"):
        build_dataset([captures / "engine"], out, cfg(clips={"lengths": [8]}), progress=False, say=lambda s: None)


def test_recovery_from_partial_state(captures, tmp_path):
    """A partial shard and a complete shard without its record are redone, not duplicated."""
    ref = tmp_path / "ref"
    build_dataset([captures / "engine"], ref, cfg(), progress=False, say=lambda s: None)
    out = tmp_path / "crashed"
    shutil.copytree(ref, out)
    (out / "stats.json").unlink()
    # forget the last capture and the last shard record of each bucket, as a crash would
    for rec in sorted((out / "_state" / "captures").glob("*.json"))[-1:]:
        rec.unlink()
    for bucket in (out / "_state" / "shards").iterdir():
        sorted(bucket.glob("*.json"))[-1].unlink()
    bucket_dir = next((out / "shards").iterdir())
    (bucket_dir / ".999999.tar.partial").write_bytes(b"half a tar")
    build_dataset([captures / "engine"], out, cfg(), progress=False, say=lambda s: None)
    a, b = manifest(ref), manifest(out)
    assert sorted(r["clip_id"] for r in a) == sorted(r["clip_id"] for r in b)
    assert len({r["clip_id"] for r in b}) == len(b)
    assert not list(out.rglob("*.partial"))
    shard_keys = []
    for tar in (out / "shards").rglob("*.tar"):
        shard_keys += [s["__key__"] for s in wds.WebDataset(str(tar), shardshuffle=False)]
    assert sorted(shard_keys) == sorted(r["clip_id"] for r in b if r["shard"])


def test_killed_build_resumes_without_duplicates_or_losses(captures, tmp_path):
    ref = tmp_path / "ref"
    build_dataset([captures], ref, cfg(shards={"max_clips": 1}), progress=False, say=lambda s: None)
    out = tmp_path / "killed"
    config = tmp_path / "c.yaml"
    config.write_text("clips: {lengths: [16, 8]}\nshards: {max_clips: 1}\n")
    cmd = [sys.executable, "-m", "dav_builder.pipeline.cli", str(captures), "--out", str(out), "--config", str(config),
           "--local", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "_state" / "shards").glob("*/*.json"))) < 3:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (out / "stats.json").exists(), "the build finished before it could be killed"
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    a, b = manifest(ref), manifest(out)
    assert sorted(r["clip_id"] for r in a) == sorted(r["clip_id"] for r in b)
    assert len({r["clip_id"] for r in b}) == len(b)
    keys = []
    for tar in (out / "shards").rglob("*.tar"):
        keys += [s["__key__"] for s in wds.WebDataset(str(tar), shardshuffle=False)]
    assert sorted(keys) == sorted(r["clip_id"] for r in b if r["shard"])


@pytest.mark.slow
def test_ray_executor_matches_local_and_ray_reads_the_shards(captures, tmp_path, monkeypatch):
    import ray

    from dav_builder.pipeline.executors import task_runtime_env

    monkeypatch.setenv("AWS_DAV_TEST_AT_START", "1")  # object-store settings present when Ray starts
    local, distributed = tmp_path / "local", tmp_path / "ray"
    build_dataset([captures], local, cfg(), progress=False, say=lambda s: None)
    c = cfg("ray")
    c.run.num_cpus = 2
    c.run.object_store_mb = 256
    try:
        stats = build_dataset([captures], distributed, c, progress=False, say=lambda s: None).stats
        assert stats["ray_start_seconds"] > 0 and stats["seconds_after_ray_start"] > 0
        a, b = manifest(local), manifest(distributed)
        key = lambda r: r["clip_id"]  # noqa: E731
        assert [(r["clip_id"], r["keep"], r["reason"]) for r in sorted(a, key=key)] == \
               [(r["clip_id"], r["keep"], r["reason"]) for r in sorted(b, key=key)]
        bucket = next(r["bucket"] for r in b if r["shard"])
        rows = ray.data.read_webdataset(str(distributed / "shards" / bucket)).take_all()
        assert {r["__key__"] for r in rows} == {r["clip_id"] for r in b if r["bucket"] == bucket and r["shard"]}
        # the workers of the Ray instance the build started inherited the settings: no runtime env
        # needed; settings that change after the start travel with the tasks

        @ray.remote
        def seen(name):
            return os.environ.get(name)

        assert task_runtime_env() is None
        assert ray.get(seen.remote("AWS_DAV_TEST_AT_START")) == "1"
        monkeypatch.setenv("AWS_DAV_TEST_LATER", "2")
        env = task_runtime_env()
        assert env is not None and env["env_vars"]["AWS_DAV_TEST_LATER"] == "2"
        assert ray.get(seen.options(runtime_env=env).remote("AWS_DAV_TEST_LATER")) == "2"
    finally:
        ray.shutdown()


def test_ray_tasks_read_with_one_thread_per_ray_cpu_unless_configured():
    from dav_builder.pipeline.executors import task_threads

    auto = cfg()
    assert auto.split.read_threads == 0
    assert task_threads(auto, 1.0).split.read_threads == 1
    assert task_threads(auto, 2.0).split.read_threads == 2
    assert auto.split.read_threads == 0  # the build's own config is left as it was
    fixed = cfg()
    fixed.split.read_threads = 3
    assert task_threads(fixed, 1.0).split.read_threads == 3


def test_frames_decoded_ahead_are_bounded_by_memory():
    from dav_builder.pipeline.splitter import frames_ahead

    assert frames_ahead(352, 640, 2, 256) == 32  # small frames: the per-thread cap
    assert frames_ahead(2160, 3840, 2, 256) == 4  # 4K: 2 per thread, whatever the budget says
    assert frames_ahead(1080, 1920, 2, 256) == 12  # about 256 MB at 10 bytes per pixel


def test_depth_is_encoded_while_reading_only_when_buckets_keep_the_size():
    from dav_builder.pipeline.config import load_config
    from dav_builder.pipeline.splitter import read_plan

    assert read_plan(load_config()).encode_depth
    assert not read_plan(load_config(overrides={"buckets": {"mode": "resize", "sizes": [[64, 96]]}})).encode_depth
    # the fine frames are kept while a check looks at them: the lag pairs, static_overlay or
    # depthless_content
    off = {"scoring": {"lag_pairs": 0, "static_overlay": {"enabled": False}, "depthless_content": {"enabled": False}}}
    assert read_plan(load_config()).fine_side == 256 and read_plan(load_config(overrides=off)).fine_side == 0
    assert read_plan(load_config(overrides={"scoring": {"lag_pairs": 0}})).fine_side == 256
    only_depthless = {"scoring": {"lag_pairs": 0, "static_overlay": {"enabled": False}}}
    assert read_plan(load_config(overrides=only_depthless)).fine_side == 256


def test_rebuild_gives_byte_identical_shards_card_and_lists(captures, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for out in (a, b):
        build_dataset([captures / "engine"], out, cfg(), progress=False, say=lambda s: None)
    paths = sorted(p.relative_to(a).as_posix() for p in a.rglob("*")
                   if p.is_file() and (p.suffix == ".tar" or p.name == "README.md" or p.parent.name == "kept"))
    assert any(p.endswith(".tar") for p in paths) and "README.md" in paths
    for rel in paths:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
