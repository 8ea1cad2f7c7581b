"""The learned check: trained by dav-filter train-check on tiny engine renders, saved as
safetensors + JSON, reloaded, and scoring clips in the scoring stage; the shipped weights load."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run_lines(lines: list[str], cwd: Path) -> str:
    """Command lines as a user types them: dav-filter in this process, others as programs."""
    import os

    from dav_builder.filters.cli import main

    out = ""
    for cmd in lines:
        argv = shlex.split(cmd)
        if argv[0] == "dav-filter":
            old = os.getcwd()
            os.chdir(cwd)
            try:
                res = CliRunner().invoke(main, argv[1:], prog_name="dav-filter")
            finally:
                os.chdir(old)
            assert res.exit_code == 0, f"{cmd}\n{res.output[-3000:]}"
            out += res.output
        else:
            res = subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=cwd, capture_output=True, text=True, timeout=300)
            assert res.returncode == 0, f"{cmd}\n{res.stdout[-2000:]}\n{res.stderr[-2000:]}"
            out += res.stdout
    return out


def commands(text: str) -> list[str]:
    return [ln.strip().split("  #")[0].strip() for ln in text.splitlines()
            if ln.strip().split(" ", 1)[0] in ("dav-render", "dav-filter")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The --help example of train-check run as written: tiny renders with defects, 30 steps."""
    cwd = tmp_path_factory.mktemp("train")
    res = subprocess.run([str(BIN / "dav-filter"), "train-check", "--help"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    lines = commands(res.stdout.split("Examples:")[1])
    assert any(ln.startswith("dav-filter train-check") for ln in lines)
    out = run_lines(lines, cwd)
    assert "frame pairs" in out and "defective" in out
    return cwd, cwd / "my-check" / "learned.safetensors"


def test_train_check_writes_safetensors_and_json_and_reloads(trained):
    from safetensors import safe_open

    from dav_builder.filters.learned import load

    _, weights = trained
    meta = json.loads(weights.with_suffix(".json").read_text())
    assert meta["info"]["steps"] == 30 and meta["info"]["defective_pairs"] > 0
    with safe_open(str(weights), "np") as f:  # plain tensors, no pickle
        names = list(f.keys())
    assert any(n.startswith("body.") for n in names) and "head.weight" in names
    net, cfg = load(weights)
    n = sum(p.numel() for p in net.parameters())
    assert n == meta["info"]["weights"] and weights.stat().st_size < 1_000_000


def _clip_of(cap_dir: Path, first: int, count: int):
    from dav_builder.capture.dav import DavCapture
    from dav_builder.clip import Clip, make_clip_id

    cap = DavCapture(cap_dir)
    infos = list(cap.frames())[first:first + count]
    frames = [cap.read_frame(i) for i in infos]
    return Clip(clip_id=make_clip_id(cap.id, first, count), capture=cap.id, frame_indices=[f.info.index for f in frames],
                fps=cap.fps, height=cap.height, width=cap.width, rgb=[f.rgb_bytes for f in frames],
                depth=np.stack([f.depth for f in frames]), K=np.stack([f.info.K for f in frames]),
                cam_to_world=np.stack([f.info.cam_to_world for f in frames]),
                rgb_small=np.stack([f.rgb_small for f in frames]))


def test_the_scoring_stage_records_the_learned_score_and_drops_above_its_threshold(trained):
    from dav_builder.filters.config import ScoringConfig
    from dav_builder.filters.stage import SCORE_NAMES, ScoringStage

    cwd, weights = trained
    clip = _clip_of(sorted((cwd / "train-data").iterdir())[0], 0, 8)
    cfg = ScoringConfig.from_dict({"learned_defect": {"enabled": True, "weights": str(weights), "threshold": 1.0}})
    ScoringStage(cfg)([clip])
    assert "learned_defect" in SCORE_NAMES
    s = clip.scores["learned_defect"]
    assert 0.0 < s < 1.0 and "learned_defect" not in clip.failed_checks
    frames = ScoringStage(cfg).learned_frame_scores(clip)
    assert frames.shape == (7,) and s == pytest.approx(float(frames.max()))
    cfg.learned_defect.threshold = s / 2
    again = _clip_of(sorted((cwd / "train-data").iterdir())[0], 0, 8)
    ScoringStage(cfg)([again])
    assert "learned_defect" in again.failed_checks and not again.keep
    # off by default: the score is null and decides nothing
    off = _clip_of(sorted((cwd / "train-data").iterdir())[0], 0, 8)
    ScoringStage(ScoringConfig())([off])
    assert off.scores["learned_defect"] is None


def test_missing_weights_fail_at_start_naming_the_file(tmp_path):
    from dav_builder.filters.config import ScoringConfig
    from dav_builder.filters.models import ModelUnavailableError
    from dav_builder.filters.stage import ScoringStage

    cfg = ScoringConfig.from_dict({"learned_defect": {"enabled": True, "weights": str(tmp_path / "none.safetensors")}})
    with pytest.raises(ModelUnavailableError, match="none.safetensors"):
        ScoringStage(cfg).validate()
    with pytest.raises(ValueError, match="votes"):
        ScoringConfig.from_dict({"learned_defect": {"votes": 0}})


def test_a_tiny_trained_check_scores_a_corrupted_clip_above_the_clean_one(trained, tmp_path):
    """Trained briefly on renders where depth comes from another camera or the wrong buffer, the
    check's scores (real outputs) rank a clip whose depth is upside down above the same clip intact."""
    from dav_builder.filters.learned import LearnedCheck, save
    from dav_builder.filters.learned_train import load_pairs, train
    from dav_builder.render.engine import RenderConfig, render_captures

    root = tmp_path / "caps"
    render_captures(root, RenderConfig(scenes=2, frames=48, width=128, height=72, seed=3,
                                       defects=("wrong_buffer", "misaligned"), defect_rate=1.0), progress=False)
    data = load_pairs([root], side=64)
    net, cfg = train(data, steps=120, batch=16, lr=5e-3, seed=0)
    save(net, cfg, tmp_path / "w.safetensors")
    check = LearnedCheck(tmp_path / "w.safetensors", "cpu")
    clean_dir = root / sorted(p.name for p in root.iterdir() if p.is_dir())[0]
    clip = _clip_of(clean_dir, 0, 8)
    assert clip.rgb_small.shape[1:3] == (72, 128)  # K is for these frames as they are
    clean = check.frame_scores(clip.rgb_small, clip.depth, clip.K, clip.cam_to_world)
    flipped = check.frame_scores(clip.rgb_small, clip.depth[:, ::-1].copy(), clip.K, clip.cam_to_world)
    assert np.median(flipped) > np.median(clean) + 0.1, (clean, flipped)


def test_the_shipped_weights_load_and_score():
    from dav_builder.filters.learned import SHIPPED_WEIGHTS, LearnedCheck, load

    net, cfg = load()
    assert SHIPPED_WEIGHTS.stat().st_size < 1_000_000 and cfg.info.get("steps", 0) >= 1000
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 255, (4, 72, 128, 3), dtype=np.uint8)
    depth = rng.uniform(1, 50, (4, 72, 128)).astype(np.float32)
    s = LearnedCheck(None, "cpu").frame_scores(rgb, depth)
    assert s.shape == (3,) and np.isfinite(s).all() and ((s >= 0) & (s <= 1)).all()


def test_the_filter_docs_training_example_runs(trained):
    """The docs' training example is the --help example, which the ``trained`` fixture ran as
    written (one run of both, to keep the suite fast)."""
    text = (ROOT / "docs" / "filters.md").read_text()
    blocks = [b for b in re.findall(r"```bash\n(.*?)```", text, re.S) if "train-check" in b]
    assert blocks
    res = subprocess.run([str(BIN / "dav-filter"), "train-check", "--help"], capture_output=True, text=True, timeout=120)
    assert [c for b in blocks for c in commands(b)] == commands(res.stdout.split("Examples:")[1])
    cwd, weights = trained
    assert weights.is_file() and weights.with_suffix(".json").is_file()
