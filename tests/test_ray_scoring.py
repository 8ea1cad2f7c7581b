"""dav-build on Ray with scoring models: an actor pool loads the models once per actor, the tasks
write the shards, and the scores equal the in-process build's."""

from __future__ import annotations

import os
import pyarrow.parquet as pq
import pytest

from dav_builder.pipeline.build import build_dataset
from dav_builder.pipeline.config import load_config

from dav_builder.render.engine import RenderConfig, render_captures

DEPTH_MODULE = '''
import os
import numpy as np


class Brightness:
    """A stand-in depth model (bright = near); it notes each process that loads it."""

    def __init__(self):
        with open(os.environ["DAV_TEST_LOADS"], "a") as fh:
            fh.write(f"{os.getpid()}\\n")

    def __call__(self, rgb):
        return rgb.astype(np.float32).mean(axis=-1) / 255.0
'''


@pytest.mark.slow
def test_ray_scoring_actors_give_the_local_scores(tmp_path, monkeypatch):
    import ray

    captures = tmp_path / "caps"
    render_captures(captures, RenderConfig(scenes=2, frames=40, width=64, height=48, seed=8), progress=False)
    model_dir = tmp_path / "models"
    model_dir.mkdir()
    (model_dir / "dav_ray_test_depth.py").write_text(DEPTH_MODULE)
    loads = tmp_path / "loads.txt"
    monkeypatch.setenv("DAV_TEST_LOADS", str(loads))
    monkeypatch.syspath_prepend(str(model_dir))
    scoring = {"depth": {"path": "dav_ray_test_depth:Brightness", "threshold": 0.0}}
    over = {"clips": {"lengths": [8]}, "scoring": scoring}
    local = build_dataset([captures], tmp_path / "local", load_config(overrides={**over, "run": {"executor": "local"}}),
                          progress=False, say=lambda m: None)
    cfg = load_config(overrides={**over, "run": {"executor": "ray", "num_cpus": 2, "object_store_mb": 256,
                                                 "scoring_actors": 1}})
    try:
        # the test's model module lives in a temporary folder: the workers must be able to import it
        path = os.pathsep.join(p for p in (str(model_dir), os.environ.get("PYTHONPATH", "")) if p)
        loads.write_text("")
        ray.init(num_cpus=2, object_store_memory=256 << 20, include_dashboard=False,
                 runtime_env={"env_vars": {"PYTHONPATH": path, "DAV_TEST_LOADS": str(loads)}})
        result = build_dataset([captures], tmp_path / "ray", cfg, progress=False, say=lambda m: None)
    finally:
        ray.shutdown()
    assert result.stats["executor"] == "ray" and local.stats["executor"] == "local"
    assert len(loads.read_text().split()) == 1  # one actor loaded the model once; the tasks never did
    key = lambda r: r["clip_id"]  # noqa: E731
    a = sorted(pq.read_table(tmp_path / "local" / "manifest.parquet").to_pylist(), key=key)
    b = sorted(pq.read_table(tmp_path / "ray" / "manifest.parquet").to_pylist(), key=key)
    assert [r["clip_id"] for r in a] == [r["clip_id"] for r in b]
    assert any(r["depth_score"] is not None for r in b)
    for ra, rb in zip(a, b):
        assert ra["depth_score"] == pytest.approx(rb["depth_score"], abs=1e-6)
        assert ra["keep"] == rb["keep"]
