"""Fuzz: a build over good captures and a seeded set of broken ones never raises, accounts for
every broken capture with a reason, and writes the good captures' clips byte for byte as a
build without the broken ones does."""

from __future__ import annotations

import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fuzz_captures import all_defects, write_fuzz_set  # noqa: E402
from dav_builder.pipeline.build import build_dataset  # noqa: E402
from dav_builder.pipeline.config import load_config  # noqa: E402
from dav_builder.shards.tario import iter_tar_samples  # noqa: E402

SEED = 15
COUNT = 150  # every kind of defect at least once (see fuzz_captures.defect_order), ~5 s to build


def cfg():
    return load_config(overrides={"clips": {"lengths": [8, 4]}, "run": {"executor": "local"},
                                  "shards": {"max_clips": 8}})


def clips_by_capture(ds: Path) -> dict[str, dict[str, list]]:
    """capture -> clip id -> the clip's tar members (name, bytes), as written."""
    rows = {r["clip_id"]: r for r in pq.read_table(ds / "manifest.parquet").to_pylist()}
    out: dict[str, dict[str, list]] = {}
    for tar in sorted((ds / "shards").rglob("*.tar")):
        for s in iter_tar_samples(tar):
            out.setdefault(rows[s.key]["capture"], {})[s.key] = s.members()
    return out


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    good, broken = write_fuzz_set(root / "in", SEED, COUNT)
    ref = build_dataset([root / "in" / "good"], root / "ref", cfg(), progress=False, say=lambda s: None)
    full = build_dataset([root / "in" / "good", root / "in" / "broken"], root / "full", cfg(), progress=False,
                         say=lambda s: None)
    return root, good, broken, ref, full


def test_the_generator_covers_every_kind_of_defect(fuzz):
    _, _, broken, _, _ = fuzz
    kinds = {kind for kind, _ in all_defects()}
    described = " ".join(d for b in broken for d in b.defects)
    for marker in ("capture.json format", "capture.json fps", "capture.json depth.far", "frames.jsonl index",
                   "frames.jsonl K", "frames.jsonl cam_to_world", "frames.jsonl time", "frames.jsonl rgb",
                   "frames.jsonl projection", "capture.json truncate", "frames.jsonl deep", "fifo", "png16",
                   "rgba", "grey", "object_pickle", "stray files", "folder name not UTF-8"):
        assert marker in described, marker
    assert len(kinds) >= 7


def test_no_run_raises_and_every_capture_is_accounted_for(fuzz):
    root, good, broken, ref, full = fuzz
    assert full.stats["complete"] and full.stats["captures"] == len(good) + len(broken)
    rows = pq.read_table(root / "full" / "manifest.parquet").to_pylist()
    captures = {r["capture"] for r in rows}
    assert set(good) <= captures
    assert len(captures) == len(good) + len(broken)  # every broken capture has its rows
    for r in rows:
        if r["shard"] is None:
            assert r["reason"], r
    for r in rows:  # every failure was foreseen: a validation message, not a stray exception
        reason = r["reason"] or ""
        assert "unexpected " not in reason, reason
    # the non-UTF-8 folder name comes out escaped, stable and readable
    assert any("\\xff\\xfe" in c for c in captures)


def test_good_captures_are_written_byte_identical(fuzz):
    root, good, _, ref, full = fuzz
    want = clips_by_capture(root / "ref")
    got = clips_by_capture(root / "full")
    assert set(want) == set(good) and all(want[g] for g in good)
    for g in good:
        assert got[g] == want[g], g
    ref_rows = [r for r in pq.read_table(root / "ref" / "manifest.parquet").to_pylist()]
    full_rows = [r for r in pq.read_table(root / "full" / "manifest.parquet").to_pylist() if r["capture"] in good]
    drop = ("shard",)  # the shard a clip lands in depends on what else was written
    assert [{k: v for k, v in r.items() if k not in drop} for r in full_rows] == \
           [{k: v for k, v in r.items() if k not in drop} for r in ref_rows]
