"""``dav-filter``: choose score thresholds from stored scores, and apply them."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np

from dav_builder.storage.params import DatasetLocation

SWEEP_EPILOG = """\b
Examples:
  dav-filter sweep demo-out/dataset
  dav-filter sweep /data/dav-v1 --labels labels.csv --out /data/dav-v1-sweep
  dav-filter sweep /data/dav-v1 --depth-thresholds 0.5,0.6,0.7 --semantic-thresholds 0.7,0.8,0.9
\b
labels.csv holds lines "clip_id,good" or "clip_id,bad" (or a JSON object {clip_id: "good"|"bad"}).
"""

APPLY_EPILOG = """\b
Examples:
  dav-filter apply /data/dav-v1 --out /data/dav-v1-strict --depth-threshold 0.7 --semantic-threshold 0.85
  dav-filter apply demo-out/dataset --out demo-out/relaxed --check edge_misalignment=0.2 --check depth_lag=off
"""


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog="Run 'dav-filter COMMAND --help' for a command's options and examples.")
def main() -> None:
    """Choose clip-filter thresholds from the scores dav-build stored, and apply them to a dataset."""


def _floats(text: str | None) -> list[float] | None:
    if not text:
        return None
    try:
        return sorted(float(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {text!r}") from None


@main.command(epilog=SWEEP_EPILOG)
@click.argument("dataset", type=DatasetLocation("manifest"))
@click.option("--depth-thresholds", help="Comma-separated depth-score thresholds (default: score quantiles).")
@click.option("--semantic-thresholds", help="Comma-separated semantic-score thresholds (default: score quantiles).")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Clip ids marked good or bad: adds precision, recall, F1 and marks the best pair.")
@click.option("--out", "out_prefix", type=click.Path(path_type=Path), default=None,
              help="Prefix of the CSV and PNG written (default: DATASET/sweep).")
def sweep(dataset, depth_thresholds, semantic_thresholds, labels, out_prefix) -> None:
    """Print the keep rate for each (depth, semantic) threshold pair; write CSV and PNG."""
    from dav_builder.filters import sweep as sw
    from dav_builder.shards.manifest import read_manifest

    try:
        table = read_manifest(dataset)
    except FileNotFoundError as exc:
        raise click.UsageError(str(exc)) from None
    written = [r for r in table.to_pylist() if r["shard"] is not None]
    if not written:
        raise click.UsageError(f"{dataset}: no written clips in the manifest")
    depth = np.array([np.nan if r["depth_score"] is None else r["depth_score"] for r in written], float)
    sem = np.array([np.nan if r["semantic_score"] is None else r["semantic_score"] for r in written], float)
    if np.isnan(depth).all() and np.isnan(sem).all():
        raise click.UsageError(
            f"{dataset}: depth_score and semantic_score are null: the build ran without models. "
            "Rebuild with scoring.depth.path (and scoring.clip) set, see docs/filters.md")
    # a score that is off (NaN) leaves the decision to the other one, as the build decides
    dg = _floats(depth_thresholds) or (sw.default_grid(depth) or [0.0])
    sg = _floats(semantic_thresholds) or (sw.default_grid(sem) or [0.0])
    bad = None
    if labels:
        try:
            lab = sw.load_labels(labels)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        bad = np.array([(1 if lab[r["clip_id"]] else 0) if r["clip_id"] in lab else -1 for r in written])
        if (bad < 0).all():
            raise click.UsageError(f"{labels}: none of its clip ids are in {dataset}")
    rows = sw.sweep(depth, sem, dg, sg, bad)
    head = f"{'depth_thr':>9} {'semantic_thr':>12} {'keep':>6} {'kept':>6}" + (
        f" {'prec':>6} {'recall':>6} {'F1':>6}" if bad is not None else "")
    click.echo(head)
    for r in rows:
        line = f"{r.depth_threshold:9.4g} {r.semantic_threshold:12.4g} {r.keep_rate:6.1%} {r.kept:6d}"
        if bad is not None:
            line += f" {r.precision:6.2f} {r.recall:6.2f} {r.f1:6.2f}" + ("  <- best" if r.best else "")
        click.echo(line)
    prefix = out_prefix or (dataset / "sweep")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    sw.write_csv(rows, prefix.with_suffix(".csv"))
    sw.plot(rows, prefix.with_suffix(".png"))
    click.echo(f"wrote {prefix.with_suffix('.csv')} and {prefix.with_suffix('.png')}")


@main.command(epilog=APPLY_EPILOG)
@click.argument("dataset", type=DatasetLocation("kept"))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="New dataset directory.")
@click.option("--depth-threshold", type=float, default=None, help="Depth-score threshold (default: the build's).")
@click.option("--semantic-threshold", type=float, default=None, help="Semantic-score threshold (default: the build's).")
@click.option("--check", "checks", multiple=True, metavar="NAME=VALUE|off",
              help="Change a model-free check's threshold, or turn it off (repeatable).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def apply(dataset, out, depth_threshold, semantic_threshold, checks, quiet) -> None:
    """Write a new dataset with only the clips the given thresholds keep (tar members copied)."""
    from dav_builder.filters.apply import apply_thresholds, scoring_config_of
    from dav_builder.filters.stage import CHECKS

    cfg = scoring_config_of(dataset)
    if depth_threshold is not None:
        cfg.depth.threshold = depth_threshold
    if semantic_threshold is not None:
        cfg.clip.threshold = semantic_threshold
    for item in checks:
        name, _, value = item.partition("=")
        if name not in CHECKS:
            raise click.BadParameter(f"unknown check {name!r}; known: {', '.join(CHECKS)}", param_hint="--check")
        if value == "off":
            getattr(cfg, name).enabled = False
        else:
            try:
                getattr(cfg, name).threshold = float(value)
            except ValueError:
                raise click.BadParameter(f"{item!r}: expected NAME=NUMBER or NAME=off", param_hint="--check") from None
    try:
        stats = apply_thresholds(dataset, out, cfg, progress=not quiet)
    except (ValueError, FileNotFoundError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"kept {stats['clips_kept']} of {stats['clips_cut']} clips; dropped: {stats['clips_dropped']}")
    click.echo(f"dataset: {out}")


if __name__ == "__main__":  # pragma: no cover
    main()
