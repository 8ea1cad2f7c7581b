"""Threshold sweeps over every stored score, and a threshold choice from labelled clips.

Everything here decides keep or drop with :func:`kept_mask`, the vectorised form of
:func:`dav_builder.filters.stage.failures` (the build's and ``dav-filter apply``'s rule; a test
holds them equal), so a keep count printed for a set of thresholds is exactly what ``dav-filter
apply`` keeps with them.  Only written clips (``shard`` not null) can be kept.

- :func:`score_table`: the scores present in a manifest, one float array each (NaN = null).
- :func:`sweep_score`: one score's thresholds, the others held at a config: how many clips that
  score fails alone, how many are kept overall, and with labels precision / recall / share of good
  clips dropped overall.
- :func:`check_report`: with labels, per check at a config: what it drops and how well.
- :func:`choose_thresholds`: with labels, thresholds that catch as many bad clips as possible while
  dropping at most a given share of the good ones (greedy: each step takes the threshold move with
  the most bad clips caught per good clip lost that stays within the budget).

Thresholds the sweep proposes are rounded to 4 significant digits, so the printed ``dav-filter
apply`` command (which parses the printed text) decides exactly as the sweep counted.
"""

from __future__ import annotations

import copy
import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dav_builder.filters.config import ScoringConfig
from dav_builder.filters.stage import CHECKS, SCORE_NAMES

MODEL_SCORES = ("depth_score", "semantic_score")
#: The name under which the paper's rule (depth and semantic score both low) is reported.
MODEL_RULE = "depth_and_semantic"


# -- the decision, vectorised ----------------------------------------------------------------


def score_table(rows: list[dict]) -> dict[str, np.ndarray]:
    """Score name -> float array over ``rows`` (NaN where null), for every score at least one row has."""
    out = {}
    for name in SCORE_NAMES:
        values = np.array([np.nan if r.get(name) is None else float(r[name]) for r in rows], dtype=np.float64)
        if np.isfinite(values).any():
            out[name] = values
    return out


def threshold_of(cfg: ScoringConfig, name: str) -> float:
    """The threshold ``cfg`` gives score ``name``."""
    if name == "depth_score":
        return cfg.depth.threshold
    if name == "semantic_score":
        return cfg.clip.threshold
    return getattr(cfg, name).threshold


def with_threshold(cfg: ScoringConfig, name: str, value: float) -> ScoringConfig:
    """A copy of ``cfg`` with score ``name``'s threshold set to ``value`` (a check is turned on)."""
    new = copy.deepcopy(cfg)
    if name == "depth_score":
        new.depth.threshold = value
    elif name == "semantic_score":
        new.clip.threshold = value
    else:
        getattr(new, name).threshold = value
        getattr(new, name).enabled = True
    return new


def enabled(cfg: ScoringConfig, name: str) -> bool:
    return name in MODEL_SCORES or getattr(cfg, name).enabled


def fails_alone(values: np.ndarray, name: str, threshold: float) -> np.ndarray:
    """Clips whose score ``name`` fails ``threshold`` (checks: above it; model scores: below it)."""
    with np.errstate(invalid="ignore"):
        if name in MODEL_SCORES:
            return np.isfinite(values) & (values < threshold)
        return np.isfinite(values) & (values > threshold)


def failing(scores: dict[str, np.ndarray], cfg: ScoringConfig, n: int) -> dict[str, np.ndarray]:
    """Per check (and :data:`MODEL_RULE`) the clips that fail it under ``cfg``, as
    :func:`dav_builder.filters.stage.failures` decides one clip."""
    out = {}
    for name in CHECKS:
        if name in scores and getattr(cfg, name).enabled:
            out[name] = fails_alone(scores[name], name, threshold_of(cfg, name))
    nan = np.full(n, np.nan)
    d, s = scores.get("depth_score", nan), scores.get("semantic_score", nan)
    has_d, has_s = np.isfinite(d), np.isfinite(s)
    low_d, low_s = fails_alone(d, "depth_score", cfg.depth.threshold), fails_alone(s, "semantic_score", cfg.clip.threshold)
    if has_d.any() or has_s.any():
        out[MODEL_RULE] = np.where(has_d & has_s, low_d & low_s, np.where(has_d, low_d, low_s))
    return out


def kept_mask(scores: dict[str, np.ndarray], cfg: ScoringConfig, n: int) -> np.ndarray:
    """The clips ``cfg`` keeps (of written clips: the rule of the build and ``dav-filter apply``)."""
    drop = np.zeros(n, bool)
    for mask in failing(scores, cfg, n).values():
        drop |= mask
    return ~drop


# -- sweeps ----------------------------------------------------------------------------------


def sig4(x: float) -> float:
    """``x`` rounded to 4 significant digits (what the sweep prints, parsed back: exact)."""
    return float(f"{x:.4g}")


def _past(x: float, up: bool) -> float:
    """A 4-significant-digit value at or beyond ``x`` (above when ``up``), so a threshold there
    keeps every clip up to ``x``."""
    r = sig4(x)
    if (r >= x) if up else (r <= x):
        return r
    step = 10.0 ** (math.floor(math.log10(abs(x))) - 3) if x else 1e-4
    return sig4(r + step if up else r - step)


def default_grid(values: np.ndarray, name: str, n: int = 9) -> list[float]:
    """Thresholds at evenly spaced quantiles of the observed scores, plus one that keeps every
    clip (above the largest check score, below the smallest model score); 4 significant digits."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return []
    grid = {sig4(q) for q in np.quantile(v, np.linspace(0, 1, n))}
    grid.add(_past(float(v.min()), up=False) if name in MODEL_SCORES else _past(float(v.max()), up=True))
    return sorted(grid)


@dataclass
class SweepRow:
    score: str
    threshold: float
    fails_alone: int
    """Clips this score fails at this threshold, whatever the others say."""
    kept: int
    """Clips kept overall with this threshold and the other scores at the config's."""
    keep_rate: float
    current: bool = False
    """This is the config's threshold."""
    precision: float | None = None
    """Overall, with labels: bad clips among the dropped labelled ones."""
    recall: float | None = None
    """Overall: dropped among the labelled bad clips."""
    good_dropped: float | None = None
    """Overall: dropped among the labelled good clips."""


@dataclass
class LabelStats:
    dropped: int
    precision: float
    recall: float
    good_dropped: float


def label_stats(drop: np.ndarray, bad: np.ndarray) -> LabelStats:
    """How ``drop`` does on labelled clips (``bad``: 1 bad, 0 good, -1 unlabelled)."""
    lab = bad >= 0
    d, b = drop[lab], bad[lab] == 1
    tp = int((d & b).sum())
    n_bad, n_good = int(b.sum()), int((~b).sum())
    return LabelStats(int(d.sum()), tp / int(d.sum()) if d.sum() else 0.0, tp / n_bad if n_bad else 0.0,
                      int((d & ~b).sum()) / n_good if n_good else 0.0)


def sweep_score(scores: dict[str, np.ndarray], name: str, grid: list[float], cfg: ScoringConfig, n: int,
                bad: np.ndarray | None = None) -> list[SweepRow]:
    """Score ``name`` at each threshold of ``grid``, the other scores at ``cfg``'s thresholds."""
    rows = []
    current = threshold_of(cfg, name) if enabled(cfg, name) else None
    for t in grid:
        kept = kept_mask(scores, with_threshold(cfg, name, t), n)
        row = SweepRow(name, t, int(fails_alone(scores[name], name, t).sum()), int(kept.sum()),
                       float(kept.mean()) if n else 1.0, current=current is not None and t == current)
        if bad is not None:
            st = label_stats(~kept, bad)
            row.precision, row.recall, row.good_dropped = st.precision, st.recall, st.good_dropped
        rows.append(row)
    return rows


def check_report(scores: dict[str, np.ndarray], cfg: ScoringConfig, n: int, bad: np.ndarray) -> dict[str, LabelStats]:
    """With labels: per check (and the paper's rule) at ``cfg``, and ``all`` together."""
    fails = failing(scores, cfg, n)
    out = {name: label_stats(mask, bad) for name, mask in fails.items()}
    out["all"] = label_stats(~kept_mask(scores, cfg, n), bad)
    return out


# -- a threshold choice under a budget -------------------------------------------------------


@dataclass
class Choice:
    cfg: ScoringConfig
    bad_caught: int
    bad_total: int
    good_dropped: int
    good_total: int
    kept: int
    """Written clips the choice keeps (labelled or not)."""


def choose_thresholds(scores: dict[str, np.ndarray], cfg: ScoringConfig, n: int, bad: np.ndarray,
                      max_good_drop: float, candidates: int = 40, lookahead: int = 8) -> Choice:
    """Thresholds for every stored score that catch the most labelled bad clips while dropping at
    most ``max_good_drop`` of the labelled good ones.

    Starts from thresholds that keep every clip and moves one score's threshold (or the depth and
    semantic thresholds together: the paper's rule needs both low) a few candidate steps stricter
    at a time, taking the move with the most bad clips caught per good clip lost, while the budget
    holds.  Greedy, not exhaustive: it can miss a better combination, but each step is cheap and
    the result is always within the budget.  Checks ``cfg`` turned off stay off; a score whose
    threshold was never tightened keeps ``cfg``'s when that drops no stored clip (rather than one
    just past the largest score, which new data could exceed).
    """
    lab = bad >= 0
    b = bad[lab] == 1
    n_bad, n_good = int(b.sum()), int((~b).sum())
    budget = math.floor(max_good_drop * n_good + 1e-9)
    names = [k for k in scores if enabled(cfg, k)]
    grids: dict[str, list[float]] = {}
    fails: dict[str, list[np.ndarray]] = {}
    for name in names:
        g = default_grid(scores[name], name, candidates)
        g = g[::-1] if name not in MODEL_SCORES else g  # lenient first: checks high, model scores low
        grids[name] = g
        fails[name] = [fails_alone(scores[name][lab], name, t) for t in g]
    nan = np.full(int(lab.sum()), np.nan)
    has_d = np.isfinite(scores["depth_score"][lab]) if "depth_score" in scores else np.isfinite(nan)
    has_s = np.isfinite(scores["semantic_score"][lab]) if "semantic_score" in scores else np.isfinite(nan)

    def dropped(idx: dict[str, int]) -> np.ndarray:
        drop = np.zeros(int(lab.sum()), bool)
        for name in names:
            if name not in MODEL_SCORES:
                drop |= fails[name][idx[name]]
        ld = fails["depth_score"][idx["depth_score"]] if "depth_score" in idx else np.zeros_like(drop)
        ls = fails["semantic_score"][idx["semantic_score"]] if "semantic_score" in idx else np.zeros_like(drop)
        drop |= np.where(has_d & has_s, ld & ls, np.where(has_d, ld, ls))
        return drop

    idx = {name: 0 for name in names}
    cur = dropped(idx)
    caught, lost = int((cur & b).sum()), int((cur & ~b).sum())
    while True:
        moves = [{name: k} for name in names for k in range(1, lookahead + 1) if idx[name] + k < len(grids[name])]
        if "depth_score" in idx and "semantic_score" in idx:
            moves += [{"depth_score": k, "semantic_score": k} for k in range(1, lookahead + 1)
                      if idx["depth_score"] + k < len(grids["depth_score"])
                      and idx["semantic_score"] + k < len(grids["semantic_score"])]
        best = None
        for move in moves:
            trial = dict(idx)
            for name, k in move.items():
                trial[name] += k
            d = dropped(trial)
            c, g = int((d & b).sum()), int((d & ~b).sum())
            if c <= caught or g > budget:
                continue
            gain = (c - caught) / (g - lost + 0.5)
            key = (gain, -g, -sum(move.values()))
            if best is None or key > best[0]:
                best = (key, trial, c, g)
        if best is None:
            break
        _, idx, caught, lost = best
    chosen = copy.deepcopy(cfg)
    for name in names:
        if idx[name] == 0 and not fails_alone(scores[name], name, threshold_of(cfg, name)).any():
            continue  # never tightened and the given threshold drops no stored clip: keep it (not stricter)
        chosen = with_threshold(chosen, name, grids[name][idx[name]])
    return Choice(chosen, caught, n_bad, lost, n_good, int(kept_mask(scores, chosen, n).sum()))


def exact(x: float) -> str:
    """``x`` as short text that parses back to exactly ``x``."""
    short = f"{x:.4g}"
    return short if float(short) == x else repr(float(x))


def apply_command(dataset: Path, cfg: ScoringConfig, scores: dict[str, np.ndarray]) -> str:
    """The ``dav-filter apply`` command that applies ``cfg``'s thresholds for the stored scores."""
    parts = ["dav-filter", "apply", str(dataset), "--out", f"{str(dataset).rstrip('/')}-filtered"]
    if "depth_score" in scores:
        parts += ["--depth-threshold", exact(cfg.depth.threshold)]
    if "semantic_score" in scores:
        parts += ["--semantic-threshold", exact(cfg.clip.threshold)]
    for name in CHECKS:
        check = getattr(cfg, name)
        if not check.enabled:
            parts += ["--check", f"{name}=off"]
        elif name in scores:
            parts += ["--check", f"{name}={exact(check.threshold)}"]
    return " ".join(parts)


# -- labels, files ---------------------------------------------------------------------------


def load_labels(path: Path) -> dict[str, bool]:
    """clip id -> True for bad, from a CSV (``clip_id,label``) or JSON ({id: label}); labels good/bad."""
    path = Path(path)
    text = path.read_text()
    if path.suffix == ".json":
        raw = json.loads(text)
    else:
        raw = {r[0].strip(): r[1] for r in csv.reader(text.splitlines()) if r and r[0] != "clip_id"}
    out = {}
    for cid, label in raw.items():
        lab = str(label).strip().lower()
        if lab not in ("good", "bad"):
            raise ValueError(f"{path}: clip {cid}: label must be good or bad, got {label!r}")
        out[cid] = lab == "bad"
    return out


def write_csv(rows: list[SweepRow], path: Path) -> None:
    """One line per (score, threshold)."""
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["score", "threshold", "fails_alone", "kept", "keep_rate", "current", "precision", "recall",
                    "good_dropped"])
        for r in rows:
            w.writerow([r.score, repr(r.threshold), r.fails_alone, r.kept, f"{r.keep_rate:.4f}", r.current,
                        *("" if v is None else f"{v:.4f}" for v in (r.precision, r.recall, r.good_dropped))])


def plot_histograms(scores: dict[str, np.ndarray], cfg: ScoringConfig, path: Path, bad: np.ndarray | None = None,
                    dpi: int = 90) -> None:
    """One histogram per score with the config's threshold marked; good and bad clips apart when
    labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    names = list(scores)
    cols = min(4, max(1, len(names)))
    rows = math.ceil(len(names) / cols) if names else 1
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.7 * rows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        v = scores[name]
        fin = np.isfinite(v)
        vals = v[fin]
        span = np.append(vals, threshold_of(cfg, name)) if enabled(cfg, name) else vals
        bins = np.histogram_bin_edges(span, bins=20) if span.size else 10
        if bad is not None:
            for sel, label, colour in ((bad == 0, "good", "#4c9f70"), (bad == 1, "bad", "#d1495b"),
                                       (bad < 0, "unlabelled", "#9a9a9a")):
                if (sel & fin).any():
                    ax.hist(v[sel & fin], bins=bins, alpha=0.6, label=label, color=colour)
            ax.legend(fontsize=7)
        else:
            ax.hist(vals, bins=bins, color="#3b75af")
        counts = np.histogram(vals, bins=bins)[0] if vals.size else np.zeros(1)
        tall = counts.max() if counts.size else 0
        if tall >= 20 and tall >= 20 * counts[counts > 0].min():
            ax.set_yscale("log")  # one bar holds most clips: the few beyond the threshold stay visible
            ax.set_ylim(bottom=0.7)
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        if enabled(cfg, name):
            ax.axvline(threshold_of(cfg, name), color="k", linestyle="--", linewidth=1)
        rule = "drop below" if name in MODEL_SCORES else "drop above"
        ax.set_title(f"{name}\n({rule} the dashed line; {int((~fin).sum())} null)", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_ylabel("clips (log scale)" if ax.get_yscale() == "log" else "clips", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
