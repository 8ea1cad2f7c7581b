"""dav-build on a real Ray cluster of two local nodes (``ray start``), one of which dies mid-build."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from dav_builder.pipeline.build import build_dataset
from dav_builder.pipeline.config import load_config
from dav_builder.render.engine import RenderConfig, render_captures

from ray_cluster import ray_cluster

CLI = [sys.executable, "-m", "dav_builder.pipeline.cli"]


def rows(ds: Path) -> list[dict]:
    return sorted(pq.read_table(ds / "manifest.parquet").to_pylist(), key=lambda r: r["clip_id"])


@pytest.mark.slow
def test_two_node_cluster_builds_the_local_dataset_and_survives_a_dead_node(tmp_path):
    caps = tmp_path / "captures"
    render_captures(caps, RenderConfig(scenes=4, frames=40, width=64, height=48, seed=11), progress=False)
    config = tmp_path / "c.yaml"
    config.write_text("clips: {lengths: [16, 8]}\nshards: {max_clips: 1}\n")
    local = tmp_path / "local"
    build_dataset([caps], local, load_config(config, {"run": {"executor": "local"}}), progress=False,
                  say=lambda m: None)
    expected = rows(local)
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    with ray_cluster(nodes=2) as (address, nodes):
        # 1. the whole build on the cluster: the same dataset as --local, units on both nodes
        out = tmp_path / "cluster"
        cmd = CLI + [str(caps), "--out", str(out), "--config", str(config), "--ray-address", address, "--quiet"]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
        assert res.returncode == 0, res.stderr[-3000:]
        assert "executor: ray" in res.stdout + res.stderr
        assert rows(out) == expected  # shard names included
        stats = json.loads((out / "stats.json").read_text())
        assert stats["ray_nodes"] == 2 and len(stats["units_per_node"]) == 2, stats
        # 2. the second node's raylet killed mid-build: Ray retries its units, or the build stops
        # with a clear error and the same command resumes
        out = tmp_path / "killed"
        cmd = CLI + [str(caps), "--out", str(out), "--config", str(config), "--ray-address", address, "--quiet"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while time.time() < deadline and not list((out / "_state" / "shards").glob("*/*.json")):
            time.sleep(0.05)
        assert not (out / "stats.json").exists(), "the build finished before the node could be killed"
        os.kill(nodes[1].raylet_pid(), signal.SIGKILL)
        _, err = proc.communicate(timeout=180)
        print(f"build with a dead node: exit status {proc.returncode}")
        if proc.returncode != 0:
            assert proc.returncode == 2 and "rerun the same command to resume" in err, err[-3000:]
            res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
            assert res.returncode == 0, res.stderr[-3000:]
        assert rows(out) == expected
        keys = sorted(p.name for p in (out / "shards").rglob("*.tar"))
        assert keys == sorted(Path(r["shard"]).name for r in expected if r["shard"])
