"""``dav-train``: train the video depth model (or its interpolator) on a dav-build dataset; ``dav-train eval``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from dav_builder.storage.params import DatasetLocation

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
  # the public benchmarks in their official layouts: a table like the paper's (markdown + JSON)
  dav-train eval runs/svd --benchmark scannetpp=/data/scannetpp --benchmark kitti=/data/kitti --out eval.json
  dav-train eval /models/depth-any-video --benchmark nyuv2=/data/nyu --steps 3 --ensemble 20
  dav-train eval runs/tiny --benchmark sintel=/data/sintel --set sintel.frames=16 --protocol paper,tae=zbuffer
\b
  # a dav-build dataset (per clip, as JSON)
  dav-train eval runs/tiny demo-out/dataset
  dav-train eval runs/svd /data/dav-v1 --split val --out eval.json       (the clips the run held out)
\b
Benchmarks: scannetpp, scannet, kitti, nyuv2, sintel, bonn, eth3d, diode (layouts: docs/evaluation.md).
Protocols: paper (as the released evaluation), zbuffer, per-frame, dav; switches fit=sequence|frame,
average=frame|clip, caps=dataset|gt, tae=official|zbuffer|none.
"""


@click.command(context_settings=CTX, epilog=TRAIN_EPILOG)
@click.argument("dataset", type=DatasetLocation("kept"))
@click.option("--out", "-o", "run", required=True, type=click.Path(path_type=Path), help="Run directory to write.")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML with model: and train: sections, applied over the preset.")
@click.option("--preset", type=click.Choice(["tiny", "svd"]), default=None,
              help="Starting configuration: tiny (random init, CPU) or svd (Stable Video Diffusion weights). "
                   "Default: tiny, or the run's own config with --resume.")
@click.option("--max-steps", type=int, default=None, help="Optimizer steps (overrides train.max_steps).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its latest checkpoint.")
@click.option("--wandb", "wandb_project", default=None, metavar="PROJECT",
              help="Also log to this Weights & Biases project (train.wandb_project; needs pip install wandb).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def train_command(dataset, run, config_file, preset, max_steps, resume, wandb_project, quiet) -> None:
    """Train on the kept clips of DATASET (a directory written by dav-build). Writes RUN/metrics.jsonl,
    RUN/checkpoints/ and, at the end, the model in diffusers format in RUN/final/."""
    from dav_builder.model.checkpoint import CheckpointError
    from dav_builder.model.config import RunConfigError, load_run_config
    from dav_builder.model.data import DatasetError
    from dav_builder.model.train import CONFIG, TrainError, train
    from dav_builder.model.video_depth import PretrainedMissingError

    overrides: dict = {}
    if max_steps is not None:
        overrides.setdefault("train", {})["max_steps"] = max_steps
    if wandb_project is not None:
        overrides.setdefault("train", {})["wandb_project"] = wandb_project
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


def _eval_defaults(device: str | None, steps: int | None, ensemble: int | None) -> tuple[int, int]:
    """The paper's 3 steps and ensemble of 20 on a GPU; 1 and 1 on a CPU (20 draws of 3 steps are
    60 passes of the UNet per clip)."""
    import torch

    gpu = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    return steps or (3 if gpu else 1), ensemble or (20 if gpu else 1)


@click.command(context_settings=CTX, epilog=EVAL_EPILOG)
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("dataset", required=False, type=DatasetLocation("kept"))
@click.option("--benchmark", "-b", "benchmarks", multiple=True, metavar="NAME=PATH",
              help="A public benchmark in its official layout (repeat for several).")
@click.option("--set", "settings", multiple=True, metavar="NAME.OPTION=VALUE",
              help="A reader option, e.g. kitti.crop=garg, scannetpp.frames=32 (see docs/evaluation.md).")
@click.option("--protocol", default=None,
              help="Preset, optionally with switches: paper | zbuffer | per-frame | dav [,fit=..,tae=..]. "
                   "Default: paper for benchmarks, dav for a DATASET.")
@click.option("--max-res", type=click.IntRange(0), default=960, show_default=True,
              help="Benchmarks: longest side the frames are resized to before prediction (0 = as they are).")
@click.option("--out", "-o", "out_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the JSON here (benchmarks: also the markdown table, as .md beside it).")
@click.option("--steps", type=click.IntRange(1, 50), default=None,
              help="Euler steps. Default: 3 (the paper's) on a GPU, 1 on a CPU; 1 for a DATASET.")
@click.option("--ensemble", type=click.IntRange(1, 50), default=None,
              help="Noise draws per clip, aligned and median-combined. Default: 20 (the paper's) on a GPU, "
                   "1 on a CPU; 1 for a DATASET.")
@click.option("--split", type=click.Choice(["all", "val"]), default="all", show_default=True,
              help="DATASET: all kept clips, or only those the run held out for validation.")
@click.option("--max-clips", type=int, default=None, help="Evaluate at most this many clips (per benchmark).")
@click.option("--interpolator", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="An interpolation run for clips longer than the model's window.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1... (default: cuda when present).")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def eval_command(run, dataset, benchmarks, settings, protocol, max_res, out_file, steps, ensemble, split, max_clips,
                 interpolator, device, quiet) -> None:
    """Score the model in RUN (a dav-train run, its export, or the released Depth Any Video folder):
    on public benchmarks (--benchmark NAME=PATH: a table like the paper's: AbsRel, delta1 and TAE per
    data set), or on the kept clips of a dav-build DATASET (per clip and overall, as JSON)."""
    from dav_builder.model.data import DatasetError

    echo = lambda m: click.echo(m, err=True)  # noqa: E731
    if benchmarks and dataset is not None:
        raise click.UsageError("give either DATASET or --benchmark NAME=PATH, not both")
    if not benchmarks and dataset is None:
        raise click.UsageError("give a DATASET written by dav-build, or --benchmark NAME=PATH (e.g. kitti=/data/kitti)")
    if benchmarks:
        _eval_benchmarks(run, benchmarks, settings, protocol, max_res, out_file, steps, ensemble, max_clips,
                         interpolator, device, quiet, echo)
        return
    from dav_builder.evaluation.protocol import protocol_from
    from dav_builder.model.evaluate import evaluate

    try:
        proto = protocol_from(protocol or "dav")
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        report = evaluate(run, dataset, steps=steps or 1, split=split, max_clips=max_clips, ensemble=ensemble or 1,
                          device=device, interpolator=interpolator, progress=not quiet, echo=echo, protocol=proto)
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


def _eval_benchmarks(run, benchmarks, settings, protocol, max_res, out_file, steps, ensemble, max_clips,
                     interpolator, device, quiet, echo) -> None:
    from dav_builder.evaluation.protocol import protocol_from
    from dav_builder.evaluation.runner import evaluate_benchmarks, parse_benchmarks
    from dav_builder.evaluation.sample import ReaderError
    from dav_builder.evaluation.table import markdown
    from dav_builder.model.predictor import VideoDepthPredictor

    try:
        proto = protocol_from(protocol or "paper")
        specs = parse_benchmarks(list(benchmarks), list(settings))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    steps, ensemble = _eval_defaults(device, steps, ensemble)
    try:
        predictor = VideoDepthPredictor.from_pretrained(run, device=device, steps=steps, interpolator_path=interpolator,
                                                        ensemble=ensemble)
        report = evaluate_benchmarks(predictor, specs, proto, max_res=max_res, max_clips=max_clips,
                                     progress=not quiet, echo=echo)
    except (ReaderError, FileNotFoundError, ValueError, OSError) as exc:
        click.echo(f"dav-train eval: error: {exc}", err=True)
        sys.exit(2)
    report = {"model": str(run), "steps": steps, "ensemble": ensemble, **report}
    table = markdown([report])
    if out_file:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        out_file.write_text(json.dumps(report, indent=1) + "\n")
        out_file.with_suffix(".md").write_text(table)
        echo(f"dav-train eval: {out_file} and {out_file.with_suffix('.md')}")
    click.echo(table)


def main(argv: list[str] | None = None) -> None:
    """``dav-train eval ...`` evaluates; anything else trains."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "eval":
        eval_command.main(args[1:], prog_name="dav-train eval")
    else:
        train_command.main(args, prog_name="dav-train")


if __name__ == "__main__":
    main()
