"""``dav-filter report``: a static HTML report of a dataset, to see what the filter kept and dropped.

The report is plain files that open from disk with no server and no script: ``index.html`` (the
summary: clips cut, written, kept, dropped by reason, per bucket, score histograms, links to every
page), clip pages of ``per_page`` clips each, and one small WebP image per clip shown.

Which clips are shown (so a 10,000-clip dataset makes a report in minutes and pages that load at
once): a random sample of ``kept_sample`` kept clips, and for every reason a written clip was
dropped, all of its clips up to ``max_per_reason`` (a random sample beyond that, the page says
so); clips that were never written (no frames in any shard) are listed in a table without
images.  Samples are drawn with a fixed seed, shown in dataset order.

Each clip's image is a grid: one column per sampled frame, one row per view:

1. RGB;
2. captured depth as disparity, colour-mapped (Spectral, as the paper shows depth) with one scale
   for the whole clip (2nd-98th percentile of its sampled frames), black where there is no depth;
3. predicted depth, when a depth model is given (or the build scored with one): its disparity
   aligned to the captured depth by one scale and shift for the clip, on the same colour scale;
4. edges: depth edges (red) over colour edges (cyan) on the dimmed frame, white where both meet:
   depth from another camera or a late frame shows as red lines running beside cyan ones, a HUD as
   cyan shapes with no red.

Frames come from the shards through :func:`clip_depth` and :meth:`ClipSample.rgb_array`, the
project's shard reader, so every depth codec it reads works here.
"""

from __future__ import annotations

import html
import io
import json
import math
import os
import random
import shutil
import tarfile
import time
from collections import Counter, defaultdict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from dav_builder.filters import align
from dav_builder.filters.apply import scoring_config_of
from dav_builder.filters.config import ScoringConfig
from dav_builder.filters.models import colorize
from dav_builder.filters.stage import SCORE_NAMES
from dav_builder.filters.sweep import enabled, fails_alone, plot_histograms, score_table, threshold_of
from dav_builder.shards.manifest import read_manifest
from dav_builder.shards.tario import ClipSample, iter_tar_samples, split_member_name


@dataclass
class ReportConfig:
    kept_sample: int = 48
    """Kept clips shown: a random sample."""
    max_per_reason: int = 200
    """Dropped clips shown per reason (a random sample when more); 0 = all."""
    per_page: int = 40
    frames: int = 4
    """Frames sampled uniformly from each clip."""
    thumb_width: int = 200
    """Width in pixels of each frame in the images."""
    depth_model: str | None = None
    """A depth model for the predicted view; None = the build's ``scoring.depth.path`` (if any)."""
    seed: int = 0
    webp_quality: int = 80


@dataclass
class ReportSummary:
    clips_shown: int
    pages: int
    bytes: int
    seconds: float
    groups: dict[str, int] = field(default_factory=dict)
    """Group name (``kept`` or a drop reason) -> clips shown."""


@dataclass
class _Group:
    name: str
    """``kept`` or a drop reason."""
    total: int
    rows: list[dict]
    """The clips shown, in dataset order."""

    @property
    def slug(self) -> str:
        return "kept" if self.name == "kept" else "dropped-" + "".join(c if c.isalnum() or c == "_" else "-"
                                                                         for c in self.name)


# -- pictures (pure functions) ---------------------------------------------------------------


def clip_depth(sample: ClipSample) -> np.ndarray:
    """Every depth frame of a clip read back from its shard, float32 (T, H, W) metres, 0 = none.
    The one place the report reads depth, so it follows the shard reader's codecs."""
    return sample.depth_array()


def disparity_range(depth: np.ndarray) -> tuple[float, float]:
    """One colour scale for a clip: 2nd and 98th percentile of its disparity where depth is valid."""
    valid = depth > 0
    if not valid.any():
        return 0.0, 1.0
    disp = 1.0 / depth[valid]
    lo, hi = np.percentile(disp, [2, 98])
    return float(lo), float(max(hi, lo + 1e-6))


def colour_depth(depth: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Depth (H, W) metres as a colour-mapped disparity image, uint8 RGB, black where invalid."""
    valid = depth > 0
    disp = np.where(valid, 1.0 / np.maximum(depth, 1e-6), 0.0)
    img = colorize(disp, lo, hi)
    img[~valid] = 0
    return img


def depth_edges(depth: np.ndarray, min_jump: float = 0.05, contrast: float = 3.0) -> np.ndarray:
    """Depth discontinuities (H, W) bool: neighbouring pixels whose log depth differs by more than
    ``min_jump`` and by ``contrast`` times the differences beside them along the same line, so a
    step counts while a slanted surface (a floor: steady differences) does not; also the outline of
    pixels without depth.  Expects nearest-sampled depth (steps stay one pixel wide)."""
    valid = depth > 0
    logd = np.log(np.where(valid, depth, 1.0))
    edges = np.zeros(depth.shape, bool)
    for axis in (0, 1):
        jump = np.abs(np.diff(logd, axis=axis))
        both = np.logical_and(np.take(valid, range(1, valid.shape[axis]), axis=axis),
                              np.take(valid, range(0, valid.shape[axis] - 1), axis=axis))
        jump = np.where(both, jump, 0.0)
        pad = [(0, 0), (0, 0)]
        pad[axis] = (1, 1)
        padded = np.pad(jump, pad)
        n = jump.shape[axis]
        before = np.take(padded, range(0, n), axis=axis)
        after = np.take(padded, range(2, n + 2), axis=axis)
        step = (jump > min_jump) & (jump > contrast * np.maximum(before, after))
        lo = [slice(None), slice(None)]
        hi = [slice(None), slice(None)]
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        edges[tuple(lo)] |= step
        edges[tuple(hi)] |= step
    hole = valid & (cv2.erode(valid.astype(np.uint8), np.ones((3, 3), np.uint8), borderType=cv2.BORDER_REPLICATE) == 0)
    return edges | hole


def edge_overlay(rgb: np.ndarray, depth: np.ndarray) -> np.ndarray:
    """Depth edges (red) over colour edges (cyan) on the dimmed frame; white where both meet."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    rgb_edges = cv2.Canny(cv2.GaussianBlur(grey, (3, 3), 0), 40, 120) > 0
    d_edges = depth_edges(depth)
    out = (rgb.astype(np.float32) * 0.35).astype(np.uint8)
    out[rgb_edges] = (0, 200, 255)
    out[d_edges] = (255, 40, 40)
    out[rgb_edges & d_edges] = (255, 255, 255)
    return out


def _thumb(img: np.ndarray, width: int, nearest: bool = False) -> np.ndarray:
    h, w = img.shape[:2]
    height = max(1, round(h * width / w))
    return cv2.resize(img, (width, height), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


def clip_views(rgb: np.ndarray, depth: np.ndarray, predicted: np.ndarray | None, width: int) -> list[list[np.ndarray]]:
    """The rows of a clip's image (RGB, captured depth, [predicted depth,] edges), each a list of
    per-frame thumbnails ``width`` pixels wide.  ``predicted``: aligned depth in metres or None."""
    lo, hi = disparity_range(depth)
    rows = [[_thumb(f, width) for f in rgb], [_thumb(colour_depth(d, lo, hi), width, True) for d in depth]]
    if predicted is not None:
        rows.append([_thumb(colour_depth(p, lo, hi), width, True) for p in predicted])
    rows.append([edge_overlay(_thumb(f, width), _thumb(d, width, True)) for f, d in zip(rgb, depth)])
    return rows


def compose(rows: list[list[np.ndarray]], gap: int = 2) -> np.ndarray:
    """Tile rows of equal-size thumbnails into one image with white gaps."""
    h, w = rows[0][0].shape[:2]
    cols = max(len(r) for r in rows)
    out = np.full((len(rows) * (h + gap) - gap, cols * (w + gap) - gap, 3), 255, np.uint8)
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            out[i * (h + gap): i * (h + gap) + h, j * (w + gap): j * (w + gap) + w] = img
    return out


def encode_webp(img: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".webp", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_WEBP_QUALITY, quality])
    if not ok:
        raise ValueError("OpenCV cannot encode WebP images")
    return buf.tobytes()


# -- choosing what to show -------------------------------------------------------------------


def reason_key(reason: str | None) -> str:
    return (reason or "dropped").split(":", 1)[0]


def choose_groups(rows: list[dict], cfg: ReportConfig) -> list[_Group]:
    """The kept sample, then each drop reason of written clips (most clips first)."""
    rng = random.Random(cfg.seed)
    order = {r["clip_id"]: i for i, r in enumerate(rows)}

    def sample(items: list[dict], k: int) -> list[dict]:
        picked = items if k <= 0 or len(items) <= k else rng.sample(items, k)
        return sorted(picked, key=lambda r: order[r["clip_id"]])

    written = [r for r in rows if r["shard"] is not None]
    kept = [r for r in written if r["keep"]]
    groups = [_Group("kept", len(kept), sample(kept, cfg.kept_sample) if cfg.kept_sample else [])]
    by_reason: dict[str, list[dict]] = defaultdict(list)
    for r in written:
        if not r["keep"]:
            by_reason[reason_key(r["reason"])].append(r)
    for name, items in sorted(by_reason.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        groups.append(_Group(name, len(items), sample(items, cfg.max_per_reason)))
    return groups


# -- the depth model -------------------------------------------------------------------------


def _depth_model(dataset: Path, cfg: ReportConfig, scoring: ScoringConfig):
    """The model for the predicted view, or None; a model given explicitly must load."""
    from dav_builder.filters.models import ModelUnavailableError, check_depth_model, load_depth_model

    path = cfg.depth_model
    if path is None:
        path = scoring.depth.path
        if path is None:
            return None, None
        try:
            check_depth_model(path)
        except ModelUnavailableError as exc:
            return None, f"the build's depth model is not available here ({exc}); no predicted view"
    else:
        check_depth_model(path)
    return load_depth_model(path, scoring.depth.steps, scoring.depth.device), None


def predict(model, rgb: np.ndarray, depth: np.ndarray, frame_indices: list[int]) -> np.ndarray:
    """The model's disparity for the frames, aligned to the captured depth (metres)."""
    if getattr(model, "takes_frame_indices", False):
        pred = model(rgb, frame_indices)
    else:
        pred = model(rgb)
    pred = np.asarray(pred, np.float32)
    if pred.shape != depth.shape:
        raise ValueError(f"depth model returned shape {pred.shape} for frames of shape {depth.shape}")
    aligned, _ = align.align_disparity(pred, depth)
    return aligned


# -- HTML ------------------------------------------------------------------------------------

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;color:#1d2329;background:#f4f5f7}
header{background:#1d2329;color:#fff;padding:14px 24px}
header h1{font-size:20px;margin:0 0 4px} header .sub{color:#b9c0c8;font-size:13px}
header a{color:#9fd0ff}
main{padding:16px 24px;max-width:1400px}
h2{font-size:17px;margin:22px 0 8px}
table{border-collapse:collapse;background:#fff;font-size:13px;margin-bottom:8px}
th,td{border:1px solid #dde1e6;padding:4px 9px;text-align:left} th{background:#eef0f3}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.cards{display:flex;flex-wrap:wrap;gap:14px}
.stat{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:10px 16px;min-width:110px}
.stat b{display:block;font-size:24px} .stat span{font-size:12px;color:#5b6670}
.clip{background:#fff;border:1px solid #dde1e6;border-radius:6px;padding:10px 12px;margin:12px 0}
.clip h3{font-size:14px;margin:0 0 6px;font-family:ui-monospace,monospace}
.clip .meta{font-size:12px;color:#5b6670;margin-bottom:6px}
.strip{display:flex;gap:8px;align-items:flex-start;overflow-x:auto}
.legend{display:flex;flex-direction:column;gap:2px;font-size:11px;color:#5b6670;text-align:right;min-width:92px}
.legend div{display:flex;align-items:center;justify-content:flex-end}
.scores td{padding:2px 7px;white-space:nowrap}
.fail{color:#b3261e;font-weight:600}
.badge{display:inline-block;border-radius:10px;padding:1px 8px;font-size:11px;margin-right:4px;background:#e6f4ea;color:#1e6b34}
.badge.bad{background:#fde7e9;color:#b3261e}
nav.pages{margin:10px 0;font-size:13px} nav.pages a,nav.pages b{margin-right:8px}
.note{font-size:12px;color:#5b6670}
img.hist{max-width:100%;background:#fff;border:1px solid #dde1e6}
"""


def _page(title: str, sub: str, body: str) -> str:
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1"><title>{html.escape(title)}</title>'
            f"<style>{CSS}</style></head><body><header><h1>{html.escape(title)}</h1>"
            f'<div class="sub">{sub}</div></header><main>{body}</main></body></html>')


def _fmt(v) -> str:
    return "null" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4g}"


def _scores_table(row: dict, scoring: ScoringConfig) -> str:
    failed = set(row.get("failed_checks") or [])
    cells = []
    for name in SCORE_NAMES:
        if name not in row:
            continue
        v = row.get(name)
        if v is None and name in ("depth_score", "semantic_score"):
            continue  # the build ran without that model: the summary says so
        if enabled(scoring, name):
            thr = threshold_of(scoring, name)
            rule = f"{'&lt;' if name in ('depth_score', 'semantic_score') else '&gt;'} {thr:.4g}"
            bad = v is not None and bool(fails_alone(np.array([v], float), name, thr)[0])
        else:
            rule, bad = "off", False
        cls = ' class="fail"' if name in failed or bad else ""
        cells.append(f"<tr{cls}><td>{name}</td><td class=n>{_fmt(v)}</td><td class=note>drop {rule}</td></tr>")
    return f'<table class="scores">{"".join(cells)}</table>'


def _clip_card(row: dict, img: str | None, size: tuple[int, int], labels: list[str], scoring: ScoringConfig) -> str:
    failed = row.get("failed_checks") or []
    badges = ("".join(f'<span class="badge bad">{html.escape(f)}</span>' for f in failed)
              if not row["keep"] else '<span class="badge">kept</span>')
    frames = row["frame_indices"] or []
    span = f"frames {frames[0]}–{frames[-1]}" if frames else "no frames"
    meta = (f'{html.escape(row["capture"])} · {span} ({row["num_frames"]}) · {html.escape(row["bucket"] or "")}'
            + (f' · reason: {html.escape(row["reason"])}' if row["reason"] else ""))
    if img is None:
        picture = '<div class="note">frames could not be read from the shard</div>'
    else:
        w, h = size
        cell = (h - 2 * (len(labels) - 1)) / len(labels)
        legend = "".join(f'<div style="height:{cell:.1f}px">{html.escape(t)}</div>' for t in labels)
        picture = (f'<div class="legend">{legend}</div>'
                   f'<img src="{img}" width="{w}" height="{h}" alt="frames of clip {row["clip_id"]}" loading="lazy">')
    return (f'<section class="clip" id="c-{row["clip_id"]}" data-clip="{row["clip_id"]}">'
            f'<h3>{row["clip_id"]} {badges}</h3><div class="meta">{meta}</div>'
            f'<div class="strip">{picture}{_scores_table(row, scoring)}</div></section>')


def _pages_nav(slug: str, n_pages: int, current: int | None) -> str:
    links = ['<a href="index.html">summary</a>']
    for p in range(1, n_pages + 1):
        links.append(f"<b>{p}</b>" if p == current else f'<a href="{slug}-{p}.html">{p}</a>')
    return f'<nav class="pages">{" ".join(links)}</nav>'


# -- the report ------------------------------------------------------------------------------


def write_report(dataset: Path, out: Path, cfg: ReportConfig = ReportConfig(), overwrite: bool = False,
                 progress: bool = True) -> ReportSummary:
    """Write the report of ``dataset`` into ``out``; return what it holds."""
    t0 = time.perf_counter()
    dataset, out = Path(dataset), Path(out)
    rows = read_manifest(dataset).to_pylist()
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ValueError(f"{out}: exists and is not empty (use --overwrite to replace a report there)")
        if not (out / "index.html").is_file():
            raise ValueError(f"{out}: not a report (no index.html); not deleting it")
        shutil.rmtree(out)
    (out / "img").mkdir(parents=True, exist_ok=True)
    scoring = scoring_config_of(dataset)
    model, warning = _depth_model(dataset, cfg, scoring)
    if warning:
        print(f"warning: {warning}")
    groups = choose_groups(rows, cfg)
    labels = ["RGB", "captured depth"] + (["predicted depth"] if model is not None else []) + ["depth edges (red) / RGB edges (cyan)"]

    # images: read only the shards that hold a clip shown, each once
    wanted = {r["clip_id"]: r for g in groups for r in g.rows}
    by_shard: dict[str, set[str]] = defaultdict(set)
    for cid, r in wanted.items():
        by_shard[r["shard"]].add(cid)
    images: dict[str, tuple[str, tuple[int, int]]] = {}
    workers = 1 if model is not None else max(1, min(4, os.cpu_count() or 1))
    bar = tqdm(total=len(wanted), desc="report", unit="clip", disable=not progress)

    def collect(future) -> None:
        key, result = future.result()
        if isinstance(result, str):
            print(f"warning: clip {key}: {result}")
        else:
            images[key] = result
        bar.update(1)

    with ThreadPoolExecutor(workers) as pool:  # decoding and encoding release the GIL
        pending: deque = deque()
        for shard in sorted(by_shard):
            keys = by_shard[shard]
            path = dataset / shard
            if not path.is_file():
                print(f"warning: {path}: shard missing; its clips are shown without frames")
                bar.update(len(keys))
                continue
            for sample in iter_tar_samples(members_of(path, keys)):
                if sample.key in keys:
                    pending.append(pool.submit(_draw, sample, wanted[sample.key], out, cfg, model))
                while len(pending) > 2 * workers:
                    collect(pending.popleft())
        while pending:
            collect(pending.popleft())
    bar.close()

    # histograms of every stored score, written clips only
    written = [r for r in rows if r["shard"] is not None]
    scores = score_table(written)
    has_hist = bool(scores)
    if has_hist:
        buf = out / "img" / "scores.png"
        plot_histograms(scores, scoring, buf)
        png = cv2.imread(str(buf), cv2.IMREAD_COLOR)
        buf.unlink()
        ok, webp = cv2.imencode(".webp", png, [cv2.IMWRITE_WEBP_QUALITY, 90])
        (out / "img" / "scores.webp").write_bytes(webp.tobytes())

    # clip pages
    n_pages = 0
    pages_of: dict[str, int] = {}
    for g in groups:
        chunks = [g.rows[i: i + cfg.per_page] for i in range(0, len(g.rows), cfg.per_page)]
        pages_of[g.name] = len(chunks)
        title = "Kept clips" if g.name == "kept" else f"Dropped: {g.name}"
        for p, chunk in enumerate(chunks, 1):
            shown = (f"a random sample of {len(g.rows)} of the {g.total} kept clips" if g.name == "kept"
                     else f"{'all' if len(g.rows) == g.total else f'a random sample of {len(g.rows)} of the'} "
                          f"{g.total} clips dropped as <b>{html.escape(g.name)}</b>")
            body = (_pages_nav(g.slug, len(chunks), p)
                    + f'<p class="note">Showing {shown}; page {p} of {len(chunks)}. Rows of each picture: '
                    + ", ".join(labels) + ". Depth is disparity, Spectral colour map (near: blue, far: red), one "
                    "scale per clip; black: no depth. Failing scores in red.</p>"
                    + f'<div data-group="{html.escape(g.name)}" data-clips="{len(chunk)}">'
                    + "".join(_clip_card(r, *images.get(r["clip_id"], (None, (0, 0))), labels, scoring) for r in chunk)
                    + "</div>" + _pages_nav(g.slug, len(chunks), p))
            (out / f"{g.slug}-{p}.html").write_text(_page(f"{title} — page {p}", html.escape(str(dataset)), body))
            n_pages += 1

    not_written = [r for r in rows if r["shard"] is None]
    if not_written:
        trs = "".join(f"<tr><td>{html.escape(r['capture'])}</td><td class=n>{r['first_frame']}</td>"
                      f"<td class=n>{r['num_frames']}</td><td>{html.escape(r['reason'] or '')}</td></tr>"
                      for r in not_written)
        body = ('<nav class="pages"><a href="index.html">summary</a></nav>'
                f'<p class="note">Clips cut from the captures but never written to a shard (no frames to show).</p>'
                f'<table data-not-written="{len(not_written)}"><tr><th>capture</th><th>first frame</th>'
                f"<th>frames</th><th>reason</th></tr>{trs}</table>")
        (out / "not-written.html").write_text(_page("Clips not written", html.escape(str(dataset)), body))
        n_pages += 1

    (out / "index.html").write_text(_summary_html(dataset, rows, groups, pages_of, scoring, has_hist, model is not None,
                                                  bool(not_written)))
    n_pages += 1
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    return ReportSummary(len(wanted), n_pages, size, time.perf_counter() - t0,
                         {g.name: len(g.rows) for g in groups})


def members_of(path: Path, keys: set[str]) -> io.BytesIO:
    """The members of the clips ``keys`` of the shard at ``path``, as a tar stream for the shard
    reader: only the shard's 512-byte headers are read and the other clips' bytes skipped, and the
    wanted members are copied as they are (header and data), so showing a few clips of a large
    shard reads little of it.  Shards with other than plain ustar file members (pax or GNU long
    names, from other writers) go through :mod:`tarfile` instead."""
    buf = io.BytesIO()
    with open(path, "rb") as fh:
        while True:
            header = fh.read(512)
            if len(header) < 512 or header == bytes(512):
                break
            if header[156:157] not in (b"0", b"\0") or header[345:346] != b"\0":  # not a plain ustar file
                return _members_by_tarfile(path, keys)
            name = header[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
            size = int(header[124:136].split(b"\0", 1)[0].strip() or b"0", 8)
            padded = (size + 511) // 512 * 512
            if split_member_name(name)[0] in keys:
                buf.write(header)
                buf.write(fh.read(padded))
            else:
                fh.seek(padded, os.SEEK_CUR)
    buf.write(bytes(1024))
    buf.seek(0)
    return buf


def _members_by_tarfile(path: Path, keys: set[str]) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(path, "r:") as src, tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as dst:
        for info in src:
            if info.isfile() and split_member_name(info.name)[0] in keys:
                dst.addfile(info, src.extractfile(info))
    buf.seek(0)
    return buf


def _draw(sample: ClipSample, row: dict, out: Path, cfg: ReportConfig, model) -> tuple[str, object]:
    """Write one clip's picture; (key, (file, (width, height))) or (key, the problem)."""
    try:
        depth = clip_depth(sample)
        pos = align.sample_indices(len(sample.rgb), cfg.frames)
        rgb = _rgb_frames(sample, pos)
        d = depth[pos]
        pred = None
        if model is not None:
            idx = [int(i) for i in np.asarray(row["frame_indices"] or list(range(len(sample.rgb))))[pos]]
            pred = predict(model, rgb, d, idx)
        img = compose(clip_views(rgb, d, pred, cfg.thumb_width))
        name = f"img/{sample.key}.webp"
        (out / name).write_bytes(encode_webp(img, cfg.webp_quality))
        return sample.key, (name, (img.shape[1], img.shape[0]))
    except (ValueError, OSError) as exc:
        return sample.key, f"{row['shard']}: {exc}"


def _rgb_frames(sample: ClipSample, positions: list[int]) -> np.ndarray:
    """Only the sampled RGB frames decoded."""
    from dav_builder.shards.tario import decode_rgb_member

    frames = []
    for i in positions:
        rgb = decode_rgb_member(sample.rgb[i])
        if rgb is None:
            raise ValueError(f"RGB frame {i} cannot be decoded")
        frames.append(rgb)
    return np.stack(frames)


def _summary_html(dataset: Path, rows: list[dict], groups: list[_Group], pages_of: dict[str, int],
                  scoring: ScoringConfig, has_hist: bool, predicted: bool, not_written: bool) -> str:
    written = [r for r in rows if r["shard"] is not None]
    kept = [r for r in written if r["keep"]]
    stats_path = dataset / "stats.json"
    stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}

    def stat(key: str, n: int, label: str) -> str:
        return f'<div class="stat" id="{key}" data-count="{n}"><b>{n}</b><span>{label}</span></div>'

    body = ['<div class="cards">', stat("clips-cut", len(rows), "clips cut"),
            stat("clips-written", len(written), "written to shards"), stat("clips-kept", len(kept), "kept"),
            stat("clips-dropped", len(written) - len(kept), "written, dropped by a score"),
            stat("clips-not-written", len(rows) - len(written), "not written"), "</div>"]
    body.append("<h2>Clips by outcome</h2><table><tr><th>outcome</th><th>clips</th><th>shown</th><th>pages</th></tr>")
    for g in groups:
        label = "kept" if g.name == "kept" else f"dropped: {html.escape(g.name)}"
        links = " ".join(f'<a href="{g.slug}-{p}.html">{p}</a>' for p in range(1, pages_of.get(g.name, 0) + 1))
        body.append(f'<tr data-reason="{html.escape(g.name)}" data-count="{g.total}" data-shown="{len(g.rows)}">'
                    f"<td>{label}</td><td class=n>{g.total}</td><td class=n>{len(g.rows)}</td><td>{links or '–'}</td></tr>")
    nw = Counter(reason_key(r["reason"]) for r in rows if r["shard"] is None)
    for name, n in sorted(nw.items(), key=lambda kv: (-kv[1], kv[0])):
        body.append(f'<tr data-not-written-reason="{html.escape(name)}" data-count="{n}"><td>not written: '
                    f'{html.escape(name)}</td><td class=n>{n}</td><td class=n>–</td>'
                    f'<td><a href="not-written.html">list</a></td></tr>')
    body.append("</table>")
    body.append("<h2>Per bucket</h2><table><tr><th>bucket</th><th>written</th><th>kept</th><th>dropped</th>"
                "<th>dropped by reason</th></tr>")
    buckets: dict[str, list[dict]] = defaultdict(list)
    for r in written:
        buckets[r["bucket"]].append(r)
    for b, rs in sorted(buckets.items()):
        k = sum(1 for r in rs if r["keep"])
        why = Counter(reason_key(r["reason"]) for r in rs if not r["keep"])
        body.append(f'<tr data-bucket="{html.escape(b)}" data-count="{len(rs)}"><td>{html.escape(b)}</td>'
                    f"<td class=n>{len(rs)}</td><td class=n>{k}</td><td class=n>{len(rs) - k}</td>"
                    f"<td>{html.escape(', '.join(f'{n} {c}' for n, c in sorted(why.items())) or '–')}</td></tr>")
    body.append("</table>")
    on = [f"{n} &gt; {threshold_of(scoring, n):.4g}" for n in SCORE_NAMES[2:] if enabled(scoring, n)]
    body.append(f'<p class="note">The build\'s thresholds (a clip is dropped when any check fails): '
                f"{', '.join(on) or 'no model-free checks'}; depth_score &lt; {scoring.depth.threshold:.4g} "
                f"and semantic_score &lt; {scoring.clip.threshold:.4g} (both, when both are stored). "
                "Try others with <code>dav-filter sweep</code>.</p>")
    if has_hist:
        body.append('<h2>Scores of the written clips</h2><img class="hist" src="img/scores.webp" '
                    'alt="histogram of every stored score">')
    sub = html.escape(str(dataset))
    if stats.get("seconds_per_stage") or stats.get("wall_seconds_last_run"):
        sub += f" · built in {stats.get('wall_seconds_last_run', '?')} s"
    sub += " · predicted depth shown" if predicted else " · no depth model: no predicted-depth view"
    return _page("Dataset report", sub, "".join(body))
