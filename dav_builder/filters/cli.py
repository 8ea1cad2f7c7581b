"""``dav-filter``: sweep the stored scores, look at the clips (report), apply new thresholds, train the
learned check."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import numpy as np

from dav_builder.storage.params import DatasetLocation

SWEEP_EPILOG = """\b
Examples:
  # every stored score: its distribution and the keep count over thresholds
  dav-filter sweep demo-out/dataset
\b
  # the same with some thresholds changed (the keep count is what apply would keep)
  dav-filter sweep demo-out/dataset --check edge_misalignment=0.1 --check static_overlay=off
\b
  # with labels: precision, recall, good clips dropped, and thresholds chosen under a budget
  dav-filter sweep demo-out/dataset --labels labels.csv --max-good-drop 0.05 --out demo-out/sweep
\b
  # your own grid for one score
  dav-filter sweep demo-out/dataset --grid depth_lag=0.02,0.05,0.1
\b
labels.csv holds lines "clip_id,good" or "clip_id,bad" (or a JSON object {clip_id: "good"|"bad"}).
"""

APPLY_EPILOG = """\b
Examples:
  dav-filter apply demo-out/dataset --out demo-out/strict --check edge_misalignment=0.1 --check depth_lag=off
  dav-filter apply demo-out/dataset --out demo-out/scored --depth-threshold 0.7 --semantic-threshold 0.85
\b
Rerunning an interrupted apply with the same options resumes it; --overwrite starts again.
"""

REPORT_EPILOG = """\b
Examples:
  dav-filter report demo-out/dataset --out demo-out/report
  dav-filter report demo-out/dataset --out demo-out/report-small --kept-sample 4 --frames 3
\b
Open DIR/index.html in a browser (no server needed).
"""

TRAIN_EPILOG = """\b
Examples:
  # captures with planted defects and per-frame ground truth, then a check trained on them
  dav-render train-data --scenes 2 --frames 48 --width 128 --height 72 --seed 1 --defects misaligned,hud --defect-rate 1
  dav-filter train-check train-data --out my-check/learned.safetensors --steps 30
\b
  # use it in a build (build.yaml)
  #   scoring:
  #     learned_defect: {enabled: true, weights: my-check/learned.safetensors, threshold: 0.5}
\b
The shipped weights were made by benchmarks/train_learned_check.py (docs/filters.md).
"""


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog="Run 'dav-filter COMMAND --help' for a command's options and examples.")
def main() -> None:
    """Look at the scores dav-build stored (sweep, report) and apply new thresholds to a dataset."""


def threshold_options(f):
    """--depth-threshold, --semantic-threshold and --check, shared by sweep and apply."""
    f = click.option("--check", "checks", multiple=True, metavar="NAME=VALUE|off",
                     help="Change a model-free check's threshold, or turn it off (repeatable).")(f)
    f = click.option("--semantic-threshold", type=float, default=None,
                     help="Semantic-score threshold (default: the build's).")(f)
    f = click.option("--depth-threshold", type=float, default=None, help="Depth-score threshold (default: the build's).")(f)
    return f


def thresholds_config(dataset: Path, depth_threshold, semantic_threshold, checks):
    """The dataset's build config with the given thresholds changed."""
    from dav_builder.filters.apply import scoring_config_of
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
                getattr(cfg, name).enabled = True
            except ValueError:
                raise click.BadParameter(f"{item!r}: expected NAME=NUMBER or NAME=off", param_hint="--check") from None
    return cfg


def _grids(items: tuple[str, ...]) -> dict[str, list[float]]:
    from dav_builder.filters.stage import SCORE_NAMES

    out = {}
    for item in items:
        name, _, text = item.partition("=")
        if name not in SCORE_NAMES:
            raise click.BadParameter(f"unknown score {name!r}; known: {', '.join(SCORE_NAMES)}", param_hint="--grid")
        try:
            out[name] = sorted(float(v) for v in text.split(","))
        except ValueError:
            raise click.BadParameter(f"{item!r}: expected NAME=NUMBER,NUMBER,...", param_hint="--grid") from None
    return out


def _written_rows(dataset: Path) -> tuple[list[dict], int]:
    from dav_builder.shards.manifest import read_manifest

    try:
        rows = read_manifest(dataset).to_pylist()
    except FileNotFoundError as exc:
        raise click.UsageError(str(exc)) from None
    written = [r for r in rows if r["shard"] is not None]
    if not written:
        raise click.UsageError(f"{dataset}: no written clips in the manifest")
    return written, len(rows)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


@main.command(epilog=SWEEP_EPILOG)
@click.argument("dataset", type=DatasetLocation("manifest"))
@threshold_options
@click.option("--grid", "grids", multiple=True, metavar="NAME=V1,V2,...",
              help="Thresholds to try for one score (repeatable; default: quantiles of its stored values).")
@click.option("--labels", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Clip ids marked good or bad: adds precision, recall and good clips dropped per check, "
                   "and a threshold choice.")
@click.option("--max-good-drop", type=click.FloatRange(0, 1), default=0.05, show_default=True,
              help="With --labels: the threshold choice drops at most this share of the clips labelled good.")
@click.option("--out", "out_prefix", type=click.Path(path_type=Path), default=None,
              help="Prefix of the CSV and PNG written (default: DATASET/sweep).")
def sweep(dataset, depth_threshold, semantic_threshold, checks, grids, labels, max_good_drop, out_prefix) -> None:
    """For every stored score (the model-free checks; depth_score and semantic_score when the build
    had models): its distribution, and how many clips are kept over a range of its thresholds with
    the other thresholds as given.  Every keep count is exactly what 'dav-filter apply' keeps with
    those thresholds.  Writes a CSV and PNG histograms."""
    from dav_builder.filters import sweep as sw

    cfg = thresholds_config(dataset, depth_threshold, semantic_threshold, checks)
    grid_of = _grids(grids)
    rows, n_cut = _written_rows(dataset)
    n = len(rows)
    scores = sw.score_table(rows)
    if not scores:
        raise click.UsageError(f"{dataset}: the manifest holds no scores (was it built with every check off?)")
    bad = None
    if labels:
        try:
            lab = sw.load_labels(labels)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        bad = np.array([(1 if lab[r["clip_id"]] else 0) if r["clip_id"] in lab else -1 for r in rows])
        if (bad < 0).all():
            raise click.UsageError(f"{labels}: none of its clip ids are written clips of {dataset}")
    for name in grid_of:
        if name not in scores:
            raise click.UsageError(f"--grid {name}: {dataset} stores no {name} (null for every clip)")
    kept = sw.kept_mask(scores, cfg, n)
    click.echo(f"{dataset}: {n_cut} clips cut, {n} written; with these thresholds kept {int(kept.sum())} "
               f"({_pct(kept.mean())} of written)")
    missing = [m for m in sw.MODEL_SCORES if m not in scores]
    if missing:
        click.echo(f"not stored (the build ran without models): {', '.join(missing)}")
    click.echo("")
    click.echo(f"{'score':<18} {'null':>5} {'min':>9} {'p25':>9} {'median':>9} {'p75':>9} {'p95':>9} {'max':>9} "
               f"{'threshold':>10} {'fails':>6}")
    fails = sw.failing(scores, cfg, n)
    for name, v in scores.items():
        fin = v[np.isfinite(v)]
        q = np.quantile(fin, [0, 0.25, 0.5, 0.75, 0.95, 1.0])
        thr = f"{sw.threshold_of(cfg, name):.4g}" if sw.enabled(cfg, name) else "off"
        nf = int(sw.fails_alone(v, name, sw.threshold_of(cfg, name)).sum()) if sw.enabled(cfg, name) else 0
        click.echo(f"{name:<18} {int((~np.isfinite(v)).sum()):5d} " + " ".join(f"{x:9.4g}" for x in q)
                   + f" {thr:>10} {nf:6d}")
    all_rows: list[sw.SweepRow] = []
    for name, v in scores.items():
        grid = grid_of.get(name) or sw.default_grid(v, name)
        if sw.enabled(cfg, name) and sw.threshold_of(cfg, name) not in grid:
            grid = sorted(grid + [sw.threshold_of(cfg, name)])
        srows = sw.sweep_score(scores, name, grid, cfg, n, bad)
        all_rows += srows
        rule = "below" if name in sw.MODEL_SCORES else "above"
        click.echo(f"\n{name} (drops {rule} the threshold; the other thresholds as above)")
        click.echo(f"  {'threshold':>10} {'fails':>6} {'kept':>6} {'keep':>7}"
                   + (f" {'precision':>9} {'recall':>7} {'good dropped':>12}" if bad is not None else ""))
        for r in srows:
            line = f"  {r.threshold:10.4g} {r.fails_alone:6d} {r.kept:6d} {_pct(r.keep_rate):>7}"
            if bad is not None:
                line += f" {r.precision:9.2f} {r.recall:7.2f} {_pct(r.good_dropped):>12}"
            click.echo(line + ("   <- current" if r.current else ""))
    if bad is not None:
        nb, ng = int((bad == 1).sum()), int((bad == 0).sum())
        click.echo(f"\nlabels: {nb + ng} written clips labelled ({nb} bad, {ng} good); per check at these thresholds:")
        click.echo(f"  {'check':<22} {'dropped':>7} {'precision':>9} {'recall':>7} {'good dropped':>12}")
        for name, st in sw.check_report(scores, cfg, n, bad).items():
            click.echo(f"  {name:<22} {st.dropped:7d} {st.precision:9.2f} {st.recall:7.2f} {_pct(st.good_dropped):>12}")
        choice = sw.choose_thresholds(scores, cfg, n, bad, max_good_drop)
        click.echo(f"\nthreshold choice (drop at most {_pct(max_good_drop)} of the good clips, catch the most bad "
                   f"ones): catches {choice.bad_caught} of {choice.bad_total} bad, drops {choice.good_dropped} of "
                   f"{choice.good_total} good, keeps {choice.kept} of {n} written clips:")
        click.echo("  " + sw.apply_command(dataset, choice.cfg, scores))
        loose = [k for k in scores if sw.enabled(choice.cfg, k)
                 and not sw.fails_alone(scores[k], k, sw.threshold_of(choice.cfg, k)).any()]
        if loose:
            click.echo(f"  ({', '.join(loose)}: tightening did not pay off on these labels; each keeps the "
                       "threshold given when that drops no clip here, else one just past every stored score)")
    prefix = out_prefix or (dataset / "sweep")
    prefix.parent.mkdir(parents=True, exist_ok=True)
    csv_path, png_path = Path(f"{prefix}.csv"), Path(f"{prefix}.png")
    sw.write_csv(all_rows, csv_path)
    sw.plot_histograms(scores, cfg, png_path, bad)
    click.echo(f"\nwrote {csv_path} and {png_path}")


@main.command(epilog=APPLY_EPILOG)
@click.argument("dataset", type=DatasetLocation("kept"))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="New dataset directory.")
@threshold_options
@click.option("--overwrite", is_flag=True, help="Delete an existing --out and start again (default: resume it).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def apply(dataset, out, depth_threshold, semantic_threshold, checks, overwrite, quiet) -> None:
    """Write a new dataset with only the clips the given thresholds keep (tar members copied).
    Rerunning an interrupted apply with the same options resumes it."""
    from dav_builder.filters.apply import apply_thresholds

    cfg = thresholds_config(dataset, depth_threshold, semantic_threshold, checks)
    try:
        stats = apply_thresholds(dataset, out, cfg, progress=not quiet, overwrite=overwrite)
    except (ValueError, FileNotFoundError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    if stats.get("already_complete"):
        click.echo(f"{out}: already complete with these thresholds; nothing to do")
    click.echo(f"kept {stats['clips_kept']} of {stats['clips_cut']} clips; dropped: {stats['clips_dropped']}")
    click.echo(f"dataset: {out}")


@main.command(epilog=REPORT_EPILOG)
@click.argument("dataset", type=DatasetLocation("all"))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Directory for the HTML report.")
@click.option("--kept-sample", type=click.IntRange(0), default=48, show_default=True,
              help="Kept clips shown (a random sample).")
@click.option("--max-per-reason", type=click.IntRange(0), default=200, show_default=True,
              help="Dropped clips shown per reason (a random sample when there are more; 0 = all).")
@click.option("--per-page", type=click.IntRange(1), default=40, show_default=True, help="Clips per page.")
@click.option("--frames", type=click.IntRange(1, 16), default=4, show_default=True, help="Frames sampled per clip.")
@click.option("--depth-model", default=None,
              help="A depth model for the predicted-depth view (a dav-train run or module:callable; "
                   "default: the build's scoring.depth.path, when set).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random samples.")
@click.option("--overwrite", is_flag=True, help="Replace an existing report in --out.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def report(dataset, out, kept_sample, max_per_reason, per_page, frames, depth_model, seed, overwrite, quiet) -> None:
    """Write a static HTML report of DATASET to --out: a summary (clips cut, kept, dropped by
    reason, per bucket, score histograms) and pages of clips (a sample of the kept ones, the
    dropped ones by reason), each as sampled frames: RGB, captured depth, predicted depth (with a
    depth model) and depth edges over RGB edges, with every score and failing check."""
    from dav_builder.filters.models import ModelUnavailableError
    from dav_builder.filters.report import ReportConfig, write_report

    rc = ReportConfig(kept_sample=kept_sample, max_per_reason=max_per_reason, per_page=per_page, frames=frames,
                      depth_model=depth_model, seed=seed)
    try:
        summary = write_report(dataset, out, rc, overwrite=overwrite, progress=not quiet)
    except (ValueError, FileNotFoundError, ModelUnavailableError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    click.echo(f"report: {summary.clips_shown} clips shown on {summary.pages} page(s), "
               f"{summary.bytes / 1e6:.1f} MB in {summary.seconds:.1f} s")
    click.echo(f"open {out / 'index.html'}")


@main.command("train-check", epilog=TRAIN_EPILOG)
@click.argument("data", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="Weights file to write (.safetensors; its config goes beside it as .json).")
@click.option("--steps", type=click.IntRange(1), default=5000, show_default=True, help="Training steps.")
@click.option("--batch", type=click.IntRange(2), default=32, show_default=True,
              help="Frame pairs per step (half defective, half clean).")
@click.option("--lr", type=float, default=3e-3, show_default=True, help="Adam learning rate (cosine decay).")
@click.option("--side", type=click.IntRange(16), default=128, show_default=True,
              help="Longer side of the frames the network sees (the build's reduced frames are 128).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--threads", type=click.IntRange(1), default=1, show_default=True, help="CPU threads for torch.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or auto.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def train_check(data, out, steps, batch, lr, side, seed, threads, device, quiet) -> None:
    """Train the learned check (scoring.learned_defect) on DATA: folders of captures rendered by
    dav-render with planted defects (each capture's defects.json labels its frames)."""
    from dav_builder.filters.learned import resolve_device
    from dav_builder.filters.learned_train import train_and_save

    try:
        cfg = train_and_save(list(data), out, steps, batch, lr, seed, side, resolve_device(device), threads,
                             progress=not quiet)
    except (ValueError, FileNotFoundError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    i = cfg.info
    click.echo(f"trained on {i['pairs']} frame pairs ({i['defective_pairs']} defective) of {i['captures']} "
               f"capture(s): {i['steps']} steps in {i['seconds']:.0f} s, final loss {i['final_loss']:.3f}")
    click.echo(f"wrote {out} and {out.with_suffix('.json')} ({i['weights']} weights)")


if __name__ == "__main__":  # pragma: no cover
    main()
