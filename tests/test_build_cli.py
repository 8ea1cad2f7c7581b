"""dav-build's planning and configuration options: --dry-run, --print-config, --list-configs,
--log-level, and the example configs shipped in the package."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from dav_builder.configs import config_path, list_configs
from dav_builder.model.config import load_run_config
from dav_builder.pipeline.cli import main
from dav_builder.pipeline.config import load_config
from dav_builder.render.engine import RenderConfig, render_captures


@pytest.fixture(scope="module")
def captures(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("caps")
    render_captures(root / "engine", RenderConfig(scenes=2, frames=40, width=64, height=48, seed=2), progress=False)
    return root


def files(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_every_shipped_config_loads():
    shipped = list_configs()
    assert {"build", "build-scored", "train-paper", "train-tiny-cpu"} <= set(shipped)
    for name, (path, about) in shipped.items():
        assert about, f"{path}: first line should say what the config is for"
        if name.startswith("build"):
            cfg = load_config(path)
            if name == "build":  # the defaults, written out
                assert cfg.fingerprint() == load_config().fingerprint()
        else:
            cfg = load_run_config(path)
            assert cfg.train.max_steps >= 1
    assert load_config(config_path("build-scored")).scoring.depth.path == "runs/svd"
    assert load_run_config(config_path("train-paper")).model.preset == "svd"


def test_dry_run_plans_and_writes_nothing(captures, tmp_path):
    out = tmp_path / "ds"
    before = files(captures)
    res = CliRunner().invoke(main, [str(captures), "--out", str(out), "--dry-run", "--config", "build"])
    assert res.exit_code == 0, res.output
    assert not out.exists() and files(captures) == before
    assert "captures: 2 (dav 2), frames: 80" in res.output
    assert "48x64-32f: 2" in res.output and "48x64-16f: 1" not in res.output  # 40 frames: one 32, 8 left
    assert "estimated output:" in res.output and "dry run: nothing was written" in res.output


def test_print_config_is_the_effective_config_and_reads_back(tmp_path):
    runner = CliRunner()
    res = runner.invoke(main, ["--config", "build-scored", "--local", "--print-config"])
    assert res.exit_code == 0, res.output
    data = yaml.safe_load(res.output)
    assert data["run"]["executor"] == "local" and data["scoring"]["depth"]["path"] == "runs/svd"
    (tmp_path / "eff.yaml").write_text(res.output)
    assert load_config(tmp_path / "eff.yaml").fingerprint() == load_config(config_path("build-scored")).fingerprint()
    shipped = runner.invoke(main, ["--print-config", "train-tiny-cpu"])
    assert shipped.output == config_path("train-tiny-cpu").read_text()
    listed = runner.invoke(main, ["--list-configs"])
    assert all(name in listed.output for name in list_configs())
    bad = runner.invoke(main, ["--print-config", "nope"])
    assert bad.exit_code == 2 and "not a shipped config" in bad.output
    bad = runner.invoke(main, [str(tmp_path), "--out", str(tmp_path / "o"), "--config", "nope"])
    assert bad.exit_code == 2 and "not a shipped config" in bad.output


def test_log_level_controls_the_lines(captures, tmp_path):
    runner = CliRunner()
    quiet = runner.invoke(main, [str(captures), "--out", str(tmp_path / "a"), "--local", "-q", "--log-level", "warning"])
    assert quiet.exit_code == 0, quiet.output
    assert "capture(s) to process" not in quiet.output and "dataset:" in quiet.output
    loud = runner.invoke(main, [str(captures), "--out", str(tmp_path / "b"), "--local", "-q", "--log-level", "debug"])
    assert "capture(s) to process" in loud.output and "frames read" in loud.output
    assert "engine/capture000: 40 frames read" in loud.output  # one line per capture at debug
