"""The built-in demo: a few small captures from the synthetic engine, with every kind of event
(cuts, fades, a menu, frames without depth).  No defects are planted, so a clip that a
model-free check drops here is a false alarm (``dav-render --defects`` plants them)."""

from __future__ import annotations

from pathlib import Path


def render_demo(out: Path, scenes: int = 3, frames: int = 96, seed: int = 7, progress: bool = True) -> list[Path]:
    """Render the demo captures into ``out`` (skipped when they are already there)."""
    from dav_builder.render.engine import RenderConfig, render_captures

    out = Path(out)
    existing = sorted(p.parent for p in out.glob("*/capture.json"))
    if len(existing) >= scenes:
        return existing[:scenes]
    cfg = RenderConfig(scenes=scenes, frames=frames, width=256, height=144, seed=seed)
    return render_captures(out, cfg, progress=progress)
