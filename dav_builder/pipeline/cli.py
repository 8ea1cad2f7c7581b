"""``dav-build``: captures to training-ready WebDataset shards.  Maps options onto BuildConfig."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from dav_builder.capture.base import CaptureError
from dav_builder.storage import StorageError

EPILOG = """\b
Examples:
  # the built-in demo: render a few synthetic captures, then build them
  dav-build --demo --out demo-out
\b
  # build captures (our format or public data set layouts) with a config
  dav-build /data/captures /data/vkitti2 --out /data/dav-v1 --config build.yaml
\b
  # on a Ray cluster, captures and dataset on an object store (workers write the shards)
  dav-build s3://bucket/captures --out s3://bucket/dav-v1 --ray-address auto
\b
Rerunning the same command resumes a killed build; a finished build is left as it is.
"""


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, epilog=EPILOG)
@click.argument("captures", nargs=-1)
@click.option("--out", "-o", required=True,
              help="Dataset directory or URL (s3://, gs://, file://) to write (with --demo: a local directory "
                   "for captures/ and dataset/).")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML file overriding the default BuildConfig (see docs/build.md).")
@click.option("--ray-address", default=None, help="Join this Ray cluster instead of starting Ray locally.")
@click.option("--local", "local_exec", is_flag=True, help="Run in this process without Ray (the default on one "
              "machine without --ray-address).")
@click.option("--ray", "ray_exec", is_flag=True, help="Use Ray even on one machine (a local Ray instance).")
@click.option("--num-cpus", type=int, default=None, help="CPUs to use on this machine: worker processes, or the CPUs of a local Ray instance (default: all).")
@click.option("--overwrite", is_flag=True, help="Delete an existing build in --out and start again.")
@click.option("--demo", is_flag=True, help="Render the built-in demo captures with dav-render, then build them.")
@click.option("--demo-scenes", type=int, default=3, show_default=True, help="Captures the demo renders.")
@click.option("--demo-frames", type=int, default=96, show_default=True, help="Frames per demo capture.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def main(captures, out, config_file, ray_address, local_exec, ray_exec, num_cpus, overwrite, demo, demo_scenes,
         demo_frames, quiet) -> None:
    """Turn CAPTURES (directories of captures, in the dav capture format or a public data set's layout)
    into WebDataset shards grouped by resolution and clip length, with manifest.parquet and stats.json."""
    from dav_builder.pipeline.build import BuildError, build_dataset, summary_lines
    from dav_builder.pipeline.config import ConfigError, load_config

    overrides: dict = {"run": {}}
    if ray_address:
        overrides["run"]["ray_address"] = ray_address
    if local_exec and (ray_exec or ray_address):
        raise click.UsageError("--local runs without Ray: give it without --ray and --ray-address")
    if local_exec:
        overrides["run"]["executor"] = "local"
    if ray_exec:
        overrides["run"]["executor"] = "ray"
    if num_cpus:
        overrides["run"]["num_cpus"] = num_cpus
    try:
        cfg = load_config(config_file, overrides)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None

    if demo:
        if captures:
            raise click.UsageError("--demo renders its own captures; give no CAPTURES with it")
        from dav_builder.pipeline.demo import render_demo

        out = Path(out)
        captures_dir = out / "captures"
        click.echo(f"rendering {demo_scenes} demo capture(s) of {demo_frames} frames into {captures_dir}")
        render_demo(captures_dir, scenes=demo_scenes, frames=demo_frames, progress=not quiet)
        captures = (captures_dir,)
        out = out / "dataset"
    elif not captures:
        raise click.UsageError("give at least one CAPTURES directory (or --demo)")

    try:
        result = build_dataset(list(captures), out, cfg, overwrite=overwrite, progress=not quiet, say=click.echo)
    except (BuildError, CaptureError, FileNotFoundError, StorageError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except Exception as exc:  # a model that is configured but missing, and similar start-up failures
        if type(exc).__name__ == "ModelUnavailableError":
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        raise
    for line in summary_lines(result.stats):
        click.echo(line)
    click.echo(f"dataset: {result.dataset}")
    if not quiet:
        click.echo(json.dumps({k: result.stats[k] for k in ("clips_kept", "clips_dropped")}))


if __name__ == "__main__":  # pragma: no cover
    main()
