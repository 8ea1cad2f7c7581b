"""``dav-render``: write synthetic game-like captures in the dav capture format."""

from __future__ import annotations

from pathlib import Path

import click

from dav_builder.render.families import FAMILIES
from dav_builder.render.timeline import DEFECTS, VARIANTS

EPILOG = """\b
Examples:
  # three small captures with cuts, fades and a menu
  dav-render out/captures --scenes 3 --frames 96 --width 256 --height 144 --seed 1
\b
  # with planted defects (ground truth in each capture's defects.json)
  dav-render out/defects --scenes 20 --frames 128 --defects depth_lag,misaligned,hud,frozen_depth --defect-rate 0.7
\b
  # foggy fields and tiled mazes with first-person weapons, HUD kinds and wrong buffers
  dav-render out/varied --scenes 2 --frames 96 --families fog_fields,tiled_maze --defects hud,weapon,wrong_buffer --variants all
"""


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}, epilog=EPILOG)
@click.argument("out", type=click.Path(path_type=Path))
@click.option("--scenes", type=int, default=3, show_default=True, help="Captures to write.")
@click.option("--frames", type=int, default=96, show_default=True, help="Frames per capture.")
@click.option("--width", type=int, default=256, show_default=True)
@click.option("--height", type=int, default=144, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="Same seed, same files.")
@click.option("--fps", type=float, default=30.0, show_default=True)
@click.option("--defects", default="", help=f"Comma-separated defects to plant: {', '.join(DEFECTS)}.")
@click.option("--defect-rate", type=float, default=0.5, show_default=True,
              help="Probability that each listed defect appears in a capture.")
@click.option("--families", default="classic", show_default=True,
              help=f"Comma-separated scene families, cycled over the captures: {', '.join(FAMILIES)}.")
@click.option("--variants", default="",
              help="'all', or comma-separated defect variants to draw from (" +
                   "; ".join(f"{k}: {', '.join(v)}" for k, v in VARIANTS.items()) +
                   "); with variants some defects last only 1-4 frames. Default: each defect's first.")
@click.option("--jpg", is_flag=True, help="Write RGB as JPEG instead of PNG.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def main(out, scenes, frames, width, height, seed, fps, defects, defect_rate, families, variants, jpg, quiet) -> None:
    """Render SCENES procedural captures (indoor and outdoor layouts, moving camera and objects,
    cuts, fades, a menu screen, lighting changes; with --families fog, repeated textures, clouds,
    first-person weapons, fast, zooming and drone cameras) into OUT, one directory per capture."""
    from dav_builder.render.engine import RenderConfig, parse_variants, render_captures

    try:
        cfg = RenderConfig(scenes=scenes, frames=frames, width=width, height=height, seed=seed, fps=fps,
                           defects=tuple(d for d in defects.split(",") if d), defect_rate=defect_rate,
                           rgb_format="jpg" if jpg else "png",
                           families=tuple(f for f in families.split(",") if f), variants=parse_variants(variants))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    paths = render_captures(out, cfg, progress=not quiet)
    click.echo(f"wrote {len(paths)} capture(s) to {out}")


if __name__ == "__main__":  # pragma: no cover
    main()
