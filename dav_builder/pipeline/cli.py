"""``dav-build``: captures to training-ready WebDataset shards.  Maps options onto BuildConfig."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from dav_builder.capture.base import CaptureError
from dav_builder.storage import StorageError, is_url
from dav_builder.logs import LOG_LEVELS, setup_logging

EPILOG = """\b
Examples:
  # the built-in demo: render a few synthetic captures, then build them
  dav-build --demo --out demo-out
\b
  # what a build would do (captures per layout, frames, clips per bucket, size); writes nothing
  dav-build demo-out/captures --out demo-out/other --dry-run
\b
  # build captures (our format or public data set layouts) with a config
  dav-build /data/captures /data/vkitti2 --out /data/dav-v1 --config build.yaml
\b
  # on a Ray cluster, the dataset on an object store (the workers write the shards there;
  # captures may be a URL too: s3://bucket/captures)
  dav-build /mnt/captures --out s3://bucket/dav-v1 --ray-address auto
\b
  # the shipped example configs; print one to start your own
  dav-build --list-configs
  dav-build --print-config build-scored > scored.yaml
\b
  # the effective configuration of a command, as YAML
  dav-build --config scored.yaml --local --print-config
\b
Rerunning the same command resumes a killed build; a finished build is left as it is.
"""

log = logging.getLogger("dav_builder.build")


def _config_path(value: str | None) -> Path | None:
    """``--config``: a YAML file, or the name of a shipped example config."""
    if value is None:
        return None
    p = Path(value)
    if p.is_file():
        return p
    from dav_builder.configs import config_path

    try:
        return config_path(value)
    except KeyError:
        raise click.BadParameter(f"{value}: no such file, and not a shipped config (dav-build --list-configs)",
                                 param_hint="--config") from None


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, epilog=EPILOG)
@click.argument("captures", nargs=-1)
@click.option("--out", "-o",
              help="Dataset directory or URL (s3://, gs://, file://) to write (with --demo: a local directory "
                   "for captures/ and dataset/).")
@click.option("--config", "config_name", metavar="FILE|NAME",
              help="YAML file overriding the default BuildConfig (see docs/build.md), or a shipped config's name.")
@click.option("--ray-address", default=None, help="Join this Ray cluster instead of starting Ray locally.")
@click.option("--local", "local_exec", is_flag=True,
              help="Run in this process (default on one machine without --ray-address: a worker process per CPU).")
@click.option("--ray", "ray_exec", is_flag=True, help="Use Ray even on one machine (a local Ray instance).")
@click.option("--num-cpus", type=int, default=None,
              help="CPUs to use on this machine: worker processes, or a local Ray instance's CPUs (default: all).")
@click.option("--overwrite", is_flag=True, help="Delete an existing build in --out and start again.")
@click.option("--dry-run", is_flag=True,
              help="Find the captures and plan the build (clips per bucket, output size); write nothing.")
@click.option("--print-config", "print_config", is_flag=False, flag_value="", default=None, metavar="[NAME]",
              help="Print the effective config as YAML and exit; with NAME, print that shipped config file.")
@click.option("--list-configs", is_flag=True, help="List the shipped example configs and exit.")
@click.option("--demo", is_flag=True, help="Render the built-in demo captures with dav-render, then build them.")
@click.option("--demo-scenes", type=int, default=3, show_default=True, help="Captures the demo renders.")
@click.option("--demo-frames", type=int, default=96, show_default=True, help="Frames per demo capture.")
@click.option("--log-level", type=click.Choice(LOG_LEVELS, case_sensitive=False), default="info", show_default=True,
              help="debug: every shard and capture; info: the build's steps; warning: only problems.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def main(captures, out, config_name, ray_address, local_exec, ray_exec, num_cpus, overwrite, dry_run, print_config,
         list_configs, demo, demo_scenes, demo_frames, log_level, quiet) -> None:
    """Turn CAPTURES (directories of captures, in the dav capture format or a public data set's layout)
    into WebDataset shards grouped by resolution and clip length, with manifest.parquet, stats.json,
    a dataset card (README.md) and per-bucket lists of kept clips (kept/)."""
    from dav_builder.pipeline.build import BuildError, build_dataset, summary_lines
    from dav_builder.pipeline.config import ConfigError, load_config

    setup_logging(log_level)
    if list_configs:
        from dav_builder.configs import list_configs as shipped

        for name, (path, about) in shipped().items():
            click.echo(f"{name:<16} {about}   ({path})")
        return
    if print_config:  # a shipped file, as it is (comments included)
        from dav_builder.configs import config_path

        try:
            click.echo(config_path(print_config).read_text(), nl=False)
        except KeyError:
            raise click.UsageError(f"{print_config}: not a shipped config (dav-build --list-configs)") from None
        return

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
        cfg = load_config(_config_path(config_name), overrides)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    if print_config is not None:  # --print-config with no NAME: the effective config
        import yaml

        click.echo(yaml.safe_dump(cfg.to_dict(), sort_keys=False), nl=False)
        return
    if out is None:
        raise click.UsageError("Missing option '--out' / '-o'.")

    if demo:
        if captures:
            raise click.UsageError("--demo renders its own captures; give no CAPTURES with it")
        if dry_run:
            raise click.UsageError("--demo renders captures: it cannot be a dry run")
        from dav_builder.pipeline.demo import render_demo

        out = Path(out)
        captures_dir = out / "captures"
        log.info(f"rendering {demo_scenes} demo capture(s) of {demo_frames} frames into {captures_dir}")
        render_demo(captures_dir, scenes=demo_scenes, frames=demo_frames, progress=not quiet)
        captures = (captures_dir,)
        out = out / "dataset"
    elif not captures:
        raise click.UsageError("give at least one CAPTURES directory (or --demo)")

    if dry_run:
        from dav_builder.pipeline.plan import plan_build

        try:
            plan = plan_build(list(captures), cfg)
        except (CaptureError, FileNotFoundError) as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        for line in plan.lines():
            click.echo(line)
        if not is_url(out) and Path(out).exists():
            click.echo(f"note: {out} exists; a build there resumes it, or needs --overwrite or another --out")
        return

    try:
        result = build_dataset(list(captures), out, cfg, overwrite=overwrite, progress=not quiet, say=log.info)
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
