"""WebDataset shards and the Parquet manifest of a dav-build dataset (docs/dataset-format.md)."""

from dav_builder.shards.manifest import MANIFEST, clip_row, kept_shards, read_manifest, write_manifest
from dav_builder.shards.tario import ClipSample, iter_tar_samples, npy_to_depth
from dav_builder.shards.writer import BucketShardWriter, ShardLimits, ShardRecord, recover

__all__ = [
    "MANIFEST",
    "BucketShardWriter",
    "ClipSample",
    "ShardLimits",
    "ShardRecord",
    "clip_row",
    "iter_tar_samples",
    "kept_shards",
    "npy_to_depth",
    "read_manifest",
    "recover",
    "write_manifest",
]
