"""Long captures in frame ranges: exactly the clips of one pass, cuts near range borders included."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import pytest

from dav_builder.capture.discover import find_captures, open_capture
from dav_builder.pipeline.build import build_dataset
from dav_builder.pipeline.config import load_config
from dav_builder.pipeline.ranges import count_frames, plan_ranges, range_clips
from dav_builder.pipeline.splitter import CaptureSplitter
from dav_builder.render.engine import RenderConfig, render_captures

from capture_fixtures import write_dav_capture

GAPS = (40, 75, 110, 140)  # dropped frames (missing from frames.jsonl): a range border sits on 40 and 140
BLACK = (59, 60, 61)  # a black flash across the border at 60
MISSING = 20  # an RGB file that is gone


@pytest.fixture(scope="module")
def capture(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("long")
    render_captures(root, RenderConfig(scenes=1, frames=180, width=48, height=32, seed=3), progress=False)
    cap = root / "capture000"
    (cap / "rgb" / f"{MISSING:06d}.png").unlink()
    for i in BLACK:
        cv2.imwrite(str(cap / "rgb" / f"{i:06d}.png"), np.zeros((32, 48, 3), np.uint8))
    lines = [ln for ln in (cap / "frames.jsonl").read_text().splitlines() if json.loads(ln)["index"] not in GAPS]
    (cap / "frames.jsonl").write_text("\n".join(lines) + "\n")
    shutil.copy(cap / "depth" / "000100.npy", cap / "depth" / "000101.npy")  # a frozen depth frame
    return root


def panning_capture(root: Path, n: int = 240, gaps: tuple[int, ...] = (), cuts_every: int = 70,
                    flashes: tuple[int, ...] = ()) -> Path:
    """A camera panning over a texture for ``n`` frames, a new place (a colour cut, no hard break)
    every ``cuts_every`` frames, frames ``gaps`` dropped, frames ``flashes`` replaced by another
    image (a flash: two colour changes in a row, which the detector's flash filter merges):
    scenes much longer than the clips."""
    rng = np.random.default_rng(7)
    w, h = 48, 32
    (root / "rgb").mkdir(parents=True)
    (root / "depth").mkdir()
    K = [[40.0, 0, 23.5], [0, 40.0, 15.5], [0, 0, 1]]
    lines = []
    flash = cv2.resize(rng.integers(0, 255, (h // 4, w // 4, 3), dtype=np.uint8), (w, h))
    for i in range(n):
        if i % cuts_every == 0:
            tex = cv2.resize(rng.integers(0, 255, (h // 4, w // 2, 3), dtype=np.uint8), (w * 4, h))
        img = flash if i in flashes else tex[:, (i * 2) % (w * 3): (i * 2) % (w * 3) + w]
        cv2.imwrite(str(root / "rgb" / f"{i:06d}.png"), img)
        np.save(root / "depth" / f"{i:06d}.npy", np.full((h, w), 5.0 + 0.01 * i, np.float32))
        pose = np.eye(4)
        pose[0, 3] = 0.02 * i
        if i not in gaps:
            lines.append(json.dumps({"index": i, "rgb": f"rgb/{i:06d}.png", "depth": f"depth/{i:06d}.npy", "K": K,
                                     "cam_to_world": pose.tolist()}))
    (root / "frames.jsonl").write_text("\n".join(lines) + "\n")
    (root / "capture.json").write_text(json.dumps({
        "format": "dav-capture/1", "engine": "test", "fps": 30, "width": w, "height": h,
        "depth": {"encoding": "npy", "convention": "linear"}}))
    return root


def cfg(**split):
    return load_config(overrides={"clips": {"lengths": [16, 8]}, "split": split, "run": {"executor": "local"},
                                  "shards": {"max_clips": 4}})


def test_every_range_split_gives_the_one_pass_clips(capture):
    ref = find_captures([capture])[0]
    c = cfg()
    one = list(CaptureSplitter(open_capture(ref), c).run())
    summary, clips = one[-1], one[:-1]
    assert len({cl.reason.split(":")[0] for cl in clips if cl.reason}) >= 3  # breaks of several kinds
    total = count_frames(open_capture(ref))
    parallel = 0
    for window in (8, 600):
        c.split.range_sync_frames = window
        for size in (7, 16, 20, 40, 100):
            starts = [s for s, _ in plan_ranges(total, size)]
            ids, frames, owners = [], 0, 0
            for part in range(len(starts)):
                out = list(range_clips(open_capture(ref), c, starts, part, total))
                ids += [cl.clip_id for cl in out[:-1]]
                assert out[-1].clip_ids == [cl.clip_id for cl in out[:-1]]
                frames += out[-1].frames_read
                owners += bool(out[:-1])
            assert ids == summary.clip_ids, (window, size)
            assert frames == summary.frames_read
            parallel = max(parallel, owners)
    assert parallel >= 3  # the ranges really share the work (each hard break hands it over)


def test_ranges_across_long_scenes(tmp_path):
    """Borders inside scenes far longer than a clip: the clip phase comes from the scene's start,
    before the border; only a hard break (the dropped frames) lets a later range take over."""
    root = panning_capture(tmp_path / "pan", gaps=(100, 101, 175))
    ref = find_captures([root])[0]
    c = cfg()
    summary = list(CaptureSplitter(open_capture(ref), c).run())[-1]
    total = count_frames(open_capture(ref))
    owners = 0
    for size in (30, 45, 64, 90):
        starts = [s for s, _ in plan_ranges(total, size)]
        ids = []
        for part in range(len(starts)):
            out = list(range_clips(open_capture(ref), c, starts, part, total))
            ids += [cl.clip_id for cl in out[:-1]]
            owners += part > 0 and bool(out[:-1])
        assert ids == summary.clip_ids, size
    assert owners >= 2


def test_colour_cuts_hand_ranges_over_without_any_hard_break(tmp_path):
    """No dropped, black or unreadable frame at all: only colour cuts (every 50 frames) and flashes
    (single frames of another image, before and after cuts and across range borders), which the
    detector's flash filter merges.  Ranges still take over at colour cuts, with exactly the
    one-pass clips."""
    flashes = (20, 48, 53, 90, 91, 99, 152, 198, 230, 262, 263)
    root = panning_capture(tmp_path / "pan", n=320, cuts_every=50, flashes=flashes)
    ref = find_captures([root])[0]
    c = cfg()
    one = list(CaptureSplitter(open_capture(ref), c).run())
    summary = one[-1]
    assert not any(cl.reason and cl.reason.split(":")[0] in ("black", "unreadable") for cl in one[:-1])
    total = count_frames(open_capture(ref))
    owners = 0
    for size in (17, 30, 45, 50, 64, 90, 120):
        starts = [s for s, _ in plan_ranges(total, size)]
        ids, frames = [], 0
        for part in range(len(starts)):
            out = list(range_clips(open_capture(ref), c, starts, part, total))
            ids += [cl.clip_id for cl in out[:-1]]
            frames += out[-1].frames_read
            owners += part > 0 and bool(out[:-1])
        assert ids == summary.clip_ids, size
        assert frames == summary.frames_read
    assert owners >= 6  # later ranges own clips: colour cuts hand the walk over


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_flashes_cuts_and_breaks_give_the_one_pass_clips(tmp_path, seed):
    """Random captures: flashes, cut spacing, dropped and black frames, minimum scene length and
    clip lengths, cut into ranges of random sizes."""
    import random

    rnd = random.Random(seed)
    n = rnd.randint(120, 220)
    root = panning_capture(tmp_path / "p", n=n, cuts_every=rnd.randint(15, 80),
                           flashes=tuple(sorted(rnd.sample(range(n), rnd.randint(0, 25)))),
                           gaps=tuple(sorted(rnd.sample(range(n), rnd.randint(0, 2)))))
    for i in rnd.sample(range(n), rnd.randint(0, 2)):
        cv2.imwrite(str(root / "rgb" / f"{i:06d}.png"), np.zeros((32, 48, 3), np.uint8))
    c = cfg(min_scene_len=rnd.choice([1, 2, 4, 10]))
    c.clips.lengths = rnd.choice([[16, 8], [8], [12, 5]])
    ref = find_captures([root])[0]
    summary = list(CaptureSplitter(open_capture(ref), c).run())[-1]
    total = count_frames(open_capture(ref))
    for size in rnd.sample(range(5, 100), 3):
        starts = [s for s, _ in plan_ranges(total, size)]
        ids = [cl.clip_id for part in range(len(starts))
               for cl in list(range_clips(open_capture(ref), c, starts, part, total))[:-1]]
        assert ids == summary.clip_ids, size


def test_other_detectors_keep_to_hard_breaks(tmp_path):
    """The adaptive detector's state is not followed: without hard breaks range 0 walks it all."""
    root = panning_capture(tmp_path / "pan", n=200, cuts_every=50)
    ref = find_captures([root])[0]
    c = cfg(detector="adaptive")
    summary = list(CaptureSplitter(open_capture(ref), c).run())[-1]
    total = count_frames(open_capture(ref))
    starts = [s for s, _ in plan_ranges(total, 60)]
    outs = [list(range_clips(open_capture(ref), c, starts, part, total)) for part in range(len(starts))]
    assert [cl.clip_id for out in outs for cl in out[:-1]] == summary.clip_ids
    assert all(not out[:-1] for out in outs[1:])


def test_build_with_ranges_writes_the_one_pass_manifest(capture, tmp_path):
    one = build_dataset([capture], tmp_path / "one", cfg(), progress=False, say=lambda m: None)
    c = cfg(range_frames=20)
    c.run.executor = "auto"  # one worker process per CPU here
    c.run.num_cpus = 2
    ranged = build_dataset([capture], tmp_path / "ranged", c, progress=False, say=lambda m: None)
    assert ranged.stats["executor"] == "processes"
    a = pq.read_table(tmp_path / "one" / "manifest.parquet").to_pylist()
    b = pq.read_table(tmp_path / "ranged" / "manifest.parquet").to_pylist()
    drop = lambda rows: [{k: v for k, v in r.items() if k != "shard"} for r in rows]  # noqa: E731
    assert drop(a) == drop(b)  # every column but the shard names (each range writes its own shards)
    for key in ("frames_read", "frames_in_clips", "frames_not_in_clips", "clips_cut", "clips_written", "captures"):
        assert one.stats[key] == ranged.stats[key], key
    assert len(list((tmp_path / "ranged" / "_state" / "captures").glob("*.json"))) == 9  # 180 - 4 frames, 9 ranges


def test_only_captures_that_may_be_longer_than_a_range_are_counted_and_split(tmp_path):
    from dav_builder.capture.dav import DavCapture
    from dav_builder.capture.discover import find_captures
    from dav_builder.pipeline.build import ranges_planner

    root = write_dav_capture(tmp_path / "caps" / "long", frames=30)
    cap = DavCapture(root)
    assert cap.frame_count_bound() == 30
    with open(root / "frames.jsonl", "a") as fh:
        fh.write("\n\n")  # blank lines: counted by the bound, skipped by the reader
    assert DavCapture(root).frame_count_bound() == 32 and sum(1 for _ in DavCapture(root).frames()) == 30
    (ref,) = find_captures([tmp_path / "caps"])
    c = cfg()
    assert c.split.range_frames == 3000  # on by default, for long captures only
    assert ranges_planner(c, {})(ref) == ((0,), 0)
    c.split.range_frames = 10
    assert ranges_planner(c, {})(ref) == ((0, 10, 20), 30)
    c.split.range_frames = 31  # the bound (32 lines) may be longer than a range: counted, one range
    assert ranges_planner(c, {})(ref) == ((0,), 30)
