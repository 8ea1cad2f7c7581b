"""``manifest.parquet``: one row per clip the builder cut, kept or not (DATASET_FORMAT.md).

Columns are the format's required ones, then ``frame_indices``, ``errors`` and ``failed_checks``
(every check or rule the clip failed; ``reason`` names the first), then every score
the scoring stage computed (each score name is a float column; ``depth_score`` and
``semantic_score`` always exist, null when that score is off).
"""

from __future__ import annotations

import json
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from dav_builder.clip import Clip, failed_checks_of

MANIFEST = "manifest.parquet"

BASE_FIELDS = [
    pa.field("clip_id", pa.string(), nullable=False),
    pa.field("capture", pa.string(), nullable=False),
    pa.field("first_frame", pa.int64()),
    pa.field("num_frames", pa.int64()),
    pa.field("height", pa.int64()),
    pa.field("width", pa.int64()),
    pa.field("fps", pa.float64()),
    pa.field("bucket", pa.string()),
    pa.field("shard", pa.string()),
    pa.field("depth_score", pa.float64()),
    pa.field("semantic_score", pa.float64()),
    pa.field("keep", pa.bool_()),
    pa.field("reason", pa.string()),
    pa.field("frame_indices", pa.list_(pa.int64())),
    pa.field("errors", pa.string()),
    pa.field("failed_checks", pa.list_(pa.string())),
]
BASE_NAMES = {f.name for f in BASE_FIELDS}


def clip_row(clip: Clip) -> dict:
    """The manifest row of a clip (plain JSON-able values)."""
    row = {
        "clip_id": clip.clip_id,
        "capture": clip.capture,
        "first_frame": int(clip.first_frame),
        "num_frames": int(clip.num_frames),
        "height": int(clip.height),
        "width": int(clip.width),
        "fps": float(clip.fps),
        "bucket": clip.bucket,
        "shard": clip.shard,
        "keep": bool(clip.keep),
        "reason": clip.reason,
        "frame_indices": [int(i) for i in clip.frame_indices],
        "errors": json.dumps(clip.errors, sort_keys=True) if clip.errors else None,
        "failed_checks": failed_checks_of(clip.keep, clip.reason, clip.failed_checks),
        "depth_score": None,
        "semantic_score": None,
    }
    for name, value in clip.scores.items():
        row[name] = None if value is None else float(value)
    return row


def manifest_table(rows: Iterable[dict]) -> pa.Table:
    """Rows to a table with the manifest schema, sorted by capture and first frame."""
    rows = sorted(rows, key=lambda r: (r["capture"], r["first_frame"], r["num_frames"], r["clip_id"]))
    extra = sorted({k for r in rows for k in r} - BASE_NAMES)
    schema = pa.schema(BASE_FIELDS + [pa.field(k, pa.float64()) for k in extra])
    columns = {f.name: [r.get(f.name) for r in rows] for f in schema}
    return pa.Table.from_pydict(columns, schema=schema)


def write_manifest(dataset, rows: Iterable[dict]) -> pa.Table:
    """Write ``<dataset>/manifest.parquet`` (a path, URL or :class:`~dav_builder.storage.Store`)
    atomically and return the table."""
    from dav_builder.storage import Store

    table = manifest_table(rows)
    store = dataset if isinstance(dataset, Store) else Store(str(dataset))
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    store.write_bytes(MANIFEST, buf.getvalue().to_pybytes())
    return table


def read_manifest(dataset) -> pa.Table:
    """Read ``<dataset>/manifest.parquet`` (a path or URL) with a clear error when it is missing."""
    from dav_builder.storage import Store, open_store

    store = dataset if isinstance(dataset, Store) else open_store(str(dataset), "dataset")
    if not store.exists(MANIFEST):
        raise FileNotFoundError(f"{store.display(MANIFEST)}: no manifest; is {store.display()} a dataset written by dav-build?")
    return pq.read_table(pa.BufferReader(store.read_bytes(MANIFEST)))


def kept_shards(dataset) -> dict[str, list[str]]:
    """Bucket -> sorted shard paths (dataset-relative) that hold at least one kept clip."""
    table = read_manifest(dataset)
    out: dict[str, set[str]] = {}
    for bucket, shard, keep in zip(
        table.column("bucket").to_pylist(), table.column("shard").to_pylist(), table.column("keep").to_pylist()
    ):
        if keep and shard is not None:
            out.setdefault(bucket, set()).add(shard)
    return {b: sorted(s) for b, s in sorted(out.items())}
