"""dav-filter apply: an interrupted apply never looks complete, a rerun resumes it exactly,
--overwrite starts again, and a second writer on the same output is refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))

from synthetic_dataset import write_synthetic_dataset  # noqa: E402
from dav_builder.filters.apply import apply_thresholds, scoring_config_of  # noqa: E402
from dav_builder.shards.manifest import write_manifest  # noqa: E402
from dav_builder.shards.tario import iter_tar_samples  # noqa: E402
from dav_builder.shards.writer import ShardLimits  # noqa: E402

LIMITS = ShardLimits(max_clips=2)


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    ds = write_synthetic_dataset(tmp_path_factory.mktemp("apply") / "ds", buckets=((32, 48, 4, 9), (32, 48, 1, 7)))
    rows = pq.read_table(ds / "manifest.parquet").to_pylist()
    rng = np.random.default_rng(1)
    for r in rows:
        r["depth_score"], r["semantic_score"] = float(rng.uniform(0.3, 1.0)), float(rng.uniform(0.5, 1.0))
    write_manifest(ds, rows)
    return ds


def strict(ds: Path):
    cfg = scoring_config_of(ds)
    cfg.depth.threshold, cfg.clip.threshold = 0.6, 0.8
    return cfg


def content(ds: Path) -> dict:
    """Everything a reader sees: manifest rows and every shard's members, by path."""
    rows = pq.read_table(ds / "manifest.parquet").to_pylist()
    shards = {p.relative_to(ds).as_posix(): [(s.key, s.members()) for s in iter_tar_samples(p)]
              for p in sorted((ds / "shards").rglob("*.tar"))}
    return {"rows": rows, "shards": shards}


@pytest.fixture(scope="module")
def reference(source, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("ref") / "out"
    apply_thresholds(source, out, strict(source), LIMITS, progress=False)
    return content(out)


def test_an_interrupted_apply_resumes_to_the_same_dataset(source, reference, tmp_path):
    out = tmp_path / "out"
    apply_thresholds(source, out, strict(source), LIMITS, progress=False)
    # the state a kill leaves: no manifest or stats yet, the last shard complete but unrecorded,
    # the next one partial
    (out / "manifest.parquet").unlink()
    (out / "stats.json").unlink()
    records = sorted((out / "_state" / "shards").rglob("*.json"))
    records[-1].unlink()
    last = sorted((out / "shards").rglob("*.tar"))[-1]
    (last.parent / f".{int(last.stem) + 1:06d}.tar.partial").write_bytes(b"half a tar")
    stats = apply_thresholds(source, out, strict(source), LIMITS, progress=False)
    assert stats["complete"] and not stats.get("already_complete")
    assert content(out) == reference
    assert not list(out.rglob("*.partial"))
    again = apply_thresholds(source, out, strict(source), LIMITS, progress=False)
    assert again.get("already_complete")


def test_kill_9_then_rerun_gives_the_same_dataset(source, reference, tmp_path):
    out = tmp_path / "killed"
    code = ("import sys; sys.path.insert(0, sys.argv[3]); from test_filter_apply_resume import strict, LIMITS;"
            "from dav_builder.filters.apply import apply_thresholds; from pathlib import Path;"
            "apply_thresholds(Path(sys.argv[1]), Path(sys.argv[2]), strict(Path(sys.argv[1])), LIMITS, progress=False)")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, "-c", code, str(source), str(out), str(Path(__file__).parent)], env=env)
    deadline = time.time() + 60
    while time.time() < deadline and proc.poll() is None:
        if list((out / "_state" / "shards").rglob("*.json")):  # at least one shard done: kill it now
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if not (out / "stats.json").is_file():  # killed before the end: it must not look complete
        assert not (out / "manifest.parquet").is_file()
    apply_thresholds(source, out, strict(source), LIMITS, progress=False)
    assert content(out) == reference
    assert json.loads((out / "stats.json").read_text())["complete"]


def test_the_cli_resumes_and_overwrites(source, tmp_path):
    from dav_builder.filters.cli import main

    out = tmp_path / "cli"
    args = ["apply", str(source), "--out", str(out), "--depth-threshold", "0.6", "--semantic-threshold", "0.8", "-q"]
    assert CliRunner().invoke(main, args).exit_code == 0
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0 and "already complete" in res.output, res.output
    res = CliRunner().invoke(main, args[:-2] + ["0.9", "-q"])
    assert res.exit_code == 2 and "--overwrite" in res.output
    res = CliRunner().invoke(main, args[:-2] + ["0.9", "-q", "--overwrite"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "stats.json").read_text())["thresholds"]["semantic"] == 0.9


def test_other_thresholds_refuse_and_overwrite_replaces(source, reference, tmp_path):
    out = tmp_path / "out"
    apply_thresholds(source, out, strict(source), LIMITS, progress=False)
    other = strict(source)
    other.depth.threshold = 0.9
    with pytest.raises(ValueError, match="other thresholds.*--overwrite"):
        apply_thresholds(source, out, other, LIMITS, progress=False)
    stats = apply_thresholds(source, out, other, LIMITS, progress=False, overwrite=True)
    assert stats["clips_kept"] < len(reference["rows"])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("a user's file")
    with pytest.raises(ValueError, match="not a dav-filter apply output"):
        apply_thresholds(source, tmp_path / "mine", strict(source), LIMITS, progress=False)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "a user's file"


def test_a_second_writer_is_refused_naming_the_first(source, tmp_path):
    from dav_builder.pipeline.lock import lock_dataset

    out = tmp_path / "out"
    with lock_dataset(out, "test holder"):
        with pytest.raises(ValueError, match=f"pid {os.getpid()} on host"):
            apply_thresholds(source, out, strict(source), LIMITS, progress=False)
    apply_thresholds(source, out, strict(source), LIMITS, progress=False)
