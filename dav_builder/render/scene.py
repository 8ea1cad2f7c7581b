"""Procedural layouts (indoor rooms, outdoor streets and fields) and textures, as plain data.

A :class:`Layout` lists :class:`Prop` s; the backend turns them into renderer bodies.  Nothing
here touches the renderer, so layouts are cheap to generate and test.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

SHAPES = ("box", "sphere", "cylinder", "capsule")
TEXTURES = ("checker", "stripes", "noise", "bricks", "plain")
#: Textures that repeat with a short period (a camera moving by one period sees the same image).
PERIODIC = ("checker", "stripes", "tiles")


@dataclass
class Prop:
    shape: str
    size: tuple[float, ...]
    """box: half extents (x, y, z); sphere: (radius,); cylinder/capsule: (radius, length)."""
    position: tuple[float, float, float]
    colour: tuple[float, float, float]
    texture: str = "plain"
    yaw: float = 0.0
    motion: tuple[float, float, float] | None = None
    """Velocity in m/s of a moving prop; it swings back and forth along this vector."""
    period: float = 6.0


@dataclass
class Layout:
    kind: str
    """``indoor`` or ``outdoor``."""
    origin: tuple[float, float, float]
    props: list[Prop] = field(default_factory=list)
    sky: bool = False
    extent: float = 10.0
    """Half size of the walkable area (metres)."""


def texture_image(kind: str, colour: tuple[float, float, float], rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """A procedural RGB texture (uint8 size x size x 3).  ``KIND:fine`` is a short-period pattern
    over a 256-pixel texture (many repeats across a surface)."""
    base = np.array(colour, dtype=np.float32) * 255
    fine = kind.endswith(":fine")
    if fine:
        kind, size = kind[: -len(":fine")], 256
    y, x = np.mgrid[0:size, 0:size]
    if fine and kind in ("checker", "stripes", "tiles"):
        k = int(rng.integers(4, 9))
        m = (((x // k + y // k) % 2) if kind == "checker" else ((x // k) % 2)).astype(np.float32)[..., None]
        img = base * (0.55 + 0.45 * m) if kind != "tiles" else np.where((((x % k) < 1) | ((y % k) < 1))[..., None], base * 0.35, base)
    elif kind == "checker":
        k = max(4, int(rng.integers(4, 16)))
        m = ((x // k + y // k) % 2).astype(np.float32)[..., None]
        img = base * (0.55 + 0.45 * m)
    elif kind == "stripes":
        k = max(3, int(rng.integers(3, 10)))
        m = ((x // k) % 2).astype(np.float32)[..., None]
        img = base * (0.6 + 0.4 * m)
    elif kind == "noise":
        coarse = rng.random((8, 8)).astype(np.float32)
        import cv2

        m = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)[..., None]
        img = base * (0.5 + 0.5 * np.clip(m, 0, 1)) + rng.normal(0, 6, (size, size, 1))
    elif kind == "tiles":  # square tiles with thin grout: many identical corners
        k = max(6, int(rng.integers(6, 17)))
        grout = ((x % k) < 1) | ((y % k) < 1)
        img = np.where(grout[..., None], base * 0.35, base)
    elif kind == "bricks":
        bh, bw = 8, 16
        row = y // bh
        offset = (row % 2) * (bw // 2)
        mortar = ((y % bh) == 0) | (((x + offset) % bw) == 0)
        img = np.where(mortar[..., None], 200.0, base * rng.uniform(0.8, 1.0))
    else:
        img = np.broadcast_to(base, (size, size, 3)).copy()
    return np.clip(img, 0, 255).astype(np.uint8)


def _colour(rng: np.random.Generator) -> tuple[float, float, float]:
    return tuple(float(v) for v in rng.uniform(0.15, 0.95, 3))  # type: ignore[return-value]


def _random_prop(rng: np.random.Generator, centre: np.ndarray, spread: float, moving: bool) -> Prop:
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    if shape == "box":
        size: tuple[float, ...] = tuple(float(v) for v in rng.uniform(0.2, 1.0, 3))
        z = size[2]
    elif shape == "sphere":
        size = (float(rng.uniform(0.2, 0.8)),)
        z = size[0]
    else:
        size = (float(rng.uniform(0.15, 0.5)), float(rng.uniform(0.4, 1.8)))
        z = size[1] / 2 + (size[0] if shape == "capsule" else 0)
    xy = centre[:2] + rng.uniform(-spread, spread, 2)
    motion = None
    if moving:
        ang = rng.uniform(0, 2 * np.pi)
        motion = (float(np.cos(ang) * rng.uniform(0.5, 2.0)), float(np.sin(ang) * rng.uniform(0.5, 2.0)), 0.0)
    return Prop(shape, size, (float(xy[0]), float(xy[1]), float(z)), _colour(rng),
                TEXTURES[int(rng.integers(len(TEXTURES)))], float(rng.uniform(0, np.pi)), motion)


def indoor_layout(rng: np.random.Generator, origin: tuple[float, float, float]) -> Layout:
    """A room with textured walls, floor and ceiling, furniture-like boxes and a few moving objects."""
    o = np.array(origin)
    hx, hy, hz = rng.uniform(5, 9), rng.uniform(5, 9), rng.uniform(1.4, 1.8)
    wall_tex = TEXTURES[int(rng.integers(4))]
    props = [
        Prop("box", (hx, hy, 0.05), (o[0], o[1], -0.05), _colour(rng), "checker"),  # floor
        Prop("box", (hx, hy, 0.05), (o[0], o[1], 2 * hz + 0.05), _colour(rng), "plain"),  # ceiling
    ]
    for sx, sy, ex, ey in ((1, 0, 0.05, hy), (-1, 0, 0.05, hy), (0, 1, hx, 0.05), (0, -1, hx, 0.05)):
        props.append(Prop("box", (ex, ey, hz), (o[0] + sx * hx, o[1] + sy * hy, hz), _colour(rng), wall_tex))
    for _ in range(int(rng.integers(8, 16))):
        props.append(_random_prop(rng, o, min(hx, hy) - 1.0, moving=False))
    for _ in range(int(rng.integers(1, 4))):
        props.append(_random_prop(rng, o, min(hx, hy) - 2.0, moving=True))
    return Layout("indoor", origin, props, sky=False, extent=float(min(hx, hy)) - 1.5)


def outdoor_layout(rng: np.random.Generator, origin: tuple[float, float, float]) -> Layout:
    """Ground, a road, buildings, trees (trunk and crown), rocks, and moving objects; open sky."""
    o = np.array(origin)
    props = [
        Prop("box", (120, 120, 0.05), (o[0], o[1], -0.05), _colour(rng), "noise"),
        Prop("box", (120, 3.0, 0.06), (o[0], o[1], -0.04), (0.3, 0.3, 0.32), "stripes"),  # road along x
    ]
    for _ in range(int(rng.integers(8, 14))):  # buildings on both sides of the road
        side = rng.choice([-1, 1])
        h = rng.uniform(3, 15)
        sx, sy = rng.uniform(2, 6), rng.uniform(2, 5)
        x = o[0] + rng.uniform(-60, 60)
        props.append(Prop("box", (sx, sy, h), (x, o[1] + side * (sy + rng.uniform(6, 12)), h), _colour(rng), "bricks"))
    for _ in range(int(rng.integers(6, 12))):  # trees
        x, y = o[0] + rng.uniform(-50, 50), o[1] + rng.choice([-1, 1]) * rng.uniform(4.5, 20)
        trunk = rng.uniform(1.5, 3.0)
        props.append(Prop("cylinder", (0.15, trunk), (x, y, trunk / 2), (0.4, 0.25, 0.1), "stripes"))
        props.append(Prop("sphere", (rng.uniform(0.8, 1.6),), (x, y, trunk + 0.8), (0.1, rng.uniform(0.4, 0.7), 0.1), "noise"))
    for _ in range(int(rng.integers(4, 10))):  # rocks and clutter
        props.append(_random_prop(rng, o + np.array([0, rng.choice([-1, 1]) * 6.0, 0]), 30.0, moving=False))
    for _ in range(int(rng.integers(2, 5))):  # moving objects near the road
        props.append(_random_prop(rng, o, 12.0, moving=True))
    return Layout("outdoor", origin, props, sky=True, extent=40.0)


def make_layout(kind: str, rng: np.random.Generator, origin: tuple[float, float, float]) -> Layout:
    return indoor_layout(rng, origin) if kind == "indoor" else outdoor_layout(rng, origin)


def prop_position(prop: Prop, t: float) -> tuple[float, float, float]:
    """Where a prop is at time ``t`` (moving props swing back and forth along their velocity)."""
    if prop.motion is None:
        return prop.position
    s = prop.period / (2 * np.pi) * np.sin(2 * np.pi * t / prop.period)
    return tuple(float(p + v * s) for p, v in zip(prop.position, prop.motion))  # type: ignore[return-value]


def with_periodic_textures(layout: Layout, rng: np.random.Generator, share: float = 0.8) -> Layout:
    """The layout with most surfaces re-textured with short-period patterns (checker floors,
    striped walls, tiled boxes): repeated materials, as in many games."""
    props = []
    for i, prop in enumerate(layout.props):
        tex = "checker:fine" if i == 0 else (PERIODIC[int(rng.integers(len(PERIODIC)))] + ":fine"
                                             if rng.random() < share else prop.texture)
        props.append(Prop(prop.shape, prop.size, prop.position, prop.colour, tex, prop.yaw, prop.motion, prop.period))
    return Layout(layout.kind, layout.origin, props, layout.sky, layout.extent)


def with_open_ground(layout: Layout, half_size: float = 600.0) -> Layout:
    """An outdoor layout whose ground (and road) run past the far plane: an open horizon, where
    the ground ends at the far plane rather than at its edge."""
    if layout.kind != "outdoor":
        return layout
    props = list(layout.props)
    for i in (0, 1):
        p = props[i]
        size = (half_size, p.size[1] if i == 1 else half_size, p.size[2])
        props[i] = Prop(p.shape, size, p.position, p.colour, p.texture, p.yaw, p.motion, p.period)
    return Layout(layout.kind, layout.origin, props, layout.sky, layout.extent)
