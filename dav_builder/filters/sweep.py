"""Threshold sweeps over stored scores: keep rate per (depth, semantic) threshold pair.

Rule (the paper's): a clip is dropped when its depth score AND its semantic score are both below
their thresholds.  With labels (clip id -> good/bad) each pair also gets precision, recall and
F1 of *dropping bad clips*: precision = bad among dropped, recall = dropped among bad.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass
class SweepRow:
    depth_threshold: float
    semantic_threshold: float
    keep_rate: float
    kept: int
    precision: float | None = None
    recall: float | None = None
    f1: float | None = None
    best: bool = False


def default_grid(values: np.ndarray, n: int = 9) -> list[float]:
    """Thresholds at evenly spaced quantiles of the observed scores (plus one below all)."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return []
    qs = np.quantile(v, np.linspace(0, 1, n))
    return sorted({float(np.round(q, 4)) for q in qs} | {float(np.round(v.min() - 1e-3, 4))})


def dropped(depth: np.ndarray, semantic: np.ndarray, has_d: np.ndarray, has_s: np.ndarray, td: float,
            ts: float) -> np.ndarray:
    """The paper's rule per clip, as :func:`dav_builder.filters.stage.decide` applies it: both scores
    low; where one score is missing (NaN: off), the other alone; neither: never dropped."""
    with np.errstate(invalid="ignore"):
        low_d, low_s = depth < td, semantic < ts
    return np.where(has_d & has_s, low_d & low_s, np.where(has_d, low_d, np.where(has_s, low_s, False)))


def sweep(
    depth: np.ndarray, semantic: np.ndarray, depth_grid: list[float], semantic_grid: list[float],
    bad: np.ndarray | None = None,
) -> list[SweepRow]:
    """Evaluate every threshold pair; ``bad`` marks labelled bad clips (NaN/None = unlabelled)."""
    rows = []
    has_d, has_s = np.isfinite(depth), np.isfinite(semantic)
    for td in depth_grid:
        for ts in semantic_grid:
            drop = dropped(depth, semantic, has_d, has_s, td, ts)
            row = SweepRow(td, ts, float(1 - drop.mean()) if drop.size else 1.0, int((~drop).sum()))
            if bad is not None:
                lab = bad >= 0
                b = bad[lab] == 1
                d = drop[lab]
                tp = int((d & b).sum())
                row.precision = tp / int(d.sum()) if d.sum() else 0.0
                row.recall = tp / int(b.sum()) if b.sum() else 0.0
                p, r = row.precision, row.recall
                row.f1 = 2 * p * r / (p + r) if p + r else 0.0
            rows.append(row)
    if bad is not None and rows:
        max(rows, key=lambda r: (r.f1 or 0.0, r.keep_rate)).best = True
    return rows


def load_labels(path: Path) -> dict[str, bool]:
    """clip id -> True for bad, from a CSV (``clip_id,label``) or JSON ({id: label}); labels good/bad."""
    path = Path(path)
    text = path.read_text()
    if path.suffix == ".json":
        raw = json.loads(text)
    else:
        raw = {r[0]: r[1] for r in csv.reader(text.splitlines()) if r and r[0] != "clip_id"}
    out = {}
    for cid, label in raw.items():
        lab = str(label).strip().lower()
        if lab not in ("good", "bad"):
            raise ValueError(f"{path}: clip {cid}: label must be good or bad, got {label!r}")
        out[cid] = lab == "bad"
    return out


def write_csv(rows: list[SweepRow], path: Path) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["depth_threshold", "semantic_threshold", "keep_rate", "kept", "precision", "recall", "f1", "best"])
        for r in rows:
            w.writerow([r.depth_threshold, r.semantic_threshold, f"{r.keep_rate:.4f}", r.kept,
                        "" if r.precision is None else f"{r.precision:.4f}",
                        "" if r.recall is None else f"{r.recall:.4f}", "" if r.f1 is None else f"{r.f1:.4f}", r.best])


def plot(rows: list[SweepRow], path: Path) -> None:
    """Heat map of the keep rate (and F1 when labelled) over the threshold grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ds = sorted({r.depth_threshold for r in rows})
    ss = sorted({r.semantic_threshold for r in rows})
    panels = [("keep rate", "keep_rate")] + ([("F1 (dropping bad clips)", "f1")] if rows[0].f1 is not None else [])
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4.5), squeeze=False)
    for ax, (title, attr) in zip(axes[0], panels):
        grid = np.full((len(ds), len(ss)), np.nan)
        for r in rows:
            grid[ds.index(r.depth_threshold), ss.index(r.semantic_threshold)] = getattr(r, attr)
        im = ax.imshow(grid, origin="lower", aspect="auto", cmap="viridis", vmin=0, vmax=1)
        ax.set_xticks(range(len(ss)), [f"{v:.3g}" for v in ss], rotation=45)
        ax.set_yticks(range(len(ds)), [f"{v:.3g}" for v in ds])
        ax.set_xlabel("semantic threshold")
        ax.set_ylabel("depth threshold")
        ax.set_title(title)
        for r in rows:
            if r.best:
                ax.plot(ss.index(r.semantic_threshold), ds.index(r.depth_threshold), "r*", markersize=14)
        fig.colorbar(im, ax=ax)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
