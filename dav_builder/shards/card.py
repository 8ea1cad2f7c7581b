"""What a dataset carries for tools that know nothing of this project, derived from the manifest.

- ``README.md``: a Hugging Face dataset card whose ``configs:`` block makes each bucket its own
  config (``load_dataset(DATASET_DIR, "352x640-16f")``).  Hugging Face ``datasets`` takes the
  columns of a WebDataset from its first shard, so tars of 16- and 32-frame clips read together
  would silently lose frames; one config per bucket keeps every clip whole.  A bucket gets a
  ``kept`` split beside ``train`` (all written clips) only when it is exact, that is when no
  shard holding a kept clip also holds a dropped one (a dataset made by ``dav-filter apply``);
  otherwise the card shows the one-line filter on the clip's json.
- ``kept/<bucket>.json``: the bucket's kept clips for plain webdataset, Ray Data or any reader:
  ``shards`` (dataset-relative paths of the shards that hold at least one kept clip, so a reader
  opens no shard that has none) and ``keys`` (the kept clips' WebDataset keys).

Why lists and not separate shards for kept and dropped clips: the keep decision can change
after the build (``dav-filter apply`` re-packs with other thresholds), the lists cost nothing
to rewrite, and the writer keeps one open shard per bucket.  See docs/build.md.

Everything here is a pure function of the manifest table and the stats (no clock, no paths of
the machine), so a resumed or repeated build writes the same bytes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pyarrow as pa

CARD = "README.md"
KEPT_DIR = "kept"


@dataclass
class BucketSummary:
    """One bucket of a dataset, as the manifest describes it."""

    name: str
    height: int
    width: int
    num_frames: int
    shards: list[str] = field(default_factory=list)
    """Every shard of the bucket (dataset-relative), sorted."""
    clips: int = 0
    kept_keys: list[str] = field(default_factory=list)
    kept_shards: list[str] = field(default_factory=list)
    """Shards holding at least one kept clip."""
    mixed_shards: int = 0
    """Shards holding both kept and dropped clips."""

    @property
    def kept_split_exact(self) -> bool:
        """Whether the shards with kept clips hold nothing else (a ``kept`` split is then exact)."""
        return bool(self.kept_keys) and self.mixed_shards == 0


def bucket_summaries(table: pa.Table) -> list[BucketSummary]:
    """The buckets of a manifest table, sorted by name."""
    rows = table.select(["clip_id", "bucket", "shard", "keep", "height", "width", "num_frames"]).to_pylist()
    buckets: dict[str, BucketSummary] = {}
    keep_of_shard: dict[str, set[bool]] = {}
    for r in rows:
        if r["shard"] is None or r["bucket"] is None:
            continue
        b = buckets.get(r["bucket"])
        if b is None:
            b = buckets[r["bucket"]] = BucketSummary(r["bucket"], int(r["height"]), int(r["width"]),
                                                     int(r["num_frames"]))
        b.clips += 1
        keep_of_shard.setdefault(r["shard"], set()).add(bool(r["keep"]))
        if r["keep"]:
            b.kept_keys.append(r["clip_id"])
    for b in buckets.values():
        prefix = f"shards/{b.name}/"
        b.shards = sorted(s for s in keep_of_shard if s.startswith(prefix))
        b.kept_shards = [s for s in b.shards if True in keep_of_shard[s]]
        b.mixed_shards = sum(1 for s in b.shards if len(keep_of_shard[s]) == 2)
        b.kept_keys.sort()
    return [buckets[k] for k in sorted(buckets)]


def kept_list(b: BucketSummary) -> dict:
    """The content of ``kept/<bucket>.json``."""
    return {"bucket": b.name, "height": b.height, "width": b.width, "num_frames": b.num_frames,
            "clips": len(b.kept_keys), "shards": b.kept_shards, "keys": b.kept_keys}


def _configs_yaml(buckets: list[BucketSummary]) -> list[str]:
    lines = ["configs:"]
    for b in buckets:
        lines += [f"- config_name: {b.name}", "  data_files:", "  - split: train",
                  f"    path: shards/{b.name}/*.tar"]
        if b.kept_split_exact:
            lines += ["  - split: kept", "    path:"] + [f"    - {s}" for s in b.kept_shards]
    return lines


def card_text(table: pa.Table, stats: dict) -> str:
    """The dataset card: YAML front matter for the Hugging Face hub, then a short guide."""
    buckets = bucket_summaries(table)
    codec = stats.get("depth_codec", "npy")
    first = buckets[0].name if buckets else "352x640-16f"
    head = ["---", "license: other", "task_categories:", "- depth-estimation", "tags:", "- video",
            "- depth", "- webdataset", "- dav-builder"]
    head += _configs_yaml(buckets) if buckets else []
    head += ["---", ""]
    kept = sum(len(b.kept_keys) for b in buckets)
    body = [
        "# Video depth clips (dav-build)",
        "",
        f"{sum(b.clips for b in buckets)} clips written in {len(buckets)} bucket(s), {kept} kept by the "
        f"builder's filters (`keep = true`); {stats.get('captures', '?')} captures, "
        f"{stats.get('frames_read', '?')} frames read. Dropped clips are still in the shards with "
        "`keep = false`: read the kept ones as shown below.",
        "",
        "| bucket (config) | height x width | frames per clip | clips | kept | shards | kept split |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    body += [f"| `{b.name}` | {b.height} x {b.width} | {b.num_frames} | {b.clips} | {len(b.kept_keys)} | "
             f"{len(b.shards)} | {'yes' if b.kept_split_exact else 'no: filter on json keep'} |" for b in buckets]
    body += [
        "",
        "## Files",
        "",
        "- `manifest.parquet`: one row per clip cut, kept or not (`keep`, `reason`, `failed_checks`, scores).",
        "- `stats.json`: counts, drops by reason, the depth codec (`depth_codec`).",
        "- `shards/<bucket>/*.tar`: WebDataset shards; every clip of a bucket has the same size and length.",
        "- `kept/<bucket>.json`: the bucket's kept clips: `keys` and the `shards` that hold them.",
        "",
        "A clip (key = clip id) is `<key>.json` (frame indices, fps, intrinsics `K`, poses "
        "`cam_to_world`, scores, `keep`), `<key>.rgb.<i>.png` or `.jpg` per frame and "
        f"`<key>.depth.<i>.{codec}` per frame: planar depth in metres, float16, 0 = no depth"
        + (" (an `.npz` holding one array named `depth`, losslessly compressed)." if codec == "npz" else "."),
        "",
        "## Read it",
        "",
        "Hugging Face `datasets` (one config per bucket; `with_format(\"numpy\")` gives arrays):",
        "",
        "```python",
        "from datasets import load_dataset",
        f'ds = load_dataset("DATASET_DIR", "{first}", split="train").with_format("numpy")',
        "ds = ds.filter(lambda s: s[\"json\"][\"keep\"])      # kept clips only",
        'depth0 = ds[0]["depth.0000.npz"]["depth"]         # float16 metres' if codec == "npz"
        else 'depth0 = ds[0]["depth.0000.npy"]                  # float16 metres',
        "```",
        "",
        "Plain webdataset, kept clips only:",
        "",
        "```python",
        "import json, webdataset as wds",
        f'kept = json.load(open("DATASET_DIR/kept/{first}.json"))',
        "keys = set(kept[\"keys\"])",
        'ds = wds.WebDataset([f"DATASET_DIR/{s}" for s in kept["shards"]], shardshuffle=False)',
        'ds = ds.select(lambda s: s["__key__"] in keys).decode()',
        "for sample in ds:",
        '    depth0 = sample["depth.0000.npz"]["depth"]' if codec == "npz" else '    depth0 = sample["depth.0000.npy"]',
        "```",
        "",
        "Ray Data, kept clips only:",
        "",
        "```python",
        "import io, json, numpy as np, ray",
        f'kept = json.load(open("DATASET_DIR/kept/{first}.json"))',
        "keys = set(kept[\"keys\"])",
        'ds = ray.data.read_webdataset([f"DATASET_DIR/{s}" for s in kept["shards"]])',
        'ds = ds.filter(lambda r: r["__key__"] in keys)',
        'depth0 = np.load(io.BytesIO(ds.take(1)[0]["depth.0000.npz"]))["depth"]   # Ray leaves .npz as bytes'
        if codec == "npz" else 'depth0 = ds.take(1)[0]["depth.0000.npy"]',
        "```",
        "",
        "The manifest with pandas: `pandas.read_parquet(\"DATASET_DIR/manifest.parquet\")`.",
        "",
    ]
    return "\n".join(head + body)


Writer = Callable[[str, bytes], None]


def write_dataset_card(dataset: Path, table: pa.Table, stats: dict, write: Writer | None = None) -> list[str]:
    """Write ``README.md`` and ``kept/<bucket>.json`` for the dataset whose manifest is ``table``;
    return the dataset-relative paths written.  ``write(relpath, data)`` stores one file (default:
    an atomic local write under ``dataset``), so another storage can be plugged in."""
    if write is None:
        from dav_builder.shards.writer import atomic_write_bytes

        def write(rel: str, data: bytes) -> None:
            atomic_write_bytes(Path(dataset) / rel, data, fsync=False)

    out = {CARD: card_text(table, stats).encode()}
    for b in bucket_summaries(table):
        out[f"{KEPT_DIR}/{b.name}.json"] = json.dumps(kept_list(b), indent=1).encode()
    for rel, data in out.items():
        write(rel, data)
    return sorted(out)
