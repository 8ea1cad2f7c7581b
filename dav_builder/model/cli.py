"""``dav-train``: train the video depth model (or its interpolator) on a dav-build dataset; ``dav-train eval``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

CTX = {"help_option_names": ["-h", "--help"], "max_content_width": 100}

TRAIN_EPILOG = """\b
Examples:
  # the tiny preset on the demo dataset (CPU, about a minute)
  dav-build --demo --out demo-out
  dav-train demo-out/dataset --out runs/tiny --preset tiny --max-steps 30
\b
  # resume a killed run exactly where its last checkpoint left it
  dav-train demo-out/dataset --out runs/tiny --preset tiny --max-steps 30 --resume
\b
  # fine-tune Stable Video Diffusion (weights from a local folder or the Hugging Face cache), 4 GPUs
  torchrun --nproc-per-node 4 -m dav_builder.model.cli /data/dav-v1 --out runs/svd --preset svd
\b
  # fine-tune the released Depth Any Video weights (a local copy of hhyangcs/depth-any-video)
  dav-train /data/dav-v1 --out runs/dav --config ft.yaml    (train: {init_from: /models/depth-any-video})
\b
  # the keyframe interpolation model for long videos, from a trained video run
  dav-train /data/dav-v1 --out runs/interp --config interp.yaml    (model: {task: interp}, train: {init_from: runs/svd})
\b
  # evaluation (AbsRel, delta1, TAE) as JSON
  dav-train eval runs/tiny demo-out/dataset --out eval.json
\b
Configs are YAML with model: and train: sections (see docs/training.md); 'base: other.yaml' inherits.
"""

EVAL_EPILOG = """\b
Examples:
  dav-train eval runs/tiny demo-out/dataset
  dav-train eval runs/svd /data/eval-set --steps 3 --ensemble 3 --out eval.json
  dav-train eval runs/svd /data/dav-v1 --split val          (the clips the run held out)
"""


@click.command(context_settings=CTX, epilog=TRAIN_EPILOG)
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "-o", "run", required=True, type=click.Path(path_type=Path), help="Run directory to write.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML with model: and train: sections, applied over the preset.")
@click.option("--preset", type=click.Choice(["tiny", "svd"]), default=None,
              help="Starting configuration: tiny (random init, CPU) or svd (Stable Video Diffusion weights). "
                   "Default: tiny, or the run's own config with --resume.")
@click.option("--max-steps", type=int, default=None, help="Optimizer steps (overrides train.max_steps).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its latest checkpoint.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def train_command(dataset, run, config_file, preset, max_steps, resume, quiet) -> None:
    """Train on the kept clips of DATASET (a directory written by dav-build). Writes RUN/metrics.jsonl,
    RUN/checkpoints/ and, at the end, the model in diffusers format in RUN/final/."""
    from dav_builder.model.checkpoint import CheckpointError
    from dav_builder.model.config import RunConfigError, load_run_config
    from dav_builder.model.data import DatasetError
    from dav_builder.model.train import CONFIG, TrainError, train
    from dav_builder.model.video_depth import PretrainedMissingError

    overrides: dict = {}
    if max_steps is not None:
        overrides["train"] = {"max_steps": max_steps}
    saved = run / CONFIG
    try:
        if resume and config_file is None and preset is None and saved.is_file():
            cfg = load_run_config(saved, "tiny", overrides)
        else:
            cfg = load_run_config(config_file, preset, overrides)
    except RunConfigError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        train(dataset, run, cfg, resume=resume, progress=not quiet, echo=lambda m: click.echo(m, err=True))
    except (TrainError, CheckpointError, DatasetError, PretrainedMissingError, FileNotFoundError) as exc:
        click.echo(f"dav-train: error: {exc}", err=True)
        sys.exit(2)


@click.command(context_settings=CTX, epilog=EVAL_EPILOG)
@click.argument("run", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--out", "-o", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the JSON here (default: standard output).")
@click.option("--steps", type=click.IntRange(1, 50), default=1, show_default=True, help="Euler steps.")
@click.option("--ensemble", type=click.IntRange(1, 20), default=1, show_default=True,
              help="Seeds to predict with, aligned and median-combined.")
@click.option("--split", type=click.Choice(["all", "val"]), default="all", show_default=True,
              help="all kept clips, or only those the run held out for validation.")
@click.option("--max-clips", type=int, default=None, help="Evaluate at most this many clips.")
@click.option("--interpolator", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="An interpolation run for clips longer than the model's window.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1... (default: cuda when present).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def eval_command(run, dataset, out_file, steps, ensemble, split, max_clips, interpolator, device, quiet) -> None:
    """Report AbsRel, delta1 and TAE of the model in RUN on the kept clips of DATASET, per clip and overall,
    as JSON. Predictions are aligned to the ground truth's disparity by least squares, per clip."""
    from dav_builder.model.data import DatasetError
    from dav_builder.model.evaluate import evaluate

    try:
        report = evaluate(run, dataset, steps=steps, split=split, max_clips=max_clips, ensemble=ensemble,
                          device=device, interpolator=interpolator, progress=not quiet,
                          echo=lambda m: click.echo(m, err=True))
    except (DatasetError, FileNotFoundError, ValueError) as exc:
        click.echo(f"dav-train eval: error: {exc}", err=True)
        sys.exit(2)
    text = json.dumps(report, indent=1)
    if out_file:
        out_file.write_text(text + "\n")
        o = report["overall"]
        click.echo(f"{o['clips']} clip(s): AbsRel {o['abs_rel']}, delta1 {o['delta1']}, TAE {o['tae']} -> {out_file}",
                   err=True)
    else:
        click.echo(text)


def main(argv: list[str] | None = None) -> None:
    """``dav-train eval ...`` evaluates; anything else trains."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "eval":
        eval_command.main(args[1:], prog_name="dav-train eval")
    else:
        train_command.main(args, prog_name="dav-train")


if __name__ == "__main__":
    main()
