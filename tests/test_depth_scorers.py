"""Depth models the build can score with, with no code: a transformers depth-estimation folder and the
released Depth Any Video folder, each given as ``scoring.depth.path`` (tiny random models saved here)."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch

from dav_builder.filters.models import HFDepthModel, ModelUnavailableError, check_depth_model, load_depth_model
from released_fixture import save_released_layout

torch.set_num_threads(1)  # tiny models: threads only contend on a shared machine


def save_tiny_dpt(folder):
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    torch.manual_seed(0)
    cfg = DPTConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=37, image_size=32,
                    patch_size=8, backbone_out_indices=[0, 1, 2, 3], neck_hidden_sizes=[16, 16, 16, 16],
                    fusion_hidden_size=16)
    DPTForDepthEstimation(cfg).save_pretrained(folder)
    DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False).save_pretrained(folder)
    return folder


def save_tiny_depth_anything(folder, kind="relative"):
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    torch.manual_seed(1)
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=37,
                            image_size=28, patch_size=14, out_features=["stage1", "stage2", "stage3", "stage4"],
                            reshape_hidden_states=False)
    cfg = DepthAnythingConfig(backbone_config=backbone, neck_hidden_sizes=[16, 16, 16, 16], fusion_hidden_size=16,
                              reassemble_hidden_size=32, patch_size=14, head_hidden_size=8,
                              depth_estimation_type=kind, max_depth=20)
    model = DepthAnythingForDepthEstimation(cfg)
    with torch.no_grad():  # a visible output: the head's last bias lifts the ReLU off zero
        model.head.conv3.bias.fill_(0.5)
    model.save_pretrained(folder)
    DPTImageProcessor(size={"height": 28, "width": 28}, keep_aspect_ratio=False, ensure_multiple_of=14).save_pretrained(folder)
    return folder


def frames(n=3, h=48, w=64):
    return (np.random.default_rng(0).random((n, h, w, 3)) * 255).astype(np.uint8)


def direct(folder, rgb):
    """The transformers model run by hand, resized to the frames."""
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    proc = AutoImageProcessor.from_pretrained(folder)
    model = AutoModelForDepthEstimation.from_pretrained(folder).eval()
    with torch.no_grad():
        pred = model(**proc(images=list(rgb), return_tensors="pt")).predicted_depth
    return torch.nn.functional.interpolate(pred[:, None], size=rgb.shape[1:3], mode="bilinear")[:, 0].numpy()


@pytest.mark.parametrize("save", [save_tiny_dpt, save_tiny_depth_anything])
def test_a_transformers_depth_folder_is_recognised_and_run(tmp_path, save):
    folder = save(tmp_path / "m")
    model = load_depth_model(str(folder), device="cpu")
    assert isinstance(model, HFDepthModel) and not model.inverse  # relative inverse depth, used as it is
    rgb = frames()
    out = model(rgb)
    assert out.shape == (3, 48, 64) and out.dtype == np.float32
    assert np.allclose(out, direct(folder, rgb), atol=1e-5)


def test_a_metric_depth_model_is_inverted(tmp_path):
    folder = save_tiny_depth_anything(tmp_path / "metric", kind="metric")
    model = load_depth_model(str(folder), device="cpu")
    rgb = frames(2)
    assert model.inverse
    assert np.allclose(model(rgb), 1 / np.maximum(direct(folder, rgb), 1e-6), rtol=1e-4)


def test_a_folder_with_another_config_is_refused(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "config.json").write_text('{"architectures": ["BertModel"], "model_type": "bert"}')
    with pytest.raises(ModelUnavailableError, match="not a transformers depth-estimation model"):
        check_depth_model(str(tmp_path / "x"))


@pytest.fixture(scope="module")
def captures(tmp_path_factory):
    from dav_builder.render.engine import RenderConfig, render_captures

    root = tmp_path_factory.mktemp("caps")
    render_captures(root, RenderConfig(scenes=1, frames=24, width=64, height=48, seed=8), progress=False)
    return root


@pytest.mark.parametrize("which", ["transformers", "released"])
def test_dav_build_scores_with_the_folder_as_it_is(captures, tmp_path, which):
    from dav_builder.pipeline.build import build_dataset
    from dav_builder.pipeline.config import load_config

    folder = (save_tiny_depth_anything(tmp_path / "da") if which == "transformers"
              else save_released_layout(tmp_path / "depth-any-video"))
    cfg = load_config(overrides={"clips": {"lengths": [8]}, "run": {"executor": "local"},
                                 "scoring": {"depth": {"path": str(folder), "threshold": 0.0}}})
    lines: list[str] = []
    build_dataset([captures], tmp_path / "ds", cfg, progress=False, say=lines.append)
    assert any("depth_score on" in line for line in lines), lines
    rows = [r for r in pq.read_table(tmp_path / "ds" / "manifest.parquet").to_pylist() if r["shard"]]
    assert rows and all(r["depth_score"] is not None and 0 <= r["depth_score"] <= 1 for r in rows)


def test_a_broken_released_folder_is_a_clear_error(tmp_path):
    folder = save_released_layout(tmp_path / "dav")
    (folder / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelUnavailableError, match="diffusion_pytorch_model.safetensors"):
        load_depth_model(str(folder), device="cpu")
