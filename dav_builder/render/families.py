"""Scene families: what kind of game a capture looks like (fog, repeated materials, a
first-person weapon, camera styles), as plain data.

A capture belongs to one family (``RenderConfig.families`` cycles through those listed).  Whole
families can be kept out of the tuning of a filter and used only to measure it, as a new game's
captures would be (``benchmarks/bench_filters.py`` does).  ``classic`` is the engine's original
look, draw for draw.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from dav_builder.render.trajectory import Trajectory

CAMERAS = ("normal", "fast", "zoom", "drone")


@dataclass(frozen=True)
class Family:
    name: str
    fog: tuple[float, float] | None = None
    """Range of fog distances (metres; RGB is 63 % fog at this distance) for outdoor shots; None = clear."""
    periodic: bool = False
    """Most surfaces carry short-period textures (checker, stripes, tiles)."""
    open_ground: bool = False
    """The outdoor ground runs past the far plane (an open horizon)."""
    weapon: float = 0.0
    """Share of shots with a first-person weapon drawn in RGB *and* depth (a correct capture)."""
    cameras: tuple[str, ...] = ("normal",)
    """Camera styles drawn per shot (:data:`CAMERAS`)."""
    clouds: bool = False
    """Outdoor shots have clouds in the sky (at infinity, without depth, as a game's skybox)."""


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("classic"),
    Family("haze_town", fog=(150.0, 300.0), weapon=0.3, cameras=("normal", "fast", "drone")),
    Family("checker_rooms", periodic=True, weapon=0.3, cameras=("normal", "zoom")),
    Family("fps_arena", fog=(200.0, 400.0), weapon=0.8, cameras=("normal", "fast", "zoom")),
    Family("fog_fields", fog=(25.0, 60.0), open_ground=True, weapon=0.3, cameras=("normal", "drone", "zoom", "fast")),
    Family("tiled_maze", fog=(60.0, 120.0), periodic=True, weapon=0.5, cameras=("fast", "zoom", "normal")),
    Family("cloud_hills", clouds=True, weapon=0.5, cameras=("normal", "fast", "drone", "zoom")),
)}


@dataclass
class ShotStyle:
    """How one shot looks beyond its layout: written to ``shots.json`` as ground truth."""

    layout: str
    camera: str = "normal"
    fog: float | None = None
    """Fog distance in metres (None = clear)."""
    periodic: bool = False
    weapon: str | None = None
    """A weapon drawn in RGB and depth (None = none)."""
    zoom: tuple[float, float, float, float] | None = None
    """Vertical field of view from, to (degrees), and when the zoom starts and ends (seconds into the shot)."""
    clouds: int | None = None
    """Seed of the cloud layer in the sky (None = a clear sky)."""

    def fov(self, t: float, base: float) -> float:
        if self.zoom is None:
            return base
        a, b, t0, t1 = self.zoom
        s = float(np.clip((t - t0) / max(t1 - t0, 1e-6), 0.0, 1.0))
        s = s * s * (3 - 2 * s)
        return a + (b - a) * s


def style_shot(family: Family, layout: str, trajectory: Trajectory, duration: float, vfov: float,
               rng: np.random.Generator, layout_origin: tuple[float, float, float] = (0.0, 0.0, 0.0),
               ) -> tuple[ShotStyle, Trajectory]:
    """Draw a shot's style from its family, and the trajectory it changes (fast, drone)."""
    camera = str(rng.choice(list(family.cameras)))
    if camera == "drone" and layout != "outdoor":
        camera = "fast"
    style = ShotStyle(layout, camera, periodic=family.periodic)
    if family.fog is not None and layout == "outdoor":
        style.fog = float(rng.uniform(*family.fog))
    if rng.random() < family.weapon:
        style.weapon = str(rng.choice(["rifle", "pistol"]))
    if family.clouds and layout == "outdoor":
        style.clouds = int(rng.integers(1 << 30))
    # fast and drone cameras keep to open space, as a game's collision keeps them: a camera that
    # flies through a building is an engine artefact, not a capture to filter
    if camera == "fast" and layout == "outdoor":  # a fast vehicle down the road, panning
        origin = (layout_origin[0] + float(rng.uniform(-60, -30)), layout_origin[1] + float(rng.choice([-1.5, 1.5])),
                  layout_origin[2])
        trajectory = Trajectory("drive", origin, 0.0, float(rng.uniform(20, 30)), 1.3 * float(rng.uniform(0.9, 1.1)),
                                trajectory.radius, 0.0, 0.4, float(rng.uniform(0.15, 0.3)))
    elif camera == "fast":  # a player sprinting and turning quickly
        trajectory = replace(trajectory, speed=trajectory.speed * float(rng.uniform(1.5, 2.0)),
                             turn_amp=0.5, turn_rate=float(rng.uniform(0.15, 0.3)))
    elif camera == "drone":
        trajectory = Trajectory("fly", trajectory.origin, trajectory.heading, float(rng.uniform(6, 12)),
                                float(rng.uniform(35, 50)), trajectory.radius, 0.5, 0.3, 0.05,
                                -float(rng.uniform(0.3, 0.8)))
    elif camera == "zoom":
        to = float(rng.uniform(25, 45))
        t0 = float(rng.uniform(0, max(duration - 1.0, 0.1)))
        a, b = (vfov, to) if rng.random() < 0.5 else (to, vfov)
        style.zoom = (a, b, t0, t0 + float(rng.uniform(0.2, 1.5)))
    return style, trajectory
