"""The dataset card and kept lists: Hugging Face ``datasets``, plain webdataset and Ray Data read a
dav-build dataset whole (every frame of every bucket) and kept clips only, with no code of ours."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

from dav_builder.clip import bucket_name
from dav_builder.shards import BucketShardWriter, ShardLimits, clip_row, write_manifest
from dav_builder.shards.card import bucket_summaries, write_dataset_card
from dav_builder.shards.tario import pack_depth
from tests.synthetic_dataset import analytic_clip

BUCKETS = ((32, 48, 6, 5), (32, 48, 3, 4))  # (height, width, frames, clips): two lengths, one size


def write_dataset(out: Path, codec: str, all_kept_bucket: str | None = None) -> tuple[Path, dict]:
    """A small dataset, every second clip dropped (except in ``all_kept_bucket``), depth in ``codec``;
    returns the path and each clip's float32 depth as written."""
    rows, depth = [], {}
    n = 0
    for height, width, frames, count in BUCKETS:
        bucket = bucket_name(height, width, frames)
        writer = BucketShardWriter(out, bucket, ShardLimits(max_clips=2))
        for i in range(count):
            clip = analytic_clip(f"synthetic/{n:03d}", 0, frames, height, width, n)
            if i % 2 and bucket != all_kept_bucket:
                clip.drop("depth_lag: planted")
            depth[clip.clip_id] = clip.depth.astype(np.float16).astype(np.float32)
            pack_depth(clip, codec)
            writer.write(clip, clip_row)
            rows.append(clip_row(clip))
            n += 1
        writer.close()
    table = write_manifest(out, rows)
    write_dataset_card(out, table, {"depth_codec": codec, "captures": n, "frames_read": 0})
    return out, depth


@pytest.mark.parametrize("codec", ["npz", "npy"])
def test_huggingface_datasets_reads_every_bucket_whole(tmp_path, codec):
    from datasets import load_dataset

    ds_dir, depth = write_dataset(tmp_path / "ds", codec)
    card = (ds_dir / "README.md").read_text()
    assert card.startswith("---\n") and "config_name: 32x48-6f" in card and "config_name: 32x48-3f" in card
    for height, width, frames, count in BUCKETS:
        name = bucket_name(height, width, frames)
        ds = load_dataset(str(ds_dir), name, split="train", cache_dir=str(tmp_path / "hf")).with_format("numpy")
        assert len(ds) == count
        cols = set(ds.column_names)
        assert {f"rgb.{i:04d}.png" for i in range(frames)} <= cols
        assert {f"depth.{i:04d}.{codec}" for i in range(frames)} <= cols
        assert f"rgb.{frames:04d}.png" not in cols
        for s in ds:
            for i in range(frames):
                d = s[f"depth.{i:04d}.{codec}"]
                d = d["depth"] if codec == "npz" else d
                np.testing.assert_array_equal(np.asarray(d, np.float32), depth[s["__key__"]][i])
        kept = ds.filter(lambda s: s["json"]["keep"])  # the card's kept-only recipe
        assert len(kept) == (count + 1) // 2


def test_kept_lists_read_kept_clips_only_with_plain_webdataset(tmp_path):
    ds_dir, depth = write_dataset(tmp_path / "ds", "npz")
    for b in bucket_summaries(__import__("pyarrow.parquet").parquet.read_table(ds_dir / "manifest.parquet")):
        kept = json.loads((ds_dir / "kept" / f"{b.name}.json").read_text())
        keys = set(kept["keys"])
        # the README's recipe
        ds = wds.WebDataset([f"{ds_dir}/{s}" for s in kept["shards"]], shardshuffle=False)
        got = [s for s in ds.select(lambda s: s["__key__"] in keys).decode()]
        assert {s["__key__"] for s in got} == keys and len(got) == kept["clips"] == (b.clips + 1) // 2
        assert all(json.loads(json.dumps(s["json"]))["keep"] for s in got)
        for s in got:
            np.testing.assert_array_equal(s["depth.0000.npz"]["depth"].astype(np.float32), depth[s["__key__"]][0])
        # only shards holding kept clips are listed
        all_shards = sorted(p.relative_to(ds_dir).as_posix() for p in (ds_dir / "shards" / b.name).glob("*.tar"))
        assert set(kept["shards"]) <= set(all_shards)


def test_kept_split_only_when_exact(tmp_path):
    from datasets import load_dataset

    ds_dir, _ = write_dataset(tmp_path / "ds", "npz", all_kept_bucket="32x48-3f")
    card = (ds_dir / "README.md").read_text()
    head = card.split("---")[1]
    # 32x48-3f: all clips kept, so its kept split is exact; 32x48-6f mixes kept and dropped clips
    assert head.count("split: kept") == 1
    kept = load_dataset(str(ds_dir), "32x48-3f", split="kept", cache_dir=str(tmp_path / "hf"))
    assert len(kept) == 4 and all(json.loads(json.dumps(s["json"]))["keep"] for s in kept)


def test_card_is_deterministic(tmp_path):
    a, _ = write_dataset(tmp_path / "a", "npz")
    b, _ = write_dataset(tmp_path / "b", "npz")
    for rel in ["README.md", "kept/32x48-6f.json"] + [p.relative_to(a).as_posix() for p in a.glob("shards/*/*.tar")]:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel


@pytest.mark.slow
def test_ray_reads_kept_clips_from_the_lists(tmp_path):
    import ray

    ds_dir, _ = write_dataset(tmp_path / "ds", "npz")
    kept = json.loads((ds_dir / "kept" / "32x48-6f.json").read_text())
    keys = set(kept["keys"])
    ray.init(num_cpus=1, include_dashboard=False, object_store_memory=80 << 20, configure_logging=False)
    try:
        ds = ray.data.read_webdataset([f"{ds_dir}/{s}" for s in kept["shards"]])
        rows = ds.filter(lambda r: r["__key__"] in keys).take_all()
        assert {r["__key__"] for r in rows} == keys
        import io

        d = np.load(io.BytesIO(rows[0]["depth.0000.npz"]), allow_pickle=False)["depth"]
        assert d.dtype == np.float16 and d.shape == (32, 48)
    finally:
        ray.shutdown()


def test_the_cards_own_snippets_run(tmp_path, monkeypatch):
    import re

    ds_dir, _ = write_dataset(tmp_path / "ds", "npz")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    blocks = re.findall(r"```python\n(.*?)```", (ds_dir / "README.md").read_text(), re.S)
    assert len(blocks) == 3
    for code in blocks[:2]:  # datasets and webdataset (Ray's is run by the test above)
        scope: dict = {}
        exec(code.replace("DATASET_DIR", str(ds_dir)), scope)
        assert scope["depth0"].shape == (32, 48) and scope["depth0"].max() > 0  # datasets gives float32, webdataset float16


@pytest.mark.parametrize("codec", ["npz", "npy"])
def test_trainer_reads_both_depth_codecs(tmp_path, codec):
    from dav_builder.model.data import ClipReader, kept_clips
    from dav_builder.shards.tario import iter_tar_samples

    ds_dir, depth = write_dataset(tmp_path / "ds", codec)
    reader = ClipReader(ds_dir)
    refs = kept_clips(ds_dir)
    assert refs
    for ref in refs:
        frames = reader.read(ref, [0, ref.num_frames - 1])
        np.testing.assert_array_equal(frames.depth, depth[ref.clip_id][[0, ref.num_frames - 1]])
        assert frames.meta["depth_codec"] == codec
    # re-packing (dav-filter apply) keeps each member's codec and names it
    sample = next(iter_tar_samples(ds_dir / refs[0].shard))
    names = [n for n, _ in sample.members()]
    assert all(n.endswith(f".{codec}") for n in names if ".depth." in n) and sample.depth_codec == codec


def test_filter_apply_writes_the_card_with_exact_kept_splits(tmp_path):
    from datasets import load_dataset

    from dav_builder.filters.apply import apply_thresholds
    from dav_builder.filters.config import ScoringConfig

    src, _ = write_dataset(tmp_path / "src", "npy")
    (src / "stats.json").write_text(json.dumps({"depth_codec": "npy"}))
    stats = apply_thresholds(src, tmp_path / "dst", ScoringConfig(), progress=False)
    dst = tmp_path / "dst"
    assert stats["depth_codec"] == "npy" and json.loads((dst / "stats.json").read_text())["depth_codec"] == "npy"
    head = (dst / "README.md").read_text().split("---")[1]
    kept_total = 0
    for b in bucket_summaries(__import__("pyarrow.parquet").parquet.read_table(dst / "manifest.parquet")):
        assert b.kept_split_exact and f"config_name: {b.name}" in head
        kept = load_dataset(str(dst), b.name, split="kept", cache_dir=str(tmp_path / "hf"))
        assert len(kept) == len(b.kept_keys) == b.clips
        kept_total += len(kept)
    assert kept_total == stats["clips_kept"] > 0
