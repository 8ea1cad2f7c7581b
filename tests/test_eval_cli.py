"""``dav-train eval MODEL --benchmark NAME=PATH ...`` on tiny benchmark copies with a tiny random model."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import torch

import eval_fixtures as fx
from dav_builder.model.cli import EVAL_EPILOG, main


def run(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code in (0, None)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> Path:
    from dav_builder.model.config import ModelConfig
    from dav_builder.model.video_depth import DepthAnyVideo

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("model") / "tiny"
    DepthAnyVideo.build(ModelConfig()).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("benchmarks")
    out = {}
    for name in ("scannetpp", "kitti", "nyuv2", "sintel"):
        fx.WRITERS[name](root / name)
        out[name] = root / name
    return out


def test_benchmark_table_as_markdown_and_json(tiny_model, sets, tmp_path, capsys):
    out = tmp_path / "res" / "eval.json"
    run(["eval", str(tiny_model), "--benchmark", f"scannetpp={sets['scannetpp']}", "--benchmark",
          f"kitti={sets['kitti']}", "-b", f"nyuv2={sets['nyuv2']}", "--set", "scannetpp.frames=4", "--set", "scannetpp.stride=2",
          "--max-res", "32", "--max-clips", "1", "--out", str(out), "--device", "cpu"])
    report = json.loads(out.read_text())
    assert report["steps"] == 1 and report["ensemble"] == 1           # the CPU defaults
    assert report["protocol"] == {"fit": "sequence", "average": "frame", "caps": "dataset", "tae": "official"}
    b = report["benchmarks"]
    assert list(b) == ["scannetpp", "kitti", "nyuv2"]
    assert b["scannetpp"]["frames"] == 4 and b["scannetpp"]["tae"] is not None and b["kitti"]["tae"] is None
    for name in b:
        assert 0 < b[name]["abs_rel"] < 5 and 0 <= b[name]["delta1"] <= 1 and b[name]["clips"] == 1
        assert b[name]["seconds_per_frame"] > 0
    assert all(b[n]["skipped"] == [] for n in b)
    md = out.with_suffix(".md").read_text()
    assert "ScanNet++ AbsRel↓ | ScanNet++ δ1↑ | ScanNet++ TAE↓ | KITTI AbsRel↓" in md
    assert f"{b['kitti']['abs_rel']:.3f}" in md.splitlines()[2]
    assert md in capsys.readouterr().out


def test_help_examples_run(tiny_model, sets, tmp_path):
    """Every --benchmark example of ``dav-train eval --help`` and docs/evaluation.md, with its paths
    pointed at the fixtures (and ensemble 20 cut to 2, frames kept few, so it runs in seconds on a CPU)."""
    subst = {"runs/svd": str(tiny_model), "runs/tiny": str(tiny_model), "/models/depth-any-video": str(tiny_model),
             "--ensemble 20": "--ensemble 2", "--out eval.json": f"--out {tmp_path / 'e.json'}"}
    subst.update({f"/data/{k}": str(v) for k, v in sets.items()})
    subst["/data/nyu"] = str(sets["nyuv2"])
    doc = (Path(__file__).parents[1] / "docs" / "evaluation.md").read_text()
    lines = [ln.strip() for ln in EVAL_EPILOG.splitlines() + doc.splitlines()]
    examples = list(dict.fromkeys(ln for ln in lines if ln.startswith("dav-train eval") and "--benchmark" in ln))
    assert len(examples) == 3, examples          # the docs show the --help examples
    ran = 0
    for line in examples:
        for a, b in sorted(subst.items(), key=lambda kv: -len(kv[0])):
            line = line.replace(a, b)
        argv = shlex.split(line)[1:] + ["--max-res", "32", "--max-clips", "1", "-q", "--device", "cpu"]
        for name in ("sintel", "scannetpp"):
            if f"{name}=" in line:
                argv += ["--set", f"{name}.frames=3"]
        run(argv)
        ran += 1
    assert ran == 3


def test_usage_errors(tiny_model, sets, capsys):
    for argv, msg in ((["eval", str(tiny_model)], "give a DATASET"),
                      (["eval", str(tiny_model), "-b", "kitti"], "expected NAME=PATH"),
                      (["eval", str(tiny_model), "-b", "middlebury=/x"], "unknown data set"),
                      (["eval", str(tiny_model), "-b", f"kitti={sets['kitti']}", "--set", "nyuv2.split=all"],
                       "no --benchmark nyuv2"),
                      (["eval", str(tiny_model), "-b", f"kitti={sets['kitti']}", "--protocol", "paper,fit=pixel"],
                       "fit must be one of")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and msg in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["eval", str(tiny_model), "-b", f"kitti={sets['kitti']}", "--set", "kitti.crop=round", "-q"])
    assert e.value.code == 2 and "crop must be eigen, garg or none" in capsys.readouterr().err


def test_an_unreadable_clip_is_reported_and_skipped(tiny_model, tmp_path, capsys):
    fx.write_diode(tmp_path / "diode")
    bad = next((tmp_path / "diode").rglob("*outdoor*_depth.npy"))
    bad.write_bytes(b"not numpy")
    out = tmp_path / "e.json"
    run(["eval", str(tiny_model), "-b", f"diode={tmp_path / 'diode'}", "--max-res", "32", "-q", "--out", str(out)])
    d = json.loads(out.read_text())["benchmarks"]["diode"]
    assert d["clips"] == 1 and len(d["skipped"]) == 1 and bad.name in d["skipped"][0]["error"]
    assert "clip skipped" in capsys.readouterr().err
