"""The streaming splitter on in-memory captures: every frame ends in exactly one row."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from memory_capture import FakeFrame, MemoryCapture  # noqa: E402

from dav_builder.clip import Clip  # noqa: E402
from dav_builder.pipeline.config import BuildConfig, load_config  # noqa: E402
from dav_builder.pipeline.splitter import CaptureSplitter, CaptureSummary  # noqa: E402


def run(frames, lengths=(8, 4), **split):
    cfg = load_config(overrides={"clips": {"lengths": list(lengths)}, "split": split})
    out = list(CaptureSplitter(MemoryCapture(frames), cfg).run())
    summary = out[-1]
    assert isinstance(summary, CaptureSummary)
    clips = [c for c in out[:-1] if isinstance(c, Clip)]
    return clips, summary


def covered(clips):
    return sorted(i for c in clips for i in c.frame_indices)


def test_single_scene_is_cut_greedily_and_accounts_for_every_frame():
    clips, summary = run([FakeFrame(i) for i in range(23)])
    written = [c for c in clips if c.loaded]
    assert [c.num_frames for c in written] == [8, 8, 4]
    assert [c.reason for c in clips if not c.loaded] == ["too_short"]
    assert covered(clips) == list(range(23))
    assert summary.frames_read == 23 and summary.frames_in_clips == 20
    assert summary.frames_dropped == {"too_short": 3}
    assert len(set(summary.clip_ids)) == len(clips)


def test_colour_cut_splits_scene():
    frames = [FakeFrame(i, colour=(200, 40, 40)) for i in range(12)]
    frames += [FakeFrame(i, colour=(30, 200, 90)) for i in range(12, 24)]
    clips, _ = run(frames)
    written = [c for c in clips if c.loaded]
    # no clip mixes frames from both sides of the cut at frame 12
    for c in written:
        assert max(c.frame_indices) < 12 or min(c.frame_indices) >= 12
    assert [c.frame_indices[0] for c in written] == [0, 8, 12, 20]


def test_pose_jump_and_index_gap_break_scenes():
    frames = [FakeFrame(i, pose_z=0.1 * i) for i in range(10)]
    frames += [FakeFrame(i, pose_z=100 + 0.1 * i) for i in range(10, 20)]  # teleport
    frames += [FakeFrame(i, pose_z=100 + 0.1 * i) for i in range(25, 33)]  # five dropped frames
    clips, _ = run(frames, detector="none")
    starts = [c.frame_indices[0] for c in clips if c.loaded]
    # scenes 0-9, 10-19 and 25-32: one 8-frame clip each, the two leftover frames too short
    assert starts == [0, 10, 25]
    assert [c.frame_indices for c in clips if c.reason == "too_short"] == [[8, 9], [18, 19]]
    for c in clips:
        if c.loaded:
            assert c.frame_indices == list(range(c.frame_indices[0], c.frame_indices[0] + c.num_frames))


def test_bad_frames_become_rows_and_good_frames_survive():
    frames = [FakeFrame(i) for i in range(30)]
    frames[9].broken = "file"
    frames[10].broken = "file"
    frames[20].broken = "metadata"
    clips, summary = run(frames, detector="none")
    bad = [c for c in clips if c.reason and c.reason.startswith("unreadable")]
    assert len(bad) == 1 and bad[0].frame_indices == [9, 10]
    assert "rgb/9.png" in bad[0].reason and "truncated" in bad[0].reason
    assert any(c.reason and c.reason.startswith("bad_metadata") and c.frame_indices == [20] for c in clips)
    assert covered(clips) == list(range(30))
    assert sum(c.num_frames for c in clips if c.loaded) == summary.frames_in_clips == 8 + 8 + 8


def test_black_fade_and_frozen_depth_frames_are_dropped():
    frames = [FakeFrame(i, colour=(150, 150, 150)) for i in range(12)]
    frames += [FakeFrame(12, colour=(60, 60, 60)), FakeFrame(13, colour=(1, 1, 1)), FakeFrame(14, colour=(0, 0, 0))]
    frames += [FakeFrame(i, colour=(150, 150, 150)) for i in range(15, 27)]
    frames += [FakeFrame(i, colour=(150, 150, 150), frozen_like=26) for i in range(27, 31)]
    clips, summary = run(frames, detector="none")
    reasons = {c.reason: c.frame_indices for c in clips if c.reason and c.reason != "too_short"}
    assert reasons["fade"] == [12]
    assert reasons["black"] == [13, 14]
    assert reasons["frozen_depth"] == [27, 28, 29, 30]
    assert covered(clips) == list(range(31))
    assert summary.frames_dropped["frozen_depth"] == 4


def test_skip_ids_suppress_done_clips_but_keep_them_in_summary():
    frames = [FakeFrame(i) for i in range(16)]
    cfg = load_config(overrides={"clips": {"lengths": [8]}})
    first = [c for c in CaptureSplitter(MemoryCapture(frames), cfg).run() if isinstance(c, Clip)]
    skip = frozenset({first[0].clip_id})
    again = list(CaptureSplitter(MemoryCapture(frames), cfg, skip).run())
    assert [c.clip_id for c in again[:-1]] == [first[1].clip_id]
    assert again[-1].clip_ids == [c.clip_id for c in first]


def test_clip_ids_are_stable():
    frames = [FakeFrame(i) for i in range(16)]
    a, _ = run(frames)
    b, _ = run(frames)
    assert [c.clip_id for c in a] == [c.clip_id for c in b]
    assert all("." not in c.clip_id for c in a)


def test_config_rejects_unknown_keys():
    from dav_builder.pipeline.config import ConfigError

    with pytest.raises(ConfigError, match="unknown key"):
        load_config(overrides={"split": {"detektor": "content"}})
    assert isinstance(load_config(), BuildConfig)
