"""dav-filter on real builds: every failing check recorded, sweeps that count as apply keeps,
the HTML report checked in headless Chromium, and every example of --help and docs/filters.md."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

sys.path.insert(0, str(Path(__file__).parent))
from browser import broken_images, chromium, console_errors, find_browser, full_page_screenshot  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def build(captures: Path, out: Path) -> Path:
    from dav_builder.pipeline.build import build_dataset
    from dav_builder.pipeline.config import load_config

    build_dataset([captures], out, load_config(overrides={"run": {"executor": "local"}}), progress=False,
                  say=lambda _: None)
    return out


@pytest.fixture(scope="module")
def defects(tmp_path_factory):
    """Six engine captures, some with planted defects (HUD, misaligned depth): clips kept and
    dropped; labels from the engine's defects.json (bad: the clip overlaps a planted defect)."""
    from dav_builder.render.engine import RenderConfig, render_captures

    root = tmp_path_factory.mktemp("defects")
    cfg = RenderConfig(scenes=6, frames=64, width=256, height=144, seed=5,
                       defects=("depth_lag", "misaligned", "hud", "frozen_depth"), defect_rate=0.2)
    render_captures(root / "captures", cfg, progress=False)
    ds = build(root / "captures", root / "dataset")
    lines = []
    for r in pq.read_table(ds / "manifest.parquet").to_pylist():
        if r["shard"] is None:
            continue
        spans = json.loads((root / "captures" / r["capture"] / "defects.json").read_text())
        a, b = r["first_frame"], r["first_frame"] + r["num_frames"] - 1
        bad = any(d["type"] != "wrong_nearfar" and d["first_frame"] <= b and d["last_frame"] >= a for d in spans)
        lines.append(f"{r['clip_id']},{'bad' if bad else 'good'}\n")
    (root / "labels.csv").write_text("".join(lines))
    return ds, root / "labels.csv"


def manifest(ds: Path) -> list[dict]:
    return pq.read_table(ds / "manifest.parquet").to_pylist()


def shard_meta(ds: Path) -> dict[str, dict]:
    out = {}
    for shard in (ds / "shards").rglob("*.tar"):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                if m.name.endswith(".json"):
                    meta = json.loads(tar.extractfile(m).read())
                    out[meta["clip_id"]] = meta
    return out


# -- every failing check -------------------------------------------------------------------------


def test_failures_lists_every_check_and_decide_names_the_first():
    from dav_builder.filters.config import ScoringConfig
    from dav_builder.filters.stage import decide, failures

    cfg = ScoringConfig()
    scores = {"edge_misalignment": 0.9, "depth_lag": 0.0, "static_overlay": 0.5, "depth_jump": 0.5,
              "depth_score": 0.1, "semantic_score": 0.1}
    assert failures(scores, cfg) == ["edge_misalignment", "static_overlay", "depth_jump", "low_depth_and_semantic"]
    assert decide(scores, cfg) == (False, "edge_misalignment")
    cfg.edge_misalignment.enabled = False
    assert decide(scores, cfg) == (False, "static_overlay")


def test_every_failing_check_is_in_the_manifest_and_the_clip_json(defects):
    ds, _ = defects
    rows = manifest(ds)
    meta = shard_meta(ds)
    dropped = [r for r in rows if not r["keep"]]
    assert dropped and any(r["keep"] for r in rows)
    for r in rows:
        if r["keep"]:
            assert r["failed_checks"] == []
        else:  # the reason names the first failing check; unwritten clips name their reason
            assert r["failed_checks"] and r["reason"].startswith(r["failed_checks"][0])
        if r["shard"] is not None:
            assert meta[r["clip_id"]]["failed_checks"] == r["failed_checks"]
            assert meta[r["clip_id"]]["reason"] == r["reason"]


def test_apply_records_the_checks_that_still_fail(defects, tmp_path):
    """Turning the first failing check off drops a clip that fails another check for that one."""
    from dav_builder.filters.cli import main

    ds, _ = defects
    rows = manifest(ds)
    rows_failing = [r for r in rows if r["shard"] is not None and not r["keep"]]
    name = rows_failing[0]["failed_checks"][0]
    res = CliRunner().invoke(main, ["apply", str(ds), "--out", str(tmp_path / "a"), "--check", f"{name}=off", "-q"])
    assert res.exit_code == 0, res.output
    new = {r["clip_id"]: r for r in manifest(tmp_path / "a")}
    for r in rows_failing:
        rest = [c for c in r["failed_checks"] if c != name]
        assert new[r["clip_id"]]["failed_checks"] == rest
        assert new[r["clip_id"]]["keep"] == (not rest)
    for cid, m in shard_meta(tmp_path / "a").items():
        assert m["failed_checks"] == [] and m["keep"]


def test_a_menu_screen_is_no_depth_not_unreadable(demo_dataset):
    rows = manifest(demo_dataset)
    reasons = [r["reason"] for r in rows if r["reason"]]
    assert any(x.startswith("no_depth: ") and "no valid depth" in x for x in reasons), reasons
    assert not any(x.startswith("unreadable") for x in reasons), reasons


# -- sweep counts as apply keeps ----------------------------------------------------------------


def test_the_vectorised_rule_is_the_builds_rule():
    from dav_builder.filters import sweep as sw
    from dav_builder.filters.config import ScoringConfig
    from dav_builder.filters.stage import SCORE_NAMES, decide

    rng = np.random.default_rng(0)
    n = 400
    rows = []
    for _ in range(n):
        r = {k: (None if rng.random() < 0.2 else float(rng.uniform(-0.1, 1.0))) for k in SCORE_NAMES}
        rows.append(r)
    for trial in range(20):
        cfg = ScoringConfig()
        cfg.depth.threshold, cfg.clip.threshold = rng.uniform(0, 1, 2)
        for name in sw.CHECKS:
            getattr(cfg, name).threshold = float(rng.uniform(0, 1))
            getattr(cfg, name).enabled = bool(rng.random() < 0.7)
        kept = sw.kept_mask(sw.score_table(rows), cfg, n)
        assert kept.tolist() == [decide(r, cfg)[0] for r in rows]


def sweep_kept(output: str) -> int:
    return int(re.search(r"with these thresholds kept (\d+)", output).group(1))


@pytest.mark.parametrize("options", [[], ["--check", "static_overlay=off"],
                                     ["--check", "edge_misalignment=0.001", "--check", "depth_jump=0.004"]])
def test_the_sweep_keeps_exactly_what_apply_keeps(defects, tmp_path, options):
    from dav_builder.filters.cli import main

    ds, _ = defects
    res = CliRunner().invoke(main, ["sweep", str(ds), "--out", str(tmp_path / "sweep"), *options])
    assert res.exit_code == 0, res.output
    res2 = CliRunner().invoke(main, ["apply", str(ds), "--out", str(tmp_path / "new"), "-q", *options])
    assert res2.exit_code == 0, res2.output
    stats = json.loads((tmp_path / "new" / "stats.json").read_text())
    assert sweep_kept(res.output) == stats["clips_kept"]
    # every row of the CSV too: a score at a threshold, the others as given
    import csv

    with open(tmp_path / "sweep.csv") as fh:
        row = next(r for r in csv.DictReader(fh) if r["score"] == "edge_misalignment")
    thr = float(row["threshold"])
    res3 = CliRunner().invoke(main, ["apply", str(ds), "--out", str(tmp_path / "row"), "-q", *options,
                                     "--check", f"edge_misalignment={thr!r}"])
    assert res3.exit_code == 0, res3.output
    assert int(row["kept"]) == json.loads((tmp_path / "row" / "stats.json").read_text())["clips_kept"]


def test_the_sweep_with_labels_chooses_thresholds_within_the_budget(defects, tmp_path):
    from dav_builder.filters.cli import main

    ds, labels = defects
    lab = dict(line.split(",") for line in labels.read_text().split())
    res = CliRunner().invoke(main, ["sweep", str(ds), "--labels", str(labels), "--max-good-drop", "0.05",
                                    "--out", str(tmp_path / "sweep")])
    assert res.exit_code == 0, res.output
    assert "precision" in res.output and "good dropped" in res.output
    m = re.search(r"catches (\d+) of (\d+) bad, drops (\d+) of (\d+) good, keeps (\d+) of", res.output)
    caught, n_bad, lost, n_good, kept = map(int, m.groups())
    assert n_bad == sum(v == "bad" for v in lab.values()) and n_good == sum(v == "good" for v in lab.values())
    assert lost <= 0.05 * n_good and caught > 0
    command = res.output.split("threshold choice")[1].splitlines()[1].split()
    assert command[:2] == ["dav-filter", "apply"]
    args = command[2:]
    args[args.index("--out") + 1] = str(tmp_path / "chosen")
    res2 = CliRunner().invoke(main, ["apply", *args, "-q"])
    assert res2.exit_code == 0, res2.output
    new = manifest(tmp_path / "chosen")
    assert sum(r["keep"] for r in new) == kept
    dropped = {r["clip_id"] for r in new if not r["keep"]}
    assert sum(1 for c, v in lab.items() if v == "bad" and c in dropped) == caught
    assert sum(1 for c, v in lab.items() if v == "good" and c in dropped) == lost
    assert (tmp_path / "sweep.png").stat().st_size > 1000


# -- the report, in a real browser ------------------------------------------------------------


def depth_from_brightness(rgb: np.ndarray) -> np.ndarray:
    """A stand-in depth model for the report test: disparity from brightness (uint8 RGB -> (N, H, W))."""
    return rgb.astype(np.float32).mean(axis=-1) / 255.0 + 0.1


def check_report_in_chromium(report: Path, rows: list[dict], shots: Path) -> dict[str, int]:
    """Open every page; no console errors, every image decodes, the counts are the manifest's.
    Returns the clips shown per group."""
    written = [r for r in rows if r["shard"] is not None]
    shown: dict[str, int] = {}
    with chromium() as driver:
        driver.get((report / "index.html").as_uri())
        assert console_errors(driver) == []
        assert broken_images(driver) == []

        def count(css: str) -> int:
            return int(driver.find_element("css selector", css).get_attribute("data-count"))

        assert count("#clips-cut") == len(rows)
        assert count("#clips-written") == len(written)
        assert count("#clips-kept") == sum(r["keep"] for r in rows)
        assert count("#clips-not-written") == len(rows) - len(written)
        for el in driver.find_elements("css selector", "tr[data-reason]"):
            name = el.get_attribute("data-reason")
            want = sum(r["keep"] for r in written) if name == "kept" else sum(
                1 for r in written if not r["keep"] and r["reason"].split(":")[0] == name)
            assert int(el.get_attribute("data-count")) == want, name
        full_page_screenshot(driver, shots / "index.png")
        pages = sorted({a.get_attribute("href") for a in driver.find_elements("css selector", "a")
                        if a.get_attribute("href").endswith(".html") and "index.html" not in a.get_attribute("href")})
        assert pages
        for k, url in enumerate(pages):
            driver.get(url)
            assert console_errors(driver) == [], url
            assert broken_images(driver) == [], url
            for g in driver.find_elements("css selector", "[data-group]"):
                shown[g.get_attribute("data-group")] = shown.get(g.get_attribute("data-group"), 0) + len(
                    g.find_elements("css selector", "section.clip"))
                assert len(g.find_elements("css selector", "section.clip img")) == int(g.get_attribute("data-clips"))
            full_page_screenshot(driver, shots / f"page{k}.png")
    return shown


@pytest.mark.skipif(find_browser() is None, reason="needs chromium and chromedriver (.ci/run installs them)")
def test_the_report_opens_in_chromium_with_every_image_and_the_manifests_counts(defects, tmp_path, monkeypatch):
    from dav_builder.filters.cli import main

    ds, _ = defects
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    res = CliRunner().invoke(main, ["report", str(ds), "--out", str(tmp_path / "report"), "--per-page", "3",
                                    "--kept-sample", "4", "--max-per-reason", "3",
                                    "--depth-model", "test_filter_tools:depth_from_brightness", "-q"])
    assert res.exit_code == 0, res.output
    rows = manifest(ds)
    shots = tmp_path / "shots"
    shots.mkdir()
    shown = check_report_in_chromium(tmp_path / "report", rows, shots)
    written = [r for r in rows if r["shard"] is not None]
    assert shown["kept"] == min(4, sum(r["keep"] for r in written))
    reasons = {r["reason"].split(":")[0] for r in written if not r["keep"]}
    assert reasons and set(shown) == {"kept"} | reasons
    for name in reasons:
        assert shown[name] == min(3, sum(1 for r in written if not r["keep"] and r["reason"].startswith(name)))
    assert (shots / "index.png").stat().st_size > 10_000
    # four views per clip with a depth model: RGB, captured, predicted, edges
    html = next((tmp_path / "report").glob("kept-*.html")).read_text()
    assert "predicted depth" in html
    img = next((tmp_path / "report" / "img").glob("*.webp"))
    import cv2

    pic = cv2.imdecode(np.frombuffer(img.read_bytes(), np.uint8), cv2.IMREAD_COLOR)
    h = round(144 * 200 / 256)
    assert pic.shape[1] == 4 * 200 + 3 * 2 and pic.shape[0] == 4 * h + 3 * 2
    # a second run needs --overwrite
    again = CliRunner().invoke(main, ["report", str(ds), "--out", str(tmp_path / "report"), "-q"])
    assert again.exit_code == 2 and "--overwrite" in again.output


def test_the_depth_edges_mark_steps_not_slopes():
    from dav_builder.filters.report import depth_edges

    ys = np.arange(60, dtype=np.float32)[:, None]
    floor = np.repeat(20.0 / (1.0 + ys / 10.0), 80, axis=1)  # a floor: depth falls smoothly row by row
    assert not depth_edges(floor).any()
    step = floor.copy()
    step[20:40, 30:50] = 1.0  # a box in front
    e = depth_edges(step)
    assert e[20:40, 29:31].all() and e[20:40, 49:51].all() and not e[:15].any()


# -- every example runs on the demo ------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_dataset(tmp_path_factory):
    from dav_builder.pipeline.demo import render_demo

    root = tmp_path_factory.mktemp("demo")
    render_demo(root / "captures", progress=False)
    return build(root / "captures", root / "dataset")


def examples_of(text: str, programs=("dav-filter", "dav-train")) -> list[str]:
    """Command lines in ```bash blocks (docs) or indented example lines (--help) naming a program."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.split(" ", 1)[0] in programs:
            out.append(line.split("  #")[0].strip())
    return out


def run_examples(commands: list[str], cwd: Path, monkeypatch) -> None:
    """Run each command line as written, from ``cwd``: dav-filter in this process (what its
    console script calls, without paying for a new interpreter per example), others as programs."""
    from dav_builder.filters.cli import main

    monkeypatch.chdir(cwd)
    for cmd in commands:
        argv = shlex.split(cmd)
        if argv[0] == "dav-filter":
            res = CliRunner().invoke(main, argv[1:], prog_name="dav-filter")
            assert res.exit_code == 0, f"{cmd}\n{res.output[-3000:]}"
        else:
            out = subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=cwd, capture_output=True, text=True, timeout=300)
            assert out.returncode == 0, f"{cmd}\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}"


def demo_workdir(demo_dataset: Path, path: Path) -> Path:
    """A directory like the one after 'dav-build --demo --out demo-out', with a labels.csv of the
    user's (some clips marked bad) for the examples that take labels."""
    (path / "demo-out").mkdir(parents=True)
    (path / "demo-out" / "dataset").symlink_to(demo_dataset, target_is_directory=True)
    written = [r for r in manifest(demo_dataset) if r["shard"] is not None]
    (path / "labels.csv").write_text("".join(f"{r['clip_id']},{'bad' if i % 3 == 0 else 'good'}\n"
                                             for i, r in enumerate(written)))
    return path


def test_every_help_example_of_dav_filter_runs_on_the_demo(demo_dataset, tmp_path, monkeypatch):
    cwd = demo_workdir(demo_dataset, tmp_path)
    commands = []
    for sub in ("sweep", "apply", "report"):
        res = subprocess.run([str(BIN / "dav-filter"), sub, "--help"], capture_output=True, text=True, timeout=120)
        assert res.returncode == 0, res.stderr
        found = examples_of(res.stdout.split("Examples:")[1], ("dav-filter",))
        assert found, sub
        commands += found
    run_examples(commands, cwd, monkeypatch)


def test_every_example_of_the_filter_docs_runs_on_the_demo(demo_dataset, tmp_path, monkeypatch):
    cwd = demo_workdir(demo_dataset, tmp_path)
    text = (ROOT / "docs" / "filters.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.S)
    # the training example needs rendered captures, not the demo: tests/test_learned_check.py runs it
    commands = [c for b in blocks if "train-check" not in b for c in examples_of(b)]
    assert any(c.startswith("dav-filter sweep") for c in commands)
    assert any(c.startswith("dav-filter report") for c in commands)
    assert any("--check" in c for c in commands)
    run_examples(commands, cwd, monkeypatch)


def test_the_report_reads_only_the_clips_it_shows_as_the_shard_reader_does(defects):
    from dav_builder.filters.report import _members_by_tarfile, members_of
    from dav_builder.shards.tario import iter_tar_samples

    ds, _ = defects
    shard = sorted((ds / "shards").rglob("*.tar"))[0]
    every = list(iter_tar_samples(shard))
    want = {every[0].key, every[-1].key}
    fast = [(s.key, s.meta, s.rgb, s.depth) for s in iter_tar_samples(members_of(shard, want))]
    slow = [(s.key, s.meta, s.rgb, s.depth) for s in iter_tar_samples(_members_by_tarfile(shard, want))]
    full = [(s.key, s.meta, s.rgb, s.depth) for s in every if s.key in want]
    assert fast == slow == full and len(fast) == len(want)
